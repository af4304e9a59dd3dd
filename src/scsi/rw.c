/*
 * Medium access (SBC-3 5.x): READ, WRITE, VERIFY, WRITE AND VERIFY, ORWRITE, COMPARE AND
 * WRITE, PRE-FETCH and SYNCHRONIZE CACHE. READ and WRITE move data straight between the
 * transport's buffers and the store; the others use the target's preallocated scratch.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "scsi/scsi_int.h"


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

int lu_flush_if_needed(struct scsi_lu *lu, bool fua)
{
	return write_needs_flush(lu, fua) ? store_flush(lu->st) : 0;
}

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

/*
 * Only SIMPLE (and untagged) commands wait on a worker: an ORDERED or HEAD OF QUEUE one must be
 * done before the commands after it run, and those run inline as soon as it returns.
 */
static bool may_wait(const struct scsi_req *r)
{
	return r->t->offload && r->lu->st->wait != STORE_WAIT_NEVER &&
	       (r->cmd->task_attr == TASK_SIMPLE || r->cmd->task_attr == TASK_UNTAGGED);
}

static struct scsi_cmd *job_cmd(struct offload_job *j)
{
	return (struct scsi_cmd *)((char *)j - offsetof(struct scsi_cmd, defer.job));
}

static void deferred_work(struct offload_job *j)
{
	struct scsi_cmd *cmd = job_cmd(j);
	if (atomic_load(&cmd->defer.cancelled))
		cmd->defer.rc = -ECANCELED; /* aborted, or its connection is gone: spare the device */
	else if (cmd->defer.flush)
		cmd->defer.rc = store_flush(cmd->defer.st);
	else
		cmd->defer.rc = store_read(cmd->defer.st, cmd->defer.buf, cmd->defer.len, cmd->defer.off);
}

static void deferred_finished(struct offload_job *j)
{
	struct scsi_cmd *cmd = job_cmd(j);
	struct store *st = cmd->defer.st;
	cmd->defer.active = false;
	if (--st->jobs == 0 && st->closing)
		store_close(st); /* its LU went while this ran */
	/* The LU may be gone by now: everything needed was kept in cmd. A cancelled command's
	 * transport ignores its outcome. */
	if (!atomic_load(&cmd->defer.cancelled)) {
		if (cmd->defer.rc < 0)
			scsi_medium_error(cmd, cmd->defer.desc, cmd->defer.lun, cmd->defer.flush, cmd->defer.rc,
					  cmd->defer.lba);
		else if (!cmd->defer.flush)
			cmd->in_len = cmd->defer.n;
	}
	cmd->done(cmd);
}

/* key: jobs with the same key run one at a time, in order (see offload.h) */
static void defer_start(struct scsi_req *r, uint64_t lba, bool flush, const void *key)
{
	struct scsi_cmd *cmd = r->cmd;
	struct scsi_lu *lu = r->lu;
	cmd->defer.job.work = deferred_work;
	cmd->defer.job.done = deferred_finished;
	cmd->defer.job.key = key;
	cmd->defer.st = lu->st;
	cmd->defer.lba = lba;
	cmd->defer.lun = lu->lun;
	cmd->defer.desc = lu->d_sense;
	cmd->defer.flush = flush;
	cmd->defer.active = true;
	cmd->defer.waited = true;
	lu->st->jobs++;
	offload_submit(r->t->offload, &cmd->defer.job);
}

/*
 * Blocks from lba, n bytes, go to a worker, the first `got` bytes being in place already. A read
 * that continues the previous one is part of a stream: it queues behind the stream's earlier
 * reads, in order, which the device's readahead relies on (parallel workers reading one stream
 * defeat it). Any other read runs as soon as a worker is free, next to the others: a device with
 * many random reads in flight serves them faster.
 */
static void read_defer(struct scsi_req *r, uint64_t lba, uint32_t n, size_t got, bool stream)
{
	struct scsi_cmd *cmd = r->cmd;
	cmd->defer.buf = cmd->in + got;
	cmd->defer.len = n - got;
	cmd->defer.off = (lba << r->lu->block_shift) + got;
	cmd->defer.n = n;
	/* A stream's first read starts one: the reads that continue it share its key. */
	const void *key = stream && r->lu->stream_key ? r->lu->stream_key : (const void *)cmd;
	r->lu->stream_key = key;
	defer_start(r, lba, false, key);
}

