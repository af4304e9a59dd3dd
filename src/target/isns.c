/*
 * The target's iSNS client. One request at a time on one TCP connection, opened when there is
 * something to say and closed when there is nothing left: the server needs no idle connection
 * from us, and a connection that breaks costs only a retry. What is wanted (register, refresh,
 * deregister) is kept as flags, so a failure at any step leaves the wish in place for the retry.
 */
#include "target/isns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/isns.h"
#include "proto/pdu.h"
#include "target/server.h"
#include "target/shard.h"
#include "util/log.h"
#include "util/sbuf.h"

/*
 * The access lists are read by logins on every event loop and written by loop 0 (answers, the
 * query flags); replaced only while the other loops are paused (reloads).
 */
static pthread_mutex_t acl_lock = PTHREAD_MUTEX_INITIALIZER;

enum isns_phase {
	ISNS_IDLE,       /* no connection */
	ISNS_CONNECTING, /* non-blocking connect under way */
	ISNS_CONNECTED,  /* connected; a request may be in flight */
};

enum isns_request { REQ_NONE, REQ_REGISTER, REQ_REFRESH, REQ_DEREGISTER, REQ_QUERY };

/*
 * isns-access: for each target, the initiators that share a discovery domain with it, as the
 * server last said. A login is decided from this copy, never by waiting for the server.
 */
struct isns_acl {
	char *target;
	char **initiators;
	size_t n;
	uint64_t fetched_ms; /* 0: never answered */
	bool want;           /* a query for it is due */
};

/* One PDU at most is buffered before it is taken apart. */
#define ISNS_RX_CAP (ISNS_HDR_LEN + 65535u)
/* A response to our own registration is small; anything near this is not one. */
#define ISNS_RX_MESSAGE_MAX (256u << 10)

struct isns_client {
	struct server *srv;
	char spec[96];
	char addr[64];
	uint16_t port;
	char *eid;
	char *source; /* the node name the entity was registered under, for the deregistration */
	int fd;
	uint64_t conn_gen; /* bumped at every close: a handler can tell its connection is gone */
	struct loop_watch watch;
	bool watched;
	enum isns_phase phase;
	enum isns_request inflight;
	uint16_t xid;
	bool want_register, want_refresh, want_dereg;
	uint64_t changes, changes_sent; /* configurations applied; how many the registration in flight shows */
	bool registered;
	bool draining; /* the loop has stopped: no timers, no watches, no new connections */
	bool retry_pending;
	uint32_t backoff_ms;
	uint32_t period_s; /* the server's registration period, 0 when it gave none */
	struct loop_timer io_timer, retry_timer, refresh_timer;
	struct sbuf out;
	size_t out_off;
	uint8_t *in;
	size_t in_len;
	struct isns_reasm reasm;
	struct isns_acl *acl; /* one per target while isns-access is on */
	size_t nacl;
	size_t query_idx; /* the acl entry the query in flight is for */
	struct loop_timer access_timer;
};

static void client_kick(struct isns_client *c);
static void client_on_io(void *arg, uint32_t events);

static const char *request_name(enum isns_request r)
{
	switch (r) {
	case REQ_REGISTER: return "registration";
	case REQ_REFRESH: return "registration refresh";
	case REQ_DEREGISTER: return "deregistration";
	case REQ_QUERY: return "access query";
	default: return "connection";
	}
}

static void client_close(struct isns_client *c)
{
	if (c->watched)
		loop_watch_del(c->srv->loop, &c->watch);
	c->watched = false;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->conn_gen++;
	c->phase = ISNS_IDLE;
	c->inflight = REQ_NONE;
	sbuf_reset(&c->out);
	c->out_off = 0;
	c->in_len = 0;
	isns_reasm_reset(&c->reasm);
	if (!c->draining)
		loop_timer_stop(c->srv->loop, &c->io_timer);
}

static void on_retry(void *arg)
{
	struct isns_client *c = arg;
	c->retry_pending = false;
	client_kick(c);
}

