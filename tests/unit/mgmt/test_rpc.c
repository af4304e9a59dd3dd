/*
 * The JSON-RPC server over a real Unix socket: its loop runs on a thread, the test is the client.
 * Plain calls, notifications, deferred answers (completed later, out of order, with an error),
 * clients that leave or half-close before the answer, malformed requests, an oversized line, and
 * pending answers at rpc_server_free. Then the bounds on what a client may hold: a long line sent
 * in small pieces, clients that do not read their answers, too many deferred answers, too many
 * clients, slow and idle clients, deep nesting.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "mgmt/rpc.h"
#include "net/loop.h"

#define MAX_HELD 64

static struct {
	struct loop *loop;
	struct rpc_server *rpc;
	struct rpc_pending *held[MAX_HELD];
	int nheld;
} S;

/* ---- methods (they run on the loop's thread) */

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
	return rpc_fail(err, RPC_NOT_FOUND, "nothing here");
}

/* An error as long as the longest the target writes (a path, a spec and the fix): 700 characters. */
static json_t *m_fail_long(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	return rpc_fail(err, RPC_FAILED, "%0700d", 7);
}

struct later {
	struct loop_timer t;
	struct rpc_pending *p;
	bool error;
};

static void later_fire(void *arg)
{
	struct later *l = arg;
	if (l->error) {
		struct rpc_error e;
		rpc_fail(&e, RPC_FAILED, "it did not work out");
		rpc_complete(l->p, NULL, &e);
	} else {
		rpc_complete(l->p, json_pack("{s:b}", "done", 1), NULL);
	}
	free(l);
}

static json_t *later_common(json_t *params, bool error)
{
	struct rpc_pending *p = rpc_defer(S.rpc);
	if (!p)
		return json_pack("{s:b}", "deferred", 0);
	CHECK_STR(rpc_pending_method(p), error ? "later_error" : "later");
	CHECK(rpc_defer(S.rpc) == NULL); /* once per request */
	struct later *l = calloc(1, sizeof(*l));
	l->p = p;
	l->error = error;
	json_int_t ms = json_integer_value(json_object_get(params, "ms"));
	loop_timer_start(S.loop, &l->t, ms > 0 ? (uint64_t)ms : 100, 0, later_fire, l);
	return RPC_DEFERRED;
}

static json_t *m_later(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)err;
	return later_common(params, false);
}

static json_t *m_later_error(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)err;
	return later_common(params, true);
}

static json_t *m_hold(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	struct rpc_pending *p = rpc_defer(S.rpc);
	if (!p || S.nheld >= MAX_HELD)
		return rpc_fail(err, RPC_INTERNAL_ERROR, "cannot hold");
	S.held[S.nheld++] = p;
	return RPC_DEFERRED;
}

/* Defers, then answers at once anyway: the handle is held and answers nothing. */
static json_t *m_defer_then_answer(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	struct rpc_pending *p = rpc_defer(S.rpc);
	if (p)
		S.held[S.nheld++] = p;
	return json_string("now");
}

/* Defers and completes before returning (a result that was ready after all). */
static json_t *m_defer_complete_now(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)err;
	struct rpc_pending *p = rpc_defer(S.rpc);
	if (!p)
		return json_string("direct");
	CHECK(rpc_complete(p, json_string("completed"), NULL));
	return json_is_true(json_object_get(params, "marker")) ? RPC_DEFERRED : json_string("ignored");
}

static json_t *m_release(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	int sent = 0, total = S.nheld;
	for (int i = 0; i < S.nheld; i++)
		sent += rpc_complete(S.held[i], json_pack("{s:s}", "released", "yes"), NULL);
	S.nheld = 0;
	return json_pack("{s:i,s:i}", "sent", sent, "total", total);
}

static json_t *m_count(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	return json_pack("{s:I}", "pending", (json_int_t)rpc_server_pending_count(S.rpc));
}

static json_t *m_bad_marker(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	return RPC_DEFERRED; /* without rpc_defer */
}

static json_t *m_stop(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	loop_stop(S.loop);
	return json_true();
}

static json_t *m_limits(void *ctx, json_t *params, struct rpc_error *err);

