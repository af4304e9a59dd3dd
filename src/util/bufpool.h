/*
 * Data buffers reused instead of returned to malloc. Command data buffers (4 KiB to 32 MiB) are
 * allocated and freed at the rate of the I/O; through malloc, buffers of 128 KiB and more make
 * the heap grow and shrink (brk, page faults, zeroing) for every command once their sizes mix
 * with small ones. The pool keeps freed buffers by power-of-two size class, up to a bound on the
 * bytes it keeps, and is used from one thread.
 */
#ifndef ISTHMUS_UTIL_BUFPOOL_H
#define ISTHMUS_UTIL_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#define BUFPOOL_MIN_SHIFT 12u /* 4 KiB */
#define BUFPOOL_MAX_SHIFT 25u /* 32 MiB */
#define BUFPOOL_CLASSES (BUFPOOL_MAX_SHIFT - BUFPOOL_MIN_SHIFT + 1u)

struct bufpool {
	void *free[BUFPOOL_CLASSES]; /* each free buffer's first bytes link to the next */
	size_t cached;               /* bytes kept in the free lists */
	size_t max_cached;           /* past it, freed buffers go back to malloc */
};

void bufpool_init(struct bufpool *p, size_t max_cached);
/* A buffer of at least len bytes (len > 0); larger than the largest class: plain malloc. */
void *bufpool_get(struct bufpool *p, size_t len);
/* Give back a buffer bufpool_get returned for the same len. NULL is ignored. */
void bufpool_put(struct bufpool *p, void *buf, size_t len);
void bufpool_free(struct bufpool *p);

#endif