/* The attempt failed: drop the connection, keep what is wanted, try again after a growing pause. */
static void client_fail(struct isns_client *c, const char *why)
{
	enum isns_request r = c->inflight;
	client_close(c);
	if (c->draining) {
		log_warn("iSNS server %s: %s failed: %s", c->spec, request_name(r), why);
		return;
	}
	log_warn("iSNS server %s: %s failed: %s; next attempt in %u s", c->spec, request_name(r), why,
		 (c->backoff_ms + 999) / 1000);
	c->retry_pending = true;
	loop_timer_start(c->srv->loop, &c->retry_timer, c->backoff_ms, 0, on_retry, c);
	c->backoff_ms = c->backoff_ms * 2 > ISNS_RETRY_MAX_MS ? ISNS_RETRY_MAX_MS : c->backoff_ms * 2;
}

static void on_io_timeout(void *arg)
{
	struct isns_client *c = arg;
	client_fail(c, c->phase == ISNS_CONNECTING ? "connect timed out" : "no response in time");
}

static void on_refresh(void *arg)
{
	struct isns_client *c = arg;
	c->want_refresh = true;
	client_kick(c);
}

static void set_events(struct isns_client *c, uint32_t events)
{
	if (c->draining)
		return;
	if (!c->watched) {
		if (loop_watch_add(c->srv->loop, &c->watch, c->fd, events, client_on_io, c) == 0)
			c->watched = true;
	} else {
		loop_watch_mod(c->srv->loop, &c->watch, events);
	}
}

/* ---- What is registered ---- */

/* A wildcard portal is registered as the address this host reaches the server from. */
static void portal_address(const struct isns_client *c, const struct portal *p, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", p->host);
	if (strcmp(p->host, "0.0.0.0") != 0 && strcmp(p->host, "::") != 0)
		return;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (c->fd < 0 || getsockname(c->fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)outlen);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)outlen);
}

/*
 * DevAttrReg (RFC 4171 5.6.5.1): Source and Message Key, then the entity, every portal, every
 * target node and one portal group per node and portal that serves it.
 */
static void build_registration(struct isns_client *c, struct sbuf *b)
{
	struct server *srv = c->srv;
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->source);
	isns_put_str(b, ISNS_TAG_ENTITY_ID, c->eid);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
	isns_put_str(b, ISNS_TAG_ENTITY_ID, c->eid);
	isns_put_u32(b, ISNS_TAG_ENTITY_PROTOCOL, ISNS_ENTITY_PROTOCOL_ISCSI);
	char ip[INET6_ADDRSTRLEN];
	for (size_t i = 0; i < srv->nportals; i++) {
		portal_address(c, srv->portals[i], ip, sizeof(ip));
		if (isns_put_ip(b, ISNS_TAG_PORTAL_IP, ip) == 0)
			isns_put_u32(b, ISNS_TAG_PORTAL_PORT, srv->portals[i]->port);
	}
	for (size_t i = 0; i < srv->nnodes; i++) {
		const struct cfg_target *t = srv->nodes[i]->cfg;
		isns_put_str(b, ISNS_TAG_ISCSI_NAME, t->name);
		isns_put_u32(b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_TARGET);
		if (t->alias)
			isns_put_str(b, ISNS_TAG_ISCSI_ALIAS, t->alias);
	}
	for (size_t i = 0; i < srv->nnodes; i++) {
		const struct cfg_target *t = srv->nodes[i]->cfg;
		for (size_t j = 0; j < srv->nportals; j++) {
			const struct portal *p = srv->portals[j];
			if (p->tpgt != t->tpgt)
				continue;
			portal_address(c, p, ip, sizeof(ip));
			isns_put_str(b, ISNS_TAG_PG_ISCSI_NAME, t->name);
			if (isns_put_ip(b, ISNS_TAG_PG_PORTAL_IP, ip) < 0)
				continue;
			isns_put_u32(b, ISNS_TAG_PG_PORTAL_PORT, p->port);
			isns_put_u32(b, ISNS_TAG_PG_TAG, p->tpgt);
		}
	}
}

/* DevDereg (5.6.5.4): the Source, no key, and the entity, which takes its portals and nodes along. */
static void build_deregistration(struct isns_client *c, struct sbuf *b)
{
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->source);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
	isns_put_str(b, ISNS_TAG_ENTITY_ID, c->eid);
}

/*
 * DevAttrQry (5.6.5.2) with the target as Source: the server answers with the initiators that
 * share a discovery domain with it (registered ones only: a domain member that never registered
 * is only a name to the server).
 */
