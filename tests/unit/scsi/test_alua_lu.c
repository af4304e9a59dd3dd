/*
 * ALUA per logical unit: each LU of a gateway group may have its own optimized group (its image's
 * exclusive lock rests on another gateway than another LU's). REPORT TARGET PORT GROUPS answers
 * per LU, and ASYMMETRIC ACCESS STATE CHANGED is raised only on the LU whose view changed.
 */
#include "harness.h"

static const uint8_t rtpg[12] = { 0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };
static const uint8_t tur[6] = { 0 };

/* The state REPORT TARGET PORT GROUPS through nexus 0 gives group tpg on lun. */
static int rtpg_state(struct h *h, uint16_t lun, uint16_t tpg)
{
	if (h_run_full(h, 0, lun, rtpg, 12, NULL, 0, 4096) != SCSI_GOOD)
		return -1;
	uint32_t len = get_be32(h->in);
	for (uint32_t off = 4; off + 12 <= 4 + len; off += 12) {
		if (get_be16(h->in + off + 2) == tpg)
			return h->in[off] & 0x0f;
	}
	return -1;
}

/* Whether the next TEST UNIT READY through nexus nxi on lun reports 2Ah/06h (and clears it). */
static bool ua_asym(struct h *h, int nxi, uint16_t lun)
{
	if (h_run_full(h, nxi, lun, tur, 6, NULL, 0, 0) != SCSI_CHECK_CONDITION)
		return false;
	return h_key(h) == SK_UNIT_ATTENTION && h_asc(h) == 0x2a && h_ascq(h) == 0x06;
}

static void test_per_lu(void)
{
	struct h *h = h_new(1024, NULL);
	struct scsi_lu_params p = { .block_size = 512, .thin = true, .write_cache = true };
	struct fault_store *fs1 = fault_store_new(1024 * 512);
	char *err = NULL;
	CHECK_EQ(scsi_target_add_lu(h->t, 1, &fs1->base, &p, &err), 0);
	const uint16_t ids[] = { 1, 2 };

	/* This is gateway 1; both LUs follow the target's states: gateway 1 optimized. */
	CHECK_EQ(scsi_target_set_gateways(h->t, 1, ids, 2), 0);
	for (int n = 0; n < 2; n++) {
		h_clear_ua(h, n, 0);
		h_clear_ua(h, n, 1);
	}
	CHECK_EQ(rtpg_state(h, 0, 1), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(rtpg_state(h, 1, 1), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(rtpg_state(h, 1, 2), ALUA_ACTIVE_NON_OPTIMIZED);

	/* LU 1's lock rests on gateway 2: only LU 1 changes, and only its nexuses are told. */
	CHECK_EQ(scsi_target_set_lu_optimized(h->t, 1, 2), 0);
	for (int n = 0; n < 2; n++) {
		CHECK(!ua_asym(h, n, 0));
		CHECK(ua_asym(h, n, 1));
		CHECK(!ua_asym(h, n, 1));
	}
	CHECK_EQ(rtpg_state(h, 0, 1), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(rtpg_state(h, 0, 2), ALUA_ACTIVE_NON_OPTIMIZED);
	CHECK_EQ(rtpg_state(h, 1, 1), ALUA_ACTIVE_NON_OPTIMIZED);
	CHECK_EQ(rtpg_state(h, 1, 2), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(scsi_target_lu_tpg_state(h->t, 1, 2), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(scsi_target_lu_tpg_state(h->t, 0, 2), ALUA_ACTIVE_NON_OPTIMIZED);
	/* The same again tells nobody; a group that is not in the set, or no LU, is refused. */
	CHECK_EQ(scsi_target_set_lu_optimized(h->t, 1, 2), 0);
	CHECK(!ua_asym(h, 0, 1));
	CHECK_EQ(scsi_target_set_lu_optimized(h->t, 1, 9), -1);
	CHECK_EQ(scsi_target_set_lu_optimized(h->t, 7, 1), -1);

	/* LU 0 pinned to gateway 1, then the target's optimized group moves to 2: LU 0 and LU 1
	 * keep their own view and hear nothing. */
	CHECK_EQ(scsi_target_set_lu_optimized(h->t, 0, 1), 0);
	CHECK(!ua_asym(h, 0, 0));
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 1, ALUA_ACTIVE_NON_OPTIMIZED), 0);
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 2, ALUA_ACTIVE_OPTIMIZED), 0);
	CHECK(!ua_asym(h, 0, 0));
	CHECK(!ua_asym(h, 0, 1));
	CHECK_EQ(rtpg_state(h, 0, 1), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(rtpg_state(h, 1, 2), ALUA_ACTIVE_OPTIMIZED);

	/* Gateway 2 stops answering: unavailable for every LU, whatever its own optimized group,
	 * and every LU is told. */
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 2, ALUA_UNAVAILABLE), 0);
	CHECK(ua_asym(h, 0, 0));
	CHECK(ua_asym(h, 0, 1));
	CHECK_EQ(rtpg_state(h, 1, 2), ALUA_UNAVAILABLE);
	CHECK_EQ(rtpg_state(h, 0, 2), ALUA_UNAVAILABLE);

	/* Back to the target's states for LU 1 (0): its view is the target's again. */
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 2, ALUA_ACTIVE_OPTIMIZED), 0);
	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 0, 1);
	CHECK_EQ(scsi_target_set_lu_optimized(h->t, 1, 0), 0);
	CHECK_EQ(rtpg_state(h, 1, 2), ALUA_ACTIVE_OPTIMIZED);
	CHECK_EQ(rtpg_state(h, 1, 1), ALUA_ACTIVE_NON_OPTIMIZED);
	h_free(h);
}

int main(void)
{
	test_per_lu();
	TEST_MAIN_END();
}
