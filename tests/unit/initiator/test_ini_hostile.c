/*
 * libisthmus against a hostile target: short reads answered GOOD, residuals that lie, Data-In out
 * of order or with a status but no F bit, overflow, R2Ts asking twice for the same data, endless
 * Text and Login continuations, NOP-In pings never read back, windows acknowledging commands
 * never sent. Each either ends in a clear error or hands the caller zeros, never stale memory.
 */
#include <pthread.h>
#include <signal.h>

#include "fake_target.h"

#define STALE 0xab /* what the caller's buffer held before the command */

/* A Data-In of len bytes at offset, with the status when status >= 0. */
static void data_in(struct fake *f, uint32_t itt, uint32_t datasn, uint32_t offset, const uint8_t *d, uint32_t len,
		    int status, bool under, bool over, uint32_t residual)
{
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	b.data_in.ttt = RESERVED_TAG;
	b.data_in.datasn = datasn;
	b.data_in.offset = offset;
	if (status >= 0) {
		b.final = true;
		b.data_in.status_present = true;
		b.data_in.status = (uint8_t)status;
		b.data_in.underflow = under;
		b.data_in.overflow = over;
		b.data_in.residual = residual;
		b.data_in.statsn = f->statsn++;
		f->expcmdsn++;
	}
	set_window(f, &b.data_in.expcmdsn, &b.data_in.maxcmdsn);
	fsend(f, &b, d, len);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static uint8_t pattern[8192];

static void test_short_read_is_zero_filled(void)
{
	printf("a READ answered GOOD with half its data: the other half is zeros, transferred says so\n");
	struct fake f;
	fake_logged_in(&f);
	static uint8_t buf[8192];
	memset(buf, STALE, sizeof(buf));
	struct io_result io;
	uint32_t itt = start_command(&f, ISM_DIR_READ, buf, sizeof(buf), &io);
	data_in(&f, itt, 0, 0, pattern, 4096, -1, false, false, 0);
	send_status(&f, itt, 0, NULL, 0); /* GOOD, no residual: a lie */
	pump(&f);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_OK);
	CHECK_EQ(io.r.status, 0);
	CHECK_EQ(io.r.transferred, 4096);
	CHECK(io.r.underflow);
	CHECK_EQ(io.r.residual, 4096);
	CHECK(memcmp(buf, pattern, 4096) == 0);
	CHECK(all_zero(buf + 4096, 4096));

	printf("a READ answered GOOD with no Data-In at all: all zeros, nothing transferred\n");
	memset(buf, STALE, sizeof(buf));
	itt = start_command(&f, ISM_DIR_READ, buf, sizeof(buf), &io);
	send_status(&f, itt, 0, NULL, 0);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_OK);
	CHECK_EQ(io.r.transferred, 0);
	CHECK(io.r.underflow);
	CHECK(all_zero(buf, sizeof(buf)));

	printf("an underflow residual smaller than the gap: the bytes never sent are zeros all the same\n");
	memset(buf, STALE, sizeof(buf));
	itt = start_command(&f, ISM_DIR_READ, buf, sizeof(buf), &io);
	data_in(&f, itt, 0, 0, pattern, 2048, 0, true, false, 512); /* claims 7680 bytes, sent 2048 */
	pump(&f);
	CHECK(io.done && io.r.error == ISM_OK);
	CHECK_EQ(io.r.transferred, 2048);
	CHECK_EQ(io.r.residual, 8192 - 2048);
	CHECK(all_zero(buf + 2048, 8192 - 2048));

	printf("an underflow residual larger than the gap: only what the target vouches for counts\n");
	memset(buf, STALE, sizeof(buf));
	itt = start_command(&f, ISM_DIR_READ, buf, sizeof(buf), &io);
	data_in(&f, itt, 0, 0, pattern, 4096, -1, false, false, 0);
	data_in(&f, itt, 1, 4096, pattern + 4096, 4096, 0, true, false, 6000);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_OK);
	CHECK_EQ(io.r.transferred, 8192 - 6000);
	CHECK(memcmp(buf, pattern, 8192 - 6000) == 0);
	CHECK(all_zero(buf + 8192 - 6000, 6000));

	printf("a residual overflow ends the command with an error\n");
	itt = start_command(&f, ISM_DIR_READ, buf, sizeof(buf), &io);
	data_in(&f, itt, 0, 0, pattern, 8192, 0, false, true, 4096);
	pump(&f);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_ERR_TARGET);
	CHECK(io.r.overflow);
	expect_error(&f, "residual overflow of 4096 bytes");
	CHECK(ism_session_logged_in(f.s));

	fake_teardown(&f);
}