static void build_access_query(const struct isns_client *c, struct sbuf *b)
{
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->acl[c->query_idx].target);
	isns_put_u32(b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_INITIATOR);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
	isns_put_empty(b, ISNS_TAG_ISCSI_NAME);
	isns_put_empty(b, ISNS_TAG_ISCSI_NODE_TYPE);
}

/* ---- The exchange ---- */

static void client_flush(struct isns_client *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			set_events(c, EPOLLIN | EPOLLOUT);
			return;
		}
		if (n <= 0) {
			client_fail(c, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	set_events(c, EPOLLIN);
}

static void client_send(struct isns_client *c, enum isns_request r)
{
	struct sbuf payload = {0};
	uint16_t func = r == REQ_DEREGISTER ? ISNS_DEV_DEREG : r == REQ_QUERY ? ISNS_DEV_ATTR_QRY : ISNS_DEV_ATTR_REG;
	uint16_t flags = ISNS_F_CLIENT;
	if (r == REQ_REGISTER) {
		/* Replace: portals and nodes that are gone since the last registration go with it. */
		flags |= ISNS_F_REPLACE;
		c->changes_sent = c->changes;
		free(c->source);
		c->source = xstrdup(c->srv->nodes[0]->cfg->name);
	}
	if (r == REQ_DEREGISTER) {
		build_deregistration(c, &payload);
	} else if (r == REQ_QUERY) {
		pthread_mutex_lock(&acl_lock);
		c->acl[c->query_idx].want = false;
		pthread_mutex_unlock(&acl_lock);
		build_access_query(c, &payload);
	} else {
		build_registration(c, &payload);
	}
	c->xid = (uint16_t)(c->xid + 1);
	sbuf_reset(&c->out);
	c->out_off = 0;
	if (isns_message_encode(&c->out, func, flags, c->xid, payload.data, payload.len) < 0) {
		sbuf_free(&payload);
		client_fail(c, "message cannot be encoded");
		return;
	}
	sbuf_free(&payload);
	c->inflight = r;
	if (!c->draining)
		loop_timer_start(c->srv->loop, &c->io_timer, ISNS_IO_TIMEOUT_MS, 0, on_io_timeout, c);
	client_flush(c);
}

static uint32_t response_period(const uint8_t *p, size_t len)
{
	size_t off = 4;
	struct isns_attr a;
	uint32_t v = 0;
	while (isns_attr_next(p, len, &off, &a, NULL, 0) == 1)
		if (a.tag == ISNS_TAG_REGISTRATION_PERIOD && isns_attr_u32(&a, &v) == 0)
			return v;
	return 0;
}

static void schedule_refresh(struct isns_client *c)
{
	if (c->draining)
		return;
	loop_timer_stop(c->srv->loop, &c->refresh_timer);
	if (!c->period_s)
		return;
	/* Two thirds of the period: one lost refresh still leaves time for the retry. */
	uint32_t s = c->period_s / 3 * 2;
	if (s < ISNS_REFRESH_MIN_S)
		s = ISNS_REFRESH_MIN_S;
	loop_timer_start(c->srv->loop, &c->refresh_timer, (uint64_t)s * 1000u, 0, on_refresh, c);
}

static void acl_clear(struct isns_acl *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->initiators[i]);
	free(a->initiators);
	a->initiators = NULL;
	a->n = 0;
}

/* The answer to an access query: the entry's new list, or (on a refusal) the old one ages out. */
static void handle_access_answer(struct isns_client *c, uint32_t status, const uint8_t *p, size_t len)
{
	if (c->query_idx >= c->nacl)
		return; /* the targets changed meanwhile */
	struct isns_acl *a = &c->acl[c->query_idx];
	struct isns_node_list l = {0};
	char why[128];
	size_t op;
	if (status == ISNS_STATUS_SUCCESS &&
	    (isns_response_operating(p, len, &op, why, sizeof(why)) < 0 ||
	     isns_parse_nodes(p + op, len - op, ISNS_ACCESS_MAX_INITIATORS, 1, &l, why, sizeof(why)) < 0)) {
		log_warn("iSNS server %s: access query for %s: %s", c->spec, a->target, why);
		return;
	}
	if (status != ISNS_STATUS_SUCCESS && status != ISNS_STATUS_NO_SUCH_ENTRY) {
		log_warn("iSNS server %s: access query for %s refused: %s", c->spec, a->target, isns_status_name(status));
		return;
	}
	pthread_mutex_lock(&acl_lock);
	acl_clear(a);
	a->initiators = xcalloc(l.n ? l.n : 1, sizeof(char *));
	for (size_t i = 0; i < l.n; i++)
		if (l.nodes[i].type & ISNS_NODE_INITIATOR)
			a->initiators[a->n++] = xstrdup(l.nodes[i].name);
	a->fetched_ms = loop_now_ms();
	pthread_mutex_unlock(&acl_lock);
	isns_node_list_free(&l);
	log_debug("iSNS server %s: %zu initiator(s) share a discovery domain with %s", c->spec, a->n, a->target);
}

