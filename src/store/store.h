/*
 * Backing stores behind one small interface. Every call is synchronous and returns 0 or a
 * negative errno; the caller turns errors into SCSI sense data, never ignores them.
 */
#ifndef ISTHMUS_STORE_STORE_H
#define ISTHMUS_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>

struct store;
struct store_engine;
struct store_io;

/* Whether a read may wait for a device, which decides where it runs (see store/offload.h). */
enum store_wait {
	STORE_WAIT_NEVER,  /* memory, tmpfs: reads never wait; they run inline */
	STORE_WAIT_PROBE,  /* read_nowait tells whether a read would wait */
	STORE_WAIT_ALWAYS, /* no way to tell (FUSE, some network file systems): reads go to a worker */
};

struct store_ops {
	int (*read)(struct store *st, void *buf, size_t len, uint64_t off);
	int (*write)(struct store *st, const void *buf, size_t len, uint64_t off);
	/* Make every completed write durable (fdatasync for files). */
	int (*flush)(struct store *st);
	/* Deallocate a byte range; afterwards it reads as zeros. -EOPNOTSUPP if impossible. */
	int (*unmap)(struct store *st, uint64_t off, uint64_t len);
	/*
	 * Allocation status of the range starting at off: *mapped tells whether off is allocated,
	 * *run the length in bytes of the run of the same status (at least 1 byte, at most to end).
	 */
	int (*extent)(struct store *st, uint64_t off, bool *mapped, uint64_t *run);
	/* Change the size (online resize); memory and files only; -EBUSY while jobs run on it. */
	int (*resize)(struct store *st, uint64_t new_size);
	void (*close)(struct store *st);
	/*
	 * Optional (NULL: not offered): make a byte range read as zeros without writing them,
	 * keeping it allocated where the store can. -EOPNOTSUPP if impossible for this range.
	 */
	int (*zero)(struct store *st, uint64_t off, uint64_t len);
	/*
	 * Optional (with STORE_WAIT_PROBE): read what can be read without waiting for a device;
	 * *got bytes at buf (fewer than len, even 0, when the rest would wait). May switch the
	 * store to STORE_WAIT_ALWAYS when the file cannot tell.
	 */
	int (*read_nowait)(struct store *st, void *buf, size_t len, uint64_t off, size_t *got);
	/*
	 * Optional: the store's own asynchronous path (see store/store_io.h). Set for stores that
	 * must never be called synchronously from the loop (network stores); the engine then never
	 * uses the synchronous ops above for their ios.
	 */
	void (*submit)(struct store *st, struct store_engine *e, struct store_io *io);
	/*
	 * Optional (NULL: none): state kept with the medium itself rather than on this machine (an
	 * RBD image's lives next to it in the cluster), for what must survive the loss of the
	 * machine (APTPL reservations, scsi/pr_persist.c). state_get copies what the store read of
	 * it when it opened (malloc'd, NUL-terminated; no waiting; -ENOENT: there is none);
	 * state_put replaces it whole and atomically, durable on return, and waits for the medium:
	 * a worker's call. state_name says where it lives, for messages.
	 */
	int (*state_get)(struct store *st, char **data, size_t *len);
	int (*state_put)(struct store *st, const void *data, size_t len);
	const char *(*state_name)(const struct store *st);
};

struct store {
	const struct store_ops *ops;
	uint64_t size;          /* bytes */
	bool read_only;
	bool thin;              /* unmap really frees space */
	/*
	 * Every write is all-or-nothing, whatever its size, even across a crash: true only for
	 * memory stores, whose contents do not survive one anyway.
	 */
	bool atomic_writes;
	enum store_wait wait;
	unsigned caps;          /* enum store_cap (store/store_io.h) */
	int fd;                 /* the descriptor the engine may drive with io_uring; -1: none */
	/*
	 * Its ios in flight and long operations on workers, and a close waiting for them; atomic, as
	 * the SCSI layer's contexts (one per event loop) share a LU's store.
	 */
	_Atomic unsigned jobs;
	_Atomic bool closing;
	/*
	 * The SCSI layer's: commands in flight that no later command of this store may pass
	 * (ORDERED, and writes that read the medium first without the store's atomic help).
	 */
	_Atomic unsigned barriers;
	/* The engine's: where the last read went to a worker ended, and that stream's ordering key. */
	uint64_t stream_end;
	const void *stream_key;
	char *path;             /* for messages; "memory" and "null" for those stores */
};

/*
 * Open a regular file (created sparse with `size` bytes when missing and size > 0, or grown to
 * `size` if smaller) or a block device. On failure returns NULL and sets *err (malloc'd).
 */
struct store *store_file_open(const char *path, uint64_t size, bool read_only, char **err);
struct store *store_mem_open(uint64_t size, char **err);
/* A medium that keeps nothing: reads return zeros, writes are dropped (store_null.c). */
struct store *store_null_open(uint64_t size, bool read_only, char **err);

static inline int store_read(struct store *st, void *buf, size_t len, uint64_t off)
{
	return st->ops->read(st, buf, len, off);
}
static inline int store_write(struct store *st, const void *buf, size_t len, uint64_t off)
{
	return st->ops->write(st, buf, len, off);
}
static inline int store_read_nowait(struct store *st, void *buf, size_t len, uint64_t off, size_t *got)
{
	if (!st->ops->read_nowait) {
		*got = 0;
		return 0;
	}
	return st->ops->read_nowait(st, buf, len, off, got);
}
static inline int store_flush(struct store *st) { return st->ops->flush(st); }
static inline int store_unmap(struct store *st, uint64_t off, uint64_t len)
{
	return st->ops->unmap(st, off, len);
}
static inline int store_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	return st->ops->extent(st, off, mapped, run);
}
static inline int store_zero(struct store *st, uint64_t off, uint64_t len)
{
	return st->ops->zero ? st->ops->zero(st, off, len) : -EOPNOTSUPP;
}
static inline int store_resize(struct store *st, uint64_t new_size) { return st->ops->resize(st, new_size); }
static inline void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

#endif
