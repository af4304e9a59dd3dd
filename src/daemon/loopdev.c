/*
 * A loop device on each exposed LUN's FUSE file, so that the LUN is a block device (mkfs, mount,
 * fsync, discard). Configured with direct I/O (no second page cache under the file system's), the
 * LUN's logical block size, read-only when the LUN is, and autoclear: the daemon holds one
 * descriptor of each device, so a device nobody else has open goes when the daemon does (even
 * killed), and one still mounted goes at its unmount.
 *
 * The ioctls wait for this daemon's own FUSE answers (LOOP_CONFIGURE opens nothing itself but the
 * backing file is opened first; detaching flushes and drains the device), so they run on one
 * worker thread, in order; each job's result is taken back on the loop thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/loopdev.h"
#include "daemon/session.h"
#include "store/offload.h"
#include "util/log.h"
#include "util/sbuf.h"

#define LOOP_MAJOR_NR 7
#define ATTACH_TRIES 16        /* another process may take the free device first */
#define STOP_DRAIN_MS 20000    /* daemon stop: time given to detaching before the worker is left */

enum ldev_state {
	LD_ATTACHING,
	LD_ATTACHED,
	LD_FAILED,
};

struct ldev {
	struct ldev *next;
	uint64_t sid, lun;
	char *path; /* the FUSE file */
	uint32_t block_size;
	bool readonly;
	enum ldev_state st;
	bool detaching; /* a detach job is queued: the entry goes when it is done */
	/* written by the worker, read on the loop thread after the job's completion */
	int fd;
	int num;
	bool dio;
	bool legacy; /* attached in steps (LOOP_SET_FD ...), not with LOOP_CONFIGURE */
	char name[32];
};

enum ljob_kind { LJ_ATTACH, LJ_DETACH, LJ_RESIZE };

struct ljob {
	struct offload_job oj; /* first: the job is its offload job */
	enum ljob_kind kind;
	struct ldev *e;
	bool legacy; /* attach without LOOP_CONFIGURE (see attach_legacy) */
	int rc;
	bool in_use; /* detach: the device was still open elsewhere (mounted): autoclear at its close */
	uint64_t size; /* resize: the device's size afterwards */
	char err[256];
};

static struct {
	struct daemon *d;
	bool running;
	bool legacy; /* ISTHMUS_TEST_LOOP_LEGACY: tests take the path of kernels before 5.8 */
	struct offload *off; /* one worker: the jobs run in order (one key) */
	struct loop_watch w;
	struct ldev *devs;
} L;

/* ---- worker side */

static int open_loop_node(int num)
{
	char dev[32];
	snprintf(dev, sizeof(dev), "/dev/loop%d", num);
	int fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* a static /dev (containers): the node is ours to make */
		if (mknod(dev, S_IFBLK | 0660, makedev(LOOP_MAJOR_NR, (unsigned)num)) == 0 || errno == EEXIST)
			fd = open(dev, O_RDWR | O_CLOEXEC);
	}
	return fd;
}

/* LOOP_CONFIGURE (Linux 5.8): everything in one call. 0 or -errno. */
static int attach_configure(int fd, struct loop_config *c)
{
	if (ioctl(fd, LOOP_CONFIGURE, c) == 0)
		return 0;
	if (errno == EINVAL && (c->info.lo_flags & LO_FLAGS_DIRECT_IO)) {
		/* a kernel that refuses direct I/O on this file rather than ignoring it */
		c->info.lo_flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO;
		if (ioctl(fd, LOOP_CONFIGURE, c) == 0)
			return 0;
	}
	return -errno;
}

/*
 * The same in steps, for kernels without LOOP_CONFIGURE: bind the file (the device is read-only
 * when the file was opened so), then autoclear and the name, the block size, direct I/O. The
 * device exists with 512-byte blocks and buffered I/O between the steps; no one has it open then
 * but this thread. A step after the binding that fails unbinds it. 0 or -errno.
 */
