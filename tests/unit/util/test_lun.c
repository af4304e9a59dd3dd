/* The LUN codec: every single-level format decodes, numbers encode to their smallest format,
 * and a field the codec cannot express as a number travels through the library unchanged. */
#include <stdint.h>
#include <string.h>

#include "../test.h"
#include "util/lun.h"

static void field(uint8_t f[8], uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3, uint8_t b4, uint8_t b5,
		  uint8_t b6, uint8_t b7)
{
	const uint8_t v[8] = { b0, b1, b2, b3, b4, b5, b6, b7 };
	memcpy(f, v, 8);
}

static void test_decode_formats(void)
{
	uint8_t f[8];
	uint64_t lun = 99;
	printf("decode: peripheral, flat, extended flat, long extended flat\n");
	field(f, 0x00, 0x05, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_PERIPHERAL);
	CHECK_EQ(lun, 5);
	field(f, 0x7f, 0xff, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_FLAT);
	CHECK_EQ(lun, 16383);
	field(f, 0x40, 0x05, 0, 0, 0, 0, 0, 0); /* flat need not be the smallest format */
	CHECK_EQ(lun_decode(f, &lun), LUN_FLAT);
	CHECK_EQ(lun, 5);
	field(f, 0xd2, 0x12, 0x34, 0x56, 0, 0, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_EXTENDED_FLAT);
	CHECK_EQ(lun, 0x123456);
	field(f, 0xe2, 0x12, 0x34, 0x56, 0x78, 0x9a, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_LONG_EXTENDED_FLAT);
	CHECK_EQ(lun, 0x123456789aull);

	printf("decode: bus != 0, second levels, logical unit addressing, well-known LUNs are not numbers\n");
	lun = 99;
	field(f, 0x01, 0x05, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_UNDECODED);
	field(f, 0x00, 0x05, 0x00, 0x01, 0, 0, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_UNDECODED);
	field(f, 0x40, 0x05, 0, 0, 0, 0, 0, 0x01);
	CHECK_EQ(lun_decode(f, &lun), LUN_UNDECODED);
	field(f, 0x80, 0x05, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_UNDECODED);
	field(f, 0xc1, 0x01, 0, 0, 0, 0, 0, 0); /* REPORT LUNS well-known LUN */
	CHECK_EQ(lun_decode(f, &lun), LUN_UNDECODED);
	field(f, 0xd2, 0x00, 0x00, 0x05, 0x01, 0, 0, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_UNDECODED);
	field(f, 0xe2, 0, 0, 0, 0, 0x05, 0x01, 0);
	CHECK_EQ(lun_decode(f, &lun), LUN_UNDECODED);
	CHECK_EQ(lun, 99);
}

static void test_encode_smallest(void)
{
	uint8_t f[8], want[8];
	printf("encode: smallest format per number, larger values are the field itself\n");
	lun_encode(0, f);
	field(want, 0, 0, 0, 0, 0, 0, 0, 0);
	CHECK(memcmp(f, want, 8) == 0);
	lun_encode(255, f);
	field(want, 0x00, 0xff, 0, 0, 0, 0, 0, 0);
	CHECK(memcmp(f, want, 8) == 0);
	lun_encode(256, f);
	field(want, 0x41, 0x00, 0, 0, 0, 0, 0, 0);
	CHECK(memcmp(f, want, 8) == 0);
	lun_encode(16383, f);
	field(want, 0x7f, 0xff, 0, 0, 0, 0, 0, 0);
	CHECK(memcmp(f, want, 8) == 0);
	lun_encode(16384, f);
	field(want, 0xd2, 0x00, 0x40, 0x00, 0, 0, 0, 0);
	CHECK(memcmp(f, want, 8) == 0);
	lun_encode(LUN_NUMBER_LIMIT - 1, f);
	field(want, 0xd2, 0xff, 0xff, 0xff, 0, 0, 0, 0);
	CHECK(memcmp(f, want, 8) == 0);
	lun_encode(0x0105000000000000ull, f);
	field(want, 0x01, 0x05, 0, 0, 0, 0, 0, 0);
	CHECK(memcmp(f, want, 8) == 0);
}

static void test_value_round_trip(void)
{
	uint8_t f[8], back[8];
	printf("value: numbers for smallest formats, the raw field otherwise, encode gives it back\n");
	const uint8_t fields[][8] = {
		{ 0x00, 0x07 }, { 0x41, 0x00 }, { 0x7f, 0xff }, { 0xd2, 0x01, 0x00, 0x00 },
		{ 0x40, 0x07 },                         /* flat for a peripheral-sized number */
		{ 0xd2, 0x00, 0x00, 0x07 },             /* extended flat for a small number */
		{ 0xe2, 0x00, 0x00, 0x00, 0x01, 0x00 }, /* long extended flat */
		{ 0x01, 0x07 },                         /* bus 1 */
		{ 0x00, 0x01, 0x00, 0x02 },             /* two levels */
		{ 0xc1, 0x01 },                         /* well-known */
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		memcpy(f, fields[i], 8);
		lun_encode(lun_value(f), back);
		CHECK(memcmp(f, back, 8) == 0);
	}
	field(f, 0x00, 0x07, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(lun_value(f), 7);
	field(f, 0x41, 0x00, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(lun_value(f), 256);
	field(f, 0xd2, 0x01, 0x00, 0x00, 0, 0, 0, 0);
	CHECK_EQ(lun_value(f), 65536);
	field(f, 0x40, 0x07, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(lun_value(f), 0x4007000000000000ull);
	for (uint64_t n = 0; n < 70000; n += 7) {
		lun_encode(n, f);
		CHECK_EQ(lun_value(f), n);
	}
}

int main(void)
{
	test_decode_formats();
	test_encode_smallest();
	test_value_round_trip();
	TEST_MAIN_END();
}
