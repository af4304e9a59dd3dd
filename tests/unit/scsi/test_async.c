/*
 * Commands on a store with its own asynchronous submit (as a network store has): writes
 * complete when the store says so, not inline; ORDERED commands and COMPARE AND WRITE without
 * the store's help wait for the LU's ios in flight and hold back what comes after them;
 * COMPARE AND WRITE with STORE_CAP_COMPARE_WRITE goes to the store as one io and its
 * miscompare offset reaches the sense data; UNMAP and WRITE SAME become the store's own ios
 * (with the weaker ones where it refuses one); other long operations are not offered there.
 */
#include "harness.h"

struct astore {
	struct store base;
	struct store_io *held[64];
	unsigned nheld;
	unsigned ops[8];          /* ios seen, by enum store_io_op */
	bool no_unmap;            /* UNMAP ios fail with -EOPNOTSUPP */
	uint8_t data[1 << 16];
};

static void as_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	struct astore *a = (struct astore *)st;
	(void)e;
	a->ops[io->op]++;
	a->held[a->nheld++] = io;
}

static int as_never(struct store *st, void *b, size_t n, uint64_t off)
{
	(void)st, (void)b, (void)n, (void)off;
	CHECK(!"a store with submit is never called synchronously");
	return -EIO;
}

static void as_close(struct store *st) { (void)st; }

/*
 * Finishes the ios held now, the last submitted first (a store may complete in any order); ios
 * their completions submit wait for the next call.
 */
static void as_release(struct astore *a)
{
	struct store_io *now[64];
	unsigned n = a->nheld;
	memcpy(now, a->held, n * sizeof(now[0]));
	a->nheld = 0;
	while (n) {
		struct store_io *io = now[--n];
		int rc = 0;
		uint8_t *d = a->data + io->off;
		if (io->op == STORE_IO_WRITE) {
			memcpy(d, io->iov[0].iov_base, io->len);
		} else if (io->op == STORE_IO_READ) {
			memcpy(io->iov[0].iov_base, d, io->len);
		} else if (io->op == STORE_IO_UNMAP && a->no_unmap) {
			rc = -EOPNOTSUPP;
		} else if (io->op == STORE_IO_UNMAP || io->op == STORE_IO_WRITE_ZEROES) {
			memset(d, 0, io->len);
		} else if (io->op == STORE_IO_WRITE_SAME) {
			for (uint64_t i = 0; i < io->len; i += io->iov[0].iov_len)
				memcpy(d + i, io->iov[0].iov_base, io->iov[0].iov_len);
		} else if (io->op == STORE_IO_COMPARE_WRITE) {
			const uint8_t *want = io->iov[0].iov_base;
			for (uint64_t i = 0; i < io->len && rc == 0; i++) {
				if (want[i] != d[i]) {
					io->miscompare_off = i;
					rc = -EILSEQ;
				}
			}
			if (rc == 0)
				memcpy(d, want + io->len, io->len);
		}
		store_io_complete(io, rc);
	}
}

static const struct store_ops as_ops = { .read = as_never, .close = as_close, .submit = as_submit };

static struct astore *lu1(struct h *h, unsigned caps)
{
	static struct astore a;
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 512, .write_cache = true, .thin = true };
	memset(&a, 0, sizeof(a));
	a.base.ops = &as_ops;
	a.base.size = sizeof(a.data);
	a.base.fd = -1;
	a.base.wait = STORE_WAIT_ALWAYS;
	a.base.caps = caps;
	a.base.path = (char *)"async";
	CHECK_EQ(scsi_target_add_lu(h->t, 1, &a.base, &p, &err), 0);
	return &a;
}

static void cdb16(uint8_t *c, uint8_t op, uint64_t lba, uint32_t n)
{
	memset(c, 0, 16);
	c[0] = op;
	put_be64(c + 2, lba);
	put_be32(c + 10, n);
}

