/*
 * Which LUs a gateway asks and fences a lost peer through (src/target/gateway_fence.c,
 * docs/gateways.md): one per cluster the target's shared LUs are on, the lowest-numbered LU of
 * each; and on which of those clusters the peer is fenced, given each cluster's witness answer.
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

/* Gateway 2 is the peer the probes lost; 1 is this gateway, 3 another peer. */
static void test_verdict_each_cluster(void)
{
	const unsigned both[] = { 1, 2, 3 }, without[] = { 1, 3 };
	bool fence[3];

	/* Alive on C1 (the cluster of the lowest-numbered LU), gone from C2: fenced on C2 only. */
	struct gateway_witness w[] = { { 0, both, 3 }, { 0, without, 2 } };
	CHECK_EQ(gateway_witness_verdict(2, w, 2, fence), 1u);
	CHECK(!fence[0] && fence[1]);
	/* And the mirror image: gone from C1, alive on C2. */
	struct gateway_witness m[] = { { 0, without, 2 }, { 0, both, 3 } };
	CHECK_EQ(gateway_witness_verdict(2, m, 2, fence), 1u);
	CHECK(fence[0] && !fence[1]);
	printf("ok: a peer alive on one cluster and gone from another is fenced on that other one only\n");
}

static void test_verdict_partition_and_death(void)
{
	const unsigned both[] = { 1, 2 }, self[] = { 1 };
	bool fence[3];

	/* A partition between the gateways only: every cluster still sees the peer, nobody fences it. */
	struct gateway_witness alive[] = { { 0, both, 2 }, { 0, both, 2 }, { 0, both, 2 } };
	CHECK_EQ(gateway_witness_verdict(2, alive, 3, fence), 0u);
	CHECK(!fence[0] && !fence[1] && !fence[2]);
	/* Dead: no cluster sees it, it is fenced on each. */
	struct gateway_witness dead[] = { { 0, self, 1 }, { 0, self, 1 }, { 0, NULL, 0 } };
	CHECK_EQ(gateway_witness_verdict(2, dead, 3, fence), 3u);
	CHECK(fence[0] && fence[1] && fence[2]);
	/* A cluster that gave no answer to decode proves nothing there: fenced there, kept where seen. */
	struct gateway_witness lost[] = { { 0, both, 2 }, { -110, NULL, 0 } };
	CHECK_EQ(gateway_witness_verdict(2, lost, 2, fence), 1u);
	CHECK(!fence[0] && fence[1]);
	/* Another gateway's acknowledgement says nothing about this peer. */
	CHECK_EQ(gateway_witness_verdict(3, alive, 1, fence), 1u);
	CHECK(fence[0]);
	CHECK_EQ(gateway_witness_verdict(2, alive, 0, fence), 0u);
	printf("ok: seen everywhere: fenced nowhere; seen nowhere or no answer: fenced there\n");
}

int main(void)
{
	test_one_cluster();
	test_clusters();
	test_verdict_each_cluster();
	test_verdict_partition_and_death();
	TEST_MAIN_END();
}
