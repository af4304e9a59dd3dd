/*
 * The initiator's side of one TCP connection: non-blocking connect over the resolved addresses,
 * and what the PDU engine (proto/pdu_conn) leaves to the role: any malformed PDU ends the
 * connection, and the data of large Data-In PDUs goes straight into the task's buffer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "initiator/internal.h"
#include "proto/digest.h"
#include "util/bytes.h"
#include "util/log.h"

/* iovecs per gathered write. */
#define TX_IOV_MAX 256
/* The receive buffer's size: room for many headers, or a few small Data-In PDUs. */
#define RX_INITIAL (256u * 1024u)
/* Data-In segments at least this long go straight from the socket into the task's buffer. */
#define DIRECT_MIN 16384u

static bool conn_receiving(const struct ism_conn *c)
{
	return c->state == CONN_LOGIN || c->state == CONN_FFP || c->state == CONN_LOGOUT;
}

static void conn_pdu_sent(struct pdu_conn *pc, struct pdu_txitem *item)
{
	(void)pc;
	struct txitem *it = (struct txitem *)item;
	if (it->task) {
		it->task->txrefs--;
		if (it->r2t_last && it->task->r2t_active)
			it->task->r2t_active--;
	}
	if (it->ping_conn && it->ping_conn->ping_answers)
		it->ping_conn->ping_answers--;
}

void ism_tx_pool_free(struct ism_session *s) { pdu_txpool_free(&s->tx_pool); }

struct txitem *ism_conn_send(struct ism_conn *c, struct bhs *b, const void *data, uint32_t len,
			     struct ism_task *task, uint8_t *owned)
{
	if (c->fd < 0 || c->state == CONN_CLOSED || c->state == CONN_FREE) {
		free(owned);
		return NULL;
	}
	struct txitem *it = (struct txitem *)pdu_conn_queue(&c->pc, b, data, len, owned);
	it->task = NULL;
	it->r2t_last = false;
	it->ping_conn = NULL;
	if (log_get_level() >= LOG_DEBUG)
		log_debug("cid %u -> %s ITT 0x%08x len %u F%d I%d w0 0x%08x w1 0x%08x", c->cid, opcode_str(b->opcode), b->itt,
			  len, b->final, b->immediate, b->opcode == OP_DATA_OUT ? b->data_out.offset : b->cmd.cmdsn,
			  b->opcode == OP_DATA_OUT ? b->data_out.ttt : b->cmd.edtl);
	if (len && task && !owned) {
		it->task = task;
		task->txrefs++;
	}
	return it;
}

void ism_conn_drop_tx(struct ism_conn *c) { pdu_conn_drop_tx(&c->pc); }

/*
 * A task finishes while PDUs borrowing its buffer are still queued (the target answered before
 * taking all data, or the task was aborted): drop the PDUs not started, copy the data of a PDU
 * half written so the caller may free its buffer.
 */
void ism_conn_detach_task(struct ism_conn *c, struct ism_task *t)
{
	struct pdu_queue *q = &c->pc.txq;
	struct pdu_frame **pp = &q->head, *prev = NULL;
	while (*pp) {
		struct txitem *it = (struct txitem *)*pp;
		struct pdu_frame *f = &it->base.f;
		if (it->task != t) {
			prev = f;
			pp = &f->next;
			continue;
		}
		if (f->iov_done == 0 && f->iov_off == 0) {
			*pp = f->next;
			if (q->tail == f)
				q->tail = prev;
			pdu_conn_tx_release(&c->pc, &it->base);
			continue;
		}
		uint8_t *copy = xmalloc(f->iov[1].iov_len);
		memcpy(copy, f->iov[1].iov_base, f->iov[1].iov_len);
		f->iov[1].iov_base = copy;
		it->base.owned = copy;
		it->task = NULL;
		t->txrefs--;
		prev = f;
		pp = &f->next;
	}
}

void ism_conn_flush(struct ism_conn *c)
{
	if (!pdu_queue_empty(&c->pc.txq) && c->fd >= 0 && c->state != CONN_CONNECTING) {
		ssize_t w = pdu_conn_flush(&c->pc, c->fd, TX_IOV_MAX);
		if (w < 0) {
			ism_conn_fail(c, "send failed: %s", strerror(errno));
			return;
		}
		c->bytes_sent += (uint64_t)w;
	}
	ism_watch_update(c);
}

void ism_flush_all(struct ism_session *s)
{
	for (unsigned i = 0; i < s->conn_slots; i++)
		if (!pdu_queue_empty(&s->conns[i].pc.txq))
			ism_conn_flush(&s->conns[i]);
}

