/* A growable byte buffer for building text segments and JSON; allocation failure aborts. */
#ifndef ISTHMUS_UTIL_SBUF_H
#define ISTHMUS_UTIL_SBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct sbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void sbuf_reserve(struct sbuf *b, size_t extra);
void sbuf_append(struct sbuf *b, const void *p, size_t n);
void sbuf_putc(struct sbuf *b, char c);
/* nonnull: checked at the callers, so gcc's UBSan build has no NULL path to warn about inside. */
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3), nonnull(2)));
/* NUL-terminates without counting the NUL in len; returns the data as a string. */
const char *sbuf_cstr(struct sbuf *b);
void sbuf_reset(struct sbuf *b);
void sbuf_free(struct sbuf *b);

/* malloc/strdup/asprintf that abort on exhaustion: a daemon cannot serve without memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/*
 * A reusable buffer: afterwards *buf holds at least len bytes (contents not kept when it grows;
 * it grows to at least 4 KiB so that small requests share one size).
 */
void xbuf_reserve(uint8_t **buf, size_t *cap, size_t len);
char *xstrdup(const char *s);
/* Frees a secret (CHAP) string after overwriting it, so it does not linger in freed memory; NULL is fine. */
void secret_free(char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* The error text of a caller-supplied buffer (why may be NULL or whylen 0: nothing is written). */
void set_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
