/*
 * Each exposed LUN served as an NBD export on a Unix socket (<nbd-dir>/<session-id>-lun<N>.sock):
 * the listener, the clients' sockets in the event loop, and the requests turned into SCSI
 * commands of the LUN's session. The protocol itself is nbd_proto.c.
 *
 * Replies are sent after the loop iteration in which they complete, gathered into one sendmsg()
 * per client. A client is not read while it has as much in flight as nbd_proto.h allows.
 *
 * Descriptors: at most nbd-max-clients clients at once over all exports (more are accepted and
 * closed at once). When accept4 fails for want of descriptors or memory, the listener is not
 * watched for a moment (the connection waits in the backlog) instead of being woken again and
 * again by the same pending connection.
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
#include "daemon/io.h"
#include "daemon/nbd.h"
#include "daemon/nbd_proto.h"
#include "daemon/session.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

#define NBD_IOV 128                /* iovecs per sendmsg() (two per reply) */
#define NBD_ACCEPT_BATCH 64        /* connections accepted per wakeup at most */
#define NBD_ACCEPT_PAUSE_MS 200    /* listener rest after accept4 ran out of descriptors */
#define NBD_WARN_INTERVAL_MS 10000 /* one log line per this period for refused clients */

struct nbd_client;

struct nbd_export {
	struct daemon *d;
	uint64_t sid;
	uint64_t lun;
	char *path;
	int fd;
	struct loop_watch w;
	bool watched;
	struct loop_timer resume;
	struct nbd_client *clients;
};

struct nbd_client {
	struct daemon *d;
	struct nbd_export *e; /* NULL once the export is gone */
	struct nbd_client *next;
	uint64_t sid, lun;
	int fd;
	struct loop_watch w;
	uint32_t events; /* what the watch asks for now */
	struct nbd_conn *pc;
	bool dead, flush_deferred, close_after;
};

const char *nbd_export_path(const struct nbd_export *e) { return e->path; }

static struct dlun *live_lun(struct daemon *d, uint64_t sid, uint64_t lun, struct dsession **sp)
{
	struct dsession *s = dsess_by_id(d, sid);
	struct dlun *l = s ? dsess_lun(s, lun) : NULL;
	if (sp)
		*sp = s;
	return l && l->exposed ? l : NULL;
}

static void client_free(void *arg) { free(arg); }

static void client_close(struct nbd_client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	loop_watch_del(c->d->loop, &c->w);
	close(c->fd);
	c->fd = -1;
	if (c->d->nbd_clients)
		c->d->nbd_clients--;
	nbd_conn_release(c->pc); /* requests still running end into nothing */
	c->pc = NULL;
	if (c->e) {
		for (struct nbd_client **pp = &c->e->clients; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		c->e = NULL;
	}
	/* events of this iteration may still name it */
	loop_defer(c->d->loop, client_free, c);
}

/* Read while the engine has room; write while there is output. */
static void update_events(struct nbd_client *c)
{
	if (c->dead)
		return;
	uint32_t want = (nbd_conn_wants_input(c->pc) ? EPOLLIN : 0) | (nbd_conn_tx_pending(c->pc) ? EPOLLOUT : 0);
	if (want != c->events && loop_watch_mod(c->d->loop, &c->w, want) == 0)
		c->events = want;
}

static void client_flush(struct nbd_client *c)
{
	while (!c->dead && nbd_conn_tx_pending(c->pc)) {
		struct iovec iov[NBD_IOV];
		int n = nbd_conn_tx_iov(c->pc, iov, NBD_IOV);
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
		if (nbd_conn_tx_done(c->pc, (size_t)w) == NBD_RX_CLOSE) {
			client_close(c);
			return;
		}
	}
	if (c->dead)
		return;
	if (c->close_after && !nbd_conn_tx_pending(c->pc)) {
		client_close(c);
		return;
	}
	update_events(c);
}

static void flush_later(void *arg)
{
	struct nbd_client *c = arg;
	c->flush_deferred = false;
	if (!c->dead)
		client_flush(c);
}

/* ---- the engine's backend: the LUN of the client's session ---- */

static bool be_info(void *ctx, struct nbd_export_info *out)
{
	struct nbd_client *c = ctx;
	struct dlun *l = live_lun(c->d, c->sid, c->lun, NULL);
	if (!l)
		return false;
	out->size = l->capacity_bytes;
	out->block_size = l->block_size;
	out->read_only = l->readonly;
	return true;
}

static void be_wake(void *ctx)
{
	struct nbd_client *c = ctx;
	if (c->dead || c->flush_deferred)
		return;
	c->flush_deferred = true;
	loop_defer(c->d->loop, flush_later, c);
}

static uint32_t nbd_errno(int err, const struct ism_scsi_result *r)
{
	if (err == -ENOBUFS)
		return ENOMEM;
	if (err)
		return EIO;
	if (r && r->status == SCSI_GOOD)
		return 0;
	uint8_t key, asc, ascq;
	if (r && ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq)) {
		if (key == SK_DATA_PROTECT)
			return EPERM;
		if (key == SK_ILLEGAL_REQUEST && asc == SCSI_ASC_LBA_OUT_OF_RANGE)
			return ENOSPC;
	}
	return EIO;
}

static void req_done(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct nbd_req *q = io->priv;
	uint32_t e = nbd_errno(err, r);
	if (q->type == NBD_CMD_TRIM)
		e = err ? EIO : 0; /* UNMAP refused: a trim is only a hint */
	nbd_req_done(q, e);
}

