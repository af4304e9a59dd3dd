/*
 * Prometheus text exposition of the target's counters over plain HTTP (GET /metrics), served
 * from the event loop. Bound to loopback by default: counters name initiators and targets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/accept.h"
#include "target/conn.h"
#include "target/metrics.h"
#include "target/server.h"
#include "target/shard.h"
#include "target/session.h"
#include "util/log.h"
#include "util/sbuf.h"

/*
 * What a scraper may hold: a request of at most 8 KiB, complete within 10 s of connecting; an
 * answer it reads some of at least every 10 s; 16 connections at once. When all 16 are taken, a
 * new connection replaces the oldest one that has not sent its request yet (a scraper sends it
 * at once; one that waits is idle or slow), so idle connections cannot keep scrapes out.
 */
#define METRICS_MAX_REQUEST 8192
#define METRICS_MAX_CLIENTS 16
#define METRICS_REQUEST_TIMEOUT_MS 10000u
#define METRICS_SEND_TIMEOUT_MS 10000u

struct metrics_client {
	struct metrics_server *ms;
	struct metrics_client *next; /* newest first */
	struct loop_watch watch;
	int fd;
	struct sbuf in, out;
	size_t out_off;
	uint64_t started_ms; /* accepted */
	uint64_t active_ms;  /* last byte of the answer sent */
};

struct metrics_server {
	struct server *srv;
	int fd;
	struct loop_watch watch;
	struct loop_timer sweep; /* timeouts; listening again after running out of descriptors */
	bool accept_paused;
	uint64_t accept_resume_ms;
	struct metrics_client *clients;
	unsigned nclients;
};

/* Label values escape backslash, double quote and newline (exposition format). */
static void put_label(struct sbuf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			sbuf_putc(b, '\\'), sbuf_putc(b, *v);
		else if (*v == '\n')
			sbuf_append(b, "\\n", 2);
		else
			sbuf_putc(b, *v);
	}
}

struct counter_def {
	const char *name;
	const char *help;
	size_t offset;
};

#define C(field, name, help) {name, help, offsetof(struct io_stats, field)}
static const struct counter_def counters[] = {
	C(commands, "commands_total", "SCSI commands completed"),
	C(read_bytes, "read_bytes_total", "SCSI data bytes sent to initiators"),
	C(write_bytes, "write_bytes_total", "SCSI data bytes received from initiators"),
	C(zero_copy_bytes, "zero_copy_bytes_total", "SCSI data bytes sent from the store's file without a copy"),
	C(pdus_in, "pdus_received_total", "iSCSI PDUs received"),
	C(pdus_out, "pdus_sent_total", "iSCSI PDUs sent"),
	C(bytes_in, "received_bytes_total", "bytes received on iSCSI connections"),
	C(bytes_out, "sent_bytes_total", "bytes sent on iSCSI connections"),
	C(r2ts, "r2t_total", "R2T PDUs sent"),
	C(digest_errors, "digest_errors_total", "header and data digest errors"),
	C(pdus_resent, "pdus_resent_total", "PDUs sent again: SNACK answers, recovery R2Ts, reassigned tasks' data"),
	C(task_mgmt, "task_management_total", "task management requests"),
	C(errors, "command_errors_total", "commands that ended with a status other than GOOD"),
	C(device_waits, "device_waits_total", "commands that waited for their device on a worker thread"),
};

static uint64_t field(const struct io_stats *s, size_t off) { return *(const uint64_t *)((const char *)s + off); }

/*
 * The start of one session's sample: the metric's name and the labels that tell the session
 * apart, left open so a histogram bucket can add its le label; the caller closes it with "} value".
 */
static void session_series(struct sbuf *b, const char *name, const struct session *s)
{
	sbuf_printf(b, "isthmus_session_%s{tsih=\"%u\",initiator=\"", name, s->tsih);
	put_label(b, s->initiator_name);
	sbuf_append(b, "\",target=\"", 10);
	put_label(b, s->node ? s->node->cfg->name : "");
	sbuf_putc(b, '"');
}

/* A session's connections' counters summed: those closed, open, and failed awaiting recovery. */
struct session_total {
	struct io_stats io;
	uint32_t depth; /* commands in progress */
};

static void session_total(const struct session *s, struct session_total *t)
{
	t->io = s->closed;
	t->depth = 0;
	for (const struct conn *c = s->conns; c; c = c->sess_next) {
		stats_add(&t->io, &c->stats);
		t->depth += c->ntasks;
	}
	for (const struct conn *c = s->failed; c; c = c->sess_next) {
		stats_add(&t->io, &c->stats);
		t->depth += c->ntasks;
	}
}

