/*
 * Shards: their mailbox, thread, store engine, blocked-command wake-ups and the pause loop 0
 * takes before it touches what other shards own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "proto/pdu.h"
#include "scsi/scsi.h"
#include "store/store_io.h"
#include "target/conn.h"
#include "target/server.h"
#include "target/shard.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Command data buffers kept for reuse once their commands end, per shard. */
#define BUFPOOL_KEEP (64u << 20)

static void shard_on_mail(void *arg, uint32_t events);
static void shard_flush_queued(struct shard *sh);

struct shard *shard_new(struct server *srv, unsigned id, struct loop *l)
{
	struct shard *sh = xcalloc(1, sizeof(*sh));
	sh->srv = srv;
	sh->id = id;
	sh->loop = l ? l : loop_new();
	sh->mb_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&sh->mb_lock, NULL);
	bufpool_init(&sh->bufpool, BUFPOOL_KEEP);
	sh->thread = pthread_self();
	if (!sh->loop || sh->mb_fd < 0 ||
	    loop_watch_add(sh->loop, &sh->mb_watch, sh->mb_fd, EPOLLIN, shard_on_mail, sh) < 0) {
		if (sh->mb_fd >= 0)
			close(sh->mb_fd);
		if (sh->loop && sh->loop != l)
			loop_free(sh->loop);
		pthread_mutex_destroy(&sh->mb_lock);
		free(sh);
		return NULL;
	}
	return sh;
}