static void test_writes_and_order(void)
{
	struct h *h = h_new(64, NULL);
	struct astore *a = lu1(h, 0);
	static struct rec r[6];
	int log[16], nlog = 0;
	for (int i = 0; i < 6; i++) {
		r[i].log = log;
		r[i].nlog = &nlog;
		r[i].id = i;
	}
	uint8_t tur[16] = { 0 };
	rec_submit(h->ctx, &r[0], 1, tur, TASK_SIMPLE, NULL, 0); /* the power-on unit attention */
	nlog = 0;

	static uint8_t blk[1024];
	memset(blk, 0x5a, sizeof(blk));
	uint8_t wr[16], rd[16];
	cdb16(wr, 0x8a, 4, 2);
	rec_submit(h->ctx, &r[0], 1, wr, TASK_SIMPLE, blk, sizeof(blk));
	CHECK_EQ(nlog, 0);                  /* not inline: the store has it */
	CHECK_EQ(a->ops[STORE_IO_WRITE], 1);
	rec_submit(h->ctx, &r[1], 1, tur, TASK_ORDERED, NULL, 0); /* waits for the write */
	rec_submit(h->ctx, &r[2], 1, tur, TASK_SIMPLE, NULL, 0);  /* waits behind the ORDERED one */
	rec_submit(h->ctx, &r[3], 0, tur, TASK_SIMPLE, NULL, 0);  /* another LU: at once */
	CHECK_EQ(nlog, 1);
	CHECK_EQ(log[0], 3);
	as_release(a);
	CHECK_EQ(nlog, 2);
	CHECK_EQ(log[1], 0);
	CHECK_EQ(r[0].cmd.status, SCSI_GOOD);
	CHECK_EQ(a->data[4 * 512], 0x5a);
	scsi_port_run_blocked(h->ctx);
	CHECK_EQ(nlog, 4);
	CHECK_EQ(log[2], 1);
	CHECK_EQ(log[3], 2);

	/* An ORDERED write holds back the SIMPLE read after it until it ends. */
	nlog = 0;
	cdb16(rd, 0x88, 4, 2);
	rec_submit(h->ctx, &r[0], 1, wr, TASK_ORDERED, blk, sizeof(blk));
	rec_submit(h->ctx, &r[1], 1, rd, TASK_SIMPLE, NULL, 0);
	CHECK_EQ(a->ops[STORE_IO_READ], 0);
	as_release(a);
	scsi_port_run_blocked(h->ctx);
	CHECK_EQ(a->ops[STORE_IO_READ], 1);
	as_release(a);
	CHECK_EQ(nlog, 2);
	CHECK_EQ(log[0], 0);
	CHECK_EQ(log[1], 1);
	CHECK_EQ(r[1].cmd.in_len, 1024);
	CHECK_EQ(r[1].buf[1023], 0x5a);

	/* FUA: the write, then a flush, each the store's. */
	nlog = 0;
	wr[1] = 0x08;
	rec_submit(h->ctx, &r[0], 1, wr, TASK_SIMPLE, blk, sizeof(blk));
	as_release(a);
	CHECK_EQ(a->ops[STORE_IO_FLUSH], 1);
	CHECK_EQ(nlog, 0);
	as_release(a);
	CHECK_EQ(nlog, 1);
	wr[1] = 0;

	/* COMPARE AND WRITE without the store's help: read, compare, write, nothing else between. */
	nlog = 0;
	static uint8_t cw[1024];
	memset(cw, 0x5a, 512);
	memset(cw + 512, 0x11, 512);
	uint8_t caw[16] = { 0x89 };
	put_be64(caw + 2, 4);
	caw[13] = 1;
	rec_submit(h->ctx, &r[0], 1, caw, TASK_SIMPLE, cw, sizeof(cw));
	CHECK_EQ(a->ops[STORE_IO_READ], 2);
	rec_submit(h->ctx, &r[1], 1, wr, TASK_SIMPLE, blk, sizeof(blk)); /* must not pass it */
	CHECK_EQ(a->ops[STORE_IO_WRITE], 3);
	as_release(a);                      /* the read: compared, the write goes */
	CHECK_EQ(a->ops[STORE_IO_WRITE], 4);
	as_release(a);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(r[0].cmd.status, SCSI_GOOD);
	CHECK_EQ(a->data[4 * 512], 0x11);
	scsi_port_run_blocked(h->ctx);      /* now the plain write */
	CHECK_EQ(a->ops[STORE_IO_WRITE], 5);
	as_release(a);
	CHECK_EQ(nlog, 2);

	/* A miscompare: MISCOMPARE, INFORMATION = offset of the first difference. */
	nlog = 0;
	memset(cw, 0x5a, 512);
	cw[37] = 0x00;
	rec_submit(h->ctx, &r[0], 1, caw, TASK_SIMPLE, cw, sizeof(cw));
	as_release(a);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(r[0].cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(r[0].cmd.sense[2] & 0x0f, SK_MISCOMPARE);
	CHECK_EQ(get_be32(r[0].cmd.sense + 3), 37);

	/* VERIFY reads through the store's ios, compared on the loop. */
	uint8_t vfy[16];
	cdb16(vfy, 0x8f, 4, 1);
	nlog = 0;
	unsigned reads = a->ops[STORE_IO_READ];
	rec_submit(h->ctx, &r[0], 1, vfy, TASK_SIMPLE, NULL, 0);
	CHECK_EQ(a->ops[STORE_IO_READ], reads + 1);
	as_release(a);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(r[0].cmd.status, SCSI_GOOD);
	static uint8_t want[512];
	memcpy(want, a->data + 4 * 512, sizeof(want));
	want[300] ^= 0xff;
	vfy[1] = 0x02;                      /* BYTCHK 1: the medium's block but for byte 300 */
	nlog = 0;
	rec_submit(h->ctx, &r[0], 1, vfy, TASK_SIMPLE, want, sizeof(want));
	as_release(a);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(r[0].cmd.sense[2] & 0x0f, SK_MISCOMPARE);
	CHECK_EQ(get_be32(r[0].cmd.sense + 3), 300);

	/* Other long operations are not offered: they would call the store synchronously. */
	uint8_t san[16] = { 0x48, 0x1f };   /* SANITIZE, EXIT FAILURE MODE */
	nlog = 0;
	rec_submit(h->ctx, &r[0], 1, san, TASK_SIMPLE, NULL, 0);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(r[0].cmd.sense[2] & 0x0f, SK_ILLEGAL_REQUEST);
	CHECK_EQ(r[0].cmd.sense[12], 0x20);
	h_free(h);
}

/* With STORE_CAP_COMPARE_WRITE the store compares and writes as one io; writes need not wait. */
static void test_store_compare_write(void)
{
	struct h *h = h_new(64, NULL);
	struct astore *a = lu1(h, STORE_CAP_COMPARE_WRITE);
	static struct rec r[4];
	int log[8], nlog = 0;
	for (int i = 0; i < 4; i++) {
		r[i].log = log;
		r[i].nlog = &nlog;
		r[i].id = i;
	}
	uint8_t tur[16] = { 0 };
	rec_submit(h->ctx, &r[0], 1, tur, TASK_SIMPLE, NULL, 0);
	nlog = 0;
	static uint8_t cw[1024];
	memset(cw + 512, 0x22, 512);
	cw[100] = 0x01; /* the medium holds zeros: differs at 100 */
	uint8_t caw[16] = { 0x89 };
	put_be64(caw + 2, 8);
	caw[13] = 1;
	rec_submit(h->ctx, &r[0], 1, caw, TASK_SIMPLE, cw, sizeof(cw));
	CHECK_EQ(a->ops[STORE_IO_COMPARE_WRITE], 1);
	CHECK_EQ(a->ops[STORE_IO_READ], 0);
	static uint8_t blk[512];
	uint8_t wr[16];
	cdb16(wr, 0x8a, 20, 1);
	rec_submit(h->ctx, &r[1], 1, wr, TASK_SIMPLE, blk, sizeof(blk)); /* goes at once */
	CHECK_EQ(a->ops[STORE_IO_WRITE], 1);
	as_release(a);
	CHECK_EQ(nlog, 2);
	CHECK_EQ(r[0].cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(r[0].cmd.sense[2] & 0x0f, SK_MISCOMPARE);
	CHECK_EQ(get_be32(r[0].cmd.sense + 3), 100);
	CHECK_EQ(a->data[8 * 512], 0);
	cw[100] = 0;
	rec_submit(h->ctx, &r[0], 1, caw, TASK_SIMPLE, cw, sizeof(cw));
	as_release(a);
	CHECK_EQ(r[0].cmd.status, SCSI_GOOD);
	CHECK_EQ(a->data[8 * 512 + 7], 0x22);
	h_free(h);
}

/* UNMAP and WRITE SAME: one store io per range, no synchronous call. */
static void test_unmap_write_same(void)
{
	struct h *h = h_new(64, NULL);
	struct astore *a = lu1(h, 0);
	static struct rec r[2];
	int log[8], nlog = 0;
	r[0].log = log;
	r[0].nlog = &nlog;
	uint8_t tur[16] = { 0 };
	rec_submit(h->ctx, &r[0], 1, tur, TASK_SIMPLE, NULL, 0);
	memset(a->data, 0xee, sizeof(a->data));

	/* WRITE SAME (16) of a pattern block over 8 blocks at LBA 16. */
	static uint8_t blk[512];
	memset(blk, 0x3c, sizeof(blk));
	uint8_t ws[16];
	cdb16(ws, 0x93, 16, 8);
	nlog = 0;
	rec_submit(h->ctx, &r[0], 1, ws, TASK_SIMPLE, blk, sizeof(blk));
	CHECK_EQ(a->ops[STORE_IO_WRITE_SAME], 1);
	CHECK_EQ(nlog, 0);
	as_release(a);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(r[0].cmd.status, SCSI_GOOD);
	CHECK_EQ(a->data[16 * 512], 0x3c);
	CHECK_EQ(a->data[24 * 512 - 1], 0x3c);
	CHECK_EQ(a->data[24 * 512], 0xee);

	/* A zero block: WRITE ZEROES. With UNMAP: deallocation. */
	memset(blk, 0, sizeof(blk));
	rec_submit(h->ctx, &r[0], 1, ws, TASK_SIMPLE, blk, sizeof(blk));
	as_release(a);
	CHECK_EQ(a->ops[STORE_IO_WRITE_ZEROES], 1);
	CHECK_EQ(a->data[16 * 512], 0);
	ws[1] = 0x08;
	rec_submit(h->ctx, &r[0], 1, ws, TASK_SIMPLE, blk, sizeof(blk));
	as_release(a);
	CHECK_EQ(a->ops[STORE_IO_UNMAP], 1);
	CHECK_EQ(r[0].cmd.status, SCSI_GOOD);

	/* UNMAP of two ranges; a store that cannot deallocate zeroes instead. */
	memset(a->data, 0xee, sizeof(a->data));
	a->no_unmap = true;
	static uint8_t par[8 + 32];
	memset(par, 0, sizeof(par));
	put_be16(par, 6 + 32);
	put_be16(par + 2, 32);
	put_be64(par + 8, 2);
	put_be32(par + 16, 2);
	put_be64(par + 24, 40);
	put_be32(par + 32, 1);
	uint8_t um[16] = { 0x42 };
	put_be16(um + 7, sizeof(par));
	nlog = 0;
	rec_submit(h->ctx, &r[0], 1, um, TASK_SIMPLE, par, sizeof(par));
	for (int i = 0; i < 8 && nlog == 0; i++)
		as_release(a);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(r[0].cmd.status, SCSI_GOOD);
	CHECK_EQ(a->ops[STORE_IO_UNMAP], 2);        /* refused for the first range, then not tried */
	CHECK_EQ(a->ops[STORE_IO_WRITE_ZEROES], 3); /* both ranges zeroed */
	CHECK_EQ(a->data[2 * 512], 0);
	CHECK_EQ(a->data[4 * 512 - 1], 0);
	CHECK_EQ(a->data[4 * 512], 0xee);
	CHECK_EQ(a->data[40 * 512 + 511], 0);
	h_free(h);
}

int main(void)
{
	test_unmap_write_same();
	test_writes_and_order();
	test_store_compare_write();
	printf("%d checks, %d failed\n", test_checks, test_failures);
	return test_failures != 0;
}
