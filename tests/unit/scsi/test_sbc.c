/* SBC commands: reads, writes, their residual rules, caching, errors and provisioning. */
#include "harness.h"

static uint8_t buf[1 << 17];

static void test_read_write(void)
{
	struct h *h = h_ready(1024);
	uint8_t c[16];

	for (size_t i = 0; i < 4096; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	cdb_rw10(c, 0x2a, 10, 8, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 4096, 0), SCSI_GOOD);
	CHECK_EQ(h->cmd.xfer_len, 4096);
	cdb_rw10(c, 0x28, 10, 8, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 4096);
	CHECK(memcmp(h->in, buf, 4096) == 0);

	/* 6, 12 and 16 byte forms address the same blocks. */
	uint8_t r6[6] = { 0x08, 0, 0, 11, 1, 0 };
	CHECK_EQ(h_run(h, r6, 6, NULL, 0, 512), SCSI_GOOD);
	CHECK(memcmp(h->in, buf + 512, 512) == 0);
	uint8_t r12[12] = { 0xa8, 0, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0 };
	CHECK_EQ(h_run(h, r12, 12, NULL, 0, 512), SCSI_GOOD);
	CHECK(memcmp(h->in, buf + 1024, 512) == 0);
	cdb_rw16(c, 0x88, 13, 1, 0);
	CHECK_EQ(h_run(h, c, 16, NULL, 0, 512), SCSI_GOOD);
	CHECK(memcmp(h->in, buf + 1536, 512) == 0);
	uint8_t w6[6] = { 0x0a, 0, 0, 20, 1, 0 };
	CHECK_EQ(h_run(h, w6, 6, buf, 512, 0), SCSI_GOOD);
	uint8_t w12[12] = { 0xaa, 0, 0, 0, 0, 21, 0, 0, 0, 1, 0, 0 };
	CHECK_EQ(h_run(h, w12, 12, buf + 512, 512, 0), SCSI_GOOD);
	cdb_rw16(c, 0x8a, 22, 1, 0);
	CHECK_EQ(h_run(h, c, 16, buf + 1024, 512, 0), SCSI_GOOD);
	cdb_rw10(c, 0x28, 20, 3, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 1536), SCSI_GOOD);
	CHECK(memcmp(h->in, buf, 1536) == 0);

	/* READ(6) with length 0 means 256 blocks. */
	uint8_t r6z[6] = { 0x08, 0, 0, 0, 0, 0 };
	CHECK_EQ(h_run(h, r6z, 6, NULL, 0, 1 << 17), SCSI_GOOD);
	CHECK_EQ(h->cmd.xfer_len, 256 * 512);

	/* Zero-length transfers are fine inside the LU, not beyond it. */
	cdb_rw10(c, 0x28, 0, 0, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 0), SCSI_GOOD);
	cdb_rw10(c, 0x28, 1025, 0, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, c, 10, NULL, 0, 0);
	h_free(h);
}

static void test_out_of_range(void)
{
	struct h *h = h_ready(1024);
	uint8_t c[16];

	cdb_rw10(c, 0x28, 1023, 2, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, c, 10, NULL, 0, 1024);
	CHECK_EQ(h->cmd.in_len, 0);
	cdb_rw10(c, 0x28, 1023, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	cdb_rw16(c, 0x88, UINT64_MAX, 1, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, c, 16, NULL, 0, 512);
	cdb_rw16(c, 0x8a, 1ull << 63, 1, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, c, 16, buf, 512, 0);
	/* RDPROTECT without protection information is an invalid field. */
	cdb_rw10(c, 0x28, 0, 1, 0x20);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 10, NULL, 0, 512);
	/* DPO and FUA are accepted. */
	cdb_rw10(c, 0x28, 0, 1, 0x18);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	h_free(h);
}

