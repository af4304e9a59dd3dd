/* REPORT SUPPORTED OPERATION CODES (SPC-4 6.35), straight from the dispatch table. */
#include <string.h>

#include "scsi/scsi_int.h"

static bool has_sa(uint8_t opcode, const struct scsi_lu *lu)
{
	for (size_t i = 0; i < scsi_nopdefs; i++) {
		if (scsi_opdefs[i].opcode == opcode && op_supported(&scsi_opdefs[i], lu))
			return scsi_opdefs[i].flags & OPF_SA;
	}
	return false;
}

static size_t timeouts(const struct scsi_opdef *op, uint8_t *p)
{
	memset(p, 0, 12);
	put_be16(p, 0x0a);
	put_be32(p + 4, op->timeout);
	put_be32(p + 8, op->timeout);
	return 12;
}

static void report_all(struct scsi_req *r, bool rctd, uint32_t alloc)
{
	struct din d;
	uint8_t hdr[4] = { 0 };

	din_start(&d, r, alloc);
	din_put(&d, hdr, 4);
	for (size_t i = 0; i < scsi_nopdefs; i++) {
		const struct scsi_opdef *op = &scsi_opdefs[i];
		uint8_t e[8 + 12];
		size_t n = 8;

		if (!op_supported(op, r->lu))
			continue;
		memset(e, 0, 8);
		e[0] = op->opcode;
		if (op->flags & OPF_SA) {
			put_be16(e + 2, op->sa);
			e[5] |= 0x01;   /* SERVACTV */
		}
		if (rctd)
			e[5] |= 0x02;   /* CTDP */
		put_be16(e + 6, op->cdb_len);
		if (rctd)
			n += timeouts(op, e + 8);
		din_put(&d, e, n);
	}
	din_put_be32_at(&d, 0, (uint32_t)(d.len - 4));
	din_finish(r, &d, alloc);
}

void scsi_report_supported_opcodes(struct scsi_req *r)
{
	const uint8_t *c = r->cdb;
	bool rctd = c[2] & 0x80;
	uint8_t options = c[2] & 0x07;
	uint8_t opcode = c[3];
	uint16_t sa = get_be16(c + 4);
	uint32_t alloc = get_be32(c + 6);
	const struct scsi_opdef *found = NULL;
	uint8_t *b = r->t->scratch;
	size_t n;

	switch (options) {
	case 0:
		report_all(r, rctd, alloc);
		return;
	case 1: /* opcode only: meaningless for commands that have service actions */
		if (has_sa(opcode, r->lu)) {
			req_bad_cdb(r, 2, 2);
			return;
		}
		break;
	case 2: /* opcode and service action: meaningless for commands without */
		if (!has_sa(opcode, r->lu)) {
			req_bad_cdb(r, 2, 1);
			return;
		}
		break;
	case 3:
		break;
	default:
		req_bad_cdb(r, 2, 2);
		return;
	}
	for (size_t i = 0; i < scsi_nopdefs; i++) {
		const struct scsi_opdef *op = &scsi_opdefs[i];

		if (op->opcode == opcode && (!(op->flags & OPF_SA) || op->sa == sa) && op_supported(op, r->lu)) {
			found = op;
			break;
		}
	}
	memset(b, 0, 4);
	if (!found) {
		b[1] = 0x01;    /* SUPPORT: not supported */
		req_data_in(r, b, 4, alloc);
		return;
	}
	b[1] = 0x03 | (rctd ? 0x80 : 0);
	put_be16(b + 2, found->cdb_len);
	memcpy(b + 4, found->usage, found->cdb_len);
	/* The table leaves the CONTROL byte out of usage; NACA is not supported, so it is 0. */
	n = 4 + found->cdb_len;
	if (rctd)
		n += timeouts(found, b + n);
	req_data_in(r, b, (uint32_t)n, alloc);
}
