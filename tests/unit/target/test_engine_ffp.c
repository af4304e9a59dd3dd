/*
 * The rest of the target's full feature phase seen from a fake initiator: Text requests
 * (SendTargets, a long answer continued over several Text Responses), read residuals, Reject of
 * PDUs the target does not serve, Logout, and a discovery session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "engine_harness.h"

#define C EH_CMDSN1
#define S EH_STATSN1
#define DEPTH 128u

/* MaxRecvDataSegmentLength 512: the smallest the initiator may declare, so answers split early. */
static const char op_small[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=512\0"
			       "InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=8192\0"
			       "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";

static void expect_nothing(struct eh *h)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), -1);
	CHECK(!eh_closed(h));
}

static void text_req(struct eh *h, uint32_t itt, uint32_t cmdsn, uint32_t ttt, const void *data, uint32_t len)
{
	struct bhs b = {0};
	b.opcode = OP_TEXT_REQ;
	b.final = true;
	b.itt = itt;
	b.text.ttt = ttt;
	b.text.cmdsn = cmdsn;
	b.text.expstatsn = S;
	eh_send(h, &b, data, len);
}

static void check_text_rsp(const struct eh_pdu *p, uint32_t itt, bool final, uint32_t statsn, uint32_t expcmdsn)
{
	CHECK_EQ(p->b.opcode, OP_TEXT_RESP);
	CHECK_EQ(p->b.itt, itt);
	CHECK_EQ(p->b.final, final);
	CHECK_EQ(p->b.text.cont, !final);
	CHECK_EQ(p->b.text.statsn, statsn);
	CHECK_EQ(p->b.text.expcmdsn, expcmdsn);
	CHECK_EQ(p->b.text.maxcmdsn, expcmdsn + DEPTH - 1);
	/* A target that has more to say gives a TTT to ask for it with (RFC 7143 11.11.4). */
	CHECK(final ? p->b.text.ttt == RESERVED_TAG : p->b.text.ttt != RESERVED_TAG);
}

static void check_send_targets(const struct eh_pdu *p)
{
	struct text_list k = eh_keys(p);
	CHECK_EQ(k.n, 2);
	CHECK_STR(text_get(&k, "TargetName"), EH_TARGET);
	const char *addr = text_get(&k, "TargetAddress");
	CHECK(addr && strncmp(addr, "127.0.0.1:", 10) == 0);
	CHECK(addr && strlen(addr) > 2 && strcmp(addr + strlen(addr) - 2, ",1") == 0);
	text_clear(&k);
}

/* A Reject's data segment is the whole header of the PDU it rejects (RFC 7143 11.17). */
static void check_reject_carries(const struct eh_pdu *p, uint8_t opcode, uint32_t itt)
{
	CHECK_EQ(p->len, BHS_LEN);
	CHECK(p->data != NULL);
	if (!p->data || p->len != BHS_LEN)
		return;
	CHECK_EQ(p->data[0] & 0x3f, opcode);
	uint32_t got = (uint32_t)p->data[16] << 24 | (uint32_t)p->data[17] << 16 | (uint32_t)p->data[18] << 8 | p->data[19];
	CHECK_EQ(got, itt);
}

static void text_part(struct eh *h, uint32_t itt, uint32_t cmdsn, uint32_t ttt, bool cont, const void *data,
		      uint32_t len)
{
	struct bhs b = {0};
	b.opcode = OP_TEXT_REQ;
	b.final = !cont;
	b.text.cont = cont;
	b.itt = itt;
	b.text.ttt = ttt;
	b.text.cmdsn = cmdsn;
	b.text.expstatsn = S;
	eh_send(h, &b, data, len);
}

/* The target's empty answer to a part sent with C=1: F=0, C=0 and a fresh TTT to continue with. */
static uint32_t expect_text_more(struct eh *h, uint32_t itt)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_TEXT_RESP);
	CHECK_EQ(p.b.itt, itt);
	CHECK(!p.b.final);
	CHECK(!p.b.text.cont);
	CHECK(p.b.text.ttt != RESERVED_TAG);
	CHECK_EQ(p.len, 0);
	uint32_t ttt = p.b.text.ttt;
	eh_pdu_free(&p);
	return ttt;
}

