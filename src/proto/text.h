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

/*
 * Parse a complete text segment (all C-bit continuations already joined). Padding NULs at the
 * end are ignored. Returns 0, or -1 with a message in err for a malformed segment (no '=',
 * empty or overlong key, overlong value, a key given twice).
 */
int text_parse(const uint8_t *data, size_t len, struct text_list *out, char *err, size_t errlen);
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
