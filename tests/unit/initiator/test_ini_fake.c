/*
 * libisthmus against a scripted fake target over a socketpair: login and negotiation, reads with
 * phase collapse, writes with R2T, the CmdSN window, NOP-In pings, async logout requests, and
 * every malformed input turning into a clear error (never a crash).
 */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fake_target.h"

static void test_login_and_read(void)
{
	struct fake f;
	fake_logged_in(&f);
	CHECK(ism_session_logged_in(f.s));
	struct ism_session_info info;
	ism_session_get_info(f.s, &info);
	CHECK_EQ(info.tsih, 0x1234);
	CHECK_EQ(info.peer_max_recv_dsl, 4096);
	CHECK_EQ(info.max_burst_length, 16384);
	CHECK(info.initial_r2t);
	CHECK(!info.immediate_data);
	CHECK_EQ(info.tpgt, 1);
	struct ism_conn_info ci[2];
	CHECK_EQ(ism_session_connection_info(f.s, ci, 2), 1);
	CHECK_EQ(ci[0].cid, 0);
	CHECK_EQ(ci[0].state, ISM_CONN_FULL_FEATURE);
	CHECK(!ci[0].draining && !ci[0].header_digest && !ci[0].data_digest);
	CHECK_EQ(ci[0].peer_max_recv_dsl, 4096);
	CHECK_STR(ci[0].remote_address, ""); /* a socketpair has no IP address */
	CHECK(ci[0].bytes_sent > 0 && ci[0].bytes_received > 0);
	CHECK_EQ(ci[0].commands, 0);
	uint64_t sent_before = ci[0].bytes_sent;

	/* READ of 6000 bytes: two Data-In, the second with status (phase collapse) and underflow. */
	uint8_t buf[8192];
	memset(buf, 0xee, sizeof(buf));
	uint8_t cdb[16];
	size_t cl = ism_cdb_rw10(cdb, false, 0, 16);
	struct io_result io = {0};
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf, 8192, on_io, &io) != NULL);
	pump(&f);
	struct pdu p;
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	CHECK(p.b.cmd.read && !p.b.cmd.write);
	CHECK_EQ(p.b.cmd.edtl, 8192);
	CHECK_EQ(p.b.cmd.cmdsn, 1);
	CHECK_EQ(p.b.cmd.expstatsn, f.statsn);
	CHECK_EQ(ism_session_connection_info(f.s, ci, 2), 1);
	CHECK_EQ(ci[0].commands, 1);
	CHECK_EQ(ci[0].outstanding, 1);
	CHECK_EQ(ci[0].bytes_sent, sent_before + BHS_LEN);
	uint8_t data[4096];
	for (int i = 0; i < 4096; i++)
		data[i] = (uint8_t)i;
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = p.b.itt;
	b.data_in.datasn = 0;
	b.data_in.offset = 0;
	b.data_in.ttt = RESERVED_TAG;
	set_window(&f, &b.data_in.expcmdsn, &b.data_in.maxcmdsn);
	fsend(&f, &b, data, 4096);
	b.final = true;
	b.data_in.status_present = true;
	b.data_in.underflow = true;
	b.data_in.residual = 8192 - 6000;
	b.data_in.datasn = 1;
	b.data_in.offset = 4096;
	b.data_in.statsn = f.statsn++;
	f.expcmdsn++;
	set_window(&f, &b.data_in.expcmdsn, &b.data_in.maxcmdsn);
	fsend(&f, &b, data, 6000 - 4096);
	pdu_free(&p);
	pump(&f);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_OK);
	CHECK_EQ(io.r.status, 0);
	CHECK(io.r.underflow);
	CHECK_EQ(io.r.residual, 2192);
	CHECK_EQ(io.r.transferred, 6000);
	CHECK(memcmp(buf, data, 4096) == 0);
	CHECK(memcmp(buf + 4096, data, 6000 - 4096) == 0);
	for (int i = 6000; i < 8192; i++)
		CHECK_EQ(buf[i], 0); /* what the residual left out is zeroed, not left as it was */

	/* CHECK CONDITION with sense: readable text. */
	memset(&io, 0, sizeof(io));
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf, 512, on_io, &io) != NULL);
	pump(&f);
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.cmd.cmdsn, 2);
	uint8_t sense[18] = {0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00};
	send_status(&f, p.b.itt, 2, sense, sizeof(sense));
	pdu_free(&p);
	pump(&f);
	CHECK(io.done);
	CHECK_EQ(io.r.status, 2);
	CHECK_EQ(io.r.sense_len, 18);
	char text[200];
	CHECK_STR(ism_result_text(&io.r, text, sizeof(text)),
		  "SCSI status CHECK CONDITION, sense ILLEGAL REQUEST / LBA OUT OF RANGE (0x21/0x00)");

	/* A NOP-In ping from the target is answered with its TTT. */
	memset(&b, 0, sizeof(b));
	b.opcode = OP_NOP_IN;
	b.final = true;
	b.itt = RESERVED_TAG;
	b.nop_in.ttt = 0xabcd;
	b.nop_in.statsn = f.statsn;
	set_window(&f, &b.nop_in.expcmdsn, &b.nop_in.maxcmdsn);
	fsend(&f, &b, NULL, 0);
	pump(&f);
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_OUT);
	CHECK_EQ(p.b.nop_out.ttt, 0xabcd);
	CHECK_EQ(p.b.itt, RESERVED_TAG);
	CHECK(p.b.immediate);
	pdu_free(&p);

	/* Async event 1: the initiator logs out by itself. */
	memset(&b, 0, sizeof(b));
	b.opcode = OP_ASYNC_MSG;
	b.final = true;
	b.itt = RESERVED_TAG;
	b.async.event = ASYNC_LOGOUT_REQUEST;
	b.async.statsn = f.statsn++;
	set_window(&f, &b.async.expcmdsn, &b.async.maxcmdsn);
	fsend(&f, &b, NULL, 0);
	pump(&f);
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGOUT_REQ);
	CHECK_EQ(p.b.logout.reason, LOGOUT_CLOSE_SESSION);
	memset(&b, 0, sizeof(b));
	b.opcode = OP_LOGOUT_RESP;
	b.final = true;
	b.itt = p.b.itt;
	b.logout_rsp.statsn = f.statsn++;
	f.expcmdsn++;
	set_window(&f, &b.logout_rsp.expcmdsn, &b.logout_rsp.maxcmdsn);
	fsend(&f, &b, NULL, 0);
	pdu_free(&p);
	pump(&f);
	CHECK(!ism_session_logged_in(f.s));
	/* a clean logout is no failure, and the caller sees that the session ended (every call) */
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_LOGGED_OUT);
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_LOGGED_OUT);
	CHECK_EQ(ism_session_connection_info(f.s, NULL, 0), 0);
	CHECK_STR(ism_session_error(f.s), "");
	fake_teardown(&f);
}