/* The blocking helper runs its own loop: the target answers from a thread. */
struct short_reader {
	struct fake *f;
};

static void *short_read_target(void *arg)
{
	struct short_reader *r = arg;
	struct pdu p;
	if (frecv(r->f, &p) < 0)
		return NULL;
	uint32_t itt = p.b.itt;
	pdu_free(&p);
	data_in(r->f, itt, 0, 0, pattern, 1024, 0, false, false, 0);
	return NULL;
}

static void test_sync_short_read(void)
{
	printf("the blocking read helper fails a short read instead of returning zeros as data\n");
	struct fake f;
	fake_logged_in(&f);
	static uint8_t buf[4096];
	struct short_reader r = {&f};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, short_read_target, &r), 0);
	CHECK_EQ(ism_read16(f.s, 0, 0, 8, 512, buf), -1);
	pthread_join(th, NULL);
	expect_error(&f, "read of 4096 bytes: the target answered GOOD after 1024 bytes");
	fake_teardown(&f);
}

/*
 * Each case: a hostile answer to a READ of 8192 bytes that must fail the connection. With blamed,
 * the READ fails with ISM_ERR_PROTOCOL (its answer broke the protocol) while another READ in
 * flight on the connection gets ISM_ERR_TRANSPORT (it only went down with it).
 */
static void evil_read(const char *what, void (*fn)(struct fake *f, uint32_t itt), bool blamed, const char *want)
{
	printf("%s: the connection fails (\"%s\")\n", what, want);
	struct fake f;
	fake_logged_in(&f);
	static uint8_t buf[8192], other_buf[4096];
	memset(buf, STALE, sizeof(buf));
	struct io_result io, other;
	uint32_t itt = start_command(&f, ISM_DIR_READ, buf, sizeof(buf), &io);
	start_command(&f, ISM_DIR_READ, other_buf, sizeof(other_buf), &other);
	fn(&f, itt);
	pump(&f);
	CHECK(io.done && other.done);
	CHECK_EQ(io.r.error, blamed ? ISM_ERR_PROTOCOL : ISM_ERR_TRANSPORT);
	CHECK_EQ(other.r.error, ISM_ERR_TRANSPORT);
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_FAILED);
	expect_error(&f, want);
	fake_teardown(&f);
}

static void gap_in_data(struct fake *f, uint32_t itt)
{
	/* the first PDU skips the start of the buffer: those bytes would stay stale */
	data_in(f, itt, 0, 4096, pattern, 4096, 0, false, false, 0);
}

static void data_twice(struct fake *f, uint32_t itt)
{
	data_in(f, itt, 0, 0, pattern, 4096, -1, false, false, 0);
	data_in(f, itt, 1, 0, pattern, 4096, 0, false, false, 0);
}

static void status_without_final(struct fake *f, uint32_t itt)
{
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.itt = itt;
	b.data_in.status_present = true;
	b.data_in.statsn = f->statsn++;
	set_window(f, &b.data_in.expcmdsn, &b.data_in.maxcmdsn);
	fsend(f, &b, pattern, 8192);
}

static void over_and_under(struct fake *f, uint32_t itt)
{
	data_in(f, itt, 0, 0, pattern, 8192, 0, true, true, 10);
}

static void data_in_past_edtl(struct fake *f, uint32_t itt)
{
	data_in(f, itt, 0, 0, pattern, 8192, -1, false, false, 0);
	data_in(f, itt, 1, 8192, pattern, 512, 0, false, false, 0);
}

static void datasn_gap(struct fake *f, uint32_t itt)
{
	data_in(f, itt, 0, 0, pattern, 4096, -1, false, false, 0);
	data_in(f, itt, 2, 4096, pattern, 4096, 0, false, false, 0);
}

