#include "proto/pdu_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto/digest.h"
#include "util/sbuf.h"

/*
 * Reads ask for at least this much when the buffer allows it: compacting the buffer is cheaper
 * than many small reads. The buffer never grows for it, only for the PDU in progress.
 */
#define RX_MIN_SPACE (16u * 1024u)
/* The most iovecs one gathered write takes. */
#define TX_IOV_LIMIT 256

static uint32_t digest_len(bool on) { return on ? 4u : 0u; }

void pdu_conn_init(struct pdu_conn *pc, const struct pdu_conn_ops *ops, void *arg, const struct iscsi_params *params,
		   struct pdu_txpool *pool, size_t rx_base)
{
	memset(pc, 0, sizeof(*pc));
	pc->ops = ops;
	pc->arg = arg;
	pc->params = params;
	pc->pool = pool;
	pc->rx_base = rx_base;
	pc->tx_pipe[0] = pc->tx_pipe[1] = -1;
	pdu_conn_rx_reset(pc);
}

void pdu_conn_rx_reset(struct pdu_conn *pc)
{
	pc->rx_state = PDU_RECV_BHS;
	pc->rx_start = pc->rx_len = 0;
	pc->rx_need = BHS_LEN;
	pc->dr_owner = NULL;
	pc->dr_left = 0;
	pc->rx_large = false;
	pc->rx_header_skipped = false;
	pc->rx_epoch++;
}

void pdu_conn_rx_free(struct pdu_conn *pc)
{
	free(pc->rxbuf);
	pc->rxbuf = NULL;
	pc->rx_cap = 0;
	pdu_conn_rx_reset(pc);
}

void pdu_conn_rx_grow(struct pdu_conn *pc, size_t size)
{
	if (size > pc->rx_base)
		pc->rx_base = size;
}

size_t pdu_conn_header_size(const struct pdu_conn *pc)
{
	return BHS_LEN + pc->rx_bhs.total_ahs_len + digest_len(pc->params->header_digest);
}

size_t pdu_conn_rx_pending(const struct pdu_conn *pc)
{
	return pc->rx_len - pc->rx_start;
}

void pdu_conn_forget_direct(struct pdu_conn *pc, const void *owner)
{
	if (pc->rx_state == PDU_RECV_DIRECT && pc->dr_owner == owner)
		pc->dr_owner = NULL;
}

/*
 * Room after rx_len for the next read: the bytes of the PDU in progress fit from rx_start on,
 * and the unparsed rest moves to the front when the tail gets short.
 */
static void rx_make_room(struct pdu_conn *pc)
{
	if (pc->rx_cap < pc->rx_base) {
		pc->rx_cap = pc->rx_base;
		pc->rxbuf = xrealloc(pc->rxbuf, pc->rx_cap);
	}
	if (pc->rx_start == pc->rx_len)
		pc->rx_start = pc->rx_len = 0;
	size_t pending = pc->rx_len - pc->rx_start;
	size_t need = pc->rx_state == PDU_RECV_BHS ? BHS_LEN : pc->rx_need;
	if (pc->rx_start && (pc->rx_cap - pc->rx_len < RX_MIN_SPACE || pc->rx_cap - pc->rx_start < need)) {
		memmove(pc->rxbuf, pc->rxbuf + pc->rx_start, pending);
		pc->rx_start = 0;
		pc->rx_len = pending;
	}
	/* Bounded by the data segment limit the role checked on the header. */
	if (pc->rx_cap < need) {
		pc->rx_cap = need;
		pc->rxbuf = xrealloc(pc->rxbuf, pc->rx_cap);
	}
	/* Whole PDUs left unparsed (the role held them) must not make a read ask for nothing. */
	if (pc->rx_len == pc->rx_cap) {
		pc->rx_cap += RX_MIN_SPACE;
		pc->rxbuf = xrealloc(pc->rxbuf, pc->rx_cap);
	}
}

