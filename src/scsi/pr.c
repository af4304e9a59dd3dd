/*
 * Persistent reservations (SPC-4 5.13, 6.15, 6.16). Registrations belong to an I_T nexus
 * identity — initiator port name plus relative target port — not to a session, so they
 * survive logouts. With APTPL the state is also kept in state_dir across restarts (pr_persist.c):
 * every change made here is recorded through pr_log_*. A LU of a gateway group keeps it in the
 * group's record instead (lu_state.c), APTPL included.
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

bool pr_type_valid(uint8_t t)
{
	return t == PR_WE || t == PR_EA || t == PR_WE_RO || t == PR_EA_RO || t == PR_WE_AR || t == PR_EA_AR;
}

bool pr_all_registrants(uint8_t t) { return t == PR_WE_AR || t == PR_EA_AR; }

#define type_valid pr_type_valid
#define all_registrants pr_all_registrants

static bool reg_matches(const struct pr_reg *g, const char *port, uint16_t rel_port)
{
	return strcmp(g->port, port) == 0 && (g->all_tg_pt || g->rel_port == rel_port);
}

/* FNV-1a of the port name: spreads iSCSI names, which share long prefixes, well enough. */
static uint32_t port_hash(const char *port)
{
	uint32_t h = 0x811c9dc5u;

	for (; *port; port++) {
		h ^= (uint8_t)*port;
		h *= 0x01000193u;
	}
	return h;
}

static struct pr_reg **bucket_of(const struct pr_state *pr, uint32_t hash)
{
	return &pr->bucket[hash & (pr->nbucket - 1)];
}

static struct pr_reg *find_port(const struct pr_state *pr, const char *port, uint16_t rel_port)
{
	if (!pr->nbucket)
		return NULL;
	for (struct pr_reg *g = *bucket_of(pr, port_hash(port)); g; g = g->hnext) {
		if (reg_matches(g, port, rel_port))
			return g;
	}
	return NULL;
}

static struct pr_reg *find_reg(const struct pr_state *pr, const struct scsi_nexus *nx)
{
	return find_port(pr, nx->initiator_port, nx->rel_port_id);
}

struct pr_reg *pr_find_exact(const struct pr_state *pr, const char *port, uint16_t rel, bool atp)
{
	if (!pr->nbucket)
		return NULL;
	for (struct pr_reg *g = *bucket_of(pr, port_hash(port)); g; g = g->hnext) {
		if (strcmp(g->port, port) == 0 && g->rel_port == rel && g->all_tg_pt == atp)
			return g;
	}
	return NULL;
}

static bool is_holder(const struct pr_state *pr, const struct pr_reg *g)
{
	return pr->held && (all_registrants(pr->type) || pr->holder == g);
}

static void hash_insert(struct pr_state *pr, struct pr_reg *g)
{
	struct pr_reg **b = bucket_of(pr, g->hash);

	g->hnext = *b;
	*b = g;
}

static void hash_remove(struct pr_state *pr, struct pr_reg *g)
{
	for (struct pr_reg **pp = bucket_of(pr, g->hash); *pp; pp = &(*pp)->hnext) {
		if (*pp == g) {
			*pp = g->hnext;
			return;
		}
	}
}

/* Keeps at least one bucket per registration, so chains stay short. */
static void hash_grow(struct pr_state *pr, size_t want)
{
	size_t n = pr->nbucket ? pr->nbucket : 64;

	while (n < want)
		n *= 2;
	if (n == pr->nbucket)
		return;
	free(pr->bucket);
	pr->bucket = xcalloc(n, sizeof(*pr->bucket));
	pr->nbucket = n;
	for (size_t i = 0; i < pr->nregs; i++)
		hash_insert(pr, pr->regs[i]);
}

/* A new registration at the end of the list; NULL when the LU has no room for another. */
struct pr_reg *pr_add_reg(struct pr_state *pr, const char *port, uint16_t rel, bool atp, uint64_t key)
{
	size_t n = strlen(port);
	struct pr_reg *g;

	if (pr->nregs >= PR_MAX_REGISTRATIONS)
		return NULL;
	if (pr->nregs == pr->cap) {
		pr->cap = pr->cap ? pr->cap * 2 : 4;
		pr->regs = xrealloc(pr->regs, pr->cap * sizeof(*pr->regs));
	}
	g = xcalloc(1, sizeof(*g) + n + 1);
	memcpy(g->port, port, n + 1);
	g->hash = port_hash(port);
	g->rel_port = rel;
	g->all_tg_pt = atp;
	g->key = key;
	hash_grow(pr, pr->nregs + 1);
	hash_insert(pr, g);
	pr->regs[pr->nregs++] = g;
	pr_log_put(pr, g);
	return g;
}