static void sense_too_long(struct fake *f, uint32_t itt)
{
	uint8_t d[20] = {0xff, 0xff, 0x70};
	send_raw_sense(f, itt, d, sizeof(d));
}

/* ---- writes ---- */

static const char r2t_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
			     "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=8192\0FirstBurstLength=8192\0"
			     "MaxOutstandingR2T=1";

static void test_r2t_abuse(void)
{
	static uint8_t wbuf[16384];
	struct io_result io;
	struct fake f;

	printf("an R2T asking again for data already asked for: the connection fails\n");
	fake_logged_in_with(&f, r2t_op, sizeof(r2t_op));
	uint32_t itt = start_command(&f, ISM_DIR_WRITE, wbuf, sizeof(wbuf), &io);
	send_r2t(&f, itt, 0x10, 0, 0, 8192);
	pump(&f);
	CHECK_EQ(read_data_out(&f, 0x10), 8192);
	send_r2t(&f, itt, 0x11, 1, 4096, 8192);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_ERR_PROTOCOL);
	expect_error(&f, "asks again for data before offset 8192");
	fake_teardown(&f);

	printf("an R2T past the Expected Data Transfer Length, and one over MaxBurstLength\n");
	fake_logged_in_with(&f, r2t_op, sizeof(r2t_op));
	itt = start_command(&f, ISM_DIR_WRITE, wbuf, sizeof(wbuf), &io);
	send_r2t(&f, itt, 0x10, 0, 12288, 8192);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_ERR_PROTOCOL);
	expect_error(&f, "outside the 16384 bytes of the write");
	fake_teardown(&f);
	fake_logged_in_with(&f, r2t_op, sizeof(r2t_op));
	itt = start_command(&f, ISM_DIR_WRITE, wbuf, sizeof(wbuf), &io);
	send_r2t(&f, itt, 0x10, 0, 0, 16384);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_ERR_PROTOCOL);
	expect_error(&f, "more than MaxBurstLength 8192");
	fake_teardown(&f);

	printf("GOOD status for a write of which only half was asked for: transferred says half\n");
	fake_logged_in_with(&f, r2t_op, sizeof(r2t_op));
	itt = start_command(&f, ISM_DIR_WRITE, wbuf, sizeof(wbuf), &io);
	send_r2t(&f, itt, 0x10, 0, 0, 8192);
	pump(&f);
	CHECK_EQ(read_data_out(&f, 0x10), 8192);
	send_status(&f, itt, 0, NULL, 0);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_OK && io.r.status == 0);
	CHECK_EQ(io.r.transferred, 8192);
	CHECK(io.r.underflow);

	printf("Data-In for a write: the connection fails\n");
	itt = start_command(&f, ISM_DIR_WRITE, wbuf, sizeof(wbuf), &io);
	data_in(&f, itt, 0, 0, NULL, 0, 0, false, false, 0);
	pump(&f);
	CHECK(io.done && io.r.error == ISM_ERR_PROTOCOL);
	expect_error(&f, "which is not a read");
	fake_teardown(&f);
}

/* ---- storms from a thread: the target end writes while the session runs ---- */

struct storm {
	struct fake *f;
	int kind;
	unsigned answered; /* requests the target answered */
	volatile bool stop;
};

enum { STORM_TEXT, STORM_PINGS, STORM_LOGIN_CONT };

