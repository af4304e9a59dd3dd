/*
 * Long medium operations (VERIFY, WRITE SAME, UNMAP, SANITIZE, EXTENDED COPY): the limits they
 * advertise and enforce, and, with offload workers, that they run in bounded steps while the
 * loop thread stays free for other commands, that their results are right, and that a
 * cancelled command or a LU that goes away ends them cleanly.
 */
#include <poll.h>
#include <stdio.h>
#include <time.h>

#include "harness.h"
#include "store/offload.h"
#include "store/store_io.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this (the loop's) thread: what the loop spends, whatever else runs on the machine. */
static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct acmd {
	struct scsi_cmd cmd;
	uint8_t in[4096];
	bool done;
};

static void a_done(struct scsi_cmd *c) { ((struct acmd *)c->priv)->done = true; }

static void a_submit(struct h *h, struct acmd *a, int nxi, uint16_t lun, const uint8_t *cdb, size_t cdb_len,
		     const void *out, uint32_t out_len)
{
	memset(&a->cmd, 0, sizeof(a->cmd));
	a->done = false;
	a->cmd.nexus = &h->nx[nxi];
	a->cmd.lun = lun;
	a->cmd.lun_valid = true;
	memcpy(a->cmd.cdb, cdb, cdb_len);
	a->cmd.cdb_len = 16;
	a->cmd.task_attr = TASK_SIMPLE;
	a->cmd.out = out;
	a->cmd.out_len = out_len;
	a->cmd.in = a->in;
	a->cmd.in_cap = sizeof(a->in);
	a->cmd.done = a_done;
	a->cmd.priv = a;
	scsi_port_submit(h->ctx, &a->cmd);
}

/*
 * The most CPU time one loop turn may take. Asserted wherever the test runs without
 * ThreadSanitizer (`make test` runs it in the AddressSanitizer build, `meson test -C build` in
 * the release build); under ThreadSanitizer a turn also pays for the sanitizer's own work in
 * the thread that trips it (such as resetting the shadow of this file's 256 MiB media): one
 * XCOPY turn took 106 ms of CPU in a CI run where every other turn took about 2 ms, so there
 * the figure is only printed.
 */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LOOP_TURN_UNBOUNDED 1
#endif
#endif
#ifdef LOOP_TURN_UNBOUNDED
#define LOOP_TURN_OK(ms) ((void)(ms), true)
#else
#define LOOP_TURN_OK(ms) ((ms) < 50)
#endif

/* The loop's part: reap finished steps until `a` is done; counts reaps and the longest one. */
struct pump_stats {
	int reaps;
	double longest_ms;
};

