/*
 * What the RBD store's files share (see store_rbd.h for the store itself):
 *   store_rbd.c   opening, closing and reopening an image (the store's life)
 *   rbd_io.c      handing ios to librbd and finishing them on the engine's thread
 *   rbd_caw.c     compare-and-write longer than librbd's atomic unit
 *   rbd_extent.c  allocation status (GET LBA STATUS)
 *   rbd_gate.c    other gateways' holds on the image's writes (rbd_gate.h)
 *   rbd_state.c   the SCSI layer's state object kept next to the image (APTPL reservations)
 *
 * Threads. One image serves the store engines of several event loops at once. An io belongs to
 * the engine it was submitted through (io->eng): librbd's completion callback, on a librbd
 * thread, posts it to that engine (store_engine_post) and it finishes on that engine's thread,
 * whatever thread started or held it. Of the image's own state (struct rbd_store):
 *  - in_flight, state, excl_on, queue_on, eng, resized, new_size and retry_ms are atomics that
 *    any engine's thread reads and changes; a submitter counts its io in in_flight before it
 *    looks at state and excl_on, and a reopen or a long compare-and-write sets state or
 *    excl_on before it looks at in_flight, so that one of the two always sees the other;
 *  - the budget queue, the long compare-and-write with its held ios, and the reopen/close
 *    handshake are under lock, which the common path (READY, no long compare-and-write, the
 *    budget not exhausted or not configured) never takes;
 *  - an io held or queued through one engine and let go by another goes back to its own engine
 *    by a post, and so does the start of a long compare-and-write when another engine's
 *    completion ends the drain it waits for;
 *  - efd (resizes, budget wake-ups) is watched by the home engine (eng) alone; on_resize runs
 *    there, and so do close_pending and in_ready;
 *  - im changes only while REOPENING, which needs in_flight at 0: a counted io reads it safely.
 * The store is closed once no engine submits to it any more (the SCSI layer's LU close).
 */
#ifndef ISTHMUS_STORE_STORE_RBD_INT_H
#define ISTHMUS_STORE_STORE_RBD_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
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
	struct rbd_image_ref im;      /* replaced only while REOPENING, when no io is at librbd */
	/* What reopening needs (see enum rbd_state). */
	char *pool, *ns, *image;
	_Atomic int state;            /* enum rbd_state */
	_Atomic uint64_t retry_ms;    /* LOST: no reopen before this (monotonic ms) */
	/*
	 * ios of every engine that are at librbd, or about to be (counted before their checks of
	 * state and excl_on), or a long compare-and-write's own steps.
	 */
	_Atomic unsigned in_flight;
	pthread_mutex_t lock;         /* the fields below marked (lock) */
	struct rbd_reopen *reopen;    /* REOPENING: the worker's job (lock) */
	bool closing;                 /* close has begun: no new reopen (lock) */
	bool closed;                  /* closed while REOPENING: the job's end frees the store (lock) */
	/*
	 * The home engine: it watches efd (resizes, budget wake-ups); set once, by the first
	 * engine that attaches or submits. An io's done callback may close the store (the last
	 * flush at shutdown): rbds_ready then closes it when it has finished with it (home thread).
	 */
	_Atomic(struct store_engine *) eng;
	bool in_ready, close_pending;
	_Atomic(rbd_image_t) watch_img; /* the image header_updated asks (librbd's watcher thread) */
	int efd;                      /* bumped on a resize, a budget put, the end of a long compare-and-write */
	/*
	 * The connection's in-flight budget (store_rbd_cluster.h): ios that do not fit wait in
	 * queued (FIFO, lock; queue_on says it is not empty) until completions give some back.
	 */
	struct rbd_budget_waiter waiter;
	struct store_io *queued, **queued_tail;
	atomic_bool queue_on;
	unsigned budget_ops;          /* the whole budget: an io larger than it goes through a worker */
	uint64_t budget_bytes;
	/*
	 * A compare-and-write longer than librbd's atomic unit runs alone: ios submitted meanwhile
	 * through any engine wait in held (FIFO, lock) until it has written or miscompared.
	 * excl_on says exclusive is set; excl_draining that it still waits for in_flight to fall
	 * to 0 (the first to see that posts its start to its engine).
	 */
	uint64_t obj_size;            /* bytes of one RADOS object of the image */
	uint64_t stripe_unit;         /* the image's striping (1 object, obj_size: none) */
	uint64_t stripe_count;
	struct store_io *exclusive;
	bool excl_draining;
	atomic_bool excl_on;
	struct store_io *held, **held_tail;
	/* Other gateways' holds on writes (rbd_gate.h): every write passes it; set once, at open. */
	struct rbd_gate *gate;
	/* Written by librbd's watcher thread (and a reopen), read on the home engine's thread. */
	atomic_bool resized;
	_Atomic uint64_t new_size;
	void (*on_resize)(struct store *st, void *arg);
	void *on_resize_arg;
	/* An image release that did not finish in time still uses cl: the store is kept, not freed. */
	bool release_abandoned;
	/*
	 * The image's or its pool's configuration turns librbd's cache on over the connection's
	 * rbd_cache=false (image_cache_check): refuse_cache (a gateway group serves it) makes the
	 * open fail; otherwise cache_from says whose configuration it was (NULL: off), set by every
	 * open and reopen (a worker), read on the loop.
	 */
	bool refuse_cache;
	_Atomic(const char *) cache_from;
	struct rbd_store *abandoned_next;
	/* The SCSI layer's state object next to the image (rbd_state.c), as read at open. */
	char *pr_oid;
	char *pr_blob;
	size_t pr_len;
	bool pr_found;
};

