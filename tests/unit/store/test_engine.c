/*
 * The store engine (store/store_io.h) with each backend it can start here: every op on a file
 * store, hundreds of ios in flight, inline completion for stores that never wait, reads of
 * stores that cannot probe the page cache kept on the workers, completions
 * in any order from a store with its own submit (watched descriptor), the fallback from
 * io_uring to the workers when io_uring cannot start, and io_uring submissions batched until
 * the owner's loop is about to sleep.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../test.h"
#include "store/store.h"
#include "store/store_io.h"

#define BS 4096u
#define NIO 512u

struct tio {
	struct store_io io;
	struct iovec iov;
	int done_calls;
	int *ndone;
	int order;               /* position among completions */
	uint8_t buf[BS];
};

static void tio_done(struct store_io *io)
{
	struct tio *t = io->priv;
	t->done_calls++;
	t->order = (*t->ndone)++;
}

static void tio_start(struct store_engine *e, struct store *st, struct tio *t, enum store_io_op op, uint64_t off,
		      uint64_t len, int *ndone)
{
	memset(&t->io, 0, sizeof(t->io));
	t->done_calls = 0;
	t->ndone = ndone;
	t->iov.iov_base = t->buf;
	t->iov.iov_len = op == STORE_IO_WRITE_SAME ? BS : (size_t)len;
	t->io.op = op;
	t->io.off = off;
	t->io.len = len;
	t->io.iov = &t->iov;
	t->io.iovcnt = op == STORE_IO_FLUSH || op == STORE_IO_UNMAP || op == STORE_IO_WRITE_ZEROES ? 0 : 1;
	t->io.done = tio_done;
	t->io.priv = t;
	store_io_submit(e, st, &t->io);
}

/* Reaps until *ndone reaches want (bounded: 10 s). */
static void pump(struct store_engine *e, int *ndone, int want)
{
	for (int i = 0; i < 1000 && *ndone < want; i++) {
		store_engine_submit_pending(e); /* what an owner's loop does before it sleeps */
		struct pollfd p = { .fd = store_engine_fd(e), .events = POLLIN };
		if (poll(&p, 1, 10) > 0)
			store_engine_reap(e);
	}
	CHECK_EQ(*ndone, want);
}

/* One io, waited for; returns its result. */
static int one(struct store_engine *e, struct store *st, struct tio *t, enum store_io_op op, uint64_t off,
	       uint64_t len)
{
	int n = 0;
	tio_start(e, st, t, op, off, len, &n);
	pump(e, &n, 1);
	CHECK_EQ(t->done_calls, 1);
	return t->io.result;
}

static struct store *file_store(char *path, size_t size)
{
	char *err = NULL;
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	struct store *st = store_file_open(path, size, false, &err);
	if (!st) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	/* The directory may be a tmpfs, whose reads never wait: make it a store that does. */
	st->wait = STORE_WAIT_PROBE;
	return st;
}

static void every_op(struct store_engine *e, struct store *st)
{
	static struct tio t;

	memset(t.buf, 0xa5, BS);
	CHECK_EQ(one(e, st, &t, STORE_IO_WRITE, 8 * BS, BS), 0);
	memset(t.buf, 0, BS);
	CHECK_EQ(one(e, st, &t, STORE_IO_READ, 8 * BS, BS), 0);
	CHECK_EQ(t.buf[0], 0xa5);
	CHECK_EQ(t.buf[BS - 1], 0xa5);
	CHECK_EQ(one(e, st, &t, STORE_IO_FLUSH, 0, 0), 0);
	CHECK_EQ(one(e, st, &t, STORE_IO_WRITE_ZEROES, 8 * BS, BS), 0);
	CHECK_EQ(one(e, st, &t, STORE_IO_READ, 8 * BS, BS), 0);
	CHECK_EQ(t.buf[0], 0);
	memset(t.buf, 0x3c, BS);
	CHECK_EQ(one(e, st, &t, STORE_IO_WRITE, 9 * BS, BS), 0);
	CHECK_EQ(one(e, st, &t, STORE_IO_UNMAP, 9 * BS, BS), 0);
	CHECK_EQ(one(e, st, &t, STORE_IO_READ, 9 * BS, BS), 0);
	CHECK_EQ(t.buf[100], 0);
	/* WRITE SAME: one block repeated over four. */
	memset(t.buf, 0x77, BS);
	CHECK_EQ(one(e, st, &t, STORE_IO_WRITE_SAME, 16 * BS, 4 * BS), 0);
	CHECK_EQ(one(e, st, &t, STORE_IO_READ, 19 * BS, BS), 0);
	CHECK_EQ(t.buf[BS - 1], 0x77);
	/* The file store cannot compare and write atomically itself. */
	CHECK_EQ(one(e, st, &t, STORE_IO_COMPARE_WRITE, 0, BS / 2), -EOPNOTSUPP);
	/* Errors come back as results. */
	CHECK(one(e, st, &t, STORE_IO_READ, st->size, BS) < 0);
}

