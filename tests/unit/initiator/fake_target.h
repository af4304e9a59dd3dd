/*
 * A scripted fake target for libisthmus unit tests: the target's end of a socketpair, PDUs read
 * and written by hand, a login with chosen keys, and the session serviced in between.
 */
#ifndef ISTHMUS_TESTS_UNIT_INITIATOR_FAKE_TARGET_H
#define ISTHMUS_TESTS_UNIT_INITIATOR_FAKE_TARGET_H

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../test.h"
#include "initiator/internal.h"
#include "proto/digest.h"
#include "util/bytes.h"

#define TGT "iqn.2026-01.org.example:fake"
#define INI "iqn.2026-01.org.example:tester"

struct fake {
	int fd;          /* target end */
	bool hd, dd;     /* digests in force on the target end */
	uint32_t statsn; /* next StatSN */
	uint32_t expcmdsn, window;
	struct ism_session *s;
	int ifd;         /* initiator end */
};

struct pdu {
	struct bhs b;
	uint8_t *data;
	uint32_t len;
};

static inline int read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (uint8_t *)buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* Let the initiator run: service its fd until nothing happens for a moment. */
static inline void pump(struct fake *f)
{
	for (int i = 0; i < 20; i++) {
		struct pollfd p[ISM_MAX_CONNS];
		int n = ism_session_fds(f->s, p, ISM_MAX_CONNS);
		int r = n ? poll(p, (nfds_t)n, 20) : 0;
		for (int k = 0; r > 0 && k < n; k++)
			if (p[k].revents)
				ism_session_service(f->s, p[k].fd, p[k].revents);
		ism_session_service(f->s, -1, 0);
		if (r == 0 && i > 2)
			break;
	}
}

static inline int frecv(struct fake *f, struct pdu *p)
{
	memset(p, 0, sizeof(*p));
	uint8_t hdr[BHS_LEN + 4];
	if (read_full(f->fd, hdr, BHS_LEN + (f->hd ? 4 : 0)) < 0)
		return -1;
	char why[96];
	if (bhs_decode(hdr, &p->b, why, sizeof(why)) != 0)
		return -1;
	if (f->hd && crc32c(hdr, BHS_LEN) != ((uint32_t)hdr[48] | (uint32_t)hdr[49] << 8 | (uint32_t)hdr[50] << 16 |
					      (uint32_t)hdr[51] << 24))
		return -1;
	p->len = p->b.data_len;
	if (p->len) {
		uint32_t n = pad4(p->len) + (f->dd ? 4 : 0);
		p->data = malloc(n);
		if (read_full(f->fd, p->data, n) < 0)
			return -1;
	}
	return 0;
}

static inline void pdu_free(struct pdu *p)
{
	free(p->data);
	p->data = NULL;
}

enum { OK = 0, BAD_HDIGEST = 1, BAD_DDIGEST = 2 };

static inline void fsend_raw(struct fake *f, struct bhs *b, const void *data, uint32_t len, uint32_t wire_len,
			     int flags)
{
	uint8_t buf[BHS_LEN + 4];
	b->data_len = wire_len;
	bhs_encode(b, buf);
	size_t hl = BHS_LEN;
	if (f->hd) {
		digest_store(buf + BHS_LEN, crc32c(buf, BHS_LEN) ^ (flags & BAD_HDIGEST ? 1u : 0u));
		hl += 4;
	}
	CHECK(write(f->fd, buf, hl) == (ssize_t)hl);
	if (len) {
		uint8_t pad[8] = {0};
		CHECK(write(f->fd, data, len) == (ssize_t)len);
		uint32_t padn = pad4(len) - len;
		uint32_t dl = padn;
		if (f->dd) {
			uint32_t st = crc32c_update(crc32c_init(), data, len);
			st = crc32c_update(st, pad, padn);
			digest_store(pad + padn, crc32c_final(st) ^ (flags & BAD_DDIGEST ? 1u : 0u));
			dl += 4;
		}
		if (dl)
			CHECK(write(f->fd, pad, dl) == (ssize_t)dl);
	}
}

static inline void fsend(struct fake *f, struct bhs *b, const void *data, uint32_t len)
{
	fsend_raw(f, b, data, len, len, OK);
}

static inline void set_window(struct fake *f, uint32_t *exp, uint32_t *max)
{
	*exp = f->expcmdsn;
	*max = f->expcmdsn + f->window - 1;
}

