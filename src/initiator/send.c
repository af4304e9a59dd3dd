/*
 * The send path: commands wait in CmdSN order until the window (MaxCmdSN) and a connection let
 * them go, then their PDUs are queued on the connection: SCSI Command with immediate and
 * unsolicited data, Data-Out sequences, NOP-Out, Task Management, Text and Logout requests.
 */
#include <string.h>

#include "initiator/internal.h"
#include "util/bytes.h"
#include "util/lun.h"
#include "util/serial.h"

/* SCSI task attributes (RFC 7143 11.3.1.3); every command is sent SIMPLE. */
enum task_attr {
	TASK_ATTR_UNTAGGED = 0,
	TASK_ATTR_SIMPLE = 1,
	TASK_ATTR_ORDERED = 2,
	TASK_ATTR_HEAD_OF_QUEUE = 3,
	TASK_ATTR_ACA = 4,
};

struct txitem *ism_send_data_out(struct ism_conn *c, struct ism_task *t, uint32_t ttt, uint32_t offset,
				 uint32_t len)
{
	uint32_t seg = c->params.peer_max_recv_dsl ? c->params.peer_max_recv_dsl : 8192;
	uint32_t datasn = 0;
	struct txitem *last = NULL;
	while (len) {
		uint32_t n = len < seg ? len : seg;
		struct bhs b = {0};
		b.opcode = OP_DATA_OUT;
		b.final = n == len;
		lun_encode(t->lun, b.lun);
		b.itt = t->itt;
		b.data_out.ttt = ttt;
		b.data_out.expstatsn = c->exp_statsn;
		b.data_out.datasn = datasn++;
		b.data_out.offset = offset;
		last = ism_conn_send(c, &b, t->buf + offset, n, t, NULL);
		offset += n;
		len -= n;
	}
	return last;
}

/* Round robin over the slots in use (slots past the highest one ever used are never looked at). */
static struct ism_conn *pick_conn(struct ism_session *s)
{
	unsigned n = s->conn_slots;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = s->rr + k;
		if (i >= n)
			i -= n;
		struct ism_conn *c = &s->conns[i];
		if (ism_conn_usable(c)) {
			s->rr = i + 1 < n ? i + 1 : 0;
			return c;
		}
	}
	return NULL;
}

/* Write now unless inside ism_session_service, which writes every connection's queue at its end. */
void ism_flush_soon(struct ism_conn *c)
{
	if (c->s->in_service == 0)
		ism_conn_flush(c);
}

static void send_scsi(struct ism_conn *c, struct ism_task *t)
{
	struct ism_session *s = c->s;
	struct bhs b = {0};
	b.opcode = OP_SCSI_CMD;
	b.cmd.read = t->dir == ISM_DIR_READ;
	b.cmd.write = t->dir == ISM_DIR_WRITE;
	b.cmd.attr = TASK_ATTR_SIMPLE;
	b.cmd.edtl = t->dir == ISM_DIR_NONE ? 0 : t->len;
	b.cmd.cmdsn = t->cmdsn;
	b.cmd.expstatsn = c->exp_statsn;
	memcpy(b.cmd.cdb, t->cdb, 16);
	lun_encode(t->lun, b.lun);
	b.itt = t->itt;
	uint32_t imm = 0, unsol = 0;
	if (t->dir == ISM_DIR_WRITE && t->len) {
		uint32_t first = s->params.first_burst_length;
		uint32_t seg = c->params.peer_max_recv_dsl;
		if (s->params.immediate_data) {
			imm = t->len < first ? t->len : first;
			if (imm > seg)
				imm = seg;
		}
		if (!s->params.initial_r2t) {
			unsol = t->len < first ? t->len : first;
			unsol = unsol > imm ? unsol - imm : 0;
		}
	}
	b.final = unsol == 0;
	ism_conn_send(c, &b, imm ? t->buf : NULL, imm, t, NULL);
	if (unsol)
		ism_send_data_out(c, t, RESERVED_TAG, imm, unsol);
	t->write_covered = t->write_end = imm + unsol;
	c->ios++;
}

void ism_resend_scsi(struct ism_conn *c, struct ism_task *t)
{
	send_scsi(c, t);
}