ssize_t pdu_conn_read(struct pdu_conn *pc, int fd, size_t *asked)
{
	rx_make_room(pc);
	size_t space = pc->rx_cap - pc->rx_len;
	if (pc->rx_large) {
		/* One system call per PDU (its data to its buffer, then the next header) beats a copy. */
		size_t hlen = BHS_LEN + digest_len(pc->params->header_digest);
		size_t avail = pc->rx_len - pc->rx_start;
		size_t upto = pc->rx_state == PDU_RECV_BHS ? hlen : pc->rx_need + hlen;
		if (upto > avail && upto - avail < space)
			space = upto - avail;
	}
	bool direct = pc->rx_state == PDU_RECV_DIRECT && pc->dr_left;
	bool discard = false;
	ssize_t r;
	do {
		if (direct && pc->dr_owner) {
			struct iovec iov[2] = {{pc->dr_dst, pc->dr_left}, {pc->rxbuf + pc->rx_len, space}};
			*asked = pc->dr_left + space;
			r = readv(fd, iov, 2);
		} else if (direct) {
			/* The buffer's owner is gone: read the rest of its data into rxbuf and drop it. */
			*asked = pc->dr_left < space ? pc->dr_left : space;
			discard = true;
			r = read(fd, pc->rxbuf + pc->rx_len, *asked);
		} else {
			*asked = space;
			r = read(fd, pc->rxbuf + pc->rx_len, space);
		}
	} while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return PDU_READ_DRAINED;
	if (r <= 0)
		return r;
	size_t got = (size_t)r;
	if (direct) {
		size_t n = got < pc->dr_left ? got : pc->dr_left;
		pc->dr_left -= (uint32_t)n;
		if (!discard) {
			pc->dr_dst += n;
			pc->rx_len += got - n;
		}
	} else {
		pc->rx_len += got;
	}
	return r;
}

/* Whether the PDU in rx_bhs is of the kind the role places directly (its data large enough). */
static bool rx_placeable(const struct pdu_conn *pc)
{
	const struct bhs *b = &pc->rx_bhs;
	if (b->opcode == OP_SCSI_CMD && pc->direct_cmd_min)
		return b->data_len >= pc->direct_cmd_min;
	uint8_t op = pc->direct_opcode ? pc->direct_opcode : OP_DATA_IN;
	return pc->direct_min && b->opcode == op && b->data_len >= pc->direct_min;
}

/*
 * The header of a Data-In (Data-Out or a SCSI Command with immediate data, for the target) with
 * a large segment is in and part of its data is not: if the role has a buffer for it, move what
 * arrived there and read the rest straight into it.
 */
static void rx_try_place(struct pdu_conn *pc, size_t avail)
{
	const struct bhs *b = &pc->rx_bhs;
	if (!pc->ops->place || !rx_placeable(pc) || b->total_ahs_len)
		return;
	bool hd = pc->params->header_digest;
	size_t hlen = BHS_LEN + digest_len(hd);
	if (avail < hlen || avail - hlen >= b->data_len)
		return;
	const uint8_t *raw = pc->rxbuf + pc->rx_start;
	if (hd && crc32c(raw, BHS_LEN) != digest_load(raw + BHS_LEN))
		return; /* reported when the PDU is complete */
	void *owner = NULL;
	uint8_t *dst = pc->ops->place(pc, &owner);
	if (!dst)
		return;
	size_t present = avail - hlen;
	memcpy(dst, raw + hlen, present);
	pc->rx_len = pc->rx_start + hlen; /* the header stays; the trailer will follow it */
	pc->rx_state = PDU_RECV_DIRECT;
	pc->dr_owner = owner;
	pc->dr_data = dst;
	pc->dr_dst = dst + present;
	pc->dr_left = b->data_len - (uint32_t)present;
	pc->rx_need = hlen + (pad4(b->data_len) - b->data_len) + digest_len(pc->params->data_digest);
}

