/* INQUIRY (SPC-4 6.6): standard data and the vital product data pages of a thin-capable disk. */
#include <stdio.h>
#include <string.h>

#include "scsi/scsi_int.h"

#define NAA_COMPANY_ID 0xacde48u   /* IEEE "private" company ID, for locally assigned names */

/*
 * Whether EXTENDED COPY can use the LU: copies run the synchronous store ops on workers, which a
 * network store (RBD) has not (xcopy.c refuses them there), so neither 3PC nor the Third-party
 * Copy page is offered for it.
 */
static bool lu_copies(const struct scsi_lu *lu) { return lu && !lu->st->ops->submit; }

static void pad_ascii(uint8_t *dst, const char *s, size_t width)
{
	size_t n = strlen(s);

	memset(dst, ' ', width);
	memcpy(dst, s, n < width ? n : width);
}

static size_t inquiry_standard(const struct scsi_target *t, const struct scsi_lu *lu, uint8_t *b)
{
	static const uint16_t versions[] = { 0x00a0 /* SAM-5 */, 0x0960 /* iSCSI */, 0x0460 /* SPC-4 */,
					     0x04c0 /* SBC-3 */ };

	memset(b, 0, 96);
	b[0] = lu ? 0x00 : 0x7f;   /* qualifier 3, type 0x1f: no LU here */
	b[2] = 0x06;               /* SPC-4 */
	b[3] = 0x12;               /* HISUP, response data format 2 */
	b[4] = 96 - 5;
	b[5] = lu_copies(lu) ? 0x08 : 0x00; /* 3PC: EXTENDED COPY between the LUs of this target */
	if (lu && alua_enabled(t))
		b[5] |= 0x10;      /* TPGS 01b: implicit ALUA across the gateway group */
	b[7] = 0x02;               /* CMDQUE */
	pad_ascii(b + 8, lu ? lu->vendor : "ISTHMUS", 8);
	pad_ascii(b + 16, lu ? lu->product : "VIRTUAL-DISK", 16);
	pad_ascii(b + 32, lu ? lu->revision : "0001", 4);
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		put_be16(b + 58 + 2 * i, versions[i]);
	return 96;
}

static size_t vpd_supported(const struct scsi_lu *lu, uint8_t *b)
{
	static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2 };
	size_t n = 4;

	b[1] = 0x00;
	for (size_t i = 0; i < sizeof(pages); i++)
		if (pages[i] != 0x8f || lu_copies(lu))
			b[n++] = pages[i];
	return n;
}

static size_t vpd_serial(const struct scsi_lu *lu, uint8_t *b)
{
	size_t n = strlen(lu->serial);

	b[1] = 0x80;
	memcpy(b + 4, lu->serial, n);
	return 4 + n;
}

/* Appends one designation descriptor; returns its size. */
static size_t designator(uint8_t *d, uint8_t proto_codeset, uint8_t piv_assoc_type, const void *id, size_t len)
{
	d[0] = proto_codeset;
	d[1] = piv_assoc_type;
	d[2] = 0;
	d[3] = (uint8_t)len;
	memcpy(d + 4, id, len);
	return 4 + len;
}

/* SCSI name strings are NUL-terminated and padded to a multiple of four (SPC-4 7.8.6.11). */
static size_t name_designator(uint8_t *d, uint8_t piv_assoc, const char *name)
{
	uint8_t buf[256];
	size_t n = strlen(name);

	if (n > 250)
		n = 250;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, name, n);
	n = (n + 1 + 3) & ~(size_t)3;
	return designator(d, 0x53, piv_assoc | 0x08, buf, n);
}

void lu_naa_designator_make(struct scsi_lu *lu)
{
	uint64_t hi = lu_derived_naa(lu->t, lu->lun);
	uint8_t *id = lu->naa_desig;

	/* NAA 6: company ID, then 36 + 64 bits we derive from the LU. */
	id[0] = (uint8_t)(0x60 | (NAA_COMPANY_ID >> 20));
	id[1] = (uint8_t)(NAA_COMPANY_ID >> 12);
	id[2] = (uint8_t)(NAA_COMPANY_ID >> 4);
	id[3] = (uint8_t)((NAA_COMPANY_ID & 0x0f) << 4 | ((hi >> 32) & 0x0f));
	put_be32(id + 4, (uint32_t)hi);
	put_be64(id + 8, lu->naa);
}