static void *storm_target(void *arg)
{
	struct storm *st = arg;
	struct fake *f = st->f;
	if (st->kind == STORM_PINGS) {
		/* pings, never reading the answers */
		for (unsigned i = 0; i < 200000 && !st->stop; i++) {
			struct bhs b = {0};
			uint8_t raw[BHS_LEN];
			b.opcode = OP_NOP_IN;
			b.final = true;
			b.itt = RESERVED_TAG;
			b.nop_in.ttt = 0x1000 + i;
			b.nop_in.statsn = f->statsn;
			set_window(f, &b.nop_in.expcmdsn, &b.nop_in.maxcmdsn);
			bhs_encode(&b, raw);
			if (send(f->fd, raw, BHS_LEN, MSG_NOSIGNAL) != BHS_LEN)
				break;
			st->answered++;
		}
		return NULL;
	}
	while (!st->stop) {
		struct pdu p;
		if (frecv(f, &p) < 0)
			break;
		struct bhs b = {0};
		if (st->kind == STORM_TEXT) {
			/* "more to come", forever, with nothing in it */
			b.opcode = OP_TEXT_RESP;
			b.final = false;
			b.itt = p.b.itt;
			b.text.ttt = 0x77;
			b.text.statsn = f->statsn++;
			set_window(f, &b.text.expcmdsn, &b.text.maxcmdsn);
		} else {
			/* login text that keeps continuing (C bit) */
			b.opcode = OP_LOGIN_RESP;
			b.login.cont = true;
			b.login.csg = p.b.login.csg;
			memcpy(b.login.isid, p.b.login.isid, 6);
			b.itt = p.b.itt;
			b.login.statsn = f->statsn++;
			b.login.expcmdsn = f->expcmdsn;
			b.login.maxcmdsn = f->expcmdsn + 8;
		}
		pdu_free(&p);
		uint8_t raw[BHS_LEN];
		b.data_len = st->kind == STORM_LOGIN_CONT ? 4 : 0;
		bhs_encode(&b, raw);
		if (send(f->fd, raw, BHS_LEN, MSG_NOSIGNAL) != BHS_LEN)
			break;
		if (st->kind == STORM_LOGIN_CONT && send(f->fd, "Ab=c", 4, MSG_NOSIGNAL) != 4)
			break;
		st->answered++;
	}
	return NULL;
}

static void on_disc(struct ism_session *s, int status, struct ism_discovery *d, void *priv)
{
	(void)s;
	int *st = priv;
	*st = status == ISM_OK ? 1 : 2;
	ism_discovery_free(d);
}

static void test_endless_text(void)
{
	printf("SendTargets answered by empty non-final Text Responses without end: a clear error\n");
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	cfg.session_type = ISM_SESSION_DISCOVERY;
	cfg.target_name = NULL;
	fake_setup(&f, &cfg);
	struct login_result lr;
	struct pdu p;
	login_begin(&f, &lr, &p);
	static const char ops[] = "AuthMethod=None\0HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192";
	login_answer(&f, &p, ops, sizeof(ops), true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	pump(&f);
	CHECK(lr.done && lr.status == ISM_OK);
	int result = 0;
	CHECK_EQ(ism_discovery_async(f.s, on_disc, &result), 0);
	struct storm st = {.f = &f, .kind = STORM_TEXT};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, storm_target, &st), 0);
	bool done = false;
	uint64_t t0 = ism_now_ms();
	while (!result && ism_now_ms() - t0 < 20000) {
		run_for(&f, &done, 50);
	}
	st.stop = true;
	shutdown(f.fd, SHUT_RDWR);
	pthread_join(th, NULL);
	CHECK_EQ(result, 2);
	printf("  ended after %u Text Responses in %llu ms\n", st.answered, (unsigned long long)(ism_now_ms() - t0));
	CHECK(st.answered <= ISM_TEXT_MAX_EXCHANGES + 1);
	expect_error(&f, "not complete after 1024 Text Responses");
	fake_teardown(&f);
}

static void test_endless_login_continuation(void)
{
	printf("login response text continued (C bit) without end: a clear error\n");
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	fake_setup(&f, &cfg);
	struct login_result lr = {0};
	CHECK_EQ(ism_attach_fd_async(f.s, f.ifd, true, on_login, &lr), 0);
	struct storm st = {.f = &f, .kind = STORM_LOGIN_CONT};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, storm_target, &st), 0);
	run_for(&f, &lr.done, 10000);
	st.stop = true;
	shutdown(f.fd, SHUT_RDWR);
	pthread_join(th, NULL);
	CHECK(lr.done);
	CHECK_EQ(lr.status, ISM_ERR_LOGIN);
	printf("  ended after %u login responses\n", st.answered);
	expect_error(&f, "login response text still continues (C bit)");
	fake_teardown(&f);

	printf("a login response with both the C and T bits: refused\n");
	struct pdu p;
	fake_login_started(&f, &lr, &p);
	struct bhs b = {0};
	b.opcode = OP_LOGIN_RESP;
	b.final = true;
	b.login.cont = true;
	b.login.nsg = STAGE_OPERATIONAL;
	memcpy(b.login.isid, p.b.login.isid, 6);
	b.itt = p.b.itt;
	b.login.statsn = f.statsn++;
	pdu_free(&p);
	fsend(&f, &b, "AuthMethod=None", 16);
	pump(&f);
	CHECK(lr.done && lr.status != ISM_OK);
	expect_error(&f, "both T and C bits");
	fake_teardown(&f);
}

