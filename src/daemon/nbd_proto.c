/*
 * The NBD protocol of one client, without sockets (see nbd_proto.h): fixed newstyle handshake
 * (NBD_OPT_EXPORT_NAME, NBD_OPT_INFO/GO, NBD_OPT_LIST, NBD_OPT_ABORT), then READ, WRITE (with
 * FUA), FLUSH, TRIM and DISC with simple replies, which may go back out of order (the client
 * matches them by cookie).
 *
 * Throughput: the owner reads everything the client sent into the input buffer and every
 * complete request in it is submitted; the payload of a large WRITE that is not all there yet is
 * read straight into its request's buffer. Replies wait in completion order and go out gathered:
 * the reply headers and the read data where they lie (no copy). Request structures and their
 * buffers come from a free list.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/nbd_proto.h"
#include "util/bytes.h"
#include "util/sbuf.h"

#define NBD_MAGIC 0x4e42444d41474943ULL /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC 0x49484156454f5054ULL /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x3e889045565a9ULL
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

#define NBD_FLAG_FIXED_NEWSTYLE 1
#define NBD_FLAG_NO_ZEROES 2
#define NBD_FLAG_C_NO_ZEROES 2

#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7

#define NBD_REP_ACK 1
#define NBD_REP_SERVER 2
#define NBD_REP_INFO 3
#define NBD_REP_ERR_UNSUP 0x80000001u
#define NBD_REP_ERR_INVALID 0x80000003u

#define NBD_INFO_EXPORT 0
#define NBD_INFO_BLOCK_SIZE 3

#define NBD_FLAG_HAS_FLAGS (1 << 0)
#define NBD_FLAG_READ_ONLY (1 << 1)
#define NBD_FLAG_SEND_FLUSH (1 << 2)
#define NBD_FLAG_SEND_FUA (1 << 3)
#define NBD_FLAG_SEND_TRIM (1 << 5)

#define NBD_MAX_OPT 4096
#define NBD_READ_CHUNK (256u << 10) /* free space offered to each read */
#define NBD_DIRECT_MIN (64u << 10)  /* WRITE payloads from this size may be read into their buffer */
#define NREQ_POOL_MAX 256
#define NREQ_POOL_BUF (128u << 10)

enum nbd_phase { PHASE_CLIENT_FLAGS, PHASE_OPTIONS, PHASE_TRANSMISSION, PHASE_DONE };

struct nbd_conn {
	struct nbd_backend be;
	bool released;
	enum nbd_phase phase;
	bool no_zeroes;
	bool close_after; /* NBD_OPT_ABORT: its answer goes out, then the connection closes */
	bool blocked; /* parsing stopped at a bound; resumes when replies have gone out */
	bool parsing;
	struct sbuf in;  /* bytes not parsed yet */
	struct sbuf out; /* handshake answers */
	size_t out_off;
	/* replies waiting to be sent, in completion order; rq_off bytes of the first are sent */
	struct nbd_req *rq_head, *rq_tail;
	size_t rq_off;
	unsigned inflight; /* submitted to the backend, not done */
	unsigned held;     /* from arrival to the end of the reply */
	uint64_t held_bytes;
	/* a WRITE whose payload is being read straight into its buffer */
	struct nbd_req *wr;
	uint32_t wr_have;
};

/* Free list of requests with their buffers (a static: requests outlive their clients). */
static struct nbd_req *pool;
static unsigned pool_n;

static struct nbd_req *req_get(struct nbd_conn *c, size_t len)
{
	struct nbd_req *q = pool;
	if (q) {
		pool = q->next;
		pool_n--;
	} else {
		q = xcalloc(1, sizeof(*q));
	}
	uint8_t *buf = q->buf;
	size_t cap = q->cap;
	xbuf_reserve(&buf, &cap, len);
	memset(q, 0, sizeof(*q));
	q->buf = buf;
	q->cap = cap;
	q->c = c;
	return q;
}

