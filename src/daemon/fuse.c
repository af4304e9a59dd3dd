/*
 * Local devices as files: one FUSE file system (libfuse3 low-level API) mounted on the devices
 * directory, <session-id>/lun<N> per exposed LUN. The /dev/fuse descriptor is read in the daemon's
 * event loop, so every request runs on the loop thread and is answered when its SCSI command
 * completes; no lock is needed. Files are opened with direct_io: every read and write reaches the
 * target (no page cache to go stale across reconnects); fsync becomes SYNCHRONIZE CACHE.
 *
 * Throughput: the descriptor is non-blocking and each wakeup reads every request the kernel has
 * queued (up to FUSE_BATCH), each one submitted at once, answered when its command completes, so
 * many requests are in flight. The kernel sends asynchronous direct I/O (libaio, io_uring) as
 * "background" requests, of which it keeps at most max_background in flight: 12 by default,
 * raised here to FUSE_MAX_BACKGROUND. Request structures and their buffers are reused from a
 * free list.
 *
 * Writes to one LUN therefore overlap in time, and the kernel does not keep asynchronous ones
 * apart (it drops the inode lock once a request is queued). An unaligned write is a
 * read-modify-write of whole blocks, which loses whatever another write puts in those blocks
 * between its READ and its WRITE: writes take a block-range lock (see "write ordering" below).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/fuse.h"
#include "daemon/fuse_ops.h"
#include "daemon/io.h"
#include "daemon/session.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sbuf.h"

#define FUSE_MAX_IO (1u << 20)
#define FUSE_BATCH 64            /* requests read per wakeup at most (then the loop runs again) */
#define FUSE_MAX_BACKGROUND 128  /* asynchronous requests the kernel keeps in flight */
#define FIO_POOL_MAX 256         /* request structures kept for reuse */
#define FIO_POOL_BUF (128u << 10) /* buffers up to this size are kept with them */

struct fuse_dev {
	struct daemon *d;
	struct fuse_session *se;
	struct loop_watch w;
	struct fuse_buf buf;
	char *mountpoint;
	bool mounted;
};

static struct daemon *dmn(fuse_req_t req) { return fuse_req_userdata(req); }

static fuse_ino_t dir_ino(const struct dsession *s) { return (fuse_ino_t)(s->id << 16); }
static fuse_ino_t lun_ino(const struct dsession *s, uint64_t lun) { return (fuse_ino_t)((s->id << 16) | (lun + 1)); }

static struct dsession *session_of(struct daemon *d, fuse_ino_t ino)
{
	uint64_t id = (uint64_t)ino >> 16;
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->id == id && s->devices_present && s->state != DS_GONE)
			return s;
	return NULL;
}

static struct dlun *lun_of(struct dsession *s, fuse_ino_t ino)
{
	uint64_t low = (uint64_t)ino & 0xffff;
	if (!low)
		return NULL;
	struct dlun *l = dsess_lun(s, low - 1);
	return l && l->exposed ? l : NULL;
}

