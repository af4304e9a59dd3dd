/*
 * MODE SENSE / MODE SELECT (SPC-4 6.11-6.14, SBC-3 6.4). Mode pages are shared by all
 * I_T nexuses; a change made through one raises MODE PARAMETERS CHANGED on the others.
 * Nothing is savable: saved values read back as the defaults, and SP=1 is refused.
 */
#include <string.h>

#include "scsi/scsi_int.h"

enum page_control { PC_CURRENT = 0, PC_CHANGEABLE = 1, PC_DEFAULT = 2, PC_SAVED = 3 };

static const uint8_t page_order[] = { 0x01, 0x08, 0x0a, 0x1c };

/* Builds one page as seen through page control pc; returns its length, 0 if we lack it. */
static size_t build_page(const struct scsi_lu *lu, uint8_t page, int pc, uint8_t *p)
{
	bool cur = pc == PC_CURRENT;
	bool chg = pc == PC_CHANGEABLE;

	switch (page) {
	case 0x01: /* read-write error recovery: nothing to tune for a virtual disk */
		memset(p, 0, 12);
		p[0] = 0x01;
		p[1] = 0x0a;
		return 12;
	case 0x08: /* caching */
		memset(p, 0, 20);
		p[0] = 0x08;
		p[1] = 0x12;
		if (chg)
			p[2] = 0x04;
		else if (cur ? lu->wce : lu->wce_default)
			p[2] = 0x04;
		return 20;
	case 0x0a: /* control */
		memset(p, 0, 12);
		p[0] = 0x0a;
		p[1] = 0x0a;
		if (chg) {
			p[2] = 0x04;   /* D_SENSE */
			p[4] = 0x08;   /* SWP */
			return 12;
		}
		if (cur && lu->d_sense)
			p[2] |= 0x04;
		p[3] = 0x10;           /* QUEUE ALGORITHM MODIFIER 1: unrestricted reordering */
		if (cur && lu->swp)
			p[4] |= 0x08;
		put_be16(p + 8, 0xffff); /* busy timeout: unlimited */
		return 12;
	case 0x1c: /* informational exceptions: we have no failure prediction to report */
		memset(p, 0, 12);
		p[0] = 0x1c;
		p[1] = 0x0a;
		if (!chg)
			p[2] = 0x08;   /* DEXCPT */
		return 12;
	}
	return 0;
}

static void mode_sense(struct scsi_req *r, bool ten)
{
	const uint8_t *cdb = r->cdb;
	const struct scsi_lu *lu = r->lu;
	uint8_t *b = r->ctx->scratch;
	bool dbd = cdb[1] & 0x08;
	bool llbaa = ten && (cdb[1] & 0x10);
	int pc = cdb[2] >> 6;
	uint8_t page = cdb[2] & 0x3f;
	uint8_t subpage = cdb[3];
	uint32_t alloc = ten ? get_be16(cdb + 7) : cdb[4];
	size_t hdr = ten ? 8 : 4;
	size_t n = hdr;
	uint8_t dsp = 0x10; /* DPOFUA */

	if (cdb[1] & (ten ? 0xe7 : 0xf7)) {
		req_bad_cdb(r, 1, -1);
		return;
	}
	memset(b, 0, 512);
	if (!dbd) {
		if (llbaa) {
			put_be64(b + n, lu->nblocks);
			put_be32(b + n + 12, lu->block_size);
			n += 16;
		} else {
			put_be32(b + n, lu->nblocks > 0xffffffffu ? 0xffffffffu : (uint32_t)lu->nblocks);
			put_be32(b + n + 4, lu->block_size);  /* density code 0 in the top byte */
			n += 8;
		}
	}
	if (page == 0x3f) {
		if (subpage != 0x00 && subpage != 0xff) {
			req_bad_cdb(r, 3, -1);
			return;
		}
		for (size_t i = 0; i < sizeof(page_order); i++)
			n += build_page(lu, page_order[i], pc, b + n);
	} else {
		size_t len;

		if (subpage != 0x00) {
			req_bad_cdb(r, 3, -1);
			return;
		}
		len = build_page(lu, page, pc, b + n);
		if (!len) {
			req_bad_cdb(r, 2, 5);
			return;
		}
		n += len;
	}
	if (lu->read_only || lu->swp)
		dsp |= 0x80;
	if (ten) {
		put_be16(b, (uint16_t)(n - 2));
		b[3] = dsp;
		b[4] = llbaa && !dbd ? 0x01 : 0x00;
		put_be16(b + 6, (uint16_t)(dbd ? 0 : (llbaa ? 16 : 8)));
	} else {
		b[0] = (uint8_t)(n - 1);
		b[2] = dsp;
		b[3] = dbd ? 0 : 8;
	}
	req_data_in(r, b, (uint32_t)n, alloc);
}

