/*
 * COMPARE AND WRITE on RBD images. One within librbd's atomic unit (RBD_CAW_UNIT) is a single
 * librbd call (rbd_io.c's start_io); a longer one is a read, a comparison and a write here,
 * with every other io of the store held back meanwhile so that nothing of this gateway overlaps it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/store_rbd_int.h"

/* librbd's thread: a compare-and-write finished (see cb_done). */
void rbd_caw_completed(rbd_completion_t c, void *arg)
{
	struct store_io *io = arg;
	struct rbd_store *rs = (struct rbd_store *)io->st;
	uint64_t one = 1;

	(void)c;
	pthread_mutex_lock(&rs->cb_lock);
	io->next = rs->cb_done;
	rs->cb_done = io;
	pthread_mutex_unlock(&rs->cb_lock);
	if (write(rs->efd, &one, sizeof(one)) < 0) {
		/* Cannot overflow in practice. */
	}
}

bool rbd_caw_is_atomic(const struct store_io *io)
{
	return io->len && io->off / RBD_CAW_UNIT == (io->off + io->len - 1) / RBD_CAW_UNIT;
}

/* The exclusive compare-and-write is over: the held ios go on, in their order. */
static void release_held(struct rbd_store *rs)
{
	struct store_io *list = rs->held;

	rs->exclusive = NULL;
	rs->held = NULL;
	rs->held_tail = &rs->held;
	while (list) {
		struct store_io *io = list;
		list = io->next;
		io->next = NULL;
		if (rs->exclusive) {
			/* Another long compare-and-write took over: the rest wait again. */
			*rs->held_tail = io;
			rs->held_tail = &io->next;
			continue;
		}
		rbds_submit(&rs->st, rs->eng, io);
	}
}

static void caw_finish(struct rbd_store *rs, struct store_io *io, int result)
{
	free((void *)(uintptr_t)io->store_priv[PRIV_BOUNCE]);
	io->store_priv[PRIV_BOUNCE] = 0;
	io->store_priv[PRIV_PHASE] = CAW_NONE;
	store_io_complete(io, result);
	release_held(rs);
	if (rs->queued) {
		/* ios waiting for the in-flight budget go on at rbds_ready, which this wakes. */
		uint64_t one = 1;
		if (write(rs->efd, &one, sizeof(one)) < 0) {
			/* Cannot overflow in practice. */
		}
	}
}

/* A long compare-and-write takes the store: it starts once the ios before it have finished. */
void rbd_caw_start(struct rbd_store *rs, struct store_io *io)
{
	rs->exclusive = io;
	io->store_priv[PRIV_PHASE] = CAW_DRAIN;
	io->store_priv[PRIV_BOUNCE] = 0;
	if (rs->in_flight == 0)
		rbd_caw_step(rs, io, 0);
}

/* One step of a long compare-and-write; r is the result of the step before. */
void rbd_caw_step(struct rbd_store *rs, struct store_io *io, ssize_t r)
{
	char *flat_bounce = NULL;
	rbd_completion_t c;
	int rc;

	if (r < 0) {
		caw_finish(rs, io, (int)r);
		return;
	}
	switch ((enum caw_phase)io->store_priv[PRIV_PHASE]) {
	case CAW_DRAIN: {
		char *cur = malloc(io->len);
		if (!cur) {
			caw_finish(rs, io, -ENOMEM);
			return;
		}
		io->store_priv[PRIV_BOUNCE] = (uint64_t)(uintptr_t)cur;
		io->store_priv[PRIV_PHASE] = CAW_READ;
		if ((rc = rbd_aio_create_completion(io, NULL, &c)) < 0 ||
		    ((rc = rbd_aio_read(rs->im.img, io->off, io->len, cur, c)) < 0 && (rbd_aio_release(c), 1))) {
			caw_finish(rs, io, rc);
			return;
		}
		rs->in_flight++;
		return;
	}
	case CAW_READ: {
		const char *cur = (const char *)(uintptr_t)io->store_priv[PRIV_BOUNCE];
		const char *data = rbd_flat_data(io, 2 * io->len, &flat_bounce);
		if (!data) {
			caw_finish(rs, io, -EINVAL);
			return;
		}
		for (uint64_t i = 0; i < io->len; i++) {
			if (cur[i] != data[i]) {
				io->miscompare_off = i;
				free(flat_bounce);
				caw_finish(rs, io, -EILSEQ);
				return;
			}
		}
		/* The medium's copy is not needed any more; the write's data may be a copy. */
		free((void *)(uintptr_t)io->store_priv[PRIV_BOUNCE]);
		io->store_priv[PRIV_BOUNCE] = (uint64_t)(uintptr_t)flat_bounce;
		io->store_priv[PRIV_PHASE] = CAW_WRITE;
		if ((rc = rbd_aio_create_completion(io, NULL, &c)) < 0 ||
		    ((rc = rbd_aio_write(rs->im.img, io->off, io->len, data + io->len, c)) < 0 && (rbd_aio_release(c), 1))) {
			caw_finish(rs, io, rc);
			return;
		}
		rs->in_flight++;
		return;
	}
	case CAW_WRITE:
		caw_finish(rs, io, 0);
		return;
	case CAW_NONE:
		break;
	}
}
