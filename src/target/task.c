/*
 * The life of a SCSI task on the target: command (with immediate data), unsolicited and
 * solicited Data-Out (R2T), execution by the SCSI layer, then Data-In PDUs with the status
 * collapsed into the last one, or a SCSI Response carrying sense data and residuals.
 */
#include <stdlib.h>
#include <string.h>

#include "target/conn.h"
#include "target/datain.h"
#include "target/ffp.h"
#include "target/recovery.h"
#include "target/server.h"
#include "target/session.h"
#include "target/task.h"
#include "target/shard.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Largest data transfer one command may ask for; VPD Block Limits advertises less. */
#define TASK_MAX_XFER (32u * 1024u * 1024u)
#define TASK_FREE_KEEP 64u

/* Data buffers are counted per connection, per session and for the whole target. */
static void conn_charge(struct conn *c, uint64_t bytes)
{
	c->buffered += bytes;
	if (c->sess)
		c->sess->buffered += bytes;
	atomic_fetch_add(&c->srv->buffered, bytes);
}

static void conn_uncharge(struct conn *c, uint64_t bytes)
{
	c->buffered -= bytes;
	if (c->sess)
		c->sess->buffered -= bytes;
	atomic_fetch_sub(&c->srv->buffered, bytes);
}

/* Whether bytes more fit max-data-per-connection, -per-session and -total; else the refusal. */
static enum task_refusal data_bound_refusal(const struct conn *c, uint64_t bytes)
{
	const struct cfg *cfg = c->srv->cfg;
	if (c->buffered + bytes > cfg->max_data_connection)
		return TASK_REFUSE_SET_FULL;
	if (c->sess->buffered + bytes > cfg->max_data_session)
		return TASK_REFUSE_SESSION_DATA;
	if (atomic_load(&c->srv->buffered) + bytes > cfg->max_data_total)
		return TASK_REFUSE_TOTAL_DATA;
	return TASK_REFUSE_NONE;
}

static void task_account(struct task *t, uint64_t bytes)
{
	t->buffered = bytes;
	conn_charge(t->conn, bytes);
}

static void task_unaccount(struct task *t)
{
	conn_uncharge(t->conn, t->buffered);
	t->buffered = 0;
}

static void task_free_buffers(struct task *t)
{
	datain_release(t);
	bufpool_put(t->pool, t->out, t->edtl);
	bufpool_put(t->pool, t->in, t->in_cap);
	t->out = t->in = NULL;
}

/* The connection's task list: newest first, doubly linked so that a completion leaves it at once. */
static void task_link(struct conn *c, struct task *t)
{
	t->prev = NULL;
	t->next = c->tasks;
	if (c->tasks)
		c->tasks->prev = t;
	c->tasks = t;
}

static void task_unlink(struct conn *c, struct task *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		c->tasks = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->next = t->prev = NULL;
}

static struct task *task_alloc(struct conn *c)
{
	struct task *t = c->free_tasks;
	if (t)
		c->free_tasks = t->next;
	else
		t = xmalloc(sizeof(*t));
	memset(t, 0, offsetof(struct task, scmd));
	memset(&t->scmd, 0, offsetof(struct scsi_cmd, sense));
	t->conn = c;
	t->shard = c->shard;
	t->pool = &c->shard->bufpool;
	task_link(c, t);
	c->ntasks++;
	t->last_data_ms = loop_now_ms();
	return t;
}

static void task_put(struct task *t)
{
	struct conn *c = t->conn;
	task_unlink(c, t);
	c->ntasks--;
	if (t->state == TASK_SENDING)
		c->nsending--;
	pdu_conn_forget_direct(&c->pc, t); /* Data-Out still arriving for it is read and dropped */
	task_unaccount(t);
	task_free_buffers(t);
	t->next = c->free_tasks;
	c->free_tasks = t;
}

void task_release(struct task *t)
{
	if (--t->refs == 0 && t->state == TASK_SENDING)
		task_put(t);
}

void task_abort(struct task *t)
{
	if (t->state == TASK_WAIT_CMDSN || t->state == TASK_WAIT_DATA) {
		task_put(t);
		return;
	}
	if (t->state == TASK_RUNNING)
		scsi_cmd_cancel(&t->scmd); /* not started yet: it never will be */
	t->aborted = true;
}