static void pump_until(struct offload *o, struct h *h, struct acmd *a, struct pump_stats *st)
{
	double deadline = now_s() + 120;
	while (!a->done && now_s() < deadline) {
		struct pollfd p = { .fd = offload_fd(o), .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		double t0 = cpu_s();
		offload_reap(o);
		scsi_port_run_blocked(h->ctx);
		double ms = (cpu_s() - t0) * 1e3;
		if (st) {
			st->reaps++;
			if (ms > st->longest_ms)
				st->longest_ms = ms;
		}
	}
	CHECK(a->done);
}

static int a_key(const struct acmd *a)
{
	const uint8_t *s = a->cmd.sense;
	return (s[0] & 0x7f) >= 0x72 ? s[1] & 0x0f : s[2] & 0x0f;
}
static int a_asc(const struct acmd *a)
{
	const uint8_t *s = a->cmd.sense;
	return (s[0] & 0x7f) >= 0x72 ? s[2] : s[12];
}
static int a_ascq(const struct acmd *a)
{
	const uint8_t *s = a->cmd.sense;
	return (s[0] & 0x7f) >= 0x72 ? s[3] : s[13];
}

/* ---- limits (no workers needed) */

static void test_write_same_limit(void)
{
	/* 4 GiB LU of 4096-byte blocks: larger than MAXIMUM WRITE SAME LENGTH (1 GiB). */
	struct scsi_lu_params p = { .block_size = 4096, .thin = true, .write_cache = true };
	struct h *h = h_new(1u << 20, &p);
	uint8_t c[16];
	uint8_t blk[4096] = { 0 };
	uint64_t max = (1ull << 30) / 4096;

	h_clear_ua(h, 0, 0);
	uint8_t inq[6] = { 0x12, 0x01, 0xb0, 0x00, 0xff, 0x00 };
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 255), SCSI_GOOD);
	printf("MAXIMUM WRITE SAME LENGTH: %llu blocks\n", (unsigned long long)get_be64(h->in + 36));
	CHECK_EQ(get_be64(h->in + 36), max);

	/* One block over: INVALID FIELD IN CDB, the field pointer on NUMBER OF LOGICAL BLOCKS. */
	cdb_rw16(c, 0x93, 0, (uint32_t)max + 1, 0x08);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 16, blk, sizeof(blk), 0);
	CHECK_EQ(get_be16(h->cmd.sense + 16), 10);
	/* Zero blocks means "to the end": refused where that is more than the limit... */
	cdb_rw16(c, 0x93, 0, 0, 0x08);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00, c, 16, blk, sizeof(blk), 0);
	cdb_rw16(c, 0x93, (1u << 20) - max - 1, 0, 0x08);
	CHECK_EQ(h_run(h, c, 16, blk, sizeof(blk), 0), SCSI_CHECK_CONDITION);
	/* ... and done where it is not. */
	cdb_rw16(c, 0x93, (1u << 20) - max, 0, 0x08);
	CHECK_EQ(h_run(h, c, 16, blk, sizeof(blk), 0), SCSI_GOOD);
	cdb_rw16(c, 0x93, 0, (uint32_t)max, 0x08);
	CHECK_EQ(h_run(h, c, 16, blk, sizeof(blk), 0), SCSI_GOOD);
	h_free(h);
}

/* The copy manager's limits: inline data (none taken) and MAXIMUM SEGMENT LENGTH. */
static void test_xcopy_limits(void)
{
	struct scsi_lu_params p = { .block_size = 4096, .thin = true, .write_cache = true };
	struct h *h = h_new(65536, &p);
	uint8_t inq[6] = { 0x12, 0x01, 0x83, 0x00, 0xff, 0x00 };
	uint8_t naa[20];

	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_run(h, inq, 6, NULL, 0, 255), SCSI_GOOD);
	memcpy(naa, h->in + 4, 20); /* the first designator: NAA, 16 bytes */
	CHECK_EQ(naa[3], 16);

	uint8_t rcr[16] = { 0x84, 0x03 };
	put_be32(rcr + 10, 64);
	CHECK_EQ(h_run(h, rcr, 16, NULL, 0, 64), SCSI_GOOD);
	printf("RECEIVE COPY RESULTS: maximum segment length %u, maximum inline data %u\n", get_be32(h->in + 16),
	       get_be32(h->in + 20));
	CHECK_EQ(get_be32(h->in + 16), 32u << 20);
	CHECK_EQ(get_be32(h->in + 20), 0);

	uint8_t pl[16 + 32 + 28 + 8];
	memset(pl, 0, sizeof(pl));
	put_be16(pl + 2, 32);
	put_be32(pl + 8, 28);
	pl[16] = 0xe4;
	memcpy(pl + 16 + 4, naa, 20);
	put_be24(pl + 16 + 29, 4096);
	uint8_t *seg = pl + 48;
	seg[0] = 0x02;
	put_be16(seg + 2, 24);
	put_be16(seg + 10, 8193); /* 32 MiB + one block */
	put_be64(seg + 12, 0);
	put_be64(seg + 20, 20000);
	uint8_t x[16] = { 0x83 };
	put_be32(x + 10, 76);
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x00, x, 16, pl, 76, 0);
	CHECK_EQ(get_be16(h->cmd.sense + 16), 48 + 10);
	put_be16(seg + 10, 8192); /* exactly the limit */
	CHECK_EQ(h_run(h, x, 16, pl, 76, 0), SCSI_GOOD);
	/* Inline data: INLINE DATA LENGTH EXCEEDED. */
	put_be32(pl + 12, 8);
	put_be32(x + 10, sizeof(pl));
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x0b, x, 16, pl, sizeof(pl), 0);
	h_free(h);
}