static void fill_attr(struct stat *st, fuse_ino_t ino, struct dsession *s, struct dlun *l)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (!l) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = (off_t)l->capacity_bytes;
		st->st_blocks = (blkcnt_t)(l->capacity_bytes / 512);
		st->st_blksize = l->block_size > 4096 ? l->block_size : 4096;
	}
	time_t t = s ? s->state_since : time(NULL);
	st->st_atime = st->st_mtime = st->st_ctime = t;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino, struct dsession *s, struct dlun *l)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.attr_timeout = 0;  /* devices come and go: the kernel asks every time */
	e.entry_timeout = 0;
	fill_attr(&e.attr, ino, s, l);
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct daemon *d = dmn(req);
	if (parent == FUSE_ROOT_ID) {
		struct dsession *s = dsess_find(d, name);
		if (!s || !s->devices_present) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		reply_entry(req, dir_ino(s), s, NULL);
		return;
	}
	struct dsession *s = session_of(d, parent);
	uint64_t n;
	if (!s || ((uint64_t)parent & 0xffff) || strncmp(name, "lun", 3) != 0 || !name[3]) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct dlun *l = parse_uint(name + 3, 10, 0, 0xfffe, &n) == 0 ? dsess_lun(s, n) : NULL;
	if (!l || !l->exposed) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	reply_entry(req, lun_ino(s, l->lun), s, l);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct daemon *d = dmn(req);
	struct stat st;
	if (ino == FUSE_ROOT_ID) {
		fill_attr(&st, ino, NULL, NULL);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	struct dsession *s = session_of(d, ino);
	struct dlun *l = s ? lun_of(s, ino) : NULL;
	if (!s || (((uint64_t)ino & 0xffff) && !l)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(&st, ino, s, l);
	fuse_reply_attr(req, &st, 0);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	struct daemon *d = dmn(req);
	struct sbuf b = {0};
	struct stat st;
	memset(&st, 0, sizeof(st));
	char name[64];
#define ADD(nm, i, mode)                                                                                     \
	do {                                                                                                 \
		st.st_ino = (i);                                                                             \
		st.st_mode = (mode);                                                                         \
		size_t need = fuse_add_direntry(req, NULL, 0, (nm), NULL, 0);                                \
		sbuf_reserve(&b, need);                                                                      \
		fuse_add_direntry(req, (char *)b.data + b.len, need, (nm), &st, (off_t)(b.len + need));      \
		b.len += need;                                                                               \
	} while (0)
	if (ino == FUSE_ROOT_ID) {
		ADD(".", FUSE_ROOT_ID, S_IFDIR);
		ADD("..", FUSE_ROOT_ID, S_IFDIR);
		for (struct dsession *s = d->sessions; s; s = s->next)
			if (s->devices_present && s->state != DS_GONE)
				ADD(s->idstr, dir_ino(s), S_IFDIR);
	} else {
		struct dsession *s = session_of(d, ino);
		if (!s || ((uint64_t)ino & 0xffff)) {
			sbuf_free(&b);
			fuse_reply_err(req, ENOTDIR);
			return;
		}
		ADD(".", ino, S_IFDIR);
		ADD("..", FUSE_ROOT_ID, S_IFDIR);
		for (size_t i = 0; i < s->nluns; i++) {
			if (!s->luns[i].exposed)
				continue;
			snprintf(name, sizeof(name), "lun%" PRIu64, s->luns[i].lun);
			ADD(name, lun_ino(s, s->luns[i].lun), S_IFREG);
		}
	}
#undef ADD
	if ((size_t)off >= b.len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (char *)b.data + off, b.len - (size_t)off < size ? b.len - (size_t)off : size);
	sbuf_free(&b);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dsession *s = session_of(dmn(req), ino);
	struct dlun *l = s ? lun_of(s, ino) : NULL;
	if (!l) {
		fuse_reply_err(req, s ? EISDIR : ENOENT);
		return;
	}
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->nonseekable = 0;
	/* No parallel direct writes (FOPEN_PARALLEL_DIRECT_WRITES): the kernel's inode lock keeps
	 * synchronous writers apart. Asynchronous ones are not (the lock is dropped once a request is
	 * queued): the write ordering below protects read-modify-writes from them. */
	fuse_reply_open(req, fi);
}

/* ---- I/O: each FUSE request becomes one or two SCSI commands (read-modify-write when unaligned) */

/* The command a request waits for. */
enum fio_phase {
	FIO_READ,     /* READ of the blocks asked */
	FIO_RMW_READ, /* unaligned write: READ of the blocks around it */
	FIO_WRITE,    /* WRITE of the blocks */
	FIO_SYNC,     /* SYNCHRONIZE CACHE */
};

struct fio {
	struct dio io;
	fuse_req_t req;
	uint64_t sid;
	uint64_t lun;
	uint32_t bs;
	uint64_t off;   /* byte offset asked */
	size_t size;    /* bytes asked */
	uint64_t lba;   /* first block of the aligned range */
	uint32_t blocks;
	uint8_t *buf;   /* aligned range */
	size_t cap;     /* bytes allocated at buf */
	uint8_t *wcopy; /* unaligned write: the data, until the blocks around it are read */
	size_t wcap;
	enum fio_phase phase;
	bool rmw;       /* read-modify-write, in either phase: it rewrites bytes it was not given */
	/* write ordering: every write from arrival to reply */
	struct fio *wprev, *wnext;
	bool wlisted;   /* in the list of writes */
	bool wwaiting;  /* not started: an earlier write conflicts with it */
	bool wdone;     /* answered; unlinked by the scan that runs now */
	struct fio *next_free;
};

/* Free list of request structures (with their buffers); a static so that requests that end after
 * fusedev_stop still find it (they are then freed). */
static struct fio *fio_pool;
static unsigned fio_pool_n;
static bool fio_pool_open;

static int errno_of(int err, const struct ism_scsi_result *r)
{
	if (err)
		return -err;
	if (r && r->status == SCSI_GOOD)
		return 0;
	if (r && r->status == SCSI_RESERVATION_CONFLICT)
		return EACCES;
	if (r) {
		uint8_t key, asc, ascq;
		if (ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq)) {
			if (key == SK_DATA_PROTECT)
				return EROFS;
			if (key == SK_ILLEGAL_REQUEST && asc == SCSI_ASC_LBA_OUT_OF_RANGE)
				return ENOSPC;
		}
	}
	return EIO;
}

