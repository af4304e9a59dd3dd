/*
 * The target's answers to SCSI commands: Data-In (placed in order into the command's buffer),
 * SCSI Response (status, sense, residuals) and R2T (answered with a Data-Out sequence).
 * Their StatSN and window fields were taken by ism_process_pdu_serials before they get here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "initiator/internal.h"
#include "util/bytes.h"

/* Residual flags of a SCSI Response (RFC 7143 11.4.5). */
enum rsp_flag { RSP_FLAG_UNDERFLOW = 0x02, RSP_FLAG_OVERFLOW = 0x04 };

/*
 * The data a read really received: Data-In arrives in order (DataPDUInOrder and
 * DataSequenceInOrder are Yes, as this initiator offers them), so the bytes placed are
 * buf[0, read_bytes). A residual only ever shortens that; the rest of the buffer is zeroed so
 * that a target that answers GOOD with less data than asked never hands the caller whatever the
 * buffer held before (another command's data, in a pooled buffer).
 */
static uint32_t read_valid_bytes(struct ism_task *t, bool underflow, uint32_t residual)
{
	uint32_t valid = t->read_bytes;
	if (underflow) {
		uint32_t claimed = residual <= t->len ? t->len - residual : 0;
		if (claimed < valid)
			valid = claimed;
	}
	if (valid < t->len)
		memset(t->buf + valid, 0, t->len - valid);
	return valid;
}

/* The data a write delivered: what was sent unsolicited and what R2Ts asked for, less the
 * residual the target reports. */
static uint32_t write_valid_bytes(const struct ism_task *t, bool underflow, uint32_t residual)
{
	uint32_t valid = t->write_covered < t->len ? t->write_covered : t->len;
	if (underflow) {
		uint32_t claimed = residual <= t->len ? t->len - residual : 0;
		if (claimed < valid)
			valid = claimed;
	}
	return valid;
}

/*
 * The target's answer to t broke the protocol: t fails with ISM_ERR_PROTOCOL, so that a caller
 * that retries after a reconnect can tell the command that broke the connection from the ones
 * that only went down with it; then the connection fails (ErrorRecoveryLevel 0 repairs nothing).
 */
