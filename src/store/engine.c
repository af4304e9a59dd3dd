/*
 * The store engine: where each store io runs (store_io.h). Stores with their own submit get
 * theirs; stores that never wait run their synchronous ops inline; stores with a descriptor go
 * to io_uring when it started, else to the worker threads. A read of a store that can probe the
 * page cache first takes what is cached without waiting, inline: only the rest waits.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "store/engine_int.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/sbuf.h"

/* How long store_engine_free waits for ios a store never finishes before giving up on them. */
#define ENGINE_DRAIN_MS 30000

/* WRITE_SAME without the store's help: the pattern copied into a buffer of at most this. */
#define WRITE_SAME_CHUNK (1u << 20)

static int rw_iov(struct store *st, const struct store_io *io, size_t skip, bool write)
{
	uint64_t off = io->off, left = io->len;

	for (unsigned i = 0; i < io->iovcnt && left; i++) {
		size_t n = io->iov[i].iov_len < left ? io->iov[i].iov_len : (size_t)left;
		char *b = io->iov[i].iov_base;
		if (skip < n) {
			int rc = write ? store_write(st, b + skip, n - skip, off + skip)
				       : store_read(st, b + skip, n - skip, off + skip);
			if (rc < 0)
				return rc;
			skip = 0;
		} else {
			skip -= n;
		}
		off += n;
		left -= n;
	}
	return left ? -EINVAL : 0;
}

static int write_same_sync(struct store *st, const struct store_io *io)
{
	if (io->iovcnt < 1 || io->iov[0].iov_len == 0)
		return -EINVAL;
	size_t bs = io->iov[0].iov_len;
	if (io->len % bs)
		return -EINVAL;
	size_t per = WRITE_SAME_CHUNK / bs * bs;
	if (per == 0)
		per = bs;
	size_t cap = io->len < per ? (size_t)io->len : per;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i += bs)
		memcpy(buf + i, io->iov[0].iov_base, bs);
	int rc = 0;
	for (uint64_t done = 0; done < io->len && rc == 0;) {
		size_t n = io->len - done < cap ? (size_t)(io->len - done) : cap;
		rc = store_write(st, buf, n, io->off + done);
		done += n;
	}
	free(buf);
	return rc;
}

int engine_run_sync(struct store *st, struct store_io *io, size_t skip)
{
	switch (io->op) {
	case STORE_IO_READ:
		return rw_iov(st, io, skip, false);
	case STORE_IO_WRITE:
		return rw_iov(st, io, skip, true);
	case STORE_IO_FLUSH:
		return store_flush(st);
	case STORE_IO_UNMAP:
		return store_unmap(st, io->off, io->len);
	case STORE_IO_WRITE_ZEROES:
		return store_zero(st, io->off, io->len);
	case STORE_IO_WRITE_SAME:
		return write_same_sync(st, io);
	case STORE_IO_COMPARE_WRITE:
		break;
	}
	return -EOPNOTSUPP;
}

void engine_complete(struct store_io *io, int result)
{
	struct store_engine *e = io->eng;

	io->result = result;
	if (e) {
		e->stats.completed++;
		e->stats.in_flight--;
	}
	io->done(io);
}

void store_io_complete(struct store_io *io, int result) { engine_complete(io, result); }

static void complete_inline(struct store_io *io, int result)
{
	if (io->eng)
		io->eng->stats.inline_completed++;
	engine_complete(io, result);
}

/* What the page cache holds of a read, without waiting; *got bytes from the start. */
static int read_cached(struct store *st, struct store_io *io, size_t *got)
{
	uint64_t left = io->len;

	*got = 0;
	for (unsigned i = 0; i < io->iovcnt && left; i++) {
		size_t n = io->iov[i].iov_len < left ? io->iov[i].iov_len : (size_t)left;
		size_t g = 0;
		int rc = store_read_nowait(st, io->iov[i].iov_base, n, io->off + *got, &g);
		if (rc < 0)
			return rc;
		*got += g;
		if (g < n)
			break;
		left -= n;
	}
	return 0;
}

