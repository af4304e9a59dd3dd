/*
 * ErrorRecoveryLevel 1 in the initiator (RFC 7143 7.1, 7.2, 11.16): when the session negotiated
 * it, a damaged or missing PDU from the target costs a SNACK instead of the connection.
 *  - A Data-In whose data digest fails, or a DataSN that skips ahead (the Data-In before it was
 *    lost to a header digest error), asks for the task's Data-In again from the first missing
 *    DataSN (Data SNACK, RunLength 0: everything from there); the Data-In that arrive meanwhile
 *    are dropped, since they come again.
 *  - A status whose StatSN skips ahead is handled, and the missing StatSNs are asked for (Status
 *    SNACK); ExpStatSN moves past them once they are in. A status that comes twice is dropped.
 *  - A status whose data digest fails (sense data, a ping answer) is asked for again by StatSN.
 *  - The A bit on a Data-In is answered with a DataACK once the data before it is all in.
 *  - A Reject for a damaged command (data digest error) sends the command again with its CmdSN;
 *    one for damaged Data-Out waits for the target's recovery R2T, which may ask for data again.
 *  - A header whose digest fails is skipped by the length it claims; if the next header fails
 *    too, the framing is lost and the connection fails.
 *  - An R2T whose R2TSN skips ahead (the ones before it lost to header digest errors) is answered,
 *    and the skipped R2TSNs are asked for again (R2T SNACK); each is answered when it comes.
 *  - A command the target never got (its header damaged on the way: the target skips it and holds
 *    every later CmdSN behind the gap) is sent again with its ITT and CmdSN (a retry, RFC 7143
 *    6.2.1), once a NOP-Out written after it is answered with ExpCmdSN still at or below its CmdSN.
 */
#include <string.h>

#include "initiator/internal.h"
#include "proto/digest.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/serial.h"

enum snack_type { SNACK_DATA_R2T = 0, SNACK_STATUS = 1, SNACK_DATA_ACK = 2 };

/*
 * A command unacknowledged (ExpCmdSN at or below its CmdSN) this long after it was written gets a
 * NOP-Out ping on its connection. One second is far above a round trip on any network an iSCSI
 * session runs over, so a healthy session sends no extra ping, and far below the command timeout
 * (60 s) that found such a loss before. The ping, not the wait, decides: the target reads a
 * connection in order, so an answer to a ping written after the command that still shows ExpCmdSN
 * at or below its CmdSN proves the command was dropped (a slow command was acknowledged on arrival).
 */
#define ERL1_CMD_GAP_PROBE_MS 1000
/* Retries of one command before the connection fails and recovery takes over: a command damaged
 * that often in a row says the path is not fit to carry it. */
#define ISM_ERL1_MAX_CMD_RETRIES 3
/* R2Ts that may be missing at once: no more than MaxOutstandingR2T can be (at most 65535); a
 * wider gap is a broken target, handled as at level 0. */
#define ISM_ERL1_MAX_R2T_GAP 65535

static uint64_t now_ms(const struct ism_session *s)
{
	return s->in_service ? s->now_ms : ism_now_ms();
}

bool ism_erl1(const struct ism_conn *c)
{
	return c->s->params.error_recovery_level >= 1 && (c->state == CONN_FFP || c->state == CONN_LOGOUT);
}

static void send_snack(struct ism_conn *c, uint8_t type, uint32_t itt, uint32_t ttt, const uint8_t lun[8],
		       uint32_t begrun, uint32_t runlength)
{
	struct bhs b = {0};
	b.opcode = OP_SNACK;
	b.final = true;
	b.itt = itt;
	if (lun)
		memcpy(b.lun, lun, 8);
	b.snack.type = type;
	b.snack.ttt = ttt;
	b.snack.expstatsn = c->exp_statsn;
	b.snack.begrun = begrun;
	b.snack.runlength = runlength;
	ism_conn_send(c, &b, NULL, 0, NULL, NULL);
	ism_flush_soon(c);
	c->snacks_sent++;
}

