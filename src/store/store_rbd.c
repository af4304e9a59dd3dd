/*
 * RBD images as stores (see store_rbd.h). librbd runs every io on its own threads and, with
 * the image's notification set to our eventfd, queues each finished completion and bumps the
 * eventfd: the engine's loop wakes, rbds_ready collects the completions and finishes their ios
 * on that loop. No thread of ours waits for the cluster.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <rbd/librbd.h>

#include "store/offload.h"
#include "store/store.h"
#include "store/store_io.h"
#include "store/store_rbd.h"
#include "store/store_rbd_cluster.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Completions collected per rbd_poll_io_events call. */
#define RBD_POLL_BATCH 64
/*
 * Bytes of the image one allocation query looks at: rbd_diff_iterate2 asks the OSD about every
 * object in the range, so a query on a large image would hold a worker for long. The caller
 * (GET LBA STATUS) asks again from where the answer ended.
 */
#define RBD_EXTENT_WINDOW (64ull << 20)
/*
 * What librados answers, for good, once the cluster has blocklisted the client instance
 * (`ceph osd blocklist add`, or a lock broken by another gateway): only a new instance
 * gets through again.
 */
#define RBD_EBLOCKLISTED ESHUTDOWN
/* Between two attempts to reopen an image whose client was blocklisted, while they fail. */
#define RBD_REOPEN_RETRY_MS 1000

/*
 * READY: ios go to librbd. LOST: the client was blocklisted; ios fail with -ETIMEDOUT (NOT
 * READY, becoming ready) and, once none is left at librbd, a worker reopens the image on a
 * new client instance (REOPENING) and the store is READY again.
 */
enum rbd_state { RBD_READY, RBD_LOST, RBD_REOPENING };

struct rbd_reopen {
	struct offload_job job;
	struct rbd_store *rs;
	/* What the store had (closed by the worker) and what the worker opened. */
	struct rbd_conn *old_conn, *conn;
	rados_ioctx_t old_ioctx, ioctx;
	rbd_image_t old_img, img;
	bool old_watched, watched;
	uint64_t old_handle, handle, size;
	char *err;
};

struct rbd_store {
	struct store st;              /* first: the store layer hands us &st */
	struct rbd_cluster *cl;
	struct rbd_conn *conn;        /* the client instance ioctx was made on */
	rados_ioctx_t ioctx;
	rbd_image_t img;
	/* What reopening needs (see enum rbd_state). */
	char *pool, *ns, *image;
	enum rbd_state state;
	uint64_t retry_ms;            /* LOST: no reopen before this (monotonic ms) */
	struct rbd_reopen *reopen;    /* REOPENING: the worker's job */
	bool closed;                  /* closed while REOPENING: the job's end frees the store */
	/*
	 * An io's done callback may close the store (the last flush at shutdown): rbds_ready then
	 * closes it when it has finished with it.
	 */
	bool in_ready, close_pending;
	_Atomic(rbd_image_t) watch_img; /* the image header_updated asks (librbd's watcher thread) */
	int efd;                      /* the image's completion notification; also bumped on a resize */
	struct store_engine *eng;     /* the engine watching efd; NULL until the first io or attach */
	pthread_t loop;               /* the thread that watches it (set with eng) */
	unsigned in_flight;           /* ios handed to librbd, not finished yet (engine thread) */
	/*
	 * A compare-and-write longer than librbd's atomic unit runs alone: ios submitted meanwhile
	 * wait in held (FIFO) until it has written or miscompared.
	 */
	uint64_t obj_size;            /* bytes of one RADOS object of the image */
	struct store_io *exclusive;
	struct store_io *held, **held_tail;
	bool update_watched;
	uint64_t update_handle;
	/* Written by librbd's watcher thread, read on the engine's thread. */
	atomic_bool resized;
	/*
	 * librbd (Ceph 16) does not report compare-and-write completions on the notification
	 * descriptor: their callback (a librbd thread) queues them here and bumps efd.
	 */
	pthread_mutex_t cb_lock;
	struct store_io *cb_done;
	_Atomic uint64_t new_size;
	void (*on_resize)(struct store *st, void *arg);
	void *on_resize_arg;
	/* An image release that did not finish in time still uses cl: the store is kept, not freed. */
	bool release_abandoned;
	struct rbd_store *abandoned_next;
};