/* The store's flush goes to a worker; a store's flushes queue among themselves, not behind its
 * reads (the key is never followed). */
static void flush_defer(struct scsi_req *r, uint64_t lba)
{
	defer_start(r, lba, true, (const char *)r->lu->st + 1);
}

static void do_read(struct scsi_req *r, const struct rw *a, unsigned len_byte)
{
	struct scsi_lu *lu = r->lu;
	struct scsi_cmd *cmd = r->cmd;
	uint64_t bytes = (uint64_t)a->n << lu->block_shift;
	uint32_t n;
	int rc;

	if (!check_extent(r, a) || !check_xfer_limit(r, a, len_byte))
		return;
	cmd->xfer_len = clamp32(bytes);
	/* Give the initiator what fits its buffer; the transport reports the rest as residual. */
	n = bytes < cmd->in_cap ? (uint32_t)bytes : cmd->in_cap;
	bool stream = a->lba == lu->next_read_lba;
	lu->next_read_lba = a->lba + a->n;
	if (n && may_wait(r)) {
		/* What the page cache has comes now; only the rest goes to a worker. */
		size_t got = 0;
		if (lu->st->wait == STORE_WAIT_PROBE) {
			rc = store_read_nowait(lu->st, cmd->in, n, a->lba << lu->block_shift, &got);
			if (rc < 0) {
				lu_medium_error(r, false, rc, a->lba);
				return;
			}
		}
		if (got < n) {
			read_defer(r, a->lba, n, got, stream);
			return;
		}
	} else if (n) {
		rc = store_read(lu->st, cmd->in, n, a->lba << lu->block_shift);
		if (rc < 0) {
			lu_medium_error(r, false, rc, a->lba);
			return;
		}
	}
	cmd->in_len = n;
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

static void do_write(struct scsi_req *r, const struct rw *a, unsigned len_byte, bool verify)
{
	struct scsi_lu *lu = r->lu;
	uint64_t need = (uint64_t)a->n << lu->block_shift;
	uint64_t use;
	int rc;

	if (!check_extent(r, a) || !check_xfer_limit(r, a, len_byte) || lu_write_blocked(r))
		return;
	if (!usable_out(r, need, &use))
		return;
	if (use) {
		rc = store_write(lu->st, r->cmd->out, use, a->lba << lu->block_shift);
		if (rc < 0) {
			lu_medium_error(r, true, rc, a->lba);
			return;
		}
	}
	/* WRITE AND VERIFY promises the data is on the medium, which for us means durable. */
	bool durable = a->fua || verify;
	if (write_needs_flush(lu, durable) && may_wait(r)) {
		/* The data is in the store already; only making it durable may take long. */
		flush_defer(r, a->lba);
		return;
	}
	rc = lu_flush_if_needed(lu, durable);
	if (rc < 0)
		lu_medium_error(r, true, rc, a->lba);
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
 * Compares the medium from lba on with `data` (len bytes). With `repeat` the data is one
 * block to be compared against every block. Returns 1 on match, 0 after setting MISCOMPARE
 * (INFORMATION = offset of the first differing byte in the data-out buffer), -1 on error.
 */
static int compare_medium(struct scsi_req *r, uint64_t lba, const uint8_t *data, uint64_t len, bool repeat)
{
	struct scsi_lu *lu = r->lu;
	uint8_t *buf = r->t->scratch2;
	uint64_t chunk = r->t->scratch_len;
	uint64_t done = 0;
	int rc;

	while (done < len) {
		uint64_t n = len - done < chunk ? len - done : chunk;

		rc = store_read(lu->st, buf, n, (lba << lu->block_shift) + done);
		if (rc < 0) {
			lu_medium_error(r, false, rc, lba + (done >> lu->block_shift));
			return -1;
		}
		for (uint64_t i = 0; i < n; i += lu->block_size) {
			const uint8_t *want = repeat ? data : data + done + i;
			if (memcmp(buf + i, want, lu->block_size) != 0) {
				uint64_t j = 0;
				while (buf[i + j] == want[j])
					j++;
				req_sense_info(r, SK_MISCOMPARE, 0x1d, 0x00,
					       repeat ? j : done + i + j);
				return 0;
			}
		}
		done += n;
	}
	return 1;
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
		if (a->n)
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
	if (a->n)
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

/* ORWRITE (SBC-3 5.8) with BMOP 0: OR the data into the medium, block by block. */
void scsi_orwrite16(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	struct rw a;
	uint64_t need, use, done = 0;
	uint8_t *buf = r->t->scratch2;
	int rc;

	parse16(r->cdb, &a);
	if (!check_extent(r, &a) || !check_xfer_limit(r, &a, 10) || lu_write_blocked(r))
		return;
	need = (uint64_t)a.n << lu->block_shift;
	if (!usable_out(r, need, &use))
		return;
	while (done < use) {
		uint64_t n = use - done < r->t->scratch_len ? use - done : r->t->scratch_len;
		uint64_t off = (a.lba << lu->block_shift) + done;

		rc = store_read(lu->st, buf, n, off);
		if (rc < 0) {
			lu_medium_error(r, false, rc, a.lba + (done >> lu->block_shift));
			return;
		}
		for (uint64_t i = 0; i < n; i++)
			buf[i] |= r->cmd->out[done + i];
		rc = store_write(lu->st, buf, n, off);
		if (rc < 0) {
			lu_medium_error(r, true, rc, a.lba + (done >> lu->block_shift));
			return;
		}
		done += n;
	}
	rc = lu_flush_if_needed(lu, a.fua);
	if (rc < 0)
		lu_medium_error(r, true, rc, a.lba);
}

/* COMPARE AND WRITE (SBC-3 5.2): atomic because we run one command at a time. */
void scsi_compare_and_write(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	const uint8_t *c = r->cdb;
	uint64_t lba = get_be64(c + 2);
	uint32_t n = c[13];
	uint64_t len = (uint64_t)n << lu->block_shift;
	int rc;

	if (!lu_write_checks(r, lba, n, MAX_COMPARE_WRITE_BLOCKS, 13))
		return;
	r->cmd->xfer_len = clamp32(2 * len);
	if (n == 0 && r->cmd->out_len == 0)
		return;
	if (r->cmd->out_len != 2 * len) {
		/*
		 * Half a verify buffer or stray write data cannot be meant as this command. That
		 * includes data sent with NUMBER OF LOGICAL BLOCKS 0: an initiator asking for 256
		 * blocks wraps the one-byte field to 0, and must not get GOOD for a no-op.
		 */
		req_bad_cdb(r, 13, -1);
		return;
	}
	if (compare_medium(r, lba, r->cmd->out, len, false) != 1)
		return;
	rc = store_write(lu->st, r->cmd->out + len, len, lba << lu->block_shift);
	if (rc < 0) {
		lu_medium_error(r, true, rc, lba);
		return;
	}
	rc = lu_flush_if_needed(lu, c[1] & 0x08);
	if (rc < 0)
		lu_medium_error(r, true, rc, lba);
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
	int rc;

	if (!check_extent(r, &a) || !check_xfer_limit(r, &a, 12) || lu_write_blocked(r))
		return;
	r->cmd->xfer_len = clamp32(need);
	if (r->cmd->out_len < need) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		return;
	}
	if (need) {
		rc = store_write(lu->st, r->cmd->out, need, a.lba << lu->block_shift);
		if (rc < 0) {
			lu_medium_error(r, true, rc, a.lba);
			return;
		}
	}
	rc = lu_flush_if_needed(lu, a.fua);
	if (rc < 0)
		lu_medium_error(r, true, rc, a.lba);
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
	int rc;

	/* A zero block count covers everything to the end, which needs only a valid LBA. */
	if (!lu_range_ok(r->lu, a->lba, a->n)) {
		req_lba_oob(r);
		return;
	}
	if (may_wait(r)) {
		/* fdatasync of a busy disk can take seconds: not on the loop thread. */
		flush_defer(r, a->lba);
		return;
	}
	rc = store_flush(r->lu->st);
	if (rc < 0)
		lu_medium_error(r, true, rc, a->lba);
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