/* Data SNACK for read t from its next DataSN, once per gap. */
static void ask_data_again(struct ism_conn *c, struct ism_task *t)
{
	if (t->snack_sent && t->snack_begrun == t->next_datasn)
		return;
	t->snack_sent = true;
	t->snack_begrun = t->next_datasn;
	log_info("cid %u: ITT 0x%08x: Data-In from DataSN %u asked for again", c->cid, t->itt, t->next_datasn);
	send_snack(c, SNACK_DATA_R2T, t->itt, RESERVED_TAG, NULL, t->next_datasn, 0);
}

/* Status SNACK for the StatSNs from ExpStatSN up to (not including) upto, once per gap. */
static void ask_status_again(struct ism_conn *c, uint32_t upto)
{
	if (c->status_snack_sent && c->status_snack_begrun == c->exp_statsn)
		return;
	c->status_snack_sent = true;
	c->status_snack_begrun = c->exp_statsn;
	log_info("cid %u: StatSN %u to %u asked for again", c->cid, c->exp_statsn, upto - 1);
	send_snack(c, SNACK_STATUS, RESERVED_TAG, 0, NULL, c->exp_statsn, upto - c->exp_statsn);
}

static struct ism_task *read_task(struct ism_conn *c, uint32_t itt)
{
	struct ism_task *t = ism_task_find(c->s, itt);
	if (!t || t->kind != TASK_SCSI || t->state != TASK_SENT || t->conn != c || t->dir != ISM_DIR_READ)
		return NULL;
	return t;
}

/* A status PDU: where its StatSN stands against ExpStatSN and the ones already seen past it. */
static bool status_seen(const struct ism_conn *c, uint32_t statsn)
{
	uint32_t d = statsn - c->exp_statsn;
	if (sn_lt(statsn, c->exp_statsn))
		return true;
	return d >= 1 && d <= 64 && (c->statsn_ahead >> (d - 1)) & 1;
}

bool ism_erl1_filter(struct ism_conn *c, const struct bhs *b, bool status, uint32_t statsn)
{
	if (b->opcode == OP_DATA_IN) {
		struct ism_task *t = read_task(c, b->itt);
		if (t && sn_lt(b->data_in.datasn, t->next_datasn))
			return true; /* sent again after it had come */
		if (t && sn_gt(b->data_in.datasn, t->next_datasn)) {
			ask_data_again(c, t); /* the ones before were lost: this one comes again too */
			return true;
		}
	}
	if (status && status_seen(c, statsn))
		return true; /* a status sent again that had come (Status SNACK and Data SNACK both) */
	return false;
}

bool ism_erl1_status(struct ism_conn *c, uint32_t statsn)
{
	if (statsn == c->exp_statsn) {
		c->exp_statsn++;
		/* The ones seen past the gap are acknowledged with it. */
		while (c->statsn_ahead & 1) {
			c->statsn_ahead >>= 1;
			c->exp_statsn++;
		}
		c->statsn_ahead >>= 1;
		c->status_snack_sent = false;
		return true;
	}
	uint32_t d = statsn - c->exp_statsn;
	if (d > 64) {
		ism_conn_fail(c, "StatSN %u is %u past ExpStatSN %u: more missing than can be asked for", statsn, d,
			      c->exp_statsn);
		return false;
	}
	c->statsn_ahead |= 1ull << (d - 1);
	ask_status_again(c, statsn);
	return true;
}

void ism_erl1_data_in_done(struct ism_conn *c, const struct bhs *b)
{
	if (!b->data_in.ack)
		return;
	/* The data up to this one is in (it came in order): the target may let it go. */
	send_snack(c, SNACK_DATA_ACK, RESERVED_TAG, b->data_in.ttt, b->lun, b->data_in.datasn + 1, 0);
}