static void req_put(struct nbd_req *q)
{
	if (pool_n >= NREQ_POOL_MAX || q->cap > NREQ_POOL_BUF) {
		free(q->buf);
		free(q);
		return;
	}
	q->next = pool;
	pool = q;
	pool_n++;
}

void nbd_req_pool_drain(void)
{
	while (pool) {
		struct nbd_req *q = pool;
		pool = q->next;
		free(q->buf);
		free(q);
	}
	pool_n = 0;
}

struct nbd_conn *nbd_conn_new(const struct nbd_backend *be)
{
	struct nbd_conn *c = xcalloc(1, sizeof(*c));
	c->be = *be;
	c->phase = PHASE_CLIENT_FLAGS;
	uint8_t greet[18];
	put_be64(greet, NBD_MAGIC);
	put_be64(greet + 8, NBD_OPTS_MAGIC);
	put_be16(greet + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	sbuf_append(&c->out, greet, sizeof(greet));
	return c;
}

static void conn_free(struct nbd_conn *c)
{
	sbuf_free(&c->in);
	sbuf_free(&c->out);
	free(c);
}

static void wake(struct nbd_conn *c)
{
	if (!c->released && c->be.wake)
		c->be.wake(c->be.ctx);
}

/* A request is over (its reply sent, or the client gone): its share of the bounds is free. */
static void req_release(struct nbd_conn *c, struct nbd_req *q)
{
	if (c->held)
		c->held--;
	if (q->counted)
		c->held_bytes -= q->len;
	req_put(q);
}

static void drop_replies(struct nbd_conn *c)
{
	while (c->rq_head) {
		struct nbd_req *q = c->rq_head;
		c->rq_head = q->next;
		req_release(c, q);
	}
	c->rq_tail = NULL;
	c->rq_off = 0;
	if (c->wr) {
		req_release(c, c->wr);
		c->wr = NULL;
	}
}

void nbd_conn_release(struct nbd_conn *c)
{
	if (!c || c->released)
		return;
	c->released = true;
	c->phase = PHASE_DONE;
	drop_replies(c);
	sbuf_free(&c->in);
	sbuf_free(&c->out);
	if (!c->inflight)
		conn_free(c);
}

unsigned nbd_conn_inflight(const struct nbd_conn *c) { return c->inflight; }

/* Queue a simple reply (q's data, for a successful READ). */
static void queue_reply(struct nbd_conn *c, struct nbd_req *q, uint32_t err)
{
	put_be32(q->hdr, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(q->hdr + 4, err);
	put_be64(q->hdr + 8, q->cookie);
	q->data_len = !err && q->type == NBD_CMD_READ ? q->len : 0;
	q->next = NULL;
	if (c->rq_tail)
		c->rq_tail->next = q;
	else
		c->rq_head = q;
	c->rq_tail = q;
	wake(c);
}

void nbd_req_done(struct nbd_req *q, uint32_t err)
{
	struct nbd_conn *c = q->c;
	c->inflight--;
	if (c->released) {
		req_put(q);
		if (!c->inflight)
			conn_free(c);
		return;
	}
	queue_reply(c, q, err);
}

static void submit(struct nbd_conn *c, struct nbd_req *q)
{
	c->inflight++;
	c->be.submit(c->be.ctx, q);
}

/* ---- handshake ---- */

static void put64(struct sbuf *b, uint64_t v)
{
	uint8_t x[8];
	put_be64(x, v);
	sbuf_append(b, x, 8);
}
static void put32(struct sbuf *b, uint32_t v)
{
	uint8_t x[4];
	put_be32(x, v);
	sbuf_append(b, x, 4);
}
static void put16(struct sbuf *b, uint16_t v)
{
	uint8_t x[2];
	put_be16(x, v);
	sbuf_append(b, x, 2);
}

static void opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	put64(&c->out, NBD_REP_MAGIC);
	put32(&c->out, opt);
	put32(&c->out, type);
	put32(&c->out, len);
	if (len)
		sbuf_append(&c->out, data, len);
}

/* The transmission flags of the export as it is at this handshake: a client learns a later change
 * (write protection, size) only by connecting again. */
static uint16_t tx_flags(const struct nbd_export_info *x)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM;
	return x->read_only ? f | NBD_FLAG_READ_ONLY : f;
}