static void test_write_r2t(void)
{
	struct fake f;
	fake_logged_in(&f);
	static uint8_t wbuf[20000];
	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (uint8_t)(i * 7);
	struct io_result io;
	struct pdu p;
	command_sent(&f, ISM_DIR_WRITE, 40, wbuf, sizeof(wbuf), &io, &p);
	CHECK(p.b.cmd.write);
	CHECK(p.b.final);     /* InitialR2T=Yes: no unsolicited data */
	CHECK_EQ(p.len, 0);   /* ImmediateData=No */
	uint32_t itt = p.b.itt;
	pdu_free(&p);
	/* Two R2Ts (MaxOutstandingR2T=2): 16384 bytes (MaxBurstLength) and the rest. */
	uint8_t got[20000];
	memset(got, 0, sizeof(got));
	uint32_t offs[2] = {0, 16384}, lens[2] = {16384, 20000 - 16384};
	for (int r = 0; r < 2; r++)
		send_r2t(&f, itt, 0x500 + (uint32_t)r, (uint32_t)r, offs[r], lens[r]);
	pump(&f);
	for (int r = 0; r < 2; r++) {
		uint32_t seen = 0, datasn = 0;
		for (;;) {
			CHECK_EQ(frecv(&f, &p), 0);
			CHECK_EQ(p.b.opcode, OP_DATA_OUT);
			CHECK_EQ(p.b.data_out.ttt, 0x500 + (uint32_t)r);
			CHECK_EQ(p.b.data_out.datasn, datasn++);
			CHECK_EQ(p.b.data_out.offset, offs[r] + seen);
			CHECK(p.len <= 4096); /* the target's MaxRecvDataSegmentLength */
			memcpy(got + p.b.data_out.offset, p.data, p.len);
			seen += p.len;
			bool fin = p.b.final;
			pdu_free(&p);
			if (fin)
				break;
		}
		CHECK_EQ(seen, lens[r]);
	}
	CHECK(memcmp(got, wbuf, sizeof(wbuf)) == 0);
	send_status(&f, itt, 0, NULL, 0);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_OK && io.r.status == 0);
	CHECK_EQ(io.r.transferred, 20000);
	fake_teardown(&f);
}

static void test_immediate_unsolicited(void)
{
	struct fake f;
	static const char op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				 "InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=10000";
	fake_logged_in_with(&f, op, sizeof(op));
	static uint8_t wbuf[12288];
	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (uint8_t)(i * 3);
	struct io_result io;
	struct pdu p;
	command_sent(&f, ISM_DIR_WRITE, 24, wbuf, sizeof(wbuf), &io, &p);
	CHECK(!p.b.final);       /* unsolicited Data-Out follow */
	CHECK_EQ(p.len, 4096);   /* immediate data bounded by the target's MRDSL */
	uint32_t itt = p.b.itt;
	pdu_free(&p);
	uint32_t total = 4096;
	for (;;) {
		CHECK_EQ(frecv(&f, &p), 0);
		CHECK_EQ(p.b.opcode, OP_DATA_OUT);
		CHECK_EQ(p.b.data_out.ttt, RESERVED_TAG);
		CHECK_EQ(p.b.data_out.offset, total);
		CHECK(memcmp(p.data, wbuf + total, p.len) == 0);
		total += p.len;
		bool fin = p.b.final;
		pdu_free(&p);
		if (fin)
			break;
	}
	CHECK_EQ(total, 10000); /* FirstBurstLength */
	struct bhs b = {0};
	b.opcode = OP_R2T;
	b.itt = itt;
	b.final = true;
	b.r2t.ttt = 9;
	b.r2t.statsn = f.statsn;
	set_window(&f, &b.r2t.expcmdsn, &b.r2t.maxcmdsn);
	b.r2t.offset = 10000;
	b.r2t.desired_len = sizeof(wbuf) - 10000;
	fsend(&f, &b, NULL, 0);
	pump(&f);
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.data_out.offset, 10000);
	CHECK_EQ(p.len, sizeof(wbuf) - 10000);
	CHECK(p.b.final);
	pdu_free(&p);
	send_status(&f, itt, 0, NULL, 0);
	pump(&f);
	CHECK(io.done && io.r.status == 0);
	fake_teardown(&f);
}

