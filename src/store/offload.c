#include "store/offload.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/sbuf.h"

struct offload {
	pthread_mutex_t mu;
	pthread_cond_t work_cv;  /* workers: a job was queued, or stop */
	pthread_cond_t idle_cv;  /* quiesce: queue empty and nothing running */
	struct offload_job *queue, *queue_tail;
	struct offload_job *finished; /* in reverse order of finishing; reaped in order */
	unsigned running, idle, nthreads, max_threads;
	unsigned queued;              /* jobs in queue */
	unsigned pending;             /* submitted, not reaped; owner's thread only */
	pthread_t *threads;
	const void **busy_keys;       /* keys of the running jobs: running entries */
	bool stop;
	int efd;
};

static void finished_push(struct offload *o, struct offload_job *j);

/* The first queued job whose key is not running, taken off the queue. */
static struct offload_job *take_runnable(struct offload *o)
{
	struct offload_job *prev = NULL;
	for (struct offload_job *j = o->queue; j; prev = j, j = j->next) {
		bool busy = false;
		for (unsigned i = 0; i < o->running && !busy; i++)
			busy = o->busy_keys[i] == j->key;
		if (busy)
			continue;
		if (prev)
			prev->next = j->next;
		else
			o->queue = j->next;
		if (o->queue_tail == j)
			o->queue_tail = prev;
		o->queued--;
		return j;
	}
	return NULL;
}

static void *worker(void *arg)
{
	struct offload *o = arg;
	pthread_mutex_lock(&o->mu);
	for (;;) {
		struct offload_job *j = take_runnable(o);
		if (!j) {
			if (o->stop && !o->queue)
				break;
			o->idle++;
			pthread_cond_wait(&o->work_cv, &o->mu);
			o->idle--;
			continue;
		}
		o->busy_keys[o->running++] = j->key;
		pthread_mutex_unlock(&o->mu);
		j->work(j);
		pthread_mutex_lock(&o->mu);
		for (unsigned i = 0; i < o->running; i++) {
			if (o->busy_keys[i] == j->key) {
				o->busy_keys[i] = o->busy_keys[--o->running];
				break;
			}
		}
		finished_push(o, j);
		if (!o->queue && !o->running)
			pthread_cond_broadcast(&o->idle_cv);
		else if (o->queue)
			pthread_cond_broadcast(&o->work_cv); /* its key is free now */
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

struct offload *offload_new(unsigned max_threads, char **err)
{
	struct offload *o = xcalloc(1, sizeof(*o));
	o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (o->efd < 0) {
		*err = xasprintf("eventfd: %s", strerror(errno));
		free(o);
		return NULL;
	}
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->work_cv, NULL);
	pthread_cond_init(&o->idle_cv, NULL);
	o->max_threads = max_threads ? max_threads : 1;
	o->threads = xcalloc(o->max_threads, sizeof(*o->threads));
	o->busy_keys = xcalloc(o->max_threads, sizeof(*o->busy_keys));
	return o;
}

int offload_fd(const struct offload *o) { return o->efd; }

unsigned offload_pending(const struct offload *o) { return o->pending; }

static void finished_push(struct offload *o, struct offload_job *j)
{
	bool wake = !o->finished;
	j->next = o->finished;
	o->finished = j;
	if (wake) {
		uint64_t one = 1;
		ssize_t n = write(o->efd, &one, sizeof(one));
		(void)n; /* an eventfd counter cannot overflow from this */
	}
}

/*
 * Workers take no signal: the owning process may read its signals from a signalfd, which only
 * works while every thread blocks them, and a signal handler must not run on a worker that holds
 * a store's lock.
 */
static int start_worker(struct offload *o)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&o->threads[o->nthreads], NULL, worker, o);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

void offload_submit(struct offload *o, struct offload_job *j)
{
	j->next = NULL;
	o->pending++;
	pthread_mutex_lock(&o->mu);
	/* A new worker only when the idle ones cannot take every queued job: most stores rarely block. */
	if (o->idle <= o->queued && o->nthreads < o->max_threads && start_worker(o) == 0)
		o->nthreads++;
	if (o->nthreads == 0 || o->stop) {
		/* Not even one thread could start, or they are stopping (a done callback of the final
		 * reap queued more): do the work here rather than never. */
		pthread_mutex_unlock(&o->mu);
		j->work(j);
		pthread_mutex_lock(&o->mu);
		finished_push(o, j);
		pthread_mutex_unlock(&o->mu);
		return;
	}
	if (o->queue_tail)
		o->queue_tail->next = j;
	else
		o->queue = j;
	o->queue_tail = j;
	o->queued++;
	pthread_cond_signal(&o->work_cv);
	pthread_mutex_unlock(&o->mu);
}

void offload_reap(struct offload *o)
{
	uint64_t v;
	ssize_t n = read(o->efd, &v, sizeof(v));
	(void)n; /* EAGAIN: a previous reap took the jobs this wakeup was for */
	pthread_mutex_lock(&o->mu);
	struct offload_job *list = o->finished;
	o->finished = NULL;
	pthread_mutex_unlock(&o->mu);
	/* Reverse into finishing order. */
	struct offload_job *ordered = NULL;
	while (list) {
		struct offload_job *next = list->next;
		list->next = ordered;
		ordered = list;
		list = next;
	}
	while (ordered) {
		struct offload_job *j = ordered;
		ordered = j->next;
		o->pending--;
		j->done(j);
	}
}

void offload_quiesce(struct offload *o)
{
	pthread_mutex_lock(&o->mu);
	while (o->queue || o->running)
		pthread_cond_wait(&o->idle_cv, &o->mu);
	pthread_mutex_unlock(&o->mu);
}

void offload_free(struct offload *o)
{
	if (!o)
		return;
	offload_quiesce(o);
	pthread_mutex_lock(&o->mu);
	o->stop = true;
	pthread_cond_broadcast(&o->work_cv);
	pthread_mutex_unlock(&o->mu);
	for (unsigned i = 0; i < o->nthreads; i++)
		pthread_join(o->threads[i], NULL);
	/* A done callback may submit a follow-up (the next step of a long command): it runs inline
	 * now, and is reaped in turn. */
	while (o->pending)
		offload_reap(o);
	close(o->efd);
	pthread_cond_destroy(&o->work_cv);
	pthread_cond_destroy(&o->idle_cv);
	pthread_mutex_destroy(&o->mu);
	free(o->threads);
	free(o->busy_keys);
	free(o);
}