static const struct rpc_method methods[] = {
	{"echo", m_echo, "params back"},
	{"fail", m_fail, "an error"},
	{"fail_long", m_fail_long, "an error of 700 characters"},
	{"later", m_later, "deferred answer after ms (100)"},
	{"later_error", m_later_error, "deferred error after ms (100)"},
	{"hold", m_hold, "deferred until release"},
	{"defer_then_answer", m_defer_then_answer, "defers and answers at once"},
	{"defer_complete_now", m_defer_complete_now, "defers and completes at once"},
	{"release", m_release, "complete every held answer"},
	{"count", m_count, "pending answers"},
	{"bad_marker", m_bad_marker, "RPC_DEFERRED without rpc_defer"},
	{"stop", m_stop, "stop the loop"},
	{"limits", m_limits, "set the limits the test wants"},
};

static void *loop_thread(void *arg)
{
	(void)arg;
	loop_run(S.loop);
	return NULL;
}

/* ---- client side (the test's thread, blocking sockets with timeouts) */

static char sock_path[108];

struct cl {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void cl_open(struct cl *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	CHECK_EQ(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = {5, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void cl_close(struct cl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void cl_send(struct cl *c, const char *line)
{
	size_t n = strlen(line);
	CHECK(send(c->fd, line, n, MSG_NOSIGNAL) == (ssize_t)n);
	CHECK(send(c->fd, "\n", 1, MSG_NOSIGNAL) == 1);
}

/* The next response line, parsed; NULL on EOF or timeout. */
static json_t *cl_recv(struct cl *c)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			json_t *j = json_loadb(c->buf, n, 0, NULL);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			CHECK(j != NULL);
			return j;
		}
		if (c->len == sizeof(c->buf))
			return NULL;
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r <= 0)
			return NULL;
		c->len += (size_t)r;
	}
}

/* True when the server closed the connection (EOF) with nothing more to read. */
static bool cl_eof(struct cl *c)
{
	char b;
	return c->len == 0 && recv(c->fd, &b, 1, 0) == 0;
}

static json_int_t id_of(json_t *r) { return json_integer_value(json_object_get(r, "id")); }
static json_int_t code_of(json_t *r) { return json_integer_value(json_object_get(json_object_get(r, "error"), "code")); }

/* One call on a fresh connection. */
static json_t *call(const char *line)
{
	struct cl c;
	cl_open(&c);
	cl_send(&c, line);
	json_t *r = cl_recv(&c);
	cl_close(&c);
	return r;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static json_int_t pending_now(void)
{
	json_t *r = call("{\"jsonrpc\":\"2.0\",\"method\":\"count\",\"id\":1}");
	json_int_t n = json_integer_value(json_object_get(json_object_get(r, "result"), "pending"));
	json_decref(r);
	return n;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- tests */

static void test_plain(void)
{
	struct cl c;
	cl_open(&c);
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1},\"id\":1}");
	json_t *r = cl_recv(&c);
	CHECK_EQ(id_of(r), 1);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "a")), 1);
	json_decref(r);
	/* a notification gets no answer; string ids come back as they were */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[]}");
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"fail\",\"id\":\"x\"}");
	r = cl_recv(&c);
	CHECK_STR(json_string_value(json_object_get(r, "id")), "x");
	CHECK_EQ(code_of(r), RPC_NOT_FOUND);
	json_decref(r);
	/* a long message arrives whole */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"fail_long\",\"id\":3}");
	r = cl_recv(&c);
	CHECK_EQ(code_of(r), RPC_FAILED);
	const char *m = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
	CHECK(m && strlen(m) == 700 && m[699] == '7');
	json_decref(r);
	/* rpc.methods lists the table */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.methods\",\"id\":2}");
	r = cl_recv(&c);
	CHECK_EQ(json_array_size(json_object_get(r, "result")), sizeof(methods) / sizeof(methods[0]));
	json_decref(r);
	cl_close(&c);
}

