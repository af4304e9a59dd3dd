/*
 * Full feature phase dispatch (RFC 7143 section 11): ExpStatSN bookkeeping, NOP-Out/NOP-In,
 * Logout, Reject and Async Messages. SCSI data flow lives in task.c, task management in tmf.c,
 * text requests in textreq.c.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "target/conn.h"
#include "target/erl2.h"
#include "target/ffp.h"
#include "target/recovery.h"
#include "target/session.h"
#include "target/task.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

/*
 * A non-immediate command the target rejects before its CmdSN turn still used that CmdSN: the
 * initiator counts it as sent and never sends it again (RFC 7143 4.2.2.1), so if it were not
 * taken, every command numbered after it would wait for the gap until the session ended. One
 * rejected after its turn (held, then run) has its CmdSN taken already. Returns the session whose
 * held PDUs may run now that the gap closed, after the Reject is queued (so that the Reject
 * carries the window it opened); NULL when nothing changed or nothing waits.
 */
static struct session *reject_takes_cmdsn(struct conn *c, const uint8_t hdr[BHS_LEN])
{
	struct session *s = c->sess;
	uint8_t op = hdr[0] & 0x3f;
	bool numbered = op == OP_SCSI_CMD || op == OP_TASK_MGMT_REQ || op == OP_TEXT_REQ || op == OP_LOGOUT_REQ ||
			(op == OP_NOP_OUT && get_be32(hdr + 16) != RESERVED_TAG);
	if (!numbered || (hdr[0] & 0x40) || !s || c->phase != PHASE_FULL_FEATURE)
		return NULL;
	uint32_t sn = get_be32(hdr + 24);
	if (sn != s->exp_cmdsn) {
		/* Ahead of its turn: a placeholder holds the number; numbers already taken are left alone. */
		session_skip_cmdsn(s, sn);
		return NULL;
	}
	s->exp_cmdsn++;
	return s->nheld ? s : NULL;
}

static void queue_reject(struct conn *c, uint8_t reason, const uint8_t hdr[BHS_LEN])
{
	struct bhs b = {0};
	b.opcode = OP_REJECT;
	b.final = true;
	b.itt = RESERVED_TAG;
	b.reject.reason = reason;
	uint8_t *copy = xmalloc(BHS_LEN);
	memcpy(copy, hdr, BHS_LEN);
	conn_send_pdu(c, &b, copy, BHS_LEN, NULL, copy);
}

void send_reject(struct conn *c, uint8_t reason, const uint8_t hdr[BHS_LEN])
{
	assert(hdr);
	struct session *advance = reject_takes_cmdsn(c, hdr);
	queue_reject(c, reason, hdr);
	if (advance)
		session_advance(advance);
}

void send_reject_keep_cmdsn(struct conn *c, uint8_t reason, const uint8_t hdr[BHS_LEN])
{
	queue_reject(c, reason, hdr);
}

void send_async_logout(struct conn *c, uint16_t seconds)
{
	struct bhs b = {0};
	b.opcode = OP_ASYNC_MSG;
	b.final = true;
	b.itt = RESERVED_TAG;
	b.async.event = ASYNC_LOGOUT_REQUEST;
	b.async.param3 = seconds; /* time to logout */
	conn_send_pdu(c, &b, NULL, 0, NULL, NULL);
	c->logout_async_sent = true;
}

static void nop_out(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len)
{
	if (b->itt == RESERVED_TAG) {
		/* The answer to our ping (or an unsolicited keepalive that wants no reply). */
		if (b->nop_out.ttt != RESERVED_TAG && b->nop_out.ttt == c->ping_ttt)
			c->ping_sent_ms = 0;
		return;
	}
	if (b->nop_out.ttt != RESERVED_TAG) {
		send_reject(c, REJECT_PROTOCOL_ERROR, raw);
		return;
	}
	struct bhs r = {0};
	r.opcode = OP_NOP_IN;
	r.final = true;
	memcpy(r.lun, b->lun, 8);
	r.itt = b->itt;
	r.nop_in.ttt = RESERVED_TAG;
	uint8_t *echo = NULL;
	if (len) {
		/* Ping data comes back as sent, within what the initiator can receive. */
		if (len > c->params.peer_max_recv_dsl)
			len = c->params.peer_max_recv_dsl;
		echo = xmalloc(len);
		memcpy(echo, data, len);
	}
	conn_send_pdu(c, &r, echo, len, NULL, echo);
}

/*
 * Logout (RFC 7143 11.14-11.15). At level 2 "remove the connection for recovery" fails the
 * connection named (erl2.c): its tasks wait for reassignment, and the response says for how long
 * (Time2Wait, Time2Retain). One that failed already is removed as asked.
 */
