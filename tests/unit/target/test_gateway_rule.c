/* The gateway group's choice of the active/optimized group (src/target/gateway.c, docs/gateways.md). */
#include "target/gateway.h"

#include "../test.h"

static void test_without_the_lock(void)
{
	const uint16_t alive[] = { 3, 2 };

	/* Files, or no RBD image: the lowest-numbered gateway that answers, whatever was so before. */
	CHECK_EQ(gateway_optimized(4, alive, 2, GATEWAY_LOCK_NOT_FOLLOWED, 0, 3), 2);
	CHECK_EQ(gateway_optimized(1, alive, 2, GATEWAY_LOCK_NOT_FOLLOWED, 3, 3), 1);
	CHECK_EQ(gateway_optimized(4, NULL, 0, GATEWAY_LOCK_NOT_FOLLOWED, 0, 2), 4);
	printf("ok: without the lock, the lowest-numbered answering gateway\n");
}

static void test_lock_at_rest(void)
{
	const uint16_t alive[] = { 1, 3 };

	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_AT_REST, 3, 1), 3);
	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_AT_REST, 2, 1), 2);   /* ourselves */
	/* Nobody holds it, or a client of no gateway: the lowest that answers. */
	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_AT_REST, 0, 3), 1);
	/* The holder died (its lock stays at the cluster until broken): the lowest that answers. */
	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_AT_REST, 4, 4), 1);
	CHECK_EQ(gateway_optimized(2, alive + 1, 1, GATEWAY_LOCK_AT_REST, 1, 1), 2);
	printf("ok: a lock at rest names the optimized gateway when its holder answers\n");
}

static void test_lock_moving(void)
{
	const uint16_t alive[] = { 1, 3 };

	/* Passed back and forth: the role stays where it is, even away from the lowest. */
	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_MOVING, 1, 3), 3);
	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_MOVING, 3, 2), 2);
	/* ... unless it went away, or nothing was decided yet. */
	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_MOVING, 3, 4), 1);
	CHECK_EQ(gateway_optimized(2, alive, 2, GATEWAY_LOCK_MOVING, 3, 0), 1);
	printf("ok: while the lock moves, the optimized gateway stays the one it is\n");
}

static void test_states(void)
{
	CHECK_EQ(gateway_decide_state(2, 3, true, 3), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(gateway_decide_state(2, 2, true, 3), ALUA_ACTIVE_NON_OPTIMIZED);
	CHECK_EQ(gateway_decide_state(2, 1, false, 3), ALUA_UNAVAILABLE);
	printf("ok: one optimized group, the others non-optimized or unavailable\n");
}

int main(void)
{
	test_without_the_lock();
	test_lock_at_rest();
	test_lock_moving();
	test_states();
	TEST_MAIN_END();
}