static void test_deferred(void)
{
	struct cl c;
	cl_open(&c);
	long t0 = now_ms();
	/* the deferred call first, a plain one behind it on the same connection: answered first */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"later\",\"params\":{\"ms\":150},\"id\":7}");
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{},\"id\":8}");
	json_t *r = cl_recv(&c);
	CHECK_EQ(id_of(r), 8);
	json_decref(r);
	r = cl_recv(&c);
	CHECK_EQ(id_of(r), 7);
	CHECK(json_is_true(json_object_get(json_object_get(r, "result"), "done")));
	CHECK(now_ms() - t0 >= 140);
	json_decref(r);
	/* a deferred error */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"later_error\",\"params\":{\"ms\":20},\"id\":9}");
	r = cl_recv(&c);
	CHECK_EQ(id_of(r), 9);
	CHECK_EQ(code_of(r), RPC_FAILED);
	CHECK_STR(json_string_value(json_object_get(json_object_get(r, "error"), "message")), "it did not work out");
	json_decref(r);
	/* two deferred at once on one connection, completed in the other order */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"later\",\"params\":{\"ms\":200},\"id\":10}");
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"later\",\"params\":{\"ms\":20},\"id\":11}");
	r = cl_recv(&c);
	CHECK_EQ(id_of(r), 11);
	json_decref(r);
	r = cl_recv(&c);
	CHECK_EQ(id_of(r), 10);
	json_decref(r);
	/* a deferred notification: nothing is sent, the handle is completed all the same */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"later\",\"params\":{\"ms\":10}}");
	sleep_ms(60);
	CHECK_EQ(pending_now(), 0);
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":12}");
	r = cl_recv(&c);
	CHECK_EQ(id_of(r), 12);
	json_decref(r);
	cl_close(&c);

	/* the marker without rpc_defer is an internal error, not silence */
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"bad_marker\",\"id\":13}");
	CHECK_EQ(code_of(r), RPC_INTERNAL_ERROR);
	json_decref(r);
	/* deferring and answering at once: the direct answer goes out, the handle answers nothing */
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"defer_then_answer\",\"id\":14}");
	CHECK_STR(json_string_value(json_object_get(r, "result")), "now");
	json_decref(r);
	CHECK_EQ(pending_now(), 1);
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"release\",\"id\":15}");
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "total")), 1);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "sent")), 0);
	json_decref(r);
	CHECK_EQ(pending_now(), 0);
	/* completed inside the method: one answer, whatever the method returns then */
	struct cl c2;
	cl_open(&c2);
	cl_send(&c2, "{\"jsonrpc\":\"2.0\",\"method\":\"defer_complete_now\",\"params\":{\"marker\":true},\"id\":16}");
	cl_send(&c2, "{\"jsonrpc\":\"2.0\",\"method\":\"defer_complete_now\",\"id\":17}");
	cl_send(&c2, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":18}");
	r = cl_recv(&c2);
	CHECK_EQ(id_of(r), 16);
	CHECK_STR(json_string_value(json_object_get(r, "result")), "completed");
	json_decref(r);
	r = cl_recv(&c2);
	CHECK_EQ(id_of(r), 17);
	CHECK_STR(json_string_value(json_object_get(r, "result")), "completed");
	json_decref(r);
	r = cl_recv(&c2);
	CHECK_EQ(id_of(r), 18);
	json_decref(r);
	cl_close(&c2);
	CHECK_EQ(pending_now(), 0);
}

static void test_client_gone(void)
{
	/* the client closes before the answer: the answer is dropped when it comes */
	struct cl c;
	cl_open(&c);
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}");
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":2}");
	sleep_ms(50);
	CHECK_EQ(pending_now(), 2);
	cl_close(&c);
	sleep_ms(50);
	CHECK_EQ(pending_now(), 2); /* still valid handles */
	json_t *r = call("{\"jsonrpc\":\"2.0\",\"method\":\"release\",\"id\":3}");
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "total")), 2);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "sent")), 0);
	json_decref(r);
	CHECK_EQ(pending_now(), 0);

	/* a timed completion after the client left */
	cl_open(&c);
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"later\",\"params\":{\"ms\":80},\"id\":4}");
	sleep_ms(20);
	cl_close(&c);
	sleep_ms(150);
	CHECK_EQ(pending_now(), 0);

	/* a client that shuts down its sending side still gets its answer, then EOF */
	cl_open(&c);
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":5}");
	CHECK_EQ(shutdown(c.fd, SHUT_WR), 0);
	sleep_ms(50);
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"release\",\"id\":6}");
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "sent")), 1);
	json_decref(r);
	r = cl_recv(&c);
	CHECK_EQ(id_of(r), 5);
	CHECK_STR(json_string_value(json_object_get(json_object_get(r, "result"), "released")), "yes");
	json_decref(r);
	CHECK(cl_eof(&c));
	cl_close(&c);

	/* EOF without pending answers closes at once */
	cl_open(&c);
	CHECK_EQ(shutdown(c.fd, SHUT_WR), 0);
	CHECK(cl_eof(&c));
	cl_close(&c);
}

