/*
 * The reservation record of an RBD LU in a gateway group (see rbd_lu_state.h).
 *
 * Three I/O contexts on the image's pool and namespace: one for loads and stores, which run one
 * at a time because the object version a call saw is read back from its context afterwards
 * (rados_get_last_version), one for the watch, notifications and acknowledgements, and one for
 * the compare-and-write lock and fencing, which run beside them. The watch callback runs on a
 * librados thread: it notes the notice and bumps an eventfd for the loop; the notice is
 * acknowledged by the first rbd_lu_state_ack after a load that started after it, so a
 * notifier's wait ends only once this gateway holds what it stored.
 *
 * The contexts live on one client instance, held (rbd_conn) so that it stays valid. When the
 * cluster blocklisted it (another gateway fenced this one), a load or store moves to the
 * current instance, made anew if nobody did yet; the old contexts are kept until close, as a
 * call beside the load may still use them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "store/rbd_gate.h"
#include "store/rbd_lu_state.h"
#include "store/store_rbd.h"
#include "store/store_rbd_cluster.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/sbuf.h"

/* librados reports a blocklisted client instance with this errno. */
#define LU_EBLOCKLISTED ESHUTDOWN
#define CAW_LOCK_NAME "isthmus-caw"

struct notice {
	uint64_t id, cookie;
};

/* The contexts of one client instance. */
struct instance {
	struct instance *retired;  /* replaced ones, freed at close */
	struct rbd_conn *conn;
	rados_ioctx_t io;          /* loads and stores */
	rados_ioctx_t wio;         /* watch, notify, acknowledgements */
	rados_ioctx_t cio;         /* compare-and-write lock, fencing */
	uint64_t retired_watch;    /* retired: the watch it held on the record (0: none) */
};

