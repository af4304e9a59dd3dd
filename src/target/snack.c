/*
 * SNACK on the target (RFC 7143 11.16, 7.2): at ErrorRecoveryLevel 1 every Data-In, R2T and
 * status PDU a connection sends is kept, as a copy, until the initiator acknowledges it, so that
 * a SNACK can ask for it again:
 *  - a status (any PDU that took a StatSN) until ExpStatSN passes it; a SCSI status takes the
 *    task's Data-In and R2Ts with it (the status acknowledges the data);
 *  - Data-In until a DataACK SNACK covers it (the last Data-In of a read carries the A bit);
 *  - R2Ts until the task's status is sent.
 * Copies rather than references to the task's buffers: the task ends as at level 0, and what is
 * kept is bounded on its own (max-retained-data per connection; the oldest go first, and a SNACK
 * for one of those is rejected).
 */
#include <stdlib.h>
#include <string.h>

#include "target/conn.h"
#include "target/ffp.h"
#include "target/recovery.h"
#include "target/server.h"
#include "target/session.h"
#include "target/task.h"
#include "util/log.h"

enum snack_type { SNACK_DATA_R2T = 0, SNACK_STATUS = 1, SNACK_DATA_ACK = 2, SNACK_RDATA = 3 };

struct kept_pdu {
	struct kept_pdu *prev, *next; /* send order */
	struct bhs b;                 /* as queued; StatSN, ExpCmdSN and MaxCmdSN are stamped again */
	uint8_t *data;
	uint32_t len;
	bool status;                  /* took a StatSN: statsn */
	uint32_t statsn;
};

struct retained {
	struct kept_pdu *head, *tail;
	uint64_t bytes;
	uint64_t dropped;             /* let go at the bound before they were acknowledged */
};

/* Serial number arithmetic (RFC 1982), as CmdSN and StatSN use it. */
static bool sn_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }


static uint64_t kept_size(const struct kept_pdu *k) { return sizeof(*k) + k->len; }

uint32_t recovery_level(const struct conn *c)
{
	return c->sess && c->phase == PHASE_FULL_FEATURE ? c->sess->params.error_recovery_level : 0;
}

bool snack_wanted(const struct conn *c)
{
	/* A failed connection (level 2) keeps what its tasks still queue, for their reassignment. */
	bool failed = c->phase == PHASE_FAILED && c->sess;
	return !c->resending && (recovery_level(c) >= 1 || failed);
}

void snack_mark(struct conn *c, struct bhs *b, uint32_t len, const struct task *t)
{
	(void)c;
	if (b->opcode != OP_DATA_IN || !t)
		return;
	uint32_t in_len = t->scmd.in_len < t->bidi_read_len ? t->scmd.in_len : t->bidi_read_len;
	if (b->data_in.offset + len != in_len)
		return;
	/* The A bit needs the TTT and LUN the DataACK will quote (RFC 7143 11.7.4). */
	b->data_in.ack = true;
	b->data_in.ttt = t->ttt;
	memcpy(b->lun, t->lun_field, 8);
}

static void kept_detach(struct retained *r, struct kept_pdu *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		r->head = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		r->tail = k->prev;
	r->bytes -= kept_size(k);
}

static void kept_unlink(struct retained *r, struct kept_pdu *k)
{
	kept_detach(r, k);
	free(k->data);
	free(k);
}

static void kept_append(struct retained *r, struct kept_pdu *k)
{
	k->prev = r->tail;
	k->next = NULL;
	if (r->tail)
		r->tail->next = k;
	else
		r->head = k;
	r->tail = k;
	r->bytes += kept_size(k);
}

static bool is_scsi_status(const struct kept_pdu *k)
{
	return k->status && (k->b.opcode == OP_SCSI_RESP || k->b.opcode == OP_DATA_IN);
}

/* Data-In and R2Ts of a task whose status went or was acknowledged (the status itself stays). */
static void drop_task_data(struct retained *r, uint32_t itt, bool r2t_only)
{
	for (struct kept_pdu *k = r->head, *next; k; k = next) {
		next = k->next;
		if (k->status || k->b.itt != itt)
			continue;
		if (k->b.opcode == OP_R2T || (!r2t_only && k->b.opcode == OP_DATA_IN))
			kept_unlink(r, k);
	}
}