bool ism_erl1_data_digest_error(struct ism_conn *c, const struct bhs *b)
{
	c->digest_errors++;
	if (b->opcode == OP_DATA_IN) {
		struct ism_task *t = read_task(c, b->itt);
		if (!t)
			return false;
		if (!sn_lt(b->data_in.datasn, t->next_datasn))
			ask_data_again(c, t);
		return true;
	}
	uint32_t statsn = 0;
	bool status = false;
	switch (b->opcode) {
	case OP_SCSI_RESP: statsn = b->rsp.statsn; status = true; break;
	case OP_TEXT_RESP: statsn = b->text.statsn; status = true; break;
	case OP_NOP_IN: statsn = b->nop_in.statsn; status = b->itt != RESERVED_TAG; break;
	default: break;
	}
	if (!status)
		return false;
	if (status_seen(c, statsn))
		return true;
	/* Asked for up to and including it; it does not count as seen. */
	uint32_t d = statsn - c->exp_statsn;
	if (d > 64)
		return false;
	if (!c->status_snack_sent || c->status_snack_begrun != c->exp_statsn) {
		c->status_snack_sent = true;
		c->status_snack_begrun = c->exp_statsn;
		send_snack(c, SNACK_STATUS, RESERVED_TAG, 0, NULL, c->exp_statsn, d + 1);
	}
	return true;
}

bool ism_erl1_check_header(struct ism_conn *c, const uint8_t *raw, enum pdu_header_verdict *v)
{
	const char *why = NULL;
	if (!pdu_conn_recover_header(&c->pc, raw, v, &why))
		return false;
	if (*v == PDU_HEADER_WAIT)
		return true;
	c->digest_errors++;
	if (*v == PDU_HEADER_STOP) {
		ism_conn_fail(c, "%s", why);
		return true;
	}
	log_warn("cid %u: header digest error: a PDU of %u data bytes skipped", c->cid, c->pc.rx_bhs.data_len);
	return true;
}

bool ism_erl1_reject(struct ism_conn *c, const struct bhs *b, const uint8_t *hdr)
{
	if (b->reject.reason != REJECT_DATA_DIGEST)
		return false;
	uint8_t op = hdr[0] & 0x3f;
	struct ism_task *t = ism_task_find(c->s, get_be32(hdr + 16));
	if (!t || t->state != TASK_SENT || t->conn != c || t->kind != TASK_SCSI)
		return false;
	if (op == OP_DATA_OUT)
		return true; /* the target asks for the data again with a recovery R2T */
	if (op != OP_SCSI_CMD)
		return false;
	/* Its CmdSN was not taken: the same command again plugs it (RFC 7143 11.17.1). */
	log_info("cid %u: ITT 0x%08x: command damaged on the way (data digest), sent again", c->cid, t->itt);
	t->last_send_ms = now_ms(c->s);
	c->cmds_retried++;
	ism_resend_scsi(c, t);
	ism_flush_soon(c);
	return true;
}

bool ism_erl1_recovery_r2t(struct ism_conn *c, struct ism_task *t, const struct bhs *b)
{
	uint64_t end = (uint64_t)b->r2t.offset + b->r2t.desired_len;
	if (b->r2t.offset >= t->write_end || end > t->write_end || !b->r2t.desired_len)
		return false;
	/* A recovery R2T: data already sent, damaged or lost on the way, asked for again. */
	log_info("cid %u: ITT 0x%08x: recovery R2T for %u bytes at offset %u", c->cid, t->itt, b->r2t.desired_len,
		 b->r2t.offset);
	t->next_r2tsn++;
	ism_send_data_out(c, t, b->r2t.ttt, b->r2t.offset, b->r2t.desired_len);
	ism_flush_soon(c);
	return true;
}

/* The oldest command on c the target has not acknowledged (ExpCmdSN at or below its CmdSN). */
static struct ism_task *oldest_unacknowledged(const struct ism_conn *c)
{
	const struct ism_session *s = c->s;
	for (struct ism_task *t = c->sent_head; t; t = t->snext)
		if (t->kind == TASK_SCSI && t->state == TASK_SENT && !t->immediate && !t->reassign &&
		    sn_ge(t->cmdsn, s->exp_cmdsn) && sn_lt(t->cmdsn, s->cmdsn))
			return t;
	return NULL;
}

