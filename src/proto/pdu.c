#include "proto/pdu.h"

#include <stdio.h>
#include <string.h>

#include "util/bytes.h"

const char *opcode_str(uint8_t opcode)
{
	switch (opcode) {
	case OP_NOP_OUT: return "NOP-Out";
	case OP_SCSI_CMD: return "SCSI Command";
	case OP_TASK_MGMT_REQ: return "Task Management Request";
	case OP_LOGIN_REQ: return "Login Request";
	case OP_TEXT_REQ: return "Text Request";
	case OP_DATA_OUT: return "Data-Out";
	case OP_LOGOUT_REQ: return "Logout Request";
	case OP_SNACK: return "SNACK";
	case OP_NOP_IN: return "NOP-In";
	case OP_SCSI_RESP: return "SCSI Response";
	case OP_TASK_MGMT_RESP: return "Task Management Response";
	case OP_LOGIN_RESP: return "Login Response";
	case OP_TEXT_RESP: return "Text Response";
	case OP_DATA_IN: return "Data-In";
	case OP_LOGOUT_RESP: return "Logout Response";
	case OP_R2T: return "R2T";
	case OP_ASYNC_MSG: return "Async Message";
	case OP_REJECT: return "Reject";
	default: return "unknown opcode";
	}
}

const char *login_status_str(uint16_t status)
{
	switch (status) {
	case LOGIN_OK: return "success";
	case LOGIN_REDIRECT_TEMP: return "target moved temporarily";
	case LOGIN_REDIRECT_PERM: return "target moved permanently";
	case LOGIN_INITIATOR_ERROR: return "initiator error";
	case LOGIN_AUTH_FAILED: return "authentication failure";
	case LOGIN_AUTHZ_FAILED: return "authorization failure";
	case LOGIN_NOT_FOUND: return "target not found";
	case LOGIN_TARGET_REMOVED: return "target removed";
	case LOGIN_UNSUPPORTED_VERSION: return "unsupported version";
	case LOGIN_TOO_MANY_CONNECTIONS: return "too many connections";
	case LOGIN_MISSING_PARAMETER: return "missing parameter";
	case LOGIN_CANT_INCLUDE_IN_SESSION: return "can't include in session";
	case LOGIN_SESSION_TYPE_UNSUPPORTED: return "session type not supported";
	case LOGIN_SESSION_DOES_NOT_EXIST: return "session does not exist";
	case LOGIN_INVALID_DURING_LOGIN: return "invalid request during login";
	case LOGIN_TARGET_ERROR: return "target error";
	case LOGIN_SERVICE_UNAVAILABLE: return "service unavailable";
	case LOGIN_OUT_OF_RESOURCES: return "out of resources";
	default: return (status >> 8) == 1 ? "redirection" : (status >> 8) == 2 ? "initiator error" : "target error";
	}
}

static int bhs_reject(char *why, size_t whylen, const char *msg, int reason)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
	return reason;
}

