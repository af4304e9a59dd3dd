/*
 * Log lines carry names and keys from the network: the logging layer escapes whatever could
 * start a forged line or hide bytes, so no call site has to.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "util/log.h"

static void check_escape(const char *in, const char *want)
{
	char out[256];
	size_t n = log_escape(out, sizeof(out), in);
	if (strcmp(out, want) != 0)
		fprintf(stderr, "  log_escape: got \"%s\", want \"%s\"\n", out, want);
	CHECK_STR(out, want);
	CHECK_EQ(n, strlen(want));
}

static void test_escape(void)
{
	check_escape("iqn.2026-11.org.isthmus:host", "iqn.2026-11.org.isthmus:host");
	check_escape("a\nb", "a\\nb");
	check_escape("a\r\n2026-01-01T00:00:00.000Z error: fake", "a\\r\\n2026-01-01T00:00:00.000Z error: fake");
	check_escape("tab\there", "tab\\there");
	check_escape("\x01\x1b[31mred\x7f", "\\x01\\x1b[31mred\\x7f");
	check_escape("back\\slash", "back\\\\slash");
	/* Well-formed UTF-8 stays readable. */
	check_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	/* Malformed UTF-8: stray continuation, truncated sequence, overlong '/', surrogate, above U+10FFFF. */
	check_escape("\x80x", "\\x80x");
	check_escape("\xc3", "\\xc3");
	check_escape("\xe2\x82", "\\xe2\\x82");
	check_escape("\xc0\xaf", "\\xc0\\xaf");
	check_escape("\xed\xa0\x80", "\\xed\\xa0\\x80");
	check_escape("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");
	check_escape("\xff\xfe", "\\xff\\xfe");
	/* Unicode controls: NEL (C1), LINE SEPARATOR, RIGHT-TO-LEFT OVERRIDE. */
	check_escape("a\xc2\x85z", "a\\xc2\\x85z");
	check_escape("a\xe2\x80\xa8z", "a\\xe2\\x80\\xa8z");
	check_escape("a\xe2\x80\xaez", "a\\xe2\\x80\\xaez");

	/* Output that does not fit ends before an escape, never inside one. */
	char small[6];
	CHECK_EQ(log_escape(small, sizeof(small), "ab\n\ncd"), 4);
	CHECK_STR(small, "ab\\n");
	CHECK_EQ(log_escape(small, sizeof(small), "abcd\n"), 4);
	CHECK_STR(small, "abcd");
	CHECK_EQ(log_escape(small, 0, "x"), 0);
}

/* Run log_msg with standard error sent to a file; returns what it wrote (malloc'd). */
static char *capture(void (*fn)(void))
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	unlink(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	off_t size = lseek(fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)size + 1);
	if (pread(fd, buf, (size_t)size, 0) != size)
		buf[0] = 0;
	close(fd);
	return buf;
}

static void log_forged(void)
{
	/* What a login with such an InitiatorName, or a key, would log. */
	log_warn("login from %s refused: %s",
		 "iqn.2026-11.org.x:a\n2026-01-01T00:00:00.000Z error: [fake] root logged in", "key\r\x1b[2Kgone");
}

static void log_long(void)
{
	static char big[4000];
	memset(big, '\n', sizeof(big) - 1);
	log_info("%s", big);
}

static size_t count_char(const char *s, char c)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_log_line(void)
{
	char *out = capture(log_forged);
	CHECK(out != NULL);
	if (!out)
		return;
	printf("logged: %s", out);
	CHECK_EQ(count_char(out, '\n'), 1);
	CHECK(out[strlen(out) - 1] == '\n');
	CHECK(strchr(out, '\r') == NULL);
	CHECK(strchr(out, '\x1b') == NULL);
	CHECK(strstr(out, "warn: login from iqn.2026-11.org.x:a\\n2026-01-01T00:00:00.000Z error: [fake] root "
			  "logged in refused: key\\r\\x1b[2Kgone\n") != NULL);
	free(out);

	/* A message of nothing but newlines is still one line, cut at a whole escape, marked as cut. */
	out = capture(log_long);
	CHECK(out != NULL);
	if (!out)
		return;
	CHECK_EQ(count_char(out, '\n'), 1);
	size_t len = strlen(out);
	CHECK(len > 2000);
	CHECK(len > 4 && strcmp(out + len - 4, "...\n") == 0);
	CHECK(strstr(out, "\\n\\n...") != NULL);
	free(out);
}

int main(void)
{
	test_escape();
	test_log_line();
	TEST_MAIN_END();
}