static void test_ping_storm(void)
{
	printf("NOP-In pings sent without reading the answers: the connection fails, memory stays bounded\n");
	struct fake f;
	fake_logged_in(&f);
	struct storm st = {.f = &f, .kind = STORM_PINGS};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, storm_target, &st), 0);
	bool never = false;
	uint64_t t0 = ism_now_ms();
	while (ism_session_logged_in(f.s) && ism_now_ms() - t0 < 20000)
		run_for(&f, &never, 50);
	st.stop = true;
	shutdown(f.fd, SHUT_RDWR);
	pthread_join(th, NULL);
	CHECK(!ism_session_logged_in(f.s));
	printf("  failed after %u pings\n", st.answered);
	expect_error(&f, "pings without reading the answers");
	fake_teardown(&f);
}

static void test_window_from_the_future(void)
{
	printf("an ExpCmdSN acknowledging commands never sent is not taken as the window\n");
	struct fake f;
	fake_logged_in(&f);
	struct ism_session_info before, after;
	ism_session_get_info(f.s, &before);
	struct bhs b = {0};
	b.opcode = OP_NOP_IN;
	b.final = true;
	b.itt = RESERVED_TAG;
	b.nop_in.ttt = RESERVED_TAG;
	b.nop_in.statsn = f.statsn;
	b.nop_in.expcmdsn = before.cmdsn + 1000;
	b.nop_in.maxcmdsn = before.cmdsn + 2000;
	fsend(&f, &b, NULL, 0);
	pump(&f);
	ism_session_get_info(f.s, &after);
	CHECK_EQ(after.exp_cmdsn, before.exp_cmdsn);
	CHECK_EQ(after.max_cmdsn, before.max_cmdsn);
	CHECK(ism_session_logged_in(f.s));
	fake_teardown(&f);
}

static void test_window_never_opens(void)
{
	printf("a CmdSN window that stays closed: the command times out, the session fails\n");
	struct fake f;
	struct ism_config cfg;
	base_config(&cfg);
	cfg.cmd_timeout_ms = 300;
	fake_setup(&f, &cfg);
	f.window = 0; /* MaxCmdSN = ExpCmdSN - 1: closed from the login on */
	CHECK_EQ(do_login(&f, default_op, sizeof(default_op), false), ISM_OK);
	uint8_t cdb[16];
	size_t cl = ism_cdb_test_unit_ready(cdb);
	struct io_result io = {0};
	uint64_t t0 = ism_now_ms();
	CHECK(ism_scsi_async(f.s, 0, cdb, cl, ISM_DIR_NONE, NULL, 0, on_io, &io) != NULL);
	int to = ism_session_timeout_ms(f.s);
	CHECK(to > 0 && to <= 300);
	run_for(&f, &io.done, 3000);
	uint64_t took = ism_now_ms() - t0;
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_ERR_TIMEOUT);
	CHECK(took >= 300 && took < 2000);
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_FAILED);
	expect_error(&f, "kept the CmdSN window closed for 300 ms");
	struct pdu p;
	CHECK_EQ(frecv(&f, &p), -1); /* the command never went out; the connection was closed */
	fake_teardown(&f);
}

