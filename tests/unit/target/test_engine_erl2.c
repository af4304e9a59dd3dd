/*
 * ErrorRecoveryLevel 2 in the target's engine: the level negotiated follows
 * max-error-recovery-level, Logout "remove the connection for recovery", and TASK REASSIGN of a
 * write that was collecting data on the connection that failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "engine_harness.h"

#define C EH_CMDSN1
#define S2 0x5000u /* the second connection's first StatSN */

static const struct eh_opts level2 = {.max_erl = 2};
static const char op_level2[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
				"InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=16384\0FirstBurstLength=16384\0"
				"MaxOutstandingR2T=1\0ErrorRecoveryLevel=2\0MaxConnections=4\0DefaultTime2Retain=20";
static const char op_join[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192";

static const char *key(const struct text_list *kv, const char *k)
{
	const char *v = text_get(kv, k);
	return v ? v : "";
}

static void expect_nothing(struct eh *h)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), -1);
}

static void check_negotiated(const struct eh_opts *o, const char *erl, const char *retain)
{
	struct eh *h = eh_new(o);
	struct text_list kv = {0};
	CHECK(eh_login(h, EH_KEYS(op_level2), &kv) != 0);
	CHECK_EQ(strcmp(key(&kv, "ErrorRecoveryLevel"), erl), 0);
	if (retain)
		CHECK_EQ(strcmp(key(&kv, "DefaultTime2Retain"), retain), 0);
	text_clear(&kv);
	eh_free(h);
}

static void test_negotiation(void)
{
	printf("erl2: max-error-recovery-level 2 and an initiator offering 2 -> level 2, DefaultTime2Retain 20\n");
	check_negotiated(&level2, "2", "20");
	printf("erl2: an ErrorRecoveryLevel key of 1 offers less than the maximum 2 -> level 1\n");
	struct eh_opts o = {.max_erl = 2, .target_params = "ErrorRecoveryLevel=1\0"};
	check_negotiated(&o, "1", NULL);
	printf("erl2: an ErrorRecoveryLevel key of 2 without max-error-recovery-level -> level 0\n");
	struct eh_opts z = {.target_params = "ErrorRecoveryLevel=2\0"};
	check_negotiated(&z, "0", "0");
}

static void tmf_reassign(struct eh *h, uint32_t itt, uint32_t rtt, uint32_t cmdsn, uint32_t expdatasn)
{
	struct bhs b = {0};
	b.opcode = OP_TASK_MGMT_REQ;
	b.immediate = true;
	b.final = true;
	b.itt = itt;
	b.tmf.function = TMF_TASK_REASSIGN;
	b.tmf.rtt = rtt;
	b.tmf.cmdsn = cmdsn;
	b.tmf.expdatasn = expdatasn;
	eh_send(h, &b, NULL, 0);
}

static void expect_tmf(struct eh *h, uint32_t itt, uint8_t response)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_TASK_MGMT_RESP);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.tmf_rsp.response, response);
	eh_pdu_free(&p);
}

/* The next PDU is an R2T of itt for [off, off + len); returns its TTT. */
static uint32_t expect_r2t(struct eh *h, uint32_t itt, uint32_t off, uint32_t len)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_R2T);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.r2t.offset, off);
	CHECK_EQ(p.b.r2t.desired_len, len);
	uint32_t ttt = p.b.r2t.ttt;
	eh_pdu_free(&p);
	return ttt;
}

static void expect_logout(struct eh *h, uint32_t itt, uint8_t response, uint16_t t2w, uint16_t t2r)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGOUT_RESP);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.logout_rsp.response, response);
	CHECK_EQ(p.b.logout_rsp.time2wait, t2w);
	CHECK_EQ(p.b.logout_rsp.time2retain, t2r);
	eh_pdu_free(&p);
}