static void test_cmdsn_window(void)
{
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	fake_setup(&f, &cfg);
	f.window = 1; /* MaxCmdSN = ExpCmdSN: one command at a time */
	CHECK_EQ(do_login(&f, default_op, sizeof(default_op), false), ISM_OK);
	uint8_t cdb[16];
	size_t cl = ism_cdb_test_unit_ready(cdb);
	struct io_result io[3] = {0};
	for (int i = 0; i < 3; i++)
		CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io[i]) != NULL);
	pump(&f);
	struct pdu p;
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(frecv(&f, &p), 0);
		CHECK_EQ(p.b.cmd.cmdsn, (uint32_t)(1 + i));
		/* nothing else may be on the wire while the window is closed */
		struct pollfd pf = {f.fd, POLLIN, 0};
		CHECK_EQ(poll(&pf, 1, 50), 0);
		send_status(&f, p.b.itt, 0, NULL, 0);
		pdu_free(&p);
		pump(&f);
		CHECK(io[i].done);
	}
	fake_teardown(&f);
}

/* ---- malformed input: each must end in a clear error, with the command failed ---- */

typedef void (*evil_fn)(struct fake *f, uint32_t itt);

static void evil_truncated(struct fake *f, uint32_t itt)
{
	uint8_t half[30] = {OP_SCSI_RESP};
	(void)itt;
	CHECK(write(f->fd, half, sizeof(half)) == (ssize_t)sizeof(half));
	shutdown(f->fd, SHUT_WR);
}

static void evil_truncated_data(struct fake *f, uint32_t itt)
{
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	b.data_len = 1000;
	uint8_t raw[BHS_LEN];
	bhs_encode(&b, raw);
	CHECK(write(f->fd, raw, BHS_LEN) == BHS_LEN);
	CHECK(write(f->fd, raw, 10) == 10);
	shutdown(f->fd, SHUT_WR);
}

static void evil_statsn(struct fake *f, uint32_t itt)
{
	f->statsn += 5;
	send_status(f, itt, 0, NULL, 0);
}

static void evil_itt(struct fake *f, uint32_t itt)
{
	(void)itt;
	send_status(f, 0x77777, 0, NULL, 0);
}

static void evil_oversized(struct fake *f, uint32_t itt)
{
	static uint8_t big[16384];
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	fsend(f, &b, big, sizeof(big)); /* our MaxRecvDataSegmentLength is 8192 */
}

static void evil_sense_len(struct fake *f, uint32_t itt)
{
	uint8_t d[8] = {0, 200}; /* SenseLength 200 in an 8-byte segment */
	send_raw_sense(f, itt, d, sizeof(d));
}

static void evil_r2t_data(struct fake *f, uint32_t itt)
{
	struct bhs b = {0};
	b.opcode = OP_R2T;
	b.final = true;
	b.itt = itt;
	b.r2t.ttt = 1;
	b.r2t.desired_len = 512;
	fsend(f, &b, "abcd", 4);
}

static void evil_datain_past_end(struct fake *f, uint32_t itt)
{
	uint8_t d[512] = {0};
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	b.data_in.offset = 4000; /* the command asked for 4096 bytes */
	fsend(f, &b, d, sizeof(d));
}

static void evil_hdigest(struct fake *f, uint32_t itt)
{
	struct bhs b = {0};
	b.opcode = OP_SCSI_RESP;
	b.final = true;
	b.itt = itt;
	b.rsp.statsn = f->statsn++;
	fsend_raw(f, &b, NULL, 0, 0, BAD_HDIGEST);
}

static void evil_ddigest(struct fake *f, uint32_t itt)
{
	uint8_t d[512] = {1, 2, 3};
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	fsend_raw(f, &b, d, sizeof(d), sizeof(d), BAD_DDIGEST);
}

static void evil_wrong_dsl(struct fake *f, uint32_t itt)
{
	/* DataSegmentLength says 600, only 100 bytes follow, then more headers: framing breaks. */
	uint8_t d[100] = {0};
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	fsend_raw(f, &b, d, sizeof(d), 600, OK);
	shutdown(f->fd, SHUT_WR);
}

static void evil_unknown_opcode(struct fake *f, uint32_t itt)
{
	uint8_t raw[BHS_LEN] = {0x3a};
	put_be32(raw + 16, itt);
	CHECK(write(f->fd, raw, BHS_LEN) == BHS_LEN);
}

static void evil_datasn(struct fake *f, uint32_t itt)
{
	uint8_t d[512] = {0};
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	b.data_in.datasn = 3;
	fsend(f, &b, d, sizeof(d));
}