/* Whether the data digest of a complete PDU matches; data and trailer as laid out in rxbuf. */
static bool rx_data_digest_ok(const struct pdu_conn *pc, const uint8_t *data)
{
	uint32_t len = pc->rx_bhs.data_len;
	uint32_t padded = pad4(len);
	if (pc->rx_state != PDU_RECV_DIRECT)
		return crc32c(data, padded) == digest_load(data + padded);
	if (!pc->dr_owner)
		return true; /* dropped unread */
	/* The data sits in the placed buffer; the padding and the digest in rxbuf. */
	uint32_t st = crc32c_update(crc32c_init(), pc->dr_data, len);
	st = crc32c_update(st, data, padded - len);
	return crc32c_final(st) == digest_load(data + padded - len);
}

/* A complete PDU at raw: check its digests and hand it over. */
static bool rx_complete(struct pdu_conn *pc, const uint8_t *raw)
{
	const struct bhs *b = &pc->rx_bhs;
	size_t off = BHS_LEN + b->total_ahs_len;
	if (pc->params->header_digest) {
		if (crc32c(raw, off) != digest_load(raw + off))
			return pc->ops->digest_error(pc, true, raw);
		off += 4;
	}
	const uint8_t *data = raw + off;
	if (b->data_len && pc->params->data_digest && !rx_data_digest_ok(pc, data))
		return pc->ops->digest_error(pc, false, raw);
	if (pc->rx_state == PDU_RECV_DIRECT)
		data = pc->dr_data;
	return pc->ops->pdu(pc, raw, data);
}

bool pdu_conn_parse(struct pdu_conn *pc)
{
	uint64_t epoch = pc->rx_epoch;
	for (;;) {
		size_t avail = pc->rx_len - pc->rx_start;
		if (pc->rx_state == PDU_RECV_BHS) {
			if (avail < BHS_LEN)
				break;
			const uint8_t *raw = pc->rxbuf + pc->rx_start;
			char why[96] = "";
			int rc = bhs_decode(raw, &pc->rx_bhs, why, sizeof(why));
			const struct bhs *b = &pc->rx_bhs;
			size_t need = pdu_conn_header_size(pc);
			if (b->data_len)
				need += pad4(b->data_len) + digest_len(pc->params->data_digest);
			pc->rx_need = need;
			switch (pc->ops->header(pc, raw, rc, why)) {
			case PDU_HEADER_WAIT:
				return true;
			case PDU_HEADER_STOP:
				return false;
			case PDU_HEADER_SKIP:
				pc->rx_state = PDU_RECV_SKIP;
				break;
			case PDU_HEADER_HANDLE:
				pc->rx_state = PDU_RECV_REST;
				if (avail < need)
					rx_try_place(pc, avail);
				break;
			}
			continue;
		}
		if (pc->rx_state == PDU_RECV_DIRECT && pc->dr_left)
			break;
		if (avail < pc->rx_need)
			break;
		const uint8_t *raw = pc->rxbuf + pc->rx_start;
		pc->rx_large = rx_placeable(pc);
		bool alive = pc->rx_state == PDU_RECV_SKIP || rx_complete(pc, raw);
		if (!alive)
			return false;
		if (pc->rx_epoch != epoch)
			return true; /* the role started the stream over (a login redirected elsewhere) */
		pc->rx_start += pc->rx_need;
		pc->rx_state = PDU_RECV_BHS;
		pc->rx_need = BHS_LEN;
		pc->dr_owner = NULL;
	}
	return true;
}

struct pdu_txitem *pdu_conn_queue(struct pdu_conn *pc, struct bhs *b, const void *data, uint32_t len, uint8_t *owned)
{
	struct pdu_txpool *pool = pc->pool;
	struct pdu_txitem *it = pool->free;
	if (it) {
		pool->free = (struct pdu_txitem *)it->f.next;
		pool->n--;
	} else {
		it = xmalloc(pool->item_size);
	}
	pdu_frame_begin(&it->f, b, len);
	if (pc->ops->stamp)
		pc->ops->stamp(pc, b, it->f.hdr);
	it->wire = pdu_frame_finish(&it->f, data, len, pc->params->header_digest, pc->params->data_digest);
	it->owned = owned;
	pc->tx_bytes += it->wire;
	pdu_queue_push(&pc->txq, &it->f);
	return it;
}