int bhs_decode(const uint8_t raw[BHS_LEN], struct bhs *b, char *why, size_t whylen)
{
	memset(b, 0, sizeof(*b));
	b->opcode = raw[0] & 0x3f;
	b->immediate = (raw[0] & 0x40) != 0;
	b->final = (raw[1] & 0x80) != 0;
	uint32_t ahs_words = raw[4];
	b->data_len = get_be24(raw + 5);
	memcpy(b->lun, raw + 8, 8);
	b->itt = get_be32(raw + 16);
	/* The longest AHS we take (a 260-byte CDB) fits in 63 words, so bytes fit in a uint8_t. */
	if (ahs_words > 63)
		return bhs_reject(why, whylen, "TotalAHSLength larger than any AHS this target accepts", REJECT_PROTOCOL_ERROR);
	b->total_ahs_len = (uint8_t)(ahs_words * 4);
	if (ahs_words > 0 && b->opcode != OP_SCSI_CMD)
		return bhs_reject(why, whylen, "AHS is only defined for SCSI Command PDUs", REJECT_PROTOCOL_ERROR);

	switch (b->opcode) {
	case OP_NOP_OUT:
		b->nop_out.ttt = get_be32(raw + 20);
		b->nop_out.cmdsn = get_be32(raw + 24);
		b->nop_out.expstatsn = get_be32(raw + 28);
		if (!b->final)
			return bhs_reject(why, whylen, "NOP-Out without the F bit", REJECT_PROTOCOL_ERROR);
		break;
	case OP_SCSI_CMD:
		b->cmd.read = (raw[1] & 0x40) != 0;
		b->cmd.write = (raw[1] & 0x20) != 0;
		b->cmd.attr = raw[1] & 0x07;
		b->cmd.edtl = get_be32(raw + 20);
		b->cmd.cmdsn = get_be32(raw + 24);
		b->cmd.expstatsn = get_be32(raw + 28);
		memcpy(b->cmd.cdb, raw + 32, 16);
		break;
	case OP_TASK_MGMT_REQ:
		b->tmf.function = raw[1] & 0x7f;
		b->tmf.rtt = get_be32(raw + 20);
		b->tmf.cmdsn = get_be32(raw + 24);
		b->tmf.expstatsn = get_be32(raw + 28);
		b->tmf.refcmdsn = get_be32(raw + 32);
		b->tmf.expdatasn = get_be32(raw + 36);
		if (!b->final)
			return bhs_reject(why, whylen, "Task Management Request without the F bit", REJECT_PROTOCOL_ERROR);
		break;
	case OP_LOGIN_REQ:
	case OP_LOGIN_RESP:
		b->login.cont = (raw[1] & 0x40) != 0;
		b->login.csg = (raw[1] >> 2) & 0x03;
		b->login.nsg = raw[1] & 0x03;
		b->login.version_max = raw[2];
		b->login.version_min = raw[3];
		memcpy(b->login.isid, raw + 8, 6);
		b->login.tsih = get_be16(raw + 14);
		if (b->opcode == OP_LOGIN_REQ) {
			b->login.cid = get_be16(raw + 20);
			b->login.cmdsn = get_be32(raw + 24);
			b->login.expstatsn = get_be32(raw + 28);
		} else {
			b->login.statsn = get_be32(raw + 24);
			b->login.expcmdsn = get_be32(raw + 28);
			b->login.maxcmdsn = get_be32(raw + 32);
			b->login.status_class = raw[36];
			b->login.status_detail = raw[37];
		}
		if (b->final && b->login.cont)
			return bhs_reject(why, whylen, "Login PDU with both T and C bits", REJECT_PROTOCOL_ERROR);
		break;
	case OP_TEXT_REQ:
	case OP_TEXT_RESP:
		b->text.cont = (raw[1] & 0x40) != 0;
		b->text.ttt = get_be32(raw + 20);
		if (b->opcode == OP_TEXT_REQ) {
			b->text.cmdsn = get_be32(raw + 24);
			b->text.expstatsn = get_be32(raw + 28);
		} else {
			b->text.statsn = get_be32(raw + 24);
			b->text.expcmdsn = get_be32(raw + 28);
			b->text.maxcmdsn = get_be32(raw + 32);
		}
		if (b->final && b->text.cont)
			return bhs_reject(why, whylen, "Text PDU with both F and C bits", REJECT_PROTOCOL_ERROR);
		break;
	case OP_DATA_OUT:
		b->data_out.ttt = get_be32(raw + 20);
		b->data_out.expstatsn = get_be32(raw + 28);
		b->data_out.datasn = get_be32(raw + 36);
		b->data_out.offset = get_be32(raw + 40);
		break;
	case OP_LOGOUT_REQ:
		b->logout.reason = raw[1] & 0x7f;
		b->logout.cid = get_be16(raw + 20);
		b->logout.cmdsn = get_be32(raw + 24);
		b->logout.expstatsn = get_be32(raw + 28);
		if (!b->final)
			return bhs_reject(why, whylen, "Logout Request without the F bit", REJECT_PROTOCOL_ERROR);
		break;
	case OP_SNACK:
		b->snack.type = raw[1] & 0x0f;
		b->snack.ttt = get_be32(raw + 20);
		b->snack.expstatsn = get_be32(raw + 28);
		b->snack.begrun = get_be32(raw + 40);
		b->snack.runlength = get_be32(raw + 44);
		break;
	case OP_NOP_IN:
		b->nop_in.ttt = get_be32(raw + 20);
		b->nop_in.statsn = get_be32(raw + 24);
		b->nop_in.expcmdsn = get_be32(raw + 28);
		b->nop_in.maxcmdsn = get_be32(raw + 32);
		break;
	case OP_SCSI_RESP:
		b->rsp.flags = raw[1] & 0x1e;
		b->rsp.response = raw[2];
		b->rsp.status = raw[3];
		b->rsp.snack_tag = get_be32(raw + 20);
		b->rsp.statsn = get_be32(raw + 24);
		b->rsp.expcmdsn = get_be32(raw + 28);
		b->rsp.maxcmdsn = get_be32(raw + 32);
		b->rsp.expdatasn = get_be32(raw + 36);
		b->rsp.bidi_residual = get_be32(raw + 40);
		b->rsp.residual = get_be32(raw + 44);
		break;
	case OP_TASK_MGMT_RESP:
		b->tmf_rsp.response = raw[2];
		b->tmf_rsp.statsn = get_be32(raw + 24);
		b->tmf_rsp.expcmdsn = get_be32(raw + 28);
		b->tmf_rsp.maxcmdsn = get_be32(raw + 32);
		break;
	case OP_DATA_IN:
		b->data_in.ack = (raw[1] & 0x40) != 0;
		b->data_in.overflow = (raw[1] & 0x04) != 0;
		b->data_in.underflow = (raw[1] & 0x02) != 0;
		b->data_in.status_present = (raw[1] & 0x01) != 0;
		if (b->data_in.status_present)
			b->data_in.status = raw[3];
		b->data_in.ttt = get_be32(raw + 20);
		b->data_in.statsn = get_be32(raw + 24);
		b->data_in.expcmdsn = get_be32(raw + 28);
		b->data_in.maxcmdsn = get_be32(raw + 32);
		b->data_in.datasn = get_be32(raw + 36);
		b->data_in.offset = get_be32(raw + 40);
		b->data_in.residual = get_be32(raw + 44);
		if (b->data_in.status_present && !b->final)
			return bhs_reject(why, whylen, "Data-In with S bit but without F bit", REJECT_PROTOCOL_ERROR);
		break;
	case OP_LOGOUT_RESP:
		b->logout_rsp.response = raw[2];
		b->logout_rsp.statsn = get_be32(raw + 24);
		b->logout_rsp.expcmdsn = get_be32(raw + 28);
		b->logout_rsp.maxcmdsn = get_be32(raw + 32);
		b->logout_rsp.time2wait = get_be16(raw + 40);
		b->logout_rsp.time2retain = get_be16(raw + 42);
		break;
	case OP_R2T:
		b->r2t.ttt = get_be32(raw + 20);
		b->r2t.statsn = get_be32(raw + 24);
		b->r2t.expcmdsn = get_be32(raw + 28);
		b->r2t.maxcmdsn = get_be32(raw + 32);
		b->r2t.r2tsn = get_be32(raw + 36);
		b->r2t.offset = get_be32(raw + 40);
		b->r2t.desired_len = get_be32(raw + 44);
		break;
	case OP_ASYNC_MSG:
		b->async.statsn = get_be32(raw + 24);
		b->async.expcmdsn = get_be32(raw + 28);
		b->async.maxcmdsn = get_be32(raw + 32);
		b->async.event = raw[36];
		b->async.vcode = raw[37];
		b->async.param1 = get_be16(raw + 38);
		b->async.param2 = get_be16(raw + 40);
		b->async.param3 = get_be16(raw + 42);
		break;
	case OP_REJECT:
		b->reject.reason = raw[2];
		b->reject.statsn = get_be32(raw + 24);
		b->reject.expcmdsn = get_be32(raw + 28);
		b->reject.maxcmdsn = get_be32(raw + 32);
		b->reject.datasn = get_be32(raw + 36);
		break;
	default:
		return bhs_reject(why, whylen, "unknown opcode", REJECT_CMD_NOT_SUPPORTED);
	}
	return 0;
}

