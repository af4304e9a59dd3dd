/*
 * COMPARE AND WRITE on RBD images. One within librbd's atomic unit (RBD_CAW_UNIT) is a single
 * librbd call (rbd_io.c's start_io); a longer one is a read, a comparison and a write here,
 * with every other io of the store, whatever engine it comes through, held back meanwhile so
 * that nothing of this gateway overlaps it (the threading rule: store_rbd_int.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/store_rbd_int.h"

bool rbd_caw_is_atomic(const struct store_io *io)
{
	return io->len && io->off / RBD_CAW_UNIT == (io->off + io->len - 1) / RBD_CAW_UNIT;
}

bool rbd_caw_hold(struct rbd_store *rs, struct store_io *io)
{
	bool held = false;

	pthread_mutex_lock(&rs->lock);
	if (rs->exclusive) {
		io->next = NULL;
		*rs->held_tail = io;
		rs->held_tail = &io->next;
		held = true;
	}
	pthread_mutex_unlock(&rs->lock);
	return held;
}

/* A held io goes through rbds_submit again, on its own engine's thread. */
static void held_resubmit(struct store_engine_post *p)
{
	struct store_io *io = rbd_posted_io(p);

	rbds_submit(io->st, io->eng, io);
}

/*
 * The exclusive compare-and-write is over: the held ios go on (each posted to its engine, in
 * their order), then io completes, last, as its done callback may close the store.
 */
static void caw_finish(struct rbd_store *rs, struct store_io *io, int result, bool counted)
{
	free((void *)(uintptr_t)io->store_priv[PRIV_BOUNCE]);
	io->store_priv[PRIV_BOUNCE] = 0;
	io->store_priv[PRIV_PHASE] = CAW_NONE;
	pthread_mutex_lock(&rs->lock);
	struct store_io *list = rs->held;
	rs->held = NULL;
	rs->held_tail = &rs->held;
	rs->exclusive = NULL;
	rs->excl_draining = false;
	atomic_store(&rs->excl_on, false);
	pthread_mutex_unlock(&rs->lock);
	/* ios waiting for the in-flight budget go on at rbds_ready, which this wakes. */
	if (atomic_load(&rs->queue_on))
		rbd_wake_home(rs);
	if (counted)
		rbd_uncount(rs);
	while (list) {
		struct store_io *h = list;
		list = h->next;
		h->next = NULL;
		rbd_post_io(h, held_resubmit);
	}
	store_io_complete(io, result);
}

/* The drain is over: the exclusive compare-and-write starts, on its engine's thread. */
static void caw_drained(struct store_engine_post *p)
{
	struct store_io *io = rbd_posted_io(p);

	rbd_caw_step(rbds_of(io->st), io, 0);
}

void rbd_caw_kick(struct rbd_store *rs)
{
	pthread_mutex_lock(&rs->lock);
	struct store_io *io = rs->excl_draining ? rs->exclusive : NULL;
	rs->excl_draining = false;
	pthread_mutex_unlock(&rs->lock);
	if (io)
		rbd_post_io(io, caw_drained);
}

/* A long compare-and-write takes the store: it starts once the ios before it have finished. */
void rbd_caw_start(struct rbd_store *rs, struct store_io *io)
{
	io->store_priv[PRIV_PHASE] = CAW_DRAIN;
	io->store_priv[PRIV_BOUNCE] = 0;
	pthread_mutex_lock(&rs->lock);
	if (rs->exclusive) {
		io->next = NULL;
		*rs->held_tail = io;
		rs->held_tail = &io->next;
		pthread_mutex_unlock(&rs->lock);
		return;
	}
	rs->exclusive = io;
	rs->excl_draining = true;
	/* Set before in_flight is looked at (store_rbd_int.h). */
	atomic_store(&rs->excl_on, true);
	pthread_mutex_unlock(&rs->lock);
	if (atomic_load(&rs->in_flight) == 0)
		rbd_caw_kick(rs);
}

/* Counts the next librbd call of io; false (io finished) when the image is not READY. */
static bool caw_count(struct rbd_store *rs, struct store_io *io, bool counted)
{
	if (!counted)
		atomic_fetch_add(&rs->in_flight, 1);
	if (atomic_load(&rs->state) == RBD_READY)
		return true;
	caw_finish(rs, io, -ETIMEDOUT, true);
	return false;
}

/*
 * One step of a long compare-and-write; r is the result of the step before. Every step but
 * the first holds one count in in_flight (the image cannot be reopened under it); the
 * count goes at caw_finish.
 */
void rbd_caw_step(struct rbd_store *rs, struct store_io *io, ssize_t r)
{
	bool counted = io->store_priv[PRIV_PHASE] != CAW_DRAIN;
	char *flat_bounce = NULL;
	rbd_completion_t c;
	int rc;

	if (r < 0) {
		caw_finish(rs, io, (int)r, counted);
		return;
	}
	switch ((enum caw_phase)io->store_priv[PRIV_PHASE]) {
	case CAW_DRAIN: {
		if (!caw_count(rs, io, false))
			return;
		char *cur = malloc(io->len);
		if (!cur) {
			caw_finish(rs, io, -ENOMEM, true);
			return;
		}
		io->store_priv[PRIV_BOUNCE] = (uint64_t)(uintptr_t)cur;
		io->store_priv[PRIV_PHASE] = CAW_READ;
		if ((rc = rbd_aio_create_completion(io, rbd_io_completed, &c)) < 0) {
			caw_finish(rs, io, rc, true);
			return;
		}
		io->store_priv[PRIV_COMPLETION] = (uint64_t)(uintptr_t)c;
		if ((rc = rbd_aio_read(rs->im.img, io->off, io->len, cur, c)) < 0) {
			rbd_aio_release(c);
			caw_finish(rs, io, rc, true);
		}
		return;
	}
	case CAW_READ: {
		const char *cur = (const char *)(uintptr_t)io->store_priv[PRIV_BOUNCE];
		const char *data = rbd_flat_data(io, 2 * io->len, &flat_bounce);
		if (!data) {
			caw_finish(rs, io, -EINVAL, true);
			return;
		}
		for (uint64_t i = 0; i < io->len; i++) {
			if (cur[i] != data[i]) {
				io->miscompare_off = i;
				free(flat_bounce);
				caw_finish(rs, io, -EILSEQ, true);
				return;
			}
		}
		/* The medium's copy is not needed any more; the write's data may be a copy. */
		free((void *)(uintptr_t)io->store_priv[PRIV_BOUNCE]);
		io->store_priv[PRIV_BOUNCE] = (uint64_t)(uintptr_t)flat_bounce;
		if (!caw_count(rs, io, true))
			return;
		io->store_priv[PRIV_PHASE] = CAW_WRITE;
		if ((rc = rbd_aio_create_completion(io, rbd_io_completed, &c)) < 0) {
			caw_finish(rs, io, rc, true);
			return;
		}
		io->store_priv[PRIV_COMPLETION] = (uint64_t)(uintptr_t)c;
		if ((rc = rbd_aio_write(rs->im.img, io->off, io->len, data + io->len, c)) < 0) {
			rbd_aio_release(c);
			caw_finish(rs, io, rc, true);
		}
		return;
	}
	case CAW_WRITE:
		caw_finish(rs, io, 0, true);
		return;
	case CAW_NONE:
		break;
	}
}
