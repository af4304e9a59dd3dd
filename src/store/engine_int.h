/*
 * The store engine's parts (engine.c dispatches, engine_workers.c runs synchronous ops on the
 * offload pool, engine_uring.c drives descriptors with io_uring). Loop thread only, except the
 * worker's job function and store_engine_post (any thread: it touches posted and post_efd only).
 */
#ifndef ISTHMUS_STORE_ENGINE_INT_H
#define ISTHMUS_STORE_ENGINE_INT_H

#include <stdatomic.h>

#include "store/offload.h"
#include "store/store.h"
#include "store/store_io.h"

struct engine_uring;

struct engine_watch {
	struct engine_watch *next;
	int fd;
	void (*ready)(void *arg);
	void *arg;
};

struct store_engine {
	int epfd;                    /* store_engine_fd: offload's fd, io_uring's eventfd, the watches */
	struct offload *off;
	struct engine_uring *ur;     /* NULL: the workers backend */
	enum store_engine_backend backend;
	bool batch;                  /* store_engine_params.batch */
	char reason[160];
	struct engine_watch *watches;
	struct store_engine_stats stats;
	/*
	 * store_engine_post: posted is pushed by any thread (newest first) and taken whole by the
	 * engine's thread, which runs it oldest first from run (also from a reap nested in one of
	 * the calls). post_efd is written only by the push that found posted empty.
	 */
	_Atomic(struct store_engine_post *) posted;
	struct store_engine_post *run;
	int post_efd;
	/* Tags told apart in epoll_event.data.ptr. */
	char tag_offload, tag_uring, tag_post;
};

/* Finishes io on the loop thread: result, statistics, done. */
void engine_complete(struct store_io *io, int result);

/* The synchronous ops behind one io, skipping the first `skip` bytes of a read or write. */
int engine_run_sync(struct store *st, struct store_io *io, size_t skip);

/* engine_workers.c: io goes to a worker (a read after the first `skip` bytes); see offload.h for key. */
void engine_workers_submit(struct store_engine *e, struct store_io *io, size_t skip, const void *key);

/* engine_uring.c */
struct engine_uring *engine_uring_new(unsigned depth, int *efd, char **why);
void engine_uring_free(struct engine_uring *u);
/*
 * False when io_uring cannot do this io for this store (the caller uses a worker). With batch
 * the entry waits in the ring for engine_uring_flush (or for the ring to fill up).
 */
bool engine_uring_submit(struct engine_uring *u, struct store_io *io, bool batch);
/* Sends the queued entries; returns how many io_uring_submit calls it took (0: nothing queued). */
unsigned engine_uring_flush(struct engine_uring *u);
void engine_uring_reap(struct engine_uring *u);
uint64_t engine_uring_enters(const struct engine_uring *u);

#endif
