/*
 * I/O of RBD images: every io is a librbd asynchronous call. librbd runs it on its own threads
 * and, with the image's notification set to the store's eventfd, queues each finished
 * completion and bumps the eventfd: the engine's loop wakes, rbds_ready collects the
 * completions and finishes their ios on that loop. No thread of ours waits for the cluster.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store_rbd.h"
#include "store/store_rbd_int.h"
#include "util/sbuf.h"

/* Completions collected per rbd_poll_io_events call. */
#define RBD_POLL_BATCH 64

/*
 * librbd's write-same and compare-and-write take one flat buffer; an io's iovec is copied into
 * one when it has several parts. Returns the flat data, *bounce the copy to free (or NULL).
 */
const char *rbd_flat_data(const struct store_io *io, size_t want, char **bounce)
{
	size_t have = 0;

	*bounce = NULL;
	for (unsigned i = 0; i < io->iovcnt; i++)
		have += io->iov[i].iov_len;
	if (have < want || want == 0)
		return NULL;
	if (io->iovcnt >= 1 && io->iov[0].iov_len >= want)
		return io->iov[0].iov_base;
	char *b = xmalloc(want);
	size_t at = 0;
	for (unsigned i = 0; i < io->iovcnt && at < want; i++) {
		size_t n = io->iov[i].iov_len < want - at ? io->iov[i].iov_len : want - at;
		memcpy(b + at, io->iov[i].iov_base, n);
		at += n;
	}
	*bounce = b;
	return b;
}

/*
 * What an io may put at the OSDs at once: an operation per object it touches and its bytes
 * (librados's throttle counts the same). A flush is counted as one.
 */
static void io_budget(const struct rbd_store *rs, const struct store_io *io, unsigned *ops, uint64_t *bytes)
{
	uint64_t objs = io->len ? (io->off + io->len - 1) / rs->obj_size - io->off / rs->obj_size + 1 : 1;

	switch (io->op) {
	case STORE_IO_FLUSH:
		objs = 1;
		*bytes = 0;
		break;
	case STORE_IO_UNMAP:
		*bytes = 0;
		break;
	case STORE_IO_COMPARE_WRITE:
		*bytes = 2 * io->len;
		break;
	default:
		*bytes = io->len;
		break;
	}
	*ops = objs > UINT32_MAX ? UINT32_MAX : (unsigned)objs;
}

/* A finished io's budget, given back to the connection at the end of rbds_ready. */
static void budget_return(struct rbd_store *rs, const struct store_io *io)
{
	unsigned ops;
	uint64_t bytes;

	if (rs->budget_ops == 0)
		return;
	io_budget(rs, io, &ops, &bytes);
	rs->put_ops += ops;
	rs->put_bytes += bytes;
}

static void budget_flush(struct rbd_store *rs)
{
	if (rs->put_ops == 0 && rs->put_bytes == 0)
		return;
	rbd_budget_put(rs->cl, rs->put_ops, rs->put_bytes);
	rs->put_ops = 0;
	rs->put_bytes = 0;
}

static void drain_queued(struct rbd_store *rs);

static void finish_completion(struct rbd_store *rs, rbd_completion_t c)
{
	struct store_io *io = rbd_aio_get_arg(c);
	ssize_t r = rbd_aio_get_return_value(c);

	rbd_aio_release(c);
	rs->in_flight--;
	if (io->store_priv[PRIV_PHASE] == CAW_NONE)
		budget_return(rs, io);
	if (r == -RBD_EBLOCKLISTED) {
		rbd_lost(rs);
		r = -ETIMEDOUT;
	}
	if (io->store_priv[PRIV_PHASE] != CAW_NONE) {
		rbd_caw_step(rs, io, r);
		return;
	}
	if (rs->exclusive && rs->in_flight == 0 && rs->exclusive->store_priv[PRIV_PHASE] == CAW_DRAIN)
		rbd_caw_step(rs, rs->exclusive, 0);
	free((void *)(uintptr_t)io->store_priv[PRIV_BOUNCE]);
	if (io->op == STORE_IO_COMPARE_WRITE && r == -EILSEQ) {
		/*
		 * Ceph 16 reports the start of the io's object plus the offset within the compared
		 * data; an image offset (off plus that offset) is taken as well.
		 */
		uint64_t at = io->store_priv[PRIV_MISMATCH];
		uint64_t obj_start = io->off - io->off % rs->obj_size;
		if (at >= io->off && at - io->off < io->len)
			io->miscompare_off = at - io->off;
		else if (at >= obj_start && at - obj_start < io->len)
			io->miscompare_off = at - obj_start;
		else
			io->miscompare_off = 0;
	}
	store_io_complete(io, r < 0 ? (int)r : 0);
}