static bool export_info(struct nbd_conn *c, struct nbd_export_info *x)
{
	memset(x, 0, sizeof(*x));
	if (c->released || !c->be.info(c->be.ctx, x))
		return false;
	if (!x->block_size)
		x->block_size = 512;
	return true;
}

/* One option; returns bytes consumed (0: need more) or NBD_RX_CLOSE. */
static long handle_option(struct nbd_conn *c, const uint8_t *p, size_t n)
{
	if (n < 16)
		return 0;
	if (get_be64(p) != NBD_OPTS_MAGIC)
		return NBD_RX_CLOSE;
	uint32_t opt = get_be32(p + 8), len = get_be32(p + 12);
	if (len > NBD_MAX_OPT)
		return NBD_RX_CLOSE;
	if (n < 16 + (size_t)len)
		return 0;
	struct nbd_export_info x;
	bool have = export_info(c, &x);
	switch (opt) {
	case NBD_OPT_EXPORT_NAME:
		if (!have)
			return NBD_RX_CLOSE; /* no way to refuse this option but to hang up */
		put64(&c->out, x.size);
		put16(&c->out, tx_flags(&x));
		if (!c->no_zeroes) {
			uint8_t z[124] = {0};
			sbuf_append(&c->out, z, sizeof(z));
		}
		c->phase = PHASE_TRANSMISSION;
		break;
	case NBD_OPT_ABORT:
		opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		c->phase = PHASE_DONE;
		c->close_after = true;
		break;
	case NBD_OPT_LIST: {
		uint8_t name[4] = {0};
		opt_reply(c, opt, NBD_REP_SERVER, name, 4);
		opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		break;
	}
	case NBD_OPT_INFO:
	case NBD_OPT_GO: {
		if (len < 6 || !have) {
			opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
			break;
		}
		uint8_t info[12];
		put_be16(info, NBD_INFO_EXPORT);
		put_be64(info + 2, x.size);
		put_be16(info + 10, tx_flags(&x));
		opt_reply(c, opt, NBD_REP_INFO, info, sizeof(info));
		uint8_t bsz[14];
		put_be16(bsz, NBD_INFO_BLOCK_SIZE);
		put_be32(bsz + 2, x.block_size);
		put_be32(bsz + 6, x.block_size > 4096 ? x.block_size : 4096);
		put_be32(bsz + 10, NBD_MAX_IO);
		opt_reply(c, opt, NBD_REP_INFO, bsz, sizeof(bsz));
		opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		if (opt == NBD_OPT_GO)
			c->phase = PHASE_TRANSMISSION;
		break;
	}
	default:
		opt_reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
		break;
	}
	wake(c);
	return 16 + (long)len;
}

/* ---- transmission ---- */

/* May another request of len data bytes be taken now? One is always allowed when none is held,
 * so a request larger than the byte bound still goes (alone). */
static bool room_for(const struct nbd_conn *c, uint32_t len)
{
	if (!c->held)
		return true;
	return c->held < NBD_MAX_INFLIGHT && c->held_bytes + len <= NBD_MAX_INFLIGHT_BYTES;
}

/* The error a request that reached us gets before any I/O (0: it may run). */
static uint32_t check_request(struct nbd_conn *c, uint16_t type, uint64_t off, uint32_t len, uint32_t *bs)
{
	struct nbd_export_info x;
	if (!export_info(c, &x))
		return EIO;
	*bs = x.block_size;
	/* a write-protected LUN: refused here, whatever the flags a client was given said */
	if (x.read_only && (type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES))
		return EPERM;
	switch (type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
		if (off > x.size || len > x.size - off)
			return type == NBD_CMD_READ ? EINVAL : ENOSPC;
		if (off % x.block_size || len % x.block_size)
			return EINVAL;
		if (len > NBD_MAX_IO && type != NBD_CMD_TRIM)
			return EINVAL;
		return 0;
	case NBD_CMD_FLUSH:
		return 0;
	default:
		return EINVAL;
	}
}

