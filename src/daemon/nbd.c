/*
 * Each exposed LUN served as an NBD export on a Unix socket (<nbd-dir>/<session-id>-lun<N>.sock):
 * fixed newstyle handshake (NBD_OPT_EXPORT_NAME, NBD_OPT_INFO/GO, NBD_OPT_LIST, NBD_OPT_ABORT),
 * then READ, WRITE (with FUA), FLUSH (SYNCHRONIZE CACHE), TRIM (UNMAP) and DISC with simple
 * replies, which may come back out of order (the client matches them by cookie). Runs in the
 * event loop like everything else.
 *
 * Throughput: one read() takes everything the client has sent (up to NBD_READ_CHUNK, straight
 * into the input buffer) and every complete request in it is submitted; the payload of a large
 * WRITE that is not all there yet is read straight into its request's buffer. Replies are queued
 * as they complete and sent together after the loop iteration, with one sendmsg() gathering the
 * reply headers and the read data where they lie (no copy). Request structures and their buffers
 * come from a free list.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "net/send.h"
#include "util/bytes.h"
#include "util/log.h"
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
#define NBD_FLAG_SEND_FLUSH (1 << 2)
#define NBD_FLAG_SEND_FUA (1 << 3)
#define NBD_FLAG_SEND_TRIM (1 << 5)

#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_FLAG_FUA 1

#define NBD_MAX_IO (1u << 20)
#define NBD_MAX_OPT 4096
#define NBD_READ_CHUNK (256u << 10) /* free space offered to each read() */
#define NBD_DIRECT_MIN (64u << 10)  /* WRITE payloads from this size may be read into their buffer */
#define NBD_IOV 128                  /* iovecs per sendmsg() (two per reply) */
#define NREQ_POOL_MAX 256
#define NREQ_POOL_BUF (128u << 10)

struct nbd_client;
struct nreq;

struct nbd_export {
	struct daemon *d;
	uint64_t sid;
	uint64_t lun;
	char *path;
	int fd;
	struct loop_watch w;
	struct nbd_client *clients;
};

struct nbd_client {
	struct daemon *d;
	struct nbd_export *e; /* NULL once the export is gone */
	struct nbd_client *next;
	uint64_t sid, lun;
	int fd;
	struct loop_watch w;
	int phase; /* 0 client flags, 1 options, 2 transmission */
	bool no_zeroes, dead;
	struct sbuf in, out; /* out: handshake replies */
	size_t out_off;
	unsigned inflight;
	/* transmission replies waiting to be sent, in completion order */
	struct nreq *rq_head, *rq_tail;
	size_t rq_off; /* bytes of rq_head already sent */
	bool flush_deferred;
	/* a WRITE whose payload is being read straight into its buffer */
	struct nreq *wr;
	uint32_t wr_have;
	uint64_t wr_off;
	uint16_t wr_flags;
};

struct nreq {
	struct dio io;
	struct nbd_client *c;
	struct nreq *next; /* reply queue, free list */
	uint64_t cookie;
	uint16_t type;
	uint8_t *buf;
	size_t cap;
	uint32_t len;      /* bytes of the command */
	uint32_t data_len; /* bytes of data in the reply */
	uint32_t err;      /* a large WRITE refused at its header, answered once its payload is in */
	uint8_t hdr[16];   /* the simple reply header */
	uint8_t unmap[24];
};

/* Free list of requests with their buffers (a static: requests outlive clients and exports). */
static struct nreq *nreq_pool;
static unsigned nreq_pool_n;