static void many_in_flight(struct store_engine *e, struct store *st)
{
	static struct tio t[NIO];
	int ndone = 0;
	struct store_engine_stats before, s;

	store_engine_get_stats(e, &before);
	for (unsigned i = 0; i < NIO; i++) {
		memset(t[i].buf, (int)(i & 0xff), BS);
		t[i].buf[0] = (uint8_t)(i >> 8);
		tio_start(e, st, &t[i], STORE_IO_WRITE, (uint64_t)i * BS, BS, &ndone);
	}
	store_engine_get_stats(e, &s);
	CHECK(s.in_flight + (unsigned)ndone == NIO); /* every io counted, finished or not */
	pump(e, &ndone, NIO);
	for (unsigned i = 0; i < NIO; i++) {
		CHECK_EQ(t[i].done_calls, 1);
		CHECK_EQ(t[i].io.result, 0);
	}
	/* Read them back in the reverse order, all in flight at once. */
	posix_fadvise(st->fd, 0, 0, POSIX_FADV_DONTNEED);
	ndone = 0;
	for (unsigned i = NIO; i-- > 0;) {
		memset(t[i].buf, 0xee, BS);
		tio_start(e, st, &t[i], STORE_IO_READ, (uint64_t)i * BS, BS, &ndone);
	}
	pump(e, &ndone, NIO);
	unsigned good = 0;
	for (unsigned i = 0; i < NIO; i++)
		good += t[i].done_calls == 1 && t[i].io.result == 0 && t[i].buf[0] == (uint8_t)(i >> 8) &&
			t[i].buf[1] == (uint8_t)(i & 0xff) && t[i].buf[BS - 1] == (uint8_t)(i & 0xff);
	CHECK_EQ(good, NIO);
	store_engine_get_stats(e, &s);
	CHECK_EQ(s.in_flight, 0);
	CHECK_EQ(s.completed - before.completed, 2 * NIO);
	CHECK_EQ(s.submitted - before.submitted, 2 * NIO);
}

/* A memory store never waits: its ios complete before store_io_submit returns. */
static void inline_completion(struct store_engine *e)
{
	char *err = NULL;
	struct store *st = store_mem_open(1 << 20, &err);
	static struct tio t;
	int ndone = 0;
	struct store_engine_stats before, s;

	store_engine_get_stats(e, &before);
	memset(t.buf, 0x42, BS);
	tio_start(e, st, &t, STORE_IO_WRITE, 0, BS, &ndone);
	CHECK_EQ(t.done_calls, 1);
	tio_start(e, st, &t, STORE_IO_READ, 0, BS, &ndone);
	CHECK_EQ(t.done_calls, 1);
	CHECK_EQ(t.buf[7], 0x42);
	store_engine_get_stats(e, &s);
	CHECK_EQ(s.inline_completed - before.inline_completed, 2);
	CHECK_EQ(s.in_flight, 0);
	store_close(st);
}

/*
 * A store with its own submit, like a network store: ios are kept and completed from its
 * watched eventfd in the reverse order of submission.
 */
