/*
 * Medium access (SBC-3 5.x): READ, WRITE, VERIFY, WRITE AND VERIFY, ORWRITE, COMPARE AND
 * WRITE, PRE-FETCH and SYNCHRONIZE CACHE, each as store ios (medium.c). READ and WRITE move data
 * straight between the transport's buffers and the store; ORWRITE and COMPARE AND WRITE read
 * into a buffer of their own.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "scsi/scsi_int.h"
#include "util/sbuf.h"


struct rw {
	uint64_t lba;
	uint32_t n;        /* blocks */
	bool fua;
	uint8_t bytchk;
};

static void parse6(const uint8_t *c, struct rw *a)
{
	a->lba = get_be24(c + 1) & 0x1fffff;
	a->n = c[4] ? c[4] : 256;   /* SBC-3 5.13: zero means 256 blocks for the 6-byte forms */
	a->fua = false;
	a->bytchk = 0;
}

static void parse10(const uint8_t *c, struct rw *a)
{
	a->lba = get_be32(c + 2);
	a->n = get_be16(c + 7);
	a->fua = c[1] & 0x08;
	a->bytchk = (c[1] >> 1) & 3;
}

static void parse12(const uint8_t *c, struct rw *a)
{
	a->lba = get_be32(c + 2);
	a->n = get_be32(c + 6);
	a->fua = c[1] & 0x08;
	a->bytchk = (c[1] >> 1) & 3;
}

static void parse16(const uint8_t *c, struct rw *a)
{
	a->lba = get_be64(c + 2);
	a->n = get_be32(c + 10);
	a->fua = c[1] & 0x08;
	a->bytchk = (c[1] >> 1) & 3;
}

bool lu_range_ok(const struct scsi_lu *lu, uint64_t lba, uint64_t nblocks)
{
	return lba < lu->nblocks && nblocks <= lu->nblocks - lba;
}

bool lu_write_blocked(struct scsi_req *r)
{
	if (r->lu->read_only) {
		req_sense(r, SK_DATA_PROTECT, 0x27, 0x00);
		return true;
	}
	if (r->lu->swp) {
		req_sense(r, SK_DATA_PROTECT, 0x27, 0x02);   /* LOGICAL UNIT SOFTWARE WRITE PROTECTED */
		return true;
	}
	return false;
}

bool lu_write_checks(struct scsi_req *r, uint64_t lba, uint64_t n, uint64_t max, unsigned len_byte)
{
	if (n > max) {
		req_bad_cdb(r, len_byte, -1);
		return false;
	}
	if (!lu_range_ok(r->lu, lba, n)) {
		req_lba_oob(r);
		return false;
	}
	return !lu_write_blocked(r);
}

/* With the write cache off every write must be durable before GOOD, as with FUA. */
static bool write_needs_flush(const struct scsi_lu *lu, bool fua) { return fua || !lu->wce; }

static uint32_t clamp32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

/* Range and size checks common to every medium-access command; false if sense was set. */
static bool check_extent(struct scsi_req *r, const struct rw *a)
{
	if (!lu_range_ok(r->lu, a->lba, a->n)) {
		req_lba_oob(r);
		return false;
	}
	return true;
}

static bool check_xfer_limit(struct scsi_req *r, const struct rw *a, unsigned len_byte)
{
	if ((uint64_t)a->n << r->lu->block_shift > MAX_XFER_BYTES) {
		req_bad_cdb(r, len_byte, -1);
		return false;
	}
	return true;
}

static void read_done(struct scsi_cmd *cmd, int rc)
{
	if (rc < 0)
		medium_error(cmd, false, rc, cmd->defer.lba);
	else
		cmd->in_len = cmd->defer.n;
	medium_end(cmd);
}

