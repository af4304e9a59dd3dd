/*
 * isthmus-threads-stress: several sessions (distinct initiator names and ISIDs) hammer one LU at
 * once for a bounded time and check that the LU's shared state stays right: data, persistent
 * reservations, unit attentions, LOGICAL UNIT RESET and ABORT TASK. Test-only, never installed;
 * run by tests/interop/test_threads_stress.sh. Built on libisthmus's public API only.
 *
 *   isthmus-threads-stress iscsi://HOST:PORT/IQN/LUN [--sessions 8] [--seconds 12] [--bound 10]
 *                          [--seed N] [--ready-file PATH] [--name-prefix IQN]
 *
 * Every session runs, on one poll loop, a mix of: WRITE/READ of its own slots (verified: a slot
 * reads back what its owner last had acknowledged, or one of the writes that were aborted since,
 * block by block), WRITE/READ of a shared range where writes race (status only), TEST UNIT READY,
 * PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY, RESERVE and RELEASE of types Write
 * Exclusive - Registrants Only, Exclusive Access - Registrants Only and Exclusive Access, PREEMPT
 * of another session's key, unregister, CLEAR), PERSISTENT RESERVE IN (READ KEYS then READ
 * RESERVATION, READ FULL STATUS), ABORT TASK of one of its own commands, and now and then a
 * LOGICAL UNIT RESET.
 *
 * Reservation conflicts are judged in two kinds of phase, alternating:
 *  - checked: PERSISTENT RESERVE OUT commands are serialized over the whole driver (one in flight
 *    at a time, none while a LU RESET is), so the driver knows the registrations and the
 *    reservation exactly (struct st_pr_model). Each PERSISTENT RESERVE OUT must then have the
 *    outcome SPC-4 gives for that state; a READ or WRITE sent while the state is known and
 *    answered before the next PERSISTENT RESERVE OUT is even sent ran under that state, so it
 *    must meet RESERVATION CONFLICT exactly when the state excludes its session (both ways: a
 *    conflict the state does not explain, and a command let through that it excludes, are
 *    violations); READ KEYS / READ RESERVATION / READ FULL STATUS answered in such a window must
 *    describe that state.
 *  - free: every session sends reservation commands whenever it likes, so the target orders them
 *    and the driver cannot know the state. Any RESERVATION CONFLICT is then accepted on a READ or
 *    WRITE that was in flight while a reservation could be held, that is unless the state was
 *    known to have none when it was sent and no RESERVE or PREEMPT (the only ways to take one) was
 *    sent before it was answered. At the end of a free phase the driver waits until no
 *    reservation command is in flight, reads the state with READ FULL STATUS (checked for
 *    consistency) and takes it as the known state of the next checked phase.
 * A command that met a unit attention, BUSY or TASK SET FULL did not run and judges nothing.
 * These rules never call a correct target wrong: a judgement is only made where the target had
 * one state to answer from.
 *
 * Other invariants: every command and task management request is answered exactly once within
 * --bound seconds (commands another session's LU RESET ends without a word are asked about with
 * ABORT TASK, as an initiator's error handling does: then the library ends them as aborted); an
 * ABORT TASK answered "function complete" or "task does not exist" finds its task already ended,
 * one way or the other; after a LU RESET completed, the first command each other session sends
 * that runs must not run unless that session was given a 29h unit attention since the reset was
 * sent; generations of PERSISTENT RESERVE IN never go back; at the end every session gets the same
 * READ KEYS and READ RESERVATION, every own slot reads back right, every session logs out cleanly,
 * and a fresh session logs in and gets answers. Exit 0 when all held, 1 with one line per
 * violation (VIOLATION: ...), 2 on a usage or set-up error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threads_stress.h"

#define DEPTH 6            /* commands one session keeps in flight */
#define NTMF 12            /* task management requests of one session at once */
#define SLOT_BLOCKS 8      /* blocks of one verified slot */
#define OWN_SLOTS 128      /* verified slots of each session */
#define SHARED_SLOTS 64    /* slots of the shared range */
#define MAX_UNCERTAIN 6    /* aborted writes remembered per slot before it is left unverified */
#define PR_IN_ALLOC 8192
#define CHECKED_MS 1500    /* phase lengths */
#define FREE_MS 1000
#define RESET_EVERY_MS 1200 /* least time between two LU RESETs */
#define EH_DELAY_MS 300    /* time given to commands a LU RESET may have ended before asking */

enum phase { PH_CHECKED, PH_FREE, PH_SETTLE, PH_SYNC };
enum cmd_kind { K_WRITE_OWN, K_READ_OWN, K_WRITE_SHARED, K_READ_SHARED, K_TUR, K_PR_OUT, K_PR_IN };

struct sess;
struct tmf;

struct cmd {
	struct sess *s;
	bool busy;
	uint64_t seq;              /* order of sending in its session (so CmdSN order) */
	enum cmd_kind kind;
	struct ism_task *task;
	uint64_t sent_ms;
	uint32_t slot, gen, blocks;
	uint64_t lba;
	uint8_t sa, type;
	uint64_t sark;
	bool reserve_like;         /* RESERVE or PREEMPT: may take a reservation */
	uint64_t pr_seq;           /* PERSISTENT RESERVE OUT commands sent before this one was sent (or by it) */
	bool exact;                /* sent while the state was known and no PERSISTENT RESERVE OUT in flight */
	struct st_pr_model before, after;
	enum st_outcome expect;
	bool expect_conflict;
	bool could_conflict;       /* a reservation could be held at some time while it was in flight */
	uint32_t gen_floor;        /* highest generation answered before this was sent */
	bool sync, pair_rr;
	struct tmf *abort;
	uint8_t *buf;
	uint32_t len;
	char desc[120];
};

struct tmf {
	struct sess *s;
	bool busy;
	enum ism_tmf fn;
	struct cmd *ref;
	uint64_t ref_seq;
	uint64_t sent_ms;
	bool eh;
};

struct slot {
	bool busy;
	uint32_t acked;
	uint32_t unc[MAX_UNCERTAIN];
	int nunc;
	bool unknown;
};

struct sess {
	int id;
	char name[224];
	char port[256];            /* initiator port name: name,i,0x<ISID> */
	struct ism_session *is;
	struct cmd cmds[DEPTH];
	struct tmf tmfs[NTMF];
	int outstanding;
	uint64_t next_seq;
	uint32_t next_gen;
	struct cmd *pr;            /* its one reservation command in flight */
	bool rk_valid, want_rr;
	struct st_pr_in rk;
	struct slot slots[OWN_SLOTS];
	/* unit attention after another session's LU RESET */
	uint64_t ua29;             /* 29h unit attentions received */
	uint64_t ua29_at_send;     /* ua29 when the reset was sent */
	bool due;
	uint64_t due_ua29, due_first_seq, due_check_seq;
	char due_check_desc[120];
	int due_by;
	bool eh;
	uint64_t eh_before_seq, eh_at_ms;
	struct tmf *abort_pending; /* its own ABORT TASK of choice, one at a time */
	/*
	 * The slot of its last write that ended aborted: written again and read at once, so that an
	 * aborted write reaching the medium after its abort was answered shows.
	 */
	int hot_slot;
};