void task_free_all(struct conn *c)
{
	task_drop_placed(c);
	tmf_conn_gone(c);
	while (c->tasks) {
		struct task *t = c->tasks;
		task_unlink(c, t);
		c->ntasks--;
		if (t->state == TASK_SENDING)
			c->nsending--;
		task_unaccount(t);
		if (t->state == TASK_RUNNING && t->scmd.defer.active) {
			/* On a worker or waiting for one: the task goes when the SCSI layer is done with it. */
			scsi_cmd_cancel(&t->scmd);
			t->orphan = true;
			t->conn = NULL;
			continue;
		}
		task_free_buffers(t);
		free(t);
	}
	while (c->free_tasks) {
		struct task *t = c->free_tasks;
		c->free_tasks = t->next;
		free(t);
	}
}

static struct task *task_find_itt_on(struct conn *c, uint32_t itt)
{
	for (; c; c = c->sess_next)
		for (struct task *t = c->tasks; t; t = t->next)
			if (t->itt == itt && t->state != TASK_SENDING && !t->aborted)
				return t;
	return NULL;
}

/* A task of the session, on a live connection or on a failed one awaiting reassignment (level 2). */
struct task *task_find_itt(struct session *s, uint32_t itt)
{
	struct task *t = task_find_itt_on(s->conns, itt);
	return t ? t : task_find_itt_on(s->failed, itt);
}

/* SCSI Response, with sense data (seg, owned) or none, for a command the SCSI layer never saw. */
static void task_respond(struct conn *c, uint32_t itt, uint8_t status, uint8_t *seg, uint32_t seglen,
			 uint32_t residual, bool overflow)
{
	struct bhs b = {0};
	b.opcode = OP_SCSI_RESP;
	b.final = true;
	b.itt = itt;
	b.rsp.status = status;
	if (residual) {
		b.rsp.flags = overflow ? 0x04 : 0x02;
		b.rsp.residual = residual;
	}
	conn_send_pdu(c, &b, seg, seglen, NULL, seg);
}

/* CHECK CONDITION with fixed-format sense, for a command that failed before the SCSI layer. */
static void task_respond_check(struct conn *c, uint32_t itt, uint8_t key, uint8_t asc, uint8_t ascq, uint32_t residual,
			       bool overflow)
{
	uint8_t *seg = xcalloc(1, 2 + SCSI_SENSE_FIXED_LEN);
	seg[1] = (uint8_t)scsi_sense_build(seg + 2, SCSI_SENSE_FIXED_LEN, false, key, asc, ascq, NULL, NULL);
	task_respond(c, itt, SCSI_CHECK_CONDITION, seg, 2 + SCSI_SENSE_FIXED_LEN, residual, overflow);
}

void task_queue_r2t(struct task *t, uint32_t offset, uint32_t len)
{
	struct conn *c = t->conn;
	struct bhs b = {0};
	b.opcode = OP_R2T;
	b.final = true;
	memcpy(b.lun, t->lun_field, 8);
	b.itt = t->itt;
	b.r2t.ttt = t->ttt;
	b.r2t.r2tsn = t->r2tsn++;
	b.r2t.offset = offset;
	b.r2t.desired_len = len;
	c->stats.r2ts++;
	conn_send_pdu(c, &b, NULL, 0, NULL, NULL);
}

static void task_send_r2ts(struct task *t)
{
	const struct iscsi_params *p = &t->conn->sess->params;
	while (t->r2t_outstanding < p->max_outstanding_r2t && t->r2t_offset < t->edtl) {
		uint32_t len = t->edtl - t->r2t_offset;
		if (len > p->max_burst_length)
			len = p->max_burst_length;
		task_queue_r2t(t, t->r2t_offset, len);
		t->r2t_offset += len;
		t->r2t_outstanding++;
	}
}

static void task_scsi_done(struct scsi_cmd *cmd);

