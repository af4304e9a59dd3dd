#include "util/log.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

/*
 * Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 if it is not one:
 * overlong forms, surrogates and code points above U+10FFFF count as malformed.
 */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2, c = s[0] & 0x1f, min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3, c = s[0] & 0x0f, min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4, c = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/*
 * Code points a terminal or log viewer would act on rather than show: C1 controls, the line and
 * paragraph separators, and the bidirectional overrides that reorder what is displayed.
 */
static bool utf8_control(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

size_t log_escape(char *dst, size_t cap, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0, n = 0;
	while (s[n])
		n++;
	if (!cap)
		return 0;
	for (size_t i = 0; i < n;) {
		char esc[16];
		size_t elen = 0, take = 1;
		unsigned char c = s[i];
		uint32_t cp;
		if (c == '\\') {
			esc[elen++] = '\\', esc[elen++] = '\\';
		} else if (c >= 0x20 && c < 0x7f) {
			esc[elen++] = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			esc[elen++] = '\\', esc[elen++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c >= 0x80 && (take = utf8_len(s + i, n - i, &cp)) != 0) {
			if (utf8_control(cp)) {
				for (size_t k = 0; k < take; k++) {
					esc[elen++] = '\\', esc[elen++] = 'x';
					esc[elen++] = hex[s[i + k] >> 4], esc[elen++] = hex[s[i + k] & 15];
				}
			} else {
				for (size_t k = 0; k < take; k++)
					esc[elen++] = (char)s[i + k];
			}
		} else {
			take = 1;
			esc[elen++] = '\\', esc[elen++] = 'x';
			esc[elen++] = hex[c >> 4], esc[elen++] = hex[c & 15];
		}
		if (o + elen >= cap)
			break; /* whole escapes only: a cut one could read as something else */
		for (size_t k = 0; k < elen; k++)
			dst[o++] = esc[k];
		i += take;
	}
	dst[o] = 0;
	return o;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	if (level > current_level)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m < 0)
		msg[0] = 0;
	/*
	 * Messages carry names and keys from the network. Escaping here, once, keeps every call site
	 * from having to: a peer cannot start a line of its own or hide bytes from whoever reads it.
	 */
	char line[64 + 4 * sizeof(msg)];
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	size_t len = (size_t)n + log_escape(line + n, sizeof(line) - (size_t)n, msg);
	if (m >= (int)sizeof(msg))
		snprintf(line + len, sizeof(line) - len, "...");
	/* One fprintf per line keeps lines whole when several threads log. */
	fprintf(stderr, "%s\n", line);
}