void snack_keep(struct conn *c, const struct bhs *b, const void *data, uint32_t len, bool status, uint32_t statsn)
{
	if (!status && b->opcode != OP_DATA_IN && b->opcode != OP_R2T)
		return;
	if (!c->kept)
		c->kept = xcalloc(1, sizeof(*c->kept));
	struct retained *r = c->kept;
	struct kept_pdu *k = xcalloc(1, sizeof(*k));
	k->b = *b;
	k->status = status;
	k->statsn = statsn;
	if (len) {
		k->data = xmalloc(len);
		memcpy(k->data, data, len);
		k->len = len;
	}
	if (is_scsi_status(k))
		drop_task_data(r, b->itt, true); /* its data has all come: no R2T will be asked for again */
	kept_append(r, k);
	uint64_t limit = c->srv->cfg->max_retained_data;
	while (r->bytes > limit && r->head != k) {
		if (r->dropped++ == 0)
			log_warn("%s:%u: more than %llu bytes of sent PDUs kept for SNACK: dropping the oldest", c->peer_addr,
				 c->peer_port, (unsigned long long)limit);
		kept_unlink(r, r->head);
	}
}

void snack_ack_statsn(struct conn *c, uint32_t expstatsn)
{
	if (!sn_lt(c->exp_statsn, expstatsn) || sn_lt(c->statsn, expstatsn))
		return; /* nothing new, or beyond what was sent */
	c->exp_statsn = expstatsn;
	struct retained *r = c->kept;
	if (!r)
		return;
	for (struct kept_pdu *k = r->head, *next; k; k = next) {
		next = k->next;
		if (!k->status || !sn_lt(k->statsn, expstatsn))
			continue;
		if (is_scsi_status(k)) {
			drop_task_data(r, k->b.itt, false);
			next = k->next; /* the task's data may have followed k */
		}
		kept_unlink(r, k);
	}
}

void snack_free(struct conn *c)
{
	struct retained *r = c->kept;
	if (!r)
		return;
	while (r->head)
		kept_unlink(r, r->head);
	free(r);
	c->kept = NULL;
}

/* Queue a kept PDU again as it was: same DataSN / R2TSN, a status with its StatSN. */
static void resend(struct conn *c, const struct bhs *hdr, const uint8_t *data, uint32_t len, bool status, uint32_t statsn)
{
	struct bhs b = *hdr;
	uint8_t *copy = NULL;
	if (len) {
		copy = xmalloc(len);
		memcpy(copy, data, len);
	}
	c->resending = true;
	c->statsn_fixed = status;
	c->fixed_statsn = statsn;
	conn_send_pdu(c, &b, copy, len, NULL, copy);
	c->resending = false;
	c->statsn_fixed = false;
	c->stats.pdus_resent++;
}

static uint32_t kept_sn(const struct kept_pdu *k)
{
	return k->b.opcode == OP_R2T ? k->b.r2t.r2tsn : k->b.data_in.datasn;
}

static bool in_run(uint32_t sn, uint32_t begrun, uint32_t runlength)
{
	return !sn_lt(sn, begrun) && (runlength == 0 || sn_lt(sn, begrun + runlength));
}

/* Data/R2T SNACK: the task's Data-In (a read) or R2Ts (a write) numbered BegRun on. */
static bool snack_data_r2t(struct conn *c, const struct bhs *b)
{
	struct retained *r = c->kept;
	uint8_t op = OP_R2T;
	for (struct kept_pdu *k = r ? r->head : NULL; k; k = k->next)
		if (k->b.itt == b->itt && k->b.opcode == OP_DATA_IN)
			op = OP_DATA_IN;
	unsigned n = 0;
	bool first = false;
	for (struct kept_pdu *k = r ? r->head : NULL; k; k = k->next) {
		if (k->b.itt != b->itt || k->b.opcode != op || !in_run(kept_sn(k), b->snack.begrun, b->snack.runlength))
			continue;
		first |= kept_sn(k) == b->snack.begrun;
		n++;
	}
	if (!first || (b->snack.runlength && n != b->snack.runlength))
		return false;
	for (struct kept_pdu *k = r->head; k; k = k->next)
		if (k->b.itt == b->itt && k->b.opcode == op && in_run(kept_sn(k), b->snack.begrun, b->snack.runlength))
			resend(c, &k->b, k->data, k->len, k->status, k->statsn);
	log_info("%s:%u: SNACK: %s of ITT 0x%08x sent again from %u (%u)", c->peer_addr, c->peer_port,
		 op == OP_R2T ? "R2T" : "Data-In", b->itt, b->snack.begrun, n);
	return true;
}

