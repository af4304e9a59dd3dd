/*
 * A command's store ios (store/store_io.h), one at a time, each continuing the command on the
 * loop thread when it completes. While an io is in flight it holds its store (st->jobs), which
 * is what an ORDERED command or COMPARE AND WRITE waits for, and what keeps a store open after
 * its LU went away; a command that no later command may pass also counts in st->barriers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_int.h"
#include "store/store.h"

void medium_start(struct scsi_req *r, uint64_t lba, bool flush)
{
	struct scsi_cmd *cmd = r->cmd;
	struct scsi_lu *lu = r->lu;

	cmd->defer.t = r->t;
	cmd->defer.ctx = r->ctx;
	cmd->defer.st = lu->st;
	cmd->defer.lba = lba;
	cmd->defer.lun = lu->lun;
	cmd->defer.desc = lu->d_sense;
	cmd->defer.block_size = lu->block_size;
	cmd->defer.flush = flush;
	cmd->defer.active = true;
	/* SAM: nothing after an ORDERED or HEAD OF QUEUE command starts before it ends. */
	if (cmd->task_attr == TASK_ORDERED || cmd->task_attr == TASK_HEAD_OF_QUEUE || cmd->defer.exclusive) {
		lu->st->barriers++;
		cmd->defer.barrier = true;
	}
}

void medium_end(struct scsi_cmd *cmd)
{
	if (cmd->defer.barrier) {
		cmd->defer.st->barriers--;
		cmd->defer.barrier = false;
	}
	free(cmd->defer.buf);
	cmd->defer.buf = NULL;
	cmd->defer.active = false;
	/* Still in its handler otherwise: execute() completes it when the handler returns. */
	if (cmd->defer.async)
		cmd->done(cmd);
}

void medium_error(struct scsi_cmd *cmd, bool write, int err, uint64_t lba)
{
	if (err == -ECANCELED)
		return; /* not run, for an aborted command: its transport ignores the outcome */
	scsi_medium_error(cmd, cmd->defer.desc, cmd->defer.lun, write, err, lba);
}

static void medium_io_done(struct store_io *io)
{
	struct scsi_cmd *cmd = io->priv;
	struct store *st = cmd->defer.st;

	if (cmd->defer.in_submit) {
		/* Before store_io_submit returned: medium_io continues the command itself. */
		cmd->defer.inline_rc = io->result;
		cmd->defer.inline_done = true;
		return;
	}
	cmd->defer.async = true;
	cmd->defer.next(cmd, io->result);
	if (--st->jobs == 0 && st->closing)
		store_close(st);
}

void medium_io(struct scsi_cmd *cmd, enum store_io_op op, uint64_t off, uint64_t len, void *buf, size_t buf_len,
	       medium_next_fn next)
{
	struct store *st = cmd->defer.st;
	struct store_io *io = &cmd->defer.io;

	if (atomic_load(&cmd->defer.cancelled)) {
		/* Aborted, or its connection is gone: nobody waits for the rest. */
		medium_end(cmd);
		return;
	}
	if (st->closing) {
		/* The LU went (and its target may have) while the last io ran: nothing more to do on it. */
		cmd->status = SCSI_CHECK_CONDITION;
		cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), cmd->defer.desc,
							   SK_ILLEGAL_REQUEST, 0x25, 0x00, NULL, NULL);
		medium_end(cmd);
		return;
	}
	cmd->defer.next = next;
	memset(io, 0, sizeof(*io));
	io->op = op;
	io->off = off;
	io->len = len;
	cmd->defer.iov[0].iov_base = buf;
	cmd->defer.iov[0].iov_len = buf_len;
	io->iov = cmd->defer.iov;
	io->iovcnt = buf ? 1 : 0;
	io->done = medium_io_done;
	io->priv = cmd;
	io->cancelled = &cmd->defer.cancelled;
	st->jobs++;
	cmd->defer.in_submit = true;
	cmd->defer.inline_done = false;
	store_io_submit(cmd->defer.ctx->engine, st, io);
	cmd->defer.in_submit = false;
	if (!cmd->defer.inline_done) {
		cmd->defer.waited = true;
		return;
	}
	st->jobs--;
	next(cmd, cmd->defer.inline_rc);
}

static void flushed(struct scsi_cmd *cmd, int rc)
{
	if (rc < 0)
		medium_error(cmd, true, rc, cmd->defer.lba);
	medium_end(cmd);
}

void medium_flush_then_end(struct scsi_cmd *cmd, int rc)
{
	if (rc < 0) {
		medium_error(cmd, true, rc, cmd->defer.lba);
		medium_end(cmd);
		return;
	}
	if (cmd->defer.flush) {
		medium_io(cmd, STORE_IO_FLUSH, 0, 0, NULL, 0, flushed);
		return;
	}
	medium_end(cmd);
}

bool medium_read_by_ref(struct scsi_req *r, uint64_t off, uint32_t len)
{
	struct scsi_cmd *cmd = r->cmd;
	struct store *st = r->lu->st;

	/*
	 * Only files whose reads never wait (tmpfs): the transport splices on the loop thread, where
	 * a page-cache miss would stall every connection. Only SIMPLE commands: nothing is ordered
	 * after them, so the data may leave after the command has ended.
	 */
	if (!cmd->in_ref_ok || atomic_load(&cmd->defer.cancelled) || st->fd < 0 || st->wait != STORE_WAIT_NEVER || st->ops->submit || st->closing ||
	    (cmd->task_attr != TASK_SIMPLE && cmd->task_attr != TASK_UNTAGGED) || off > st->size ||
	    len > st->size - off)
		return false;
	st->jobs++;
	cmd->defer.t = r->t;
	cmd->defer.ctx = r->ctx;
	cmd->in_ref = st;
	cmd->in_ref_off = off;
	cmd->in_len = len;
	return true;
}

bool scsi_cmd_in_ref_put(struct scsi_cmd *cmd)
{
	struct store *st = cmd->in_ref;

	if (!st)
		return false;
	cmd->in_ref = NULL;
	if (--st->jobs)
		return false;
	if (st->closing) {
		store_close(st);
		return false;
	}
	return cmd->defer.ctx && cmd->defer.ctx->blocked;
}
