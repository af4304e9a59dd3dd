/*
 * isthmus-threads-stress: the load. What each session sends and when, the phases of the
 * reservation checks, LU RESET and ABORT TASK, and the poll loop over every session. The rules
 * are described at the top of threads_stress.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threads_stress.h"

/* ---- the reservation state the driver knows ------------------------------------------------ */

/* A reservation could be held now (so a RESERVATION CONFLICT could be right). */
bool st_may_be_held(void) { return !stress.model.known || stress.model.held || stress.reserve_like_inflight > 0; }

void st_mark_could_conflict(void)
{
	for (int i = 0; i < stress.nsess; i++)
		for (int k = 0; k < DEPTH; k++)
			if (stress.sess[i].cmds[k].busy)
				stress.sess[i].cmds[k].could_conflict = true;
}

void st_model_lost(void)
{
	stress.model.known = false;
	st_mark_could_conflict();
	if (stress.phase == PH_CHECKED)
		stress.phase = PH_SETTLE;
}

bool st_pr_out_allowed(void)
{
	if (stress.phase == PH_FREE)
		return true;
	return stress.phase == PH_CHECKED && stress.model.known && stress.pr_out_inflight == 0 && !stress.reset_inflight;
}

/* ---- sending ------------------------------------------------------------------------------- */

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
	c->sent_ms = st_now_ms();
	c->busy = true;
	c->abort = NULL;
	c->gen_floor = stress.gen_floor;
	s->outstanding++;
	stress.sent++;
	c->task = ism_scsi_async(s->is, stress.u->lun, cdb, cl, dir, c->buf, c->len, st_on_scsi_done, c);
	if (!c->task) {
		c->busy = false;
		s->outstanding--;
		st_fatal("session %d: %s could not be queued: %s", s->id, c->desc, ism_session_error(s->is));
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
	c->could_conflict = st_may_be_held();
	c->exact = stress.model.known && stress.pr_out_inflight == 0;
	c->pr_seq = stress.pr_seq;
	if (c->exact) {
		c->before = stress.model;
		c->expect_conflict = st_data_conflicts(&stress.model, c->s->id, write);
	}
}

static void send_own_write(struct sess *s, struct cmd *c)
{
	uint32_t slot = st_pick(OWN_SLOTS);
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
	c->lba = stress.own_base + ((uint64_t)s->id * OWN_SLOTS + slot) * SLOT_BLOCKS;
	c->len = SLOT_BLOCKS * stress.bs;
	for (uint32_t b = 0; b < SLOT_BLOCKS; b++)
		st_fill_block(c->buf + (size_t)b * stress.bs, stress.bs, stress.salt, s->id, slot, c->gen, b);
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
	uint32_t slot = st_pick(OWN_SLOTS);
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
	c->lba = stress.own_base + ((uint64_t)s->id * OWN_SLOTS + slot) * SLOT_BLOCKS;
	c->len = SLOT_BLOCKS * stress.bs;
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
	c->blocks = 1 + st_pick(2 * SLOT_BLOCKS);
	c->lba = stress.shared_base + st_pick(total - c->blocks + 1);
	c->len = c->blocks * stress.bs;
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

const char *st_pr_out_name(uint8_t sa, uint64_t sark)
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
	int victim = st_session_of_key(sark, stress.nsess);
	if (sa == PRO_PREEMPT)
		snprintf(c->desc, sizeof(c->desc), "PERSISTENT RESERVE OUT PREEMPT of session %d's key, type %u", victim, type);
	else if (sa == PRO_RESERVE || sa == PRO_RELEASE)
		snprintf(c->desc, sizeof(c->desc), "PERSISTENT RESERVE OUT %s type %u", st_pr_out_name(sa, sark), type);
	else
		snprintf(c->desc, sizeof(c->desc), "PERSISTENT RESERVE OUT %s", st_pr_out_name(sa, sark));
	c->reserve_like = sa == PRO_RESERVE || sa == PRO_PREEMPT;
	c->exact = stress.phase == PH_CHECKED && stress.model.known && stress.pr_out_inflight == 0;
	if (c->exact) {
		c->before = stress.model;
		c->expect = st_pr_out_predict(&stress.model, s->id, sa, type, sark, stress.nsess, &c->after);
	}
	stress.pr_seq++;
	c->pr_seq = stress.pr_seq;
	stress.pr_out_inflight++;
	if (c->reserve_like) {
		stress.reserve_like_inflight++;
		st_mark_could_conflict();
	}
	uint8_t cdb[16] = {0x5f, sa, (uint8_t)type, 0, 0, 0, 0, 0, 24, 0};
	s->pr = c;
	stress.pr_out++;
	if (!send_cmd(s, c, cdb, 10, ISM_DIR_WRITE)) {
		s->pr = NULL;
		stress.pr_out_inflight--;
	}
}