/* Status SNACK: the numbered responses from StatSN BegRun on. */
static bool snack_status(struct conn *c, const struct bhs *b)
{
	struct retained *r = c->kept;
	unsigned n = 0;
	bool first = false;
	for (struct kept_pdu *k = r ? r->head : NULL; k; k = k->next) {
		if (!k->status || !in_run(k->statsn, b->snack.begrun, b->snack.runlength))
			continue;
		first |= k->statsn == b->snack.begrun;
		n++;
	}
	if (!first || (b->snack.runlength && n != b->snack.runlength))
		return false;
	for (struct kept_pdu *k = r->head; k; k = k->next)
		if (k->status && in_run(k->statsn, b->snack.begrun, b->snack.runlength))
			resend(c, &k->b, k->data, k->len, true, k->statsn);
	log_info("%s:%u: Status SNACK: %u responses sent again from StatSN %u", c->peer_addr, c->peer_port, n,
		 b->snack.begrun);
	return true;
}

/*
 * A collapsed status (the last Data-In) as a SCSI Response of its own: what stays of it once its
 * data is acknowledged, and what an R-Data SNACK ends with.
 */
static void status_as_response(struct kept_pdu *k, uint32_t snack_tag)
{
	struct bhs rsp = {0};
	rsp.opcode = OP_SCSI_RESP;
	rsp.final = true;
	rsp.itt = k->b.itt;
	if (k->b.opcode == OP_DATA_IN) {
		rsp.rsp.status = k->b.data_in.status;
		rsp.rsp.flags = (k->b.data_in.overflow ? 0x04 : 0) | (k->b.data_in.underflow ? 0x02 : 0);
		rsp.rsp.residual = k->b.data_in.residual;
		rsp.rsp.expdatasn = k->b.data_in.datasn + 1;
	} else {
		rsp.rsp = k->b.rsp;
	}
	rsp.rsp.snack_tag = snack_tag;
	k->b = rsp;
}

/* DataACK: the initiator has the read's Data-In below BegRun; they need not be kept. */
static bool snack_data_ack(struct conn *c, const struct bhs *b)
{
	struct retained *r = c->kept;
	const struct kept_pdu *acked = NULL;
	for (struct kept_pdu *k = r ? r->head : NULL; k && !acked; k = k->next)
		if (k->b.opcode == OP_DATA_IN && k->b.data_in.ack && k->b.data_in.ttt == b->snack.ttt)
			acked = k;
	if (!acked) {
		/* Its status was acknowledged first (which freed the data) or it was dropped at the bound. */
		log_debug("%s:%u: DataACK for TTT 0x%08x: nothing kept", c->peer_addr, c->peer_port, b->snack.ttt);
		return true;
	}
	uint32_t itt = acked->b.itt;
	for (struct kept_pdu *k = r->head, *next; k; k = next) {
		next = k->next;
		if (k->b.itt != itt || k->b.opcode != OP_DATA_IN || !sn_lt(k->b.data_in.datasn, b->snack.begrun))
			continue;
		if (!k->status) {
			kept_unlink(r, k);
			continue;
		}
		/* The status stays until ExpStatSN passes it; its data goes. */
		r->bytes -= k->len;
		free(k->data);
		k->data = NULL;
		k->len = 0;
		status_as_response(k, 0);
	}
	return true;
}

/*
 * The kept Data-In of one task from DataSN `from` on (from_first: from the first one kept), as
 * one run of bytes, and the task's kept status.
 */
struct data_run {
	struct kept_pdu *status;
	struct kept_pdu *first;       /* the first Data-In of the run; NULL: none from there on */
	uint32_t off0, datasn;        /* where the run starts: offset and DataSN */
	uint64_t total;
};