struct async_store {
	struct store base;
	int efd;
	struct store_engine *e;
	struct store_io *held[64];
	unsigned nheld;
	uint8_t data[64 * BS];
};

static void as_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	struct async_store *a = (struct async_store *)st;
	(void)e;
	a->held[a->nheld++] = io;
	uint64_t one = 1;
	CHECK_EQ(write(a->efd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

static void as_ready(void *arg)
{
	struct async_store *a = arg;
	uint64_t v;
	if (read(a->efd, &v, sizeof(v)) != sizeof(v))
		return;
	while (a->nheld) {
		struct store_io *io = a->held[--a->nheld];
		if (io->op == STORE_IO_WRITE)
			memcpy(a->data + io->off, io->iov[0].iov_base, io->len);
		else if (io->op == STORE_IO_READ)
			memcpy(io->iov[0].iov_base, a->data + io->off, io->len);
		store_io_complete(io, 0);
	}
}

static int as_never(struct store *st, void *b, size_t n, uint64_t off)
{
	(void)st, (void)b, (void)n, (void)off;
	CHECK(!"a store with submit is never called synchronously");
	return -EIO;
}

static void order_independence(struct store_engine *e)
{
	static const struct store_ops ops = { .read = as_never, .submit = as_submit };
	static struct async_store a;
	static struct tio t[64];
	int ndone = 0;

	a.base.ops = &ops;
	a.base.size = sizeof(a.data);
	a.base.fd = -1;
	a.base.wait = STORE_WAIT_ALWAYS;
	a.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK_EQ(store_engine_watch(e, a.efd, as_ready, &a), 0);
	for (unsigned i = 0; i < 64; i++) {
		memset(t[i].buf, (int)i, BS);
		tio_start(e, &a.base, &t[i], STORE_IO_WRITE, (uint64_t)i * BS, BS, &ndone);
		CHECK_EQ(t[i].done_calls, 0);
	}
	pump(e, &ndone, 64);
	/* Each finished once, the last submitted first. */
	for (unsigned i = 0; i < 64; i++) {
		CHECK_EQ(t[i].done_calls, 1);
		CHECK_EQ(t[i].order, 63 - (int)i);
	}
	CHECK_EQ(a.data[5 * BS + 17], 5);
	ndone = 0;
	tio_start(e, &a.base, &t[0], STORE_IO_READ, 7 * BS, BS, &ndone);
	pump(e, &ndone, 1);
	CHECK_EQ(t[0].buf[0], 7);
	store_engine_unwatch(e, a.efd);
	close(a.efd);
}

static void with_backend(enum store_engine_backend b)
{
	struct store_engine_params p = { .backend = b };
	char *err = NULL;
	struct store_engine *e = store_engine_new(&p, &err);
	if (!e) {
		printf("backend %s cannot start here: %s (skipped)\n", store_engine_backend_name(b), err);
		free(err);
		return;
	}
	printf("backend %s: %s runs (%s)\n", store_engine_backend_name(b),
	       store_engine_backend_name(store_engine_backend(e)), store_engine_backend_reason(e));
	if (b != STORE_BACKEND_AUTO)
		CHECK_EQ(store_engine_backend(e), b);
	char path[] = "engine-test-XXXXXX";
	struct store *st = file_store(path, NIO * BS);
	every_op(e, st);
	many_in_flight(e, st);
	/* A store that cannot tell whether a read waits (FUSE): its reads go to the workers. */
	struct store_engine_stats before, after;
	static struct tio t;
	store_engine_get_stats(e, &before);
	st->wait = STORE_WAIT_ALWAYS;
	CHECK_EQ(one(e, st, &t, STORE_IO_READ, 0, BS), 0);
	st->wait = STORE_WAIT_PROBE;
	store_engine_get_stats(e, &after);
	CHECK_EQ(after.worker_submitted - before.worker_submitted, 1);
	CHECK_EQ(after.uring_submitted, before.uring_submitted);
	inline_completion(e);
	order_independence(e);
	struct store_engine_stats s;
	store_engine_get_stats(e, &s);
	if (store_engine_backend(e) == STORE_BACKEND_URING)
		CHECK(s.uring_submitted > 0);
	else
		CHECK_EQ(s.uring_submitted, 0);
	store_engine_free(e);
	store_close(st);
	unlink(path);
}

/*
 * With batch, ios queue in the ring and leave with one system call when the owner says so;
 * without, each io is its own system call.
 */
static void batched_submission(void)
{
	enum { N = 16 };
	static struct tio t[N];
	for (int batch = 0; batch <= 1; batch++) {
		struct store_engine_params p = { .backend = STORE_BACKEND_URING, .batch = batch };
		char *err = NULL;
		struct store_engine *e = store_engine_new(&p, &err);
		if (!e) {
			printf("batched submission: io_uring cannot start here: %s (skipped)\n", err);
			free(err);
			return;
		}
		char path[] = "engine-test-XXXXXX";
		struct store *st = file_store(path, NIO * BS);
		int ndone = 0;
		for (int i = 0; i < N; i++) {
			memset(t[i].buf, i + 1, BS);
			tio_start(e, st, &t[i], STORE_IO_WRITE, (uint64_t)i * BS, BS, &ndone);
		}
		struct store_engine_stats s;
		store_engine_get_stats(e, &s);
		CHECK_EQ(s.uring_submitted, N);
		if (batch) {
			printf("batched: %d writes queued, %llu system calls so far\n", N,
			       (unsigned long long)s.uring_enters);
			CHECK_EQ(s.uring_enters, 0);
			/* Nothing reached the kernel: nothing can complete. */
			struct pollfd pf = { .fd = store_engine_fd(e), .events = POLLIN };
			CHECK_EQ(poll(&pf, 1, 50), 0);
			CHECK_EQ(ndone, 0);
			store_engine_submit_pending(e);
			store_engine_submit_pending(e); /* nothing left: no system call */
			store_engine_get_stats(e, &s);
			CHECK_EQ(s.uring_enters, 1);
		} else {
			printf("unbatched: %d writes, %llu system calls\n", N, (unsigned long long)s.uring_enters);
			CHECK_EQ(s.uring_enters, N);
		}
		pump(e, &ndone, N);
		for (int i = 0; i < N; i++)
			CHECK_EQ(t[i].io.result, 0);
		/* A chain of ios, each submitted from the previous one's completion, as the SCSI layer does. */
		static struct tio r;
		CHECK_EQ(one(e, st, &r, STORE_IO_READ, 5 * BS, BS), 0);
		CHECK_EQ(r.buf[0], 6);
		store_engine_free(e);
		store_close(st);
		unlink(path);
	}
}

/* io_uring that cannot start (a queue no kernel grants): auto falls back, io_uring fails. */
static void forced_fallback(void)
{
	struct store_engine_params p = { .backend = STORE_BACKEND_AUTO, .queue_depth = 1u << 30 };
	char *err = NULL;
	struct store_engine *e = store_engine_new(&p, &err);
	CHECK(e != NULL);
	if (!e)
		return;
	CHECK_EQ(store_engine_backend(e), STORE_BACKEND_WORKERS);
	CHECK(strstr(store_engine_backend_reason(e), "io_uring") != NULL);
	printf("forced fallback: %s\n", store_engine_backend_reason(e));
	char path[] = "engine-test-XXXXXX";
	struct store *st = file_store(path, NIO * BS);
	every_op(e, st);
	store_engine_free(e);
	store_close(st);
	unlink(path);
	p.backend = STORE_BACKEND_URING;
	e = store_engine_new(&p, &err);
	CHECK(e == NULL);
	CHECK(err != NULL);
	free(err);
}

int main(void)
{
	with_backend(STORE_BACKEND_WORKERS);
	with_backend(STORE_BACKEND_URING);
	with_backend(STORE_BACKEND_AUTO);
	forced_fallback();
	batched_submission();
	printf("%d checks, %d failed\n", test_checks, test_failures);
	return test_failures != 0;
}