/* Straight into the transport's buffer; what the page cache holds completes inline. */
static void do_read(struct scsi_req *r, const struct rw *a, unsigned len_byte)
{
	struct scsi_lu *lu = r->lu;
	struct scsi_cmd *cmd = r->cmd;
	uint64_t bytes = (uint64_t)a->n << lu->block_shift;
	uint32_t n;

	if (!check_extent(r, a) || !check_xfer_limit(r, a, len_byte))
		return;
	cmd->xfer_len = clamp32(bytes);
	/* Give the initiator what fits its buffer; the transport reports the rest as residual. */
	n = bytes < cmd->in_cap ? (uint32_t)bytes : cmd->in_cap;
	if (!n || medium_read_by_ref(r, a->lba << lu->block_shift, n))
		return;
	medium_start(r, a->lba, false);
	cmd->defer.n = n;
	medium_io(cmd, STORE_IO_READ, a->lba << lu->block_shift, n, cmd->in, n, read_done);
}

/*
 * How many data-out bytes a command needing `need` bytes may use. When the initiator sent
 * fewer, only whole blocks are written (libiscsi's residual tests expect exactly that); a
 * transfer that ends inside a block is refused without touching the medium.
 */
static bool usable_out(struct scsi_req *r, uint64_t need, uint64_t *use)
{
	struct scsi_cmd *cmd = r->cmd;

	cmd->xfer_len = clamp32(need);
	if (cmd->out_len >= need) {
		*use = need;
		return true;
	}
	if (cmd->out_len & (r->lu->block_size - 1)) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x0e, 0x03);   /* INVALID FIELD IN COMMAND INFORMATION UNIT */
		return false;
	}
	*use = cmd->out_len;
	return true;
}

/* The store writes straight from the transport's Data-Out buffer. */
static void do_write(struct scsi_req *r, const struct rw *a, unsigned len_byte, bool verify)
{
	struct scsi_lu *lu = r->lu;
	uint64_t need = (uint64_t)a->n << lu->block_shift;
	uint64_t use;

	if (!check_extent(r, a) || !check_xfer_limit(r, a, len_byte) || lu_write_blocked(r))
		return;
	if (!usable_out(r, need, &use))
		return;
	/* WRITE AND VERIFY promises the data is on the medium, which for us means durable. */
	medium_start(r, a->lba, write_needs_flush(lu, a->fua || verify));
	if (!use) {
		medium_flush_then_end(r->cmd, 0);
		return;
	}
	medium_io(r->cmd, STORE_IO_WRITE, a->lba << lu->block_shift, use, (void *)r->cmd->out, use,
		  medium_flush_then_end);
}

void scsi_read6(struct scsi_req *r)
{
	struct rw a;

	parse6(r->cdb, &a);
	do_read(r, &a, 4);
}

void scsi_read10(struct scsi_req *r)
{
	struct rw a;

	parse10(r->cdb, &a);
	do_read(r, &a, 7);
}

void scsi_read12(struct scsi_req *r)
{
	struct rw a;

	parse12(r->cdb, &a);
	do_read(r, &a, 6);
}

void scsi_read16(struct scsi_req *r)
{
	struct rw a;

	parse16(r->cdb, &a);
	do_read(r, &a, 10);
}

void scsi_write6(struct scsi_req *r)
{
	struct rw a;

	parse6(r->cdb, &a);
	do_write(r, &a, 4, false);
}

void scsi_write10(struct scsi_req *r)
{
	struct rw a;

	parse10(r->cdb, &a);
	do_write(r, &a, 7, false);
}

void scsi_write12(struct scsi_req *r)
{
	struct rw a;

	parse12(r->cdb, &a);
	do_write(r, &a, 6, false);
}

void scsi_write16(struct scsi_req *r)
{
	struct rw a;

	parse16(r->cdb, &a);
	do_write(r, &a, 10, false);
}

/* WRITE AND VERIFY: BYTCHK 0 (medium check) and 1 (compare with what we just wrote) only. */
static void write_verify(struct scsi_req *r, struct rw *a, unsigned len_byte)
{
	if (a->bytchk > 1) {
		req_bad_cdb(r, 1, 2);
		return;
	}
	do_write(r, a, len_byte, true);
}

void scsi_write_verify10(struct scsi_req *r)
{
	struct rw a;

	parse10(r->cdb, &a);
	write_verify(r, &a, 7);
}

