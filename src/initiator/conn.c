/*
 * One initiator TCP connection: non-blocking connect over the resolved addresses, the PDU
 * reception state machine (BHS, then the rest with digests checked), and the send queue of
 * gathered PDUs written with writev.
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

static struct txitem *tx_get(struct ism_session *s)
{
	struct txitem *it = s->tx_pool;
	if (it) {
		s->tx_pool = (struct txitem *)it->f.next;
		s->tx_pool_n--;
	} else {
		it = xmalloc(sizeof(*it));
	}
	it->task = NULL;
	it->r2t_last = false;
	it->ping_conn = NULL;
	it->owned = NULL;
	return it;
}

static void tx_item_free(struct ism_session *s, struct txitem *it)
{
	if (it->task) {
		it->task->txrefs--;
		if (it->r2t_last && it->task->r2t_active)
			it->task->r2t_active--;
	}
	if (it->ping_conn && it->ping_conn->ping_answers)
		it->ping_conn->ping_answers--;
	free(it->owned);
	if (s->tx_pool_n < ISM_TX_POOL_MAX) {
		it->f.next = (struct pdu_frame *)s->tx_pool;
		s->tx_pool = it;
		s->tx_pool_n++;
	} else {
		free(it);
	}
}

static void tx_frame_done(struct pdu_frame *f, void *arg) { tx_item_free(arg, (struct txitem *)f); }

void ism_tx_pool_free(struct ism_session *s)
{
	while (s->tx_pool) {
		struct txitem *it = s->tx_pool;
		s->tx_pool = (struct txitem *)it->f.next;
		free(it);
	}
	s->tx_pool_n = 0;
}

struct txitem *ism_conn_send(struct ism_conn *c, struct bhs *b, const void *data, uint32_t len,
			     struct ism_task *task, uint8_t *owned)
{
	if (c->fd < 0 || c->state == CONN_CLOSED || c->state == CONN_FREE) {
		free(owned);
		return NULL;
	}
	struct txitem *it = tx_get(c->s);
	b->data_len = len;
	if (log_get_level() >= LOG_DEBUG)
		log_debug("cid %u -> %s ITT 0x%08x len %u F%d I%d w0 0x%08x w1 0x%08x", c->cid, opcode_str(b->opcode), b->itt,
			  len, b->final, b->immediate, b->opcode == OP_DATA_OUT ? b->data_out.offset : b->cmd.cmdsn,
			  b->opcode == OP_DATA_OUT ? b->data_out.ttt : b->cmd.edtl);
	pdu_frame_build(&it->f, b, data, len, c->params.header_digest, c->params.data_digest);
	if (len && task && !owned) {
		it->task = task;
		task->txrefs++;
	}
	it->owned = owned;
	pdu_queue_push(&c->txq, &it->f);
	return it;
}

void ism_conn_drop_tx(struct ism_conn *c) { pdu_queue_drain(&c->txq, tx_frame_done, c->s); }

/*
 * A task finishes while PDUs borrowing its buffer are still queued (the target answered before
 * taking all data, or the task was aborted): drop the PDUs not started, copy the data of a PDU
 * half written so the caller may free its buffer.
 */
void ism_conn_detach_task(struct ism_conn *c, struct ism_task *t)
{
	struct pdu_frame **pp = &c->txq.head, *prev = NULL;
	while (*pp) {
		struct txitem *it = (struct txitem *)*pp;
		if (it->task != t) {
			prev = &it->f;
			pp = &it->f.next;
			continue;
		}
		if (it->f.iov_done == 0 && it->f.iov_off == 0) {
			*pp = it->f.next;
			if (c->txq.tail == &it->f)
				c->txq.tail = prev;
			tx_item_free(c->s, it);
			continue;
		}
		uint8_t *copy = xmalloc(it->f.iov[1].iov_len);
		memcpy(copy, it->f.iov[1].iov_base, it->f.iov[1].iov_len);
		it->f.iov[1].iov_base = copy;
		it->owned = copy;
		it->task = NULL;
		t->txrefs--;
		prev = &it->f;
		pp = &it->f.next;
	}
}

/* Gather as many queued PDUs as fit into one writev; repeat until the queue or the socket is full. */
#define TX_IOV_MAX 256

