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
 * between its READ and its WRITE: writes take a block-range lock ("write ordering" in fuse_io.c).
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
#include "daemon/fuse_int.h"
#include "daemon/fuse_ops.h"
#include "daemon/io.h"
#include "daemon/loopdev.h"
#include "daemon/session.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sbuf.h"

#define FUSE_BATCH 64            /* requests read per wakeup at most (then the loop runs again) */
#define FUSE_MAX_BACKGROUND 128  /* asynchronous requests the kernel keeps in flight */
/* DEVICES_DIR/by-id and its links: inode numbers out of the sessions' range (ids below 2^46) */
#define BYID_DIR_INO ((fuse_ino_t)1 << 62)

struct fuse_dev {
	struct daemon *d;
	struct fuse_session *se;
	struct loop_watch w;
	struct fuse_buf buf;
	char *mountpoint;
	bool mounted;
};

static fuse_ino_t dir_ino(const struct dsession *s) { return (fuse_ino_t)(s->id << 16); }
static fuse_ino_t lun_ino(const struct dsession *s, uint64_t lun) { return (fuse_ino_t)((s->id << 16) | (lun + 1)); }

struct dsession *fuse_session_of(struct daemon *d, fuse_ino_t ino)
{
	uint64_t id = (uint64_t)ino >> 16;
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->id == id && s->devices_present && s->state != DS_GONE)
			return s;
	return NULL;
}

struct dlun *fuse_lun_of(struct dsession *s, fuse_ino_t ino)
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
		st->st_mode = S_IFREG | (l->readonly ? 0400 : 0600);
		st->st_nlink = 1;
		st->st_size = (off_t)l->capacity_bytes;
		st->st_blocks = (blkcnt_t)(l->capacity_bytes / 512);
		st->st_blksize = l->block_size > 4096 ? l->block_size : 4096;
	}
	time_t t = s ? s->state_since : time(NULL);
	st->st_atime = st->st_mtime = st->st_ctime = t;
}

/* ---- by-id: a stable name per LUN, a symbolic link to its block device (or file) */

#define BYID_NAME_MAX 96

static const uint8_t *cached_vpd(const struct dlun *l, int page, uint32_t *len)
{
	for (int k = 0; k < DMN_VPD_CACHED; k++)
		if (l->vpd[k].data && l->vpd[k].page == page && l->vpd[k].len >= 4) {
			*len = l->vpd[k].len;
			return l->vpd[k].data;
		}
	return NULL;
}

/* naa.<hex> or eui.<hex> from the LUN's designators (VPD 0x83), else serial-<unit serial number>
 * (VPD 0x80) with anything but [A-Za-z0-9._-] as '_'. */
