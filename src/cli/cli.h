/* Shared pieces of the isthmus command line tool. */
#ifndef ISTHMUS_CLI_CLI_H
#define ISTHMUS_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * The initiator name to use: explicit (if not NULL), else `initiator-name` from $ISTHMUS_CONFIG
 * or /etc/isthmus/initiator.conf, else the one kept in $ISTHMUS_STATE_DIR (or /var/lib/isthmus)
 * file `initiatorname`, generated and saved there the first time. 0 or -1 with err.
 */
int cli_initiator_name(const char *explicit_name, char *out, size_t outlen, char *err, size_t errlen);

#endif
