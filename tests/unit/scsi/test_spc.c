/* SPC commands and the rules around them: INQUIRY, REPORT LUNS, unit attentions, sense formats. */
#include <time.h>

#include "harness.h"
#include "util/lun.h"

static void test_unit_attention(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t tur[6] = { 0 }, inq[6] = { 0x12, 0, 0, 0, 96, 0 }, rs[6] = { 0x03, 0, 0, 0, 252, 0 };

	/* INQUIRY neither reports nor clears the power-on attention. */
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 96), SCSI_GOOD);
	CHECK_RUN_SENSE(h, SK_UNIT_ATTENTION, 0x29, 0x00, tur, 6, NULL, 0, 0);
	CHECK_EQ(h_run(h, tur, 6, NULL, 0, 0), SCSI_GOOD);

	/* The other nexus still has its own, and REQUEST SENSE returns and clears it. */
	CHECK_EQ(h_run_full(h, 1, 0, rs, 6, NULL, 0, 252), SCSI_GOOD);
	CHECK_EQ(h->in[0], 0x70);
	CHECK_EQ(h->in[2] & 0x0f, SK_UNIT_ATTENTION);
	CHECK_EQ(h->in[12], 0x29);
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_GOOD);

	/* A LUN reset raises a reset attention for everyone: BUS DEVICE RESET FUNCTION OCCURRED. */
	CHECK_EQ(scsi_target_task_mgmt(h->t, SCSI_TMF_LUN_RESET, 0, true, &h->nx[0]), 0);
	CHECK_RUN_SENSE(h, SK_UNIT_ATTENTION, 0x29, 0x03, tur, 6, NULL, 0, 0);
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_EQ(scsi_target_task_mgmt(h->t, SCSI_TMF_LUN_RESET, 7, true, &h->nx[0]), 2);

	/* Nexus loss and re-login: a new nexus starts with power-on again. */
	struct scsi_nexus n3;
	h_nexus(&n3, 3, "iqn.2024-01.org.example:init3");
	scsi_target_nexus_lost(h->t, &h->nx[1]);
	h->nx[1] = n3;
	scsi_target_nexus_added(h->t, &h->nx[1]);
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_UNIT_ATTENTION, 0x29, 0x00);
	h_free(h);
}

