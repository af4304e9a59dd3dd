#include "util/bufpool.h"

#include <stdlib.h>

#include "util/sbuf.h"

void bufpool_init(struct bufpool *p, size_t max_cached)
{
	for (unsigned i = 0; i < BUFPOOL_CLASSES; i++)
		p->free[i] = NULL;
	p->cached = 0;
	p->max_cached = max_cached;
}

/* The class whose size is the smallest power of two >= len; BUFPOOL_CLASSES if none fits. */
static unsigned class_of(size_t len)
{
	unsigned shift = BUFPOOL_MIN_SHIFT;
	while (shift <= BUFPOOL_MAX_SHIFT && ((size_t)1 << shift) < len)
		shift++;
	return shift - BUFPOOL_MIN_SHIFT;
}

void *bufpool_get(struct bufpool *p, size_t len)
{
	unsigned c = class_of(len);
	if (c >= BUFPOOL_CLASSES)
		return xmalloc(len);
	void *buf = p->free[c];
	if (buf) {
		p->free[c] = *(void **)buf;
		p->cached -= (size_t)1 << (c + BUFPOOL_MIN_SHIFT);
		return buf;
	}
	return xmalloc((size_t)1 << (c + BUFPOOL_MIN_SHIFT));
}

void bufpool_put(struct bufpool *p, void *buf, size_t len)
{
	if (!buf)
		return;
	unsigned c = class_of(len);
	size_t size = (size_t)1 << (c + BUFPOOL_MIN_SHIFT);
	if (c >= BUFPOOL_CLASSES || p->cached + size > p->max_cached) {
		free(buf);
		return;
	}
	*(void **)buf = p->free[c];
	p->free[c] = buf;
	p->cached += size;
}

void bufpool_free(struct bufpool *p)
{
	for (unsigned i = 0; i < BUFPOOL_CLASSES; i++) {
		while (p->free[i]) {
			void *next = *(void **)p->free[i];
			free(p->free[i]);
			p->free[i] = next;
		}
	}
	p->cached = 0;
}
