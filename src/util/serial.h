/* Serial number arithmetic (RFC 1982, 32 bits) for CmdSN, StatSN and DataSN comparisons. */
#ifndef ISTHMUS_UTIL_SERIAL_H
#define ISTHMUS_UTIL_SERIAL_H

#include <stdbool.h>
#include <stdint.h>

static inline bool sn_lt(uint32_t a, uint32_t b) { return a != b && (uint32_t)(b - a) < 0x80000000u; }
static inline bool sn_gt(uint32_t a, uint32_t b) { return a != b && (uint32_t)(a - b) < 0x80000000u; }
static inline bool sn_le(uint32_t a, uint32_t b) { return a == b || sn_lt(a, b); }
static inline bool sn_ge(uint32_t a, uint32_t b) { return a == b || sn_gt(a, b); }

#endif