static void fio_release(struct fio *f)
{
	free(f->buf);
	free(f->wcopy);
	free(f);
}

static void fio_free(struct fio *f)
{
	if (!fio_pool_open || fio_pool_n >= FIO_POOL_MAX || f->cap > FIO_POOL_BUF || f->wcap > FIO_POOL_BUF) {
		fio_release(f);
		return;
	}
	f->next_free = fio_pool;
	fio_pool = f;
	fio_pool_n++;
}

static void fio_pool_drain(void)
{
	while (fio_pool) {
		struct fio *f = fio_pool;
		fio_pool = f->next_free;
		fio_release(f);
	}
	fio_pool_n = 0;
}

/* A request structure with a buffer of at least len bytes (contents undefined). */
static struct fio *fio_get(size_t len)
{
	struct fio *f = fio_pool;
	if (f) {
		fio_pool = f->next_free;
		fio_pool_n--;
	} else {
		f = xcalloc(1, sizeof(*f));
	}
	uint8_t *buf = f->buf, *wcopy = f->wcopy;
	size_t cap = f->cap, wcap = f->wcap;
	xbuf_reserve(&buf, &cap, len);
	memset(f, 0, sizeof(*f));
	f->buf = buf;
	f->cap = cap;
	f->wcopy = wcopy;
	f->wcap = wcap;
	return f;
}

static void fio_send(struct fio *f, struct dsession *s);
static void fio_continue(struct fio *f, struct dsession *s);

/* ---- write ordering: a block-range lock per session and LUN
 *
 * Writes are listed in arrival order until answered. A write starts when no earlier write of the
 * same session and LUN overlaps its blocks with a read-modify-write on either side; waiting
 * writes start, in arrival order, as those before them end. Two aligned writes may overlap as on
 * a disk: neither reads what the other writes. Earlier writes block even while they wait
 * themselves, so a later write never overtakes an earlier one it conflicts with and none starves.
 * Reads and SYNCHRONIZE CACHE are not ordered: the kernel gives no order between them and writes
 * in flight either.
 *
 * Nothing waits forever: a started write always ends in its completion callback (a lost session
 * fails its I/O), and the first waiting write only waits for started ones. */
static struct {
	struct fio *head, *tail;
	unsigned waiting;
	bool scanning; /* starting a write may end it (and others) at once: no recursion, no unlinking */
	bool rescan;
} wq;

static bool wq_conflict(const struct fio *a, const struct fio *b)
{
	if (a->wdone || a->sid != b->sid || a->lun != b->lun || (!a->rmw && !b->rmw))
		return false;
	/* in bytes: a new probe of the LUN may change its block size between two writes */
	uint64_t a0 = a->lba * a->bs, a1 = a0 + (uint64_t)a->blocks * a->bs;
	uint64_t b0 = b->lba * b->bs, b1 = b0 + (uint64_t)b->blocks * b->bs;
	return a0 < b1 && b0 < a1;
}

