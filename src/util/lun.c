/* SAM-5 4.7 LUN field: one codec for the target's dispatch and the initiator's addressing. */
#include "util/lun.h"

#include <stdbool.h>
#include <string.h>

#include "util/bytes.h"

/* A single-level address leaves every byte after its first level zero. */
static bool rest_zero(const uint8_t f[8], int from)
{
	for (int i = from; i < 8; i++) {
		if (f[i])
			return false;
	}
	return true;
}

enum lun_format lun_decode(const uint8_t f[8], uint64_t *lun)
{
	switch (f[0] >> 6) {
	case 0: /* peripheral device addressing; a non-zero bus identifier is another bus */
		if ((f[0] & 0x3f) || !rest_zero(f, 2))
			return LUN_UNDECODED;
		*lun = f[1];
		return LUN_PERIPHERAL;
	case 1: /* flat space addressing */
		if (!rest_zero(f, 2))
			return LUN_UNDECODED;
		*lun = (uint64_t)(f[0] & 0x3f) << 8 | f[1];
		return LUN_FLAT;
	case 3: /* extended addressing: length in bits 5:4, method in bits 3:0 */
		if (f[0] == 0xd2 && rest_zero(f, 4)) {
			*lun = get_be24(f + 1);
			return LUN_EXTENDED_FLAT;
		}
		if (f[0] == 0xe2 && rest_zero(f, 6)) {
			*lun = (uint64_t)get_be32(f + 1) << 8 | f[5];
			return LUN_LONG_EXTENDED_FLAT;
		}
		return LUN_UNDECODED;
	default: /* logical unit addressing names a target and bus behind a bridge */
		return LUN_UNDECODED;
	}
}

/* The smallest format that holds lun (below LUN_NUMBER_LIMIT). */
static enum lun_format lun_format_for(uint64_t lun)
{
	if (lun < 256)
		return LUN_PERIPHERAL;
	if (lun < 16384)
		return LUN_FLAT;
	return LUN_EXTENDED_FLAT;
}

void lun_encode(uint64_t lun, uint8_t f[8])
{
	if (lun >= LUN_NUMBER_LIMIT) {
		put_be64(f, lun);
		return;
	}
	memset(f, 0, 8);
	switch (lun_format_for(lun)) {
	case LUN_PERIPHERAL:
		f[1] = (uint8_t)lun;
		break;
	case LUN_FLAT:
		f[0] = (uint8_t)(0x40 | lun >> 8);
		f[1] = (uint8_t)lun;
		break;
	default:
		f[0] = 0xd2;
		put_be24(f + 1, (uint32_t)lun);
		break;
	}
}

uint64_t lun_value(const uint8_t f[8])
{
	uint64_t lun;
	enum lun_format fmt = lun_decode(f, &lun);
	if (fmt != LUN_UNDECODED && lun < LUN_NUMBER_LIMIT && fmt == lun_format_for(lun))
		return lun;
	return get_be64(f);
}
