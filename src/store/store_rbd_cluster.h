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
rados_t rbd_cluster_handle(const struct rbd_cluster *c);
/* The OSD op timeout in force on this connection, seconds (0: none). */
unsigned rbd_cluster_op_timeout(const struct rbd_cluster *c);

#endif