static bool wq_may_start(const struct fio *f)
{
	for (const struct fio *e = wq.head; e && e != f; e = e->wnext)
		if (wq_conflict(e, f))
			return false;
	return true;
}

static void wq_unlink(struct fio *f)
{
	*(f->wprev ? &f->wprev->wnext : &wq.head) = f->wnext;
	*(f->wnext ? &f->wnext->wprev : &wq.tail) = f->wprev;
	f->wprev = f->wnext = NULL;
	f->wlisted = false;
}

/* Lists a write; true if it may start now. */
static bool wq_enter(struct fio *f)
{
	f->wprev = wq.tail;
	f->wnext = NULL;
	*(wq.tail ? &wq.tail->wnext : &wq.head) = f;
	wq.tail = f;
	f->wlisted = true;
	if (wq_may_start(f))
		return true;
	f->wwaiting = true;
	wq.waiting++;
	return false;
}

static void wq_scan(void)
{
	wq.scanning = true;
	do {
		wq.rescan = false;
		/* Only this loop unlinks while scanning, and new writes go to the tail: next stays valid
		 * whatever starting e does. */
		for (struct fio *e = wq.head, *next; e; e = next) {
			next = e->wnext;
			if (e->wdone) {
				wq_unlink(e);
				fio_free(e);
			} else if (e->wwaiting && wq_may_start(e)) {
				e->wwaiting = false;
				wq.waiting--;
				/* the session may have gone while the write waited */
				fio_continue(e, dsess_by_id(dmn(e->req), e->sid));
			}
		}
	} while (wq.rescan);
	wq.scanning = false;
}

/* A request is answered: free it, and start the writes that waited for it. */
static void fio_finish(struct fio *f)
{
	if (!f->wlisted) {
		fio_free(f);
		return;
	}
	if (wq.scanning) {
		f->wdone = true;
		wq.rescan = true;
		return;
	}
	wq_unlink(f);
	fio_free(f);
	if (wq.waiting)
		wq_scan();
}

/* The FUSE session goes: answer the writes still waiting while their requests can be answered;
 * started ones end in their callbacks. */
static void wq_drop_waiting(void)
{
	for (struct fio *e = wq.head, *next; e; e = next) {
		next = e->wnext;
		if (!e->wwaiting)
			continue;
		fuse_reply_err(e->req, EIO);
		wq_unlink(e);
		wq.waiting--;
		fio_release(e);
	}
}

static void fio_done(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct fio *f = io->priv;
	int e = errno_of(err, r);
	if (e) {
		if (err == -ENOBUFS)
			log_warn("FUSE I/O on %s LUN %" PRIu64 " refused: the reconnect queue is full", io->s->idstr, f->lun);
		fuse_reply_err(f->req, e);
		fio_finish(f);
		return;
	}
	switch (f->phase) {
	case FIO_READ:
		fuse_reply_buf(f->req, (const char *)f->buf + (f->off - f->lba * f->bs), f->size);
		fio_finish(f);
		return;
	case FIO_RMW_READ:
		memcpy(f->buf + (f->off - f->lba * f->bs), f->wcopy, f->size);
		f->phase = FIO_WRITE;
		fio_continue(f, io->s);
		return;
	case FIO_WRITE:
		fuse_reply_write(f->req, f->size);
		fio_finish(f);
		return;
	case FIO_SYNC:
		fuse_reply_err(f->req, 0);
		fio_finish(f);
		return;
	}
}

/* The next command of a request that has not just been checked: its session (NULL when gone) and
 * its LUN's device may have gone meanwhile. */
static void fio_continue(struct fio *f, struct dsession *s)
{
	struct dlun *l = s ? dsess_lun(s, f->lun) : NULL;
	if (!l || !l->exposed) {
		fuse_reply_err(f->req, EIO);
		fio_finish(f);
		return;
	}
	fio_send(f, s);
}