/* store_io.store_priv slots. */
enum { PRIV_COMPLETION, PRIV_BOUNCE, PRIV_MISMATCH, PRIV_PHASE };

/*
 * librbd (Ceph 16) compares and writes atomically, in one OSD operation, only within one
 * 512-byte sector; a longer compare-and-write is a read, a comparison and a write that no
 * other io of this store overlaps in time.
 */
#define RBD_CAW_UNIT 512u

enum caw_phase { CAW_NONE, CAW_DRAIN, CAW_READ, CAW_WRITE };

static const struct store_ops rbds_ops;

static struct rbd_store *rbds_of(struct store *st) { return (struct rbd_store *)st; }

bool store_is_rbd(const struct store *st) { return st && st->ops == &rbds_ops; }

/*
 * librbd's write-same and compare-and-write take one flat buffer; an io's iovec is copied into
 * one when it has several parts. Returns the flat data, *bounce the copy to free (or NULL).
 */
static const char *flat_data(const struct store_io *io, size_t want, char **bounce)
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

/* A finished librbd completion back to its io's result. */
static void caw_step(struct rbd_store *rs, struct store_io *io, ssize_t r);

static void rbd_lost(struct rbd_store *rs);

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
		caw_step(rs, io, r);
		return;
	}
	if (rs->exclusive && rs->in_flight == 0 && rs->exclusive->store_priv[PRIV_PHASE] == CAW_DRAIN)
		caw_step(rs, rs->exclusive, 0);
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

static void apply_resize(struct rbd_store *rs)
{
	uint64_t size = atomic_load(&rs->new_size);

	if (size == rs->st.size)
		return;
	rs->st.size = size;
	if (rs->on_resize)
		rs->on_resize(&rs->st, rs->on_resize_arg);
}

static void reopen_start(struct rbd_store *rs);
static void close_now(struct rbd_store *rs);

/* The engine saw efd readable (its thread). */
static void rbds_ready(void *arg)
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
		apply_resize(rs);
	while ((n = rbd_poll_io_events(rs->img, comps, RBD_POLL_BATCH)) > 0) {
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
		reopen_start(rs);
	rs->in_ready = nested;
	if (!nested && rs->close_pending)
		close_now(rs);
}

static int watch_with(struct rbd_store *rs, struct store_engine *e)
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
	return store_is_rbd(st) ? watch_with(rbds_of(st), e) : -EINVAL;
}

void store_rbd_on_resize(struct store *st, void (*cb)(struct store *st, void *arg), void *arg)
{
	if (!store_is_rbd(st))
		return;
	rbds_of(st)->on_resize = cb;
	rbds_of(st)->on_resize_arg = arg;
}

static bool op_writes(enum store_io_op op) { return op != STORE_IO_READ && op != STORE_IO_FLUSH; }

/* Hands io to librbd; returns 0 once it is librbd's, or the error to complete it with. */
static int start_io(struct rbd_store *rs, struct store_io *io, rbd_completion_t c)
{
	rbd_image_t img = rs->img;
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
		data = flat_data(io, plen, &bounce);
		rc = rbd_aio_writesame(img, io->off, io->len, data, plen, c, 0);
		break;
	}
	case STORE_IO_COMPARE_WRITE:
		/* Longer ones never get here: caw_step runs them. */
		data = flat_data(io, 2 * io->len, &bounce);
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

/* librbd's thread: a compare-and-write finished (see cb_done). */
static void caw_completed(rbd_completion_t c, void *arg)
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

static bool caw_is_atomic(const struct store_io *io)
{
	return io->len && io->off / RBD_CAW_UNIT == (io->off + io->len - 1) / RBD_CAW_UNIT;
}

static void rbds_submit(struct store *st, struct store_engine *e, struct store_io *io);

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
}

