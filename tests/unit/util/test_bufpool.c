/* The data buffer pool: buffers come back by size class, the bytes it keeps are bounded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "util/bufpool.h"

static void test_reuse_by_class(void)
{
	struct bufpool p;
	bufpool_init(&p, 8u << 20);
	uint8_t *a = bufpool_get(&p, 131072);
	memset(a, 0xab, 131072); /* the whole class size is usable */
	bufpool_put(&p, a, 131072);
	CHECK_EQ(p.cached, 131072);
	/* Any length of the same class gets the same buffer back; another class does not. */
	uint8_t *b = bufpool_get(&p, 100000);
	CHECK(b == a);
	CHECK_EQ(p.cached, 0);
	uint8_t *c = bufpool_get(&p, 4096);
	CHECK(c != a);
	bufpool_put(&p, c, 4096);
	bufpool_put(&p, b, 100000);
	CHECK_EQ(p.cached, 131072 + 4096);
	uint8_t *d = bufpool_get(&p, 1);
	CHECK(d == c);
	bufpool_put(&p, d, 1);
	bufpool_free(&p);
	CHECK_EQ(p.cached, 0);
}

static void test_bound(void)
{
	struct bufpool p;
	bufpool_init(&p, 1u << 20);
	void *bufs[8];
	for (int i = 0; i < 8; i++)
		bufs[i] = bufpool_get(&p, 262144);
	for (int i = 0; i < 8; i++)
		bufpool_put(&p, bufs[i], 262144);
	/* Four 256 KiB buffers fill the 1 MiB bound; the other four went back to malloc. */
	CHECK_EQ(p.cached, 1u << 20);
	/* Larger than the largest class: plain allocations, never kept. */
	void *huge = bufpool_get(&p, (64u << 20));
	CHECK(huge != NULL);
	bufpool_put(&p, huge, (64u << 20));
	CHECK_EQ(p.cached, 1u << 20);
	bufpool_free(&p);
}

int main(void)
{
	test_reuse_by_class();
	test_bound();
	TEST_MAIN_END();
}