static void test_malformed(void)
{
	static const struct {
		const char *line;
		int code;
	} cases[] = {
		{"{not json", RPC_PARSE_ERROR},
		{"\xff\xfe garbage", RPC_PARSE_ERROR},
		{"[1,2,3]", RPC_INVALID_REQUEST},
		{"{\"jsonrpc\":\"1.0\",\"method\":\"echo\",\"id\":1}", RPC_INVALID_REQUEST},
		{"{\"jsonrpc\":\"2.0\",\"id\":1}", RPC_INVALID_REQUEST},
		{"{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":1}", RPC_INVALID_REQUEST},
		{"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":5,\"id\":1}", RPC_INVALID_REQUEST},
		{"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":{\"a\":1}}", RPC_INVALID_REQUEST},
		{"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1,\"id\":2}", RPC_PARSE_ERROR},
		{"{\"jsonrpc\":\"2.0\",\"method\":\"no.such\",\"id\":1}", RPC_METHOD_NOT_FOUND},
	};
	struct cl c;
	cl_open(&c);
	cl_send(&c, ""); /* empty lines are skipped */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cl_send(&c, cases[i].line);
		json_t *r = cl_recv(&c);
		CHECK(r != NULL);
		if (code_of(r) != cases[i].code)
			fprintf(stderr, "case %zu: %s\n", i, cases[i].line);
		CHECK_EQ(code_of(r), cases[i].code);
		CHECK(json_object_get(r, "result") == NULL);
		json_decref(r);
	}
	/* the connection still works after all that */
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":99}");
	json_t *r = cl_recv(&c);
	CHECK_EQ(id_of(r), 99);
	json_decref(r);
	cl_close(&c);
}

