/*
 * Persistent reservations (SPC-4 5.13, 6.15, 6.16). Registrations belong to an I_T nexus
 * identity — initiator port name plus relative target port — not to a session, so they
 * survive logouts. With APTPL the state is also kept in state_dir across restarts.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scsi/scsi_int.h"
#include "util/log.h"
#include "util/sbuf.h"

enum pr_type {
	PR_WE = 1, PR_EA = 3, PR_WE_RO = 5, PR_EA_RO = 6, PR_WE_AR = 7, PR_EA_AR = 8,
};

static bool type_valid(uint8_t t)
{
	return t == PR_WE || t == PR_EA || t == PR_WE_RO || t == PR_EA_RO || t == PR_WE_AR || t == PR_EA_AR;
}

static bool all_registrants(uint8_t t) { return t == PR_WE_AR || t == PR_EA_AR; }

static bool reg_matches(const struct pr_reg *g, const char *port, uint16_t rel_port)
{
	return strcmp(g->port, port) == 0 && (g->all_tg_pt || g->rel_port == rel_port);
}

static struct pr_reg *find_reg(struct pr_state *pr, const struct scsi_nexus *nx, size_t *idx)
{
	for (size_t i = 0; i < pr->nregs; i++) {
		if (reg_matches(&pr->regs[i], nx->initiator_port, nx->rel_port_id)) {
			if (idx)
				*idx = i;
			return &pr->regs[i];
		}
	}
	return NULL;
}

static bool is_holder(const struct pr_state *pr, size_t idx)
{
	return pr->held && (all_registrants(pr->type) || pr->holder == idx);
}

static void remove_reg(struct pr_state *pr, size_t i)
{
	if (pr->held && !all_registrants(pr->type)) {
		if (pr->holder == i)
			pr->held = false;
		else if (pr->holder > i)
			pr->holder--;
	}
	memmove(&pr->regs[i], &pr->regs[i + 1], (pr->nregs - i - 1) * sizeof(*pr->regs));
	pr->nregs--;
	if (pr->nregs == 0)
		pr->held = false;
}

/* Raises `ua` for every logged-in nexus that a registration (or any, when g is NULL) names. */
static void ua_for_reg(struct scsi_lu *lu, const struct pr_reg *g, uint32_t ua, uint64_t except)
{
	struct scsi_target *t = lu->t;

	for (size_t i = 0; i < t->nnexus; i++) {
		const struct scsi_nexus *nx = &t->nexus[i].nx;

		if (nx->id != except && reg_matches(g, nx->initiator_port, nx->rel_port_id))
			lu_ua_set_nexus(lu, nx->id, ua);
	}
}

bool pr_conflict(struct scsi_req *r)
{
	struct pr_state *pr = &r->lu->pr;
	size_t idx;
	const struct pr_reg *me;
	uint16_t flags = r->op->flags;

	if (!pr->held || (flags & OPF_PR_OK))
		return false;
	me = find_reg(pr, r->cmd->nexus, &idx);
	if (me && is_holder(pr, idx))
		return false;
	/* Registrants-only and all-registrants types let every registrant through. */
	if (me && pr->type != PR_WE && pr->type != PR_EA)
		return false;
	if (pr->type == PR_WE || pr->type == PR_WE_RO || pr->type == PR_WE_AR)
		return !(flags & OPF_PR_WE_OK);
	return true;
}

void pr_free(struct pr_state *pr)
{
	free(pr->regs);
	memset(pr, 0, sizeof(*pr));
}

/* Power loss: without APTPL every registration and the reservation go away. */
void pr_nexus_reset(struct scsi_lu *lu)
{
	if (!lu->pr.aptpl)
		pr_free(&lu->pr);
}

static char *state_path(const struct scsi_lu *lu, const char *suffix)
{
	return xasprintf("%s/lu-%u.pr%s", lu->state_dir, lu->lun, suffix);
}