void ism_conn_flush(struct ism_conn *c)
{
	while (!pdu_queue_empty(&c->txq) && c->fd >= 0 && c->state != CONN_CONNECTING) {
		struct iovec iov[TX_IOV_MAX];
		size_t total = 0;
		int n = pdu_queue_gather(&c->txq, iov, TX_IOV_MAX, &total);
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			ism_conn_fail(c, "send failed: %s", strerror(errno));
			return;
		}
		c->bytes_sent += (uint64_t)w;
		pdu_queue_consume(&c->txq, (size_t)w, tx_frame_done, c->s);
		if ((size_t)w < total)
			break; /* the socket buffer is full: wait for POLLOUT */
	}
	ism_watch_update(c);
}

void ism_flush_all(struct ism_session *s)
{
	for (unsigned i = 0; i < s->conn_slots; i++)
		if (!pdu_queue_empty(&s->conns[i].txq))
			ism_conn_flush(&s->conns[i]);
}

static uint32_t rx_limit(const struct ism_conn *c)
{
	return c->state == CONN_LOGIN ? ISM_LOGIN_MAX_DSL : c->params.max_recv_dsl;
}

/* A complete PDU of c->rx_need bytes sits at p (for a direct Data-In: its header and trailer). */
static void handle_pdu(struct ism_conn *c, const uint8_t *p)
{
	const struct bhs *b = &c->rx_bhs;
	size_t off = BHS_LEN;
	if (c->params.header_digest) {
		if (crc32c(p, off) != digest_load(p + off)) {
			ism_conn_fail(c, "header digest error in a %s PDU", opcode_str(b->opcode));
			return;
		}
		off += 4;
	}
	const uint8_t *data = p + off;
	if (b->data_len && c->params.data_digest) {
		uint32_t padded = pad4(b->data_len);
		bool ok = true;
		if (!c->rx_direct) {
			ok = crc32c(data, padded) == digest_load(data + padded);
		} else if (c->dr_task) {
			/* data in the task's buffer, padding and digest in rxbuf */
			uint32_t st = crc32c_update(crc32c_init(), c->dr_data, b->data_len);
			st = crc32c_update(st, data, padded - b->data_len);
			ok = crc32c_final(st) == digest_load(data + padded - b->data_len);
		}
		if (!ok) {
			ism_conn_fail(c, "data digest error in a %s PDU (ITT 0x%08x)", opcode_str(b->opcode), b->itt);
			return;
		}
	}
	if (c->rx_direct)
		data = c->dr_data;
	if (log_get_level() >= LOG_DEBUG)
		log_debug("cid %u <- %s ITT 0x%08x len %u F%d bytes20-47 %08x %08x %08x %08x %08x %08x %08x%s", c->cid,
			  opcode_str(b->opcode), b->itt, b->data_len, b->final, get_be32(p + 20), get_be32(p + 24),
			  get_be32(p + 28), get_be32(p + 32), get_be32(p + 36), get_be32(p + 40), get_be32(p + 44),
			  c->rx_direct ? " (direct)" : "");
	if (c->state == CONN_LOGIN)
		ism_login_pdu(c, b, data, b->data_len);
	else if (c->state == CONN_FFP || c->state == CONN_LOGOUT)
		ism_ffp_pdu(c, b, data, b->data_len);
}

/* Data-In segments at least this long go straight from the socket into the task's buffer. */
#define DIRECT_MIN 16384u

/*
 * The header of a Data-In with a large segment has arrived and part of its data has not: if it
 * is in order for a read in progress, copy what arrived and read the rest into the task's buffer.
 */