void store_io_submit(struct store_engine *e, struct store *st, struct store_io *io)
{
	io->st = st;
	io->eng = e;
	io->result = 0;
	io->miscompare_off = 0;
	io->next = NULL;
	if (e) {
		e->stats.submitted++;
		e->stats.in_flight++;
	}
	if (st->ops->submit) {
		if (!e) {
			complete_inline(io, -EOPNOTSUPP);
			return;
		}
		st->ops->submit(st, e, io);
		return;
	}
	if (!e || st->wait == STORE_WAIT_NEVER || io->op == STORE_IO_COMPARE_WRITE) {
		complete_inline(io, engine_run_sync(st, io, 0));
		return;
	}
	const void *key = io;
	size_t got = 0;
	if (io->op == STORE_IO_READ) {
		bool stream = io->off == st->stream_end;
		st->stream_end = io->off + io->len;
		if (st->wait == STORE_WAIT_PROBE) {
			int rc = read_cached(st, io, &got);
			if (rc < 0 || got == io->len) {
				complete_inline(io, rc);
				return;
			}
		}
		/* A read continuing the previous one queues behind that stream's reads, in order. */
		key = stream && st->stream_key ? st->stream_key : io;
		st->stream_key = key;
	} else if (io->op == STORE_IO_FLUSH) {
		key = (const char *)st + 1; /* a store's flushes queue among themselves; never followed */
	}
	/*
	 * Reads of a store that cannot tell whether they would wait (FUSE, some network file
	 * systems) stay on the workers: io_uring would only run them on its own kernel threads,
	 * and there a stream's reads keep their order and a read of an aborted command still
	 * queued never reaches the device.
	 */
	bool keyed_read = io->op == STORE_IO_READ && st->wait == STORE_WAIT_ALWAYS;
	if (e->ur && got == 0 && st->fd >= 0 && !keyed_read && engine_uring_submit(e->ur, io, e->batch)) {
		e->stats.uring_submitted++;
		return;
	}
	engine_workers_submit(e, io, got, key);
}

const char *store_engine_backend_name(enum store_engine_backend b)
{
	switch (b) {
	case STORE_BACKEND_AUTO:
		return "auto";
	case STORE_BACKEND_URING:
		return "io_uring";
	case STORE_BACKEND_WORKERS:
		return "workers";
	}
	return "?";
}

bool store_engine_backend_parse(const char *s, enum store_engine_backend *b)
{
	static const enum store_engine_backend all[] = { STORE_BACKEND_AUTO, STORE_BACKEND_URING,
							  STORE_BACKEND_WORKERS };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, store_engine_backend_name(all[i])) == 0) {
			*b = all[i];
			return true;
		}
	}
	return false;
}

static int epoll_watch(struct store_engine *e, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };
	return epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* io_uring when asked or allowed and it starts; the reason for the outcome kept for the log. */
static int start_uring(struct store_engine *e, const struct store_engine_params *p, char **err)
{
	char *why = NULL;
	int efd = -1;

	if (p->backend == STORE_BACKEND_WORKERS) {
		snprintf(e->reason, sizeof(e->reason), "configured (io-engine = workers)");
		return 0;
	}
	e->ur = engine_uring_new(p->queue_depth ? p->queue_depth : STORE_ENGINE_QUEUE_DEPTH, &efd, &why);
	if (e->ur && epoll_watch(e, efd, &e->tag_uring) < 0) {
		free(why);
		why = xasprintf("cannot watch its eventfd: %s", strerror(errno));
		engine_uring_free(e->ur);
		e->ur = NULL;
	}
	if (e->ur) {
		e->backend = STORE_BACKEND_URING;
		snprintf(e->reason, sizeof(e->reason), "%s",
			 p->backend == STORE_BACKEND_URING ? "configured (io-engine = io_uring)" : "io_uring available");
		return 0;
	}
	if (p->backend == STORE_BACKEND_URING) {
		*err = xasprintf("io_uring: %s", why ? why : "unavailable");
		free(why);
		return -1;
	}
	snprintf(e->reason, sizeof(e->reason), "io_uring unavailable: %s", why ? why : "?");
	free(why);
	return 0;
}

struct store_engine *store_engine_new(const struct store_engine_params *p, char **err)
{
	static const struct store_engine_params defaults = { .backend = STORE_BACKEND_AUTO };
	struct store_engine *e = xcalloc(1, sizeof(*e));

	if (!p)
		p = &defaults;
	e->backend = STORE_BACKEND_WORKERS;
	e->batch = p->batch;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (e->epfd < 0) {
		*err = xasprintf("epoll_create1: %s", strerror(errno));
		free(e);
		return NULL;
	}
	atomic_init(&e->posted, NULL);
	e->post_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->post_efd < 0 || epoll_watch(e, e->post_efd, &e->tag_post) < 0) {
		*err = xasprintf("cannot set up the engine's completion queue: %s", strerror(errno));
		goto fail;
	}
	e->off = offload_new(p->workers ? p->workers : STORE_ENGINE_WORKERS, err);
	if (!e->off)
		goto fail;
	if (epoll_watch(e, offload_fd(e->off), &e->tag_offload) < 0) {
		*err = xasprintf("cannot watch the I/O workers' completions: %s", strerror(errno));
		goto fail;
	}
	if (start_uring(e, p, err) < 0)
		goto fail;
	return e;
fail:
	offload_free(e->off);
	if (e->post_efd >= 0)
		close(e->post_efd);
	close(e->epfd);
	free(e);
	return NULL;
}

int store_engine_fd(const struct store_engine *e) { return e->epfd; }

