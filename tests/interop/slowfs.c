/*
 * slowfs: a FUSE file system with one file, /disk, backed by a real file, whose reads take
 * DELAY_MS milliseconds longer than they should, and so do fsyncs: a slow backing device for the
 * target's tests.
 *
 * Usage: slowfs BACKING MOUNTPOINT DELAY_MS
 *
 * Runs in the foreground until SIGTERM/SIGINT or an unmount (fusermount3 -u MOUNTPOINT).
 * Writes and truncation go straight to BACKING (writes after the delay too while the file
 * BACKING.slow-writes exists, logged as "slowfs: write start/done"); fsync too, after the delay. The file is opened direct_io, so the
 * page cache never answers a read (and the kernel refuses RWF_NOWAIT reads of it): every read
 * reaches slowfs and waits. The session loop is multi-threaded, so delayed reads overlap.
 * Each read is logged on stderr when it starts and when it ends:
 *   slowfs: read start off=O size=S
 *   slowfs: read done off=O size=S ms=M
 * and each fsync as "slowfs: fsync start" / "slowfs: fsync done ms=M".
 */
#define FUSE_USE_VERSION 35
#define _GNU_SOURCE

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int backing_fd = -1;
static long delay_ms;

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The device's latency: DELAY_MS, whatever signals come. */
static void slow_down(void)
{
	struct timespec d = {delay_ms / 1000, (delay_ms % 1000) * 1000000};
	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
}

static int is_disk(const char *path) { return strcmp(path, "/disk") == 0; }

static int sfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof(*st));
	if (strcmp(path, "/") == 0) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (!is_disk(path))
		return -ENOENT;
	struct stat b;
	if (fstat(backing_fd, &b) < 0)
		return -errno;
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	st->st_size = b.st_size;
	st->st_blocks = b.st_blocks;
	st->st_blksize = 4096;
	st->st_mtim = b.st_mtim;
	st->st_ctim = b.st_ctim;
	return 0;
}

static int sfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
		       enum fuse_readdir_flags flags)
{
	(void)off, (void)fi, (void)flags;
	if (strcmp(path, "/") != 0)
		return -ENOENT;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, "disk", NULL, 0, 0);
	return 0;
}

static int sfs_open(const char *path, struct fuse_file_info *fi)
{
	if (!is_disk(path))
		return -ENOENT;
	fi->direct_io = 1;
	return 0;
}

static int sfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)path, (void)fi;
	long t0 = now_ms();
	fprintf(stderr, "slowfs: read start off=%lld size=%zu\n", (long long)off, size);
	slow_down();
	ssize_t n = pread(backing_fd, buf, size, off);
	int err = errno;
	fprintf(stderr, "slowfs: read done off=%lld size=%zu ms=%ld\n", (long long)off, size, now_ms() - t0);
	return n < 0 ? -err : (int)n;
}

/* While the file BACKING.slow-writes exists, writes are delayed like reads (and logged). */
static char slow_writes_flag[4096];

static int sfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)path, (void)fi;
	bool slow = access(slow_writes_flag, F_OK) == 0;
	long t0 = now_ms();
	if (slow) {
		fprintf(stderr, "slowfs: write start off=%lld size=%zu\n", (long long)off, size);
		slow_down();
	}
	ssize_t n = pwrite(backing_fd, buf, size, off);
	int err = errno;
	if (slow)
		fprintf(stderr, "slowfs: write done off=%lld size=%zu ms=%ld\n", (long long)off, size, now_ms() - t0);
	return n < 0 ? -err : (int)n;
}

static int sfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)fi;
	if (!is_disk(path))
		return -ENOENT;
	return ftruncate(backing_fd, size) < 0 ? -errno : 0;
}

static int sfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path, (void)fi;
	long t0 = now_ms();
	fprintf(stderr, "slowfs: fsync start\n");
	slow_down();
	int rc = (datasync ? fdatasync(backing_fd) : fsync(backing_fd)) < 0 ? -errno : 0;
	fprintf(stderr, "slowfs: fsync done ms=%ld\n", now_ms() - t0);
	return rc;
}

static const struct fuse_operations sfs_ops = {
	.getattr = sfs_getattr,
	.readdir = sfs_readdir,
	.open = sfs_open,
	.read = sfs_read,
	.write = sfs_write,
	.truncate = sfs_truncate,
	.fsync = sfs_fsync,
};

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s BACKING MOUNTPOINT DELAY_MS\n", argv[0]);
		return 2;
	}
	backing_fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (backing_fd < 0) {
		fprintf(stderr, "slowfs: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	delay_ms = strtol(argv[3], NULL, 10);
	snprintf(slow_writes_flag, sizeof(slow_writes_flag), "%s.slow-writes", argv[1]);

	/* No attribute caching, so the size seen is always the backing file's. */
	char *fargv[] = {argv[0], "-o", "attr_timeout=0,entry_timeout=0,negative_timeout=0", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse *f = fuse_new(&args, &sfs_ops, sizeof(sfs_ops), NULL);
	if (!f)
		return 1;
	int rc = 1;
	if (fuse_mount(f, argv[2]) == 0) {
		if (fuse_set_signal_handlers(fuse_get_session(f)) == 0) {
			fprintf(stderr, "slowfs: mounted %s on %s, reads delayed %ld ms\n", argv[1], argv[2], delay_ms);
			struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 16};
			rc = fuse_loop_mt(f, &cfg) == 0 ? 0 : 1;
			fuse_remove_signal_handlers(fuse_get_session(f));
		}
		fuse_unmount(f);
	}
	fuse_destroy(f);
	fuse_opt_free_args(&args);
	close(backing_fd);
	return rc;
}
