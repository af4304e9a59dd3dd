/* The boot session from an iBFT-style directory. */
#ifndef ISTHMUS_DAEMON_IBFT_H
#define ISTHMUS_DAEMON_IBFT_H

#include <stddef.h>

struct dsess_opts;

/* Read an iBFT-style directory into login options (type boot) and the initiator name. */
int ibft_load(const char *dir, struct dsess_opts *o, char **initiator_name, char *err, size_t errlen);

#endif
