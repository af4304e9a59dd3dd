/*
 * Asynchronous store I/O: the one way the SCSI layer reaches a medium.
 *
 * A command's access to its store is a struct store_io submitted to the store engine of the
 * event loop that owns the command. Its done callback runs on that loop's thread: for stores
 * that cannot wait (memory, null) and for reads the page cache satisfies, before store_io_submit
 * returns; otherwise later, from store_engine_reap. Never on another thread, never twice.
 *
 * Three kinds of store sit behind the same call:
 *  - stores with their own asynchronous API (RBD) implement store_ops.submit and finish each io
 *    with store_io_complete on the engine's thread: the medium's own threads hand finished ios
 *    over with store_engine_post (a store may also watch a descriptor with store_engine_watch);
 *  - stores with a descriptor (files, block devices; store.fd >= 0) are driven by the engine
 *    itself: io_uring where the kernel allows it, else the engine's worker threads running the
 *    store's synchronous ops;
 *  - stores that never wait (store.wait == STORE_WAIT_NEVER) run their synchronous ops inline.
 *
 * A network store with millisecond latencies keeps hundreds of ios in flight per LU: nothing here
 * serialises ios of one store; ordering between commands (ORDERED, COMPARE AND WRITE on stores
 * without STORE_CAP_COMPARE_WRITE, overlapping writes) is the SCSI layer's business.
 */
#ifndef ISTHMUS_STORE_STORE_IO_H
#define ISTHMUS_STORE_STORE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct store;
struct store_engine;
struct offload;

/*
 * A call handed to an engine's thread from any thread (store_engine_post): a store whose
 * medium completes on threads of its own (librbd's) posts each finished io this way.
 */
struct store_engine_post {
	struct store_engine_post *next;
	void (*fn)(struct store_engine_post *p);
};

enum store_io_op {
	STORE_IO_READ,          /* [off, off+len) -> iov */
	STORE_IO_WRITE,         /* iov -> [off, off+len) */
	STORE_IO_FLUSH,         /* every completed write durable; off and len ignored */
	STORE_IO_UNMAP,         /* deallocate [off, off+len); it reads as zeros afterwards */
	STORE_IO_WRITE_ZEROES,  /* [off, off+len) reads as zeros, kept allocated where the store can */
	/* iov holds one logical block (the pattern), repeated over [off, off+len); needs STORE_CAP_WRITE_SAME */
	STORE_IO_WRITE_SAME,
	/*
	 * iov holds 2 * len bytes: the data to compare with [off, off+len), then the data to write
	 * there if they are equal, atomically with respect to every other io on the medium (on every
	 * gateway of the medium). Needs STORE_CAP_COMPARE_WRITE. A mismatch completes with
	 * result -EILSEQ and miscompare_off set; nothing is written.
	 */
	STORE_IO_COMPARE_WRITE,
};

/* store.caps: what a store offers beyond read, write and flush. */
enum store_cap {
	STORE_CAP_UNMAP = 1u << 0,
	STORE_CAP_WRITE_ZEROES = 1u << 1,
	STORE_CAP_WRITE_SAME = 1u << 2,
	STORE_CAP_COMPARE_WRITE = 1u << 3,
};

struct store_io {
	/* Set by the submitter. */
	enum store_io_op op;
	uint64_t off;                 /* bytes */
	uint64_t len;                 /* bytes of the medium the io covers */
	struct iovec *iov;            /* see the ops; the memory stays valid until done */
	unsigned iovcnt;
	void (*done)(struct store_io *io);
	void *priv;                   /* the submitter's own */
	/*
	 * Optional (NULL: never): set by the submitter once nobody wants the outcome (the command
	 * was aborted). An io the engine has not started yet then completes with -ECANCELED
	 * without touching the medium; one already started runs to its end.
	 */
	const _Atomic bool *cancelled;

	/* Set before done. */
	int result;                   /* 0, or a negative errno (-ETIMEDOUT: the store gave up waiting) */
	uint64_t miscompare_off;      /* STORE_IO_COMPARE_WRITE with -EILSEQ: offset from off of the first difference */

	/* The engine's and the store's own. */
	struct store *st;
	struct store_engine *eng;
	struct store_io *next;
	struct store_engine_post post; /* the store's, for store_engine_post */
	uint64_t store_priv[5];
	/* The engine's alone (never the store's): its worker job and io_uring bookkeeping. */
	uint64_t engine_priv[6];
};

/*
 * Starts io on st; io->done always runs exactly once, maybe before this returns (the caller must
 * then not touch io afterwards unless done told it to). An op the store does not offer completes
 * with -EOPNOTSUPP.
 */
