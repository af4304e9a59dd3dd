/*
 * libFuzzer: what a management client may send to the JSON-RPC server. The server runs without
 * a loop (rpc_server_poll) with small limits, two clients on socketpairs, and a table of
 * methods that answer, fail, defer and complete deferred answers later. The input is a script:
 * each record is an op byte (low 3 bits: what; bit 7: which client; bits 3-6: size class) and
 * its operands. Bytes sent are cut anywhere; answers are read, or left unread to fill the
 * server's queue. Whatever comes, the server must answer or close, never crash or leak.
 *
 *   0-4  send 1 + n + 256 * class bytes of the input (n: the next byte)
 *   5    read what the server answered on that client
 *   6    complete the oldest deferred answer (next byte: result, error or nothing)
 *   7    half-close the client's sending side
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mgmt/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HELD 16

static struct {
	struct rpc_server *rpc;
	struct rpc_pending *held[MAX_HELD];
	int nheld;
} F;

static json_t *m_echo(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)err;
	return json_incref(params);
}

static json_t *m_fail(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	return rpc_fail(err, RPC_FAILED, "failed as asked");
}

static json_t *m_hold(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	struct rpc_pending *p = F.nheld < MAX_HELD ? rpc_defer(F.rpc) : NULL;
	if (!p)
		return rpc_fail(err, RPC_CONFLICT, "cannot defer now");
	F.held[F.nheld++] = p;
	return RPC_DEFERRED;
}

static json_t *m_defer_then_answer(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	struct rpc_pending *p = F.nheld < MAX_HELD ? rpc_defer(F.rpc) : NULL;
	if (p)
		F.held[F.nheld++] = p;
	return json_string("now");
}

static json_t *m_defer_complete_now(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)err;
	struct rpc_pending *p = rpc_defer(F.rpc);
	if (p)
		rpc_complete(p, json_string("completed"), NULL);
	return json_is_true(json_object_get(params, "marker")) ? RPC_DEFERRED : json_string("ignored");
}

static void complete_oldest(uint8_t how)
{
	if (!F.nheld)
		return;
	struct rpc_pending *p = F.held[0];
	memmove(F.held, F.held + 1, (size_t)(F.nheld - 1) * sizeof(F.held[0]));
	F.nheld--;
	if (how % 3 == 0) {
		rpc_complete(p, json_pack("{s:i}", "done", how), NULL);
	} else if (how % 3 == 1) {
		struct rpc_error e;
		rpc_fail(&e, RPC_FAILED, "deferred failure %u", how);
		rpc_complete(p, NULL, &e);
	} else {
		rpc_complete(p, NULL, NULL);
	}
}

static json_t *m_release(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	int n = F.nheld;
	while (F.nheld)
		complete_oldest(0);
	return json_integer(n);
}

/* An answer of params.kib KiB (at most 64): answers larger than the unread-answer bound. */
static json_t *m_big(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	json_int_t kib = json_integer_value(json_object_get(params, "kib"));
	if (kib < 0 || kib > 64)
		return rpc_fail(err, RPC_INVALID_PARAMS, "kib: 0 to 64");
	size_t n = (size_t)kib * 1024;
	char *s = malloc(n + 1);
	memset(s, 'b', n);
	s[n] = 0;
	json_t *r = json_string(s);
	free(s);
	return r;
}

static const struct rpc_method methods[] = {
	{"echo", m_echo, "params back"},
	{"fail", m_fail, "an error"},
	{"hold", m_hold, "deferred until completed"},
	{"defer_then_answer", m_defer_then_answer, "defers and answers at once"},
	{"defer_complete_now", m_defer_complete_now, "defers and completes at once"},
	{"release", m_release, "complete every deferred answer"},
	{"big", m_big, "a long answer"},
};

static void drain(int fd)
{
	char buf[16384];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *err = NULL;
	F.nheld = 0;
	F.rpc = rpc_server_new(NULL, NULL, methods, sizeof(methods) / sizeof(methods[0]), NULL, &err);
	if (!F.rpc) {
		free(err);
		return 0;
	}
	struct rpc_limits l;
	rpc_limits_default(&l);
	l.max_clients = 2;
	l.max_pending = 3;
	l.max_request = 300; /* small, so that short inputs reach every bound */
	l.max_unsent = 1024;
	rpc_server_set_limits(F.rpc, &l);

	int peer[3] = {-1, -1, -1};
	bool shut[2] = {false, false};
	for (int i = 0; i < 3; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			break;
		peer[i] = sv[1];
		/* The third is one client too many: refused with an error line. */
		rpc_server_add_client(F.rpc, sv[0]);
	}
	size_t pos = 0;
	while (pos < size) {
		uint8_t op = data[pos++];
		int who = op >> 7;
		int fd = peer[who];
		switch (op & 7) {
		case 5:
			if (fd >= 0)
				drain(fd);
			break;
		case 6:
			complete_oldest(pos < size ? data[pos++] : 0);
			break;
		case 7:
			if (fd >= 0 && !shut[who]) {
				shutdown(fd, SHUT_WR);
				shut[who] = true;
			}
			break;
		default: {
			if (pos >= size)
				break;
			size_t n = 1 + data[pos++] + 256u * ((op >> 3) & 15);
			if (n > size - pos)
				n = size - pos;
			if (fd >= 0 && !shut[who] && send(fd, data + pos, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
			    errno != EAGAIN)
				shut[who] = true;
			pos += n;
			break;
		}
		}
		rpc_server_poll(F.rpc);
	}
	/* Read everything, so queued answers go out, then stop with answers still deferred. */
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 3; i++)
			if (peer[i] >= 0)
				drain(peer[i]);
		rpc_server_poll(F.rpc);
	}
	if (size && data[size - 1] & 1)
		while (F.nheld)
			complete_oldest(data[size - 1]);
	rpc_server_free(F.rpc); /* answers what is still deferred with an error */
	F.rpc = NULL;
	F.nheld = 0;
	for (int i = 0; i < 3; i++)
		if (peer[i] >= 0)
			close(peer[i]);
	return 0;
}