static void handle_response(struct isns_client *c, const uint8_t *p, size_t len)
{
	uint32_t status;
	enum isns_request r = c->inflight;
	if (isns_response_status(p, len, &status) < 0) {
		client_fail(c, "response without a status");
		return;
	}
	if (!c->draining)
		loop_timer_stop(c->srv->loop, &c->io_timer);
	c->inflight = REQ_NONE;
	if (r == REQ_QUERY) {
		handle_access_answer(c, status, p, len);
		client_kick(c);
		return;
	}
	if (r == REQ_DEREGISTER) {
		c->want_dereg = false;
		c->registered = false;
		if (status == ISNS_STATUS_SUCCESS || status == ISNS_STATUS_NO_SUCH_ENTRY)
			log_info("iSNS server %s: entity %s deregistered", c->spec, c->eid);
		else
			log_warn("iSNS server %s: deregistration of %s refused: %s", c->spec, c->eid,
				 isns_status_name(status));
		client_kick(c);
		return;
	}
	if (status != ISNS_STATUS_SUCCESS) {
		/* A refresh the server no longer knows: the registration expired, make it again. */
		if (r == REQ_REFRESH && c->registered) {
			c->registered = false;
			c->want_refresh = false;
			c->want_register = true;
			log_warn("iSNS server %s: refresh refused (%s); registering again", c->spec,
				 isns_status_name(status));
			client_kick(c);
			return;
		}
		char why[96];
		snprintf(why, sizeof(why), "refused: %s (status %u)", isns_status_name(status), status);
		client_fail(c, why);
		return;
	}
	c->backoff_ms = ISNS_RETRY_MIN_MS;
	c->registered = true;
	c->want_refresh = false;
	/* A change applied while this registration was in flight needs one more. */
	if (r == REQ_REGISTER)
		c->want_register = c->changes != c->changes_sent;
	c->period_s = response_period(p, len);
	if (r == REQ_REGISTER)
		log_info("iSNS server %s: registered entity %s with %zu target(s) and %zu portal(s); "
			 "registration period %u s",
			 c->spec, c->eid, c->srv->nnodes, c->srv->nportals, c->period_s);
	else
		log_debug("iSNS server %s: registration refreshed", c->spec);
	schedule_refresh(c);
	client_kick(c);
}

static void handle_message(struct isns_client *c, const struct isns_hdr *h, const uint8_t *p, size_t len)
{
	uint16_t want = (uint16_t)(ISNS_RESPONSE | (c->inflight == REQ_DEREGISTER ? ISNS_DEV_DEREG
						    : c->inflight == REQ_QUERY    ? ISNS_DEV_ATTR_QRY
										  : ISNS_DEV_ATTR_REG));
	if (c->inflight == REQ_NONE || h->func != want || h->xid != c->xid) {
		/* Not the answer we wait for (a late one, or a message we never asked for). */
		log_debug("iSNS server %s: ignoring function %#x transaction %u", c->spec, h->func, h->xid);
		return;
	}
	handle_response(c, p, len);
}