static void test_residuals(void)
{
	struct h *h = h_ready(1024);
	uint8_t c[10];

	/* Reads: whatever fits in the initiator's buffer, GOOD. */
	cdb_rw10(c, 0x28, 0, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 0);
	CHECK_EQ(h->cmd.xfer_len, 512);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 200), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 200);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 10000), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 512);

	/* Writes: surplus data is ignored; a short transfer writes only its whole blocks. */
	memset(buf, 'a', 1024);
	cdb_rw10(c, 0x2a, 0, 2, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 1024, 0), SCSI_GOOD);
	memset(buf, 'b', 1024);
	cdb_rw10(c, 0x2a, 0, 1, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 1024, 0), SCSI_GOOD);
	CHECK_EQ(h->cmd.xfer_len, 512);
	cdb_rw10(c, 0x28, 0, 2, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 1024), SCSI_GOOD);
	CHECK_EQ(h->in[0], 'b');
	CHECK_EQ(h->in[512], 'a');
	memset(buf, 'c', 1024);
	cdb_rw10(c, 0x2a, 0, 2, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->cmd.xfer_len, 1024);
	cdb_rw10(c, 0x28, 0, 2, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 1024), SCSI_GOOD);
	CHECK_EQ(h->in[0], 'c');
	CHECK_EQ(h->in[512], 'a');
	/* Part of a block: refused, nothing written. */
	memset(buf, 'd', 1024);
	cdb_rw10(c, 0x2a, 0, 1, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x0e, 0x03, c, 10, buf, 200, 0);
	cdb_rw10(c, 0x28, 0, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	CHECK_EQ(h->in[0], 'c');
	cdb_rw10(c, 0x2a, 0, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 0), SCSI_GOOD);
	h_free(h);
}