/* One step of a long compare-and-write; r is the result of the step before. */
static void caw_step(struct rbd_store *rs, struct store_io *io, ssize_t r)
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
		    ((rc = rbd_aio_read(rs->img, io->off, io->len, cur, c)) < 0 && (rbd_aio_release(c), 1))) {
			caw_finish(rs, io, rc);
			return;
		}
		rs->in_flight++;
		return;
	}
	case CAW_READ: {
		const char *cur = (const char *)(uintptr_t)io->store_priv[PRIV_BOUNCE];
		const char *data = flat_data(io, 2 * io->len, &flat_bounce);
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
		    ((rc = rbd_aio_write(rs->img, io->off, io->len, data + io->len, c)) < 0 && (rbd_aio_release(c), 1))) {
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

	if (rbd_get_features(rs->img, &features) < 0 || !(features & RBD_FEATURE_EXCLUSIVE_LOCK))
		return true;
	if (rbd_is_exclusive_lock_owner(rs->img, &owner) < 0)
		return true;
	return owner != 0;
}

static void rbds_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	struct rbd_store *rs = rbds_of(st);
	rbd_completion_t c;
	int rc;

	io->st = st;
	io->eng = e;
	if ((rc = watch_with(rs, e)) < 0) {
		store_io_complete(io, rc);
		return;
	}
	if (st->read_only && op_writes(io->op)) {
		store_io_complete(io, -EROFS);
		return;
	}
	if (rs->state != RBD_READY) {
		/* The LU is becoming ready again: the initiator retries (see enum rbd_state). */
		reopen_start(rs);
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
	if (io->op == STORE_IO_COMPARE_WRITE && !caw_is_atomic(io)) {
		rs->exclusive = io;
		io->store_priv[PRIV_PHASE] = CAW_DRAIN;
		io->store_priv[PRIV_BOUNCE] = 0;
		if (rs->in_flight == 0)
			caw_step(rs, io, 0);
		return;
	}
	rc = rbd_aio_create_completion(io, io->op == STORE_IO_COMPARE_WRITE ? caw_completed : NULL, &c);
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

/* The synchronous medium ops: every io of this store goes through rbds_submit. */
static int rbds_sync_read(struct store *st, void *buf, size_t len, uint64_t off)
{
	(void)st, (void)buf, (void)len, (void)off;
	return -EOPNOTSUPP;
}

static int rbds_sync_write(struct store *st, const void *buf, size_t len, uint64_t off)
{
	(void)st, (void)buf, (void)len, (void)off;
	return -EOPNOTSUPP;
}

static int rbds_sync_flush(struct store *st)
{
	(void)st;
	return -EOPNOTSUPP;
}

static int rbds_sync_range(struct store *st, uint64_t off, uint64_t len)
{
	(void)st, (void)off, (void)len;
	return -EOPNOTSUPP;
}

/* The image's size is changed with `rbd resize`; the LU follows through the update watch. */
static int rbds_resize(struct store *st, uint64_t new_size)
{
	(void)st, (void)new_size;
	return -EOPNOTSUPP;
}

struct extent_walk {
	uint64_t (*ext)[2];           /* allocated [start, end) pairs */
	size_t n, cap;
};

static int extent_seen(uint64_t ofs, size_t len, int exists, void *arg)
{
	struct extent_walk *w = arg;

	if (!exists || len == 0)
		return 0;
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->ext = xrealloc(w->ext, w->cap * sizeof(*w->ext));
	}
	w->ext[w->n][0] = ofs;
	w->ext[w->n][1] = ofs + len;
	w->n++;
	return 0;
}

static int cmp_extent(const void *a, const void *b)
{
	uint64_t x = (*(const uint64_t(*)[2])a)[0], y = (*(const uint64_t(*)[2])b)[0];
	return x < y ? -1 : x > y;
}

/*
 * Allocation status from rbd_diff_iterate2 against nothing (every allocated extent, the
 * parent's included). Blocks on the cluster: a worker's call, never the loop's.
 */
