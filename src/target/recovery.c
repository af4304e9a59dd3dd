/*
 * Digest errors at ErrorRecoveryLevel 1 (RFC 7143 6.7, 7.2, 7.8): each costs one PDU, not the
 * connection.
 *  - A header whose digest is wrong is skipped by the length it claims. That length cannot be
 *    trusted, so the next header must then check out: if it does not either, the framing is lost
 *    and the connection ends (as it does for a claimed length over the limit).
 *  - A data digest error on a command (immediate data) gets a Reject (data digest error); its
 *    CmdSN is not taken, so the initiator sends the command again with the same CmdSN.
 *  - A data digest error on Data-Out gets a Reject, and a recovery R2T asks for that range again.
 *    A Data-Out lost whole (its header skipped) shows as a gap in the offsets of the next one,
 *    and a recovery R2T asks for the gap; when no later one comes (the lost one ended its
 *    sequence), the rest of the sequence is asked for once the write has waited
 *    RECOVERY_DATA_WAIT_MS since a header was skipped. One such range per task is open at a
 *    time; the task runs once it is filled.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/digest.h"
#include "target/conn.h"
#include "target/ffp.h"
#include "target/recovery.h"
#include "target/server.h"
#include "target/session.h"
#include "target/task.h"
#include "util/log.h"

/* How long a write waits for Data-Out after a header was skipped before it asks for the rest. */
#define RECOVERY_DATA_WAIT_MS 1000u

