/*
 * Long medium operations: VERIFY, WRITE SAME, UNMAP, SANITIZE and EXTENDED COPY can each ask for
 * gigabytes of work in a few CDB bytes. Run in one go they would hold the event loop, and every
 * session on it, for minutes. Here they run as chains of bounded steps on the offload workers:
 * between two steps the loop thread only reaps the finished one and decides on the next, so it
 * is never held for more than that, and other LUs and sessions are served meanwhile.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scsi/scsi_int.h"
#include "util/sbuf.h"

void longop_hold(struct store *st) { st->jobs++; }

void longop_release(struct store *st)
{
	if (--st->jobs == 0 && st->closing)
		store_close(st); /* its LU went while the operation used it */
}

void *longop_new(struct scsi_req *r, size_t size)
{
	struct longop *op = xcalloc(1, size);

	op->t = r->t;
	op->ctx = r->ctx;
	op->cmd = r->cmd;
	op->lu = r->lu;
	op->st = r->lu->st;
	op->offloaded = r->ctx->offload != NULL;
	/* Without workers the target's second scratch buffer is free for the whole command. */
	op->buf = op->offloaded ? xmalloc(LONGOP_BUF) : r->ctx->scratch2;
	longop_hold(op->st);
	if (op->offloaded) {
		r->cmd->defer.active = true;
		r->cmd->defer.waited = true;
		r->cmd->defer.desc = r->lu->d_sense;
		r->cmd->defer.lun = r->lu->lun;
	}
	return op;
}

void longop_req(struct longop *op, struct scsi_req *r)
{
	memset(r, 0, sizeof(*r));
	r->t = op->t;
	r->ctx = op->ctx;
	r->cmd = op->cmd;
	r->cdb = op->cmd->cdb;
	r->lu = op->lu;
}

static void op_free(struct longop *op)
{
	if (op->offloaded)
		free(op->buf);
	free(op);
}

void longop_end(struct longop *op)
{
	struct scsi_cmd *cmd = op->cmd;

	if (op->cleanup)
		op->cleanup(op);
	longop_release(op->st);
	cmd->defer.active = false;
	if (!op->offloaded || !op->submitted) {
		/* Still in the handler: its caller completes the command; the chain frees the operation. */
		op->ended = true;
		if (!op->running)
			op_free(op);
		return;
	}
	op_free(op);
	cmd->done(cmd);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool longop_step_more(const struct longop *op)
{
	/* Inline there is nobody to hand the thread back to between steps: go on. */
	if (!op->offloaded)
		return true;
	return !atomic_load(&op->cmd->defer.cancelled) && now_ns() - op->step_start_ns < LONGOP_STEP_MS * 1000000ull;
}

static void op_work(struct offload_job *j)
{
	struct longop *op = (struct longop *)j;

	op->step_start_ns = now_ns();
	op->rc = op->step(op);
}

static void op_done(struct offload_job *j)
{
	struct longop *op = (struct longop *)j;
	struct scsi_cmd *cmd = op->cmd;

	if (op->st->closing) {
		/* The LU is gone (and its state with it): nothing left to do or to tell it. */
		cmd->status = SCSI_CHECK_CONDITION;
		cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), cmd->defer.desc,
							   SK_ILLEGAL_REQUEST, 0x25, 0x00, NULL, NULL);
		longop_end(op);
		return;
	}
	op->next(op, atomic_load(&cmd->defer.cancelled) ? -ECANCELED : op->rc);
}

void longop_then(struct longop *op, longop_step_fn step, longop_next_fn next)
{
	op->step = step;
	op->next = next;
	if (op->offloaded) {
		op->job.work = op_work;
		op->job.done = op_done;
		op->job.key = op; /* one step at a time, in order */
		op->submitted = true;
		offload_submit(op->ctx->offload, &op->job);
		return;
	}
	/* Inline: the first call runs the chain; the calls made from within it queue the next step. */
	op->queued = true;
	if (op->running)
		return;
	op->running = true;
	while (op->queued && !op->ended) {
		longop_step_fn s = op->step;
		longop_next_fn n = op->next;
		op->queued = false;
		n(op, s(op));
	}
	op->running = false;
	if (op->ended)
		op_free(op);
}

int longop_flush_step(struct longop *op) { return store_flush(op->st); }
