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

static void finish_completion(struct rbd_store *rs, rbd_completion_t c)
{
	struct store_io *io = rbd_aio_get_arg(c);
	ssize_t r = rbd_aio_get_return_value(c);

	rbd_aio_release(c);
	rs->in_flight--;
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
		finish_completion(rs, (rbd_completion_t)(uintptr_t)io->store_priv[PRIV_COMPLETION]);
	}
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
		rc = rbd_aio_writesame(img, io->off, io->len, data, plen, c, 0);
		break;
	}
	case STORE_IO_COMPARE_WRITE:
		/* Longer ones never get here: rbd_caw.c runs them. */
		data = rbd_flat_data(io, 2 * io->len, &bounce);
		if (!data)
			return -EINVAL;
		io->store_priv[PRIV_MISMATCH] = 0;
		rc = (int)rbd_aio_compare_and_write(img, io->off, io->len, data, data + io->len, c,
						    &io->store_priv[PRIV_MISMATCH], 0);
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (rc < 0)
		free(bounce);
	else
		io->store_priv[PRIV_BOUNCE] = (uint64_t)(uintptr_t)bounce;
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

void rbds_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	struct rbd_store *rs = rbds_of(st);
	rbd_completion_t c;
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
	rc = rbd_aio_create_completion(io, io->op == STORE_IO_COMPARE_WRITE ? rbd_caw_completed : NULL, &c);
	if (rc < 0) {
		store_io_complete(io, rc);
		return;
	}
	io->store_priv[PRIV_COMPLETION] = (uint64_t)(uintptr_t)c;
	rc = start_io(rs, io, c);
	if (rc < 0) {
		rbd_aio_release(c);
		store_io_complete(io, rc);
		return;
	}
	rs->in_flight++;
}

/* Waits (bounded by the op timeout) for ios still at librbd, finishing them on this thread. */
void rbd_drain_in_flight(struct rbd_store *rs)
{
	unsigned limit_ms = (rbd_cluster_op_timeout(rs->cl) ? rbd_cluster_op_timeout(rs->cl) : STORE_RBD_OSD_OP_TIMEOUT) * 1000u + 1000u;
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (rs->in_flight && rs->eng) {
		struct pollfd p = {.fd = rs->efd, .events = POLLIN};
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (spent >= (long)limit_ms)
			break;
		if (poll(&p, 1, (int)(limit_ms - (unsigned long)spent)) > 0)
			rbds_ready(rs);
	}
}
