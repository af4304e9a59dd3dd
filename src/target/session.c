/*
 * Sessions: creation and teardown, the connections that belong to them, and the session-wide
 * command window. Non-immediate PDUs run in CmdSN order across all connections; a PDU that
 * arrives ahead of ExpCmdSN waits in the held list until the gap is filled.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "target/target.h"
#include "util/log.h"
#include "util/sbuf.h"
#include "util/serial.h"

/* Commands the target accepts ahead of completion: MaxCmdSN - ExpCmdSN + 1. */
#define SESSION_QUEUE_DEPTH 128u

struct held_pdu {
	struct held_pdu *next;
	struct conn *conn;
	uint32_t cmdsn;
	struct task *task; /* SCSI commands: the task already collecting data */
	struct bhs bhs;
	uint8_t *data;     /* other PDUs: a copy of their data segment */
	uint32_t len;
};

struct session *session_create(struct server *srv, struct conn *c)
{
	struct login_state *ls = c->login;
	struct session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->node = ls->node;
	s->type = ls->session_type;
	memcpy(s->isid, ls->isid, 6);
	snprintf(s->initiator_name, sizeof(s->initiator_name), "%s", ls->initiator_name);
	snprintf(s->initiator_alias, sizeof(s->initiator_alias), "%s", ls->initiator_alias);
	s->tpgt = c->tpgt;
	s->queue_depth = SESSION_QUEUE_DEPTH;
	s->created = (uint64_t)time(NULL);
	snprintf(s->auth_method, sizeof(s->auth_method), "%s", ls->cred.user ? "CHAP" : "None");
	if (s->node) {
		s->nexus.id = ++srv->next_nexus_id;
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
}

static void held_free(struct held_pdu *h)
{
	free(h->data);
	free(h);
}

static void session_free(void *arg)
{
	struct session *s = arg;
	while (s->held) {
		struct held_pdu *h = s->held;
		s->held = h->next;
		held_free(h);
	}
	free(s);
}

static void session_end(struct session *s)
{
	if (s->nexus_registered) {
		scsi_target_nexus_lost(s->node->scsi, &s->nexus);
		s->nexus_registered = false;
	}
	server_remove_session(s->srv, s);
	log_info("session TSIH %u of '%s' ended", s->tsih, s->initiator_name);
	loop_defer(s->srv->loop, session_free, s);
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
	/* Held PDUs of this connection die with it (ERL 0: its tasks are gone too). */
	struct held_pdu **pp = &s->held;
	while (*pp) {
		struct held_pdu *h = *pp;
		if (h->conn == c) {
			*pp = h->next;
			held_free(h);
		} else {
			pp = &h->next;
		}
	}
	c->sess = NULL;
	if (s->nconns == 0)
		session_end(s);
}

void session_close(struct session *s, const char *why)
{
	log_info("closing session TSIH %u of '%s': %s", s->tsih, s->initiator_name, why);
	/* Closing the last connection ends the session; take a snapshot since the list shrinks. */
	while (s->conns) {
		struct conn *c = s->conns;
		conn_close(c, why);
		if (c->sess == s) /* conn_close always detaches; guard against a loop regardless */
			break;
	}
}


/* Run held PDUs whose turn has come. */
void session_advance(struct session *s)
{
	bool progress = true;
	while (progress) {
		progress = false;
		for (struct held_pdu **pp = &s->held; *pp; pp = &(*pp)->next) {
			struct held_pdu *h = *pp;
			if (h->cmdsn != s->exp_cmdsn)
				continue;
			*pp = h->next;
			s->exp_cmdsn++;
			struct conn *c = h->conn;
			if (h->task)
				task_start(h->task);
			else
				ffp_run_ordered(c, &h->bhs, h->data, h->len);
			held_free(h);
			if (c->phase == PHASE_FULL_FEATURE)
				conn_flush(c);
			progress = true;
			break;
		}
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

/*
 * Decide when a numbered PDU runs. Returns true if the caller should process it now; false if it
 * was held (a copy kept) or dropped as outside the window (RFC 7143 4.2.2.1: silently ignored).
 * For SCSI commands, `task` is the task already created, held instead of a copy.
 */
bool session_order(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len, struct task *task)
{
	struct session *s = c->sess;
	if (b->immediate)
		return true;
	uint32_t sn = pdu_cmdsn(b);
	if (sn == s->exp_cmdsn) {
		s->exp_cmdsn++;
		return true;
	}
	if (sn_gt(sn, s->exp_cmdsn) && sn_le(sn, session_max_cmdsn(s))) {
		struct held_pdu *h = xcalloc(1, sizeof(*h));
		h->conn = c;
		h->cmdsn = sn;
		h->bhs = *b;
		h->task = task;
		if (!task && len) {
			h->data = xmalloc(len);
			memcpy(h->data, data, len);
			h->len = len;
		}
		h->next = s->held;
		s->held = h;
		return false;
	}
	log_debug("TSIH %u: dropping %s with CmdSN %u outside the window [%u, %u]", s->tsih, opcode_str(b->opcode), sn,
		  s->exp_cmdsn, session_max_cmdsn(s));
	if (task)
		task_abort(task);
	return false;
}

/* A held task is being aborted: forget its place in the queue, but keep its CmdSN consumed. */
void session_unhold_task(struct session *s, struct task *t)
{
	for (struct held_pdu *h = s->held; h; h = h->next) {
		if (h->task == t) {
			h->task = NULL;
			h->bhs.opcode = 0xff; /* a placeholder: runs as nothing when its turn comes */
			return;
		}
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
	struct held_pdu *h = xcalloc(1, sizeof(*h));
	h->conn = s->conns;
	h->cmdsn = sn;
	h->bhs.opcode = 0xff;
	h->next = s->held;
	s->held = h;
}
