#include "net/accept.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

/* One for the whole process: only one listener at a time can be out of descriptors. */
static atomic_int reserve_fd = -1;

void net_accept_reserve(void)
{
	if (atomic_load(&reserve_fd) >= 0)
		return;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int none = -1;
	if (fd >= 0 && !atomic_compare_exchange_strong(&reserve_fd, &none, fd))
		close(fd); /* another thread took one meanwhile */
}

/* accept(2): errors of the waiting connection itself are passed on by accept; the next may be fine. */
static bool connection_error(int e)
{
	return e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM || e == ENETDOWN || e == ENOPROTOOPT ||
	       e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH || e == EOPNOTSUPP || e == ENETUNREACH ||
	       e == ETIMEDOUT || e == ECONNRESET;
}

enum net_accept_status net_accept(int listen_fd, int *fd)
{
	*fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (*fd >= 0) {
		net_accept_reserve(); /* taken back as soon as descriptors are free again */
		return NET_ACCEPT_OK;
	}
	int e = errno;
	if (e == EAGAIN || e == EWOULDBLOCK)
		return NET_ACCEPT_NONE;
	if (connection_error(e))
		return NET_ACCEPT_RETRY;
	if (e != EMFILE && e != ENFILE) {
		/* ENOBUFS, ENOMEM, or a listener that is not one any more: nothing to take off the backlog. */
		return NET_ACCEPT_PAUSE;
	}
	int r = atomic_exchange(&reserve_fd, -1);
	if (r < 0) {
		errno = e;
		return NET_ACCEPT_PAUSE;
	}
	close(r);
	int extra = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	int e2 = errno;
	if (extra >= 0)
		close(extra);
	net_accept_reserve();
	if (extra < 0 && !connection_error(e2) && e2 != EAGAIN && e2 != EWOULDBLOCK) {
		errno = e2; /* ENFILE: the whole system is out; our reserve did not help */
		return NET_ACCEPT_PAUSE;
	}
	errno = e;
	return NET_ACCEPT_DROPPED;
}