static struct {
	struct ism_url *u;
	int nsess;
	unsigned seconds, bound_s;
	uint64_t seed, salt, rng;
	const char *ready_file;
	const char *prefix;
	struct sess sess[ST_MAX_SESSIONS];
	uint32_t bs;
	uint64_t own_base, shared_base;
	enum phase phase;
	uint64_t phase_end, t0, end;
	struct st_pr_model model;
	unsigned pr_out_inflight, reserve_like_inflight;
	uint64_t pr_seq;
	uint32_t gen_floor;
	bool reset_inflight;
	int reset_by;
	uint64_t reset_done_ms;
	bool closing, fatal;
	unsigned violations;
	char ports[ST_MAX_SESSIONS][256];
	/* what happened */
	uint64_t sent, answered, by_outcome[OUT_BAD + 1], resets, aborts_asked, aborts_ended_task, eh_aborts;
	uint64_t verified_reads, exact_data, exact_pr_out, exact_pr_in, pr_out, pr_in, syncs, ua_checks, phases;
} g = {.nsess = 8, .seconds = 12, .bound_s = 10, .prefix = "iqn.2026-11.org.isthmus:stress"};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rnd(void)
{
	g.rng ^= g.rng << 13;
	g.rng ^= g.rng >> 7;
	g.rng ^= g.rng << 17;
	return g.rng;
}

static unsigned pick(unsigned n) { return (unsigned)(rnd() % n); }

