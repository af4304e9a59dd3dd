/*
 * RBD images as stores (see store_rbd.h): opening an image on the process's shared cluster
 * connection, closing it within a bound, and reopening it on a new client instance after the
 * cluster blocklisted the old one. The ios themselves are rbd_io.c's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "store/rbd_gate.h"
#include "store/store_rbd.h"
#include "store/store_rbd_int.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Between two attempts to reopen an image whose client was blocklisted, while they fail. */
#define RBD_REOPEN_RETRY_MS 1000

static const struct store_ops rbds_ops;

bool store_is_rbd(const struct store *st) { return st && st->ops == &rbds_ops; }

/*
 * On the home engine's thread. Every other loop reads st.size too (the range check of each io,
 * the SCSI layer's capacity): an atomic store, which they read with atomic loads.
 */
void rbd_apply_resize(struct rbd_store *rs)
{
	uint64_t size = atomic_load(&rs->new_size);

	if (size == __atomic_load_n(&rs->st.size, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&rs->st.size, size, __ATOMIC_RELEASE);
	if (rs->on_resize)
		rs->on_resize(&rs->st, rs->on_resize_arg);
}

void store_rbd_on_resize(struct store *st, void (*cb)(struct store *st, void *arg), void *arg)
{
	if (!store_is_rbd(st))
		return;
	rbds_of(st)->on_resize = cb;
	rbds_of(st)->on_resize_arg = arg;
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

/*
 * Letting an image go runs on a thread of its own: rbd_close waits for librbd's own requests
 * (several OSD operations one after the other, each up to the op timeout when the cluster is
 * gone: three, 9 s at a 3 s timeout, measured with a frozen cluster), and handing the exclusive
 * lock back waits for the notification of every watcher of the header without any timeout, for
 * ever when the OSD holding it went down meanwhile (as after a frozen cluster resumed). A worker
 * (a reopen, a failed open) waits for it at most this long past the OSD op timeout, then leaves
 * the thread to it with what it uses (see abandoned below); a closing LU's engine does not wait
 * at all (release_then_free), and the process waits for those threads when it stops
 * (store_rbd_releases_wait).
 */
#define RBD_RELEASE_GRACE_MS 1000u

struct rbd_release {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done, abandoned;         /* under lock: whoever sees the other's flag frees this */
	struct rbd_cluster *cl;
	struct rbd_image_ref im;
	/* release_then_free's: the store freed once its image is let go, and the thread doing it. */
	struct rbd_store *owner;
	pthread_t th;
	bool finished;                /* (releases_lock) joined and freed by releases_reap */
	struct rbd_release *next;     /* in releases (releases_lock) */
};

/* Stores whose image could not be let go in time: kept (and reachable) for the release thread. */
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbd_store *abandoned_stores;

/*
 * Closing LUs' releases (release_then_free): their threads, joined once finished (librbd's and
 * librados's thread-local state goes with a thread's exit, which a join waits for), how many
 * still run, and the monotonic ms by which the last of them is due: what
 * store_rbd_releases_wait waits for.
 */
static pthread_mutex_t releases_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t releases_cond;
static pthread_once_t releases_once = PTHREAD_ONCE_INIT;
static struct rbd_release *releases;
static unsigned releases_running;
static uint64_t releases_due_ms;

/* A condition whose timed waits use the monotonic clock (deadline_in's). */
static void mono_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
}

static void releases_cond_init(void) { mono_cond_init(&releases_cond); }

static void store_free(struct rbd_store *rs);

static struct timespec deadline_in(uint64_t ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000u);
	until.tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	return until;
}

/* How long letting an image of rs's cluster go may take: the OSD op timeout and the grace. */
static uint64_t release_limit_ms(const struct rbd_store *rs)
{
	unsigned op_s = rbd_cluster_op_timeout(rs->cl) ? rbd_cluster_op_timeout(rs->cl) : STORE_RBD_OSD_OP_TIMEOUT;
	return op_s * 1000ull + RBD_RELEASE_GRACE_MS;
}