static void task_protocol_error(struct ism_conn *c, struct ism_task *t, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void task_protocol_error(struct ism_conn *c, struct ism_task *t, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	t->res.error = ISM_ERR_PROTOCOL;
	ism_task_complete(t);
	ism_conn_fail(c, "%s", msg);
}

static void complete_scsi(struct ism_conn *c, struct ism_task *t, uint8_t status, bool overflow, bool underflow,
			  uint32_t residual)
{
	if (overflow && underflow) {
		task_protocol_error(c, t, "status for ITT 0x%08x with both residual overflow and underflow", t->itt);
		return;
	}
	t->res.error = ISM_OK;
	t->res.status = status;
	uint32_t valid = t->len;
	if (t->dir == ISM_DIR_READ)
		valid = read_valid_bytes(t, underflow, residual);
	else if (t->dir == ISM_DIR_WRITE)
		valid = write_valid_bytes(t, underflow, residual);
	t->res.transferred = t->dir == ISM_DIR_NONE ? 0 : valid;
	t->res.underflow = valid < t->len;
	t->res.residual = t->len - valid;
	t->res.overflow = overflow;
	if (overflow) {
		/* The target wanted to move more than the Expected Data Transfer Length: the command
		 * and its buffer disagree, so nothing it says about the data can be trusted. */
		t->res.residual = residual;
		ism_set_error(c->s, "target reported a residual overflow of %u bytes for SCSI command 0x%02x "
			      "(Expected Data Transfer Length %u)", residual, t->cdb[0], t->len);
		t->res.error = ISM_ERR_TARGET;
	}
	ism_task_complete(t);
}

void ism_on_data_in(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_task *t = ism_task_for(c, b, TASK_SCSI);
	if (!t)
		return;
	if (t->dir != ISM_DIR_READ) {
		task_protocol_error(c, t, "Data-In for ITT 0x%08x, which is not a read", b->itt);
		return;
	}
	if (b->data_in.datasn != t->next_datasn) {
		task_protocol_error(c, t, "Data-In DataSN %u out of order (expected %u)", b->data_in.datasn,
				    t->next_datasn);
		return;
	}
	t->next_datasn++;
	uint64_t end = (uint64_t)b->data_in.offset + len;
	if (end > t->len) {
		task_protocol_error(c, t, "Data-In at offset %u of %u bytes goes past the expected length %u",
				    b->data_in.offset, len, t->len);
		return;
	}
	if (len && b->data_in.offset != t->read_bytes) {
		task_protocol_error(c, t, "Data-In for ITT 0x%08x at offset %u, expected %u (data must arrive in order)",
				    b->itt, b->data_in.offset, t->read_bytes);
		return;
	}
	if (len && t->buf + b->data_in.offset != data)
		memcpy(t->buf + b->data_in.offset, data, len); /* not already placed by a direct read */
	t->read_bytes += len;
	if (!b->data_in.status_present)
		return;
	complete_scsi(c, t, b->data_in.status, b->data_in.overflow, b->data_in.underflow, b->data_in.residual);
}

void ism_on_scsi_response(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_task *t = ism_task_for(c, b, TASK_SCSI);
	if (!t)
		return;
	if (len) {
		if (len < 2) {
			task_protocol_error(c, t, "SCSI Response with a %u-byte data segment (no room for SenseLength)",
					    len);
			return;
		}
		uint32_t slen = get_be16(data);
		if (slen + 2 > len) {
			task_protocol_error(c, t, "SCSI Response SenseLength %u exceeds its data segment of %u bytes", slen,
					    len);
			return;
		}
		t->res.sense_len = slen < ISM_SENSE_MAX ? slen : ISM_SENSE_MAX;
		memcpy(t->res.sense, data + 2, t->res.sense_len);
	}
	t->res.response = b->rsp.response;
	if (b->rsp.response != 0) {
		ism_set_error(c->s, "target could not complete the command (iSCSI response 0x%02x)", b->rsp.response);
		t->res.error = ISM_ERR_TARGET;
		ism_task_complete(t);
		return;
	}
	complete_scsi(c, t, b->rsp.status, (b->rsp.flags & RSP_FLAG_OVERFLOW) != 0, (b->rsp.flags & RSP_FLAG_UNDERFLOW) != 0,
		      b->rsp.residual);
}

/* The Data-Out an R2T asks for, its last PDU marked as the one that ends the R2T. */
void ism_answer_r2t(struct ism_conn *c, struct ism_task *t, const struct bhs *b)
{
	struct txitem *last = ism_send_data_out(c, t, b->r2t.ttt, b->r2t.offset, b->r2t.desired_len);
	if (last) {
		last->r2t_last = true;
		t->r2t_active++;
	}
	ism_flush_soon(c);
}

void ism_on_r2t(struct ism_conn *c, const struct bhs *b, uint32_t len)
{
	struct ism_session *s = c->s;
	if (len) {
		ism_conn_fail(c, "R2T with a data segment (DataSegmentLength %u)", len);
		return;
	}
	struct ism_task *t = ism_task_for(c, b, TASK_SCSI);
	if (!t)
		return;
	if (t->dir != ISM_DIR_WRITE) {
		task_protocol_error(c, t, "R2T for ITT 0x%08x, which is not a write", b->itt);
		return;
	}
	if (b->r2t.ttt == RESERVED_TAG) {
		task_protocol_error(c, t, "R2T with the reserved Target Transfer Tag");
		return;
	}
	if (t->reassigned && ism_erl2_r2t(c, t, b))
		return;
	if (b->r2t.r2tsn != t->next_r2tsn && ism_erl1(c) && ism_erl1_r2t_gap(c, t, b))
		return;
	if (b->r2t.r2tsn != t->next_r2tsn) {
		task_protocol_error(c, t, "R2TSN %u out of order (expected %u)", b->r2t.r2tsn, t->next_r2tsn);
		return;
	}
	uint64_t end = (uint64_t)b->r2t.offset + b->r2t.desired_len;
	if (b->r2t.desired_len == 0 || end > t->len) {
		task_protocol_error(c, t, "R2T for %u bytes at offset %u outside the %u bytes of the write",
				    b->r2t.desired_len, b->r2t.offset, t->len);
		return;
	}
	if (b->r2t.offset < t->write_end && ism_erl1(c) && ism_erl1_recovery_r2t(c, t, b))
		return;
	if (b->r2t.offset < t->write_end) {
		/* DataSequenceInOrder=Yes: each R2T asks for data after what was sent or asked for. */
		task_protocol_error(c, t, "R2T for ITT 0x%08x at offset %u asks again for data before offset %u, "
				    "already sent or asked for", b->itt, b->r2t.offset, t->write_end);
		return;
	}
	if (b->r2t.desired_len > s->params.max_burst_length) {
		task_protocol_error(c, t, "R2T asks for %u bytes, more than MaxBurstLength %u", b->r2t.desired_len,
				    s->params.max_burst_length);
		return;
	}
	/*
	 * MaxOutstandingR2T (RFC 7143 13.17): an R2T stays outstanding until the last Data-Out that
	 * answers it is on the wire. The target may not ask for more at a time than was negotiated;
	 * one that does breaks the session's flow control, which ERL 0 cannot repair.
	 */
	uint32_t max_r2t = s->params.max_outstanding_r2t ? s->params.max_outstanding_r2t : 1;
	if (t->r2t_active >= max_r2t) {
		task_protocol_error(c, t, "target sent R2T %u for ITT 0x%08x while %u R2T%s of it %s still being "
				    "answered (MaxOutstandingR2T=%u)", b->r2t.r2tsn, b->itt, t->r2t_active,
				    t->r2t_active == 1 ? "" : "s", t->r2t_active == 1 ? "is" : "are", max_r2t);
		return;
	}
	t->next_r2tsn++;
	t->write_end = (uint32_t)end;
	t->write_covered += b->r2t.desired_len;
	ism_answer_r2t(c, t, b);
}