static bool by_id_name(const struct dlun *l, char *out, size_t len)
{
	uint32_t n;
	const uint8_t *p = cached_vpd(l, 0x83, &n);
	if (p) {
		size_t end = 4 + (size_t)get_be16(p + 2);
		if (end > n)
			end = n;
		static const struct { int type; const char *prefix; } pref[] = {{3, "naa."}, {2, "eui."}};
		for (size_t k = 0; k < 2; k++) {
			for (size_t o = 4; o + 4 <= end; o += 4 + (size_t)p[o + 3]) {
				const uint8_t *dsg = p + o;
				size_t dl = dsg[3];
				if (o + 4 + dl > end)
					break;
				/* binary code set, associated with the LU */
				if ((dsg[0] & 0x0f) != 1 || (dsg[1] & 0x30) || (dsg[1] & 0x0f) != pref[k].type || !dl ||
				    4 + 2 * dl >= len)
					continue;
				size_t w = (size_t)snprintf(out, len, "%s", pref[k].prefix);
				for (size_t i = 0; i < dl; i++)
					w += (size_t)snprintf(out + w, len - w, "%02x", dsg[4 + i]);
				return true;
			}
		}
	}
	p = cached_vpd(l, 0x80, &n);
	if (p) {
		size_t sl = p[3] < n - 4 ? p[3] : n - 4;
		const uint8_t *sp = p + 4;
		while (sl && sp[0] == ' ')
			sp++, sl--;
		while (sl && (sp[sl - 1] == ' ' || !sp[sl - 1]))
			sl--;
		if (sl && sl + 8 < len) {
			size_t w = (size_t)snprintf(out, len, "serial-");
			for (size_t i = 0; i < sl; i++) {
				uint8_t c = sp[i];
				out[w++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
						   c == '.' || c == '-' || c == '_' ? (char)c : '_';
			}
			out[w] = 0;
			return true;
		}
	}
	return false;
}

static fuse_ino_t link_ino(const struct dsession *s, uint64_t lun) { return BYID_DIR_INO | lun_ino(s, lun); }

/* The exposed LUN named name (the first one, in session order: two sessions to one LUN share
 * its identifiers). */
static bool byid_find(struct daemon *d, const char *name, struct dsession **sp, struct dlun **lp)
{
	char nm[BYID_NAME_MAX];
	for (struct dsession *s = d->sessions; s; s = s->next) {
		if (!s->devices_present || s->state == DS_GONE)
			continue;
		for (size_t i = 0; i < s->nluns; i++)
			if (s->luns[i].exposed && by_id_name(&s->luns[i], nm, sizeof(nm)) && !strcmp(nm, name)) {
				*sp = s;
				*lp = &s->luns[i];
				return true;
			}
	}
	return false;
}

/* The LUN a link inode stands for, if the link still names it. */
static bool byid_of_ino(struct daemon *d, fuse_ino_t ino, struct dsession **sp, struct dlun **lp)
{
	struct dsession *s = fuse_session_of(d, ino & ~BYID_DIR_INO);
	struct dlun *l = s ? fuse_lun_of(s, ino & ~BYID_DIR_INO) : NULL;
	char nm[BYID_NAME_MAX];
	struct dsession *os;
	struct dlun *ol;
	if (!l || !by_id_name(l, nm, sizeof(nm)) || !byid_find(d, nm, &os, &ol) || os != s || ol != l)
		return false;
	*sp = s;
	*lp = l;
	return true;
}

static char *link_target(struct daemon *d, struct dsession *s, struct dlun *l)
{
	const char *blk = loopdev_name(d, s->id, l->lun);
	return blk ? xstrdup(blk) : xasprintf("../%s/lun%" PRIu64, s->idstr, l->lun);
}

char *fusedev_by_id_path(struct daemon *d, struct dsession *s, struct dlun *l)
{
	char nm[BYID_NAME_MAX];
	struct dsession *os;
	struct dlun *ol;
	if (!by_id_name(l, nm, sizeof(nm)) || !byid_find(d, nm, &os, &ol) || os != s || ol != l)
		return NULL;
	return xasprintf("%s/by-id/%s", d->cfg.devices_dir, nm);
}

static void fill_link_attr(struct stat *st, fuse_ino_t ino, struct daemon *d, struct dsession *s, struct dlun *l)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_mode = S_IFLNK | 0777;
	st->st_nlink = 1;
	char *t = link_target(d, s, l);
	st->st_size = (off_t)strlen(t);
	free(t);
	st->st_atime = st->st_mtime = st->st_ctime = s->state_since;
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
	if (parent == FUSE_ROOT_ID && !strcmp(name, "by-id")) {
		reply_entry(req, BYID_DIR_INO, NULL, NULL);
		return;
	}
	if (parent == BYID_DIR_INO) {
		struct dsession *s;
		struct dlun *l;
		if (!byid_find(d, name, &s, &l)) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.ino = link_ino(s, l->lun);
		fill_link_attr(&e.attr, e.ino, d, s, l);
		fuse_reply_entry(req, &e);
		return;
	}
	if (parent == FUSE_ROOT_ID) {
		struct dsession *s = dsess_find(d, name);
		if (!s || !s->devices_present) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		reply_entry(req, dir_ino(s), s, NULL);
		return;
	}
	struct dsession *s = fuse_session_of(d, parent);
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
	if (ino == FUSE_ROOT_ID || ino == BYID_DIR_INO) {
		fill_attr(&st, ino, NULL, NULL);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	if (ino & BYID_DIR_INO) {
		struct dsession *ls;
		struct dlun *ll;
		if (!byid_of_ino(d, ino, &ls, &ll)) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		fill_link_attr(&st, ino, d, ls, ll);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	struct dsession *s = fuse_session_of(d, ino);
	struct dlun *l = s ? fuse_lun_of(s, ino) : NULL;
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
	char name[BYID_NAME_MAX];
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
		ADD("by-id", BYID_DIR_INO, S_IFDIR);
		for (struct dsession *s = d->sessions; s; s = s->next)
			if (s->devices_present && s->state != DS_GONE)
				ADD(s->idstr, dir_ino(s), S_IFDIR);
	} else if (ino == BYID_DIR_INO) {
		ADD(".", ino, S_IFDIR);
		ADD("..", FUSE_ROOT_ID, S_IFDIR);
		for (struct dsession *s = d->sessions; s; s = s->next) {
			if (!s->devices_present || s->state == DS_GONE)
				continue;
			for (size_t i = 0; i < s->nluns; i++) {
				struct dsession *os;
				struct dlun *ol;
				if (s->luns[i].exposed && by_id_name(&s->luns[i], name, sizeof(name)) &&
				    byid_find(d, name, &os, &ol) && os == s && ol == &s->luns[i])
					ADD(name, link_ino(s, s->luns[i].lun), S_IFLNK);
			}
		}
	} else {
		struct dsession *s = fuse_session_of(d, ino);
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

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct daemon *d = dmn(req);
	struct dsession *s;
	struct dlun *l;
	if (!(ino & BYID_DIR_INO) || !byid_of_ino(d, ino, &s, &l)) {
		fuse_reply_err(req, (ino & BYID_DIR_INO) ? ENOENT : EINVAL);
		return;
	}
	char *t = link_target(d, s, l);
	fuse_reply_readlink(req, t);
	free(t);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dsession *s = fuse_session_of(dmn(req), ino);
	struct dlun *l = s ? fuse_lun_of(s, ino) : NULL;
	if (!l) {
		fuse_reply_err(req, s ? EISDIR : ENOENT);
		return;
	}
	/* A write-protected LUN: as a read-only file system would (root passes the mode bits). */
	if (l->readonly && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
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
	.readlink = op_readlink,
	.open = op_open,
	.read = fuse_op_read,
	.write = fuse_op_write,
	.fsync = fuse_op_fsync,
	.fallocate = fuse_op_fallocate,
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
	loopdev_clean_stale(d);
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
	fuse_io_open();
	log_info("devices appear under %s", f->mountpoint);
	if (d->cfg.block) {
		char lerr[256];
		if (loopdev_start(d, lerr, sizeof(lerr)) < 0)
			log_warn("no block devices: %s", lerr);
	}
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
	loopdev_stop(d);
	fuse_io_stop_waiting();
	loop_watch_del(d->loop, &f->w);
	fuse_session_unmount(f->se);
	fuse_session_destroy(f->se);
	free(f->buf.mem);
	free(f->mountpoint);
	free(f);
	d->fuse = NULL;
	fuse_io_close();
}

void fusedev_changed(struct daemon *d, struct dsession *s)
{
	/* Entries are never cached by the kernel (timeouts 0): nothing to invalidate; the block
	 * devices follow the files. */
	if (d->fuse)
		loopdev_sync(d, s);
}