/* UNMAP descriptors of no blocks, first, last or alone, take no step and read nothing past the list. */
static void test_unmap_empty_ranges(void)
{
	struct h *h = h_new(1024, NULL);
	uint8_t c[10] = { 0x42 };
	uint8_t p[8 + 3 * 16];

	h_clear_ua(h, 0, 0);
	for (int form = 0; form < 4; form++) {
		unsigned n = form == 3 ? 0 : form == 2 ? 1 : 2;
		memset(p, 0, sizeof(p));
		put_be16(p + 2, (uint16_t)(16 * n));
		put_be16(p, (uint16_t)(6 + 16 * n));
		if (form == 0) { /* a range, then an empty one */
			put_be64(p + 8, 10);
			put_be32(p + 16, 8);
			put_be64(p + 24, 20);
		} else if (form == 1) { /* an empty one, then a range */
			put_be64(p + 8, 20);
			put_be64(p + 24, 10);
			put_be32(p + 32, 8);
		} else if (form == 2) { /* only an empty one */
			put_be64(p + 8, 20);
		}
		put_be16(c + 7, (uint16_t)(8 + 16 * n));
		CHECK_EQ(h_run(h, c, 10, p, 8 + 16 * n, 0), SCSI_GOOD);
	}
	h_free(h);
}

/* ---- with workers */

struct rig {
	struct h *h;
	struct offload *o;
};

/* LU 0: a 1 GiB memory store (untouched pages cost nothing); LU 1: a small one. */
static struct rig rig_new(void)
{
	struct rig g;
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 512, .thin = true, .write_cache = true };
	g.h = h_new(2u << 20, &p);
	g.o = store_engine_offload(g.h->eng);
	CHECK_EQ(scsi_target_add_lu(g.h->t, 1, store_mem_open(1 << 20, &err), &p, &err), 0);
	h_clear_ua(g.h, 0, 0);
	h_clear_ua(g.h, 0, 1);
	h_clear_ua(g.h, 1, 0);
	h_clear_ua(g.h, 1, 1);
	return g;
}

static void rig_free(struct rig *g)
{
	h_free(g->h);
}

/* While `a` runs on LU 0, READs of LU 1 and TEST UNIT READY of LU 0 answer at once. */
static void others_answer(struct rig *g, struct acmd *a)
{
	uint8_t rd[10], tur[6] = { 0 };
	static struct acmd b;

	cdb_rw10(rd, 0x28, 0, 8, 0);
	CHECK_EQ(a->done, false);
	for (int i = 0; i < 3; i++) {
		a_submit(g->h, &b, 1, 1, rd, 10, NULL, 0);
		CHECK(b.done);
		CHECK_EQ(b.cmd.status, SCSI_GOOD);
	}
	a_submit(g->h, &b, 1, 0, tur, 6, NULL, 0);
	CHECK(b.done);
	CHECK_EQ(a->done, false);
}

