/* The process's shared RADOS connections (see store_rbd_cluster.h). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_rbd.h"
#include "store/store_rbd_cluster.h"
#include "util/sbuf.h"

/* One client instance of the cluster: a blocklisted one is replaced, not reused. */
struct rbd_conn {
	rados_t handle;
	unsigned refs;       /* the cluster's own (while current) and every image's on it */
};

struct rbd_cluster {
	struct rbd_cluster *next;
	char *conf;          /* "" for Ceph's own search */
	char *id;
	struct rbd_conn *conn; /* the current instance */
	unsigned refs;
	unsigned op_timeout;
	pthread_mutex_t reconnect_lock; /* one reconnection at a time; never held with clusters_lock */
	/* The in-flight budget (store_rbd_cluster.h): limits, what is charged, who waits. */
	pthread_mutex_t budget_lock;
	unsigned budget_ops, used_ops;
	uint64_t budget_bytes, used_bytes;
	struct rbd_budget_waiter *waiters;
};

/* LUs are opened on the loop thread, but tests open them from several threads. */
static pthread_mutex_t clusters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbd_cluster *clusters;
/*
 * The client instances' references and each cluster's current one. Not clusters_lock, which a
 * first connection holds for up to the mount timeout: an image closed on the loop meanwhile
 * must not wait for it.
 */
static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Ceph's defaults wait forever for an OSD or a monitor. An option still at its default gets
 * ours; one the administrator set in ceph.conf is kept.
 */
static int set_default_timeout(rados_t r, const char *opt, const char *ceph_default, unsigned ours, unsigned *in_force)
{
	char cur[32] = "";
	char v[16];

	if (rados_conf_get(r, opt, cur, sizeof(cur)) == 0 && strcmp(cur, ceph_default) != 0) {
		if (in_force)
			*in_force = (unsigned)strtoul(cur, NULL, 10);
		return 0;
	}
	snprintf(v, sizeof(v), "%u", ours);
	if (in_force)
		*in_force = ours;
	return rados_conf_set(r, opt, v);
}