static uint64_t last_send_ms(const struct ism_task *t)
{
	return t->last_send_ms > t->sent_ms ? t->last_send_ms : t->sent_ms;
}

/* When t may be asked about: a second after its last sending and after the last probe. */
static uint64_t probe_due(const struct ism_conn *c, const struct ism_task *t)
{
	uint64_t a = last_send_ms(t), b = c->gap_probe_ms;
	return (a > b ? a : b) + ERL1_CMD_GAP_PROBE_MS;
}

uint64_t ism_erl1_cmd_gap_due(const struct ism_conn *c)
{
	const struct ism_task *t = oldest_unacknowledged(c);
	return t ? probe_due(c, t) : 0;
}

void ism_erl1_check_cmd_gap(struct ism_conn *c, uint64_t now)
{
	struct ism_task *t = oldest_unacknowledged(c);
	if (!t || now < probe_due(c, t))
		return;
	ism_send_keepalive(c, now);
	c->gap_probe_ms = now;
	c->gap_probe = true;
	c->gap_itt = t->itt;
	c->gap_cmdsn = t->cmdsn;
}

void ism_erl1_ping_answered(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	if (!c->gap_probe)
		return;
	c->gap_probe = false;
	struct ism_task *t = ism_task_find(s, c->gap_itt);
	/*
	 * The target has it (acknowledged) or it ended meanwhile: nothing to send again. Only the
	 * command the target waits for (CmdSN = ExpCmdSN) goes again: one above it may be held behind
	 * a gap another connection left, and the target drops a copy of a held CmdSN.
	 */
	if (!t || t->kind != TASK_SCSI || t->state != TASK_SENT || t->conn != c || t->cmdsn != c->gap_cmdsn ||
	    t->cmdsn != s->exp_cmdsn || !ism_erl1(c))
		return;
	if (t->cmd_retries >= ISM_ERL1_MAX_CMD_RETRIES) {
		ism_conn_fail(c, "command ITT 0x%08x CmdSN %u lost %u times on the way", t->itt, t->cmdsn,
			      t->cmd_retries + 1);
		return;
	}
	t->cmd_retries++;
	c->cmds_retried++;
	log_warn("cid %u: ITT 0x%08x: CmdSN %u not received by the target (ExpCmdSN %u), sent again (retry %u)", c->cid,
		 t->itt, t->cmdsn, s->exp_cmdsn, t->cmd_retries);
	t->last_send_ms = now_ms(s);
	ism_resend_scsi(c, t);
	ism_flush_soon(c);
}

bool ism_erl1_r2t_gap(struct ism_conn *c, struct ism_task *t, const struct bhs *b)
{
	uint32_t sn = b->r2t.r2tsn;
	uint64_t end = (uint64_t)b->r2t.offset + b->r2t.desired_len;
	if (!b->r2t.desired_len || end > t->len)
		return false;
	if (t->r2t_missing_beg != t->r2t_missing_end) {
		/* One asked for again: answered where it asks, which is before data already sent. */
		if (sn != t->r2t_missing_beg)
			return false;
		t->r2t_missing_beg++;
		log_info("cid %u: ITT 0x%08x: R2TSN %u came again: %u bytes at offset %u", c->cid, t->itt, sn,
			 b->r2t.desired_len, b->r2t.offset);
		t->write_covered += b->r2t.desired_len;
		ism_answer_r2t(c, t, b);
		return true;
	}
	uint32_t missing = sn - t->next_r2tsn;
	if (!sn_gt(sn, t->next_r2tsn) || missing > ISM_ERL1_MAX_R2T_GAP)
		return false;
	/* The R2Ts before this one were lost: asked for again, and this one is answered as usual. */
	log_info("cid %u: ITT 0x%08x: R2TSN %u to %u asked for again", c->cid, t->itt, t->next_r2tsn, sn - 1);
	t->r2t_missing_beg = t->next_r2tsn;
	t->r2t_missing_end = sn;
	send_snack(c, SNACK_DATA_R2T, t->itt, RESERVED_TAG, NULL, t->next_r2tsn, missing);
	t->next_r2tsn = sn;
	return false;
}
