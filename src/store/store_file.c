/*
 * File and block-device store. Regular files may be sparse: holes are what GET LBA STATUS
 * reports as deallocated, so unmap punches holes rather than writing zeros.
 */
#include "store/store.h"
#include "store/store_io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "util/sbuf.h"

struct store_file {
	struct store base;
	int fd;
	bool blockdev;
};

static struct store_file *sf(struct store *st) { return (struct store_file *)st; }

static int file_read(struct store *st, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	if (off > st->size || len > st->size - off)
		return -ERANGE;
	while (len > 0) {
		ssize_t n = pread(sf(st)->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			/* Someone truncated the file under us: the missing tail is not data we have. */
			return -EIO;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int file_read_nowait(struct store *st, void *buf, size_t len, uint64_t off, size_t *got)
{
	*got = 0;
	if (off > st->size || len > st->size - off)
		return -ERANGE;
	while (*got < len) {
		struct iovec v = {(uint8_t *)buf + *got, len - *got};
		ssize_t n = preadv2(sf(st)->fd, &v, 1, (off_t)(off + *got), RWF_NOWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			if (errno == EOPNOTSUPP) {
				/* This file system cannot say: assume every read may wait. */
				st->wait = STORE_WAIT_ALWAYS;
				return 0;
			}
			return -errno;
		}
		if (n == 0)
			return -EIO; /* truncated under us, as in file_read */
		*got += (size_t)n;
	}
	return 0;
}

static int file_write(struct store *st, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	if (st->read_only)
		return -EROFS;
	if (off > st->size || len > st->size - off)
		return -ERANGE;
	while (len > 0) {
		ssize_t n = pwrite(sf(st)->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int file_flush(struct store *st)
{
	if (st->read_only)
		return 0;
	while (fdatasync(sf(st)->fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Both deallocation and zeroing are one fallocate mode over a checked range. */
static int file_fallocate_range(struct store *st, int mode, uint64_t off, uint64_t len)
{
	if (st->read_only)
		return -EROFS;
	if (off > st->size || len > st->size - off)
		return -ERANGE;
	if (len == 0)
		return 0;
	if (fallocate(sf(st)->fd, mode | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL || errno == ENODEV)
		return -EOPNOTSUPP;
	return -errno;
}

/*
 * For a block device the kernel implements PUNCH_HOLE as "discard, and the range must read back
 * as zeros"; a plain BLKDISCARD gives no such promise, so it is not enough to honour the store
 * contract and the caller falls back to writing zeros.
 */
static int file_unmap(struct store *st, uint64_t off, uint64_t len)
{
	return file_fallocate_range(st, FALLOC_FL_PUNCH_HOLE, off, len);
}

/* Regular files: unwritten extents; block devices: the kernel's zero-out (may fall back). */
static int file_zero(struct store *st, uint64_t off, uint64_t len)
{
	return file_fallocate_range(st, FALLOC_FL_ZERO_RANGE, off, len);
}

static int file_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	int fd = sf(st)->fd;
	off_t data, hole;

	if (off >= st->size)
		return -ERANGE;
	if (sf(st)->blockdev) {
		*mapped = true;
		*run = st->size - off;
		return 0;
	}
	data = lseek(fd, (off_t)off, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO) {
			/* Only a hole remains up to the end of the file. */
			*mapped = false;
			*run = st->size - off;
			return 0;
		}
		if (errno == EINVAL || errno == EOPNOTSUPP) {
			/* File system without hole reporting: everything counts as allocated. */
			*mapped = true;
			*run = st->size - off;
			return 0;
		}
		return -errno;
	}
	if ((uint64_t)data > off) {
		*mapped = false;
		*run = (uint64_t)data - off;
	} else {
		hole = lseek(fd, (off_t)off, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		*mapped = true;
		*run = (uint64_t)hole - off;
	}
	if (*run == 0 || *run > st->size - off)
		*run = st->size - off;
	return 0;
}

static int file_resize(struct store *st, uint64_t new_size)
{
	if (sf(st)->blockdev || st->read_only)
		return -EOPNOTSUPP;
	if (new_size == 0 || new_size > (uint64_t)INT64_MAX)
		return -EINVAL;
	/* Workers check their ranges against the size: not while they run. */
	if (st->jobs)
		return -EBUSY;
	if (ftruncate(sf(st)->fd, (off_t)new_size) < 0)
		return -errno;
	st->size = new_size;
	return 0;
}

static void file_close(struct store *st)
{
	close(sf(st)->fd);
	free(st->path);
	free(st);
}

static const struct store_ops file_ops = {
	.read = file_read,
	.write = file_write,
	.flush = file_flush,
	.unmap = file_unmap,
	.extent = file_extent,
	.resize = file_resize,
	.close = file_close,
	.zero = file_zero,
	.read_nowait = file_read_nowait,
};

/* tmpfs and ramfs pages never wait for a device (RWF_NOWAIT is not offered there either). */
static enum store_wait wait_kind(int fd)
{
	struct statfs fs;
	if (fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC))
		return STORE_WAIT_NEVER;
	return STORE_WAIT_PROBE;
}

struct store *store_file_open(const char *path, uint64_t size, bool read_only, char **err)
{
	struct stat sb;
	struct store_file *f;
	uint64_t real = 0;
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	int fd;

	if (!read_only && size > 0)
		flags |= O_CREAT;
	fd = open(path, flags, 0600);
	if (fd < 0) {
		*err = xasprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &sb) < 0) {
		*err = xasprintf("%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (S_ISBLK(sb.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &real) < 0) {
			*err = xasprintf("%s: BLKGETSIZE64: %s", path, strerror(errno));
			close(fd);
			return NULL;
		}
	} else if (S_ISREG(sb.st_mode)) {
		real = (uint64_t)sb.st_size;
		if (size > real) {
			if (read_only) {
				*err = xasprintf("%s: file is %llu bytes, smaller than the %llu configured, "
						 "and read-only", path, (unsigned long long)real,
						 (unsigned long long)size);
				close(fd);
				return NULL;
			}
			/* ftruncate extends sparsely: the new range costs no space until written. */
			if (ftruncate(fd, (off_t)size) < 0) {
				*err = xasprintf("%s: growing to %llu bytes: %s", path,
						 (unsigned long long)size, strerror(errno));
				close(fd);
				return NULL;
			}
			real = size;
		}
	} else {
		*err = xasprintf("%s: neither a regular file nor a block device", path);
		close(fd);
		return NULL;
	}
	if (real == 0) {
		*err = xasprintf("%s: empty, and no size given", path);
		close(fd);
		return NULL;
	}

	f = xcalloc(1, sizeof(*f));
	f->base.ops = &file_ops;
	f->base.size = real;
	f->base.read_only = read_only;
	f->base.thin = !S_ISBLK(sb.st_mode);
	f->base.path = xstrdup(path);
	f->fd = fd;
	f->base.fd = fd;
	f->base.caps = STORE_CAP_UNMAP | STORE_CAP_WRITE_ZEROES;
	f->blockdev = S_ISBLK(sb.st_mode);
	/* fstatfs on a device node describes /dev (a tmpfs), not the device. */
	f->base.wait = f->blockdev ? STORE_WAIT_PROBE : wait_kind(fd);
	return &f->base;
}