/* The command of f's phase on s, the session f's LUN is exposed by. */
static void fio_send(struct fio *f, struct dsession *s)
{
	struct dio *io = &f->io;
	memset(io, 0, sizeof(*io));
	io->lun = f->lun;
	io->priv = f;
	io->done = fio_done;
	io->whole = true; /* a short READ must not be answered (or merged) as data */
	switch (f->phase) {
	case FIO_READ:
	case FIO_RMW_READ:
		io->dir = ISM_DIR_READ;
		io->buf = f->buf;
		io->len = f->blocks * f->bs;
		io->cdb_len = ism_cdb_rw16(io->cdb, false, f->lba, f->blocks);
		break;
	case FIO_WRITE:
		io->dir = ISM_DIR_WRITE;
		io->buf = f->buf;
		io->len = f->blocks * f->bs;
		io->cdb_len = ism_cdb_rw16(io->cdb, true, f->lba, f->blocks);
		break;
	case FIO_SYNC:
		io->dir = ISM_DIR_NONE;
		io->cdb_len = ism_cdb_sync_cache10(io->cdb);
		break;
	}
	dio_submit(s, io);
}

/* A request on the LUN file ino, its session into *sp; NULL with *e when there is none. */
static struct fio *fio_new(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct dsession **sp, int *e)
{
	struct dsession *s = session_of(dmn(req), ino);
	struct dlun *l = s ? lun_of(s, ino) : NULL;
	if (!l) {
		*e = EIO;
		return NULL;
	}
	uint32_t bs = l->block_size ? l->block_size : 512;
	uint64_t o = off < 0 ? UINT64_MAX : (uint64_t)off, sz = size;
	/* the file ends at the LUN's capacity: nothing past it, whatever offset and size say */
	if (o >= l->capacity_bytes)
		o = l->capacity_bytes, sz = 0;
	else if (sz > l->capacity_bytes - o)
		sz = l->capacity_bytes - o;
	uint64_t lba = o / bs, end = (o + sz + bs - 1) / bs;
	struct fio *f = fio_get((size_t)(end - lba) * bs + 1);
	f->req = req;
	f->sid = s->id;
	f->lun = l->lun;
	f->bs = bs;
	f->off = o;
	f->size = (size_t)sz;
	f->lba = lba;
	f->blocks = (uint32_t)(end - lba);
	*sp = s;
	*e = 0;
	return f;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	int e;
	if (size > FUSE_MAX_IO)
		size = FUSE_MAX_IO;
	struct dsession *s;
	struct fio *f = fio_new(req, ino, size, off, &s, &e);
	if (!f) {
		fuse_reply_err(req, e);
		return;
	}
	if (!f->size) {
		fuse_reply_buf(req, NULL, 0);
		fio_finish(f);
		return;
	}
	f->phase = FIO_READ;
	fio_send(f, s);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)fi;
	int e;
	if (size > FUSE_MAX_IO) {
		fuse_reply_err(req, EINVAL); /* more than the kernel ever sends (max_write) */
		return;
	}
	if (!size) {
		fuse_reply_write(req, 0); /* nothing to write: no read-modify-write of the block around it */
		return;
	}
	struct dsession *s;
	struct fio *f = fio_new(req, ino, size, off, &s, &e);
	if (!f) {
		fuse_reply_err(req, e);
		return;
	}
	if (f->size < size) {
		fuse_reply_err(req, f->size ? EIO : ENOSPC);
		fio_finish(f);
		return;
	}
	if (f->off % f->bs == 0 && f->size % f->bs == 0) {
		memcpy(f->buf, buf, size);
		f->phase = FIO_WRITE;
	} else {
		f->rmw = true;
		/* Unaligned: read the blocks around it first. */
		xbuf_reserve(&f->wcopy, &f->wcap, size);
		memcpy(f->wcopy, buf, size);
		f->phase = FIO_RMW_READ;
	}
	if (wq_enter(f))
		fio_send(f, s);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	int e;
	struct dsession *s;
	struct fio *f = fio_new(req, ino, 0, 0, &s, &e);
	if (!f) {
		fuse_reply_err(req, e);
		return;
	}
	f->phase = FIO_SYNC;
	fio_send(f, s);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	(void)attr;
	(void)fi;
	/* A device has a fixed size: truncation (O_TRUNC, mkfs) is accepted and ignored. */
	(void)to_set;
	op_getattr(req, ino, NULL);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs sv;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	conn->max_background = FUSE_MAX_BACKGROUND;
	conn->congestion_threshold = FUSE_MAX_BACKGROUND * 3 / 4;
}

