#include "target/datain.h"

#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "target/conn.h"
#include "target/server.h"
#include "target/shard.h"
#include "target/session.h"
#include "target/task.h"

bool datain_zero_copy_ok(const struct task *t)
{
	const struct conn *c = t->conn;

	return c->srv->cfg->zero_copy_reads && t->read && !t->write && t->edtl >= DATAIN_ZERO_COPY_MIN &&
	       !c->params.data_digest && c->sess && c->sess->params.error_recovery_level == 0;
}

void datain_queue(struct conn *c, struct task *t, struct bhs *b, uint32_t off, uint32_t len)
{
	const struct scsi_cmd *sc = &t->scmd;

	if (!sc->in_ref) {
		conn_send_pdu(c, b, t->in + off, len, t, NULL);
		return;
	}
	if (c->phase == PHASE_CLOSED) {
		task_release(t);
		return;
	}
	if (pdu_conn_tx_pipe_open(&c->pc) < 0) {
		/*
		 * No descriptors for the pipe: this PDU's data is read into the task's buffer after
		 * all (the file is on tmpfs: the read does not wait) and goes the ordinary way.
		 */
		ssize_t r = pread(sc->in_ref->fd, t->in + off, len, (off_t)(sc->in_ref_off + off));
		if (r != (ssize_t)len) {
			conn_close(c, "cannot read the data of a read without a splice pipe");
			task_release(t);
			return;
		}
		conn_send_pdu(c, b, t->in + off, len, t, NULL);
		return;
	}
	/* The store stays open while the task holds it (scsi_cmd.in_ref), so its descriptor does. */
	struct txitem *it = (struct txitem *)pdu_conn_queue_file(&c->pc, b, sc->in_ref->fd, sc->in_ref_off + off, len);
	it->task = t;
	c->stats.zero_copy_bytes += len;
	c->stats.pdus_out++;
	c->stats.bytes_out += it->base.wire;
}

static void datain_run_blocked(void *arg) { shard_run_blocked(arg, true); }

void datain_release(struct task *t)
{
	if (!t->scmd.in_ref)
		return;
	/*
	 * Commands waiting for the store to be quiet (ORDERED ones, WRITE SAME, ...) may go now, but
	 * not from here: this runs while a send queue is being consumed.
	 */
	if (scsi_cmd_in_ref_put(&t->scmd) && t->conn)
		loop_defer(t->conn->shard->loop, datain_run_blocked, t->conn->shard);
}
