/* iSNS discovery: the query on a thread, its answer folded into the daemon's state on the loop. */
#include "daemon/isns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/ops.h"
#include "daemon/session.h"
#include "daemon/store.h"
#include "net/loop.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Waits for events on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = loop_now_ms();
		if (now >= deadline)
			return 0;
		struct pollfd p = {.fd = fd, .events = events};
		int rc = poll(&p, 1, (int)(deadline - now));
		if (rc < 0 && errno == EINTR)
			continue;
		return rc;
	}
}

static int connect_by(const char *addr, uint16_t port, uint64_t deadline, char *err, size_t errlen)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &s6->sin6_addr);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		inet_pton(AF_INET, addr, &s4->sin_addr);
		sl = sizeof(*s4);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		if (errno != EINPROGRESS) {
			snprintf(err, errlen, "connect: %s", strerror(errno));
			close(fd);
			return -1;
		}
		int e = 0;
		socklen_t el = sizeof(e);
		if (wait_fd(fd, POLLOUT, deadline) <= 0) {
			snprintf(err, errlen, "connect: timed out");
			close(fd);
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
			snprintf(err, errlen, "connect: %s", strerror(e ? e : errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

/*
 * DevAttrQry (RFC 4171 5.6.5.2): key "iSCSI Node Type = Target", and every attribute that says
 * which node it is and where it listens asked for by a zero-length TLV.
 */
static void build_query(struct sbuf *b, const char *source)
{
	static const uint32_t wanted[] = {
		ISNS_TAG_ENTITY_ID,        ISNS_TAG_PORTAL_IP,      ISNS_TAG_PORTAL_PORT,    ISNS_TAG_ISCSI_NAME,
		ISNS_TAG_ISCSI_NODE_TYPE,  ISNS_TAG_ISCSI_ALIAS,    ISNS_TAG_PG_ISCSI_NAME,  ISNS_TAG_PG_PORTAL_IP,
		ISNS_TAG_PG_PORTAL_PORT,   ISNS_TAG_PG_TAG,
	};
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, source);
	isns_put_u32(b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_TARGET);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		isns_put_empty(b, wanted[i]);
}

int disc_isns_call(const char *addr, uint16_t port, uint16_t func, const struct sbuf *payload, uint16_t xid,
		   size_t max_message, uint32_t timeout_ms, struct sbuf *resp, uint32_t *status, char *err, size_t errlen)
{
	uint64_t deadline = loop_now_ms() + timeout_ms;
	int fd = connect_by(addr, port, deadline, err, errlen);
	if (fd < 0)
		return -1;
	struct sbuf wire = {0};
	struct isns_reasm r = {.max = max_message};
	uint8_t *in = xmalloc(ISNS_HDR_LEN + 65535u);
	size_t have = 0, sent = 0;
	int ret = -1;
	if (isns_message_encode(&wire, func, ISNS_F_CLIENT, xid, payload->data, payload->len) < 0) {
		snprintf(err, errlen, "the request cannot be encoded");
		goto out;
	}
	while (sent < wire.len) {
		ssize_t n = send(fd, wire.data + sent, wire.len - sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (wait_fd(fd, POLLOUT, deadline) <= 0) {
				snprintf(err, errlen, "send: timed out");
				goto out;
			}
			continue;
		}
		if (n <= 0) {
			snprintf(err, errlen, "send: %s", strerror(errno));
			goto out;
		}
		sent += (size_t)n;
	}
	for (;;) {
		if (wait_fd(fd, POLLIN, deadline) <= 0) {
			snprintf(err, errlen, "no complete answer within %u s", timeout_ms / 1000);
			goto out;
		}
		ssize_t n = recv(fd, in + have, ISNS_HDR_LEN + 65535u - have, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s", n == 0 ? "the server closed the connection" : strerror(errno));
			goto out;
		}
		have += (size_t)n;
		size_t off = 0;
		for (;;) {
			struct isns_hdr h, msg;
			size_t plen;
			int rc = isns_pdu_peek(in + off, have - off, &h, &plen, err, errlen);
			if (rc == 0)
				break;
			if (rc > 0)
				rc = isns_reasm_add(&r, &h, in + off + ISNS_HDR_LEN, &msg, err, errlen);
			if (rc < 0)
				goto out;
			off += plen;
			if (rc == 0)
				continue;
			if (msg.func != (ISNS_RESPONSE | func) || msg.xid != xid)
				continue; /* not our answer */
			if (isns_response_status(r.msg.data, r.msg.len, status) < 0) {
				snprintf(err, errlen, "answer without a status");
				goto out;
			}
			sbuf_reset(resp);
			sbuf_append(resp, r.msg.data, r.msg.len);
			ret = 0;
			goto out;
		}
		memmove(in, in + off, have - off);
		have -= off;
	}
out:
	close(fd);
	free(in);
	isns_reasm_free(&r);
	sbuf_free(&wire);
	return ret;
}

int disc_isns_query(const char *server, const char *source, struct isns_node_list *out, char *err, size_t errlen)
{
	char addr[64];
	uint16_t port;
	out->nodes = NULL;
	out->n = 0;
	if (isns_parse_server(server, addr, sizeof(addr), &port, err, errlen) < 0)
		return -1;
	struct sbuf payload = {0}, resp = {0};
	uint32_t status;
	int ret = -1;
	build_query(&payload, source);
	if (disc_isns_call(addr, port, ISNS_DEV_ATTR_QRY, &payload, 1, DISC_ISNS_MAX_MESSAGE, DISC_ISNS_TIMEOUT_MS, &resp,
			   &status, err, errlen) < 0)
		goto out;
	if (status == ISNS_STATUS_NO_SUCH_ENTRY) {
		ret = 0; /* nothing visible */
		goto out;
	}
	if (status != ISNS_STATUS_SUCCESS) {
		snprintf(err, errlen, "query refused: %s (status %u)", isns_status_name(status), status);
		goto out;
	}
	size_t op;
	if (isns_response_operating(resp.data, resp.len, &op, err, errlen) < 0 ||
	    isns_parse_nodes(resp.data + op, resp.len - op, DISC_ISNS_MAX_NODES, DISC_ISNS_MAX_PORTALS, out, err,
			     errlen) < 0)
		goto out;
	ret = 0;
out:
	sbuf_free(&payload);
	sbuf_free(&resp);
	return ret;
}

/* ---- discovery.isns ---- */

struct isns_job {
	struct daemon *d;
	uint64_t op;
	char *server, *source;
	struct isns_node_list nodes;
	char err[256];
	int rc;
	int efd;
	struct loop_watch w;
	pthread_t th;
};

static void *isns_thread(void *arg)
{
	struct isns_job *j = arg;
	j->rc = disc_isns_query(j->server, j->source, &j->nodes, j->err, sizeof(j->err));
	uint64_t one = 1;
	ssize_t w = write(j->efd, &one, sizeof(one));
	(void)w;
	return NULL;
}

static void isns_job_free(void *arg)
{
	struct isns_job *j = arg;
	if (j->efd >= 0)
		close(j->efd);
	isns_node_list_free(&j->nodes);
	free(j->server);
	free(j->source);
	free(j);
}

/* "ADDR:PORT" as SendTargets writes a TargetAddress, IPv6 in brackets. */
static void portal_text(const struct isns_portal *p, char *out, size_t outlen)
{
	if (strchr(p->ip, ':'))
		snprintf(out, outlen, "[%s]:%u", p->ip, p->port);
	else
		snprintf(out, outlen, "%s:%u", p->ip, p->port);
}

static void remember(struct daemon *d, const char *target, const char *portal)
{
	for (size_t k = 0; k < json_array_size(d->discovered); k++) {
		json_t *e = json_array_get(d->discovered, k);
		if (!strcmp(json_string_value(json_object_get(e, "target")) ?: "", target) &&
		    !strcmp(json_string_value(json_object_get(e, "portal")) ?: "", portal))
			return;
	}
	json_array_append_new(d->discovered, json_pack("{s:s,s:s}", "target", target, "portal", portal));
}

size_t disc_isns_remember(struct daemon *d, const struct isns_node_list *l)
{
	size_t ntargets = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct isns_node *n = &l->nodes[i];
		if (!(n->type & ISNS_NODE_TARGET))
			continue;
		ntargets++;
		for (size_t k = 0; k < n->nportals; k++) {
			char portal[96];
			portal_text(&n->portals[k], portal, sizeof(portal));
			remember(d, n->name, portal);
		}
		for (struct dsession *s = d->sessions; s; s = s->next)
			if (!strcmp(s->opts.target, n->name))
				s->discovered = true;
	}
	store_save_discovered(d);
	return ntargets;
}

static void isns_job_done(void *arg, uint32_t events)
{
	(void)events;
	struct isns_job *j = arg;
	struct daemon *d = j->d;
	loop_watch_del(d->loop, &j->w);
	pthread_join(j->th, NULL);
	if (j->rc < 0) {
		dop_fail(d, j->op, RPC_FAILED, "iSNS discovery at %s failed: %s", j->server, j->err);
		loop_defer(d->loop, isns_job_free, j);
		return;
	}
	json_t *a = json_array();
	size_t ntargets = disc_isns_remember(d, &j->nodes);
	for (size_t i = 0; i < j->nodes.n; i++) {
		const struct isns_node *n = &j->nodes.nodes[i];
		if (!(n->type & ISNS_NODE_TARGET))
			continue;
		json_t *addrs = json_array();
		for (size_t k = 0; k < n->nportals; k++) {
			char portal[96], withtag[112];
			portal_text(&n->portals[k], portal, sizeof(portal));
			snprintf(withtag, sizeof(withtag), "%s,%u", portal, n->portals[k].tag);
			json_array_append_new(addrs, json_string(withtag));
		}
		json_t *t = json_pack("{s:s,s:o}", "target", n->name, "addresses", addrs);
		if (n->alias[0])
			json_object_set_new(t, "alias", json_string(n->alias));
		json_array_append_new(a, t);
	}
	log_info("iSNS discovery at %s: %zu target(s)", j->server, ntargets);
	dop_done(d, j->op, json_pack("{s:s,s:s,s:o}", "portal", j->server, "isns", j->server, "targets", a));
	loop_defer(d->loop, isns_job_free, j);
}

json_t *dmn_discover_isns(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	const char *server = json_string_value(json_object_get(params, "server"));
	char addr[64], why[160];
	uint16_t port;
	if (!server)
		return rpc_fail(err, RPC_INVALID_PARAMS, "'server' is required");
	if (isns_parse_server(server, addr, sizeof(addr), &port, why, sizeof(why)) < 0)
		return rpc_fail(err, RPC_INVALID_PARAMS, "%s", why);
	struct isns_job *j = xcalloc(1, sizeof(*j));
	j->d = d;
	j->server = xstrdup(server);
	j->source = xstrdup(d->initiator_name);
	j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (j->efd < 0 || loop_watch_add(d->loop, &j->w, j->efd, EPOLLIN, isns_job_done, j) < 0) {
		isns_job_free(j);
		return rpc_fail(err, RPC_INTERNAL_ERROR, "cannot start the iSNS discovery");
	}
	j->op = dop_new(d);
	uint64_t op = j->op;
	if (pthread_create(&j->th, NULL, isns_thread, j) != 0) {
		loop_watch_del(d->loop, &j->w);
		dop_fail(d, op, RPC_INTERNAL_ERROR, "cannot start the iSNS discovery thread");
		isns_job_free(j);
	}
	return dop_answer(d, op, err);
}
