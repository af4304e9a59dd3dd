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
#include "net/accept.h"
#include "net/loop.h"
#include "net/send.h"
#include "util/log.h"
#include "util/sbuf.h"

struct rpc_client {
	struct rpc_server *srv;
	struct rpc_client *next;
	struct loop_watch watch;
	int fd;
	struct sbuf in;
	size_t scanned; /* bytes of in known to hold no newline: each byte is looked at once */
	struct sbuf out;
	size_t out_off;
	bool closing; /* close once out is written */
	bool eof;     /* the client sent EOF: read no more; answer what came, close after the last answer */
	unsigned npending;
	uint64_t active_ms;  /* last byte read or written */
	uint64_t request_ms; /* when the request now in `in` began; 0 when in holds none */
};

/* A request whose answer comes later (rpc_defer). */
struct rpc_pending {
	struct rpc_server *srv;
	struct rpc_pending *next, *prev;
	struct rpc_client *client; /* NULL once the client is gone (or the answer was given already) */
	json_t *id;                /* NULL for a notification */
	char method[64];
};

/* What rpc_defer needs to know about the method running now (all cleared when it returns). */
struct method_call {
	bool running;
	struct rpc_client *client;
	json_t *id;
	const char *name;
	struct rpc_pending *pending; /* NULL again if completed before the method returned */
	bool deferred;
};

struct rpc_server {
	struct loop *loop; /* NULL: driven by rpc_server_poll */
	char *path;        /* NULL: no listening socket */
	int fd;
	struct loop_watch watch;
	struct loop_timer sweep;  /* timeouts, and listening again after running out of descriptors */
	bool accept_paused;
	uint64_t accept_resume_ms;
	struct rpc_limits limits;
	const struct rpc_method *methods;
	size_t nmethods;
	void *ctx;
	struct rpc_client *clients;
	unsigned nclients;
	struct rpc_client *closed; /* without a loop: closed clients, freed after the current poll */
	struct rpc_pending *pending; /* every deferred reply not completed yet */
	size_t npending;
	struct method_call cur; /* the request a method is running for (rpc_defer) */
};

void rpc_limits_default(struct rpc_limits *l)
{
	l->max_clients = 64;
	l->max_pending = 32;
	l->max_request = 1u << 20;
	l->max_unsent = 4u << 20;
	l->request_timeout_ms = 30000;
	l->send_timeout_ms = 30000;
	l->idle_timeout_ms = 60000;
}

static uint64_t now_ms(const struct rpc_server *s) { return s->loop ? loop_now_ms() : 0; }

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
		s->cur = (struct method_call){.running = true, .client = client, .id = id, .name = name};
		result = s->methods[i].fn(s->ctx, p, &err);
		struct rpc_pending *deferred = s->cur.pending;
		bool was_deferred = s->cur.deferred;
		s->cur = (struct method_call){0};
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
	if (!s || !s->cur.running || !s->cur.client || s->cur.deferred ||
	    s->cur.client->npending >= s->limits.max_pending)
		return NULL;
	struct rpc_pending *p = xcalloc(1, sizeof(*p));
	p->srv = s;
	p->client = s->cur.client;
	p->id = s->cur.id ? json_incref(s->cur.id) : NULL;
	snprintf(p->method, sizeof(p->method), "%s", s->cur.name ? s->cur.name : "");
	p->next = s->pending;
	if (s->pending)
		s->pending->prev = p;
	s->pending = p;
	s->npending++;
	p->client->npending++;
	s->cur.pending = p;
	s->cur.deferred = true;
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
	if (c->eof && !c->npending && !c->in.len)
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
	if (s->cur.pending == p)
		s->cur.pending = NULL; /* completed inside the method that deferred it */
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

static void client_watch(struct rpc_client *c, uint32_t events)
{
	if (c->srv->loop)
		loop_watch_mod(c->srv->loop, &c->watch, events);
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
	if (s->loop)
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
	/* Callers up the stack may still look at c: free it once they are done. */
	if (s->loop) {
		loop_defer(s->loop, client_free, c);
	} else {
		c->next = s->closed;
		s->closed = c;
	}
}

static size_t client_unsent(const struct rpc_client *c) { return c->out.len - c->out_off; }

/* Too much it has not read: read nothing more from it until it does. */
static bool client_blocked(const struct rpc_client *c) { return client_unsent(c) > c->srv->limits.max_unsent; }

static void client_flush(struct rpc_client *c)
{
	size_t before = client_unsent(c);
	if (net_send_buffered(c->fd, &c->out, &c->out_off) < 0) {
		client_close(c);
		return;
	}
	if (client_unsent(c) != before)
		c->active_ms = now_ms(c->srv);
	if (c->out.len == 0 && c->closing) {
		client_close(c);
		return;
	}
	bool read = !c->eof && !c->closing && !client_blocked(c);
	client_watch(c, (read ? EPOLLIN : 0) | (c->out.len ? EPOLLOUT : 0));
}