static void task_execute(struct task *t)
{
	struct conn *c = t->conn;
	struct scsi_cmd *sc = &t->scmd;
	sc->nexus = &c->sess->nexus;
	sc->lun_valid = scsi_lun_decode(t->lun_field, &sc->lun);
	sc->out = t->out;
	sc->out_len = t->write ? t->edtl : 0;
	sc->in = t->in;
	sc->in_cap = t->in_cap;
	sc->in_ref_ok = datain_zero_copy_ok(t);
	sc->done = task_scsi_done;
	sc->priv = t;
	t->state = TASK_RUNNING;
	c->stats.commands++;
	scsi_port_submit(c->sess->node->scsi_ctx[c->shard->id], sc);
	shard_note_blocked(c->shard);
}

/* A command refused at arrival answers in its CmdSN turn, so ordering stays intact. */
static void task_refuse(struct task *t)
{
	struct conn *c = t->conn;
	uint32_t itt = t->itt;
	uint8_t why = t->refuse;
	task_put(t);
	const struct cfg *cfg = c->srv->cfg;
	switch (why) {
	case TASK_REFUSE_TOO_BIG:
		log_warn("%s:%u: command asks for more than %u bytes", c->peer_addr, c->peer_port, TASK_MAX_XFER);
		task_respond_check(c, itt, SK_ILLEGAL_REQUEST, 0x24, 0x00, 0, false);
		return;
	case TASK_REFUSE_SET_FULL:
		log_warn("%s:%u: more than %llu bytes of data buffered for commands in progress: TASK SET FULL",
			 c->peer_addr, c->peer_port, (unsigned long long)cfg->max_data_connection);
		break;
	case TASK_REFUSE_SESSION_DATA:
		log_warn("%s:%u: more than %llu bytes of data buffered for the session's commands: TASK SET FULL",
			 c->peer_addr, c->peer_port, (unsigned long long)cfg->max_data_session);
		break;
	case TASK_REFUSE_TOTAL_DATA:
		log_warn("%s:%u: more than %llu bytes of data buffered for the target's commands: TASK SET FULL",
			 c->peer_addr, c->peer_port, (unsigned long long)cfg->max_data_total);
		break;
	case TASK_REFUSE_SLOTS:
		log_warn("%s:%u: session has all %u command slots in use: TASK SET FULL", c->peer_addr, c->peer_port,
			 c->sess->queue_depth);
		break;
	}
	task_respond(c, itt, SCSI_TASK_SET_FULL, NULL, 0, 0, false);
}

/* The task's CmdSN turn has come: solicit the rest of its data, or run it. */
void task_start(struct task *t)
{
	if (t->refuse) {
		task_refuse(t);
		return;
	}
	t->state = TASK_WAIT_DATA;
	if (t->write && (t->out_received < t->edtl || t->hole_len)) {
		if (t->out_received >= t->unsolicited_end)
			task_send_r2ts(t);
		return;
	}
	task_execute(t);
}

/*
 * The header of a write command with immediate data is in, its data not yet: when the data may
 * be there at all (RFC 7143 10.3: ImmediateData=Yes, within FirstBurstLength and EDTL, a write)
 * and the command's whole buffer fits the data bounds, that buffer is taken and counted now and
 * the data read straight into it; task_handle_command makes it the task's. Anything else is
 * collected in the receive buffer and judged there as before.
 */
uint8_t *task_place_immediate(struct pdu_conn *pc, void **owner)
{
	struct conn *c = pc->arg;
	const struct bhs *b = &pc->rx_bhs;
	struct session *s = c->sess;
	if (c->phase != PHASE_FULL_FEATURE || !s || s->type != SESSION_NORMAL || c->placed)
		return NULL;
	const struct iscsi_params *p = &s->params;
	uint32_t len = b->data_len, edtl = b->cmd.edtl;
	if (!b->cmd.write || !p->immediate_data || len > p->first_burst_length || len > edtl || edtl > TASK_MAX_XFER)
		return NULL;
	if (session_outstanding(s) >= s->queue_depth || data_bound_refusal(c, edtl) != TASK_REFUSE_NONE)
		return NULL; /* refused in its turn: nothing to place */
	conn_charge(c, edtl);
	c->placed = bufpool_get(&c->shard->bufpool, edtl);
	c->placed_size = edtl;
	*owner = c;
	return c->placed;
}

