/*
 * One RBD image served by two store engines at once, each on its own thread (as the target's
 * event loops will): reads, writes, flushes and compare-and-writes (within librbd's atomic unit
 * and longer, which hold back the other engine's ios) go through both engines together, every
 * read is checked against what its thread wrote, and every completion must run on the thread
 * that submitted it.
 *
 * Environment (tests/interop/test_rbd_engines.sh sets it; without it the test is skipped):
 *   ISTHMUS_TEST_CEPH_CONF   the cluster's ceph.conf
 *   ISTHMUS_TEST_RBD_POOL    the pool of image ISTHMUS_TEST_RBD_IMAGE (default "engines"),
 *                            new (reading zeros), at least 2 * REGION bytes
 *   ISTHMUS_TEST_RBD_OPS     ios per thread (default 4000)
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "store/store_io.h"
#include "store/store_rbd.h"

#define NTHREADS 2
#define BLOCK 4096u
#define REGION (4u << 20)          /* each thread's own part of the image */
#define NBLOCKS (REGION / BLOCK)
#define DEPTH 32
#define LIMIT_S 180.0

enum kind { K_WRITE, K_READ, K_FLUSH, K_CAW, K_CAW_LONG, K_CAW_MISS, K_VERIFY };

struct worker;

struct tio {
	struct store_io io;
	struct worker *w;
	struct iovec iov;
	enum kind kind;
	unsigned blk;
	unsigned miss_at;             /* K_CAW_MISS: the byte made different */
	bool busy;
	uint8_t buf[2 * BLOCK];
};

struct worker {
	int idx;
	pthread_t th;
	struct store *st;
	struct store_engine *e;
	uint64_t base;
	uint8_t *shadow;              /* what the region holds, as far as this thread knows */
	bool blk_busy[NBLOCKS];
	struct tio t[DEPTH];
	unsigned pending, submitted, completed;
	unsigned by_kind[K_VERIFY + 1];
	unsigned wrong_thread, errors;
	uint32_t rnd;
	double t_start, t_end;
	char first_error[256];
};

static pthread_barrier_t start_line;

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static uint32_t rnd(struct worker *w)
{
	w->rnd = w->rnd * 1103515245u + 12345u;
	return w->rnd >> 8;
}

static void fill(struct worker *w, uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i += 4) {
		uint32_t x = rnd(w);
		memcpy(b + i, &x, n - i < 4 ? n - i : 4);
	}
}

static void failf(struct worker *w, const char *what, const struct tio *t)
{
	if (w->errors++ == 0)
		snprintf(w->first_error, sizeof(w->first_error), "%s (block %u, result %d)", what, t->blk, t->io.result);
}

static void tio_done(struct store_io *io)
{
	struct tio *t = (struct tio *)io;
	struct worker *w = t->w;
	uint8_t *sh = w->shadow + (size_t)t->blk * BLOCK;

	if (!pthread_equal(pthread_self(), w->th))
		w->wrong_thread++;
	w->pending--;
	w->completed++;
	t->busy = false;
	w->blk_busy[t->blk] = false;
	switch (t->kind) {
	case K_WRITE:
		if (io->result == 0)
			memcpy(sh, t->buf, BLOCK);
		else
			failf(w, "write failed", t);
		break;
	case K_READ:
	case K_VERIFY:
		if (io->result != 0)
			failf(w, "read failed", t);
		else if (memcmp(sh, t->buf, BLOCK) != 0)
			failf(w, "read returned other data than written", t);
		break;
	case K_FLUSH:
		if (io->result != 0)
			failf(w, "flush failed", t);
		break;
	case K_CAW:
		if (io->result == 0)
			memcpy(sh + 512, t->buf + 512, 512);
		else
			failf(w, "compare-and-write (one sector) did not write", t);
		break;
	case K_CAW_LONG:
		if (io->result == 0)
			memcpy(sh, t->buf + BLOCK, BLOCK);
		else
			failf(w, "compare-and-write (whole block) did not write", t);
		break;
	case K_CAW_MISS:
		if (io->result != -EILSEQ)
			failf(w, "compare-and-write of different data did not miscompare", t);
		else if (io->miscompare_off != t->miss_at)
			failf(w, "miscompare offset wrong", t);
		break;
	}
}