void scsi_write_verify12(struct scsi_req *r)
{
	struct rw a;

	parse12(r->cdb, &a);
	write_verify(r, &a, 6);
}

void scsi_write_verify16(struct scsi_req *r)
{
	struct rw a;

	parse16(r->cdb, &a);
	write_verify(r, &a, 10);
}

/*
 * VERIFY, in steps (longop.c): reading the range proves it readable, which is what "verify
 * medium" means for us (BYTCHK 0); BYTCHK 1 also compares with the data-out buffer, BYTCHK 3
 * with its one block, repeated. Without a comparison, what the store has never allocated (a
 * hole reads as zeros and has no medium to fail) is passed over rather than read, which would
 * only fill the page cache with zeros.
 */
struct verify_op {
	struct longop op;
	uint64_t lba;            /* first block */
	uint64_t done, len;      /* bytes */
	uint64_t mapped_end;     /* done may go this far before the store is asked again */
	const uint8_t *data;     /* NULL: no comparison */
	bool repeat;
	uint8_t shift;
	uint32_t block_size;
	bool miscompare;
	uint64_t info;           /* offset of the first differing byte (MISCOMPARE INFORMATION) */
};

static int verify_step(struct longop *op)
{
	struct verify_op *v = (struct verify_op *)op;
	uint64_t budget = LONGOP_STEP_BYTES;

	while (v->done < v->len && budget > 0 && longop_step_more(op)) {
		uint64_t n = v->len - v->done;
		if (!v->data && v->done >= v->mapped_end) {
			bool mapped;
			uint64_t run;
			if (store_extent(op->st, (v->lba << v->shift) + v->done, &mapped, &run) < 0)
				mapped = true, run = n; /* cannot tell: read it */
			if (!mapped) {
				v->done += run < n ? run : n;
				continue;
			}
			v->mapped_end = v->done + run;
		}
		if (!v->data && n > v->mapped_end - v->done)
			n = v->mapped_end - v->done;
		if (n > LONGOP_BUF)
			n = LONGOP_BUF;
		int rc = store_read(op->st, op->buf, n, (v->lba << v->shift) + v->done);
		if (rc < 0)
			return rc;
		for (uint64_t i = 0; v->data && i < n; i += v->block_size) {
			const uint8_t *want = v->repeat ? v->data : v->data + v->done + i;
			if (memcmp(op->buf + i, want, v->block_size) != 0) {
				uint64_t j = 0;
				while (op->buf[i + j] == want[j])
					j++;
				v->miscompare = true;
				v->info = v->repeat ? j : v->done + i + j;
				return 0;
			}
		}
		v->done += n;
		budget -= n;
	}
	return 0;
}

static void verify_next(struct longop *op, int rc)
{
	struct verify_op *v = (struct verify_op *)op;
	struct scsi_req r;

	longop_req(op, &r);
	if (rc < 0 && rc != -ECANCELED)
		lu_medium_error(&r, false, rc, v->lba + (v->done >> v->shift));
	else if (v->miscompare)
		req_sense_info(&r, SK_MISCOMPARE, 0x1d, 0x00, v->info);
	else if (rc == 0 && v->done < v->len) {
		longop_then(op, verify_step, verify_next);
		return;
	}
	longop_end(op);
}

static void verify_start(struct scsi_req *r, const struct rw *a, const uint8_t *data, bool repeat)
{
	struct verify_op *v = longop_new(r, sizeof(*v));

	v->lba = a->lba;
	v->len = (uint64_t)a->n << r->lu->block_shift;
	v->data = data;
	v->repeat = repeat;
	v->shift = r->lu->block_shift;
	v->block_size = r->lu->block_size;
	longop_then(&v->op, verify_step, verify_next);
}

/*
 * VERIFY on a store that takes only ios (a network store, which has no synchronous read for a
 * worker to call): the range is read VERIFY_IO_BYTES at a time through the store's own
 * asynchronous path, each chunk compared on the loop thread when it arrives. defer.pos/end are
 * the bytes done and to do, defer.n the BYTCHK.
 */
#define VERIFY_IO_BYTES (1u << 20)