/* The placed buffer, if data is in it: no longer counted for the connection (the task counts it). */
static uint8_t *task_take_placed(struct conn *c, const uint8_t *data)
{
	if (!c->placed || data != c->placed)
		return NULL;
	uint8_t *buf = c->placed;
	conn_uncharge(c, c->placed_size);
	c->placed = NULL;
	c->placed_size = 0;
	return buf;
}

void task_drop_placed(struct conn *c)
{
	if (!c->placed)
		return;
	uint32_t size = c->placed_size;
	bufpool_put(&c->shard->bufpool, task_take_placed(c, c->placed), size);
}

void task_handle_command(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len)
{
	struct session *s = c->sess;
	const struct iscsi_params *p = &s->params;
	struct ahs_info ai;
	char why[96];
	if (s->type != SESSION_NORMAL) {
		send_reject(c, REJECT_PROTOCOL_ERROR, raw);
		return;
	}
	int rc = ahs_parse(raw + BHS_LEN, b->total_ahs_len, &ai, why, sizeof(why));
	if (rc) {
		log_warn("%s:%u: bad AHS: %s", c->peer_addr, c->peer_port, why);
		send_reject(c, (uint8_t)rc, raw);
		return;
	}
	/* Data rules of RFC 7143 10.3: immediate data needs ImmediateData=Yes, fits the first burst,
	 * and only write commands carry any. */
	if (len && (!b->cmd.write || !p->immediate_data || len > p->first_burst_length || len > b->cmd.edtl)) {
		log_warn("%s:%u: SCSI command with %u bytes of immediate data it may not carry", c->peer_addr,
			 c->peer_port, len);
		send_reject(c, REJECT_PROTOCOL_ERROR, raw);
		return;
	}
	struct task *t = task_alloc(c);
	t->itt = b->itt;
	t->cmdsn = b->cmd.cmdsn;
	t->immediate = b->immediate;
	t->read = b->cmd.read;
	t->write = b->cmd.write;
	memcpy(t->lun_field, b->lun, 8);
	t->edtl = (t->read || t->write) ? b->cmd.edtl : 0;
	t->state = TASK_WAIT_CMDSN;
	t->start_us = stats_now_us();
	struct scsi_cmd *sc = &t->scmd;
	memcpy(sc->cdb, b->cmd.cdb, 16);
	memcpy(sc->cdb + 16, ai.ext_cdb, ai.ext_cdb_len);
	sc->cdb_len = (uint16_t)(16 + ai.ext_cdb_len);
	sc->task_attr = b->cmd.attr;
	uint32_t in_len = 0;
	if (t->read && t->write)
		in_len = ai.has_bidi_read_len ? ai.bidi_read_len : 0;
	else if (t->read)
		in_len = t->edtl;
	uint64_t need = (t->write ? (uint64_t)t->edtl : 0) + in_len;
	/* Immediate data read straight into its buffer: judged below as if it had been copied. */
	uint8_t *placed = task_take_placed(c, data);
	if ((t->write && t->edtl > TASK_MAX_XFER) || in_len > TASK_MAX_XFER)
		t->refuse = TASK_REFUSE_TOO_BIG;
	else if (session_outstanding(s) > s->queue_depth) /* this task is counted: more than every slot */
		t->refuse = TASK_REFUSE_SLOTS;
	else
		t->refuse = (uint8_t)data_bound_refusal(c, need);
	if (t->refuse && placed)
		bufpool_put(&c->shard->bufpool, placed, t->edtl);
	if (!t->refuse) {
		if (placed) {
			t->out = placed;
		} else if (t->write && t->edtl) {
			t->out = bufpool_get(&c->shard->bufpool, t->edtl);
			memcpy(t->out, data, len);
		}
		if (in_len) {
			t->in = bufpool_get(&c->shard->bufpool, in_len);
			t->in_cap = in_len;
		}
		task_account(t, need);
	}
	t->out_received = len;
	t->bidi_read_len = in_len;
	t->ttt = c->next_ttt++;
	if (t->ttt == RESERVED_TAG)
		t->ttt = c->next_ttt++;
	if (t->write) {
		uint32_t unsol = p->initial_r2t || b->final ? len : p->first_burst_length;
		if (unsol > t->edtl)
			unsol = t->edtl;
		t->unsolicited_end = unsol < len ? len : unsol;
		t->r2t_offset = t->unsolicited_end;
		t->seq_end = t->unsolicited_end;
	}
	if (!session_order(c, b, data, len, t))
		return;
	task_start(t);
}