static int attach_legacy(int fd, const struct loop_config *c, struct ljob *j)
{
	if (ioctl(fd, LOOP_SET_FD, (unsigned long)c->fd) < 0) {
		int e = errno;
		snprintf(j->err, sizeof(j->err), "LOOP_SET_FD: %s", strerror(e));
		return -e;
	}
	struct loop_info64 info = c->info;
	info.lo_flags &= LO_FLAGS_AUTOCLEAR; /* the one flag LOOP_SET_STATUS64 takes here */
	const char *step = "LOOP_SET_STATUS64";
	int rc = ioctl(fd, LOOP_SET_STATUS64, &info);
	if (rc == 0 && c->block_size != 512) {
		step = "LOOP_SET_BLOCK_SIZE";
		rc = ioctl(fd, LOOP_SET_BLOCK_SIZE, (unsigned long)c->block_size);
	}
	if (rc < 0) {
		int e = errno;
		snprintf(j->err, sizeof(j->err), "%s: %s", step, strerror(e));
		ioctl(fd, LOOP_CLR_FD);
		return -e;
	}
	/* refused on some files: then the device stays buffered, as with LOOP_CONFIGURE */
	if (c->info.lo_flags & LO_FLAGS_DIRECT_IO)
		(void)ioctl(fd, LOOP_SET_DIRECT_IO, 1UL);
	return 0;
}

