#include "proto/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int text_fail(char *why, size_t whylen, const char *msg)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
	return TEXT_MALFORMED;
}

static int text_too_many(char *why, size_t whylen)
{
	if (why && whylen)
		snprintf(why, whylen, "more than %u keys in one request", TEXT_MAX_KEYS);
	return TEXT_TOO_MANY;
}

static char *copy_bytes(const uint8_t *p, size_t n)
{
	char *s = xmalloc(n + 1);
	memcpy(s, p, n);
	s[n] = 0;
	return s;
}

/* RFC 7143 6.1: key names are letters, digits, '.', '-', '+', '@' and '_' ("X#" extensions add '#'). */
static bool key_char_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
	       c == '+' || c == '@' || c == '_' || c == '#';
}

/*
 * The keys seen so far, for the once-only rule: open addressing over indexes into the list, at
 * most half full, so each key costs one hash and a probe or two instead of a walk of the list.
 */
#define KEYSET_SLOTS 512u
_Static_assert(KEYSET_SLOTS >= 2 * TEXT_MAX_KEYS, "the key set stays at most half full");

struct keyset {
	uint16_t slot[KEYSET_SLOTS]; /* list index + 1; 0 = empty */
};

static uint32_t key_hash(const char *k, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)k[i]) * 16777619u;
	return h;
}

/* Adds key (list entry idx) unless an equal key is there already; returns false for a repeat. */
static bool keyset_add(struct keyset *ks, const struct text_list *l, size_t idx, const char *key, size_t klen)
{
	for (uint32_t i = key_hash(key, klen) % KEYSET_SLOTS;; i = (i + 1) % KEYSET_SLOTS) {
		uint16_t s = ks->slot[i];
		if (!s) {
			ks->slot[i] = (uint16_t)(idx + 1);
			return true;
		}
		const char *other = l->kv[s - 1].key;
		if (strncmp(other, key, klen) == 0 && other[klen] == 0)
			return false;
	}
}

int text_parse(const uint8_t *data, size_t len, struct text_list *out, char *why, size_t whylen)
{
	if (out->n > TEXT_MAX_KEYS)
		return text_too_many(why, whylen);
	struct keyset ks;
	memset(&ks, 0, sizeof(ks));
	for (size_t i = 0; i < out->n; i++)
		keyset_add(&ks, out, i, out->kv[i].key, strlen(out->kv[i].key));
	size_t pos = 0;
	while (pos < len) {
		const uint8_t *start = data + pos;
		const uint8_t *nul = memchr(start, 0, len - pos);
		size_t plen = nul ? (size_t)(nul - start) : len - pos;
		if (plen == 0) {
			/* Only NUL padding may follow the last pair. */
			for (size_t i = pos; i < len; i++)
				if (data[i])
					return text_fail(why, whylen, "empty key=value pair inside a text segment");
			break;
		}
		if (!nul)
			return text_fail(why, whylen, "text segment does not end with NUL");
		const uint8_t *eq = memchr(start, '=', plen);
		if (!eq)
			return text_fail(why, whylen, "key=value pair without '='");
		size_t klen = (size_t)(eq - start);
		size_t vlen = plen - klen - 1;
		if (klen == 0)
			return text_fail(why, whylen, "empty key");
		if (klen > TEXT_MAX_KEY)
			return text_fail(why, whylen, "key longer than 63 bytes");
		for (size_t i = 0; i < klen; i++)
			if (!key_char_ok(start[i]))
				return text_fail(why, whylen, "key with a character RFC 7143 does not allow");
		if (vlen > TEXT_MAX_VALUE)
			return text_fail(why, whylen, "value longer than 8192 bytes");
		if (out->n == TEXT_MAX_KEYS)
			return text_too_many(why, whylen);
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 16;
			out->kv = xrealloc(out->kv, out->cap * sizeof(*out->kv));
		}
		/* Checked before the copy: a repeat costs no allocation. */
		if (!keyset_add(&ks, out, out->n, (const char *)start, klen))
			return text_fail(why, whylen, "key given more than once");
		out->kv[out->n].key = copy_bytes(start, klen);
		out->kv[out->n].value = copy_bytes(eq + 1, vlen);
		out->n++;
		pos += plen + 1;
	}
	return TEXT_OK;
}

static struct text_kv *text_find(const struct text_list *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->kv[i].key, key) == 0)
			return &l->kv[i];
	return NULL;
}

const char *text_get(const struct text_list *l, const char *key)
{
	struct text_kv *kv = text_find(l, key);
	return kv ? kv->value : NULL;
}

bool text_has(const struct text_list *l, const char *key) { return text_find(l, key) != NULL; }

void text_add(struct text_list *l, const char *key, const char *value)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->kv = xrealloc(l->kv, l->cap * sizeof(*l->kv));
	}
	l->kv[l->n].key = xstrdup(key);
	l->kv[l->n].value = xstrdup(value);
	l->n++;
}

void text_set(struct text_list *l, const char *key, const char *value)
{
	struct text_kv *kv = text_find(l, key);
	if (!kv) {
		text_add(l, key, value);
		return;
	}
	free(kv->value);
	kv->value = xstrdup(value);
}

void text_remove(struct text_list *l, const char *key)
{
	struct text_kv *kv = text_find(l, key);
	if (!kv)
		return;
	free(kv->key);
	free(kv->value);
	size_t i = (size_t)(kv - l->kv);
	memmove(&l->kv[i], &l->kv[i + 1], (l->n - i - 1) * sizeof(*l->kv));
	l->n--;
}

void text_encode(const struct text_list *l, struct sbuf *out)
{
	for (size_t i = 0; i < l->n; i++) {
		sbuf_printf(out, "%s=%s", l->kv[i].key, l->kv[i].value);
		sbuf_putc(out, 0);
	}
}

void text_clear(struct text_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->kv[i].key);
		free(l->kv[i].value);
	}
	free(l->kv);
	l->kv = NULL;
	l->n = l->cap = 0;
}