static void send_pr_in(struct sess *s, struct cmd *c, uint8_t sa)
{
	static const char *names[] = {"READ KEYS", "READ RESERVATION", "REPORT CAPABILITIES", "READ FULL STATUS"};
	c->kind = K_PR_IN;
	c->sa = sa;
	c->len = PR_IN_ALLOC;
	c->exact = stress.model.known && stress.pr_out_inflight == 0;
	c->before = stress.model;
	c->pr_seq = stress.pr_seq;
	snprintf(c->desc, sizeof(c->desc), "PERSISTENT RESERVE IN %s%s", names[sa], c->sync ? " (state read back)" : "");
	uint8_t cdb[16] = {0x5e, sa, 0, 0, 0, 0, 0, PR_IN_ALLOC >> 8, PR_IN_ALLOC & 0xff, 0};
	s->pr = c;
	stress.pr_in++;
	if (!send_cmd(s, c, cdb, 10, ISM_DIR_READ))
		s->pr = NULL;
}

static int other_session(int me)
{
	int v = (int)st_pick((unsigned)stress.nsess - 1);
	return v >= me ? v + 1 : v;
}

static uint8_t any_type(void)
{
	static const uint8_t types[] = {PRT_WE_RO, PRT_EA_RO, PRT_EA};
	return types[st_pick(3)];
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
	unsigned r = st_pick(100);
	if (r < 25 || !st_pr_out_allowed()) {
		if (r % 3 == 0) {
			send_pr_in(s, c, PRI_READ_FULL_STATUS);
		} else {
			s->rk_valid = false;
			send_pr_in(s, c, PRI_READ_KEYS);
		}
		return;
	}
	uint64_t mine = st_key_of(s->id);
	if (stress.phase == PH_FREE) {
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
	const struct st_pr_model *m = &stress.model;
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
			  .sent_ms = st_now_ms(), .eh = eh};
	c->abort = t;
	stress.aborts_asked++;
	if (eh)
		stress.eh_aborts++;
	if (ism_task_mgmt_async(s->is, ISM_TMF_ABORT_TASK, stress.u->lun, c->task, st_on_tmf_done, t) != 0) {
		t->busy = false;
		c->abort = NULL;
		st_fatal("session %d: ABORT TASK of %s could not be queued: %s", s->id, c->desc, ism_session_error(s->is));
		return false;
	}
	return true;
}

static bool reset_allowed(uint64_t now)
{
	if (stress.reset_inflight || now - stress.reset_done_ms < RESET_EVERY_MS || now + 1500 > stress.end)
		return false;
	if (stress.phase != PH_FREE && stress.phase != PH_CHECKED)
		return false;
	if (stress.phase == PH_CHECKED && stress.pr_out_inflight)
		return false; /* its outcome would be lost with the task set, and the state with it */
	for (int i = 0; i < stress.nsess; i++)
		if (stress.sess[i].due || stress.sess[i].eh)
			return false;
	return true;
}

