/* Implicit ALUA of a gateway group: TPGS, REPORT TARGET PORT GROUPS, state changes and their UA. */
#include "harness.h"

static const uint8_t rtpg[12] = { 0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };
static const uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
static const uint8_t tur[6] = { 0 };

/* A lone target: no TPGS, and REPORT TARGET PORT GROUPS is an unknown service action. */
static void test_lone_target(void)
{
	struct h *h = h_new(1024, NULL);

	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 96), SCSI_GOOD);
	CHECK_EQ(h->in[5] & 0x30, 0);
	CHECK_EQ(h_run(h, rtpg, 12, NULL, 0, 4096), SCSI_CHECK_CONDITION);
	CHECK_EQ(h_key(h), SK_ILLEGAL_REQUEST);
	h_free(h);
}

static void test_gateway_group(void)
{
	struct h *h = h_new(1024, NULL);
	const uint16_t ids[] = { 1, 2, 3 };

	/* This is gateway 2; nexus 0 comes in through its port (relative port 2). */
	CHECK_EQ(scsi_target_set_gateways(h->t, 2, ids, 3), 0);
	h->nx[0].rel_port_id = 2;
	h->nx[1].rel_port_id = 2;
	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 1, 0);

	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 96), SCSI_GOOD);
	CHECK_EQ(h->in[5] & 0x30, 0x10);

	CHECK_EQ(h_run(h, rtpg, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 4u + 3 * 12);
	CHECK_EQ(get_be32(h->in), 3u * 12);
	for (int i = 0; i < 3; i++) {
		const uint8_t *d = h->in + 4 + 12 * i;
		CHECK_EQ(get_be16(d + 2), ids[i]);
		CHECK_EQ(d[0] & 0x0f, ids[i] == 2 ? ALUA_ACTIVE_OPTIMIZED : ALUA_ACTIVE_NON_OPTIMIZED);
		CHECK_EQ(d[7], 1);
		CHECK_EQ(get_be16(d + 10), ids[i]);
	}
	/* The extended header: format type 1, and the same descriptors after 8 bytes. */
	uint8_t ext[12];
	memcpy(ext, rtpg, 12);
	ext[1] |= 0x20;
	CHECK_EQ(h_run(h, ext, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[4] & 0x70, 0x10);
	CHECK_EQ(get_be16(h->in + 8 + 2), 1);
	ext[1] = 0x4a;
	CHECK_EQ(h_run(h, ext, 12, NULL, 0, 4096), SCSI_CHECK_CONDITION);

	/* A change is told to every nexus, once; the same state again tells nobody. */
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 3, ALUA_UNAVAILABLE), 0);
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 9, ALUA_UNAVAILABLE), -1);
	for (int n = 0; n < 2; n++) {
		CHECK_EQ(h_run_full(h, n, 0, tur, 6, NULL, 0, 0), SCSI_CHECK_CONDITION);
		CHECK_SENSE(h, SK_UNIT_ATTENTION, 0x2a, 0x06);
		CHECK_EQ(h_run_full(h, n, 0, tur, 6, NULL, 0, 0), SCSI_GOOD);
	}
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 3, ALUA_UNAVAILABLE), 0);
	CHECK_EQ(h_run(h, tur, 6, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_run(h, rtpg, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[4 + 24] & 0x0f, ALUA_UNAVAILABLE);
	CHECK_EQ(h->in[4 + 24 + 5], 0x02);
	CHECK_EQ(scsi_target_tpg_state(h->t, 3), ALUA_UNAVAILABLE);

	/* This gateway's own group in standby: medium access refused, path discovery still runs. */
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 2, ALUA_STANDBY), 0);
	h_clear_ua(h, 0, 0);
	uint8_t rd[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	CHECK_EQ(h_run(h, rd, 10, NULL, 0, 512), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_NOT_READY, 0x04, 0x0b);
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 96), SCSI_GOOD);
	CHECK_EQ(h_run(h, rtpg, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(scsi_target_set_tpg_state(h->t, 2, ALUA_ACTIVE_OPTIMIZED), 0);
	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, rd, 10, NULL, 0, 512), SCSI_GOOD);

	/* A reload with the same group keeps the states the decision set. */
	CHECK_EQ(scsi_target_set_gateways(h->t, 2, ids, 3), 0);
	CHECK_EQ(scsi_target_tpg_state(h->t, 3), ALUA_UNAVAILABLE);
	h_free(h);
}

int main(void)
{
	test_lone_target();
	test_gateway_group();
	TEST_MAIN_END();
}
