/*
 * The daemon's FUSE I/O requests (see fuse.c for the file system around them): each read, write,
 * fsync or fallocate becomes one or two SCSI commands (read-modify-write when unaligned), answered
 * when they complete. Writes that overlap wait for one another ("write ordering" below). Request
 * structures and their buffers are reused from a free list.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/fuse_int.h"
#include "daemon/io.h"
#include "daemon/session.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

#define FIO_POOL_MAX 256         /* request structures kept for reuse */
#define FIO_POOL_BUF (128u << 10) /* buffers up to this size are kept with them */
#define FUSE_ZERO_CHUNK (256ull << 20) /* bytes per WRITE SAME of a hole punch (targets cap its length) */


/* The command a request waits for. */
enum fio_phase {
	FIO_READ,     /* READ of the blocks asked */
	FIO_RMW_READ, /* unaligned write: READ of the blocks around it */
	FIO_WRITE,    /* WRITE of the blocks */
	FIO_SYNC,     /* SYNCHRONIZE CACHE */
	FIO_ZERO,     /* WRITE SAME of zeros over [lba, zero_end), in chunks: hole punch or zero range */
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
	uint64_t zero_end; /* FIO_ZERO: first block past the range */
	bool unmap;        /* FIO_ZERO: deallocate (a hole punch) rather than only zero */
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
	uint8_t key, asc, ascq;
	/* a target without WRITE SAME: the caller (the loop driver) falls back to writing zeros */
	if (e && f->phase == FIO_ZERO && r && ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq) &&
	    key == SK_ILLEGAL_REQUEST)
		e = EOPNOTSUPP;
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
	case FIO_ZERO:
		f->lba += f->blocks;
		if (f->lba < f->zero_end) {
			fio_continue(f, io->s);
			return;
		}
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
	switch (f->phase) {
	case FIO_READ:
	case FIO_RMW_READ:
	case FIO_WRITE:
		/* a short READ must not be answered (or merged) as data */
		dio_prepare_rw16(io, s, f->lun, f->phase == FIO_WRITE, f->lba, f->blocks, f->bs, f->buf, fio_done, f);
		break;
	case FIO_SYNC:
		dio_prepare(io, s, f->lun, ISM_DIR_NONE, NULL, 0, fio_done, f);
		io->cdb_len = ism_cdb_sync_cache10(io->cdb);
		break;
	case FIO_ZERO: {
		/* WRITE SAME (16) of one zero block; UNMAP set for a hole punch. With UNMAP the target
		 * deallocates, and the block still reads as zeros (or it writes them). */
		uint64_t n = f->zero_end - f->lba, max = FUSE_ZERO_CHUNK / f->bs;
		f->blocks = (uint32_t)(n < max ? n : max);
		dio_prepare(io, s, f->lun, ISM_DIR_WRITE, f->buf, f->bs, fio_done, f);
		io->whole = true;
		io->cdb[0] = 0x93;
		io->cdb[1] = f->unmap ? 0x08 : 0;
		put_be64(io->cdb + 2, f->lba);
		put_be32(io->cdb + 10, f->blocks);
		io->cdb_len = 16;
		break;
	}
	}
	dio_submit(s, io);
}

/* A request on the LUN file ino, its session into *sp; NULL with *e when there is none, or when
 * it would write (write) a write-protected LUN. */
static struct fio *fio_new(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool write, struct dsession **sp,
			   int *e)
{
	struct dsession *s = fuse_session_of(dmn(req), ino);
	struct dlun *l = s ? fuse_lun_of(s, ino) : NULL;
	if (!l || (write && l->readonly)) {
		*e = l ? EROFS : EIO;
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

void fuse_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	int e;
	if (size > FUSE_MAX_IO)
		size = FUSE_MAX_IO;
	struct dsession *s;
	struct fio *f = fio_new(req, ino, size, off, false, &s, &e);
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

void fuse_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
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
	struct fio *f = fio_new(req, ino, size, off, true, &s, &e);
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

void fuse_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	int e;
	struct dsession *s;
	struct fio *f = fio_new(req, ino, 0, 0, false, &s, &e);
	if (!f) {
		fuse_reply_err(req, e);
		return;
	}
	f->phase = FIO_SYNC;
	fio_send(f, s);
}

/* Hole punch (a loop device's discard) and zero range (its write zeroes) become WRITE SAME of
 * zeros, with UNMAP for a punch: the target deallocates (UNMAP alone would not promise zeros). */
void fuse_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	(void)fi;
	struct dsession *s = fuse_session_of(dmn(req), ino);
	struct dlun *l = s ? fuse_lun_of(s, ino) : NULL;
	if (!l || l->readonly) {
		fuse_reply_err(req, l ? EROFS : EIO);
		return;
	}
	if (offset < 0 || length <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	uint64_t o = (uint64_t)offset, end = o + (uint64_t)length;
	if (end < o || end > l->capacity_bytes)
		end = l->capacity_bytes;
	if (mode == 0) {
		/* every block of a device is there: nothing to allocate, no size to grow */
		fuse_reply_err(req, (uint64_t)offset + (uint64_t)length > l->capacity_bytes ? EFBIG : 0);
		return;
	}
	bool punch = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	bool zero = (mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE;
	uint32_t bs = l->block_size ? l->block_size : 512;
	if ((!punch && !zero) || o % bs || (end % bs && end != l->capacity_bytes)) {
		fuse_reply_err(req, EOPNOTSUPP); /* partial blocks would need a read-modify-write */
		return;
	}
	if (o >= end) {
		fuse_reply_err(req, 0);
		return;
	}
	struct fio *f = fio_get(bs);
	memset(f->buf, 0, bs);
	f->req = req;
	f->sid = s->id;
	f->lun = l->lun;
	f->bs = bs;
	f->lba = o / bs;
	f->zero_end = end / bs;
	f->unmap = punch;
	f->phase = FIO_ZERO;
	fio_send(f, s);
}

void fuse_io_open(void) { fio_pool_open = true; }

void fuse_io_stop_waiting(void) { wq_drop_waiting(); }

void fuse_io_close(void)
{
	fio_pool_open = false;
	fio_pool_drain();
}