void scsi_mode_sense6(struct scsi_req *r) { mode_sense(r, false); }
void scsi_mode_sense10(struct scsi_req *r) { mode_sense(r, true); }

/*
 * Checks one page of a MODE SELECT parameter list against what we allow to change, and if
 * `apply`, stores the values. `off` is the page's offset in the list, for field pointers.
 */
static bool select_page(struct scsi_req *r, const uint8_t *p, size_t len, size_t off, bool apply, bool *changed)
{
	struct scsi_lu *lu = r->lu;
	uint8_t cur[32], chg[32];
	size_t want;

	want = build_page(lu, p[0] & 0x3f, PC_CURRENT, cur);
	if (!want || (p[0] & 0x40)) {
		req_bad_param(r, (unsigned)off, 5);
		return false;
	}
	if (len != want) {
		req_bad_param(r, (unsigned)off + 1, -1);
		return false;
	}
	build_page(lu, p[0] & 0x3f, PC_CHANGEABLE, chg);
	/* Byte 0 carries PS, which is reserved in MODE SELECT; byte 1 was checked above. */
	for (size_t i = 2; i < want; i++) {
		uint8_t diff = (uint8_t)((p[i] ^ cur[i]) & ~chg[i]);
		if (diff) {
			int bit = 7;
			while (!(diff & (1u << bit)))
				bit--;
			req_bad_param(r, (unsigned)(off + i), bit);
			return false;
		}
	}
	if (!apply)
		return true;
	switch (p[0] & 0x3f) {
	case 0x08:
		*changed |= lu->wce != !!(p[2] & 0x04);
		lu->wce = p[2] & 0x04;
		break;
	case 0x0a:
		*changed |= lu->d_sense != !!(p[2] & 0x04) || lu->swp != !!(p[4] & 0x08);
		lu->d_sense = p[2] & 0x04;
		lu->swp = p[4] & 0x08;
		break;
	}
	return true;
}

static void mode_select(struct scsi_req *r, bool ten)
{
	const uint8_t *cdb = r->cdb;
	const uint8_t *d = r->cmd->out;
	uint32_t plen = ten ? get_be16(cdb + 7) : cdb[4];
	size_t hdr = ten ? 8 : 4;
	size_t bdl, pos;
	bool changed = false;

	r->cmd->xfer_len = plen;
	if (cdb[1] & 0x01) {
		req_bad_cdb(r, 1, 0);   /* SP: nothing is savable */
		return;
	}
	if (cdb[1] & 0xee) {
		req_bad_cdb(r, 1, -1);
		return;
	}
	if (plen == 0)
		return;
	if (r->cmd->out_len < plen || plen < hdr) {
		req_param_len_error(r);
		return;
	}
	bdl = ten ? get_be16(d + 6) : d[3];
	if (bdl) {
		size_t dlen = (ten && (d[4] & 0x01)) ? 16 : 8;
		if (bdl != dlen || hdr + bdl > plen) {
			req_param_len_error(r);
			return;
		}
		/* A block descriptor may only restate the block size we already have. */
		uint32_t bl = dlen == 16 ? get_be32(d + hdr + 12) : get_be24(d + hdr + 5);
		if (bl != r->lu->block_size) {
			req_bad_param(r, (unsigned)(hdr + dlen - 3), -1);
			return;
		}
	}
	/* Two passes: validate everything first, so a bad page leaves no half-applied change. */
	for (int pass = 0; pass < 2; pass++) {
		for (pos = hdr + bdl; pos < plen;) {
			size_t len;

			if (plen - pos < 2) {
				req_param_len_error(r);
				return;
			}
			len = 2 + (size_t)d[pos + 1];
			if (d[pos] & 0x40)
				len = plen - pos >= 4 ? 4 + (size_t)get_be16(d + pos + 2) : plen - pos + 1;
			if (len > plen - pos) {
				req_param_len_error(r);
				return;
			}
			if (!select_page(r, d + pos, len, pos, pass == 1, &changed))
				return;
			pos += len;
		}
	}
	if (changed)
		lu_ua_set_all(r->lu, UA_MODE_CHANGED, r->cmd->nexus->id);
}

void scsi_mode_select6(struct scsi_req *r) { mode_select(r, false); }
void scsi_mode_select10(struct scsi_req *r) { mode_select(r, true); }