static void test_oversized(void)
{
	struct cl c;
	cl_open(&c);
	static char chunk[65536];
	memset(chunk, 'a', sizeof(chunk));
	size_t total = 0;
	while (total < (1u << 20) + 2 * sizeof(chunk)) {
		ssize_t w = send(c.fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (w <= 0)
			break; /* the server may close first */
		total += (size_t)w;
	}
	CHECK(total > (1u << 20));
	json_t *r = cl_recv(&c);
	CHECK_EQ(code_of(r), RPC_INVALID_REQUEST);
	CHECK(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")) ?: "", "longer than"));
	json_decref(r);
	CHECK(cl_eof(&c) || errno == ECONNRESET);
	cl_close(&c);
	/* the server goes on */
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}");
	CHECK_EQ(id_of(r), 1);
	json_decref(r);
}

static pthread_t loop_th;

/* CPU time of the loop's thread: what the server spent. */
static double cpu_s(void)
{
	clockid_t id;
	struct timespec ts = {0, 0};
	if (pthread_getcpuclockid(loop_th, &id) == 0)
		clock_gettime(id, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A request line of nearly 1 MiB sent 64 bytes at a time: the server looks at each byte once,
 * not at the whole line again after every read.
 */
static void test_line_in_pieces(void)
{
	size_t pad = (1u << 20) - 200;
	char *line = malloc(pad + 200);
	int n = snprintf(line, 200, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"pad\":\"");
	memset(line + n, 'x', pad);
	n += (int)pad;
	n += snprintf(line + n, 100, "\"},\"id\":5}\n");
	struct cl c;
	cl_open(&c);
	double t0 = cpu_s();
	long w0 = now_ms();
	for (int off = 0; off < n; off += 64) {
		int k = n - off < 64 ? n - off : 64;
		CHECK(send(c.fd, line + off, (size_t)k, MSG_NOSIGNAL) == k);
	}
	/* the answer is as long as the request: read it whole */
	size_t got = 0;
	bool ok = false;
	char *buf = malloc((size_t)n + 4096);
	while (got < (size_t)n + 4096) {
		ssize_t r = recv(c.fd, buf + got, (size_t)n + 4096 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (buf[got - 1] == '\n') {
			ok = true;
			break;
		}
	}
	double spent = cpu_s() - t0;
	printf("1 MiB request in 64-byte pieces: answered=%d, server spent %.3f s of CPU, %ld ms\n", ok, spent,
	       now_ms() - w0);
	CHECK(ok);
	CHECK(ok && strstr(buf, "\"id\":5") != NULL);
	CHECK(spent < 0.3);
	free(buf);
	free(line);
	cl_close(&c);
}

/*
 * A client that sends requests and never reads the answers: once 4 MiB of answers wait for it,
 * the server reads nothing more from it, so its sends stop going through. When it reads, every
 * request is answered after all.
 */
static void test_unread_answers(void)
{
	struct cl c;
	cl_open(&c);
	char req[1200];
	char pad[1025];
	memset(pad, 'y', 1024);
	pad[1024] = 0;
	int n = snprintf(req, sizeof(req),
			 "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"p\":\"%s\"},\"id\":1}\n", pad);
	struct timeval tv = {0, 200000};
	setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	size_t sent = 0, requests = 0;
	while (sent < (24u << 20)) {
		ssize_t w = send(c.fd, req, (size_t)n, MSG_NOSIGNAL);
		if (w != n) {
			/* a partial request: finish it, or the count below is off */
			if (w > 0) {
				struct timeval tv2 = {5, 0};
				setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv2, sizeof(tv2));
				CHECK(send(c.fd, req + w, (size_t)(n - w), MSG_NOSIGNAL) == n - w);
				sent += (size_t)n;
				requests++;
			}
			break;
		}
		sent += (size_t)n;
		requests++;
	}
	printf("a client that reads nothing got %zu bytes of requests through\n", sent);
	CHECK(sent < (12u << 20));
	/* now read: every request is answered */
	size_t answers = 0;
	for (;;) {
		if (answers == requests)
			break;
		json_t *r = cl_recv(&c);
		if (!r)
			break;
		answers++;
		json_decref(r);
	}
	CHECK_EQ(answers, requests);
	cl_close(&c);
}

/* Beyond 32 deferred answers on one connection a method cannot defer: it answers at once. */
static void test_pending_bound(void)
{
	struct cl c;
	cl_open(&c);
	for (int i = 0; i < 33; i++) {
		char line[100];
		snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":%d}", 100 + i);
		cl_send(&c, line);
	}
	json_t *r = cl_recv(&c);
	CHECK_EQ(id_of(r), 132);
	CHECK_EQ(code_of(r), RPC_INTERNAL_ERROR); /* "cannot hold": rpc_defer said no */
	json_decref(r);
	CHECK_EQ(pending_now(), 32);
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"release\",\"id\":1}");
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "sent")), 32);
	json_decref(r);
	for (int i = 0; i < 32; i++) {
		r = cl_recv(&c);
		CHECK(r != NULL);
		json_decref(r);
	}
	cl_close(&c);
}

/* One client more than the limit is told so and closed; the others go on. */
static void test_client_limit(void)
{
	enum { N = 64 };
	static struct cl cs[N + 1];
	for (int i = 0; i < N; i++) {
		cl_open(&cs[i]);
		cl_send(&cs[i], "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}");
		json_t *r = cl_recv(&cs[i]);
		CHECK_EQ(id_of(r), 1);
		json_decref(r);
	}
	cl_open(&cs[N]);
	json_t *r = cl_recv(&cs[N]);
	CHECK(r != NULL);
	const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
	CHECK(msg && strstr(msg, "too many clients"));
	json_decref(r);
	CHECK(cl_eof(&cs[N]));
	cl_close(&cs[N]);
	cl_send(&cs[0], "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":2}");
	r = cl_recv(&cs[0]);
	CHECK_EQ(id_of(r), 2);
	json_decref(r);
	for (int i = 0; i < N; i++)
		cl_close(&cs[i]);
	sleep_ms(50);
	/* freed slots are free again */
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":3}");
	CHECK_EQ(id_of(r), 3);
	json_decref(r);
}

