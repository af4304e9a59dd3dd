/*
 * The text of the APTPL state (pr_persist.c) and of a gateway group's shared record: names as
 * one token, the change records a PERSISTENT RESERVE OUT leaves, and their replay onto a state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_int.h"
#include "util/parse.h"
#include "util/sbuf.h"
#include "util/hex.h"

/* FNV-1a, 64 bits: the checksum of a journal batch, against torn or partial writes. */
uint64_t pr_fnv64(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Names go into the files as one token: anything but printable non-blank ASCII is %XX. */
void pr_name_put(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		uint8_t c = (uint8_t)*s;

		if (c < 0x21 || c > 0x7e || c == '%')
			sbuf_printf(b, "%%%02x", c);
		else
			sbuf_putc(b, (char)c);
	}
}

/* Undoes pr_name_put into out (cap bytes with the NUL); false if malformed or too long. */
bool pr_name_get(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (; *in; in++) {
		char c = *in;

		if (c == '%') {
			int hi = hex_digit_value(in[1]), lo = hi >= 0 ? hex_digit_value(in[2]) : -1;
			if (hi < 0 || lo < 0)
				return false;
			c = (char)(hi << 4 | lo);
			in += 2;
		}
		if (n + 1 >= cap || c == 0)
			return false;
		out[n++] = c;
	}
	out[n] = 0;
	return n > 0;
}

/* Splits a line at single spaces, in place; returns the field count (max + 1: more than max). */
int pr_record_fields(char *line, char **f, int max)
{
	int n = 0;

	while (*line && n < max) {
		f[n++] = line;
		while (*line && *line != ' ')
			line++;
		if (*line)
			*line++ = 0;
	}
	return *line ? max + 1 : n;
}

bool pr_parse_u64(const char *s, int base, uint64_t max, uint64_t *v)
{
	return parse_uint(s, base, 0, max, v) == 0;
}

/* ---- change records ---- */

static void reg_identity(struct sbuf *b, const struct pr_reg *g)
{
	sbuf_printf(b, "%u %d ", g->rel_port, g->all_tg_pt);
	pr_name_put(b, g->port);
}

void pr_log_put(struct pr_state *pr, const struct pr_reg *g)
{
	if (!pr->log)
		return;
	sbuf_printf(pr->log, "+ %016" PRIx64 " ", g->key);
	reg_identity(pr->log, g);
	sbuf_putc(pr->log, '\n');
}

void pr_log_del(struct pr_state *pr, const struct pr_reg *g)
{
	if (!pr->log)
		return;
	sbuf_printf(pr->log, "- ");
	reg_identity(pr->log, g);
	sbuf_putc(pr->log, '\n');
}

void pr_log_clear(struct pr_state *pr)
{
	if (pr->log)
		sbuf_printf(pr->log, "clear\n");
}

/* The records that end every batch entry: the reservation, the generation and APTPL as they are. */
void pr_log_tail(struct pr_state *pr)
{
	if (!pr->held) {
		sbuf_printf(pr->log, "norsv\n");
	} else if (pr_all_registrants(pr->type) || !pr->holder) {
		sbuf_printf(pr->log, "rsv %u\n", pr->type);
	} else {
		sbuf_printf(pr->log, "rsv %u ", pr->type);
		reg_identity(pr->log, pr->holder);
		sbuf_putc(pr->log, '\n');
	}
	sbuf_printf(pr->log, "gen %" PRIu32 "\naptpl %d\n", pr->generation, pr->aptpl);
}

/* Applies one record to the state; false if it is malformed or does not fit the state. */
bool pr_apply_record(struct pr_state *pr, char *line)
{
	char *f[8], port[256];
	int n = pr_record_fields(line, f, 7);
	uint64_t key, rel, atp, v;

	if (n == 1 && strcmp(f[0], "clear") == 0) {
		pr_remove_all(pr);
		return true;
	}
	if (n == 1 && strcmp(f[0], "norsv") == 0) {
		pr->held = false;
		pr->holder = NULL;
		return true;
	}
	if (n == 2 && strcmp(f[0], "gen") == 0 && pr_parse_u64(f[1], 10, UINT32_MAX, &v)) {
		pr->generation = (uint32_t)v;
		return true;
	}
	if (n == 2 && strcmp(f[0], "aptpl") == 0 && pr_parse_u64(f[1], 10, 1, &v)) {
		pr->aptpl = v;
		return true;
	}
	if (n == 2 && strcmp(f[0], "rsv") == 0 && pr_parse_u64(f[1], 10, 255, &v) && pr_all_registrants((uint8_t)v)) {
		pr->held = true;
		pr->type = (uint8_t)v;
		pr->holder = NULL;
		return true;
	}
	if (n == 5 && strcmp(f[0], "rsv") == 0 && pr_parse_u64(f[1], 10, 255, &v) && pr_type_valid((uint8_t)v) &&
	    !pr_all_registrants((uint8_t)v) && pr_parse_u64(f[2], 10, 0xffff, &rel) && pr_parse_u64(f[3], 10, 1, &atp) &&
	    pr_name_get(f[4], port, sizeof(port))) {
		struct pr_reg *g = pr_find_exact(pr, port, (uint16_t)rel, atp);
		if (!g)
			return false;
		pr->held = true;
		pr->type = (uint8_t)v;
		pr->holder = g;
		return true;
	}
	if (n == 5 && strcmp(f[0], "+") == 0 && pr_parse_u64(f[1], 16, UINT64_MAX, &key) &&
	    pr_parse_u64(f[2], 10, 0xffff, &rel) && pr_parse_u64(f[3], 10, 1, &atp) && pr_name_get(f[4], port, sizeof(port))) {
		struct pr_reg *g = pr_find_exact(pr, port, (uint16_t)rel, atp);
		if (g)
			g->key = key;
		else if (!pr_add_reg(pr, port, (uint16_t)rel, atp, key))
			return false;
		return true;
	}
	if (n == 4 && strcmp(f[0], "-") == 0 && pr_parse_u64(f[1], 10, 0xffff, &rel) && pr_parse_u64(f[2], 10, 1, &atp) &&
	    pr_name_get(f[3], port, sizeof(port))) {
		struct pr_reg *g = pr_find_exact(pr, port, (uint16_t)rel, atp);
		if (!g)
			return false;
		pr_remove_reg(pr, g);
		return true;
	}
	return false;
}