/* Drops the registration from the hash and frees it; the caller fixes up the list. */
static void reg_drop(struct pr_state *pr, struct pr_reg *g)
{
	pr_log_del(pr, g);
	if (pr->holder == g) {
		pr->holder = NULL;
		if (pr->held && !all_registrants(pr->type))
			pr->held = false;
	}
	hash_remove(pr, g);
	free(g);
}

/* Removes every registration marked doomed in one pass over the list. */
static void remove_doomed(struct pr_state *pr)
{
	size_t j = 0;

	for (size_t i = 0; i < pr->nregs; i++) {
		struct pr_reg *g = pr->regs[i];

		if (g->doomed)
			reg_drop(pr, g);
		else
			pr->regs[j++] = g;
	}
	pr->nregs = j;
	pr->full_logged = false;
	if (pr->nregs == 0)
		pr->held = false;
}

void pr_remove_reg(struct pr_state *pr, struct pr_reg *g)
{
	g->doomed = true;
	remove_doomed(pr);
}

/* One "everything removed" record rather than one per registration. */
void pr_remove_all(struct pr_state *pr)
{
	struct sbuf *log = pr->log;

	pr_log_clear(pr);
	pr->log = NULL;
	for (size_t i = 0; i < pr->nregs; i++)
		pr->regs[i]->doomed = true;
	remove_doomed(pr);
	pr->log = log;
	pr->held = false;
	pr->holder = NULL;
}

static void set_key(struct pr_state *pr, struct pr_reg *g, uint64_t key)
{
	g->key = key;
	pr_log_put(pr, g);
}

/*
 * Raises `ua` for every logged-in nexus (but `except`) that holds a registration for which
 * `pick` says yes. One pass over the nexuses, each finding its registration through the hash:
 * the cost does not multiply registrations by sessions.
 */
static void ua_for_regs(struct scsi_lu *lu, bool (*pick)(const struct pr_reg *g), uint32_t ua, uint64_t except)
{
	if (lu->shared) {
		/* Raised everywhere once the change is stored, on this gateway too. */
		lu_shared_ua_regs(lu, pick, ua, except);
		return;
	}
	/* The nexuses that never met the LU get POWER ON at their first command, which supersedes ua. */
	pthread_mutex_lock(&lu->nexus_lock);
	for (struct lu_nexus *ln = lu->nexuses; ln; ln = ln->lu_next) {
		const struct pr_reg *g;

		if (ln->nexus_id == except)
			continue;
		g = find_reg(&lu->pr, ln->nx);
		if (g && pick(g))
			ua_add(ln, ua);
	}
	pthread_mutex_unlock(&lu->nexus_lock);
}

static bool pick_any(const struct pr_reg *g) { (void)g; return true; }
static bool pick_doomed(const struct pr_reg *g) { return g->doomed; }

bool pr_conflict(struct scsi_req *r)
{
	struct pr_state *pr = &r->lu->pr;
	const struct pr_reg *me;
	uint16_t flags = r->op->flags;

	if (!pr->held || (flags & OPF_PR_OK))
		return false;
	me = find_reg(pr, r->cmd->nexus);
	if (me && is_holder(pr, me))
		return false;
	/* Registrants-only and all-registrants types let every registrant through. */
	if (me && pr->type != PR_WE && pr->type != PR_EA)
		return false;
	if (pr->type == PR_WE || pr->type == PR_WE_RO || pr->type == PR_WE_AR)
		return !(flags & OPF_PR_WE_OK);
	return true;
}

/* Frees the registration table; the persistence (pr->persist) is the caller's. */
void pr_free(struct pr_state *pr)
{
	struct pr_persist *pp = pr->persist;
	struct sbuf *log = pr->log;

	for (size_t i = 0; i < pr->nregs; i++)
		free(pr->regs[i]);
	free(pr->regs);
	free(pr->bucket);
	memset(pr, 0, sizeof(*pr));
	pr->persist = pp;
	pr->log = log;
}

/* Power loss: without APTPL every registration and the reservation go away (nothing on disk). */
void pr_nexus_reset(struct scsi_lu *lu)
{
	struct pr_state *pr = &lu->pr;
	struct sbuf *log = pr->log;

	if (pr->aptpl)
		return;
	pr->log = NULL;
	pr_remove_all(pr);
	pr->log = log;
	pr->generation = 0;
}

/* ---- PERSISTENT RESERVE IN ---- */

/* The iSCSI TransportID (SPC-4 7.6.4.6) of an initiator port name; returns its length. */
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

