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

#define RX_INITIAL (64u * 1024u)

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void ism_conn_send(struct ism_conn *c, struct bhs *b, const void *data, uint32_t len, struct ism_task *task,
		   uint8_t *owned)
{
	if (c->fd < 0 || c->state == CONN_CLOSED || c->state == CONN_FREE) {
		free(owned);
		return;
	}
	struct txitem *it = xcalloc(1, sizeof(*it));
	b->data_len = len;
	if (log_get_level() >= LOG_DEBUG)
		log_debug("cid %u -> %s ITT 0x%08x len %u F%d I%d w0 0x%08x w1 0x%08x", c->cid, opcode_str(b->opcode), b->itt,
			  len, b->final, b->immediate, b->opcode == OP_DATA_OUT ? b->data_out.offset : b->cmd.cmdsn,
			  b->opcode == OP_DATA_OUT ? b->data_out.ttt : b->cmd.edtl);
	bhs_encode(b, it->hdr);
	size_t hlen = BHS_LEN;
	if (c->params.header_digest) {
		put_le32(it->hdr + BHS_LEN, crc32c(it->hdr, BHS_LEN));
		hlen += 4;
	}
	it->iov[it->niov++] = (struct iovec){it->hdr, hlen};
	if (len) {
		it->iov[it->niov++] = (struct iovec){(void *)data, len};
		uint32_t pad = pad4(len) - len;
		size_t tlen = pad;
		if (c->params.data_digest) {
			uint32_t st = crc32c_update(crc32c_init(), data, len);
			st = crc32c_update(st, it->trailer, pad);
			put_le32(it->trailer + pad, crc32c_final(st));
			tlen += 4;
		}
		if (tlen)
			it->iov[it->niov++] = (struct iovec){it->trailer, tlen};
		if (task && !owned) {
			it->task = task;
			task->txrefs++;
		}
	}
	it->owned = owned;
	if (c->tx_tail)
		c->tx_tail->next = it;
	else
		c->tx_head = it;
	c->tx_tail = it;
}

static void tx_item_free(struct txitem *it)
{
	if (it->task)
		it->task->txrefs--;
	free(it->owned);
	free(it);
}

void ism_conn_drop_tx(struct ism_conn *c)
{
	while (c->tx_head) {
		struct txitem *it = c->tx_head;
		c->tx_head = it->next;
		tx_item_free(it);
	}
	c->tx_tail = NULL;
}

/*
 * A task finishes while PDUs borrowing its buffer are still queued (the target answered before
 * taking all data, or the task was aborted): drop the PDUs not started, copy the data of a PDU
 * half written so the caller may free its buffer.
 */
void ism_conn_detach_task(struct ism_conn *c, struct ism_task *t)
{
	struct txitem **pp = &c->tx_head, *prev = NULL;
	while (*pp) {
		struct txitem *it = *pp;
		if (it->task != t) {
			prev = it;
			pp = &it->next;
			continue;
		}
		if (it->iov_done == 0 && it->iov_off == 0) {
			*pp = it->next;
			if (c->tx_tail == it)
				c->tx_tail = prev;
			tx_item_free(it);
			continue;
		}
		uint8_t *copy = xmalloc(it->iov[1].iov_len);
		memcpy(copy, it->iov[1].iov_base, it->iov[1].iov_len);
		it->iov[1].iov_base = copy;
		it->owned = copy;
		it->task = NULL;
		t->txrefs--;
		prev = it;
		pp = &it->next;
	}
}

void ism_conn_flush(struct ism_conn *c)
{
	while (c->tx_head && c->fd >= 0 && c->state != CONN_CONNECTING) {
		struct iovec iov[64];
		int n = 0;
		for (struct txitem *it = c->tx_head; it && n < 64; it = it->next) {
			for (int i = it->iov_done; i < it->niov && n < 64; i++) {
				iov[n] = it->iov[i];
				if (i == it->iov_done && it->iov_off) {
					iov[n].iov_base = (char *)iov[n].iov_base + it->iov_off;
					iov[n].iov_len -= it->iov_off;
				}
				n++;
			}
		}
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			ism_conn_fail(c, "send failed: %s", strerror(errno));
			return;
		}
		size_t left = (size_t)w;
		while (c->tx_head) {
			struct txitem *it = c->tx_head;
			while (it->iov_done < it->niov) {
				size_t rem = it->iov[it->iov_done].iov_len - it->iov_off;
				if (left < rem) {
					it->iov_off += left;
					left = 0;
					break;
				}
				left -= rem;
				it->iov_done++;
				it->iov_off = 0;
			}
			if (it->iov_done < it->niov)
				break;
			c->tx_head = it->next;
			if (!c->tx_head)
				c->tx_tail = NULL;
			tx_item_free(it);
		}
	}
}

static uint32_t rx_limit(const struct ism_conn *c)
{
	return c->state == CONN_LOGIN ? ISM_LOGIN_MAX_DSL : c->params.max_recv_dsl;
}

