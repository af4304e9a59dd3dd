/*
 * The target's command window (RFC 7143 4.2.2) and task management (11.5-11.6) seen from a fake
 * initiator: commands in and out of CmdSN order, outside the window, immediate, the window
 * opening as commands complete, StatSN numbering, ABORT TASK and LOGICAL UNIT RESET, NOP-Out.
 * Sessions have 4 command slots, so the window is [ExpCmdSN, ExpCmdSN + 3] when all are free.
 */
#include <stdio.h>
#include <string.h>

#include "../test.h"
#include "engine_harness.h"

#define C EH_CMDSN1  /* the first CmdSN after eh_start */
#define S EH_STATSN1 /* the first StatSN after eh_start */
#define GOOD 0x00

static const struct eh_opts four = {.max_commands = 4};

/* Writes wait for an R2T: a command holds its slot until its data has come. */
static const char op_r2t[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
			     "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=65536\0FirstBurstLength=16384\0"
			     "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";

static struct eh *start(void) { return eh_start(&four, EH_KEYS(op_r2t)); }

static void expect_nothing(struct eh *h)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), -1);
	CHECK(!eh_closed(h));
}

static void test_in_order(void)
{
	printf("cmdsn: commands in order; StatSN +1 each, ExpCmdSN and MaxCmdSN slide\n");
	struct eh *h = start();
	for (uint32_t i = 0; i < 6; i++) {
		eh_tur(h, 0x10 + i, C + i, false);
		eh_expect_status(h, 0x10 + i, GOOD, S + i, C + i + 1, C + i + 4);
	}
	eh_free(h);
}

static void test_out_of_order(void)
{
	printf("cmdsn: commands ahead of ExpCmdSN are held until the gap fills, then run in CmdSN order\n");
	struct eh *h = start();
	eh_tur(h, 0x22, C + 2, false);
	eh_tur(h, 0x21, C + 1, false);
	expect_nothing(h);
	eh_tur(h, 0x20, C, false);
	/* While two held commands take slots the window cannot grow, but MaxCmdSN never goes back. */
	eh_expect_status(h, 0x20, GOOD, S, C + 1, C + 3);
	eh_expect_status(h, 0x21, GOOD, S + 1, C + 2, C + 4);
	eh_expect_status(h, 0x22, GOOD, S + 2, C + 3, C + 6);
	expect_nothing(h);
	eh_free(h);
}

static void test_held_nop(void)
{
	printf("cmdsn: a NOP-Out ahead of ExpCmdSN waits with a copy of its data and answers in its turn\n");
	struct eh *h = start();
	static const char ping[] = "held ping";
	eh_nop_out(h, 0x26, C + 1, false, ping, (uint32_t)sizeof(ping));
	expect_nothing(h);
	eh_tur(h, 0x25, C, false);
	/* A held NOP takes a slot like a command. */
	eh_expect_status(h, 0x25, GOOD, S, C + 1, C + 3);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_IN);
	CHECK_EQ(p.b.itt, 0x26);
	CHECK_EQ(p.b.nop_in.statsn, S + 1);
	CHECK_EQ(p.b.nop_in.expcmdsn, C + 2);
	CHECK_EQ(p.b.nop_in.maxcmdsn, C + 5);
	CHECK_EQ(p.len, sizeof(ping));
	CHECK(p.data && memcmp(p.data, ping, sizeof(ping)) == 0);
	eh_pdu_free(&p);
	eh_free(h);
}

static void test_outside_window(void)
{
	printf("cmdsn: beyond MaxCmdSN, already used, or far away: dropped without an answer\n");
	struct eh *h = start();
	eh_tur(h, 0x30, C + 4, false);        /* MaxCmdSN is C + 3 */
	eh_tur(h, 0x31, C - 1, false);        /* the unit attention's CmdSN */
	eh_tur(h, 0x32, C + 0x80000000u, false);
	expect_nothing(h);
	for (uint32_t i = 0; i < 4; i++) {
		eh_tur(h, 0x40 + i, C + i, false);
		eh_expect_status(h, 0x40 + i, GOOD, S + i, C + i + 1, C + i + 4);
	}
	/* C + 4 was dropped, not held: nothing ran when the gap in front of it closed. */
	expect_nothing(h);
	eh_tur(h, 0x44, C + 4, false);
	eh_expect_status(h, 0x44, GOOD, S + 4, C + 5, C + 8);
	/* A duplicate of a held CmdSN is dropped; the first one holds the slot. */
	eh_tur(h, 0x46, C + 6, false);
	eh_tur(h, 0x47, C + 6, false);
	expect_nothing(h);
	eh_tur(h, 0x45, C + 5, false);
	eh_expect_status(h, 0x45, GOOD, S + 5, C + 6, C + 8);
	eh_expect_status(h, 0x46, GOOD, S + 6, C + 7, C + 10);
	expect_nothing(h);
	eh_free(h);
}