struct rbd_lu_state {
	struct rbd_cluster *cl;
	struct instance *in;       /* swapped under lock; read under it off the load/store jobs */
	char *oid, *caw_oid;
	char cookie[64];           /* this gateway's compare-and-write lock instance */
	unsigned gateway;
	bool announced;            /* our address is on the record (load/store jobs only) */
	int efd;
	uint64_t self;             /* our client id: our own notices are acknowledged at once */
	size_t cap;                /* bytes the next load reads at once */
	uint64_t unreachable_until; /* tests: loads fail until then (CLOCK_MONOTONIC ms; 0: never) */
	struct timespec caw_since; /* when the compare-and-write lock was asked for (caw jobs only) */
	bool caw_holding;          /* the other gateways were asked to hold: a release is owed (caw jobs only) */
	bool hold_failing;         /* the last hold was not granted by every gateway (caw jobs only) */
	struct rbd_gate *gate;     /* this gateway's writes to the image, for the others' holds (set before the watch) */
	pthread_mutex_t lock;      /* what follows, and in: the watch callbacks run on librados threads */
	bool watched;
	uint64_t cookie_w;
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

static struct instance *cur(struct rbd_lu_state *s)
{
	pthread_mutex_lock(&s->lock);
	struct instance *in = s->in;
	pthread_mutex_unlock(&s->lock);
	return in;
}

static bool has_prefix(const void *data, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && memcmp(data, prefix, n) == 0;
}

/* The gate's acknowledgement of a hold in force (any thread, the gate's lock held: no waiting). */
static void hold_in_force(void *arg, uint64_t notify_id, uint64_t cookie)
{
	struct rbd_lu_state *s = arg;

	rados_notify_ack(cur(s)->wio, s->oid, notify_id, cookie, RBD_LU_STATE_HELD, strlen(RBD_LU_STATE_HELD));
}

/*
 * Another gateway's long COMPARE AND WRITE asks this one to hold its writes to a range: the gate
 * acknowledges once they are held and none is under way. Our own (the holder's store holds its
 * own writes itself) is acknowledged at once; a hold that cannot be set is refused, which fails
 * the holder's command.
 */
static void answer_hold(struct rbd_lu_state *s, uint64_t notify_id, uint64_t handle, const void *data, size_t len)
{
	char msg[256];
	unsigned long long off, n, lease;
	int at = 0;
	const char *answer = "refused";
	size_t l = len < sizeof(msg) - 1 ? len : sizeof(msg) - 1;

	memcpy(msg, data, l);
	msg[l] = '\0';
	if (sscanf(msg, RBD_LU_STATE_HOLD_MSG " %llu %llu %llu %n", &off, &n, &lease, &at) == 3 && at > 0 && msg[at]) {
		if (strcmp(msg + at, s->cookie) == 0)
			answer = RBD_LU_STATE_HELD;
		else if (s->gate && n > 0 && rbd_gate_hold(s->gate, msg + at, off, n, lease, notify_id, handle))
			return;
	}
	rados_notify_ack(cur(s)->wio, s->oid, notify_id, handle, answer, strlen(answer));
}

static void answer_release(struct rbd_lu_state *s, uint64_t notify_id, uint64_t handle, const void *data, size_t len)
{
	char holder[128];
	size_t skip = strlen(RBD_LU_STATE_RELEASE_MSG " ");
	size_t l = len - skip < sizeof(holder) - 1 ? len - skip : sizeof(holder) - 1;

	memcpy(holder, (const char *)data + skip, l);
	holder[l] = '\0';
	if (s->gate)
		rbd_gate_release(s->gate, holder);
	rados_notify_ack(cur(s)->wio, s->oid, notify_id, handle, NULL, 0);
}

static void on_notice(void *arg, uint64_t notify_id, uint64_t handle, uint64_t notifier_id, void *data, size_t len)
{
	struct rbd_lu_state *s = arg;

	if (has_prefix(data, len, RBD_LU_STATE_HOLD_MSG " ")) {
		answer_hold(s, notify_id, handle, data, len);
		return;
	}
	if (has_prefix(data, len, RBD_LU_STATE_RELEASE_MSG " ")) {
		answer_release(s, notify_id, handle, data, len);
		return;
	}

	if (len == strlen(RBD_LU_STATE_WITNESS_MSG) && memcmp(data, RBD_LU_STATE_WITNESS_MSG, len) == 0) {
		/* "Are you there?" from a gateway whose probes lost us: this answer is the proof. */
		char me[32];
		int n = snprintf(me, sizeof(me), "gateway %u", s->gateway);
		rados_notify_ack(cur(s)->wio, s->oid, notify_id, handle, me, n);
		return;
	}
	if (notifier_id == s->self) {
		/* Our own store: we have it already. */
		rados_notify_ack(cur(s)->wio, s->oid, notify_id, handle, NULL, 0);
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

static void instance_free(struct instance *in)
{
	while (in) {
		struct instance *next = in->retired;
		if (in->cio)
			rados_ioctx_destroy(in->cio);
		if (in->wio)
			rados_ioctx_destroy(in->wio);
		if (in->io)
			rados_ioctx_destroy(in->io);
		free(in);
		in = next;
	}
}

/* Contexts on the cluster's current client instance. */
static struct instance *instance_new(struct rbd_cluster *cl, const char *pool, const char *ns, char **err)
{
	struct instance *in = xcalloc(1, sizeof(*in));
	int rc;

	in->conn = rbd_cluster_conn_get(cl);
	rados_t r = rbd_conn_handle(in->conn);
	if ((rc = rados_ioctx_create(r, pool, &in->io)) < 0 || (rc = rados_ioctx_create(r, pool, &in->wio)) < 0 ||
	    (rc = rados_ioctx_create(r, pool, &in->cio)) < 0) {
		*err = xasprintf("pool %s: %s", pool, strerror(-rc));
		struct rbd_conn *k = in->conn;
		instance_free(in);
		rbd_conn_put(cl, k);
		return NULL;
	}
	const char *n = ns && *ns ? ns : NULL;
	rados_ioctx_set_namespace(in->io, n);
	rados_ioctx_set_namespace(in->wio, n);
	rados_ioctx_set_namespace(in->cio, n);
	return in;
}

/*
 * Tests only (docs/testing.md): ISTHMUS_TEST_RECORD_UNREACHABLE_MS=N makes every load of a record
 * fail for N ms after the record was opened, as when the cluster is out of reach: reservation
 * commands answer NOT READY 04h/01h and medium access is refused meanwhile, which is what an
 * initiator failing over onto a gateway that has just started meets, for a time a test can
 * choose. Read once, at the first record opened (at start-up).
 */
static pthread_once_t test_env_once = PTHREAD_ONCE_INIT;
static uint64_t test_unreachable_ms;

static void read_test_env(void)
{
	const char *v = getenv("ISTHMUS_TEST_RECORD_UNREACHABLE_MS");
	if (!v || !*v)
		return;
	char *end;
	unsigned long long ms = strtoull(v, &end, 10);
	if (*end || ms > 3600000) {
		log_warn("ISTHMUS_TEST_RECORD_UNREACHABLE_MS=%s ignored (milliseconds, at most 3600000)", v);
		return;
	}
	test_unreachable_ms = ms;
	log_warn("ISTHMUS_TEST_RECORD_UNREACHABLE_MS=%llu: the reservation records cannot be loaded for %llu ms after "
		 "they are opened (a test setting)", ms, ms);
}


struct rbd_lu_state *rbd_lu_state_open(const struct store_rbd_spec *spec, unsigned gateway, char **err)
{
	struct rbd_lu_state *s = xcalloc(1, sizeof(*s));

	s->efd = -1;
	if (!(s->cl = rbd_cluster_get(spec->conf, spec->id, err)))
		goto fail;
	if (!(s->in = instance_new(s->cl, spec->pool, spec->ns, err)))
		goto fail;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		*err = xasprintf("eventfd: %s", strerror(errno));
		goto fail;
	}
	s->oid = xasprintf(RBD_LU_STATE_OID, spec->image);
	s->caw_oid = xasprintf("isthmus.caw.%s", spec->image);
	s->gateway = gateway;
	s->self = rados_get_instance_id(rbd_conn_handle(s->in->conn));
	snprintf(s->cookie, sizeof(s->cookie), "gateway %u %p", gateway, (void *)s);
	s->cap = 4096;
	pthread_once(&test_env_once, read_test_env);
	if (test_unreachable_ms)
		s->unreachable_until = mono_ms() + test_unreachable_ms;
	s->pending = xcalloc(RBD_LU_STATE_MAX_NOTICES, sizeof(*s->pending));
	s->covered = xcalloc(RBD_LU_STATE_MAX_NOTICES, sizeof(*s->covered));
	pthread_mutex_init(&s->lock, NULL);
	return s;
fail:
	if (s->in) {
		struct rbd_conn *k = s->in->conn;
		instance_free(s->in);
		rbd_conn_put(s->cl, k);
	}
	rbd_cluster_put(s->cl);
	free(s);
	return NULL;
}

/* The cluster blocklisted our client instance: move to the current one (load/store jobs only). */
static int renew_instance(struct rbd_lu_state *s)
{
	struct instance *old = cur(s);
	char *err = NULL, pool[256] = "", ns[256] = "";

	int rc = rbd_cluster_reconnect(s->cl, old->conn, &err);
	if (rc < 0) {
		log_warn("%s: this gateway's cluster client was fenced and no new one could be made: %s", s->oid, err);
		free(err);
		return rc;
	}
	if (rados_ioctx_get_pool_name(old->io, pool, sizeof(pool)) < 0)
		return -EIO;
	rados_ioctx_get_namespace(old->io, ns, sizeof(ns));
	struct instance *in = instance_new(s->cl, pool, ns, &err);
	if (!in) {
		log_warn("%s: %s", s->oid, err);
		free(err);
		return -EIO;
	}
	pthread_mutex_lock(&s->lock);
	in->retired = s->in;
	in->retired->retired_watch = s->cookie_w; /* given back at close: librados keeps it till then */
	s->in = in;
	s->watched = false;
	s->cookie_w = 0;
	s->self = rados_get_instance_id(rbd_conn_handle(in->conn));
	pthread_mutex_unlock(&s->lock);
	s->announced = false;
	log_warn("%s: this gateway's cluster client was fenced (blocklisted): the record is read with a new one", s->oid);
	return 0;
}

/* "Is any other gateway watching the record?" (false also when nobody answers in time). */
static bool others_watch(struct rbd_lu_state *s, struct instance *in)
{
	char *reply = NULL;
	size_t reply_len = 0;
	struct notify_ack_t *acks = NULL;
	struct notify_timeout_t *timeouts = NULL;
	size_t nacks = 0, ntimeouts = 0;
	bool others = true;

	int rc = rados_notify2(in->wio, s->oid, "", 0, RBD_LU_STATE_CLOSE_PROBE_MS, &reply, &reply_len);
	if (reply && rados_decode_notify_response(reply, reply_len, &acks, &nacks, &timeouts, &ntimeouts) == 0) {
		others = ntimeouts > 0;
		for (size_t i = 0; i < nacks; i++)
			others |= acks[i].notifier_id != s->self;
		rados_free_notify_response(acks, nacks, timeouts);
	} else if (rc == -ENOENT) {
		others = false;
	}
	if (reply)
		rados_buffer_free(reply);
	return others;
}

/* Whether the record (text, see src/scsi/lu_state.c) holds anything a later gateway needs. */
static bool record_in_use(const char *rec, size_t len)
{
	static const char *const keep[] = { "reg ", "reservation ", "rsv2 " };

	for (size_t at = 0; at < len;) {
		const char *nl = memchr(rec + at, '\n', len - at);
		size_t end = nl ? (size_t)(nl - rec) : len;
		for (size_t k = 0; k < sizeof(keep) / sizeof(keep[0]); k++) {
			size_t kl = strlen(keep[k]);
			if (end - at >= kl && memcmp(rec + at, keep[k], kl) == 0)
				return true;
		}
		at = end + 1;
	}
	return false;
}

static int read_record(struct rbd_lu_state *s, struct instance *in, struct sbuf *rec, uint64_t *version);

/*
 * The last gateway of the group to let the LU go removes what the group kept for it, when it
 * keeps nothing: no registration and no reservation (the unit attention events are for nexuses
 * of gateways that are gone, and a gateway that comes later skips those of before its time).
 * The removal asserts the version read, so a change meanwhile (a gateway starting, a lock taken)
 * keeps the object.
 */
static void remove_if_unused(struct rbd_lu_state *s, struct instance *in)
{
	struct sbuf rec = { 0 };
	uint64_t version = 0;

	if (read_record(s, in, &rec, &version) < 0 || record_in_use((const char *)rec.data, rec.len) ||
	    others_watch(s, in)) {
		sbuf_free(&rec);
		return;
	}
	sbuf_free(&rec);
	rados_write_op_t op = rados_create_write_op();
	rados_write_op_assert_version(op, version);
	rados_write_op_remove(op);
	int rc = rados_write_op_operate(op, in->io, s->oid, NULL, 0);
	rados_release_write_op(op);
	if (rc < 0) {
		log_info("%s: kept (%s)", s->oid, strerror(-rc));
		return;
	}
	rc = rados_remove(in->cio, s->caw_oid);
	log_info("%s: removed: no registration or reservation left and no other gateway watches it", s->oid);
	(void)rc; /* no compare-and-write ever ran: there is no lock object */
}

/*
 * A fenced client's watch: librados holds it until it is given back, even on a blocklisted
 * client, and loses what it holds when the client shuts down with it. The cluster refuses the
 * unwatch itself at once (blocklisted) or drops the watch by its timeout; only librados' own
 * record of it matters here, and that goes when the unwatch is issued: waiting a second for the
 * answer is plenty.
 */
static void unwatch_retired(struct instance *i)
{
	rados_completion_t c;
	if (rados_aio_create_completion2(NULL, NULL, &c) < 0)
		return;
	if (rados_aio_unwatch(i->wio, i->retired_watch, c) == 0) {
		struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
		for (unsigned waited = 0; !rados_aio_is_complete(c) && waited < 1000u; waited += 10)
			nanosleep(&tick, NULL);
	}
	rados_aio_release(c);
	i->retired_watch = 0;
}

void rbd_lu_state_close(struct rbd_lu_state *s, bool remove)
{
	if (!s)
		return;
	struct instance *in = s->in;
	bool reachable = s->watched; /* the cluster answered lately: worth asking more of it */
	if (s->watched) {
		/*
		 * Waited for, within the OSD op timeout librados gives the unwatch anyway (plus a
		 * second): an unwatch still pending when the connection shuts down is lost with what
		 * it holds. Past the bound the cluster drops the watch by itself.
		 */
		rados_completion_t c;
		if (rados_aio_create_completion2(NULL, NULL, &c) == 0) {
			if (rados_aio_unwatch(in->wio, s->cookie_w, c) == 0) {
				unsigned op_s = rbd_cluster_op_timeout(s->cl) ? rbd_cluster_op_timeout(s->cl)
									     : STORE_RBD_OSD_OP_TIMEOUT;
				struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
				for (unsigned waited = 0; !rados_aio_is_complete(c) && waited < op_s * 1000u + 1000u; waited += 10)
					nanosleep(&tick, NULL);
				reachable = rados_aio_is_complete(c) && rados_aio_get_return_value(c) == 0;
			}
			rados_aio_release(c);
		}
	}
	/* Not when the cluster did not answer the unwatch: each call would wait the op timeout again. */
	if (remove && reachable)
		remove_if_unused(s, in);
	struct rbd_conn *conns[64];
	size_t nconns = 0;
	for (struct instance *i = in; i; i = i->retired) {
		if (i->retired_watch)
			unwatch_retired(i);
		rados_watch_flush(rbd_conn_handle(i->conn));
		if (nconns < sizeof(conns) / sizeof(conns[0]))
			conns[nconns++] = i->conn;
	}
	if (s->gate) {
		/* No watch callback runs any more: the holds end, and nobody acknowledges for us. */
		rbd_gate_set_ack(s->gate, NULL, NULL);
		rbd_gate_put(s->gate);
	}
	instance_free(in);
	for (size_t i = 0; i < nconns; i++)
		rbd_conn_put(s->cl, conns[i]);
	rbd_cluster_put(s->cl);
	close(s->efd);
	pthread_mutex_destroy(&s->lock);
	free(s->pending);
	free(s->covered);
	free(s->oid);
	free(s->caw_oid);
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
static int read_record(struct rbd_lu_state *s, struct instance *in, struct sbuf *rec, uint64_t *version)
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
		int rc = rados_read_op_operate(op, in->io, s->oid, 0);
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
		*version = rados_get_last_version(in->io);
		return 0;
	}
}

static void watch(struct rbd_lu_state *s, struct instance *in)
{
	pthread_mutex_lock(&s->lock);
	bool watched = s->watched;
	uint64_t old = s->cookie_w;
	pthread_mutex_unlock(&s->lock);
	if (watched)
		return;
	if (old)
		rados_unwatch2(in->wio, old);
	uint64_t cookie = 0;
	int rc = rados_watch3(in->wio, s->oid, &cookie, on_notice, on_watch_error, RBD_LU_STATE_WATCH_TIMEOUT, s);
	pthread_mutex_lock(&s->lock);
	s->cookie_w = rc == 0 ? cookie : 0;
	s->watched = rc == 0;
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		log_warn("%s: cannot watch the reservation record: %s (changes through other gateways are seen "
			 "at the next periodic load)", s->oid, strerror(-rc));
}

/*
 * Our client's address on the record, for the other gateways to fence it should we go away.
 * It changes the object's version, which a store started from before then finds stale and
 * runs again: once per client instance.
 */
static int announce(struct rbd_lu_state *s, struct instance *in)
{
	char *addrs = NULL, name[48];

	if (s->announced)
		return 0;
	int rc = rados_getaddrs(rbd_conn_handle(in->conn), &addrs);
	if (rc < 0)
		return rc;
	snprintf(name, sizeof(name), RBD_LU_STATE_GATEWAY_XATTR, s->gateway);
	rc = rados_setxattr(in->io, s->oid, name, addrs, strlen(addrs));
	free(addrs);
	if (rc == 0)
		s->announced = true;
	return rc;
}

static int load_once(struct rbd_lu_state *s, struct instance *in, struct sbuf *rec, uint64_t *version)
{
	int rc = read_record(s, in, rec, version);
	if (rc == 0 && s->announced) {
		watch(s, in);
		return 0;
	}
	if (rc == -ENOENT) {
		/* The first gateway ever: an empty record that can be watched; another may beat us to it. */
		rados_write_op_t op = rados_create_write_op();
		rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
		rc = rados_write_op_operate(op, in->io, s->oid, NULL, 0);
		rados_release_write_op(op);
		if (rc < 0 && rc != -EEXIST)
			return rc;
		rc = 0;
	}
	if (rc < 0)
		return rc;
	if (!s->announced) {
		if ((rc = announce(s, in)) < 0) {
			if (rc == -LU_EBLOCKLISTED)
				return rc;
			log_warn("%s: cannot publish this gateway's cluster address (%s): the others cannot fence it",
				 s->oid, strerror(-rc));
			s->announced = true; /* not at every load */
		}
	}
	if ((rc = read_record(s, in, rec, version)) < 0)
		return rc;
	watch(s, in);
	return 0;
}

int rbd_lu_state_load(struct rbd_lu_state *s, struct sbuf *rec, uint64_t *version)
{
	if (s->unreachable_until && mono_ms() < s->unreachable_until)
		return -EAGAIN;
	/* Notices that came before this read are answered by what it reads. */
	pthread_mutex_lock(&s->lock);
	if (s->ncovered + s->npending <= RBD_LU_STATE_MAX_NOTICES) {
		memcpy(s->covered + s->ncovered, s->pending, s->npending * sizeof(*s->pending));
		s->ncovered += s->npending;
	}
	s->npending = 0;
	pthread_mutex_unlock(&s->lock);

	int rc = load_once(s, cur(s), rec, version);
	if (rc == -LU_EBLOCKLISTED && renew_instance(s) == 0)
		rc = load_once(s, cur(s), rec, version);
	return rc;
}

int rbd_lu_state_store(struct rbd_lu_state *s, const void *rec, size_t len, uint64_t expect, uint64_t *version)
{
	struct instance *in = cur(s);
	rados_write_op_t op = rados_create_write_op();

	rados_write_op_assert_version(op, expect);
	rados_write_op_write_full(op, rec, len);
	int rc = rados_write_op_operate(op, in->io, s->oid, NULL, 0);
	rados_release_write_op(op);
	if (rc == -LU_EBLOCKLISTED) {
		/* Loaded again on the new client before it runs again. */
		return renew_instance(s) == 0 ? -ESTALE : rc;
	}
	if (rc == -ERANGE || rc == -EOVERFLOW || rc == -ENOENT)
		return -ESTALE;
	if (rc < 0)
		return rc;
	*version = rados_get_last_version(in->io);

	char *reply = NULL;
	size_t reply_len = 0;
	rc = rados_notify2(in->wio, s->oid, "", 0, RBD_LU_STATE_NOTIFY_MS, &reply, &reply_len);
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
	rados_ioctx_t wio = cur(s)->wio;
	size_t n;

	do {
		pthread_mutex_lock(&s->lock);
		n = s->ncovered < 64 ? s->ncovered : 64;
		memcpy(batch, s->covered + s->ncovered - n, n * sizeof(*batch));
		s->ncovered -= n;
		pthread_mutex_unlock(&s->lock);
		for (size_t i = 0; i < n; i++)
			rados_notify_ack(wio, s->oid, batch[i].id, batch[i].cookie, NULL, 0);
	} while (n > 0);
}

int rbd_lu_state_witness(struct rbd_lu_state *s, unsigned *seen, size_t max, size_t *nseen)
{
	struct instance *in = cur(s);
	char *reply = NULL;
	size_t reply_len = 0, nacks = 0, ntimeouts = 0;
	struct notify_ack_t *acks = NULL;
	struct notify_timeout_t *timeouts = NULL;

	*nseen = 0;
	int rc = rados_notify2(in->wio, s->oid, RBD_LU_STATE_WITNESS_MSG, (int)strlen(RBD_LU_STATE_WITNESS_MSG),
			       RBD_LU_STATE_WITNESS_MS, &reply, &reply_len);
	/* A watcher that did not answer in time ends the notification with -ETIMEDOUT, the acks still there. */
	if (!reply)
		return rc < 0 ? rc : -EIO;
	if (rados_decode_notify_response(reply, reply_len, &acks, &nacks, &timeouts, &ntimeouts) < 0) {
		rados_buffer_free(reply);
		return -EIO;
	}
	for (size_t i = 0; i < nacks && *nseen < max; i++) {
		char text[32];
		unsigned g;
		size_t l = acks[i].payload_len < sizeof(text) - 1 ? acks[i].payload_len : sizeof(text) - 1;
		memcpy(text, acks[i].payload, l);
		text[l] = '\0';
		/* An empty answer (a gateway that knows no witness, acknowledging after a load) names nobody. */
		if (sscanf(text, "gateway %u", &g) == 1)
			seen[(*nseen)++] = g;
	}
	rados_free_notify_response(acks, nacks, timeouts);
	rados_buffer_free(reply);
	return 0;
}

const void *rbd_lu_state_cluster(const struct rbd_lu_state *s) { return s->cl; }

int rbd_lu_state_peer_addr(struct rbd_lu_state *s, unsigned gateway, char *addr, size_t len)
{
	char name[48];

	if (len < 2)
		return -EINVAL;
	snprintf(name, sizeof(name), RBD_LU_STATE_GATEWAY_XATTR, gateway);
	int n = rados_getxattr(cur(s)->cio, s->oid, name, addr, len - 1);
	if (n == -ENODATA || n == -ENOENT || n == 0) {
		addr[0] = '\0';
		return 0; /* it never published one */
	}
	if (n < 0)
		return n;
	addr[n] = '\0';
	return n;
}

int rbd_lu_state_fence(struct rbd_lu_state *s, unsigned gateway, const char *given)
{
	struct instance *in = cur(s);
	char addr[256];

	if (given && *given) {
		snprintf(addr, sizeof(addr), "%s", given);
	} else {
		int n = rbd_lu_state_peer_addr(s, gateway, addr, sizeof(addr));
		if (n <= 0)
			return n; /* it never published one: nothing to fence */
	}
	/* rados_getaddrs gives "[v2:IP:PORT/NONCE,v1:IP:PORT/NONCE]"; the blocklist takes one "IP:PORT/NONCE". */
	char *a = addr, *end;
	if (*a == '[')
		a++;
	if ((end = strpbrk(a, ",]")))
		*end = '\0';
	if (!strncmp(a, "v2:", 3) || !strncmp(a, "v1:", 3))
		a += 3;
	/* A client binds no port: its address is IP:0/NONCE, the nonce telling its instances apart. */
	const char *entry = a, *slash = strchr(a, '/');
	char *mine = NULL, *hit = NULL;
	const char *nonce = slash ? slash : a;
	if (rados_getaddrs(rbd_conn_handle(in->conn), &mine) == 0)
		hit = strstr(mine, nonce);
	if (hit && (hit[strlen(nonce)] < '0' || hit[strlen(nonce)] > '9')) {
		/* Our own client (two gateway numbers in one process): never fence ourselves. */
		free(mine);
		return 0;
	}
	free(mine);
	int rc = rados_blocklist_add(rbd_conn_handle(in->conn), (char *)entry, 0);
	if (rc == 0)
		log_info("%s: gateway %u's cluster client %s fenced (blocklisted)", s->oid, gateway, entry);
	return rc;
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - t0->tv_sec) * 1000u + (uint64_t)((now.tv_nsec - t0->tv_nsec) / 1000000L);
}

