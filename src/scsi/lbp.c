/*
 * Logical block provisioning: UNMAP, WRITE SAME and SANITIZE (SBC-3 5.28, 5.41-5.43, SBC-4
 * 5.30). We advertise LBPRZ, so an unmapped block must read back as zeros: when the store
 * cannot deallocate a range we write the zeros ourselves.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_int.h"
#include "util/sbuf.h"


/*
 * What a WRITE SAME, UNMAP or SANITIZE does to its ranges, in steps (longop.c): deallocate (the
 * range then reads as zeros), zero while keeping the range mapped, or fill it with copies of one
 * block. Where the store cannot deallocate or zero a range, zeros are written instead.
 */
enum fill_mode { FILL_DEALLOC, FILL_ZERO, FILL_DATA };

struct fill_op {
	struct longop op;
	enum fill_mode mode;
	bool write_zeros;          /* the store could not deallocate or zero: writing zeros instead */
	bool buf_ready;            /* buf holds copies of the block */
	bool sanitize;
	bool flush;                /* make it durable before GOOD (write cache off) */
	uint8_t shift;
	uint32_t block_size;
	uint8_t block[4096];       /* the block to write (FILL_DATA) */
	size_t nranges, cur;
	uint64_t pos;              /* blocks of ranges[cur] done */
	uint64_t fail_lba;
	uint64_t (*ranges)[2];     /* LBA, blocks */
};

static int fill_write(struct fill_op *f, uint64_t lba, uint64_t n)
{
	struct longop *op = &f->op;
	uint64_t per = LONGOP_BUF >> f->shift;

	if (!f->buf_ready) {
		for (uint64_t i = 0; i < per; i++)
			memcpy(op->buf + (i << f->shift), f->block, f->block_size);
		f->buf_ready = true;
	}
	while (n > 0 && longop_step_more(op)) {
		uint64_t k = n < per ? n : per;
		int rc = store_write(op->st, op->buf, k << f->shift, lba << f->shift);
		if (rc < 0) {
			f->fail_lba = lba;
			return rc;
		}
		lba += k;
		n -= k;
		f->pos += k;
	}
	return 0;
}

/* One step: the next piece of the current range; fill_write counts its own progress. */
static int fill_step(struct longop *op)
{
	struct fill_op *f = (struct fill_op *)op;
	uint64_t lba = f->ranges[f->cur][0] + f->pos, left = f->ranges[f->cur][1] - f->pos;
	bool writing = f->mode == FILL_DATA || f->write_zeros;
	uint64_t max = (writing ? LONGOP_STEP_BYTES : LONGOP_STEP_DEALLOC) >> f->shift;
	uint64_t n = left < max ? left : max;
	int rc;

	if (writing)
		return fill_write(f, lba, n); /* advances pos as it goes: a step may end early */
	rc = f->mode == FILL_DEALLOC ? store_unmap(op->st, lba << f->shift, n << f->shift)
				     : store_zero(op->st, lba << f->shift, n << f->shift);
	if (rc == -EOPNOTSUPP) {
		/* LBPRZ promises zeros: write them, in steps like any other write. */
		f->write_zeros = true;
		memset(f->block, 0, sizeof(f->block));
		f->buf_ready = false;
		return 0;
	}
	if (rc < 0)
		f->fail_lba = lba;
	else
		f->pos += n;
	return rc;
}

/* A sanitize that did not complete (failed or aborted) leaves the medium part sanitized. */
static void fill_done(struct fill_op *f, bool good)
{
	if (f->sanitize) {
		lu_lock(f->op.lu);
		f->op.lu->sanitizing = false;
		f->op.lu->sanitize_failed = !good;
		lu_unlock(f->op.lu);
	}
	longop_end(&f->op);
}

static void fill_cleanup(struct longop *op) { free(((struct fill_op *)op)->ranges); }

static void fill_flushed(struct longop *op, int rc)
{
	struct fill_op *f = (struct fill_op *)op;
	struct scsi_req r;

	longop_req(op, &r);
	if (rc < 0 && rc != -ECANCELED)
		lu_medium_error(&r, true, rc, f->ranges[0][0]);
	fill_done(f, rc == 0);
}

static void fill_next(struct longop *op, int rc)
{
	struct fill_op *f = (struct fill_op *)op;
	struct scsi_req r;

	longop_req(op, &r);
	if (rc < 0) {
		if (rc != -ECANCELED)
			lu_medium_error(&r, true, rc, f->fail_lba);
		fill_done(f, false);
		return;
	}
	if (f->cur < f->nranges && f->pos == f->ranges[f->cur][1]) {
		f->cur++;
		f->pos = 0;
	}
	while (f->cur < f->nranges && f->ranges[f->cur][1] == 0)
		f->cur++; /* empty ranges take no step */
	if (f->cur < f->nranges) {
		longop_then(op, fill_step, fill_next);
		return;
	}
	if (f->flush) {
		longop_then(op, longop_flush_step, fill_flushed);
		return;
	}
	fill_done(f, true);
}