static void test_inquiry(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t c[6] = { 0x12, 0, 0, 0, 255, 0 };

	CHECK_EQ(h_run(h, c, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 96);
	CHECK_EQ(h->cmd.xfer_len, 255);
	CHECK_EQ(h->in[0], 0x00);
	CHECK_EQ(h->in[2], 0x06);
	CHECK_EQ(h->in[3], 0x12);
	CHECK_EQ(h->in[4], 91);
	CHECK_EQ(h->in[7] & 0x02, 0x02);
	CHECK(memcmp(h->in + 8, "ISTHMUS ", 8) == 0);
	CHECK(memcmp(h->in + 16, "VIRTUAL-DISK    ", 16) == 0);
	CHECK_EQ(get_be16(h->in + 62), 0x0460);

	/* Allocation length truncates; the buffer cap truncates further. */
	c[4] = 10;
	CHECK_EQ(h_run(h, c, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 10);
	c[4] = 200;
	CHECK_EQ(h_run(h, c, 6, NULL, 0, 20), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 20);

	/* Page code without EVPD, and CMDDT, are invalid. */
	c[2] = 0x80;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 6, NULL, 0, 255);
	CHECK_EQ(h->cmd.sense[15], 0xc0);   /* SKSV, C/D: the CDB */
	CHECK_EQ(get_be16(h->cmd.sense + 16), 2);
	c[2] = 0;
	c[1] = 0x02;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 6, NULL, 0, 255);

	/* VPD pages. */
	c[1] = 1;
	c[2] = 0x00;
	c[4] = 255;
	CHECK_EQ(h_run(h, c, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[1], 0x00);
	CHECK_EQ(h->in[3], 7);
	CHECK(memcmp(h->in + 4, "\x00\x80\x83\x8f\xb0\xb1\xb2", 7) == 0);
	c[2] = 0x80;
	CHECK_EQ(h_run(h, c, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[3], 16);
	c[2] = 0x83;
	CHECK_EQ(h_run(h, c, 6, NULL, 0, 255), SCSI_GOOD);
	{
		size_t len = get_be16(h->in + 2) + 4, off = 4;
		int naa = 0, t10 = 0, relport = 0, tpg = 0;
		CHECK_EQ(h->cmd.in_len, len);
		while (off + 4 <= len) {
			const uint8_t *d = h->in + off;
			switch (d[1] & 0x0f) {
			case 3:
				naa++;
				CHECK_EQ(d[4] >> 4, 6);
				CHECK_EQ(d[3], 16);
				break;
			case 1:
				t10++;
				CHECK(memcmp(d + 4, "ISTHMUS ", 8) == 0);
				break;
			case 4:
				relport++;
				CHECK_EQ(get_be16(d + 6), 1);
				break;
			case 5:
				tpg++;
				break;
			}
			off += 4 + d[3];
		}
		CHECK_EQ(off, len);
		CHECK_EQ(naa, 1);
		CHECK_EQ(t10, 1);
		CHECK_EQ(relport, 1);
		CHECK_EQ(tpg, 1);
	}
	c[2] = 0xb0;
	c[4] = 64;
	CHECK_EQ(h_run(h, c, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 64);
	CHECK_EQ(h->in[3], 0x3c);
	CHECK(get_be32(h->in + 20) > 0);
	c[2] = 0xb2;
	CHECK_EQ(h_run(h, c, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[5] & 0xe4, 0xe4);
	c[2] = 0x99;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 6, NULL, 0, 255);

	/* A LUN that does not exist: qualifier 3, type 0x1f; other commands fail. */
	c[1] = 0;
	c[2] = 0;
	CHECK_EQ(h_run_full(h, 0, 5, c, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[0], 0x7f);
	uint8_t tur[6] = { 0 };
	CHECK_EQ(h_run_full(h, 0, 5, tur, 6, NULL, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x25, 0x00);
	uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
	CHECK_EQ(h_run_full(h, 0, 5, rs, 6, NULL, 0, 18), SCSI_GOOD);
	CHECK_EQ(h->in[12], 0x25);
	h_free(h);
}

static void test_report_luns(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t c[12] = { 0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 };
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 4096 };
	uint8_t tur[6] = { 0 };

	h_clear_ua(h, 0, 0);
	CHECK_EQ(scsi_target_add_lu(h->t, 300, store_mem_open(1 << 20, &err), &p, &err), 0);
	CHECK_EQ(scsi_target_lu_count(h->t), 2);
	/* LU 0 tells the existing nexus the inventory changed. */
	CHECK_RUN_SENSE(h, SK_UNIT_ATTENTION, 0x3f, 0x0e, tur, 6, NULL, 0, 0);
	CHECK_EQ(h_run(h, tur, 6, NULL, 0, 0), SCSI_GOOD);

	/* REPORT LUNS works on any LUN, and its data lists both. */
	CHECK_EQ(h_run_full(h, 0, 9, c, 12, NULL, 0, 256), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in), 16);
	CHECK_EQ(h->cmd.in_len, 24);
	CHECK_EQ(h->in[8 + 1], 0);
	CHECK_EQ(h->in[16], 0x41);
	CHECK_EQ(h->in[17], 300 & 0xff);
	uint16_t lun = 0;
	CHECK(scsi_lun_decode(h->in + 16, &lun));
	CHECK_EQ(lun, 300);
	c[2] = 1;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 256), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in), 0);
	c[2] = 2;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 256), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in), 16);
	c[2] = 3;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 12, NULL, 0, 256);
	c[2] = 0;
	c[8] = 0;
	c[9] = 8;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 256), SCSI_CHECK_CONDITION);

	CHECK_EQ(scsi_target_remove_lu(h->t, 300), 0);
	CHECK_EQ(scsi_target_remove_lu(h->t, 300), -1);
	uint16_t luns[4];
	CHECK_EQ(scsi_target_list_luns(h->t, luns, 4), 1);
	CHECK_EQ(luns[0], 0);
	h_free(h);
}