/* Deeply nested JSON is a parse error (jansson stops at 2048 levels), not a crash. */
static void test_deep_nesting(void)
{
	size_t depth = 200000;
	char *line = malloc(2 * depth + 100);
	size_t n = (size_t)sprintf(line, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1,\"params\":");
	memset(line + n, '[', depth);
	n += depth;
	memset(line + n, ']', depth);
	n += depth;
	line[n++] = '}';
	line[n] = 0;
	struct cl c;
	cl_open(&c);
	cl_send(&c, line);
	json_t *r = cl_recv(&c);
	CHECK_EQ(code_of(r), RPC_PARSE_ERROR);
	json_decref(r);
	cl_close(&c);
	free(line);
}

/* Limits set through a method, so that they change on the loop's thread. */
static struct rpc_limits want_limits;

static json_t *m_limits(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)ctx;
	(void)params;
	(void)err;
	rpc_server_set_limits(S.rpc, &want_limits);
	return json_true();
}

/*
 * Slow and idle clients: a request begun and not finished is answered with an error and the
 * client closed; a client with nothing going on is closed; one waiting for a deferred answer is not.
 */
static void test_timeouts(void)
{
	rpc_limits_default(&want_limits);
	want_limits.request_timeout_ms = 300;
	want_limits.idle_timeout_ms = 400;
	json_t *r = call("{\"jsonrpc\":\"2.0\",\"method\":\"limits\",\"id\":1}");
	CHECK(json_is_true(json_object_get(r, "result")));
	json_decref(r);

	struct cl slow, idle, waiting;
	cl_open(&slow);
	cl_open(&idle);
	cl_open(&waiting);
	static const char part[] = "{\"jsonrpc\":\"2.0\",\"me";
	CHECK(send(slow.fd, part, strlen(part), MSG_NOSIGNAL) == (ssize_t)strlen(part));
	cl_send(&waiting, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":7}");
	long t0 = now_ms();
	r = cl_recv(&slow);
	long t_slow = now_ms() - t0;
	CHECK(r != NULL);
	const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
	CHECK(msg && strstr(msg, "not completed"));
	json_decref(r);
	CHECK(cl_eof(&slow));
	CHECK(cl_eof(&idle));
	long t_idle = now_ms() - t0;
	printf("slow request closed after %ld ms, idle client after %ld ms\n", t_slow, t_idle);
	CHECK(t_slow >= 250 && t_slow < 2000);
	CHECK(t_idle >= 350 && t_idle < 2000);
	sleep_ms(600);
	/* the client with a deferred answer is still there and gets it */
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"release\",\"id\":2}");
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "result"), "sent")), 1);
	json_decref(r);
	r = cl_recv(&waiting);
	CHECK_EQ(id_of(r), 7);
	json_decref(r);
	cl_close(&slow);
	cl_close(&idle);
	cl_close(&waiting);

	rpc_limits_default(&want_limits);
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"limits\",\"id\":3}");
	json_decref(r);
}

/* A daemon that answers with an endless line: the client gives up at its bound, not at its memory. */
static char flood_path[108];

static void *flood_daemon(void *arg)
{
	int lfd = *(int *)arg;
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	static char chunk[1 << 16];
	memset(chunk, 'z', sizeof(chunk));
	for (size_t sent = 0; sent < (80u << 20);) {
		ssize_t w = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (w <= 0)
			break;
		sent += (size_t)w;
	}
	close(fd);
	return NULL;
}

