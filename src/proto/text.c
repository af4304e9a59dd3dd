#include "proto/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int text_fail(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
	return -1;
}

int text_parse(const uint8_t *data, size_t len, struct text_list *out, char *err, size_t errlen)
{
	size_t pos = 0;
	while (pos < len) {
		const uint8_t *start = data + pos;
		const uint8_t *nul = memchr(start, 0, len - pos);
		size_t plen = nul ? (size_t)(nul - start) : len - pos;
		if (plen == 0) {
			/* Only NUL padding may follow the last pair. */
			for (size_t i = pos; i < len; i++)
				if (data[i])
					return text_fail(err, errlen, "empty key=value pair inside a text segment");
			break;
		}
		if (!nul)
			return text_fail(err, errlen, "text segment does not end with NUL");
		const uint8_t *eq = memchr(start, '=', plen);
		if (!eq)
			return text_fail(err, errlen, "key=value pair without '='");
		size_t klen = (size_t)(eq - start);
		size_t vlen = plen - klen - 1;
		if (klen == 0)
			return text_fail(err, errlen, "empty key");
		if (klen > TEXT_MAX_KEY)
			return text_fail(err, errlen, "key longer than 63 bytes");
		if (vlen > TEXT_MAX_VALUE)
			return text_fail(err, errlen, "value longer than 8192 bytes");
		char *key = strndup((const char *)start, klen);
		char *value = strndup((const char *)eq + 1, vlen);
		if (!key || !value) {
			free(key);
			free(value);
			return text_fail(err, errlen, "out of memory");
		}
		if (text_has(out, key)) {
			free(key);
			free(value);
			return text_fail(err, errlen, "key given more than once");
		}
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 16;
			out->kv = xrealloc(out->kv, out->cap * sizeof(*out->kv));
		}
		out->kv[out->n].key = key;
		out->kv[out->n].value = value;
		out->n++;
		pos += plen + 1;
	}
	return 0;
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
