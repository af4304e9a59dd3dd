/*
 * Sessions: creation and teardown, the connections that belong to them, and the session-wide
 * command window. Non-immediate PDUs run in CmdSN order across all connections; a PDU that
 * arrives ahead of ExpCmdSN waits in the hold ring until the gap is filled.
 *
 * The window the target advertises (MaxCmdSN - ExpCmdSN + 1) is the number of free command slots
 * of the session: every command the initiator may send has room. The initiator never lowers its
 * MaxCmdSN (RFC 7143 4.2.2.1), so the advertised value only grows; the hold ring is indexed by
 * CmdSN modulo a power of two at least as large as the window, so a slot can never be claimed by
 * two PDUs of the window at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "target/conn.h"
#include "target/erl2.h"
#include "target/ffp.h"
#include "target/login.h"
#include "target/server.h"
#include "target/session.h"
#include "target/shard.h"
#include "target/task.h"
#include "util/log.h"
#include "util/sbuf.h"
#include "util/serial.h"

struct held_pdu {
	struct conn *conn;
	uint32_t cmdsn;
	uint64_t since_ms;
	struct task *task; /* SCSI commands: the task already collecting data */
	struct bhs bhs;    /* opcode 0xff: a placeholder that runs as nothing */
	uint8_t *data;     /* other PDUs: a copy of their data segment */
	uint32_t len;
};

uint32_t session_queue_depth(const struct server *srv) { return srv->cfg->max_commands; }

static uint32_t ring_size_for(uint32_t depth)
{
	uint32_t n = 1;
	while (n < depth)
		n <<= 1;
	return n;
}

struct session *session_create(struct server *srv, struct conn *c, uint16_t tsih)
{
	struct login_state *ls = c->login;
	struct session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->shard = c->shard;
	s->tsih = tsih; /* before it enters the index, where other loops read it */
	s->node = ls->session_type == SESSION_NORMAL ? server_find_node(srv, ls->target_name) : NULL;
	s->type = ls->session_type;
	memcpy(s->isid, ls->isid, 6);
	snprintf(s->initiator_name, sizeof(s->initiator_name), "%s", ls->initiator_name);
	snprintf(s->initiator_alias, sizeof(s->initiator_alias), "%s", ls->initiator_alias);
	s->tpgt = c->tpgt;
	s->queue_depth = session_queue_depth(srv);
	s->ring_mask = ring_size_for(s->queue_depth) - 1;
	s->ring = xcalloc(s->ring_mask + 1, sizeof(*s->ring));
	s->exp_cmdsn = ls->cmdsn;
	s->max_cmdsn = s->exp_cmdsn + s->queue_depth - 1;
	s->created = (uint64_t)time(NULL);
	snprintf(s->auth_method, sizeof(s->auth_method), "%s", ls->auth_user ? "CHAP" : "None");
	if (ls->auth_user)
		s->auth_user = xstrdup(ls->auth_user);
	if (s->node) {
		s->nexus.id = atomic_fetch_add(&srv->next_nexus_id, 1) + 1;
		snprintf(s->nexus.initiator_name, sizeof(s->nexus.initiator_name), "%s", s->initiator_name);
		memcpy(s->nexus.isid, s->isid, 6);
		snprintf(s->nexus.initiator_port, sizeof(s->nexus.initiator_port), "%s,i,0x%02x%02x%02x%02x%02x%02x",
			 s->initiator_name, s->isid[0], s->isid[1], s->isid[2], s->isid[3], s->isid[4], s->isid[5]);
		s->nexus.rel_port_id = s->tpgt;
		scsi_target_nexus_added(s->node->scsi, &s->nexus);
		s->nexus_registered = true;
	}
	server_add_session(srv, s);
	return s;
}

void session_add_conn(struct session *s, struct conn *c)
{
	c->sess = s;
	c->sess_next = s->conns;
	s->conns = c;
	s->nconns++;
	s->buffered += c->buffered;
}

static void held_free(struct session *s, struct held_pdu *h)
{
	if (!h->task && h->bhs.opcode != 0xff)
		s->held_other--;
	s->held_bytes -= h->len;
	s->nheld--;
	free(h->data);
	free(h);
}

static void session_free(void *arg)
{
	struct session *s = arg;
	for (uint32_t i = 0; i <= s->ring_mask; i++)
		if (s->ring[i])
			held_free(s, s->ring[i]);
	free(s->ring);
	free(s->auth_user);
	free(s);
}

static void session_end(struct session *s)
{
	loop_timer_stop(s->shard->loop, &s->recover_timer);
	if (s->nexus_registered) {
		scsi_target_nexus_lost(s->node->scsi, &s->nexus);
		s->nexus_registered = false;
	}
	s->ended = true;
	server_remove_session(s->srv, s);
	log_info("session TSIH %u of '%s' ended", s->tsih, s->initiator_name);
	loop_defer(s->shard->loop, session_free, s);
}

