#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "mgmt/rpc.h"
#include "net/loop.h"
#include "net/send.h"
#include "util/log.h"
#include "util/sbuf.h"

/* A request line longer than this is refused and the client dropped. */
#define RPC_MAX_LINE (1u << 20)
#define RPC_MAX_CLIENTS 64

struct rpc_client {
	struct rpc_server *srv;
	struct rpc_client *next;
	struct loop_watch watch;
	int fd;
	struct sbuf in;
	struct sbuf out;
	size_t out_off;
	bool closing; /* close once out is written */
	bool eof;     /* the client sent EOF: read no more, close after the last pending answer */
	unsigned npending;
};

/* A request whose answer comes later (rpc_defer). */
struct rpc_pending {
	struct rpc_server *srv;
	struct rpc_pending *next, *prev;
	struct rpc_client *client; /* NULL once the client is gone (or the answer was given already) */
	json_t *id;                /* NULL for a notification */
	char method[64];
};

struct rpc_server {
	struct loop *loop;
	char *path;
	int fd;
	struct loop_watch watch;
	const struct rpc_method *methods;
	size_t nmethods;
	void *ctx;
	struct rpc_client *clients;
	unsigned nclients;
	struct rpc_pending *pending; /* every deferred reply not completed yet */
	size_t npending;
	/* the request a method is running for (rpc_defer) */
	bool in_method;
	struct rpc_client *cur_client;
	json_t *cur_id;
	const char *cur_method;
	struct rpc_pending *cur_pending; /* NULL again if completed before the method returned */
	bool cur_deferred;
};

/* What a method returns after rpc_defer: an immortal value (refcount -1), never sent. */
static json_t deferred_marker = {JSON_NULL, (size_t)-1};
json_t *const rpc_deferred_marker = &deferred_marker;

static void client_flush(struct rpc_client *c);
static void client_close(struct rpc_client *c);
static void pending_detach(struct rpc_pending *p);

json_t *rpc_fail(struct rpc_error *err, int code, const char *fmt, ...)
{
	err->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return NULL;
}

static char *rpc_response(json_t *id, json_t *result, const struct rpc_error *err)
{
	json_t *r = json_object();
	json_object_set_new(r, "jsonrpc", json_string("2.0"));
	if (err) {
		json_t *e = json_object();
		json_object_set_new(e, "code", json_integer(err->code));
		json_object_set_new(e, "message", json_string(err->message));
		json_object_set_new(r, "error", e);
	} else {
		json_object_set_new(r, "result", result ? result : json_null());
	}
	json_object_set(r, "id", id ? id : json_null());
	char *s = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return s;
}

static json_t *rpc_list_methods(struct rpc_server *s)
{
	json_t *a = json_array();
	for (size_t i = 0; i < s->nmethods; i++) {
		json_t *m = json_object();
		json_object_set_new(m, "name", json_string(s->methods[i].name));
		json_object_set_new(m, "help", json_string(s->methods[i].help ? s->methods[i].help : ""));
		json_array_append_new(a, m);
	}
	return a;
}

static char *handle_request(struct rpc_server *s, struct rpc_client *client, const char *request, size_t len)
{
	json_error_t jerr;
	struct rpc_error err = {0};
	json_t *req = json_loadb(request, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req) {
		rpc_fail(&err, RPC_PARSE_ERROR, "parse error: %s", jerr.text);
		return rpc_response(NULL, NULL, &err);
	}
	json_t *id = json_object_get(req, "id");
	json_t *version = json_object_get(req, "jsonrpc");
	json_t *method = json_object_get(req, "method");
	json_t *params = json_object_get(req, "params");
	char *out = NULL;
	if (!json_is_object(req) || !json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0 ||
	    !json_is_string(method) || (params && !json_is_object(params) && !json_is_array(params)) ||
	    (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id))) {
		rpc_fail(&err, RPC_INVALID_REQUEST, "not a JSON-RPC 2.0 request");
		out = rpc_response(json_is_object(req) ? id : NULL, NULL, &err);
		json_decref(req);
		return out;
	}
	const char *name = json_string_value(method);
	json_t *result = NULL;
	bool found = false;
	if (strcmp(name, "rpc.methods") == 0) {
		result = rpc_list_methods(s);
		found = true;
	}
	for (size_t i = 0; !found && i < s->nmethods; i++) {
		if (strcmp(s->methods[i].name, name) != 0)
			continue;
		found = true;
		/* Methods always see an object or array; absent params read as {}. */
		json_t *p = params ? json_incref(params) : json_object();
		s->in_method = true;
		s->cur_client = client;
		s->cur_id = id;
		s->cur_method = name;
		s->cur_pending = NULL;
		s->cur_deferred = false;
		result = s->methods[i].fn(s->ctx, p, &err);
		struct rpc_pending *deferred = s->cur_pending;
		bool was_deferred = s->cur_deferred;
		s->in_method = false;
		s->cur_client = NULL;
		s->cur_id = NULL;
		s->cur_method = NULL;
		s->cur_pending = NULL;
		s->cur_deferred = false;
		json_decref(p);
		if (was_deferred && (result == RPC_DEFERRED || !deferred)) {
			/* rpc_complete answers (or did already, inside the method: then that was the answer) */
			if (result != RPC_DEFERRED)
				json_decref(result);
			json_decref(req);
			return NULL;
		}
		if (was_deferred) {
			pending_detach(deferred); /* answered now: the handle answers nothing */
		} else if (result == RPC_DEFERRED) {
			result = NULL;
			rpc_fail(&err, RPC_INTERNAL_ERROR, "method %s deferred its answer without rpc_defer", name);
		}
		if (!result && !err.code)
			rpc_fail(&err, RPC_INTERNAL_ERROR, "method %s failed", name);
	}
	if (!found)
		rpc_fail(&err, RPC_METHOD_NOT_FOUND, "no method '%s'", name);
	if (id)
		out = rpc_response(id, result, err.code ? &err : NULL);
	else
		json_decref(result);
	json_decref(req);
	return out;
}

