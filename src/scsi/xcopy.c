/*
 * EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): a copy manager for copies
 * between the logical units of this target. Copy targets are named by identification
 * descriptor target descriptors (type E4h) carrying a LU's NAA designator from VPD page 83h;
 * segments are block to block (type 02h). The whole parameter list is checked before anything is
 * copied; the segments then run one after the other, each in steps on workers (longop.c), and
 * the status comes when the last is done: no copy is ever seen in progress.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_int.h"
#include "util/sbuf.h"

#define XC_HDR 16u

struct xc_result {
	uint16_t segments;      /* segment descriptors processed completely */
	uint64_t bytes;         /* data moved */
};

/* The copy in progress: the parameter list (the command's data-out buffer) and where it is. */
struct xc_op {
	struct longop op;
	const uint8_t *p;       /* parameter list */
	unsigned tdl;           /* target descriptor list length */
	unsigned seg, seg_end;  /* offsets of the current segment descriptor and of the list's end */
	size_t ntg;
	uint8_t list_id, usage;
	struct xc_result res;
	/* The current segment, while its steps run: stores held (longop_hold) until it ends. */
	struct store *src, *dst;
	uint64_t soff, doff, len, done;
	bool backwards, read_failed, flush;
};

/*
 * COPY ABORTED; the sense-key specific field is a segment pointer (SPC-4 4.5.2.4.5) to the
 * byte of the parameter list that the failure is about.
 */
static void copy_aborted(struct scsi_req *r, uint8_t asc, uint8_t ascq, unsigned byte)
{
	uint8_t sks[3] = { 0x80, (uint8_t)(byte >> 8), (uint8_t)byte };

	req_sense_sks(r, SK_COPY_ABORTED, asc, ascq, sks);
}

/* Size of a target descriptor by type code (SPC-4 6.4.5), 0 for codes SPC-4 does not define. */
static unsigned tgt_desc_len(uint8_t type)
{
	if (type >= 0xe0 && type <= 0xe9)
		return 32;
	if (type == 0xea || type == 0xeb)
		return 64;
	return 0;
}

/* The LU of this target whose NAA designator the designation descriptor at d names. */
static struct scsi_lu *find_lu(struct scsi_target *t, const uint8_t *d)
{
	/* Binary code set, LU association, NAA type, 16 bytes: what VPD page 83h reports. */
	if ((d[0] & 0x0f) != 0x01 || (d[1] & 0x3f) != 0x03 || d[3] != 16)
		return NULL;
	for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
		struct scsi_lu *lu = t->lu[i];

		if (lu && memcmp(lu->naa_desig, d + 4, 16) == 0)
			return lu;
	}
	return NULL;
}

/* The copy target of target descriptor i: NULL for a NUL descriptor or a LU we do not have. */
static struct scsi_lu *target_lu(struct scsi_target *t, const uint8_t *p, size_t i)
{
	const uint8_t *d = p + XC_HDR + 32 * i;

	return (d[1] & 0x20) ? NULL : find_lu(t, d + 4);
}

/*
 * Checks that the nexus may use a copy target the way a READ (16) or WRITE (16) would, as if
 * the command had been sent to it. Returns false after setting COPY ABORTED sense.
 */
