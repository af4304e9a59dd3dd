/*
 * Logical block provisioning: UNMAP, WRITE SAME and SANITIZE (SBC-3 5.28, 5.41-5.43, SBC-4
 * 5.30). We advertise LBPRZ, so an unmapped block must read back as zeros: when the store
 * cannot deallocate a range we write the zeros ourselves.
 */
#include <errno.h>
#include <string.h>

#include "scsi/scsi_int.h"


/* Fills [lba, lba+n) with copies of one block. */
static int fill_blocks(struct scsi_req *r, uint64_t lba, uint64_t n, const uint8_t *block)
{
	struct scsi_lu *lu = r->lu;
	uint8_t *buf = r->t->scratch2;
	uint64_t per = r->t->scratch_len >> lu->block_shift;
	int rc;

	for (uint64_t i = 0; i < per && i < n; i++)
		memcpy(buf + (i << lu->block_shift), block, lu->block_size);
	while (n > 0) {
		uint64_t k = n < per ? n : per;

		rc = store_write(lu->st, buf, k << lu->block_shift, lba << lu->block_shift);
		if (rc < 0) {
			lu_medium_error(r, true, rc, lba);
			return rc;
		}
		lba += k;
		n -= k;
	}
	return 0;
}

/* Deallocates, or writes zeros where the store cannot; sets sense on failure. */
int lu_deallocate(struct scsi_req *r, uint64_t lba, uint64_t n)
{
	struct scsi_lu *lu = r->lu;
	int rc;

	if (n == 0)
		return 0;
	rc = store_unmap(lu->st, lba << lu->block_shift, n << lu->block_shift);
	if (rc == -EOPNOTSUPP) {
		memset(r->t->scratch, 0, lu->block_size);
		return fill_blocks(r, lba, n, r->t->scratch);
	}
	if (rc < 0)
		lu_medium_error(r, true, rc, lba);
	return rc;
}

/* Zeros that stay mapped: the store zeroes the range without writing it where it can. */
static int zero_blocks(struct scsi_req *r, uint64_t lba, uint64_t n)
{
	struct scsi_lu *lu = r->lu;
	int rc = store_zero(lu->st, lba << lu->block_shift, n << lu->block_shift);

	if (rc == -EOPNOTSUPP) {
		memset(r->t->scratch, 0, lu->block_size);
		return fill_blocks(r, lba, n, r->t->scratch);
	}
	if (rc < 0)
		lu_medium_error(r, true, rc, lba);
	return rc;
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
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = d + 8 + 16 * i;

		if (lu_deallocate(r, get_be64(e), get_be32(e + 8)) < 0)
			return;
	}
}

static void write_same(struct scsi_req *r, uint64_t lba, uint64_t n, bool unmap, bool ndob)
{
	struct scsi_lu *lu = r->lu;
	const uint8_t *block;
	int rc;

	if (unmap && !lu->thin) {
		req_bad_cdb(r, 1, 3);
		return;
	}
	if (lba >= lu->nblocks) {
		req_lba_oob(r);
		return;
	}
	/* WSNZ is 0: a zero count means "to the end of the medium". */
	if (n == 0)
		n = lu->nblocks - lba;
	if (!lu_range_ok(lu, lba, n)) {
		req_lba_oob(r);
		return;
	}
	if (lu_write_blocked(r))
		return;
	if (ndob) {
		memset(r->t->scratch, 0, lu->block_size);
		block = r->t->scratch;
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
	if (unmap)
		rc = lu_deallocate(r, lba, n);
	else if (all_zero(block, lu->block_size))
		rc = zero_blocks(r, lba, n);
	else
		rc = fill_blocks(r, lba, n, block);
	if (rc < 0)
		return;
	rc = lu_flush_if_needed(lu, false);
	if (rc < 0)
		lu_medium_error(r, true, rc, lba);
}

void scsi_write_same10(struct scsi_req *r)
{
	const uint8_t *c = r->cdb;

	write_same(r, get_be32(c + 2), get_be16(c + 7), c[1] & 0x08, false);
}

void scsi_write_same16(struct scsi_req *r)
{
	const uint8_t *c = r->cdb;

	write_same(r, get_be64(c + 2), get_be32(c + 10), c[1] & 0x08, c[1] & 0x01);
}

/*
 * SANITIZE (SBC-4 5.30), on thin LUs only: BLOCK ERASE deallocates every block, which with
 * LBPRZ leaves the medium reading as zeros (WABEREQ 01b: reads after it succeed). It runs to
 * completion before the status is returned, IMMED or not, so no sanitize is ever seen in
 * progress. If it fails part way the LU enters the sanitize failure state (medium access gets
 * MEDIUM ERROR / SANITIZE COMMAND FAILED) until a sanitize succeeds or EXIT FAILURE MODE.
 * OVERWRITE and CRYPTO ERASE are not offered.
 */
void scsi_sanitize(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	uint8_t sa = r->cdb[1] & 0x1f;
	uint16_t plen = get_be16(r->cdb + 7);
	int rc;

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
	if (lu_deallocate(r, 0, lu->nblocks) < 0) {
		lu->sanitize_failed = true;
		return;
	}
	rc = store_flush(lu->st);
	if (rc < 0) {
		lu->sanitize_failed = true;
		lu_medium_error(r, true, rc, 0);
		return;
	}
	lu->sanitize_failed = false;
}