char *rpc_server_handle(struct rpc_server *s, const char *request, size_t len)
{
	return handle_request(s, NULL, request, len);
}

struct rpc_pending *rpc_defer(struct rpc_server *s)
{
	if (!s || !s->in_method || !s->cur_client || s->cur_deferred)
		return NULL;
	struct rpc_pending *p = xcalloc(1, sizeof(*p));
	p->srv = s;
	p->client = s->cur_client;
	p->id = s->cur_id ? json_incref(s->cur_id) : NULL;
	snprintf(p->method, sizeof(p->method), "%s", s->cur_method ? s->cur_method : "");
	p->next = s->pending;
	if (s->pending)
		s->pending->prev = p;
	s->pending = p;
	s->npending++;
	p->client->npending++;
	s->cur_pending = p;
	s->cur_deferred = true;
	return p;
}

const char *rpc_pending_method(const struct rpc_pending *p) { return p->method; }

size_t rpc_server_pending_count(const struct rpc_server *s) { return s ? s->npending : 0; }

/* Queue a response line on a client (nothing for NULL). */
static void client_queue(struct rpc_client *c, char *resp)
{
	if (!resp)
		return;
	sbuf_append(&c->out, resp, strlen(resp));
	sbuf_putc(&c->out, '\n');
	free(resp);
}

/* Detach p from its client; the client closes when it sent EOF and this was its last answer. */
static void pending_detach(struct rpc_pending *p)
{
	struct rpc_client *c = p->client;
	if (!c)
		return;
	p->client = NULL;
	c->npending--;
	if (c->eof && !c->npending)
		c->closing = true;
}

static void pending_unlink(struct rpc_pending *p)
{
	struct rpc_server *s = p->srv;
	if (p->prev)
		p->prev->next = p->next;
	else
		s->pending = p->next;
	if (p->next)
		p->next->prev = p->prev;
	if (s->cur_pending == p)
		s->cur_pending = NULL; /* completed inside the method that deferred it */
	s->npending--;
	json_decref(p->id);
	free(p);
}

bool rpc_complete(struct rpc_pending *p, json_t *result, const struct rpc_error *err)
{
	if (!p) {
		json_decref(result);
		return false;
	}
	struct rpc_client *c = p->client;
	bool sent = false;
	if (c && c->fd >= 0 && p->id) {
		struct rpc_error e = {0};
		if (err && err->code)
			e = *err;
		else if (!result)
			rpc_fail(&e, RPC_INTERNAL_ERROR, "method %s failed", p->method);
		client_queue(c, rpc_response(p->id, e.code ? NULL : result, e.code ? &e : NULL));
		if (!e.code)
			result = NULL; /* taken by the response */
		sent = true;
	}
	json_decref(result);
	pending_detach(p);
	pending_unlink(p);
	if (c && c->fd >= 0)
		client_flush(c);
	return sent;
}

static void client_free(void *arg)
{
	struct rpc_client *c = arg;
	sbuf_free(&c->in);
	sbuf_free(&c->out);
	free(c);
}

