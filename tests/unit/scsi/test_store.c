/* Backing stores: memory and sparse files. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>

#include "../test.h"
#include "store/store.h"

static void test_mem(void)
{
	char *err = NULL;
	struct store *st = store_mem_open(1 << 20, &err);
	uint8_t b[8192];
	bool mapped;
	uint64_t run;

	CHECK(st != NULL);
	CHECK(store_mem_open(0, &err) == NULL);
	free(err);
	CHECK_EQ(store_extent(st, 0, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, 1 << 20);
	memset(b, 0xab, sizeof(b));
	CHECK_EQ(store_write(st, b, 8192, 4096), 0);
	CHECK_EQ(store_extent(st, 0, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, 4096);
	CHECK_EQ(store_extent(st, 4096, &mapped, &run), 0);
	CHECK(mapped);
	CHECK_EQ(run, 8192);
	CHECK_EQ(store_unmap(st, 4096 + 512, 4096), 0);
	memset(b, 1, sizeof(b));
	CHECK_EQ(store_read(st, b, 8192, 4096), 0);
	CHECK_EQ(b[0], 0xab);
	CHECK_EQ(b[512], 0);
	CHECK_EQ(b[4607], 0);
	CHECK_EQ(b[4608], 0xab);
	CHECK_EQ(store_extent(st, 4096 + 512, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, 4096);
	CHECK_EQ(store_read(st, b, 2, (1 << 20) - 1), -ERANGE);
	CHECK_EQ(store_write(st, b, 1, 1 << 20), -ERANGE);
	CHECK_EQ(store_resize(st, 2 << 20), 0);
	CHECK_EQ(st->size, 2 << 20);
	CHECK_EQ(store_read(st, b, 16, 4096), 0);
	CHECK_EQ(b[0], 0xab);
	CHECK_EQ(store_flush(st), 0);
	store_close(st);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A 1 TiB memory store: unmapping all of it, zeroing a range and asking for extents cost time
 * in proportion to the bitmap's words at most, and an extent query stops after a bounded
 * stretch rather than walking a terabyte's worth of sectors. Resizing waits for no worker: it
 * is refused while jobs run on the store.
 */
