/*
 * I/O of RBD images: every io is a librbd asynchronous call. librbd runs it on its own threads
 * and calls rbd_io_completed there, which posts the io to the engine it was submitted through:
 * that engine's loop wakes (once for a burst) and finishes it. No thread of ours waits for the
 * cluster. Which thread touches what: store_rbd_int.h.
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

/* A finished io's budget back to the connection (which wakes the stores waiting for some). */
static void budget_return(struct rbd_store *rs, const struct store_io *io)
{
	unsigned ops;
	uint64_t bytes;

	if (rs->budget_ops == 0)
		return;
	io_budget(rs, io, &ops, &bytes);
	rbd_budget_put(rs->cl, ops, bytes);
}

_Thread_local struct store_engine *rbd_thread_engine;

static void rbd_io_finish_posted(struct store_engine_post *p);
static void drain_queued(struct rbd_store *rs);

void rbd_post_io(struct store_io *io, void (*fn)(struct store_engine_post *p))
{
	io->post.fn = fn;
	store_engine_post(io->eng, &io->post);
}

void rbd_wake_home(struct rbd_store *rs)
{
	uint64_t one = 1;

	if (write(rs->efd, &one, sizeof(one)) < 0) {
		/* Cannot overflow in practice. */
	}
}

void rbd_io_complete(struct store_io *io, int result)
{
	/* Before done, which may close the store. */
	rbd_gate_leave(rbds_of(io->st)->gate, io);
	store_io_complete(io, result);
}

void rbd_uncount(struct rbd_store *rs)
{
	if (atomic_fetch_sub(&rs->in_flight, 1) != 1)
		return;
	if (atomic_load(&rs->excl_on))
		rbd_caw_kick(rs);
	if (atomic_load(&rs->state) == RBD_LOST)
		rbd_reopen_start(rs);
}

void rbd_io_completed(rbd_completion_t c, void *arg)
{
	(void)c;
	rbd_post_io(arg, rbd_io_finish_posted);
}

/*
 * The image offset of byte 0 of the RADOS object holding image byte off. RBD's layout: objects
 * come in sets of stripe_count; a set covers stripe_count * obj_size bytes of the image, dealt
 * out to its objects stripe_unit bytes at a time, round-robin (no striping: one object per
 * set, stripe_unit = obj_size).
 */
static uint64_t object_base(const struct rbd_store *rs, uint64_t off)
{
	uint64_t set_bytes = rs->obj_size * rs->stripe_count;

	return off - off % set_bytes + (off / rs->stripe_unit) % rs->stripe_count * rs->stripe_unit;
}

/*
 * A single-call compare-and-write (within RBD_CAW_UNIT, so within one stripe unit of one
 * object) found a difference; at is what librbd stored in its mismatch offset. Returns the
 * offset i of the first difference in the compared data. Two forms are read:
 *  - base + i, base being the image offset of byte 0 of the io's object: librbd maps i as if
 *    it were an offset into the object. That is what librbd 16.2.15 returns in every case
 *    measured: images with and without exclusive-lock, object-map and fast-diff, the lock
 *    held by this client or taken from another, the object written before or not, ios at an
 *    object's start and inside it. Without striping base is off rounded down to obj_size;
 *    with striping it is the start of the object's first stripe unit, possibly far below off.
 *  - off + i, the image offset of the difference (never returned by 16.2.15 in those cases;
 *    read so that a librbd returning it is reported right).
 * Both can fit only when off is less than len bytes past base: for ios aligned to 512 bytes
 * that means off == base, where both give the same i. For an unaligned io they can differ,
 * and the first form wins, being the one the library measured does return. When neither
 * fits, 0: nothing better is known.
 */
static uint64_t caw_mismatch_offset(const struct rbd_store *rs, const struct store_io *io, uint64_t at)
{
	uint64_t base = object_base(rs, io->off);

	if (at >= base && at - base < io->len)
		return at - base;
	if (at >= io->off && at - io->off < io->len)
		return at - io->off;
	return 0;
}

/* io's engine's thread: its librbd call is over. */
static void io_finish(struct store_io *io)
{
	struct rbd_store *rs = rbds_of(io->st);
	rbd_completion_t c = (rbd_completion_t)(uintptr_t)io->store_priv[PRIV_COMPLETION];
	ssize_t r = rbd_aio_get_return_value(c);

	rbd_thread_engine = io->eng;
	rbd_aio_release(c);
	if (io->store_priv[PRIV_PHASE] == CAW_NONE && rs->budget_ops) {
		budget_return(rs, io);
		/* Here, not only at the home engine's wake-up: that loop may be idle or gone. */
		if (atomic_load(&rs->queue_on))
			drain_queued(rs);
	}
	if (r == -RBD_EBLOCKLISTED) {
		rbd_lost(rs);
		r = -ETIMEDOUT;
	}
	if (io->store_priv[PRIV_PHASE] != CAW_NONE) {
		rbd_caw_step(rs, io, r); /* keeps the count for its next step */
		return;
	}
	free((void *)(uintptr_t)io->store_priv[PRIV_BOUNCE]);
	if (io->op == STORE_IO_COMPARE_WRITE && r == -EILSEQ)
		io->miscompare_off = caw_mismatch_offset(rs, io, io->store_priv[PRIV_MISMATCH]);
	/* Last of the store: the done callback may close it. */
	rbd_uncount(rs);
	rbd_io_complete(io, r < 0 ? (int)r : 0);
}

