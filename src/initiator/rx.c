/*
 * Full feature phase reception: the sequence numbers a PDU from the target carries are taken in
 * one place (the CmdSN window and the connection's ExpStatSN), then the PDU goes to the handler
 * for its opcode.
 */
#include "initiator/internal.h"
#include "util/serial.h"

/* What a received PDU's StatSN field means for the connection's ExpStatSN (RFC 7143 4.2.2.2). */
enum statsn_use {
	STATSN_ABSENT,       /* no StatSN, no ExpCmdSN or MaxCmdSN either */
	STATSN_NOT_ADVANCED, /* StatSN carried for information only: R2T, Data-In without status, pings */
	STATSN_IN_ORDER,     /* a status: it must be the next StatSN, and advances it */
	STATSN_IF_NEXT,      /* Async Message and Reject: advance when next, a gap is tolerated */
};

struct pdu_serials {
	enum statsn_use use;
	uint32_t statsn, expcmdsn, maxcmdsn;
};

/* The StatSN, ExpCmdSN and MaxCmdSN fields of every PDU a target sends in full feature phase. */
static struct pdu_serials pdu_serials(const struct bhs *b)
{
	switch (b->opcode) {
	case OP_SCSI_RESP:
		return (struct pdu_serials){STATSN_IN_ORDER, b->rsp.statsn, b->rsp.expcmdsn, b->rsp.maxcmdsn};
	case OP_DATA_IN:
		return (struct pdu_serials){b->data_in.status_present ? STATSN_IN_ORDER : STATSN_NOT_ADVANCED,
					    b->data_in.statsn, b->data_in.expcmdsn, b->data_in.maxcmdsn};
	case OP_R2T:
		return (struct pdu_serials){STATSN_NOT_ADVANCED, b->r2t.statsn, b->r2t.expcmdsn, b->r2t.maxcmdsn};
	case OP_NOP_IN:
		/* A NOP-In with the reserved ITT is the target's own (a ping or a window update). */
		return (struct pdu_serials){b->itt == RESERVED_TAG ? STATSN_NOT_ADVANCED : STATSN_IN_ORDER,
					    b->nop_in.statsn, b->nop_in.expcmdsn, b->nop_in.maxcmdsn};
	case OP_TASK_MGMT_RESP:
		return (struct pdu_serials){STATSN_IN_ORDER, b->tmf_rsp.statsn, b->tmf_rsp.expcmdsn,
					    b->tmf_rsp.maxcmdsn};
	case OP_TEXT_RESP:
		return (struct pdu_serials){STATSN_IN_ORDER, b->text.statsn, b->text.expcmdsn, b->text.maxcmdsn};
	case OP_LOGOUT_RESP:
		return (struct pdu_serials){STATSN_IN_ORDER, b->logout_rsp.statsn, b->logout_rsp.expcmdsn,
					    b->logout_rsp.maxcmdsn};
	case OP_ASYNC_MSG:
		return (struct pdu_serials){STATSN_IF_NEXT, b->async.statsn, b->async.expcmdsn, b->async.maxcmdsn};
	case OP_REJECT:
		return (struct pdu_serials){STATSN_IF_NEXT, b->reject.statsn, b->reject.expcmdsn, b->reject.maxcmdsn};
	default:
		return (struct pdu_serials){STATSN_ABSENT, 0, 0, 0};
	}
}

void ism_update_window(struct ism_session *s, uint32_t expcmdsn, uint32_t maxcmdsn)
{
	/* RFC 7143 4.2.2.1: MaxCmdSN < ExpCmdSN - 1 means the values are to be ignored. */
	if (sn_lt(maxcmdsn, expcmdsn - 1))
		return;
	/* An ExpCmdSN past the next CmdSN acknowledges commands never sent: not a window to trust. */
	if (sn_gt(expcmdsn, s->cmdsn))
		return;
	if (sn_gt(expcmdsn, s->exp_cmdsn))
		s->exp_cmdsn = expcmdsn;
	if (sn_gt(maxcmdsn, s->max_cmdsn))
		s->max_cmdsn = maxcmdsn;
}