void shard_post(struct shard *sh, shard_fn fn, void *arg)
{
	struct shard_msg *m = xmalloc(sizeof(*m));
	m->fn = fn;
	m->arg = arg;
	m->next = NULL;
	pthread_mutex_lock(&sh->mb_lock);
	bool first = !sh->mb_head;
	*(sh->mb_tail ? &sh->mb_tail->next : &sh->mb_head) = m;
	sh->mb_tail = m;
	pthread_mutex_unlock(&sh->mb_lock);
	/* One write per batch: the reader takes every message it finds. */
	if (first) {
		uint64_t one = 1;
		while (write(sh->mb_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
}

void shard_drain(struct shard *sh)
{
	for (;;) {
		pthread_mutex_lock(&sh->mb_lock);
		struct shard_msg *m = sh->mb_head;
		sh->mb_head = sh->mb_tail = NULL;
		pthread_mutex_unlock(&sh->mb_lock);
		if (!m)
			return;
		while (m) {
			struct shard_msg *next = m->next;
			m->fn(m->arg);
			free(m);
			m = next;
		}
	}
}

/* Send what is queued on its connections (those waiting for EPOLLOUT send when it comes). */
static void shard_flush_queued(struct shard *sh)
{
	for (struct conn *c = sh->conns, *next; c; c = next) {
		next = c->next;
		if (!pdu_queue_empty(&c->pc.txq) && !c->want_write)
			conn_flush(c);
	}
}

static void shard_on_mail(void *arg, uint32_t events)
{
	(void)events;
	struct shard *sh = arg;
	uint64_t n;
	/* Read before taking the list: a message posted after the read writes again. */
	while (read(sh->mb_fd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	shard_drain(sh);
	/*
	 * A message may have queued PDUs (a command finished by LU-wide work on another thread, a
	 * task management answer): outside any connection's handler nothing else sends them.
	 */
	shard_flush_queued(sh);
}

/* ---- the SCSI contexts it owns ---- */

static void shard_post_to(void *owner, void (*fn)(void *arg), void *arg) { shard_post(owner, fn, arg); }

static bool shard_here(void *owner) { return shard_on_thread(owner); }

void shard_own_scsi_ctx(struct shard *sh, struct scsi_port_ctx *ctx)
{
	const struct scsi_port_thread th = {.post = shard_post_to, .here = shard_here, .owner = sh};
	scsi_port_ctx_set_thread(ctx, &th);
}

/* ---- the store engine ---- */

static void shard_on_engine(void *arg, uint32_t events)
{
	(void)events;
	struct shard *sh = arg;
	store_engine_reap(sh->engine);
	shard_run_blocked(sh, true);
}

/* Store ios queued while the loop turned leave together, before it sleeps. */
static void shard_before_wait(void *arg)
{
	struct shard *sh = arg;
	store_engine_submit_pending(sh->engine);
}

int shard_engine_start(struct shard *sh, const struct cfg *cfg, char **err)
{
	struct store_engine_params p = {.backend = cfg->io_engine, .batch = true};
	sh->engine = store_engine_new(&p, err);
	if (!sh->engine)
		return -1;
	if (sh->id == 0)
		log_info("store I/O engine: %s (%s)", store_engine_backend_name(store_engine_backend(sh->engine)),
			 store_engine_backend_reason(sh->engine));
	if (loop_watch_add(sh->loop, &sh->engine_watch, store_engine_fd(sh->engine), EPOLLIN, shard_on_engine, sh) <
	    0) {
		*err = xasprintf("cannot watch the store engine's completions: %s", strerror(errno));
		store_engine_free(sh->engine);
		sh->engine = NULL;
		return -1;
	}
	loop_set_before_wait(sh->loop, shard_before_wait, sh);
	return 0;
}

/* ---- blocked commands ---- */

static void shard_wake(void *arg)
{
	struct shard *sh = arg;
	atomic_store(&sh->wake_pending, false);
	shard_run_blocked(sh, false);
}

void shard_run_blocked(struct shard *sh, bool wake_others)
{
	struct server *srv = sh->srv;
	bool blocked = false;
	for (size_t i = 0; i < srv->nnodes; i++) {
		struct scsi_port_ctx *ctx = srv->nodes[i]->scsi_ctx[sh->id];
		scsi_port_run_blocked(ctx);
		blocked |= scsi_port_has_blocked(ctx);
	}
	if (srv->nshards > 1)
		atomic_store(&sh->has_blocked, blocked);
	/* Their responses were queued outside any connection's read handler, which would send them. */
	shard_flush_queued(sh);
	if (!wake_others || srv->nshards < 2)
		return;
	/*
	 * An LU's work that ended here may be what commands of other shards wait for. Only shards
	 * with waiting commands are woken, at most one wake-up pending each.
	 */
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct shard *o = srv->shards[i];
		if (o != sh && atomic_load(&o->has_blocked) && !atomic_exchange(&o->wake_pending, true))
			shard_post(o, shard_wake, o);
	}
}

static void shard_recheck_blocked(void *arg) { shard_run_blocked(arg, false); }

void shard_note_blocked(struct shard *sh)
{
	struct server *srv = sh->srv;
	if (srv->nshards < 2 || atomic_load(&sh->has_blocked))
		return;
	bool blocked = false;
	for (size_t i = 0; i < srv->nnodes && !blocked; i++)
		blocked = scsi_port_has_blocked(srv->nodes[i]->scsi_ctx[sh->id]);
	if (!blocked)
		return;
	/*
	 * Published before looking at the LU again: a shard whose completion freed the command
	 * either sees the flag (and wakes this one) or ended its work before the look here.
	 */
	atomic_store(&sh->has_blocked, true);
	loop_defer(sh->loop, shard_recheck_blocked, sh);
}

/* ---- sessions ---- */

void shard_add_session(struct shard *sh, struct session *s)
{
	if (sh->nsessions == sh->capsessions) {
		sh->capsessions = sh->capsessions ? sh->capsessions * 2 : 16;
		sh->sessions = xrealloc(sh->sessions, sh->capsessions * sizeof(*sh->sessions));
	}
	sh->sessions[sh->nsessions++] = s;
}

void shard_remove_session(struct shard *sh, struct session *s)
{
	for (size_t i = 0; i < sh->nsessions; i++) {
		if (sh->sessions[i] == s) {
			sh->sessions[i] = sh->sessions[--sh->nsessions];
			return;
		}
	}
}

/* ---- threads ---- */

static void *shard_main(void *arg)
{
	struct shard *sh = arg;
	loop_run(sh->loop);
	return NULL;
}

int shard_thread_start(struct shard *sh, char **err)
{
	int rc = pthread_create(&sh->thread, NULL, shard_main, sh);
	if (rc) {
		*err = xasprintf("cannot start the thread of loop %u: %s", sh->id, strerror(rc));
		return -1;
	}
	sh->threaded = true;
	return 0;
}

static void shard_stop_loop(void *arg)
{
	struct shard *sh = arg;
	loop_stop(sh->loop);
}

void shard_thread_stop(struct shard *sh)
{
	if (!sh->threaded)
		return;
	shard_post(sh, shard_stop_loop, sh);
	pthread_join(sh->thread, NULL);
	sh->threaded = false;
	sh->thread = pthread_self();
}

double shard_cpu_seconds(const struct shard *sh)
{
	clockid_t cid;
	struct timespec ts;
	if (pthread_getcpuclockid(sh->thread, &cid) != 0 || clock_gettime(cid, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void shard_free(struct shard *sh)
{
	if (!sh)
		return;
	shard_drain(sh);
	close(sh->mb_fd); /* its loop's watch of it is gone with the loop */
	pthread_mutex_destroy(&sh->mb_lock);
	bufpool_free(&sh->bufpool);
	free(sh->sessions);
	free(sh);
}

/* ---- pausing ---- */

static void shard_park(void *arg)
{
	struct shard *sh = arg;
	struct server *srv = sh->srv;
	pthread_mutex_lock(&srv->pause_lock);
	uint64_t gen = srv->resume_gen;
	srv->parked++;
	pthread_cond_broadcast(&srv->pause_cond);
	while (srv->resume_gen == gen)
		pthread_cond_wait(&srv->pause_cond, &srv->pause_lock);
	pthread_mutex_unlock(&srv->pause_lock);
}

void server_pause_shards(struct server *srv)
{
	if (srv->pause_depth++ > 0)
		return;
	unsigned others = 0;
	for (unsigned i = 1; i < srv->nshards; i++)
		others += srv->shards[i]->threaded;
	if (!others)
		return;
	pthread_mutex_lock(&srv->pause_lock);
	srv->parked = 0;
	pthread_mutex_unlock(&srv->pause_lock);
	for (unsigned i = 1; i < srv->nshards; i++)
		if (srv->shards[i]->threaded)
			shard_post(srv->shards[i], shard_park, srv->shards[i]);
	pthread_mutex_lock(&srv->pause_lock);
	while (srv->parked < others)
		pthread_cond_wait(&srv->pause_cond, &srv->pause_lock);
	srv->paused = true;
	pthread_mutex_unlock(&srv->pause_lock);
}

void server_resume_shards(struct server *srv)
{
	if (srv->pause_depth == 0 || --srv->pause_depth > 0)
		return;
	pthread_mutex_lock(&srv->pause_lock);
	if (srv->paused) {
		srv->paused = false;
		srv->resume_gen++;
		pthread_cond_broadcast(&srv->pause_cond);
	}
	pthread_mutex_unlock(&srv->pause_lock);
}