/* False when a piece of the run is missing (dropped at the bound, or acknowledged already). */
static bool collect_run(struct retained *r, uint32_t itt, uint32_t from, bool from_first, struct data_run *run)
{
	memset(run, 0, sizeof(*run));
	run->datasn = from;
	uint32_t end = 0;
	for (struct kept_pdu *k = r ? r->head : NULL; k; k = k->next) {
		if (k->b.itt != itt)
			continue;
		if (is_scsi_status(k))
			run->status = k;
		if (k->b.opcode != OP_DATA_IN || (!from_first && sn_lt(k->b.data_in.datasn, from)))
			continue;
		if (!run->first) {
			if (!from_first && k->b.data_in.datasn != from)
				return false;
			run->first = k;
			run->off0 = end = k->b.data_in.offset;
			run->datasn = k->b.data_in.datasn;
		}
		if (k->b.data_in.offset != end)
			return false;
		end += k->len;
		run->total += k->len;
	}
	return true;
}

/*
 * Send a run again on `to`, cut to the MaxRecvDataSegmentLength in force there and numbered from
 * its first DataSN; the copies it came from leave r (the status's data only). Returns the DataSN
 * after the last one sent.
 */
static uint32_t send_run(struct retained *r, struct conn *to, uint32_t itt, const struct data_run *run)
{
	uint8_t *all = xmalloc(run->total ? run->total : 1);
	uint32_t datasn = run->datasn;
	bool ack_wanted = false;
	uint32_t ack_ttt = RESERVED_TAG;
	uint8_t lun[8] = {0};
	if (run->first)
		memcpy(lun, run->first->b.lun, 8);
	for (struct kept_pdu *k = run->first, *next; k; k = next) {
		next = k->next;
		if (k->b.itt != itt || k->b.opcode != OP_DATA_IN || sn_lt(k->b.data_in.datasn, run->datasn))
			continue;
		memcpy(all + (k->b.data_in.offset - run->off0), k->data, k->len);
		if (k->b.data_in.ack) {
			ack_wanted = true;
			ack_ttt = k->b.data_in.ttt;
			memcpy(lun, k->b.lun, 8);
		}
		if (k == run->status) {
			r->bytes -= k->len;
			free(k->data);
			k->data = NULL;
			k->len = 0;
			continue;
		}
		kept_unlink(r, k);
	}
	uint32_t seg = to->params.peer_max_recv_dsl, burst = to->sess->params.max_burst_length;
	for (uint32_t off = 0; off < run->total;) {
		uint32_t n = (uint32_t)run->total - off, burst_left = burst - ((run->off0 + off) % burst);
		if (n > seg)
			n = seg;
		if (n > burst_left)
			n = burst_left;
		struct bhs d = {0};
		d.opcode = OP_DATA_IN;
		d.itt = itt;
		d.data_in.ttt = RESERVED_TAG;
		d.data_in.datasn = datasn++;
		d.data_in.offset = run->off0 + off;
		d.final = off + n == run->total || n == burst_left;
		if (off + n == run->total && ack_wanted) {
			d.data_in.ack = true;
			d.data_in.ttt = ack_ttt;
			memcpy(d.lun, lun, 8);
		}
		/* Kept as sent: a later SNACK asks by the new numbers. */
		uint8_t *piece = xmalloc(n);
		memcpy(piece, all + off, n);
		conn_send_pdu(to, &d, piece, n, NULL, piece);
		off += n;
	}
	free(all);
	return datasn;
}

/*
 * R-Data SNACK (RFC 7143 11.16.3): every unacknowledged Data-In of the task again, cut to the
 * MaxRecvDataSegmentLength in force now, numbered from the first unacknowledged DataSN, then the
 * status in a SCSI Response carrying the SNACK Tag (with its original StatSN).
 */
static bool snack_rdata(struct conn *c, const struct bhs *b)
{
	struct retained *r = c->kept;
	struct data_run run;
	if (!collect_run(r, b->itt, 0, true, &run) || !run.status || !run.first || b->snack.begrun ||
	    b->snack.runlength)
		return false;
	struct kept_pdu *status = run.status;
	uint32_t datasn = send_run(r, c, b->itt, &run);
	status_as_response(status, b->snack.ttt);
	status->b.rsp.expdatasn = datasn;
	/* The status moves behind the data it now follows. */
	kept_detach(r, status);
	kept_append(r, status);
	resend(c, &status->b, status->data, status->len, true, status->statsn);
	log_info("%s:%u: R-Data SNACK: ITT 0x%08x, %llu bytes sent again", c->peer_addr, c->peer_port, b->itt,
		 (unsigned long long)run.total);
	return true;
}