static void send_reset(struct sess *s)
{
	struct tmf *t = free_tmf(s);
	if (!t)
		return;
	*t = (struct tmf){.s = s, .busy = true, .fn = ISM_TMF_LUN_RESET, .sent_ms = st_now_ms()};
	for (int i = 0; i < stress.nsess; i++)
		stress.sess[i].ua29_at_send = stress.sess[i].ua29;
	stress.reset_inflight = true;
	stress.reset_by = s->id;
	stress.resets++;
	if (ism_task_mgmt_async(s->is, ISM_TMF_LUN_RESET, stress.u->lun, NULL, st_on_tmf_done, t) != 0) {
		t->busy = false;
		stress.reset_inflight = false;
		st_fatal("session %d: LOGICAL UNIT RESET could not be queued: %s", s->id, ism_session_error(s->is));
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
	if (stress.reset_inflight && stress.reset_by == s->id)
		return;
	for (int tries = 0; tries < DEPTH && now < stress.end && !stress.fatal; tries++) {
		struct cmd *c = free_cmd(s);
		if (!c || s->outstanding >= DEPTH - 1 || (stress.reset_inflight && stress.reset_by == s->id))
			break;
		unsigned r = st_pick(1000);
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
				int k = (int)st_pick(DEPTH);
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
	if (stress.phase == PH_CHECKED && now >= stress.phase_end) {
		stress.phase = PH_FREE;
		stress.phase_end = now + FREE_MS;
		stress.phases++;
		stress.model.known = false;
		st_mark_could_conflict();
	} else if (stress.phase == PH_FREE && now >= stress.phase_end) {
		stress.phase = PH_SETTLE;
	}
	if (stress.phase == PH_SETTLE && stress.pr_out_inflight == 0 && !stress.reset_inflight && now < stress.end) {
		int first = (int)st_pick((unsigned)stress.nsess);
		for (int i = 0; i < stress.nsess; i++) {
			struct sess *s = &stress.sess[(first + i) % stress.nsess];
			struct cmd *c = free_cmd(s);
			if (s->pr || !c)
				continue;
			c->sync = true;
			c->pair_rr = false;
			stress.phase = PH_SYNC;
			send_pr_in(s, c, PRI_READ_FULL_STATUS);
			break;
		}
	}
}

static void check_bounds(uint64_t now)
{
	uint64_t bound = (uint64_t)stress.bound_s * 1000;
	for (int i = 0; i < stress.nsess && !stress.fatal; i++) {
		struct sess *s = &stress.sess[i];
		for (int k = 0; k < DEPTH; k++)
			if (s->cmds[k].busy && now - s->cmds[k].sent_ms > bound)
				st_fatal("session %d: no answer to %s within %u s", i, s->cmds[k].desc, stress.bound_s);
		for (int k = 0; k < NTMF; k++)
			if (s->tmfs[k].busy && now - s->tmfs[k].sent_ms > bound)
				st_fatal("session %d: no answer to %s within %u s", i,
				      s->tmfs[k].fn == ISM_TMF_ABORT_TASK ? "ABORT TASK" : "LOGICAL UNIT RESET", stress.bound_s);
	}
}

static bool anything_in_flight(void)
{
	for (int i = 0; i < stress.nsess; i++) {
		if (stress.sess[i].outstanding)
			return true;
		for (int k = 0; k < NTMF; k++)
			if (stress.sess[i].tmfs[k].busy)
				return true;
	}
	return false;
}

/* A session the library had to give up: say what its reason means for the target. */
static void session_failed(int i)
{
	const char *e = ism_session_error(stress.sess[i].is);
	st_fatal("session %d failed: %s%s", i, e,
	      strstr(e, "unexpected ITT") ? " (an answer to a task that had already ended, as aborted after its ABORT "
					    "TASK or LU RESET was answered, or with an earlier answer)"
					  : "");
}

static void service_all(int timeout_ms)
{
	struct pollfd fds[ST_MAX_SESSIONS * 4];
	int owner[ST_MAX_SESSIONS * 4];
	int n = 0;
	for (int i = 0; i < stress.nsess; i++) {
		int k = ism_session_fds(stress.sess[i].is, fds + n, ST_MAX_SESSIONS * 4 - n);
		if (k == 0 && !stress.closing) {
			st_fatal("session %d has no connection left: %s", i, ism_session_error(stress.sess[i].is));
			return;
		}
		for (int j = 0; j < k; j++)
			owner[n + j] = i;
		n += k;
		int to = ism_session_timeout_ms(stress.sess[i].is);
		if (to >= 0 && to < timeout_ms)
			timeout_ms = to;
	}
	int r = poll(fds, (nfds_t)n, timeout_ms);
	if (r < 0 && errno != EINTR) {
		st_fatal("poll: %s", strerror(errno));
		return;
	}
	for (int j = 0; r > 0 && j < n; j++)
		if (fds[j].revents && ism_session_service(stress.sess[owner[j]].is, fds[j].fd, fds[j].revents) < 0)
			session_failed(owner[j]);
	for (int i = 0; i < stress.nsess && !stress.fatal; i++)
		if (ism_session_service(stress.sess[i].is, -1, 0) < 0)
			session_failed(i);
}

void st_workload(void)
{
	stress.t0 = st_now_ms();
	stress.end = stress.t0 + (uint64_t)stress.seconds * 1000;
	stress.phase = PH_CHECKED;
	stress.phase_end = stress.t0 + CHECKED_MS;
	uint64_t hard_end = stress.end + (uint64_t)stress.bound_s * 1000 + 2000;
	while (!stress.fatal) {
		uint64_t now = st_now_ms();
		if (now >= stress.end && !anything_in_flight())
			break;
		if (now > hard_end) {
			st_fatal("commands still unanswered %u s after the end of the run", stress.bound_s);
			break;
		}
		run_phases(now);
		for (int i = 0; i < stress.nsess && !stress.fatal; i++)
			run_session_actions(&stress.sess[(i + (int)(now % (uint64_t)stress.nsess)) % stress.nsess], now);
		service_all(20);
		check_bounds(st_now_ms());
		for (int i = 0; i < stress.nsess; i++)
			st_due_evaluate(&stress.sess[i]);
	}
}