static void verify_io_read(struct scsi_cmd *cmd);

static void verify_io_next(struct scsi_cmd *cmd, int rc)
{
	uint32_t bs = cmd->defer.block_size;
	uint64_t n = cmd->defer.end - cmd->defer.pos;

	if (n > VERIFY_IO_BYTES)
		n = VERIFY_IO_BYTES;
	if (rc < 0) {
		medium_error(cmd, false, rc, cmd->defer.lba + cmd->defer.pos / bs);
		medium_end(cmd);
		return;
	}
	for (uint64_t i = 0; cmd->defer.n && i < n; i += bs) {
		const uint8_t *got = cmd->defer.buf + i;
		const uint8_t *want = cmd->defer.n == 3 ? cmd->out : cmd->out + cmd->defer.pos + i;
		if (memcmp(got, want, bs) != 0) {
			uint64_t j = 0;
			while (got[j] == want[j])
				j++;
			uint64_t info = cmd->defer.n == 3 ? j : cmd->defer.pos + i + j;
			cmd->status = SCSI_CHECK_CONDITION;
			cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), cmd->defer.desc,
								   SK_MISCOMPARE, 0x1d, 0x00, &info, NULL);
			medium_end(cmd);
			return;
		}
	}
	cmd->defer.pos += n;
	if (cmd->defer.pos < cmd->defer.end)
		verify_io_read(cmd);
	else
		medium_end(cmd);
}

static void verify_io_read(struct scsi_cmd *cmd)
{
	uint64_t n = cmd->defer.end - cmd->defer.pos;

	if (n > VERIFY_IO_BYTES)
		n = VERIFY_IO_BYTES;
	medium_io(cmd, STORE_IO_READ, cmd->defer.lba * cmd->defer.block_size + cmd->defer.pos, n, cmd->defer.buf, n,
		  verify_io_next);
}

static void verify_io_start(struct scsi_req *r, const struct rw *a)
{
	struct scsi_cmd *cmd = r->cmd;
	uint64_t len = (uint64_t)a->n << r->lu->block_shift;

	medium_start(r, a->lba, false);
	cmd->defer.pos = 0;
	cmd->defer.end = len;
	cmd->defer.n = a->bytchk;
	cmd->defer.buf = xmalloc(len < VERIFY_IO_BYTES ? len : VERIFY_IO_BYTES);
	verify_io_read(cmd);
}

static void verify(struct scsi_req *r, const struct rw *a, unsigned len_byte)
{
	struct scsi_lu *lu = r->lu;
	uint64_t need;

	if (a->bytchk == 2) {
		req_bad_cdb(r, 1, 2);
		return;
	}
	if (!check_extent(r, a))
		return;
	if (a->bytchk == 0) {
		if (a->n && lu->st->ops->submit)
			verify_io_start(r, a);
		else if (a->n)
			verify_start(r, a, NULL, false);
		return;
	}
	if (!check_xfer_limit(r, a, len_byte))
		return;
	need = a->bytchk == 1 ? (uint64_t)a->n << lu->block_shift : (a->n ? lu->block_size : 0);
	r->cmd->xfer_len = clamp32(need);
	if (r->cmd->out_len < need) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		return;
	}
	if (a->n && lu->st->ops->submit)
		verify_io_start(r, a);
	else if (a->n)
		verify_start(r, a, r->cmd->out, a->bytchk == 3);
}

void scsi_verify10(struct scsi_req *r)
{
	struct rw a;

	parse10(r->cdb, &a);
	verify(r, &a, 7);
}

void scsi_verify12(struct scsi_req *r)
{
	struct rw a;

	parse12(r->cdb, &a);
	verify(r, &a, 6);
}

void scsi_verify16(struct scsi_req *r)
{
	struct rw a;

	parse16(r->cdb, &a);
	verify(r, &a, 10);
}

/*
 * ORWRITE (SBC-3 5.8) with BMOP 0: OR the data into the medium, read and written back a chunk at
 * a time. Nothing else of the LU runs meanwhile (exclusive), which makes it atomic for us.
 */
