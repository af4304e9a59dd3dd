/*
 * The commands and rules added for libiscsi's conformance suite: COMPARE AND WRITE length
 * checks, WRITE SAME with UNMAP, large transfers, WRITE ATOMIC (16), SANITIZE, EXTENDED COPY
 * and RECEIVE COPY RESULTS, and the VPD data that advertises them.
 */
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static uint8_t buf[1 << 17];

static uint8_t lba_status(struct h *h, uint64_t lba, uint32_t *count)
{
	uint8_t gl[16] = { 0x9e, 0x12 };

	put_be64(gl + 2, lba);
	put_be32(gl + 10, 24);
	CHECK_EQ(h_run(h, gl, 16, NULL, 0, 24), SCSI_GOOD);
	*count = get_be32(h->in + 16);
	return h->in[20] & 0x0f;
}

static void test_compare_and_write_length(void)
{
	struct h *h = h_ready(1024);
	uint8_t c[16];

	/* 256 blocks wrap the one-byte count to 0: data sent with it is refused, not ignored. */
	cdb_rw16(c, 0x89, 0, 0, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 16, buf, 1024, 0);
	CHECK_EQ(get_be16(h->cmd.sense + 16), 13);
	/* Zero blocks and no data: nothing to do. */
	CHECK_EQ(h_run(h, c, 16, NULL, 0, 0), SCSI_GOOD);
	/* The limit the Block Limits page advertises, and the data-out size, are enforced. */
	uint8_t inq[6] = { 0x12, 1, 0xb0, 0, 64, 0 };
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(h->in[5], 255);
	cdb_rw16(c, 0x89, 0, 0, 0);
	c[13] = 2;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 16, buf, 3 * 512, 0);
	h_free(h);
}

static void test_write_same_unmap(void)
{
	struct h *h = h_ready(1024);
	uint8_t c[16];
	uint32_t n;

	memset(buf, 0xff, 8 * 512);
	cdb_rw10(c, 0x2a, 1016, 8, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 8 * 512, 0), SCSI_GOOD);
	/* UNMAP with a non-zero block still deallocates: the blocks read back as zeros (LBPRZ). */
	cdb_rw10(c, 0x41, 1016, 0, 0x08);
	CHECK_EQ(h_run(h, c, 10, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(lba_status(h, 1016, &n), 1);
	CHECK_EQ(n, 8);
	cdb_rw10(c, 0x28, 1016, 8, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 8 * 512), SCSI_GOOD);
	for (int i = 0; i < 8 * 512; i++)
		CHECK_EQ(h->in[i], 0);
	/* Zeros without UNMAP: the store zeroes the range (no data written) and it stays mapped. */
	int writes = h->fs->writes;
	memset(buf, 0, 512);
	cdb_rw16(c, 0x93, 0, 0, 0);
	CHECK_EQ(h_run(h, c, 16, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->writes, writes);
	CHECK_EQ(h->fs->zeroes, 1);
	CHECK_EQ(lba_status(h, 0, &n), 0);
	CHECK_EQ(n, 1024);
	/* ... or gets zeros written where the store cannot. */
	h->fs->no_unmap = true;
	cdb_rw16(c, 0x93, 10, 4, 0);
	CHECK_EQ(h_run(h, c, 16, buf, 512, 0), SCSI_GOOD);
	CHECK_EQ(h->fs->writes, writes + 1);
	h_free(h);
}

static void test_large_transfer(void)
{
	struct h *h = h_new(131072, NULL);
	uint8_t c[16];
	static uint8_t big[32u << 20];

	h_clear_ua(h, 0, 0);
	uint8_t inq[6] = { 0x12, 1, 0xb0, 0, 64, 0 };
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 8), 65536);
	/* 65536 blocks of 512 bytes (32 MiB), what WriteSame16.Unmap writes and reads. */
	memset(big, 0x5a, sizeof(big));
	cdb_rw16(c, 0x8a, 0, 65536, 0);
	CHECK_EQ(h_run(h, c, 16, big, sizeof(big), 0), SCSI_GOOD);
	cdb_rw16(c, 0x8a, 0, 65537, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 16, big, sizeof(big), 0);
	h_free(h);
}