static void client_read(struct isns_client *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->in_len, ISNS_RX_CAP - c->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			if (c->inflight == REQ_NONE)
				client_close(c); /* the server closed an idle connection: nothing lost */
			else
				client_fail(c, n == 0 ? "the server closed the connection" : strerror(errno));
			return;
		}
		c->in_len += (size_t)n;
		size_t off = 0;
		for (;;) {
			struct isns_hdr h, msg;
			size_t plen;
			char why[128];
			int rc = isns_pdu_peek(c->in + off, c->in_len - off, &h, &plen, why, sizeof(why));
			if (rc == 0)
				break;
			if (rc > 0)
				rc = isns_reasm_add(&c->reasm, &h, c->in + off + ISNS_HDR_LEN, &msg, why, sizeof(why));
			if (rc < 0) {
				client_fail(c, why);
				return;
			}
			off += plen;
			if (rc == 1) {
				uint64_t gen = c->conn_gen;
				handle_message(c, &msg, c->reasm.msg.data, c->reasm.msg.len);
				if (c->conn_gen != gen)
					return; /* closed (perhaps reopened): this buffer is gone */
			}
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

static void client_on_io(void *arg, uint32_t events)
{
	struct isns_client *c = arg;
	if (c->phase == ISNS_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			client_fail(c, strerror(err));
			return;
		}
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		c->phase = ISNS_CONNECTED;
		loop_timer_stop(c->srv->loop, &c->io_timer);
		client_kick(c);
		return;
	}
	if (events & EPOLLOUT)
		client_flush(c);
	if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		client_read(c);
}

static int client_connect(struct isns_client *c)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (strchr(c->addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(c->port);
		inet_pton(AF_INET6, c->addr, &s6->sin6_addr);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(c->port);
		inet_pton(AF_INET, c->addr, &s4->sin_addr);
		sl = sizeof(*s4);
	}
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	if (connect(c->fd, (struct sockaddr *)&ss, sl) == 0) {
		c->phase = ISNS_CONNECTED;
		return 0;
	}
	if (errno != EINPROGRESS)
		return -1;
	c->phase = ISNS_CONNECTING;
	return 0;
}

/* Do the next thing wanted, if nothing is under way. */
static void client_kick(struct isns_client *c)
{
	if (c->draining || c->retry_pending || c->inflight != REQ_NONE || c->phase == ISNS_CONNECTING)
		return;
	enum isns_request next = REQ_NONE;
	if (c->want_dereg)
		next = REQ_DEREGISTER;
	else if (c->want_register && c->srv->nnodes)
		next = REQ_REGISTER;
	else if (c->want_refresh && c->registered && c->srv->nnodes)
		next = REQ_REFRESH;
	else if (c->registered) {
		pthread_mutex_lock(&acl_lock);
		for (size_t i = 0; i < c->nacl; i++)
			if (c->acl[i].want) {
				c->query_idx = i; /* its want is cleared once the query is sent */
				next = REQ_QUERY;
				break;
			}
		pthread_mutex_unlock(&acl_lock);
	}
	if (next == REQ_NONE) {
		if (c->phase != ISNS_IDLE)
			client_close(c);
		return;
	}
	if (c->phase == ISNS_IDLE) {
		if (client_connect(c) < 0) {
			client_fail(c, strerror(errno));
			return;
		}
		if (c->phase == ISNS_CONNECTING) {
			set_events(c, EPOLLOUT);
			loop_timer_start(c->srv->loop, &c->io_timer, ISNS_IO_TIMEOUT_MS, 0, on_io_timeout, c);
			return;
		}
	}
	client_send(c, next);
}

/* ---- Life cycle ---- */

static void client_free(struct isns_client *c)
{
	c->draining = false;
	client_close(c);
	loop_timer_stop(c->srv->loop, &c->retry_timer);
	loop_timer_stop(c->srv->loop, &c->refresh_timer);
	loop_timer_stop(c->srv->loop, &c->access_timer);
	for (size_t i = 0; i < c->nacl; i++) {
		acl_clear(&c->acl[i]);
		free(c->acl[i].target);
	}
	free(c->acl);
	isns_reasm_free(&c->reasm);
	sbuf_free(&c->out);
	free(c->in);
	free(c->eid);
	free(c->source);
	free(c);
}

static char *default_entity(void)
{
	char host[256] = "localhost";
	if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = 0;
	return xasprintf("isthmus-target:%s", host);
}

