/*
 * Each exposed LUN served as an NBD export on a Unix socket (<nbd-dir>/<session-id>-lun<N>.sock):
 * fixed newstyle handshake (NBD_OPT_EXPORT_NAME, NBD_OPT_INFO/GO, NBD_OPT_LIST, NBD_OPT_ABORT),
 * then READ, WRITE (with FUA), FLUSH (SYNCHRONIZE CACHE), TRIM (UNMAP) and DISC with simple
 * replies, which may come back out of order (the client matches them by cookie). Runs in the
 * event loop like everything else.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/daemon.h"
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

struct nbd_client;

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
	struct sbuf in, out;
	size_t out_off;
	unsigned inflight;
};

struct nreq {
	struct dio io;
	struct nbd_client *c;
	uint64_t cookie;
	uint16_t type;
	uint8_t *buf;
	uint32_t len;
	uint8_t unmap[24];
};

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

static void client_close(struct nbd_client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	loop_watch_del(c->d->loop, &c->w);
	close(c->fd);
	c->fd = -1;
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

static void client_flush(struct nbd_client *c)
{
	while (!c->dead && c->out_off < c->out.len) {
		ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			client_close(c);
			return;
		}
		c->out_off += (size_t)w;
	}
	if (c->dead)
		return;
	if (c->out_off == c->out.len) {
		sbuf_reset(&c->out);
		c->out_off = 0;
	}
	loop_watch_mod(c->d->loop, &c->w, EPOLLIN | (c->out.len ? EPOLLOUT : 0));
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

static void simple_reply(struct nbd_client *c, uint64_t cookie, uint32_t err, const void *data, uint32_t len)
{
	if (c->dead)
		return;
	put32(&c->out, NBD_SIMPLE_REPLY_MAGIC);
	put32(&c->out, err);
	put64(&c->out, cookie);
	if (!err && len)
		sbuf_append(&c->out, data, len);
	client_flush(c);
}

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
	simple_reply(c, q->cookie, e, q->buf, q->type == NBD_CMD_READ ? q->len : 0);
	free(q->buf);
	free(q);
	c->inflight--;
	if (c->dead && !c->inflight)
		loop_defer(c->d->loop, (loop_fn)client_free, c);
}

/* One transmission request; returns bytes consumed from in (0: need more), -1 to drop the client. */
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
	if (n < need)
		return 0;
	if (type == NBD_CMD_DISC) {
		client_close(c);
		return (long)need;
	}
	struct dsession *s;
	struct dlun *l = live_lun(c->d, c->sid, c->lun, &s);
	if (!l) {
		simple_reply(c, cookie, EIO, NULL, 0);
		return (long)need;
	}
	uint32_t bs = l->block_size ? l->block_size : 512;
	struct nreq *q = xcalloc(1, sizeof(*q));
	q->c = c;
	q->cookie = cookie;
	q->type = type;
	struct dio *io = &q->io;
	io->lun = c->lun;
	io->priv = q;
	io->done = nreq_done;
	uint32_t err = 0;
	switch (type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
		if (off % bs || len % bs || off + len > l->capacity_bytes || off + len < off)
			err = off + len > l->capacity_bytes ? ENOSPC : EINVAL;
		else if (len > NBD_MAX_IO && type != NBD_CMD_TRIM)
			err = EINVAL;
		else if (len == 0)
			err = 0;
		break;
	case NBD_CMD_FLUSH:
		break;
	default:
		err = EINVAL;
	}
	if (err || ((type == NBD_CMD_READ || type == NBD_CMD_WRITE || type == NBD_CMD_TRIM) && len == 0)) {
		simple_reply(c, cookie, err, NULL, 0);
		free(q);
		return (long)need;
	}
	switch (type) {
	case NBD_CMD_READ:
		q->buf = xmalloc(len);
		q->len = len;
		io->dir = ISM_DIR_READ;
		io->buf = q->buf;
		io->len = len;
		io->cdb_len = ism_cdb_rw16(io->cdb, false, off / bs, len / bs);
		break;
	case NBD_CMD_WRITE:
		q->buf = xmalloc(len);
		memcpy(q->buf, p + 28, len);
		q->len = len;
		io->dir = ISM_DIR_WRITE;
		io->buf = q->buf;
		io->len = len;
		io->cdb_len = ism_cdb_rw16(io->cdb, true, off / bs, len / bs);
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
		uint64_t blocks = len / bs;
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
	return (long)need;
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
	uint8_t buf[65536];
	ssize_t r = read(c->fd, buf, sizeof(buf));
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(c);
		return;
	}
	if (r < 0)
		return;
	sbuf_append(&c->in, buf, (size_t)r);
	size_t off = 0;
	while (!c->dead) {
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
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		free(path);
		return NULL;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
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