/*
 * The window and ExpStatSN after one received PDU. False when the PDU's StatSN is out of order:
 * the connection has failed then (ErrorRecoveryLevel 0 has no status recovery), and the PDU is
 * not handled.
 */
bool ism_process_pdu_serials(struct ism_conn *c, const struct bhs *b)
{
	struct pdu_serials sn = pdu_serials(b);
	if (sn.use == STATSN_ABSENT)
		return true;
	ism_update_window(c->s, sn.expcmdsn, sn.maxcmdsn);
	switch (sn.use) {
	case STATSN_IN_ORDER:
		if (ism_erl1(c))
			return ism_erl1_status(c, sn.statsn);
		if (sn.statsn != c->exp_statsn) {
			ism_conn_fail(c, "%s with StatSN %u, expected %u", opcode_str(b->opcode), sn.statsn,
				      c->exp_statsn);
			return false;
		}
		c->exp_statsn = sn.statsn + 1;
		break;
	case STATSN_IF_NEXT:
		if (sn.statsn == c->exp_statsn && ism_erl1(c))
			return ism_erl1_status(c, sn.statsn);
		if (sn.statsn == c->exp_statsn)
			c->exp_statsn++;
		break;
	case STATSN_NOT_ADVANCED:
	case STATSN_ABSENT:
		break;
	}
	return true;
}

/* The task a response names: sent, of the expected kind, and allegiant to this connection. */
struct ism_task *ism_task_for(struct ism_conn *c, const struct bhs *b, enum task_kind kind)
{
	struct ism_task *t = ism_task_find(c->s, b->itt);
	if (!t || t->state != TASK_SENT || t->kind != kind) {
		ism_conn_fail(c, "%s for unexpected ITT 0x%08x", opcode_str(b->opcode), b->itt);
		return NULL;
	}
	if (t->conn != c) {
		ism_conn_fail(c, "%s for ITT 0x%08x arrived on connection %u, the task runs on %u",
			      opcode_str(b->opcode), b->itt, c->cid, t->conn ? t->conn->cid : 0);
		return NULL;
	}
	return t;
}

void ism_ffp_pdu(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_session *s = c->s;
	if (ism_erl1(c)) {
		struct pdu_serials sn = pdu_serials(b);
		if (ism_erl1_filter(c, b, sn.use == STATSN_IN_ORDER, sn.statsn)) {
			if (sn.use != STATSN_ABSENT)
				ism_update_window(s, sn.expcmdsn, sn.maxcmdsn);
			ism_kick(s);
			return;
		}
	}
	if (!ism_process_pdu_serials(c, b)) {
		ism_kick(s);
		return;
	}
	switch (b->opcode) {
	case OP_DATA_IN:
		ism_on_data_in(c, b, data, len);
		if (ism_erl1(c))
			ism_erl1_data_in_done(c, b);
		break;
	case OP_SCSI_RESP: ism_on_scsi_response(c, b, data, len); break;
	case OP_R2T: ism_on_r2t(c, b, len); break;
	case OP_NOP_IN: ism_on_nop_in(c, b); break;
	case OP_ASYNC_MSG: ism_on_async(c, b); break;
	case OP_REJECT: ism_on_reject(c, b, data, len); break;
	case OP_TASK_MGMT_RESP: ism_on_tmf_response(c, b, len); break;
	case OP_LOGOUT_RESP: ism_on_logout_response(c, b, len); break;
	case OP_TEXT_RESP: {
		struct ism_task *t = ism_task_for(c, b, TASK_TEXT);
		if (t)
			ism_text_response(c, t, b, data, len);
		break;
	}
	case OP_LOGIN_RESP:
		ism_conn_fail(c, "Login Response in full feature phase");
		break;
	default:
		ism_conn_fail(c, "unexpected %s PDU in full feature phase", opcode_str(b->opcode));
		break;
	}
	ism_kick(s);
}
