/*
 * The fake initiator's side of the harness, and the only file of the engine tests that knows the
 * target's objects (struct server, conn_accept, server_apply_config): when those move, only this
 * file follows.
 */
#include "engine_harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../test.h"
#include "proto/digest.h"
#include "target/config.h"
#include "target/target.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Loop turns per step; the engine needs a handful, the bound keeps a broken one from spinning. */
#define EH_STEP_ROUNDS 1000

/* One connection of the fake initiator. */
struct eh_conn {
	int fd;          /* the initiator's end; -1 once closed */
	bool eof;        /* the target closed its end */
	struct sbuf in;  /* bytes from the target not yet taken as PDUs */
	size_t in_off;
	uint32_t expstatsn;
	bool hd, dd;     /* digests in force */
	uint16_t cid;
};

struct eh {
	struct server srv;
	struct eh_conn conns[EH_MAX_CONNS];
	unsigned nconns, cur; /* the connection eh_send and eh_recv use */
	uint16_t tsih;        /* the session the login helper joins; 0: a new one */
	size_t split;         /* PDUs go as this many bytes, then the rest (0: whole) */
	bool split_placed;    /* the target was placing the last split PDU's data */
};

static struct eh_conn *cur(struct eh *h) { return &h->conns[h->cur]; }

static void eh_fatal(const char *what, char *err)
{
	fprintf(stderr, "engine harness: %s: %s\n", what, err ? err : "failed");
	exit(2);
}

static void eh_drain(struct eh_conn *k, bool *got)
{
	uint8_t buf[65536];
	while (k->fd >= 0) {
		ssize_t n = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0) {
			k->eof = true;
			return;
		}
		if (n < 0)
			return;
		*got = true;
		sbuf_append(&k->in, buf, (size_t)n);
	}
}

/* Run the target until it has nothing left to do with what it was given. */
static void eh_step(struct eh *h)
{
	for (int round = 0; round < EH_STEP_ROUNDS; round++) {
		int n = loop_run_once(h->srv.loop, 0);
		bool got = false;
		for (unsigned i = 0; i < h->nconns; i++)
			eh_drain(&h->conns[i], &got);
		if (n <= 0 && !got)
			return;
	}
	fprintf(stderr, "engine harness: the target did not settle in %d loop turns\n", EH_STEP_ROUNDS);
	test_failures++;
}

