/*
 * ism_session_set_fd_cb: the callback hears of a connection's descriptor when its connect starts
 * (ADD, POLLOUT), when the connect is done (MOD, POLLIN), when another callback takes over (DEL
 * to the old one, ADD to the new one) and before the descriptor is closed (DEL, fd still open),
 * and agrees with ism_session_fds all along. The peer is a TCP listener on 127.0.0.1.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../test.h"
#include "isthmus/isthmus.h"

#define MAX_EV 16

struct fdlog {
	int n;
	struct {
		enum ism_fd_op op;
		int fd;
		short events;
		bool open; /* the descriptor was still open when the callback ran */
	} ev[MAX_EV];
};

static void record(void *opaque, enum ism_fd_op op, int fd, short events)
{
	struct fdlog *l = opaque;
	if (l->n == MAX_EV)
		return;
	l->ev[l->n].op = op;
	l->ev[l->n].fd = fd;
	l->ev[l->n].events = events;
	l->ev[l->n].open = fcntl(fd, F_GETFD) != -1;
	l->n++;
}

static int login_status = 1;
static void on_login(struct ism_session *s, int status, void *priv)
{
	(void)s;
	(void)priv;
	login_status = status;
}

/* The library's own view of its single descriptor agrees with what the callback was told. */
static void check_fds_agree(struct ism_session *s, int fd, short events)
{
	struct pollfd p[4];
	int n = ism_session_fds(s, p, 4);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_EQ(p[0].fd, fd);
		CHECK_EQ(p[0].events, events);
	}
}

int main(void)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(listen(lfd, 4) == 0);
	CHECK(getsockname(lfd, (struct sockaddr *)&a, &al) == 0);
	char portal[64];
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", ntohs(a.sin_port));

	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = "iqn.2024-01.org.isthmus:fdcb";
	cfg.target_name = "iqn.2024-01.org.isthmus:none";
	char err[256];
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		TEST_MAIN_END();
	struct fdlog l1 = {0}, l2 = {0};
	ism_session_set_fd_cb(s, record, &l1);
	CHECK_EQ(l1.n, 0);

	printf("connect: ADD of the new socket\n");
	CHECK_EQ(ism_connect_async(s, portal, on_login, NULL), 0);
	CHECK_EQ(l1.n, 1);
	CHECK_EQ(l1.ev[0].op, ISM_FD_ADD);
	int fd = l1.ev[0].fd;
	CHECK(fd >= 0);
	short ev = l1.ev[0].events;
	CHECK(ev == POLLOUT || ev == POLLIN);
	check_fds_agree(s, fd, ev);

	if (ev == POLLOUT) {
		printf("connect done: MOD to POLLIN (the login request is written at once)\n");
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		CHECK_EQ(poll(&p, 1, 5000), 1);
		CHECK_EQ(ism_session_service(s, fd, p.revents), ISM_SERVICE_OK);
		CHECK_EQ(l1.n, 2);
		CHECK_EQ(l1.ev[1].op, ISM_FD_MOD);
		CHECK_EQ(l1.ev[1].fd, fd);
		CHECK_EQ(l1.ev[1].events, POLLIN);
		ev = POLLIN;
	}
	check_fds_agree(s, fd, ev);
	int seen = l1.n;

	printf("another callback: DEL to the old one, ADD to the new one\n");
	ism_session_set_fd_cb(s, record, &l2);
	CHECK_EQ(l1.n, seen + 1);
	CHECK_EQ(l1.ev[seen].op, ISM_FD_DEL);
	CHECK_EQ(l1.ev[seen].fd, fd);
	CHECK_EQ(l2.n, 1);
	CHECK_EQ(l2.ev[0].op, ISM_FD_ADD);
	CHECK_EQ(l2.ev[0].fd, fd);
	CHECK_EQ(l2.ev[0].events, POLLIN);

	printf("the peer closes: DEL while the descriptor is still open, nothing after\n");
	int peer = accept(lfd, NULL, NULL);
	CHECK(peer >= 0);
	close(peer);
	for (int i = 0; i < 50 && login_status == 1; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) == 1)
			ism_session_service(s, fd, p.revents);
	}
	CHECK(login_status != 1 && login_status != 0);
	CHECK_EQ(l2.n, 2);
	CHECK_EQ(l2.ev[1].op, ISM_FD_DEL);
	CHECK_EQ(l2.ev[1].fd, fd);
	CHECK(l2.ev[1].open);
	struct pollfd none[4];
	CHECK_EQ(ism_session_fds(s, none, 4), 0);
	ism_session_free(s);
	CHECK_EQ(l2.n, 2);
	CHECK_EQ(l1.n, seen + 1);

	printf("freeing a session with a connection: DEL before the close\n");
	s = ism_session_new(&cfg, err, sizeof(err));
	struct fdlog l3 = {0};
	ism_session_set_fd_cb(s, record, &l3);
	CHECK_EQ(ism_connect_async(s, portal, on_login, NULL), 0);
	CHECK_EQ(l3.n, 1);
	ism_session_free(s);
	CHECK_EQ(l3.n, 2);
	CHECK_EQ(l3.ev[1].op, ISM_FD_DEL);
	CHECK_EQ(l3.ev[1].fd, l3.ev[0].fd);
	CHECK(l3.ev[1].open);
	close(lfd);
	TEST_MAIN_END();
}
