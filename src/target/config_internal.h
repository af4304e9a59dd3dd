/* What the configuration modules (model, parser, validation, writer) share and nobody else uses. */
#ifndef ISTHMUS_TARGET_CONFIG_INTERNAL_H
#define ISTHMUS_TARGET_CONFIG_INTERNAL_H

#include <stdarg.h>

#include "target/config.h"

#define DEFAULT_PORT 3260
#define MAX_LUN 16383 /* flat space addressing (SAM-5) reaches 14 bits */
#define MIN_SECRET 12 /* 96 bits: RFC 7143 wants CHAP secrets at least this strong */
#define MAX_SECRET 255
#define MAX_SECONDS 86400 /* the longest of the target's time settings (NOP, Data-Out wait) */
#define DEFAULT_MAX_COMMANDS 128
#define MAX_COMMANDS 4096 /* the hold ring is sized to the window */

/* Sets *err (when err is not NULL) to the message and returns -1. */
int cfg_fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Unsigned decimal within min..max, without sign, spaces or overflow. 0 or -1. */
int cfg_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* config_gateway.c */
struct sbuf;
int cfg_validate_gateways(const struct cfg_target *t, char **err);
void cfg_format_gateways(struct sbuf *b, const struct cfg_target *t);
void cfg_free_gateways(struct cfg_target *t);

#endif