static void rbd_io_finish_posted(struct store_engine_post *p) { io_finish(rbd_posted_io(p)); }

/* The home engine saw efd readable (its thread): a resize, budget given back, a queue to go on. */
void rbds_ready(void *arg)
{
	struct rbd_store *rs = arg;
	uint64_t v;

	if (read(rs->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	bool nested = rs->in_ready;
	rs->in_ready = true;
	rbd_thread_engine = atomic_load(&rs->eng);
	if (atomic_exchange(&rs->resized, false))
		rbd_apply_resize(rs);
	drain_queued(rs);
	if (atomic_load(&rs->state) == RBD_LOST)
		rbd_reopen_start(rs);
	rs->in_ready = nested;
	if (!nested && rs->close_pending)
		rbd_close_now(rs);
}

int rbd_watch_with(struct rbd_store *rs, struct store_engine *e)
{
	int rc = 0;

	rbd_thread_engine = e;
	if (atomic_load_explicit(&rs->eng, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&rs->lock);
	if (!atomic_load(&rs->eng) && (rc = store_engine_watch(e, rs->efd, rbds_ready, rs)) == 0)
		atomic_store(&rs->eng, e);
	pthread_mutex_unlock(&rs->lock);
	return rc;
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

/* A counted io that never reached librbd (its budget taken): completed with rc. */
static void fail_counted(struct rbd_store *rs, struct store_io *io, int rc)
{
	budget_return(rs, io);
	rbd_uncount(rs);
	rbd_io_complete(io, rc);
}

/*
 * An io larger than the whole budget may fill librados's throttle by itself, and its aio call
 * would wait there for the OSDs: a worker makes that call. Its completion comes back as any
 * other; a call that fails is posted back to the io's engine with PRIV_COMPLETION 0 and the
 * errno in PRIV_MISMATCH. The worker touches the io only until librbd has it.
 */
struct rbd_big_io {
	struct offload_job job;
	struct rbd_store *rs;
	struct store_io *io;
};

static void big_io_failed(struct store_engine_post *p)
{
	struct store_io *io = rbd_posted_io(p);

	fail_counted(rbds_of(io->st), io, -(int)io->store_priv[PRIV_MISMATCH]);
}

static void big_io_work(struct offload_job *j)
{
	struct rbd_big_io *b = (struct rbd_big_io *)j;
	struct store_io *io = b->io;
	rbd_completion_t c = (rbd_completion_t)(uintptr_t)io->store_priv[PRIV_COMPLETION];
	int rc = start_io(b->rs, io, c);

	if (rc >= 0)
		return;
	rbd_aio_release(c);
	io->store_priv[PRIV_COMPLETION] = 0;
	io->store_priv[PRIV_MISMATCH] = (uint64_t)-rc;
	rbd_post_io(io, big_io_failed);
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

/* io is counted and has its budget: librbd gets it now, on this thread or, when big, on a worker. */
static void submit_now(struct rbd_store *rs, struct store_io *io)
{
	rbd_completion_t c;
	int rc;

	rc = rbd_aio_create_completion(io, rbd_io_completed, &c);
	if (rc < 0) {
		fail_counted(rs, io, rc);
		return;
	}
	io->store_priv[PRIV_COMPLETION] = (uint64_t)(uintptr_t)c;
	if (io_is_big(rs, io)) {
		struct rbd_big_io *b = xcalloc(1, sizeof(*b));
		b->rs = rs;
		b->io = io;
		store_rbd_offload(io->eng, &b->job, rs, big_io_work, big_io_done);
		return;
	}
	rc = start_io(rs, io, c);
	if (rc < 0) {
		rbd_aio_release(c);
		fail_counted(rs, io, rc);
	}
}

/* A queued io let go (counted, budget taken) back on its own engine's thread. */
static void queued_go(struct store_engine_post *p)
{
	struct store_io *io = rbd_posted_io(p);
	struct rbd_store *rs = rbds_of(io->st);

	if (atomic_load(&rs->state) != RBD_READY) {
		fail_counted(rs, io, -ETIMEDOUT);
		return;
	}
	submit_now(rs, io);
}

static void queued_timed_out(struct store_engine_post *p) { rbd_io_complete(rbd_posted_io(p), -ETIMEDOUT); }

/*
 * The queued ios, in their order, as far as the budget lets them go; each goes to librbd on
 * the thread of its own engine. Any thread (the home engine's, at a budget wake-up).
 */
static void drain_queued(struct rbd_store *rs)
{
	while (atomic_load(&rs->queue_on)) {
		pthread_mutex_lock(&rs->lock);
		struct store_io *io = rs->queued;
		/* A long compare-and-write runs alone: the queue goes on once it is over. */
		if (!io || atomic_load(&rs->excl_on)) {
			pthread_mutex_unlock(&rs->lock);
			return;
		}
		bool ready = atomic_load(&rs->state) == RBD_READY;
		if (ready && !budget_take(rs, io)) {
			pthread_mutex_unlock(&rs->lock);
			return;
		}
		rs->queued = io->next;
		if (!rs->queued) {
			rs->queued_tail = &rs->queued;
			atomic_store(&rs->queue_on, false);
		}
		io->next = NULL;
		if (ready)
			atomic_fetch_add(&rs->in_flight, 1); /* under lock: a compare-and-write starting sees it */
		pthread_mutex_unlock(&rs->lock);
		/* NOT READY, as in rbds_submit. */
		rbd_post_io(io, ready ? queued_go : queued_timed_out);
	}
}

static void queue_io(struct rbd_store *rs, struct store_io *io)
{
	pthread_mutex_lock(&rs->lock);
	io->next = NULL;
	*rs->queued_tail = io;
	rs->queued_tail = &io->next;
	atomic_store(&rs->queue_on, true);
	pthread_mutex_unlock(&rs->lock);
	/* Budget given back between the failed take and here woke nobody: look again. */
	drain_queued(rs);
}

void rbds_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	struct rbd_store *rs = rbds_of(st);
	int rc;

	io->st = st;
	io->eng = e;
	io->store_priv[PRIV_GATE] = 0;
	if ((rc = rbd_watch_with(rs, e)) < 0) {
		store_io_complete(io, rc);
		return;
	}
	if (st->read_only && op_writes(io->op)) {
		store_io_complete(io, -EROFS);
		return;
	}
	uint64_t size = __atomic_load_n(&st->size, __ATOMIC_ACQUIRE); /* rbd_apply_resize, home engine */
	if (io->op != STORE_IO_FLUSH && (io->off > size || io->len > size - io->off)) {
		store_io_complete(io, -ERANGE);
		return;
	}
	io->store_priv[PRIV_PHASE] = CAW_NONE;
	/* Held while another gateway's long compare-and-write covers it (rbd_gate.h). */
	if (op_writes(io->op) && rbd_gate_enter(rs->gate, io))
		return;
	/* Counted before state and excl_on are looked at (store_rbd_int.h). */
	unsigned before = atomic_fetch_add(&rs->in_flight, 1);
	if (atomic_load(&rs->state) != RBD_READY) {
		/* The LU is becoming ready again: the initiator retries (see enum rbd_state). */
		rbd_uncount(rs);
		rbd_reopen_start(rs);
		rbd_io_complete(io, -ETIMEDOUT);
		return;
	}
	if (atomic_load(&rs->excl_on)) {
		rbd_uncount(rs);
		/* Not under way while held here: it passes the gate again when it goes on. */
		rbd_gate_leave(rs->gate, io);
		if (rbd_caw_hold(rs, io))
			return;
		rbds_submit(st, e, io); /* it was over meanwhile */
		return;
	}
	if (io->op == STORE_IO_FLUSH && before == 0 && !flush_needed(rs)) {
		rbd_uncount(rs);
		store_io_complete(io, 0);
		return;
	}
	if (io->op == STORE_IO_COMPARE_WRITE && !rbd_caw_is_atomic(io)) {
		rbd_uncount(rs);
		rbd_caw_start(rs, io);
		return;
	}
	if (rs->budget_ops && (atomic_load(&rs->queue_on) || !budget_take(rs, io))) {
		rbd_uncount(rs);
		queue_io(rs, io);
		return;
	}
	submit_now(rs, io);
}

/*
 * Waits (bounded by the op timeout) for ios still at librbd, finishing those of this thread's
 * engine here; the other engines' loops finish theirs.
 */
void rbd_drain_in_flight(struct rbd_store *rs)
{
	unsigned limit_ms = (rbd_cluster_op_timeout(rs->cl) ? rbd_cluster_op_timeout(rs->cl) : STORE_RBD_OSD_OP_TIMEOUT) * 1000u + 1000u;
	struct store_engine *e = rbd_thread_engine ? rbd_thread_engine : atomic_load(&rs->eng);
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((atomic_load(&rs->in_flight) || atomic_load(&rs->queue_on)) && e) {
		struct pollfd p = {.fd = store_engine_fd(e), .events = POLLIN};
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (spent >= (long)limit_ms)
			break;
		drain_queued(rs);
		int wait = (int)(limit_ms - (unsigned long)spent);
		if (poll(&p, 1, wait < 100 ? wait : 100) > 0)
			store_engine_reap(e);
	}
	/* Never handed to librbd: nothing of theirs reached the cluster. */
	pthread_mutex_lock(&rs->lock);
	struct store_io *list = rs->queued;
	rs->queued = NULL;
	rs->queued_tail = &rs->queued;
	atomic_store(&rs->queue_on, false);
	pthread_mutex_unlock(&rs->lock);
	while (list) {
		struct store_io *io = list;
		list = io->next;
		io->next = NULL;
		rbd_io_complete(io, -ETIMEDOUT);
	}
}