void session_remove_conn(struct session *s, struct conn *c)
{
	stats_add(&s->closed, &c->stats);
	for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->sess_next) {
		if (*pp == c) {
			*pp = c->sess_next;
			s->nconns--;
			break;
		}
	}
	s->buffered -= c->buffered;
	/*
	 * Held PDUs of this connection die with it (ERL 0: its tasks are gone too), but their CmdSNs
	 * were received: placeholders keep the other connections' commands flowing.
	 */
	for (uint32_t i = 0; i <= s->ring_mask; i++) {
		struct held_pdu *h = s->ring[i];
		if (!h || h->conn != c)
			continue;
		if (!h->task && h->bhs.opcode != 0xff)
			s->held_other--;
		s->held_bytes -= h->len;
		free(h->data);
		h->data = NULL;
		h->len = 0;
		h->task = NULL;
		h->conn = NULL;
		h->bhs.opcode = 0xff;
	}
	c->sess = NULL;
	session_end_if_empty(s);
}

void session_end_if_empty(struct session *s)
{
	/* Failed connections awaiting recovery (level 2) keep the session, so that it can go on. */
	if (!s->ended && s->nconns == 0 && s->nfailed == 0)
		session_end(s);
}

void session_drop_held(struct session *s, struct conn *c)
{
	for (uint32_t i = 0; i <= s->ring_mask; i++) {
		struct held_pdu *h = s->ring[i];
		if (!h || h->conn != c)
			continue;
		if (h->bhs.opcode == 0xff) { /* an aborted command: its CmdSN stays taken */
			h->conn = NULL;
			continue;
		}
		s->ring[i] = NULL;
		if (h->task)
			task_abort(h->task); /* waiting for its turn: freed at once */
		held_free(s, h);
	}
}

void session_close(struct session *s, const char *why)
{
	log_info("closing session TSIH %u of '%s': %s", s->tsih, s->initiator_name, why);
	s->closing = true;
	erl2_discard_all(s);
	/* Closing the last connection ends the session; take a snapshot since the list shrinks. */
	while (s->conns) {
		struct conn *c = s->conns;
		conn_close(c, why);
		if (c->sess == s) /* conn_close always detaches; guard against a loop regardless */
			break;
	}
	session_end_if_empty(s);
}

/*
 * End a session an administrator no longer admits: ask the initiator to log out (Async Message),
 * and drop the session after grace seconds if it has not (the housekeeping tick does).
 */
void session_revoke(struct session *s, unsigned grace, const char *why)
{
	log_info("session TSIH %u of '%s': %s; asking it to log out within %u s", s->tsih, s->initiator_name, why,
		 grace);
	if (grace == 0 || s->type != SESSION_NORMAL) {
		session_close(s, why);
		return;
	}
	for (struct conn *c = s->conns; c; c = c->sess_next) {
		send_async_logout(c, (uint16_t)grace);
		conn_flush(c);
	}
	uint64_t deadline = loop_now_ms() + (uint64_t)grace * 1000u;
	if (!s->kill_deadline_ms || deadline < s->kill_deadline_ms)
		s->kill_deadline_ms = deadline;
}

/*
 * Commands (and other numbered PDUs) the session holds: each takes a slot of the window. An
 * answered command gives its slot back as its response is queued, so the response itself tells
 * the initiator (a peer that does not read its responses is held back by the send backlog).
 */
uint32_t session_outstanding(const struct session *s)
{
	uint32_t n = s->held_other;
	for (const struct conn *c = s->conns; c; c = c->sess_next)
		n += c->ntasks - c->nsending;
	/* Tasks waiting for reassignment keep their slots. */
	for (const struct conn *c = s->failed; c; c = c->sess_next)
		n += c->ntasks - c->nsending;
	return n;
}

uint32_t session_max_cmdsn(struct session *s)
{
	uint32_t used = session_outstanding(s);
	uint32_t free_slots = used < s->queue_depth ? s->queue_depth - used : 0;
	uint32_t m = s->exp_cmdsn + free_slots - 1;
	if (sn_gt(m, s->max_cmdsn))
		s->max_cmdsn = m;
	return s->max_cmdsn;
}