static struct nreq *nreq_get(struct nbd_client *c, size_t len)
{
	struct nreq *q = nreq_pool;
	if (q) {
		nreq_pool = q->next;
		nreq_pool_n--;
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

static void nreq_put(struct nreq *q)
{
	if (nreq_pool_n >= NREQ_POOL_MAX || q->cap > NREQ_POOL_BUF) {
		free(q->buf);
		free(q);
		return;
	}
	q->next = nreq_pool;
	nreq_pool = q;
	nreq_pool_n++;
}

const char *nbd_export_path(const struct nbd_export *e) { return e->path; }

static struct dsession *live_session(struct daemon *d, uint64_t sid)
{
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->id == sid && s->state != DS_GONE)
			return s;
	return NULL;
}

static struct dlun *live_lun(struct daemon *d, uint64_t sid, uint64_t lun, struct dsession **sp)
{
	struct dsession *s = live_session(d, sid);
	struct dlun *l = s ? dsess_lun(s, lun) : NULL;
	if (sp)
		*sp = s;
	return l && l->exposed ? l : NULL;
}

static void client_free(struct nbd_client *c)
{
	sbuf_free(&c->in);
	sbuf_free(&c->out);
	free(c);
}

static void drop_replies(struct nbd_client *c)
{
	while (c->rq_head) {
		struct nreq *q = c->rq_head;
		c->rq_head = q->next;
		nreq_put(q);
	}
	c->rq_tail = NULL;
	c->rq_off = 0;
	if (c->wr) {
		nreq_put(c->wr);
		c->wr = NULL;
	}
}

static void client_close(struct nbd_client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	loop_watch_del(c->d->loop, &c->w);
	close(c->fd);
	c->fd = -1;
	drop_replies(c);
	if (c->e) {
		for (struct nbd_client **pp = &c->e->clients; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		c->e = NULL;
	}
	if (!c->inflight)
		loop_defer(c->d->loop, (loop_fn)client_free, c);
}

/* Send what is queued: handshake bytes, then transmission replies gathered into sendmsg() calls. */
static void client_flush(struct nbd_client *c)
{
	if (c->dead)
		return;
	if (net_send_buffered(c->fd, &c->out, &c->out_off) < 0) {
		client_close(c);
		return;
	}
	while (c->out.len == 0 && c->rq_head) {
		struct iovec iov[NBD_IOV];
		int n = 0;
		size_t skip = c->rq_off;
		for (struct nreq *q = c->rq_head; q && n + 2 <= NBD_IOV; q = q->next) {
			/* the first reply may be partly sent already */
			if (skip < sizeof(q->hdr))
				iov[n++] = (struct iovec){q->hdr + skip, sizeof(q->hdr) - skip};
			size_t dskip = skip > sizeof(q->hdr) ? skip - sizeof(q->hdr) : 0;
			if (q->data_len > dskip)
				iov[n++] = (struct iovec){q->buf + dskip, q->data_len - dskip};
			skip = 0;
		}
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			client_close(c);
			return;
		}
		size_t left = (size_t)w + c->rq_off;
		while (c->rq_head) {
			struct nreq *q = c->rq_head;
			size_t whole = sizeof(q->hdr) + q->data_len;
			if (left < whole)
				break;
			left -= whole;
			c->rq_head = q->next;
			nreq_put(q);
		}
		if (!c->rq_head)
			c->rq_tail = NULL;
		c->rq_off = left;
	}
	bool more = c->out.len || c->rq_head;
	loop_watch_mod(c->d->loop, &c->w, EPOLLIN | (more ? EPOLLOUT : 0));
}

static void flush_later(void *arg)
{
	struct nbd_client *c = arg;
	c->flush_deferred = false;
	if (!c->dead)
		client_flush(c);
}

/* Queue a simple reply (q's data, for a successful READ); sent after this loop iteration. */
static void queue_reply(struct nbd_client *c, struct nreq *q, uint32_t err)
{
	if (c->dead) {
		nreq_put(q);
		return;
	}
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
	if (!c->flush_deferred) {
		c->flush_deferred = true;
		loop_defer(c->d->loop, flush_later, c);
	}
}

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

static void opt_reply(struct nbd_client *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	put64(&c->out, NBD_REP_MAGIC);
	put32(&c->out, opt);
	put32(&c->out, type);
	put32(&c->out, len);
	if (len)
		sbuf_append(&c->out, data, len);
}

static uint16_t tx_flags(void) { return NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM; }

static uint32_t nbd_errno(int err, const struct ism_scsi_result *r)
{
	if (err == -ENOBUFS)
		return ENOMEM;
	if (err)
		return EIO;
	if (r && r->status == 0)
		return 0;
	uint8_t key, asc, ascq;
	if (r && ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq)) {
		if (key == 7)
			return EPERM;
		if (key == 5 && asc == 0x21)
			return ENOSPC;
	}
	return EIO;
}

