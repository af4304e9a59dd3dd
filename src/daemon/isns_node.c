/*
 * The initiator daemon as an iSNS client of its own (docs/isns.md): its network entity, one
 * portal that carries the port state change notifications (SCN) come to, and its iSCSI Node
 * (type Initiator) are registered with the server of the configuration's isns key; the
 * registration is made again within the server's registration period, and withdrawn at a clean
 * stop. An SCN makes the daemon ask the server again which targets it may reach; persistent
 * logins waiting for one of them log in at once.
 *
 * All of the network work runs on one thread of its own, every step bounded in time: the event
 * loop only hears, through an eventfd, that a new list of targets is ready.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/isns.h"
#include "daemon/recovery.h"
#include "daemon/session.h"
#include "util/log.h"
#include "util/sbuf.h"

/* An SCN connection: at most one PDU buffered, one message reassembled. */
struct scn_conn {
	int fd;
	uint8_t *in;
	size_t in_len;
	struct isns_reasm reasm;
	uint64_t last_ms; /* when it last brought a byte, for the idle bound */
};

struct dmn_isns {
	struct daemon *d;
	char spec[96];
	char addr[64];
	uint16_t port;
	char *name, *alias, *eid;
	pthread_t th;
	int wake_fd;   /* the loop tells the thread to stop */
	int notify_fd; /* the thread tells the loop that a list is ready */
	struct loop_watch notify_watch;
	atomic_bool stop;
	pthread_mutex_t mu;
	struct isns_node_list ready; /* under mu: the newest answer not yet taken by the loop */
	bool have_ready;
	/* Loop side: the targets visible at the last answer, to tell which ones left. */
	char **visible;
	size_t nvisible;
	/* Thread side. */
	int lfd;
	uint16_t scn_port;
	char local_ip[INET6_ADDRSTRLEN];
	struct scn_conn conns[DMN_ISNS_SCN_MAX_CONNS];
	bool registered;
	uint32_t period_s;
	uint32_t backoff_ms;
	uint64_t next_register_ms;
	bool want_query;
	uint64_t last_query_ms;
	uint16_t xid;
};

/* ---- Messages ---- */

/* DevAttrReg (RFC 4171 5.6.5.1): the entity, the portal SCNs come to, the initiator node. */
static void build_registration(const struct dmn_isns *c, struct sbuf *b)
{
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->name);
	isns_put_str(b, ISNS_TAG_ENTITY_ID, c->eid);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
	isns_put_str(b, ISNS_TAG_ENTITY_ID, c->eid);
	isns_put_u32(b, ISNS_TAG_ENTITY_PROTOCOL, ISNS_ENTITY_PROTOCOL_ISCSI);
	/* An initiator has no iSCSI port of its own: its portal is the SCN listener, TCP. */
	if (isns_put_ip(b, ISNS_TAG_PORTAL_IP, c->local_ip) == 0) {
		isns_put_u32(b, ISNS_TAG_PORTAL_PORT, c->scn_port);
		isns_put_u32(b, ISNS_TAG_SCN_PORT, c->scn_port);
	}
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->name);
	isns_put_u32(b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_INITIATOR);
	if (c->alias && *c->alias)
		isns_put_str(b, ISNS_TAG_ISCSI_ALIAS, c->alias);
}

/*
 * SCNReg (5.6.5.5): targets added or removed, and this node's discovery domain membership.
 * A target that was a domain member before it registered is reported as added too (with
 * updated), so updates, which every refresh of every target would cause, are not asked for.
 */
#define DMN_ISNS_SCN_BITMAP                                                                                          \
	(ISNS_SCN_OBJECT_ADDED | ISNS_SCN_OBJECT_REMOVED | ISNS_SCN_DD_MEMBER_ADDED | ISNS_SCN_DD_MEMBER_REMOVED |    \
	 ISNS_SCN_TARGET_AND_SELF)