static void test_immediate(void)
{
	printf("cmdsn: immediate commands and NOP-Outs run at once, carry ExpCmdSN and do not advance it\n");
	struct eh *h = start();
	eh_tur(h, 0x51, C + 1, false); /* held behind C */
	eh_tur(h, 0x50, C, true);
	eh_expect_status(h, 0x50, GOOD, S, C, C + 3);
	eh_nop_out(h, 0x52, C, true, NULL, 0);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_IN);
	CHECK_EQ(p.b.itt, 0x52);
	CHECK_EQ(p.b.nop_in.ttt, RESERVED_TAG);
	CHECK_EQ(p.b.nop_in.statsn, S + 1);
	CHECK_EQ(p.b.nop_in.expcmdsn, C);
	CHECK_EQ(p.b.nop_in.maxcmdsn, C + 3);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_tur(h, 0x53, C, false);
	eh_expect_status(h, 0x53, GOOD, S + 2, C + 1, C + 3);
	eh_expect_status(h, 0x51, GOOD, S + 3, C + 2, C + 5);
	eh_free(h);
}

/* The R2T a WRITE of one block gets: offset 0, 512 bytes; returns its TTT. */
static uint32_t expect_r2t(struct eh *h, uint32_t itt, uint32_t statsn, uint32_t expcmdsn, uint32_t maxcmdsn)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_R2T);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.r2t.r2tsn, 0);
	CHECK_EQ(p.b.r2t.offset, 0);
	CHECK_EQ(p.b.r2t.desired_len, 512);
	CHECK_EQ(p.b.r2t.statsn, statsn); /* the next StatSN, not consumed */
	CHECK_EQ(p.b.r2t.expcmdsn, expcmdsn);
	CHECK_EQ(p.b.r2t.maxcmdsn, maxcmdsn);
	uint32_t ttt = p.b.r2t.ttt;
	CHECK(ttt != RESERVED_TAG);
	eh_pdu_free(&p);
	return ttt;
}

static void test_window_closes_and_opens(void)
{
	printf("cmdsn: writes waiting for data hold their slots; the window closes (MaxCmdSN = ExpCmdSN - 1)"
	       " and opens again as they complete\n");
	struct eh *h = start();
	uint8_t cdb[16], block[512];
	memset(block, 0x5a, sizeof(block));
	uint32_t ttt[4];
	for (uint32_t i = 0; i < 4; i++) {
		eh_cdb_rw10(cdb, true, i, 1);
		eh_scsi_cmd(h, 0x60 + i, C + i, false, true, false, true, 512, cdb, NULL, 0);
		ttt[i] = expect_r2t(h, 0x60 + i, S, C + i + 1, C + 3);
	}
	/* Closed: even the expected CmdSN is refused, silently. */
	eh_tur(h, 0x70, C + 4, false);
	expect_nothing(h);
	eh_nop_out(h, 0x71, C + 4, true, NULL, 0);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_IN);
	CHECK_EQ(p.b.nop_in.statsn, S);
	CHECK_EQ(p.b.nop_in.expcmdsn, C + 4);
	CHECK_EQ(p.b.nop_in.maxcmdsn, C + 3);
	eh_pdu_free(&p);
	/* Each completed write gives its slot back in its own response. */
	eh_data_out(h, 0x60, ttt[0], 0, 0, true, block, 512);
	eh_expect_status(h, 0x60, GOOD, S + 1, C + 4, C + 4);
	eh_tur(h, 0x72, C + 4, false);
	eh_expect_status(h, 0x72, GOOD, S + 2, C + 5, C + 5);
	for (uint32_t i = 1; i < 4; i++) {
		eh_data_out(h, 0x60 + i, ttt[i], 0, 0, true, block, 512);
		eh_expect_status(h, 0x60 + i, GOOD, S + 2 + i, C + 5, C + 5 + i);
	}
	expect_nothing(h);
	eh_free(h);
}