/* A target with LU 0 on a memory store (atomic writes) and LU 1 on the fault store. */
static struct h *h_mem(void)
{
	struct h *h = h_new(2048, NULL);
	struct scsi_lu_params p = { .block_size = 512, .thin = true, .write_cache = true };
	char *err = NULL;
	struct store *st = store_mem_open(4096 * 512, &err);

	CHECK_EQ(scsi_target_add_lu(h->t, 1, st, &p, &err), 0);
	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 0, 1);
	h_clear_ua(h, 1, 0);
	h_clear_ua(h, 1, 1);
	return h;
}

static bool rsoc_has(struct h *h, uint16_t lun, uint8_t opcode)
{
	uint8_t c[12] = { 0xa3, 0x0c, 0x00 };

	put_be32(c + 6, sizeof(h->in));
	CHECK_EQ(h_run_full(h, 0, lun, c, 12, NULL, 0, sizeof(h->in)), SCSI_GOOD);
	for (uint32_t off = 4; off < 4 + get_be32(h->in); off += 8) {
		if (h->in[off] == opcode)
			return true;
	}
	return false;
}

static void test_write_atomic(void)
{
	struct h *h = h_mem();
	uint8_t c[16];

	/* Offered on the memory LU only, and advertised accordingly. */
	CHECK(rsoc_has(h, 1, 0x9c));
	CHECK(!rsoc_has(h, 0, 0x9c));
	uint8_t inq[6] = { 0x12, 1, 0xb0, 0, 64, 0 };
	CHECK_EQ(h_run_full(h, 0, 1, inq, 6, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 44), 65536);
	CHECK_EQ(get_be32(h->in + 48), 0);
	CHECK_EQ(get_be32(h->in + 52), 0);
	CHECK_EQ(h_run_full(h, 0, 0, inq, 6, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 44), 0);

	memset(c, 0, 16);
	c[0] = 0x9c;
	put_be64(c + 2, 4094);
	put_be16(c + 12, 2);
	memset(buf, 0xa6, 1024);
	CHECK_EQ(h_run_full(h, 0, 1, c, 16, buf, 1024, 0), SCSI_GOOD);
	uint8_t r[16];
	cdb_rw16(r, 0x88, 4094, 2, 0);
	CHECK_EQ(h_run_full(h, 0, 1, r, 16, NULL, 0, 1024), SCSI_GOOD);
	CHECK(memcmp(h->in, buf, 1024) == 0);
	/* A short data-out transfer writes nothing at all. */
	memset(buf, 0x11, 1024);
	CHECK_EQ(h_run_full(h, 0, 1, c, 16, buf, 512, 0), SCSI_CHECK_CONDITION);
	CHECK_EQ(h_key(h), SK_ILLEGAL_REQUEST);
	CHECK_EQ(h_run_full(h, 0, 1, r, 16, NULL, 0, 1024), SCSI_GOOD);
	CHECK_EQ(h->in[0], 0xa6);
	/* Beyond the end, and on the LU whose store is not atomic. */
	put_be64(c + 2, 4095);
	CHECK_EQ(h_run_full(h, 0, 1, c, 16, buf, 1024, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x21, 0x00);
	put_be64(c + 2, 0);
	CHECK_EQ(h_run_full(h, 0, 0, c, 16, buf, 1024, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x20, 0x00);
	h_free(h);
}

static void test_sanitize(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t c[16];
	uint8_t sz[10] = { 0x48, 0x02 };
	uint32_t n;

	h_clear_ua(h, 0, 0);
	memset(buf, 'a', 4096);
	cdb_rw10(c, 0x2a, 0, 8, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 4096, 0), SCSI_GOOD);
	cdb_rw10(c, 0x2a, 1016, 8, 0);
	CHECK_EQ(h_run(h, c, 10, buf, 4096, 0), SCSI_GOOD);
	/* BLOCK ERASE: everything deallocated, reads return zeros (WABEREQ 01b). */
	CHECK_EQ(h_run(h, sz, 10, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(lba_status(h, 0, &n), 1);
	CHECK_EQ(n, 1024);
	cdb_rw10(c, 0x28, 1016, 8, 0);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[4095], 0);
	uint8_t inq[6] = { 0x12, 1, 0xb1, 0, 64, 0 };
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(h->in[7] >> 6, 1);
	/* Parameter data, reserved bits, and unoffered service actions are refused. */
	sz[8] = 8;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, sz, 10, buf, 8, 0);
	sz[8] = 0;
	sz[1] = 0x42;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, sz, 10, NULL, 0, 0);
	sz[1] = 0x01;   /* OVERWRITE */
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, sz, 10, NULL, 0, 0);
	/* Another nexus holding RESERVE(6): conflict. */
	h_clear_ua(h, 1, 0);
	uint8_t rsv[6] = { 0x16 }, rel[6] = { 0x17 };
	CHECK_EQ(h_run_full(h, 1, 0, rsv, 6, NULL, 0, 0), SCSI_GOOD);
	sz[1] = 0x02;
	CHECK_EQ(h_run(h, sz, 10, NULL, 0, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_run_full(h, 1, 0, rel, 6, NULL, 0, 0), SCSI_GOOD);
	/* A failure part way leaves the LU in the sanitize failure state... */
	h->fs->no_unmap = true;
	h->fs->fail_write = -EIO;
	CHECK_EQ(h_run(h, sz, 10, NULL, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_EQ(h_key(h), SK_MEDIUM_ERROR);
	h->fs->fail_write = 0;
	cdb_rw10(c, 0x28, 0, 1, 0);
	CHECK_RUN_SENSE(h, SK_MEDIUM_ERROR, 0x31, 0x03, c, 10, NULL, 0, 512);
	/* ... until EXIT FAILURE MODE. */
	sz[1] = 0x1f;
	CHECK_EQ(h_run(h, sz, 10, NULL, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_run(h, c, 10, NULL, 0, 512), SCSI_GOOD);
	h_free(h);

	/* Not offered on a fully provisioned LU. */
	struct scsi_lu_params thick = { .block_size = 512 };
	h = h_new(64, &thick);
	h_clear_ua(h, 0, 0);
	sz[1] = 0x02;
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x20, 0x00, sz, 10, NULL, 0, 0);
	h_free(h);
}

/* Builds an EXTENDED COPY parameter list; returns its length. */
static size_t xc_header(uint8_t *p, uint8_t list_id, uint8_t usage, size_t ntgt, size_t nseg)
{
	memset(p, 0, 16);
	p[0] = list_id;
	p[1] = (uint8_t)(usage << 3);
	put_be16(p + 2, (uint16_t)(32 * ntgt));
	put_be32(p + 8, (uint32_t)(28 * nseg));
	return 16 + 32 * ntgt + 28 * nseg;
}

/* An identification target descriptor naming LU lun of h by its NAA designator (VPD 83h). */
static void xc_target(struct h *h, uint8_t *d, uint16_t lun)
{
	uint8_t inq[6] = { 0x12, 1, 0x83, 1, 0, 0 };

	CHECK_EQ(h_run_full(h, 0, lun, inq, 6, NULL, 0, 256), SCSI_GOOD);
	CHECK_EQ(h->in[4 + 1], 0x03);   /* first designator: NAA, LU association */
	memset(d, 0, 32);
	d[0] = 0xe4;
	memcpy(d + 4, h->in + 4, 4 + 16);
	put_be24(d + 29, 512);
}

static void xc_segment(uint8_t *d, uint16_t src, uint16_t dst, uint16_t nblk, uint64_t slba, uint64_t dlba)
{
	memset(d, 0, 28);
	d[0] = 0x02;
	put_be16(d + 2, 0x18);
	put_be16(d + 4, src);
	put_be16(d + 6, dst);
	put_be16(d + 10, nblk);
	put_be64(d + 12, slba);
	put_be64(d + 20, dlba);
}

static int xcopy(struct h *h, int nxi, uint16_t lun, const uint8_t *p, size_t len)
{
	uint8_t c[16] = { 0x83, 0x00 };

	put_be32(c + 10, (uint32_t)len);
	return h_run_full(h, nxi, lun, c, 16, p, (uint32_t)len, 0);
}

static void fill(struct h *h, uint16_t lun, uint64_t lba, uint32_t n, uint8_t v)
{
	uint8_t c[16];

	memset(buf, v, n * 512);
	cdb_rw16(c, 0x8a, lba, n, 0);
	CHECK_EQ(h_run_full(h, 0, lun, c, 16, buf, n * 512, 0), SCSI_GOOD);
}

static bool blocks_are(struct h *h, uint16_t lun, uint64_t lba, uint32_t n, uint8_t v)
{
	uint8_t c[16];

	cdb_rw16(c, 0x88, lba, n, 0);
	CHECK_EQ(h_run_full(h, 0, lun, c, 16, NULL, 0, n * 512), SCSI_GOOD);
	for (uint32_t i = 0; i < n * 512; i++) {
		if (h->in[i] != v)
			return false;
	}
	return true;
}

static void test_extended_copy(void)
{
	struct h *h = h_mem();
	static uint8_t p[8192];
	size_t len;

	/* 3PC and the Third-party Copy page. */
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 96), SCSI_GOOD);
	CHECK(h->in[5] & 0x08);
	uint8_t vpd[6] = { 0x12, 1, 0x8f, 1, 0, 0 };
	CHECK_EQ(h_run(h, vpd, 6, NULL, 0, 256), SCSI_GOOD);
	CHECK_EQ(h->in[1], 0x8f);
	CHECK_EQ(get_be16(h->in + 4), 0x0001);     /* Supported Commands descriptor first */
	CHECK_EQ(h->in[8], 7);
	CHECK_EQ(h->in[9], 0x83);
	CHECK_EQ(h->in[12], 0x84);

	/* Within one LU (LU 0), as libiscsi does. */
	fill(h, 0, 0, 16, 'A');
	len = xc_header(p, 1, 0, 1, 1);
	xc_target(h, p + 16, 0);
	xc_segment(p + 48, 0, 0, 16, 0, 2048 - 16);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_GOOD);
	CHECK(blocks_are(h, 0, 2048 - 16, 16, 'A'));

	/* Between LUs: LU 0 to LU 1, sent to LU 1, as two segments. */
	fill(h, 0, 100, 8, 'B');
	len = xc_header(p, 2, 0, 2, 2);
	xc_target(h, p + 16, 0);
	xc_target(h, p + 48, 1);
	xc_segment(p + 80, 0, 1, 4, 100, 7);
	xc_segment(p + 108, 0, 1, 4, 104, 11);
	CHECK_EQ(xcopy(h, 0, 1, p, len), SCSI_GOOD);
	CHECK(blocks_are(h, 1, 7, 8, 'B'));

	/* COPY STATUS for that list, from the nexus that sent it, on the LU it was sent to. */
	uint8_t rcr[16] = { 0x84, 0x00, 2 };
	put_be32(rcr + 10, 64);
	CHECK_EQ(h_run_full(h, 0, 1, rcr, 16, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 12);
	CHECK_EQ(h->in[4], 0x00);
	CHECK_EQ(get_be16(h->in + 5), 2);
	CHECK_EQ(h->in[7], 0);
	CHECK_EQ(get_be32(h->in + 8), 8 * 512);
	CHECK_EQ(h_run_full(h, 1, 1, rcr, 16, NULL, 0, 64), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00);
	rcr[2] = 3;
	CHECK_EQ(h_run_full(h, 0, 1, rcr, 16, NULL, 0, 64), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00);

	/* OPERATING PARAMETERS. */
	uint8_t op[16] = { 0x84, 0x03 };
	put_be32(op + 10, 64);
	CHECK_EQ(h_run(h, op, 16, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in), 42);
	CHECK_EQ(get_be16(h->in + 8), 32);
	CHECK_EQ(get_be16(h->in + 10), 64);
	CHECK_EQ(h->in[43], 2);

	/* Overlapping ranges of one LU are copied as if through a buffer. */
	for (int i = 0; i < 8; i++)
		fill(h, 0, 200 + (uint64_t)i, 1, (uint8_t)('0' + i));
	len = xc_header(p, 0, 3, 1, 1);
	xc_target(h, p + 16, 0);
	xc_segment(p + 48, 0, 0, 8, 200, 203);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_GOOD);
	for (int i = 0; i < 8; i++)
		CHECK(blocks_are(h, 0, 203 + (uint64_t)i, 1, (uint8_t)('0' + i)));

	/* Parameter list errors: truncated, too long, too many descriptors, unsupported types. */
	len = xc_header(p, 1, 0, 1, 1);
	xc_target(h, p + 16, 0);
	xc_segment(p + 48, 0, 0, 1, 0, 1);
	CHECK_EQ(xcopy(h, 0, 0, p, len - 1), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	CHECK_EQ(xcopy(h, 0, 0, p, 0), SCSI_GOOD);
	len = xc_header(p, 1, 0, 33, 1);
	for (int i = 0; i < 33; i++)
		xc_target(h, p + 16 + 32 * i, 0);
	xc_segment(p + 16 + 32 * 33, 0, 0, 1, 0, 1);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x06);
	len = xc_header(p, 1, 0, 33, 65);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	len = xc_header(p, 1, 0, 1, 1);
	xc_target(h, p + 16, 0);
	p[16] = 0xe0;
	xc_segment(p + 48, 0, 0, 1, 0, 1);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x07);
	p[16] = 0xe4;
	p[48] = 0x01;
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x09);

	/* Processing errors are COPY ABORTED: bad index, NUL target, unknown LU, beyond the end. */
	xc_segment(p + 48, 0, 1, 1, 0, 1);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_COPY_ABORTED, 0x08, 0x04);
	xc_segment(p + 48, 0, 0, 1, 0, 1);
	p[17] = 0x20;
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_COPY_ABORTED, 0x0d, 0x02);
	p[17] = 0;
	p[16 + 8 + 15] ^= 0x55;   /* a designator no LU has */
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_COPY_ABORTED, 0x0d, 0x02);
	xc_target(h, p + 16, 0);
	xc_segment(p + 48, 0, 0, 2, 0, 2047);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_COPY_ABORTED, 0x00, 0x00);
	/* A failed held copy reports "completed with errors". */
	rcr[2] = 1;
	CHECK_EQ(h_run(h, rcr, 16, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(h->in[4], 0x01);
	CHECK_EQ(get_be16(h->in + 5), 0);

	/* Destination write protected (SWP on LU 1 through the control mode page). */
	uint8_t ms[10] = { 0x15, 0x10, 0, 0, 16, 0 };
	uint8_t mp[16] = { 0 };
	mp[4] = 0x0a;
	mp[5] = 0x0a;
	mp[7] = 0x10;
	mp[8] = 0x08;
	put_be16(mp + 12, 0xffff);
	CHECK_EQ(h_run_full(h, 0, 1, ms, 6, mp, 16, 0), SCSI_GOOD);
	len = xc_header(p, 0, 3, 2, 1);
	xc_target(h, p + 16, 0);
	xc_target(h, p + 48, 1);
	xc_segment(p + 80, 0, 1, 1, 0, 0);
	CHECK_EQ(xcopy(h, 0, 0, p, len), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_COPY_ABORTED, 0x27, 0x02);

	/* Held results go with the nexus. */
	scsi_target_nexus_lost(h->t, &h->nx[0]);
	CHECK_EQ(h_run(h, rcr, 16, NULL, 0, 64), SCSI_CHECK_CONDITION);
	h_clear_ua(h, 0, 0);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, rcr, 16, NULL, 0, 64);
	h_free(h);
}

