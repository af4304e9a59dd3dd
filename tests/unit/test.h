/* A tiny unit-test harness: CHECK records failures and goes on; main returns non-zero on any. */
#ifndef ISTHMUS_TESTS_UNIT_TEST_H
#define ISTHMUS_TESTS_UNIT_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		test_checks++;                                                                     \
		if (!(cond)) {                                                                     \
			test_failures++;                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long va_ = (long long)(a), vb_ = (long long)(b);                             \
		test_checks++;                                                                     \
		if (va_ != vb_) {                                                                  \
			test_failures++;                                                           \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__, \
				__LINE__, #a, va_, #b, vb_);                                       \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *sa_ = (a), *sb_ = (b);                                                 \
		test_checks++;                                                                     \
		if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                       \
			test_failures++;                                                           \
			fprintf(stderr, "%s:%d: CHECK_STR failed: \"%s\" != \"%s\"\n", __FILE__,     \
				__LINE__, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");             \
		}                                                                                  \
	} while (0)

#define TEST_MAIN_END()                                                                            \
	do {                                                                                       \
		printf("%d checks, %d failed\n", test_checks, test_failures);                     \
		return test_failures ? 1 : 0;                                                      \
	} while (0)

#endif