static void test_expstatsn(void)
{
	printf("cmdsn: ExpStatSN acknowledges status; stale or early values do not disturb StatSN numbering\n");
	struct eh *h = start();
	uint8_t cdb[16] = {0};
	struct bhs b = {0};
	b.opcode = OP_SCSI_CMD;
	b.final = true;
	b.itt = 0x80;
	b.cmd.cmdsn = C;
	b.cmd.expstatsn = S; /* acknowledges everything so far */
	memcpy(b.cmd.cdb, cdb, 16);
	eh_send(h, &b, NULL, 0);
	eh_expect_status(h, 0x80, GOOD, S, C + 1, C + 4);
	b.itt = 0x81;
	b.cmd.cmdsn = C + 1;
	b.cmd.expstatsn = S - 2; /* stale: the initiator has not seen the last two */
	eh_send(h, &b, NULL, 0);
	eh_expect_status(h, 0x81, GOOD, S + 1, C + 2, C + 5);
	b.itt = 0x82;
	b.cmd.cmdsn = C + 2;
	b.cmd.expstatsn = S + 100; /* ahead of anything sent */
	eh_send(h, &b, NULL, 0);
	eh_expect_status(h, 0x82, GOOD, S + 2, C + 3, C + 6);
	eh_free(h);
}

static void tmf(struct eh *h, uint32_t itt, uint8_t fn, uint32_t cmdsn, bool immediate, uint32_t rtt, uint32_t refcmdsn,
		uint16_t lun)
{
	struct bhs b = {0};
	b.opcode = OP_TASK_MGMT_REQ;
	b.immediate = immediate;
	b.final = true;
	b.itt = itt;
	b.lun[1] = (uint8_t)lun;
	b.tmf.function = fn;
	b.tmf.rtt = fn == TMF_ABORT_TASK ? rtt : RESERVED_TAG;
	b.tmf.cmdsn = cmdsn;
	b.tmf.refcmdsn = refcmdsn;
	eh_send(h, &b, NULL, 0);
}

static void expect_tmf(struct eh *h, uint32_t itt, uint8_t response, uint32_t statsn, uint32_t expcmdsn,
		       uint32_t maxcmdsn)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_TASK_MGMT_RESP);
	CHECK(p.b.final);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.tmf_rsp.response, response);
	CHECK_EQ(p.b.tmf_rsp.statsn, statsn);
	CHECK_EQ(p.b.tmf_rsp.expcmdsn, expcmdsn);
	CHECK_EQ(p.b.tmf_rsp.maxcmdsn, maxcmdsn);
	CHECK_EQ(p.len, 0);
	eh_pdu_free(&p);
}