static void run_evil(const char *name, evil_fn fn, bool digests, const char *want)
{
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	if (digests)
		cfg.header_digest = cfg.data_digest = true;
	fake_setup(&f, &cfg);
	static const char dig[] = "HeaderDigest=CRC32C\0DataDigest=CRC32C\0MaxRecvDataSegmentLength=4096";
	int st = digests ? do_login(&f, dig, sizeof(dig), true) : do_login(&f, default_op, sizeof(default_op), false);
	CHECK_EQ(st, ISM_OK);
	uint8_t buf[4096];
	struct io_result io;
	fn(&f, start_command(&f, ISM_DIR_READ, buf, sizeof(buf), &io));
	pump(&f);
	CHECK(io.done);
	CHECK(io.r.error != ISM_OK);
	CHECK_EQ(ism_session_service(f.s, -1, 0), -1);
	const char *err = ism_session_error(f.s);
	if (!strstr(err, want)) {
		fprintf(stderr, "%s: error \"%s\" lacks \"%s\"\n", name, err, want);
		CHECK(false);
	}
	fake_teardown(&f);
}

/* A login whose operational stage is answered with op_keys fails, the error naming want. */
static void login_refused(const char *op_keys, size_t op_len, const char *want)
{
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	fake_setup(&f, &cfg);
	CHECK_EQ(do_login(&f, op_keys, op_len, false), ISM_ERR_LOGIN);
	expect_error(&f, want);
	fake_teardown(&f);
}

static void test_login_failures(void)
{
	/* authentication failure status */
	struct fake f;
	struct login_result lr;
	struct pdu p;
	fake_login_started(&f, &lr, &p);
	login_answer(&f, &p, NULL, 0, false, 0, LOGIN_AUTH_FAILED);
	pdu_free(&p);
	pump(&f);
	CHECK(lr.done);
	CHECK_EQ(lr.status, ISM_ERR_LOGIN);
	expect_error(&f, "login failed: authentication failure (0x0201)");
	fake_teardown(&f);

	/* a target choosing a digest that was not offered */
	static const char bad[] = "HeaderDigest=CRC32C\0DataDigest=None";
	login_refused(bad, sizeof(bad), "HeaderDigest");

	/* garbage login text */
	static const char junk[] = "NoEqualsSign";
	login_refused(junk, sizeof(junk), "malformed login response");

	/* CHAP: the target picks MD5, the initiator answers, mutual CHAP verification fails */
	struct ism_config cfg;
	base_config(&cfg);
	cfg.chap_user = "alice";
	cfg.chap_secret = "0123456789abcdef";
	cfg.mutual_user = "tgt";
	cfg.mutual_secret = "fedcba9876543210";
	fake_setup(&f, &cfg);
	login_begin(&f, &lr, &p);
	struct text_list k = parse_keys(&p);
	CHECK_STR(text_get(&k, "AuthMethod"), "CHAP");
	text_clear(&k);
	static const char am[] = "AuthMethod=CHAP";
	login_step(&f, &p, am, sizeof(am), false, 0);
	k = parse_keys(&p);
	CHECK(text_get(&k, "CHAP_A") != NULL);
	text_clear(&k);
	static const char ch[] = "CHAP_A=5\0CHAP_I=1\0CHAP_C=0x00112233445566778899aabbccddeeff";
	login_step(&f, &p, ch, sizeof(ch), false, 0);
	k = parse_keys(&p);
	CHECK_STR(text_get(&k, "CHAP_N"), "alice");
	CHECK(text_get(&k, "CHAP_R") != NULL);
	CHECK(text_get(&k, "CHAP_C") != NULL);
	CHECK(p.b.final);
	text_clear(&k);
	static const char resp[] = "CHAP_N=tgt\0CHAP_R=0x00000000000000000000000000000000";
	login_answer(&f, &p, resp, sizeof(resp), true, STAGE_OPERATIONAL, 0);
	pdu_free(&p);
	pump(&f);
	CHECK(lr.done);
	CHECK_EQ(lr.status, ISM_ERR_LOGIN);
	expect_error(&f, "login failed: CHAP");
	fake_teardown(&f);
}

/* ---- MaxOutstandingR2T, the command timeout, keys the target offers on its own ---- */

static void test_max_outstanding_r2t(void)
{
	struct fake f;
	static const char op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				 "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=8192\0FirstBurstLength=8192\0"
				 "MaxOutstandingR2T=1";
	fake_logged_in_with(&f, op, sizeof(op));
	struct ism_session_info info;
	ism_session_get_info(f.s, &info);
	CHECK_EQ(info.max_outstanding_r2t, 1);
	static uint8_t wbuf[16384];

	/* In turn, one R2T after the data of the one before: fine. */
	struct io_result io;
	uint32_t itt = start_command(&f, ISM_DIR_WRITE, wbuf, sizeof(wbuf), &io);
	send_r2t(&f, itt, 0x700, 0, 0, 8192);
	pump(&f);
	CHECK_EQ(read_data_out(&f, 0x700), 8192);
	send_r2t(&f, itt, 0x701, 1, 8192, 8192);
	pump(&f);
	CHECK_EQ(read_data_out(&f, 0x701), 8192);
	send_status(&f, itt, 0, NULL, 0);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_OK && io.r.status == 0);

	/* Two R2Ts at once with MaxOutstandingR2T=1: the connection fails with a clear reason. */
	itt = start_command(&f, ISM_DIR_WRITE, wbuf, sizeof(wbuf), &io);
	uint8_t two[2][BHS_LEN];
	for (int r = 0; r < 2; r++) {
		struct bhs b = r2t_bhs(&f, itt, 0x800 + (uint32_t)r, (uint32_t)r, 8192u * (uint32_t)r, 8192);
		bhs_encode(&b, two[r]);
	}
	CHECK(write(f.fd, two, sizeof(two)) == (ssize_t)sizeof(two)); /* one segment: read in one go */
	pump(&f);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_ERR_PROTOCOL);
	CHECK_EQ(ism_session_service(f.s, -1, 0), -1);
	const char *err = ism_session_error(f.s);
	if (!strstr(err, "MaxOutstandingR2T=1")) {
		fprintf(stderr, "MaxOutstandingR2T: error \"%s\"\n", err);
		CHECK(false);
	}
	fake_teardown(&f);
}