static bool target_usable(struct scsi_req *r, struct scsi_lu *lu, bool write, unsigned byte)
{
	struct scsi_req sub = { .t = r->t, .ctx = r->ctx, .cmd = r->cmd, .cdb = r->cdb, .lu = lu };

	sub.ln = lu_nexus_get(r->ctx, lu, r->cmd->nexus);
	sub.op = op_lookup(write ? 0x8a : 0x88, 0);
	if (lu != r->lu && lu_gate(lu) & (LU_GATE_PR | LU_GATE_RSV)) {
		/*
		 * Another LU's reservations, while this one's lock is held: a copy the other way
		 * round could hold that one's and wait for this one, so only if it is free at once.
		 */
		bool conflict = true;
		if (pthread_mutex_trylock(&lu->lock) == 0) {
			conflict = lu_access_conflict(&sub);
			lu_unlock(lu);
		}
		if (conflict) {
			copy_aborted(r, 0x0d, 0x02, byte);  /* COPY TARGET DEVICE NOT REACHABLE */
			return false;
		}
	}
	unsigned gate = lu_gate(lu);
	if (gate & LU_GATE_STOPPED) {
		copy_aborted(r, 0x04, 0x02, byte);
		return false;
	}
	if (lu->st->ops->submit) {
		/* Copies run the synchronous store ops on workers, which a network store has not. */
		copy_aborted(r, 0x0d, 0x02, byte);          /* COPY TARGET DEVICE NOT REACHABLE */
		return false;
	}
	if (gate & (LU_GATE_SANITIZE_FAILED | LU_GATE_SANITIZING)) {
		bool sanitizing = gate & LU_GATE_SANITIZING;
		copy_aborted(r, sanitizing ? 0x04 : 0x31, sanitizing ? 0x1b : 0x03, byte);
		return false;
	}
	if (write && (lu->read_only || lu->swp)) {
		copy_aborted(r, 0x27, lu->read_only ? 0x00 : 0x02, byte);
		return false;
	}
	return true;
}

/* One step of a segment: up to LONGOP_STEP_BYTES; overlapping ranges of one store back to front. */
static int copy_step(struct longop *op)
{
	struct xc_op *x = (struct xc_op *)op;
	uint64_t budget = LONGOP_STEP_BYTES;

	while (x->done < x->len && budget > 0 && longop_step_more(op)) {
		uint64_t n = x->len - x->done < LONGOP_BUF ? x->len - x->done : LONGOP_BUF;
		uint64_t at = x->backwards ? x->len - x->done - n : x->done;
		int rc = store_read(x->src, op->buf, n, x->soff + at);

		if (rc < 0) {
			x->read_failed = true;
			return rc;
		}
		rc = store_write(x->dst, op->buf, n, x->doff + at);
		if (rc < 0)
			return rc;
		x->done += n;
		budget -= n;
	}
	return 0;
}

static int copy_flush_step(struct longop *op) { return store_flush(((struct xc_op *)op)->dst); }

static void run_segments(struct xc_op *x);

/* The current segment's stores are given back; true if both still had their LUs. */
static bool segment_release(struct xc_op *x)
{
	bool gone = x->src->closing || x->dst->closing;

	longop_release(x->src);
	longop_release(x->dst);
	x->src = x->dst = NULL;
	return !gone;
}

static void finish(struct xc_op *x, bool good);

static void xc_cleanup(struct longop *op)
{
	struct xc_op *x = (struct xc_op *)op;

	if (x->src)
		segment_release(x);
}

static void segment_flushed(struct longop *op, int rc)
{
	struct xc_op *x = (struct xc_op *)op;
	struct scsi_req r;

	longop_req(op, &r);
	if (!segment_release(x)) {
		copy_aborted(&r, 0x0d, 0x02, x->seg + 6);   /* the LU went during the copy */
		finish(x, false);
		return;
	}
	if (rc < 0) {
		if (rc != -ECANCELED)
			copy_aborted(&r, 0x0c, 0x00, x->seg + 6);
		finish(x, false);
		return;
	}
	x->res.segments++;
	x->res.bytes += x->len;
	x->seg += XCOPY_B2B_SEG_LEN;
	run_segments(x);
}

static void copy_next(struct longop *op, int rc)
{
	struct xc_op *x = (struct xc_op *)op;
	struct scsi_req r;

	longop_req(op, &r);
	if (rc == 0 && (x->src->closing || x->dst->closing))
		rc = -ENODEV;
	if (rc < 0) {
		if (rc == -ENODEV)
			copy_aborted(&r, 0x0d, 0x02, x->seg + (x->src->closing ? 4 : 6));
		else if (rc != -ECANCELED && x->read_failed)
			copy_aborted(&r, 0x11, 0x00, x->seg);   /* UNRECOVERED READ ERROR */
		else if (rc != -ECANCELED)
			copy_aborted(&r, rc == -ENOSPC ? 0x27 : 0x0c, rc == -ENOSPC ? 0x07 : 0x00, x->seg);
		segment_release(x);
		finish(x, false);
		return;
	}
	if (x->done < x->len) {
		longop_then(op, copy_step, copy_next);
		return;
	}
	if (x->flush) {
		longop_then(op, copy_flush_step, segment_flushed);
		return;
	}
	segment_flushed(op, 0);
}