/* Writes the state to a temporary file, syncs it and renames it over the old one. */
static int pr_save(struct scsi_lu *lu)
{
	struct pr_state *pr = &lu->pr;
	struct sbuf b = { 0 };
	char *tmp, *path;
	int fd, rc = 0;

	if (!lu->state_dir)
		return 0;
	sbuf_printf(&b, "isthmus-pr 1\ngeneration %" PRIu32 "\naptpl %d\n", pr->generation, pr->aptpl);
	if (pr->held)
		sbuf_printf(&b, "reservation %u %zu\n", pr->type, pr->holder);
	for (size_t i = 0; i < pr->nregs; i++)
		sbuf_printf(&b, "reg %016" PRIx64 " %u %d %s\n", pr->regs[i].key, pr->regs[i].rel_port,
			    pr->regs[i].all_tg_pt, pr->regs[i].port);
	tmp = state_path(lu, ".tmp");
	path = state_path(lu, "");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
	} else {
		size_t off = 0;
		while (off < b.len && rc == 0) {
			ssize_t n = write(fd, b.data + off, b.len - off);
			if (n < 0 && errno != EINTR)
				rc = -errno;
			else if (n > 0)
				off += (size_t)n;
		}
		if (rc == 0 && fsync(fd) < 0)
			rc = -errno;
		close(fd);
		if (rc == 0 && rename(tmp, path) < 0)
			rc = -errno;
		if (rc == 0) {
			/* The rename itself must survive a crash: sync the directory. */
			int dfd = open(lu->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
		} else {
			unlink(tmp);
		}
	}
	if (rc < 0)
		log_error("LUN %u: saving reservation state to %s: %s", lu->lun, path, strerror(-rc));
	free(tmp);
	free(path);
	sbuf_free(&b);
	return rc;
}

int pr_load(struct scsi_lu *lu, char **err)
{
	struct pr_state *pr = &lu->pr;
	char *path;
	FILE *f;
	char line[512];
	int aptpl = 0, ok = 1;
	unsigned type = 0;
	size_t holder = 0;
	bool held = false;

	memset(pr, 0, sizeof(*pr));
	if (!lu->state_dir)
		return 0;
	path = state_path(lu, "");
	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT) {
			free(path);
			return 0;
		}
		*err = xasprintf("%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (!fgets(line, sizeof(line), f) || strcmp(line, "isthmus-pr 1\n") != 0)
		ok = 0;
	while (ok && fgets(line, sizeof(line), f)) {
		char port[256];
		uint64_t key;
		unsigned rel, atp;

		if (sscanf(line, "generation %" SCNu32, &pr->generation) == 1)
			continue;
		if (sscanf(line, "aptpl %d", &aptpl) == 1)
			continue;
		if (sscanf(line, "reservation %u %zu", &type, &holder) == 2) {
			held = true;
			continue;
		}
		if (sscanf(line, "reg %" SCNx64 " %u %u %255s", &key, &rel, &atp, port) == 4 && rel <= 0xffff) {
			if (pr->nregs == pr->cap) {
				pr->cap = pr->cap ? pr->cap * 2 : 4;
				pr->regs = xrealloc(pr->regs, pr->cap * sizeof(*pr->regs));
			}
			struct pr_reg *g = &pr->regs[pr->nregs++];
			memset(g, 0, sizeof(*g));
			g->key = key;
			g->rel_port = (uint16_t)rel;
			g->all_tg_pt = atp;
			snprintf(g->port, sizeof(g->port), "%s", port);
			continue;
		}
		ok = 0;
	}
	fclose(f);
	if (!ok || (held && (!type_valid((uint8_t)type) || holder >= pr->nregs))) {
		*err = xasprintf("%s: malformed reservation state", path);
		free(path);
		pr_free(pr);
		return -1;
	}
	free(path);
	if (!aptpl) {
		/* Saved without persist-through-power-loss: nothing survives a restart. */
		pr_free(pr);
		return 0;
	}
	pr->aptpl = true;
	pr->held = held;
	pr->type = (uint8_t)type;
	pr->holder = holder;
	return 0;
}