static void test_command_timeout(void)
{
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	cfg.cmd_timeout_ms = 200;
	fake_setup(&f, &cfg);
	CHECK_EQ(do_login(&f, default_op, sizeof(default_op), false), ISM_OK);
	CHECK_EQ(ism_session_timeout_ms(f.s), -1); /* nothing outstanding, no keepalive */
	uint8_t buf[2][4096];
	uint8_t cdb[16];
	size_t cl = ism_cdb_rw10(cdb, false, 0, 8);
	struct io_result io[2] = {0};
	uint64_t t0 = ism_now_ms();
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf[0], 4096, on_io, &io[0]) != NULL);
	int to = ism_session_timeout_ms(f.s);
	CHECK(to > 0 && to <= 200);
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf[1], 4096, on_io, &io[1]) != NULL);
	struct pdu p;
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	pdu_free(&p);
	CHECK_EQ(frecv(&f, &p), 0);
	pdu_free(&p);
	/* the target never answers */
	run_for(&f, &io[0].done, 2000);
	uint64_t took = ism_now_ms() - t0;
	CHECK(io[0].done);
	CHECK_EQ(io[0].r.error, ISM_ERR_TIMEOUT);
	CHECK(took >= 200 && took < 1500);
	CHECK(io[1].done); /* the connection failed: the other command with it */
	CHECK_EQ(io[1].r.error, ISM_ERR_TRANSPORT);
	CHECK_EQ(ism_session_service(f.s, -1, 0), -1);
	const char *err = ism_session_error(f.s);
	if (!strstr(err, "SCSI command 0x28") || !strstr(err, "not answered within 200 ms")) {
		fprintf(stderr, "timeout: error \"%s\"\n", err);
		CHECK(false);
	}
	/* the socket was closed: the target sees end of file */
	char c;
	CHECK(read(f.fd, &c, 1) == 0);
	fake_teardown(&f);

	/* A command answered in time is not affected. */
	base_config(&cfg);
	cfg.cmd_timeout_ms = 200;
	fake_setup(&f, &cfg);
	CHECK_EQ(do_login(&f, default_op, sizeof(default_op), false), ISM_OK);
	memset(io, 0, sizeof(io));
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io[0]) != NULL);
	CHECK_EQ(frecv(&f, &p), 0);
	send_status(&f, p.b.itt, 0, NULL, 0);
	pdu_free(&p);
	run_for(&f, &io[0].done, 1000);
	CHECK(io[0].done && io[0].r.error == ISM_OK);
	bool never = false;
	run_for(&f, &never, 300);
	CHECK(ism_session_logged_in(f.s));
	CHECK_EQ(ism_session_timeout_ms(f.s), -1);
	fake_teardown(&f);
}

