/*
 * iSCSI text segments (RFC 7143 section 6): NUL-terminated key=value pairs, used by Login and
 * Text PDUs. A text_list keeps the pairs in order; keys and values are owned copies.
 */
#ifndef ISTHMUS_PROTO_TEXT_H
#define ISTHMUS_PROTO_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/sbuf.h"

struct text_kv {
	char *key;
	char *value;
};

struct text_list {
	struct text_kv *kv;
	size_t n;
	size_t cap;
};

/* Longest key and value this implementation accepts (RFC 7143 6.1: key 63, value 8192/255). */
#define TEXT_MAX_KEY 63
#define TEXT_MAX_VALUE 8192
/* Values of the negotiated keys (numbers, booleans, lists) are at most 255 bytes (RFC 7143 6.1). */
#define TEXT_MAX_SIMPLE_VALUE 255
/*
 * Most keys one request may carry. RFC 7143 defines about 30 keys and a login or Text request
 * that offers every one of them, CHAP included, plus vendor X- keys stays far below 100; 256
 * leaves room for extensions while bounding what one request costs, and what its answer holds
 * (an unknown key is answered NotUnderstood: 256 of them make about 20 KiB).
 */
#define TEXT_MAX_KEYS 256

enum text_parse_result {
	TEXT_OK = 0,
	TEXT_MALFORMED = -1, /* not a valid segment: the request is a protocol error */
	TEXT_TOO_MANY = -2,  /* more than TEXT_MAX_KEYS pairs: refuse it for lack of resources */
};

/*
 * Parse a complete text segment (all C-bit continuations already joined). Padding NULs at the
 * end are ignored. Returns TEXT_OK, or a negative enum text_parse_result with a message in why:
 * TEXT_MALFORMED for no '=', an empty or overlong key, a key with a character RFC 7143 does not
 * allow, an overlong value, a key given twice; TEXT_TOO_MANY beyond TEXT_MAX_KEYS pairs. Time
 * and memory are linear in len.
 */
int text_parse(const uint8_t *data, size_t len, struct text_list *out, char *why, size_t whylen);
const char *text_get(const struct text_list *l, const char *key);
bool text_has(const struct text_list *l, const char *key);
void text_add(struct text_list *l, const char *key, const char *value);
/* Replace the value of key if present, else add it. */
void text_set(struct text_list *l, const char *key, const char *value);
void text_remove(struct text_list *l, const char *key);
/* Append "key=value\0" for every pair. */
void text_encode(const struct text_list *l, struct sbuf *out);
void text_clear(struct text_list *l);

#endif