struct eh *eh_new(const struct eh_opts *opts)
{
	static const struct eh_opts none;
	if (!opts)
		opts = &none;
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("ISTHMUS_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
	struct eh *h = xcalloc(1, sizeof(*h));
	struct cfg *cfg = xcalloc(1, sizeof(*cfg));
	cfg_init(cfg);
	free(cfg->state_dir);
	cfg->state_dir = NULL; /* nothing persistent: no disk I/O */
	cfg->nop_interval = 0;
	if (opts->max_commands)
		cfg->max_commands = opts->max_commands;
	if (opts->max_data_connection)
		cfg->max_data_connection = opts->max_data_connection;
	char *err = NULL;
	if (cfg_add_listen(cfg, "127.0.0.1:3260", &err) < 0)
		eh_fatal("portal", err);
	cfg->portals[0].port = 0; /* any free port; it stops listening right after the start */
	struct cfg_target *t = cfg_add_target(cfg, EH_TARGET, &err);
	if (!t)
		eh_fatal("target", err);
	t->alias = xstrdup("engine");
	t->max_erl = opts->max_erl;
	if (cfg_add_lun_spec(cfg, t, "memory,size=1M", &err) < 0)
		eh_fatal("lun", err);
	if (opts->chap && cfg_set_chap(&t->chap, EH_CHAP_USER, EH_CHAP_SECRET, NULL, NULL, &err) < 0)
		eh_fatal("chap", err);
	if (opts->own_account && cfg_set_initiator_chap(t, EH_INITIATOR, EH_OWN_USER, EH_OWN_SECRET, NULL, NULL, &err) < 0)
		eh_fatal("initiator account", err);
	for (const char *p = opts->target_params; p && *p; p += strlen(p) + 1) {
		char key[64];
		const char *eq = strchr(p, '=');
		snprintf(key, sizeof(key), "%.*s", (int)(eq - p), p);
		text_add(&t->params, key, eq + 1);
	}
	h->srv.sigfd = -1;
	h->srv.next_tsih = 1;
	h->srv.loop = loop_new();
	if (!h->srv.loop)
		eh_fatal("loop", NULL);
	if (server_engine_start(&h->srv, cfg, &err) < 0)
		eh_fatal("store engine", err);
	if (server_apply_config(&h->srv, cfg, &err) < 0)
		eh_fatal("server", err);
	for (size_t i = 0; i < h->srv.nportals; i++)
		portal_stop_listening(h->srv.portals[i]);
	eh_connect(h);
	return h;
}

unsigned eh_connect(struct eh *h)
{
	if (h->nconns == EH_MAX_CONNS)
		eh_fatal("connections", NULL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		eh_fatal("socketpair", strerror(errno));
	struct eh_conn *k = &h->conns[h->nconns];
	k->fd = sv[0];
	k->cid = (uint16_t)(h->nconns + 1);
	h->cur = h->nconns++;
	conn_accept(&h->srv, sv[1], 1);
	eh_step(h);
	return h->cur;
}

void eh_use(struct eh *h, unsigned conn) { h->cur = conn < h->nconns ? conn : h->cur; }

void eh_disconnect(struct eh *h)
{
	struct eh_conn *k = cur(h);
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
	eh_step(h);
}

void eh_free(struct eh *h)
{
	for (unsigned i = 0; i < h->nconns; i++) {
		if (h->conns[i].fd >= 0)
			close(h->conns[i].fd);
		h->conns[i].fd = -1;
	}
	eh_step(h);
	server_free(&h->srv);
	for (unsigned i = 0; i < h->nconns; i++)
		sbuf_free(&h->conns[i].in);
	free(h);
}

void eh_send_raw(struct eh *h, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	for (int stuck = 0; len && stuck < 1000;) {
		ssize_t w = send(cur(h)->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				break; /* the target closed its end */
			eh_step(h);
			stuck++;
			continue;
		}
		p += w;
		len -= (size_t)w;
	}
	eh_step(h);
}

/* The target's connection behind the current one (by CID, once logged in). */
static struct conn *eh_target_conn(struct eh *h)
{
	for (struct conn *c = h->srv.shards[0]->conns; c; c = c->next)
		if (c->cid == cur(h)->cid)
			return c;
	return NULL;
}

static bool eh_target_placing(struct eh *h)
{
	struct conn *c = eh_target_conn(h);
	return c && c->pc.rx_state == PDU_RECV_DIRECT;
}

void eh_set_split(struct eh *h, size_t first)
{
	h->split = first;
	h->split_placed = false;
}

bool eh_split_placed(struct eh *h) { return h->split_placed; }

uint64_t eh_target_buffered(struct eh *h)
{
	struct conn *c = eh_target_conn(h);
	return c ? c->buffered : 0;
}

void eh_set_digests(struct eh *h, bool header, bool data)
{
	cur(h)->hd = header;
	cur(h)->dd = data;
}

void eh_send_bad_digest(struct eh *h, struct bhs *b, const void *data, uint32_t len, bool bad_header,
			bool bad_data)
{
	b->data_len = len;
	size_t hlen = BHS_LEN + b->total_ahs_len;
	size_t dpos = hlen + (cur(h)->hd ? 4 : 0);
	size_t total = dpos + pad4(len) + (cur(h)->dd && len ? 4 : 0);
	uint8_t *buf = xcalloc(1, total);
	bhs_encode(b, buf);
	if (cur(h)->hd)
		digest_store(buf + hlen, crc32c(buf, hlen) ^ (bad_header ? 1u : 0u));
	if (len)
		memcpy(buf + dpos, data, len);
	if (cur(h)->dd && len)
		digest_store(buf + dpos + pad4(len), crc32c(buf + dpos, pad4(len)) ^ (bad_data ? 1u : 0u));
	size_t first = h->split && h->split < total ? h->split : 0;
	if (first) {
		eh_send_raw(h, buf, first);
		h->split_placed = eh_target_placing(h);
	}
	eh_send_raw(h, buf + first, total - first);
	free(buf);
}

void eh_send(struct eh *h, struct bhs *b, const void *data, uint32_t len)
{
	eh_send_bad_digest(h, b, data, len, false, false);
}

/* The StatSN a PDU from the target consumes, if it carries one (RFC 7143 4.2.2.2). */
static bool eh_statsn_of(const struct bhs *b, uint32_t *sn)
{
	switch (b->opcode) {
	case OP_SCSI_RESP: *sn = b->rsp.statsn; return true;
	case OP_NOP_IN: *sn = b->nop_in.statsn; return b->itt != RESERVED_TAG;
	case OP_TASK_MGMT_RESP: *sn = b->tmf_rsp.statsn; return true;
	case OP_LOGIN_RESP: *sn = b->login.statsn; return true;
	case OP_TEXT_RESP: *sn = b->text.statsn; return true;
	case OP_LOGOUT_RESP: *sn = b->logout_rsp.statsn; return true;
	case OP_REJECT: *sn = b->reject.statsn; return true;
	case OP_ASYNC_MSG: *sn = b->async.statsn; return true;
	case OP_DATA_IN: *sn = b->data_in.statsn; return b->data_in.status_present;
	default: return false;
	}
}

/* Length of the PDU at the head of the input, 0 if it has not fully arrived. */
static size_t eh_head_len(struct eh *h)
{
	size_t avail = cur(h)->in.len - cur(h)->in_off;
	if (avail < BHS_LEN)
		return 0;
	const uint8_t *p = cur(h)->in.data + cur(h)->in_off;
	uint32_t dl = (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
	size_t need = BHS_LEN + (size_t)p[4] * 4 + (cur(h)->hd ? 4 : 0) + pad4(dl) + (cur(h)->dd && dl ? 4 : 0);
	return avail >= need ? need : 0;
}

int eh_recv(struct eh *h, struct eh_pdu *p)
{
	memset(p, 0, sizeof(*p));
	eh_step(h);
	size_t n = eh_head_len(h);
	if (!n)
		return -1;
	const uint8_t *raw = cur(h)->in.data + cur(h)->in_off;
	memcpy(p->raw, raw, BHS_LEN);
	char why[96];
	if (bhs_decode(raw, &p->b, why, sizeof(why)) != 0) {
		fprintf(stderr, "engine harness: the target sent a PDU that does not decode: %s\n", why);
		test_failures++;
	}
	size_t hlen = BHS_LEN + p->b.total_ahs_len;
	size_t dpos = hlen + (cur(h)->hd ? 4 : 0);
	if (cur(h)->hd && crc32c(raw, hlen) != digest_load(raw + hlen)) {
		fprintf(stderr, "engine harness: wrong header digest from the target\n");
		test_failures++;
	}
	p->len = p->b.data_len;
	if (p->len) {
		p->data = xmalloc(p->len);
		memcpy(p->data, raw + dpos, p->len);
		if (cur(h)->dd && crc32c(raw + dpos, pad4(p->len)) != digest_load(raw + dpos + pad4(p->len))) {
			fprintf(stderr, "engine harness: wrong data digest from the target\n");
			test_failures++;
		}
	}
	cur(h)->in_off += n;
	if (cur(h)->in_off == cur(h)->in.len) {
		sbuf_reset(&cur(h)->in);
		cur(h)->in_off = 0;
	}
	uint32_t sn;
	if (eh_statsn_of(&p->b, &sn))
		cur(h)->expstatsn = sn + 1;
	return 0;
}

unsigned eh_pending(struct eh *h)
{
	eh_step(h);
	unsigned n = 0;
	size_t save = cur(h)->in_off, len;
	while ((len = eh_head_len(h)) != 0) {
		cur(h)->in_off += len;
		n++;
	}
	cur(h)->in_off = save;
	return n;
}

bool eh_closed(struct eh *h)
{
	eh_step(h);
	return cur(h)->eof && cur(h)->in.len == cur(h)->in_off;
}

void eh_pdu_free(struct eh_pdu *p)
{
	free(p->data);
	p->data = NULL;
}

struct text_list eh_keys(const struct eh_pdu *p)
{
	struct text_list l = {0};
	char err[128];
	if (p->len)
		CHECK_EQ(text_parse(p->data, p->len, &l, err, sizeof(err)), 0);
	return l;
}

/* A request header with the fields every request sets; the caller adds the rest. */
static struct bhs request_bhs(uint8_t opcode, uint32_t itt, bool immediate, bool final)
{
	struct bhs b = {0};
	b.opcode = opcode;
	b.immediate = immediate;
	b.final = final;
	b.itt = itt;
	return b;
}

static const uint8_t eh_isid[6] = {0x80, 0x00, 0x00, 0x01, 0x00, 0x07};

void eh_login_req(struct eh *h, int csg, int nsg, bool transit, bool cont, uint32_t cmdsn, uint32_t expstatsn,
		  const void *text, uint32_t len)
{
	struct bhs b = request_bhs(OP_LOGIN_REQ, 0x77, true, transit);
	b.login.cont = cont;
	b.login.csg = (uint8_t)csg;
	b.login.nsg = transit ? (uint8_t)nsg : 0;
	memcpy(b.login.isid, eh_isid, 6);
	b.login.tsih = h->tsih;
	b.login.cid = cur(h)->cid;
	b.login.cmdsn = cmdsn;
	b.login.expstatsn = expstatsn;
	eh_send(h, &b, text, len);
}

static uint16_t eh_login_at(struct eh *h, uint32_t cmdsn, uint32_t expstatsn, const char *op_keys, uint32_t op_len,
			    struct text_list *final_keys)
{
	static const char sec[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET
				  "\0SessionType=Normal\0AuthMethod=None";
	struct eh_pdu p;
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, false, cmdsn, expstatsn, EH_KEYS(sec));
	if (eh_recv(h, &p) < 0)
		return 0;
	bool ok = p.b.opcode == OP_LOGIN_RESP && p.b.login.status_class == 0 && p.b.final &&
		  p.b.login.nsg == STAGE_OPERATIONAL;
	eh_pdu_free(&p);
	if (!ok)
		return 0;
	eh_login_req(h, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, true, false, cmdsn, cur(h)->expstatsn, op_keys, op_len);
	if (eh_recv(h, &p) < 0)
		return 0;
	ok = p.b.opcode == OP_LOGIN_RESP && p.b.login.status_class == 0 && p.b.final &&
	     p.b.login.nsg == STAGE_FULL_FEATURE;
	uint16_t tsih = ok ? p.b.login.tsih : 0;
	if (final_keys)
		*final_keys = eh_keys(&p);
	eh_pdu_free(&p);
	return tsih;
}

uint16_t eh_login(struct eh *h, const char *op_keys, uint32_t op_len, struct text_list *final_keys)
{
	h->tsih = 0;
	h->tsih = eh_login_at(h, EH_CMDSN0, EH_STATSN0, op_keys, op_len, final_keys);
	return h->tsih;
}

uint16_t eh_join(struct eh *h, uint32_t cmdsn, uint32_t expstatsn, const char *op_keys, uint32_t op_len)
{
	return eh_login_at(h, cmdsn, expstatsn, op_keys, op_len, NULL);
}

void eh_scsi_cmd(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate, bool final, bool read, bool write,
		 uint32_t edtl, const uint8_t cdb[16], const void *data, uint32_t len)
{
	struct bhs b = request_bhs(OP_SCSI_CMD, itt, immediate, final);
	b.cmd.read = read;
	b.cmd.write = write;
	b.cmd.attr = 1; /* SIMPLE */
	b.cmd.edtl = edtl;
	b.cmd.cmdsn = cmdsn;
	b.cmd.expstatsn = cur(h)->expstatsn;
	memcpy(b.cmd.cdb, cdb, 16);
	eh_send(h, &b, data, len);
}

void eh_cdb_rw10(uint8_t cdb[16], bool write, uint32_t lba, uint16_t blocks)
{
	memset(cdb, 0, 16);
	cdb[0] = write ? 0x2a : 0x28;
	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, blocks);
}

void eh_clear_unit_attention(struct eh *h, uint32_t itt, uint32_t cmdsn)
{
	uint8_t cdb[16] = {0};
	eh_scsi_cmd(h, itt, cmdsn, false, true, false, false, 0, cdb, NULL, 0);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_RESP);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.rsp.response, 0);
	CHECK_EQ(p.b.rsp.status, 0x02);
	/* SenseLength, then fixed-format sense: key 6, ASC 29h */
	CHECK(p.len >= 2 + 14);
	if (p.len >= 2 + 14) {
		CHECK_EQ(get_be16(p.data), p.len - 2);
		CHECK_EQ(p.data[2] & 0x7f, 0x70);
		CHECK_EQ(p.data[2 + 2] & 0x0f, 0x06);
		CHECK_EQ(p.data[2 + 12], 0x29);
	}
	eh_pdu_free(&p);
}