static void test_write_same_steps(void)
{
	struct rig g = rig_new();
	static struct acmd a;
	struct pump_stats st = { 0 };
	uint8_t c[16], blk[512];

	memset(blk, 0x5a, sizeof(blk));
	/* 256 MiB of one pattern: 16 steps of 16 MiB. */
	cdb_rw16(c, 0x93, 1000, 1u << 19, 0);
	double t0 = cpu_s();
	a_submit(g.h, &a, 0, 0, c, 16, blk, sizeof(blk));
	double submit_ms = (cpu_s() - t0) * 1e3;
	others_answer(&g, &a);
	int writes0 = g.h->fs->writes;
	pump_until(g.o, g.h, &a, &st);
	printf("WRITE SAME of 256 MiB: submit %.2f ms on the loop, %d steps, longest loop turn %.2f ms, %d writes\n",
	       submit_ms, st.reaps, st.longest_ms, g.h->fs->writes - writes0);
	CHECK_EQ(a.cmd.status, SCSI_GOOD);
	CHECK(st.reaps >= 1);
	CHECK(LOOP_TURN_OK(st.longest_ms));
	CHECK(LOOP_TURN_OK(submit_ms));
	/* Every block holds the pattern, and nothing beyond the range was touched. */
	uint8_t rd[16];
	for (uint64_t lba = 1000; lba < 1000 + (1u << 19); lba += 49991) {
		cdb_rw16(rd, 0x88, lba, 1, 0);
		CHECK_EQ(h_run(g.h, rd, 16, NULL, 0, 512), SCSI_GOOD);
		CHECK(memcmp(g.h->in, blk, 512) == 0);
	}
	cdb_rw16(rd, 0x88, 1000 + (1u << 19) - 1, 2, 0);
	CHECK_EQ(h_run(g.h, rd, 16, NULL, 0, 1024), SCSI_GOOD);
	CHECK(memcmp(g.h->in, blk, 512) == 0);
	CHECK_EQ(g.h->in[512], 0);
	rig_free(&g);
}

static void test_verify_steps(void)
{
	struct rig g = rig_new();
	static struct acmd a;
	struct pump_stats st = { 0 };
	uint8_t c[16], blk[512];

	/* 256 MiB of data at the start of the 1 GiB LU; the rest was never written. */
	memset(blk, 0x3c, sizeof(blk));
	cdb_rw16(c, 0x93, 0, 1u << 19, 0);
	a_submit(g.h, &a, 0, 0, c, 16, blk, sizeof(blk));
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a.cmd.status, SCSI_GOOD);

	/* VERIFY (16), BYTCHK 0, the whole LU: the data is read, the holes are not. */
	g.h->fs->reads = 0;
	cdb_rw16(c, 0x8f, 0, 2u << 20, 0);
	a_submit(g.h, &a, 0, 0, c, 16, NULL, 0);
	others_answer(&g, &a);
	pump_until(g.o, g.h, &a, &st);
	printf("VERIFY of 1 GiB (256 MiB of it data): %d steps, longest loop turn %.2f ms, %d reads of 1 MiB\n",
	       st.reaps, st.longest_ms, g.h->fs->reads);
	CHECK_EQ(a.cmd.status, SCSI_GOOD);
	CHECK(st.reaps >= 1);
	CHECK(LOOP_TURN_OK(st.longest_ms));
	CHECK_EQ(g.h->fs->reads, 256);

	/* A read error part way: MEDIUM ERROR at an LBA inside the range. */
	g.h->fs->fail_read = -EIO;
	a_submit(g.h, &a, 0, 0, c, 16, NULL, 0);
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a.cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(a_key(&a), SK_MEDIUM_ERROR);
	g.h->fs->fail_read = 0;

	/* BYTCHK 1 finds the first differing byte, in written blocks and in holes alike. */
	static uint8_t data[64 * 512];
	memset(data, 0x3c, sizeof(data));
	data[40 * 512 + 7] = 1;
	cdb_rw16(c, 0x8f, 5000, 64, 0x02);
	a_submit(g.h, &a, 0, 0, c, 16, data, sizeof(data));
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a.cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(a_key(&a), SK_MISCOMPARE);
	CHECK_EQ(get_be32(a.cmd.sense + 3), 40 * 512 + 7);
	memset(data, 0, sizeof(data));
	data[3] = 9;
	cdb_rw16(c, 0x8f, 1u << 20, 64, 0x02);
	a_submit(g.h, &a, 0, 0, c, 16, data, sizeof(data));
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a_key(&a), SK_MISCOMPARE);
	CHECK_EQ(get_be32(a.cmd.sense + 3), 3);

	/* Cancelled part way: it stops within the step in progress. */
	g.h->fs->reads = 0;
	cdb_rw16(c, 0x8f, 0, 2u << 20, 0);
	a_submit(g.h, &a, 0, 0, c, 16, NULL, 0);
	scsi_cmd_cancel(&a.cmd);
	pump_until(g.o, g.h, &a, NULL);
	printf("cancelled VERIFY: %d reads of 1 MiB done\n", g.h->fs->reads);
	CHECK(g.h->fs->reads <= 64); /* of the 256 the whole VERIFY needs */

	/* The LU goes while it runs: the command ends with LOGICAL UNIT NOT SUPPORTED. */
	a_submit(g.h, &a, 0, 0, c, 16, NULL, 0);
	CHECK_EQ(scsi_target_remove_lu(g.h->t, 0), 0);
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a.cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(a_asc(&a), 0x25);
	rig_free(&g);
}

