/* Logging: one line per event, with a level and the subsystem that knows why. */
#ifndef ISTHMUS_UTIL_LOG_H
#define ISTHMUS_UTIL_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/*
 * Writes one line to standard error. The formatted message is escaped (log_escape), so names,
 * keys and paths from peers can be logged as they are.
 */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Copy src to dst (cap bytes, NUL-terminated) with every byte that could forge or hide part of
 * a log line escaped: control characters as \n, \r, \t or \xNN, a backslash as \\, bytes that
 * are not well-formed UTF-8 and Unicode controls (C1, line separators, bidirectional
 * overrides) as \xNN per byte. Printable ASCII and other UTF-8 pass unchanged. Output that
 * does not fit is cut before an escape, never inside one. Returns the length written.
 */
size_t log_escape(char *dst, size_t cap, const char *src);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_get_level() >= LOG_DEBUG)                                                  \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                           \
	} while (0)

#endif