static void test_flush_rules(void)
{
	struct scsi_lu_params nocache = { .block_size = 512, .write_cache = false };
	struct h *h = h_ready(1024);
	uint8_t c[16];

	cdb_rw10(c, 0x2a, 0, 1, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, 0);
	cdb_rw10(c, 0x2a, 0, 1, 0x08);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, 1);
	cdb_rw16(c, 0x8a, 0, 1, 0x08);
	CHECK_EQ(h_run(h, c, 16, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, 2);
	uint8_t sc[10] = { 0x35 };
	CHECK_EQ(h_run(h, sc, 10, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, 3);
	cdb_rw16(c, 0x91, 0, 0, 0);
	CHECK_EQ(h_run(h, c, 16, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, 4);
	cdb_rw16(c, 0x91, 2000, 0, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, c, 16, NULL, 0, 0);
	/* A failing flush is reported, never swallowed. */
	h->fs->fail_flush = -EIO;
	CHECK_RUN_SENSE(h, SK_MEDIUM_ERROR, 0x0c, 0x00, sc, 10, NULL, 0, 0);
	cdb_rw10(c, 0x2a, 0, 1, 0x08);
	CHECK_RUN_SENSE(h, SK_MEDIUM_ERROR, 0x0c, 0x00, c, 10, buf, 512, 0);
	h_free(h);

	/* Write cache off: every write is flushed. */
	h = h_new(1024, &nocache);
	h_clear_ua(h, 0, 0);
	cdb_rw10(c, 0x2a, 0, 1, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, 1);
	uint8_t ms[6] = { 0x1a, 0x08, 0x08, 0, 255, 0 };
	CHECK_EQ(h_run(h, ms, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[4 + 2] & 0x04, 0);
	h_free(h);
}

static void test_errors(void)
{
	struct scsi_lu_params ro = { .block_size = 512, .read_only = true };
	struct h *h = h_ready(1024);
	uint8_t c[10];

	h->fs->fail_read = -EIO;
	cdb_rw10(c, 0x28, 7, 1, 0);
	CHECK_RUN_SENSE(h, SK_MEDIUM_ERROR, 0x11, 0x00, c, 10, NULL, 0, 512);
	CHECK_EQ(h->cmd.sense[0], 0xf0);          /* VALID: the INFORMATION field holds the LBA */
	CHECK_EQ(get_be32(h->cmd.sense + 3), 7);
	h->fs->fail_read = 0;
	h->fs->fail_write = -EIO;
	cdb_rw10(c, 0x2a, 9, 1, 0);
	CHECK_RUN_SENSE(h, SK_MEDIUM_ERROR, 0x0c, 0x00, c, 10, buf, 512, 0);
	h->fs->fail_write = -ENOSPC;
	CHECK_RUN_SENSE(h, SK_DATA_PROTECT, 0x27, 0x07, c, 10, buf, 512, 0);
	/* A store whose cluster does not answer: retryable, not a medium error. */
	h->fs->fail_write = -ETIMEDOUT;
	CHECK_RUN_SENSE(h, SK_NOT_READY, 0x04, 0x01, c, 10, buf, 512, 0);
	h->fs->fail_write = 0;
	h->fs->fail_read = -ETIMEDOUT;
	cdb_rw10(c, 0x28, 7, 1, 0);
	CHECK_RUN_SENSE(h, SK_NOT_READY, 0x04, 0x01, c, 10, NULL, 0, 512);
	h->fs->fail_read = 0;
	h_free(h);

	h = h_new(1024, &ro);
	h_clear_ua(h, 0, 0);
	cdb_rw10(c, 0x2a, 0, 1, 0);
	CHECK_RUN_SENSE(h, SK_DATA_PROTECT, 0x27, 0x00, c, 10, buf, 512, 0);
	cdb_rw10(c, 0x28, 0, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	uint8_t ms[6] = { 0x1a, 0x08, 0x3f, 0, 255, 0 };
	CHECK_EQ(h_run(h, ms, 6, NULL, 0, 255), SCSI_GOOD);
	CHECK_EQ(h->in[2] & 0x80, 0x80);
	h_free(h);
}

static void test_capacity(void)
{
	struct scsi_lu_params p4k = { .block_size = 4096, .thin = false };
	struct h *h = h_new(1024, NULL);
	uint8_t rc10[10] = { 0x25 }, rc16[16] = { 0x9e, 0x10 };

	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, rc10, 10, NULL, 0, 8), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in), 1023);
	CHECK_EQ(get_be32(h->in + 4), 512);
	rc16[13] = 32;
	CHECK_EQ(h_run(h, rc16, 16, NULL, 0, 32), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 32);
	CHECK_EQ(get_be64(h->in), 1023);
	CHECK_EQ(h->in[14] & 0xc0, 0xc0);
	rc16[13] = 12;
	CHECK_EQ(h_run(h, rc16, 16, NULL, 0, 32), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 12);
	rc10[5] = 1;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, rc10, 10, NULL, 0, 8);

	/* Resize: CAPACITY DATA HAS CHANGED, then the new size. */
	CHECK_EQ(store_resize(&h->fs->base, 2048 * 512), 0);
	scsi_target_lu_resized(h->t, 0);
	rc10[5] = 0;
	CHECK_RUN_SENSE(h, SK_UNIT_ATTENTION, 0x2a, 0x09, rc10, 10, NULL, 0, 8);
	CHECK_EQ(h_run(h, rc10, 10, NULL, 0, 8), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in), 2047);
	h_free(h);

	h = h_new(100, &p4k);
	h_clear_ua(h, 0, 0);
	rc16[13] = 32;
	CHECK_EQ(h_run(h, rc16, 16, NULL, 0, 32), SCSI_GOOD);
	CHECK_EQ(get_be64(h->in), 99);
	CHECK_EQ(get_be32(h->in + 8), 4096);
	CHECK_EQ(h->in[14] & 0xc0, 0);
	h_free(h);
}