static void test_sanitize_steps(void)
{
	struct rig g = rig_new();
	static struct acmd a, b;
	uint8_t c[16], blk[512], rd[10], san[10] = { 0x48, 0x02 };

	memset(blk, 0x77, sizeof(blk));
	cdb_rw10(c, 0x2a, 123, 1, 0);
	CHECK_EQ(h_run(g.h, c, 10, blk, 512, 0), SCSI_GOOD);
	a_submit(g.h, &a, 0, 0, san, 10, NULL, 0);
	/* Meanwhile: the LU's medium is not ready; another LU answers as always. */
	cdb_rw10(rd, 0x28, 123, 1, 0);
	a_submit(g.h, &b, 1, 0, rd, 10, NULL, 0);
	CHECK(b.done);
	CHECK_EQ(b.cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(a_key(&b), SK_NOT_READY);
	CHECK_EQ(a_asc(&b), 0x04);
	CHECK_EQ(a_ascq(&b), 0x1b);
	others_answer(&g, &a);
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a.cmd.status, SCSI_GOOD);
	CHECK_EQ(h_run(g.h, rd, 10, NULL, 0, 512), SCSI_GOOD);
	CHECK_EQ(g.h->in[0], 0);

	/* Aborted part way: the LU is left in the sanitize failure state. */
	g.h->fs->no_unmap = true; /* zeros are written: many steps */
	a_submit(g.h, &a, 0, 0, san, 10, NULL, 0);
	scsi_cmd_cancel(&a.cmd);
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(h_run(g.h, rd, 10, NULL, 0, 512), SCSI_CHECK_CONDITION);
	CHECK_SENSE(g.h, SK_MEDIUM_ERROR, 0x31, 0x03);
	rig_free(&g);
}