static void test_tsih(void)
{
	printf("TSIH 0 in the final login response, and another TSIH for an added connection: refused\n");
	struct fake f;
	struct login_result lr;
	struct pdu p;
	fake_login_started(&f, &lr, &p);
	struct bhs b = {0};
	b.opcode = OP_LOGIN_RESP;
	b.final = true;
	b.login.nsg = STAGE_FULL_FEATURE;
	memcpy(b.login.isid, p.b.login.isid, 6);
	b.login.tsih = 0;
	b.itt = p.b.itt;
	b.login.statsn = f.statsn++;
	b.login.expcmdsn = 1;
	b.login.maxcmdsn = 16;
	pdu_free(&p);
	static const char keys[] = "AuthMethod=None";
	fsend(&f, &b, keys, sizeof(keys));
	pump(&f);
	CHECK(lr.done && lr.status == ISM_ERR_LOGIN);
	expect_error(&f, "TSIH 0");
	fake_teardown(&f);

	fake_logged_in(&f);
	struct fake g;
	attach_second(&f, &g, &lr);
	CHECK_EQ(frecv(&g, &p), 0);
	CHECK_EQ(p.b.login.tsih, 0x1234);
	login_answer(&g, &p, keys, sizeof(keys), true, STAGE_FULL_FEATURE, 0); /* answers TSIH 0x1234 */
	pdu_free(&p);
	pump(&f);
	CHECK(lr.done && lr.status == ISM_OK);
	struct fake h;
	attach_second(&f, &h, &lr);
	CHECK_EQ(frecv(&h, &p), 0);
	memset(&b, 0, sizeof(b));
	b.opcode = OP_LOGIN_RESP;
	b.final = true;
	b.login.nsg = STAGE_FULL_FEATURE;
	memcpy(b.login.isid, p.b.login.isid, 6);
	b.login.tsih = 0x4321; /* not the session's */
	b.itt = p.b.itt;
	b.login.statsn = 7;
	pdu_free(&p);
	fsend(&h, &b, keys, sizeof(keys));
	pump(&f);
	CHECK(lr.done && lr.status == ISM_ERR_LOGIN);
	expect_error(&f, "TSIH 17185, session has 4660");
	CHECK(ism_session_logged_in(f.s)); /* the session and its other connections go on */
	close(g.fd);
	close(h.fd);
	fake_teardown(&f);
}

static void test_async_odd(void)
{
	printf("Async Messages with odd events and parameters: one logout for repeated requests\n");
	struct fake f;
	fake_logged_in(&f);
	uint8_t sense[40] = {0, 18, 0x70, 0, 6};
	uint8_t events[] = {ASYNC_SCSI_EVENT, ASYNC_NEGOTIATION_REQUEST, 5, 0xf8, 0xff, ASYNC_LOGOUT_REQUEST,
			    ASYNC_LOGOUT_REQUEST};
	for (size_t i = 0; i < sizeof(events); i++) {
		struct bhs b = {0};
		b.opcode = OP_ASYNC_MSG;
		b.final = true;
		b.itt = RESERVED_TAG;
		b.async.event = events[i];
		b.async.param1 = 0xffff;
		b.async.param2 = 0xffff;
		b.async.param3 = 0xffff;
		b.async.statsn = f.statsn + 1000; /* a wild StatSN: not ours to check here */
		set_window(&f, &b.async.expcmdsn, &b.async.maxcmdsn);
		fsend(&f, &b, sense, i % 2 ? sizeof(sense) : 0);
	}
	pump(&f);
	struct pdu p;
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGOUT_REQ);
	pdu_free(&p);
	struct pollfd pf = {f.fd, POLLIN, 0};
	CHECK_EQ(poll(&pf, 1, 100), 0); /* no second logout */
	fake_teardown(&f);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 13 + 1);
	test_short_read_is_zero_filled();
	test_sync_short_read();
	evil_read("Data-In skipping the start of the buffer", gap_in_data, true, "at offset 4096, expected 0");
	evil_read("Data-In for the same bytes twice", data_twice, true, "at offset 0, expected 4096");
	evil_read("Data-In with a status but no F bit", status_without_final, false, "S bit but without F bit");
	evil_read("both residual overflow and underflow", over_and_under, true, "both residual overflow and underflow");
	evil_read("Data-In past the Expected Data Transfer Length", data_in_past_edtl, true, "past the expected length");
	evil_read("a gap in DataSN", datasn_gap, true, "DataSN 2 out of order");
	evil_read("SenseLength beyond the segment", sense_too_long, true, "SenseLength 65535 exceeds");
	test_r2t_abuse();
	test_endless_text();
	test_endless_login_continuation();
	test_ping_storm();
	test_window_from_the_future();
	test_window_never_opens();
	test_tsih();
	test_async_odd();
	TEST_MAIN_END();
}