const struct fuse_lowlevel_ops dmn_fuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readdir = op_readdir,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.fsync = op_fsync,
	.flush = op_flush,
	.release = op_release,
	.statfs = op_statfs,
};

static void on_fuse(void *arg, uint32_t events)
{
	(void)events;
	struct fuse_dev *f = arg;
	/* Every queued request, each submitted before the next is read: they are all in flight at
	 * once, and the commands they become leave together. The buffer is reused: handlers copy
	 * what outlives them. */
	for (int i = 0; i < FUSE_BATCH; i++) {
		if (fuse_session_exited(f->se))
			return;
		int r = fuse_session_receive_buf(f->se, &f->buf);
		if (r == -EINTR || r == -EAGAIN)
			return;
		if (r <= 0) {
			log_warn("FUSE session on %s ended (%s)", f->mountpoint, r ? strerror(-r) : "unmounted");
			loop_watch_del(f->d->loop, &f->w);
			return;
		}
		fuse_session_process_buf(f->se, &f->buf);
	}
}

static void mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	}
	mkdir(p, 0755);
	free(p);
}

int fusedev_start(struct daemon *d, char *err, size_t errlen)
{
	struct fuse_dev *f = xcalloc(1, sizeof(*f));
	f->d = d;
	f->mountpoint = xstrdup(d->cfg.devices_dir);
	mkdir_p(f->mountpoint);
	char *argv[] = {"isthmus-initiator", "-o", "fsname=isthmus,subtype=isthmus,allow_other,default_permissions",
			NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	f->se = fuse_session_new(&args, &dmn_fuse_ops, sizeof(dmn_fuse_ops), d);
	fuse_opt_free_args(&args);
	if (!f->se) {
		snprintf(err, errlen, "fuse_session_new failed");
		goto fail;
	}
	if (fuse_session_mount(f->se, f->mountpoint) != 0) {
		snprintf(err, errlen, "cannot mount FUSE on %s (is /dev/fuse there?)", f->mountpoint);
		goto fail;
	}
	f->mounted = true;
	int fl = fcntl(fuse_session_fd(f->se), F_GETFL);
	if (fl < 0 || fcntl(fuse_session_fd(f->se), F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "cannot make the FUSE descriptor non-blocking: %s", strerror(errno));
		goto fail;
	}
	if (loop_watch_add(d->loop, &f->w, fuse_session_fd(f->se), EPOLLIN, on_fuse, f) < 0) {
		snprintf(err, errlen, "cannot watch the FUSE descriptor");
		goto fail;
	}
	d->fuse = f;
	fio_pool_open = true;
	log_info("devices appear under %s", f->mountpoint);
	return 0;
fail:
	if (f->se) {
		if (f->mounted)
			fuse_session_unmount(f->se);
		fuse_session_destroy(f->se);
	}
	free(f->mountpoint);
	free(f);
	return -1;
}

void fusedev_stop(struct daemon *d)
{
	struct fuse_dev *f = d->fuse;
	if (!f)
		return;
	wq_drop_waiting();
	loop_watch_del(d->loop, &f->w);
	fuse_session_unmount(f->se);
	fuse_session_destroy(f->se);
	free(f->buf.mem);
	free(f->mountpoint);
	free(f);
	d->fuse = NULL;
	fio_pool_open = false;
	fio_pool_drain();
}

void fusedev_changed(struct daemon *d, struct dsession *s)
{
	/* Entries are never cached by the kernel (timeouts 0): nothing to invalidate. */
	(void)d;
	(void)s;
}