/* Copies between two LUs: 16 segments of 8 MiB, checked block by block. */
static void test_xcopy_steps(void)
{
	struct rig g = rig_new();
	static struct acmd a;
	struct pump_stats st = { 0 };
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 512, .thin = true, .write_cache = false };
	CHECK_EQ(scsi_target_add_lu(g.h->t, 2, store_mem_open(256u << 20, &err), &p, &err), 0);
	for (int n = 0; n < 2; n++)
		for (uint16_t l = 0; l < 3; l++)
			h_clear_ua(g.h, n, l); /* REPORTED LUNS DATA HAS CHANGED, and LU 2's power on */

	/* Source data: a different byte in every block of the first 128 MiB of LU 0. */
	static uint8_t chunk[1 << 20];
	for (uint32_t mb = 0; mb < 128; mb++) {
		for (uint32_t i = 0; i < sizeof(chunk); i += 512)
			memset(chunk + i, (int)((mb * 2048 + i / 512) * 31 + 7), 512);
		uint8_t w[16];
		cdb_rw16(w, 0x8a, (uint64_t)mb * 2048, 2048, 0);
		CHECK_EQ(h_run(g.h, w, 16, chunk, sizeof(chunk), 0), SCSI_GOOD);
	}
	uint8_t naa[2][20];
	for (int l = 0; l < 2; l++) {
		uint8_t inq[6] = { 0x12, 0x01, 0x83, 0x00, 0xff, 0x00 };
		CHECK_EQ(h_run_full(g.h, 0, l ? 2 : 0, inq, 6, NULL, 0, 255), SCSI_GOOD);
		memcpy(naa[l], g.h->in + 4, 20);
	}
	static uint8_t pl[16 + 64 + 16 * 28];
	memset(pl, 0, sizeof(pl));
	put_be16(pl + 2, 64);
	put_be32(pl + 8, 16 * 28);
	for (int l = 0; l < 2; l++) {
		pl[16 + 32 * l] = 0xe4;
		memcpy(pl + 16 + 32 * l + 4, naa[l], 20);
		put_be24(pl + 16 + 32 * l + 29, 512);
	}
	for (int i = 0; i < 16; i++) {
		uint8_t *s = pl + 80 + 28 * i;
		s[0] = 0x02;
		put_be16(s + 2, 24);
		put_be16(s + 4, 0);
		put_be16(s + 6, 1);
		put_be16(s + 10, 16384);                  /* 8 MiB */
		put_be64(s + 12, (uint64_t)i * 16384);
		put_be64(s + 20, 100 + (uint64_t)i * 16384);
	}
	uint8_t x[16] = { 0x83 };
	put_be32(x + 10, sizeof(pl));
	a_submit(g.h, &a, 0, 0, x, 16, pl, sizeof(pl));
	others_answer(&g, &a);
	pump_until(g.o, g.h, &a, &st);
	printf("EXTENDED COPY of 128 MiB: %d steps, longest loop turn %.2f ms\n", st.reaps, st.longest_ms);
	CHECK_EQ(a.cmd.status, SCSI_GOOD);
	CHECK(st.reaps >= 16); /* one step per segment at least, and its flush */
	CHECK(LOOP_TURN_OK(st.longest_ms));
	/* Write cache off on the destination: each segment flushed. */
	for (uint64_t lba = 0; lba < 128 * 2048; lba += 4093) {
		uint8_t rd[16];
		cdb_rw16(rd, 0x88, 100 + lba, 1, 0);
		CHECK_EQ(h_run_full(g.h, 0, 2, rd, 16, NULL, 0, 512), SCSI_GOOD);
		CHECK_EQ(g.h->in[0], (uint8_t)(lba * 31 + 7));
		CHECK_EQ(g.h->in[511], (uint8_t)(lba * 31 + 7));
	}
	uint8_t rcr[16] = { 0x84, 0x00, 0x00 };
	put_be32(rcr + 10, 64);
	CHECK_EQ(h_run(g.h, rcr, 16, NULL, 0, 64), SCSI_GOOD);
	CHECK_EQ(get_be16(g.h->in + 5), 16);
	CHECK_EQ(get_be32(g.h->in + 8), 128u << 20);

	/* Segments of no blocks (each still flushed: LU 2's write cache is off), and a copy that
	 * fails before any step, which completes at once, exactly once (h_run_full checks). */
	for (int i = 0; i < 16; i++)
		put_be16(pl + 80 + 28 * i + 10, 0);
	int flushes = g.h->fs->flushes;
	a_submit(g.h, &a, 0, 0, x, 16, pl, sizeof(pl));
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a.cmd.status, SCSI_GOOD);
	CHECK_EQ(g.h->fs->flushes, flushes);
	for (int i = 0; i < 16; i++)
		put_be16(pl + 80 + 28 * i + 6, 0); /* to LU 0, write cache on: nothing to do at all */
	CHECK_EQ(h_run(g.h, x, 16, pl, sizeof(pl), 0), SCSI_GOOD);
	for (int i = 0; i < 16; i++)
		put_be16(pl + 80 + 28 * i + 6, 1);
	put_be16(pl + 80 + 10, 1);
	put_be64(pl + 80 + 12, 4u << 20); /* past the end of LU 0 */
	CHECK_EQ(h_run(g.h, x, 16, pl, sizeof(pl), 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(g.h, SK_COPY_ABORTED, 0x00, 0x00);
	for (int i = 0; i < 16; i++) {
		put_be16(pl + 80 + 28 * i + 10, 16384);
		put_be64(pl + 80 + 28 * i + 12, (uint64_t)i * 16384);
	}

	/* The destination LU goes in the middle: COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE. */
	a_submit(g.h, &a, 0, 0, x, 16, pl, sizeof(pl));
	CHECK_EQ(scsi_target_remove_lu(g.h->t, 2), 0);
	pump_until(g.o, g.h, &a, NULL);
	CHECK_EQ(a.cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(a_key(&a), SK_COPY_ABORTED);
	CHECK_EQ(a_asc(&a), 0x0d);
	rig_free(&g);
}

#define RUN(f) do { double t_ = now_s(); f(); printf("%s: %.1f s\n", #f, now_s() - t_); } while (0)

/*
 * A store that asks something slow for allocation status, as RBD asks its cluster: every query
 * takes 1 ms and answers one block, always mapped (so the answer is one descriptor however
 * many queries it took). Its ios are its own (submit), which sends GET LBA STATUS to a worker.
 */
static int slow_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	(void)st, (void)off;
	struct timespec d = { 0, 1000000 };
	nanosleep(&d, NULL);
	*mapped = true;
	*run = 512;
	return 0;
}
static int slow_rw(struct store *st, uint64_t off, uint64_t len)
{
	(void)st, (void)off, (void)len;
	return -EOPNOTSUPP;
}
static int slow_read(struct store *st, void *b, size_t len, uint64_t off)
{
	(void)b;
	return slow_rw(st, off, len);
}
static int slow_write(struct store *st, const void *b, size_t len, uint64_t off)
{
	(void)b;
	return slow_rw(st, off, len);
}
static int slow_flush(struct store *st) { return slow_rw(st, 0, 0); }
static int slow_resize(struct store *st, uint64_t n) { return slow_rw(st, n, 0); }
static void slow_close(struct store *st) { free(st); }
static void slow_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	(void)st, (void)e;
	store_io_complete(io, 0);
}
static const struct store_ops slow_ops = { .read = slow_read, .write = slow_write, .flush = slow_flush,
					   .unmap = slow_rw, .extent = slow_extent, .resize = slow_resize,
					   .close = slow_close, .submit = slow_submit };