/* Starts the segment descriptor at x->seg (loop thread); false after setting sense. */
static bool segment_start(struct xc_op *x)
{
	const uint8_t *d = x->p + x->seg;
	unsigned off = x->seg;
	uint16_t si = get_be16(d + 4), di = get_be16(d + 6);
	uint32_t nblk = get_be16(d + 10);
	uint64_t slba = get_be64(d + 12), dlba = get_be64(d + 20);
	struct scsi_lu *src, *dst;
	struct scsi_req r;
	uint64_t bytes;

	longop_req(&x->op, &r);
	if (si >= x->ntg || di >= x->ntg) {
		copy_aborted(&r, 0x08, 0x04, off + (si >= x->ntg ? 4 : 6));   /* UNREACHABLE COPY TARGET */
		return false;
	}
	/* Looked up again for each segment: LUs may come and go while a copy runs. */
	src = target_lu(r.t, x->p, si);
	dst = target_lu(r.t, x->p, di);
	if (!src || !dst) {
		copy_aborted(&r, 0x0d, 0x02, off + (!src ? 4 : 6));        /* COPY TARGET DEVICE NOT REACHABLE */
		return false;
	}
	/* DC: the count is in destination blocks rather than source blocks. */
	bytes = (uint64_t)nblk << ((d[1] & 0x02) ? dst->block_shift : src->block_shift);
	if ((bytes & (src->block_size - 1)) || (bytes & (dst->block_size - 1))) {
		copy_aborted(&r, 0x26, 0x0a, off + 10);                   /* UNEXPECTED INEXACT SEGMENT */
		return false;
	}
	if (bytes > XCOPY_MAX_SEG_BYTES) {
		req_bad_param(&r, off + 10, -1);  /* checked before copying; a LU changed block size since */
		return false;
	}
	if (!lu_range_ok(src, slba, bytes >> src->block_shift)) {
		copy_aborted(&r, 0x00, 0x00, off + 12);
		return false;
	}
	if (!lu_range_ok(dst, dlba, bytes >> dst->block_shift)) {
		copy_aborted(&r, 0x00, 0x00, off + 20);
		return false;
	}
	if (!target_usable(&r, src, false, off + 4) || !target_usable(&r, dst, true, off + 6))
		return false;
	x->src = src->st;
	x->dst = dst->st;
	longop_hold(x->src);
	longop_hold(x->dst);
	x->soff = slba << src->block_shift;
	x->doff = dlba << dst->block_shift;
	x->len = bytes;
	x->done = 0;
	x->read_failed = false;
	x->backwards = x->src == x->dst && x->doff > x->soff && x->doff < x->soff + bytes;
	x->flush = !dst->wce;
	if (bytes)
		longop_then(&x->op, copy_step, copy_next);
	else
		copy_next(&x->op, 0);
	return true;
}

static void hold_result(struct scsi_req *r, uint8_t list_id, bool good, const struct xc_result *res);

static void finish(struct xc_op *x, bool good)
{
	struct scsi_req r;

	longop_req(&x->op, &r);
	if (x->usage == 0x00)
		hold_result(&r, x->list_id, good, &x->res);
	longop_end(&x->op);
}

static void run_segments(struct xc_op *x)
{
	if (x->seg >= x->seg_end) {
		finish(x, true);
		return;
	}
	if (!segment_start(x))
		finish(x, false);
}

