#include "proto/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test.h"
#include "util/iscsi_name.h"

static int parse(const char *data, size_t len, struct text_list *l, char *err, size_t errlen)
{
	text_clear(l);
	err[0] = 0;
	return text_parse((const uint8_t *)data, len, l, err, errlen);
}

static void test_parse(void)
{
	struct text_list l = {0};
	char err[128];
	static const char seg[] = "InitiatorName=iqn.2026-11.org.isthmus:host\0AuthMethod=CHAP,None\0Empty=\0"
				  "Eq=a=b=\0";
	CHECK_EQ(parse(seg, sizeof(seg) - 1, &l, err, sizeof(err)), 0);
	CHECK_EQ(l.n, 4);
	CHECK_STR(text_get(&l, "InitiatorName"), "iqn.2026-11.org.isthmus:host");
	CHECK_STR(text_get(&l, "AuthMethod"), "CHAP,None");
	CHECK_STR(text_get(&l, "Empty"), "");
	/* Base64 values end in '=': only the first '=' separates. */
	CHECK_STR(text_get(&l, "Eq"), "a=b=");
	CHECK(text_get(&l, "Missing") == NULL);
	CHECK(!text_has(&l, "authmethod"));

	/* Encode gives back exactly the segment; parsing that gives the same list. */
	struct sbuf b = {0};
	text_encode(&l, &b);
	CHECK_EQ(b.len, sizeof(seg) - 1);
	CHECK(memcmp(b.data, seg, b.len) == 0);
	struct text_list l2 = {0};
	CHECK_EQ(text_parse(b.data, b.len, &l2, err, sizeof(err)), 0);
	CHECK_EQ(l2.n, l.n);
	for (size_t i = 0; i < l.n && i < l2.n; i++) {
		CHECK_STR(l2.kv[i].key, l.kv[i].key);
		CHECK_STR(l2.kv[i].value, l.kv[i].value);
	}
	text_clear(&l2);
	sbuf_free(&b);

	/* NUL padding to a 4-byte boundary is ignored. */
	static const char padded[] = "A=1\0B=22\0\0\0";
	CHECK_EQ(parse(padded, sizeof(padded) - 1, &l, err, sizeof(err)), 0);
	CHECK_EQ(l.n, 2);
	CHECK_STR(text_get(&l, "B"), "22");
	CHECK_EQ(parse("", 0, &l, err, sizeof(err)), 0);
	CHECK_EQ(l.n, 0);
	CHECK_EQ(parse("\0\0\0\0", 4, &l, err, sizeof(err)), 0);
	CHECK_EQ(l.n, 0);
}

static void expect_fail(const char *data, size_t len, const char *why)
{
	struct text_list l = {0};
	char err[128];
	CHECK_EQ(parse(data, len, &l, err, sizeof(err)), -1);
	if (!strstr(err, why))
		fprintf(stderr, "  expected '%s', got '%s'\n", why, err);
	CHECK(strstr(err, why) != NULL);
	text_clear(&l);
}

static void test_parse_errors(void)
{
	expect_fail("A=1\0NoEquals\0", 13, "without '='");
	expect_fail("=value\0", 7, "empty key");
	expect_fail("A=1\0B=2", 7, "does not end with NUL");
	expect_fail("A=1", 3, "does not end with NUL");
	expect_fail("A=1\0A=2\0", 8, "more than once");
	expect_fail("A=1\0\0B=2\0", 9, "empty key=value pair");

	char buf[TEXT_MAX_VALUE + 100];
	/* Key of exactly 63 bytes is fine, 64 is not. */
	memset(buf, 'K', 63);
	buf[63] = '=';
	buf[64] = 'v';
	buf[65] = 0;
	struct text_list l = {0};
	char err[128];
	CHECK_EQ(parse(buf, 66, &l, err, sizeof(err)), 0);
	memset(buf, 'K', 64);
	buf[64] = '=';
	buf[65] = 'v';
	buf[66] = 0;
	expect_fail(buf, 67, "key longer");

	/* Value of exactly 8192 bytes is fine, 8193 is not. */
	buf[0] = 'V';
	buf[1] = '=';
	memset(buf + 2, 'x', TEXT_MAX_VALUE);
	buf[2 + TEXT_MAX_VALUE] = 0;
	CHECK_EQ(parse(buf, 3 + TEXT_MAX_VALUE, &l, err, sizeof(err)), 0);
	CHECK_EQ(strlen(text_get(&l, "V")), TEXT_MAX_VALUE);
	memset(buf + 2, 'x', TEXT_MAX_VALUE + 1);
	buf[3 + TEXT_MAX_VALUE] = 0;
	expect_fail(buf, 4 + TEXT_MAX_VALUE, "value longer");
	text_clear(&l);

	/* A NULL err buffer is allowed. */
	CHECK_EQ(text_parse((const uint8_t *)"x", 1, &l, NULL, 0), -1);
	text_clear(&l);
}

