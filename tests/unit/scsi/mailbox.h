/*
 * Threads with a mailbox each, as the target's event loops have (shard_post): what the unit
 * tests of the SCSI layer's cross-thread hand-overs run on. HOME is the target's first context's
 * thread, L1 and L2 two further loops. A context is told its thread with
 * scsi_port_ctx_set_thread(ctx, &(struct scsi_port_thread){ mb_post, mb_here, &mb[i] }).
 */
#ifndef ISTHMUS_TEST_SCSI_MAILBOX_H
#define ISTHMUS_TEST_SCSI_MAILBOX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "../tsan_options.h"

struct msg {
	void (*fn)(void *arg);
	void *arg;
	struct msg *next;
};

struct mbox {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct msg *head, *tail;
	unsigned queued;
	bool stop;
};

enum { HOME, L1, L2, NTH };
static struct mbox mb[NTH];
static _Thread_local struct mbox *self;

static inline void mb_post(void *owner, void (*fn)(void *), void *arg)
{
	struct mbox *m = owner;
	struct msg *g = calloc(1, sizeof(*g));
	g->fn = fn;
	g->arg = arg;
	pthread_mutex_lock(&m->mu);
	*(m->tail ? &m->tail->next : &m->head) = g;
	m->tail = g;
	m->queued++;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static inline bool mb_here(void *owner) { return self == owner; }

static inline unsigned mb_queued(struct mbox *m)
{
	pthread_mutex_lock(&m->mu);
	unsigned n = m->queued;
	pthread_mutex_unlock(&m->mu);
	return n;
}

static inline void *mb_main(void *arg)
{
	struct mbox *m = arg;
	self = m;
	pthread_mutex_lock(&m->mu);
	for (;;) {
		while (!m->head && !m->stop)
			pthread_cond_wait(&m->cv, &m->mu);
		if (!m->head)
			break;
		struct msg *g = m->head;
		m->head = g->next;
		if (!m->head)
			m->tail = NULL;
		m->queued--;
		pthread_mutex_unlock(&m->mu);
		g->fn(g->arg);
		free(g);
		pthread_mutex_lock(&m->mu);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* Every thread runs its mailbox until mb_stop_all: what was posted before runs first. */
static inline void mb_start_all(void)
{
	for (int i = 0; i < NTH; i++) {
		pthread_mutex_init(&mb[i].mu, NULL);
		pthread_cond_init(&mb[i].cv, NULL);
		pthread_create(&mb[i].th, NULL, mb_main, &mb[i]);
	}
}

static inline void mb_stop_all(void)
{
	for (int i = 0; i < NTH; i++) {
		pthread_mutex_lock(&mb[i].mu);
		mb[i].stop = true;
		pthread_cond_signal(&mb[i].cv);
		pthread_mutex_unlock(&mb[i].mu);
		pthread_join(mb[i].th, NULL);
	}
}

static inline void msleep(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

struct sync_call {
	void (*fn)(void *arg);
	void *arg;
	atomic_bool done;
};

static inline void sync_run(void *arg)
{
	struct sync_call *c = arg;
	c->fn(c->arg);
	atomic_store(&c->done, true);
}

/* Runs fn(arg) on thread i and waits for it (10 s at most): whether it ran. */
static inline bool mb_call(int i, void (*fn)(void *), void *arg)
{
	struct sync_call c = { .fn = fn, .arg = arg };
	mb_post(&mb[i], sync_run, &c);
	for (int k = 0; k < 10000 && !atomic_load(&c.done); k++)
		msleep(1);
	return atomic_load(&c.done);
}

#endif