static void test_physical_block_exponent(void)
{
	struct scsi_lu_params p = { .block_size = 512, .thin = true, .phys_block_exp = 3 };
	struct h *h = h_new(1024, &p);
	uint8_t rc[16] = { 0x9e, 0x10 };

	h_clear_ua(h, 0, 0);
	put_be32(rc + 10, 32);
	CHECK_EQ(h_run(h, rc, 16, NULL, 0, 32), SCSI_GOOD);
	CHECK_EQ(h->in[13] & 0x0f, 3);
	uint8_t inq[6] = { 0x12, 1, 0xb0, 0, 64, 0 };
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(get_be16(h->in + 6), 8);
	CHECK_EQ(get_be32(h->in + 28), 8);
	CHECK_EQ(get_be32(h->in + 32), 0x80000000u);
	h_free(h);

	/* The default is one logical block per physical block. */
	h = h_new(64, NULL);
	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, rc, 16, NULL, 0, 32), SCSI_GOOD);
	CHECK_EQ(h->in[13] & 0x0f, 0);
	h_free(h);

	char *err = NULL;
	struct scsi_target *t = scsi_target_new("iqn.2024-01.org.example:x");
	struct store *st = store_mem_open(1 << 20, &err);
	p.phys_block_exp = 16;
	CHECK_EQ(scsi_target_add_lu(t, 0, st, &p, &err), -1);
	free(err);
	store_close(st);
	scsi_target_free(t);
}