static void test_lun_codec(void)
{
	uint8_t f[8];
	uint16_t lun;

	lun_encode(5, f);
	CHECK(memcmp(f, "\x00\x05\x00\x00\x00\x00\x00\x00", 8) == 0);
	CHECK(scsi_lun_decode(f, &lun));
	CHECK_EQ(lun, 5);
	lun_encode(16383, f);
	CHECK(scsi_lun_decode(f, &lun));
	CHECK_EQ(lun, 16383);
	/* Extended flat space names a LUN, but not one of ours, even when the number would fit. */
	memcpy(f, "\xd2\x00\x00\x05\x00\x00\x00\x00", 8);
	CHECK(!scsi_lun_decode(f, &lun));
	lun_encode(16383, f);
	CHECK_EQ(f[0], 0x7f);
	CHECK(scsi_lun_decode(f, &lun));
	CHECK_EQ(lun, 16383);
	f[3] = 1;
	CHECK(!scsi_lun_decode(f, &lun));
	memcpy(f, "\x81\x00\x00\x00\x00\x00\x00\x00", 8);
	CHECK(!scsi_lun_decode(f, &lun));
	memcpy(f, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
	CHECK(!scsi_lun_decode(f, &lun));
}

static void test_invalid(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t c[16] = { 0xff };

	h_clear_ua(h, 0, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x20, 0x00, c, 16, NULL, 0, 0);
	/* Known opcode, unknown service action: a CDB field error. */
	memset(c, 0, sizeof(c));
	c[0] = 0x9e;
	c[1] = 0x1f;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 16, NULL, 0, 0);
	/* NACA in the control byte. */
	uint8_t tur[6] = { 0, 0, 0, 0, 0, 0x04 };
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, tur, 6, NULL, 0, 0);
	/* A reserved bit. */
	uint8_t tur2[6] = { 0, 0x10, 0, 0, 0, 0 };
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, tur2, 6, NULL, 0, 0);
	/* The LUN field could not be decoded. */
	struct scsi_cmd *cmd = &h->cmd;
	memset(cmd, 0, sizeof(*cmd));
	cmd->nexus = &h->nx[0];
	cmd->lun_valid = false;
	cmd->cdb_len = 16;
	cmd->done = h_done;
	cmd->priv = h;
	scsi_port_submit(h->ctx, cmd);
	CHECK_EQ(cmd->status, SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x25, 0x00);
	/* Sense set by the transport: fixed format. */
	scsi_cmd_set_sense(cmd, SK_ABORTED_COMMAND, 0x47, 0x03);
	CHECK_EQ(cmd->sense[0], 0x70);
	CHECK_EQ(cmd->sense_len, 18);
	CHECK_SENSE(h, SK_ABORTED_COMMAND, 0x47, 0x03);
	h_free(h);
}

