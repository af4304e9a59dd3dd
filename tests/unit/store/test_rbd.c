/*
 * The RBD store against a real cluster, through the store engine: every op, many ios in flight, the miscompare
 * offset, unmap then zeros, allocation status, a resize made by `rbd resize`, a cluster that
 * stops answering and comes back, and opening errors in bounded time.
 *
 * Environment (tests/interop/test_rbd_store.sh sets it; without it the test is skipped):
 *   ISTHMUS_TEST_CEPH_CONF   the cluster's ceph.conf (client.admin's keyring in it)
 *   ISTHMUS_TEST_RBD_POOL    a pool holding images "store-a" (64 MiB) and "store-b" (any size)
 *   ISTHMUS_TEST_CEPH_PAUSE  optional: a command that freezes the cluster, and with the
 *   ISTHMUS_TEST_CEPH_RESUME same arguments one that lets it go on (the timeout check)
 *   ISTHMUS_TEST_CEPH_DEAD_CONF  optional: a ceph.conf naming a monitor nobody runs
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "store/store_io.h"
#include "store/store_rbd.h"
#include "../test.h"

#define MIB (1024u * 1024u)

/* ---- the real store engine; completions must run on this (the loop's) thread ---- */

static pthread_t loop_thread;
static unsigned wrong_thread_completions;

/* One round of the loop: wait up to ms for the engine's descriptor, reap. */
static void engine_turn(struct store_engine *e, int ms)
{
	struct pollfd p = {.fd = store_engine_fd(e), .events = POLLIN};
	if (poll(&p, 1, ms) > 0)
		store_engine_reap(e);
}

