#include "net/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/sbuf.h"

struct deferred {
	loop_fn fn;
	void *arg;
};

struct loop {
	int epfd;
	bool stopping;
	struct loop_timer *timers; /* sorted by due_ms */
	struct deferred *defer;
	size_t ndefer, capdefer;
	loop_fn before_wait;
	void *before_wait_arg;
};

uint64_t loop_now_ms(void)
{
	return mono_ms();
}

struct loop *loop_new(void)
{
	struct loop *l = xcalloc(1, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

static void run_deferred(struct loop *l);

void loop_free(struct loop *l)
{
	if (!l)
		return;
	/* Deferred frees still pending when the loop stopped must run, or they leak. */
	run_deferred(l);
	close(l->epfd);
	free(l->defer);
	free(l);
}

int loop_watch_add(struct loop *l, struct loop_watch *w, int fd, uint32_t events, loop_io_fn fn, void *arg)
{
	w->fd = fd;
	w->events = events;
	w->fn = fn;
	w->arg = arg;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int loop_watch_mod(struct loop *l, struct loop_watch *w, uint32_t events)
{
	if (w->events == events)
		return 0;
	w->events = events;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

void loop_watch_del(struct loop *l, struct loop_watch *w)
{
	if (w->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	/* Events already fetched for this watch in the current batch must find it inert. */
	w->fn = NULL;
	w->fd = -1;
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
	if (!t->armed)
		return;
	for (struct loop_timer **pp = &l->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->armed = false;
	t->next = NULL;
}

static void timer_insert(struct loop *l, struct loop_timer *t)
{
	struct loop_timer **pp = &l->timers;
	while (*pp && (*pp)->due_ms <= t->due_ms)
		pp = &(*pp)->next;
	t->next = *pp;
	*pp = t;
	t->armed = true;
}

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms, uint64_t period_ms, loop_fn fn,
		      void *arg)
{
	loop_timer_stop(l, t);
	t->due_ms = loop_now_ms() + delay_ms;
	t->period_ms = period_ms;
	t->fn = fn;
	t->arg = arg;
	timer_insert(l, t);
}

void loop_defer(struct loop *l, loop_fn fn, void *arg)
{
	if (l->ndefer == l->capdefer) {
		l->capdefer = l->capdefer ? l->capdefer * 2 : 16;
		l->defer = xrealloc(l->defer, l->capdefer * sizeof(*l->defer));
	}
	l->defer[l->ndefer++] = (struct deferred){fn, arg};
}

static void run_deferred(struct loop *l)
{
	/* A deferred call may defer more; run until none is left. */
	for (size_t i = 0; i < l->ndefer; i++) {
		struct deferred d = l->defer[i];
		d.fn(d.arg);
	}
	l->ndefer = 0;
}

static void run_timers(struct loop *l)
{
	uint64_t now = loop_now_ms();
	while (l->timers && l->timers->due_ms <= now) {
		struct loop_timer *t = l->timers;
		l->timers = t->next;
		t->next = NULL;
		t->armed = false;
		if (t->period_ms) {
			t->due_ms = now + t->period_ms;
			timer_insert(l, t);
		}
		t->fn(t->arg);
		run_deferred(l);
	}
}

void loop_stop(struct loop *l) { l->stopping = true; }

void loop_set_before_wait(struct loop *l, loop_fn fn, void *arg)
{
	l->before_wait = fn;
	l->before_wait_arg = arg;
}

/* One turn: wait up to timeout ms (-1: forever), dispatch, then deferred calls and due timers. */
static int loop_turn(struct loop *l, int timeout)
{
	struct epoll_event evs[128];
	if (l->before_wait)
		l->before_wait(l->before_wait_arg);
	int n = epoll_wait(l->epfd, evs, 128, timeout);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		log_error("epoll_wait: %m");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct loop_watch *w = evs[i].data.ptr;
		if (w->fn)
			w->fn(w->arg, evs[i].events);
	}
	run_deferred(l);
	run_timers(l);
	return n;
}

/* How long the next turn may wait: until the first timer is due, at most limit (-1: no limit). */
static int loop_timeout(const struct loop *l, int limit)
{
	if (!l->timers)
		return limit;
	uint64_t now = loop_now_ms();
	int due = l->timers->due_ms <= now ? 0 : (int)(l->timers->due_ms - now);
	return limit >= 0 && limit < due ? limit : due;
}

int loop_run_once(struct loop *l, int timeout_ms) { return loop_turn(l, loop_timeout(l, timeout_ms)); }

int loop_run(struct loop *l)
{
	while (!l->stopping)
		if (loop_turn(l, loop_timeout(l, -1)) < 0)
			return -1;
	return 0;
}