static void test_continued_text_request(void)
{
	printf("text: a request continued with C=1 is completed by the part sent with the TTT the target gave\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_small));
	text_part(h, 0x30, C, RESERVED_TAG, true, "SendT", 5);
	uint32_t ttt = expect_text_more(h, 0x30);
	static const char rest[] = "argets=All";
	text_part(h, 0x30, C + 1, ttt, false, EH_KEYS(rest));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_text_rsp(&p, 0x30, true, S + 1, C + 2);
	check_send_targets(&p);
	eh_pdu_free(&p);
	expect_nothing(h);

	printf("text: a new request (TTT 0xffffffff) drops a partial one instead of appending to it\n");
	text_part(h, 0x31, C + 2, RESERVED_TAG, true, "X-org.example.partial=", 22);
	(void)expect_text_more(h, 0x31);
	static const char st[] = "SendTargets=All";
	text_part(h, 0x32, C + 3, RESERVED_TAG, false, EH_KEYS(st));
	CHECK_EQ(eh_recv(h, &p), 0);
	check_text_rsp(&p, 0x32, true, S + 3, C + 4);
	check_send_targets(&p);
	eh_pdu_free(&p);

	printf("text: after a Reject the partial request is gone; its TTT no longer continues it\n");
	text_part(h, 0x33, C + 4, RESERVED_TAG, true, "SendT", 5);
	ttt = expect_text_more(h, 0x33);
	text_part(h, 0x34, C + 5, 0x4444, false, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_INVALID_PDU_FIELD);
	check_reject_carries(&p, OP_TEXT_REQ, 0x34);
	eh_pdu_free(&p);
	text_part(h, 0x33, C + 6, ttt, false, EH_KEYS(rest));
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	check_reject_carries(&p, OP_TEXT_REQ, 0x33);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_free(h);
}

static void test_send_targets(void)
{
	printf("text: SendTargets=All in a normal session names the target and its portal with the group tag\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_small));
	static const char st[] = "SendTargets=All";
	text_req(h, 0x10, C, RESERVED_TAG, EH_KEYS(st));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_text_rsp(&p, 0x10, true, S, C + 1);
	check_send_targets(&p);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_free(h);
}

static void test_long_text_answer(void)
{
	printf("text: an answer longer than MaxRecvDataSegmentLength continues with C=1 and a TTT the initiator"
	       " copies to ask for the rest\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_small));
	char req[1024];
	uint32_t n = 0;
	for (int i = 0; i < 30; i++)
		n += (uint32_t)sprintf(req + n, "X-org.example.key%02d=v", i) + 1;
	text_req(h, 0x20, C, RESERVED_TAG, req, n);
	struct sbuf all = {0};
	uint32_t sn = 0;
	for (int part = 0; part < 10; part++) {
		struct eh_pdu p;
		CHECK_EQ(eh_recv(h, &p), 0);
		bool last = p.b.final;
		check_text_rsp(&p, 0x20, last, S + sn, C + 1 + sn);
		CHECK(last ? p.len <= 512 : p.len == 512);
		sbuf_append(&all, p.data, p.len);
		uint32_t ttt = p.b.text.ttt;
		eh_pdu_free(&p);
		sn++;
		if (last)
			break;
		expect_nothing(h);
		text_req(h, 0x20, C + sn, ttt, NULL, 0);
	}
	CHECK_EQ(sn, 2); /* 30 * 34 bytes of "X-org.example.keyNN=NotUnderstood": 512 + 508 */
	struct eh_pdu whole = {.data = (uint8_t *)all.data, .len = (uint32_t)all.len};
	struct text_list k = eh_keys(&whole);
	CHECK_EQ(k.n, 30);
	CHECK_STR(text_get(&k, "X-org.example.key00"), "NotUnderstood");
	CHECK_STR(text_get(&k, "X-org.example.key29"), "NotUnderstood");
	text_clear(&k);
	sbuf_free(&all);

	printf("text: asking for more with a TTT the target did not give is rejected (invalid PDU field)\n");
	text_req(h, 0x21, C + 2, 0x4444, NULL, 0);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_INVALID_PDU_FIELD);
	CHECK_EQ(p.b.reject.statsn, S + 2);
	CHECK_EQ(p.b.reject.expcmdsn, C + 3);
	check_reject_carries(&p, OP_TEXT_REQ, 0x21);
	eh_pdu_free(&p);
	eh_free(h);
}

/* READ(10) of one block with this EDTL; checks the single Data-In and its residual. */
static void read_residual(struct eh *h, uint32_t itt, uint32_t cmdsn, uint32_t edtl, uint32_t statsn)
{
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, false, 0, 1);
	eh_scsi_cmd(h, itt, cmdsn, false, true, true, false, edtl, cdb, NULL, 0);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_DATA_IN);
	CHECK_EQ(p.b.itt, itt);
	CHECK(p.b.final);
	CHECK(p.b.data_in.status_present);
	CHECK_EQ(p.b.data_in.status, 0);
	CHECK_EQ(p.b.data_in.statsn, statsn);
	CHECK_EQ(p.len, edtl < 512 ? edtl : 512);
	CHECK_EQ(p.b.data_in.underflow, edtl > 512);
	CHECK_EQ(p.b.data_in.overflow, edtl < 512);
	CHECK_EQ(p.b.data_in.residual, edtl > 512 ? edtl - 512 : 512 - edtl);
	eh_pdu_free(&p);
}

