/*
 * The 8-byte LUN field (SAM-5 4.7): single-level peripheral device (bus 0), flat space,
 * extended flat space and long extended flat space addressing. The target and the initiator
 * library share this one codec.
 */
#ifndef ISTHMUS_UTIL_LUN_H
#define ISTHMUS_UTIL_LUN_H

#include <stdint.h>

enum lun_format {
	LUN_UNDECODED,          /* multi-level, bus != 0, logical unit addressing, well-known, ... */
	LUN_PERIPHERAL,         /* 00b: 8-bit LUN on bus 0 */
	LUN_FLAT,               /* 01b: 14-bit LUN */
	LUN_EXTENDED_FLAT,      /* D2h: 24-bit LUN */
	LUN_LONG_EXTENDED_FLAT, /* E2h: 40-bit LUN */
};

/*
 * The library's uint64_t LUN: a number below LUN_NUMBER_LIMIT, or else the 8-byte field itself
 * (big-endian), so that any LUN a target reports can be addressed again unchanged.
 */
#define LUN_NUMBER_LIMIT (UINT64_C(1) << 24)

/* Decodes a single-level LUN field into *lun; LUN_UNDECODED (and *lun untouched) otherwise. */
enum lun_format lun_decode(const uint8_t field[8], uint64_t *lun);

/* A number below LUN_NUMBER_LIMIT in its smallest format; anything larger is the field itself. */
void lun_encode(uint64_t lun, uint8_t field[8]);

/*
 * The inverse of lun_encode: the number when field is a number's smallest format, else the
 * field itself, so lun_encode(lun_value(f)) gives f back (but for fields 00 00 00 00 00 xx xx xx,
 * which name a third-level LUN behind LUN 0 and read as a number).
 */
uint64_t lun_value(const uint8_t field[8]);

#endif