static void read_keys(const struct pr_state *pr, struct din *d)
{
	for (size_t i = 0; i < pr->nregs; i++) {
		uint8_t k[8];

		put_be64(k, pr->regs[i]->key);
		din_put(d, k, 8);
	}
}

static void read_reservation(const struct pr_state *pr, struct din *d)
{
	uint8_t b[16];

	if (!pr->held)
		return;
	memset(b, 0, sizeof(b));
	if (!all_registrants(pr->type) && pr->holder)
		put_be64(b, pr->holder->key);
	b[13] = pr->type;
	din_put(d, b, sizeof(b));
}

static void report_capabilities(const struct pr_state *pr, struct din *d)
{
	uint8_t b[8] = { 0 };

	put_be16(b, 8);
	b[2] = 0x10 | 0x04 | 0x01;   /* CRH, ATP_C, PTPL_C */
	b[3] = 0x80 | (pr->aptpl ? 0x01 : 0);   /* TMV; PTPL_A */
	b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
	b[5] = 0x01;
	din_put(d, b, sizeof(b));
}

static void read_full_status(const struct pr_state *pr, struct din *d)
{
	/* One descriptor: 24 bytes, then a TransportID of up to 4 + 260 bytes. */
	uint8_t b[24 + 4 + 260];

	for (size_t i = 0; i < pr->nregs; i++) {
		const struct pr_reg *g = pr->regs[i];
		size_t tl;

		memset(b, 0, 24);
		put_be64(b, g->key);
		if (g->all_tg_pt)
			b[12] |= 0x02;
		if (is_holder(pr, g)) {
			b[12] |= 0x01;
			b[13] = pr->type;
		}
		put_be16(b + 18, g->rel_port);
		tl = transport_id(g->port, b + 24);
		put_be32(b + 20, (uint32_t)tl);
		din_put(d, b, 24 + tl);
	}
}

void scsi_pr_in(struct scsi_req *r)
{
	const struct pr_state *pr = &r->lu->pr;
	uint32_t alloc = get_be16(r->cdb + 7);
	uint8_t hdr[8] = { 0 };
	struct din d;

	din_start(&d, r, alloc);
	put_be32(hdr, pr->generation);
	if ((r->cdb[1] & 0x1f) != 0x02)
		din_put(&d, hdr, 8);
	switch (r->cdb[1] & 0x1f) {
	case 0x00: /* READ KEYS */
		read_keys(pr, &d);
		break;
	case 0x01: /* READ RESERVATION */
		read_reservation(pr, &d);
		break;
	case 0x02: /* REPORT CAPABILITIES */
		report_capabilities(pr, &d);
		break;
	case 0x03: /* READ FULL STATUS */
		read_full_status(pr, &d);
		break;
	}
	/* ADDITIONAL LENGTH: everything after the header, whether it fit the allocation or not. */
	if ((r->cdb[1] & 0x1f) != 0x02)
		din_put_be32_at(&d, 4, (uint32_t)(d.len - 8));
	din_finish(r, &d, alloc);
}

/* ---- PERSISTENT RESERVE OUT ---- */

static void conflict(struct scsi_req *r) { r->cmd->status = SCSI_RESERVATION_CONFLICT; }

static void no_room(struct scsi_req *r)
{
	/* Once per filling up: an initiator retrying must not flood the log. */
	if (!r->lu->pr.full_logged)
		log_warn("LUN %u: %u persistent reservation registrations already: refusing more", r->lu->lun,
			 PR_MAX_REGISTRATIONS);
	r->lu->pr.full_logged = true;
	req_sense(r, SK_ILLEGAL_REQUEST, 0x55, 0x04);   /* INSUFFICIENT REGISTRATION RESOURCES */
}

static void pr_register(struct scsi_req *r, uint64_t key, uint64_t sark, bool ignore, bool atp, bool aptpl)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;
	const struct scsi_nexus *nx = r->cmd->nexus;
	struct pr_reg *me = find_reg(pr, nx);

	if (!me) {
		if (!ignore && key != 0) {
			conflict(r);
			return;
		}
		if (sark != 0 && !pr_add_reg(pr, nx->initiator_port, nx->rel_port_id, atp, sark)) {
			no_room(r);
			return;
		}
	} else {
		if (!ignore && key != me->key) {
			conflict(r);
			return;
		}
		if (sark == 0) {
			bool was_holder = is_holder(pr, me) && !all_registrants(pr->type);
			uint8_t type = pr->type;

			pr_remove_reg(pr, me);
			/* Registrants-only reservations released by unregistering tell the others. */
			if (was_holder && (type == PR_WE_RO || type == PR_EA_RO))
				ua_for_regs(lu, pick_any, UA_RESERVATIONS_RELEASED, nx->id);
		} else {
			set_key(pr, me, sark);
		}
	}
	pr->aptpl = aptpl;
	pr->generation++;
}

