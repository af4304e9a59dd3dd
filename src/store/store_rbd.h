/*
 * LUNs on Ceph RBD images, through librbd's asynchronous API.
 *
 * Every medium access goes through store_ops.submit: librbd completes ios on its own threads
 * and its callback posts each to the store engine it was submitted through
 * (store_engine_post); store_io_complete then runs on that engine's loop. The synchronous
 * read/write ops are not offered. The only blocking calls are opening (bounded by the timeouts
 * below), the allocation query behind store_extent (rbd_diff_iterate2, on a worker; asked on an
 * engine's thread it answers "mapped" without the cluster) and close.
 */
#ifndef ISTHMUS_STORE_STORE_RBD_H
#define ISTHMUS_STORE_STORE_RBD_H

#include <stdbool.h>
#include <stdint.h>

struct offload_job;
struct store;
struct store_engine;

/*
 * Cluster timeouts, in seconds, applied when ceph.conf leaves them at Ceph's defaults (which
 * wait forever for OSDs and monitors, and 300 s for the first connection): below the 30 s
 * an initiator usually gives a command, so that it gets a retryable error rather than aborting.
 */
#define STORE_RBD_OSD_OP_TIMEOUT 20
#define STORE_RBD_MON_OP_TIMEOUT 20
#define STORE_RBD_MOUNT_TIMEOUT 10

struct store_rbd_spec {
	const char *pool;
	const char *image;
	const char *ns;       /* RADOS namespace; NULL or "": the default one */
	const char *conf;     /* ceph.conf path; NULL: Ceph's search ($CEPH_CONF, /etc/ceph/ceph.conf) */
	const char *id;       /* client id without "client."; NULL: "admin" */
	bool read_only;
	/*
	 * Several gateways serve the image (docs/gateways.md): an image whose own or whose pool's
	 * configuration turns librbd's cache on is refused (the open fails), rather than served
	 * with a cache on each gateway.
	 */
	bool refuse_cache;
};

/*
 * Opens pool/image, sharing the process's cluster connection with every other image of the same
 * conf and id. Blocks at most about STORE_RBD_MOUNT_TIMEOUT + STORE_RBD_OSD_OP_TIMEOUT seconds
 * when the cluster is unreachable. NULL with *err set (malloc'd) on failure.
 */
struct store *store_rbd_open(const struct store_rbd_spec *spec, char **err);

bool store_is_rbd(const struct store *st);

/*
 * Watch the image's notifications (size changes, budget wake-ups) on e now instead of at the
 * first io, so that a size change made elsewhere (`rbd resize`) is seen even on an idle LU. The
 * first engine to attach or submit becomes the store's home engine; ios may come through any
 * number of engines and each completes on its own (store_rbd_int.h). Returns 0 or a negative errno.
 */
int store_rbd_attach(struct store *st, struct store_engine *e);

/*
 * cb runs on the home engine's thread after the image's size changed (st->size is the new
 * size by then).
 */
void store_rbd_on_resize(struct store *st, void (*cb)(struct store *st, void *arg), void *arg);

/*
 * Runs j's work on one of e's workers, where it may wait for the cluster (an image opening or
 * reopening), and its done callback back on e's thread; jobs of one key run one at a time.
 */
void store_rbd_offload(struct store_engine *e, struct offload_job *j, const void *key,
		       void (*work)(struct offload_job *j), void (*done)(struct offload_job *j));

/*
 * NULL when librbd's cache is off for st's image, as the gateway sets it; otherwise whose
 * configuration turned it on ("image" or "pool": `rbd config image|pool set ... rbd_cache true`),
 * which librbd applies over the client's setting (docs/ceph.md).
 */
const char *store_rbd_cache_override(const struct store *st);

/*
 * Whether a compare-and-write of [off, off + len) is one librbd call, atomic at the OSD (within
 * one 512-byte sector); a longer one is a read, a comparison and a write (rbd_caw.c).
 */
bool store_rbd_caw_atomic(uint64_t off, uint64_t len);

/* Cluster connections open in this process (shared ones count once). */
unsigned store_rbd_cluster_count(void);

/*
 * A closed RBD store lets its image go on a thread of its own (the event loop never waits for
 * the cluster): a stopping process waits here for those still running, each at most the OSD op
 * timeout and a second from its start. Returns how many did not finish (they are logged).
 */
unsigned store_rbd_releases_wait(void);

#endif
