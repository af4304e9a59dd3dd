/*
 * The reservation record of an RBD LU in a gateway group (see rbd_lu_state.h).
 *
 * Two I/O contexts on the image's pool and namespace: one for loads and stores, which run one at
 * a time because the object version a call saw is read back from its context afterwards
 * (rados_get_last_version), and one for the watch, notifications and acknowledgements. The
 * watch callback runs on a librados thread: it notes the notice and bumps an eventfd for the
 * loop; the notice is acknowledged by the first rbd_lu_state_ack after a load that started
 * after it, so a notifier's wait ends only once this gateway holds what it stored.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "store/rbd_lu_state.h"
#include "store/store_rbd.h"
#include "store/store_rbd_cluster.h"
#include "util/log.h"
#include "util/sbuf.h"

struct notice {
	uint64_t id, cookie;
};

struct rbd_lu_state {
	struct rbd_cluster *cl;
	rados_ioctx_t io;          /* loads and stores */
	rados_ioctx_t wio;         /* watch, notify, acknowledgements */
	char *oid;
	int efd;
	uint64_t self;             /* our client id: our own notices are acknowledged at once */
	size_t cap;                /* bytes the next load reads at once */
	pthread_mutex_t lock;      /* what follows: the watch callbacks run on librados threads */
	bool watched;
	uint64_t cookie;
	struct notice *pending;    /* not covered by a load yet */
	size_t npending;
	struct notice *covered;    /* covered by the last load: acknowledged by the next ack */
	size_t ncovered;
};

static void bump(struct rbd_lu_state *s)
{
	uint64_t one = 1;
	ssize_t n = write(s->efd, &one, sizeof(one));
	(void)n; /* a full counter is as good as one more */
}

static void on_notice(void *arg, uint64_t notify_id, uint64_t handle, uint64_t notifier_id, void *data, size_t len)
{
	struct rbd_lu_state *s = arg;

	(void)data;
	(void)len;
	if (notifier_id == s->self) {
		/* Our own store: we have it already. */
		rados_notify_ack(s->wio, s->oid, notify_id, handle, NULL, 0);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (s->npending < RBD_LU_STATE_MAX_NOTICES)
		s->pending[s->npending++] = (struct notice){ notify_id, handle };
	pthread_mutex_unlock(&s->lock);
	bump(s);
}

static void on_watch_error(void *arg, uint64_t cookie, int err)
{
	struct rbd_lu_state *s = arg;

	(void)cookie;
	(void)err;
	/* Notices may have been missed: load again, and watch again then. */
	pthread_mutex_lock(&s->lock);
	s->watched = false;
	pthread_mutex_unlock(&s->lock);
	bump(s);
}

struct rbd_lu_state *rbd_lu_state_open(const struct store_rbd_spec *spec, char **err)
{
	struct rbd_lu_state *s = xcalloc(1, sizeof(*s));
	int rc;

	s->efd = -1;
	if (!(s->cl = rbd_cluster_get(spec->conf, spec->id, err)))
		goto fail;
	rados_t r = rbd_cluster_handle(s->cl);
	if ((rc = rados_ioctx_create(r, spec->pool, &s->io)) < 0 || (rc = rados_ioctx_create(r, spec->pool, &s->wio)) < 0) {
		*err = xasprintf("pool %s: %s", spec->pool, strerror(-rc));
		goto fail;
	}
	rados_ioctx_set_namespace(s->io, spec->ns && *spec->ns ? spec->ns : NULL);
	rados_ioctx_set_namespace(s->wio, spec->ns && *spec->ns ? spec->ns : NULL);
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		*err = xasprintf("eventfd: %s", strerror(errno));
		goto fail;
	}
	s->oid = xasprintf("isthmus.lu.%s", spec->image);
	s->self = rados_get_instance_id(r);
	s->cap = 4096;
	s->pending = xcalloc(RBD_LU_STATE_MAX_NOTICES, sizeof(*s->pending));
	s->covered = xcalloc(RBD_LU_STATE_MAX_NOTICES, sizeof(*s->covered));
	pthread_mutex_init(&s->lock, NULL);
	return s;
fail:
	if (s->wio)
		rados_ioctx_destroy(s->wio);
	if (s->io)
		rados_ioctx_destroy(s->io);
	rbd_cluster_put(s->cl);
	free(s);
	return NULL;
}

void rbd_lu_state_close(struct rbd_lu_state *s)
{
	if (!s)
		return;
	if (s->watched) {
		/*
		 * Waited for, within the OSD op timeout librados gives the unwatch anyway (plus a
		 * second): an unwatch still pending when the connection shuts down is lost with what
		 * it holds. Past the bound the cluster drops the watch by itself.
		 */
		rados_completion_t c;
		if (rados_aio_create_completion2(NULL, NULL, &c) == 0) {
			if (rados_aio_unwatch(s->wio, s->cookie, c) == 0) {
				unsigned op_s = rbd_cluster_op_timeout(s->cl) ? rbd_cluster_op_timeout(s->cl)
									     : STORE_RBD_OSD_OP_TIMEOUT;
				struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
				for (unsigned waited = 0; !rados_aio_is_complete(c) && waited < op_s * 1000u + 1000u; waited += 10)
					nanosleep(&tick, NULL);
			}
			rados_aio_release(c);
		}
	}
	rados_watch_flush(rbd_cluster_handle(s->cl));
	rados_ioctx_destroy(s->wio);
	rados_ioctx_destroy(s->io);
	rbd_cluster_put(s->cl);
	close(s->efd);
	pthread_mutex_destroy(&s->lock);
	free(s->pending);
	free(s->covered);
	free(s->oid);
	free(s);
}

