/*
 * Accepting on a level-triggered listener when descriptors run out. A connection waiting in the
 * backlog is reported by epoll again and again until it is accepted; when accept4 fails for lack
 * of descriptors it stays there, and the loop would spin at full CPU. net_accept keeps one
 * descriptor in reserve: it gives it up, accepts the waiting connection, closes it at once (the
 * peer sees its connection end instead of hanging) and takes the reserve back.
 */
#ifndef ISTHMUS_NET_ACCEPT_H
#define ISTHMUS_NET_ACCEPT_H

/* How long a listener rests when even the reserve could not help. */
#define NET_ACCEPT_PAUSE_MS 1000u

enum net_accept_status {
	NET_ACCEPT_OK,      /* *fd is a new connection (non-blocking, close-on-exec) */
	NET_ACCEPT_NONE,    /* nothing waits: wait for the next event */
	NET_ACCEPT_DROPPED, /* out of descriptors: a waiting connection was closed; try again */
	NET_ACCEPT_RETRY,   /* the waiting connection failed on its own (aborted, network error); try again */
	NET_ACCEPT_PAUSE,   /* no way to take the connection off the backlog: stop watching the listener for
			       NET_ACCEPT_PAUSE_MS, or the loop spins; errno says why */
};

/* Open the reserve descriptor if it is not held yet (call when a listener starts). */
void net_accept_reserve(void);
enum net_accept_status net_accept(int listen_fd, int *fd);

#endif
