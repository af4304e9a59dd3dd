/*
 * One RADOS connection per (ceph.conf, client id) for the whole process: every RBD LU of that
 * cluster and identity shares it, so a target with many LUNs holds one set of monitor and OSD
 * sessions, not one per LU.
 */
#ifndef ISTHMUS_STORE_STORE_RBD_CLUSTER_H
#define ISTHMUS_STORE_STORE_RBD_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include <rados/librados.h>

struct rbd_cluster;

/* A reference to the shared connection, connected on first use. NULL with *err set (malloc'd). */
struct rbd_cluster *rbd_cluster_get(const char *conf, const char *id, char **err);
void rbd_cluster_put(struct rbd_cluster *c);
/* The connection's current handle (it changes when a blocklisted one is replaced). */
rados_t rbd_cluster_handle(const struct rbd_cluster *c);

/*
 * A handle that stays valid while held: an image's ioctx lives on the handle it was made from,
 * even after rbd_cluster_reconnect made another one current. rbd_conn_put shuts the handle
 * down when it was replaced and nobody holds it any more.
 */
struct rbd_conn;
struct rbd_conn *rbd_cluster_conn_get(struct rbd_cluster *c);
rados_t rbd_conn_handle(const struct rbd_conn *k);
void rbd_conn_put(struct rbd_cluster *c, struct rbd_conn *k);

/*
 * The cluster blocklisted dead (its handle answers -EBLOCKLISTED for good): connect again with
 * a new client instance and make it current, unless someone already did. Blocks up to the
 * mount timeout (a worker's call). 0, or a negative errno with *err set (malloc'd).
 */
int rbd_cluster_reconnect(struct rbd_cluster *c, const struct rbd_conn *dead, char **err);
/* The OSD op timeout in force on this connection, seconds (0: none). */
unsigned rbd_cluster_op_timeout(const struct rbd_cluster *c);

/*
 * The connection's in-flight budget, when ceph.conf turns rbd_non_blocking_aio off: librbd
 * then submits an io on the caller's thread, and librados makes that caller wait once the
 * client has objecter_inflight_ops operations or objecter_inflight_op_bytes bytes at the OSDs.
 * The gateway keeps what its ios can put there to half of each (the rest covers librbd's own
 * requests and ios too large for the budget, which a worker submits), so an aio call made
 * on an event loop never waits there. With Ceph's default (on) there is no budget: every
 * take succeeds and rbd_budget_limits says 0.
 *
 * rbd_budget_take charges an io's operations and bytes when they fit (anything fits while
 * nothing is charged); when they do not, w is remembered and its eventfd bumped at the next
 * rbd_budget_put, so that its store tries again on its own thread.
 */
struct rbd_budget_waiter {
	struct rbd_budget_waiter *next;
	int efd;
	bool queued;
};
bool rbd_budget_take(struct rbd_cluster *c, unsigned ops, uint64_t bytes, struct rbd_budget_waiter *w);
void rbd_budget_put(struct rbd_cluster *c, unsigned ops, uint64_t bytes);
/* w's store goes away: no bump for it any more. */
void rbd_budget_forget(struct rbd_cluster *c, struct rbd_budget_waiter *w);
/* The budget, ops and bytes (docs/ceph.md); 0 and 0 when there is none. */
void rbd_budget_limits(const struct rbd_cluster *c, unsigned *ops, uint64_t *bytes);

#endif