static void test_mode_sense(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t c6[6] = { 0x1a, 0, 0x3f, 0, 255, 0 };
	uint8_t c10[10] = { 0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0 };

	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 1, 0);
	CHECK_EQ(h_run(h, c6, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, h->in[0] + 1u);
	CHECK_EQ(h->in[2] & 0x10, 0x10);   /* DPOFUA */
	CHECK_EQ(h->in[3], 8);
	CHECK_EQ(get_be32(h->in + 4), 1024);
	CHECK_EQ(get_be32(h->in + 8), 512);
	{
		int seen = 0;
		for (size_t off = 12; off < h->cmd.in_len; off += 2 + h->in[off + 1])
			seen |= 1 << (h->in[off] & 0x1f);
		CHECK_EQ(seen, (1 << 1) | (1 << 8) | (1 << 0x0a) | (1 << 0x1c));
	}
	/* Caching page, current: WCE set as configured; changeable: WCE only. */
	c6[1] = 0x08;
	c6[2] = 0x08;
	CHECK_EQ(h_run(h, c6, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[3], 0);
	CHECK_EQ(h->in[4], 0x08);
	CHECK_EQ(h->in[6] & 0x04, 0x04);
	c6[2] = 0x48;
	CHECK_EQ(h_run(h, c6, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[6], 0x04);
	c6[2] = 0xc8;
	CHECK_EQ(h_run(h, c6, 6, NULL, 0, 255), SCSI_GOOD);
	c6[2] = 0x05;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c6, 6, NULL, 0, 255);
	c6[2] = 0x08;
	c6[3] = 0x01;
	CHECK_EQ(h_run(h, c6, 6, NULL, 0, 255), SCSI_CHECK_CONDITION);
	c6[3] = 0;
	/* Truncation: only what fits the allocation length. */
	c6[4] = 4;
	CHECK_EQ(h_run(h, c6, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 4);
	CHECK_EQ(h->in[0], 23);

	/* MODE SENSE(10) with a long LBA descriptor. */
	c10[1] = 0x10;
	CHECK_EQ(h_run(h, c10, 10, NULL, 0, 256), SCSI_GOOD);
	CHECK_EQ(get_be16(h->in) + 2u, h->cmd.in_len);
	CHECK_EQ(h->in[4] & 1, 1);
	CHECK_EQ(get_be16(h->in + 6), 16);
	CHECK_EQ(get_be64(h->in + 8), 1024);
	h_free(h);
}

static void test_mode_select(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t ms[6] = { 0x1a, 0x08, 0x0a, 0, 255, 0 };
	uint8_t sel[6] = { 0x15, 0x10, 0, 0, 0, 0 };
	uint8_t p[64];
	uint8_t rd[10];

	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 1, 0);
	/* Read the control page, set D_SENSE, send it back. */
	CHECK_EQ(h_run(h, ms, 6, NULL, 0, 255), SCSI_GOOD);
	size_t n = h->cmd.in_len;
	memcpy(p, h->in, n);
	p[0] = 0;
	p[4 + 2] |= 0x04;
	sel[4] = (uint8_t)n;
	CHECK_EQ(h_run(h, sel, 6, p, (uint32_t)n, 0), SCSI_GOOD);
	/* Now sense comes in descriptor format, with the LBA in an information descriptor. */
	cdb_rw10(rd, 0x28, 5000, 1, 0);
	CHECK_EQ(h_run(h, rd, 10, NULL, 0, 512), SCSI_CHECK_CONDITION);
	CHECK_EQ(h->cmd.sense[0], 0x72);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00);
	/* The other nexus learns that mode parameters changed. */
	uint8_t tur[6] = { 0 };
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_UNIT_ATTENTION, 0x2a, 0x01);
	/* A non-changeable bit is refused, pointing into the parameter list. */
	p[4 + 2] &= ~0x04;
	p[4 + 3] ^= 0x01;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x00, sel, 6, p, (uint32_t)n, 0);
	CHECK_EQ(h->cmd.sense[0], 0x72);
	p[4 + 3] ^= 0x01;
	CHECK_EQ(h_run(h, sel, 6, p, (uint32_t)n, 0), SCSI_GOOD);
	CHECK_EQ(h_run(h, rd, 10, NULL, 0, 512), SCSI_CHECK_CONDITION);
	CHECK_EQ(h->cmd.sense[0], 0x70);
	CHECK_EQ(h->cmd.sense[0] & 0x80, 0);

	/* SP is refused: nothing is savable. */
	sel[1] = 0x11;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, sel, 6, p, (uint32_t)n, 0);
	sel[1] = 0x10;
	/* Short data. */
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x1a, 0x00, sel, 6, p, 3, 0);

	/* SWP makes writes fail with DATA PROTECT and sets WP in the header. */
	p[4 + 4] |= 0x08;
	CHECK_EQ(h_run(h, sel, 6, p, (uint32_t)n, 0), SCSI_GOOD);
	CHECK_EQ(h_run(h, ms, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[2] & 0x80, 0x80);
	uint8_t blk[512] = { 0 };
	cdb_rw10(rd, 0x2a, 0, 1, 0);
	CHECK_EQ(h_run(h, rd, 10, blk, 512, 0), SCSI_CHECK_CONDITION);
	CHECK_EQ(h_key(h), SK_DATA_PROTECT);
	CHECK_EQ(h_asc(h), 0x27);
	/* Cold reset restores the defaults. */
	scsi_target_task_mgmt(h->t, SCSI_TMF_TARGET_COLD_RESET, 0, true, &h->nx[0]);
	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, rd, 10, blk, 512, 0), SCSI_GOOD);
	h_free(h);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Many sessions: a new I_T nexus costs no work per LU, and MODE SELECT (which raises MODE
 * PARAMETERS CHANGED for the others) one pass over the nexuses that have met the LU, not a
 * lookup per session. Those that never did get POWER ON when they first do, as always.
 */