#define ORWRITE_CHUNK (1u << 20)

static void orwrite_next(struct scsi_cmd *cmd, int rc);

static uint64_t orwrite_chunk(const struct scsi_cmd *cmd)
{
	uint64_t left = cmd->defer.end - cmd->defer.pos;
	return left < ORWRITE_CHUNK ? left : ORWRITE_CHUNK;
}

static uint64_t cmd_byte_off(const struct scsi_cmd *cmd) { return cmd->defer.lba * cmd->defer.block_size; }

static void orwrite_written(struct scsi_cmd *cmd, int rc)
{
	if (rc < 0) {
		medium_error(cmd, true, rc, cmd->defer.lba + cmd->defer.pos / cmd->defer.block_size);
		medium_end(cmd);
		return;
	}
	cmd->defer.pos += orwrite_chunk(cmd);
	orwrite_next(cmd, 0);
}

static void orwrite_read(struct scsi_cmd *cmd, int rc)
{
	uint64_t n = orwrite_chunk(cmd);

	if (rc < 0) {
		medium_error(cmd, false, rc, cmd->defer.lba + cmd->defer.pos / cmd->defer.block_size);
		medium_end(cmd);
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		cmd->defer.buf[i] |= cmd->out[cmd->defer.pos + i];
	medium_io(cmd, STORE_IO_WRITE, cmd_byte_off(cmd) + cmd->defer.pos, n, cmd->defer.buf, n, orwrite_written);
}

static void orwrite_next(struct scsi_cmd *cmd, int rc)
{
	if (cmd->defer.pos >= cmd->defer.end) {
		medium_flush_then_end(cmd, rc);
		return;
	}
	uint64_t n = orwrite_chunk(cmd);
	medium_io(cmd, STORE_IO_READ, cmd_byte_off(cmd) + cmd->defer.pos, n, cmd->defer.buf, n, orwrite_read);
}

void scsi_orwrite16(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	struct rw a;
	uint64_t need, use;

	parse16(r->cdb, &a);
	if (!check_extent(r, &a) || !check_xfer_limit(r, &a, 10) || lu_write_blocked(r))
		return;
	need = (uint64_t)a.n << lu->block_shift;
	if (!usable_out(r, need, &use))
		return;
	r->cmd->defer.exclusive = true;
	medium_start(r, a.lba, write_needs_flush(lu, a.fua));
	r->cmd->defer.pos = 0;
	r->cmd->defer.end = use;
	if (use)
		r->cmd->defer.buf = xmalloc(use < ORWRITE_CHUNK ? use : ORWRITE_CHUNK);
	orwrite_next(r->cmd, 0);
}

/* MISCOMPARE, INFORMATION = offset of the first differing byte in the data-out buffer. */
static void miscompare(struct scsi_cmd *cmd, uint64_t info)
{
	cmd->status = SCSI_CHECK_CONDITION;
	cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), cmd->defer.desc, SK_MISCOMPARE,
						   0x1d, 0x00, &info, NULL);
}

/* A store that compares and writes atomically itself (on every gateway of the medium). */
static void caw_store_done(struct scsi_cmd *cmd, int rc)
{
	lu_shared_caw_end(cmd);
	if (rc == -EILSEQ) {
		miscompare(cmd, cmd->defer.io.miscompare_off);
		medium_end(cmd);
		return;
	}
	medium_flush_then_end(cmd, rc);
}

/* Without the store's help: the LU ran nothing else since the read (exclusive). */
static void caw_read(struct scsi_cmd *cmd, int rc)
{
	uint64_t len = cmd->defer.end;

	if (rc < 0) {
		medium_error(cmd, false, rc, cmd->defer.lba);
		medium_end(cmd);
		return;
	}
	if (memcmp(cmd->defer.buf, cmd->out, len) != 0) {
		uint64_t j = 0;
		while (cmd->defer.buf[j] == cmd->out[j])
			j++;
		miscompare(cmd, j);
		medium_end(cmd);
		return;
	}
	medium_io(cmd, STORE_IO_WRITE, cmd_byte_off(cmd), len, (void *)(cmd->out + len), len, medium_flush_then_end);
}