bool task_opens_sequence(const struct task *t, const struct bhs *b)
{
	return b->data_out.ttt != RESERVED_TAG && t->out_received == t->seq_end && t->out_received >= t->unsolicited_end;
}

uint32_t task_next_seq_end(const struct task *t)
{
	uint32_t burst = t->conn->sess->params.max_burst_length, left = t->edtl - t->out_received;
	return t->out_received + (left < burst ? left : burst);
}

struct task *task_find_data_owner(struct conn *c, const struct bhs *b)
{
	for (struct task *t = c->tasks; t; t = t->next) {
		if (t->itt != b->itt || !t->write || (t->state != TASK_WAIT_DATA && t->state != TASK_WAIT_CMDSN))
			continue;
		if (b->data_out.ttt == RESERVED_TAG || b->data_out.ttt == t->ttt)
			return t;
	}
	return NULL;
}

/*
 * A large Data-Out whose data has not all arrived: when it continues its task's data in order,
 * the rest is read straight into the task's buffer (one copy fewer). Anything else is collected
 * as usual and task_handle_data_out judges it.
 */
uint8_t *task_place_data_out(struct pdu_conn *pc, void **owner)
{
	struct conn *c = pc->arg;
	const struct bhs *b = &pc->rx_bhs;
	if (c->phase != PHASE_FULL_FEATURE)
		return NULL;
	struct task *t = task_find_data_owner(c, b);
	uint32_t off = b->data_out.offset;
	if (!t || !t->out || off != t->out_received || (uint64_t)off + b->data_len > t->edtl ||
	    (b->data_out.ttt == RESERVED_TAG && (uint64_t)off + b->data_len > t->unsolicited_end))
		return NULL;
	*owner = t;
	return t->out + off;
}

void task_handle_data_out(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct task *t = task_find_data_owner(c, b);
	if (!t) {
		/* Data for a task that was aborted or never existed: discard it (RFC 7143 11.7). */
		log_debug("%s:%u: Data-Out for unknown task ITT 0x%08x", c->peer_addr, c->peer_port, b->itt);
		return;
	}
	bool unsolicited = b->data_out.ttt == RESERVED_TAG;
	uint32_t off = b->data_out.offset;
	if (task_opens_sequence(t, b)) {
		/* The first Data-Out answering the next R2T opens its sequence: DataSN restarts at 0. */
		t->seq_end = task_next_seq_end(t);
		t->next_datasn = 0;
	}
	const char *err = NULL;
	uint8_t ascq = 0x00; /* DATA PHASE ERROR */
	if (unsolicited && t->out_received + len > t->unsolicited_end) {
		err = "unsolicited data beyond the first burst";
		ascq = 0x02; /* TOO MUCH WRITE DATA */
	} else if (!unsolicited && t->out_received < t->unsolicited_end) {
		err = "solicited data before the unsolicited data ended";
	} else if (off != t->out_received) {
		err = "Data-Out buffer offset out of order";
		ascq = 0x05; /* DATA OFFSET ERROR */
	} else if ((uint64_t)off + len > t->edtl) {
		err = "Data-Out beyond the expected data transfer length";
		ascq = 0x02;
	} else if (b->data_out.datasn != t->next_datasn) {
		err = "Data-Out DataSN out of order";
	}
	if (err) {
		log_warn("%s:%u: ITT 0x%08x: %s (offset %u, length %u, DataSN %u)", c->peer_addr, c->peer_port, t->itt,
			 err, off, len, b->data_out.datasn);
		/*
		 * ERL 0 cannot recover the data, but the connection can survive: the command ends with
		 * ABORTED COMMAND now and any further Data-Out for it is discarded as unknown.
		 */
		uint32_t itt = t->itt;
		session_unhold_task(c->sess, t);
		task_put(t);
		task_respond_check(c, itt, SK_ABORTED_COMMAND, 0x4b, ascq, 0, false);
		return;
	}
	if (t->out && data != t->out + off)
		memcpy(t->out + off, data, len); /* not already placed (task_place_data_out) */
	t->out_received += len;
	t->last_data_ms = loop_now_ms();
	t->next_datasn++;
	bool seq_done = t->out_received >= t->seq_end || b->final;
	if (seq_done) {
		if (unsolicited) {
			if (t->out_received < t->unsolicited_end) {
				/* F bit ended the unsolicited burst early: solicit from here. */
				t->unsolicited_end = t->out_received;
				t->r2t_offset = t->out_received;
			}
		} else if (t->r2t_outstanding) {
			t->r2t_outstanding--;
		}
		/* Whatever comes next belongs to a new sequence (opened by the check above). */
		t->seq_end = t->out_received;
	}
	if (t->state == TASK_WAIT_CMDSN)
		return;
	if (t->out_received == t->edtl) {
		if (!t->hole_len) /* else recovery.c runs it once the range lost to a digest error is in */
			task_execute(t);
		return;
	}
	if (seq_done)
		task_send_r2ts(t);
}

