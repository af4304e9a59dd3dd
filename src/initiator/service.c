/*
 * The event loop interface: which fds the session waits on and for what, and one service round
 * (I/O on the ready fd, timers, commands the window lets go, callbacks, writes).
 */
#include <poll.h>

#include "initiator/internal.h"

/*
 * The events each connection's fd waits for follow from its state and send queue: POLLOUT while
 * the connect is under way, POLLIN always after it, POLLOUT too while PDUs wait to be written.
 */
int ism_session_fds(struct ism_session *s, struct pollfd *fds, int max)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS && n < max; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->fd < 0 || c->state == CONN_FREE || c->state == CONN_CLOSED)
			continue;
		fds[n].fd = c->fd;
		fds[n].revents = 0;
		fds[n].events = ism_conn_events(c);
		n++;
	}
	return n;
}

static void sweep(struct ism_session *s)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->state == CONN_CLOSED && s->in_service == 0)
			ism_conn_release(c);
	}
}

int ism_session_service(struct ism_session *s, int fd, short revents)
{
	s->in_service++;
	s->now_ms = ism_now_ms();
	if (fd >= 0) {
		for (int i = 0; i < ISM_MAX_CONNS; i++) {
			struct ism_conn *c = &s->conns[i];
			if (c->fd != fd || c->state == CONN_FREE || c->state == CONN_CLOSED)
				continue;
			if (c->state == CONN_CONNECTING) {
				if (revents & (POLLOUT | POLLERR | POLLHUP))
					ism_conn_connect_ready(c);
				break;
			}
			if (revents & POLLOUT)
				ism_conn_flush(c);
			if (c->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR)))
				ism_conn_readable(c);
			break;
		}
	}
	ism_run_timers(s);
	ism_kick(s);
	s->in_service--;
	sweep(s);
	ism_run_callbacks(s);
	/* What the callbacks queued (typically the next commands) goes out in one writev. */
	ism_flush_all(s);
	sweep(s);
	if (s->free_requested && s->in_service == 0) {
		/* ism_session_free was called from a callback of this round */
		ism_run_callbacks(s);
		ism_session_destroy(s);
		return ISM_SERVICE_FAILED;
	}
	if (s->state == SESSION_FAILED)
		return ISM_SERVICE_FAILED;
	return s->state == SESSION_LOGGED_OUT && ism_live_conns(s) == 0 ? ISM_SERVICE_LOGGED_OUT : ISM_SERVICE_OK;
}