static void violation(const char *fmt, ...)
{
	va_list ap;
	g.violations++;
	if (g.violations > 40)
		return;
	fprintf(stderr, "VIOLATION [%.3fs]: ", (double)(now_ms() - g.t0) / 1000.0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void fatal(const char *fmt, ...)
{
	va_list ap;
	g.violations++;
	g.fatal = true;
	fprintf(stderr, "VIOLATION [%.3fs]: ", (double)(now_ms() - g.t0) / 1000.0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void describe(struct st_pr_model *m, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "registered {");
	for (int i = 0; i < g.nsess && o < len; i++)
		if (m->registered[i])
			o += (size_t)snprintf(buf + o, len - o, " %d", i);
	if (o < len)
		snprintf(buf + o, len - o, m->held ? " }, held by session %d type %u" : " }, not held", m->holder, m->type);
}

/* ---- the reservation state the driver knows ------------------------------------------------ */

/* A reservation could be held now (so a RESERVATION CONFLICT could be right). */
static bool may_be_held(void) { return !g.model.known || g.model.held || g.reserve_like_inflight > 0; }

static void mark_could_conflict(void)
{
	for (int i = 0; i < g.nsess; i++)
		for (int k = 0; k < DEPTH; k++)
			if (g.sess[i].cmds[k].busy)
				g.sess[i].cmds[k].could_conflict = true;
}

static void model_lost(void)
{
	g.model.known = false;
	mark_could_conflict();
	if (g.phase == PH_CHECKED)
		g.phase = PH_SETTLE;
}

static bool pr_out_allowed(void)
{
	if (g.phase == PH_FREE)
		return true;
	return g.phase == PH_CHECKED && g.model.known && g.pr_out_inflight == 0 && !g.reset_inflight;
}

/* ---- sending ------------------------------------------------------------------------------- */

static void on_scsi_done(struct ism_session *is, const struct ism_scsi_result *r, void *priv);

static struct cmd *free_cmd(struct sess *s)
{
	for (int k = 0; k < DEPTH; k++)
		if (!s->cmds[k].busy) {
			s->cmds[k].s = s;
			return &s->cmds[k];
		}
	return NULL;
}

static bool send_cmd(struct sess *s, struct cmd *c, const uint8_t *cdb, size_t cl, enum ism_dir dir)
{
	c->s = s;
	c->seq = s->next_seq++;
	c->sent_ms = now_ms();
	c->busy = true;
	c->abort = NULL;
	c->gen_floor = g.gen_floor;
	s->outstanding++;
	g.sent++;
	c->task = ism_scsi_async(s->is, g.u->lun, cdb, cl, dir, c->buf, c->len, on_scsi_done, c);
	if (!c->task) {
		c->busy = false;
		s->outstanding--;
		fatal("session %d: %s could not be queued: %s", s->id, c->desc, ism_session_error(s->is));
		return false;
	}
	return true;
}

static void cdb_rw10(uint8_t *cdb, bool write, uint64_t lba, uint32_t blocks)
{
	ism_cdb_rw10(cdb, write, (uint32_t)lba, (uint16_t)blocks);
}

static void prepare_data(struct cmd *c, bool write)
{
	c->could_conflict = may_be_held();
	c->exact = g.model.known && g.pr_out_inflight == 0;
	c->pr_seq = g.pr_seq;
	if (c->exact) {
		c->before = g.model;
		c->expect_conflict = st_data_conflicts(&g.model, c->s->id, write);
	}
}

static void send_own_write(struct sess *s, struct cmd *c)
{
	uint32_t slot = pick(OWN_SLOTS);
	if (s->hot_slot >= 0 && !s->slots[s->hot_slot].busy)
		slot = (uint32_t)s->hot_slot;
	for (unsigned i = 0; i < OWN_SLOTS && s->slots[slot].busy; i++)
		slot = (slot + 1) % OWN_SLOTS;
	if (s->slots[slot].busy)
		return;
	c->kind = K_WRITE_OWN;
	c->slot = slot;
	c->gen = ++s->next_gen;
	c->blocks = SLOT_BLOCKS;
	c->lba = g.own_base + ((uint64_t)s->id * OWN_SLOTS + slot) * SLOT_BLOCKS;
	c->len = SLOT_BLOCKS * g.bs;
	for (uint32_t b = 0; b < SLOT_BLOCKS; b++)
		st_fill_block(c->buf + (size_t)b * g.bs, g.bs, g.salt, s->id, slot, c->gen, b);
	snprintf(c->desc, sizeof(c->desc), "WRITE of its slot %u (generation %u, LBA %" PRIu64 ")", slot, c->gen, c->lba);
	prepare_data(c, true);
	uint8_t cdb[16];
	cdb_rw10(cdb, true, c->lba, c->blocks);
	s->slots[slot].busy = true;
	if (!send_cmd(s, c, cdb, 10, ISM_DIR_WRITE))
		s->slots[slot].busy = false;
}

static void send_own_read(struct sess *s, struct cmd *c)
{
	uint32_t slot = pick(OWN_SLOTS);
	if (s->hot_slot >= 0 && !s->slots[s->hot_slot].busy) {
		slot = (uint32_t)s->hot_slot;
		s->hot_slot = -1;
	}
	for (unsigned i = 0; i < OWN_SLOTS && (s->slots[slot].busy || s->slots[slot].unknown); i++)
		slot = (slot + 1) % OWN_SLOTS;
	if (s->slots[slot].busy || s->slots[slot].unknown)
		return;
	c->kind = K_READ_OWN;
	c->slot = slot;
	c->blocks = SLOT_BLOCKS;
	c->lba = g.own_base + ((uint64_t)s->id * OWN_SLOTS + slot) * SLOT_BLOCKS;
	c->len = SLOT_BLOCKS * g.bs;
	snprintf(c->desc, sizeof(c->desc), "READ of its slot %u (LBA %" PRIu64 ")", slot, c->lba);
	prepare_data(c, false);
	uint8_t cdb[16];
	cdb_rw10(cdb, false, c->lba, c->blocks);
	s->slots[slot].busy = true;
	if (!send_cmd(s, c, cdb, 10, ISM_DIR_READ))
		s->slots[slot].busy = false;
}

static void send_shared(struct sess *s, struct cmd *c, bool write)
{
	uint32_t total = SHARED_SLOTS * SLOT_BLOCKS;
	c->kind = write ? K_WRITE_SHARED : K_READ_SHARED;
	c->blocks = 1 + pick(2 * SLOT_BLOCKS);
	c->lba = g.shared_base + pick(total - c->blocks + 1);
	c->len = c->blocks * g.bs;
	if (write)
		memset(c->buf, 0xa0 + s->id, c->len);
	snprintf(c->desc, sizeof(c->desc), "%s of the shared range (LBA %" PRIu64 "+%u)", write ? "WRITE" : "READ", c->lba,
		 c->blocks);
	prepare_data(c, write);
	uint8_t cdb[16];
	cdb_rw10(cdb, write, c->lba, c->blocks);
	send_cmd(s, c, cdb, 10, write ? ISM_DIR_WRITE : ISM_DIR_READ);
}

static void send_tur(struct sess *s, struct cmd *c)
{
	c->kind = K_TUR;
	c->len = 0;
	snprintf(c->desc, sizeof(c->desc), "TEST UNIT READY");
	uint8_t cdb[16];
	size_t cl = ism_cdb_test_unit_ready(cdb);
	send_cmd(s, c, cdb, cl, ISM_DIR_NONE);
}

static const char *pr_out_name(uint8_t sa, uint64_t sark)
{
	switch (sa) {
	case PRO_REGISTER_IGNORE: return sark ? "REGISTER AND IGNORE EXISTING KEY" : "unregister";
	case PRO_RESERVE: return "RESERVE";
	case PRO_RELEASE: return "RELEASE";
	case PRO_CLEAR: return "CLEAR";
	case PRO_PREEMPT: return "PREEMPT";
	}
	return "?";
}

static void send_pr_out(struct sess *s, struct cmd *c, uint8_t sa, uint8_t type, uint64_t sark)
{
	c->kind = K_PR_OUT;
	c->sa = sa;
	c->type = type;
	c->sark = sark;
	c->len = 24;
	memset(c->buf, 0, 24);
	uint64_t key = st_key_of(s->id);
	for (int i = 0; i < 8; i++) {
		c->buf[i] = (uint8_t)(key >> (56 - 8 * i));
		c->buf[8 + i] = (uint8_t)(sark >> (56 - 8 * i));
	}
	int victim = st_session_of_key(sark, g.nsess);
	if (sa == PRO_PREEMPT)
		snprintf(c->desc, sizeof(c->desc), "PERSISTENT RESERVE OUT PREEMPT of session %d's key, type %u", victim, type);
	else
		snprintf(c->desc, sizeof(c->desc), "PERSISTENT RESERVE OUT %s type %u", pr_out_name(sa, sark), type);
	c->reserve_like = sa == PRO_RESERVE || sa == PRO_PREEMPT;
	c->exact = g.phase == PH_CHECKED && g.model.known && g.pr_out_inflight == 0;
	if (c->exact) {
		c->before = g.model;
		c->expect = st_pr_out_predict(&g.model, s->id, sa, type, sark, g.nsess, &c->after);
	}
	g.pr_seq++;
	c->pr_seq = g.pr_seq;
	g.pr_out_inflight++;
	if (c->reserve_like) {
		g.reserve_like_inflight++;
		mark_could_conflict();
	}
	uint8_t cdb[16] = {0x5f, sa, (uint8_t)type, 0, 0, 0, 0, 0, 24, 0};
	s->pr = c;
	g.pr_out++;
	if (!send_cmd(s, c, cdb, 10, ISM_DIR_WRITE)) {
		s->pr = NULL;
		g.pr_out_inflight--;
	}
}

static void send_pr_in(struct sess *s, struct cmd *c, uint8_t sa)
{
	static const char *names[] = {"READ KEYS", "READ RESERVATION", "REPORT CAPABILITIES", "READ FULL STATUS"};
	c->kind = K_PR_IN;
	c->sa = sa;
	c->len = PR_IN_ALLOC;
	c->exact = g.model.known && g.pr_out_inflight == 0;
	c->before = g.model;
	c->pr_seq = g.pr_seq;
	snprintf(c->desc, sizeof(c->desc), "PERSISTENT RESERVE IN %s%s", names[sa], c->sync ? " (state read back)" : "");
	uint8_t cdb[16] = {0x5e, sa, 0, 0, 0, 0, 0, PR_IN_ALLOC >> 8, PR_IN_ALLOC & 0xff, 0};
	s->pr = c;
	g.pr_in++;
	if (!send_cmd(s, c, cdb, 10, ISM_DIR_READ))
		s->pr = NULL;
}

static int other_session(int me)
{
	int v = (int)pick((unsigned)g.nsess - 1);
	return v >= me ? v + 1 : v;
}

static uint8_t any_type(void)
{
	static const uint8_t types[] = {PRT_WE_RO, PRT_EA_RO, PRT_EA};
	return types[pick(3)];
}

/* A reservation action: sensible for the known state in checked phases, anything in free ones. */
static void send_pr_action(struct sess *s, struct cmd *c)
{
	c->sync = false;
	c->pair_rr = false;
	if (s->want_rr) {
		s->want_rr = false;
		c->pair_rr = true;
		send_pr_in(s, c, PRI_READ_RESERVATION);
		return;
	}
	unsigned r = pick(100);
	if (r < 25 || !pr_out_allowed()) {
		if (r % 3 == 0) {
			send_pr_in(s, c, PRI_READ_FULL_STATUS);
		} else {
			s->rk_valid = false;
			send_pr_in(s, c, PRI_READ_KEYS);
		}
		return;
	}
	uint64_t mine = st_key_of(s->id);
	if (g.phase == PH_FREE) {
		if (r < 42)
			send_pr_out(s, c, PRO_REGISTER_IGNORE, 0, mine);
		else if (r < 60)
			send_pr_out(s, c, PRO_RESERVE, any_type(), 0);
		else if (r < 72)
			send_pr_out(s, c, PRO_RELEASE, any_type(), 0);
		else if (r < 94)
			send_pr_out(s, c, PRO_PREEMPT, any_type(), st_key_of(other_session(s->id)));
		else if (r < 98)
			send_pr_out(s, c, PRO_REGISTER_IGNORE, 0, 0);
		else
			send_pr_out(s, c, PRO_CLEAR, 0, 0);
		return;
	}
	const struct st_pr_model *m = &g.model;
	if (!m->registered[s->id]) {
		if (r < 85)
			send_pr_out(s, c, PRO_REGISTER_IGNORE, 0, mine);
		else
			send_pr_out(s, c, PRO_RESERVE, any_type(), 0); /* a conflict, as it is not registered */
	} else if (!m->held) {
		if (r < 70)
			send_pr_out(s, c, PRO_RESERVE, any_type(), 0);
		else if (r < 90)
			send_pr_out(s, c, PRO_PREEMPT, any_type(), st_key_of(other_session(s->id)));
		else if (r < 97)
			send_pr_out(s, c, PRO_REGISTER_IGNORE, 0, 0);
		else
			send_pr_out(s, c, PRO_CLEAR, 0, 0);
	} else if (m->holder == s->id) {
		if (r < 60)
			send_pr_out(s, c, PRO_RELEASE, m->type, 0);
		else if (r < 66)
			send_pr_out(s, c, PRO_RELEASE, m->type == PRT_EA ? PRT_WE_RO : PRT_EA, 0); /* wrong type */
		else if (r < 76)
			send_pr_out(s, c, PRO_RESERVE, r < 71 ? m->type : any_type(), 0);
		else if (r < 92)
			send_pr_out(s, c, PRO_PREEMPT, any_type(), st_key_of(other_session(s->id)));
		else
			send_pr_out(s, c, PRO_REGISTER_IGNORE, 0, 0);
	} else {
		if (r < 65)
			send_pr_out(s, c, PRO_PREEMPT, any_type(), st_key_of(m->holder));
		else if (r < 80)
			send_pr_out(s, c, PRO_RESERVE, any_type(), 0);
		else if (r < 90)
			send_pr_out(s, c, PRO_RELEASE, any_type(), 0);
		else
			send_pr_out(s, c, PRO_PREEMPT, any_type(), st_key_of(other_session(s->id)));
	}
}

/* ---- task management ----------------------------------------------------------------------- */

static void on_tmf_done(struct ism_session *is, int status, void *priv);

static struct tmf *free_tmf(struct sess *s)
{
	for (int k = 0; k < NTMF; k++)
		if (!s->tmfs[k].busy)
			return &s->tmfs[k];
	return NULL;
}

static bool send_abort(struct sess *s, struct cmd *c, bool eh)
{
	struct tmf *t = free_tmf(s);
	if (!t || c->abort)
		return false;
	*t = (struct tmf){.s = s, .busy = true, .fn = ISM_TMF_ABORT_TASK, .ref = c, .ref_seq = c->seq,
			  .sent_ms = now_ms(), .eh = eh};
	c->abort = t;
	g.aborts_asked++;
	if (eh)
		g.eh_aborts++;
	if (ism_task_mgmt_async(s->is, ISM_TMF_ABORT_TASK, g.u->lun, c->task, on_tmf_done, t) != 0) {
		t->busy = false;
		c->abort = NULL;
		fatal("session %d: ABORT TASK of %s could not be queued: %s", s->id, c->desc, ism_session_error(s->is));
		return false;
	}
	return true;
}

static bool reset_allowed(uint64_t now)
{
	if (g.reset_inflight || now - g.reset_done_ms < RESET_EVERY_MS || now + 1500 > g.end)
		return false;
	if (g.phase != PH_FREE && g.phase != PH_CHECKED)
		return false;
	if (g.phase == PH_CHECKED && g.pr_out_inflight)
		return false; /* its outcome would be lost with the task set, and the state with it */
	for (int i = 0; i < g.nsess; i++)
		if (g.sess[i].due || g.sess[i].eh)
			return false;
	return true;
}

static void send_reset(struct sess *s)
{
	struct tmf *t = free_tmf(s);
	if (!t)
		return;
	*t = (struct tmf){.s = s, .busy = true, .fn = ISM_TMF_LUN_RESET, .sent_ms = now_ms()};
	for (int i = 0; i < g.nsess; i++)
		g.sess[i].ua29_at_send = g.sess[i].ua29;
	g.reset_inflight = true;
	g.reset_by = s->id;
	g.resets++;
	if (ism_task_mgmt_async(s->is, ISM_TMF_LUN_RESET, g.u->lun, NULL, on_tmf_done, t) != 0) {
		t->busy = false;
		g.reset_inflight = false;
		fatal("session %d: LOGICAL UNIT RESET could not be queued: %s", s->id, ism_session_error(s->is));
	}
}

/* ---- answers ------------------------------------------------------------------------------- */

/* The reset unit attention check of one session, once what it waits for may have come. */
static void due_evaluate(struct sess *s)
{
	if (!s->due)
		return;
	if (s->ua29 > s->due_ua29) {
		s->due = false;
		s->due_check_seq = 0;
		g.ua_checks++;
		return;
	}
	if (!s->due_check_seq)
		return;
	/* A command sent earlier and still unanswered may yet bring the attention: it ran first. */
	for (int k = 0; k < DEPTH; k++)
		if (s->cmds[k].busy && s->cmds[k].seq < s->due_check_seq)
			return;
	violation("session %d: its %s (command #%" PRIu64 "), sent after session %d's LOGICAL UNIT RESET completed, "
		  "ran without the reset unit attention (29h) ever being reported to it",
		  s->id, s->due_check_desc, s->due_check_seq, s->due_by);
	s->due = false;
	s->due_check_seq = 0;
}

static void verify_own_read(struct sess *s, struct cmd *c)
{
	struct slot *sl = &s->slots[c->slot];
	if (sl->unknown)
		return;
	g.verified_reads++;
	for (uint32_t b = 0; b < SLOT_BLOCKS; b++) {
		const uint8_t *p = c->buf + (size_t)b * g.bs;
		bool ok = st_block_is(p, g.bs, g.salt, s->id, c->slot, sl->acked, b);
		for (int k = 0; !ok && k < sl->nunc; k++)
			ok = st_block_is(p, g.bs, g.salt, s->id, c->slot, sl->unc[k], b);
		if (!ok) {
			char who[160] = "";
			for (int i = 0; i < g.nsess && !who[0]; i++)
				for (uint32_t sl2 = 0; sl2 < OWN_SLOTS && !who[0]; sl2++)
					for (uint32_t gen = 0; gen <= g.sess[i].next_gen && gen < 4096 && !who[0]; gen++)
						if (st_block_is(p, g.bs, g.salt, i, sl2, gen, b))
							snprintf(who, sizeof(who), " (it holds session %d's slot %u generation %u)", i,
								 sl2, gen);
			violation("session %d: block %u of its slot %u (LBA %" PRIu64 ") reads back neither its last "
				  "acknowledged write (generation %u) nor one of %d aborted since%s",
				  s->id, b, c->slot, c->lba + b, sl->acked, sl->nunc, who);
			return;
		}
	}
}

static void own_write_ended(struct sess *s, struct cmd *c, enum st_outcome o)
{
	struct slot *sl = &s->slots[c->slot];
	if (o == OUT_GOOD) {
		sl->acked = c->gen;
		sl->nunc = 0;
		sl->unknown = false;
	} else if (o == OUT_ABORTED || o == OUT_BAD) {
		s->hot_slot = (int)c->slot;
		/* It may or may not have reached the medium, block by block. */
		if (sl->nunc < MAX_UNCERTAIN)
			sl->unc[sl->nunc++] = c->gen;
		else
			sl->unknown = true;
	}
}

static void check_data(struct sess *s, struct cmd *c, enum st_outcome o)
{
	if (c->kind == K_TUR) {
		if (o == OUT_CONFLICT)
			violation("session %d: TEST UNIT READY met RESERVATION CONFLICT (allowed under every reservation)", s->id);
		return;
	}
	if (o != OUT_GOOD && o != OUT_CONFLICT)
		return;
	if (c->exact && c->pr_seq == g.pr_seq) {
		g.exact_data++;
		char st[200];
		describe(&c->before, st, sizeof(st));
		if (o == OUT_CONFLICT && !c->expect_conflict)
			violation("session %d: %s met RESERVATION CONFLICT, but the state was %s with no reservation command "
				  "in flight",
				  s->id, c->desc, st);
		else if (o == OUT_GOOD && c->expect_conflict)
			violation("session %d: %s ran (GOOD), but the state was %s, which excludes it (no reservation "
				  "command in flight)",
				  s->id, c->desc, st);
		return;
	}
	if (o == OUT_CONFLICT && !c->could_conflict)
		violation("session %d: %s met RESERVATION CONFLICT while no reservation could be held (none known, no "
			  "RESERVE or PREEMPT sent since)",
			  s->id, c->desc);
}

static void pr_out_ended(struct sess *s, struct cmd *c, enum st_outcome o)
{
	g.pr_out_inflight--;
	if (c->reserve_like)
		g.reserve_like_inflight--;
	bool ran = o == OUT_GOOD || o == OUT_CONFLICT || o == OUT_ILLEGAL_26_04;
	bool may_have_run = ran || o == OUT_ABORTED || o == OUT_BAD;
	if (c->exact && c->pr_seq == g.pr_seq && (ran || o == OUT_BAD)) {
		g.exact_pr_out++;
		if (o != c->expect) {
			char st[200];
			describe(&c->before, st, sizeof(st));
			violation("session %d: %s answered %s, but with the state %s SPC-4 gives %s", s->id, c->desc,
				  st_outcome_name(o), st, st_outcome_name(c->expect));
			model_lost();
			return;
		}
		if (g.model.known)
			g.model = c->after;
		return;
	}
	if (o == OUT_BAD || (o == OUT_ILLEGAL_26_04 && c->sa != PRO_RELEASE))
		violation("session %d: %s answered %s", s->id, c->desc, st_outcome_name(o));
	if (may_have_run && g.model.known)
		model_lost();
}

static void pr_in_ended(struct sess *s, struct cmd *c, enum st_outcome o, uint32_t got)
{
	if (o == OUT_CONFLICT || o == OUT_BAD || o == OUT_ILLEGAL_26_04) {
		violation("session %d: %s answered %s", s->id, c->desc, st_outcome_name(o));
		return;
	}
	if (o != OUT_GOOD)
		return;
	struct st_pr_in in;
	char why[400];
	if (!st_parse_pr_in(c->sa, c->buf, got, &in, why, sizeof(why)) ||
	    !st_pr_in_consistent(c->sa, &in, g.nsess, g.ports, why, sizeof(why))) {
		violation("session %d: %s: %s", s->id, c->desc, why);
		if (c->sync)
			g.phase = PH_SETTLE;
		return;
	}
	if ((int32_t)(in.generation - c->gen_floor) < 0)
		violation("session %d: %s: PRgeneration %u, but %u was answered before it was sent", s->id, c->desc,
			  in.generation, c->gen_floor);
	if ((int32_t)(in.generation - g.gen_floor) > 0)
		g.gen_floor = in.generation;
	if (c->exact && c->pr_seq == g.pr_seq && g.model.known) {
		g.exact_pr_in++;
		if (!st_pr_in_matches(c->sa, &in, &g.model, g.nsess, why, sizeof(why)))
			violation("session %d: %s while no reservation command was in flight: %s", s->id, c->desc, why);
	}
	if (c->sa == PRI_READ_KEYS) {
		s->rk = in;
		s->rk_valid = true;
		s->want_rr = true;
	} else if (c->sa == PRI_READ_RESERVATION && c->pair_rr && s->rk_valid) {
		/* Same generation: no registration came or went in between, so the holder must be among the keys. */
		if (s->rk.generation == in.generation && in.held) {
			bool found = false;
			for (size_t k = 0; k < s->rk.nkeys; k++)
				found |= s->rk.keys[k] == in.holder_key;
			if (!found)
				violation("session %d: READ RESERVATION names holder key 0x%016" PRIx64 " which READ KEYS of "
					  "the same generation %u does not list",
					  s->id, in.holder_key, in.generation);
		}
		s->rk_valid = false;
	}
	if (c->sync && g.phase == PH_SYNC) {
		st_model_from_full_status(&in, g.nsess, &g.model);
		g.syncs++;
		g.phase = PH_CHECKED;
		g.phase_end = now_ms() + CHECKED_MS;
		g.phases++;
	}
}

static void on_scsi_done(struct ism_session *is, const struct ism_scsi_result *r, void *priv)
{
	struct cmd *c = priv;
	struct sess *s = c->s;
	(void)is;
	if (!c->busy) {
		violation("session %d: a second answer to %s", s->id, c->desc);
		return;
	}
	c->busy = false;
	c->task = NULL;
	s->outstanding--;
	if (s->pr == c)
		s->pr = NULL;
	if (g.closing)
		return;
	g.answered++;
	enum st_outcome o = st_classify(r);
	g.by_outcome[o]++;
	if (o == OUT_BAD) {
		char txt[300];
		ism_result_text(r, txt, sizeof(txt));
		violation("session %d: %s answered %s", s->id, c->desc, txt);
	}
	if (o == OUT_UA_RESET)
		s->ua29++;
	if (s->due && c->seq >= s->due_first_seq && (o == OUT_GOOD || o == OUT_CONFLICT || o == OUT_ILLEGAL_26_04) &&
	    s->ua29 <= s->due_ua29 && (!s->due_check_seq || c->seq < s->due_check_seq)) {
		s->due_check_seq = c->seq;
		snprintf(s->due_check_desc, sizeof(s->due_check_desc), "%s", c->desc);
	}
	switch (c->kind) {
	case K_WRITE_OWN:
		s->slots[c->slot].busy = false;
		own_write_ended(s, c, o);
		check_data(s, c, o);
		break;
	case K_READ_OWN:
		s->slots[c->slot].busy = false;
		if (o == OUT_GOOD)
			verify_own_read(s, c);
		check_data(s, c, o);
		break;
	case K_WRITE_SHARED:
	case K_READ_SHARED:
	case K_TUR:
		check_data(s, c, o);
		break;
	case K_PR_OUT:
		pr_out_ended(s, c, o);
		break;
	case K_PR_IN:
		pr_in_ended(s, c, o, r->transferred);
		if (c->sync && g.phase == PH_SYNC)
			g.phase = PH_SETTLE; /* not answered with the state: read it again */
		break;
	}
	due_evaluate(s);
}

static void on_tmf_done(struct ism_session *is, int status, void *priv)
{
	struct tmf *t = priv;
	struct sess *s = t->s;
	(void)is;
	if (!t->busy) {
		violation("session %d: a second answer to a task management request", s->id);
		return;
	}
	t->busy = false;
	if (s->abort_pending == t)
		s->abort_pending = NULL;
	if (g.closing)
		return;
	if (t->fn == ISM_TMF_ABORT_TASK) {
		struct cmd *c = t->ref;
		if (c->busy && c->seq == t->ref_seq) {
			c->abort = NULL;
			if (status == 0)
				violation("session %d: ABORT TASK of %s was answered, but the task neither completed nor "
					  "ended as aborted",
					  s->id, c->desc);
		}
		if (status != 0)
			violation("session %d: ABORT TASK answered %s", s->id, ism_session_error(s->is));
		return;
	}
	/* LOGICAL UNIT RESET */
	g.reset_inflight = false;
	g.reset_done_ms = now_ms();
	if (status != 0) {
		violation("session %d: LOGICAL UNIT RESET answered %s", s->id, ism_session_error(s->is));
		return;
	}
	for (int i = 0; i < g.nsess; i++) {
		struct sess *o = &g.sess[i];
		if (o == s)
			continue;
		/* Every other nexus must be told; a 29h already received since the reset was sent counts. */
		o->due = o->ua29 == o->ua29_at_send;
		o->due_ua29 = o->ua29_at_send;
		o->due_first_seq = o->next_seq;
		o->due_check_seq = 0;
		o->due_by = s->id;
		/* Its commands sent before may have been ended by the reset without a word. */
		o->eh = true;
		o->eh_before_seq = o->next_seq;
		o->eh_at_ms = g.reset_done_ms + EH_DELAY_MS;
	}
}

/* ---- the run ------------------------------------------------------------------------------- */

static void run_session_actions(struct sess *s, uint64_t now)
{
	if (s->eh && now >= s->eh_at_ms) {
		s->eh = false;
		for (int k = 0; k < DEPTH; k++) {
			struct cmd *c = &s->cmds[k];
			if (c->busy && c->seq < s->eh_before_seq && !c->abort)
				send_abort(s, c, true);
		}
	}
	/*
	 * The issuer of a LU RESET sends nothing new until it is answered: libisthmus ends as aborted,
	 * at the answer, every task whose CmdSN is not above the request's, and an immediate request
	 * carries the CmdSN of the next command, which the target runs after the reset.
	 */
	if (g.reset_inflight && g.reset_by == s->id)
		return;
	for (int tries = 0; tries < DEPTH && now < g.end && !g.fatal; tries++) {
		struct cmd *c = free_cmd(s);
		if (!c || s->outstanding >= DEPTH - 1 || (g.reset_inflight && g.reset_by == s->id))
			break;
		unsigned r = pick(1000);
		if (r < 300)
			send_own_write(s, c);
		else if (r < 480)
			send_own_read(s, c);
		else if (r < 620)
			send_shared(s, c, true);
		else if (r < 720)
			send_shared(s, c, false);
		else if (r < 760)
			send_tur(s, c);
		else if (r < 920) {
			if (!s->pr)
				send_pr_action(s, c);
		} else if (r < 990) {
			if (!s->abort_pending) {
				int k = (int)pick(DEPTH);
				for (int i = 0; i < DEPTH; i++, k = (k + 1) % DEPTH) {
					struct cmd *v = &s->cmds[k];
					if (v->busy && !v->abort && v->kind != K_PR_OUT && v->kind != K_PR_IN) {
						if (send_abort(s, v, false))
							s->abort_pending = v->abort;
						break;
					}
				}
			}
		} else if (reset_allowed(now)) {
			send_reset(s);
		}
	}
}

static void run_phases(uint64_t now)
{
	if (g.phase == PH_CHECKED && now >= g.phase_end) {
		g.phase = PH_FREE;
		g.phase_end = now + FREE_MS;
		g.phases++;
		g.model.known = false;
		mark_could_conflict();
	} else if (g.phase == PH_FREE && now >= g.phase_end) {
		g.phase = PH_SETTLE;
	}
	if (g.phase == PH_SETTLE && g.pr_out_inflight == 0 && !g.reset_inflight && now < g.end) {
		int first = (int)pick((unsigned)g.nsess);
		for (int i = 0; i < g.nsess; i++) {
			struct sess *s = &g.sess[(first + i) % g.nsess];
			struct cmd *c = free_cmd(s);
			if (s->pr || !c)
				continue;
			c->sync = true;
			c->pair_rr = false;
			g.phase = PH_SYNC;
			send_pr_in(s, c, PRI_READ_FULL_STATUS);
			break;
		}
	}
}

static void check_bounds(uint64_t now)
{
	uint64_t bound = (uint64_t)g.bound_s * 1000;
	for (int i = 0; i < g.nsess && !g.fatal; i++) {
		struct sess *s = &g.sess[i];
		for (int k = 0; k < DEPTH; k++)
			if (s->cmds[k].busy && now - s->cmds[k].sent_ms > bound)
				fatal("session %d: no answer to %s within %u s", i, s->cmds[k].desc, g.bound_s);
		for (int k = 0; k < NTMF; k++)
			if (s->tmfs[k].busy && now - s->tmfs[k].sent_ms > bound)
				fatal("session %d: no answer to %s within %u s", i,
				      s->tmfs[k].fn == ISM_TMF_ABORT_TASK ? "ABORT TASK" : "LOGICAL UNIT RESET", g.bound_s);
	}
}

static bool anything_in_flight(void)
{
	for (int i = 0; i < g.nsess; i++) {
		if (g.sess[i].outstanding)
			return true;
		for (int k = 0; k < NTMF; k++)
			if (g.sess[i].tmfs[k].busy)
				return true;
	}
	return false;
}

/* A session the library had to give up: say what its reason means for the target. */
static void session_failed(int i)
{
	const char *e = ism_session_error(g.sess[i].is);
	fatal("session %d failed: %s%s", i, e,
	      strstr(e, "unexpected ITT") ? " (an answer to a task that had already ended, as aborted after its ABORT "
					    "TASK or LU RESET was answered, or with an earlier answer)"
					  : "");
}

static void service_all(int timeout_ms)
{
	struct pollfd fds[ST_MAX_SESSIONS * 4];
	int owner[ST_MAX_SESSIONS * 4];
	int n = 0;
	for (int i = 0; i < g.nsess; i++) {
		int k = ism_session_fds(g.sess[i].is, fds + n, ST_MAX_SESSIONS * 4 - n);
		if (k == 0 && !g.closing) {
			fatal("session %d has no connection left: %s", i, ism_session_error(g.sess[i].is));
			return;
		}
		for (int j = 0; j < k; j++)
			owner[n + j] = i;
		n += k;
		int to = ism_session_timeout_ms(g.sess[i].is);
		if (to >= 0 && to < timeout_ms)
			timeout_ms = to;
	}
	int r = poll(fds, (nfds_t)n, timeout_ms);
	if (r < 0 && errno != EINTR) {
		fatal("poll: %s", strerror(errno));
		return;
	}
	for (int j = 0; r > 0 && j < n; j++)
		if (fds[j].revents && ism_session_service(g.sess[owner[j]].is, fds[j].fd, fds[j].revents) < 0)
			session_failed(owner[j]);
	for (int i = 0; i < g.nsess && !g.fatal; i++)
		if (ism_session_service(g.sess[i].is, -1, 0) < 0)
			session_failed(i);
}

static void workload(void)
{
	g.t0 = now_ms();
	g.end = g.t0 + (uint64_t)g.seconds * 1000;
	g.phase = PH_CHECKED;
	g.phase_end = g.t0 + CHECKED_MS;
	uint64_t hard_end = g.end + (uint64_t)g.bound_s * 1000 + 2000;
	while (!g.fatal) {
		uint64_t now = now_ms();
		if (now >= g.end && !anything_in_flight())
			break;
		if (now > hard_end) {
			fatal("commands still unanswered %u s after the end of the run", g.bound_s);
			break;
		}
		run_phases(now);
		for (int i = 0; i < g.nsess && !g.fatal; i++)
			run_session_actions(&g.sess[(i + (int)(now % (uint64_t)g.nsess)) % g.nsess], now);
		service_all(20);
		check_bounds(now_ms());
		for (int i = 0; i < g.nsess; i++)
			due_evaluate(&g.sess[i]);
	}
}

/* ---- set-up and the end, one command at a time --------------------------------------------- */

/* One command, again while it meets a unit attention or BUSY (bounded). 0 when GOOD. */
static int blocking(struct sess *s, const uint8_t *cdb, size_t cl, enum ism_dir dir, void *buf, uint32_t len,
		    struct ism_scsi_result *res, const char *what)
{
	for (int i = 0; i < 20; i++) {
		if (ism_scsi(s->is, g.u->lun, cdb, cl, dir, buf, len, res) == 0)
			return 0;
		enum st_outcome o = st_classify(res);
		if (o != OUT_UA_RESET && o != OUT_UA_OTHER && o != OUT_BUSY)
			break;
	}
	violation("session %d: %s: %s", s->id, what, ism_session_error(s->is));
	return -1;
}

static int pr_out_blocking(struct sess *s, uint8_t sa, uint64_t sark)
{
	uint8_t p[24] = {0};
	uint64_t key = st_key_of(s->id);
	for (int i = 0; i < 8; i++) {
		p[i] = (uint8_t)(key >> (56 - 8 * i));
		p[8 + i] = (uint8_t)(sark >> (56 - 8 * i));
	}
	uint8_t cdb[16] = {0x5f, sa, 0, 0, 0, 0, 0, 0, 24, 0};
	struct ism_scsi_result res;
	return blocking(s, cdb, 10, ISM_DIR_WRITE, p, 24, &res, pr_out_name(sa, sark));
}

static int pr_in_blocking(struct sess *s, uint8_t sa, struct st_pr_in *in)
{
	uint8_t buf[PR_IN_ALLOC];
	uint8_t cdb[16] = {0x5e, sa, 0, 0, 0, 0, 0, PR_IN_ALLOC >> 8, PR_IN_ALLOC & 0xff, 0};
	struct ism_scsi_result res;
	char why[400];
	if (blocking(s, cdb, 10, ISM_DIR_READ, buf, sizeof(buf), &res, "PERSISTENT RESERVE IN") < 0)
		return -1;
	if (!st_parse_pr_in(sa, buf, res.transferred, in, why, sizeof(why)) ||
	    !st_pr_in_consistent(sa, in, g.nsess, g.ports, why, sizeof(why))) {
		violation("session %d: PERSISTENT RESERVE IN (service action %u) at the end: %s", s->id, sa, why);
		return -1;
	}
	return 0;
}

static struct ism_session *login(const char *name, const uint8_t isid[6], char *err, size_t errlen)
{
	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = name;
	cfg.target_name = g.u->target;
	cfg.isid_set = true;
	memcpy(cfg.isid, isid, 6);
	cfg.max_connections = 1;
	/* The library's own bound stays above ours, so that ours is the one that reports. */
	cfg.cmd_timeout_ms = (int)g.bound_s * 3000;
	struct ism_session *is = ism_session_new(&cfg, err, errlen);
	if (!is)
		return NULL;
	if (ism_connect(is, g.u->portal) < 0) {
		snprintf(err, errlen, "%s", ism_session_error(is));
		ism_session_free(is);
		return NULL;
	}
	return is;
}

static int setup(void)
{
	char err[512];
	for (int i = 0; i < g.nsess; i++) {
		struct sess *s = &g.sess[i];
		s->id = i;
		s->hot_slot = -1;
		snprintf(s->name, sizeof(s->name), "%s-l%" PRIu64 "-s%d", g.prefix, g.u->lun, i);
		uint8_t isid[6] = {0x80, 0x53, 0x54, (uint8_t)g.u->lun, (uint8_t)(g.seed & 0xff), (uint8_t)i};
		snprintf(s->port, sizeof(s->port), "%s,i,0x%02x%02x%02x%02x%02x%02x", s->name, isid[0], isid[1], isid[2],
			 isid[3], isid[4], isid[5]);
		memcpy(g.ports[i], s->port, sizeof(s->port));
		s->is = login(s->name, isid, err, sizeof(err));
		if (!s->is) {
			fprintf(stderr, "isthmus-threads-stress: login of session %d (%s): %s\n", i, s->name, err);
			return -1;
		}
		for (int k = 0; k < DEPTH; k++)
			s->cmds[k].buf = malloc(PR_IN_ALLOC > 2 * SLOT_BLOCKS * 4096 ? PR_IN_ALLOC : 2 * SLOT_BLOCKS * 4096);
	}
	printf("stress: %d sessions logged in to %s LUN %" PRIu64 "\n", g.nsess, g.u->target, g.u->lun);
	fflush(stdout);
	if (g.ready_file) {
		FILE *f = fopen(g.ready_file, "w");
		if (f)
			fclose(f);
	}
	struct ism_scsi_result res;
	uint8_t cdb[16];
	for (int i = 0; i < g.nsess; i++) {
		size_t cl = ism_cdb_test_unit_ready(cdb);
		if (blocking(&g.sess[i], cdb, cl, ISM_DIR_NONE, NULL, 0, &res, "TEST UNIT READY") < 0)
			return -1;
	}
	uint64_t last;
	if (ism_read_capacity16(g.sess[0].is, g.u->lun, &last, &g.bs) < 0) {
		fprintf(stderr, "isthmus-threads-stress: READ CAPACITY: %s\n", ism_session_error(g.sess[0].is));
		return -1;
	}
	if (g.bs < 512 || g.bs > 4096) {
		fprintf(stderr, "isthmus-threads-stress: block size %u not handled\n", g.bs);
		return -1;
	}
	g.own_base = 0;
	g.shared_base = (uint64_t)g.nsess * OWN_SLOTS * SLOT_BLOCKS;
	uint64_t need = g.shared_base + SHARED_SLOTS * SLOT_BLOCKS;
	if (last + 1 < need || need > 0xffffffffull) {
		fprintf(stderr, "isthmus-threads-stress: the LU has %" PRIu64 " blocks, %" PRIu64 " needed\n", last + 1, need);
		return -1;
	}
	/* A known start: no registration, no reservation, every own slot written (generation 0). */
	if (pr_out_blocking(&g.sess[0], PRO_REGISTER_IGNORE, st_key_of(0)) < 0 || pr_out_blocking(&g.sess[0], PRO_CLEAR, 0) < 0)
		return -1;
	memset(&g.model, 0, sizeof(g.model));
	g.model.known = true;
	uint32_t len = OWN_SLOTS * SLOT_BLOCKS * g.bs;
	uint8_t *buf = malloc(len);
	for (int i = 0; i < g.nsess; i++) {
		for (uint32_t sl = 0; sl < OWN_SLOTS; sl++)
			for (uint32_t b = 0; b < SLOT_BLOCKS; b++)
				st_fill_block(buf + ((size_t)sl * SLOT_BLOCKS + b) * g.bs, g.bs, g.salt, i, sl, 0, b);
		uint8_t wcdb[16];
		size_t cl = ism_cdb_rw16(wcdb, true, g.own_base + (uint64_t)i * OWN_SLOTS * SLOT_BLOCKS, OWN_SLOTS * SLOT_BLOCKS);
		if (blocking(&g.sess[i], wcdb, cl, ISM_DIR_WRITE, buf, len, &res, "first WRITE of its slots") < 0) {
			free(buf);
			return -1;
		}
	}
	free(buf);
	return 0;
}

static void final_checks(void)
{
	/* 1. Every session sees the same registrations and reservation. */
	static struct st_pr_in rk0, rr0, rk, rr;
	for (int i = 0; i < g.nsess; i++) {
		if (pr_in_blocking(&g.sess[i], PRI_READ_KEYS, &rk) < 0 ||
		    pr_in_blocking(&g.sess[i], PRI_READ_RESERVATION, &rr) < 0)
			return;
		if (rr.held && rk.generation == rr.generation) {
			bool found = false;
			for (size_t k = 0; k < rk.nkeys; k++)
				found |= rk.keys[k] == rr.holder_key;
			if (!found)
				violation("at the end, session %d: the reservation's holder key is not among READ KEYS", i);
		}
		if (i == 0) {
			rk0 = rk;
			rr0 = rr;
			if (g.model.known) {
				char why[400];
				if (!st_pr_in_matches(PRI_READ_KEYS, &rk, &g.model, g.nsess, why, sizeof(why)) ||
				    !st_pr_in_matches(PRI_READ_RESERVATION, &rr, &g.model, g.nsess, why, sizeof(why)))
					violation("at the end, the state read back differs from the known one: %s", why);
			}
			continue;
		}
		bool same = rk.generation == rk0.generation && rk.nkeys == rk0.nkeys && rr.held == rr0.held &&
			    rr.generation == rr0.generation && (!rr.held || (rr.holder_key == rr0.holder_key && rr.type == rr0.type));
		for (size_t k = 0; same && k < rk.nkeys; k++) {
			bool found = false;
			for (size_t j = 0; j < rk0.nkeys; j++)
				found |= rk0.keys[j] == rk.keys[k];
			same = found;
		}
		if (!same)
			violation("at the end, session %d's READ KEYS / READ RESERVATION (generation %u, %zu keys, %s) differ "
				  "from session 0's (generation %u, %zu keys, %s)",
				  i, rk.generation, rk.nkeys, rr.held ? "held" : "not held", rk0.generation, rk0.nkeys,
				  rr0.held ? "held" : "not held");
	}
	printf("stress: final state agreed by all %d sessions: generation %u, %zu registrations, reservation %s", g.nsess,
	       rk0.generation, rk0.nkeys, rr0.held ? "held" : "not held");
	if (rr0.held)
		printf(" by session %d type %u", st_session_of_key(rr0.holder_key, g.nsess), rr0.type);
	printf("\n");
	/* 2. Every own slot reads back right (with the reservation cleared, so that every session may read). */
	if (pr_out_blocking(&g.sess[0], PRO_REGISTER_IGNORE, st_key_of(0)) < 0 || pr_out_blocking(&g.sess[0], PRO_CLEAR, 0) < 0)
		return;
	uint32_t len = OWN_SLOTS * SLOT_BLOCKS * g.bs;
	uint8_t *buf = malloc(len);
	struct cmd c = {.buf = NULL};
	for (int i = 0; i < g.nsess; i++) {
		struct sess *s = &g.sess[i];
		uint8_t cdb[16];
		struct ism_scsi_result res;
		size_t cl = ism_cdb_rw16(cdb, false, g.own_base + (uint64_t)i * OWN_SLOTS * SLOT_BLOCKS, OWN_SLOTS * SLOT_BLOCKS);
		if (blocking(s, cdb, cl, ISM_DIR_READ, buf, len, &res, "last READ of its slots") < 0)
			break;
		for (uint32_t sl = 0; sl < OWN_SLOTS; sl++) {
			c.s = s;
			c.slot = sl;
			c.buf = buf + (size_t)sl * SLOT_BLOCKS * g.bs;
			c.lba = g.own_base + ((uint64_t)i * OWN_SLOTS + sl) * SLOT_BLOCKS;
			verify_own_read(s, &c);
		}
	}
	free(buf);
}

static int final_logouts(void)
{
	int bad = 0;
	for (int i = 0; i < g.nsess; i++)
		if (ism_logout(g.sess[i].is) < 0) {
			violation("session %d: logout: %s", i, ism_session_error(g.sess[i].is));
			bad++;
		}
	if (!bad)
		printf("stress: all %d sessions logged out cleanly\n", g.nsess);
	return bad;
}

static void fresh_login(void)
{
	char err[512], name[256];
	snprintf(name, sizeof(name), "%s-l%" PRIu64 "-fresh", g.prefix, g.u->lun);
	uint8_t isid[6] = {0x80, 0x53, 0x54, (uint8_t)g.u->lun, (uint8_t)(g.seed & 0xff), 0xff};
	struct ism_session *is = login(name, isid, err, sizeof(err));
	if (!is) {
		violation("a fresh login after the run failed: %s", err);
		return;
	}
	struct sess s = {.id = -1, .is = is};
	struct st_pr_in rr;
	uint8_t cdb[16];
	struct ism_scsi_result res;
	size_t cl = ism_cdb_test_unit_ready(cdb);
	if (blocking(&s, cdb, cl, ISM_DIR_NONE, NULL, 0, &res, "TEST UNIT READY of a fresh session") == 0 &&
	    pr_in_blocking(&s, PRI_READ_RESERVATION, &rr) == 0) {
		if (rr.held)
			violation("a fresh session sees a reservation after CLEAR");
		else
			printf("stress: a fresh session logged in and got answers\n");
	}
	if (ism_logout(is) < 0)
		violation("the fresh session's logout: %s", ism_session_error(is));
	ism_session_free(is);
}

static void usage(FILE *f)
{
	fputs("usage: isthmus-threads-stress iscsi://HOST:PORT/IQN/LUN [--sessions N (2-16, default 8)]\n"
	      "                              [--seconds N (default 12)] [--bound SECONDS (default 10)] [--seed N]\n"
	      "                              [--ready-file PATH] [--name-prefix IQN]\n",
	      f);
}

static bool number(const char *v, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 0);
	if (errno || end == v || *end || n > max)
		return false;
	*out = n;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"sessions", required_argument, NULL, 'n'}, {"seconds", required_argument, NULL, 't'},
		{"bound", required_argument, NULL, 'b'},    {"seed", required_argument, NULL, 's'},
		{"ready-file", required_argument, NULL, 'r'}, {"name-prefix", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
	};
	unsigned long long v;
	int opt;
	g.seed = (uint64_t)time(NULL) ^ ((uint64_t)now_ms() << 20);
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (!number(optarg, ST_MAX_SESSIONS, &v) || v < 2)
				goto bad;
			g.nsess = (int)v;
			break;
		case 't':
			if (!number(optarg, 3600, &v) || v < 1)
				goto bad;
			g.seconds = (unsigned)v;
			break;
		case 'b':
			if (!number(optarg, 600, &v) || v < 1)
				goto bad;
			g.bound_s = (unsigned)v;
			break;
		case 's':
			if (!number(optarg, UINT64_MAX, &v))
				goto bad;
			g.seed = v;
			break;
		case 'r': g.ready_file = optarg; break;
		case 'p': g.prefix = optarg; break;
		case 'h': usage(stdout); return 0;
		default: goto bad;
		}
	}
	if (argc - optind != 1)
		goto bad;
	char err[512];
	g.u = ism_url_parse(argv[optind], err, sizeof(err));
	if (!g.u || !g.u->target || !g.u->has_lun) {
		fprintf(stderr, "isthmus-threads-stress: %s\n", g.u ? "the URL must name a target and a LUN" : err);
		return 2;
	}
	if (getenv("ISTHMUS_DEBUG") && strcmp(getenv("ISTHMUS_DEBUG"), "1") == 0)
		ism_set_debug(true);
	g.rng = g.seed | 1;
	g.salt = rnd();
	printf("stress: seed %" PRIu64 ", %d sessions, %u s, answers within %u s\n", g.seed, g.nsess, g.seconds, g.bound_s);
	int rc = 0;
	if (setup() < 0) {
		rc = 2;
		goto out;
	}
	workload();
	if (!g.fatal) {
		final_checks();
		final_logouts();
		fresh_login();
	}
	printf("stress: %" PRIu64 " commands sent, %" PRIu64 " answered: %" PRIu64 " GOOD, %" PRIu64
	       " RESERVATION CONFLICT, %" PRIu64 " reset unit attentions, %" PRIu64 " other unit attentions, %" PRIu64
	       " busy, %" PRIu64 " aborted\n",
	       g.sent, g.answered, g.by_outcome[OUT_GOOD], g.by_outcome[OUT_CONFLICT], g.by_outcome[OUT_UA_RESET],
	       g.by_outcome[OUT_UA_OTHER], g.by_outcome[OUT_BUSY], g.by_outcome[OUT_ABORTED]);
	printf("stress: %" PRIu64 " LOGICAL UNIT RESETs (%" PRIu64 " reset unit attentions checked), %" PRIu64
	       " ABORT TASKs (%" PRIu64 " after a reset), %" PRIu64 " verified reads of own slots\n",
	       g.resets, g.ua_checks, g.aborts_asked, g.eh_aborts, g.verified_reads);
	printf("stress: %" PRIu64 " PERSISTENT RESERVE OUT, %" PRIu64 " PERSISTENT RESERVE IN; judged against the known "
	       "state: %" PRIu64 " reservation commands, %" PRIu64 " state reads, %" PRIu64 " READ/WRITE; %" PRIu64
	       " phases, %" PRIu64 " states read back\n",
	       g.pr_out, g.pr_in, g.exact_pr_out, g.exact_pr_in, g.exact_data, g.phases, g.syncs);
	rc = g.violations ? 1 : 0;
out:
	g.closing = true;
	for (int i = 0; i < g.nsess; i++)
		if (g.sess[i].is)
			ism_session_free(g.sess[i].is);
	for (int i = 0; i < g.nsess; i++)
		for (int k = 0; k < DEPTH; k++)
			free(g.sess[i].cmds[k].buf);
	ism_url_free(g.u);
	if (g.violations)
		printf("stress: FAILED with %u violation%s\n", g.violations, g.violations == 1 ? "" : "s");
	else if (rc == 0)
		printf("stress: PASS\n");
	return g.violations ? 1 : rc;
bad:
	usage(stderr);
	return 2;
}
