/*
 * EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): a copy manager for copies
 * between the logical units of this target. Copy targets are named by identification
 * descriptor target descriptors (type E4h) carrying a LU's NAA designator from VPD page 83h;
 * segments are block to block (type 02h). Like every other command, a copy runs to completion
 * before its status is returned, so no copy is ever seen in progress.
 */
#include <errno.h>
#include <string.h>

#include "scsi/scsi_int.h"

#define XC_HDR 16u

struct xc_target {
	struct scsi_lu *lu;     /* NULL: NUL descriptor, or no LU of ours has the designator */
};

struct xc_result {
	uint16_t segments;      /* segment descriptors processed completely */
	uint64_t bytes;         /* data moved */
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
	uint8_t id[16];

	/* Binary code set, LU association, NAA type, 16 bytes: what VPD page 83h reports. */
	if ((d[0] & 0x0f) != 0x01 || (d[1] & 0x3f) != 0x03 || d[3] != 16)
		return NULL;
	for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
		struct scsi_lu *lu = t->lu[i];

		if (!lu)
			continue;
		lu_naa_designator(lu, id);
		if (memcmp(id, d + 4, 16) == 0)
			return lu;
	}
	return NULL;
}

/*
 * Checks that the nexus may use a copy target the way a READ (16) or WRITE (16) would, as if
 * the command had been sent to it. Returns false after setting COPY ABORTED sense.
 */
static bool target_usable(struct scsi_req *r, struct scsi_lu *lu, bool write, unsigned byte)
{
	struct scsi_req sub = { .t = r->t, .cmd = r->cmd, .cdb = r->cdb, .lu = lu };

	sub.ln = lu_nexus_get(lu, r->cmd->nexus->id);
	sub.op = op_lookup(write ? 0x8a : 0x88, 0);
	if (lu != r->lu && lu_access_conflict(&sub)) {
		copy_aborted(r, 0x0d, 0x02, byte);          /* COPY TARGET DEVICE NOT REACHABLE */
		return false;
	}
	if (lu->stopped) {
		copy_aborted(r, 0x04, 0x02, byte);
		return false;
	}
	if (lu->sanitize_failed) {
		copy_aborted(r, 0x31, 0x03, byte);
		return false;
	}
	if (write && (lu->read_only || lu->swp)) {
		copy_aborted(r, 0x27, lu->read_only ? 0x00 : 0x02, byte);
		return false;
	}
	return true;
}

/* Moves len bytes; overlapping ranges of one LU are copied back to front when needed. */
static bool copy_range(struct scsi_req *r, struct scsi_lu *src, uint64_t soff, struct scsi_lu *dst, uint64_t doff,
		       uint64_t len, unsigned byte)
{
	uint8_t *buf = r->t->scratch2;
	uint64_t chunk = r->t->scratch_len;
	bool backwards = src->st == dst->st && doff > soff && doff < soff + len;
	uint64_t done = 0;
	int rc;

	while (done < len) {
		uint64_t n = len - done < chunk ? len - done : chunk;
		uint64_t at = backwards ? len - done - n : done;

		rc = store_read(src->st, buf, n, soff + at);
		if (rc < 0) {
			copy_aborted(r, 0x11, 0x00, byte);   /* UNRECOVERED READ ERROR */
			return false;
		}
		rc = store_write(dst->st, buf, n, doff + at);
		if (rc < 0) {
			copy_aborted(r, rc == -ENOSPC ? 0x27 : 0x0c, rc == -ENOSPC ? 0x07 : 0x00, byte);
			return false;
		}
		done += n;
	}
	return true;
}

/* Runs one block-to-block segment descriptor at parameter list offset off. */
static bool run_segment(struct scsi_req *r, const uint8_t *d, unsigned off, const struct xc_target *tg,
			size_t ntg, struct xc_result *res)
{
	uint16_t si = get_be16(d + 4), di = get_be16(d + 6);
	uint32_t nblk = get_be16(d + 10);
	uint64_t slba = get_be64(d + 12), dlba = get_be64(d + 20);
	struct scsi_lu *src, *dst;
	uint64_t bytes;

	if (si >= ntg || di >= ntg) {
		copy_aborted(r, 0x08, 0x04, off + (si >= ntg ? 4 : 6));   /* UNREACHABLE COPY TARGET */
		return false;
	}
	src = tg[si].lu;
	dst = tg[di].lu;
	if (!src || !dst) {
		copy_aborted(r, 0x0d, 0x02, off + (!src ? 4 : 6));        /* COPY TARGET DEVICE NOT REACHABLE */
		return false;
	}
	/* DC: the count is in destination blocks rather than source blocks. */
	bytes = (uint64_t)nblk << ((d[1] & 0x02) ? dst->block_shift : src->block_shift);
	if ((bytes & (src->block_size - 1)) || (bytes & (dst->block_size - 1))) {
		copy_aborted(r, 0x26, 0x0a, off + 10);                   /* UNEXPECTED INEXACT SEGMENT */
		return false;
	}
	if (!lu_range_ok(src, slba, bytes >> src->block_shift)) {
		copy_aborted(r, 0x00, 0x00, off + 12);
		return false;
	}
	if (!lu_range_ok(dst, dlba, bytes >> dst->block_shift)) {
		copy_aborted(r, 0x00, 0x00, off + 20);
		return false;
	}
	if (!target_usable(r, src, false, off + 4) || !target_usable(r, dst, true, off + 6))
		return false;
	if (bytes && !copy_range(r, src, slba << src->block_shift, dst, dlba << dst->block_shift, bytes, off))
		return false;
	if (lu_flush_if_needed(dst, false) < 0) {
		copy_aborted(r, 0x0c, 0x00, off + 6);
		return false;
	}
	res->segments++;
	res->bytes += bytes;
	return true;
}

static void hold_result(struct scsi_req *r, uint8_t list_id, bool good, const struct xc_result *res)
{
	struct scsi_lu *lu = r->lu;
	struct xcopy_held *h = NULL;

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
	struct xc_target tg[XCOPY_MAX_TGT_DESC];
	struct xc_result res = { 0 };
	uint32_t tdl, sdl, idl, off, end;
	size_t ntg = 0, nseg = 0;
	uint8_t list_id, usage;
	bool good;

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
	if ((uint64_t)tdl + sdl > XCOPY_MAX_DESC_LIST_LEN || idl > 0 ||
	    (uint64_t)XC_HDR + tdl + sdl + idl > plen) {
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
		tg[i].lu = (d[1] & 0x20) ? NULL : find_lu(r->t, d + 4);
		if (tg[i].lu && get_be24(d + 29) != tg[i].lu->block_size) {
			req_bad_param(r, at + 29, -1);      /* DISK BLOCK LENGTH must be the LU's */
			return;
		}
	}

	/* Segment descriptors: walk, count, check types, all before copying anything. */
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
		if (p[off] != 0x02) {
			req_sense(r, SK_ILLEGAL_REQUEST, 0x26, 0x09);   /* UNSUPPORTED SEGMENT DESCRIPTOR TYPE */
			return;
		}
		if (get_be16(p + off + 2) != XCOPY_B2B_SEG_LEN - 4) {
			req_bad_param(r, off + 2, -1);
			return;
		}
	}

	good = true;
	for (off = XC_HDR + tdl; off < end && good; off += XCOPY_B2B_SEG_LEN)
		good = run_segment(r, p + off, off, tg, ntg, &res);
	if (usage == 0x00)
		hold_result(r, list_id, good, &res);
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
		put_be32(b + 20, 0);                            /* no inline data */
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