static void be_submit(void *ctx, struct nbd_req *q)
{
	struct nbd_client *c = ctx;
	struct dsession *s;
	if (!live_lun(c->d, c->sid, c->lun, &s)) {
		nbd_req_done(q, EIO);
		return;
	}
	struct dio *io = &q->io;
	uint32_t bs = q->block_size;
	switch (q->type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE: {
		bool write = q->type == NBD_CMD_WRITE;
		dio_prepare_rw16(io, s, c->lun, write, q->offset / bs, q->len / bs, bs, q->buf, req_done, q);
		if (write && (q->flags & NBD_CMD_FLAG_FUA))
			io->cdb[1] |= 0x08;
		break;
	}
	case NBD_CMD_FLUSH:
		dio_prepare(io, s, c->lun, ISM_DIR_NONE, NULL, 0, req_done, q);
		io->cdb_len = ism_cdb_sync_cache10(io->cdb);
		break;
	case NBD_CMD_TRIM: {
		/* UNMAP with one descriptor (blocks capped at 2^32-1) */
		uint8_t *u = q->param;
		memset(u, 0, sizeof(q->param));
		put_be16(u, 22);
		put_be16(u + 2, 16);
		put_be64(u + 8, q->offset / bs);
		uint64_t blocks = q->len / bs;
		put_be32(u + 16, blocks > 0xffffffffu ? 0xffffffffu : (uint32_t)blocks);
		dio_prepare(io, s, c->lun, ISM_DIR_WRITE, u, 24, req_done, q);
		io->cdb_len = ism_cdb_unmap(io->cdb, 24);
		break;
	}
	default:
		nbd_req_done(q, EINVAL);
		return;
	}
	dio_submit(s, io);
}

/* ---- sockets ---- */

static void client_io(void *arg, uint32_t events)
{
	struct nbd_client *c = arg;
	if (events & EPOLLERR) {
		client_close(c);
		return;
	}
	if (events & EPOLLOUT)
		client_flush(c);
	if (c->dead || !(events & (EPOLLIN | EPOLLHUP)))
		return;
	uint8_t *at;
	size_t room = nbd_conn_rx_space(c->pc, &at);
	if (!room) {
		/* at a bound: a client that hung up is not waited for; otherwise stop reading */
		if (events & EPOLLHUP)
			client_close(c);
		else
			update_events(c);
		return;
	}
	ssize_t r = read(c->fd, at, room);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(c);
		return;
	}
	if (r < 0)
		return;
	switch (nbd_conn_rx_done(c->pc, (size_t)r)) {
	case NBD_RX_CLOSE:
		client_close(c);
		return;
	case NBD_RX_CLOSE_AFTER:
		c->close_after = true;
		client_flush(c);
		return;
	case NBD_RX_OK:
		break;
	}
	update_events(c);
}

static bool warn_due(uint64_t *last)
{
	uint64_t now = loop_now_ms();
	if (*last && now - *last < NBD_WARN_INTERVAL_MS)
		return false;
	*last = now;
	return true;
}

static void client_new(struct nbd_export *e, int fd)
{
	struct nbd_client *c = xcalloc(1, sizeof(*c));
	c->d = e->d;
	c->e = e;
	c->sid = e->sid;
	c->lun = e->lun;
	c->fd = fd;
	c->events = EPOLLIN | EPOLLOUT; /* the greeting goes out first */
	if (loop_watch_add(e->d->loop, &c->w, fd, c->events, client_io, c) < 0) {
		close(fd);
		free(c);
		return;
	}
	struct nbd_backend be = {.info = be_info, .submit = be_submit, .wake = be_wake, .ctx = c};
	c->pc = nbd_conn_new(&be);
	c->next = e->clients;
	e->clients = c;
	e->d->nbd_clients++;
	client_flush(c);
}

static void on_accept(void *arg, uint32_t events);

static void listener_resume(void *arg)
{
	struct nbd_export *e = arg;
	if (!e->watched && loop_watch_add(e->d->loop, &e->w, e->fd, EPOLLIN, on_accept, e) == 0)
		e->watched = true;
}

/* accept4 failed for want of descriptors (or memory): the pending connection would wake the
 * loop again at once, so the listener rests a while; the connection waits in the backlog. */
static void listener_pause(struct nbd_export *e, int err)
{
	static uint64_t last_warn;
	if (warn_due(&last_warn))
		log_warn("NBD export %s: cannot accept a client: %s; not accepting for %d ms at a time until "
			 "descriptors are free", e->path, strerror(err), NBD_ACCEPT_PAUSE_MS);
	if (e->watched) {
		loop_watch_del(e->d->loop, &e->w);
		e->watched = false;
	}
	loop_timer_start(e->d->loop, &e->resume, NBD_ACCEPT_PAUSE_MS, 0, listener_resume, e);
}

static void on_accept(void *arg, uint32_t events)
{
	(void)events;
	struct nbd_export *e = arg;
	struct daemon *d = e->d;
	static uint64_t last_warn;
	for (int i = 0; i < NBD_ACCEPT_BATCH; i++) {
		int fd = accept4(e->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				listener_pause(e, errno);
			return;
		}
		if (d->nbd_clients >= d->cfg.nbd_max_clients) {
			if (warn_due(&last_warn))
				log_warn("NBD export %s: %u clients already (nbd-max-clients); closing new connections",
					 e->path, d->nbd_clients);
			close(fd);
			continue;
		}
		client_new(e, fd);
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
	listener_resume(e);
	return e;
}

void nbd_export_free(struct nbd_export *e)
{
	if (!e)
		return;
	if (e->watched)
		loop_watch_del(e->d->loop, &e->w);
	loop_timer_stop(e->d->loop, &e->resume);
	close(e->fd);
	unlink(e->path);
	while (e->clients)
		client_close(e->clients);
	free(e->path);
	free(e);
}
