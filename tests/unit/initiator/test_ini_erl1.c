/*
 * libisthmus at ErrorRecoveryLevel 1 against a scripted target: a command the target never got
 * (dropped for a header digest error) is sent again with its ITT and CmdSN once a NOP-Out written
 * after it is answered with ExpCmdSN still at its CmdSN; one the target acknowledged is never sent
 * twice however slowly it runs; and one lost again and again fails the connection.
 */
#include "fake_target.h"

static const char erl1_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
			      "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=16384\0FirstBurstLength=8192\0"
			      "MaxOutstandingR2T=2\0ErrorRecoveryLevel=1\0MaxConnections=1";

static void erl1_setup(struct fake *f)
{
	struct ism_config cfg;
	base_config(&cfg);
	fake_setup(f, &cfg);
	ism_session_set_error_recovery_level(f->s, 1);
	CHECK_EQ(do_login(f, erl1_op, sizeof(erl1_op), false), ISM_OK);
	CHECK_EQ(f->s->params.error_recovery_level, 1);
}

/* Nothing from the initiator waiting on the target's end. */
static bool quiet(struct fake *f)
{
	struct pollfd p = {.fd = f->fd, .events = POLLIN};
	return poll(&p, 1, 0) == 0;
}

/* Answer the NOP-Out ping p with the given ExpCmdSN. */
static void answer_ping(struct fake *f, const struct pdu *p, uint32_t expcmdsn)
{
	struct bhs b = {0};
	b.opcode = OP_NOP_IN;
	b.final = true;
	b.itt = p->b.itt;
	b.nop_in.ttt = RESERVED_TAG;
	b.nop_in.statsn = f->statsn++;
	b.nop_in.expcmdsn = expcmdsn;
	b.nop_in.maxcmdsn = expcmdsn + f->window - 1;
	fsend(f, &b, NULL, 0);
}

/* The next PDU must be a NOP-Out ping, written about a second after the command. */
static void expect_ping(struct fake *f, struct pdu *p, uint64_t since)
{
	bool never = false;
	run_for(f, &never, 1300);
	CHECK_EQ(frecv(f, p), 0);
	CHECK_EQ(p->b.opcode, OP_NOP_OUT);
	CHECK(p->b.immediate);
	CHECK(p->b.itt != RESERVED_TAG);
	uint64_t waited = ism_now_ms() - since;
	CHECK(waited >= 1000 && waited < 2500);
}

static void test_lost_command_sent_again(void)
{
	printf("ERL 1: a command the target dropped is sent again with its ITT and CmdSN after a ping\n");
	struct fake f;
	erl1_setup(&f);
	uint8_t cdb[16];
	size_t cl = ism_cdb_test_unit_ready(cdb);
	struct io_result io = {0};
	uint64_t t0 = ism_now_ms();
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io) != NULL);
	pump(&f);
	struct pdu cmd, p;
	CHECK_EQ(frecv(&f, &cmd), 0);
	CHECK_EQ(cmd.b.opcode, OP_SCSI_CMD);
	/* The target skipped it: ExpCmdSN stays at its CmdSN. */
	expect_ping(&f, &p, t0);
	answer_ping(&f, &p, cmd.b.cmd.cmdsn);
	pdu_free(&p);
	pump(&f);
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	CHECK_EQ(p.b.itt, cmd.b.itt);
	CHECK_EQ(p.b.cmd.cmdsn, cmd.b.cmd.cmdsn);
	CHECK(memcmp(p.b.cmd.cdb, cmd.b.cmd.cdb, 16) == 0);
	pdu_free(&p);
	f.expcmdsn = cmd.b.cmd.cmdsn;
	send_status(&f, cmd.b.itt, 0, NULL, 0);
	run_for(&f, &io.done, 1000);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_OK);
	CHECK_EQ(f.s->conns[0].cmds_retried, 1);
	uint64_t took = ism_now_ms() - t0;
	printf("    done %llu ms after it was sent\n", (unsigned long long)took);
	CHECK(took < 3000);
	pdu_free(&cmd);
	fake_teardown(&f);
}

static void test_slow_command_not_duplicated(void)
{
	printf("ERL 1: a command the target acknowledged is not sent again, however slowly it runs\n");
	struct fake f;
	erl1_setup(&f);
	uint8_t cdb[16];
	size_t cl = ism_cdb_test_unit_ready(cdb);
	struct io_result io = {0};
	uint64_t t0 = ism_now_ms();
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io) != NULL);
	pump(&f);
	struct pdu cmd, p;
	CHECK_EQ(frecv(&f, &cmd), 0);
	CHECK_EQ(cmd.b.opcode, OP_SCSI_CMD);
	/* The target has it (ExpCmdSN past it) and runs it for three seconds. */
	expect_ping(&f, &p, t0);
	answer_ping(&f, &p, cmd.b.cmd.cmdsn + 1);
	pdu_free(&p);
	bool never = false;
	run_for(&f, &never, 3000);
	CHECK(quiet(&f));
	CHECK(!io.done);
	f.expcmdsn = cmd.b.cmd.cmdsn;
	send_status(&f, cmd.b.itt, 0, NULL, 0);
	run_for(&f, &io.done, 1000);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_OK);
	CHECK_EQ(f.s->conns[0].cmds_retried, 0);
	pdu_free(&cmd);
	fake_teardown(&f);
}

static void test_retries_bounded(void)
{
	printf("ERL 1: a command lost four times fails the connection (three retries)\n");
	struct fake f;
	erl1_setup(&f);
	uint8_t cdb[16];
	size_t cl = ism_cdb_test_unit_ready(cdb);
	struct io_result io = {0};
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io) != NULL);
	pump(&f);
	struct pdu cmd, p;
	CHECK_EQ(frecv(&f, &cmd), 0);
	for (int round = 0; round < 4; round++) {
		expect_ping(&f, &p, ism_now_ms() - 1);
		answer_ping(&f, &p, cmd.b.cmd.cmdsn);
		pdu_free(&p);
		pump(&f);
		if (round == 3)
			break;
		CHECK_EQ(frecv(&f, &p), 0);
		CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
		CHECK_EQ(p.b.cmd.cmdsn, cmd.b.cmd.cmdsn);
		pdu_free(&p);
	}
	run_for(&f, &io.done, 1000);
	CHECK(io.done);
	CHECK(io.r.error != ISM_OK);
	CHECK_EQ(f.s->conns[0].cmds_retried, 3);
	pdu_free(&cmd);
	fake_teardown(&f);
}

int main(void)
{
	test_lost_command_sent_again();
	test_slow_command_not_duplicated();
	test_retries_bounded();
	TEST_MAIN_END();
}