static int rbds_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	struct rbd_store *rs = rbds_of(st);
	struct extent_walk w = {0};
	uint64_t end;
	int rc;

	if (off >= st->size)
		return -ERANGE;
	if (rs->state != RBD_READY)
		return -ETIMEDOUT;
	if (rs->eng && pthread_equal(pthread_self(), rs->loop)) {
		/*
		 * Asked on the loop, which must never wait for the cluster: "mapped or unknown"
		 * (SBC-3's provisioning status 0) for the rest of the image, without asking.
		 */
		*mapped = true;
		*run = st->size - off;
		return 0;
	}
	end = st->size - off > RBD_EXTENT_WINDOW ? off + RBD_EXTENT_WINDOW : st->size;
	rc = rbd_diff_iterate2(rs->img, NULL, off, end - off, 1, 0, extent_seen, &w);
	if (rc < 0) {
		free(w.ext);
		return rc;
	}
	if (w.n > 1)
		qsort(w.ext, w.n, sizeof(*w.ext), cmp_extent);
	*mapped = false;
	uint64_t at = end;
	for (size_t i = 0; i < w.n; i++) {
		if (w.ext[i][1] > off && w.ext[i][0] <= off) {
			*mapped = true;
			break;
		}
	}
	if (*mapped) {
		/* The run of data: extents that touch or overlap, from off on. */
		at = off;
		for (size_t i = 0; i < w.n; i++) {
			if (w.ext[i][0] > at)
				break;
			if (w.ext[i][1] > at)
				at = w.ext[i][1];
		}
	} else {
		/* The hole ends where the first extent past off starts. */
		for (size_t i = 0; i < w.n; i++) {
			if (w.ext[i][0] > off) {
				at = w.ext[i][0];
				break;
			}
		}
	}
	free(w.ext);
	*run = (at > end ? end : at) - off;
	return 0;
}

/* Waits (bounded by the op timeout) for ios still at librbd, finishing them on this thread. */
static void drain_in_flight(struct rbd_store *rs)
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

/*
 * Letting an image go runs on a thread of its own, waited for at most this long past the OSD op
 * timeout: rbd_close waits for librbd's own requests, and handing the exclusive lock back waits
 * for the notification of every watcher of the header without any timeout, for ever when the
 * OSD holding it went down meanwhile (as after a frozen cluster resumed). Past the bound the
 * thread is left to it, with what it uses (see abandoned below).
 */
#define RBD_RELEASE_GRACE_MS 1000u

struct rbd_release {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done, abandoned;         /* under lock: whoever sees the other's flag frees this */
	struct rbd_cluster *cl;
	rbd_image_t img;
	bool watched;
	uint64_t handle;
	rados_ioctx_t ioctx;
	struct rbd_conn *k;
};

/* Stores whose image could not be let go in time: kept (and reachable) for the release thread. */
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbd_store *abandoned_stores;

/* What an image holds of the cluster, in the order it must be let go. */
static void release_in_order(struct rbd_release *r)
{
	if (r->img && r->watched)
		rbd_update_unwatch(r->img, r->handle);
	/* Waits for anything librbd still runs (a drain that timed out). */
	if (r->img)
		rbd_close(r->img);
	if (r->ioctx)
		rados_ioctx_destroy(r->ioctx);
	rbd_conn_put(r->cl, r->k);
}

static void release_free(struct rbd_release *r)
{
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void *release_thread(void *arg)
{
	struct rbd_release *r = arg;

	release_in_order(r);
	pthread_mutex_lock(&r->lock);
	r->done = true;
	bool abandoned = r->abandoned;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (abandoned)
		release_free(r);
	return NULL;
}

/*
 * Lets the image go within the op timeout plus RBD_RELEASE_GRACE_MS. false when it did not: the
 * release goes on in the background and still uses rs->cl, so the caller keeps rs (see
 * store_abandon) instead of freeing it.
 */
static bool image_release(struct rbd_store *rs, rbd_image_t img, bool watched, uint64_t handle, rados_ioctx_t ioctx,
			  struct rbd_conn *k)
{
	struct rbd_release *r = xcalloc(1, sizeof(*r));
	unsigned op_s = rbd_cluster_op_timeout(rs->cl) ? rbd_cluster_op_timeout(rs->cl) : STORE_RBD_OSD_OP_TIMEOUT;
	uint64_t limit_ms = op_s * 1000ull + RBD_RELEASE_GRACE_MS;
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t th;
	struct timespec until;

	*r = (struct rbd_release){.cl = rs->cl, .img = img, .watched = watched, .handle = handle, .ioctx = ioctx, .k = k};
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&th, &ta, release_thread, r);
	pthread_attr_destroy(&ta);
	if (rc != 0) {
		/* No thread to bound it with: let go here. */
		release_in_order(r);
		release_free(r);
		return true;
	}
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(limit_ms / 1000u);
	until.tv_nsec += (long)(limit_ms % 1000u) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->lock);
	while (!r->done && pthread_cond_timedwait(&r->cond, &r->lock, &until) != ETIMEDOUT) {
	}
	bool done = r->done;
	if (!done)
		r->abandoned = true;
	pthread_mutex_unlock(&r->lock);
	if (done) {
		release_free(r);
		return true;
	}
	log_error("%s: librbd did not let the image go within %llu ms; left to finish in the background", rs->st.path,
		  (unsigned long long)limit_ms);
	return false;
}