/* Run held PDUs whose turn has come. */
void session_advance(struct session *s)
{
	struct held_pdu *h;
	/* Running a PDU may end the session (a logout, a fatal error); its memory lives until the
	 * end of this loop iteration, but nothing more runs for it. */
	while (!s->ended && (h = s->ring[s->exp_cmdsn & s->ring_mask]) != NULL && h->cmdsn == s->exp_cmdsn) {
		s->ring[s->exp_cmdsn & s->ring_mask] = NULL;
		s->exp_cmdsn++;
		struct conn *c = h->conn;
		struct task *t = h->task;
		struct bhs b = h->bhs;
		uint8_t *data = h->data;
		uint32_t len = h->len;
		h->data = NULL;
		held_free(s, h);
		if (t)
			task_start(t);
		else if (c && b.opcode != 0xff)
			ffp_run_ordered(c, &b, data, len);
		free(data);
		if (c && c->phase == PHASE_FULL_FEATURE)
			conn_flush(c);
	}
}

static uint32_t pdu_cmdsn(const struct bhs *b)
{
	switch (b->opcode) {
	case OP_SCSI_CMD: return b->cmd.cmdsn;
	case OP_NOP_OUT: return b->nop_out.cmdsn;
	case OP_TASK_MGMT_REQ: return b->tmf.cmdsn;
	case OP_TEXT_REQ: return b->text.cmdsn;
	case OP_LOGOUT_REQ: return b->logout.cmdsn;
	default: return 0;
	}
}

static bool in_window(struct session *s, uint32_t sn)
{
	return sn_gt(sn, s->exp_cmdsn) && sn_le(sn, session_max_cmdsn(s));
}

/*
 * Decide when a numbered PDU runs. Returns true if the caller should process it now; false if it
 * was held (a copy kept) or dropped as outside the window or a duplicate of a held CmdSN (RFC 7143
 * 4.2.2.1: silently ignored). For SCSI commands, `task` is the task already created, held
 * instead of a copy; a dropped task is freed.
 */
bool session_order(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len, struct task *task)
{
	struct session *s = c->sess;
	if (b->immediate)
		return true;
	uint32_t sn = pdu_cmdsn(b);
	/* A closed window (MaxCmdSN = ExpCmdSN - 1) refuses even the expected CmdSN. */
	if (sn == s->exp_cmdsn && sn_le(sn, session_max_cmdsn(s))) {
		s->exp_cmdsn++;
		return true;
	}
	const char *why = "outside the window";
	if (in_window(s, sn)) {
		struct held_pdu **slot = &s->ring[sn & s->ring_mask];
		/* Copies of held data segments count against the session's data bound like task buffers. */
		bool fits = task || s->buffered + s->held_bytes + len <= s->srv->cfg->max_data_session;
		if (!*slot && fits) {
			struct held_pdu *h = xcalloc(1, sizeof(*h));
			h->conn = c;
			h->cmdsn = sn;
			h->since_ms = loop_now_ms();
			h->bhs = *b;
			h->task = task;
			if (!task) {
				s->held_other++;
				if (len) {
					h->data = xmalloc(len);
					memcpy(h->data, data, len);
					h->len = len;
					s->held_bytes += len;
				}
			}
			s->nheld++;
			*slot = h;
			return false;
		}
		why = *slot ? "duplicating a held CmdSN" : "over max-data-per-session";
	}
	log_debug("TSIH %u: dropping %s with CmdSN %u %s [%u, %u]", s->tsih, opcode_str(b->opcode), sn, why,
		  s->exp_cmdsn, s->max_cmdsn);
	if (task)
		task_abort(task);
	return false;
}

/* A held task is being aborted: forget its place in the queue, but keep its CmdSN consumed. */
void session_unhold_task(struct session *s, struct task *t)
{
	struct held_pdu *h = s->ring[t->cmdsn & s->ring_mask];
	if (h && h->task == t) {
		h->task = NULL;
		h->bhs.opcode = 0xff;
	}
}

/* Count a CmdSN as received without a PDU (an aborted command that never arrived). */
void session_skip_cmdsn(struct session *s, uint32_t sn)
{
	if (sn == s->exp_cmdsn) {
		s->exp_cmdsn++;
		session_advance(s);
		return;
	}
	if (!in_window(s, sn) || s->ring[sn & s->ring_mask])
		return;
	struct held_pdu *h = xcalloc(1, sizeof(*h));
	h->cmdsn = sn;
	h->since_ms = loop_now_ms();
	h->bhs.opcode = 0xff;
	s->nheld++;
	s->ring[sn & s->ring_mask] = h;
}

/* The oldest PDU still waiting for a gap in front of it, as milliseconds; 0 when none waits. */
uint64_t session_oldest_held_ms(const struct session *s)
{
	uint64_t oldest = 0;
	if (!s->nheld)
		return 0;
	for (uint32_t i = 0; i <= s->ring_mask; i++) {
		const struct held_pdu *h = s->ring[i];
		if (h && (!oldest || h->since_ms < oldest))
			oldest = h->since_ms;
	}
	return oldest;
}