/* Answer with an error line, then close once it is out. */
static void client_refuse(struct rpc_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void client_refuse(struct rpc_client *c, int code, const char *fmt, ...)
{
	struct rpc_error err = {.code = code};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err.message, sizeof(err.message), fmt, ap);
	va_end(ap);
	client_queue(c, rpc_response(NULL, NULL, &err));
	sbuf_reset(&c->in);
	c->scanned = 0;
	c->request_ms = 0;
	c->closing = true;
}

/* Answer every complete request line in c->in, as far as the client reads its answers. */
static void client_take_lines(struct rpc_client *c)
{
	struct rpc_server *s = c->srv;
	size_t start = 0;
	while (c->fd >= 0 && !c->closing) {
		if (client_blocked(c)) {
			/* Answers are queued faster than sent: push them now, stop only if the socket is full
			 * (then its EPOLLOUT brings us back; nothing else might). */
			size_t before = client_unsent(c);
			if (net_send_buffered(c->fd, &c->out, &c->out_off) < 0) {
				client_close(c);
				return;
			}
			if (client_unsent(c) != before)
				c->active_ms = now_ms(s);
			if (client_blocked(c))
				break;
		}
		const uint8_t *nl =
			c->scanned < c->in.len ? memchr(c->in.data + c->scanned, '\n', c->in.len - c->scanned) : NULL;
		if (!nl) {
			c->scanned = c->in.len;
			break;
		}
		size_t end = (size_t)(nl - c->in.data);
		if (end > start)
			client_queue(c, handle_request(s, c, (const char *)c->in.data + start, end - start));
		start = c->scanned = end + 1;
	}
	if (c->fd < 0 || c->closing)
		return;
	if (start) {
		memmove(c->in.data, c->in.data + start, c->in.len - start);
		c->in.len -= start;
		c->scanned -= start;
		c->request_ms = 0;
	}
	if (c->eof && !client_blocked(c)) {
		/* Every complete request after EOF is answered; a line without its newline never will be. */
		sbuf_reset(&c->in);
		c->scanned = 0;
		c->request_ms = 0;
		if (!c->npending)
			c->closing = true;
		return;
	}
	if (c->in.len && !c->request_ms)
		c->request_ms = now_ms(s) ? now_ms(s) : 1;
	if (c->scanned > s->limits.max_request)
		client_refuse(c, RPC_INVALID_REQUEST, "request longer than %zu bytes", s->limits.max_request);
}

static void client_read(struct rpc_client *c, uint32_t events)
{
	char buf[65536];
	ssize_t r = read(c->fd, buf, sizeof(buf));
	if (r == 0 && !(events & (EPOLLHUP | EPOLLERR))) {
		/* The client has sent all it will (shutdown of its sending side) and may wait for answers
		 * still to come: stop reading; what it sent is answered, then the connection closes. */
		c->eof = true;
		return;
	}
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(c);
		return;
	}
	if (r < 0)
		return;
	c->active_ms = now_ms(c->srv);
	sbuf_append(&c->in, buf, (size_t)r);
}

static void client_on_io(void *arg, uint32_t events)
{
	struct rpc_client *c = arg;
	if (events & EPOLLOUT)
		client_flush(c);
	if (c->fd < 0)
		return;
	if (c->eof && (events & (EPOLLHUP | EPOLLERR))) {
		client_close(c); /* gone for good: no one to answer */
		return;
	}
	if (!c->eof && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->closing && !client_blocked(c))
		client_read(c, events);
	if (c->fd < 0)
		return;
	/* Also after EPOLLOUT alone: lines left while the client was not reading its answers. */
	client_take_lines(c);
	if (c->fd >= 0)
		client_flush(c);
}

