/* READ CAPACITY (10/16) and GET LBA STATUS (SBC-3 5.15, 5.16, 5.17). */
#include <errno.h>
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

/* What one allocation query needs of its LU, copied: a worker may answer it after the LU went. */
struct gls_range {
	struct store *st;
	unsigned shift;
	uint32_t block_size;
	uint64_t nblocks;
};

/*
 * Turns the store's byte extents into block runs. A block that is only partly allocated
 * counts as mapped: it holds data that a read would return.
 */
static int block_status(const struct gls_range *g, uint64_t lba, bool *mapped, uint64_t *nblk)
{
	uint64_t off = lba << g->shift, run;
	int rc = store_extent(g->st, off, mapped, &run);

	if (rc < 0)
		return rc;
	if (*mapped) {
		*nblk = (run + g->block_size - 1) >> g->shift;
	} else {
		*nblk = run >> g->shift;
		if (*nblk == 0) {
			*mapped = true;
			*nblk = 1;
		}
	}
	if (*nblk > g->nblocks - lba)
		*nblk = g->nblocks - lba;
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

/* How far the parameter data has come: it may be built in several steps (gls_step). */
struct gls_cursor {
	uint64_t lba;         /* the next block to ask about */
	size_t n;             /* bytes of b filled, header included */
	unsigned queries;
	bool full;            /* max_desc descriptors and the next status differs */
};

/*
 * Appends to the parameter data in b (8 + 16 * max_desc bytes) from c->lba on, while op (NULL:
 * no bound) lets the step go on; returns 0, or a negative errno with *fail_lba where the store
 * failed.
 */
static int gls_fill(const struct gls_range *g, struct gls_cursor *c, size_t max_desc, uint8_t *b, uint64_t *fail_lba,
		    const struct longop *op)
{
	if (c->n == 0) {
		memset(b, 0, 8);
		c->n = 8;
	}
	while (c->queries < GLS_MAX_QUERIES && c->lba < g->nblocks && !c->full && (!op || longop_step_more(op))) {
		bool mapped;
		uint64_t nblk;
		int rc = block_status(g, c->lba, &mapped, &nblk);

		c->queries++;
		if (rc < 0) {
			*fail_lba = c->lba;
			return rc;
		}
		size_t n = c->n;
		/* Merge with the previous descriptor when the store split one status in two. */
		if (n > 8 && (b[n - 4] == (mapped ? 0 : 1)) && get_be32(b + n - 8) + nblk <= 0xffffffffu) {
			put_be32(b + n - 8, (uint32_t)(get_be32(b + n - 8) + nblk));
		} else {
			if (n >= 8 + 16 * max_desc) {
				c->full = true;
				break;
			}
			if (nblk > 0xffffffffu)
				nblk = 0xffffffffu;
			memset(b + n, 0, 16);
			put_be64(b + n, c->lba);
			put_be32(b + n + 8, (uint32_t)nblk);
			b[n + 12] = mapped ? 0 : 1;
			c->n = n + 16;
		}
		c->lba += nblk;
	}
	put_be32(b, (uint32_t)(c->n - 4));
	return 0;
}

static bool gls_complete(const struct gls_range *g, const struct gls_cursor *c)
{
	return c->full || c->queries >= GLS_MAX_QUERIES || c->lba >= g->nblocks;
}

/*
 * A store that asks a cluster for allocation status (RBD) blocks while it does: the queries
 * run as a long operation on a worker, in steps of LONGOP_STEP_MS like the other long
 * operations, and the loop serves everything else meanwhile.
 */
struct gls_op {
	struct longop op;
	struct gls_range g;
	struct gls_cursor c;
	uint64_t fail_lba;
	size_t max_desc;
	uint32_t alloc;
};

static int gls_step(struct longop *op)
{
	struct gls_op *q = (struct gls_op *)op;

	return gls_fill(&q->g, &q->c, q->max_desc, op->buf, &q->fail_lba, op);
}

static void gls_answer(struct longop *op, int rc)
{
	struct gls_op *q = (struct gls_op *)op;
	struct scsi_req r;

	longop_req(op, &r);
	if (rc < 0) {
		if (rc != -ECANCELED)
			lu_medium_error(&r, false, rc, q->fail_lba);
	} else if (!gls_complete(&q->g, &q->c)) {
		longop_then(op, gls_step, gls_answer);
		return;
	} else {
		req_data_in(&r, op->buf, (uint32_t)q->c.n, q->alloc);
	}
	longop_end(op);
}

void scsi_get_lba_status(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	uint64_t lba = get_be64(r->cdb + 2), fail_lba = 0;
	uint32_t alloc = get_be32(r->cdb + 10);
	struct gls_range g = {lu->st, lu->block_shift, lu->block_size, lu->nblocks};
	size_t max_desc;

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
	if (lu->st->ops->submit && r->ctx->offload) {
		struct gls_op *q = longop_new(r, sizeof(*q));

		q->g = g;
		q->c.lba = lba;
		q->max_desc = max_desc;
		q->alloc = alloc;
		longop_then(&q->op, gls_step, gls_answer);
		return;
	}
	struct gls_cursor c = {.lba = lba};
	int rc = gls_fill(&g, &c, max_desc, r->ctx->scratch, &fail_lba, NULL);
	if (rc < 0) {
		lu_medium_error(r, false, rc, fail_lba);
		return;
	}
	req_data_in(r, r->ctx->scratch, (uint32_t)c.n, alloc);
}