static unsigned caw_lease_s(const struct rbd_lu_state *s)
{
	unsigned op = rbd_cluster_op_timeout(s->cl) ? rbd_cluster_op_timeout(s->cl) : STORE_RBD_OSD_OP_TIMEOUT;
	return 2 * op + RBD_LU_STATE_CAW_LEASE_EXTRA_S;
}

void rbd_lu_state_set_gate(struct rbd_lu_state *s, struct rbd_gate *gate)
{
	s->gate = gate;
	if (gate)
		rbd_gate_set_ack(gate, hold_in_force, s);
}

void rbd_lu_state_expire_holds(struct rbd_lu_state *s)
{
	if (s->gate)
		rbd_gate_expire(s->gate);
}

/* The other gateways let go of their holds (a release owed; the answers are not waited for long). */
static void release_others(struct rbd_lu_state *s, struct instance *in)
{
	char msg[160], *reply = NULL;
	size_t reply_len = 0;

	if (!s->caw_holding)
		return;
	s->caw_holding = false;
	int n = snprintf(msg, sizeof(msg), RBD_LU_STATE_RELEASE_MSG " %s", s->cookie);
	int rc = rados_notify2(in->wio, s->oid, msg, n, RBD_LU_STATE_HOLD_MS, &reply, &reply_len);
	if (reply)
		rados_buffer_free(reply);
	if (rc < 0 && rc != -ETIMEDOUT)
		log_warn("%s: cannot tell the other gateways that a COMPARE AND WRITE is over (%s): their holds end "
			 "with the lock's lease", s->oid, strerror(-rc));
}