/* COMPARE AND WRITE (SBC-3 5.2). */
void scsi_compare_and_write(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	struct scsi_cmd *cmd = r->cmd;
	const uint8_t *c = r->cdb;
	uint64_t lba = get_be64(c + 2);
	uint32_t n = c[13];
	uint64_t len = (uint64_t)n << lu->block_shift;

	if (!lu_write_checks(r, lba, n, MAX_COMPARE_WRITE_BLOCKS, 13))
		return;
	cmd->xfer_len = clamp32(2 * len);
	if (n == 0 && cmd->out_len == 0)
		return;
	if (cmd->out_len != 2 * len) {
		/*
		 * Half a verify buffer or stray write data cannot be meant as this command. That
		 * includes data sent with NUMBER OF LOGICAL BLOCKS 0: an initiator asking for 256
		 * blocks wraps the one-byte field to 0, and must not get GOOD for a no-op.
		 */
		req_bad_cdb(r, 13, -1);
		return;
	}
	if (lu->st->caps & STORE_CAP_COMPARE_WRITE) {
		if (lu_shared_caw_begin(r))
			return; /* it runs again holding the gateway group's lock */
		medium_start(r, lba, write_needs_flush(lu, c[1] & 0x08));
		medium_io(cmd, STORE_IO_COMPARE_WRITE, lba << lu->block_shift, len, (void *)cmd->out, 2 * len,
			  caw_store_done);
		return;
	}
	cmd->defer.exclusive = true;
	medium_start(r, lba, write_needs_flush(lu, c[1] & 0x08));
	cmd->defer.end = len;
	cmd->defer.buf = xmalloc(len);
	medium_io(cmd, STORE_IO_READ, lba << lu->block_shift, len, cmd->defer.buf, len, caw_read);
}

/*
 * WRITE ATOMIC (16) (SBC-4 5.48): offered only where the store makes every write
 * all-or-nothing (op_supported checks lu->atomic), so the write itself is the same as WRITE
 * (16); what differs is that a short data-out transfer must not write a prefix.
 */
void scsi_write_atomic16(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	const uint8_t *c = r->cdb;
	struct rw a = { .lba = get_be64(c + 2), .n = get_be16(c + 12), .fua = c[1] & 0x08 };
	uint64_t need = (uint64_t)a.n << lu->block_shift;

	if (!check_extent(r, &a) || !check_xfer_limit(r, &a, 12) || lu_write_blocked(r))
		return;
	r->cmd->xfer_len = clamp32(need);
	if (r->cmd->out_len < need) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		return;
	}
	medium_start(r, a.lba, write_needs_flush(lu, a.fua));
	if (!need) {
		medium_flush_then_end(r->cmd, 0);
		return;
	}
	medium_io(r->cmd, STORE_IO_WRITE, a.lba << lu->block_shift, need, (void *)r->cmd->out, need,
		  medium_flush_then_end);
}

/* PRE-FETCH: there is no cache of ours to fill, so only the range is checked (GOOD, not CONDITION MET). */
void scsi_prefetch10(struct scsi_req *r)
{
	struct rw a;

	parse10(r->cdb, &a);
	check_extent(r, &a);
}

void scsi_prefetch16(struct scsi_req *r)
{
	struct rw a;

	parse16(r->cdb, &a);
	check_extent(r, &a);
}

static void sync_cache(struct scsi_req *r, const struct rw *a)
{
	/* A zero block count covers everything to the end, which needs only a valid LBA. */
	if (!lu_range_ok(r->lu, a->lba, a->n)) {
		req_lba_oob(r);
		return;
	}
	medium_start(r, a->lba, true);
	medium_flush_then_end(r->cmd, 0);
}

void scsi_sync_cache10(struct scsi_req *r)
{
	struct rw a;

	parse10(r->cdb, &a);
	sync_cache(r, &a);
}

void scsi_sync_cache16(struct scsi_req *r)
{
	struct rw a;

	parse16(r->cdb, &a);
	sync_cache(r, &a);
}
