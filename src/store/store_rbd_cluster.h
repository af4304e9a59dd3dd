/*
 * One RADOS connection per (ceph.conf, client id) for the whole process: every RBD LU of that
 * cluster and identity shares it, so a target with many LUNs holds one set of monitor and OSD
 * sessions, not one per LU.
 */
#ifndef ISTHMUS_STORE_STORE_RBD_CLUSTER_H
#define ISTHMUS_STORE_STORE_RBD_CLUSTER_H

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

#endif