/* ---- PERSISTENT RESERVE IN ---- */

static size_t transport_id(const char *port, uint8_t *p)
{
	size_t n = strlen(port);
	size_t len = (n + 1 + 3) & ~(size_t)3;

	if (len < 20)
		len = 20;
	memset(p, 0, 4 + len);
	p[0] = 0x45;    /* iSCSI, format 01b: name with ISID */
	put_be16(p + 2, (uint16_t)len);
	memcpy(p + 4, port, n);
	return 4 + len;
}

void scsi_pr_in(struct scsi_req *r)
{
	struct pr_state *pr = &r->lu->pr;
	uint32_t alloc = get_be16(r->cdb + 7);
	uint8_t *b = r->t->scratch;
	size_t n = 8;

	memset(b, 0, 8);
	put_be32(b, pr->generation);
	switch (r->cdb[1] & 0x1f) {
	case 0x00: /* READ KEYS */
		for (size_t i = 0; i < pr->nregs; i++, n += 8)
			put_be64(b + n, pr->regs[i].key);
		put_be32(b + 4, (uint32_t)(n - 8));
		break;
	case 0x01: /* READ RESERVATION */
		if (pr->held) {
			memset(b + 8, 0, 16);
			if (!all_registrants(pr->type))
				put_be64(b + 8, pr->regs[pr->holder].key);
			b[8 + 13] = pr->type;
			n += 16;
		}
		put_be32(b + 4, (uint32_t)(n - 8));
		break;
	case 0x02: /* REPORT CAPABILITIES */
		memset(b, 0, 8);
		put_be16(b, 8);
		b[2] = 0x10 | 0x04 | 0x01;   /* CRH, ATP_C, PTPL_C */
		b[3] = 0x80 | (pr->aptpl ? 0x01 : 0);   /* TMV; PTPL_A */
		b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
		b[5] = 0x01;
		n = 8;
		break;
	case 0x03: /* READ FULL STATUS */
		for (size_t i = 0; i < pr->nregs; i++) {
			uint8_t *d = b + n;
			size_t tl;

			if (n + 24 + 264 > r->t->scratch_len)
				break;
			memset(d, 0, 24);
			put_be64(d, pr->regs[i].key);
			if (pr->regs[i].all_tg_pt)
				d[12] |= 0x02;
			if (is_holder(pr, i)) {
				d[12] |= 0x01;
				d[13] = pr->type;
			}
			put_be16(d + 18, pr->regs[i].rel_port);
			tl = transport_id(pr->regs[i].port, d + 24);
			put_be32(d + 20, (uint32_t)tl);
			n += 24 + tl;
		}
		put_be32(b + 4, (uint32_t)(n - 8));
		break;
	}
	req_data_in(r, b, (uint32_t)n, alloc);
}

/* ---- PERSISTENT RESERVE OUT ---- */

static struct pr_reg *add_reg(struct pr_state *pr, const char *port, uint16_t rel, bool atp, uint64_t key)
{
	struct pr_reg *g;

	if (pr->nregs == pr->cap) {
		pr->cap = pr->cap ? pr->cap * 2 : 4;
		pr->regs = xrealloc(pr->regs, pr->cap * sizeof(*pr->regs));
	}
	g = &pr->regs[pr->nregs++];
	memset(g, 0, sizeof(*g));
	snprintf(g->port, sizeof(g->port), "%s", port);
	g->rel_port = rel;
	g->all_tg_pt = atp;
	g->key = key;
	return g;
}

static void conflict(struct scsi_req *r) { r->cmd->status = SCSI_RESERVATION_CONFLICT; }