struct pdu_txitem *pdu_conn_queue_file(struct pdu_conn *pc, struct bhs *b, int fd, uint64_t off, uint32_t len)
{
	struct pdu_txitem *it = pdu_conn_queue(pc, b, NULL, len, NULL);
	it->f.src_fd = fd;
	it->f.src_off = off;
	return it;
}

void pdu_conn_tx_release(struct pdu_conn *pc, struct pdu_txitem *it)
{
	pc->tx_bytes -= it->wire;
	pc->ops->sent(pc, it);
	free(it->owned);
	pdu_txpool_put(pc->pool, it);
}

static void tx_frame_done(struct pdu_frame *f, void *arg) { pdu_conn_tx_release(arg, (struct pdu_txitem *)f); }

static void tx_pipe_close(struct pdu_conn *pc)
{
	if (pc->tx_pipe_open) {
		close(pc->tx_pipe[0]);
		close(pc->tx_pipe[1]);
	}
	pc->tx_pipe[0] = pc->tx_pipe[1] = -1;
	pc->tx_pipe_open = false;
	pc->tx_piped = 0;
}

enum pdu_header_digest pdu_conn_header_digest(const struct pdu_conn *pc, const uint8_t *raw)
{
	size_t hlen = BHS_LEN + pc->rx_bhs.total_ahs_len;
	if (pc->rx_len - pc->rx_start < hlen + 4)
		return PDU_DIGEST_PENDING;
	return crc32c(raw, hlen) == digest_load(raw + hlen) ? PDU_DIGEST_GOOD : PDU_DIGEST_BAD;
}

bool pdu_conn_recover_header(struct pdu_conn *pc, const uint8_t *raw, enum pdu_header_verdict *v, const char **why)
{
	if (!pc->params->header_digest)
		return false;
	switch (pdu_conn_header_digest(pc, raw)) {
	case PDU_DIGEST_PENDING:
		*v = PDU_HEADER_WAIT; /* the digest follows at once: parsing resumes with the next read */
		return true;
	case PDU_DIGEST_GOOD:
		pc->rx_header_skipped = false;
		return false;
	case PDU_DIGEST_BAD:
		break;
	}
	*v = PDU_HEADER_STOP;
	if (pc->rx_header_skipped) {
		*why = "header digest errors on two PDUs in a row: the PDU framing is lost";
		return true;
	}
	if (pc->rx_bhs.data_len > pc->params->max_recv_dsl) {
		*why = "header digest error with an impossible data segment length";
		return true;
	}
	pc->rx_header_skipped = true;
	*v = PDU_HEADER_SKIP;
	return true;
}

