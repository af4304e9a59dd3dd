/*
 * Which LUs a gateway fences a lost peer through (src/target/gateway.c, docs/gateways.md): one
 * per cluster the target's shared LUs are on, so that the peer's client on each cluster is
 * blocklisted there, and the lowest-numbered LU of each.
 */
#include "target/gateway.h"

#include "../test.h"

static void test_one_cluster(void)
{
	int a;
	const void *cl[] = { &a, &a, &a };
	const uint16_t lun[] = { 4, 1, 7 };
	size_t pick[3];

	CHECK_EQ(gateway_fence_plan(cl, lun, 3, pick), 1u);
	CHECK_EQ(pick[0], 1u);
	CHECK_EQ(gateway_fence_plan(cl, lun, 0, pick), 0u);
	printf("ok: LUs on one cluster: the peer fenced once, through the lowest-numbered LU\n");
}

static void test_clusters(void)
{
	int a, b, c;
	/* LUs as the gateway lists them (newest first), on three clusters, interleaved. */
	const void *cl[] = { &b, &a, &b, &c, &a };
	const uint16_t lun[] = { 5, 3, 2, 9, 0 };
	size_t pick[5];

	CHECK_EQ(gateway_fence_plan(cl, lun, 5, pick), 3u);
	CHECK(cl[pick[0]] == &b && lun[pick[0]] == 2);
	CHECK(cl[pick[1]] == &a && lun[pick[1]] == 0);
	CHECK(cl[pick[2]] == &c && lun[pick[2]] == 9);
	printf("ok: LUs on three clusters: the peer fenced on each, through its lowest-numbered LU\n");
}

int main(void)
{
	test_one_cluster();
	test_clusters();
	TEST_MAIN_END();
}