static void logout(struct conn *c, const struct bhs *b, const uint8_t *raw)
{
	struct session *s = c->sess;
	struct conn *target_conn = c;
	uint8_t response = 0;
	bool level2 = s->params.error_recovery_level >= 2;
	switch (b->logout.reason) {
	case LOGOUT_CLOSE_SESSION:
		break;
	case LOGOUT_CLOSE_CONNECTION:
	case LOGOUT_REMOVE_FOR_RECOVERY:
		target_conn = NULL;
		for (struct conn *o = s->conns; o; o = o->sess_next)
			if (o->cid == b->logout.cid)
				target_conn = o;
		if (b->logout.reason == LOGOUT_REMOVE_FOR_RECOVERY && !level2)
			response = target_conn ? 2 : 1; /* recovery needs level 2 */
		else if (!target_conn && !(level2 && erl2_find_failed(s, b->logout.cid)))
			response = 1; /* CID not found */
		break;
	default:
		send_reject(c, REJECT_PROTOCOL_ERROR, raw);
		return;
	}
	struct bhs r = {0};
	r.opcode = OP_LOGOUT_RESP;
	r.final = true;
	r.itt = b->itt;
	r.logout_rsp.response = response;
	if (response == 0 && level2 && b->logout.reason != LOGOUT_CLOSE_SESSION)
		erl2_hold_times(s, &r.logout_rsp.time2wait, &r.logout_rsp.time2retain);
	conn_send_pdu(c, &r, NULL, 0, NULL, NULL);
	if (response != 0)
		return;
	log_info("logout: initiator '%s' TSIH %u CID %u (%s)", s->initiator_name, s->tsih, c->cid,
		 b->logout.reason == LOGOUT_CLOSE_SESSION      ? "close session"
		 : b->logout.reason == LOGOUT_CLOSE_CONNECTION ? "close connection"
							       : "remove connection for recovery");
	if (b->logout.reason == LOGOUT_CLOSE_SESSION) {
		for (struct conn *o = s->conns; o; o = o->sess_next)
			if (o != c)
				o->phase = PHASE_LOGGED_OUT;
		for (struct conn *o = s->conns, *next; o; o = next) {
			next = o->sess_next;
			if (o != c)
				conn_close(o, "session logged out");
		}
	} else if (!target_conn) {
		return; /* failed already: it waits for recovery as it is */
	} else if (b->logout.reason == LOGOUT_REMOVE_FOR_RECOVERY) {
		target_conn->recover_on_close = true;
		if (target_conn != c) {
			conn_close(target_conn, "removed for recovery by a Logout on another connection");
			return;
		}
	} else if (target_conn != c) {
		target_conn->phase = PHASE_LOGGED_OUT; /* its tasks end with it */
		conn_close(target_conn, "logged out by another connection");
		return;
	}
	/* The response goes out first; conn_flush closes the connection once the queue is empty. */
	c->phase = PHASE_LOGGED_OUT;
}

/* NOP-Out, Task Management, Text and Logout whose CmdSN turn has come. */
void ffp_run_ordered(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	/* A PDU held for its CmdSN turn kept only its decoded header: its Reject carries it re-encoded. */
	uint8_t raw[BHS_LEN];
	bhs_encode(b, raw);
	switch (b->opcode) {
	case OP_NOP_OUT: nop_out(c, b, raw, data, len); break;
	case OP_TASK_MGMT_REQ: tmf_handle(c, b); break;
	case OP_TEXT_REQ: textreq_handle(c, b, raw, data, len); break;
	case OP_LOGOUT_REQ: logout(c, b, raw); break;
	default: break;
	}
}

void ffp_dispatch(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len)
{
	struct session *s = c->sess;
	/* Every request carries ExpStatSN at byte 28: what it acknowledges need not be kept for SNACK. */
	if (recovery_level(c) >= 1)
		snack_ack_statsn(c, get_be32(raw + 28));
	switch (b->opcode) {
	case OP_SCSI_CMD:
		task_handle_command(c, b, raw, data, len);
		break;
	case OP_DATA_OUT:
		if (recovery_level(c) == 0 || !recovery_data_out(c, b, data, len))
			task_handle_data_out(c, b, data, len);
		return;
	case OP_NOP_OUT:
		/* A NOP-Out that wants no answer carries no CmdSN of its own. */
		if (b->itt == RESERVED_TAG) {
			nop_out(c, b, raw, data, len);
			return;
		}
		/* fall through */
	case OP_TASK_MGMT_REQ:
	case OP_TEXT_REQ:
	case OP_LOGOUT_REQ:
		if (session_order(c, b, data, len, NULL))
			ffp_run_ordered(c, b, data, len);
		break;
	case OP_SNACK:
		/* ERL 0 offers no SNACK (RFC 7143 11.16). */
		if (recovery_level(c) >= 1)
			snack_handle(c, b, raw);
		else
			send_reject(c, REJECT_CMD_NOT_SUPPORTED, raw);
		return;
	default:
		send_reject(c, REJECT_PROTOCOL_ERROR, raw);
		return;
	}
	/* An in-order PDU may have filled the gap in front of held ones. */
	if (s->nheld && c->sess == s)
		session_advance(s);
}
