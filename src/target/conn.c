/*
 * One TCP connection: the PDU reception state machine (BHS, then AHS + digests + data), and the
 * send queue of gathered PDUs written with writev.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/digest.h"
#include "target/target.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Login PDUs are bounded by the RFC default MaxRecvDataSegmentLength until negotiation ends. */
#define LOGIN_MAX_DSL 8192u
/*
 * Before login a connection needs room for one login PDU (8 KiB of data); the 256 KiB that full
 * feature phase reads at a time would make every unauthenticated connection cost that much.
 */
#define RX_LOGIN (16u * 1024u)
#define RX_FULL_FEATURE (256u * 1024u)
/*
 * A peer that sends requests but does not read the answers would grow the send queue without
 * end: past TX_BACKLOG_MAX queued bytes the connection stops reading (and parsing what it has
 * read) until the queue drains below TX_BACKLOG_RESUME. Read data counts too, so a large read
 * answer pauses new requests only while the socket cannot take it.
 */
#define TX_BACKLOG_MAX (16u * 1024u * 1024u)
#define TX_BACKLOG_RESUME (8u * 1024u * 1024u)

static void conn_on_io(void *arg, uint32_t events);
static bool conn_parse(struct conn *c);
static void conn_update_events(struct conn *c);

static void sockaddr_text(const struct sockaddr_storage *sa, char *addr, size_t alen, uint16_t *port)
{
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, addr, (socklen_t)alen);
		*port = ntohs(s6->sin6_port);
	} else if (sa->ss_family != AF_INET) {
		/* A descriptor handed over by a test harness (socketpair) has no address. */
		snprintf(addr, alen, "local");
		*port = 0;
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, addr, (socklen_t)alen);
		*port = ntohs(s4->sin_port);
	}
}

void conn_accept(struct server *srv, int fd, uint16_t tpgt)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct conn *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->fd = fd;
	c->tpgt = tpgt;
	c->phase = PHASE_LOGIN;
	params_defaults(&c->params);
	c->rx_cap = RX_LOGIN;
	c->rxbuf = xmalloc(c->rx_cap);
	c->rx_state = RX_BHS;
	c->rx_need = BHS_LEN;
	c->want_read = true;
	c->last_rx_ms = c->login_started_ms = loop_now_ms();
	c->login_time = (uint64_t)time(NULL);
	socklen_t sl = sizeof(c->local_sa);
	getsockname(fd, (struct sockaddr *)&c->local_sa, &sl);
	sockaddr_text(&c->local_sa, c->local_addr, sizeof(c->local_addr), &c->local_port);
	struct sockaddr_storage peer;
	sl = sizeof(peer);
	getpeername(fd, (struct sockaddr *)&peer, &sl);
	sockaddr_text(&peer, c->peer_addr, sizeof(c->peer_addr), &c->peer_port);
	if (loop_watch_add(srv->loop, &c->watch, fd, EPOLLIN | EPOLLRDHUP, conn_on_io, c) < 0) {
		log_error("cannot watch connection from %s: %m", c->peer_addr);
		close(fd);
		free(c->rxbuf);
		free(c);
		return;
	}
	c->next = srv->conns;
	srv->conns = c;
	srv->nconns++;
	log_debug("connection from %s:%u to %s:%u", c->peer_addr, c->peer_port, c->local_addr, c->local_port);
}

#define TX_FREE_KEEP 256u

static void tx_item_done(struct pdu_frame *f, void *arg)
{
	struct conn *c = arg;
	struct txitem *it = (struct txitem *)f;
	c->tx_bytes -= it->wire;
	if (it->task)
		task_release(it->task);
	free(it->owned);
	if (c->tx_nfree < TX_FREE_KEEP) {
		it->f.next = (struct pdu_frame *)c->tx_free;
		c->tx_free = it;
		c->tx_nfree++;
	} else {
		free(it);
	}
}

static void conn_free(void *arg)
{
	struct conn *c = arg;
	pdu_queue_drain(&c->txq, tx_item_done, c);
	while (c->tx_free) {
		struct txitem *it = c->tx_free;
		c->tx_free = (struct txitem *)it->f.next;
		free(it);
	}
	task_free_all(c);
	login_free(c);
	sbuf_free(&c->text_pending);
	sbuf_free(&c->text_reply);
	free(c->rxbuf);
	free(c);
}

