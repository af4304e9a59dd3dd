/* libFuzzer: a received PDU header, its AHS and a text data segment, decoded as the target does. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/pdu.h"
#include "proto/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < BHS_LEN)
		return 0;
	struct bhs b;
	char why[96];
	if (bhs_decode(data, &b, why, sizeof(why)) == 0) {
		uint8_t again[BHS_LEN];
		bhs_encode(&b, again);
		struct bhs b2;
		/* Whatever decodes must survive an encode/decode round trip unchanged. */
		if (bhs_decode(again, &b2, why, sizeof(why)) != 0 || memcmp(&b, &b2, sizeof(b)) != 0)
			__builtin_trap();
	}
	size_t rest = size - BHS_LEN;
	size_t ahs_len = b.total_ahs_len;
	if (ahs_len > rest)
		ahs_len = rest;
	struct ahs_info ai;
	ahs_parse(data + BHS_LEN, ahs_len, &ai, why, sizeof(why));
	struct text_list l = {0};
	char err[128];
	text_parse(data + BHS_LEN + ahs_len, rest - ahs_len, &l, err, sizeof(err));
	text_clear(&l);
	return 0;
}