struct eh *eh_start(const struct eh_opts *opts, const char *op_keys, uint32_t op_len)
{
	struct eh *h = eh_new(opts);
	CHECK_EQ(eh_login(h, op_keys, op_len, NULL), 1);
	eh_clear_unit_attention(h, 0xfff0, EH_CMDSN0);
	CHECK_EQ(cur(h)->expstatsn, EH_STATSN1);
	return h;
}

void eh_tur(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate)
{
	uint8_t cdb[16] = {0};
	eh_scsi_cmd(h, itt, cmdsn, immediate, true, false, false, 0, cdb, NULL, 0);
}

/* The next PDU, into *p: a SCSI Response for itt, command completed, with this status and StatSN. */
static void recv_scsi_rsp(struct eh *h, struct eh_pdu *p, uint32_t itt, uint8_t status, uint32_t statsn)
{
	CHECK_EQ(eh_recv(h, p), 0);
	CHECK_EQ(p->b.opcode, OP_SCSI_RESP);
	CHECK_EQ(p->b.itt, itt);
	CHECK_EQ(p->b.rsp.response, 0);
	CHECK_EQ(p->b.rsp.status, status);
	CHECK_EQ(p->b.rsp.statsn, statsn);
}

void eh_expect_status(struct eh *h, uint32_t itt, uint8_t status, uint32_t statsn, uint32_t expcmdsn,
		      uint32_t maxcmdsn)
{
	struct eh_pdu p;
	recv_scsi_rsp(h, &p, itt, status, statsn);
	CHECK(p.b.final);
	CHECK_EQ(p.b.rsp.expcmdsn, expcmdsn);
	CHECK_EQ(p.b.rsp.maxcmdsn, maxcmdsn);
	eh_pdu_free(&p);
}