static struct isns_client *client_new(struct server *srv, const char *spec, const char *eid)
{
	struct isns_client *c = xcalloc(1, sizeof(*c));
	char why[160];
	if (isns_parse_server(spec, c->addr, sizeof(c->addr), &c->port, why, sizeof(why)) < 0) {
		log_error("%s", why); /* the configuration parser checked it: only a flag can get here */
		free(c);
		return NULL;
	}
	c->srv = srv;
	c->fd = -1;
	snprintf(c->spec, sizeof(c->spec), "%s", spec);
	c->eid = eid ? xstrdup(eid) : default_entity();
	c->in = xmalloc(ISNS_RX_CAP);
	c->reasm.max = ISNS_RX_MESSAGE_MAX;
	c->backoff_ms = ISNS_RETRY_MIN_MS;
	return c;
}

static bool same_entity(const struct isns_client *c, const struct cfg *cfg)
{
	if (strcmp(c->spec, cfg->isns) != 0)
		return false;
	if (cfg->isns_entity)
		return strcmp(c->eid, cfg->isns_entity) == 0;
	char *d = default_entity();
	bool same = strcmp(c->eid, d) == 0;
	free(d);
	return same;
}

static void on_access_timer(void *arg)
{
	struct isns_client *c = arg;
	pthread_mutex_lock(&acl_lock);
	for (size_t i = 0; i < c->nacl; i++)
		c->acl[i].want = true;
	pthread_mutex_unlock(&acl_lock);
	client_kick(c);
}

/* One access list per target while isns-access is on; the lists of targets that stay are kept. */
static void acl_sync(struct isns_client *c)
{
	struct server *srv = c->srv;
	size_t n = srv->cfg->isns_access ? srv->nnodes : 0;
	struct isns_acl *na = xcalloc(n ? n : 1, sizeof(*na));
	for (size_t i = 0; i < n; i++) {
		const char *name = srv->nodes[i]->cfg->name;
		for (size_t k = 0; k < c->nacl; k++) {
			if (c->acl[k].target && strcmp(c->acl[k].target, name) == 0) {
				na[i] = c->acl[k];
				c->acl[k] = (struct isns_acl){0};
				break;
			}
		}
		if (!na[i].target) {
			na[i].target = xstrdup(name);
			na[i].want = true;
		}
	}
	for (size_t k = 0; k < c->nacl; k++) {
		acl_clear(&c->acl[k]);
		free(c->acl[k].target);
	}
	free(c->acl);
	c->acl = na;
	c->nacl = n;
	c->query_idx = SIZE_MAX; /* an answer in flight may be for an entry that moved: it is dropped */
	loop_timer_stop(srv->loop, &c->access_timer);
	if (n)
		loop_timer_start(srv->loop, &c->access_timer, ISNS_ACCESS_REFRESH_MS, ISNS_ACCESS_REFRESH_MS,
				 on_access_timer, c);
}

static void kick_on_loop0(void *arg)
{
	struct server *srv = arg;
	if (srv->isns)
		client_kick(srv->isns);
}

uint16_t isns_target_access(struct server *srv, const char *target, const char *initiator, const char **why)
{
	if (!srv->cfg->isns_access)
		return LOGIN_OK;
	struct isns_client *c = srv->isns;
	struct isns_acl *a = NULL;
	uint16_t st = LOGIN_AUTHZ_FAILED;
	bool kick = false;
	pthread_mutex_lock(&acl_lock);
	for (size_t i = 0; c && i < c->nacl; i++)
		if (strcmp(c->acl[i].target, target) == 0)
			a = &c->acl[i];
	uint64_t now = loop_now_ms();
	if (!a || !a->fetched_ms || now - a->fetched_ms > ISNS_ACCESS_TTL_MS) {
		/* Fail closed, but as a transient refusal: the initiator tries again later. */
		if (a)
			a->want = kick = true;
		*why = "no current answer from the iSNS server about the target's discovery domains";
		st = LOGIN_SERVICE_UNAVAILABLE;
	} else {
		for (size_t i = 0; i < a->n && st != LOGIN_OK; i++)
			if (strcmp(a->initiators[i], initiator) == 0)
				st = LOGIN_OK;
		/* Perhaps added to a domain since the last answer: ask again, at most once a second. */
		if (st != LOGIN_OK && now - a->fetched_ms >= ISNS_ACCESS_RECHECK_MS)
			a->want = kick = true;
		if (st != LOGIN_OK)
			*why = "the initiator shares no iSNS discovery domain with the target (isns-access)";
	}
	pthread_mutex_unlock(&acl_lock);
	if (kick) {
		/* The client is loop 0's: a login on another loop asks it there. */
		if (pthread_equal(pthread_self(), srv->shards[0]->thread))
			client_kick(c);
		else
			shard_post(srv->shards[0], kick_on_loop0, srv);
	}
	return st;
}