/*
 * On a store with its own submit (a network store, never called synchronously) each range goes
 * to the store as one io: it deallocates, zeroes or repeats the block itself. Where it cannot
 * deallocate, the range is zeroed, and where it cannot zero, the zero block is repeated (LBPRZ
 * promises zeros either way). The ranges live in the command's own buffer (cmd->defer.buf).
 */
struct io_fill {
	enum fill_mode mode;
	size_t n;
	uint8_t block[4096];
	uint64_t ranges[][2];
};

static void io_fill_done(struct scsi_cmd *cmd, int rc);

static void io_fill_step(struct scsi_cmd *cmd)
{
	struct io_fill *f = (struct io_fill *)(void *)cmd->defer.buf;
	uint64_t bs = cmd->defer.block_size;

	while (cmd->defer.pos < f->n && f->ranges[cmd->defer.pos][1] == 0)
		cmd->defer.pos++; /* empty ranges take no io */
	if (cmd->defer.pos >= f->n) {
		medium_flush_then_end(cmd, 0);
		return;
	}
	const uint64_t *rg = f->ranges[cmd->defer.pos];
	enum store_io_op op = f->mode == FILL_DEALLOC ? STORE_IO_UNMAP
			      : f->mode == FILL_ZERO  ? STORE_IO_WRITE_ZEROES
						      : STORE_IO_WRITE_SAME;
	bool pattern = op == STORE_IO_WRITE_SAME;
	medium_io(cmd, op, rg[0] * bs, rg[1] * bs, pattern ? f->block : NULL, pattern ? bs : 0, io_fill_done);
}

static void io_fill_done(struct scsi_cmd *cmd, int rc)
{
	struct io_fill *f = (struct io_fill *)(void *)cmd->defer.buf;

	if (rc == -EOPNOTSUPP && f->mode != FILL_DATA) {
		f->mode = f->mode == FILL_DEALLOC ? FILL_ZERO : FILL_DATA;
		if (f->mode == FILL_DATA)
			memset(f->block, 0, sizeof(f->block));
		io_fill_step(cmd);
		return;
	}
	if (rc < 0) {
		medium_error(cmd, true, rc, f->ranges[cmd->defer.pos][0]);
		medium_end(cmd);
		return;
	}
	cmd->defer.pos++;
	io_fill_step(cmd);
}

static void io_fill_ranges(struct scsi_req *r, enum fill_mode mode, const uint8_t *block, const uint64_t (*ranges)[2],
			   size_t n, bool flush)
{
	struct io_fill *f = xcalloc(1, sizeof(*f) + n * sizeof(f->ranges[0]));

	f->mode = mode;
	f->n = n;
	if (block)
		memcpy(f->block, block, r->lu->block_size);
	memcpy(f->ranges, ranges, n * sizeof(*ranges));
	medium_start(r, n ? ranges[0][0] : 0, flush);
	r->cmd->defer.buf = (uint8_t *)f;
	r->cmd->defer.pos = 0;
	io_fill_step(r->cmd);
}

/* Starts the operation on ranges (copied); the command ends with it. */
static void fill_ranges(struct scsi_req *r, enum fill_mode mode, const uint8_t *block, const uint64_t (*ranges)[2],
			size_t n, bool sanitize, bool flush)
{
	struct scsi_lu *lu = r->lu;
	if (lu->st->ops->submit && !sanitize) {
		io_fill_ranges(r, mode, block, ranges, n, flush);
		return;
	}
	struct fill_op *f = longop_new(r, sizeof(*f));

	f->mode = mode;
	f->sanitize = sanitize;
	f->flush = flush;
	f->shift = lu->block_shift;
	f->block_size = lu->block_size;
	if (block)
		memcpy(f->block, block, lu->block_size);
	f->op.cleanup = fill_cleanup;
	f->ranges = xmalloc((n ? n : 1) * sizeof(*f->ranges));
	memcpy(f->ranges, ranges, n * sizeof(*ranges));
	f->nranges = n;
	if (sanitize)
		lu->sanitizing = true;
	/* The first step, or none at all: fill_next skips empty ranges. */
	fill_next(&f->op, 0);
}

void lu_deallocate_ranges(struct scsi_req *r, const uint64_t (*ranges)[2], size_t n, bool sanitize)
{
	/* A sanitized medium is durable before GOOD; deallocation otherwise follows the cache. */
	fill_ranges(r, FILL_DEALLOC, NULL, ranges, n, sanitize, sanitize || !r->lu->wce);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			return false;
	}
	return true;
}