static struct store_engine *engine_new(void)
{
	struct store_engine_params p = {.backend = STORE_BACKEND_WORKERS};
	char *err = NULL;
	struct store_engine *e = store_engine_new(&p, &err);
	if (!e) {
		fprintf(stderr, "store_engine_new: %s\n", err);
		exit(1);
	}
	return e;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* ---- ios ---- */

struct tio {
	struct store_io io;
	struct iovec iov[4];
	bool done;
};

static unsigned pending;

static void tio_done(struct store_io *io)
{
	struct tio *t = (struct tio *)io;
	if (!pthread_equal(pthread_self(), loop_thread))
		wrong_thread_completions++;
	t->done = true;
	pending--;
}

/* Submits one io of op over [off, off + len) with its data in the n iovecs iov (n 0: no data). */
static void tio_submit_vec(struct store_engine *e, struct store *st, struct tio *t, enum store_io_op op, uint64_t off,
			   uint64_t len, const struct iovec *iov, int n)
{
	memset(&t->io, 0, sizeof(t->io));
	t->done = false;
	t->io.op = op;
	t->io.off = off;
	t->io.len = len;
	for (int i = 0; i < n; i++)
		t->iov[i] = iov[i];
	t->io.iov = n ? t->iov : NULL;
	t->io.iovcnt = n;
	t->io.done = tio_done;
	pending++;
	store_io_submit(e, st, &t->io);
}

static void tio_submit(struct store_engine *e, struct store *st, struct tio *t, enum store_io_op op, uint64_t off,
		       uint64_t len, void *buf, size_t buflen)
{
	struct iovec v = {buf, buflen};
	tio_submit_vec(e, st, t, op, off, len, &v, buf ? 1 : 0);
}

/* Runs the loop until every submitted io finished, at most secs seconds. */
static bool run_until_idle(struct store_engine *e, double secs)
{
	double end = now_s() + secs;
	while (pending && now_s() < end)
		engine_turn(e, 100);
	return pending == 0;
}

static int do_io(struct store_engine *e, struct store *st, enum store_io_op op, uint64_t off, uint64_t len, void *buf,
		 size_t buflen)
{
	struct tio t;
	tio_submit(e, st, &t, op, off, len, buf, buflen);
	if (!run_until_idle(e, 30))
		return -9999;
	return t.io.result;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (uint8_t)(x >> 16);
	}
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static struct store *open_image(const char *conf, const char *pool, const char *image, bool ro, char **err)
{
	struct store_rbd_spec spec = {.pool = pool, .image = image, .conf = conf, .read_only = ro};
	*err = NULL;
	return store_rbd_open(&spec, err);
}

/* ---- checks ---- */

static void check_rw(struct store_engine *e, struct store *st)
{
	printf("write 1 MiB from three iovecs, read it back from two, flush\n");
	uint8_t *w = malloc(MIB), *r = malloc(MIB);
	fill(w, MIB, 1);
	struct tio t;
	const struct iovec wv[3] = {{w, 4096}, {w + 4096, 512 * 1024}, {w + 4096 + 512 * 1024, MIB - 4096 - 512 * 1024}};
	tio_submit_vec(e, st, &t, STORE_IO_WRITE, 3 * MIB, MIB, wv, 3);
	CHECK(!t.done); /* a network store never finishes inline */
	CHECK(run_until_idle(e, 30));
	CHECK_EQ(t.io.result, 0);

	memset(r, 0xee, MIB);
	const struct iovec rv[2] = {{r, 1000}, {r + 1000, MIB - 1000}};
	tio_submit_vec(e, st, &t, STORE_IO_READ, 3 * MIB, MIB, rv, 2);
	CHECK(run_until_idle(e, 30));
	CHECK_EQ(t.io.result, 0);
	CHECK(memcmp(w, r, MIB) == 0);
	CHECK_EQ(do_io(e, st, STORE_IO_FLUSH, 0, 0, NULL, 0), 0);
	printf("the synchronous read and write are not offered\n");
	CHECK_EQ(st->ops->read(st, r, 512, 0), -EOPNOTSUPP);
	CHECK_EQ(st->ops->write(st, r, 512, 0), -EOPNOTSUPP);
	printf("an io past the end gets -ERANGE\n");
	CHECK_EQ(do_io(e, st, STORE_IO_READ, st->size - 512, 1024, r, 1024), -ERANGE);
	free(w);
	free(r);
}

#define NFLIGHT 256

static void check_many_in_flight(struct store_engine *e, struct store *st)
{
	printf("%u 4 KiB writes in flight at once, then %u reads, all on the loop's thread\n", NFLIGHT, NFLIGHT);
	static struct tio t[NFLIGHT];
	uint8_t *w = malloc(NFLIGHT * 4096), *r = malloc(NFLIGHT * 4096);
	fill(w, NFLIGHT * 4096, 2);
	memset(r, 0, NFLIGHT * 4096);
	double t0 = now_s(), slowest = 0;
	/* Scattered over the image: every object of it sees some. */
	for (unsigned i = 0; i < NFLIGHT; i++) {
		double s0 = now_s();
		tio_submit(e, st, &t[i], STORE_IO_WRITE, (uint64_t)((i * 37) % NFLIGHT) * 64 * 1024 + 16 * MIB % st->size,
			   4096, w + i * 4096, 4096);
		slowest = now_s() - s0 > slowest ? now_s() - s0 : slowest;
	}
	printf("  the slowest submit took %.1f ms\n", slowest * 1e3);
	CHECK(slowest < 0.1);
	CHECK_EQ(pending, NFLIGHT); /* nothing completes before the loop reaps */
	CHECK(run_until_idle(e, 60));
	for (unsigned i = 0; i < NFLIGHT; i++)
		CHECK_EQ(t[i].io.result, 0);
	for (unsigned i = 0; i < NFLIGHT; i++)
		tio_submit(e, st, &t[i], STORE_IO_READ, (uint64_t)((i * 37) % NFLIGHT) * 64 * 1024 + 16 * MIB % st->size,
			   4096, r + i * 4096, 4096);
	CHECK(run_until_idle(e, 60));
	for (unsigned i = 0; i < NFLIGHT; i++)
		CHECK_EQ(t[i].io.result, 0);
	CHECK(memcmp(w, r, NFLIGHT * 4096) == 0);
	printf("  %u writes + %u reads in %.3f s\n", NFLIGHT, NFLIGHT, now_s() - t0);
	CHECK_EQ(wrong_thread_completions, 0);
	free(w);
	free(r);
}

/*
 * L = 512: one sector, librbd's own atomic compare-and-write; L = 4096: the store's read,
 * compare and write with every other io held back. The difference is at byte L - 12.
 */
static void check_compare_write(struct store_engine *e, struct store *st, size_t L)
{
	printf("COMPARE AND WRITE of %zu bytes: equal data writes; a difference at byte %zu reports that offset, writes nothing\n",
	       L, L - 12);
	uint8_t *buf = malloc(2 * L), *r = malloc(L), *orig = malloc(L);
	uint64_t off = 8 * MIB + 8192;
	fill(orig, L, 3);
	CHECK_EQ(do_io(e, st, STORE_IO_WRITE, off, L, orig, L), 0);
	memcpy(buf, orig, L);
	fill(buf + L, L, 4);
	CHECK_EQ(do_io(e, st, STORE_IO_COMPARE_WRITE, off, L, buf, 2 * L), 0);
	CHECK_EQ(do_io(e, st, STORE_IO_READ, off, L, r, L), 0);
	CHECK(memcmp(r, buf + L, L) == 0);

	/* Now the medium holds buf+L; compare against something differing at byte 1000 only. */
	memcpy(buf, r, L);
	buf[L - 12] ^= 0x5a;
	fill(buf + L, L, 5);
	struct tio t, t2;
	uint8_t *w2 = malloc(L);
	fill(w2, L, 11);
	tio_submit(e, st, &t, STORE_IO_COMPARE_WRITE, off, L, buf, 2 * L);
	/* Submitted behind it: must not overtake it (it would change what is compared). */
	tio_submit(e, st, &t2, STORE_IO_WRITE, off + 2 * L, L, w2, L);
	CHECK(run_until_idle(e, 30));
	CHECK_EQ(t.io.result, -EILSEQ);
	CHECK_EQ(t.io.miscompare_off, L - 12);
	CHECK_EQ(t2.io.result, 0);
	free(w2);
	uint8_t *r2 = malloc(L);
	CHECK_EQ(do_io(e, st, STORE_IO_READ, off, L, r2, L), 0);
	CHECK(memcmp(r2, r, L) == 0);

	printf("COMPARE AND WRITE with its data in two iovecs (copied into one buffer)\n");
	memcpy(buf, r, L);
	fill(buf + L, L, 6);
	const struct iovec cv[2] = {{buf, 100}, {buf + 100, 2 * L - 100}};
	tio_submit_vec(e, st, &t, STORE_IO_COMPARE_WRITE, off, L, cv, 2);
	CHECK(run_until_idle(e, 30));
	CHECK_EQ(t.io.result, 0);
	CHECK_EQ(do_io(e, st, STORE_IO_READ, off, L, r2, L), 0);
	CHECK(memcmp(r2, buf + L, L) == 0);
	free(buf);
	free(r);
	free(r2);
	free(orig);
}

struct extent_call {
	struct store *st;
	uint64_t off, run;
	bool mapped;
	int rc;
};

static void *extent_thread(void *arg)
{
	struct extent_call *c = arg;
	c->rc = store_extent(c->st, c->off, &c->mapped, &c->run);
	return NULL;
}

/* The allocation query blocks on the cluster: it is a worker's call, made here on a thread. */
static int extent_on_worker(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	struct extent_call c = {.st = st, .off = off};
	pthread_t th;
	if (pthread_create(&th, NULL, extent_thread, &c) != 0)
		return -errno;
	pthread_join(th, NULL);
	*mapped = c.mapped;
	*run = c.run;
	return c.rc;
}

static void check_unmap_zero_same(struct store_engine *e, struct store *st)
{
	uint8_t *w = malloc(8 * MIB), *r = malloc(8 * MIB);
	uint64_t off = 32 * MIB; /* objects 8 and 9 of 4 MiB */
	bool mapped;
	uint64_t run;

	printf("8 MiB written: allocated\n");
	fill(w, 8 * MIB, 7);
	CHECK_EQ(do_io(e, st, STORE_IO_WRITE, off, 8 * MIB, w, 8 * MIB), 0);
	CHECK_EQ(extent_on_worker(st, off, &mapped, &run), 0);
	CHECK(mapped);
	CHECK(run >= 8 * MIB);

	printf("UNMAP of its first 4 MiB: reads zeros, deallocated; the rest still data\n");
	CHECK_EQ(do_io(e, st, STORE_IO_UNMAP, off, 4 * MIB, NULL, 0), 0);
	CHECK_EQ(do_io(e, st, STORE_IO_READ, off, 8 * MIB, r, 8 * MIB), 0);
	CHECK(all_zero(r, 4 * MIB));
	CHECK(memcmp(r + 4 * MIB, w + 4 * MIB, 4 * MIB) == 0);
	CHECK_EQ(extent_on_worker(st, off, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, 4 * MIB);
	CHECK_EQ(extent_on_worker(st, off + 4 * MIB, &mapped, &run), 0);
	CHECK(mapped);

	printf("WRITE ZEROES of 64 KiB inside the data: zeros, still allocated\n");
	CHECK_EQ(do_io(e, st, STORE_IO_WRITE_ZEROES, off + 5 * MIB, 64 * 1024, NULL, 0), 0);
	CHECK_EQ(do_io(e, st, STORE_IO_READ, off + 5 * MIB, 128 * 1024, r, 128 * 1024), 0);
	CHECK(all_zero(r, 64 * 1024));
	CHECK(memcmp(r + 64 * 1024, w + 5 * MIB + 64 * 1024, 64 * 1024) == 0);
	CHECK_EQ(extent_on_worker(st, off + 5 * MIB, &mapped, &run), 0);
	CHECK(mapped);

	printf("WRITE SAME of one 512-byte block over 1 MiB\n");
	uint8_t pat[512];
	fill(pat, sizeof(pat), 8);
	CHECK_EQ(do_io(e, st, STORE_IO_WRITE_SAME, off + 6 * MIB, MIB, pat, sizeof(pat)), 0);
	CHECK_EQ(do_io(e, st, STORE_IO_READ, off + 6 * MIB, MIB, r, MIB), 0);
	bool same = true;
	for (unsigned i = 0; i < MIB; i += 512)
		same = same && memcmp(r + i, pat, 512) == 0;
	CHECK(same);
	printf("WRITE SAME whose length is not a multiple of the pattern: -EINVAL\n");
	CHECK_EQ(do_io(e, st, STORE_IO_WRITE_SAME, off, 1000, pat, 512), -EINVAL);

	printf("a never written range is one deallocated run up to the query window\n");
	CHECK_EQ(extent_on_worker(st, 56 * MIB, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, st->size - 56 * MIB);
	printf("asked on the loop's thread, the query answers \"mapped\" at once, without the cluster\n");
	CHECK_EQ(store_extent(st, 56 * MIB, &mapped, &run), 0);
	CHECK(mapped);
	CHECK_EQ(run, st->size - 56 * MIB);
	free(w);
	free(r);
}

static unsigned resize_calls;
static void on_resize(struct store *st, void *arg)
{
	(void)st;
	(void)arg;
	if (!pthread_equal(pthread_self(), loop_thread))
		wrong_thread_completions++;
	resize_calls++;
}

static void check_resize(struct store_engine *e, struct store *st, const char *conf, const char *pool)
{
	printf("`rbd resize` by another client: the store sees the new size on its loop\n");
	uint64_t before = st->size;
	store_rbd_on_resize(st, on_resize, NULL);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "CEPH_CONF=%s timeout 60 rbd resize --size %lluM %s/store-b >/dev/null 2>&1", conf,
		 (unsigned long long)(before / MIB + 16), pool);
	CHECK_EQ(system(cmd), 0);
	double end = now_s() + 20;
	while (!resize_calls && now_s() < end)
		engine_turn(e, 200);
	CHECK_EQ(resize_calls, 1);
	CHECK_EQ(st->size, before + 16 * MIB);
	printf("  an io at the new end works\n");
	uint8_t b[4096];
	fill(b, sizeof(b), 9);
	CHECK_EQ(do_io(e, st, STORE_IO_WRITE, st->size - 4096, 4096, b, 4096), 0);
}

static void check_timeout(struct store_engine *e, struct store *st, const char *pause_cmd, const char *resume_cmd)
{
	printf("a frozen cluster: a read fails with -ETIMEDOUT in bounded time, the store recovers by itself\n");
	uint8_t w[4096], r[4096];
	fill(w, sizeof(w), 10);
	CHECK_EQ(do_io(e, st, STORE_IO_WRITE, 12 * MIB, 4096, w, 4096), 0);
	/* The objects the reads below ask for exist: librbd answers reads of missing ones itself. */
	for (unsigned i = 0; i < 16; i++)
		CHECK_EQ(do_io(e, st, STORE_IO_WRITE, (21 + i) * (uint64_t)MIB, 4096, w, 4096), 0);
	CHECK_EQ(system(pause_cmd), 0);
	double t0 = now_s();
	struct tio t;
	tio_submit(e, st, &t, STORE_IO_READ, 20 * MIB, 4096, r, 4096);
	printf("  the submit returned after %.3f s\n", now_s() - t0);
	CHECK(now_s() - t0 < 0.2); /* the loop never waits for the cluster */
	/*
	 * Past the in-flight budget (test_rbd_store.sh sets librados's limits to 16 operations):
	 * librbd submits on the caller's thread, and librados would make it wait for the frozen
	 * OSD; the store queues what does not fit instead.
	 */
	enum { NQ = 16 };
	static struct tio q[NQ];
	static uint8_t qb[NQ][4096];
	double worst = 0;
	for (unsigned i = 0; i < NQ; i++) {
		double s0 = now_s();
		tio_submit(e, st, &q[i], STORE_IO_READ, (21 + i) * (uint64_t)MIB, 4096, qb[i], 4096);
		worst = now_s() - s0 > worst ? now_s() - s0 : worst;
	}
	printf("  %d more reads at once: the longest submit took %.3f s\n", NQ, worst);
	CHECK(worst < 0.2);
	CHECK(run_until_idle(e, 60));
	double took = now_s() - t0;
	printf("  result %d after %.1f s\n", t.io.result, took);
	CHECK_EQ(t.io.result, -ETIMEDOUT);
	for (unsigned i = 0; i < NQ; i++)
		CHECK_EQ(q[i].io.result, -ETIMEDOUT);
	CHECK(took < 30);
	CHECK_EQ(system(resume_cmd), 0);
	int rc = -1;
	t0 = now_s();
	/* The first ops after a freeze may still time out while sessions come back. */
	while (now_s() - t0 < 60 && (rc = do_io(e, st, STORE_IO_READ, 12 * MIB, 4096, r, 4096)) != 0)
		;
	printf("  reads again after %.1f s\n", now_s() - t0);
	CHECK_EQ(rc, 0);
	CHECK(memcmp(w, r, sizeof(w)) == 0);
}

int main(void)
{
	const char *conf = getenv("ISTHMUS_TEST_CEPH_CONF");
	const char *pool = getenv("ISTHMUS_TEST_RBD_POOL");
	char *err = NULL;

	if (!conf || !*conf || !pool || !*pool) {
		printf("SKIP: no cluster (set ISTHMUS_TEST_CEPH_CONF and ISTHMUS_TEST_RBD_POOL; "
		       "tests/interop/test_rbd_store.sh does)\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	loop_thread = pthread_self();
	struct store_engine *eng = engine_new();

	printf("open %s/store-a and %s/store-b: one cluster connection for both\n", pool, pool);
	struct store *a = open_image(conf, pool, "store-a", false, &err);
	CHECK(a != NULL);
	if (!a) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	CHECK(store_is_rbd(a));
	CHECK_EQ(a->size, 64 * MIB);
	CHECK(a->thin);
	CHECK_EQ(a->fd, -1);
	CHECK_EQ(a->caps, STORE_CAP_UNMAP | STORE_CAP_WRITE_ZEROES | STORE_CAP_WRITE_SAME | STORE_CAP_COMPARE_WRITE);
	struct store *b = open_image(conf, pool, "store-b", false, &err);
	CHECK(b != NULL);
	CHECK_EQ(store_rbd_cluster_count(), 1);
	CHECK_STR(a->path, "rbd:rbd/store-a");

	printf("errors: a missing image, a missing pool\n");
	CHECK(open_image(conf, pool, "no-such-image", false, &err) == NULL);
	CHECK(err && strstr(err, "No such file"));
	free(err);
	CHECK(open_image(conf, "no-such-pool", "x", false, &err) == NULL);
	CHECK(err && strstr(err, "no-such-pool"));
	free(err);

	check_rw(eng, a);
	check_many_in_flight(eng, a);
	check_compare_write(eng, a, 512);
	check_compare_write(eng, a, 4096);
	check_unmap_zero_same(eng, a);

	printf("a second engine serves the same store: its read completes through its own engine\n");
	struct store_engine *other = engine_new();
	uint8_t blk[512];
	struct tio t;
	tio_submit(other, a, &t, STORE_IO_READ, 0, 512, blk, 512);
	CHECK(run_until_idle(other, 30));
	CHECK(t.done);
	CHECK_EQ(t.io.result, 0);
	store_engine_free(other);

	printf("a read-only store refuses writes with -EROFS\n");
	struct store *ro = open_image(conf, pool, "store-a", true, &err);
	CHECK(ro != NULL);
	if (ro) {
		CHECK(ro->read_only);
		CHECK_EQ(do_io(eng, ro, STORE_IO_WRITE, 0, 512, blk, 512), -EROFS);
		CHECK_EQ(do_io(eng, ro, STORE_IO_READ, 0, 512, blk, 512), 0);
		store_close(ro);
	}

	if (b) {
		CHECK_EQ(store_rbd_attach(b, eng), 0);
		check_resize(eng, b, conf, pool);
	}

	const char *pause_cmd = getenv("ISTHMUS_TEST_CEPH_PAUSE"), *resume_cmd = getenv("ISTHMUS_TEST_CEPH_RESUME");
	if (pause_cmd && resume_cmd)
		check_timeout(eng, a, pause_cmd, resume_cmd);
	else
		printf("(no ISTHMUS_TEST_CEPH_PAUSE: the timeout check is left out)\n");

	store_close(a);
	store_close(b);
	/* Their images are let go on threads of their own; the last one closes the connection. */
	CHECK_EQ(store_rbd_releases_wait(), 0);
	CHECK_EQ(store_rbd_cluster_count(), 0);
	struct store_engine_stats stats;
	store_engine_get_stats(eng, &stats);
	printf("engine: %llu ios submitted, %llu completed, %u in flight\n", (unsigned long long)stats.submitted,
	       (unsigned long long)stats.completed, stats.in_flight);
	CHECK_EQ(stats.in_flight, 0);
	CHECK_EQ(stats.submitted, stats.completed);
	store_engine_free(eng);

	const char *dead = getenv("ISTHMUS_TEST_CEPH_DEAD_CONF");
	if (dead) {
		printf("a cluster nobody answers for: opening fails with a message in bounded time\n");
		double t0 = now_s();
		struct store *d = open_image(dead, pool, "store-a", false, &err);
		double took = now_s() - t0;
		printf("  %.1f s: %s\n", took, err ? err : "(opened?)");
		CHECK(d == NULL);
		CHECK(took < STORE_RBD_MOUNT_TIMEOUT + 5);
		CHECK(err && strstr(err, "cannot connect"));
		free(err);
	}
	CHECK_EQ(wrong_thread_completions, 0);
	printf("%d checks, %d failed\n", test_checks, test_failures);
	return test_failures ? 1 : 0;
}