/* Answer a login request with the given keys; final: transit to full feature phase. */
static inline void login_answer(struct fake *f, const struct pdu *req, const char *keys, size_t klen, bool transit,
			 int nsg, uint16_t status)
{
	struct bhs b = {0};
	b.opcode = OP_LOGIN_RESP;
	b.final = transit;
	b.login.csg = req->b.login.csg;
	b.login.nsg = transit ? (uint8_t)nsg : 0;
	memcpy(b.login.isid, req->b.login.isid, 6);
	b.login.tsih = transit && nsg == STAGE_FULL_FEATURE ? 0x1234 : 0;
	b.itt = req->b.itt;
	b.login.statsn = f->statsn++;
	b.login.expcmdsn = f->expcmdsn;
	b.login.maxcmdsn = f->expcmdsn + f->window - 1;
	b.login.status_class = (uint8_t)(status >> 8);
	b.login.status_detail = (uint8_t)status;
	fsend(f, &b, keys, (uint32_t)klen);
}

static inline struct text_list parse_keys(const struct pdu *p)
{
	struct text_list l = {0};
	char err[64];
	CHECK_EQ(text_parse(p->data, p->len, &l, err, sizeof(err)), 0);
	return l;
}

struct login_result {
	bool done;
	int status;
};

static inline void on_login(struct ism_session *s, int status, void *priv)
{
	(void)s;
	struct login_result *r = priv;
	r->done = true;
	r->status = status;
}

/*
 * A connection's two ends: sv[0] the initiator's, non-blocking like a TCP socket of the library;
 * sv[1] the fake target's, blocking with a timeout so a missing PDU fails the test instead of
 * hanging.
 */