/* The store's image release did not finish: it keeps the store (its cluster, its eventfd). */
static void store_abandon(struct rbd_store *rs)
{
	pthread_mutex_lock(&abandoned_lock);
	rs->abandoned_next = abandoned_stores;
	abandoned_stores = rs;
	pthread_mutex_unlock(&abandoned_lock);
}

static void store_free(struct rbd_store *rs)
{
	if (rs->release_abandoned) {
		/* A release of an earlier image of this store still runs and uses its cluster. */
		store_abandon(rs);
		return;
	}
	if (rs->efd >= 0)
		close(rs->efd);
	rbd_cluster_put(rs->cl);
	pthread_mutex_destroy(&rs->cb_lock);
	free(rs->pool);
	free(rs->ns);
	free(rs->image);
	free(rs->st.path);
	free(rs);
}

static void rbds_close_store(struct store *st)
{
	struct rbd_store *rs = rbds_of(st);

	if (rs->in_ready)
		rs->close_pending = true;
	else
		close_now(rs);
}

static void close_now(struct rbd_store *rs)
{
	rs->close_pending = false;
	drain_in_flight(rs);
	if (rs->eng)
		store_engine_unwatch(rs->eng, rs->efd);
	if (rs->state == RBD_REOPENING) {
		/* A worker is opening the image again: the end of its job frees the store. */
		rs->closed = true;
		return;
	}
	atomic_store(&rs->watch_img, NULL);
	if (!image_release(rs, rs->img, rs->update_watched, rs->update_handle, rs->ioctx, rs->conn))
		rs->release_abandoned = true;
	store_free(rs);
}

/*
 * librbd's watcher thread: the image header changed (a resize, a snapshot, features...). The
 * size is read here, where waiting for the refresh is harmless, and the engine's thread is
 * woken through the same eventfd as completions.
 */