int pdu_conn_tx_pipe_open(struct pdu_conn *pc)
{
	if (pc->tx_pipe_open)
		return 0;
	if (pipe2(pc->tx_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	pc->tx_pipe_open = true;
	/* A larger pipe means fewer splices per PDU; the default (16 pages) is kept if refused. */
	int cap = fcntl(pc->tx_pipe[1], F_SETPIPE_SZ, (int)PDU_TX_PIPE_SIZE);
	if (cap < 0)
		cap = fcntl(pc->tx_pipe[1], F_GETPIPE_SZ);
	pc->tx_pipe_cap = cap > 0 ? (size_t)cap : 65536u;
	pc->tx_piped = 0;
	return 0;
}

/*
 * The head frame's data segment is in a file: move the next part of it file -> pipe -> socket.
 * Returns the bytes the socket took (0: it is full), or -1 with errno set.
 */
static ssize_t tx_splice(struct pdu_conn *pc, int fd, const struct pdu_frame *f)
{
	size_t left = f->iov[1].iov_len - f->iov_off; /* of this segment, not yet in the socket */
	if (pdu_conn_tx_pipe_open(pc) < 0)
		return -1;
	if (pc->tx_piped == 0) {
		size_t want = left < pc->tx_pipe_cap ? left : pc->tx_pipe_cap;
		loff_t off = (loff_t)(f->src_off + f->iov_off);
		ssize_t k;
		do
			k = splice(f->src_fd, &off, pc->tx_pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		while (k < 0 && errno == EINTR);
		if (k == 0)
			errno = EIO; /* the file is shorter than the data it was to give */
		if (k <= 0)
			return -1;
		pc->tx_piped = (size_t)k;
	}
	/* More follows (the rest of this segment, its trailer, the next PDUs): no short segment yet. */
	bool more = left > pc->tx_piped || f->niov > 2 || f->next;
	ssize_t w;
	do
		w = splice(pc->tx_pipe[0], NULL, fd, NULL, pc->tx_piped,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0));
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	pc->tx_piped -= (size_t)w;
	pc->tx_spliced += (size_t)w;
	return w;
}

ssize_t pdu_conn_flush(struct pdu_conn *pc, int fd, int iov_max)
{
	struct iovec iov[TX_IOV_LIMIT];
	if (iov_max > TX_IOV_LIMIT)
		iov_max = TX_IOV_LIMIT;
	size_t written = 0;
	while (!pdu_queue_empty(&pc->txq)) {
		const struct pdu_frame *head = pc->txq.head;
		if (pdu_frame_data_in_file(head, head->iov_done)) {
			ssize_t w = tx_splice(pc, fd, head);
			if (w < 0)
				return -1;
			if (w == 0)
				break; /* the socket is full */
			written += (size_t)w;
			pdu_queue_consume(&pc->txq, (size_t)w, tx_frame_done, pc);
			continue;
		}
		size_t total = 0;
		bool at_file = false;
		int n = pdu_queue_gather(&pc->txq, iov, iov_max, &total, &at_file);
		ssize_t w = -1;
		if (at_file) {
			/*
			 * Data in a file follows at once: the headers wait for it (MSG_MORE) rather than
			 * leave as a small segment of their own.
			 */
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
			w = sendmsg(fd, &mh, MSG_MORE | MSG_NOSIGNAL);
		}
		if (!at_file || (w < 0 && errno == ENOTSOCK))
			w = writev(fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		written += (size_t)w;
		pdu_queue_consume(&pc->txq, (size_t)w, tx_frame_done, pc);
		if ((size_t)w < total)
			break; /* the socket is full */
	}
	return (ssize_t)written;
}

void pdu_conn_drop_tx(struct pdu_conn *pc)
{
	pdu_queue_drain(&pc->txq, tx_frame_done, pc);
	tx_pipe_close(pc);
}

void pdu_txpool_put(struct pdu_txpool *pool, struct pdu_txitem *it)
{
	if (pool->n < pool->keep) {
		it->f.next = (struct pdu_frame *)pool->free;
		pool->free = it;
		pool->n++;
	} else {
		free(it);
	}
}

void pdu_txpool_free(struct pdu_txpool *pool)
{
	while (pool->free) {
		struct pdu_txitem *it = pool->free;
		pool->free = (struct pdu_txitem *)it->f.next;
		free(it);
	}
	pool->n = 0;
}

bool pdu_sockaddr_split(const struct sockaddr *sa, char *addr, size_t alen, uint16_t *port)
{
	addr[0] = 0;
	*port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a->sin_addr, addr, (socklen_t)alen);
		*port = ntohs(a->sin_port);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &a->sin6_addr, addr, (socklen_t)alen);
		*port = ntohs(a->sin6_port);
		return true;
	}
	return false;
}

void pdu_sockaddr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
	char addr[INET6_ADDRSTRLEN];
	uint16_t port;
	if (!pdu_sockaddr_split(sa, addr, sizeof(addr), &port))
		snprintf(out, outlen, "local socket");
	else if (sa->sa_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%u", addr, port);
	else
		snprintf(out, outlen, "%s:%u", addr, port);
}