static void hold_result(struct scsi_req *r, uint8_t list_id, bool good, const struct xc_result *res)
{
	struct scsi_lu *lu = r->lu;
	struct xcopy_held *h = NULL;

	lu_lock(lu);
	for (size_t i = 0; i < lu->nheld; i++) {
		if (lu->held[i].nexus_id == r->cmd->nexus->id && lu->held[i].list_id == list_id)
			h = &lu->held[i];
	}
	if (!h) {
		if (lu->nheld == XCOPY_HELD_MAX) {
			/* Forget the oldest. */
			memmove(&lu->held[0], &lu->held[1], (XCOPY_HELD_MAX - 1) * sizeof(lu->held[0]));
			lu->nheld--;
		}
		h = &lu->held[lu->nheld++];
	}
	h->nexus_id = r->cmd->nexus->id;
	h->list_id = list_id;
	h->status = good ? 0x00 : 0x01;     /* completed without / with errors */
	h->segments = res->segments;
	h->bytes = res->bytes;
	lu_unlock(lu);
}

void xcopy_nexus_lost(struct scsi_lu *lu, uint64_t nexus_id)
{
	size_t j = 0;

	for (size_t i = 0; i < lu->nheld; i++) {
		if (lu->held[i].nexus_id != nexus_id)
			lu->held[j++] = lu->held[i];
	}
	lu->nheld = j;
}

void scsi_extended_copy(struct scsi_req *r)
{
	const uint8_t *p = r->cmd->out;
	uint32_t plen = get_be32(r->cdb + 10);
	uint32_t tdl, sdl, idl, off, end;
	size_t ntg = 0, nseg = 0;
	uint8_t list_id, usage;

	r->cmd->xfer_len = plen;
	/* An empty parameter list is not an error: there is nothing to copy (SPC-4 6.4.1). */
	if (plen == 0)
		return;
	if (plen < XC_HDR || r->cmd->out_len < plen) {
		req_param_len_error(r);
		return;
	}
	list_id = p[0];
	usage = (p[1] >> 3) & 0x03;
	tdl = get_be16(p + 2);
	sdl = get_be32(p + 8);
	idl = get_be32(p + 12);
	if (usage == 0x01) {
		req_bad_param(r, 1, 4);             /* LIST ID USAGE 01b is reserved */
		return;
	}
	if (usage == 0x03 && list_id) {
		req_bad_param(r, 0, -1);            /* "no list identifier" wants it zero */
		return;
	}
	if (idl > XCOPY_MAX_INLINE) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x0b);   /* INLINE DATA LENGTH EXCEEDED */
		return;
	}
	if ((uint64_t)tdl + sdl > XCOPY_MAX_DESC_LIST_LEN || (uint64_t)XC_HDR + tdl + sdl + idl > plen) {
		req_param_len_error(r);
		return;
	}

	/* Target descriptors: count first, then the types, then each one's fields. */
	for (off = XC_HDR, end = XC_HDR + tdl; off < end; ntg++) {
		unsigned len = tgt_desc_len(p[off]);
		off += len ? len : 32;
	}
	if (off != XC_HDR + tdl) {
		req_param_len_error(r);
		return;
	}
	if (ntg > XCOPY_MAX_TGT_DESC) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x06);   /* TOO MANY TARGET DESCRIPTORS */
		return;
	}
	for (size_t i = 0; i < ntg; i++) {
		const uint8_t *d = p + XC_HDR + 32 * i;
		unsigned at = XC_HDR + 32 * (unsigned)i;
		struct scsi_lu *lu;

		if (d[0] != 0xe4) {
			req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x07);   /* UNSUPPORTED TARGET DESCRIPTOR TYPE */
			return;
		}
		/*
		 * LU ID TYPE (byte 1 bits 7:6) qualifies the LU IDENTIFIER field of the other CSCD
		 * descriptor formats; an identification descriptor has none, so it is ignored.
		 */
		if (d[1] & 0x1f) {
			req_bad_param(r, at + 1, 4);        /* peripheral device type: block devices only */
			return;
		}
		if (d[7] > 16) {
			req_bad_param(r, at + 7, -1);       /* designator longer than the descriptor holds */
			return;
		}
		lu = target_lu(r->t, p, i);
		if (lu && get_be24(d + 29) != lu->block_size) {
			req_bad_param(r, at + 29, -1);      /* DISK BLOCK LENGTH must be the LU's */
			return;
		}
	}

	/* Segment descriptors: walk, count, check types and sizes, all before copying anything. */
	for (off = XC_HDR + tdl, end = XC_HDR + tdl + sdl; off < end; nseg++) {
		if (end - off < 4 || end - off < 4u + get_be16(p + off + 2)) {
			req_param_len_error(r);
			return;
		}
		off += 4u + get_be16(p + off + 2);
	}
	if (nseg > XCOPY_MAX_SEG_DESC) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x08);   /* TOO MANY SEGMENT DESCRIPTORS */
		return;
	}
	for (off = XC_HDR + tdl; off < end; off += 4u + get_be16(p + off + 2)) {
		const uint8_t *d = p + off;
		uint16_t si = get_be16(d + 4), di = get_be16(d + 6);
		struct scsi_lu *src, *dst;

		if (d[0] != 0x02) {
			req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x09);   /* UNSUPPORTED SEGMENT DESCRIPTOR TYPE */
			return;
		}
		if (get_be16(d + 2) != XCOPY_B2B_SEG_LEN - 4) {
			req_bad_param(r, off + 2, -1);
			return;
		}
		/* MAXIMUM SEGMENT LENGTH (VPD 8Fh, RECEIVE COPY RESULTS), where the block size is known. */
		src = si < ntg ? target_lu(r->t, p, si) : NULL;
		dst = di < ntg ? target_lu(r->t, p, di) : NULL;
		if (src && dst &&
		    ((uint64_t)get_be16(d + 10) << ((d[1] & 0x02) ? dst->block_shift : src->block_shift)) >
			    XCOPY_MAX_SEG_BYTES) {
			req_bad_param(r, off + 10, -1);
			return;
		}
	}

	struct xc_op *x = longop_new(r, sizeof(*x));
	x->op.cleanup = xc_cleanup;
	x->p = p;
	x->tdl = tdl;
	x->ntg = ntg;
	x->seg = XC_HDR + tdl;
	x->seg_end = end;
	x->list_id = list_id;
	x->usage = usage;
	run_segments(x);
}