static void test_mem_large(void)
{
	char *err = NULL;
	struct store *st = store_mem_open(1ull << 40, &err);
	uint8_t b[4096];
	bool mapped;
	uint64_t run;

	CHECK(st != NULL);
	if (!st)
		return;
	double t0 = now_s();
	CHECK_EQ(store_extent(st, 0, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK(run >= (1ull << 30) && run <= (1ull << 40));
	memset(b, 0x11, sizeof(b));
	CHECK_EQ(store_write(st, b, sizeof(b), (1ull << 40) - 4096), 0);
	CHECK_EQ(store_unmap(st, (1ull << 40) - (64ull << 30), (64ull << 30) - 4096), 0);
	CHECK_EQ(store_extent(st, (1ull << 40) - 4096, &mapped, &run), 0);
	CHECK(mapped);
	CHECK_EQ(run, 4096);
	CHECK_EQ(store_zero(st, 1ull << 39, 64ull << 30), 0);
	CHECK_EQ(store_extent(st, 1ull << 39, &mapped, &run), 0);
	CHECK(mapped);
	CHECK(run > 0 && run <= 64ull << 30);
	CHECK_EQ(store_extent(st, 4096, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK(run >= (1ull << 30) && run < (1ull << 39));
	double secs = now_s() - t0;
	printf("1 TiB memory store: extents, and unmap and zero of 64 GiB, took %.3f s\n", secs);
	CHECK(secs < 3);
	/* Bits of 64 sectors per word: the edges of a range are exact. */
	CHECK_EQ(store_write(st, b, 512, 512 * 63), 0);
	CHECK_EQ(store_write(st, b, 1024, 512 * 64), 0);
	CHECK_EQ(store_extent(st, 512 * 63, &mapped, &run), 0);
	CHECK(mapped);
	CHECK_EQ(run, 512 * 3);
	CHECK_EQ(store_extent(st, 512 * 62, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, 512);
	st->jobs = 1;
	CHECK_EQ(store_resize(st, 1ull << 30), -EBUSY);
	st->jobs = 0;
	CHECK_EQ(store_resize(st, (1ull << 30) + 512 * 3), 0);
	CHECK_EQ(store_resize(st, 1ull << 31), 0);
	CHECK_EQ(store_extent(st, 1ull << 30, &mapped, &run), 0);
	CHECK(!mapped); /* what lay past the smaller size did not come back as written */
	store_close(st);
}

static void test_file(void)
{
	char path[] = "/tmp/isthmus-store-XXXXXX";
	int fd = mkstemp(path);
	char *err = NULL;
	struct store *st;
	uint8_t b[65536];
	bool mapped;
	uint64_t run;
	struct stat sb;

	CHECK(fd >= 0);
	close(fd);
	unlink(path);
	/* Missing and no size: refused; missing with a size: created sparse. */
	CHECK(store_file_open(path, 0, false, &err) == NULL);
	free(err);
	err = NULL;
	st = store_file_open(path, 4 << 20, false, &err);
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK_EQ(st->size, 4 << 20);
	CHECK(stat(path, &sb) == 0 && sb.st_blocks == 0);
	CHECK_EQ(store_extent(st, 0, &mapped, &run), 0);
	CHECK(!mapped);
	memset(b, 0x5c, sizeof(b));
	CHECK_EQ(store_write(st, b, sizeof(b), 1 << 20), 0);
	CHECK_EQ(store_flush(st), 0);
	CHECK_EQ(store_extent(st, 1 << 20, &mapped, &run), 0);
	CHECK(mapped);
	CHECK(run >= sizeof(b));
	CHECK_EQ(store_unmap(st, 1 << 20, sizeof(b)), 0);
	CHECK_EQ(store_extent(st, 1 << 20, &mapped, &run), 0);
	CHECK(!mapped);
	memset(b, 1, sizeof(b));
	CHECK_EQ(store_read(st, b, sizeof(b), 1 << 20), 0);
	CHECK_EQ(b[0], 0);
	CHECK_EQ(b[sizeof(b) - 1], 0);
	CHECK_EQ(store_read(st, b, 1, 4 << 20), -ERANGE);
	CHECK_EQ(store_resize(st, 8 << 20), 0);
	CHECK_EQ(st->size, 8 << 20);
	store_close(st);

	/* Reopen: grown if smaller, kept if larger; read-only refuses writes. */
	st = store_file_open(path, 1 << 20, false, &err);
	CHECK(st && st->size == 8 << 20);
	store_close(st);
	st = store_file_open(path, 16 << 20, false, &err);
	CHECK(st && st->size == 16 << 20);
	store_close(st);
	st = store_file_open(path, 0, true, &err);
	CHECK(st && st->read_only);
	if (st) {
		CHECK(store_write(st, b, 1, 0) < 0);
		store_close(st);
	}
	unlink(path);
	CHECK(store_file_open("/nonexistent-dir/x", 1 << 20, false, &err) == NULL);
	free(err);
}

/* Where reads may wait: never on tmpfs or in memory; elsewhere RWF_NOWAIT tells. */
static void test_file_wait(void)
{
	char *err = NULL;
	static uint8_t b[65536], c[65536];
	size_t got;

	struct store *m = store_mem_open(1 << 20, &err);
	CHECK(m && m->wait == STORE_WAIT_NEVER);
	store_close(m);

	char shm[] = "/dev/shm/isthmus-store-XXXXXX";
	int fd = mkstemp(shm);
	if (fd >= 0) {
		close(fd);
		struct store *st = store_file_open(shm, 1 << 20, false, &err);
		CHECK(st && st->wait == STORE_WAIT_NEVER);
		store_close(st);
		unlink(shm);
	}

	char path[] = "/var/tmp/isthmus-store-XXXXXX";
	fd = mkstemp(path);
	CHECK(fd >= 0);
	struct statfs fs;
	if (fd < 0 || fstatfs(fd, &fs) < 0 || fs.f_type == TMPFS_MAGIC) {
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		return; /* no disk-backed file system to try */
	}
	close(fd);
	struct store *st = store_file_open(path, 1 << 20, false, &err);
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK_EQ(st->wait, STORE_WAIT_PROBE);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(i * 13);
	CHECK_EQ(store_write(st, b, sizeof(b), 65536), 0);
	/* Just written, so in the page cache: all of it without waiting. */
	memset(c, 0, sizeof(c));
	CHECK_EQ(store_read_nowait(st, c, sizeof(c), 65536, &got), 0);
	if (st->wait == STORE_WAIT_PROBE) {
		CHECK_EQ(got, sizeof(c));
		CHECK(memcmp(b, c, sizeof(c)) == 0);
		/* Out of the page cache: nothing comes without waiting, and that is not an error. */
		CHECK_EQ(store_flush(st), 0);
		int pfd = open(path, O_RDONLY);
		CHECK(pfd >= 0 && posix_fadvise(pfd, 0, 0, POSIX_FADV_DONTNEED) == 0);
		close(pfd);
		CHECK_EQ(store_read_nowait(st, c, sizeof(c), 65536, &got), 0);
		CHECK(got < sizeof(c));
	}
	CHECK_EQ(store_read_nowait(st, c, 16, (1 << 20) - 8, &got), -ERANGE);
	memset(c, 0, sizeof(c));
	CHECK_EQ(store_read(st, c, sizeof(c), 65536), 0);
	CHECK(memcmp(b, c, sizeof(c)) == 0);
	store_close(st);
	unlink(path);
}

/* The null store keeps nothing: zeros back whatever was written, everything unallocated. */
static void test_null(void)
{
	char *err = NULL;
	struct store *st = store_null_open(1ull << 40, false, &err);
	uint8_t b[4096];
	bool mapped;
	uint64_t run;

	CHECK(st != NULL);
	CHECK_EQ(st->fd, -1);
	CHECK_EQ(st->wait, STORE_WAIT_NEVER);
	CHECK(st->thin);
	CHECK(store_null_open(0, false, &err) == NULL);
	free(err);
	memset(b, 0xab, sizeof(b));
	CHECK_EQ(store_write(st, b, sizeof(b), (1ull << 40) - 4096), 0);
	CHECK_EQ(store_read(st, b, sizeof(b), (1ull << 40) - 4096), 0);
	for (size_t i = 0; i < sizeof(b); i++)
		CHECK_EQ(b[i], 0);
	CHECK_EQ(store_write(st, b, sizeof(b), (1ull << 40) - 512), -ERANGE);
	CHECK_EQ(store_read(st, b, sizeof(b), 1ull << 40), -ERANGE);
	CHECK_EQ(store_flush(st), 0);
	CHECK_EQ(store_unmap(st, 0, 1ull << 40), 0);
	CHECK_EQ(store_zero(st, 4096, 4096), 0);
	CHECK_EQ(store_extent(st, 4096, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, (1ull << 40) - 4096);
	CHECK_EQ(store_resize(st, 1ull << 41), 0);
	CHECK_EQ(st->size, 1ull << 41);
	store_close(st);

	st = store_null_open(1 << 20, true, &err);
	CHECK(st != NULL);
	CHECK_EQ(store_write(st, b, 512, 0), -EROFS);
	CHECK_EQ(store_unmap(st, 0, 512), -EROFS);
	CHECK_EQ(store_read(st, b, 512, 0), 0);
	store_close(st);
}

int main(void)
{
	test_null();
	test_mem_large();
	test_mem();
	test_file();
	test_file_wait();
	TEST_MAIN_END();
}
