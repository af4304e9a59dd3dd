/*
 * The io_uring backend: reads, writes, flushes and fallocate-based deallocation and zeroing of
 * file and block-device stores are submitted to one ring whose completions signal an eventfd
 * the engine watches. What the ring cannot do here goes back to the caller, which hands it to
 * the workers: write-same patterns, ios past the ring's depth, a read-only store's writes (for
 * the store's own error), and the rest of a short transfer.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "store/engine_int.h"
#include "util/sbuf.h"

struct engine_uring {
	struct io_uring ring;
	int efd;
	unsigned depth, in_flight;
	unsigned queued;   /* entries prepared and not yet submitted */
	uint64_t enters;   /* io_uring_submit calls */
};

/* Bytes of a read or write done by earlier completions (a short transfer goes on elsewhere). */
static uint64_t *done_bytes(struct store_io *io) { return (uint64_t *)(void *)io->engine_priv; }

static bool probe_ops(struct io_uring *ring, char **why)
{
	static const struct {
		int op;
		const char *name;
	} need[] = { { IORING_OP_READV, "readv" }, { IORING_OP_WRITEV, "writev" }, { IORING_OP_FSYNC, "fsync" },
		     { IORING_OP_FALLOCATE, "fallocate" } };
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p) {
		*why = xasprintf("cannot probe its operations");
		return false;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (!io_uring_opcode_supported(p, need[i].op)) {
			*why = xasprintf("the kernel's io_uring has no %s", need[i].name);
			io_uring_free_probe(p);
			return false;
		}
	}
	io_uring_free_probe(p);
	return true;
}

struct engine_uring *engine_uring_new(unsigned depth, int *efd, char **why)
{
	struct engine_uring *u = xcalloc(1, sizeof(*u));
	int rc = io_uring_queue_init(depth, &u->ring, 0);

	*efd = -1;
	if (rc < 0) {
		*why = xasprintf("io_uring_queue_init(%u): %s", depth, strerror(-rc));
		free(u);
		return NULL;
	}
	if (!probe_ops(&u->ring, why))
		goto fail;
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd < 0) {
		*why = xasprintf("eventfd: %s", strerror(errno));
		goto fail;
	}
	rc = io_uring_register_eventfd(&u->ring, u->efd);
	if (rc < 0) {
		*why = xasprintf("io_uring_register_eventfd: %s", strerror(-rc));
		close(u->efd);
		goto fail;
	}
	u->depth = depth;
	*efd = u->efd;
	return u;
fail:
	io_uring_queue_exit(&u->ring);
	free(u);
	return NULL;
}

void engine_uring_free(struct engine_uring *u)
{
	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	close(u->efd);
	free(u);
}

static uint64_t iov_bytes(const struct store_io *io)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < io->iovcnt; i++)
		n += io->iov[i].iov_len;
	return n;
}

static bool writes(enum store_io_op op)
{
	return op == STORE_IO_WRITE || op == STORE_IO_UNMAP || op == STORE_IO_WRITE_ZEROES;
}

bool engine_uring_submit(struct engine_uring *u, struct store_io *io, bool batch)
{
	struct store *st = io->st;

	if (io->op == STORE_IO_WRITE_SAME || io->op == STORE_IO_COMPARE_WRITE || u->in_flight >= u->depth)
		return false;
	if (io->off > st->size || io->len > st->size - io->off)
		return false; /* the store's own ops say what is wrong */
	if (st->read_only && writes(io->op))
		return false;
	if ((io->op == STORE_IO_READ || io->op == STORE_IO_WRITE) && (iov_bytes(io) != io->len || io->len == 0))
		return false;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe && engine_uring_flush(u))
		sqe = io_uring_get_sqe(&u->ring); /* the ring was full of queued entries: they left */
	if (!sqe)
		return false;
	switch (io->op) {
	case STORE_IO_READ:
		io_uring_prep_readv(sqe, st->fd, io->iov, io->iovcnt, io->off);
		break;
	case STORE_IO_WRITE:
		io_uring_prep_writev(sqe, st->fd, io->iov, io->iovcnt, io->off);
		break;
	case STORE_IO_FLUSH:
		io_uring_prep_fsync(sqe, st->fd, IORING_FSYNC_DATASYNC);
		break;
	case STORE_IO_UNMAP:
		io_uring_prep_fallocate(sqe, st->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, io->off, io->len);
		break;
	case STORE_IO_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, st->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, io->off, io->len);
		break;
	default:
		break; /* refused above */
	}
	*done_bytes(io) = 0;
	io_uring_sqe_set_data(sqe, io);
	u->queued++;
	u->in_flight++;
	if (!batch)
		engine_uring_flush(u);
	return true;
}

unsigned engine_uring_flush(struct engine_uring *u)
{
	if (!u->queued)
		return 0;
	/* A failed submission leaves the entries in the ring: they go with the next call. */
	int rc = io_uring_submit(&u->ring);
	u->enters++;
	if (rc > 0)
		u->queued -= (unsigned)rc < u->queued ? (unsigned)rc : u->queued;
	return 1;
}

/* A finished read or write: done, or its remainder to a worker (a short transfer). */
static void rw_finished(struct store_io *io, int res)
{
	if (res < 0 && res != -EAGAIN && res != -EINTR) {
		engine_complete(io, res);
		return;
	}
	uint64_t *done = done_bytes(io);
	if (res > 0)
		*done += (uint64_t)res;
	if (*done >= io->len) {
		engine_complete(io, 0);
		return;
	}
	/* The rest, by the store's own ops (which also tell an end of file from a device error). */
	engine_workers_submit(io->eng, io, (size_t)*done, io);
}

static int fallocate_result(int res)
{
	if (res == -EOPNOTSUPP || res == -ENOTTY || res == -EINVAL || res == -ENODEV)
		return -EOPNOTSUPP; /* as the store's own unmap and zero say it */
	return res;
}

uint64_t engine_uring_enters(const struct engine_uring *u) { return u->enters; }

void engine_uring_reap(struct engine_uring *u)
{
	uint64_t v;
	struct io_uring_cqe *cqe;

	if (read(u->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct store_io *io = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		if (!io)
			continue;
		u->in_flight--;
		switch (io->op) {
		case STORE_IO_READ:
		case STORE_IO_WRITE:
			rw_finished(io, res);
			break;
		case STORE_IO_UNMAP:
		case STORE_IO_WRITE_ZEROES:
			engine_complete(io, res < 0 ? fallocate_result(res) : 0);
			break;
		default:
			engine_complete(io, res < 0 ? res : 0);
			break;
		}
	}
}