/* RECEIVE COPY RESULTS: COPY STATUS (00h) and OPERATING PARAMETERS (03h). */
void scsi_receive_copy_results(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	const uint8_t *c = r->cdb;
	uint32_t alloc = get_be32(c + 10);
	uint8_t b[64];

	memset(b, 0, sizeof(b));
	if ((c[1] & 0x1f) == 0x03) {
		put_be32(b, 46 - 4);
		b[4] = 0x00;                                    /* SNLID 0: LID1 only */
		put_be16(b + 8, XCOPY_MAX_TGT_DESC);
		put_be16(b + 10, XCOPY_MAX_SEG_DESC);
		put_be32(b + 12, XCOPY_MAX_DESC_LIST_LEN);
		put_be32(b + 16, XCOPY_MAX_SEG_BYTES);
		put_be32(b + 20, XCOPY_MAX_INLINE);
		put_be32(b + 24, 0);                            /* no held data (RECEIVE DATA) */
		put_be32(b + 28, 0);                            /* no stream devices */
		put_be16(b + 34, 1);                            /* one copy at a time */
		b[36] = 1;
		b[37] = lu->block_shift;                        /* data segment granularity, log2 */
		b[43] = 2;
		b[44] = 0x02;                                   /* block to block segments */
		b[45] = 0xe4;                                   /* identification target descriptors */
		req_data_in(r, b, 46, alloc);
		return;
	}
	for (size_t i = 0; i < lu->nheld; i++) {
		const struct xcopy_held *h = &lu->held[i];
		uint64_t count = h->bytes;
		uint8_t units = 0;

		if (h->nexus_id != r->cmd->nexus->id || h->list_id != c[2])
			continue;
		/* Bytes, or coarser binary units (KiB, MiB, ...) when that does not fit. */
		while (count > 0xffffffffu) {
			count >>= 10;
			units++;
		}
		put_be32(b, 8);
		b[4] = h->status;
		put_be16(b + 5, h->segments);
		b[7] = units;
		put_be32(b + 8, (uint32_t)count);
		req_data_in(r, b, 12, alloc);
		return;
	}
	/* No copy with this list identifier from this nexus is known. */
	req_bad_cdb(r, 2, -1);
}