static void pr_reserve(struct scsi_req *r, struct pr_reg *me, uint8_t type)
{
	struct pr_state *pr = &r->lu->pr;

	if (pr->held) {
		if (!is_holder(pr, me) || pr->type != type)
			conflict(r);
		return;
	}
	pr->held = true;
	pr->type = type;
	pr->holder = all_registrants(type) ? NULL : me;
}

static void pr_release(struct scsi_req *r, struct pr_reg *me, uint8_t type)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;

	if (!pr->held || !is_holder(pr, me))
		return;
	if (pr->type != type) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x04);   /* INVALID RELEASE OF PERSISTENT RESERVATION */
		return;
	}
	pr->held = false;
	pr->holder = NULL;
	if (type != PR_WE && type != PR_EA)
		ua_for_regs(lu, pick_any, UA_RESERVATIONS_RELEASED, r->cmd->nexus->id);
}

static void pr_clear(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;

	ua_for_regs(lu, pick_any, UA_RESERVATIONS_PREEMPTED, r->cmd->nexus->id);
	pr_remove_all(pr);
	pr->generation++;
}

static void pr_preempt(struct scsi_req *r, struct pr_reg *me, uint64_t sark, uint8_t type)
{
	struct scsi_lu *lu = r->lu;
	struct pr_state *pr = &lu->pr;
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
			take = pr->holder && pr->holder->key == sark;
		}
	} else if (sark == 0) {
		req_bad_param(r, 8, -1);
		return;
	}
	for (size_t i = 0; i < pr->nregs; i++) {
		struct pr_reg *g = pr->regs[i];

		if (g != me && (sark == 0 || g->key == sark)) {
			g->doomed = true;
			removed = true;
		}
	}
	if (!removed && !take) {
		conflict(r);
		return;
	}
	ua_for_regs(lu, pick_doomed, UA_REGISTRATIONS_PREEMPTED, r->cmd->nexus->id);
	remove_doomed(pr);
	if (take) {
		pr->held = true;
		pr->type = type;
		pr->holder = all_registrants(type) ? NULL : me;
	}
	pr->generation++;
}

/* TransportID names end up in the state file: printable ASCII without blanks, as iSCSI names are. */
static bool port_name_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	}
	return n > 0;
}

static void pr_register_and_move(struct scsi_req *r, struct pr_reg *me, const uint8_t *d, uint32_t plen)
{
	struct pr_state *pr = &r->lu->pr;
	uint64_t sark = get_be64(d + 8);
	bool unreg = d[17] & 0x02;
	uint16_t rel = get_be16(d + 18);
	uint32_t tlen = get_be32(d + 20);
	char port[256];
	const uint8_t *tid = d + 24;
	struct pr_reg *dst = NULL;
	size_t n;

	if (!pr->held || !is_holder(pr, me) || all_registrants(pr->type)) {
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
	if (n >= sizeof(port) || !port_name_ok((const char *)tid + 4, n)) {
		req_bad_param(r, 24 + 4, -1);
		return;
	}
	memcpy(port, tid + 4, n);
	port[n] = 0;
	if (reg_matches(me, port, rel)) {
		req_bad_param(r, 24, -1);   /* moving to ourselves */
		return;
	}
	for (struct pr_reg *g = *bucket_of(pr, port_hash(port)); g; g = g->hnext) {
		if (strcmp(g->port, port) == 0 && g->rel_port == rel) {
			dst = g;
			break;
		}
	}
	if (dst) {
		set_key(pr, dst, sark);
	} else if (!(dst = pr_add_reg(pr, port, rel, false, sark))) {
		no_room(r);
		return;
	}
	pr->holder = dst;
	if (unreg)
		pr_remove_reg(pr, me);
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
	struct pr_mark mark;

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
	pr_persist_begin(lu, &mark);
	if (sa == 0x00 || sa == 0x06) {
		pr_register(r, key, sark, sa == 0x06, d[20] & 0x04, d[20] & 0x01);
	} else {
		me = find_reg(pr, r->cmd->nexus);
		if (!me || me->key != key) {
			conflict(r);
			return;
		}
		switch (sa) {
		case 0x01:
			pr_reserve(r, me, type);
			break;
		case 0x02:
			pr_release(r, me, type);
			break;
		case 0x03:
			pr_clear(r);
			break;
		case 0x04:
		case 0x05:
			pr_preempt(r, me, sark, type);
			break;
		case 0x07:
			pr_register_and_move(r, me, d, plen);
			break;
		}
	}
	pr_persist_commit(r, &mark);
}
