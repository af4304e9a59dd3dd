/*
 * libisthmus at ErrorRecoveryLevel 1 against a scripted target: a command the target never got
 * (dropped for a header digest error) is sent again with its ITT and CmdSN once a NOP-Out written
 * after it is answered with ExpCmdSN still at its CmdSN; one the target acknowledged is never sent
 * twice however slowly it runs; and one lost again and again fails the connection. An R2T lost to
 * a header digest error, seen as an R2TSN gap, is asked for again with an R2T SNACK and answered.
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

/* The ping that follows a command sent at since, answered with the given ExpCmdSN. */
static void ping_answered(struct fake *f, uint64_t since, uint32_t expcmdsn)
{
	struct pdu p;
	expect_ping(f, &p, since);
	answer_ping(f, &p, expcmdsn);
	pdu_free(&p);
}

/* The target answers cmd GOOD (acknowledging it only now): the command completes without error. */
static void answered_good(struct fake *f, const struct pdu *cmd, struct io_result *io)
{
	f->expcmdsn = cmd->b.cmd.cmdsn;
	send_status(f, cmd->b.itt, 0, NULL, 0);
	run_for(f, &io->done, 1000);
	CHECK(io->done);
	CHECK_EQ(io->r.error, ISM_OK);
}

static void test_lost_command_sent_again(void)
{
	printf("ERL 1: a command the target dropped is sent again with its ITT and CmdSN after a ping\n");
	struct fake f;
	erl1_setup(&f);
	struct io_result io;
	struct pdu cmd, p;
	uint64_t t0 = ism_now_ms();
	command_sent(&f, ISM_DIR_NONE, 0, NULL, 0, &io, &cmd);
	/* The target skipped it: ExpCmdSN stays at its CmdSN. */
	ping_answered(&f, t0, cmd.b.cmd.cmdsn);
	pump(&f);
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	CHECK_EQ(p.b.itt, cmd.b.itt);
	CHECK_EQ(p.b.cmd.cmdsn, cmd.b.cmd.cmdsn);
	CHECK(memcmp(p.b.cmd.cdb, cmd.b.cmd.cdb, 16) == 0);
	pdu_free(&p);
	answered_good(&f, &cmd, &io);
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
	struct io_result io;
	struct pdu cmd;
	uint64_t t0 = ism_now_ms();
	command_sent(&f, ISM_DIR_NONE, 0, NULL, 0, &io, &cmd);
	/* The target has it (ExpCmdSN past it) and runs it for three seconds. */
	ping_answered(&f, t0, cmd.b.cmd.cmdsn + 1);
	bool never = false;
	run_for(&f, &never, 3000);
	CHECK(quiet(&f));
	CHECK(!io.done);
	answered_good(&f, &cmd, &io);
	CHECK_EQ(f.s->conns[0].cmds_retried, 0);
	pdu_free(&cmd);
	fake_teardown(&f);
}

static void test_retries_bounded(void)
{
	printf("ERL 1: a command lost four times fails the connection (three retries)\n");
	struct fake f;
	erl1_setup(&f);
	struct io_result io;
	struct pdu cmd, p;
	command_sent(&f, ISM_DIR_NONE, 0, NULL, 0, &io, &cmd);
	for (int round = 0; round < 4; round++) {
		ping_answered(&f, ism_now_ms() - 1, cmd.b.cmd.cmdsn);
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

static const char erl1_digest_op[] = "HeaderDigest=CRC32C\0DataDigest=CRC32C\0MaxRecvDataSegmentLength=4096\0"
				     "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=8192\0FirstBurstLength=8192\0"
				     "MaxOutstandingR2T=4\0ErrorRecoveryLevel=1\0MaxConnections=1";

static void send_r2t_flags(struct fake *f, uint32_t itt, uint32_t r2tsn, uint32_t off, uint32_t len, int flags)
{
	struct bhs b = r2t_bhs(f, itt, 0x700 + r2tsn, r2tsn, off, len);
	fsend_raw(f, &b, NULL, 0, 0, flags);
}

/* Data-Out until bytes of TTT ttt have come, each checked against buf; other PDUs counted in snacks. */
static void read_data_for(struct fake *f, uint32_t ttt, uint32_t off, uint32_t len, const uint8_t *buf,
			  struct pdu *snack)
{
	uint32_t seen = 0;
	for (int i = 0; i < 16 && seen < len; i++) {
		struct pdu p;
		if (frecv(f, &p) < 0)
			break;
		if (p.b.opcode == OP_SNACK) {
			*snack = p;
			continue;
		}
		CHECK_EQ(p.b.opcode, OP_DATA_OUT);
		CHECK_EQ(p.b.data_out.ttt, ttt);
		CHECK_EQ(p.b.data_out.offset, off + seen);
		CHECK(memcmp(p.data, buf + off + seen, p.len) == 0);
		seen += p.len;
		pdu_free(&p);
	}
	CHECK_EQ(seen, len);
}

static void test_r2t_gap_snack(void)
{
	printf("ERL 1: an R2T lost to a header digest error is asked for again (R2T SNACK) and answered\n");
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	cfg.header_digest = cfg.data_digest = true;
	fake_setup(&f, &cfg);
	ism_session_set_error_recovery_level(f.s, 1);
	CHECK_EQ(do_login(&f, erl1_digest_op, sizeof(erl1_digest_op), true), ISM_OK);
	static uint8_t buf[24576];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13 + (i >> 8));
	struct io_result io;
	struct pdu cmd, snack = {0};
	command_sent(&f, ISM_DIR_WRITE, 48, buf, sizeof(buf), &io, &cmd);
	send_r2t_flags(&f, cmd.b.itt, 0, 0, 8192, OK);
	send_r2t_flags(&f, cmd.b.itt, 1, 8192, 8192, BAD_HDIGEST);
	send_r2t_flags(&f, cmd.b.itt, 2, 16384, 8192, OK);
	pump(&f);
	read_data_for(&f, 0x700, 0, 8192, buf, &snack);
	read_data_for(&f, 0x702, 16384, 8192, buf, &snack);
	CHECK_EQ(snack.b.opcode, OP_SNACK);
	CHECK_EQ(snack.b.snack.type, 0);
	CHECK_EQ(snack.b.itt, cmd.b.itt);
	CHECK_EQ(snack.b.snack.begrun, 1);
	CHECK_EQ(snack.b.snack.runlength, 1);
	pdu_free(&snack);
	CHECK(!io.done);
	/* The target sends R2TSN 1 again as it was. */
	send_r2t_flags(&f, cmd.b.itt, 1, 8192, 8192, OK);
	pump(&f);
	snack.b.opcode = 0;
	read_data_for(&f, 0x701, 8192, 8192, buf, &snack);
	CHECK_EQ(snack.b.opcode, 0);
	answered_good(&f, &cmd, &io);
	CHECK_EQ(f.s->conns[0].state, CONN_FFP);
	pdu_free(&cmd);
	fake_teardown(&f);
}

int main(void)
{
	test_r2t_gap_snack();
	test_lost_command_sent_again();
	test_slow_command_not_duplicated();
	test_retries_bounded();
	TEST_MAIN_END();
}