static void test_abort_task(void)
{
	printf("tmf: ABORT TASK of a held command: function complete, the command never answered, its CmdSN used\n");
	struct eh *h = start();
	eh_tur(h, 0x91, C + 1, false);
	tmf(h, 0x900, TMF_ABORT_TASK, C + 2, true, 0x91, C + 1, 0);
	expect_tmf(h, 0x900, TMF_RSP_COMPLETE, S, C, C + 3);
	eh_tur(h, 0x90, C, false);
	/* The aborted command's CmdSN counts as received: ExpCmdSN moves past it. */
	eh_expect_status(h, 0x90, GOOD, S + 1, C + 1, C + 4);
	expect_nothing(h);
	eh_tur(h, 0x92, C + 2, false);
	eh_expect_status(h, 0x92, GOOD, S + 2, C + 3, C + 6);
	eh_free(h);

	printf("tmf: ABORT TASK of a write waiting for its Data-Out; the late data is discarded\n");
	h = start();
	uint8_t cdb[16], block[512] = {0};
	eh_cdb_rw10(cdb, true, 0, 1);
	eh_scsi_cmd(h, 0xa0, C, false, true, false, true, 512, cdb, NULL, 0);
	uint32_t ttt = expect_r2t(h, 0xa0, S, C + 1, C + 3);
	tmf(h, 0xa01, TMF_ABORT_TASK, C + 1, true, 0xa0, C, 0);
	expect_tmf(h, 0xa01, TMF_RSP_COMPLETE, S, C + 1, C + 4);
	eh_data_out(h, 0xa0, ttt, 0, 0, true, block, 512);
	expect_nothing(h);
	eh_tur(h, 0xa2, C + 1, false);
	eh_expect_status(h, 0xa2, GOOD, S + 1, C + 2, C + 5);
	eh_free(h);

	printf("tmf: ABORT TASK of an unknown ITT whose RefCmdSN was already answered: task does not exist\n");
	h = start();
	tmf(h, 0xb00, TMF_ABORT_TASK, C, true, 0xdead, C - 1, 0);
	expect_tmf(h, 0xb00, TMF_RSP_NO_TASK, S, C, C + 3);
	/* A non-immediate one, in its CmdSN turn, likewise. */
	tmf(h, 0xb01, TMF_ABORT_TASK, C, false, 0xdead, C - 1, 0);
	expect_tmf(h, 0xb01, TMF_RSP_NO_TASK, S + 1, C + 1, C + 4);
	eh_free(h);

	printf("tmf: ABORT TASK of a command that never arrived, RefCmdSN in the window and below the TMF's"
	       " CmdSN: function complete, the CmdSN counts as received (RFC 7143 11.5.1)\n");
	h = start();
	eh_tur(h, 0xc1, C + 1, false); /* C was lost on the way */
	expect_nothing(h);
	tmf(h, 0xc00, TMF_ABORT_TASK, C + 2, true, 0xc0, C, 0);
	/* The filled hole lets the held command run before the TMF answer goes out. */
	eh_expect_status(h, 0xc1, GOOD, S, C + 2, C + 5);
	expect_tmf(h, 0xc00, TMF_RSP_COMPLETE, S + 1, C + 2, C + 5);
	eh_tur(h, 0xc2, C + 2, false);
	eh_expect_status(h, 0xc2, GOOD, S + 2, C + 3, C + 6);
	eh_free(h);
}

static void test_lun_reset(void)
{
	printf("tmf: LOGICAL UNIT RESET aborts held and data-waiting commands of the LUN\n");
	struct eh *h = start();
	uint8_t cdb[16], block[512] = {0};
	eh_cdb_rw10(cdb, true, 0, 1);
	eh_scsi_cmd(h, 0xd0, C, false, true, false, true, 512, cdb, NULL, 0);
	uint32_t ttt = expect_r2t(h, 0xd0, S, C + 1, C + 3);
	eh_tur(h, 0xd2, C + 2, false); /* held behind C + 1 */
	tmf(h, 0xd01, TMF_LOGICAL_UNIT_RESET, C + 1, false, 0, 0, 0);
	/* The TMF takes C + 1; the held command's turn follows, but it was aborted. */
	expect_tmf(h, 0xd01, TMF_RSP_COMPLETE, S, C + 2, C + 5);
	eh_data_out(h, 0xd0, ttt, 0, 0, true, block, 512);
	expect_nothing(h);
	/* The reset shows as a unit attention, 29h (its ASCQ is the SCSI layer's business). */
	eh_clear_unit_attention(h, 0xd3, C + 3);
	eh_tur(h, 0xd4, C + 4, false);
	eh_expect_status(h, 0xd4, GOOD, S + 2, C + 5, C + 8);

	printf("tmf: LOGICAL UNIT RESET of a LUN that does not exist: 0x02\n");
	tmf(h, 0xd05, TMF_LOGICAL_UNIT_RESET, C + 5, true, 0, 0, 5);
	expect_tmf(h, 0xd05, TMF_RSP_NO_LUN, S + 3, C + 5, C + 8);
	eh_free(h);
}

static void test_nop(void)
{
	printf("nop: a NOP-Out ping is answered by a NOP-In echoing its data; ITT 0xffffffff gets no answer\n");
	struct eh *h = start();
	static const char ping[] = "ping data, 27 bytes long..";
	eh_nop_out(h, 0xe0, C, false, ping, (uint32_t)sizeof(ping));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_IN);
	CHECK(p.b.final);
	CHECK_EQ(p.b.itt, 0xe0);
	CHECK_EQ(p.b.nop_in.ttt, RESERVED_TAG);
	CHECK_EQ(p.b.nop_in.statsn, S);
	CHECK_EQ(p.b.nop_in.expcmdsn, C + 1);
	CHECK_EQ(p.b.nop_in.maxcmdsn, C + 4);
	CHECK_EQ(p.len, sizeof(ping));
	CHECK(p.data && memcmp(p.data, ping, sizeof(ping)) == 0);
	eh_pdu_free(&p);
	eh_nop_out(h, RESERVED_TAG, C + 1, true, NULL, 0);
	expect_nothing(h);
	eh_nop_out(h, 0xe1, C + 1, false, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_IN);
	CHECK_EQ(p.b.itt, 0xe1);
	CHECK_EQ(p.b.nop_in.statsn, S + 1);
	CHECK_EQ(p.b.nop_in.expcmdsn, C + 2);
	CHECK_EQ(p.len, 0);
	eh_pdu_free(&p);
	eh_free(h);
}