static void pr_register(struct scsi_req *r, uint64_t key, uint64_t sark, bool ignore, bool atp, bool aptpl)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;
	const struct scsi_nexus *nx = r->cmd->nexus;
	size_t idx;
	struct pr_reg *me = find_reg(pr, nx, &idx);

	if (!me) {
		if (!ignore && key != 0) {
			conflict(r);
			return;
		}
		if (sark != 0)
			add_reg(pr, nx->initiator_port, nx->rel_port_id, atp, sark);
	} else {
		if (!ignore && key != me->key) {
			conflict(r);
			return;
		}
		if (sark == 0) {
			bool was_holder = is_holder(pr, idx) && !all_registrants(pr->type);
			uint8_t type = pr->type;

			remove_reg(pr, idx);
			/* Registrants-only reservations released by unregistering tell the others. */
			if (was_holder && (type == PR_WE_RO || type == PR_EA_RO)) {
				for (size_t i = 0; i < pr->nregs; i++)
					ua_for_reg(lu, &pr->regs[i], UA_RESERVATIONS_RELEASED, nx->id);
			}
		} else {
			me->key = sark;
		}
	}
	pr->aptpl = aptpl;
	pr->generation++;
}

static void pr_reserve(struct scsi_req *r, struct pr_reg *me, size_t idx, uint8_t type)
{
	struct pr_state *pr = &r->lu->pr;

	(void)me;
	if (pr->held) {
		if (!is_holder(pr, idx) || pr->type != type)
			conflict(r);
		return;
	}
	pr->held = true;
	pr->type = type;
	pr->holder = idx;
}

static void pr_release(struct scsi_req *r, size_t idx, uint8_t type)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;

	if (!pr->held || !is_holder(pr, idx))
		return;
	if (pr->type != type) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x04);   /* INVALID RELEASE OF PERSISTENT RESERVATION */
		return;
	}
	pr->held = false;
	if (type != PR_WE && type != PR_EA) {
		for (size_t i = 0; i < pr->nregs; i++)
			ua_for_reg(lu, &pr->regs[i], UA_RESERVATIONS_RELEASED, r->cmd->nexus->id);
	}
}

static void pr_clear(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;

	for (size_t i = 0; i < pr->nregs; i++)
		ua_for_reg(lu, &pr->regs[i], UA_RESERVATIONS_PREEMPTED, r->cmd->nexus->id);
	pr->nregs = 0;
	pr->held = false;
	pr->generation++;
}

static void pr_preempt(struct scsi_req *r, size_t my_idx, uint64_t sark, uint8_t type)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;
	const struct scsi_nexus *nx = r->cmd->nexus;
	bool removed = false, take = false;

	if (pr->held) {
		if (all_registrants(pr->type)) {
			/* SARK 0 preempts every other registrant and takes the reservation over. */
			take = sark == 0;
		} else {
			if (sark == 0) {
				req_bad_param(r, 8, -1);
				return;
			}
			take = pr->regs[pr->holder].key == sark;
		}
	} else if (sark == 0) {
		req_bad_param(r, 8, -1);
		return;
	}
	for (size_t i = 0; i < pr->nregs;) {
		struct pr_reg *g = &pr->regs[i];
		if (i != my_idx && (sark == 0 || g->key == sark)) {
			ua_for_reg(lu, g, UA_REGISTRATIONS_PREEMPTED, nx->id);
			if (my_idx > i)
				my_idx--;
			remove_reg(pr, i);
			removed = true;
			continue;
		}
		i++;
	}
	if (!removed && !take) {
		conflict(r);
		return;
	}
	if (take) {
		pr->held = true;
		pr->type = type;
		pr->holder = my_idx;
	}
	pr->generation++;
}