/* Submit q, or answer err (or nothing to do) at once. */
static void run_request(struct nbd_conn *c, struct nbd_req *q, uint32_t err)
{
	bool data = q->type == NBD_CMD_READ || q->type == NBD_CMD_WRITE || q->type == NBD_CMD_TRIM;
	if (err || (data && q->len == 0)) {
		queue_reply(c, q, err);
		return;
	}
	submit(c, q);
}

/* One transmission request; returns bytes consumed (0: need more, or no room), or NBD_RX_CLOSE.
 * A large WRITE whose payload is not all in yet becomes c->wr (its header and the part present
 * consumed), and the rest is read into its buffer. */
static long handle_request(struct nbd_conn *c, const uint8_t *p, size_t n)
{
	if (n < 28)
		return 0;
	if (get_be32(p) != NBD_REQUEST_MAGIC)
		return NBD_RX_CLOSE;
	uint16_t flags = get_be16(p + 4), type = get_be16(p + 6);
	uint64_t cookie = get_be64(p + 8), off = get_be64(p + 16);
	uint32_t len = get_be32(p + 24);
	if (type == NBD_CMD_WRITE && len > NBD_MAX_IO)
		return NBD_RX_CLOSE; /* cannot skip that much payload safely */
	size_t need = 28 + (type == NBD_CMD_WRITE ? len : 0);
	if (n < need && !(type == NBD_CMD_WRITE && len >= NBD_DIRECT_MIN))
		return 0;
	if (type == NBD_CMD_DISC) {
		c->phase = PHASE_DONE;
		return NBD_RX_CLOSE;
	}
	bool data = type == NBD_CMD_READ || type == NBD_CMD_WRITE;
	if (!room_for(c, data && len <= NBD_MAX_IO ? len : 0)) {
		c->blocked = true;
		return 0;
	}
	uint32_t bs = 512;
	uint32_t err = check_request(c, type, off, len, &bs);
	/* A large WRITE whose payload is still coming is read into q->buf even when refused. */
	struct nbd_req *q = req_get(c, (data && !err) || n < need ? len : 0);
	q->cookie = cookie;
	q->type = type;
	q->flags = flags;
	q->offset = off;
	q->len = len;
	q->block_size = bs;
	c->held++;
	if (data && len <= NBD_MAX_IO) {
		q->counted = true;
		c->held_bytes += len;
	}
	if (n < need) {
		/* take what is here, read the rest into q->buf, then submit or answer the error */
		memcpy(q->buf, p + 28, n - 28);
		c->wr = q;
		c->wr_have = (uint32_t)(n - 28);
		q->err = err;
		return (long)n;
	}
	if (type == NBD_CMD_WRITE && !err && len) /* an empty WRITE may have no buffer at all */
		memcpy(q->buf, p + 28, len);
	run_request(c, q, err);
	return (long)need;
}

/* The payload of c->wr is complete: submit it (or answer the error found at its header). */
static void direct_write_done(struct nbd_conn *c)
{
	struct nbd_req *q = c->wr;
	c->wr = NULL;
	uint32_t err = q->err;
	if (!err) {
		/* the export may have changed while the payload came */
		uint32_t bs;
		err = check_request(c, q->type, q->offset, q->len, &bs);
		q->block_size = bs;
	}
	run_request(c, q, err);
}

static bool handshake_backlog(const struct nbd_conn *c) { return c->out.len - c->out_off > NBD_MAX_HANDSHAKE_OUT; }