static void build_scn_registration(const struct dmn_isns *c, struct sbuf *b)
{
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->name);
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->name);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
	isns_put_u32(b, ISNS_TAG_ISCSI_SCN_BITMAP, DMN_ISNS_SCN_BITMAP);
}

/* SCNDereg (5.6.5.6): Source and Message Key are this node; no operating attributes. */
static void build_scn_deregistration(const struct dmn_isns *c, struct sbuf *b)
{
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->name);
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->name);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
}

/* DevDereg (5.6.5.4): the entity, which takes its portal and node along. */
static void build_deregistration(const struct dmn_isns *c, struct sbuf *b)
{
	isns_put_str(b, ISNS_TAG_ISCSI_NAME, c->name);
	isns_put_empty(b, ISNS_TAG_DELIMITER);
	isns_put_str(b, ISNS_TAG_ENTITY_ID, c->eid);
}

static uint32_t response_period(const struct sbuf *resp)
{
	size_t off = 4;
	struct isns_attr a;
	uint32_t v = 0;
	while (isns_attr_next(resp->data, resp->len, &off, &a, NULL, 0) == 1)
		if (a.tag == ISNS_TAG_REGISTRATION_PERIOD && isns_attr_u32(&a, &v) == 0)
			return v;
	return 0;
}

/* One request; 0 when the server answered with success, else -1 with why. */
static int request(struct dmn_isns *c, uint16_t func, const struct sbuf *payload, struct sbuf *resp, char *why,
		   size_t whylen)
{
	uint32_t status;
	c->xid = (uint16_t)(c->xid + 1);
	if (disc_isns_call(c->addr, c->port, func, payload, c->xid, DMN_ISNS_MAX_RESPONSE, DMN_ISNS_IO_TIMEOUT_MS, resp,
			   &status, why, whylen) < 0)
		return -1;
	if (status != ISNS_STATUS_SUCCESS) {
		snprintf(why, whylen, "refused: %s (status %u)", isns_status_name(status), status);
		return -1;
	}
	return 0;
}

/*
 * The SCN registration, made anew: SCNDereg, then SCNReg. isnsd (open-isns 0.101 to 0.103)
 * forgets the connection it notifies through whenever this entity changed since its last
 * notification, and any message from this node changes the entity (its timestamp), but keeps
 * using the forgotten connection, which can crash it. A registration made anew after each of
 * our exchanges starts from a clean state on its side. Other servers only see a redundant pair
 * of requests.
 */
static int scn_renew(struct dmn_isns *c, char *why, size_t whylen)
{
	struct sbuf payload = {0}, resp = {0};
	uint32_t status;
	if (atomic_load(&c->stop))
		return 0; /* stopping: the deregistration takes the SCN registration along */
	build_scn_deregistration(c, &payload);
	c->xid = (uint16_t)(c->xid + 1);
	/* Its answer does not matter: there may be nothing to deregister. */
	int rc = disc_isns_call(c->addr, c->port, ISNS_SCN_DEREG, &payload, c->xid, DMN_ISNS_MAX_RESPONSE,
				DMN_ISNS_IO_TIMEOUT_MS, &resp, &status, why, whylen);
	if (rc == 0 && !atomic_load(&c->stop)) {
		sbuf_reset(&payload);
		build_scn_registration(c, &payload);
		rc = request(c, ISNS_SCN_REG, &payload, &resp, why, whylen);
	}
	sbuf_free(&payload);
	sbuf_free(&resp);
	return rc;
}

/* ---- The SCN listener ---- */

/* The address this host reaches the server from (a UDP connect sends nothing). */
static int local_address(struct dmn_isns *c, struct sockaddr_storage *ss, socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(c->addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(c->port);
		inet_pton(AF_INET6, c->addr, &s6->sin6_addr);
		*sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(c->port);
		inet_pton(AF_INET, c->addr, &s4->sin_addr);
		*sl = sizeof(*s4);
	}
	int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int rc = connect(fd, (struct sockaddr *)ss, *sl);
	if (rc == 0)
		rc = getsockname(fd, (struct sockaddr *)ss, sl);
	close(fd);
	return rc;
}

