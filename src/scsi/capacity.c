/* READ CAPACITY (10/16) and GET LBA STATUS (SBC-3 5.15, 5.16, 5.17). */
#include <string.h>

#include "scsi/scsi_int.h"

void scsi_read_capacity10(struct scsi_req *r)
{
	const struct scsi_lu *lu = r->lu;
	uint8_t b[8];
	uint64_t last = lu->nblocks - 1;

	/* Without PMI the LBA field must be zero (SBC-3 5.15.1). */
	if (!(r->cdb[8] & 0x01) && get_be32(r->cdb + 2)) {
		req_bad_cdb(r, 2, -1);
		return;
	}
	put_be32(b, last > 0xfffffffeu ? 0xffffffffu : (uint32_t)last);
	put_be32(b + 4, lu->block_size);
	req_data_in(r, b, sizeof(b), sizeof(b));
}

void scsi_read_capacity16(struct scsi_req *r)
{
	const struct scsi_lu *lu = r->lu;
	uint8_t b[32];

	memset(b, 0, sizeof(b));
	put_be64(b, lu->nblocks - 1);
	put_be32(b + 8, lu->block_size);
	b[13] = lu->pb_exp & 0x0f;     /* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT; lowest aligned LBA 0 */
	if (lu->thin)
		b[14] = 0x80 | 0x40;   /* LBPME, LBPRZ */
	req_data_in(r, b, sizeof(b), get_be32(r->cdb + 10));
}

/*
 * Turns the store's byte extents into block runs. A block that is only partly allocated
 * counts as mapped: it holds data that a read would return.
 */
static int block_status(struct scsi_lu *lu, uint64_t lba, bool *mapped, uint64_t *nblk)
{
	uint64_t off = lba << lu->block_shift, run;
	int rc = store_extent(lu->st, off, mapped, &run);

	if (rc < 0)
		return rc;
	if (*mapped) {
		*nblk = (run + lu->block_size - 1) >> lu->block_shift;
	} else {
		*nblk = run >> lu->block_shift;
		if (*nblk == 0) {
			*mapped = true;
			*nblk = 1;
		}
	}
	if (*nblk > lu->nblocks - lba)
		*nblk = lu->nblocks - lba;
	return 0;
}

/*
 * Descriptors one GET LBA STATUS returns at most, and extent queries it makes at most (adjacent
 * runs of one status are merged): the work stays bounded whatever the ALLOCATION LENGTH and
 * however fragmented the store. SBC-3 lets the device return fewer descriptors than fit; the
 * initiator asks again from where the answer ended.
 */
#define GLS_MAX_DESC 1024u
#define GLS_MAX_QUERIES 4096u

void scsi_get_lba_status(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	uint64_t lba = get_be64(r->cdb + 2);
	uint32_t alloc = get_be32(r->cdb + 10);
	uint8_t *b = r->t->scratch;
	size_t max_desc, n = 8;
	int rc;

	if (lba >= lu->nblocks) {
		req_lba_oob(r);
		return;
	}
	/* Only as many descriptors as the initiator can take, but always the first one. */
	max_desc = alloc > 8 ? (alloc - 8) / 16 : 0;
	if (max_desc == 0)
		max_desc = 1;
	if (max_desc > GLS_MAX_DESC)
		max_desc = GLS_MAX_DESC;
	memset(b, 0, 8);
	for (unsigned queries = 0; queries < GLS_MAX_QUERIES && lba < lu->nblocks; queries++) {
		bool mapped;
		uint64_t nblk;

		rc = block_status(lu, lba, &mapped, &nblk);
		if (rc < 0) {
			lu_medium_error(r, false, rc, lba);
			return;
		}
		/* Merge with the previous descriptor when the store split one status in two. */
		if (n > 8 && (b[n - 4] == (mapped ? 0 : 1)) && get_be32(b + n - 8) + nblk <= 0xffffffffu) {
			put_be32(b + n - 8, (uint32_t)(get_be32(b + n - 8) + nblk));
		} else {
			if (n >= 8 + 16 * max_desc)
				break;
			if (nblk > 0xffffffffu)
				nblk = 0xffffffffu;
			memset(b + n, 0, 16);
			put_be64(b + n, lba);
			put_be32(b + n + 8, (uint32_t)nblk);
			b[n + 12] = mapped ? 0 : 1;
			n += 16;
		}
		lba += nblk;
	}
	put_be32(b, (uint32_t)(n - 4));
	req_data_in(r, b, (uint32_t)n, alloc);
}
