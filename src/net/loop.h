/*
 * The event loop: epoll for descriptors, a sorted list of timers, and deferred calls that run
 * after the current batch of events (so objects can be freed without invalidating events that
 * are still queued for them).
 */
#ifndef ISTHMUS_NET_LOOP_H
#define ISTHMUS_NET_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;

typedef void (*loop_io_fn)(void *arg, uint32_t events);
typedef void (*loop_fn)(void *arg);

struct loop_watch {
	int fd;
	uint32_t events;
	loop_io_fn fn;
	void *arg;
};

struct loop_timer {
	uint64_t due_ms;
	uint64_t period_ms; /* 0: one-shot */
	loop_fn fn;
	void *arg;
	bool armed;
	struct loop_timer *next;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);
/* Returns 0 or -errno. */
int loop_watch_add(struct loop *l, struct loop_watch *w, int fd, uint32_t events, loop_io_fn fn, void *arg);
int loop_watch_mod(struct loop *l, struct loop_watch *w, uint32_t events);
void loop_watch_del(struct loop *l, struct loop_watch *w);

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms, uint64_t period_ms, loop_fn fn,
		      void *arg);
void loop_timer_stop(struct loop *l, struct loop_timer *t);

/* Run fn(arg) after the events of the current iteration have been dispatched. */
void loop_defer(struct loop *l, loop_fn fn, void *arg);

/*
 * fn(arg) runs at the end of every turn, after deferred calls and timers, just before the loop
 * waits for events again (NULL: none). Work that is cheaper in batches (io_uring submissions)
 * collects during a turn and leaves here, once: nothing a turn queued waits for a later one.
 */
void loop_set_before_wait(struct loop *l, loop_fn fn, void *arg);

uint64_t loop_now_ms(void);
/* Runs until loop_stop. Returns 0, or -1 if epoll_wait failed. */
int loop_run(struct loop *l);
/*
 * One turn of loop_run, waiting at most timeout_ms (0: only what is ready now) or until the
 * first timer is due: ready events, then deferred calls and due timers. Returns the number of
 * events dispatched, or -1. For callers that drive the loop themselves (the fuzz targets).
 */
int loop_run_once(struct loop *l, int timeout_ms);
void loop_stop(struct loop *l);

#endif