static void job_attach(struct ljob *j)
{
	struct ldev *e = j->e;
	int bfd = open(e->path, (e->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (bfd < 0 && (errno == EROFS || errno == EACCES) && !e->readonly) {
		/* a file the daemon only lets read: so is the device */
		bfd = open(e->path, O_RDONLY | O_CLOEXEC);
		e->readonly = bfd >= 0;
	}
	if (bfd < 0) {
		j->rc = -errno;
		snprintf(j->err, sizeof(j->err), "cannot open %s: %s", e->path, strerror(errno));
		return;
	}
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		j->rc = -errno;
		snprintf(j->err, sizeof(j->err), "cannot open /dev/loop-control: %s", strerror(errno));
		close(bfd);
		return;
	}
	struct loop_config c;
	memset(&c, 0, sizeof(c));
	c.fd = (uint32_t)bfd;
	/* the loop driver takes 512 to the page size; another size stays 512 and FUSE fills in */
	c.block_size = e->block_size >= 512 && e->block_size <= 4096 && !(e->block_size & (e->block_size - 1))
			       ? e->block_size : 512;
	c.info.lo_flags = LO_FLAGS_DIRECT_IO | LO_FLAGS_AUTOCLEAR | (e->readonly ? LO_FLAGS_READ_ONLY : 0);
	snprintf((char *)c.info.lo_file_name, LO_NAME_SIZE, "%s", e->path);
	j->rc = -EBUSY;
	for (int i = 0; i < ATTACH_TRIES && j->rc == -EBUSY; i++) {
		int num = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (num < 0) {
			j->rc = -errno;
			snprintf(j->err, sizeof(j->err), "no free loop device: %s", strerror(errno));
			break;
		}
		int fd = open_loop_node(num);
		if (fd < 0) {
			j->rc = -errno;
			snprintf(j->err, sizeof(j->err), "cannot open /dev/loop%d: %s", num, strerror(errno));
			break;
		}
		int rc = j->legacy ? -ENOTTY : attach_configure(fd, &c);
		if (rc == -EINVAL || rc == -ENOTTY) {
			/* forced by a test, or a kernel without LOOP_CONFIGURE (before 5.8) */
			rc = attach_legacy(fd, &c, j);
			e->legacy = true;
		} else if (rc < 0) {
			snprintf(j->err, sizeof(j->err), "LOOP_CONFIGURE on /dev/loop%d: %s", num, strerror(-rc));
		}
		if (rc == 0) {
			struct loop_info64 info;
			e->dio = ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && (info.lo_flags & LO_FLAGS_DIRECT_IO);
			e->fd = fd;
			e->num = num;
			snprintf(e->name, sizeof(e->name), "/dev/loop%d", num);
			j->rc = 0;
			break;
		}
		j->rc = rc;
		close(fd);
	}
	close(ctl);
	close(bfd); /* the device holds its own reference */
}

/* True when something holds the device exclusively (a mounted file system). */
static bool claimed(const char *name)
{
	int fd = open(name, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return false;
	}
	return errno == EBUSY;
}

static void job_detach(struct ljob *j)
{
	struct ldev *e = j->e;
	if (e->fd < 0)
		return;
	j->in_use = claimed(e->name);
	/* With other openers the kernel only marks the device autoclear; with none, it goes at the
	 * close below (which flushes through FUSE: hence this thread). */
	if (ioctl(e->fd, LOOP_CLR_FD) < 0 && errno != ENXIO) {
		j->rc = -errno;
		snprintf(j->err, sizeof(j->err), "LOOP_CLR_FD: %s", strerror(errno));
	}
	close(e->fd);
	e->fd = -1;
}

/*
 * LOOP_SET_CAPACITY takes the backing file's size as the kernel knows it: a stat first makes the
 * kernel ask this daemon for the file's attributes (they are never cached), so the size it reads
 * is the LUN's new one.
 */
static void job_resize(struct ljob *j)
{
	struct ldev *e = j->e;
	struct stat st;
	if (e->fd < 0)
		return;
	if (stat(e->path, &st) < 0 || ioctl(e->fd, LOOP_SET_CAPACITY, 0UL) < 0) {
		j->rc = -errno;
		snprintf(j->err, sizeof(j->err), "LOOP_SET_CAPACITY: %s", strerror(errno));
		return;
	}
	if (ioctl(e->fd, BLKGETSIZE64, &j->size) < 0)
		j->size = (uint64_t)st.st_size;
}

static void job_work(struct offload_job *oj)
{
	struct ljob *j = (struct ljob *)oj;
	switch (j->kind) {
	case LJ_ATTACH: job_attach(j); break;
	case LJ_DETACH: job_detach(j); break;
	case LJ_RESIZE: job_resize(j); break;
	}
}

/* ---- loop side */

static void job_finished(struct offload_job *oj);

static void enqueue(enum ljob_kind kind, struct ldev *e)
{
	struct ljob *j = xcalloc(1, sizeof(*j));
	j->kind = kind;
	j->e = e;
	j->legacy = L.legacy;
	j->oj.key = &L; /* one key: in submission order */
	j->oj.work = job_work;
	j->oj.done = job_finished;
	offload_submit(L.off, &j->oj);
}

static void ldev_unlink(struct ldev *e)
{
	for (struct ldev **pp = &L.devs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	free(e->path);
	free(e);
}

static void job_finished(struct offload_job *oj)
{
	struct ljob *j = (struct ljob *)oj;
	struct ldev *e = j->e;
	char sid[24];
	dsess_format_id(e->sid, sid, sizeof(sid));
	if (j->kind == LJ_ATTACH) {
		if (j->rc == 0) {
			e->st = LD_ATTACHED;
			log_info("session %s LUN %" PRIu64 ": block device %s (%s, block size %u%s%s)", sid, e->lun, e->name,
				 e->dio ? "direct I/O" : "buffered: the kernel refused direct I/O", e->block_size,
				 e->readonly ? ", read-only" : "", e->legacy ? ", attached with LOOP_SET_FD" : "");
		} else {
			e->st = LD_FAILED;
			log_warn("session %s LUN %" PRIu64 ": no block device: %s", sid, e->lun, j->err);
		}
	} else if (j->kind == LJ_RESIZE) {
		if (j->rc)
			log_warn("session %s LUN %" PRIu64 ": %s keeps its old size: %s", sid, e->lun, e->name, j->err);
		else
			log_info("session %s LUN %" PRIu64 ": %s is now %" PRIu64 " bytes", sid, e->lun, e->name, j->size);
	} else {
		if (e->st == LD_ATTACHED) {
			if (j->rc)
				log_warn("session %s LUN %" PRIu64 ": detaching %s: %s", sid, e->lun, e->name, j->err);
			else if (j->in_use)
				log_warn("session %s LUN %" PRIu64 ": %s is still in use (mounted?): it is detached at its "
					 "last close; its I/O fails meanwhile", sid, e->lun, e->name);
			else
				log_info("session %s LUN %" PRIu64 ": %s detached", sid, e->lun, e->name);
		}
		ldev_unlink(e);
	}
	free(j);
}

static void on_jobs_done(void *arg, uint32_t events)
{
	(void)arg;
	(void)events;
	offload_reap(L.off);
}

static struct ldev *ldev_find(uint64_t sid, uint64_t lun)
{
	for (struct ldev *e = L.devs; e; e = e->next)
		if (e->sid == sid && e->lun == lun && !e->detaching)
			return e;
	return NULL;
}

int loopdev_start(struct daemon *d, char *err, size_t errlen)
{
	if (access("/dev/loop-control", R_OK | W_OK) != 0) {
		snprintf(err, errlen, "/dev/loop-control: %s", strerror(errno));
		return -1;
	}
	L.d = d;
	const char *legacy = getenv("ISTHMUS_TEST_LOOP_LEGACY");
	L.legacy = legacy && !strcmp(legacy, "1");
	if (L.legacy)
		log_warn("ISTHMUS_TEST_LOOP_LEGACY=1: loop devices are attached without LOOP_CONFIGURE");
	char *oerr = NULL;
	L.off = offload_new(1, &oerr);
	if (!L.off) {
		snprintf(err, errlen, "cannot start the loop device worker: %s", oerr);
		free(oerr);
		return -1;
	}
	if (loop_watch_add(d->loop, &L.w, offload_fd(L.off), EPOLLIN, on_jobs_done, NULL) < 0) {
		snprintf(err, errlen, "cannot watch the loop device worker");
		offload_free(L.off);
		L.off = NULL;
		return -1;
	}
	L.running = true;
	return 0;
}

void loopdev_sync(struct daemon *d, struct dsession *s)
{
	if (!L.running)
		return;
	bool live = s->devices_present && s->state != DS_GONE;
	for (struct ldev *e = L.devs; e; e = e->next) {
		if (e->sid != s->id || e->detaching)
			continue;
		struct dlun *l = live ? dsess_lun(s, e->lun) : NULL;
		if (!l || !l->exposed) {
			e->detaching = true;
			enqueue(LJ_DETACH, e);
		}
	}
	if (!live)
		return;
	for (size_t i = 0; i < s->nluns; i++) {
		struct dlun *l = &s->luns[i];
		if (!l->exposed || ldev_find(s->id, l->lun))
			continue;
		struct ldev *e = xcalloc(1, sizeof(*e));
		e->sid = s->id;
		e->lun = l->lun;
		e->path = xasprintf("%s/%s/lun%" PRIu64, d->cfg.devices_dir, s->idstr, l->lun);
		e->block_size = l->block_size ? l->block_size : 512;
		e->readonly = l->readonly;
		e->fd = -1;
		e->num = -1;
		e->st = LD_ATTACHING;
		e->next = L.devs;
		L.devs = e;
		enqueue(LJ_ATTACH, e);
	}
}

const char *loopdev_name(struct daemon *d, uint64_t sid, uint64_t lun)
{
	(void)d;
	struct ldev *e = ldev_find(sid, lun);
	return e && e->st == LD_ATTACHED ? e->name : NULL;
}

void loopdev_resize(struct daemon *d, struct dsession *s, uint64_t lun)
{
	(void)d;
	struct ldev *e = L.running ? ldev_find(s->id, lun) : NULL;
	if (e && e->st != LD_FAILED)
		enqueue(LJ_RESIZE, e); /* after an attach still queued: jobs run in order */
}

void loopdev_stop(struct daemon *d)
{
	if (!L.running)
		return;
	L.running = false;
	for (struct ldev *e = L.devs; e; e = e->next)
		if (!e->detaching) {
			e->detaching = true;
			enqueue(LJ_DETACH, e);
		}
	/* Detaching flushes through FUSE: keep answering it meanwhile. */
	uint64_t deadline = loop_now_ms() + STOP_DRAIN_MS;
	while (offload_pending(L.off) && loop_now_ms() < deadline)
		loop_run_once(d->loop, 100);
	loop_watch_del(d->loop, &L.w);
	if (offload_pending(L.off)) {
		/* an ioctl that does not return: leave the worker (the process is ending); freeing the
		 * pool would wait for it */
		log_warn("%u loop device job(s) still running at stop; leaving them", offload_pending(L.off));
	} else {
		offload_free(L.off);
	}
	L.off = NULL;
}

/* ---- what an earlier run left */

static bool under_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	return !strncmp(path, dir, n) && path[n] == '/';
}

static void detach_stale_loops(const char *dir)
{
	DIR *sys = opendir("/sys/block");
	if (!sys)
		return;
	struct dirent *de;
	while ((de = readdir(sys))) {
		int num;
		char rest;
		if (sscanf(de->d_name, "loop%d%c", &num, &rest) != 1)
			continue;
		char p[300], backing[4096];
		snprintf(p, sizeof(p), "/sys/block/%s/loop/backing_file", de->d_name);
		FILE *f = fopen(p, "re");
		if (!f)
			continue; /* not bound */
		bool got = fgets(backing, sizeof(backing), f) != NULL;
		fclose(f);
		if (!got)
			continue;
		backing[strcspn(backing, "\n")] = 0;
		if (!under_dir(backing, dir))
			continue;
		char name[32];
		snprintf(name, sizeof(name), "/dev/loop%d", num);
		bool in_use = claimed(name);
		int fd = open_loop_node(num);
		if (fd < 0 || (ioctl(fd, LOOP_CLR_FD) < 0 && errno != ENXIO)) {
			log_warn("stale %s on %s: cannot detach it: %s", name, backing, strerror(errno));
		} else if (in_use) {
			log_warn("stale %s on %s (left by an earlier run) is in use (mounted?): it is detached at its "
				 "last close; its I/O fails", name, backing);
		} else {
			log_info("stale %s on %s (left by an earlier run) detached", name, backing);
		}
		if (fd >= 0)
			close(fd); /* the earlier run's FUSE connection is gone: nothing waits on this close */
	}
	closedir(sys);
}

/* The mount point of a mountinfo line (field 5) and whether its type is FUSE. */
static bool fuse_mount_at(const char *line, const char *dir)
{
	char mnt[4096];
	const char *sep = strstr(line, " - ");
	if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
		return false;
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	return strlen(mnt) == n && !strncmp(mnt, dir, n) && !strncmp(sep + 3, "fuse", 4);
}

void loopdev_clean_stale(struct daemon *d)
{
	const char *dir = d->cfg.devices_dir;
	char *real = realpath(dir, NULL);
	/* a dead FUSE mount cannot be resolved: then the configured path is the one to look for */
	const char *want = real ? real : dir;
	if (access("/dev/loop-control", F_OK) == 0)
		detach_stale_loops(want);
	/* stacked mounts from several killed runs: bounded */
	for (int i = 0; i < 8; i++) {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		if (!f)
			break;
		char line[8192];
		bool found = false;
		while (!found && fgets(line, sizeof(line), f))
			found = fuse_mount_at(line, want);
		fclose(f);
		if (!found)
			break;
		if (umount2(want, MNT_DETACH) < 0) {
			log_warn("stale FUSE mount on %s: cannot unmount it: %s", want, strerror(errno));
			break;
		}
		log_info("stale FUSE mount on %s (left by an earlier run) unmounted", want);
	}
	free(real);
}