/* A malformed header, or one a target may not send, ends the connection. */
static enum pdu_header_verdict conn_on_header(struct pdu_conn *pc, const uint8_t *raw, int rc, const char *why)
{
	struct ism_conn *c = pc->arg;
	if (!conn_receiving(c))
		return PDU_HEADER_WAIT;
	enum pdu_header_verdict verdict;
	if (ism_erl1(c) && ism_erl1_check_header(c, raw, &verdict))
		return verdict;
	if (rc != 0) {
		ism_conn_fail(c, "malformed PDU from the target (opcode 0x%02x): %s", raw[0] & 0x3f, why);
		return PDU_HEADER_STOP;
	}
	const struct bhs *b = &pc->rx_bhs;
	if (b->opcode < 0x20) {
		ism_conn_fail(c, "target sent an initiator opcode (%s)", opcode_str(b->opcode));
		return PDU_HEADER_STOP;
	}
	uint32_t limit = c->state == CONN_LOGIN ? ISM_LOGIN_MAX_DSL : c->params.max_recv_dsl;
	if (b->data_len > limit) {
		ism_conn_fail(c, "%s with DataSegmentLength %u over our MaxRecvDataSegmentLength %u",
			      opcode_str(b->opcode), b->data_len, limit);
		return PDU_HEADER_STOP;
	}
	return PDU_HEADER_HANDLE;
}

/* The data of a large Data-In, in order for a read in progress, goes straight to its buffer. */
static uint8_t *conn_place_data_in(struct pdu_conn *pc, void **owner)
{
	struct ism_conn *c = pc->arg;
	const struct bhs *b = &pc->rx_bhs;
	if (c->state != CONN_FFP && c->state != CONN_LOGOUT)
		return NULL;
	struct ism_task *t = ism_task_find(c->s, b->itt);
	if (!t || t->kind != TASK_SCSI || t->state != TASK_SENT || t->conn != c || t->dir != ISM_DIR_READ ||
	    b->data_in.datasn != t->next_datasn || b->data_in.offset != t->read_bytes ||
	    (uint64_t)b->data_in.offset + b->data_len > t->len)
		return NULL; /* not for us to place: the ordinary path checks and reports it */
	*owner = t;
	return t->buf + b->data_in.offset;
}

static bool conn_on_digest_error(struct pdu_conn *pc, bool header, const uint8_t *raw)
{
	(void)raw;
	struct ism_conn *c = pc->arg;
	const struct bhs *b = &pc->rx_bhs;
	if (!header && ism_erl1(c) && ism_erl1_data_digest_error(c, b))
		return true;
	if (header)
		ism_conn_fail(c, "header digest error in a %s PDU", opcode_str(b->opcode));
	else
		ism_conn_fail(c, "data digest error in a %s PDU (ITT 0x%08x)", opcode_str(b->opcode), b->itt);
	return false;
}

static bool conn_on_pdu(struct pdu_conn *pc, const uint8_t *p, const uint8_t *data)
{
	struct ism_conn *c = pc->arg;
	const struct bhs *b = &pc->rx_bhs;
	if (log_get_level() >= LOG_DEBUG)
		log_debug("cid %u <- %s ITT 0x%08x len %u F%d bytes20-47 %08x %08x %08x %08x %08x %08x %08x%s", c->cid,
			  opcode_str(b->opcode), b->itt, b->data_len, b->final, get_be32(p + 20), get_be32(p + 24),
			  get_be32(p + 28), get_be32(p + 32), get_be32(p + 36), get_be32(p + 40), get_be32(p + 44),
			  pc->rx_state == PDU_RECV_DIRECT ? " (direct)" : "");
	/*
	 * The keepalive measures the silence of answers: a target's own NOP-In (reserved ITT) is not
	 * one, or a path that lost only our direction would look alive as long as the target pings.
	 */
	if (b->opcode != OP_NOP_IN || b->itt != RESERVED_TAG)
		c->last_rx_ms = c->s->in_service ? c->s->now_ms : ism_now_ms();
	if (c->state == CONN_LOGIN)
		ism_login_pdu(c, b, data, b->data_len);
	else if (c->state == CONN_FFP || c->state == CONN_LOGOUT)
		ism_ffp_pdu(c, b, data, b->data_len);
	return c->fd >= 0;
}

static const struct pdu_conn_ops conn_ops = {
	.header = conn_on_header,
	.place = conn_place_data_in,
	.pdu = conn_on_pdu,
	.digest_error = conn_on_digest_error,
	.sent = conn_pdu_sent,
};

void ism_conn_init_engine(struct ism_conn *c)
{
	pdu_conn_init(&c->pc, &conn_ops, c, &c->params, &c->s->tx_pool, RX_INITIAL);
	c->pc.direct_min = DIRECT_MIN;
}