void conn_close(struct conn *c, const char *why)
{
	if (c->phase == PHASE_CLOSED)
		return;
	if (why)
		log_info("closing connection %s:%u (cid %u): %s", c->peer_addr, c->peer_port, c->cid, why);
	c->phase = PHASE_CLOSED;
	loop_watch_del(c->srv->loop, &c->watch);
	close(c->fd);
	c->fd = -1;
	for (struct conn **pp = &c->srv->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			c->srv->nconns--;
			break;
		}
	}
	if (c->sess)
		session_remove_conn(c->sess, c);
	stats_add(&c->srv->closed, &c->stats);
	loop_defer(c->srv->loop, conn_free, c);
}

void conn_send_pdu(struct conn *c, struct bhs *b, const void *data, uint32_t len, struct task *task, uint8_t *owned)
{
	if (c->phase == PHASE_CLOSED) {
		free(owned);
		if (task)
			task_release(task);
		return;
	}
	struct txitem *it = c->tx_free;
	if (it) {
		c->tx_free = (struct txitem *)it->f.next;
		c->tx_nfree--;
	} else {
		it = xmalloc(sizeof(*it));
	}
	size_t wire = pdu_frame_build(&it->f, b, data, len, c->params.header_digest, c->params.data_digest);
	it->task = task;
	it->owned = owned;
	it->wire = wire;
	c->tx_bytes += wire;
	pdu_queue_push(&c->txq, &it->f);
	c->stats.pdus_out++;
	c->stats.bytes_out += wire;
}

/* Write as much of the queue as the socket takes, many PDUs per writev. */
void conn_flush(struct conn *c)
{
	while (!pdu_queue_empty(&c->txq) && c->phase != PHASE_CLOSED) {
		struct iovec iov[64];
		int n = pdu_queue_gather(&c->txq, iov, 64, NULL);
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(c, strerror(errno));
			return;
		}
		pdu_queue_consume(&c->txq, (size_t)w, tx_item_done, c);
	}
	if (c->phase == PHASE_CLOSED)
		return;
	if (c->rx_paused && c->tx_bytes <= TX_BACKLOG_RESUME) {
		c->rx_paused = false;
		/* What was read before the pause is parsed now; the socket's rest on the next wake-up. */
		if (!conn_parse(c))
			return;
		if (!pdu_queue_empty(&c->txq) && !c->rx_paused) {
			conn_flush(c);
			return;
		}
	}
	conn_update_events(c);
	if (pdu_queue_empty(&c->txq) && c->phase == PHASE_LOGGED_OUT)
		conn_close(c, NULL);
}

/* Readable while not paused, writable while something waits to be sent. */
static void conn_update_events(struct conn *c)
{
	bool want = !pdu_queue_empty(&c->txq);
	bool read = !c->rx_paused;
	if (want == c->want_write && read == c->want_read)
		return;
	c->want_write = want;
	c->want_read = read;
	loop_watch_mod(c->srv->loop, &c->watch, (read ? EPOLLIN | EPOLLRDHUP : 0) | (want ? EPOLLOUT : 0));
}

static uint32_t max_dsl_in(const struct conn *c)
{
	return c->phase == PHASE_FULL_FEATURE ? c->params.max_recv_dsl : LOGIN_MAX_DSL;
}

/* A complete PDU sits at p with total length c->rx_need: check digests and dispatch it. */
static void conn_handle_pdu(struct conn *c, const uint8_t *p)
{
	const struct bhs *b = &c->rx_bhs;
	size_t off = BHS_LEN + b->total_ahs_len;
	if (c->params.header_digest) {
		if (crc32c(p, off) != digest_load(p + off)) {
			c->stats.digest_errors++;
			/* A header we cannot trust gives no reliable framing: at ERL 0 the connection ends. */
			conn_close(c, "header digest error");
			return;
		}
		off += 4;
	}
	const uint8_t *data = p + off;
	if (b->data_len && c->params.data_digest) {
		uint32_t padded = pad4(b->data_len);
		if (crc32c(data, padded) != digest_load(data + padded)) {
			c->stats.digest_errors++;
			send_reject(c, REJECT_DATA_DIGEST, p);
			if (b->opcode == OP_SCSI_CMD || b->opcode == OP_DATA_OUT)
				conn_close(c, "data digest error in write data");
			return;
		}
	}
	c->stats.pdus_in++;
	c->stats.bytes_in += c->rx_need;
	if (c->phase == PHASE_LOGIN)
		login_handle(c, b, data, b->data_len);
	else if (c->phase == PHASE_FULL_FEATURE)
		ffp_dispatch(c, b, p, data, b->data_len);
}

