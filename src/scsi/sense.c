/*
 * Sense data: fixed format unless the control mode page's D_SENSE asks for descriptors
 * (SPC-4 4.5). The format is a property of the LU, so the dispatcher tells us which one is in
 * force for the command being run.
 */
#include <string.h>

#include "scsi/scsi_int.h"

/* Per thread: each context runs its commands on its own thread. */
static _Thread_local const struct scsi_cmd *ctx_cmd;
static _Thread_local bool ctx_desc;

void scsi_sense_set_ctx(const struct scsi_cmd *cmd, bool desc)
{
	ctx_cmd = cmd;
	ctx_desc = desc;
}

/* Descriptor format (SPC-4 4.5.2): s is zeroed and holds 8 + 12 + 8 bytes. */
static size_t sense_descriptor(uint8_t *s, uint8_t key, uint8_t asc, uint8_t ascq, const uint64_t *info,
			       const uint8_t *sks)
{
	size_t n = 8;

	s[0] = 0x72;
	s[1] = key & 0x0f;
	s[2] = asc;
	s[3] = ascq;
	if (info) {
		s[n] = 0x00;        /* information descriptor */
		s[n + 1] = 0x0a;
		s[n + 2] = 0x80;    /* VALID */
		put_be64(s + n + 4, *info);
		n += 12;
	}
	if (sks) {
		s[n] = 0x02;        /* sense key specific descriptor */
		s[n + 1] = 0x06;
		memcpy(s + n + 4, sks, 3);
		n += 8;
	}
	s[7] = (uint8_t)(n - 8);
	return n;
}

/* Fixed format (SPC-4 4.5.3): s is zeroed and holds SCSI_SENSE_FIXED_LEN bytes. */
static size_t sense_fixed(uint8_t *s, uint8_t key, uint8_t asc, uint8_t ascq, const uint64_t *info,
			  const uint8_t *sks)
{
	s[0] = 0x70;
	s[2] = key & 0x0f;
	/* A fixed-format INFORMATION field holds 32 bits; larger values cannot be VALID. */
	if (info && *info <= 0xffffffffu) {
		s[0] |= 0x80;
		put_be32(s + 3, (uint32_t)*info);
	}
	s[7] = SCSI_SENSE_FIXED_LEN - 8;
	s[12] = asc;
	s[13] = ascq;
	if (sks)
		memcpy(s + 15, sks, 3);
	return SCSI_SENSE_FIXED_LEN;
}

size_t scsi_sense_build(uint8_t *buf, size_t cap, bool desc, uint8_t key, uint8_t asc, uint8_t ascq,
			const uint64_t *info, const uint8_t *sks)
{
	uint8_t s[64];
	size_t n;

	memset(s, 0, sizeof(s));
	if (desc)
		n = sense_descriptor(s, key, asc, ascq, info, sks);
	else
		n = sense_fixed(s, key, asc, ascq, info, sks);
	if (n > cap)
		n = cap;
	memcpy(buf, s, n);
	return n;
}

static void set_sense(struct scsi_cmd *cmd, bool desc, uint8_t key, uint8_t asc, uint8_t ascq,
		      const uint64_t *info, const uint8_t *sks)
{
	cmd->status = SCSI_CHECK_CONDITION;
	cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), desc, key, asc, ascq,
						   info, sks);
}

void scsi_cmd_set_sense(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	set_sense(cmd, ctx_cmd == cmd && ctx_desc, key, asc, ascq, NULL, NULL);
}

static bool req_desc(const struct scsi_req *r) { return r->lu && r->lu->d_sense; }

void req_sense(struct scsi_req *r, uint8_t key, uint8_t asc, uint8_t ascq)
{
	set_sense(r->cmd, req_desc(r), key, asc, ascq, NULL, NULL);
}

void req_sense_info(struct scsi_req *r, uint8_t key, uint8_t asc, uint8_t ascq, uint64_t info)
{
	set_sense(r->cmd, req_desc(r), key, asc, ascq, &info, NULL);
}

/* Field pointer (SPC-4 4.5.2.4.2): tells the initiator which byte and bit it got wrong. */
static void field_pointer(struct scsi_req *r, uint8_t asc, bool in_cdb, unsigned byte, int bit)
{
	uint8_t sks[3];

	sks[0] = 0x80 | (in_cdb ? 0x40 : 0);
	if (bit >= 0)
		sks[0] |= 0x08 | (uint8_t)(bit & 7);
	put_be16(sks + 1, (uint16_t)byte);
	set_sense(r->cmd, req_desc(r), SK_ILLEGAL_REQUEST, asc, 0, NULL, sks);
}

void req_bad_cdb(struct scsi_req *r, unsigned byte, int bit) { field_pointer(r, 0x24, true, byte, bit); }

void req_bad_param(struct scsi_req *r, unsigned byte, int bit) { field_pointer(r, 0x26, false, byte, bit); }

void req_param_len_error(struct scsi_req *r) { req_sense(r, SK_ILLEGAL_REQUEST, 0x1a, 0x00); }

void req_lba_oob(struct scsi_req *r) { req_sense(r, SK_ILLEGAL_REQUEST, 0x21, 0x00); }

void req_sense_sks(struct scsi_req *r, uint8_t key, uint8_t asc, uint8_t ascq, const uint8_t *sks)
{
	set_sense(r->cmd, req_desc(r), key, asc, ascq, NULL, sks);
}