static void nreq_done(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct nreq *q = io->priv;
	struct nbd_client *c = q->c;
	uint32_t e = nbd_errno(err, r);
	if (q->type == NBD_CMD_TRIM)
		e = err ? EIO : 0; /* UNMAP refused: a trim is only a hint */
	c->inflight--;
	queue_reply(c, q, e); /* frees q when the client is gone */
	if (c->dead && !c->inflight)
		loop_defer(c->d->loop, (loop_fn)client_free, c);
}

/* Submit a READ, WRITE (q->buf holds the payload), FLUSH or TRIM that passed the checks. */
static void submit(struct nbd_client *c, struct dsession *s, struct nreq *q, uint16_t flags, uint64_t off,
		   uint32_t bs)
{
	struct dio *io = &q->io;
	io->lun = c->lun;
	io->priv = q;
	io->done = nreq_done;
	switch (q->type) {
	case NBD_CMD_READ:
		io->dir = ISM_DIR_READ;
		io->buf = q->buf;
		io->len = q->len;
		io->cdb_len = ism_cdb_rw16(io->cdb, false, off / bs, q->len / bs);
		break;
	case NBD_CMD_WRITE:
		io->dir = ISM_DIR_WRITE;
		io->buf = q->buf;
		io->len = q->len;
		io->cdb_len = ism_cdb_rw16(io->cdb, true, off / bs, q->len / bs);
		if (flags & NBD_CMD_FLAG_FUA)
			io->cdb[1] |= 0x08;
		break;
	case NBD_CMD_FLUSH:
		io->dir = ISM_DIR_NONE;
		io->cdb_len = ism_cdb_sync_cache10(io->cdb);
		break;
	case NBD_CMD_TRIM: {
		/* UNMAP with one descriptor (blocks capped at 2^32-1) */
		uint8_t *u = q->unmap;
		memset(u, 0, sizeof(q->unmap));
		put_be16(u, 22);
		put_be16(u + 2, 16);
		put_be64(u + 8, off / bs);
		uint64_t blocks = q->len / bs;
		put_be32(u + 16, blocks > 0xffffffffu ? 0xffffffffu : (uint32_t)blocks);
		io->dir = ISM_DIR_WRITE;
		io->buf = u;
		io->len = 24;
		io->cdb_len = ism_cdb_unmap(io->cdb, 24);
		break;
	}
	}
	c->inflight++;
	dio_submit(s, io);
}

/* One transmission request; returns bytes consumed from in (0: need more), -1 to drop the client.
 * A large WRITE whose payload is not all in yet becomes c->wr (its header and the part present
 * consumed), and the rest is read into its buffer. */