int rbd_lu_state_fd(const struct rbd_lu_state *s) { return s->efd; }

void rbd_lu_state_clear(struct rbd_lu_state *s)
{
	uint64_t v;
	ssize_t n = read(s->efd, &v, sizeof(v));
	(void)n;
}

/* The object's bytes and version; -ENOENT when there is none. */
static int read_record(struct rbd_lu_state *s, struct sbuf *rec, uint64_t *version)
{
	for (;;) {
		rados_read_op_t op = rados_create_read_op();
		uint64_t size = 0;
		size_t got = 0;
		int stat_rc = 0, read_rc = 0;

		sbuf_reset(rec);
		sbuf_reserve(rec, s->cap);
		rados_read_op_stat(op, &size, NULL, &stat_rc);
		rados_read_op_read(op, 0, s->cap, (char *)rec->data, &got, &read_rc);
		int rc = rados_read_op_operate(op, s->io, s->oid, 0);
		rados_release_read_op(op);
		if (rc == 0 && (stat_rc < 0 || read_rc < 0))
			rc = stat_rc < 0 ? stat_rc : read_rc;
		if (rc < 0)
			return rc;
		if (size > got && size <= RBD_LU_STATE_MAX_BYTES) {
			s->cap = (size_t)size;  /* it grew since: read it all */
			continue;
		}
		if (size > got)
			return -EFBIG;
		rec->len = got;
		*version = rados_get_last_version(s->io);
		return 0;
	}
}

static void watch(struct rbd_lu_state *s)
{
	pthread_mutex_lock(&s->lock);
	bool watched = s->watched;
	uint64_t old = s->cookie;
	pthread_mutex_unlock(&s->lock);
	if (watched)
		return;
	if (old)
		rados_unwatch2(s->wio, old);
	uint64_t cookie = 0;
	int rc = rados_watch3(s->wio, s->oid, &cookie, on_notice, on_watch_error, RBD_LU_STATE_WATCH_TIMEOUT, s);
	pthread_mutex_lock(&s->lock);
	s->cookie = rc == 0 ? cookie : 0;
	s->watched = rc == 0;
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		log_warn("%s: cannot watch the reservation record: %s (changes through other gateways are seen "
			 "at the next periodic load)", s->oid, strerror(-rc));
}

int rbd_lu_state_load(struct rbd_lu_state *s, struct sbuf *rec, uint64_t *version)
{
	/* Notices that came before this read are answered by what it reads. */
	pthread_mutex_lock(&s->lock);
	if (s->ncovered + s->npending <= RBD_LU_STATE_MAX_NOTICES) {
		memcpy(s->covered + s->ncovered, s->pending, s->npending * sizeof(*s->pending));
		s->ncovered += s->npending;
	}
	s->npending = 0;
	pthread_mutex_unlock(&s->lock);

	int rc = read_record(s, rec, version);
	if (rc == -ENOENT) {
		/* The first gateway ever: an empty record that can be watched; another may beat us to it. */
		rados_write_op_t op = rados_create_write_op();
		rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
		rc = rados_write_op_operate(op, s->io, s->oid, NULL, 0);
		rados_release_write_op(op);
		if (rc < 0 && rc != -EEXIST)
			return rc;
		rc = read_record(s, rec, version);
	}
	if (rc < 0)
		return rc;
	watch(s);
	return 0;
}

int rbd_lu_state_store(struct rbd_lu_state *s, const void *rec, size_t len, uint64_t expect, uint64_t *version)
{
	rados_write_op_t op = rados_create_write_op();

	rados_write_op_assert_version(op, expect);
	rados_write_op_write_full(op, rec, len);
	int rc = rados_write_op_operate(op, s->io, s->oid, NULL, 0);
	rados_release_write_op(op);
	if (rc == -ERANGE || rc == -EOVERFLOW || rc == -ENOENT)
		return -ESTALE;
	if (rc < 0)
		return rc;
	*version = rados_get_last_version(s->io);

	char *reply = NULL;
	size_t reply_len = 0;
	rc = rados_notify2(s->wio, s->oid, "", 0, RBD_LU_STATE_NOTIFY_MS, &reply, &reply_len);
	if (reply)
		rados_buffer_free(reply);
	if (rc < 0)
		log_warn("%s: not every gateway acknowledged the new reservation record within %u ms: %s", s->oid,
			 RBD_LU_STATE_NOTIFY_MS, strerror(-rc));
	return 0;
}

void rbd_lu_state_ack(struct rbd_lu_state *s)
{
	struct notice batch[64];
	size_t n;

	do {
		pthread_mutex_lock(&s->lock);
		n = s->ncovered < 64 ? s->ncovered : 64;
		memcpy(batch, s->covered + s->ncovered - n, n * sizeof(*batch));
		s->ncovered -= n;
		pthread_mutex_unlock(&s->lock);
		for (size_t i = 0; i < n; i++)
			rados_notify_ack(s->wio, s->oid, batch[i].id, batch[i].cookie, NULL, 0);
	} while (n > 0);
}