/* The engine saw efd readable (its thread). */
void rbds_ready(void *arg)
{
	struct rbd_store *rs = arg;
	rbd_completion_t comps[RBD_POLL_BATCH];
	uint64_t v;
	int n;

	/* Drain first: anything finishing after the poll below bumps it again. */
	if (read(rs->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	bool nested = rs->in_ready;
	rs->in_ready = true;
	if (atomic_exchange(&rs->resized, false))
		rbd_apply_resize(rs);
	while ((n = rbd_poll_io_events(rs->im.img, comps, RBD_POLL_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			const struct store_io *io = rbd_aio_get_arg(comps[i]);
			/* Should a later librbd report these here too: their callback owns them. */
			if (io->op == STORE_IO_COMPARE_WRITE && io->store_priv[PRIV_PHASE] == CAW_NONE)
				continue;
			finish_completion(rs, comps[i]);
		}
		if (n < RBD_POLL_BATCH)
			break;
	}
	pthread_mutex_lock(&rs->cb_lock);
	struct store_io *list = rs->cb_done;
	rs->cb_done = NULL;
	pthread_mutex_unlock(&rs->cb_lock);
	while (list) {
		struct store_io *io = list;
		list = io->next;
		if (io->store_priv[PRIV_COMPLETION] == 0) {
			/* A worker could not hand it to librbd (big_io_work). */
			rs->in_flight--;
			budget_return(rs, io);
			store_io_complete(io, -(int)io->store_priv[PRIV_MISMATCH]);
			continue;
		}
		finish_completion(rs, (rbd_completion_t)(uintptr_t)io->store_priv[PRIV_COMPLETION]);
	}
	budget_flush(rs);
	drain_queued(rs);
	if (rs->state == RBD_LOST)
		rbd_reopen_start(rs);
	rs->in_ready = nested;
	if (!nested && rs->close_pending)
		rbd_close_now(rs);
}

int rbd_watch_with(struct rbd_store *rs, struct store_engine *e)
{
	if (rs->eng)
		return rs->eng == e ? 0 : -EXDEV;
	int rc = store_engine_watch(e, rs->efd, rbds_ready, rs);
	if (rc < 0)
		return rc;
	rs->eng = e;
	rs->loop = pthread_self();
	return 0;
}

int store_rbd_attach(struct store *st, struct store_engine *e)
{
	return store_is_rbd(st) ? rbd_watch_with(rbds_of(st), e) : -EINVAL;
}

static bool op_writes(enum store_io_op op) { return op != STORE_IO_READ && op != STORE_IO_FLUSH; }

/* Hands io to librbd; returns 0 once it is librbd's, or the error to complete it with. */
static int start_io(struct rbd_store *rs, struct store_io *io, rbd_completion_t c)
{
	rbd_image_t img = rs->im.img;
	const char *data;
	char *bounce = NULL;
	int rc;

	/* Set before librbd has the io: its completion may be finished before the call returns. */
	io->store_priv[PRIV_BOUNCE] = 0;
	switch (io->op) {
	case STORE_IO_READ:
		return rbd_aio_readv(img, io->iov, (int)io->iovcnt, io->off, c);
	case STORE_IO_WRITE:
		return rbd_aio_writev(img, io->iov, (int)io->iovcnt, io->off, c);
	case STORE_IO_FLUSH:
		return rbd_aio_flush(img, c);
	case STORE_IO_UNMAP:
		return rbd_aio_discard(img, io->off, io->len, c);
	case STORE_IO_WRITE_ZEROES:
		/* The contract keeps the range allocated: zeros are written, not a discard. */
		return rbd_aio_write_zeroes(img, io->off, io->len, c, RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, 0);
	case STORE_IO_WRITE_SAME: {
		size_t plen = 0;
		for (unsigned i = 0; i < io->iovcnt; i++)
			plen += io->iov[i].iov_len;
		if (plen == 0 || io->len % plen)
			return -EINVAL;
		data = rbd_flat_data(io, plen, &bounce);
		io->store_priv[PRIV_BOUNCE] = (uint64_t)(uintptr_t)bounce;
		rc = rbd_aio_writesame(img, io->off, io->len, data, plen, c, 0);
		break;
	}
	case STORE_IO_COMPARE_WRITE:
		/* Longer ones never get here: rbd_caw.c runs them. */
		data = rbd_flat_data(io, 2 * io->len, &bounce);
		if (!data)
			return -EINVAL;
		io->store_priv[PRIV_MISMATCH] = 0;
		io->store_priv[PRIV_BOUNCE] = (uint64_t)(uintptr_t)bounce;
		rc = (int)rbd_aio_compare_and_write(img, io->off, io->len, data, data + io->len, c,
						    &io->store_priv[PRIV_MISMATCH], 0);
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (rc < 0) {
		free(bounce);
		io->store_priv[PRIV_BOUNCE] = 0;
	}
	return rc;
}

/*
 * Whether a flush has anything of this client's to make durable. librbd (Ceph 16) takes the
 * exclusive lock for a flush as for a write: through a gateway that does not hold it, the flush
 * (the last one of an LU at shutdown too) would take the lock from the gateway that does, and the
 * close after it would have to hand it back, which waits for every watcher's acknowledgement, for
 * ever when the cluster stops answering. Without the lock nothing of ours is dirty: every write
 * of this client ran under the lock, and letting the lock go flushed them.
 */
static bool flush_needed(struct rbd_store *rs)
{
	uint64_t features = 0;
	int owner = 0;

	if (rbd_get_features(rs->im.img, &features) < 0 || !(features & RBD_FEATURE_EXCLUSIVE_LOCK))
		return true;
	if (rbd_is_exclusive_lock_owner(rs->im.img, &owner) < 0)
		return true;
	return owner != 0;
}

static bool budget_take(struct rbd_store *rs, const struct store_io *io)
{
	unsigned ops;
	uint64_t bytes;

	if (rs->budget_ops == 0)
		return true;
	io_budget(rs, io, &ops, &bytes);
	return rbd_budget_take(rs->cl, ops, bytes, &rs->waiter);
}

/*
 * An io larger than the whole budget may fill librados's throttle by itself, and its aio call
 * would wait there for the OSDs: a worker makes that call. Its completion comes back on the
 * eventfd as any other; a call that fails comes back through cb_done with PRIV_COMPLETION 0
 * and the errno in PRIV_MISMATCH. The worker touches the io only until librbd has it.
 */
struct rbd_big_io {
	struct offload_job job;
	struct rbd_store *rs;
	struct store_io *io;
};

static void big_io_work(struct offload_job *j)
{
	struct rbd_big_io *b = (struct rbd_big_io *)j;
	struct rbd_store *rs = b->rs;
	struct store_io *io = b->io;
	rbd_completion_t c = (rbd_completion_t)(uintptr_t)io->store_priv[PRIV_COMPLETION];
	uint64_t one = 1;
	int rc = start_io(rs, io, c);

	if (rc >= 0)
		return;
	rbd_aio_release(c);
	io->store_priv[PRIV_COMPLETION] = 0;
	io->store_priv[PRIV_MISMATCH] = (uint64_t)-rc;
	pthread_mutex_lock(&rs->cb_lock);
	io->next = rs->cb_done;
	rs->cb_done = io;
	pthread_mutex_unlock(&rs->cb_lock);
	if (write(rs->efd, &one, sizeof(one)) < 0) {
		/* Cannot overflow in practice. */
	}
}

static void big_io_done(struct offload_job *j) { free(j); }

static bool io_is_big(const struct rbd_store *rs, const struct store_io *io)
{
	unsigned ops;
	uint64_t bytes;

	if (rs->budget_ops == 0)
		return false;
	io_budget(rs, io, &ops, &bytes);
	return ops > rs->budget_ops || bytes > rs->budget_bytes;
}

/* io has its budget: librbd gets it now, on this thread or, when it is big, on a worker. */
static void submit_now(struct rbd_store *rs, struct store_io *io)
{
	struct offload *off = store_engine_offload(rs->eng);
	rbd_completion_t c;
	int rc;

	rc = rbd_aio_create_completion(io, io->op == STORE_IO_COMPARE_WRITE ? rbd_caw_completed : NULL, &c);
	if (rc < 0) {
		budget_return(rs, io);
		budget_flush(rs);
		store_io_complete(io, rc);
		return;
	}
	io->store_priv[PRIV_COMPLETION] = (uint64_t)(uintptr_t)c;
	rs->in_flight++;
	if (off && io_is_big(rs, io)) {
		struct rbd_big_io *b = xcalloc(1, sizeof(*b));
		b->rs = rs;
		b->io = io;
		store_rbd_offload(rs->eng, &b->job, rs, big_io_work, big_io_done);
		return;
	}
	rc = start_io(rs, io, c);
	if (rc < 0) {
		rbd_aio_release(c);
		rs->in_flight--;
		budget_return(rs, io);
		budget_flush(rs);
		store_io_complete(io, rc);
	}
}

/* The queued ios, in their order, as far as the budget lets them go (the engine's thread). */
static void drain_queued(struct rbd_store *rs)
{
	/* A long compare-and-write runs alone: the queue goes on once it is over. */
	while (rs->queued && !rs->exclusive) {
		struct store_io *io = rs->queued;
		bool ready = rs->state == RBD_READY;
		if (ready && !budget_take(rs, io))
			return;
		rs->queued = io->next;
		if (!rs->queued)
			rs->queued_tail = &rs->queued;
		io->next = NULL;
		if (ready)
			submit_now(rs, io);
		else
			store_io_complete(io, -ETIMEDOUT); /* NOT READY, as in rbds_submit */
	}
}

void rbds_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	struct rbd_store *rs = rbds_of(st);
	int rc;

	io->st = st;
	io->eng = e;
	if ((rc = rbd_watch_with(rs, e)) < 0) {
		store_io_complete(io, rc);
		return;
	}
	if (st->read_only && op_writes(io->op)) {
		store_io_complete(io, -EROFS);
		return;
	}
	if (rs->state != RBD_READY) {
		/* The LU is becoming ready again: the initiator retries (see enum rbd_state). */
		rbd_reopen_start(rs);
		store_io_complete(io, -ETIMEDOUT);
		return;
	}
	if (io->op != STORE_IO_FLUSH && (io->off > st->size || io->len > st->size - io->off)) {
		store_io_complete(io, -ERANGE);
		return;
	}
	io->store_priv[PRIV_PHASE] = CAW_NONE;
	if (io->op == STORE_IO_FLUSH && !rs->exclusive && rs->in_flight == 0 && !flush_needed(rs)) {
		store_io_complete(io, 0);
		return;
	}
	if (rs->exclusive) {
		io->next = NULL;
		*rs->held_tail = io;
		rs->held_tail = &io->next;
		return;
	}
	if (io->op == STORE_IO_COMPARE_WRITE && !rbd_caw_is_atomic(io)) {
		rbd_caw_start(rs, io);
		return;
	}
	if (rs->queued || !budget_take(rs, io)) {
		io->next = NULL;
		*rs->queued_tail = io;
		rs->queued_tail = &io->next;
		return;
	}
	submit_now(rs, io);
}

/* Waits (bounded by the op timeout) for ios still at librbd, finishing them on this thread. */
void rbd_drain_in_flight(struct rbd_store *rs)
{
	unsigned limit_ms = (rbd_cluster_op_timeout(rs->cl) ? rbd_cluster_op_timeout(rs->cl) : STORE_RBD_OSD_OP_TIMEOUT) * 1000u + 1000u;
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((rs->in_flight || rs->queued) && rs->eng) {
		struct pollfd p = {.fd = rs->efd, .events = POLLIN};
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (spent >= (long)limit_ms)
			break;
		if (poll(&p, 1, (int)(limit_ms - (unsigned long)spent)) > 0)
			rbds_ready(rs);
	}
	/* Never handed to librbd: nothing of theirs reached the cluster. */
	while (rs->queued) {
		struct store_io *io = rs->queued;
		rs->queued = io->next;
		io->next = NULL;
		store_io_complete(io, -ETIMEDOUT);
	}
	rs->queued_tail = &rs->queued;
}