/* A per-session counter kept by the session itself rather than by its connections. */
static void session_counter(struct sbuf *b, struct server *srv, const char *name, const char *help,
			    uint64_t (*get)(const struct session *))
{
	sbuf_printf(b, "# HELP isthmus_session_%s %s\n# TYPE isthmus_session_%s counter\n", name, help, name);
	for (size_t k = 0; k < srv->nsessions; k++) {
		session_series(b, name, srv->sessions[k]);
		sbuf_printf(b, "} %llu\n", (unsigned long long)get(srv->sessions[k]));
	}
}

static uint64_t get_conn_recoveries(const struct session *s) { return s->conn_recoveries; }
static uint64_t get_task_reassigns(const struct session *s) { return s->task_reassigns; }

/* Per event loop: connections and the CPU time of its thread. */
static void loop_gauges(struct sbuf *b, struct server *srv)
{
	sbuf_printf(b, "# HELP isthmus_target_loop_connections Connections served by each event loop.\n"
		       "# TYPE isthmus_target_loop_connections gauge\n");
	for (unsigned k = 0; k < srv->nshards; k++)
		sbuf_printf(b, "isthmus_target_loop_connections{loop=\"%u\"} %u\n", k,
			    atomic_load(&srv->shards[k]->nconns));
	sbuf_printf(b, "# HELP isthmus_target_loop_cpu_seconds_total CPU time of each event loop's thread.\n"
		       "# TYPE isthmus_target_loop_cpu_seconds_total counter\n");
	for (unsigned k = 0; k < srv->nshards; k++)
		sbuf_printf(b, "isthmus_target_loop_cpu_seconds_total{loop=\"%u\"} %.6f\n", k,
			    shard_cpu_seconds(srv->shards[k]));
}

static char *render(struct server *srv)
{
	struct sbuf b = {0};
	size_t nconns = 0;
	struct io_stats total = {0};
	for (unsigned i = 0; i < srv->nshards; i++) {
		stats_add(&total, &srv->shards[i]->closed);
		for (struct conn *c = srv->shards[i]->conns; c; c = c->next) {
			nconns++;
			stats_add(&total, &c->stats);
		}
	}
	for (size_t k = 0; k < srv->nsessions; k++)
		for (const struct conn *c = srv->sessions[k]->failed; c; c = c->sess_next)
			stats_add(&total, &c->stats); /* level 2: failed, awaiting recovery */
	sbuf_printf(&b, "# HELP isthmus_target_sessions Sessions logged in.\n# TYPE isthmus_target_sessions gauge\n");
	sbuf_printf(&b, "isthmus_target_sessions %zu\n", srv->nsessions);
	sbuf_printf(&b, "# HELP isthmus_target_connections TCP connections, logged in or logging in.\n"
			"# TYPE isthmus_target_connections gauge\n");
	sbuf_printf(&b, "isthmus_target_connections %zu\n", nconns);
	sbuf_printf(&b, "# HELP isthmus_target_connections_refused_total Connections closed as soon as accepted: a "
			"connection limit reached, or out of file descriptors.\n"
			"# TYPE isthmus_target_connections_refused_total counter\n");
	sbuf_printf(&b, "isthmus_target_connections_refused_total %llu\n", (unsigned long long)srv->conns_refused);
	loop_gauges(&b, srv);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		const struct counter_def *d = &counters[i];
		sbuf_printf(&b, "# HELP isthmus_target_%s %s, whole target.\n# TYPE isthmus_target_%s counter\n", d->name,
			    d->help, d->name);
		sbuf_printf(&b, "isthmus_target_%s %llu\n", d->name, (unsigned long long)field(&total, d->offset));
	}
	/* Summed once here: every per-session family below reads them. */
	struct session_total *per = xcalloc(srv->nsessions, sizeof(*per));
	for (size_t k = 0; k < srv->nsessions; k++)
		session_total(srv->sessions[k], &per[k]);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		const struct counter_def *d = &counters[i];
		sbuf_printf(&b, "# HELP isthmus_session_%s %s, per session.\n# TYPE isthmus_session_%s counter\n", d->name,
			    d->help, d->name);
		for (size_t k = 0; k < srv->nsessions; k++) {
			session_series(&b, d->name, srv->sessions[k]);
			sbuf_printf(&b, "} %llu\n", (unsigned long long)field(&per[k].io, d->offset));
		}
	}
	session_counter(&b, srv, "connection_recoveries_total",
			"Failed connections (ErrorRecoveryLevel 2) replaced by a login or whose tasks were reassigned.",
			get_conn_recoveries);
	session_counter(&b, srv, "task_reassignments_total", "Tasks moved to another connection by TASK REASSIGN.",
			get_task_reassigns);
	sbuf_printf(&b, "# HELP isthmus_session_queue_depth Commands in progress.\n"
			"# TYPE isthmus_session_queue_depth gauge\n");
	for (size_t k = 0; k < srv->nsessions; k++) {
		session_series(&b, "queue_depth", srv->sessions[k]);
		sbuf_printf(&b, "} %u\n", per[k].depth);
	}
	sbuf_printf(&b, "# HELP isthmus_session_command_latency_seconds Time from command arrival to response.\n"
			"# TYPE isthmus_session_command_latency_seconds histogram\n");
	for (size_t k = 0; k < srv->nsessions; k++) {
		const struct io_stats *t = &per[k].io;
		uint64_t cum = 0;
		for (int i = 0; i < STATS_LAT_BUCKETS; i++) {
			cum += t->latency[i];
			session_series(&b, "command_latency_seconds_bucket", srv->sessions[k]);
			if (i < STATS_LAT_BUCKETS - 1)
				sbuf_printf(&b, ",le=\"%g\"} %llu\n", stats_lat_bounds_us[i] / 1e6, (unsigned long long)cum);
			else
				sbuf_printf(&b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
		}
		session_series(&b, "command_latency_seconds_sum", srv->sessions[k]);
		sbuf_printf(&b, "} %.6f\n", t->latency_sum_us / 1e6);
		session_series(&b, "command_latency_seconds_count", srv->sessions[k]);
		sbuf_printf(&b, "} %llu\n", (unsigned long long)cum);
	}
	free(per);
	sbuf_cstr(&b);
	return (char *)b.data;
}