static void header_updated(void *arg)
{
	struct rbd_store *rs = arg;
	rbd_image_t img = atomic_load(&rs->watch_img);
	uint64_t size, one = 1;

	if (!img || rbd_get_size(img, &size) < 0)
		return;
	atomic_store(&rs->new_size, size);
	atomic_store(&rs->resized, true);
	if (write(rs->efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow in practice; the next completion delivers it anyway. */
	}
}

/*
 * Opens the image on client instance k: an ioctx, the image, its size, completions on the
 * store's eventfd, the header watch. 0, or a negative errno with *err set (malloc'd); nothing
 * is held on failure.
 */
static int image_open(struct rbd_store *rs, struct rbd_conn *k, bool read_only, struct rbd_reopen *o, char **err)
{
	int rc;

	o->ioctx = NULL;
	o->img = NULL;
	o->watched = false;
	if ((rc = rados_ioctx_create(rbd_conn_handle(k), rs->pool, &o->ioctx)) < 0) {
		o->ioctx = NULL;
		*err = xasprintf("%s: pool '%s': %s", rs->st.path, rs->pool, strerror(-rc));
		return rc;
	}
	rados_ioctx_set_namespace(o->ioctx, rs->ns ? rs->ns : "");
	rc = read_only ? rbd_open_read_only(o->ioctx, rs->image, &o->img, NULL) : rbd_open(o->ioctx, rs->image, &o->img, NULL);
	if (rc < 0) {
		o->img = NULL;
		*err = xasprintf("%s: cannot open the image: %s", rs->st.path, strerror(-rc));
		goto fail;
	}
	if ((rc = rbd_get_size(o->img, &o->size)) < 0) {
		*err = xasprintf("%s: cannot read its size: %s", rs->st.path, strerror(-rc));
		goto fail;
	}
	if ((rc = rbd_set_image_notification(o->img, rs->efd, EVENT_TYPE_EVENTFD)) < 0) {
		*err = xasprintf("%s: cannot set the completion notification: %s", rs->st.path, strerror(-rc));
		goto fail;
	}
	atomic_store(&rs->watch_img, o->img);
	if ((rc = rbd_update_watch(o->img, &o->handle, header_updated, rs)) < 0) {
		*err = xasprintf("%s: cannot watch the image header: %s", rs->st.path, strerror(-rc));
		goto fail;
	}
	o->watched = true;
	return 0;
fail:
	if (o->img)
		rbd_close(o->img);
	rados_ioctx_destroy(o->ioctx);
	o->img = NULL;
	o->ioctx = NULL;
	return rc;
}

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* A worker: let the dead instance's image go, connect a new instance, open the image on it. */
static void reopen_work(struct offload_job *j)
{
	struct rbd_reopen *o = (struct rbd_reopen *)j;
	struct rbd_store *rs = o->rs;

	if (o->old_img || o->old_ioctx || o->old_conn) {
		atomic_store(&rs->watch_img, NULL);
		if (!image_release(rs, o->old_img, o->old_watched, o->old_handle, o->old_ioctx, o->old_conn))
			rs->release_abandoned = true; /* set before the job's done: read on the engine's thread after it */
	}
	if (rbd_cluster_reconnect(rs->cl, o->old_conn, &o->err) < 0)
		return;
	o->conn = rbd_cluster_conn_get(rs->cl);
	if (image_open(rs, o->conn, rs->st.read_only, o, &o->err) < 0) {
		rbd_conn_put(rs->cl, o->conn);
		o->conn = NULL;
	}
}

/* The engine's thread: the reopen is over, one way or the other. */
static void reopen_done(struct offload_job *j)
{
	struct rbd_reopen *o = (struct rbd_reopen *)j;
	struct rbd_store *rs = o->rs;

	rs->reopen = NULL;
	if (rs->closed) {
		if (o->conn && !image_release(rs, o->img, o->watched, o->handle, o->ioctx, o->conn))
			rs->release_abandoned = true;
		store_free(rs);
	} else if (o->conn) {
		rs->conn = o->conn;
		rs->ioctx = o->ioctx;
		rs->img = o->img;
		rs->update_watched = o->watched;
		rs->update_handle = o->handle;
		rs->state = RBD_READY;
		log_info("%s: reopened on a new cluster client; the LU is ready again", rs->st.path);
		atomic_store(&rs->new_size, o->size);
		apply_resize(rs);
	} else {
		rs->state = RBD_LOST;
		rs->retry_ms = now_ms() + RBD_REOPEN_RETRY_MS;
		log_warn("%s: cannot reopen the image yet (%s); trying again at the next I/O after %u ms", rs->st.path,
			 o->err ? o->err : "?", RBD_REOPEN_RETRY_MS);
	}
	free(o->err);
	free(o);
}

/* The engine's thread: the client instance is blocklisted. */
static void rbd_lost(struct rbd_store *rs)
{
	if (rs->state != RBD_READY)
		return;
	log_warn("%s: the cluster blocklisted this client; I/O gets NOT READY until the image is reopened "
		 "on a new client", rs->st.path);
	rs->state = RBD_LOST;
	rs->retry_ms = 0;
}

/* LOST, nothing left at librbd, the retry delay over: a worker reopens the image. */
static void reopen_start(struct rbd_store *rs)
{
	if (rs->state != RBD_LOST || rs->in_flight || !rs->eng || now_ms() < rs->retry_ms)
		return;
	struct rbd_reopen *o = xcalloc(1, sizeof(*o));
	o->rs = rs;
	o->old_conn = rs->conn;
	o->old_ioctx = rs->ioctx;
	o->old_img = rs->img;
	o->old_watched = rs->update_watched;
	o->old_handle = rs->update_handle;
	rs->conn = NULL;
	rs->ioctx = NULL;
	rs->img = NULL;
	rs->update_watched = false;
	o->job.key = rs;
	o->job.work = reopen_work;
	o->job.done = reopen_done;
	rs->reopen = o;
	rs->state = RBD_REOPENING;
	offload_submit(store_engine_offload(rs->eng), &o->job);
}

static const struct store_ops rbds_ops = {
	.read = rbds_sync_read,
	.write = rbds_sync_write,
	.flush = rbds_sync_flush,
	.unmap = rbds_sync_range,
	.extent = rbds_extent,
	.resize = rbds_resize,
	.close = rbds_close_store,
	.zero = rbds_sync_range,
	.submit = rbds_submit,
};

static char *spec_name(const struct store_rbd_spec *s)
{
	return s->ns && *s->ns ? xasprintf("rbd:%s/%s/%s", s->pool, s->ns, s->image)
			       : xasprintf("rbd:%s/%s", s->pool, s->image);
}

struct store *store_rbd_open(const struct store_rbd_spec *spec, char **err)
{
	struct rbd_store *rs;
	struct rbd_reopen o = {0};
	char *name = spec_name(spec), *cerr = NULL;
	int rc;

	rs = xcalloc(1, sizeof(*rs));
	rs->efd = -1;
	rs->held_tail = &rs->held;
	pthread_mutex_init(&rs->cb_lock, NULL);
	rs->st.path = name;
	rs->pool = xstrdup(spec->pool);
	rs->image = xstrdup(spec->image);
	rs->ns = spec->ns ? xstrdup(spec->ns) : NULL;
	atomic_init(&rs->resized, false);
	atomic_init(&rs->watch_img, NULL);
	rs->cl = rbd_cluster_get(spec->conf, spec->id, &cerr);
	if (!rs->cl) {
		*err = xasprintf("%s: %s", name, cerr);
		goto fail;
	}
	rs->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rs->efd < 0) {
		*err = xasprintf("%s: eventfd: %s", name, strerror(errno));
		goto fail;
	}
	rs->conn = rbd_cluster_conn_get(rs->cl);
	rc = image_open(rs, rs->conn, spec->read_only, &o, err);
	if (rc == -RBD_EBLOCKLISTED) {
		/* The shared instance was blocklisted and no LU of it has noticed yet. */
		free(*err);
		*err = NULL;
		if ((rc = rbd_cluster_reconnect(rs->cl, rs->conn, err)) == 0) {
			rbd_conn_put(rs->cl, rs->conn);
			rs->conn = rbd_cluster_conn_get(rs->cl);
			rc = image_open(rs, rs->conn, spec->read_only, &o, err);
		}
	}
	if (rc < 0)
		goto fail;
	rs->ioctx = o.ioctx;
	rs->img = o.img;
	rs->st.size = o.size;
	rs->update_watched = o.watched;
	rs->update_handle = o.handle;
	rbd_image_info_t info;
	if ((rc = rbd_stat(rs->img, &info, sizeof(info))) < 0) {
		*err = xasprintf("%s: cannot read its layout: %s", name, strerror(-rc));
		goto fail;
	}
	rs->obj_size = info.obj_size ? info.obj_size : 4u << 20;
	atomic_init(&rs->new_size, rs->st.size);
	rs->st.ops = &rbds_ops;
	rs->st.read_only = spec->read_only;
	rs->st.thin = true;
	rs->st.wait = STORE_WAIT_ALWAYS;
	rs->st.caps = STORE_CAP_UNMAP | STORE_CAP_WRITE_ZEROES | STORE_CAP_WRITE_SAME | STORE_CAP_COMPARE_WRITE;
	rs->st.fd = -1;
	return &rs->st;
fail:
	free(cerr);
	atomic_store(&rs->watch_img, NULL);
	if (rs->cl && !image_release(rs, rs->img, rs->update_watched, rs->update_handle, rs->ioctx, rs->conn))
		rs->release_abandoned = true;
	store_free(rs);
	return NULL;
}