static void test_nop_echo_bound(void)
{
	printf("nop: ping data longer than the initiator's MaxRecvDataSegmentLength comes back cut to it\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_small));
	uint8_t ping[1024];
	for (size_t i = 0; i < sizeof(ping); i++)
		ping[i] = (uint8_t)i;
	eh_nop_out(h, 0x38, C, false, ping, sizeof(ping));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_IN);
	CHECK_EQ(p.b.itt, 0x38);
	CHECK_EQ(p.b.nop_in.statsn, S);
	CHECK_EQ(p.len, 512);
	CHECK(p.data && memcmp(p.data, ping, 512) == 0);
	eh_pdu_free(&p);
	eh_free(h);
}

static void test_read_residuals(void)
{
	printf("read: EDTL above the transfer -> U bit and the residual in the Data-In carrying status;"
	       " below -> O bit, data cut at EDTL\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_small));
	read_residual(h, 0x30, C, 1024, S);
	read_residual(h, 0x31, C + 1, 256, S + 1);
	read_residual(h, 0x32, C + 2, 512, S + 2);
	eh_free(h);
}

static void test_rejects(void)
{
	printf("reject: SNACK at ERL 0 and an unknown opcode -> Reject 0x05 carrying the offending header\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_small));
	uint8_t raw[BHS_LEN] = {0};
	raw[0] = OP_SNACK;
	raw[1] = 0x80;
	raw[16] = 0xab; /* ITT */
	eh_send_raw(h, raw, sizeof(raw));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK(p.b.final);
	CHECK_EQ(p.b.itt, RESERVED_TAG);
	CHECK_EQ(p.b.reject.reason, REJECT_CMD_NOT_SUPPORTED);
	CHECK_EQ(p.b.reject.statsn, S);
	CHECK_EQ(p.b.reject.expcmdsn, C);
	CHECK_EQ(p.b.reject.maxcmdsn, C + DEPTH - 1);
	CHECK_EQ(p.len, BHS_LEN);
	CHECK(p.data && memcmp(p.data, raw, BHS_LEN) == 0);
	eh_pdu_free(&p);
	raw[0] = 0x1c; /* no such initiator opcode */
	eh_send_raw(h, raw, sizeof(raw));
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_CMD_NOT_SUPPORTED);
	CHECK_EQ(p.b.reject.statsn, S + 1);
	CHECK(p.data && p.len == BHS_LEN && memcmp(p.data, raw, BHS_LEN) == 0);
	eh_pdu_free(&p);
	/* The connection goes on. */
	eh_tur(h, 0x40, C, false);
	eh_expect_status(h, 0x40, 0, S + 2, C + 1, C + DEPTH);

	printf("reject: a NOP-Out with an ITT and a TTT other than 0xffffffff -> Reject carrying its header\n");
	struct bhs b = {0};
	b.opcode = OP_NOP_OUT;
	b.immediate = true;
	b.final = true;
	b.itt = 0x41;
	b.nop_out.ttt = 0x1234;
	b.nop_out.cmdsn = C + 1;
	eh_send(h, &b, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_PROTOCOL_ERROR);
	check_reject_carries(&p, OP_NOP_OUT, 0x41);
	eh_pdu_free(&p);

	printf("reject: a Logout with an unknown reason code -> Reject carrying its header\n");
	eh_logout(h, 0x42, C + 1, true, 7, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	check_reject_carries(&p, OP_LOGOUT_REQ, 0x42);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_free(h);
}

static void expect_logout_rsp(struct eh *h, uint32_t itt, uint8_t response, uint32_t statsn, uint32_t expcmdsn)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGOUT_RESP);
	CHECK(p.b.final);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.logout_rsp.response, response);
	CHECK_EQ(p.b.logout_rsp.statsn, statsn);
	CHECK_EQ(p.b.logout_rsp.expcmdsn, expcmdsn);
	CHECK_EQ(p.b.logout_rsp.maxcmdsn, expcmdsn + DEPTH - 1);
	CHECK_EQ(p.b.logout_rsp.time2wait, 0);
	CHECK_EQ(p.b.logout_rsp.time2retain, 0);
	eh_pdu_free(&p);
}