/* The other loops are paused while their sessions and connections are read. */
char *metrics_render(struct server *srv)
{
	server_pause_shards(srv);
	char *text = render(srv);
	server_resume_shards(srv);
	return text;
}

static void client_free(void *arg)
{
	struct metrics_client *c = arg;
	sbuf_free(&c->in);
	sbuf_free(&c->out);
	free(c);
}

static void client_close(struct metrics_client *c)
{
	struct metrics_server *ms = c->ms;
	loop_watch_del(ms->srv->loop, &c->watch);
	close(c->fd);
	for (struct metrics_client **pp = &ms->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	ms->nclients--;
	loop_defer(ms->srv->loop, client_free, c);
}

static void client_respond(struct metrics_client *c, const char *status, const char *ctype, const char *body)
{
	sbuf_printf(&c->out, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		    status, ctype, strlen(body), body);
}

/* The request is complete: queue the answer and switch to sending it. */
static void client_answer(struct metrics_client *c)
{
	const char *req = (const char *)c->in.data;
	if (strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET / ", 6) == 0) {
		char *body = metrics_render(c->ms->srv);
		client_respond(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body);
		free(body);
	} else if (strncmp(req, "GET ", 4) == 0) {
		client_respond(c, "404 Not Found", "text/plain", "not found; try /metrics\n");
	} else {
		client_respond(c, "405 Method Not Allowed", "text/plain", "only GET\n");
	}
	c->active_ms = loop_now_ms();
	loop_watch_mod(c->ms->srv->loop, &c->watch, EPOLLOUT);
}

static void client_on_io(void *arg, uint32_t events)
{
	struct metrics_client *c = arg;
	if (!c->out.len && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		char buf[2048];
		ssize_t r = read(c->fd, buf, sizeof(buf));
		if (r <= 0) {
			if (r == 0 || (errno != EAGAIN && errno != EINTR))
				client_close(c);
			return;
		}
		/* Only the new bytes and the three before them can complete the blank line. */
		size_t from = c->in.len > 3 ? c->in.len - 3 : 0;
		sbuf_append(&c->in, buf, (size_t)r);
		sbuf_cstr(&c->in);
		const char *tail = (const char *)c->in.data + from;
		if (!strstr(tail, "\r\n\r\n") && !strstr(tail, "\n\n")) {
			if (c->in.len > METRICS_MAX_REQUEST)
				client_close(c);
			return;
		}
		client_answer(c);
	}
	while (c->out_off < c->out.len) {
		ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			client_close(c);
			return;
		}
		c->out_off += (size_t)w;
		c->active_ms = loop_now_ms();
	}
	if (c->out.len)
		client_close(c);
}