void scsi_unmap(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	const uint8_t *d = r->cmd->out;
	uint32_t plen = get_be16(r->cdb + 7);
	uint32_t bdl, count;
	uint64_t total = 0;

	if (!lu->thin) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x20, 0x00);
		return;
	}
	r->cmd->xfer_len = plen;
	if (plen == 0)
		return;
	if (lu_write_blocked(r))
		return;
	if (plen < 8 || r->cmd->out_len < plen) {
		req_param_len_error(r);
		return;
	}
	bdl = get_be16(d + 2);
	if (bdl > plen - 8 || get_be16(d) + 2u > plen) {
		req_param_len_error(r);
		return;
	}
	count = bdl / 16;
	if (count > MAX_UNMAP_DESCRIPTORS) {
		req_bad_param(r, 2, -1);
		return;
	}
	/* Validate every descriptor before touching anything. */
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = d + 8 + 16 * i;
		uint64_t lba = get_be64(e);
		uint32_t n = get_be32(e + 8);

		if (n && !lu_range_ok(lu, lba, n)) {
			req_lba_oob(r);
			return;
		}
		total += n;
	}
	if (total > MAX_UNMAP_BLOCKS) {
		req_bad_param(r, 8 + 8, -1);
		return;
	}
	uint64_t ranges[MAX_UNMAP_DESCRIPTORS][2];
	for (uint32_t i = 0; i < count; i++) {
		ranges[i][0] = get_be64(d + 8 + 16 * i);
		ranges[i][1] = get_be32(d + 8 + 16 * i + 8);
	}
	lu_deallocate_ranges(r, (const uint64_t (*)[2])ranges, count, false);
}

/* MAXIMUM WRITE SAME LENGTH in the LU's blocks. */
uint64_t lu_max_write_same(const struct scsi_lu *lu) { return MAX_WRITE_SAME_BYTES >> lu->block_shift; }

static void write_same(struct scsi_req *r, uint64_t lba, uint64_t n, bool unmap, bool ndob, unsigned len_byte)
{
	struct scsi_lu *lu = r->lu;
	static const uint8_t zeros[4096];
	const uint8_t *block;
	uint64_t range[1][2];

	if (unmap && !lu->thin) {
		req_bad_cdb(r, 1, 3);
		return;
	}
	if (lba >= lu->nblocks) {
		req_lba_oob(r);
		return;
	}
	/* WSNZ is 0: a zero count means "to the end of the medium", within the same limit (SBC-3). */
	if (n == 0)
		n = lu->nblocks - lba;
	if (!lu_write_checks(r, lba, n, lu_max_write_same(lu), len_byte))
		return;
	if (ndob) {
		block = zeros;
	} else {
		r->cmd->xfer_len = lu->block_size;
		if (r->cmd->out_len != lu->block_size) {
			req_sense(r, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
			return;
		}
		block = r->cmd->out;
	}
	/*
	 * UNMAP set: the initiator asks for the range to be deallocated, so it is, whatever the
	 * data-out block holds (it still has to be sent, one block); with LBPRZ the range then
	 * reads as zeros. This is what initiators (and libiscsi's conformance tests) expect.
	 */
	range[0][0] = lba;
	range[0][1] = n;
	if (unmap)
		fill_ranges(r, FILL_DEALLOC, NULL, (const uint64_t (*)[2])range, 1, false, !lu->wce);
	else if (all_zero(block, lu->block_size))
		fill_ranges(r, FILL_ZERO, NULL, (const uint64_t (*)[2])range, 1, false, !lu->wce);
	else
		fill_ranges(r, FILL_DATA, block, (const uint64_t (*)[2])range, 1, false, !lu->wce);
}

void scsi_write_same10(struct scsi_req *r)
{
	const uint8_t *c = r->cdb;

	write_same(r, get_be32(c + 2), get_be16(c + 7), c[1] & 0x08, false, 7);
}

void scsi_write_same16(struct scsi_req *r)
{
	const uint8_t *c = r->cdb;

	write_same(r, get_be64(c + 2), get_be32(c + 10), c[1] & 0x08, c[1] & 0x01, 10);
}

/*
 * SANITIZE (SBC-4 5.30), on thin LUs only: BLOCK ERASE deallocates every block, which with
 * LBPRZ leaves the medium reading as zeros (WABEREQ 01b: reads after it succeed). It runs in
 * steps on workers, and its status comes when it is complete, IMMED or not; meanwhile medium
 * access to the LU gets NOT READY, SANITIZE IN PROGRESS. If it fails or is aborted part way the
 * LU enters the sanitize failure state (medium access gets MEDIUM ERROR / SANITIZE COMMAND
 * FAILED) until a sanitize succeeds or EXIT FAILURE MODE. OVERWRITE and CRYPTO ERASE are not
 * offered.
 */
void scsi_sanitize(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	uint8_t sa = r->cdb[1] & 0x1f;
	uint16_t plen = get_be16(r->cdb + 7);
	uint64_t range[1][2] = { { 0, lu->nblocks } };

	r->cmd->xfer_len = plen;
	/* Neither service action takes a parameter list. */
	if (plen) {
		req_bad_cdb(r, 7, -1);
		return;
	}
	if (lu_write_blocked(r))
		return;
	if (sa == 0x1f) {
		/* EXIT FAILURE MODE: leave the failure state; the medium stays as it is. */
		lu->sanitize_failed = false;
		return;
	}
	lu_deallocate_ranges(r, (const uint64_t (*)[2])range, 1, true);
}