/* A complete PDU of c->rx_need bytes sits at p. */
static void handle_pdu(struct ism_conn *c, const uint8_t *p)
{
	const struct bhs *b = &c->rx_bhs;
	size_t off = BHS_LEN;
	if (c->params.header_digest) {
		if (crc32c(p, off) != get_le32(p + off)) {
			ism_conn_fail(c, "header digest error in a %s PDU", opcode_str(b->opcode));
			return;
		}
		off += 4;
	}
	const uint8_t *data = p + off;
	if (b->data_len && c->params.data_digest) {
		uint32_t padded = pad4(b->data_len);
		if (crc32c(data, padded) != get_le32(data + padded)) {
			ism_conn_fail(c, "data digest error in a %s PDU (ITT 0x%08x)", opcode_str(b->opcode), b->itt);
			return;
		}
	}
	c->last_rx_ms = ism_now_ms();
	if (log_get_level() >= LOG_DEBUG)
		log_debug("cid %u <- %s ITT 0x%08x len %u F%d bytes20-47 %08x %08x %08x %08x %08x %08x %08x", c->cid,
			  opcode_str(b->opcode), b->itt, b->data_len, b->final, get_be32(p + 20), get_be32(p + 24),
			  get_be32(p + 28), get_be32(p + 32), get_be32(p + 36), get_be32(p + 40), get_be32(p + 44));
	if (c->state == CONN_LOGIN)
		ism_login_pdu(c, b, data, b->data_len);
	else if (c->state == CONN_FFP || c->state == CONN_LOGOUT)
		ism_ffp_pdu(c, b, data, b->data_len);
}

/* Returns false when the connection failed. */
static bool conn_parse(struct ism_conn *c)
{
	size_t pos = 0;
	while (c->state == CONN_LOGIN || c->state == CONN_FFP || c->state == CONN_LOGOUT) {
		size_t avail = c->rx_len - pos;
		if (c->rx_in_bhs) {
			if (avail < BHS_LEN)
				break;
			const char *why = NULL;
			int rc = bhs_decode(c->rxbuf + pos, &c->rx_bhs, &why);
			if (rc != 0) {
				ism_conn_fail(c, "malformed PDU from the target (opcode 0x%02x): %s",
					      c->rxbuf[pos] & 0x3f, why ? why : "?");
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
			continue;
		}
		if (avail < c->rx_need) {
			if (c->rx_need > c->rx_cap) {
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
		handle_pdu(c, c->rxbuf + pos);
		if (c->fd < 0)
			return false;
		pos += c->rx_need;
		c->rx_in_bhs = true;
		c->rx_need = BHS_LEN;
	}
	if (c->fd < 0)
		return false;
	if (pos) {
		memmove(c->rxbuf, c->rxbuf + pos, c->rx_len - pos);
		c->rx_len -= pos;
	}
	return true;
}

void ism_conn_readable(struct ism_conn *c)
{
	for (int round = 0; round < 16 && c->fd >= 0; round++) {
		if (!c->rxbuf) {
			c->rx_cap = RX_INITIAL;
			c->rxbuf = xmalloc(c->rx_cap);
		}
		if (c->rx_len == c->rx_cap) {
			c->rx_cap *= 2;
			c->rxbuf = xrealloc(c->rxbuf, c->rx_cap);
		}
		ssize_t r = read(c->fd, c->rxbuf + c->rx_len, c->rx_cap - c->rx_len);
		if (r == 0) {
			if (c->state == CONN_LOGOUT && c->s->logging_out)
				ism_conn_fail(c, "target closed the connection during logout");
			else if (c->rx_len && !c->rx_in_bhs)
				ism_conn_fail(c, "target closed the connection in the middle of a %s PDU (truncated)",
					      opcode_str(c->rx_bhs.opcode));
			else if (c->rx_len)
				ism_conn_fail(c, "target closed the connection after a truncated PDU header (%zu bytes)",
					      c->rx_len);
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
		c->rx_len += (size_t)r;
		if (!conn_parse(c))
			return;
		if ((size_t)r < 4096)
			break;
	}
}

void ism_conn_close_fd(struct ism_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void sockaddr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	uint16_t port = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
		port = ntohs(s6->sin6_port);
		snprintf(out, outlen, "[%s]:%u", addr, port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
		port = ntohs(s4->sin_port);
		snprintf(out, outlen, "%s:%u", addr, port);
	} else {
		snprintf(out, outlen, "local socket");
	}
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
	close(c->fd);
	c->fd = -1;
	if (try_next_address(c, msg) < 0)
		ism_conn_fail(c, "%s", msg);
}

void ism_conn_connected(struct ism_conn *c)
{
	if (c->ai) {
		freeaddrinfo(c->ai);
		c->ai = c->ai_next = NULL;
	}
	c->state = CONN_LOGIN;
	c->rx_in_bhs = true;
	c->rx_need = BHS_LEN;
	c->rx_len = 0;
	c->last_rx_ms = ism_now_ms();
	ism_login_start(c);
}