static void test_client_answer_bound(void)
{
	snprintf(flood_path, sizeof(flood_path), "/tmp/isthmus-test-rpc-flood-%d.sock", (int)getpid());
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", flood_path);
	unlink(flood_path);
	CHECK_EQ(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(lfd, 1), 0);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, flood_daemon, &lfd), 0);
	int code = -1;
	char *err = NULL;
	json_t *r = rpc_call(flood_path, "echo", NULL, 20000, &code, &err);
	CHECK(r == NULL);
	CHECK(err && strstr(err, "longer than"));
	if (err)
		printf("rpc_call against an endless answer: %s\n", err);
	free(err);
	pthread_join(th, NULL);
	close(lfd);
	unlink(flood_path);
}

/*
 * Requests followed by EOF while the answers wait to be read: every request that came before
 * the EOF is answered, even those still unread when it came, then the connection closes.
 */
static void test_eof_after_unread_answers(void)
{
	rpc_limits_default(&want_limits);
	want_limits.max_unsent = 16384;
	json_t *r = call("{\"jsonrpc\":\"2.0\",\"method\":\"limits\",\"id\":1}");
	json_decref(r);
	struct cl c;
	cl_open(&c);
	char pad[1025];
	memset(pad, 'q', 1024);
	pad[1024] = 0;
	enum { N = 60 };
	for (int i = 0; i < N; i++) {
		char line[1200];
		snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"p\":\"%s\"},\"id\":%d}",
			 pad, i);
		cl_send(&c, line);
	}
	sleep_ms(100); /* the server answers until 16 KiB wait unread, then stops reading */
	CHECK_EQ(shutdown(c.fd, SHUT_WR), 0);
	int answers = 0;
	for (;;) {
		json_t *a = cl_recv(&c);
		if (!a)
			break;
		CHECK_EQ(id_of(a), answers);
		answers++;
		json_decref(a);
	}
	CHECK_EQ(answers, N);
	CHECK(cl_eof(&c));
	cl_close(&c);
	rpc_limits_default(&want_limits);
	r = call("{\"jsonrpc\":\"2.0\",\"method\":\"limits\",\"id\":2}");
	json_decref(r);
}

int main(void)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/isthmus-test-rpc-%d.sock", (int)getpid());
	S.loop = loop_new();
	char *err = NULL;
	S.rpc = rpc_server_new(S.loop, sock_path, methods, sizeof(methods) / sizeof(methods[0]), NULL, &err);
	CHECK(S.rpc != NULL);
	if (!S.rpc) {
		fprintf(stderr, "%s\n", err);
		TEST_MAIN_END();
	}
	/* through rpc_server_handle (no connection) a method cannot defer: it answers at once */
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"method\":\"later\",\"id\":1}";
	char *out = rpc_server_handle(S.rpc, req, strlen(req));
	CHECK(out && strstr(out, "\"deferred\":false"));
	free(out);
	CHECK(rpc_defer(S.rpc) == NULL); /* outside a method */

	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, loop_thread, NULL), 0);
	loop_th = th;
	test_plain();
	test_deferred();
	test_client_gone();
	test_malformed();
	test_oversized();
	test_line_in_pieces();
	test_unread_answers();
	test_pending_bound();
	test_client_limit();
	test_deep_nesting();
	test_timeouts();
	test_eof_after_unread_answers();
	test_client_answer_bound();

	/* An answer still pending when the server is freed: the client gets an error. */
	struct cl c;
	cl_open(&c);
	cl_send(&c, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":42}");
	sleep_ms(50);
	CHECK_EQ(pending_now(), 1);
	json_t *r = call("{\"jsonrpc\":\"2.0\",\"method\":\"stop\",\"id\":1}");
	CHECK(json_is_true(json_object_get(r, "result")));
	json_decref(r);
	pthread_join(th, NULL);
	S.nheld = 0; /* the server frees the handles */
	rpc_server_free(S.rpc);
	r = cl_recv(&c);
	CHECK_EQ(id_of(r), 42);
	CHECK_EQ(code_of(r), RPC_INTERNAL_ERROR);
	json_decref(r);
	CHECK(cl_eof(&c));
	cl_close(&c);
	loop_free(S.loop);
	CHECK(access(sock_path, F_OK) != 0);
	TEST_MAIN_END();
}