void bhs_encode(const struct bhs *b, uint8_t raw[BHS_LEN])
{
	memset(raw, 0, BHS_LEN);
	raw[0] = (uint8_t)(b->opcode & 0x3f) | (b->immediate ? 0x40 : 0);
	raw[1] = b->final ? 0x80 : 0;
	raw[4] = (uint8_t)(b->total_ahs_len / 4);
	put_be24(raw + 5, b->data_len);
	memcpy(raw + 8, b->lun, 8);
	put_be32(raw + 16, b->itt);

	switch (b->opcode) {
	case OP_NOP_OUT:
		put_be32(raw + 20, b->nop_out.ttt);
		put_be32(raw + 24, b->nop_out.cmdsn);
		put_be32(raw + 28, b->nop_out.expstatsn);
		break;
	case OP_SCSI_CMD:
		raw[1] |= (b->cmd.read ? 0x40 : 0) | (b->cmd.write ? 0x20 : 0) | (b->cmd.attr & 0x07);
		put_be32(raw + 20, b->cmd.edtl);
		put_be32(raw + 24, b->cmd.cmdsn);
		put_be32(raw + 28, b->cmd.expstatsn);
		memcpy(raw + 32, b->cmd.cdb, 16);
		break;
	case OP_TASK_MGMT_REQ:
		raw[1] |= b->tmf.function & 0x7f;
		put_be32(raw + 20, b->tmf.rtt);
		put_be32(raw + 24, b->tmf.cmdsn);
		put_be32(raw + 28, b->tmf.expstatsn);
		put_be32(raw + 32, b->tmf.refcmdsn);
		put_be32(raw + 36, b->tmf.expdatasn);
		break;
	case OP_LOGIN_REQ:
	case OP_LOGIN_RESP:
		raw[1] |= (b->login.cont ? 0x40 : 0) | (uint8_t)((b->login.csg & 3) << 2) | (b->login.nsg & 3);
		raw[2] = b->login.version_max;
		raw[3] = b->login.version_min;
		memcpy(raw + 8, b->login.isid, 6);
		put_be16(raw + 14, b->login.tsih);
		if (b->opcode == OP_LOGIN_REQ) {
			put_be16(raw + 20, b->login.cid);
			put_be32(raw + 24, b->login.cmdsn);
			put_be32(raw + 28, b->login.expstatsn);
		} else {
			put_be32(raw + 24, b->login.statsn);
			put_be32(raw + 28, b->login.expcmdsn);
			put_be32(raw + 32, b->login.maxcmdsn);
			raw[36] = b->login.status_class;
			raw[37] = b->login.status_detail;
		}
		break;
	case OP_TEXT_REQ:
	case OP_TEXT_RESP:
		raw[1] |= b->text.cont ? 0x40 : 0;
		put_be32(raw + 20, b->text.ttt);
		if (b->opcode == OP_TEXT_REQ) {
			put_be32(raw + 24, b->text.cmdsn);
			put_be32(raw + 28, b->text.expstatsn);
		} else {
			put_be32(raw + 24, b->text.statsn);
			put_be32(raw + 28, b->text.expcmdsn);
			put_be32(raw + 32, b->text.maxcmdsn);
		}
		break;
	case OP_DATA_OUT:
		put_be32(raw + 20, b->data_out.ttt);
		put_be32(raw + 28, b->data_out.expstatsn);
		put_be32(raw + 36, b->data_out.datasn);
		put_be32(raw + 40, b->data_out.offset);
		break;
	case OP_LOGOUT_REQ:
		raw[1] |= b->logout.reason & 0x7f;
		put_be16(raw + 20, b->logout.cid);
		put_be32(raw + 24, b->logout.cmdsn);
		put_be32(raw + 28, b->logout.expstatsn);
		break;
	case OP_SNACK:
		raw[1] |= b->snack.type & 0x0f;
		put_be32(raw + 20, b->snack.ttt);
		put_be32(raw + 28, b->snack.expstatsn);
		put_be32(raw + 40, b->snack.begrun);
		put_be32(raw + 44, b->snack.runlength);
		break;
	case OP_NOP_IN:
		put_be32(raw + 20, b->nop_in.ttt);
		put_be32(raw + 24, b->nop_in.statsn);
		put_be32(raw + 28, b->nop_in.expcmdsn);
		put_be32(raw + 32, b->nop_in.maxcmdsn);
		break;
	case OP_SCSI_RESP:
		raw[1] |= b->rsp.flags & 0x1e;
		raw[2] = b->rsp.response;
		raw[3] = b->rsp.status;
		put_be32(raw + 20, b->rsp.snack_tag);
		put_be32(raw + 24, b->rsp.statsn);
		put_be32(raw + 28, b->rsp.expcmdsn);
		put_be32(raw + 32, b->rsp.maxcmdsn);
		put_be32(raw + 36, b->rsp.expdatasn);
		put_be32(raw + 40, b->rsp.bidi_residual);
		put_be32(raw + 44, b->rsp.residual);
		break;
	case OP_TASK_MGMT_RESP:
		raw[2] = b->tmf_rsp.response;
		put_be32(raw + 24, b->tmf_rsp.statsn);
		put_be32(raw + 28, b->tmf_rsp.expcmdsn);
		put_be32(raw + 32, b->tmf_rsp.maxcmdsn);
		break;
	case OP_DATA_IN:
		raw[1] |= (b->data_in.ack ? 0x40 : 0) | (b->data_in.overflow ? 0x04 : 0) |
			  (b->data_in.underflow ? 0x02 : 0) | (b->data_in.status_present ? 0x01 : 0);
		if (b->data_in.status_present)
			raw[3] = b->data_in.status;
		put_be32(raw + 20, b->data_in.ttt);
		put_be32(raw + 24, b->data_in.statsn);
		put_be32(raw + 28, b->data_in.expcmdsn);
		put_be32(raw + 32, b->data_in.maxcmdsn);
		put_be32(raw + 36, b->data_in.datasn);
		put_be32(raw + 40, b->data_in.offset);
		put_be32(raw + 44, b->data_in.residual);
		break;
	case OP_LOGOUT_RESP:
		raw[2] = b->logout_rsp.response;
		put_be32(raw + 24, b->logout_rsp.statsn);
		put_be32(raw + 28, b->logout_rsp.expcmdsn);
		put_be32(raw + 32, b->logout_rsp.maxcmdsn);
		put_be16(raw + 40, b->logout_rsp.time2wait);
		put_be16(raw + 42, b->logout_rsp.time2retain);
		break;
	case OP_R2T:
		put_be32(raw + 20, b->r2t.ttt);
		put_be32(raw + 24, b->r2t.statsn);
		put_be32(raw + 28, b->r2t.expcmdsn);
		put_be32(raw + 32, b->r2t.maxcmdsn);
		put_be32(raw + 36, b->r2t.r2tsn);
		put_be32(raw + 40, b->r2t.offset);
		put_be32(raw + 44, b->r2t.desired_len);
		break;
	case OP_ASYNC_MSG:
		put_be32(raw + 24, b->async.statsn);
		put_be32(raw + 28, b->async.expcmdsn);
		put_be32(raw + 32, b->async.maxcmdsn);
		raw[36] = b->async.event;
		raw[37] = b->async.vcode;
		put_be16(raw + 38, b->async.param1);
		put_be16(raw + 40, b->async.param2);
		put_be16(raw + 42, b->async.param3);
		break;
	case OP_REJECT:
		raw[2] = b->reject.reason;
		put_be32(raw + 24, b->reject.statsn);
		put_be32(raw + 28, b->reject.expcmdsn);
		put_be32(raw + 32, b->reject.maxcmdsn);
		put_be32(raw + 36, b->reject.datasn);
		break;
	default:
		break;
	}
}