static const char op_multi[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
			       "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=65536\0FirstBurstLength=16384\0"
			       "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=2";
/* A joining login names only connection-scoped keys; the session's are settled. */
static const char op_join[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192";
#define S2 0x5000u /* the second connection's first StatSN */

static void test_two_connections(void)
{
	printf("session: a second connection joins by TSIH; CmdSN order holds across connections, StatSN is"
	       " per connection\n");
	struct eh *h = eh_start(&four, EH_KEYS(op_multi));
	unsigned c0 = 0, c1 = eh_connect(h);
	CHECK_EQ(eh_join(h, C, S2, EH_KEYS(op_join)), 1);
	eh_tur(h, 0x111, C + 1, false); /* on the second connection, ahead of C */
	expect_nothing(h);
	eh_use(h, c0);
	eh_tur(h, 0x110, C, false);
	eh_expect_status(h, 0x110, GOOD, S, C + 1, C + 3);
	expect_nothing(h);
	eh_use(h, c1);
	eh_expect_status(h, 0x111, GOOD, S2 + 2, C + 2, C + 5);

	printf("session: a third connection is refused at MaxConnections=2 (0x0206)\n");
	eh_connect(h);
	static const char keys[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET "\0AuthMethod=None";
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, false, C + 2, 0x7000, EH_KEYS(keys));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGIN_RESP);
	CHECK_EQ(p.b.login.status_class << 8 | p.b.login.status_detail, LOGIN_TOO_MANY_CONNECTIONS);
	eh_pdu_free(&p);
	CHECK(eh_closed(h));

	printf("session: a connection that goes away leaves its held CmdSN behind as received\n");
	eh_use(h, c1);
	eh_tur(h, 0x113, C + 3, false); /* held behind C + 2 */
	expect_nothing(h);
	eh_disconnect(h);
	eh_use(h, c0);
	eh_tur(h, 0x112, C + 2, false);
	eh_expect_status(h, 0x112, GOOD, S + 1, C + 3, C + 6);
	expect_nothing(h); /* the gone connection's command does not run */
	eh_tur(h, 0x114, C + 4, false);
	eh_expect_status(h, 0x114, GOOD, S + 2, C + 5, C + 8);
	eh_free(h);

	printf("session: Logout of the other connection by its CID closes that one only\n");
	h = eh_start(&four, EH_KEYS(op_multi));
	c1 = eh_connect(h);
	CHECK_EQ(eh_join(h, C, S2, EH_KEYS(op_join)), 1);
	eh_use(h, c0);
	struct bhs b = {0};
	b.opcode = OP_LOGOUT_REQ;
	b.final = true;
	b.itt = 0x120;
	b.logout.reason = LOGOUT_CLOSE_CONNECTION;
	b.logout.cid = 2;
	b.logout.cmdsn = C;
	eh_send(h, &b, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGOUT_RESP);
	CHECK_EQ(p.b.itt, 0x120);
	CHECK_EQ(p.b.logout_rsp.response, 0);
	CHECK_EQ(p.b.logout_rsp.statsn, S);
	CHECK_EQ(p.b.logout_rsp.expcmdsn, C + 1);
	eh_pdu_free(&p);
	eh_use(h, c1);
	CHECK(eh_closed(h));
	eh_use(h, c0);
	eh_tur(h, 0x121, C + 1, false);
	eh_expect_status(h, 0x121, GOOD, S + 1, C + 2, C + 5);
	eh_free(h);
}

int main(void)
{
	test_in_order();
	test_out_of_order();
	test_held_nop();
	test_outside_window();
	test_immediate();
	test_window_closes_and_opens();
	test_expstatsn();
	test_abort_task();
	test_lun_reset();
	test_nop();
	test_two_connections();
	TEST_MAIN_END();
}
