/*
 * Blocking store calls run on worker threads so that one slow device does not stall the event
 * loop and every session on it. The owner polls offload_fd() and calls offload_reap() when it
 * is readable: finished jobs' done callbacks then run on the owner's thread, never on a worker.
 */
#ifndef ISTHMUS_STORE_OFFLOAD_H
#define ISTHMUS_STORE_OFFLOAD_H

#include <stdbool.h>

struct offload_job {
	struct offload_job *next;
	/*
	 * Jobs with the same key run one at a time, in submission order (a sequential read stream,
	 * a store's flushes): the device then sees them in the order the commands came in, which its
	 * readahead relies on. The key is only compared, never followed.
	 */
	const void *key;
	void (*work)(struct offload_job *j); /* on a worker thread: only the job's own data */
	void (*done)(struct offload_job *j); /* on the owner's thread, from offload_reap */
};

struct offload;

/* Up to max_threads workers, started as work arrives. NULL with *err set (malloc'd) on failure. */
struct offload *offload_new(unsigned max_threads, char **err);
/* Readable while finished jobs wait for offload_reap. */
int offload_fd(const struct offload *o);
void offload_submit(struct offload *o, struct offload_job *j);
/* Runs the done callbacks of every finished job. */
void offload_reap(struct offload *o);
/* Jobs submitted and not reaped yet. */
unsigned offload_pending(const struct offload *o);
/*
 * Waits until no job is queued or running (their done callbacks still wait for offload_reap):
 * afterwards nothing submitted before touches its store any more.
 */
void offload_quiesce(struct offload *o);
/* Quiesces, stops the workers and reaps what finished, including work submitted while reaping. */
void offload_free(struct offload *o);

#endif
