/*
 * ErrorRecoveryLevel 2 in libisthmus (connection recovery) against a scripted fake target on
 * loopback TCP: the replacement connection is a real connect to the fake's listening socket.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "fake_target.h"

static const char erl2_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
			      "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=16384\0FirstBurstLength=8192\0"
			      "MaxOutstandingR2T=2\0MaxConnections=2\0ErrorRecoveryLevel=2\0"
			      "DefaultTime2Wait=0\0DefaultTime2Retain=2";
static const char conn_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096";

struct listener {
	int fd;
	char portal[64];
};

static void listener_open(struct listener *l)
{
	l->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK_EQ(bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	CHECK_EQ(getsockname(l->fd, (struct sockaddr *)&sa, &sl), 0);
	CHECK_EQ(listen(l->fd, 4), 0);
	snprintf(l->portal, sizeof(l->portal), "127.0.0.1:%u", ntohs(sa.sin_port));
}

/* The target's end of the next connection the initiator makes (pumping until it comes). */
static int accept_conn(struct fake *f, struct listener *l)
{
	for (int i = 0; i < 100; i++) {
		struct pollfd p = {.fd = l->fd, .events = POLLIN};
		if (poll(&p, 1, 0) == 1)
			break;
		pump(f);
	}
	struct pollfd p = {.fd = l->fd, .events = POLLIN};
	if (poll(&p, 1, 2000) != 1)
		return -1;
	int fd = accept(l->fd, NULL, NULL);
	struct timeval tv = {2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	pump(f); /* the connect completes, the first login request goes */
	return fd;
}

/* Security then operational stage on f->fd; returns the first request (checked by the caller). */
static void login_exchange(struct fake *f, struct pdu *first, const char *op, size_t oplen)
{
	CHECK_EQ(frecv(f, first), 0);
	CHECK_EQ(first->b.opcode, OP_LOGIN_REQ);
	static const char sec[] = "AuthMethod=None\0TargetPortalGroupTag=1";
	login_answer(f, first, sec, sizeof(sec), true, STAGE_OPERATIONAL, 0);
	pump(f);
	struct pdu p;
	CHECK_EQ(frecv(f, &p), 0);
	CHECK_EQ(p.b.login.csg, STAGE_OPERATIONAL);
	login_answer(f, &p, op, oplen, true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	pump(f);
}

/* A session at ErrorRecoveryLevel 2 logged in over loopback TCP (TSIH 0x1234). */
static void erl2_login(struct fake *f, struct listener *l, const char *op, size_t oplen)
{
	memset(f, 0, sizeof(*f));
	f->statsn = 100;
	f->expcmdsn = 1;
	f->window = 16;
	struct ism_config cfg;
	base_config(&cfg);
	char err[200];
	f->s = ism_session_new(&cfg, err, sizeof(err));
	CHECK(f->s != NULL);
	CHECK_EQ(ism_session_set_error_recovery_level(f->s, 2), 0);
	CHECK_EQ(ism_session_set_error_recovery_level(f->s, 3), -1);
	listener_open(l);
	struct login_result lr = {0};
	CHECK_EQ(ism_connect_async(f->s, l->portal, on_login, &lr), 0);
	f->fd = accept_conn(f, l);
	CHECK(f->fd >= 0);
	struct pdu first;
	CHECK_EQ(frecv(f, &first), 0);
	struct text_list k = parse_keys(&first);
	text_clear(&k);
	static const char sec[] = "AuthMethod=None\0TargetPortalGroupTag=1";
	login_answer(f, &first, sec, sizeof(sec), true, STAGE_OPERATIONAL, 0);
	pdu_free(&first);
	pump(f);
	struct pdu p;
	CHECK_EQ(frecv(f, &p), 0);
	k = parse_keys(&p);
	CHECK_STR(text_get(&k, "ErrorRecoveryLevel"), "2");
	CHECK_STR(text_get(&k, "DefaultTime2Wait"), "0");
	text_clear(&k);
	login_answer(f, &p, op, oplen, true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	pump(f);
	CHECK(lr.done && lr.status == ISM_OK);
	struct ism_recovery_info ri;
	ism_session_get_recovery_info(f->s, &ri);
	CHECK_EQ(ri.error_recovery_level, 2);
}

static void send_data_in(struct fake *f, uint32_t itt, uint32_t datasn, uint32_t off, const uint8_t *d, uint32_t n,
			 bool status)
{
	struct bhs b = {0};
	b.opcode = OP_DATA_IN;
	b.final = status;
	b.itt = itt;
	b.data_in.ttt = RESERVED_TAG;
	b.data_in.datasn = datasn;
	b.data_in.offset = off;
	b.data_in.status_present = status;
	b.data_in.status = 0;
	b.data_in.statsn = status ? f->statsn++ : f->statsn;
	if (status)
		f->expcmdsn++;
	set_window(f, &b.data_in.expcmdsn, &b.data_in.maxcmdsn);
	fsend(f, &b, d, n);
}

/*
 * The connection goes (the target closes it) and the replacement logs in: same TSIH, same CID,
 * ExpStatSN of the old connection. Returns the target's end of the replacement.
 */
static int lose_and_replace(struct fake *f, struct listener *l, uint16_t cid, uint32_t old_expstatsn)
{
	close(f->fd);
	f->fd = -1;
	pump(f);
	CHECK(ism_session_logged_in(f->s));
	CHECK_EQ(ism_session_service(f->s, -1, 0), ISM_SERVICE_OK);
	f->fd = accept_conn(f, l);
	CHECK(f->fd >= 0);
	f->statsn = 300;
	struct pdu first;
	login_exchange(f, &first, conn_op, sizeof(conn_op));
	CHECK_EQ(first.b.login.tsih, 0x1234);
	CHECK_EQ(first.b.login.cid, cid);
	CHECK_EQ(first.b.login.expstatsn, old_expstatsn);
	pdu_free(&first);
	return f->fd;
}

/* Service the session until io is done (2 s at most); its error (1: not done). */
static int wait_io(struct fake *f, struct io_result *io)
{
	uint64_t end = ism_now_ms() + 2000;
	while (!io->done && ism_now_ms() < end)
		pump(f);
	return io->done ? io->r.error : 1;
}

/* One connection recovered with `reassigned` tasks reassigned, both connections up; the end. */
static void check_recovered_two(struct fake *f, struct fake *g, struct listener *l, uint64_t reassigned)
{
	struct ism_conn_recovery_info cr;
	ism_session_get_conn_recovery_info(f->s, &cr);
	CHECK_EQ(cr.connection_recoveries, 1);
	CHECK_EQ(cr.task_reassignments, reassigned);
	CHECK_EQ(ism_session_connections(f->s, NULL, 0), 2);
	close(g->fd);
	close(f->fd);
	close(l->fd);
	ism_session_free(f->s);
}

/*
 * A command the target end t reads: a READ or WRITE of len bytes at LBA 0, or TEST UNIT READY
 * (ISM_DIR_NONE). Returns its ITT (and CmdSN).
 */
static uint32_t cmd_sent(struct fake *f, struct fake *t, struct io_result *io, enum ism_dir dir, uint8_t *buf,
			 uint32_t len, uint32_t *cmdsn)
{
	uint8_t cdb[16];
	size_t cl = dir == ISM_DIR_NONE ? ism_cdb_test_unit_ready(cdb)
					: ism_cdb_rw10(cdb, dir == ISM_DIR_WRITE, 0, (uint16_t)(len / 512));
	CHECK(ism_scsi_async(f->s, 0, cdb, cl, dir, buf, len, on_io, io) != NULL);
	pump(f);
	struct pdu p;
	CHECK_EQ(frecv(t, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	if (cmdsn)
		*cmdsn = p.b.cmd.cmdsn;
	pdu_free(&p);
	return p.b.itt;
}

static uint32_t tur_sent(struct fake *f, struct fake *t, struct io_result *io, uint32_t *cmdsn)
{
	return cmd_sent(f, t, io, ISM_DIR_NONE, NULL, 0, cmdsn);
}

/*
 * The connection of the one command itt is lost and replaced; the replacement's first request,
 * read into *p, must be TASK REASSIGN for it. Returns the CID of the lost connection.
 */
static uint16_t reassign_asked(struct fake *f, struct listener *l, uint32_t itt, struct pdu *p)
{
	uint16_t cids[1];
	ism_session_connections(f->s, cids, 1);
	lose_and_replace(f, l, cids[0], 102);
	CHECK_EQ(frecv(f, p), 0);
	CHECK_EQ(p->b.tmf.function, TMF_TASK_REASSIGN);
	CHECK_EQ(p->b.tmf.rtt, itt);
	return cids[0];
}

/* The end of a test with one connection: the target's end, the listener, the session. */
static void erl2_teardown(struct fake *f, struct listener *l)
{
	close(f->fd);
	close(l->fd);
	ism_session_free(f->s);
}

/* An ERL 2 session logged in with op whose one TEST UNIT READY the target has read. */
static void erl2_tur_outstanding(struct fake *f, struct listener *l, const char *op, size_t oplen,
				 struct io_result *io)
{
	erl2_login(f, l, op, oplen);
	memset(io, 0, sizeof(*io));
	tur_sent(f, f, io, NULL);
}

static void test_read_reassigned(void)
{
	printf("ERL 2: a read half done when its connection is lost goes on over the replacement\n");
	struct fake f;
	struct listener l;
	erl2_login(&f, &l, erl2_op, sizeof(erl2_op));
	uint8_t buf[8192], want[8192];
	for (size_t i = 0; i < sizeof(want); i++)
		want[i] = (uint8_t)(i * 7 + 3);
	memset(buf, 0xee, sizeof(buf));
	struct io_result io = {0};
	uint32_t cmdsn;
	uint32_t itt = cmd_sent(&f, &f, &io, ISM_DIR_READ, buf, sizeof(buf), &cmdsn);
	struct pdu p;
	uint16_t cids[2];
	CHECK_EQ(ism_session_connections(f.s, cids, 2), 1);
	send_data_in(&f, itt, 0, 0, want, 4096, false); /* half of it */
	pump(&f);
	CHECK(!io.done);

	/* lost: the task is kept, the session goes on; a command issued meanwhile waits */
	close(f.fd);
	pump(&f);
	CHECK(!io.done);
	CHECK(ism_session_logged_in(f.s));
	struct ism_conn_info ci[2];
	CHECK_EQ(ism_session_connection_info(f.s, ci, 2), 1);
	CHECK_EQ(ci[0].state, ISM_CONN_RECOVERING);
	CHECK_EQ(ci[0].cid, cids[0]);
	struct ism_conn_recovery_info cr;
	ism_session_get_conn_recovery_info(f.s, &cr);
	CHECK_EQ(cr.recovering, 1);
	uint8_t tur[16];
	size_t tl = ism_cdb_test_unit_ready(tur);
	struct io_result io2 = {0};
	CHECK(ism_scsi_async(f.s, 0, tur, tl, ISM_DIR_NONE, NULL, 0, on_io, &io2) != NULL);

	f.fd = accept_conn(&f, &l);
	CHECK(f.fd >= 0);
	f.statsn = 300;
	struct pdu first;
	login_exchange(&f, &first, conn_op, sizeof(conn_op));
	printf("  replacement login: TSIH 0x%04x CID %u ExpStatSN %u\n", first.b.login.tsih, first.b.login.cid,
	       first.b.login.expstatsn);
	CHECK_EQ(first.b.login.tsih, 0x1234);
	CHECK_EQ(first.b.login.cid, cids[0]);
	CHECK_EQ(first.b.login.expstatsn, 102); /* the leading login's last response had StatSN 101 */
	pdu_free(&first);

	/* TASK REASSIGN first, immediate, ExpDataSN 1: DataSN 0 is in */
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_TASK_MGMT_REQ);
	CHECK(p.b.immediate);
	CHECK_EQ(p.b.tmf.function, TMF_TASK_REASSIGN);
	CHECK_EQ(p.b.tmf.rtt, itt);
	CHECK_EQ(p.b.tmf.expdatasn, 1);
	CHECK_EQ(p.b.tmf.refcmdsn, cmdsn);
	printf("  TASK REASSIGN for ITT 0x%08x with ExpDataSN %u\n", p.b.tmf.rtt, p.b.tmf.expdatasn);
	uint32_t tmf_itt = p.b.itt;
	pdu_free(&p);
	/* then the command queued meanwhile */
	CHECK_EQ(frecv(&f, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	CHECK_EQ(p.b.cmd.cmdsn, cmdsn + 1);
	uint32_t itt2 = p.b.itt;
	pdu_free(&p);
	send_tmf_response(&f, tmf_itt, TMF_RSP_COMPLETE);
	send_data_in(&f, itt, 1, 4096, want + 4096, 4096, true);
	send_status(&f, itt2, 0, NULL, 0);
	uint64_t end = ism_now_ms() + 2000;
	while ((!io.done || !io2.done) && ism_now_ms() < end)
		pump(&f);
	CHECK(io.done && io2.done);
	CHECK_EQ(io.r.error, ISM_OK);
	CHECK_EQ(io.r.transferred, 8192);
	CHECK(memcmp(buf, want, sizeof(want)) == 0);
	CHECK_EQ(io2.r.error, ISM_OK);
	ism_session_get_conn_recovery_info(f.s, &cr);
	printf("  recoveries %llu, reassignments %llu\n", (unsigned long long)cr.connection_recoveries,
	       (unsigned long long)cr.task_reassignments);
	CHECK_EQ(cr.losses, 1);
	CHECK_EQ(cr.connection_recoveries, 1);
	CHECK_EQ(cr.task_reassignments, 1);
	CHECK_EQ(cr.recovering, 0);
	CHECK_EQ(cr.fallbacks, 0);
	CHECK_EQ(ism_session_connection_info(f.s, ci, 2), 1);
	CHECK_EQ(ci[0].state, ISM_CONN_FULL_FEATURE);
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_OK);
	erl2_teardown(&f, &l);
}

static void test_write_reassigned(void)
{
	printf("ERL 2: a write whose connection is lost answers the R2Ts of the replacement from its buffer\n");
	struct fake f;
	struct listener l;
	erl2_login(&f, &l, erl2_op, sizeof(erl2_op));
	uint8_t data[8192];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + 1);
	struct io_result io = {0};
	uint32_t itt = cmd_sent(&f, &f, &io, ISM_DIR_WRITE, data, sizeof(data), NULL);
	struct pdu p;
	send_r2t(&f, itt, 0x77, 0, 0, 4096);
	pump(&f);
	CHECK_EQ(read_data_out(&f, 0x77), 4096);
	reassign_asked(&f, &l, itt, &p);
	CHECK_EQ(p.b.tmf.expdatasn, 0);
	send_tmf_response(&f, p.b.itt, TMF_RSP_COMPLETE);
	pdu_free(&p);
	/* the target lost what came before: it asks for all of it again, then the rest */
	send_r2t(&f, itt, 0x88, 1, 0, 8192);
	pump(&f);
	uint32_t got = 0;
	for (;;) {
		if (frecv(&f, &p) < 0)
			break;
		CHECK_EQ(p.b.opcode, OP_DATA_OUT);
		CHECK_EQ(p.b.data_out.ttt, 0x88);
		CHECK(p.b.data_out.offset + p.len <= sizeof(data));
		CHECK(memcmp(p.data, data + p.b.data_out.offset, p.len) == 0);
		got += p.len;
		bool fin = p.b.final;
		pdu_free(&p);
		if (fin)
			break;
	}
	printf("  %u bytes sent again after the reassignment\n", got);
	CHECK_EQ(got, 8192);
	send_status(&f, itt, 0, NULL, 0);
	CHECK(wait_io(&f, &io) == ISM_OK);
	CHECK_EQ(io.r.transferred, 8192);
	erl2_teardown(&f, &l);
}

static void test_reassign_refused(void)
{
	printf("ERL 2: \"task allegiance reassignment not supported\" fails the session as at level 0\n");
	struct fake f;
	struct listener l;
	erl2_login(&f, &l, erl2_op, sizeof(erl2_op));
	uint8_t buf[8192];
	struct io_result io = {0};
	uint32_t itt = cmd_sent(&f, &f, &io, ISM_DIR_READ, buf, sizeof(buf), NULL);
	struct pdu p;
	uint16_t lost_cid = reassign_asked(&f, &l, itt, &p);
	send_tmf_response(&f, p.b.itt, TMF_RSP_REASSIGN_UNSUPPORTED);
	pdu_free(&p);
	pump(&f);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_ERR_TRANSPORT);
	CHECK(!ism_session_logged_in(f.s));
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_FAILED);
	printf("  session error: %s\n", ism_session_error(f.s));
	CHECK(strstr(ism_session_error(f.s), "reassignment not supported") != NULL);
	struct ism_recovery_info ri;
	ism_session_get_recovery_info(f.s, &ri);
	CHECK(ri.connection_lost);
	CHECK_EQ(ri.lost_cid, lost_cid);
	struct ism_conn_recovery_info cr;
	ism_session_get_conn_recovery_info(f.s, &cr);
	CHECK_EQ(cr.fallbacks, 1);
	CHECK_EQ(cr.connection_recoveries, 0);
	char c;
	CHECK_EQ(read(f.fd, &c, 1), 0); /* the replacement was closed */
	erl2_teardown(&f, &l);
}

static void test_no_replacement(void)
{
	printf("ERL 2: no replacement within DefaultTime2Wait + DefaultTime2Retain fails the session\n");
	struct fake f;
	struct listener l;
	struct io_result io;
	erl2_tur_outstanding(&f, &l, erl2_op, sizeof(erl2_op), &io);
	close(l.fd); /* nothing listens any more: every attempt is refused */
	uint64_t t0 = ism_now_ms();
	close(f.fd);
	run_for(&f, &io.done, 4000);
	uint64_t took = ism_now_ms() - t0;
	printf("  the command failed after %llu ms\n", (unsigned long long)took);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_ERR_TRANSPORT);
	/* attempts 1 s apart; the one that would come past DefaultTime2Retain (2 s) is not made */
	CHECK(took >= 900 && took < 3500);
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_FAILED);
	CHECK(strstr(ism_session_error(f.s), "DefaultTime2Retain") != NULL);
	ism_session_free(f.s);
}