static void test_target_offers_keys(void)
{
	struct fake f;
	struct login_result lr;
	struct pdu p;
	fake_login_started(&f, &lr, &p);
	static const char sec[] = "AuthMethod=None";
	login_step(&f, &p, sec, sizeof(sec), true, STAGE_OPERATIONAL);
	CHECK_EQ(p.b.login.csg, STAGE_OPERATIONAL);
	/* answers, plus keys of the target's own: a private one, TaskReporting, and a key
	 * initiators alone may send */
	static const char op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				 "X-org.example.Tuning=7\0TaskReporting=RFC3720,ResponseFence\0"
				 "InitiatorAlias=foo\0SessionType=Normal\0MaxOutstandingR2T=4";
	login_step(&f, &p, op, sizeof(op), false, 0); /* no transit: waits for our answers */
	CHECK(!lr.done);
	CHECK_EQ(p.b.opcode, OP_LOGIN_REQ);
	CHECK_EQ(p.b.login.csg, STAGE_OPERATIONAL);
	CHECK(p.b.final);
	CHECK_EQ(p.b.login.nsg, STAGE_FULL_FEATURE);
	struct text_list k = parse_keys(&p);
	CHECK_STR(text_get(&k, "X-org.example.Tuning"), "NotUnderstood");
	CHECK_STR(text_get(&k, "TaskReporting"), "RFC3720");
	CHECK(!text_has(&k, "MaxOutstandingR2T"));   /* an answer to our offer is not answered */
	CHECK(!text_has(&k, "HeaderDigest"));
	CHECK(!text_has(&k, "InitiatorAlias"));      /* declarations need no answer */
	CHECK(!text_has(&k, "SessionType"));
	text_clear(&k);
	login_answer(&f, &p, NULL, 0, true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	pump(&f);
	CHECK(lr.done);
	CHECK_EQ(lr.status, ISM_OK);
	struct ism_session_info info;
	ism_session_get_info(f.s, &info);
	CHECK_EQ(info.max_outstanding_r2t, 4);
	CHECK_EQ(info.peer_max_recv_dsl, 4096);
	fake_teardown(&f);

	/* A private key alone: answered NotUnderstood, nothing else is sent, the login goes on. */
	fake_login_started(&f, &lr, &p);
	login_step(&f, &p, sec, sizeof(sec), true, STAGE_OPERATIONAL);
	static const char op2[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				  "X-Vendor-Mode=fast";
	login_step(&f, &p, op2, sizeof(op2), false, 0);
	k = parse_keys(&p);
	CHECK_STR(text_get(&k, "X-Vendor-Mode"), "NotUnderstood");
	CHECK_EQ(k.n, 1);
	text_clear(&k);
	login_answer(&f, &p, NULL, 0, true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	pump(&f);
	CHECK(lr.done && lr.status == ISM_OK);
	fake_teardown(&f);
}


/* ------------------------------------------------------------------------------------------ */
/* A second connection over TCP on loopback: its CID in the callback, its addresses */

struct added {
	bool done;
	int status;
	int cid;
};

static void on_added(struct ism_session *s, int status, uint16_t cid, void *priv)
{
	(void)s;
	struct added *a = priv;
	a->done = true;
	a->status = status;
	a->cid = cid;
}

static const char two_conns_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				   "InitialR2T=Yes\0ImmediateData=No\0MaxConnections=3";

static void test_add_connection_cid(void)
{
	struct fake f;
	fake_logged_in_with(&f, two_conns_op, sizeof(two_conns_op));

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK_EQ(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	CHECK_EQ(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
	CHECK_EQ(listen(ls, 1), 0);
	uint16_t port = ntohs(sa.sin_port);
	char portal[64];
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", port);

	struct added a = {0};
	CHECK_EQ(ism_add_connection_async(f.s, portal, on_added, &a), 0);
	pump(&f);
	struct fake g = f; /* the target's end of the new connection */
	g.fd = accept(ls, NULL, NULL);
	CHECK(g.fd >= 0);
	struct timeval tv = {2, 0};
	setsockopt(g.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	g.statsn = 500;
	struct ism_conn_info ci[3];
	CHECK_EQ(ism_session_connection_info(f.s, ci, 3), 2);
	CHECK_EQ(ci[1].state, ISM_CONN_LOGIN);
	CHECK_STR(ci[1].portal, portal);

	struct pdu p;
	CHECK_EQ(frecv(&g, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGIN_REQ);
	CHECK_EQ(p.b.login.tsih, 0x1234);
	uint16_t wire_cid = p.b.login.cid;
	static const char sec[] = "AuthMethod=None";
	login_step(&g, &p, sec, sizeof(sec), true, STAGE_OPERATIONAL);
	static const char op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192";
	login_answer(&g, &p, op, sizeof(op), true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	pump(&f);
	CHECK(a.done);
	CHECK_EQ(a.status, ISM_OK);
	CHECK_EQ(a.cid, wire_cid);
	CHECK(a.cid != 0);
	uint16_t cids[3];
	CHECK_EQ(ism_session_connections(f.s, cids, 3), 2);
	CHECK_EQ(cids[1], a.cid);

	CHECK_EQ(ism_session_connection_info(f.s, ci, 3), 2);
	CHECK_EQ(ci[1].cid, a.cid);
	CHECK_EQ(ci[1].state, ISM_CONN_FULL_FEATURE);
	CHECK_STR(ci[1].remote_address, "127.0.0.1");
	CHECK_EQ(ci[1].remote_port, port);
	CHECK_STR(ci[1].local_address, "127.0.0.1");
	CHECK(ci[1].local_port != 0);
	CHECK_EQ(ci[1].peer_max_recv_dsl, 8192);
	CHECK_EQ(ism_session_connection_info(f.s, ci, 1), 2); /* the count, even past max */
	CHECK_EQ(ism_session_connection_info(f.s, NULL, 0), 2);

	/* A refused connection reports its CID too (and the status). */
	close(ls);
	struct added b = {0};
	CHECK_EQ(ism_add_connection_async(f.s, portal, on_added, &b), 0);
	pump(&f);
	CHECK(b.done);
	CHECK(b.status != ISM_OK);
	CHECK(b.cid != a.cid && b.cid != 0);
	CHECK_EQ(ism_session_connections(f.s, NULL, 0), 2);
	close(g.fd);
	fake_teardown(&f);
}

/* ------------------------------------------------------------------------------------------ */
/* ism_session_free from a completion callback */

struct freeing_io {
	struct ism_session *s;
	bool done;
	int error;
	uint8_t status;
	bool free_in_cb;
};

static void on_io_free(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	struct freeing_io *x = priv;
	x->done = true;
	x->error = r->error;
	x->status = r->status;
	if (x->free_in_cb)
		ism_session_free(s);
}

static void test_free_in_callback(void)
{
	struct fake f;
	fake_logged_in(&f);
	uint8_t cdb[16], buf[2][512];
	size_t cl = ism_cdb_rw10(cdb, false, 0, 1);
	struct freeing_io a = {.s = f.s, .free_in_cb = true}, b = {.s = f.s, .free_in_cb = true};
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf[0], 512, on_io_free, &a) != NULL);
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf[1], 512, on_io_free, &b) != NULL);
	struct pdu p1, p2;
	CHECK_EQ(frecv(&f, &p1), 0);
	CHECK_EQ(frecv(&f, &p2), 0);
	send_status(&f, p1.b.itt, 0, NULL, 0); /* the first completes; its callback frees the session */
	pdu_free(&p1);
	pdu_free(&p2);
	struct pollfd pf = {.fd = f.ifd, .events = POLLIN};
	CHECK_EQ(poll(&pf, 1, 2000), 1);
	CHECK_EQ(ism_session_service(f.s, f.ifd, pf.revents), ISM_SERVICE_FAILED);
	f.s = NULL; /* freed at the end of that call */
	CHECK(a.done && a.error == ISM_OK && a.status == 0);
	CHECK(b.done);
	CHECK_EQ(b.error, ISM_ERR_CLOSED); /* ran in the same round; its own free call did nothing */
	fake_teardown(&f);

	/* ism_session_free from outside: the callbacks run before it returns; one calling it again
	 * does nothing. */
	fake_logged_in(&f);
	struct freeing_io c = {.s = f.s, .free_in_cb = true};
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf[0], 512, on_io_free, &c) != NULL);
	ism_session_free(f.s);
	f.s = NULL;
	CHECK(c.done);
	CHECK_EQ(c.error, ISM_ERR_CLOSED);
	fake_teardown(&f);
}

/* ------------------------------------------------------------------------------------------ */
/* ErrorRecoveryLevel 0: a connection lost in full feature phase ends the session */

static const char erl0_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
			      "InitialR2T=Yes\0ImmediateData=No\0MaxConnections=3\0ErrorRecoveryLevel=0\0"
			      "DefaultTime2Wait=3\0DefaultTime2Retain=0";

static void test_conn_loss_ends_session(void)
{
	printf("ERL 0: the loss of one of two connections closes the other and ends the session\n");
	struct fake f;
	fake_logged_in_with(&f, erl0_op, sizeof(erl0_op));
	struct ism_recovery_info ri;
	ism_session_get_recovery_info(f.s, &ri);
	CHECK_EQ(ri.error_recovery_level, 0);
	CHECK_EQ(ri.default_time2wait, 3);
	CHECK_EQ(ri.default_time2retain, 0);
	CHECK(!ri.connection_lost);
	CHECK_EQ(ism_session_lost_connection_info(f.s, NULL, 0), 0);

	/* a second connection over another socketpair */
	struct fake g;
	struct login_result lr;
	attach_second(&f, &g, &lr);
	g.statsn = 500;
	struct pdu p;
	CHECK_EQ(frecv(&g, &p), 0);
	static const char sec[] = "AuthMethod=None";
	login_step(&g, &p, sec, sizeof(sec), true, STAGE_OPERATIONAL);
	static const char op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096";
	login_answer(&g, &p, op, sizeof(op), true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	pump(&f);
	CHECK(lr.done && lr.status == ISM_OK);
	uint16_t cids[3];
	CHECK_EQ(ism_session_connections(f.s, cids, 3), 2);

	/* one command on each connection (round robin) */
	uint8_t cdb[16];
	size_t cl = ism_cdb_test_unit_ready(cdb);
	struct io_result io1 = {0}, io2 = {0};
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io1) != NULL);
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io2) != NULL);
	pump(&f);
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	pdu_free(&p);
	CHECK_EQ(frecv(&g, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	pdu_free(&p);

	/* the second connection goes away: the first is closed with it, both commands fail */
	close(g.fd);
	pump(&f);
	CHECK(io1.done && io2.done);
	CHECK_EQ(io1.r.error, ISM_ERR_TRANSPORT);
	CHECK_EQ(io2.r.error, ISM_ERR_TRANSPORT);
	CHECK(!ism_session_logged_in(f.s));
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_FAILED);
	char c;
	CHECK_EQ(read(f.fd, &c, 1), 0); /* the first connection was closed by the initiator */
	ism_session_get_recovery_info(f.s, &ri);
	CHECK(ri.connection_lost);
	CHECK_EQ(ri.lost_cid, cids[1]);
	CHECK_EQ(ri.closed_with_it, 1);
	CHECK(strstr(ri.reason, "target closed the connection") != NULL);
	struct ism_conn_info ci[4];
	CHECK_EQ(ism_session_lost_connection_info(f.s, ci, 4), 2);
	CHECK_EQ(ci[0].cid, cids[0]);
	CHECK_EQ(ci[0].state, ISM_CONN_CLOSED);
	CHECK_EQ(ci[1].cid, cids[1]);
	CHECK_EQ(ci[1].state, ISM_CONN_FAILED);
	CHECK_EQ(ism_session_connection_info(f.s, NULL, 0), 0);
	fake_teardown(&f);
}