/* What an image holds of the cluster, in the order it must be let go. */
static void release_in_order(struct rbd_release *r)
{
	if (r->im.img && r->im.watched)
		rbd_update_unwatch(r->im.img, r->im.watch_handle);
	/* Waits for anything librbd still runs (a drain that timed out). */
	if (r->im.img)
		rbd_close(r->im.img);
	if (r->im.ioctx)
		rados_ioctx_destroy(r->im.ioctx);
	rbd_conn_put(r->cl, r->im.conn);
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

static struct rbd_release *release_new(struct rbd_store *rs, const struct rbd_image_ref *im)
{
	struct rbd_release *r = xcalloc(1, sizeof(*r));

	*r = (struct rbd_release){.cl = rs->cl, .im = *im};
	pthread_mutex_init(&r->lock, NULL);
	mono_cond_init(&r->cond);
	return r;
}

static int release_thread_start(void *(*fn)(void *), void *arg)
{
	pthread_attr_t ta;
	pthread_t th;

	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&th, &ta, fn, arg);
	pthread_attr_destroy(&ta);
	return rc;
}

/* Under releases_lock: the finished release threads are joined and their records freed. */
static void releases_reap(void)
{
	for (struct rbd_release **p = &releases; *p;) {
		struct rbd_release *r = *p;
		if (!r->finished) {
			p = &r->next;
			continue;
		}
		*p = r->next;
		pthread_join(r->th, NULL); /* it has let the lock go and only returns now */
		release_free(r);
	}
}

/*
 * Lets the image go within release_limit_ms, waiting for it (a worker's thread). false when it
 * did not: the release goes on in the background and still uses rs->cl, so the caller keeps rs
 * (see store_abandon) instead of freeing it.
 */
