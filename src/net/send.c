#include "net/send.h"

#include <errno.h>
#include <sys/socket.h>

int net_send_buffered(int fd, struct sbuf *b, size_t *off)
{
	while (*off < b->len) {
		ssize_t w = send(fd, b->data + *off, b->len - *off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -1;
		}
		*off += (size_t)w;
	}
	sbuf_reset(b);
	*off = 0;
	return 0;
}