void ism_conn_readable(struct ism_conn *c)
{
	for (int round = 0; round < 8 && c->fd >= 0; round++) {
		size_t asked;
		ssize_t r = pdu_conn_read(&c->pc, c->fd, &asked);
		if (r == 0) {
			size_t pending = pdu_conn_rx_pending(&c->pc);
			if (c->state == CONN_LOGOUT && c->s->logging_out)
				ism_conn_fail(c, "target closed the connection during logout");
			else if ((pending || c->pc.rx_state == PDU_RECV_DIRECT) && pdu_conn_in_pdu(&c->pc))
				ism_conn_fail(c, "target closed the connection in the middle of a %s PDU (truncated)",
					      opcode_str(c->pc.rx_bhs.opcode));
			else if (pending)
				ism_conn_fail(c, "target closed the connection after a truncated PDU header (%zu bytes)",
					      pending);
			else
				ism_conn_fail(c, "target closed the connection");
			return;
		}
		if (r == PDU_READ_DRAINED)
			break;
		if (r < 0) {
			ism_conn_fail(c, "receive failed: %s", strerror(errno));
			return;
		}
		c->bytes_received += (uint64_t)r;
		if (!pdu_conn_parse(&c->pc))
			return;
		if ((size_t)r < asked)
			break; /* the socket is drained */
	}
}

void ism_conn_close_fd(struct ism_conn *c)
{
	ism_watch_close(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Try the next resolved address; 0 when a connect is under way or done, -1 when none is left. */
static int try_next_address(struct ism_conn *c, const char *lasterr)
{
	char last[700];
	snprintf(last, sizeof(last), "%s", lasterr ? lasterr : "no address");
	while (c->ai_next) {
		struct addrinfo *ai = c->ai_next;
		c->ai_next = ai->ai_next;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			snprintf(last, sizeof(last), "socket: %s", strerror(errno));
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pdu_sockaddr_text(ai->ai_addr, c->peer, sizeof(c->peer));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			c->fd = fd;
			ism_conn_connected(c);
			return 0;
		}
		if (errno == EINPROGRESS) {
			c->fd = fd;
			c->state = CONN_CONNECTING;
			ism_watch_update(c);
			return 0;
		}
		snprintf(last, sizeof(last), "connect to %s: %s", c->peer, strerror(errno));
		close(fd);
	}
	ism_set_error(c->s, "cannot connect to %s: %s", c->portal, last);
	return -1;
}

int ism_conn_start_connect(struct ism_conn *c)
{
	char host[256];
	uint16_t port;
	if (ism_parse_portal(c->portal, host, sizeof(host), &port) < 0) {
		ism_set_error(c->s, "bad portal '%s' (want host, host:port or [ipv6]:port)", c->portal);
		return -1;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC, .ai_flags = AI_ADDRCONFIG};
	char ports[8];
	snprintf(ports, sizeof(ports), "%u", port);
	if (c->ai)
		freeaddrinfo(c->ai);
	c->ai = NULL;
	memset(&c->local_sa, 0, sizeof(c->local_sa));
	memset(&c->peer_sa, 0, sizeof(c->peer_sa));
	int rc = getaddrinfo(host, ports, &hints, &c->ai);
	if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME) {
		hints.ai_flags = 0; /* loopback-only hosts: AI_ADDRCONFIG hides ::1 */
		rc = getaddrinfo(host, ports, &hints, &c->ai);
	}
	if (rc != 0) {
		ism_set_error(c->s, "cannot resolve '%s': %s", host, gai_strerror(rc));
		c->ai = NULL;
		return -1;
	}
	c->ai_next = c->ai;
	return try_next_address(c, NULL);
}

/* POLLOUT on a connecting socket. */
void ism_conn_connect_ready(struct ism_conn *c)
{
	int err = 0;
	socklen_t el = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err == 0) {
		ism_conn_connected(c);
		return;
	}
	char msg[700];
	snprintf(msg, sizeof(msg), "connect to %s: %s", c->peer, strerror(err));
	ism_conn_close_fd(c);
	if (try_next_address(c, msg) < 0)
		ism_conn_fail(c, "%s", msg);
}

void ism_conn_connected(struct ism_conn *c)
{
	if (c->ai) {
		freeaddrinfo(c->ai);
		c->ai = c->ai_next = NULL;
	}
	/* Recorded once here, so that ism_session_connection_info costs no system call. */
	socklen_t sl = sizeof(c->local_sa);
	if (getsockname(c->fd, (struct sockaddr *)&c->local_sa, &sl) < 0)
		memset(&c->local_sa, 0, sizeof(c->local_sa));
	sl = sizeof(c->peer_sa);
	if (getpeername(c->fd, (struct sockaddr *)&c->peer_sa, &sl) < 0)
		memset(&c->peer_sa, 0, sizeof(c->peer_sa));
	c->state = CONN_LOGIN;
	pdu_conn_rx_reset(&c->pc);
	c->last_rx_ms = ism_now_ms();
	ism_watch_update(c);
	ism_login_start(c);
}