static inline void fake_socketpair(int sv[2])
{
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	CHECK_EQ(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	struct timeval tv = {2, 0};
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static inline void fake_setup(struct fake *f, struct ism_config *cfg)
{
	memset(f, 0, sizeof(*f));
	int sv[2];
	fake_socketpair(sv);
	f->fd = sv[1];
	f->ifd = sv[0];
	f->statsn = 100;
	f->expcmdsn = 1;
	f->window = 16;
	char err[200];
	f->s = ism_session_new(cfg, err, sizeof(err));
	CHECK(f->s != NULL);
}

static inline void fake_teardown(struct fake *f)
{
	ism_session_free(f->s);
	close(f->fd);
}

/*
 * A full login: security stage (AuthMethod None), operational stage with the given answer keys.
 * Returns the login callback status.
 */
static inline int do_login(struct fake *f, const char *op_keys, size_t op_len, bool digests)
{
	struct login_result lr = {0};
	CHECK_EQ(ism_attach_fd_async(f->s, f->ifd, true, on_login, &lr), 0);
	pump(f);
	struct pdu p;
	if (frecv(f, &p) < 0)
		return -100;
	CHECK_EQ(p.b.opcode, OP_LOGIN_REQ);
	CHECK(p.b.immediate);
	CHECK_EQ(p.b.login.csg, STAGE_SECURITY);
	CHECK_EQ(p.b.login.tsih, 0);
	CHECK_EQ(p.b.login.isid[0] & 0xc0, 0x40);
	struct text_list k = parse_keys(&p);
	CHECK_STR(text_get(&k, "InitiatorName"), INI);
	CHECK_STR(text_get(&k, "TargetName"), TGT);
	CHECK_STR(text_get(&k, "SessionType"), "Normal");
	CHECK_STR(text_get(&k, "AuthMethod"), "None");
	text_clear(&k);
	static const char sec[] = "AuthMethod=None\0TargetPortalGroupTag=1";
	login_answer(f, &p, sec, sizeof(sec), true, STAGE_OPERATIONAL, 0);
	pdu_free(&p);
	pump(f);
	if (frecv(f, &p) < 0)
		return -101;
	CHECK_EQ(p.b.login.csg, STAGE_OPERATIONAL);
	CHECK_EQ(p.b.login.nsg, STAGE_FULL_FEATURE);
	CHECK(p.b.final);
	k = parse_keys(&p);
	CHECK(text_get(&k, "MaxRecvDataSegmentLength") != NULL);
	CHECK(text_get(&k, "HeaderDigest") != NULL);
	text_clear(&k);
	login_answer(f, &p, op_keys, op_len, true, STAGE_FULL_FEATURE, 0);
	pdu_free(&p);
	f->hd = f->dd = digests;
	pump(f);
	CHECK(lr.done);
	return lr.done ? lr.status : -102;
}

static const char default_op[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				 "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=16384\0FirstBurstLength=8192\0"
				 "MaxOutstandingR2T=2\0ErrorRecoveryLevel=0\0MaxConnections=1";

static inline void base_config(struct ism_config *cfg)
{
	ism_config_init(cfg);
	cfg->initiator_name = INI;
	cfg->target_name = TGT;
	cfg->max_recv_dsl = 8192;
	cfg->nop_interval_ms = -1;
}

/* A session logged in with base_config and the given operational answer keys. */
static inline void fake_logged_in_with(struct fake *f, const char *op_keys, size_t op_len)
{
	struct ism_config cfg;
	base_config(&cfg);
	fake_setup(f, &cfg);
	CHECK_EQ(do_login(f, op_keys, op_len, false), ISM_OK);
}

/* A session logged in with base_config and default_op. */
static inline void fake_logged_in(struct fake *f)
{
	fake_logged_in_with(f, default_op, sizeof(default_op));
}

/* Start a login on the session's own socketpair and read its first request into *p. */
static inline void login_begin(struct fake *f, struct login_result *lr, struct pdu *p)
{
	memset(lr, 0, sizeof(*lr));
	CHECK_EQ(ism_attach_fd_async(f->s, f->ifd, true, on_login, lr), 0);
	pump(f);
	CHECK_EQ(frecv(f, p), 0);
}

/* A session with base_config whose login has started, its first request in *p. */
static inline void fake_login_started(struct fake *f, struct login_result *lr, struct pdu *p)
{
	struct ism_config cfg;
	base_config(&cfg);
	fake_setup(f, &cfg);
	login_begin(f, lr, p);
}

/* Answer the login request *p with the given keys and read the next request into *p. */
static inline void login_step(struct fake *f, struct pdu *p, const char *keys, size_t klen, bool transit, int nsg)
{
	login_answer(f, p, keys, klen, transit, nsg, 0);
	pdu_free(p);
	pump(f);
	CHECK_EQ(frecv(f, p), 0);
}

/*
 * A second connection of f's session over a new socketpair: g is the target's end of it (a copy
 * of f otherwise), its login started (not yet answered) with lr as the callback's result.
 */
static inline void attach_second(struct fake *f, struct fake *g, struct login_result *lr)
{
	int sv[2];
	fake_socketpair(sv);
	*g = *f;
	g->fd = sv[1];
	memset(lr, 0, sizeof(*lr));
	CHECK_EQ(ism_attach_fd_async(f->s, sv[0], false, on_login, lr), 0);
	pump(f);
}

/* The session's error names want; says what it was when it does not. */
static inline void expect_error(struct fake *f, const char *want)
{
	const char *err = ism_session_error(f->s);
	if (!strstr(err, want)) {
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
		CHECK(false);
	}
}

struct io_result {
	bool done;
	struct ism_scsi_result r;
};

static inline void on_io(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	(void)s;
	struct io_result *x = priv;
	x->done = true;
	x->r = *r;
}

/*
 * A READ or WRITE(10) of blocks at LBA 0 into or from buf (len bytes), or with ISM_DIR_NONE a
 * TEST UNIT READY, read at the target into *p, which must be its SCSI Command. io is cleared.
 */
static inline void command_sent(struct fake *f, enum ism_dir dir, uint16_t blocks, uint8_t *buf, uint32_t len,
				struct io_result *io, struct pdu *p)
{
	uint8_t cdb[16];
	size_t cl = dir == ISM_DIR_NONE ? ism_cdb_test_unit_ready(cdb) : ism_cdb_rw10(cdb, dir == ISM_DIR_WRITE, 0, blocks);
	memset(io, 0, sizeof(*io));
	CHECK(ism_scsi_async(f->s, 0, cdb, cl, dir, buf, len, on_io, io) != NULL);
	pump(f);
	CHECK_EQ(frecv(f, p), 0);
	CHECK_EQ(p->b.opcode, OP_SCSI_CMD);
}

/* A READ or WRITE(10) of the whole buffer buf at LBA 0, seen at the target; returns its ITT. */
static inline uint32_t start_command(struct fake *f, enum ism_dir dir, uint8_t *buf, uint32_t len, struct io_result *io)
{
	struct pdu p;
	command_sent(f, dir, (uint16_t)(len / 512), buf, len, io, &p);
	uint32_t itt = p.b.itt;
	pdu_free(&p);
	return itt;
}

static inline void send_status(struct fake *f, uint32_t itt, uint8_t status, const void *sense, uint32_t slen)
{
	struct bhs b = {0};
	b.opcode = OP_SCSI_RESP;
	b.final = true;
	b.itt = itt;
	b.rsp.status = status;
	b.rsp.statsn = f->statsn++;
	f->expcmdsn++;
	set_window(f, &b.rsp.expcmdsn, &b.rsp.maxcmdsn);
	uint8_t buf[300] = {0};
	uint32_t len = 0;
	if (slen) {
		put_be16(buf, (uint16_t)slen);
		memcpy(buf + 2, sense, slen);
		len = slen + 2;
	}
	fsend(f, &b, buf, len);
}

static inline void send_tmf_response(struct fake *f, uint32_t itt, uint8_t response)
{
	struct bhs b = {0};
	b.opcode = OP_TASK_MGMT_RESP;
	b.final = true;
	b.itt = itt;
	b.tmf_rsp.response = response;
	b.tmf_rsp.statsn = f->statsn++;
	set_window(f, &b.tmf_rsp.expcmdsn, &b.tmf_rsp.maxcmdsn);
	fsend(f, &b, NULL, 0);
}

/* An R2T for itt asking for len bytes at off, with the target's window. */
static inline struct bhs r2t_bhs(struct fake *f, uint32_t itt, uint32_t ttt, uint32_t r2tsn, uint32_t off, uint32_t len)
{
	struct bhs b = {0};
	b.opcode = OP_R2T;
	b.final = true;
	b.itt = itt;
	b.r2t.ttt = ttt;
	b.r2t.statsn = f->statsn;
	set_window(f, &b.r2t.expcmdsn, &b.r2t.maxcmdsn);
	b.r2t.r2tsn = r2tsn;
	b.r2t.offset = off;
	b.r2t.desired_len = len;
	return b;
}

static inline void send_r2t(struct fake *f, uint32_t itt, uint32_t ttt, uint32_t r2tsn, uint32_t off, uint32_t len)
{
	struct bhs b = r2t_bhs(f, itt, ttt, r2tsn, off, len);
	fsend(f, &b, NULL, 0);
}

/* A CHECK CONDITION response whose data segment is d as it stands (SenseLength included). */
static inline void send_raw_sense(struct fake *f, uint32_t itt, const uint8_t *d, uint32_t len)
{
	struct bhs b = {0};
	b.opcode = OP_SCSI_RESP;
	b.final = true;
	b.itt = itt;
	b.rsp.status = 2;
	b.rsp.statsn = f->statsn++;
	fsend(f, &b, d, len);
}

/* Read the Data-Out sequence answering one R2T; returns the bytes seen. */
static inline uint32_t read_data_out(struct fake *f, uint32_t ttt)
{
	uint32_t seen = 0;
	struct pdu p;
	for (;;) {
		if (frecv(f, &p) < 0)
			return seen;
		CHECK_EQ(p.b.opcode, OP_DATA_OUT);
		CHECK_EQ(p.b.data_out.ttt, ttt);
		seen += p.len;
		bool fin = p.b.final;
		pdu_free(&p);
		if (fin)
			return seen;
	}
}

/* Service the session until *done or ms milliseconds passed. */
static inline void run_for(struct fake *f, const bool *done, int ms)
{
	uint64_t end = ism_now_ms() + (uint64_t)ms;
	while (!*done && ism_now_ms() < end) {
		struct pollfd p[ISM_MAX_CONNS];
		int n = ism_session_fds(f->s, p, ISM_MAX_CONNS);
		int to = ism_session_timeout_ms(f->s);
		if (to < 0 || to > 20)
			to = 20;
		int r = n ? poll(p, (nfds_t)n, to) : 0;
		for (int k = 0; r > 0 && k < n; k++)
			if (p[k].revents)
				ism_session_service(f->s, p[k].fd, p[k].revents);
		ism_session_service(f->s, -1, 0);
	}
}

#endif