/* Reception state machine over the bytes in rxbuf; returns false when the connection closed. */
static bool conn_parse(struct conn *c)
{
	size_t pos = 0;
	while (c->phase != PHASE_CLOSED) {
		size_t avail = c->rx_len - pos;
		if (c->rx_state == RX_BHS) {
			if (avail < BHS_LEN)
				break;
			if (c->tx_bytes > TX_BACKLOG_MAX) {
				c->rx_paused = true;
				break;
			}
			char why[96];
			int rc = bhs_decode(c->rxbuf + pos, &c->rx_bhs, why, sizeof(why));
			const struct bhs *b = &c->rx_bhs;
			uint32_t limit = max_dsl_in(c);
			if (b->data_len > limit) {
				log_warn("%s:%u: %s with DataSegmentLength %u over the limit %u", c->peer_addr,
					 c->peer_port, opcode_str(b->opcode), b->data_len, limit);
				if (c->phase == PHASE_FULL_FEATURE)
					send_reject(c, REJECT_PROTOCOL_ERROR, c->rxbuf + pos);
				conn_flush(c);
				conn_close(c, "data segment longer than MaxRecvDataSegmentLength");
				return false;
			}
			if (rc == REJECT_PROTOCOL_ERROR && c->rxbuf[pos + 4] > 63) {
				conn_close(c, why);
				return false;
			}
			size_t need = BHS_LEN + b->total_ahs_len + (c->params.header_digest ? 4 : 0);
			if (b->data_len)
				need += pad4(b->data_len) + (c->params.data_digest ? 4 : 0);
			c->rx_need = need;
			if (rc != 0) {
				/* Framing is known, so the PDU can be skipped after a Reject. */
				log_warn("%s:%u: rejecting PDU (opcode 0x%02x): %s", c->peer_addr, c->peer_port,
					 b->opcode, why);
				if (c->phase != PHASE_FULL_FEATURE) {
					conn_close(c, why);
					return false;
				}
				send_reject(c, (uint8_t)rc, c->rxbuf + pos);
				c->rx_bhs.opcode = 0xff; /* skip it */
			}
			c->rx_state = RX_REST;
			continue;
		}
		if (avail < c->rx_need) {
			if (c->rx_need > c->rx_cap) {
				/* Grow so the whole PDU fits; bounded by the data segment limit checked above. */
				if (pos) {
					memmove(c->rxbuf, c->rxbuf + pos, avail);
					c->rx_len = avail;
					pos = 0;
				}
				c->rx_cap = c->rx_need;
				c->rxbuf = xrealloc(c->rxbuf, c->rx_cap);
			}
			break;
		}
		if (c->rx_bhs.opcode != 0xff)
			conn_handle_pdu(c, c->rxbuf + pos);
		pos += c->rx_need;
		c->rx_state = RX_BHS;
		c->rx_need = BHS_LEN;
	}
	if (c->phase == PHASE_CLOSED)
		return false;
	if (pos) {
		memmove(c->rxbuf, c->rxbuf + pos, c->rx_len - pos);
		c->rx_len -= pos;
	}
	return true;
}

static void conn_on_readable(struct conn *c)
{
	if (c->phase == PHASE_FULL_FEATURE && c->rx_cap < RX_FULL_FEATURE) {
		c->rx_cap = RX_FULL_FEATURE;
		c->rxbuf = xrealloc(c->rxbuf, c->rx_cap);
	}
	/* Bounded number of reads per wake-up keeps one busy connection from starving others. */
	for (int round = 0; round < 16 && c->phase != PHASE_CLOSED && !c->rx_paused; round++) {
		if (c->rx_len == c->rx_cap)
			break; /* cannot happen: conn_parse grows the buffer to fit the PDU in progress */
		ssize_t r = read(c->fd, c->rxbuf + c->rx_len, c->rx_cap - c->rx_len);
		if (r == 0) {
			conn_close(c, c->phase == PHASE_LOGGED_OUT ? NULL : "initiator closed the connection");
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(c, strerror(errno));
			return;
		}
		c->rx_len += (size_t)r;
		c->last_rx_ms = loop_now_ms();
		if (!conn_parse(c))
			return;
		if ((size_t)r < 4096)
			break;
	}
	conn_flush(c);
}

static void conn_on_io(void *arg, uint32_t events)
{
	struct conn *c = arg;
	if (events & EPOLLOUT)
		conn_flush(c);
	if (c->phase == PHASE_CLOSED)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		conn_on_readable(c);
}


