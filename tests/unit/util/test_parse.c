/* util/parse: the size and duration syntax shared by the target, the daemon and the CLI. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../test.h"
#include "util/parse.h"

static void test_size(void)
{
	static const struct {
		const char *s;
		unsigned long long v;
	} sizes[] = {
		{"0", 0},           {"4096", 4096},          {"512b", 512},          {"512B", 512},
		{"64k", 65536},     {"64K", 65536},          {"64KiB", 65536},       {"64kb", 65536},
		{"64Ki", 65536},    {"1M", 1 << 20},         {"1mib", 1 << 20},      {"64M", 64u << 20},
		{"1G", 1ull << 30}, {"2GB", 2ull << 30},     {"3GiB", 3ull << 30},   {"1Gi", 1ull << 30},
		{"1T", 1ull << 40}, {"1TiB", 1ull << 40},    {"1p", 1ull << 50},     {"16383P", 16383ull << 50},
		{"1gIb", 1ull << 30},
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t v = 1;
		int rc = parse_size(sizes[i].s, &v);
		if (rc != 0 || v != sizes[i].v)
			fprintf(stderr, "  size '%s' -> rc %d, %llu\n", sizes[i].s, rc, (unsigned long long)v);
		CHECK_EQ(rc, 0);
		CHECK_EQ(v, sizes[i].v);
	}
	printf("ok: %zu sizes with every suffix spelling parse to their binary value\n", sizeof(sizes) / sizeof(sizes[0]));
	const char *bad[] = {"",     "G",   "-1",     "1.5G",  "1 G", " 1G", "1GG",    "1X",   "16384P",
			     "99999999999999999999",   "0x10",  "12Q", "1ib", "1bb",  "1GiBB", "1KB ", "+1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 7;
		int rc = parse_size(bad[i], &v);
		if (rc != -1)
			fprintf(stderr, "  size '%s' accepted\n", bad[i]);
		CHECK_EQ(rc, -1);
		CHECK_EQ(v, 7);
	}
	printf("ok: %zu malformed or overflowing sizes refused\n", sizeof(bad) / sizeof(bad[0]));
}

static void test_duration(void)
{
	static const struct {
		const char *s;
		unsigned long long ms;
	} good[] = {
		{"5", 5000},  {"5s", 5000},       {"2.5", 2500},    {"300ms", 300}, {"1m", 60000},
		{"1min", 60000}, {"0.5m", 30000}, {"0", 0},         {"0ms", 0},     {"31536000", 31536000000ull},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t ms = 1;
		CHECK_EQ(parse_duration_ms(good[i].s, &ms), 0);
		CHECK_EQ(ms, good[i].ms);
	}
	printf("ok: %zu durations (seconds, ms, m, min, fractions)\n", sizeof(good) / sizeof(good[0]));
	const char *bad[] = {"", "-1", "x", "5h", "5 s", "1S", "nan", "inf", "31536001", "1e30", "5sec"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t ms = 7;
		int rc = parse_duration_ms(bad[i], &ms);
		if (rc != -1)
			fprintf(stderr, "  duration '%s' accepted\n", bad[i]);
		CHECK_EQ(rc, -1);
		CHECK_EQ(ms, 7);
	}
	CHECK_EQ(parse_duration_ms(NULL, NULL), -1);
	printf("ok: %zu malformed, negative or over-long durations refused\n", sizeof(bad) / sizeof(bad[0]));
}

static void test_trim(void)
{
	char a[] = " \t key = v \r\n";
	CHECK_STR(trim(a), "key = v");
	char b[] = "";
	CHECK_STR(trim(b), "");
	char c[] = " \t\n";
	CHECK_STR(trim(c), "");
	char d[] = "x";
	CHECK_STR(trim(d), "x");
	printf("ok: trim strips blanks, tabs and line ends at both ends only\n");
}

/* Whole numbers: the form strtoull reads in the base, nothing around it, within [min, max]. */
static void test_uint(void)
{
	static const struct {
		const char *in;
		int base;
		uint64_t min, max;
		int rc;
		uint64_t want;
	} cases[] = {
		{"0", 10, 0, 10, 0, 0},
		{"65535", 10, 1, 65535, 0, 65535},
		{"65536", 10, 1, 65535, -1, 0},
		{"0", 10, 1, 65535, -1, 0},
		{"18446744073709551615", 10, 0, UINT64_MAX, 0, UINT64_MAX},
		{"18446744073709551616", 10, 0, UINT64_MAX, -1, 0},
		{"0x10", 0, 0, 100, 0, 16},
		{"0x10", 10, 0, 100, -1, 0},
		{"010", 0, 0, 100, 0, 8},
		{"deadbeef", 16, 0, UINT64_MAX, 0, 0xdeadbeef},
		{"", 10, 0, 10, -1, 0},
		{"-1", 10, 0, UINT64_MAX, -1, 0},
		{"+1", 10, 0, 10, -1, 0},
		{" 1", 10, 0, 10, -1, 0},
		{"1 ", 10, 0, 10, -1, 0},
		{"1k", 10, 0, 10000, -1, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = parse_uint(cases[i].in, cases[i].base, cases[i].min, cases[i].max, &v);
		CHECK_EQ(rc, cases[i].rc);
		if (rc == 0)
			CHECK_EQ(v, cases[i].want);
		else
			CHECK_EQ(v, 12345);
	}
	printf("ok: whole numbers with bases and ranges; signs, blanks and suffixes refused\n");
}

int main(void)
{
	test_uint();
	test_size();
	test_duration();
	test_trim();
	TEST_MAIN_END();
}