void store_io_submit(struct store_engine *e, struct store *st, struct store_io *io);
/*
 * Without an engine (e NULL: tools, fuzzers, tests) the store's synchronous ops run inline, on
 * the caller's thread; a store with its own submit then completes the io with -EOPNOTSUPP.
 * With one, stores without their own submit get STORE_IO_WRITE_SAME from the engine itself
 * (the pattern written in chunks), whatever their caps.
 */

/* For stores with their own submit: finish io on the engine's thread (sets result, calls done). */
void store_io_complete(struct store_io *io, int result);

/*
 * Any thread: p->fn(p) runs on e's thread, from store_engine_reap, once. Lock-free; e's
 * descriptor is signalled only when the queue goes from empty to non-empty, so a burst of posts
 * costs the engine's thread one wake-up. p must not be posted again before its fn has started.
 * Posts still queued when e is freed are run by store_engine_free.
 */
void store_engine_post(struct store_engine *e, struct store_engine_post *p);

enum store_engine_backend {
	STORE_BACKEND_AUTO,     /* io_uring when it works here, else workers */
	STORE_BACKEND_URING,
	STORE_BACKEND_WORKERS,
};

struct store_engine_params {
	enum store_engine_backend backend;
	unsigned queue_depth;   /* io_uring submission entries; 0: default */
	unsigned workers;       /* most worker threads; 0: default */
	/*
	 * io_uring submissions wait in the ring until store_engine_submit_pending (or a full
	 * submission queue) sends them with one system call: for owners whose loop calls it before
	 * each sleep (loop_set_before_wait). Otherwise every io is submitted as it comes.
	 */
	bool batch;
};

#define STORE_ENGINE_QUEUE_DEPTH 256u  /* io_uring entries; more ios wait in the engine's own queue */
#define STORE_ENGINE_WORKERS 16u       /* worker threads at most */

/* NULL with *err set (malloc'd) when neither backend can start. */
struct store_engine *store_engine_new(const struct store_engine_params *p, char **err);
/* Stops the backends after every io in flight has completed (their done callbacks run). */
void store_engine_free(struct store_engine *e);
/*
 * Before engines that work together are freed (one process's event loops): waits, on the
 * calling thread, until none of the n engines has an io in flight, reaping all of them in turn,
 * for at most the drain bound in all. An io of one engine may end only once another engine has
 * run a posted call (a gateway group's COMPARE AND WRITE and the writes it holds back), so
 * draining them one after the other could wait out the bound and leave a completion posting
 * to an engine already freed.
 */
void store_engines_drain(struct store_engine *const *es, size_t n);
/*
 * Sends the io_uring submissions queued since the last call, in one system call; with
 * params.batch the owner calls it before its loop sleeps. Cheap when nothing is queued.
 */
void store_engine_submit_pending(struct store_engine *e);
/* Readable while completions wait: the owner's loop watches it and calls store_engine_reap. */
int store_engine_fd(const struct store_engine *e);
/* Runs the done callbacks of finished ios, and the watches whose descriptors are readable. */
void store_engine_reap(struct store_engine *e);
/* The backend that started: STORE_BACKEND_URING or STORE_BACKEND_WORKERS. */
enum store_engine_backend store_engine_backend(const struct store_engine *e);
const char *store_engine_backend_name(enum store_engine_backend b);
/* Why that backend runs (io_uring's setup error when auto fell back to workers), for the log and stats. */
const char *store_engine_backend_reason(const struct store_engine *e);
/* "auto", "io_uring", "workers" -> *b; false for anything else. */
bool store_engine_backend_parse(const char *s, enum store_engine_backend *b);
/*
 * The worker pool behind the engine, for work that is not an io (long medium operations,
 * reservation state writes): its completions are reaped by store_engine_reap too.
 */
struct offload *store_engine_offload(struct store_engine *e);

struct store_engine_stats {
	uint64_t submitted;
	uint64_t completed;
	uint64_t inline_completed;    /* done before store_io_submit returned */
	uint64_t uring_submitted;
	uint64_t uring_enters;        /* io_uring_submit calls: uring_submitted / uring_enters = ios per system call */
	uint64_t worker_submitted;
	unsigned in_flight;
};
void store_engine_get_stats(const struct store_engine *e, struct store_engine_stats *s);

/*
 * A store with its own notification descriptor (RBD's eventfd) has ready(arg) called from
 * store_engine_reap while fd is readable. Returns 0 or a negative errno. Unwatch before closing fd.
 */
int store_engine_watch(struct store_engine *e, int fd, void (*ready)(void *arg), void *arg);
void store_engine_unwatch(struct store_engine *e, int fd);

#endif