static void test_logout(void)
{
	printf("logout: an unknown CID -> response 1 (CID not found) and the session goes on\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_small));
	eh_logout(h, 0x50, C, false, LOGOUT_CLOSE_CONNECTION, 9);
	expect_logout_rsp(h, 0x50, 1, S, C + 1);
	CHECK(!eh_closed(h));
	printf("logout: connection recovery at ERL 0 -> response 2 (recovery not supported)\n");
	eh_logout(h, 0x51, C + 1, false, LOGOUT_REMOVE_FOR_RECOVERY, 1);
	expect_logout_rsp(h, 0x51, 2, S + 1, C + 2);
	CHECK(!eh_closed(h));
	printf("logout: close the session -> response 0, then the target closes the connection\n");
	eh_logout(h, 0x52, C + 2, false, LOGOUT_CLOSE_SESSION, 0);
	expect_logout_rsp(h, 0x52, 0, S + 2, C + 3);
	CHECK(eh_closed(h));
	eh_free(h);

	printf("logout: close this connection by its CID -> response 0 and the close\n");
	h = eh_start(NULL, EH_KEYS(op_small));
	eh_logout(h, 0x53, C, false, LOGOUT_CLOSE_CONNECTION, 1);
	expect_logout_rsp(h, 0x53, 0, S, C + 1);
	CHECK(eh_closed(h));
	eh_free(h);
}

static void test_discovery(void)
{
	printf("discovery: a discovery session logs in without TargetName and answers SendTargets=All\n");
	struct eh *h = eh_new(NULL);
	static const char keys[] = "InitiatorName=" EH_INITIATOR "\0SessionType=Discovery\0AuthMethod=None";
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, false, 5, 90, EH_KEYS(keys));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGIN_RESP);
	CHECK_EQ(p.b.login.status_class, 0);
	CHECK(p.b.final);
	CHECK_EQ(p.b.login.nsg, STAGE_OPERATIONAL);
	CHECK_EQ(p.b.login.statsn, 90);
	struct text_list k = eh_keys(&p);
	CHECK_STR(text_get(&k, "AuthMethod"), "None");
	CHECK(text_get(&k, "TargetPortalGroupTag") == NULL); /* only normal sessions name it */
	text_clear(&k);
	eh_pdu_free(&p);
	static const char op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192";
	eh_login_req(h, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, true, false, 5, 91, EH_KEYS(op));
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGIN_RESP);
	CHECK_EQ(p.b.login.status_class, 0);
	CHECK_EQ(p.b.login.nsg, STAGE_FULL_FEATURE);
	CHECK_EQ(p.b.login.statsn, 91);
	CHECK_EQ(p.b.login.tsih, 1);
	eh_pdu_free(&p);
	static const char st[] = "SendTargets=All";
	struct bhs b = {0};
	b.opcode = OP_TEXT_REQ;
	b.final = true;
	b.itt = 0x60;
	b.text.ttt = RESERVED_TAG;
	b.text.cmdsn = 5;
	eh_send(h, &b, EH_KEYS(st));
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_TEXT_RESP);
	CHECK_EQ(p.b.itt, 0x60);
	CHECK(p.b.final);
	CHECK_EQ(p.b.text.statsn, 92);
	CHECK_EQ(p.b.text.expcmdsn, 6);
	check_send_targets(&p);
	eh_pdu_free(&p);

	printf("discovery: a SCSI command in a discovery session is rejected (protocol error)\n");
	uint8_t cdb[16] = {0};
	eh_scsi_cmd(h, 0x61, 6, false, true, false, false, 0, cdb, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_PROTOCOL_ERROR);
	CHECK_EQ(p.b.reject.statsn, 93);
	check_reject_carries(&p, OP_SCSI_CMD, 0x61);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_free(h);
}

static const char op_digests[] = "HeaderDigest=CRC32C,None\0DataDigest=CRC32C,None\0MaxRecvDataSegmentLength=8192\0"
				 "InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=8192\0"
				 "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";
