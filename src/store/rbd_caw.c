/*
 * COMPARE AND WRITE on RBD images. One within librbd's atomic unit (RBD_CAW_UNIT) is a single
 * librbd call (rbd_io.c's start_io); a longer one is a read, a comparison and a write here,
 * with every other io of the store, whatever engine it comes through, held back meanwhile so
 * that nothing of this gateway overlaps it (the threading rule: store_rbd_int.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "store/store_rbd.h"
#include "store/store_rbd_int.h"
#include "util/log.h"
#include "util/sbuf.h"

/* The test hook's delay between the comparison and the write, ms (store_rbd_int.h). */
#define CAW_TEST_DELAY_MAX_MS 60000u
static unsigned caw_test_delay_ms;
static pthread_once_t caw_test_once = PTHREAD_ONCE_INIT;

static void caw_test_hook_read(void)
{
	const char *v = getenv("ISTHMUS_TEST_CAW_WRITE_DELAY_MS");
	unsigned long ms = v ? strtoul(v, NULL, 10) : 0;

	caw_test_delay_ms = ms < CAW_TEST_DELAY_MAX_MS ? (unsigned)ms : CAW_TEST_DELAY_MAX_MS;
	if (caw_test_delay_ms)
		log_warn("test hook ISTHMUS_TEST_CAW_WRITE_DELAY_MS: every COMPARE AND WRITE longer than %u bytes "
			 "on RBD waits %u ms between its comparison and its write", RBD_CAW_UNIT, caw_test_delay_ms);
}

void rbd_caw_test_hook_init(void) { pthread_once(&caw_test_once, caw_test_hook_read); }

bool store_rbd_caw_atomic(uint64_t off, uint64_t len)
{
	return len && off / RBD_CAW_UNIT == (off + len - 1) / RBD_CAW_UNIT;
}

bool rbd_caw_is_atomic(const struct store_io *io) { return store_rbd_caw_atomic(io->off, io->len); }

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
	rbd_io_complete(io, result);
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
		/* Not under way while held: it passes the gate again when it goes on. */
		rbd_gate_leave(rs->gate, io);
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

/* The write of a long compare-and-write that compared equal (data: what to write, kept with io). */
static void caw_write(struct rbd_store *rs, struct store_io *io, const char *data)
{
	rbd_completion_t c;
	int rc;

	if ((rc = rbd_aio_create_completion(io, rbd_io_completed, &c)) < 0) {
		caw_finish(rs, io, rc, true);
		return;
	}
	io->store_priv[PRIV_COMPLETION] = (uint64_t)(uintptr_t)c;
	if ((rc = rbd_aio_write(rs->im.img, io->off, io->len, data, c)) < 0) {
		rbd_aio_release(c);
		caw_finish(rs, io, rc, true);
	}
}

/* The test hook: the write after caw_test_delay_ms, waited for on a worker, made on io's engine. */
struct caw_delay {
	struct offload_job job;
	struct store_io *io;
	const char *data;
};

static void caw_delay_work(struct offload_job *j)
{
	(void)j;
	struct timespec t = {.tv_sec = caw_test_delay_ms / 1000u, .tv_nsec = (long)(caw_test_delay_ms % 1000u) * 1000000L};
	nanosleep(&t, NULL);
}

static void caw_delay_done(struct offload_job *j)
{
	struct caw_delay *d = (struct caw_delay *)j;

	caw_write(rbds_of(d->io->st), d->io, d->data);
	free(d);
}

static void caw_write_later(struct store_io *io, const char *data)
{
	struct caw_delay *d = xcalloc(1, sizeof(*d));

	d->io = io;
	d->data = data;
	store_rbd_offload(io->eng, &d->job, d, caw_delay_work, caw_delay_done);
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
		if (caw_test_delay_ms)
			caw_write_later(io, data + io->len);
		else
			caw_write(rs, io, data + io->len);
		return;
	}
	case CAW_WRITE:
		caw_finish(rs, io, 0, true);
		return;
	case CAW_NONE:
		break;
	}
}