static void try_direct(struct ism_conn *c, size_t avail)
{
	const struct bhs *b = &c->rx_bhs;
	if (b->opcode != OP_DATA_IN || b->data_len < DIRECT_MIN || (c->state != CONN_FFP && c->state != CONN_LOGOUT))
		return;
	size_t hlen = BHS_LEN + (c->params.header_digest ? 4 : 0);
	if (avail < hlen || avail - hlen >= b->data_len)
		return;
	const uint8_t *p = c->rxbuf + c->rx_start;
	if (c->params.header_digest && crc32c(p, BHS_LEN) != digest_load(p + BHS_LEN))
		return; /* handle_pdu reports it */
	struct ism_task *t = ism_task_find(c->s, b->itt);
	if (!t || t->kind != TASK_SCSI || t->state != TASK_SENT || t->conn != c || t->dir != ISM_DIR_READ ||
	    b->data_in.datasn != t->next_datasn || b->data_in.offset != t->read_bytes ||
	    (uint64_t)b->data_in.offset + b->data_len > t->len)
		return; /* not for us to place: the ordinary path checks and reports it */
	size_t present = avail - hlen;
	uint8_t *dst = t->buf + b->data_in.offset;
	memcpy(dst, p + hlen, present);
	c->rx_len = c->rx_start + hlen; /* keep the header; the trailer follows it */
	c->rx_direct = true;
	c->dr_task = t;
	c->dr_data = dst;
	c->dr_dst = dst + present;
	c->dr_left = b->data_len - (uint32_t)present;
	c->rx_need = hlen + (pad4(b->data_len) - b->data_len) + (c->params.data_digest ? 4 : 0);
}

/* Returns false when the connection failed. */
static bool conn_parse(struct ism_conn *c)
{
	while (c->state == CONN_LOGIN || c->state == CONN_FFP || c->state == CONN_LOGOUT) {
		size_t avail = c->rx_len - c->rx_start;
		if (c->rx_in_bhs) {
			if (avail < BHS_LEN)
				break;
			char why[96];
			int rc = bhs_decode(c->rxbuf + c->rx_start, &c->rx_bhs, why, sizeof(why));
			if (rc != 0) {
				ism_conn_fail(c, "malformed PDU from the target (opcode 0x%02x): %s",
					      c->rxbuf[c->rx_start] & 0x3f, why);
				return false;
			}
			const struct bhs *b = &c->rx_bhs;
			if (b->opcode < 0x20) {
				ism_conn_fail(c, "target sent an initiator opcode (%s)", opcode_str(b->opcode));
				return false;
			}
			uint32_t limit = rx_limit(c);
			if (b->data_len > limit) {
				ism_conn_fail(c, "%s with DataSegmentLength %u over our MaxRecvDataSegmentLength %u",
					      opcode_str(b->opcode), b->data_len, limit);
				return false;
			}
			size_t need = BHS_LEN + (c->params.header_digest ? 4 : 0);
			if (b->data_len)
				need += pad4(b->data_len) + (c->params.data_digest ? 4 : 0);
			c->rx_need = need;
			c->rx_in_bhs = false;
			if (avail < need)
				try_direct(c, avail);
			continue;
		}
		if (c->rx_direct && c->dr_left)
			break;
		if (avail < c->rx_need)
			break;
		c->rx_large = c->rx_bhs.opcode == OP_DATA_IN && c->rx_bhs.data_len >= DIRECT_MIN;
		handle_pdu(c, c->rxbuf + c->rx_start);
		if (c->fd < 0)
			return false;
		c->rx_start += c->rx_need;
		c->rx_in_bhs = true;
		c->rx_need = BHS_LEN;
		c->rx_direct = false;
		c->dr_task = NULL;
	}
	if (c->fd < 0)
		return false;
	return true;
}

#define RX_INITIAL (256u * 1024u)
#define RX_MIN_SPACE (16u * 1024u)

/* Make room after rx_len: at least the rest of the PDU in progress, and RX_MIN_SPACE. */
static void rx_make_room(struct ism_conn *c)
{
	if (!c->rxbuf) {
		c->rx_cap = RX_INITIAL;
		c->rxbuf = xmalloc(c->rx_cap);
	}
	if (c->rx_start == c->rx_len) {
		c->rx_start = c->rx_len = 0;
	}
	size_t pending = c->rx_len - c->rx_start;
	size_t want = pending + RX_MIN_SPACE;
	if (!c->rx_in_bhs && c->rx_need > pending)
		want = c->rx_need > want ? c->rx_need : want;
	if (c->rx_cap - c->rx_start >= want && c->rx_cap - c->rx_len >= RX_MIN_SPACE)
		return;
	if (c->rx_start) {
		memmove(c->rxbuf, c->rxbuf + c->rx_start, pending);
		c->rx_len = pending;
		c->rx_start = 0;
	}
	if (c->rx_cap < want) {
		c->rx_cap = want;
		c->rxbuf = xrealloc(c->rxbuf, c->rx_cap);
	}
}

