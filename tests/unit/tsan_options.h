/*
 * Included by the unit tests built in build-tsan: under ThreadSanitizer a report fails the test
 * (exit status 66) even when it is run by hand, not only through tests/run.sh. One file only of
 * a test program may include it (it defines the function ThreadSanitizer asks for its options).
 */
#ifndef ISTHMUS_TESTS_UNIT_TSAN_OPTIONS_H
#define ISTHMUS_TESTS_UNIT_TSAN_OPTIONS_H

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "halt_on_error=1:exitcode=66"; }
#endif
#endif

#endif