static void send_task(struct ism_conn *c, struct ism_task *t)
{
	struct ism_session *s = c->s;
	struct bhs b = {0};
	b.itt = t->itt;
	b.immediate = t->immediate;
	switch (t->kind) {
	case TASK_SCSI:
		send_scsi(c, t);
		return;
	case TASK_NOP:
		b.opcode = OP_NOP_OUT;
		b.final = true;
		b.nop_out.ttt = RESERVED_TAG;
		b.nop_out.cmdsn = t->cmdsn;
		b.nop_out.expstatsn = c->exp_statsn;
		if (!t->sent_ms)
			t->sent_ms = ism_now_ms();
		ism_conn_send(c, &b, NULL, 0, NULL, NULL);
		return;
	case TASK_TMF:
		b.opcode = OP_TASK_MGMT_REQ;
		b.final = true;
		b.tmf.function = t->tmf_function;
		lun_encode(t->lun, b.lun);
		bool ref = t->tmf_function == TMF_ABORT_TASK || t->tmf_function == TMF_TASK_REASSIGN;
		b.tmf.rtt = ref ? t->tmf_ref_itt : RESERVED_TAG;
		b.tmf.cmdsn = t->cmdsn;
		b.tmf.expstatsn = c->exp_statsn;
		b.tmf.refcmdsn = ref ? t->tmf_ref_cmdsn : 0;
		b.tmf.expdatasn = t->tmf_function == TMF_TASK_REASSIGN ? t->tmf_expdatasn : 0;
		ism_conn_send(c, &b, NULL, 0, NULL, NULL);
		return;
	case TASK_TEXT: {
		static const char st[] = "SendTargets=All";
		b.opcode = OP_TEXT_REQ;
		b.final = true;
		b.text.ttt = RESERVED_TAG;
		b.text.cmdsn = t->cmdsn;
		b.text.expstatsn = c->exp_statsn;
		uint8_t *d = xmalloc(sizeof(st));
		memcpy(d, st, sizeof(st));
		ism_conn_send(c, &b, d, sizeof(st), NULL, d);
		return;
	}
	case TASK_LOGOUT:
		b.opcode = OP_LOGOUT_REQ;
		b.final = true;
		b.logout.reason = t->logout_reason;
		b.logout.cid = t->logout_reason == LOGOUT_CLOSE_SESSION ? 0 : t->logout_cid;
		b.logout.cmdsn = t->cmdsn;
		b.logout.expstatsn = c->exp_statsn;
		if (t->logout_reason == LOGOUT_REMOVE_FOR_RECOVERY) { /* another connection's CID: this one stays */
			ism_conn_send(c, &b, NULL, 0, NULL, NULL);
			return;
		}
		c->state = CONN_LOGOUT;
		if (t->logout_reason == LOGOUT_CLOSE_SESSION)
			s->logging_out = true;
		ism_conn_send(c, &b, NULL, 0, NULL, NULL);
		return;
	case TASK_LOGIN:
		return;
	}
}

/* Can this waiting task go now? Logouts wait for the commands before them to finish. */
static bool logout_ready(struct ism_session *s, struct ism_task *t)
{
	if (t->logout_reason == LOGOUT_CLOSE_SESSION) {
		for (int b = 0; b < ISM_TASK_BUCKETS; b++)
			for (struct ism_task *o = s->tasks[b]; o; o = o->hnext)
				if (o->state == TASK_SENT && o != t)
					return false;
		for (struct ism_task *p = s->pending_head; p && p != t; p = p->qnext)
			return false;
		return true;
	}
	return t->conn && t->conn->outstanding == 0;
}

/* t takes its CmdSN and goes on c (its PDUs queued, written with the others). */
static void dispatch(struct ism_conn *c, struct ism_task *t)
{
	struct ism_session *s = c->s;
	t->conn = c;
	t->cmdsn = s->cmdsn;
	if (!t->immediate)
		s->cmdsn++;
	t->state = TASK_SENT;
	c->outstanding++;
	if (s->cfg.cmd_timeout_ms > 0 && t->kind != TASK_LOGIN) {
		t->sent_ms = s->in_service ? s->now_ms : ism_now_ms();
		ism_sent_list_add(c, t);
	}
	send_task(c, t);
}

void ism_send_on(struct ism_conn *c, struct ism_task *t)
{
	dispatch(c, t);
	ism_flush_soon(c);
}

/* Send what the window and the connections allow, in CmdSN order. */
void ism_kick(struct ism_session *s)
{
	struct ism_task *t = s->pending_head;
	while (t) {
		struct ism_task *next = t->qnext;
		struct ism_conn *c = t->conn;
		if (c && c->state != CONN_FFP) {
			ism_set_error(s, "connection %u is not logged in", c->cid);
			ism_task_fail(t, ISM_ERR_TRANSPORT);
			t = next;
			continue;
		}
		if (t->kind == TASK_LOGOUT && !logout_ready(s, t)) {
			t = next;
			continue;
		}
		if (!t->immediate && sn_gt(s->cmdsn, s->max_cmdsn))
			break; /* window closed: everything after waits too, to keep CmdSN order */
		if (!c) {
			c = pick_conn(s);
			if (!c)
				break;
		}
		ism_pending_remove(s, t);
		dispatch(c, t);
		t = next;
	}
	/* Inside ism_session_service everything queued is written at the end, in one writev per
	 * connection; called from outside (a new command), write now unless the caller corked. */
	if (s->in_service == 0 && s->cork == 0)
		ism_flush_all(s);
}

void ism_session_cork(struct ism_session *s) { s->cork++; }

void ism_session_uncork(struct ism_session *s)
{
	if (s->cork > 0 && --s->cork == 0 && s->in_service == 0)
		ism_flush_all(s);
}

void ism_submit(struct ism_session *s, struct ism_task *t)
{
	t->qnext = NULL;
	t->queued_ms = s->in_service ? s->now_ms : ism_now_ms();
	if (s->pending_tail)
		s->pending_tail->qnext = t;
	else
		s->pending_head = t;
	s->pending_tail = t;
	s->npending++;
	ism_kick(s);
}