static void test_verify_compare(void)
{
	struct h *h = h_ready(1024);
	uint8_t c[16];

	for (size_t i = 0; i < 2048; i++)
		buf[i] = (uint8_t)(i ^ 0x5a);
	cdb_rw10(c, 0x2a, 100, 4, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 2048, 0), SCSI_GOOD);
	/* VERIFY with BYTCHK 1: match, then a miscompare at a known offset. */
	cdb_rw10(c, 0x2f, 100, 4, 0x02);
	CHECK_EQ(h_run(h, c, 10, buf, 2048, 0), SCSI_GOOD);
	buf[1000] ^= 1;
	CHECK_RUN_SENSE(h, SK_MISCOMPARE, 0x1d, 0x00, c, 10, buf, 2048, 0);
	CHECK_EQ(get_be32(h->cmd.sense + 3), 1000);
	buf[1000] ^= 1;
	/* BYTCHK 0: medium check only; BYTCHK 2 reserved. */
	cdb_rw16(c, 0x8f, 100, 4, 0);
	CHECK_EQ(h_run(h, c, 16, NULL, 0, 0), SCSI_GOOD);
	cdb_rw16(c, 0x8f, 1020, 5, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, c, 16, NULL, 0, 0);
	cdb_rw16(c, 0x8f, 100, 4, 0x04);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 16, buf, 2048, 0);
	/* BYTCHK 3: one block against each block. */
	memset(buf + 4096, 0x11, 512);
	cdb_rw10(c, 0x2a, 200, 1, 0);
	CHECK_EQ(h_run(h, c, 10, buf + 4096, 512, 0), SCSI_GOOD);
	cdb_rw10(c, 0x2a, 201, 1, 0);
	CHECK_EQ(h_run(h, c, 10, buf + 4096, 512, 0), SCSI_GOOD);
	cdb_rw10(c, 0x2f, 200, 2, 0x06);
	CHECK_EQ(h_run(h, c, 10, buf + 4096, 512, 0), SCSI_GOOD);

	/* WRITE AND VERIFY flushes like FUA. */
	int f = h->fs->flushes;
	cdb_rw10(c, 0x2e, 300, 1, 0x02);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, f + 1);

	/* COMPARE AND WRITE: success, then miscompare leaves the data alone. */
	memcpy(buf + 8192, buf, 512);
	memset(buf + 8192 + 512, 0xee, 512);
	cdb_rw16(c, 0x89, 100, 0, 0);
	c[13] = 1;
	CHECK_EQ(h_run(h, c, 16, buf + 8192, 1024, 0), SCSI_GOOD);
	cdb_rw10(c, 0x28, 100, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	CHECK_EQ(h->in[0], 0xee);
	cdb_rw16(c, 0x89, 100, 0, 0);
	c[13] = 1;
	CHECK_RUN_SENSE(h, SK_MISCOMPARE, 0x1d, 0x00, c, 16, buf + 8192, 1024, 0);
	CHECK_EQ(get_be32(h->cmd.sense + 3), 0);
	CHECK_EQ(h_run(h, c, 16, buf + 8192, 512, 0), SCSI_CHECK_CONDITION);
	CHECK_EQ(h_key(h), SK_ILLEGAL_REQUEST);

	/* ORWRITE ORs into the medium. */
	memset(buf, 0x0f, 512);
	cdb_rw10(c, 0x2a, 400, 1, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	memset(buf, 0xf0, 512);
	cdb_rw16(c, 0x8b, 400, 1, 0);
	CHECK_EQ(h_run(h, c, 16, buf, 512, 0), SCSI_GOOD);
	cdb_rw10(c, 0x28, 400, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	CHECK_EQ(h->in[17], 0xff);

	/* PRE-FETCH checks the range only. */
	cdb_rw10(c, 0x34, 1000, 24, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 0), SCSI_GOOD);
	cdb_rw10(c, 0x34, 1000, 25, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, c, 10, NULL, 0, 0);
	h_free(h);
}

static uint8_t lba_status(struct h *h, uint64_t lba, uint32_t *count)
{
	uint8_t c[16] = { 0x9e, 0x12 };

	put_be64(c + 2, lba);
	put_be32(c + 10, 24);
	CHECK_EQ(h_run(h, c, 16, NULL, 0, 24), SCSI_GOOD);
	CHECK_EQ(get_be64(h->in + 8), lba);
	*count = get_be32(h->in + 16);
	return h->in[20];
}

static void test_provisioning(void)
{
	struct h *h = h_ready(1024);
	uint8_t c[16];
	uint32_t n;

	CHECK_EQ(lba_status(h, 0, &n), 1);
	CHECK_EQ(n, 1024);
	memset(buf, 0x33, 8 * 512);
	cdb_rw10(c, 0x2a, 8, 8, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 4096, 0), SCSI_GOOD);
	CHECK_EQ(lba_status(h, 0, &n), 1);
	CHECK_EQ(n, 8);
	CHECK_EQ(lba_status(h, 8, &n), 0);
	CHECK_EQ(n, 8);

	/* UNMAP one block in the middle. */
	uint8_t um[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t pl[24] = { 0 };
	put_be16(pl, 22);
	put_be16(pl + 2, 16);
	put_be64(pl + 8, 10);
	put_be32(pl + 16, 1);
	CHECK_EQ(h_run(h, um, 10, pl, 24, 0), SCSI_GOOD);
	CHECK_EQ(lba_status(h, 10, &n), 1);
	CHECK_EQ(n, 1);
	cdb_rw10(c, 0x28, 10, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	CHECK_EQ(h->in[0], 0);
	/* Beyond the end, or a bad length: refused. */
	put_be64(pl + 8, 1020);
	put_be32(pl + 16, 5);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, um, 10, pl, 24, 0);
	put_be16(pl + 2, 32);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x1a, 0x00, um, 10, pl, 24, 0);
	um[8] = 4;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x1a, 0x00, um, 10, pl, 4, 0);
	um[8] = 0;
	CHECK_EQ(h_run(h, um, 10, NULL, 0, 0), SCSI_GOOD);

	/* WRITE SAME of a pattern, then WRITE SAME of zeros with UNMAP deallocates. */
	memset(buf, 0x44, 512);
	cdb_rw10(c, 0x41, 100, 50, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(lba_status(h, 100, &n), 0);
	CHECK_EQ(n, 50);
	cdb_rw10(c, 0x28, 149, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	CHECK_EQ(h->in[511], 0x44);
	memset(buf, 0, 512);
	cdb_rw10(c, 0x41, 100, 50, 0x08);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(lba_status(h, 100, &n), 1);
	/* Data out of the wrong size is refused. */
	CHECK_EQ(h_run(h, c, 10, buf, 1024, 0), SCSI_CHECK_CONDITION);
	CHECK_EQ(h_key(h), SK_ILLEGAL_REQUEST);
	/* Whole LU, count 0 = to the end, NDOB: everything deallocated. */
	cdb_rw16(c, 0x93, 0, 0, 0x09);
	CHECK_EQ(h_run(h, c, 16, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(lba_status(h, 0, &n), 1);
	CHECK_EQ(n, 1024);
	/* A store that cannot deallocate gets zeros written instead. */
	memset(buf, 0x55, 512);
	cdb_rw10(c, 0x2a, 5, 1, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	h->fs->no_unmap = true;
	memset(buf, 0, 512);
	cdb_rw10(c, 0x41, 5, 1, 0x08);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	cdb_rw10(c, 0x28, 5, 1, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	CHECK_EQ(h->in[0], 0);
	/* GET LBA STATUS beyond the end. */
	uint8_t gl[16] = { 0x9e, 0x12 };
	put_be64(gl + 2, 1024);
	put_be32(gl + 10, 24);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00, gl, 16, NULL, 0, 24);
	h_free(h);

	/* A fully provisioned LU has no UNMAP. */
	struct scsi_lu_params thick = { .block_size = 512 };
	h = h_new(64, &thick);
	h_clear_ua(h, 0, 0);
	um[8] = 24;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x20, 0x00, um, 10, pl, 24, 0);
	cdb_rw10(c, 0x41, 0, 1, 0x08);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 10, buf, 512, 0);
	h_free(h);
}

int main(void)
{
	test_read_write();
	test_out_of_range();
	test_residuals();
	test_flush_rules();
	test_errors();
	test_capacity();
	test_verify_compare();
	test_provisioning();
	TEST_MAIN_END();
}