/* Act on every complete message in the input, up to a bound. */
static enum nbd_rx_result parse(struct nbd_conn *c)
{
	if (c->parsing)
		return NBD_RX_OK;
	c->parsing = true;
	c->blocked = false;
	enum nbd_rx_result rc = NBD_RX_OK;
	size_t off = 0;
	while (!c->wr && c->phase != PHASE_DONE) {
		const uint8_t *p = c->in.data + off;
		size_t n = c->in.len - off;
		long used;
		if (c->phase == PHASE_CLIENT_FLAGS) {
			if (n < 4)
				break;
			c->no_zeroes = get_be32(p) & NBD_FLAG_C_NO_ZEROES;
			c->phase = PHASE_OPTIONS;
			used = 4;
		} else if (c->phase == PHASE_OPTIONS) {
			if (handshake_backlog(c)) {
				c->blocked = true;
				break;
			}
			used = handle_option(c, p, n);
		} else {
			used = handle_request(c, p, n);
		}
		if (used == NBD_RX_CLOSE) {
			rc = NBD_RX_CLOSE;
			break;
		}
		if (used == 0)
			break;
		off += (size_t)used;
	}
	if (c->phase == PHASE_DONE && rc == NBD_RX_OK)
		rc = c->close_after ? NBD_RX_CLOSE_AFTER : NBD_RX_CLOSE;
	if (off) {
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
	c->parsing = false;
	return rc;
}

bool nbd_conn_wants_input(const struct nbd_conn *c) { return !c->released && c->phase != PHASE_DONE && !c->blocked; }

size_t nbd_conn_rx_space(struct nbd_conn *c, uint8_t **at)
{
	if (!nbd_conn_wants_input(c))
		return 0;
	if (c->wr) {
		*at = c->wr->buf + c->wr_have;
		return c->wr->len - c->wr_have;
	}
	sbuf_reserve(&c->in, NBD_READ_CHUNK);
	*at = c->in.data + c->in.len;
	return c->in.cap - c->in.len;
}

enum nbd_rx_result nbd_conn_rx_done(struct nbd_conn *c, size_t n)
{
	if (c->released)
		return NBD_RX_CLOSE;
	if (c->wr) {
		c->wr_have += (uint32_t)n;
		if (c->wr_have < c->wr->len)
			return NBD_RX_OK;
		direct_write_done(c);
		return NBD_RX_OK;
	}
	c->in.len += n;
	return parse(c);
}

bool nbd_conn_tx_pending(const struct nbd_conn *c) { return c->out.len > c->out_off || c->rq_head; }

int nbd_conn_tx_iov(struct nbd_conn *c, struct iovec *iov, int max)
{
	int k = 0;
	if (c->out.len > c->out_off && k < max)
		iov[k++] = (struct iovec){c->out.data + c->out_off, c->out.len - c->out_off};
	size_t skip = c->rq_off;
	for (struct nbd_req *q = c->rq_head; q && k + 2 <= max; q = q->next) {
		/* the first reply may be partly sent already */
		if (skip < sizeof(q->hdr))
			iov[k++] = (struct iovec){q->hdr + skip, sizeof(q->hdr) - skip};
		size_t dskip = skip > sizeof(q->hdr) ? skip - sizeof(q->hdr) : 0;
		if (q->data_len > dskip)
			iov[k++] = (struct iovec){q->buf + dskip, q->data_len - dskip};
		skip = 0;
	}
	return k;
}

enum nbd_rx_result nbd_conn_tx_done(struct nbd_conn *c, size_t n)
{
	size_t hs = c->out.len - c->out_off;
	size_t take = n < hs ? n : hs;
	c->out_off += take;
	n -= take;
	if (c->out_off == c->out.len)
		c->out.len = c->out_off = 0;
	size_t left = n + c->rq_off;
	while (c->rq_head) {
		struct nbd_req *q = c->rq_head;
		size_t whole = sizeof(q->hdr) + q->data_len;
		if (left < whole)
			break;
		left -= whole;
		c->rq_head = q->next;
		req_release(c, q);
	}
	if (!c->rq_head)
		c->rq_tail = NULL;
	c->rq_off = c->rq_head ? left : 0;
	if (!c->blocked || c->phase == PHASE_DONE)
		return NBD_RX_OK;
	/* room again: take what waits in the input, then let the owner read more */
	enum nbd_rx_result rc = parse(c);
	if (rc == NBD_RX_OK && !c->blocked)
		wake(c);
	return rc;
}