static double cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* n distinct keys "X-kNNNNN=v" (the last one repeating key `dup` when dup >= 0); returns the length. */
static size_t make_keys(uint8_t *buf, size_t cap, size_t n, long dup)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = (dup >= 0 && i == n - 1) ? (size_t)dup : i;
		int w = snprintf((char *)buf + len, cap - len, "X-k%05zu=v", k);
		if (w < 0 || (size_t)w + 1 >= cap - len)
			break;
		len += (size_t)w + 1; /* keep the NUL */
	}
	return len;
}

/*
 * A login's text is bounded at 64 KiB, which holds thousands of short distinct keys. Checking
 * each against all before it took a noticeable part of a second of the only event-loop thread,
 * before authentication; now a request has at most TEXT_MAX_KEYS keys and the check is linear.
 */
static void test_many_keys(void)
{
	enum { SEG = 65536 };
	uint8_t *buf = malloc(SEG);
	struct text_list l = {0};
	char err[128];

	size_t len = make_keys(buf, SEG, 6000, -1);
	CHECK(len > 60000);
	double t0 = cpu_ms();
	int rc = text_parse(buf, len, &l, err, sizeof(err));
	double spent = cpu_ms() - t0;
	printf("64 KiB of distinct keys: text_parse returned %d in %.2f ms of CPU\n", rc, spent);
	CHECK_EQ(rc, TEXT_TOO_MANY);
	CHECK(strstr(err, "more than 256 keys") != NULL);
	CHECK(spent < 20.0);
	text_clear(&l);

	/* Exactly the bound is fine, one more is too many. */
	len = make_keys(buf, SEG, TEXT_MAX_KEYS, -1);
	CHECK_EQ(text_parse(buf, len, &l, err, sizeof(err)), TEXT_OK);
	CHECK_EQ(l.n, TEXT_MAX_KEYS);
	CHECK_STR(text_get(&l, "X-k00255"), "v");
	text_clear(&l);
	len = make_keys(buf, SEG, TEXT_MAX_KEYS + 1, -1);
	CHECK_EQ(text_parse(buf, len, &l, err, sizeof(err)), TEXT_TOO_MANY);
	text_clear(&l);

	/* A repeat is found wherever it is: the last allowed key repeating the first, or a middle one. */
	len = make_keys(buf, SEG, TEXT_MAX_KEYS, 0);
	CHECK_EQ(text_parse(buf, len, &l, err, sizeof(err)), TEXT_MALFORMED);
	CHECK(strstr(err, "more than once") != NULL);
	text_clear(&l);
	len = make_keys(buf, SEG, 200, 137);
	CHECK_EQ(text_parse(buf, len, &l, err, sizeof(err)), TEXT_MALFORMED);
	CHECK(strstr(err, "more than once") != NULL);
	text_clear(&l);
	/* Keys that differ only in their last byte or in length are distinct. */
	static const char near[] = "Ab=1\0Ac=2\0A=3\0Abc=4\0";
	CHECK_EQ(parse(near, sizeof(near) - 1, &l, err, sizeof(err)), TEXT_OK);
	CHECK_EQ(l.n, 4);
	text_clear(&l);
	free(buf);
}

/* RFC 7143 6.1 key names: what a log line or an answer may echo holds no control bytes. */
static void test_key_characters(void)
{
	struct text_list l = {0};
	char err[128];
	static const char ok[] = "X-com.example+v@1_a=1\0X#Reg.Key=2\0";
	CHECK_EQ(parse(ok, sizeof(ok) - 1, &l, err, sizeof(err)), TEXT_OK);
	CHECK_EQ(l.n, 2);
	text_clear(&l);
	expect_fail("Bad Key=1\0", 10, "character");
	expect_fail("Key\n[fake] line=1\0", 19, "character");
	expect_fail("K\xc3\xa9=1\0", 6, "character");
	expect_fail("K\x7f=1\0", 5, "character");
	/* Values may hold any byte but NUL (aliases are UTF-8 text). */
	static const char v[] = "InitiatorAlias=caf\xc3\xa9 \x01\n\0";
	CHECK_EQ(parse(v, sizeof(v) - 1, &l, err, sizeof(err)), TEXT_OK);
	CHECK_STR(text_get(&l, "InitiatorAlias"), "caf\xc3\xa9 \x01\n");
	text_clear(&l);
}