static const struct eh_opts crc_target = {.target_params = "HeaderDigest=CRC32C,None\0DataDigest=CRC32C,None\0\0"};

/* A session with both digests; the next CmdSN C, the next StatSN S. */
static struct eh *start_digests(void)
{
	struct eh *h = eh_new(&crc_target);
	struct text_list k = {0};
	CHECK_EQ(eh_login(h, EH_KEYS(op_digests), &k), 1);
	CHECK_STR(text_get(&k, "HeaderDigest"), "CRC32C");
	CHECK_STR(text_get(&k, "DataDigest"), "CRC32C");
	text_clear(&k);
	/* From the first PDU after the last Login Response on (RFC 7143 13.1). */
	eh_set_digests(h, true, true);
	eh_clear_unit_attention(h, 0xfff0, EH_CMDSN0);
	return h;
}

static void test_digests(void)
{
	printf("digests: CRC32C negotiated; commands, data and answers carry correct digests both ways\n");
	struct eh *h = start_digests();
	uint8_t block[1024], cdb[16];
	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = (uint8_t)(i * 13u + 5u);
	eh_cdb_rw10(cdb, true, 4, 2);
	eh_scsi_cmd(h, 0x70, C, false, true, false, true, 1024, cdb, block, 1024);
	eh_expect_status(h, 0x70, 0, S, C + 1, C + DEPTH);
	eh_cdb_rw10(cdb, false, 4, 2);
	eh_scsi_cmd(h, 0x71, C + 1, false, true, true, false, 1024, cdb, NULL, 0);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_DATA_IN);
	CHECK_EQ(p.len, 1024);
	CHECK(p.data && memcmp(p.data, block, 1024) == 0);
	CHECK_EQ(p.b.data_in.statsn, S + 1);
	eh_pdu_free(&p);

	printf("digests: a NOP-Out with a wrong data digest -> Reject 0x02 with its header, the PDU dropped\n");
	struct bhs b = {0};
	b.opcode = OP_NOP_OUT;
	b.immediate = true;
	b.final = true;
	b.itt = 0x72;
	b.nop_out.ttt = RESERVED_TAG;
	b.nop_out.cmdsn = C + 2;
	eh_send_bad_digest(h, &b, "ping", 4, false, true);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_DATA_DIGEST);
	CHECK_EQ(p.b.reject.statsn, S + 2);
	uint8_t raw[BHS_LEN];
	bhs_encode(&b, raw);
	CHECK(p.data && p.len == BHS_LEN && memcmp(p.data, raw, BHS_LEN) == 0);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_tur(h, 0x73, C + 2, false);
	eh_expect_status(h, 0x73, 0, S + 3, C + 3, C + 2 + DEPTH);

	printf("digests: a wrong header digest ends the connection (no framing to trust at ERL 0)\n");
	eh_cdb_rw10(cdb, false, 0, 1);
	memset(&b, 0, sizeof(b));
	b.opcode = OP_SCSI_CMD;
	b.final = true;
	b.itt = 0x74;
	b.cmd.read = true;
	b.cmd.edtl = 512;
	b.cmd.cmdsn = C + 3;
	memcpy(b.cmd.cdb, cdb, 16);
	eh_send_bad_digest(h, &b, NULL, 0, true, false);
	CHECK_EQ(eh_recv(h, &p), -1);
	CHECK(eh_closed(h));
	eh_free(h);

	printf("digests: a SCSI write whose immediate data has a wrong digest -> Reject 0x02 with its header,"
	       " then the close\n");
	h = start_digests();
	eh_cdb_rw10(cdb, true, 4, 1);
	memset(&b, 0, sizeof(b));
	b.opcode = OP_SCSI_CMD;
	b.final = true;
	b.itt = 0x75;
	b.cmd.write = true;
	b.cmd.edtl = 512;
	b.cmd.cmdsn = C;
	memcpy(b.cmd.cdb, cdb, 16);
	eh_send_bad_digest(h, &b, block, 512, false, true);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_DATA_DIGEST);
	check_reject_carries(&p, OP_SCSI_CMD, 0x75);
	eh_pdu_free(&p);
	CHECK(eh_closed(h));
	eh_free(h);
}

int main(void)
{
	test_send_targets();
	test_long_text_answer();
	test_continued_text_request();
	test_read_residuals();
	test_nop_echo_bound();
	test_rejects();
	test_logout();
	test_discovery();
	test_digests();
	TEST_MAIN_END();
}