static void pr_register_and_move(struct scsi_req *r, size_t my_idx, const uint8_t *d, uint32_t plen)
{
	struct pr_state *pr = &r->lu->pr;
	uint64_t sark = get_be64(d + 8);
	bool unreg = d[17] & 0x02;
	uint16_t rel = get_be16(d + 18);
	uint32_t tlen = get_be32(d + 20);
	char port[256];
	const uint8_t *tid = d + 24;
	size_t idx, n;

	if (!pr->held || !is_holder(pr, my_idx) || all_registrants(pr->type)) {
		conflict(r);
		return;
	}
	if (tlen < 24 || tlen > plen - 24 || (tid[0] & 0x0f) != 5 || get_be16(tid + 2) + 4u > tlen) {
		req_bad_param(r, 20, -1);
		return;
	}
	if (sark == 0) {
		req_bad_param(r, 8, -1);
		return;
	}
	n = strnlen((const char *)tid + 4, get_be16(tid + 2));
	if (n == 0 || n >= sizeof(port)) {
		req_bad_param(r, 24 + 4, -1);
		return;
	}
	memcpy(port, tid + 4, n);
	port[n] = 0;
	if (reg_matches(&pr->regs[my_idx], port, rel)) {
		req_bad_param(r, 24, -1);   /* moving to ourselves */
		return;
	}
	uint8_t type = pr->type;
	struct pr_reg *dst = NULL;
	for (idx = 0; idx < pr->nregs; idx++) {
		if (strcmp(pr->regs[idx].port, port) == 0 && pr->regs[idx].rel_port == rel) {
			dst = &pr->regs[idx];
			break;
		}
	}
	if (dst)
		dst->key = sark;
	else
		add_reg(pr, port, rel, false, sark);
	if (!dst)
		idx = pr->nregs - 1;
	pr->held = true;
	pr->type = type;
	pr->holder = idx;
	if (unreg) {
		remove_reg(pr, my_idx);
		pr->held = true;
		pr->type = type;
		if (pr->holder > my_idx)
			pr->holder--;
	}
	pr->aptpl = d[17] & 0x01;
	pr->generation++;
}

void scsi_pr_out(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;
	const uint8_t *c = r->cdb;
	const uint8_t *d = r->cmd->out;
	uint8_t sa = c[1] & 0x1f, scope = c[2] >> 4, type = c[2] & 0x0f;
	uint32_t plen = get_be32(c + 5);
	uint64_t key, sark;
	struct pr_reg *me;
	size_t idx = 0;

	r->cmd->xfer_len = plen;
	if (sa == 0x07 ? plen < 24 : plen != 24) {
		req_param_len_error(r);
		return;
	}
	if (r->cmd->out_len < plen) {
		req_param_len_error(r);
		return;
	}
	key = get_be64(d);
	sark = get_be64(d + 8);
	if (sa != 0x07 && (d[20] & 0x08)) {
		req_bad_param(r, 20, 3);   /* SPEC_I_PT: not offered (SIP_C is 0) */
		return;
	}
	if ((sa == 0x01 || sa == 0x02 || sa == 0x04 || sa == 0x05 || sa == 0x07) &&
	    (scope != 0 || !type_valid(type))) {
		req_bad_cdb(r, 2, scope ? 7 : 3);
		return;
	}
	if (sa == 0x00 || sa == 0x06) {
		pr_register(r, key, sark, sa == 0x06, d[20] & 0x04, d[20] & 0x01);
	} else {
		me = find_reg(pr, r->cmd->nexus, &idx);
		if (!me || me->key != key) {
			conflict(r);
			return;
		}
		switch (sa) {
		case 0x01:
			pr_reserve(r, me, idx, type);
			break;
		case 0x02:
			pr_release(r, idx, type);
			break;
		case 0x03:
			pr_clear(r);
			break;
		case 0x04:
		case 0x05:
			pr_preempt(r, idx, sark, type);
			break;
		case 0x07:
			pr_register_and_move(r, idx, d, plen);
			break;
		}
	}
	if (r->cmd->status == SCSI_GOOD && lu->state_dir && pr_save(lu) < 0)
		req_sense(r, SK_MEDIUM_ERROR, 0x0c, 0x00);
}
