/*
 * Descriptor notifications (ism_session_set_fd_cb): the caller's event loop is told about a
 * connection's descriptor when it appears, when what the library waits for changes, and before
 * it is closed. What a connection waits for follows from its state and its send queue alone, so
 * the hooks sit where those change: connect started or done, the queue written, the fd closed.
 */
#include "initiator/internal.h"

short ism_conn_events(const struct ism_conn *c)
{
	if (c->state == CONN_CONNECTING)
		return POLLOUT;
	return (short)(POLLIN | (pdu_queue_empty(&c->pc.txq) ? 0 : POLLOUT));
}

void ism_watch_update(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	if (!s->fd_cb || c->fd < 0 || c->state == CONN_FREE || c->state == CONN_CLOSED)
		return;
	short ev = ism_conn_events(c);
	if (!c->watched) {
		c->watched = true;
		c->watch_events = ev;
		s->fd_cb(s->fd_opaque, ISM_FD_ADD, c->fd, ev);
	} else if (ev != c->watch_events) {
		c->watch_events = ev;
		s->fd_cb(s->fd_opaque, ISM_FD_MOD, c->fd, ev);
	}
}

void ism_watch_close(struct ism_conn *c)
{
	if (!c->watched)
		return;
	c->watched = false;
	if (c->s->fd_cb)
		c->s->fd_cb(c->s->fd_opaque, ISM_FD_DEL, c->fd, 0);
}

void ism_session_set_fd_cb(struct ism_session *s, ism_fd_cb cb, void *opaque)
{
	for (unsigned i = 0; i < s->conn_slots; i++)
		ism_watch_close(&s->conns[i]);
	s->fd_cb = cb;
	s->fd_opaque = opaque;
	for (unsigned i = 0; i < s->conn_slots; i++)
		ism_watch_update(&s->conns[i]);
}