uint64_t snack_kept_bytes(const struct conn *c) { return c->kept ? c->kept->bytes : 0; }

bool snack_has_itt(const struct conn *c, uint32_t itt)
{
	for (const struct kept_pdu *k = c->kept ? c->kept->head : NULL; k; k = k->next)
		if (k->b.itt == itt && (k->b.opcode == OP_DATA_IN || k->b.opcode == OP_SCSI_RESP))
			return true;
	return false;
}

void snack_forget_itt(struct conn *c, uint32_t itt)
{
	struct retained *r = c->kept;
	for (struct kept_pdu *k = r ? r->head : NULL, *next; k; k = next) {
		next = k->next;
		if (k->b.itt == itt)
			kept_unlink(r, k);
	}
}

/*
 * TASK REASSIGN of a task that had ended on `from` (RFC 7143 11.5.1): its Data-In again from
 * ExpDataSN (0: from the first the initiator has not acknowledged), then its status, as new PDUs
 * of `to` (a status takes a StatSN of `to`).
 */
enum snack_reassign snack_reassign_check(const struct conn *from, uint32_t itt, uint32_t expdatasn)
{
	struct data_run run;
	if (!snack_has_itt(from, itt))
		return SNACK_REASSIGN_NONE;
	if (!collect_run(from->kept, itt, expdatasn, expdatasn == 0, &run) || !run.status)
		return SNACK_REASSIGN_INCOMPLETE;
	return SNACK_REASSIGN_OK;
}

void snack_reassign_send(struct conn *from, struct conn *to, uint32_t itt, uint32_t expdatasn)
{
	struct retained *r = from->kept;
	struct data_run run;
	if (!collect_run(r, itt, expdatasn, expdatasn == 0, &run) || !run.status)
		return;
	uint32_t datasn = send_run(r, to, itt, &run);
	struct kept_pdu *status = run.status;
	/* A status collapsed into a Data-In carries read data, not sense data. */
	uint32_t sense_len = status->b.opcode == OP_DATA_IN ? 0 : status->len;
	status_as_response(status, 0);
	if (run.first)
		status->b.rsp.expdatasn = datasn;
	struct bhs rsp = status->b;
	uint8_t *sense = NULL;
	if (sense_len) {
		sense = xmalloc(sense_len);
		memcpy(sense, status->data, sense_len);
	}
	conn_send_pdu(to, &rsp, sense, sense_len, NULL, sense);
	to->stats.pdus_resent++;
	snack_forget_itt(from, itt);
	log_info("%s:%u: TASK REASSIGN: ITT 0x%08x, %llu bytes from DataSN %u and its status sent again", to->peer_addr,
		 to->peer_port, itt, (unsigned long long)run.total, run.datasn);
}

void snack_handle(struct conn *c, const struct bhs *b, const uint8_t *raw)
{
	bool done;
	switch (b->snack.type) {
	case SNACK_DATA_R2T: done = snack_data_r2t(c, b); break;
	case SNACK_STATUS: done = snack_status(c, b); break;
	case SNACK_DATA_ACK: done = snack_data_ack(c, b); break;
	case SNACK_RDATA: done = snack_rdata(c, b); break;
	default:
		send_reject(c, REJECT_INVALID_PDU_FIELD, raw);
		return;
	}
	if (!done) {
		/*
		 * Not sent, acknowledged already, or dropped at the bound: the initiator's recovery falls
		 * back to aborting the task (RFC 7143 11.16: a protocol error).
		 */
		log_warn("%s:%u: SNACK type %u for ITT 0x%08x from %u (%u) asks for what is not kept", c->peer_addr,
			 c->peer_port, b->snack.type, b->itt, b->snack.begrun, b->snack.runlength);
		send_reject(c, REJECT_PROTOCOL_ERROR, raw);
	}
}