void ism_conn_readable(struct ism_conn *c)
{
	for (int round = 0; round < 8 && c->fd >= 0; round++) {
		rx_make_room(c);
		size_t space = c->rx_cap - c->rx_len;
		if (c->rx_large) {
			/*
			 * Large reads are arriving: one system call per PDU (its data into the task's
			 * buffer, then the next header) costs less than copying the data out of rxbuf.
			 */
			size_t hlen = BHS_LEN + (c->params.header_digest ? 4 : 0);
			size_t avail = c->rx_len - c->rx_start;
			size_t upto = c->rx_in_bhs ? hlen : c->rx_need + hlen;
			if (upto > avail && upto - avail < space)
				space = upto - avail;
		}
		size_t asked;
		ssize_t r;
		bool discard = false;
		if (c->rx_direct && c->dr_left && c->dr_task) {
			struct iovec iov[2] = {{c->dr_dst, c->dr_left}, {c->rxbuf + c->rx_len, space}};
			asked = c->dr_left + space;
			r = readv(c->fd, iov, 2);
		} else if (c->rx_direct && c->dr_left) {
			/* the task finished while its data was arriving: read and drop the rest */
			asked = c->dr_left < space ? c->dr_left : space;
			discard = true;
			r = read(c->fd, c->rxbuf + c->rx_len, asked);
		} else {
			asked = space;
			r = read(c->fd, c->rxbuf + c->rx_len, space);
		}
		if (r == 0) {
			if (c->state == CONN_LOGOUT && c->s->logging_out)
				ism_conn_fail(c, "target closed the connection during logout");
			else if ((c->rx_len > c->rx_start || c->rx_direct) && !c->rx_in_bhs)
				ism_conn_fail(c, "target closed the connection in the middle of a %s PDU (truncated)",
					      opcode_str(c->rx_bhs.opcode));
			else if (c->rx_len > c->rx_start)
				ism_conn_fail(c, "target closed the connection after a truncated PDU header (%zu bytes)",
					      c->rx_len - c->rx_start);
			else
				ism_conn_fail(c, "target closed the connection");
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			ism_conn_fail(c, "receive failed: %s", strerror(errno));
			return;
		}
		size_t got = (size_t)r;
		c->bytes_received += got;
		c->last_rx_ms = c->s->in_service ? c->s->now_ms : ism_now_ms();
		if (c->rx_direct && c->dr_left) {
			size_t n = got < c->dr_left ? got : c->dr_left;
			c->dr_left -= (uint32_t)n;
			if (!discard) {
				c->dr_dst += n;
				c->rx_len += got - n;
			}
		} else {
			c->rx_len += got;
		}
		if (!conn_parse(c))
			return;
		if (got < asked)
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

void ism_sockaddr_split(const struct sockaddr *sa, char *addr, size_t len, uint16_t *port)
{
	addr[0] = 0;
	*port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a->sin_addr, addr, (socklen_t)len);
		*port = ntohs(a->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &a->sin6_addr, addr, (socklen_t)len);
		*port = ntohs(a->sin6_port);
	}
}

static void sockaddr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
	char addr[INET6_ADDRSTRLEN];
	uint16_t port;
	ism_sockaddr_split(sa, addr, sizeof(addr), &port);
	if (sa->sa_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%u", addr, port);
	else if (sa->sa_family == AF_INET)
		snprintf(out, outlen, "%s:%u", addr, port);
	else
		snprintf(out, outlen, "local socket");
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
		sockaddr_text(ai->ai_addr, c->peer, sizeof(c->peer));
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
void ism_conn_connect_ready(struct ism_conn *c);
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
	c->rx_in_bhs = true;
	c->rx_need = BHS_LEN;
	c->rx_len = c->rx_start = 0;
	c->rx_direct = false;
	c->dr_task = NULL;
	c->last_rx_ms = ism_now_ms();
	ism_watch_update(c);
	ism_login_start(c);
}