/* The engine this thread submits through (NULL: not an engine's thread, e.g. a worker). */
extern _Thread_local struct store_engine *rbd_thread_engine;

/* store_io.store_priv slots. */
enum { PRIV_COMPLETION, PRIV_BOUNCE, PRIV_MISMATCH, PRIV_PHASE, PRIV_GATE };

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
/* librbd's thread: the io's librbd call finished; it goes to its engine. */
void rbd_io_completed(rbd_completion_t c, void *arg);
/* io stops counting in in_flight; the last one out starts what waited for that. */
void rbd_uncount(struct rbd_store *rs);
/* fn(io) on io's engine's thread, later (a post, even from that thread). */
void rbd_post_io(struct store_io *io, void (*fn)(struct store_engine_post *p));
static inline struct store_io *rbd_posted_io(struct store_engine_post *p)
{
	return (struct store_io *)(void *)((char *)p - offsetof(struct store_io, post));
}
void rbd_wake_home(struct rbd_store *rs);
/* store_io_complete for an io that may have passed the gate (it leaves it first). */
void rbd_io_complete(struct store_io *io, int result);

/* rbd_caw.c */
bool rbd_caw_is_atomic(const struct store_io *io);
/* io (not counted) becomes the exclusive one, or is held behind the one there is. */
void rbd_caw_start(struct rbd_store *rs, struct store_io *io);
/* in_flight fell to 0: a long compare-and-write waiting for that starts (on its engine). */
void rbd_caw_kick(struct rbd_store *rs);
/* One step of a long compare-and-write (counted unless it was draining). */
void rbd_caw_step(struct rbd_store *rs, struct store_io *io, ssize_t r);
/* Whether io waits behind the exclusive compare-and-write (then it is held). */
bool rbd_caw_hold(struct rbd_store *rs, struct store_io *io);

/*
 * rbd_caw.c, a test hook: ms a long compare-and-write waits between its comparison and its write
 * (ISTHMUS_TEST_CAW_WRITE_DELAY_MS, read once when the first image opens; 0: none).
 */
void rbd_caw_test_hook_init(void);

/*
 * rbd_gate.c: the store's side. enter: a write (not yet counted) passes the gate, counted until
 * rbd_gate_leave (rbd_io_complete), or it meets a hold and waits (true) until the hold ends, then
 * goes through rbds_submit again on its engine.
 */
struct rbd_gate *rbd_gate_new(void);
bool rbd_gate_enter(struct rbd_gate *g, struct store_io *io);
void rbd_gate_leave(struct rbd_gate *g, struct store_io *io);

/* rbd_state.c: the state object, read at open (a worker or start-up; 0 or -errno with *err set). */
int rbd_state_load(struct rbd_store *rs, char **err);
int rbds_state_get(struct store *st, char **data, size_t *len);
int rbds_state_put(struct store *st, const void *data, size_t len);
const char *rbds_state_name(const struct store *st);

/* rbd_extent.c */
int rbds_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run);

#endif