static int cluster_connect(struct rbd_cluster *c, rados_t *out, char **err)
{
	rados_t r;
	int rc = rados_create(&r, c->id);

	if (rc < 0) {
		*err = xasprintf("rados_create(client.%s): %s", c->id, strerror(-rc));
		return rc;
	}
	rc = rados_conf_read_file(r, *c->conf ? c->conf : NULL);
	if (rc < 0) {
		*err = xasprintf("cannot read Ceph configuration %s: %s", *c->conf ? c->conf : "($CEPH_CONF or /etc/ceph/ceph.conf)",
				 strerror(-rc));
		goto fail;
	}
	if ((rc = set_default_timeout(r, "rados_osd_op_timeout", "0", STORE_RBD_OSD_OP_TIMEOUT, &c->op_timeout)) < 0 ||
	    (rc = set_default_timeout(r, "rados_mon_op_timeout", "0", STORE_RBD_MON_OP_TIMEOUT, NULL)) < 0 ||
	    (rc = set_default_timeout(r, "client_mount_timeout", "300", STORE_RBD_MOUNT_TIMEOUT, NULL)) < 0) {
		*err = xasprintf("cannot set Ceph timeouts: %s", strerror(-rc));
		goto fail;
	}
	/*
	 * No librbd write-back cache: a write is acknowledged to the initiator only once the OSDs
	 * have it, as it would be on every other gateway of the image (several paths, several
	 * targets), and a gateway that dies loses nothing it acknowledged.
	 */
	if ((rc = rados_conf_set(r, "rbd_cache", "false")) < 0) {
		*err = xasprintf("cannot turn the librbd cache off: %s", strerror(-rc));
		goto fail;
	}
	/*
	 * rbd_non_blocking_aio (Ceph's default true): an aio call hands the io to librbd's thread
	 * pool, waking it for every io. Set to false in ceph.conf, librbd submits on the caller's
	 * thread (a tenth less CPU per io, but the loop then does librbd's work, which costs
	 * throughput on a machine with few cores), and the caller would wait in librados's
	 * throttle past its in-flight limits: the budget below then keeps the gateway's ios under
	 * them. With the default there is no budget (librbd's pool waits, never the loop).
	 */
	char v[32] = "";
	c->budget_ops = 0;
	c->budget_bytes = 0;
	if (rados_conf_get(r, "rbd_non_blocking_aio", v, sizeof(v)) == 0 && strcmp(v, "false") == 0) {
		unsigned long long ops = 1024, bytes = 100ull << 20;
		if (rados_conf_get(r, "objecter_inflight_ops", v, sizeof(v)) == 0 && strtoull(v, NULL, 10) > 0)
			ops = strtoull(v, NULL, 10);
		if (rados_conf_get(r, "objecter_inflight_op_bytes", v, sizeof(v)) == 0 && strtoull(v, NULL, 10) > 0)
			bytes = strtoull(v, NULL, 10);
		c->budget_ops = ops / 2 > 0 ? (unsigned)(ops / 2 < UINT32_MAX ? ops / 2 : UINT32_MAX) : 1;
		c->budget_bytes = bytes / 2 > 0 ? bytes / 2 : 1;
	}
	/*
	 * librados's completion threads (librados_thread_count, Ceph's default 2), which also run
	 * librbd's handling of every io: with two, each io wakes an idle one, and the two contend
	 * for librbd's locks; one thread serves the same I/O rates for a quarter to a third less
	 * CPU per io (docs/performance.md). A value other than Ceph's default in ceph.conf is kept.
	 */
	if (rados_conf_get(r, "librados_thread_count", v, sizeof(v)) == 0 && strcmp(v, "2") == 0 &&
	    (rc = rados_conf_set(r, "librados_thread_count", "1")) < 0) {
		*err = xasprintf("cannot set librados_thread_count: %s", strerror(-rc));
		goto fail;
	}
	/*
	 * An UNMAP smaller than librbd's discard granularity must still leave zeros behind (the
	 * LU promises LBPRZ): librbd then zeroes what it cannot deallocate instead of skipping it.
	 */
	if ((rc = rados_conf_set(r, "rbd_skip_partial_discard", "false")) < 0) {
		*err = xasprintf("cannot set rbd_skip_partial_discard: %s", strerror(-rc));
		goto fail;
	}
	rc = rados_connect(r);
	if (rc < 0) {
		*err = xasprintf("cannot connect to the Ceph cluster of %s as client.%s: %s",
				 *c->conf ? c->conf : "the default configuration", c->id, strerror(-rc));
		goto fail;
	}
	*out = r;
	return 0;
fail:
	rados_shutdown(r);
	return rc;
}

struct rbd_cluster *rbd_cluster_get(const char *conf, const char *id, char **err)
{
	struct rbd_cluster *c;

	conf = conf ? conf : "";
	id = id && *id ? id : "admin";
	pthread_mutex_lock(&clusters_lock);
	for (c = clusters; c; c = c->next) {
		if (strcmp(c->conf, conf) == 0 && strcmp(c->id, id) == 0) {
			c->refs++;
			pthread_mutex_unlock(&clusters_lock);
			return c;
		}
	}
	c = xcalloc(1, sizeof(*c));
	c->conf = xstrdup(conf);
	c->id = xstrdup(id);
	/* Connecting under the lock: a second LU of the same cluster waits for this one's answer. */
	rados_t r;
	if (cluster_connect(c, &r, err) < 0) {
		pthread_mutex_unlock(&clusters_lock);
		free(c->conf);
		free(c->id);
		free(c);
		return NULL;
	}
	c->conn = xcalloc(1, sizeof(*c->conn));
	c->conn->handle = r;
	c->conn->refs = 1;
	pthread_mutex_init(&c->reconnect_lock, NULL);
	pthread_mutex_init(&c->budget_lock, NULL);
	c->refs = 1;
	c->next = clusters;
	clusters = c;
	pthread_mutex_unlock(&clusters_lock);
	return c;
}

void rbd_cluster_put(struct rbd_cluster *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&clusters_lock);
	bool last = --c->refs == 0;
	if (last) {
		for (struct rbd_cluster **p = &clusters; *p; p = &(*p)->next) {
			if (*p == c) {
				*p = c->next;
				break;
			}
		}
	}
	pthread_mutex_unlock(&clusters_lock);
	if (!last)
		return;
	rbd_conn_put(c, c->conn);
	pthread_mutex_destroy(&c->reconnect_lock);
	pthread_mutex_destroy(&c->budget_lock);
	free(c->conf);
	free(c->id);
	free(c);
}