static void client_close(struct rpc_client *c)
{
	if (c->fd < 0)
		return;
	struct rpc_server *s = c->srv;
	/* its deferred answers are dropped when they come */
	for (struct rpc_pending *p = s->pending; p && c->npending; p = p->next)
		if (p->client == c)
			pending_detach(p);
	loop_watch_del(s->loop, &c->watch);
	close(c->fd);
	c->fd = -1;
	for (struct rpc_client **pp = &s->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	s->nclients--;
	loop_defer(s->loop, client_free, c);
}

static void client_flush(struct rpc_client *c)
{
	if (net_send_buffered(c->fd, &c->out, &c->out_off) < 0) {
		client_close(c);
		return;
	}
	if (c->out.len == 0) {
		if (c->closing) {
			client_close(c);
			return;
		}
	}
	loop_watch_mod(c->srv->loop, &c->watch, (c->eof ? 0 : EPOLLIN) | (c->out.len ? EPOLLOUT : 0));
}

static void client_on_io(void *arg, uint32_t events)
{
	struct rpc_client *c = arg;
	if (events & EPOLLOUT)
		client_flush(c);
	if (c->fd < 0 || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	if (c->eof) {
		if (events & (EPOLLHUP | EPOLLERR))
			client_close(c); /* gone for good: no one to answer */
		return;
	}
	char buf[65536];
	ssize_t r = read(c->fd, buf, sizeof(buf));
	if (r == 0 && c->npending && !(events & (EPOLLHUP | EPOLLERR))) {
		/* The client has sent all it will (shutdown of its sending side) and waits for the
		 * answers still to come: stop reading, close after the last one. */
		c->eof = true;
		sbuf_reset(&c->in);
		client_flush(c);
		return;
	}
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(c);
		return;
	}
	if (r < 0)
		return;
	sbuf_append(&c->in, buf, (size_t)r);
	size_t start = 0;
	for (size_t i = 0; i < c->in.len; i++) {
		if (c->in.data[i] != '\n')
			continue;
		if (i > start)
			client_queue(c, handle_request(c->srv, c, (const char *)c->in.data + start, i - start));
		start = i + 1;
		if (c->fd < 0 || c->closing)
			break;
	}
	if (start) {
		memmove(c->in.data, c->in.data + start, c->in.len - start);
		c->in.len -= start;
	}
	if (c->in.len > RPC_MAX_LINE) {
		struct rpc_error err;
		rpc_fail(&err, RPC_INVALID_REQUEST, "request longer than %u bytes", RPC_MAX_LINE);
		client_queue(c, rpc_response(NULL, NULL, &err));
		sbuf_reset(&c->in);
		c->closing = true;
	}
	client_flush(c);
}

static void server_on_accept(void *arg, uint32_t events)
{
	(void)events;
	struct rpc_server *s = arg;
	for (;;) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (s->nclients >= RPC_MAX_CLIENTS) {
			close(fd);
			continue;
		}
		struct rpc_client *c = xcalloc(1, sizeof(*c));
		c->srv = s;
		c->fd = fd;
		if (loop_watch_add(s->loop, &c->watch, fd, EPOLLIN, client_on_io, c) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = s->clients;
		s->clients = c;
		s->nclients++;
	}
}

struct rpc_server *rpc_server_new(struct loop *loop, const char *path, const struct rpc_method *methods,
				  size_t nmethods, void *ctx, char **errmsg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		*errmsg = xasprintf("management socket path too long: %s", path);
		return NULL;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*errmsg = xasprintf("socket: %s", strerror(errno));
		return NULL;
	}
	/* A socket file nobody answers on is left over from a crash: replace it. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0) {
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			close(fd);
			*errmsg = xasprintf("another daemon already listens on %s", path);
			return NULL;
		}
		close(probe);
	}
	unlink(path);
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		*errmsg = xasprintf("cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	struct rpc_server *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->path = xstrdup(path);
	s->fd = fd;
	s->methods = methods;
	s->nmethods = nmethods;
	s->ctx = ctx;
	if (loop && loop_watch_add(loop, &s->watch, fd, EPOLLIN, server_on_accept, s) < 0) {
		*errmsg = xasprintf("cannot watch %s", path);
		rpc_server_free(s);
		return NULL;
	}
	return s;
}

void rpc_server_free(struct rpc_server *s)
{
	if (!s)
		return;
	while (s->pending) {
		struct rpc_error err;
		rpc_fail(&err, RPC_INTERNAL_ERROR, "the server stopped before %s finished", s->pending->method);
		rpc_complete(s->pending, NULL, &err);
	}
	while (s->clients)
		client_close(s->clients);
	if (s->fd >= 0) {
		if (s->loop)
			loop_watch_del(s->loop, &s->watch);
		close(s->fd);
		unlink(s->path);
	}
	free(s->path);
	free(s);
}