/* Listen on the address the server is reached from, on a port the kernel picks. */
static int scn_listen(struct dmn_isns *c, char *why, size_t whylen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (local_address(c, &ss, &sl) < 0) {
		snprintf(why, whylen, "no route to the server: %s", strerror(errno));
		return -1;
	}
	if (ss.ss_family == AF_INET) {
		((struct sockaddr_in *)&ss)->sin_port = 0;
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->local_ip, sizeof(c->local_ip));
	} else {
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->local_ip, sizeof(c->local_ip));
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, DMN_ISNS_SCN_MAX_CONNS) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(why, whylen, "SCN listener on %s: %s", c->local_ip, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	c->lfd = fd;
	c->scn_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						    : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static void scn_close(struct scn_conn *k)
{
	if (k->fd < 0)
		return;
	close(k->fd);
	k->fd = -1;
	k->in_len = 0;
	isns_reasm_reset(&k->reasm);
}

/* Only the server may notify: a connection from any other address is closed at once. */
static bool from_server(const struct dmn_isns *c, const struct sockaddr_storage *ss)
{
	/* Compared as addresses, not text: the configuration may spell an IPv6 address otherwise. */
	uint8_t want[16], peer[16];
	size_t wlen = 4, plen = 0;
	if (inet_pton(AF_INET, c->addr, want) != 1) {
		if (inet_pton(AF_INET6, c->addr, want) != 1)
			return false;
		wlen = 16;
	}
	if (ss->ss_family == AF_INET) {
		memcpy(peer, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		plen = 4;
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(peer, &a6->s6_addr[12], 4);
			plen = 4;
		} else {
			memcpy(peer, a6, 16);
			plen = 16;
		}
	}
	return plen == wlen && memcmp(peer, want, wlen) == 0;
}

static void scn_accept(struct dmn_isns *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(c->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (!from_server(c, &ss)) {
		log_warn("iSNS: SCN connection from an address that is not the server %s: closed", c->addr);
		close(fd);
		return;
	}
	/* A free slot, else the connection heard from least recently makes room. */
	struct scn_conn *k = NULL;
	for (size_t i = 0; i < DMN_ISNS_SCN_MAX_CONNS; i++) {
		struct scn_conn *o = &c->conns[i];
		if (o->fd < 0) {
			k = o;
			break;
		}
		if (!k || o->last_ms < k->last_ms)
			k = o;
	}
	if (k->fd >= 0) {
		log_debug("iSNS: %u SCN connections open: closing the oldest", DMN_ISNS_SCN_MAX_CONNS);
		scn_close(k);
	}
	k->fd = fd;
	k->last_ms = loop_now_ms();
	log_debug("iSNS: SCN connection from the server");
}

static const char *scn_event_text(uint32_t bits, char *out, size_t outlen)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
		{ISNS_SCN_OBJECT_ADDED, "added"},
		{ISNS_SCN_OBJECT_REMOVED, "removed"},
		{ISNS_SCN_OBJECT_UPDATED, "updated"},
		{ISNS_SCN_DD_MEMBER_ADDED, "discovery domain member added"},
		{ISNS_SCN_DD_MEMBER_REMOVED, "discovery domain member removed"},
	};
	size_t n = 0;
	out[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (bits & names[i].bit)
			n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%s%s", n ? ", " : "", names[i].name);
	if (!out[0])
		snprintf(out, outlen, "event %#x", bits);
	return out;
}

/* SCN (5.6.5.13): the destination, a timestamp, then for each change its bitmap and the node. */
static void scn_log(const uint8_t *p, size_t len)
{
	size_t off = 0;
	struct isns_attr a;
	uint32_t bits = 0;
	bool have_bits = false;
	char name[ISNS_NAME_MAX], ev[128];
	while (isns_attr_next(p, len, &off, &a, NULL, 0) == 1) {
		if (a.tag == ISNS_TAG_ISCSI_SCN_BITMAP && isns_attr_u32(&a, &bits) == 0) {
			have_bits = true;
		} else if (a.tag == ISNS_TAG_ISCSI_NAME && have_bits && isns_attr_str(&a, name, sizeof(name)) == 0) {
			log_info("iSNS SCN: %s %s", name, scn_event_text(bits, ev, sizeof(ev)));
			have_bits = false;
		}
	}
}

/* SCNRsp (5.7.5.13): success and the destination, this node. */
static void scn_answer(struct dmn_isns *c, struct scn_conn *k, const struct isns_hdr *h)
{
	struct sbuf payload = {0}, wire = {0};
	uint8_t status[4] = {0}; /* a bare status word: success */
	sbuf_append(&payload, status, sizeof(status));
	isns_put_str(&payload, ISNS_TAG_ISCSI_NAME, c->name);
	if (isns_message_encode(&wire, (uint16_t)(ISNS_RESPONSE | ISNS_SCN), ISNS_F_CLIENT, h->xid, payload.data,
				payload.len) == 0) {
		ssize_t n = send(k->fd, wire.data, wire.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n != (ssize_t)wire.len) {
			log_warn("iSNS: the SCN response could not be sent at once: closing the connection");
			scn_close(k);
		}
	}
	sbuf_free(&payload);
	sbuf_free(&wire);
}

static void scn_message(struct dmn_isns *c, struct scn_conn *k, const struct isns_hdr *h, const uint8_t *p,
			size_t len)
{
	if (h->func != ISNS_SCN) {
		log_debug("iSNS: ignoring function %#x on the SCN port", h->func);
		return;
	}
	scn_log(p, len);
	scn_answer(c, k, h);
	c->want_query = true;
}

static void scn_read(struct dmn_isns *c, struct scn_conn *k)
{
	ssize_t n = recv(k->fd, k->in + k->in_len, ISNS_HDR_LEN + 65535u - k->in_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		scn_close(k);
		return;
	}
	k->last_ms = loop_now_ms();
	k->in_len += (size_t)n;
	size_t off = 0;
	for (;;) {
		struct isns_hdr h, msg;
		size_t plen;
		char why[128];
		int rc = isns_pdu_peek(k->in + off, k->in_len - off, &h, &plen, why, sizeof(why));
		if (rc == 0)
			break;
		if (rc > 0)
			rc = isns_reasm_add(&k->reasm, &h, k->in + off + ISNS_HDR_LEN, &msg, why, sizeof(why));
		if (rc < 0) {
			log_warn("iSNS: SCN connection closed: %s", why);
			scn_close(k);
			return;
		}
		off += plen;
		if (rc == 1) {
			scn_message(c, k, &msg, k->reasm.msg.data, k->reasm.msg.len);
			isns_reasm_reset(&k->reasm);
			if (k->fd < 0)
				return;
		}
	}
	memmove(k->in, k->in + off, k->in_len - off);
	k->in_len -= off;
}

/* ---- The thread ---- */

static void do_register(struct dmn_isns *c)
{
	char why[256];
	struct sbuf payload = {0}, resp = {0};
	uint64_t now = loop_now_ms();
	if (c->lfd < 0 && scn_listen(c, why, sizeof(why)) < 0)
		goto failed;
	build_registration(c, &payload);
	if (request(c, ISNS_DEV_ATTR_REG, &payload, &resp, why, sizeof(why)) < 0)
		goto failed;
	c->period_s = response_period(&resp);
	if (scn_renew(c, why, sizeof(why)) < 0) {
		log_warn("iSNS server %s: the SCN registration failed", c->spec);
		goto failed;
	}
	if (!c->registered)
		log_info("iSNS server %s: registered initiator %s (entity %s), SCN port %s:%u; registration period %u s",
			 c->spec, c->name, c->eid, c->local_ip, c->scn_port, c->period_s);
	else
		log_debug("iSNS server %s: registration refreshed", c->spec);
	/*
	 * Ask which targets are visible: after the first registration, those there already; after a
	 * refresh, whatever no notification said (isnsd sends discovery domain changes only to
	 * control nodes), so a change is seen within two thirds of the period at the latest.
	 */
	c->want_query = true;
	c->registered = true;
	c->backoff_ms = DMN_ISNS_RETRY_MIN_MS;
	if (c->period_s) {
		/* Two thirds of the period: one lost refresh still leaves time for the retry. */
		uint64_t s = c->period_s / 3 * 2;
		c->next_register_ms = now + (s < DMN_ISNS_REFRESH_MIN_S ? DMN_ISNS_REFRESH_MIN_S : s) * 1000u;
	} else {
		c->next_register_ms = UINT64_MAX;
	}
	goto out;
failed:
	log_warn("iSNS server %s: registration of %s failed: %s; next attempt in %u s", c->spec, c->name, why,
		 (c->backoff_ms + 999) / 1000);
	c->next_register_ms = now + c->backoff_ms;
	c->backoff_ms = c->backoff_ms * 2 > DMN_ISNS_RETRY_MAX_MS ? DMN_ISNS_RETRY_MAX_MS : c->backoff_ms * 2;
out:
	sbuf_free(&payload);
	sbuf_free(&resp);
}

static void do_deregister(struct dmn_isns *c)
{
	char why[256];
	struct sbuf payload = {0}, resp = {0};
	uint32_t status;
	build_deregistration(c, &payload);
	c->xid = (uint16_t)(c->xid + 1);
	if (disc_isns_call(c->addr, c->port, ISNS_DEV_DEREG, &payload, c->xid, DMN_ISNS_MAX_RESPONSE,
			   DMN_ISNS_DEREG_TIMEOUT_MS, &resp, &status, why, sizeof(why)) < 0)
		log_warn("iSNS server %s: deregistration of %s failed: %s; it lapses with the registration period", c->spec,
			 c->eid, why);
	else if (status != ISNS_STATUS_SUCCESS && status != ISNS_STATUS_NO_SUCH_ENTRY)
		log_warn("iSNS server %s: deregistration of %s refused: %s", c->spec, c->eid, isns_status_name(status));
	else
		log_info("iSNS server %s: entity %s deregistered", c->spec, c->eid);
	sbuf_free(&payload);
	sbuf_free(&resp);
}

static void do_query(struct dmn_isns *c)
{
	struct isns_node_list l;
	char why[256];
	c->want_query = false;
	c->last_query_ms = loop_now_ms();
	int rc = disc_isns_query(c->spec, c->name, &l, why, sizeof(why));
	char rwhy[256];
	if (!atomic_load(&c->stop) && scn_renew(c, rwhy, sizeof(rwhy)) < 0)
		log_warn("iSNS server %s: the SCN registration after a query failed: %s", c->spec, rwhy);
	if (rc < 0) {
		log_warn("iSNS server %s: query after a change failed: %s", c->spec, why);
		return;
	}
	pthread_mutex_lock(&c->mu);
	isns_node_list_free(&c->ready);
	c->ready = l;
	c->have_ready = true;
	pthread_mutex_unlock(&c->mu);
	uint64_t one = 1;
	ssize_t w = write(c->notify_fd, &one, sizeof(one));
	(void)w;
}

static void *node_thread(void *arg)
{
	struct dmn_isns *c = arg;
	while (!atomic_load(&c->stop)) {
		uint64_t now = loop_now_ms();
		if (now >= c->next_register_ms)
			do_register(c);
		if (atomic_load(&c->stop))
			break;
		now = loop_now_ms();
		if (c->want_query && c->registered && now >= c->last_query_ms + DMN_ISNS_QUERY_MIN_MS)
			do_query(c);
		now = loop_now_ms();
		uint64_t wake = c->next_register_ms;
		if (c->want_query && c->registered && c->last_query_ms + DMN_ISNS_QUERY_MIN_MS < wake)
			wake = c->last_query_ms + DMN_ISNS_QUERY_MIN_MS;
		struct pollfd pfd[2 + DMN_ISNS_SCN_MAX_CONNS];
		struct scn_conn *owner[2 + DMN_ISNS_SCN_MAX_CONNS];
		nfds_t n = 0;
		pfd[n] = (struct pollfd){.fd = c->wake_fd, .events = POLLIN};
		owner[n++] = NULL;
		if (c->lfd >= 0) {
			pfd[n] = (struct pollfd){.fd = c->lfd, .events = POLLIN};
			owner[n++] = NULL;
		}
		for (size_t i = 0; i < DMN_ISNS_SCN_MAX_CONNS; i++) {
			struct scn_conn *k = &c->conns[i];
			if (k->fd < 0)
				continue;
			if (now >= k->last_ms + DMN_ISNS_SCN_IDLE_MS) {
				log_debug("iSNS: SCN connection idle for %u s: closed", DMN_ISNS_SCN_IDLE_MS / 1000);
				scn_close(k);
				continue;
			}
			if (k->last_ms + DMN_ISNS_SCN_IDLE_MS < wake)
				wake = k->last_ms + DMN_ISNS_SCN_IDLE_MS;
			pfd[n] = (struct pollfd){.fd = k->fd, .events = POLLIN};
			owner[n++] = k;
		}
		int timeout = wake == UINT64_MAX ? -1 : wake <= now ? 0 : (int)(wake - now > 60000 ? 60000 : wake - now);
		int rc = poll(pfd, n, timeout);
		if (rc <= 0)
			continue;
		for (nfds_t i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (pfd[i].fd == c->wake_fd)
				continue; /* the stop flag is read at the top */
			if (pfd[i].fd == c->lfd && !owner[i])
				scn_accept(c);
			else if (owner[i] && owner[i]->fd >= 0)
				scn_read(c, owner[i]);
		}
	}
	if (c->registered)
		do_deregister(c);
	return NULL;
}

/* ---- The loop side ---- */

static bool was_visible(const struct dmn_isns *c, const char *name)
{
	for (size_t i = 0; i < c->nvisible; i++)
		if (!strcmp(c->visible[i], name))
			return true;
	return false;
}

static bool is_visible(const struct isns_node_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if ((l->nodes[i].type & ISNS_NODE_TARGET) && !strcmp(l->nodes[i].name, name))
			return true;
	return false;
}

/* Persistent logins to a target that just became visible try now instead of at their next retry. */
static void login_waiting(struct daemon *d, const char *target)
{
	for (struct dsession *s = d->sessions; s; s = s->next) {
		if (!s->persistent || s->ism || strcmp(s->opts.target, target) != 0)
			continue;
		if (s->state != DS_RECONNECTING && s->state != DS_FAILED && s->state != DS_LOGGING_IN)
			continue;
		log_info("session %s: %s is registered with iSNS: logging in now", s->idstr, target);
		loop_timer_stop(d->loop, &s->retry_timer);
		recovery_login(s);
	}
}

static void on_ready(void *arg, uint32_t events)
{
	(void)events;
	struct dmn_isns *c = arg;
	struct daemon *d = c->d;
	uint64_t v;
	ssize_t r = read(c->notify_fd, &v, sizeof(v));
	(void)r;
	struct isns_node_list l = {0};
	pthread_mutex_lock(&c->mu);
	if (c->have_ready) {
		l = c->ready;
		c->ready = (struct isns_node_list){0};
		c->have_ready = false;
	}
	pthread_mutex_unlock(&c->mu);
	if (d->stopping) {
		isns_node_list_free(&l);
		return;
	}
	size_t ntargets = disc_isns_remember(d, &l);
	log_info("iSNS server %s: %zu target(s) visible", c->spec, ntargets);
	for (size_t i = 0; i < c->nvisible; i++) {
		if (is_visible(&l, c->visible[i]))
			continue;
		/* Gone from the server (or from our discovery domains): a live session is the target's to end. */
		for (struct dsession *s = d->sessions; s; s = s->next)
			if (!strcmp(s->opts.target, c->visible[i]))
				log_info("session %s: %s is no longer visible through iSNS; the session is kept", s->idstr,
					 c->visible[i]);
	}
	for (size_t i = 0; i < l.n; i++) {
		const struct isns_node *n = &l.nodes[i];
		if (!(n->type & ISNS_NODE_TARGET))
			continue;
		if (!was_visible(c, n->name))
			log_info("iSNS: target %s is visible", n->name);
		login_waiting(d, n->name);
	}
	for (size_t i = 0; i < c->nvisible; i++)
		free(c->visible[i]);
	free(c->visible);
	c->visible = xcalloc(l.n ? l.n : 1, sizeof(char *));
	c->nvisible = 0;
	for (size_t i = 0; i < l.n; i++)
		if (l.nodes[i].type & ISNS_NODE_TARGET)
			c->visible[c->nvisible++] = xstrdup(l.nodes[i].name);
	isns_node_list_free(&l);
}

static char *default_entity(void)
{
	char host[256] = "localhost";
	if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = 0;
	return xasprintf("isthmus-initiator:%s", host);
}

static void node_free(struct dmn_isns *c)
{
	if (c->notify_fd >= 0)
		close(c->notify_fd);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	if (c->lfd >= 0)
		close(c->lfd);
	for (size_t i = 0; i < DMN_ISNS_SCN_MAX_CONNS; i++) {
		scn_close(&c->conns[i]);
		isns_reasm_free(&c->conns[i].reasm);
		free(c->conns[i].in);
	}
	isns_node_list_free(&c->ready);
	pthread_mutex_destroy(&c->mu);
	for (size_t i = 0; i < c->nvisible; i++)
		free(c->visible[i]);
	free(c->visible);
	free(c->name);
	free(c->alias);
	free(c->eid);
	free(c);
}

int dmn_isns_start(struct daemon *d, const char *server, char *err, size_t errlen)
{
	struct dmn_isns *c = xcalloc(1, sizeof(*c));
	c->lfd = c->wake_fd = c->notify_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	for (size_t i = 0; i < DMN_ISNS_SCN_MAX_CONNS; i++) {
		c->conns[i].fd = -1;
		c->conns[i].in = xmalloc(ISNS_HDR_LEN + 65535u);
		c->conns[i].reasm.max = DMN_ISNS_SCN_MAX_MESSAGE;
	}
	if (isns_parse_server(server, c->addr, sizeof(c->addr), &c->port, err, errlen) < 0) {
		node_free(c);
		return -1;
	}
	c->d = d;
	snprintf(c->spec, sizeof(c->spec), "%s", server);
	c->name = xstrdup(d->initiator_name);
	c->alias = d->cfg.initiator_alias ? xstrdup(d->cfg.initiator_alias) : NULL;
	c->eid = default_entity();
	c->backoff_ms = DMN_ISNS_RETRY_MIN_MS;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0 || c->notify_fd < 0 ||
	    loop_watch_add(d->loop, &c->notify_watch, c->notify_fd, EPOLLIN, on_ready, c) < 0) {
		snprintf(err, errlen, "iSNS: %s", strerror(errno));
		node_free(c);
		return -1;
	}
	if (pthread_create(&c->th, NULL, node_thread, c) != 0) {
		snprintf(err, errlen, "iSNS: cannot start its thread");
		loop_watch_del(d->loop, &c->notify_watch);
		node_free(c);
		return -1;
	}
	d->isns = c;
	return 0;
}

void dmn_isns_stop(struct daemon *d)
{
	struct dmn_isns *c = d->isns;
	if (!c || atomic_load(&c->stop))
		return;
	atomic_store(&c->stop, true);
	uint64_t one = 1;
	ssize_t w = write(c->wake_fd, &one, sizeof(one));
	(void)w;
}

void dmn_isns_free(struct daemon *d)
{
	struct dmn_isns *c = d->isns;
	if (!c)
		return;
	dmn_isns_stop(d);
	pthread_join(c->th, NULL);
	loop_watch_del(d->loop, &c->notify_watch);
	node_free(c);
	d->isns = NULL;
}