/*
 * Writes whose Data-Out stopped coming end after the timeout: the initiator may have lost the
 * R2T or be hostile; either way their buffers are not held forever (SPC-4: INITIATOR RESPONSE
 * TIMEOUT). Returns how many ended.
 */
unsigned task_expire_data_waits(struct conn *c, uint64_t now_ms, uint64_t timeout_ms)
{
	unsigned n = 0;
	for (struct task *t = c->tasks, *next; t; t = next) {
		next = t->next;
		if (t->state != TASK_WAIT_DATA || !t->write || (t->out_received >= t->edtl && !t->hole_len) ||
		    now_ms - t->last_data_ms < timeout_ms)
			continue;
		log_warn("%s:%u: ITT 0x%08x: no Data-Out for %llu s (%u of %u bytes came): ending the command",
			 c->peer_addr, c->peer_port, t->itt, (unsigned long long)(timeout_ms / 1000), t->out_received,
			 t->edtl);
		uint32_t itt = t->itt;
		task_put(t);
		task_respond_check(c, itt, SK_ABORTED_COMMAND, 0x4b, 0x06, 0, false);
		n++;
	}
	return n;
}

/* Queue the Data-In PDUs (status collapsed into the last) or the SCSI Response. */
static void task_scsi_done_here(void *arg);

