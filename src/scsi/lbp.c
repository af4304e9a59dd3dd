/*
 * Logical block provisioning: UNMAP and WRITE SAME (SBC-3 5.28, 5.41-5.43). We advertise
 * LBPRZ, so an unmapped block must read back as zeros: when the store cannot deallocate a
 * range we write the zeros ourselves.
 */
#include <errno.h>
#include <string.h>

#include "scsi/scsi_int.h"

#define MAX_UNMAP_BLOCKS (1u << 20)
#define MAX_UNMAP_DESCRIPTORS 256u

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
static int deallocate(struct scsi_req *r, uint64_t lba, uint64_t n)
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

		if (deallocate(r, get_be64(e), get_be32(e + 8)) < 0)
			return;
	}
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			return false;
	}
	return true;
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
	/* Unmapping is allowed only when the result reads the same as the data sent (LBPRZ). */
	if (unmap && all_zero(block, lu->block_size))
		rc = deallocate(r, lba, n);
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
