/*
 * What the RBD store's files share (see store_rbd.h for the store itself):
 *   store_rbd.c   opening, closing and reopening an image (the store's life)
 *   rbd_io.c      handing ios to librbd and finishing them on the engine's thread
 *   rbd_caw.c     compare-and-write longer than librbd's atomic unit
 *   rbd_extent.c  allocation status (GET LBA STATUS)
 */
#ifndef ISTHMUS_STORE_STORE_RBD_INT_H
#define ISTHMUS_STORE_STORE_RBD_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <rbd/librbd.h>

#include "store/offload.h"
#include "store/store.h"
#include "store/store_io.h"
#include "store/store_rbd_cluster.h"

/*
 * What librados answers, for good, once the cluster has blocklisted the client instance
 * (`ceph osd blocklist add`, or a lock broken by another gateway): only a new instance
 * gets through again.
 */
#define RBD_EBLOCKLISTED ESHUTDOWN

/*
 * READY: ios go to librbd. LOST: the client was blocklisted; ios fail with -ETIMEDOUT (NOT
 * READY, becoming ready) and, once none is left at librbd, a worker reopens the image on a
 * new client instance (REOPENING) and the store is READY again.
 */
enum rbd_state { RBD_READY, RBD_LOST, RBD_REOPENING };

/* An open image and what it lives on, let go together (store_rbd.c's image_release). */
struct rbd_image_ref {
	struct rbd_conn *conn;        /* the client instance ioctx was made on */
	rados_ioctx_t ioctx;
	rbd_image_t img;
	bool watched;                 /* the header watch (header_updated) is set */
	uint64_t watch_handle;
};

struct rbd_reopen {
	struct offload_job job;
	struct rbd_store *rs;
	struct rbd_image_ref old;     /* what the store had: let go by the worker */
	struct rbd_image_ref now;     /* what the worker opened (now.conn NULL: nothing) */
	uint64_t size;
	char *err;
};

struct rbd_store {
	struct store st;              /* first: the store layer hands us &st */
	struct rbd_cluster *cl;
	struct rbd_image_ref im;
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
	 * The connection's in-flight budget (store_rbd_cluster.h): ios that do not fit wait in
	 * queued (FIFO) until completions give some back; the budget the finished ones return is
	 * given back once per rbds_ready.
	 */
	struct rbd_budget_waiter waiter;
	struct store_io *queued, **queued_tail;
	unsigned put_ops;
	uint64_t put_bytes;
	unsigned budget_ops;          /* the whole budget: an io larger than it goes through a worker */
	uint64_t budget_bytes;
	/*
	 * A compare-and-write longer than librbd's atomic unit runs alone: ios submitted meanwhile
	 * wait in held (FIFO) until it has written or miscompared.
	 */
	uint64_t obj_size;            /* bytes of one RADOS object of the image */
	struct store_io *exclusive;
	struct store_io *held, **held_tail;
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

static inline struct rbd_store *rbds_of(struct store *st) { return (struct rbd_store *)st; }

/* store_rbd.c: the image's life, on the engine's thread. */
void rbd_lost(struct rbd_store *rs);
void rbd_reopen_start(struct rbd_store *rs);
void rbd_close_now(struct rbd_store *rs);
void rbd_apply_resize(struct rbd_store *rs);

/* rbd_io.c */
void rbds_submit(struct store *st, struct store_engine *e, struct store_io *io);
void rbds_ready(void *arg);
int rbd_watch_with(struct rbd_store *rs, struct store_engine *e);
void rbd_drain_in_flight(struct rbd_store *rs);
const char *rbd_flat_data(const struct store_io *io, size_t want, char **bounce);

/* rbd_caw.c */
bool rbd_caw_is_atomic(const struct store_io *io);
void rbd_caw_completed(rbd_completion_t c, void *arg);
void rbd_caw_start(struct rbd_store *rs, struct store_io *io);
void rbd_caw_step(struct rbd_store *rs, struct store_io *io, ssize_t r);

/* rbd_extent.c */
int rbds_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run);

#endif