void lu_naa_designator(const struct scsi_lu *lu, uint8_t id[16]) { memcpy(id, lu->naa_desig, 16); }

static size_t vpd_device_id(const struct scsi_req *r, uint8_t *b)
{
	const struct scsi_lu *lu = r->lu;
	const struct scsi_nexus *nx = r->cmd->nexus;
	uint8_t id[64];
	size_t n = 4;
	char port[300];
	uint16_t tpg = nx ? nx->rel_port_id : 1;

	b[1] = 0x83;

	lu_naa_designator(lu, id);
	n += designator(b + n, 0x01, 0x03, id, 16);

	/* T10 vendor ID: vendor, then something unique within the vendor: the serial. */
	memset(id, ' ', sizeof(id));
	memcpy(id, lu->vendor, strlen(lu->vendor));
	size_t sl = strlen(lu->serial);
	memcpy(id + 8, lu->serial, sl);
	n += designator(b + n, 0x02, 0x01, id, 8 + sl);

	/* Target port identity: relative port and port group, then the port and device names. */
	memset(id, 0, 4);
	put_be16(id + 2, tpg);
	n += designator(b + n, 0x51, 0x94, id, 4);
	memset(id, 0, 4);
	put_be16(id + 2, tpg);
	n += designator(b + n, 0x51, 0x95, id, 4);
	if (lu->t->name[0]) {
		int len = snprintf(port, sizeof(port), "%s,t,0x%04x", lu->t->name, tpg);
		if (len > 0)
			n += name_designator(b + n, 0x90, port);
		n += name_designator(b + n, 0xa0, lu->t->name);
	}
	return n;
}

static size_t vpd_block_limits(const struct scsi_lu *lu, uint8_t *b)
{
	b[1] = 0xb0;
	b[5] = MAX_COMPARE_WRITE_BLOCKS;
	put_be16(b + 6, (uint16_t)(1u << lu->pb_exp));     /* optimal granularity: a physical block */
	put_be32(b + 8, MAX_XFER_BYTES / lu->block_size);
	put_be32(b + 12, (1u << 20) / lu->block_size);
	put_be32(b + 16, MAX_XFER_BYTES / lu->block_size);
	if (lu->thin) {
		put_be32(b + 20, MAX_UNMAP_BLOCKS);
		put_be32(b + 24, MAX_UNMAP_DESCRIPTORS);
		put_be32(b + 28, 1u << lu->pb_exp);
		put_be32(b + 32, 0x80000000u);             /* UGAVALID, alignment 0 */
	}
	put_be64(b + 36, lu_max_write_same(lu));
	if (lu->atomic) {
		/* Any write up to the transfer limit, at any LBA, in any number of blocks. */
		put_be32(b + 44, MAX_XFER_BYTES / lu->block_size);
	}
	return 64;
}

static size_t vpd_block_characteristics(const struct scsi_lu *lu, uint8_t *b)
{
	b[1] = 0xb1;
	put_be16(b + 4, 1);   /* non-rotating medium */
	/* WABEREQ 01b: after SANITIZE BLOCK ERASE reads succeed (and return zeros, LBPRZ). */
	if (lu->thin && !lu->st->ops->submit)
		b[7] = 0x40;
	return 64;
}

/* Appends one third-party copy descriptor header; returns where its body starts. */
static uint8_t *tpc_desc(uint8_t *d, uint16_t type, uint16_t len)
{
	put_be16(d, type);
	put_be16(d + 2, len);
	return d + 4;
}

