/*
 * The libisthmus session of a daemon session in the event loop. The library announces each
 * connection's descriptor and what it waits for (ism_session_set_fd_cb); those become loop
 * watches as they are, so after a library call nothing is compared or registered again: the
 * library only speaks up when something changed. Readiness and the library's timer run
 * ism_session_service; its result decides between going on, recovery and the end of a logout.
 */
#include <poll.h>

#include "daemon/daemon.h"
#include "daemon/libbridge.h"
#include "daemon/recovery.h"
#include "daemon/session.h"
#include "util/log.h"

/* epoll and poll share the bit values of the events passed between loop and library. */
_Static_assert(EPOLLIN == POLLIN && EPOLLOUT == POLLOUT && EPOLLERR == POLLERR && EPOLLHUP == POLLHUP,
	       "epoll and poll event bits differ");

static void service(struct dsession *s, int fd, short revents)
{
	if (!s->ism)
		return;
	struct ism_session *ism = s->ism;
	s->in_lib++;
	int rc = ism_session_service(ism, fd, revents);
	s->in_lib--;
	if (s->ism != ism) { /* a callback dropped it */
		lib_settle(s);
		return;
	}
	/* rc: ISM_SERVICE_FAILED, or ISM_SERVICE_LOGGED_OUT when the session ended with a clean
	 * logout (ours, or the one the target asked for with async event 1) */
	if (s->state == DS_CONNECTED && rc != ISM_SERVICE_OK)
		recovery_lost(s);
	else if (s->state == DS_CONNECTED)
		recovery_note_kept_loss(s);
	else if (s->state == DS_LOGGING_OUT && rc != ISM_SERVICE_OK)
		dsess_finish_logout(s, NULL);
	lib_settle(s);
}

static void on_fd(void *arg, uint32_t events)
{
	struct dwatch *w = arg;
	service(w->s, w->fd, (short)events);
}

static void on_lib_timer(void *arg) { service(arg, -1, 0); }

static struct dwatch *watch_of(struct dsession *s, int fd)
{
	for (int k = 0; k < DMN_MAX_WATCH; k++)
		if (s->watch[k].on && s->watch[k].fd == fd)
			return &s->watch[k];
	return NULL;
}

static void watch_add(struct dsession *s, int fd, short events)
{
	struct dwatch *w = NULL;
	for (int k = 0; k < DMN_MAX_WATCH && !w; k++)
		if (!s->watch[k].on)
			w = &s->watch[k];
	if (!w) {
		log_warn("session %s: more than %d descriptors; fd %d not watched", s->idstr, DMN_MAX_WATCH, fd);
		return;
	}
	w->s = s;
	w->fd = fd;
	int rc = loop_watch_add(s->d->loop, &w->w, fd, (uint32_t)events, on_fd, w);
	if (rc < 0) {
		log_warn("session %s: cannot watch fd %d (%d)", s->idstr, fd, rc);
		w->fd = -1;
		return;
	}
	w->on = true;
}

static void watch_del(struct dwatch *w)
{
	loop_watch_del(w->s->d->loop, &w->w);
	w->on = false;
	w->fd = -1;
}

static void on_lib_fd(void *opaque, enum ism_fd_op op, int fd, short events)
{
	struct dsession *s = opaque;
	struct dwatch *w = op == ISM_FD_ADD ? NULL : watch_of(s, fd);
	switch (op) {
	case ISM_FD_ADD:
		watch_add(s, fd, events);
		break;
	case ISM_FD_MOD:
		if (w)
			loop_watch_mod(s->d->loop, &w->w, (uint32_t)events);
		break;
	case ISM_FD_DEL:
		if (w)
			watch_del(w);
		break;
	}
}

void lib_attach(struct dsession *s, struct ism_session *ism)
{
	s->ism = ism;
	s->kept_losses_seen = 0;
	ism_session_set_fd_cb(ism, on_lib_fd, s);
}

static void free_ism_later(void *arg) { ism_session_free(arg); }

void lib_detach(struct dsession *s)
{
	s->corked = false; /* held writes go with the session; its I/O is requeued */
	loop_timer_stop(s->d->loop, &s->lib_timer);
	if (!s->ism)
		return;
	struct ism_conn_recovery_info cr;
	ism_session_get_conn_recovery_info(s->ism, &cr);
	s->connection_recoveries += cr.connection_recoveries;
	s->task_reassignments += cr.task_reassignments;
	ism_session_set_fd_cb(s->ism, NULL, NULL); /* every watch goes now */
	loop_defer(s->d->loop, free_ism_later, s->ism);
	s->ism = NULL;
}

void lib_settle(struct dsession *s)
{
	s->settle_pending = false;
	if (s->corked) {
		/* This iteration's commands go out now, together. */
		s->corked = false;
		if (s->ism)
			ism_session_uncork(s->ism);
	}
	if (!s->ism) {
		loop_timer_stop(s->d->loop, &s->lib_timer);
		return;
	}
	int t = ism_session_timeout_ms(s->ism);
	uint64_t now = loop_now_ms();
	if (t < 0)
		loop_timer_stop(s->d->loop, &s->lib_timer);
	else if (!s->lib_timer.armed || now + (uint64_t)t < s->lib_timer.due_ms)
		/* A deadline that moved later (a keepalive pushed back by traffic) needs no re-arm:
		 * the early wake-up services nothing and settles again. */
		loop_timer_start(s->d->loop, &s->lib_timer, (uint64_t)t, 0, on_lib_timer, s);
}

static void settle_pending_sessions(void *arg)
{
	struct daemon *d = arg;
	d->settle_deferred = false;
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->settle_pending)
			lib_settle(s);
}

void lib_settle_soon(struct dsession *s)
{
	if (s->in_lib || s->settle_pending)
		return; /* service settles at its end */
	s->settle_pending = true;
	if (!s->d->settle_deferred) {
		s->d->settle_deferred = true;
		loop_defer(s->d->loop, settle_pending_sessions, s->d);
	}
}