static long handle_request(struct nbd_client *c, const uint8_t *p, size_t n)
{
	if (n < 28)
		return 0;
	if (get_be32(p) != NBD_REQUEST_MAGIC)
		return -1;
	uint16_t flags = get_be16(p + 4), type = get_be16(p + 6);
	uint64_t cookie = get_be64(p + 8), off = get_be64(p + 16);
	uint32_t len = get_be32(p + 24);
	size_t need = 28 + (type == NBD_CMD_WRITE ? len : 0);
	if (type == NBD_CMD_WRITE && len > NBD_MAX_IO)
		return -1; /* cannot skip that much payload safely */
	if (n < need && !(type == NBD_CMD_WRITE && len >= NBD_DIRECT_MIN))
		return 0;
	if (type == NBD_CMD_DISC) {
		client_close(c);
		return (long)need;
	}
	struct dsession *s;
	struct dlun *l = live_lun(c->d, c->sid, c->lun, &s);
	uint32_t err = 0;
	uint32_t bs = l && l->block_size ? l->block_size : 512;
	if (!l) {
		err = EIO;
	} else {
		switch (type) {
		case NBD_CMD_READ:
		case NBD_CMD_WRITE:
		case NBD_CMD_TRIM:
			if (off % bs || len % bs || off + len > l->capacity_bytes || off + len < off)
				err = off + len > l->capacity_bytes ? ENOSPC : EINVAL;
			else if (len > NBD_MAX_IO && type != NBD_CMD_TRIM)
				err = EINVAL;
			break;
		case NBD_CMD_FLUSH:
			break;
		default:
			err = EINVAL;
		}
	}
	bool data = type == NBD_CMD_READ || type == NBD_CMD_WRITE;
	/* A large WRITE whose payload is still coming is read into q->buf even when refused. */
	struct nreq *q = nreq_get(c, (data && !err) || n < need ? len : 0);
	q->cookie = cookie;
	q->type = type;
	q->len = len;
	if (n < need) {
		/* take what is here, read the rest into q->buf, then submit or answer the error */
		memcpy(q->buf, p + 28, n - 28);
		c->wr = q;
		c->wr_have = (uint32_t)(n - 28);
		c->wr_off = off;
		c->wr_flags = flags;
		q->err = err;
		return (long)n;
	}
	if (err || ((data || type == NBD_CMD_TRIM) && len == 0)) {
		queue_reply(c, q, err);
		return (long)need;
	}
	if (type == NBD_CMD_WRITE)
		memcpy(q->buf, p + 28, len);
	submit(c, s, q, flags, off, bs);
	return (long)need;
}

/* The payload of c->wr is complete: submit it (or answer the error found at its header). */
static void direct_write_done(struct nbd_client *c)
{
	struct nreq *q = c->wr;
	c->wr = NULL;
	uint32_t err = q->err;
	struct dsession *s;
	struct dlun *l = live_lun(c->d, c->sid, c->lun, &s);
	if (!err && !l)
		err = EIO;
	if (err) {
		queue_reply(c, q, err);
		return;
	}
	submit(c, s, q, c->wr_flags, c->wr_off, l->block_size ? l->block_size : 512);
}

static long handle_option(struct nbd_client *c, const uint8_t *p, size_t n)
{
	if (n < 16)
		return 0;
	if (get_be64(p) != NBD_OPTS_MAGIC)
		return -1;
	uint32_t opt = get_be32(p + 8), len = get_be32(p + 12);
	if (len > NBD_MAX_OPT)
		return -1;
	if (n < 16 + (size_t)len)
		return 0;
	const uint8_t *data = p + 16;
	struct dsession *s;
	struct dlun *l = live_lun(c->d, c->sid, c->lun, &s);
	uint64_t size = l ? l->capacity_bytes : 0;
	uint32_t bs = l && l->block_size ? l->block_size : 512;
	switch (opt) {
	case NBD_OPT_EXPORT_NAME:
		if (!l)
			return -1;
		put64(&c->out, size);
		put16(&c->out, tx_flags());
		if (!c->no_zeroes) {
			uint8_t z[124] = {0};
			sbuf_append(&c->out, z, sizeof(z));
		}
		c->phase = 2;
		break;
	case NBD_OPT_ABORT:
		opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		client_flush(c);
		client_close(c);
		return 16 + (long)len;
	case NBD_OPT_LIST: {
		uint8_t name[4] = {0};
		opt_reply(c, opt, NBD_REP_SERVER, name, 4);
		opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		break;
	}
	case NBD_OPT_INFO:
	case NBD_OPT_GO: {
		if (len < 6 || !l) {
			opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
			break;
		}
		uint8_t info[12];
		put_be16(info, NBD_INFO_EXPORT);
		put_be64(info + 2, size);
		put_be16(info + 10, tx_flags());
		opt_reply(c, opt, NBD_REP_INFO, info, sizeof(info));
		uint8_t bsz[14];
		put_be16(bsz, NBD_INFO_BLOCK_SIZE);
		put_be32(bsz + 2, bs);
		put_be32(bsz + 6, bs > 4096 ? bs : 4096);
		put_be32(bsz + 10, NBD_MAX_IO);
		opt_reply(c, opt, NBD_REP_INFO, bsz, sizeof(bsz));
		opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		if (opt == NBD_OPT_GO)
			c->phase = 2;
		break;
	}
	default:
		(void)data;
		opt_reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
		break;
	}
	client_flush(c);
	return 16 + (long)len;
}