static const char retain0_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				 "MaxConnections=2\0ErrorRecoveryLevel=2\0DefaultTime2Wait=0\0DefaultTime2Retain=0";

static void test_retain_zero(void)
{
	printf("ERL 2 with DefaultTime2Retain 0: the target keeps nothing, the loss ends the session at once\n");
	struct fake f;
	struct listener l;
	struct io_result io;
	erl2_tur_outstanding(&f, &l, retain0_op, sizeof(retain0_op), &io);
	close(f.fd);
	pump(&f);
	CHECK(io.done);
	CHECK_EQ(io.r.error, ISM_ERR_TRANSPORT);
	CHECK_EQ(ism_session_service(f.s, -1, 0), ISM_SERVICE_FAILED);
	close(l.fd);
	ism_session_free(f.s);
}

/* Add a second connection through the listener; returns the target's end of it. */
static void add_second(struct fake *f, struct listener *l, struct fake *g, uint16_t *cid)
{
	CHECK_EQ(ism_add_connection_async(f->s, l->portal, NULL, NULL), 0);
	*g = *f;
	g->fd = accept_conn(f, l);
	CHECK(g->fd >= 0);
	g->statsn = 500;
	struct pdu first;
	login_exchange(g, &first, conn_op, sizeof(conn_op));
	*cid = first.b.login.cid;
	pdu_free(&first);
	CHECK_EQ(ism_session_connections(f->s, NULL, 0), 2);
}

