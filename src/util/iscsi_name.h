/* iSCSI name checks (RFC 7143 section 4.2.7 and RFC 3722 stringprep profile, ASCII subset). */
#ifndef ISTHMUS_UTIL_ISCSI_NAME_H
#define ISTHMUS_UTIL_ISCSI_NAME_H

#include <stdbool.h>
#include <stddef.h>

/* Accepts iqn.YYYY-MM.reversed.domain[:anything], eui.<16 hex>, naa.<16 or 32 hex>; why set on false. */
bool iscsi_name_valid(const char *name, char *why, size_t whylen);

#endif