/* The oldest connection still without a complete request, or NULL. */
static struct metrics_client *oldest_waiting(struct metrics_server *ms)
{
	struct metrics_client *found = NULL;
	for (struct metrics_client *c = ms->clients; c; c = c->next)
		if (!c->out.len)
			found = c; /* the list is newest first: the last match is the oldest */
	return found;
}

static void metrics_on_accept(void *arg, uint32_t events)
{
	(void)events;
	struct metrics_server *ms = arg;
	for (int i = 0; i < 64; i++) {
		int fd;
		switch (net_accept(ms->fd, &fd)) {
		case NET_ACCEPT_NONE:
			return;
		case NET_ACCEPT_RETRY:
		case NET_ACCEPT_DROPPED:
			continue;
		case NET_ACCEPT_PAUSE:
			log_warn("metrics: accept: %s; not accepting for %u ms", strerror(errno), NET_ACCEPT_PAUSE_MS);
			loop_watch_mod(ms->srv->loop, &ms->watch, 0);
			ms->accept_paused = true;
			ms->accept_resume_ms = loop_now_ms() + NET_ACCEPT_PAUSE_MS;
			return;
		case NET_ACCEPT_OK:
			break;
		}
		if (ms->nclients >= METRICS_MAX_CLIENTS) {
			struct metrics_client *idle = oldest_waiting(ms);
			if (!idle) {
				close(fd); /* all 16 are being answered: this one may come back in a moment */
				continue;
			}
			client_close(idle);
		}
		struct metrics_client *c = xcalloc(1, sizeof(*c));
		c->ms = ms;
		c->fd = fd;
		c->started_ms = c->active_ms = loop_now_ms();
		if (loop_watch_add(ms->srv->loop, &c->watch, fd, EPOLLIN, client_on_io, c) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = ms->clients;
		ms->clients = c;
		ms->nclients++;
	}
}

/* Once a second: drop requests not complete in time and answers not read. */
static void metrics_sweep(void *arg)
{
	struct metrics_server *ms = arg;
	uint64_t now = loop_now_ms();
	if (ms->accept_paused && now >= ms->accept_resume_ms) {
		ms->accept_paused = false;
		loop_watch_mod(ms->srv->loop, &ms->watch, EPOLLIN);
	}
	for (struct metrics_client *c = ms->clients, *next; c; c = next) {
		next = c->next;
		if (c->out.len ? now - c->active_ms >= METRICS_SEND_TIMEOUT_MS
			       : now - c->started_ms >= METRICS_REQUEST_TIMEOUT_MS)
			client_close(c);
	}
}

struct metrics_server *metrics_start(struct server *srv, const char *listen_spec, char **err)
{
	struct cfg tmp;
	cfg_init(&tmp);
	if (cfg_add_listen(&tmp, listen_spec, err) < 0) {
		cfg_free(&tmp);
		return NULL;
	}
	struct sockaddr_storage ss = {0};
	socklen_t alen;
	const struct cfg_portal *p = &tmp.portals[0];
	if (strchr(p->host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(p->port);
		inet_pton(AF_INET6, p->host, &s6->sin6_addr);
		alen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(p->port);
		inet_pton(AF_INET, p->host, &s4->sin_addr);
		alen = sizeof(*s4);
	}
	cfg_free(&tmp);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, alen) < 0 || listen(fd, 16) < 0) {
		*err = xasprintf("metrics: cannot listen on %s: %s", listen_spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	struct metrics_server *ms = xcalloc(1, sizeof(*ms));
	ms->srv = srv;
	ms->fd = fd;
	if (loop_watch_add(srv->loop, &ms->watch, fd, EPOLLIN, metrics_on_accept, ms) < 0) {
		*err = xasprintf("metrics: cannot watch %s", listen_spec);
		close(fd);
		free(ms);
		return NULL;
	}
	net_accept_reserve();
	loop_timer_start(srv->loop, &ms->sweep, 1000, 1000, metrics_sweep, ms);
	log_info("metrics on http://%s/metrics", listen_spec);
	return ms;
}

void metrics_stop(struct metrics_server *ms)
{
	if (!ms)
		return;
	while (ms->clients)
		client_close(ms->clients);
	loop_timer_stop(ms->srv->loop, &ms->sweep);
	loop_watch_del(ms->srv->loop, &ms->watch);
	close(ms->fd);
	free(ms);
}
