/* Shared pieces of the isthmus command line tool. */
#ifndef ISTHMUS_CLI_CLI_H
#define ISTHMUS_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/sbuf.h"

#define JSON_MAX_DEPTH 16

struct json {
	struct sbuf b;
	int depth;
	unsigned count[JSON_MAX_DEPTH];
};

void json_escape(struct sbuf *b, const char *s);
void json_open(struct json *j, const char *key, char bracket);
void json_close(struct json *j, char bracket);
void json_str(struct json *j, const char *key, const char *val);
void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
void json_bool(struct json *j, const char *key, bool v);
void json_print(struct json *j, FILE *f);

/*
 * The initiator name to use: explicit (if not NULL), else `initiator-name` from $ISTHMUS_CONFIG
 * or /etc/isthmus/initiator.conf, else the one kept in $ISTHMUS_STATE_DIR (or /var/lib/isthmus)
 * file `initiatorname`, generated and saved there the first time. 0 or -1 with err.
 */
int cli_initiator_name(const char *explicit_name, char *out, size_t outlen, char *err, size_t errlen);

#endif