/*
 * Every other gateway watching the record holds its writes that overlap [off, off + len), and has
 * none of them under way any more: 0; -ETIMEDOUT when one did not say so within
 * RBD_LU_STATE_HOLD_MS, -EAGAIN when one refused (or is of a version that cannot hold).
 */
static int hold_others(struct rbd_lu_state *s, struct instance *in, uint64_t off, uint64_t len)
{
	char msg[256], *reply = NULL;
	size_t reply_len = 0, nacks = 0, ntimeouts = 0, refused = 0;
	struct notify_ack_t *acks = NULL;
	struct notify_timeout_t *timeouts = NULL;
	uint64_t lease = caw_lease_s(s) * 1000u, spent = ms_since(&s->caw_since);

	/* The holds end no later than the lock: a holder that died holds nothing for longer. */
	int n = snprintf(msg, sizeof(msg), RBD_LU_STATE_HOLD_MSG " %llu %llu %llu %s", (unsigned long long)off,
			 (unsigned long long)len, (unsigned long long)(lease > spent ? lease - spent : 0), s->cookie);
	s->caw_holding = true;
	int rc = rados_notify2(in->wio, s->oid, msg, n, RBD_LU_STATE_HOLD_MS, &reply, &reply_len);
	if (reply && rados_decode_notify_response(reply, reply_len, &acks, &nacks, &timeouts, &ntimeouts) == 0) {
		for (size_t i = 0; i < nacks; i++) {
			refused += acks[i].payload_len != strlen(RBD_LU_STATE_HELD) ||
				   memcmp(acks[i].payload, RBD_LU_STATE_HELD, acks[i].payload_len) != 0;
		}
		rados_free_notify_response(acks, nacks, timeouts);
		if (ntimeouts)
			rc = -ETIMEDOUT;
		else if (refused)
			rc = -EAGAIN;
	} else if (rc == 0) {
		rc = -EIO;
	}
	if (reply)
		rados_buffer_free(reply);
	if (rc < 0 && !s->hold_failing)
		log_warn("%s: not every gateway held its writes for a COMPARE AND WRITE (%zu did not answer within %u "
			 "ms, %zu refused: %s): such commands get NOT READY until they do", s->oid, ntimeouts,
			 RBD_LU_STATE_HOLD_MS, refused, strerror(-rc));
	else if (rc == 0 && s->hold_failing)
		log_info("%s: every gateway holds its writes for COMPARE AND WRITE again", s->oid);
	s->hold_failing = rc < 0;
	return rc;
}

