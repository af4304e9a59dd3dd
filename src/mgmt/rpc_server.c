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
	bool closing;
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
};

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

char *rpc_server_handle(struct rpc_server *s, const char *request, size_t len)
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
		result = s->methods[i].fn(s->ctx, p, &err);
		json_decref(p);
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
	while (c->out_off < c->out.len) {
		ssize_t w = write(c->fd, c->out.data + c->out_off, c->out.len - c->out_off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			client_close(c);
			return;
		}
		c->out_off += (size_t)w;
	}
	if (c->out_off == c->out.len) {
		sbuf_reset(&c->out);
		c->out_off = 0;
		if (c->closing) {
			client_close(c);
			return;
		}
	}
	loop_watch_mod(c->srv->loop, &c->watch, EPOLLIN | (c->out.len ? EPOLLOUT : 0));
}

static void client_on_io(void *arg, uint32_t events)
{
	struct rpc_client *c = arg;
	if (events & EPOLLOUT)
		client_flush(c);
	if (c->fd < 0 || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	char buf[65536];
	ssize_t r = read(c->fd, buf, sizeof(buf));
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
		if (i > start) {
			char *resp = rpc_server_handle(c->srv, (const char *)c->in.data + start, i - start);
			if (resp) {
				sbuf_append(&c->out, resp, strlen(resp));
				sbuf_putc(&c->out, '\n');
				free(resp);
			}
		}
		start = i + 1;
	}
	if (start) {
		memmove(c->in.data, c->in.data + start, c->in.len - start);
		c->in.len -= start;
	}
	if (c->in.len > RPC_MAX_LINE) {
		struct rpc_error err;
		rpc_fail(&err, RPC_INVALID_REQUEST, "request longer than %u bytes", RPC_MAX_LINE);
		char *resp = rpc_response(NULL, NULL, &err);
		sbuf_append(&c->out, resp, strlen(resp));
		sbuf_putc(&c->out, '\n');
		free(resp);
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