static void test_edit(void)
{
	struct text_list l = {0};
	text_add(&l, "A", "1");
	text_add(&l, "B", "2");
	text_add(&l, "C", "3");
	text_set(&l, "B", "two");
	text_set(&l, "D", "4");
	CHECK_EQ(l.n, 4);
	CHECK_STR(text_get(&l, "B"), "two");
	text_remove(&l, "A");
	text_remove(&l, "nothing");
	CHECK_EQ(l.n, 3);
	CHECK_STR(l.kv[0].key, "B");
	CHECK_STR(l.kv[2].key, "D");
	for (int i = 0; i < 100; i++) {
		char k[16];
		snprintf(k, sizeof(k), "K%d", i);
		text_add(&l, k, k);
	}
	CHECK_EQ(l.n, 103);
	CHECK_STR(text_get(&l, "K99"), "K99");
	struct sbuf b = {0};
	text_encode(&l, &b);
	CHECK(b.len > 0 && b.data[b.len - 1] == 0);
	sbuf_free(&b);
	text_clear(&l);
	CHECK_EQ(l.n, 0);
	CHECK(l.kv == NULL);
}

static void test_iscsi_names(void)
{
	const char *good[] = {
		"iqn.2026-11.org.isthmus:disk1",
		"iqn.1994-05.com.example:host1",
		"iqn.2001-04.com.example",
		"iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
		"eui.02004567A425678D",
		"eui.0123456789abcdef",
		"naa.52004567BA64678D",
		"naa.62004567BA64678D0123456789ABCDEF",
	};
	char why[128];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		bool ok = iscsi_name_valid(good[i], why, sizeof(why));
		if (!ok)
			fprintf(stderr, "  rejected '%s': %s\n", good[i], why);
		CHECK(ok);
	}
	static const struct {
		const char *name, *why;
	} bad[] = {
		{"", "empty"},
		{"iqn.", "date"},
		{"iqn.2026-11", "date"},
		{"iqn.2026-11.", "date"},
		{"iqn.26-11.org.x", "date"},
		{"iqn.2026-13.org.x", "month"},
		{"iqn.2026-00.org.x", "month"},
		{"iqn.2026-11.org.Isthmus", "lower-case"},
		{"iqn.2026-11.org.x:disk 1", "lower-case"},
		{"iqn.2026-11.org.x:disk_1", "lower-case"},
		{"IQN.2026-11.org.x", "must start"},
		{"target1", "must start"},
		{"eui.0123456789abcde", "16 hex"},
		{"eui.0123456789abcdef0", "16 hex"},
		{"eui.0123456789abcdeg", "16 hex"},
		{"naa.0123456789abcdef01", "16 or 32"},
		{"naa.", "16 or 32"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = 0;
		bool ok = iscsi_name_valid(bad[i].name, why, sizeof(why));
		if (ok || !strstr(why, bad[i].why))
			fprintf(stderr, "  '%s': expected '%s', got %s '%s'\n", bad[i].name, bad[i].why,
				ok ? "accepted" : "rejected", why);
		CHECK(!ok);
		CHECK(strstr(why, bad[i].why) != NULL);
	}
	char longname[300] = "iqn.2026-11.org.isthmus:";
	while (strlen(longname) < 223)
		strcat(longname, "a");
	CHECK(iscsi_name_valid(longname, why, sizeof(why)));
	strcat(longname, "a");
	CHECK(!iscsi_name_valid(longname, why, sizeof(why)));
	CHECK(strstr(why, "223") != NULL);
	CHECK(!iscsi_name_valid("x", NULL, 0));
}

int main(void)
{
	test_parse();
	test_parse_errors();
	test_many_keys();
	test_key_characters();
	test_edit();
	test_iscsi_names();
	TEST_MAIN_END();
}