static void submit(struct worker *w, struct tio *t, enum kind k, unsigned blk)
{
	uint8_t *sh = w->shadow + (size_t)blk * BLOCK;

	memset(&t->io, 0, sizeof(t->io));
	t->w = w;
	t->kind = k;
	t->blk = blk;
	t->busy = true;
	w->blk_busy[blk] = true;
	t->io.off = w->base + (uint64_t)blk * BLOCK;
	t->io.len = BLOCK;
	t->iov.iov_base = t->buf;
	t->iov.iov_len = BLOCK;
	switch (k) {
	case K_WRITE:
		t->io.op = STORE_IO_WRITE;
		fill(w, t->buf, BLOCK);
		break;
	case K_READ:
	case K_VERIFY:
		t->io.op = STORE_IO_READ;
		memset(t->buf, 0xee, BLOCK);
		break;
	case K_FLUSH:
		t->io.op = STORE_IO_FLUSH;
		t->io.len = 0;
		break;
	case K_CAW: /* the block's second sector: librbd's own atomic compare-and-write */
		t->io.op = STORE_IO_COMPARE_WRITE;
		t->io.off += 512;
		t->io.len = 512;
		memcpy(t->buf, sh + 512, 512);
		fill(w, t->buf + 512, 512);
		t->iov.iov_len = 1024;
		break;
	case K_CAW_LONG: /* longer than the atomic unit: the store's exclusive path */
	case K_CAW_MISS:
		t->io.op = STORE_IO_COMPARE_WRITE;
		memcpy(t->buf, sh, BLOCK);
		fill(w, t->buf + BLOCK, BLOCK);
		t->iov.iov_len = 2 * BLOCK;
		if (k == K_CAW_MISS) {
			t->miss_at = 1000 + rnd(w) % 2000;
			t->buf[t->miss_at] ^= 0x5a;
		}
		break;
	}
	t->io.iov = k == K_FLUSH ? NULL : &t->iov;
	t->io.iovcnt = k == K_FLUSH ? 0 : 1;
	t->io.done = tio_done;
	w->pending++;
	w->submitted++;
	w->by_kind[k]++;
	store_io_submit(w->e, w->st, &t->io);
}

static void turn(struct worker *w)
{
	struct pollfd p = {.fd = store_engine_fd(w->e), .events = POLLIN};
	if (poll(&p, 1, 100) > 0)
		store_engine_reap(w->e);
}

static enum kind pick_kind(struct worker *w, unsigned n)
{
	if (n % 97 == 0)
		return K_FLUSH;
	if (n % 41 == 0)
		return K_CAW_LONG;
	if (n % 43 == 0)
		return K_CAW_MISS;
	if (n % 37 == 0)
		return K_CAW;
	return rnd(w) % 2 ? K_WRITE : K_READ;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned ops = getenv("ISTHMUS_TEST_RBD_OPS") ? (unsigned)atoi(getenv("ISTHMUS_TEST_RBD_OPS")) : 4000;
	struct store_engine_params p = {.backend = STORE_BACKEND_WORKERS};
	char *err = NULL;

