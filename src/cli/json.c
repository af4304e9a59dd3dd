/* A small JSON writer for the CLI's --json output. */
#include "cli/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void sep(struct json *j, const char *key)
{
	if (j->depth > 0 && j->count[j->depth - 1]++)
		sbuf_putc(&j->b, ',');
	if (key) {
		json_escape(&j->b, key);
		sbuf_putc(&j->b, ':');
	}
}

void json_escape(struct sbuf *b, const char *s)
{
	sbuf_putc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': sbuf_append(b, "\\\"", 2); break;
		case '\\': sbuf_append(b, "\\\\", 2); break;
		case '\n': sbuf_append(b, "\\n", 2); break;
		case '\r': sbuf_append(b, "\\r", 2); break;
		case '\t': sbuf_append(b, "\\t", 2); break;
		default:
			if (*p < 0x20 || *p >= 0x7f)
				sbuf_printf(b, "\\u%04x", *p);
			else
				sbuf_putc(b, (char)*p);
		}
	}
	sbuf_putc(b, '"');
}

void json_open(struct json *j, const char *key, char bracket)
{
	sep(j, key);
	sbuf_putc(&j->b, bracket);
	if (j->depth < JSON_MAX_DEPTH)
		j->count[j->depth] = 0;
	j->depth++;
}

void json_close(struct json *j, char bracket)
{
	sbuf_putc(&j->b, bracket);
	j->depth--;
}

void json_str(struct json *j, const char *key, const char *val)
{
	sep(j, key);
	if (val)
		json_escape(&j->b, val);
	else
		sbuf_append(&j->b, "null", 4);
}

void json_u64(struct json *j, const char *key, uint64_t v)
{
	sep(j, key);
	sbuf_printf(&j->b, "%" PRIu64, v);
}

void json_i64(struct json *j, const char *key, int64_t v)
{
	sep(j, key);
	sbuf_printf(&j->b, "%" PRId64, v);
}

void json_bool(struct json *j, const char *key, bool v)
{
	sep(j, key);
	sbuf_printf(&j->b, "%s", v ? "true" : "false");
}

void json_print(struct json *j, FILE *f)
{
	fwrite(j->b.data, 1, j->b.len, f);
	fputc('\n', f);
	sbuf_free(&j->b);
}