static void test_many_nexuses(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t ms[6] = { 0x1a, 0x08, 0x08, 0, 255, 0 };
	uint8_t sel[6] = { 0x15, 0x10, 0, 0, 0, 0 };
	uint8_t tur[6] = { 0 };
	static struct scsi_nexus many[40000];
	uint8_t p[64];

	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 1, 0);
	double t0 = now_s();
	for (unsigned i = 0; i < 40000; i++) {
		h_nexus(&many[i], 100 + i, "iqn.2024-01.org.example:many");
		scsi_target_nexus_added(h->t, &many[i]);
	}
	CHECK_EQ(h_run(h, ms, 6, NULL, 0, 255), SCSI_GOOD); /* the caching page */
	size_t n = h->cmd.in_len;
	memcpy(p, h->in, n);
	p[0] = 0;
	p[4 + 2] ^= 0x04; /* WCE */
	sel[4] = (uint8_t)n;
	CHECK_EQ(h_run(h, sel, 6, p, (uint32_t)n, 0), SCSI_GOOD);
	double secs = now_s() - t0;
	printf("40000 nexuses added and a MODE SELECT: %.3f s\n", secs);
	CHECK(secs < 4.0); /* 33 s before: a lookup per session for each of them */
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_UNIT_ATTENTION, 0x2a, 0x01);
	h->nx[1] = many[123];
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_UNIT_ATTENTION, 0x29, 0x00);
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_GOOD);
	/* Sessions that end lose their state on the LU; the others keep theirs. */
	struct scsi_nexus saved = h->nx[1];
	int wrong = 0;
	for (unsigned i = 0; i < 3000; i++) {
		h->nx[1] = many[i];
		h_clear_ua(h, 1, 0);
	}
	for (unsigned i = 0; i < 3000; i += 3)
		scsi_target_nexus_lost(h->t, &many[i]);
	for (unsigned i = 0; i < 3000; i++) {
		h->nx[1] = many[i];
		int st = h_run_full(h, 1, 0, tur, 6, NULL, 0, 0);
		if (i % 3 == 0 ? st != SCSI_CHECK_CONDITION || h_asc(h) != 0x29 : st != SCSI_GOOD)
			wrong++;
	}
	CHECK_EQ(wrong, 0);
	h->nx[1] = saved;
	h_free(h);
}

static void test_opcodes(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t c[12] = { 0xa3, 0x0c, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };

	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 4096), SCSI_GOOD);
	uint32_t len = get_be32(h->in);
	CHECK_EQ(len % 8, 0);
	CHECK(len / 8 > 40);
	c[2] = 0x80;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in) % 20, 0);
	/* One command: READ(10) with its usage bitmap, DPO and FUA included. */
	c[2] = 0x01;
	c[3] = 0x28;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[1] & 0x07, 3);
	CHECK_EQ(get_be16(h->in + 2), 10);
	CHECK_EQ(h->in[4], 0x28);
	CHECK_EQ(h->in[5] & 0x18, 0x18);
	c[3] = 0xee;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[1] & 0x07, 1);
	c[3] = 0x9e;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 4096), SCSI_CHECK_CONDITION);
	c[2] = 0x02;
	c[5] = 0x10;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[1] & 0x07, 3);
	CHECK_EQ(get_be16(h->in + 2), 16);
	c[2] = 0x82;
	CHECK_EQ(h_run(h, c, 12, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[1], 0x83);
	CHECK_EQ(get_be16(h->in + 4 + 16), 0x0a);
	h_free(h);
}

static void test_reserve(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t rsv[6] = { 0x16 }, rel[6] = { 0x17 }, tur[6] = { 0 }, rd[10];

	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 1, 0);
	CHECK_EQ(h_run(h, rsv, 6, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_run(h, rsv, 6, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_run_full(h, 1, 0, rsv, 6, NULL, 0, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_run_full(h, 1, 0, rel, 6, NULL, 0, 0), SCSI_GOOD);
	cdb_rw10(rd, 0x28, 0, 1, 0);
	CHECK_EQ(h_run_full(h, 1, 0, rd, 10, NULL, 0, 512), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_run(h, rd, 10, NULL, 0, 512), SCSI_GOOD);
	uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 };
	CHECK_EQ(h_run_full(h, 1, 0, inq, 6, NULL, 0, 36), SCSI_GOOD);
	CHECK_EQ(h_run(h, rel, 6, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_run_full(h, 1, 0, rd, 10, NULL, 0, 512), SCSI_GOOD);
	/* Nexus loss drops it. */
	CHECK_EQ(h_run(h, rsv, 6, NULL, 0, 0), SCSI_GOOD);
	scsi_target_nexus_lost(h->t, &h->nx[0]);
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_GOOD);
	/* A reset drops it too. */
	CHECK_EQ(h_run_full(h, 1, 0, rsv, 6, NULL, 0, 0), SCSI_GOOD);
	scsi_target_task_mgmt(h->t, SCSI_TMF_TARGET_WARM_RESET, 0, true, &h->nx[1]);
	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, tur, 6, NULL, 0, 0), SCSI_GOOD);
	h_free(h);
}

int main(void)
{
	test_unit_attention();
	test_inquiry();
	test_report_luns();
	test_lun_codec();
	test_invalid();
	test_mode_sense();
	test_mode_select();
	test_many_nexuses();
	test_opcodes();
	test_reserve();
	TEST_MAIN_END();
}