static void client_io(void *arg, uint32_t events)
{
	struct nbd_client *c = arg;
	if (events & EPOLLOUT)
		client_flush(c);
	if (c->dead || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	if (c->wr) {
		/* the rest of a large WRITE's payload, straight into its buffer */
		ssize_t r = read(c->fd, c->wr->buf + c->wr_have, c->wr->len - c->wr_have);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			client_close(c);
			return;
		}
		if (r < 0)
			return;
		c->wr_have += (uint32_t)r;
		if (c->wr_have == c->wr->len)
			direct_write_done(c);
		return; /* epoll calls again for what follows */
	}
	sbuf_reserve(&c->in, NBD_READ_CHUNK);
	ssize_t r = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(c);
		return;
	}
	if (r < 0)
		return;
	c->in.len += (size_t)r;
	size_t off = 0;
	while (!c->dead && !c->wr) {
		const uint8_t *p = c->in.data + off;
		size_t n = c->in.len - off;
		long used;
		if (c->phase == 0) {
			if (n < 4)
				break;
			uint32_t fl = get_be32(p);
			c->no_zeroes = fl & NBD_FLAG_C_NO_ZEROES;
			c->phase = 1;
			used = 4;
		} else if (c->phase == 1) {
			used = handle_option(c, p, n);
		} else {
			used = handle_request(c, p, n);
		}
		if (used < 0) {
			client_close(c);
			return;
		}
		if (used == 0)
			break;
		off += (size_t)used;
	}
	if (c->dead)
		return;
	if (off) {
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
}

static void on_accept(void *arg, uint32_t events)
{
	(void)events;
	struct nbd_export *e = arg;
	for (;;) {
		int fd = accept4(e->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct nbd_client *c = xcalloc(1, sizeof(*c));
		c->d = e->d;
		c->e = e;
		c->sid = e->sid;
		c->lun = e->lun;
		c->fd = fd;
		if (loop_watch_add(e->d->loop, &c->w, fd, EPOLLIN, client_io, c) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = e->clients;
		e->clients = c;
		put64(&c->out, NBD_MAGIC);
		put64(&c->out, NBD_OPTS_MAGIC);
		put16(&c->out, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
		client_flush(c);
	}
}

struct nbd_export *nbd_export_new(struct dsession *s, struct dlun *l, char *err, size_t errlen)
{
	struct daemon *d = s->d;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *path = xasprintf("%s/%s-lun%" PRIu64 ".sock", d->cfg.nbd_dir, s->idstr, l->lun);
	size_t plen = strlen(path);
	if (plen >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		free(path);
		return NULL;
	}
	memcpy(sa.sun_path, path, plen + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	unlink(path);
	mode_t old = umask(0177);
	int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 8) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(path);
		return NULL;
	}
	struct nbd_export *e = xcalloc(1, sizeof(*e));
	e->d = d;
	e->sid = s->id;
	e->lun = l->lun;
	e->path = path;
	e->fd = fd;
	loop_watch_add(d->loop, &e->w, fd, EPOLLIN, on_accept, e);
	return e;
}

void nbd_export_free(struct nbd_export *e)
{
	if (!e)
		return;
	loop_watch_del(e->d->loop, &e->w);
	close(e->fd);
	unlink(e->path);
	while (e->clients)
		client_close(e->clients);
	free(e->path);
	free(e);
}