void isns_target_changed(struct server *srv)
{
	const struct cfg *cfg = srv->cfg;
	struct isns_client *c = srv->isns;
	if (cfg->isns_access && !cfg->isns)
		log_warn("isns-access is on but no isns server is set: every login to a target is refused");
	if (c && cfg->isns && same_entity(c, cfg)) {
		c->changes++;
		acl_sync(c);
		/* Without a target there is no Source to register with: leave instead. */
		c->want_register = srv->nnodes > 0;
		c->want_dereg = !srv->nnodes && (c->registered || c->inflight == REQ_REGISTER);
		client_kick(c);
		return;
	}
	if (c && !cfg->isns) {
		/* isns was removed: leave the server as if we were shutting down. */
		loop_timer_stop(srv->loop, &c->refresh_timer);
		c->want_register = c->want_refresh = false;
		c->want_dereg = c->registered || c->inflight == REQ_REGISTER;
		client_kick(c);
		return;
	}
	if (c) {
		/* Another server or entity: the old registration lapses at the end of its period. */
		log_info("iSNS: leaving %s (entity %s) for %s", c->spec, c->eid, cfg->isns);
		client_free(c);
		srv->isns = NULL;
	}
	if (!cfg->isns || !(c = client_new(srv, cfg->isns, cfg->isns_entity)))
		return;
	srv->isns = c;
	c->want_register = true;
	acl_sync(c);
	client_kick(c);
}

void isns_target_stop(struct server *srv)
{
	struct isns_client *c = srv->isns;
	if (!c)
		return;
	loop_timer_stop(srv->loop, &c->refresh_timer);
	c->want_register = c->want_refresh = false;
	c->want_dereg = c->registered || c->inflight == REQ_REGISTER || c->want_dereg;
	if (c->want_dereg && c->retry_pending) {
		/* A server that was down may be back: do not wait out the backoff at shutdown. */
		loop_timer_stop(srv->loop, &c->retry_timer);
		c->retry_pending = false;
	}
	client_kick(c);
}

/* The loop has stopped: one last deregistration on a fresh connection, within ISNS_DEREG_WAIT_MS. */
static void deregister_before_exit(struct isns_client *c)
{
	client_close(c);
	c->draining = true;
	uint64_t deadline = loop_now_ms() + ISNS_DEREG_WAIT_MS;
	if (client_connect(c) < 0) {
		log_warn("iSNS server %s: deregistration failed: %s", c->spec, strerror(errno));
		client_close(c);
		return;
	}
	bool sent = false;
	while (c->fd >= 0 && c->want_dereg) {
		if (c->phase == ISNS_CONNECTED && !sent) {
			sent = true;
			client_send(c, REQ_DEREGISTER);
			continue;
		}
		uint64_t now = loop_now_ms();
		if (now >= deadline)
			break;
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		if (c->phase == ISNS_CONNECTING || c->out_off < c->out.len)
			pfd.events |= POLLOUT;
		int rc = poll(&pfd, 1, (int)(deadline - now));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			break;
		if (c->phase == ISNS_CONNECTING) {
			int err = 0;
			socklen_t el = sizeof(err);
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err) {
				errno = err;
				break;
			}
			c->phase = ISNS_CONNECTED;
			continue;
		}
		if (pfd.revents & POLLOUT)
			client_flush(c);
		if (c->fd >= 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			client_read(c);
	}
	if (c->want_dereg)
		log_warn("iSNS server %s: no answer to the deregistration of %s within %u ms; it lapses with the "
			 "registration period",
			 c->spec, c->eid, ISNS_DEREG_WAIT_MS);
	client_close(c);
}

void isns_target_free(struct server *srv)
{
	struct isns_client *c = srv->isns;
	if (!c)
		return;
	if (c->want_dereg || c->registered || c->inflight == REQ_REGISTER) {
		c->want_dereg = true;
		deregister_before_exit(c);
	}
	client_free(c);
	srv->isns = NULL;
}
