/* The shared reservation record's codec (format in lu_state.c). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/lu_record.h"
#include "util/parse.h"

void lu_ident_set(struct lu_ident *id, const char *port, uint16_t rel, bool atp)
{
	free(id->port);
	id->port = port ? xstrdup(port) : NULL;
	id->rel = rel;
	id->atp = atp;
}

void lu_event_free(struct lu_event *e)
{
	free(e->except.port);
	for (size_t i = 0; i < e->nids; i++)
		free(e->ids[i].port);
	free(e->ids);
	memset(e, 0, sizeof(*e));
}

static void put_ident(struct sbuf *b, const struct lu_ident *id)
{
	sbuf_printf(b, "%u %d ", id->rel, id->atp);
	pr_name_put(b, id->port);
}

void lu_record_encode(const struct scsi_lu *lu, uint64_t evseq, const struct lu_event *ev, size_t nev,
		      struct sbuf *b)
{
	const struct pr_state *pr = &lu->pr;

	sbuf_printf(b, "isthmus-lu 1\ngeneration %" PRIu32 "\naptpl %d\n", pr->generation, pr->aptpl);
	pr_regs_put(b, pr);
	if (lu->rsv_held) {
		sbuf_printf(b, "rsv2 %u ", lu->rsv_rel);
		pr_name_put(b, lu->rsv_port);
		sbuf_putc(b, '\n');
	}
	sbuf_printf(b, "evseq %" PRIu64 "\n", evseq);
	for (size_t i = 0; i < nev; i++) {
		const struct lu_event *e = &ev[i];
		sbuf_printf(b, "ev %" PRIu64 " %" PRIu32 " %d %u ", e->seq, e->ua, e->all, e->except.rel);
		if (e->except.port)
			pr_name_put(b, e->except.port);
		else
			sbuf_putc(b, '-');
		sbuf_printf(b, " %zu\n", e->nids);
		for (size_t k = 0; k < e->nids; k++) {
			sbuf_printf(b, "id ");
			put_ident(b, &e->ids[k]);
			sbuf_putc(b, '\n');
		}
	}
}

static bool num(const char *s, int base, uint64_t max, uint64_t *v) { return parse_uint(s, base, 0, max, v) == 0; }


void lu_record_free(struct lu_record *d)
{
	pr_free(&d->pr);
	for (size_t i = 0; i < d->nev; i++)
		lu_event_free(&d->ev[i]);
	d->nev = 0;
}

bool lu_record_decode(char *text, struct lu_record *d)
{
	char *save = NULL, *line, *f[8], port[256];
	uint64_t v, key, rel, atp, type = 0, holder = UINT64_MAX, want_ids = 0;
	bool held = false, first = true;
	struct lu_event *e = NULL;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int n = pr_record_fields(line, f, 7);

		if (first) {
			if (n != 2 || strcmp(f[0], "isthmus-lu") != 0 || strcmp(f[1], "1") != 0)
				return false;
			first = false;
			continue;
		}
		if (want_ids) {
			if (n != 4 || strcmp(f[0], "id") != 0 || !num(f[1], 10, 0xffff, &rel) || !num(f[2], 10, 1, &atp) ||
			    !pr_name_get(f[3], port, sizeof(port)))
				return false;
			lu_ident_set(&e->ids[e->nids++], port, (uint16_t)rel, atp);
			want_ids--;
			continue;
		}
		if (n == 2 && strcmp(f[0], "generation") == 0 && num(f[1], 10, UINT32_MAX, &v)) {
			d->pr.generation = (uint32_t)v;
		} else if (n == 2 && strcmp(f[0], "aptpl") == 0 && num(f[1], 10, 1, &v)) {
			d->pr.aptpl = v;
		} else if (n == 3 && strcmp(f[0], "reservation") == 0 && num(f[1], 10, 255, &type) &&
			   pr_type_valid((uint8_t)type) &&
			   (strcmp(f[2], "-") == 0 || num(f[2], 10, PR_MAX_REGISTRATIONS, &holder))) {
			held = true;
		} else if (n == 5 && strcmp(f[0], "reg") == 0 && num(f[1], 16, UINT64_MAX, &key) &&
			   num(f[2], 10, 0xffff, &rel) && num(f[3], 10, 1, &atp) && pr_name_get(f[4], port, sizeof(port)) &&
			   !pr_find_exact(&d->pr, port, (uint16_t)rel, atp)) {
			if (!pr_add_reg(&d->pr, port, (uint16_t)rel, atp, key))
				return false;
		} else if (n == 3 && strcmp(f[0], "rsv2") == 0 && num(f[1], 10, 0xffff, &rel) &&
			   pr_name_get(f[2], d->rsv_port, sizeof(d->rsv_port))) {
			d->rsv_held = true;
			d->rsv_rel = (uint16_t)rel;
		} else if (n == 2 && strcmp(f[0], "evseq") == 0 && num(f[1], 10, UINT64_MAX, &d->evseq)) {
			continue;
		} else if (n == 7 && strcmp(f[0], "ev") == 0 && d->nev < LU_SHARED_MAX_EVENTS &&
			   num(f[6], 10, LU_SHARED_EVENT_MAX_IDS, &want_ids)) {
			e = &d->ev[d->nev++];
			uint64_t seq, ua, all, exrel;
			if (!num(f[1], 10, UINT64_MAX, &seq) || !num(f[2], 10, UINT32_MAX, &ua) || !num(f[3], 10, 1, &all) ||
			    !num(f[4], 10, 0xffff, &exrel))
				return false;
			e->seq = seq;
			e->ua = (uint32_t)ua;
			e->all = all;
			if (strcmp(f[5], "-") != 0) {
				if (!pr_name_get(f[5], port, sizeof(port)))
					return false;
				lu_ident_set(&e->except, port, (uint16_t)exrel, false);
			}
			e->ids = xcalloc(want_ids ? want_ids : 1, sizeof(*e->ids));
		} else {
			return false;
		}
	}
	if (first || want_ids)
		return false;
	if (held) {
		bool ar = pr_all_registrants((uint8_t)type);
		if (ar != (holder == UINT64_MAX) || (!ar && holder >= d->pr.nregs))
			return false;
		d->pr.held = true;
		d->pr.type = (uint8_t)type;
		d->pr.holder = ar ? NULL : d->pr.regs[holder];
	}
	return true;
}