	w->e = store_engine_new(&p, &err);
	if (!w->e) {
		snprintf(w->first_error, sizeof(w->first_error), "store_engine_new: %s", err);
		w->errors++;
		free(err);
		pthread_barrier_wait(&start_line);
		return NULL;
	}
	pthread_barrier_wait(&start_line);
	w->t_start = now_s();
	double end = w->t_start + LIMIT_S;
	unsigned n = 0;
	while ((n < ops || w->pending) && now_s() < end) {
		for (int i = 0; i < DEPTH && n < ops; i++) {
			if (w->t[i].busy)
				continue;
			unsigned blk = rnd(w) % NBLOCKS;
			if (w->blk_busy[blk])
				continue;
			submit(w, &w->t[i], pick_kind(w, ++n), blk);
		}
		turn(w);
	}
	/* Every block read back. */
	for (unsigned blk = 0; blk < NBLOCKS && now_s() < end;) {
		for (int i = 0; i < DEPTH && blk < NBLOCKS; i++)
			if (!w->t[i].busy)
				submit(w, &w->t[i], K_VERIFY, blk++);
		turn(w);
	}
	while (w->pending && now_s() < end)
		turn(w);
	w->t_end = now_s();
	if (w->pending) {
		snprintf(w->first_error, sizeof(w->first_error), "%u ios never completed", w->pending);
		w->errors++;
	}
	return NULL;
}

int main(void)
{
	const char *conf = getenv("ISTHMUS_TEST_CEPH_CONF"), *pool = getenv("ISTHMUS_TEST_RBD_POOL");
	const char *image = getenv("ISTHMUS_TEST_RBD_IMAGE") ? getenv("ISTHMUS_TEST_RBD_IMAGE") : "engines";
	struct worker w[NTHREADS];
	char *err = NULL;
	int bad = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!conf || !pool) {
		printf("SKIP: ISTHMUS_TEST_CEPH_CONF and ISTHMUS_TEST_RBD_POOL not set\n");
		return 77;
	}
	struct store_rbd_spec spec = {.pool = pool, .image = image, .conf = conf};
	struct store *st = store_rbd_open(&spec, &err);
	if (!st) {
		printf("FAIL: opening %s/%s: %s\n", pool, image, err);
		return 1;
	}
	if (st->size < (uint64_t)NTHREADS * REGION) {
		printf("FAIL: the image is smaller than %u bytes\n", NTHREADS * REGION);
		return 1;
	}
	pthread_barrier_init(&start_line, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].idx = i;
		w[i].st = st;
		w[i].base = (uint64_t)i * REGION;
		w[i].shadow = calloc(1, REGION); /* a new image reads zeros */
		w[i].rnd = 0x1234u + (uint32_t)i * 7919u;
	}
	printf("checking: %d store engines on %d threads use one image at once\n", NTHREADS, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(w[i].th, NULL);
	for (int i = 0; i < NTHREADS; i++) {
		printf("  thread %d: %u ios (%u writes, %u reads, %u flushes, %u CAW, %u long CAW, %u miscompares, %u "
		       "read back) in %.1f s\n",
		       i, w[i].completed, w[i].by_kind[K_WRITE], w[i].by_kind[K_READ], w[i].by_kind[K_FLUSH],
		       w[i].by_kind[K_CAW], w[i].by_kind[K_CAW_LONG], w[i].by_kind[K_CAW_MISS], w[i].by_kind[K_VERIFY],
		       w[i].t_end - w[i].t_start);
		printf("checking: thread %d: every io succeeded with the data its thread wrote\n", i);
		if (w[i].errors) {
			printf("FAIL: thread %d: %u errors, the first: %s\n", i, w[i].errors, w[i].first_error);
			bad = 1;
		}
		printf("checking: thread %d: every completion ran on the submitting thread\n", i);
		if (w[i].wrong_thread) {
			printf("FAIL: thread %d: %u completions ran on another thread\n", i, w[i].wrong_thread);
			bad = 1;
		}
	}
	printf("checking: the two threads' ios overlapped in time\n");
	if (!(w[0].t_start < w[1].t_end && w[1].t_start < w[0].t_end)) {
		printf("FAIL: they did not\n");
		bad = 1;
	}
	/* The engines outlive the store, as the target's loops outlive their LUs. */
	store_close(st);
	if (store_rbd_releases_wait() != 0) {
		printf("FAIL: the image was not let go in time\n");
		bad = 1;
	}
	for (int i = 0; i < NTHREADS; i++) {
		store_engine_free(w[i].e);
		free(w[i].shadow);
	}
	pthread_barrier_destroy(&start_line);
	printf(bad ? "FAIL\n" : "PASS\n");
	return bad;
}