/* The performance rule: unmapping or zeroing a whole 1 GiB file LU writes no zeros. */
static void test_big_file_lu(void)
{
	char path[] = "/tmp/isthmus-conform-XXXXXX";
	int fd = mkstemp(path);
	char *err = NULL;
	struct stat sb;

	CHECK(fd >= 0);
	close(fd);
	struct store *st = store_file_open(path, 1ull << 30, false, &err);
	CHECK(st != NULL);
	struct scsi_target *t = scsi_target_new("iqn.2024-01.org.example:big");
	struct scsi_lu_params p = { .block_size = 512, .thin = true, .write_cache = true };
	CHECK_EQ(scsi_target_add_lu(t, 0, st, &p, &err), 0);
	struct scsi_nexus nx;
	h_nexus(&nx, 1, "iqn.2024-01.org.example:init1");
	scsi_target_nexus_added(t, &nx);
	static struct h hh;
	struct h *h = &hh;
	h->t = t;
	h->ctx = scsi_port_ctx_new(t, NULL);
	h->nx[0] = nx;
	h_clear_ua(h, 0, 0);

	/* Map 8 MiB, then WRITE SAME (16) UNMAP of the whole LU (count 0: to the end). */
	uint8_t c[16];
	static uint8_t data[8u << 20];
	memset(data, 0x77, sizeof(data));
	cdb_rw16(c, 0x8a, 1000, sizeof(data) / 512, 0);
	CHECK_EQ(h_run(h, c, 16, data, sizeof(data), 0), SCSI_GOOD);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(buf, 0, 512);
	cdb_rw16(c, 0x93, 0, 0, 0x08);
	CHECK_EQ(h_run(h, c, 16, buf, 512, 0), SCSI_GOOD);
	/* Zeros without UNMAP over the whole LU, and SANITIZE BLOCK ERASE. */
	cdb_rw16(c, 0x93, 0, 0, 0);
	CHECK_EQ(h_run(h, c, 16, buf, 512, 0), SCSI_GOOD);
	uint8_t sz[10] = { 0x48, 0x02 };
	CHECK_EQ(h_run(h, sz, 10, NULL, 0, 0), SCSI_GOOD);
	/* UNMAP of the whole LU, 1 MiB blocks per descriptor (the advertised maximum per command). */
	uint8_t um[10] = { 0x42 };
	uint8_t pl[8 + 16 * 4];
	memset(pl, 0, sizeof(pl));
	put_be16(pl, 22);
	put_be16(pl + 2, 16);
	put_be64(pl + 8, 0);
	put_be32(pl + 16, 1u << 20);
	put_be16(um + 7, 24);
	CHECK_EQ(h_run(h, um, 10, pl, 24, 0), SCSI_GOOD);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(secs < 2.0);
	CHECK_EQ(stat(path, &sb), 0);
	CHECK(sb.st_blocks * 512 < (1 << 20));   /* deallocated: no 1 GiB of zeros on disk */
	cdb_rw16(c, 0x88, 1000, 8, 0);
	CHECK_EQ(h_run(h, c, 16, NULL, 0, 4096), SCSI_GOOD);
	CHECK_EQ(h->in[0], 0);
	scsi_target_free(t);
	unlink(path);
}

int main(void)
{
	test_compare_and_write_length();
	test_write_same_unmap();
	test_large_transfer();
	test_write_atomic();
	test_sanitize();
	test_extended_copy();
	test_physical_block_exponent();
	test_big_file_lu();
	TEST_MAIN_END();
}
