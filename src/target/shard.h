/*
 * A shard: one event loop of the target and everything that runs on it. Each connection, its
 * session and its tasks live on one shard and are touched only by that shard's thread; the
 * shard has its own store engine, command buffer pool, housekeeping tick and closed-connection
 * counters. Shard 0 runs on the main thread, which also owns the portals, signals, management,
 * metrics, iSNS, gateway probes and reloads.
 *
 * Threads meet in three places only: the mailbox (shard_post runs a function on a shard's
 * thread), the pause (loop 0 parks every other shard at a safe point between events before it
 * touches their connections, sessions or tasks) and the session index and connection lists of
 * struct server (one mutex, taken at accept, login, logout and close, never per command).
 */
#ifndef ISTHMUS_TARGET_SHARD_H
#define ISTHMUS_TARGET_SHARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/loop.h"
#include "target/stats.h"
#include "util/bufpool.h"

struct server;
struct conn;
struct session;
struct store_engine;
struct cfg;

/* Loops a target may run (--threads, threads =). */
#define SHARD_MAX 256u

typedef void (*shard_fn)(void *arg);

struct shard_msg {
	shard_fn fn;
	void *arg;
	struct shard_msg *next;
};

struct shard {
	struct server *srv;
	unsigned id;
	struct loop *loop;
	pthread_t thread;           /* the main thread's for shard 0 */
	bool threaded;              /* a thread of its own was started (and is joined at the end) */
	struct store_engine *engine; /* its store ios and long operations (shard 0: srv->engine) */
	struct loop_watch engine_watch;
	struct bufpool bufpool;     /* command data buffers of its tasks, reused */
	struct conn *conns;         /* its connections; changed under srv->index_lock */
	atomic_uint nconns;         /* how many, counting one handed to it and not made yet */
	atomic_uint nfailed;        /* its failed connections awaiting recovery (erl2.c) */
	atomic_bool shed_pending;   /* another loop asked it to discard some of them; not run yet */
	struct session **sessions;  /* its live sessions (the index in struct server has them all) */
	size_t nsessions, capsessions;
	struct loop_timer tick;     /* once a second: pings, timeouts of its connections and sessions */
	struct io_stats closed;     /* counters of its connections that have ended */
	/* mailbox */
	pthread_mutex_t mb_lock;
	struct shard_msg *mb_head, *mb_tail;
	int mb_fd;                  /* eventfd, watched by its loop */
	struct loop_watch mb_watch;
	/* Commands of its contexts wait for their LUs (another shard's completions may free them). */
	atomic_bool has_blocked;
	atomic_bool wake_pending;   /* a wake-up is posted and not run yet: at most one */
};

/* A shard on loop l (not started); engine NULL until shard_engine_start. NULL on failure. */
struct shard *shard_new(struct server *srv, unsigned id, struct loop *l);
/* Its store engine for cfg's io-engine, watched by its loop. */
int shard_engine_start(struct shard *sh, const struct cfg *cfg, char **err);
/* Start its thread (shards other than 0). */
int shard_thread_start(struct shard *sh, char **err);
/* Stop its loop and join its thread (from the main thread, loop 0 no longer running). */
void shard_thread_stop(struct shard *sh);
/* Run messages still in the mailbox (the thread is gone: on the caller's). */
void shard_drain(struct shard *sh);
/* Free what shard_new made; the loop only if it is not srv->loop. */
void shard_free(struct shard *sh);

/* fn(arg) runs on sh's thread, after the events it is handling; any thread. */
void shard_post(struct shard *sh, shard_fn fn, void *arg);

/*
 * ctx (a target's context for this shard) runs on its thread: work of a LU as a whole that
 * hands one of ctx's commands back (a gateway group's record) posts it here.
 */
struct scsi_port_ctx;
void shard_own_scsi_ctx(struct shard *sh, struct scsi_port_ctx *ctx);

/* Its sessions (for its tick). */
void shard_add_session(struct shard *sh, struct session *s);
void shard_remove_session(struct shard *sh, struct session *s);

/*
 * Commands of its contexts that waited for their LU's work may run: run them and send what
 * they queued. wake_others: a completion here may free commands waiting on other shards.
 */
void shard_run_blocked(struct shard *sh, bool wake_others);
/* After a command was submitted: note that it waits, so other shards' completions wake it. */
void shard_note_blocked(struct shard *sh);

/* Whether the caller runs on sh's thread (completions of LU-wide work may come elsewhere). */
static inline bool shard_on_thread(const struct shard *sh) { return pthread_equal(pthread_self(), sh->thread); }

/* CPU seconds its thread has used. */
double shard_cpu_seconds(const struct shard *sh);

/*
 * Park every shard but 0 at a safe point between events and wait until all are parked; calls
 * nest. Only from loop 0. Shards never wait for loop 0, so this cannot deadlock.
 */
void server_pause_shards(struct server *srv);
void server_resume_shards(struct server *srv);

#endif