/* Third-party Copy VPD page (SPC-4 7.8.17): what EXTENDED COPY (LID1) offers. */
static size_t vpd_third_party_copy(const struct scsi_lu *lu, uint8_t *b)
{
	static const uint8_t cmds[] = {
		0x83, 1, 0x00,          /* EXTENDED COPY (LID1) */
		0x84, 2, 0x00, 0x03,    /* RECEIVE COPY RESULTS: COPY STATUS, OPERATING PARAMETERS */
	};
	static const uint8_t descs[] = { 0x02, 0xe4 };
	size_t n = 4;
	uint8_t *p;
	uint16_t len;

	(void)lu;
	b[1] = 0x8f;

	/* Supported Commands: list length, then the list, padded to a multiple of four. */
	len = (uint16_t)((1 + sizeof(cmds) + 3) & ~3u);
	p = tpc_desc(b + n, 0x0001, len);
	p[0] = sizeof(cmds);
	memcpy(p + 1, cmds, sizeof(cmds));
	n += 4u + len;

	/* Parameter Data: descriptor counts and list limits. */
	p = tpc_desc(b + n, 0x0004, 0x1c);
	put_be16(p + 4, XCOPY_MAX_TGT_DESC);
	put_be16(p + 6, XCOPY_MAX_SEG_DESC);
	put_be32(p + 8, XCOPY_MAX_DESC_LIST_LEN);
	put_be32(p + 12, XCOPY_MAX_INLINE);
	n += 4u + 0x1c;

	/* Supported Descriptors: block to block segments, identification target descriptors. */
	len = (uint16_t)((1 + sizeof(descs) + 3) & ~3u);
	p = tpc_desc(b + n, 0x0008, len);
	p[0] = sizeof(descs);
	memcpy(p + 1, descs, sizeof(descs));
	n += 4u + len;

	/* General Copy Operations: one copy at a time (per LU), segments up to the transfer limit. */
	p = tpc_desc(b + n, 0x8001, 0x20);
	put_be32(p, 1);
	put_be32(p + 4, 1);
	put_be32(p + 8, XCOPY_MAX_SEG_BYTES);
	n += 4u + 0x20;
	return n;
}

static size_t vpd_lbp(const struct scsi_lu *lu, uint8_t *b)
{
	b[1] = 0xb2;
	if (lu->thin) {
		/* LBPU, LBPWS, LBPWS10, LBPRZ: unmapped blocks read back as zeros on every store. */
		b[5] = 0x80 | 0x40 | 0x20 | 0x04;
		b[6] = 0x02;  /* thin provisioned */
	}
	return 8;
}

void scsi_inquiry(struct scsi_req *r)
{
	const uint8_t *cdb = r->cdb;
	uint8_t *b = r->ctx->scratch;
	uint32_t alloc = get_be16(cdb + 3);
	size_t n;

	if (cdb[1] & 0xfe) {
		req_bad_cdb(r, 1, (cdb[1] & 0x02) ? 1 : 7);
		return;
	}
	if (!(cdb[1] & 0x01)) {
		if (cdb[2]) {
			req_bad_cdb(r, 2, -1);
			return;
		}
		n = inquiry_standard(r->t, r->lu, b);
		req_data_in(r, b, (uint32_t)n, alloc);
		return;
	}
	if (!r->lu) {
		req_sense(r, SK_ILLEGAL_REQUEST, 0x25, 0x00);
		return;
	}
	memset(b, 0, 1024);
	b[0] = 0x00;
	switch (cdb[2]) {
	case 0x00:
		n = vpd_supported(r->lu, b);
		break;
	case 0x80:
		n = vpd_serial(r->lu, b);
		break;
	case 0x83:
		n = vpd_device_id(r, b);
		break;
	case 0x8f:
		if (!lu_copies(r->lu)) {
			req_bad_cdb(r, 2, -1);
			return;
		}
		n = vpd_third_party_copy(r->lu, b);
		break;
	case 0xb0:
		n = vpd_block_limits(r->lu, b);
		break;
	case 0xb1:
		n = vpd_block_characteristics(r->lu, b);
		break;
	case 0xb2:
		n = vpd_lbp(r->lu, b);
		break;
	default:
		req_bad_cdb(r, 2, -1);
		return;
	}
	put_be16(b + 2, (uint16_t)(n - 4));
	req_data_in(r, b, (uint32_t)n, alloc);
}