static void task_scsi_done(struct scsi_cmd *sc)
{
	struct task *t = sc->priv;
	/*
	 * The SCSI layer completes a command on its own context's thread; should anything end one
	 * elsewhere, the task's own loop still finishes it.
	 */
	if (!shard_on_thread(t->shard)) {
		shard_post(t->shard, task_scsi_done_here, sc);
		return;
	}
	if (t->tmf)
		tmf_task_ended(t);
	if (t->orphan) {
		/* Its connection is gone; only the memory is left to give back. */
		task_free_buffers(t);
		free(t);
		return;
	}
	struct conn *c = t->conn;
	t->state = TASK_SENDING;
	c->nsending++;
	t->refs = 1; /* our own, dropped at the end */
	/* A failed connection (level 2) keeps what is queued on it for the task's reassignment. */
	if (t->aborted || (c->phase != PHASE_FULL_FEATURE && c->phase != PHASE_FAILED)) {
		task_release(t);
		return;
	}
	stats_record_latency(&c->stats, stats_now_us() - t->start_us);
	if (sc->status != SCSI_GOOD)
		c->stats.errors++;
	if (sc->defer.waited)
		c->stats.device_waits++;
	if (t->write)
		c->stats.write_bytes += t->edtl;
	uint32_t in_exp = t->bidi_read_len;
	uint32_t in_len = sc->in_len > in_exp ? in_exp : sc->in_len;
	uint8_t flags = 0;
	uint32_t residual = 0, bidi_residual = 0;
	bool good = sc->status == SCSI_GOOD && sc->sense_len == 0;
	if (t->read && !t->write) {
		if (sc->xfer_len > t->edtl) {
			flags = 0x04;
			residual = sc->xfer_len - t->edtl;
		} else if (in_len < t->edtl) {
			flags = 0x02;
			residual = t->edtl - in_len;
		}
	} else if (t->write) {
		if (sc->xfer_len > t->edtl) {
			flags = 0x04;
			residual = sc->xfer_len - t->edtl;
		} else if (sc->xfer_len < t->edtl) {
			flags = 0x02;
			residual = t->edtl - sc->xfer_len;
		}
		if (t->read && in_len < in_exp) {
			flags |= 0x08;
			bidi_residual = in_exp - in_len;
		}
	} else if (t->edtl) {
		flags = 0x02;
		residual = t->edtl;
	}
	uint32_t datasn = 0;
	if (in_len && sc->status == SCSI_GOOD) {
		c->stats.read_bytes += in_len;
		uint32_t seg = c->params.peer_max_recv_dsl;
		uint32_t burst = c->sess->params.max_burst_length;
		for (uint32_t off = 0; off < in_len;) {
			uint32_t n = in_len - off;
			uint32_t burst_left = burst - (off % burst);
			if (n > seg)
				n = seg;
			if (n > burst_left)
				n = burst_left;
			bool last = off + n == in_len;
			struct bhs b = {0};
			b.opcode = OP_DATA_IN;
			b.itt = t->itt;
			b.data_in.ttt = RESERVED_TAG;
			b.data_in.datasn = datasn++;
			b.data_in.offset = off;
			b.final = last || n == burst_left;
			if (last && good && !t->write) {
				b.data_in.status_present = true;
				b.data_in.status = sc->status;
				b.data_in.overflow = (flags & 0x04) != 0;
				b.data_in.underflow = (flags & 0x02) != 0;
				b.data_in.residual = residual;
			}
			t->refs++;
			datain_queue(c, t, &b, off, n);
			off += n;
		}
		if (good && !t->write) {
			task_release(t);
			return;
		}
	}
	struct bhs b = {0};
	b.opcode = OP_SCSI_RESP;
	b.final = true;
	b.itt = t->itt;
	b.rsp.flags = flags;
	b.rsp.status = sc->status;
	b.rsp.expdatasn = datasn + t->r2tsn;
	b.rsp.residual = residual;
	b.rsp.bidi_residual = bidi_residual;
	uint8_t *seg = NULL;
	uint32_t seglen = 0;
	if (sc->sense_len) {
		seglen = 2u + sc->sense_len;
		seg = xmalloc(seglen);
		seg[0] = 0;
		seg[1] = sc->sense_len;
		memcpy(seg + 2, sc->sense, sc->sense_len);
	}
	conn_send_pdu(c, &b, seg, seglen, NULL, seg);
	task_release(t);
}

static void task_scsi_done_here(void *arg) { task_scsi_done(arg); }

/*
 * TASK REASSIGN: the task leaves its failed connection for `to`, with its buffers (counted for
 * `to` from now on) and a Target Transfer Tag of `to`.
 */
void task_move(struct task *t, struct conn *to)
{
	struct conn *from = t->conn;
	task_unlink(from, t);
	from->ntasks--;
	pdu_conn_forget_direct(&from->pc, t);
	uint64_t bytes = t->buffered;
	task_unaccount(t);
	t->conn = to;
	task_link(to, t);
	to->ntasks++;
	task_account(t, bytes);
	t->ttt = to->next_ttt++;
	if (t->ttt == RESERVED_TAG)
		t->ttt = to->next_ttt++;
}

/*
 * A reassigned write still collecting data: the R2Ts it had went with the failed connection, so
 * whatever has not come is asked for again (RFC 7143 6.2.2: recovery R2Ts), the range lost to a
 * digest error first. Its DataSN and sequences start afresh.
 */
void task_resume_data(struct task *t)
{
	if (t->state != TASK_WAIT_DATA || !t->write)
		return;
	if (t->out_received < t->unsolicited_end)
		t->unsolicited_end = t->out_received;
	t->r2t_offset = t->out_received;
	t->r2t_outstanding = 0;
	t->seq_end = t->out_received;
	t->next_datasn = 0;
	t->last_data_ms = loop_now_ms();
	struct conn *c = t->conn;
	uint64_t r2ts = c->stats.r2ts;
	if (t->hole_len)
		recovery_ask_range(c, t); /* counts itself as sent again */
	if (t->out_received < t->edtl) {
		task_send_r2ts(t);
		c->stats.pdus_resent += c->stats.r2ts - r2ts - (t->hole_len ? 1 : 0);
	} else if (!t->hole_len) {
		task_execute(t);
	}
}
