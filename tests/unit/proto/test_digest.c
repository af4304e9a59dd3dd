#include "proto/digest.h"

#include <stdint.h>
#include <string.h>

#include "../test.h"

static void test_known_answers(void)
{
	uint8_t buf[32];
	CHECK_EQ(crc32c("123456789", 9), 0xE3069283u);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(crc32c(buf, sizeof(buf)), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	CHECK_EQ(crc32c(buf, sizeof(buf)), 0x62A8AB43u);
	/* RFC 3720 B.4: 32 bytes ascending and descending. */
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	CHECK_EQ(crc32c(buf, sizeof(buf)), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	CHECK_EQ(crc32c(buf, sizeof(buf)), 0x113FDB5Cu);
	CHECK_EQ(crc32c("", 0), 0);
}

static void test_split_forms(void)
{
	static uint8_t data[4099];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);
	uint32_t whole = crc32c(data, sizeof(data));

	/* Every split point of a short prefix, then a few long ones, incrementally and by iovec. */
	size_t cuts[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4095, 4098, 4099};
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		size_t c = cuts[k];
		uint32_t s = crc32c_init();
		s = crc32c_update(s, data, c);
		s = crc32c_update(s, data + c, sizeof(data) - c);
		CHECK_EQ(crc32c_final(s), whole);
		struct iovec iov[2] = {{data, c}, {data + c, sizeof(data) - c}};
		CHECK_EQ(crc32c_iov(iov, 2), whole);
	}

	/* Byte by byte. */
	uint32_t s = crc32c_init();
	for (size_t i = 0; i < sizeof(data); i++)
		s = crc32c_update(s, data + i, 1);
	CHECK_EQ(crc32c_final(s), whole);

	/* Many uneven pieces, including empty ones. */
	struct iovec iov[8];
	size_t sizes[8] = {0, 3, 48, 0, 1, 1000, 2000, 0};
	size_t off = 0;
	for (int i = 0; i < 8; i++) {
		if (i == 7)
			sizes[i] = sizeof(data) - off;
		iov[i].iov_base = data + off;
		iov[i].iov_len = sizes[i];
		off += sizes[i];
	}
	CHECK_EQ(crc32c_iov(iov, 8), whole);
	CHECK_EQ(crc32c_iov(iov, 0), crc32c("", 0));
}

int main(void)
{
	test_known_answers();
	test_split_forms();
	TEST_MAIN_END();
}