/* ------------------------------------------------------------------------------------------ */
/* The keepalive counts answers, not the target's own pings */

static void test_keepalive_ignores_target_pings(void)
{
	printf("keepalive: a target that keeps pinging but never answers ours is declared dead in time\n");
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	cfg.nop_interval_ms = 100;
	cfg.nop_timeout_ms = 200;
	fake_setup(&f, &cfg);
	CHECK_EQ(do_login(&f, default_op, sizeof(default_op), false), ISM_OK);
	/* Our pings reach the target but its answers never come back (one direction of the path is
	 * dead); the target's own pings still arrive, every 50 ms. */
	uint64_t t0 = ism_now_ms();
	for (uint32_t i = 0; i < 40 && ism_session_logged_in(f.s); i++) {
		struct bhs b = {0};
		b.opcode = OP_NOP_IN;
		b.final = true;
		b.itt = RESERVED_TAG;
		b.nop_in.ttt = 0x100 + i;
		b.nop_in.statsn = f.statsn;
		set_window(&f, &b.nop_in.expcmdsn, &b.nop_in.maxcmdsn);
		fsend(&f, &b, NULL, 0);
		uint64_t until = ism_now_ms() + 50;
		while (ism_now_ms() < until && ism_session_logged_in(f.s))
			pump(&f);
	}
	uint64_t took = ism_now_ms() - t0;
	CHECK(!ism_session_logged_in(f.s));
	CHECK(took <= 100 + 200 + 150);
	const char *err = ism_session_error(f.s);
	if (!strstr(err, "no answer to a NOP-Out ping within 200 ms"))
		fprintf(stderr, "error \"%s\"\n", err);
	CHECK(strstr(err, "no answer to a NOP-Out ping within 200 ms") != NULL);
	fake_teardown(&f);
}