static bool sn_after(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

/*
 * The DataSN task.c expects of the next Data-Out at the task's current offset: a solicited one
 * that starts the next R2T's sequence restarts at 0 (task_handle_data_out opens the sequence).
 */
static uint32_t expected_datasn(const struct task *t, const struct bhs *b)
{
	return task_opens_sequence(t, b) ? 0 : t->next_datasn;
}

bool recovery_check_header(struct conn *c, const uint8_t *raw, enum pdu_header_verdict *v)
{
	const struct bhs *b = &c->pc.rx_bhs;
	const char *why = NULL;
	if (!pdu_conn_recover_header(&c->pc, raw, v, &why))
		return false;
	if (*v == PDU_HEADER_WAIT)
		return true;
	c->stats.digest_errors++;
	if (*v == PDU_HEADER_STOP) {
		conn_close(c, why);
		return true;
	}
	c->header_skipped_ms = loop_now_ms();
	log_warn("%s:%u: header digest error: %s (ITT 0x%08x?) of %u data bytes skipped", c->peer_addr, c->peer_port,
		 opcode_str(b->opcode), b->itt, b->data_len);
	return true;
}

/* A recovery R2T (RFC 7143 7.2.2) for the task's open range; it does not count as outstanding. */
static void send_recovery_r2t(struct conn *c, struct task *t)
{
	c->stats.pdus_resent++;
	task_queue_r2t(t, t->hole_off, t->hole_len);
	log_info("%s:%u: ITT 0x%08x: recovery R2T for %u bytes at offset %u", c->peer_addr, c->peer_port, t->itt,
		 t->hole_len, t->hole_off);
}

/*
 * Whether task.c takes len bytes at the task's current offset as the next Data-Out of the
 * sequence b belongs to (the checks of task_handle_data_out, so that it never ends the task).
 */
static bool range_fits(const struct task *t, const struct bhs *b, uint32_t len)
{
	uint64_t end = (uint64_t)t->out_received + len;
	if (end > t->edtl)
		return false;
	if (b->data_out.ttt == RESERVED_TAG)
		return end <= t->unsolicited_end;
	if (t->out_received < t->unsolicited_end)
		return false;
	uint32_t seq_end = t->out_received == t->seq_end ? task_next_seq_end(t) : t->seq_end;
	return end <= seq_end;
}

/*
 * Let task.c take bytes [t->out_received, t->out_received + len) as if they had come (data is
 * what stands in for them until the recovery R2T brings the real bytes), so that its sequence
 * bookkeeping moves on; the range becomes the task's open one.
 */
static void open_range(struct conn *c, struct task *t, const struct bhs *b, const uint8_t *data, uint32_t len,
		       uint32_t datasn)
{
	struct bhs fill = *b;
	fill.final = false;
	fill.data_out.offset = t->out_received;
	fill.data_out.datasn = expected_datasn(t, b);
	t->hole_off = t->out_received;
	t->hole_len = len;
	task_handle_data_out(c, &fill, data, len);
	t->next_datasn = datasn;
	send_recovery_r2t(c, t);
}

void recovery_ask_range(struct conn *c, struct task *t) { send_recovery_r2t(c, t); }

bool recovery_data_digest_error(struct conn *c, const uint8_t *raw)
{
	const struct bhs *b = &c->pc.rx_bhs;
	/* A long Data-Out was read straight into its task's buffer (task_place_data_out), not after raw. */
	const uint8_t *data = c->pc.rx_state == PDU_RECV_DIRECT ? c->pc.dr_data : raw + pdu_conn_header_size(&c->pc);
	log_warn("%s:%u: data digest error: %s ITT 0x%08x, %u bytes at offset %u: rejected", c->peer_addr, c->peer_port,
		 opcode_str(b->opcode), b->itt, b->data_len, b->opcode == OP_DATA_OUT ? b->data_out.offset : 0);
	/* The CmdSN is not taken: the initiator plugs it with the same command (RFC 7143 11.17.1). */
	send_reject_keep_cmdsn(c, REJECT_DATA_DIGEST, raw);
	if (b->opcode != OP_DATA_OUT)
		return true;
	struct task *t = task_find_data_owner(c, b);
	if (!t)
		return true; /* not ours to recover: discarded like its good twin would be */
	uint32_t off = b->data_out.offset;
	if (t->hole_len && off == t->hole_off) {
		send_recovery_r2t(c, t); /* the recovery data itself was damaged: ask again */
		return true;
	}
	if (t->hole_len || off != t->out_received || !range_fits(t, b, b->data_len)) {
		conn_flush(c);
		conn_close(c, "data digest error in write data that cannot be asked for again");
		return false;
	}
	open_range(c, t, b, data, b->data_len, b->data_out.datasn + 1);
	return !conn_gone(c);
}

/* Recovery data for the open range: copied in; once the range is whole, the write may run. */
static void fill_range(struct conn *c, struct task *t, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	uint32_t off = b->data_out.offset;
	if (off != t->hole_off || len > t->hole_len) {
		log_warn("%s:%u: ITT 0x%08x: recovery Data-Out at offset %u (%u bytes) outside the range asked for",
			 c->peer_addr, c->peer_port, t->itt, off, len);
		return;
	}
	if (t->out)
		memcpy(t->out + off, data, len);
	t->hole_off += len;
	t->hole_len -= len;
	t->last_data_ms = loop_now_ms();
	if (!t->hole_len && t->state == TASK_WAIT_DATA && t->out_received == t->edtl)
		task_start(t);
}

bool recovery_data_out(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct task *t = task_find_data_owner(c, b);
	if (!t)
		return false;
	uint32_t off = b->data_out.offset;
	if (t->hole_len && b->data_out.ttt == t->ttt && off >= t->hole_off && off < t->hole_off + t->hole_len) {
		fill_range(c, t, b, data, len);
		return true;
	}
	/*
	 * Offsets that skip ahead within the sequence: the Data-Out before were lost whole (their
	 * headers were skipped). The range between is asked for again.
	 */
	if (t->hole_len || off <= t->out_received || !range_fits(t, b, off - t->out_received + len) ||
	    !sn_after(b->data_out.datasn, expected_datasn(t, b)))
		return false;
	uint32_t gap = off - t->out_received;
	uint8_t *zeros = xcalloc(1, gap);
	open_range(c, t, b, zeros, gap, b->data_out.datasn);
	free(zeros);
	if (conn_gone(c))
		return true;
	task_handle_data_out(c, b, data, len);
	return true;
}

unsigned recovery_ask_stalled_data(struct conn *c, uint64_t now_ms)
{
	if (!c->header_skipped_ms || now_ms - c->header_skipped_ms < RECOVERY_DATA_WAIT_MS)
		return 0;
	unsigned n = 0;
	for (struct task *t = c->tasks, *next; t; t = next) {
		next = t->next;
		if (t->state != TASK_WAIT_DATA || !t->write || t->hole_len || t->out_received >= t->edtl ||
		    t->last_data_ms > c->header_skipped_ms || now_ms - t->last_data_ms < RECOVERY_DATA_WAIT_MS)
			continue;
		/* The rest of the open sequence (unsolicited, or the R2T's) is what the skipped PDU held. */
		struct bhs b = {0};
		b.opcode = OP_DATA_OUT;
		b.itt = t->itt;
		uint32_t end;
		if (t->out_received < t->unsolicited_end) {
			b.data_out.ttt = RESERVED_TAG;
			end = t->unsolicited_end;
		} else if (t->out_received < t->seq_end) {
			b.data_out.ttt = t->ttt;
			end = t->seq_end;
		} else {
			continue; /* between sequences: the next R2T has not been answered at all */
		}
		uint32_t len = end - t->out_received;
		uint8_t *zeros = xcalloc(1, len);
		open_range(c, t, &b, zeros, len, t->next_datasn + 1);
		free(zeros);
		n++;
	}
	c->header_skipped_ms = 0;
	return n;
}