rados_t rbd_cluster_handle(const struct rbd_cluster *c)
{
	pthread_mutex_lock(&conn_lock);
	rados_t r = c->conn->handle;
	pthread_mutex_unlock(&conn_lock);
	return r;
}

struct rbd_conn *rbd_cluster_conn_get(struct rbd_cluster *c)
{
	pthread_mutex_lock(&conn_lock);
	struct rbd_conn *k = c->conn;
	k->refs++;
	pthread_mutex_unlock(&conn_lock);
	return k;
}

rados_t rbd_conn_handle(const struct rbd_conn *k) { return k->handle; }

void rbd_conn_put(struct rbd_cluster *c, struct rbd_conn *k)
{
	(void)c;
	if (!k)
		return;
	pthread_mutex_lock(&conn_lock);
	bool last = --k->refs == 0;
	pthread_mutex_unlock(&conn_lock);
	if (!last)
		return;
	rados_shutdown(k->handle);
	free(k);
}

int rbd_cluster_reconnect(struct rbd_cluster *c, const struct rbd_conn *dead, char **err)
{
	int rc = 0;

	pthread_mutex_lock(&c->reconnect_lock);
	pthread_mutex_lock(&conn_lock);
	bool current = c->conn == dead;
	pthread_mutex_unlock(&conn_lock);
	if (current) {
		/* The first image to find the instance blocklisted replaces it; the others take the new one. */
		rados_t r;
		if ((rc = cluster_connect(c, &r, err)) == 0) {
			struct rbd_conn *k = xcalloc(1, sizeof(*k)), *old;
			k->handle = r;
			k->refs = 1;
			pthread_mutex_lock(&conn_lock);
			old = c->conn;
			c->conn = k;
			pthread_mutex_unlock(&conn_lock);
			rbd_conn_put(c, old);
		}
	}
	pthread_mutex_unlock(&c->reconnect_lock);
	return rc;
}

unsigned rbd_cluster_op_timeout(const struct rbd_cluster *c) { return c->op_timeout; }

unsigned store_rbd_cluster_count(void)
{
	unsigned n = 0;

	pthread_mutex_lock(&clusters_lock);
	for (const struct rbd_cluster *c = clusters; c; c = c->next)
		n++;
	pthread_mutex_unlock(&clusters_lock);
	return n;
}

bool rbd_budget_take(struct rbd_cluster *c, unsigned ops, uint64_t bytes, struct rbd_budget_waiter *w)
{
	bool ok;

	if (c->budget_ops == 0)
		return true; /* librbd's own pool submits: nothing to keep under librados's limits */
	pthread_mutex_lock(&c->budget_lock);
	ok = (c->used_ops == 0 && c->used_bytes == 0) ||
	     (ops <= c->budget_ops - (c->used_ops < c->budget_ops ? c->used_ops : c->budget_ops) &&
	      bytes <= c->budget_bytes - (c->used_bytes < c->budget_bytes ? c->used_bytes : c->budget_bytes));
	if (ok) {
		c->used_ops += ops;
		c->used_bytes += bytes;
	} else if (!w->queued) {
		w->queued = true;
		w->next = c->waiters;
		c->waiters = w;
	}
	pthread_mutex_unlock(&c->budget_lock);
	return ok;
}

void rbd_budget_put(struct rbd_cluster *c, unsigned ops, uint64_t bytes)
{
	uint64_t one = 1;

	if (c->budget_ops == 0)
		return;
	pthread_mutex_lock(&c->budget_lock);
	c->used_ops -= ops < c->used_ops ? ops : c->used_ops;
	c->used_bytes -= bytes < c->used_bytes ? bytes : c->used_bytes;
	struct rbd_budget_waiter *w = c->waiters;
	c->waiters = NULL;
	for (; w; w = w->next) {
		w->queued = false;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* The counter cannot overflow in practice. */
		}
	}
	pthread_mutex_unlock(&c->budget_lock);
}

void rbd_budget_forget(struct rbd_cluster *c, struct rbd_budget_waiter *w)
{
	pthread_mutex_lock(&c->budget_lock);
	for (struct rbd_budget_waiter **p = &c->waiters; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	w->queued = false;
	pthread_mutex_unlock(&c->budget_lock);
}

void rbd_budget_limits(const struct rbd_cluster *c, unsigned *ops, uint64_t *bytes)
{
	*ops = c->budget_ops;
	*bytes = c->budget_bytes;
}