static void test_two_connections(void)
{
	printf("ERL 2: one of two connections lost: the other carries the new commands, and a command the\n"
	       "  target never received (\"task does not exist\", CmdSN not acknowledged) goes again, same ITT and CmdSN\n");
	struct fake f, g;
	struct listener l;
	erl2_login(&f, &l, erl2_op, sizeof(erl2_op));
	uint16_t cid_b;
	add_second(&f, &l, &g, &cid_b);
	struct io_result io_a = {0}, io_b = {0}, io_new = {0};
	uint32_t cmdsn_a, cmdsn_b;
	uint32_t itt_a = tur_sent(&f, &f, &io_a, &cmdsn_a); /* round robin: the first on A */
	uint32_t itt_b = tur_sent(&f, &g, &io_b, &cmdsn_b); /* the second on B */
	close(g.fd);
	pump(&f);
	CHECK(!io_b.done);
	CHECK(ism_session_logged_in(f.s));
	struct ism_conn_info ci[2];
	CHECK_EQ(ism_session_connection_info(f.s, ci, 2), 2);
	CHECK_EQ(ci[1].state, ISM_CONN_RECOVERING);
	/* A goes on: its command completes (ExpCmdSN stays at B's CmdSN, the gap), a new one goes
	 * there and waits behind the gap at the target */
	send_status(&f, itt_a, 0, NULL, 0);
	pump(&f);
	CHECK(io_a.done && io_a.r.error == ISM_OK);
	uint32_t cmdsn_new;
	uint32_t itt_new = tur_sent(&f, &f, &io_new, &cmdsn_new);
	CHECK_EQ(cmdsn_new, cmdsn_b + 1);
	/* B's replacement: same CID; the target never had B's command */
	g.fd = accept_conn(&f, &l);
	CHECK(g.fd >= 0);
	g.statsn = 700;
	struct pdu first, p;
	login_exchange(&g, &first, conn_op, sizeof(conn_op));
	CHECK_EQ(first.b.login.cid, cid_b);
	CHECK_EQ(first.b.login.tsih, 0x1234);
	pdu_free(&first);
	CHECK_EQ(frecv(&g, &p), 0);
	CHECK_EQ(p.b.tmf.function, TMF_TASK_REASSIGN);
	CHECK_EQ(p.b.tmf.rtt, itt_b);
	send_tmf_response(&g, p.b.itt, TMF_RSP_NO_TASK);
	pdu_free(&p);
	pump(&f);
	CHECK_EQ(frecv(&g, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_CMD);
	CHECK_EQ(p.b.itt, itt_b);
	CHECK_EQ(p.b.cmd.cmdsn, cmdsn_b);
	printf("  ITT 0x%08x sent again with CmdSN %u on the replacement\n", p.b.itt, p.b.cmd.cmdsn);
	pdu_free(&p);
	send_status(&g, itt_b, 0, NULL, 0);
	CHECK(wait_io(&f, &io_b) == ISM_OK);
	send_status(&f, itt_new, 0, NULL, 0); /* the gap is closed: the held command runs */
	pump(&f);
	CHECK(io_new.done && io_new.r.error == ISM_OK);
	check_recovered_two(&f, &g, &l, 0);
}

static void test_refused_cid(void)
{
	printf("ERL 2: the lost CID refused: another connection logs it out for recovery (Logout reason 2)\n"
	       "  and a replacement with a new CID takes its tasks\n");
	struct fake f, g;
	struct listener l;
	erl2_login(&f, &l, erl2_op, sizeof(erl2_op));
	uint16_t cid_b;
	add_second(&f, &l, &g, &cid_b);
	struct io_result io_a = {0}, io_b = {0};
	tur_sent(&f, &f, &io_a, NULL);
	uint32_t itt_b = tur_sent(&f, &g, &io_b, NULL);
	close(g.fd);
	pump(&f);
	g.fd = accept_conn(&f, &l);
	CHECK(g.fd >= 0);
	struct pdu p;
	CHECK_EQ(frecv(&g, &p), 0);
	CHECK_EQ(p.b.login.cid, cid_b);
	login_answer(&g, &p, NULL, 0, false, 0, 0x0200); /* refused */
	pdu_free(&p);
	pump(&f);
	close(g.fd);
	CHECK_EQ(frecv(&f, &p), 0); /* on the surviving connection */
	CHECK_EQ(p.b.opcode, OP_LOGOUT_REQ);
	CHECK(p.b.immediate);
	CHECK_EQ(p.b.logout.reason, LOGOUT_REMOVE_FOR_RECOVERY);
	CHECK_EQ(p.b.logout.cid, cid_b);
	printf("  Logout reason %u for CID %u on connection A\n", p.b.logout.reason, p.b.logout.cid);
	struct bhs b = {0};
	b.opcode = OP_LOGOUT_RESP;
	b.final = true;
	b.itt = p.b.itt;
	b.logout_rsp.response = 0;
	b.logout_rsp.statsn = f.statsn++;
	set_window(&f, &b.logout_rsp.expcmdsn, &b.logout_rsp.maxcmdsn);
	fsend(&f, &b, NULL, 0);
	pdu_free(&p);
	g.fd = accept_conn(&f, &l);
	CHECK(g.fd >= 0);
	g.statsn = 900;
	struct pdu first;
	login_exchange(&g, &first, conn_op, sizeof(conn_op));
	CHECK(first.b.login.cid != cid_b);
	CHECK_EQ(first.b.login.tsih, 0x1234);
	printf("  replacement CID %u\n", first.b.login.cid);
	pdu_free(&first);
	CHECK_EQ(frecv(&g, &p), 0);
	CHECK_EQ(p.b.tmf.function, TMF_TASK_REASSIGN);
	CHECK_EQ(p.b.tmf.rtt, itt_b);
	send_tmf_response(&g, p.b.itt, TMF_RSP_COMPLETE);
	pdu_free(&p);
	send_status(&g, itt_b, 0, NULL, 0);
	CHECK(wait_io(&f, &io_b) == ISM_OK);
	check_recovered_two(&f, &g, &l, 1);
}

int main(void)
{
	test_read_reassigned();
	test_write_reassigned();
	test_reassign_refused();
	test_two_connections();
	test_refused_cid();
	test_no_replacement();
	test_retain_zero();
	TEST_MAIN_END();
}
