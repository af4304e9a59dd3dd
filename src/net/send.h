/* Writing a buffered reply to a non-blocking stream socket, as much as it takes now. */
#ifndef ISTHMUS_NET_SEND_H
#define ISTHMUS_NET_SEND_H

#include <stddef.h>

#include "util/sbuf.h"

/*
 * Send b's bytes from *off on (MSG_NOSIGNAL) until all are sent or the socket is full; once all
 * are, b is emptied and *off reset. Returns 0, or -1 with errno set when the socket failed.
 */
int net_send_buffered(int fd, struct sbuf *b, size_t *off);

#endif