void eh_expect_sense(struct eh *h, uint32_t itt, uint8_t key, uint8_t asc, uint8_t ascq, uint32_t statsn)
{
	struct eh_pdu p;
	recv_scsi_rsp(h, &p, itt, 0x02, statsn);
	CHECK(p.len >= 2 + 14);
	if (p.len >= 2 + 14) {
		CHECK_EQ(get_be16(p.data), p.len - 2);
		CHECK_EQ(p.data[2] & 0x7f, 0x70);
		CHECK_EQ(p.data[2 + 2] & 0x0f, key);
		CHECK_EQ(p.data[2 + 12], asc);
		CHECK_EQ(p.data[2 + 13], ascq);
	}
	eh_pdu_free(&p);
}

void eh_nop_out(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate, const void *data, uint32_t len)
{
	struct bhs b = request_bhs(OP_NOP_OUT, itt, immediate, true);
	b.nop_out.ttt = RESERVED_TAG;
	b.nop_out.cmdsn = cmdsn;
	b.nop_out.expstatsn = cur(h)->expstatsn;
	eh_send(h, &b, data, len);
}

void eh_logout(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate, uint8_t reason, uint16_t cid)
{
	struct bhs b = request_bhs(OP_LOGOUT_REQ, itt, immediate, true);
	b.logout.reason = reason;
	b.logout.cid = cid;
	b.logout.cmdsn = cmdsn;
	eh_send(h, &b, NULL, 0);
}

void eh_data_out(struct eh *h, uint32_t itt, uint32_t ttt, uint32_t datasn, uint32_t offset, bool final,
		 const void *data, uint32_t len)
{
	struct bhs b = request_bhs(OP_DATA_OUT, itt, false, final);
	b.data_out.ttt = ttt;
	b.data_out.expstatsn = cur(h)->expstatsn;
	b.data_out.datasn = datasn;
	b.data_out.offset = offset;
	eh_send(h, &b, data, len);
}