int ahs_parse(const uint8_t *ahs, size_t total_len, struct ahs_info *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	size_t pos = 0;
	while (pos < total_len) {
		if (total_len - pos < 4)
			return bhs_reject(why, whylen, "truncated AHS header", REJECT_PROTOCOL_ERROR);
		/* AHSLength counts the bytes after the length and type fields, the reserved byte included. */
		size_t alen = get_be16(ahs + pos);
		uint8_t type = ahs[pos + 2];
		if (alen == 0 || 3 + alen > total_len - pos)
			return bhs_reject(why, whylen, "AHS length exceeds TotalAHSLength", REJECT_PROTOCOL_ERROR);
		const uint8_t *body = ahs + pos + 4;
		size_t blen = alen - 1;
		switch (type) {
		case 1: /* Extended CDB */
			if (out->ext_cdb_len || blen == 0 || blen > sizeof(out->ext_cdb))
				return bhs_reject(why, whylen, "bad Extended CDB AHS", REJECT_PROTOCOL_ERROR);
			memcpy(out->ext_cdb, body, blen);
			out->ext_cdb_len = (uint16_t)blen;
			break;
		case 2: /* Bidirectional Read Expected Data Transfer Length */
			if (alen != 5 || out->has_bidi_read_len)
				return bhs_reject(why, whylen, "bad Bidirectional Read Length AHS", REJECT_PROTOCOL_ERROR);
			out->has_bidi_read_len = true;
			out->bidi_read_len = get_be32(body);
			break;
		default:
			return bhs_reject(why, whylen, "unknown AHS type", REJECT_PROTOCOL_ERROR);
		}
		pos += (3 + alen + 3) & ~(size_t)3;
	}
	return 0;
}