/* GET LBA STATUS on such a store: the queries run on a worker in bounded steps. */
static void test_get_lba_status_steps(void)
{
	struct rig g = rig_new();
	static struct acmd a;
	struct pump_stats st = { 0 };
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 512, .thin = true, .write_cache = true };
	struct store *slow = calloc(1, sizeof(*slow));
	slow->ops = &slow_ops;
	slow->size = 1ull << 30;
	slow->thin = true;
	slow->wait = STORE_WAIT_ALWAYS;
	slow->fd = -1;
	CHECK_EQ(scsi_target_add_lu(g.h->t, 2, slow, &p, &err), 0);
	h_clear_ua(g.h, 0, 2);
	uint8_t c[16] = { 0x9e, 0x12 };
	put_be32(c + 10, 4096);
	double t0 = now_s();
	a_submit(g.h, &a, 0, 2, c, 16, NULL, 0);
	pump_until(g.o, g.h, &a, &st);
	double secs = now_s() - t0;
	printf("GET LBA STATUS of 4096 queries of 1 ms: %.2f s, %d steps, longest loop turn %.2f ms\n", secs, st.reaps,
	       st.longest_ms);
	CHECK_EQ(a.cmd.status, SCSI_GOOD);
	/* One descriptor: LBA 0, 4096 blocks (one per query, the most one command asks), mapped. */
	CHECK_EQ(get_be32(a.in), 4 + 16);
	CHECK_EQ(get_be64(a.in + 8), 0);
	CHECK_EQ(get_be32(a.in + 16), 4096);
	CHECK_EQ(a.in[20] & 0x0f, 0);
	/* 4 s of queries in steps of about 200 ms: the loop saw the command many times. */
	CHECK(st.reaps >= 8);
	rig_free(&g);
}

int main(void)
{
	RUN(test_write_same_limit);
	RUN(test_xcopy_limits);
	RUN(test_unmap_empty_ranges);
	RUN(test_write_same_steps);
	RUN(test_verify_steps);
	RUN(test_sanitize_steps);
	RUN(test_xcopy_steps);
	RUN(test_get_lba_status_steps);
	TEST_MAIN_END();
}