static void test_reassign_write(void)
{
	printf("erl2: TASK REASSIGN below level 2 -> allegiance reassignment not supported\n");
	struct eh *h = eh_start(NULL, EH_KEYS(op_level2));
	tmf_reassign(h, 0x30, 0x1234, C, 0);
	expect_tmf(h, 0x30, TMF_RSP_REASSIGN_UNSUPPORTED);
	eh_free(h);

	printf("erl2: a write collecting data on CID 1; CID 2 cannot take it while CID 1 lives (still allegiant)\n");
	h = eh_start(&level2, EH_KEYS(op_level2));
	unsigned c0 = 0, c1 = eh_connect(h);
	CHECK_EQ(eh_join(h, C, S2, EH_KEYS(op_join)), 1);
	eh_use(h, c0);
	uint8_t cdb[16], data[32768];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + 1);
	eh_cdb_rw10(cdb, true, 8, sizeof(data) / 512);
	eh_scsi_cmd(h, 0x40, C, false, true, false, true, sizeof(data), cdb, NULL, 0);
	uint32_t ttt = expect_r2t(h, 0x40, 0, 16384);
	eh_data_out(h, 0x40, ttt, 0, 0, false, data, 8192);
	eh_data_out(h, 0x40, ttt, 1, 8192, true, data + 8192, 8192);
	expect_r2t(h, 0x40, 16384, 16384);
	eh_use(h, c1);
	tmf_reassign(h, 0x41, 0x40, C + 1, 0);
	expect_tmf(h, 0x41, TMF_RSP_TASK_ALLEGIANT);
	tmf_reassign(h, 0x42, 0x999, C + 1, 0);
	expect_tmf(h, 0x42, TMF_RSP_NO_TASK);

	printf("erl2: Logout on CID 2 removes CID 1 for recovery -> response 0, Time2Wait 2, Time2Retain 20\n");
	eh_logout(h, 0x43, C + 1, true, LOGOUT_REMOVE_FOR_RECOVERY, 1);
	expect_logout(h, 0x43, 0, 2, 20);
	eh_use(h, c0);
	CHECK(eh_closed(h));
	eh_use(h, c1);
	printf("erl2: again for the failed CID -> response 0; an unknown CID -> response 1\n");
	eh_logout(h, 0x44, C + 1, true, LOGOUT_REMOVE_FOR_RECOVERY, 1);
	expect_logout(h, 0x44, 0, 2, 20);
	eh_logout(h, 0x45, C + 1, true, LOGOUT_REMOVE_FOR_RECOVERY, 7);
	expect_logout(h, 0x45, 1, 0, 0);

	printf("erl2: TASK REASSIGN on CID 2 -> function complete, an R2T for the 16 KiB that had not come\n");
	tmf_reassign(h, 0x46, 0x40, C + 1, 0);
	expect_tmf(h, 0x46, TMF_RSP_COMPLETE);
	ttt = expect_r2t(h, 0x40, 16384, 16384);
	expect_nothing(h);
	eh_data_out(h, 0x40, ttt, 0, 16384, false, data + 16384, 8192);
	eh_data_out(h, 0x40, ttt, 1, 24576, true, data + 24576, 8192);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_RESP);
	CHECK_EQ(p.b.itt, 0x40);
	CHECK_EQ(p.b.rsp.status, 0);
	eh_pdu_free(&p);

	printf("erl2: the write reads back whole; a second TASK REASSIGN of it -> task does not exist\n");
	eh_cdb_rw10(cdb, false, 8, sizeof(data) / 512);
	eh_scsi_cmd(h, 0x47, C + 1, false, true, true, false, sizeof(data), cdb, NULL, 0);
	uint8_t got[sizeof(data)];
	uint32_t n = 0;
	for (;;) {
		CHECK_EQ(eh_recv(h, &p), 0);
		CHECK_EQ(p.b.opcode, OP_DATA_IN);
		CHECK(n + p.len <= sizeof(got));
		memcpy(got + p.b.data_in.offset, p.data, p.len);
		n += p.len;
		bool last = p.b.data_in.status_present;
		eh_pdu_free(&p);
		if (last)
			break;
	}
	CHECK_EQ(n, sizeof(data));
	CHECK_EQ(memcmp(got, data, sizeof(data)), 0);
	tmf_reassign(h, 0x48, 0x40, C + 2, 0);
	expect_tmf(h, 0x48, TMF_RSP_NO_TASK);
	eh_free(h);
}

int main(void)
{
	test_negotiation();
	test_reassign_write();
	TEST_MAIN_END();
}