bool rpc_server_add_client(struct rpc_server *s, int fd)
{
	if (s->nclients >= s->limits.max_clients) {
		/* Said on the socket, so the caller sees why rather than a bare close. */
		char *line = xasprintf("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":%d,"
				       "\"message\":\"too many clients (%u)\"},\"id\":null}\n",
				       RPC_FAILED, s->limits.max_clients);
		if (send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			/* nothing more to do: the close below tells the client all the same */
		}
		free(line);
		close(fd);
		return false;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	struct rpc_client *c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->fd = fd;
	c->active_ms = now_ms(s);
	if (s->loop && loop_watch_add(s->loop, &c->watch, fd, EPOLLIN, client_on_io, c) < 0) {
		close(fd);
		free(c);
		return false;
	}
	c->next = s->clients;
	s->clients = c;
	s->nclients++;
	return true;
}

size_t rpc_server_poll(struct rpc_server *s)
{
	/* A client may close others (a method completing their answers fails to send): walk a snapshot. */
	size_t n = s->nclients, k = 0;
	struct rpc_client **snap = xcalloc(n ? n : 1, sizeof(*snap));
	for (struct rpc_client *c = s->clients; c && k < n; c = c->next)
		snap[k++] = c;
	for (size_t i = 0; i < k; i++)
		if (snap[i]->fd >= 0)
			client_on_io(snap[i], EPOLLIN | EPOLLOUT);
	free(snap);
	while (s->closed) {
		struct rpc_client *c = s->closed;
		s->closed = c->next;
		client_free(c);
	}
	return s->nclients;
}

static void server_on_accept(void *arg, uint32_t events)
{
	(void)events;
	struct rpc_server *s = arg;
	for (int i = 0; i < 64; i++) {
		int fd;
		switch (net_accept(s->fd, &fd)) {
		case NET_ACCEPT_NONE:
			return;
		case NET_ACCEPT_RETRY:
			continue;
		case NET_ACCEPT_DROPPED:
			log_warn("management socket %s: out of file descriptors; a client was closed at once", s->path);
			continue;
		case NET_ACCEPT_PAUSE:
			log_warn("management socket %s: %s; not accepting for %u ms", s->path, strerror(errno),
				 NET_ACCEPT_PAUSE_MS);
			loop_watch_mod(s->loop, &s->watch, 0);
			s->accept_paused = true;
			s->accept_resume_ms = loop_now_ms() + NET_ACCEPT_PAUSE_MS;
			return;
		case NET_ACCEPT_OK:
			break;
		}
		if (!rpc_server_add_client(s, fd))
			log_warn("management socket %s: a client was refused: %u clients already", s->path,
				 s->limits.max_clients);
	}
}

/* Timeouts of slow and idle clients, and the end of an accept pause. */
static void server_sweep(void *arg)
{
	struct rpc_server *s = arg;
	const struct rpc_limits *l = &s->limits;
	uint64_t now = loop_now_ms();
	if (s->accept_paused && now >= s->accept_resume_ms) {
		s->accept_paused = false;
		loop_watch_mod(s->loop, &s->watch, EPOLLIN);
	}
	for (struct rpc_client *c = s->clients, *next; c; c = next) {
		next = c->next;
		if (client_unsent(c)) {
			if (now - c->active_ms >= l->send_timeout_ms)
				client_close(c); /* it reads none of its answers */
		} else if (c->closing || c->eof) {
			continue;
		} else if (c->request_ms && !client_blocked(c)) {
			if (now - c->request_ms >= l->request_timeout_ms) {
				client_refuse(c, RPC_INVALID_REQUEST, "request not completed within %u ms",
					      l->request_timeout_ms);
				client_flush(c);
			}
		} else if (!c->npending && now - c->active_ms >= l->idle_timeout_ms) {
			client_close(c);
		}
	}
}

/* Often enough that no timeout runs late by more than a quarter of itself (or a second). */
static void sweep_start(struct rpc_server *s)
{
	if (!s->loop)
		return;
	const struct rpc_limits *l = &s->limits;
	unsigned shortest = l->request_timeout_ms;
	if (l->send_timeout_ms < shortest)
		shortest = l->send_timeout_ms;
	if (l->idle_timeout_ms < shortest)
		shortest = l->idle_timeout_ms;
	uint64_t period = shortest / 4;
	if (period > 1000)
		period = 1000;
	if (period < 10)
		period = 10;
	loop_timer_start(s->loop, &s->sweep, period, period, server_sweep, s);
}

void rpc_server_set_limits(struct rpc_server *s, const struct rpc_limits *l)
{
	s->limits = *l;
	if (!s->limits.max_clients)
		s->limits.max_clients = 1;
	sweep_start(s);
}

void rpc_server_get_limits(const struct rpc_server *s, struct rpc_limits *l) { *l = s->limits; }

/* Listen on path (mode 0600; a stale socket file is replaced, a live one is an error). */
static int rpc_listen(struct rpc_server *s, const char *path, char **errmsg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		*errmsg = xasprintf("management socket path too long: %s", path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*errmsg = xasprintf("socket: %s", strerror(errno));
		return -1;
	}
	/* A socket file nobody answers on is left over from a crash: replace it. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0) {
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			close(fd);
			*errmsg = xasprintf("another daemon already listens on %s", path);
			return -1;
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
		return -1;
	}
	if (s->loop && loop_watch_add(s->loop, &s->watch, fd, EPOLLIN, server_on_accept, s) < 0) {
		*errmsg = xasprintf("cannot watch %s", path);
		close(fd);
		unlink(path);
		return -1;
	}
	s->fd = fd;
	s->path = xstrdup(path);
	net_accept_reserve();
	return 0;
}

struct rpc_server *rpc_server_new(struct loop *loop, const char *path, const struct rpc_method *methods,
				  size_t nmethods, void *ctx, char **errmsg)
{
	struct rpc_server *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->fd = -1;
	s->methods = methods;
	s->nmethods = nmethods;
	s->ctx = ctx;
	rpc_limits_default(&s->limits);
	if (path && rpc_listen(s, path, errmsg) < 0) {
		free(s);
		return NULL;
	}
	sweep_start(s);
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
	while (s->closed) {
		struct rpc_client *c = s->closed;
		s->closed = c->next;
		client_free(c);
	}
	if (s->loop)
		loop_timer_stop(s->loop, &s->sweep);
	if (s->fd >= 0) {
		if (s->loop)
			loop_watch_del(s->loop, &s->watch);
		close(s->fd);
		unlink(s->path);
	}
	free(s->path);
	free(s);
}