int rbd_lu_state_caw_lock(struct rbd_lu_state *s, uint64_t off, uint64_t len)
{
	struct instance *in = cur(s);
	struct timeval lease = {.tv_sec = caw_lease_s(s), .tv_usec = 0};
	unsigned pause_ms = 1;
	int rc;

	/* The lease counts from before the request: what the cluster grants ends no earlier. */
	clock_gettime(CLOCK_MONOTONIC, &s->caw_since);
	for (;;) {
		rc = rados_lock_exclusive(in->cio, s->caw_oid, CAW_LOCK_NAME, s->cookie, "isthmus COMPARE AND WRITE",
					  &lease, LIBRADOS_LOCK_FLAG_MAY_RENEW);
		if (rc != -EBUSY || ms_since(&s->caw_since) + pause_ms > RBD_LU_STATE_CAW_WAIT_MS)
			break;
		/* Held by another gateway for one read and one write: look again soon. */
		struct timespec t = {.tv_sec = 0, .tv_nsec = (long)pause_ms * 1000000L};
		nanosleep(&t, NULL);
		if (pause_ms < 16)
			pause_ms *= 2;
	}
	if (rc < 0 && rc != -EBUSY)
		log_warn("%s: cannot take the compare-and-write lock: %s", s->caw_oid, strerror(-rc));
	/* librbd's own single call is atomic at the OSD against every write: no hold for it. */
	if (rc == 0 && !store_rbd_caw_atomic(off, len) && (rc = hold_others(s, in, off, len)) < 0) {
		release_others(s, in);
		rados_unlock(in->cio, s->caw_oid, CAW_LOCK_NAME, s->cookie);
	}
	return rc;
}

void rbd_lu_state_caw_unlock(struct rbd_lu_state *s)
{
	uint64_t held = ms_since(&s->caw_since);
	if (held >= caw_lease_s(s) * 1000u)
		log_error("%s: a compare-and-write took %llu ms, longer than its lock's lease: another gateway may "
			  "have compared the same blocks meanwhile", s->caw_oid, (unsigned long long)held);
	/* Released before the lock goes: the next holder's hold is never ended by ours. */
	release_others(s, cur(s));
	int rc = rados_unlock(cur(s)->cio, s->caw_oid, CAW_LOCK_NAME, s->cookie);
	if (rc < 0 && rc != -ENOENT)
		log_warn("%s: cannot give the compare-and-write lock back (%s): the others wait for its lease to end",
			 s->caw_oid, strerror(-rc));
}