static bool image_release(struct rbd_store *rs, const struct rbd_image_ref *im)
{
	struct rbd_release *r = release_new(rs, im);
	uint64_t limit_ms = release_limit_ms(rs);

	if (release_thread_start(release_thread, r) != 0) {
		/* No thread to bound it with: let go here. */
		release_in_order(r);
		release_free(r);
		return true;
	}
	struct timespec until = deadline_in(limit_ms);
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

static void *release_then_free_thread(void *arg)
{
	struct rbd_release *r = arg;
	uint64_t t0 = mono_ms();

	release_in_order(r);
	uint64_t took = mono_ms() - t0;
	if (took > release_limit_ms(r->owner))
		log_warn("%s: librbd took %llu ms to let the image go", r->owner->st.path, (unsigned long long)took);
	store_free(r->owner);
	pthread_mutex_lock(&releases_lock);
	r->finished = true;
	if (--releases_running == 0)
		pthread_cond_broadcast(&releases_cond);
	pthread_mutex_unlock(&releases_lock);
	return NULL;
}

/*
 * A closing LU's engine (its event loop): the image is let go and the store freed on a thread
 * of their own, so that the loop never waits for the cluster, however slow or gone it is.
 */
static void release_then_free(struct rbd_store *rs)
{
	struct rbd_release *r = release_new(rs, &rs->im);

	r->owner = rs;
	pthread_once(&releases_once, releases_cond_init);
	pthread_mutex_lock(&releases_lock);
	releases_reap();
	uint64_t due = mono_ms() + release_limit_ms(rs);
	if (due > releases_due_ms)
		releases_due_ms = due;
	if (pthread_create(&r->th, NULL, release_then_free_thread, r) == 0) {
		releases_running++;
		r->next = releases;
		releases = r;
		pthread_mutex_unlock(&releases_lock);
		return;
	}
	pthread_mutex_unlock(&releases_lock);
	/* No thread to be had: let go here. */
	release_in_order(r);
	release_free(r);
	store_free(rs);
}

unsigned store_rbd_releases_wait(void)
{
	pthread_once(&releases_once, releases_cond_init);
	pthread_mutex_lock(&releases_lock);
	if (releases_running) {
		uint64_t now = mono_ms();
		struct timespec until = deadline_in(releases_due_ms > now ? releases_due_ms - now : 0);
		while (releases_running && pthread_cond_timedwait(&releases_cond, &releases_lock, &until) != ETIMEDOUT) {
		}
	}
	releases_reap();
	unsigned left = releases_running;
	/* Left to run on: detached, with their records, which they still use. */
	for (struct rbd_release *r = releases; r; r = r->next)
		pthread_detach(r->th);
	releases = NULL;
	pthread_mutex_unlock(&releases_lock);
	if (left)
		log_error("%u RBD image%s not let go in time: the cluster frees %s when its watch times out", left,
			  left == 1 ? "" : "s", left == 1 ? "it" : "them");
	return left;
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
	if (rs->cl)
		rbd_budget_forget(rs->cl, &rs->waiter);
	if (rs->release_abandoned) {
		/* A release of an earlier image of this store still runs and uses its cluster. */
		store_abandon(rs);
		return;
	}
	if (rs->efd >= 0)
		close(rs->efd);
	rbd_cluster_put(rs->cl);
	rbd_gate_put(rs->gate);
	pthread_mutex_destroy(&rs->lock);
	free(rs->pool);
	free(rs->ns);
	free(rs->image);
	free(rs->pr_oid);
	free(rs->pr_blob);
	free(rs->st.path);
	free(rs);
}

static void rbds_close_store(struct store *st)
{
	struct rbd_store *rs = rbds_of(st);

	if (rs->in_ready)
		rs->close_pending = true;
	else
		rbd_close_now(rs);
}

void rbd_close_now(struct rbd_store *rs)
{
	rs->close_pending = false;
	pthread_mutex_lock(&rs->lock);
	rs->closing = true;
	pthread_mutex_unlock(&rs->lock);
	rbd_drain_in_flight(rs);
	if (atomic_load(&rs->eng))
		store_engine_unwatch(atomic_load(&rs->eng), rs->efd);
	pthread_mutex_lock(&rs->lock);
	if (atomic_load(&rs->state) == RBD_REOPENING) {
		/* A worker is opening the image again: the end of its job frees the store. */
		rs->closed = true;
		pthread_mutex_unlock(&rs->lock);
		return;
	}
	pthread_mutex_unlock(&rs->lock);
	atomic_store(&rs->watch_img, NULL);
	release_then_free(rs);
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
 * The connection turns librbd's cache off (store_rbd_cluster.c), but librbd 16 applies the
 * image's and the pool's own configuration (the conf_rbd_cache metadata that `rbd config image
 * set` and `rbd config pool set` write) over the client's at open, and nothing in its API turns
 * it off again for one open image without changing the image for every client. So the effective
 * value is read back: with the cache on, a write is acknowledged from the gateway's memory.
 * Several gateways of one image each caching writes is refused outright; a single gateway still
 * flushes when SCSI asks it to (every write with the write cache disabled, FUA, SYNCHRONIZE
 * CACHE), so it serves, and says so loudly: what it acknowledged and had not flushed is lost
 * with the process, which the gateway otherwise never does.
 */
static int image_cache_check(struct rbd_store *rs, rbd_image_t img, char **err)
{
	int max = 0, rc;
	rbd_config_option_t *opts = NULL;

	for (int tries = 0; tries < 4; tries++) {
		rc = rbd_config_image_list(img, opts, &max);
		if (rc != -ERANGE)
			break;
		free(opts);
		opts = xcalloc((size_t)max + 1, sizeof(*opts));
	}
	if (rc < 0) {
		free(opts);
		*err = xasprintf("%s: cannot read the image's configuration: %s", rs->st.path, strerror(-rc));
		return rc;
	}
	const char *from = NULL;
	for (int i = 0; i < max; i++) {
		if (strcmp(opts[i].name, "rbd_cache") == 0 && strcmp(opts[i].value, "true") == 0)
			from = opts[i].source == RBD_CONFIG_SOURCE_IMAGE  ? "image"
			       : opts[i].source == RBD_CONFIG_SOURCE_POOL ? "pool"
									  : "client";
	}
	rbd_config_image_list_cleanup(opts, max);
	free(opts);
	atomic_store(&rs->cache_from, from);
	if (!from)
		return 0;
	char *how = strcmp(from, "image") == 0  ? xasprintf("rbd config image remove %s/%s rbd_cache", rs->pool, rs->image)
		    : strcmp(from, "pool") == 0 ? xasprintf("rbd config pool remove %s rbd_cache", rs->pool)
						: xstrdup("rbd_cache = false in ceph.conf");
	if (rs->refuse_cache) {
		/* Short enough for the management reply: the remedy must not be cut off. */
		*err = xasprintf("%s: the %s's configuration turns librbd's cache on, which a gateway group cannot "
				 "serve (fix: %s)", rs->st.path, from, how);
		free(how);
		return -EINVAL;
	}
	log_warn("%s: the %s's configuration turns librbd's cache on (rbd_cache = true), overriding the gateway's "
		 "rbd_cache = false: writes are acknowledged before they reach the OSDs and those not yet flushed "
		 "are lost if this gateway dies (fix: %s)", rs->st.path, from, how);
	free(how);
	return 0;
}

const char *store_rbd_cache_override(const struct store *st)
{
	if (!st || !store_is_rbd(st))
		return NULL;
	return atomic_load(&((const struct rbd_store *)st)->cache_from);
}

/*
 * Opens the image on client instance im->conn: an ioctx, the image, its size, the header
 * watch (completions come through each io's callback, rbd_io.c). 0, or a negative errno with
 * *err set (malloc'd); nothing but im->conn is held on failure.
 */
static int image_open(struct rbd_store *rs, bool read_only, struct rbd_image_ref *im, uint64_t *size, char **err)
{
	int rc;

	im->ioctx = NULL;
	im->img = NULL;
	im->watched = false;
	if ((rc = rados_ioctx_create(rbd_conn_handle(im->conn), rs->pool, &im->ioctx)) < 0) {
		im->ioctx = NULL;
		*err = xasprintf("%s: pool '%s': %s", rs->st.path, rs->pool, strerror(-rc));
		return rc;
	}
	rados_ioctx_set_namespace(im->ioctx, rs->ns ? rs->ns : "");
	rc = read_only ? rbd_open_read_only(im->ioctx, rs->image, &im->img, NULL) : rbd_open(im->ioctx, rs->image, &im->img, NULL);
	if (rc < 0) {
		im->img = NULL;
		*err = xasprintf("%s: cannot open the image: %s", rs->st.path, strerror(-rc));
		goto fail;
	}
	if ((rc = image_cache_check(rs, im->img, err)) < 0)
		goto fail;
	if ((rc = rbd_get_size(im->img, size)) < 0) {
		*err = xasprintf("%s: cannot read its size: %s", rs->st.path, strerror(-rc));
		goto fail;
	}
	atomic_store(&rs->watch_img, im->img);
	if ((rc = rbd_update_watch(im->img, &im->watch_handle, header_updated, rs)) < 0) {
		*err = xasprintf("%s: cannot watch the image header: %s", rs->st.path, strerror(-rc));
		goto fail;
	}
	im->watched = true;
	return 0;
fail:
	if (im->img)
		rbd_close(im->img);
	rados_ioctx_destroy(im->ioctx);
	im->img = NULL;
	im->ioctx = NULL;
	return rc;
}

/* A worker: let the dead instance's image go, connect a new instance, open the image on it. */
static void reopen_work(struct offload_job *j)
{
	struct rbd_reopen *o = (struct rbd_reopen *)j;
	struct rbd_store *rs = o->rs;

	if (o->old.img || o->old.ioctx || o->old.conn) {
		atomic_store(&rs->watch_img, NULL);
		if (!image_release(rs, &o->old))
			rs->release_abandoned = true; /* set before the job's done: read on the engine's thread after it */
	}
	if (rbd_cluster_reconnect(rs->cl, o->old.conn, &o->err) < 0)
		return;
	o->now.conn = rbd_cluster_conn_get(rs->cl);
	if (image_open(rs, rs->st.read_only, &o->now, &o->size, &o->err) < 0) {
		rbd_conn_put(rs->cl, o->now.conn);
		o->now.conn = NULL;
	}
}

/* The starting engine's thread: the reopen is over, one way or the other. */
static void reopen_done(struct offload_job *j)
{
	struct rbd_reopen *o = (struct rbd_reopen *)j;
	struct rbd_store *rs = o->rs;

	pthread_mutex_lock(&rs->lock);
	rs->reopen = NULL;
	bool closed = rs->closed;
	if (!closed && o->now.conn) {
		rs->im = o->now;
		atomic_store(&rs->state, RBD_READY); /* after im: a submitter that sees READY reads the new one */
	} else if (!closed) {
		atomic_store(&rs->retry_ms, mono_ms() + RBD_REOPEN_RETRY_MS);
		atomic_store(&rs->state, RBD_LOST);
	}
	pthread_mutex_unlock(&rs->lock);
	if (closed) {
		/* The LU went while the image reopened: what the worker opened goes as a close's would. */
		rs->im = o->now;
		release_then_free(rs);
	} else if (o->now.conn) {
		log_info("%s: reopened on a new cluster client; the LU is ready again", rs->st.path);
		/* The size as reopened, applied on the home engine's thread. */
		atomic_store(&rs->new_size, o->size);
		atomic_store(&rs->resized, true);
		rbd_wake_home(rs);
	} else {
		log_warn("%s: cannot reopen the image yet (%s); trying again at the next I/O after %u ms", rs->st.path,
			 o->err ? o->err : "?", RBD_REOPEN_RETRY_MS);
	}
	free(o->err);
	free(o);
}

/* An engine's thread: the client instance is blocklisted. */
void rbd_lost(struct rbd_store *rs)
{
	int ready = RBD_READY;

	if (!atomic_compare_exchange_strong(&rs->state, &ready, RBD_LOST))
		return;
	log_warn("%s: the cluster blocklisted this client; I/O gets NOT READY until the image is reopened "
		 "on a new client", rs->st.path);
	atomic_store(&rs->retry_ms, 0);
}

/*
 * LOST, nothing left at librbd, the retry delay over: a worker of this thread's engine
 * reopens the image. REOPENING is set before in_flight is looked at (store_rbd_int.h): a
 * submitter counted meanwhile makes this give up, and the last io out tries again.
 */
void rbd_reopen_start(struct rbd_store *rs)
{
	struct store_engine *e = rbd_thread_engine ? rbd_thread_engine : atomic_load(&rs->eng);

	if (atomic_load(&rs->state) != RBD_LOST || !e || mono_ms() < atomic_load(&rs->retry_ms))
		return;
	pthread_mutex_lock(&rs->lock);
	int lost = RBD_LOST;
	if (rs->closing || !atomic_compare_exchange_strong(&rs->state, &lost, RBD_REOPENING)) {
		pthread_mutex_unlock(&rs->lock);
		return;
	}
	if (atomic_load(&rs->in_flight)) {
		atomic_store(&rs->state, RBD_LOST);
		pthread_mutex_unlock(&rs->lock);
		return;
	}
	struct rbd_reopen *o = xcalloc(1, sizeof(*o));
	o->rs = rs;
	o->old = rs->im;
	rs->im = (struct rbd_image_ref){0};
	rs->reopen = o;
	pthread_mutex_unlock(&rs->lock);
	store_rbd_offload(e, &o->job, rs, reopen_work, reopen_done);
}

void store_rbd_offload(struct store_engine *e, struct offload_job *j, const void *key,
		       void (*work)(struct offload_job *j), void (*done)(struct offload_job *j))
{
	j->key = key;
	j->work = work;
	j->done = done;
	offload_submit(store_engine_offload(e), j);
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
	.state_get = rbds_state_get,
	.state_put = rbds_state_put,
	.state_name = rbds_state_name,
};

static char *spec_name(const struct store_rbd_spec *s)
{
	return s->ns && *s->ns ? xasprintf("rbd:%s/%s/%s", s->pool, s->ns, s->image)
			       : xasprintf("rbd:%s/%s", s->pool, s->image);
}

struct store *store_rbd_open(const struct store_rbd_spec *spec, char **err)
{
	struct rbd_store *rs;
	uint64_t size = 0;
	char *name = spec_name(spec), *cerr = NULL;
	int rc;

	rs = xcalloc(1, sizeof(*rs));
	rs->efd = -1;
	rs->held_tail = &rs->held;
	rs->queued_tail = &rs->queued;
	rs->gate = rbd_gate_new();
	rbd_caw_test_hook_init();
	pthread_mutex_init(&rs->lock, NULL);
	atomic_init(&rs->state, RBD_READY);
	atomic_init(&rs->retry_ms, 0);
	atomic_init(&rs->in_flight, 0);
	atomic_init(&rs->eng, NULL);
	atomic_init(&rs->queue_on, false);
	atomic_init(&rs->excl_on, false);
	rs->st.path = name;
	rs->pool = xstrdup(spec->pool);
	rs->image = xstrdup(spec->image);
	rs->ns = spec->ns ? xstrdup(spec->ns) : NULL;
	rs->refuse_cache = spec->refuse_cache;
	atomic_init(&rs->cache_from, NULL);
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
	rs->im.conn = rbd_cluster_conn_get(rs->cl);
	rc = image_open(rs, spec->read_only, &rs->im, &size, err);
	if (rc == -RBD_EBLOCKLISTED) {
		/* The shared instance was blocklisted and no LU of it has noticed yet. */
		free(*err);
		*err = NULL;
		if ((rc = rbd_cluster_reconnect(rs->cl, rs->im.conn, err)) == 0) {
			rbd_conn_put(rs->cl, rs->im.conn);
			rs->im.conn = rbd_cluster_conn_get(rs->cl);
			rc = image_open(rs, spec->read_only, &rs->im, &size, err);
		}
	}
	if (rc < 0)
		goto fail;
	rs->st.size = size;
	rbd_image_info_t info;
	if ((rc = rbd_stat(rs->im.img, &info, sizeof(info))) < 0) {
		*err = xasprintf("%s: cannot read its layout: %s", name, strerror(-rc));
		goto fail;
	}
	rs->obj_size = info.obj_size ? info.obj_size : 4u << 20;
	if (rbd_get_stripe_unit(rs->im.img, &rs->stripe_unit) < 0 || rs->stripe_unit == 0 ||
	    rbd_get_stripe_count(rs->im.img, &rs->stripe_count) < 0 || rs->stripe_count == 0) {
		rs->stripe_unit = rs->obj_size;
		rs->stripe_count = 1;
	}
	if ((rc = rbd_state_load(rs, err)) < 0)
		goto fail;
	rs->waiter.efd = rs->efd;
	rbd_budget_limits(rs->cl, &rs->budget_ops, &rs->budget_bytes);
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
	if (rs->cl && !image_release(rs, &rs->im))
		rs->release_abandoned = true;
	store_free(rs);
	return NULL;
}