static void on_tmf(struct ism_session *s, int status, void *priv)
{
	(void)s;
	struct io_result *io = priv;
	io->done = true;
	io->r.error = status;
}

/*
 * An immediate LU RESET carries the CmdSN the next command takes: a command sent after it has
 * that CmdSN, was not there when the target reset the LU, and must get its own answer.
 */
static void test_lun_reset_spares_later_command(void)
{
	struct fake f;
	fake_logged_in(&f);
	uint8_t cdb[16], buf[2][512];
	size_t cl = ism_cdb_rw10(cdb, false, 0, 1);
	struct io_result before = {0}, after = {0}, tmf = {0};
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf[0], 512, on_io, &before) != NULL);
	pump(&f);
	struct pdu cmd1, reset, cmd2;
	CHECK_EQ(frecv(&f, &cmd1), 0);
	CHECK_EQ(ism_task_mgmt_async(f.s, ISM_TMF_LUN_RESET, 0, NULL, on_tmf, &tmf), 0);
	pump(&f);
	CHECK_EQ(frecv(&f, &reset), 0);
	CHECK_EQ(reset.b.opcode, OP_TASK_MGMT_REQ);
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_READ, buf[1], 512, on_io, &after) != NULL);
	pump(&f);
	CHECK_EQ(frecv(&f, &cmd2), 0);
	CHECK_EQ(cmd2.b.opcode, OP_SCSI_CMD);
	CHECK_EQ(cmd2.b.cmd.cmdsn, reset.b.tmf.cmdsn);
	printf("LU RESET with CmdSN %u, the command after it with CmdSN %u\n", reset.b.tmf.cmdsn, cmd2.b.cmd.cmdsn);
	send_tmf_response(&f, reset.b.itt, TMF_RSP_COMPLETE);
	run_for(&f, &tmf.done, 1000);
	CHECK(tmf.done && tmf.r.error == ISM_OK);
	CHECK(before.done && before.r.error == ISM_ERR_ABORTED);
	CHECK(!after.done); /* still the target's */
	send_status(&f, cmd2.b.itt, 0, NULL, 0);
	run_for(&f, &after.done, 1000);
	CHECK(after.done && after.r.error == ISM_OK);
	CHECK(ism_session_logged_in(f.s));
	pdu_free(&cmd1);
	pdu_free(&reset);
	pdu_free(&cmd2);
	fake_teardown(&f);
}

int main(void)
{
	test_login_and_read();
	test_write_r2t();
	test_immediate_unsolicited();
	test_cmdsn_window();
	test_login_failures();
	test_max_outstanding_r2t();
	test_command_timeout();
	test_target_offers_keys();
	test_add_connection_cid();
	test_conn_loss_ends_session();
	test_keepalive_ignores_target_pings();
	test_free_in_callback();
	test_lun_reset_spares_later_command();
	run_evil("truncated header", evil_truncated, false, "truncated PDU header");
	run_evil("truncated data", evil_truncated_data, false, "truncated");
	run_evil("wrong StatSN", evil_statsn, false, "SCSI Response with StatSN 107, expected 102");
	run_evil("unexpected ITT", evil_itt, false, "unexpected ITT 0x00077777");
	run_evil("oversized segment", evil_oversized, false, "over our MaxRecvDataSegmentLength 8192");
	run_evil("sense length", evil_sense_len, false, "SenseLength 200 exceeds");
	run_evil("R2T with data", evil_r2t_data, false, "R2T");
	run_evil("Data-In past the end", evil_datain_past_end, false, "past the expected length");
	run_evil("header digest", evil_hdigest, true, "header digest error");
	run_evil("data digest", evil_ddigest, true, "data digest error");
	run_evil("wrong DataSegmentLength", evil_wrong_dsl, false, "truncated");
	run_evil("unknown opcode", evil_unknown_opcode, false, "malformed PDU");
	run_evil("DataSN", evil_datasn, false, "DataSN 3 out of order");
	TEST_MAIN_END();
}