void store_engine_submit_pending(struct store_engine *e)
{
	if (e->ur)
		engine_uring_flush(e->ur);
}

void store_engine_post(struct store_engine *e, struct store_engine_post *p)
{
	struct store_engine_post *old = atomic_load_explicit(&e->posted, memory_order_relaxed);

	do {
		p->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&e->posted, &old, p, memory_order_release,
							memory_order_relaxed));
	if (!old) {
		uint64_t one = 1;
		if (write(e->post_efd, &one, sizeof(one)) < 0) {
			/* An eventfd counter does not overflow in practice. */
		}
	}
}

/*
 * The posted calls, oldest first. The descriptor is drained before the queue is taken: a post
 * that lands after the exchange finds the queue empty and signals again.
 */
static void run_posted(struct store_engine *e)
{
	uint64_t v;

	if (read(e->post_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	struct store_engine_post *list = atomic_exchange_explicit(&e->posted, NULL, memory_order_acquire);
	struct store_engine_post *rev = NULL;
	while (list) {
		struct store_engine_post *p = list;
		list = p->next;
		p->next = rev;
		rev = p;
	}
	/* After what an outer reap (this is a nested one) has still to run. */
	struct store_engine_post **tail = &e->run;
	while (*tail)
		tail = &(*tail)->next;
	*tail = rev;
	while (e->run) {
		struct store_engine_post *p = e->run;
		e->run = p->next;
		p->fn(p);
	}
}

void store_engine_reap(struct store_engine *e)
{
	struct epoll_event ev[32];
	int n = epoll_wait(e->epfd, ev, 32, 0);

	for (int i = 0; i < n; i++) {
		void *tag = ev[i].data.ptr;
		if (tag == &e->tag_post) {
			run_posted(e);
		} else if (tag == &e->tag_offload) {
			offload_reap(e->off);
		} else if (tag == &e->tag_uring) {
			if (e->ur)
				engine_uring_reap(e->ur);
		} else {
			/* A watch unwatched by an earlier ready() of this batch is no longer listed. */
			for (struct engine_watch *w = e->watches; w; w = w->next) {
				if (w == tag) {
					w->ready(w->arg);
					break;
				}
			}
		}
	}
}

enum store_engine_backend store_engine_backend(const struct store_engine *e) { return e->backend; }
const char *store_engine_backend_reason(const struct store_engine *e) { return e->reason; }
struct offload *store_engine_offload(struct store_engine *e) { return e->off; }

void store_engine_get_stats(const struct store_engine *e, struct store_engine_stats *s)
{
	*s = e->stats;
	s->uring_enters = e->ur ? engine_uring_enters(e->ur) : 0;
}

int store_engine_watch(struct store_engine *e, int fd, void (*ready)(void *arg), void *arg)
{
	struct engine_watch *w = xcalloc(1, sizeof(*w));

	w->fd = fd;
	w->ready = ready;
	w->arg = arg;
	int rc = epoll_watch(e, fd, w);
	if (rc < 0) {
		free(w);
		return rc;
	}
	w->next = e->watches;
	e->watches = w;
	return 0;
}

void store_engine_unwatch(struct store_engine *e, int fd)
{
	for (struct engine_watch **pp = &e->watches; *pp; pp = &(*pp)->next) {
		struct engine_watch *w = *pp;
		if (w->fd == fd) {
			epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
			*pp = w->next;
			free(w);
			return;
		}
	}
}

void store_engines_drain(struct store_engine *const *es, size_t n)
{
	struct pollfd *p = xcalloc(n, sizeof(*p));
	uint64_t start = mono_ms();

	for (;;) {
		unsigned busy = 0;
		for (size_t i = 0; i < n; i++) {
			p[i] = (struct pollfd){ .fd = es[i] ? es[i]->epfd : -1, .events = POLLIN };
			if (es[i]) {
				store_engine_submit_pending(es[i]); /* the done callbacks may have queued more */
				busy += es[i]->stats.in_flight;
			}
		}
		if (!busy || mono_ms() - start >= ENGINE_DRAIN_MS)
			break;
		if (poll(p, n, 100) <= 0)
			continue;
		for (size_t i = 0; i < n; i++)
			if (p[i].revents)
				store_engine_reap(es[i]);
	}
	free(p);
}

void store_engine_free(struct store_engine *e)
{
	if (!e)
		return;
	store_engines_drain(&e, 1);
	if (e->stats.in_flight)
		log_warn("store engine stopped with %u ios still in flight", e->stats.in_flight);
	run_posted(e);
	offload_free(e->off);
	engine_uring_free(e->ur);
	while (e->watches) {
		struct engine_watch *w = e->watches;
		e->watches = w->next;
		free(w);
	}
	close(e->post_efd);
	close(e->epfd);
	free(e);
}
