/*
 * libFuzzer: the target's whole connection path, driven through real descriptors. One server is
 * built once: target "fuzz" (LUN 0 memory with 512-byte blocks, LUN 1 memory with 4096-byte
 * blocks, no CHAP) and target "fuzz-chap" (one memory LUN, an access list, mutual CHAP
 * credentials). Each input opens 1-3 connections, each a socketpair whose one end goes to
 * conn_accept, and plays a small script on them; the event loop runs until idle after every
 * step. At the end every connection is closed, the deferred frees run, and the server must be
 * back to no connection and no session.
 *
 *   input   := mode record*
 *   mode    := bits 0-1: connections - 1 (3 means 1); bit 2: discovery sessions need CHAP
 *   record  := op body; op bits 6-7 pick the connection (modulo their number), bits 0-5 the kind
 *              (modulo 7):
 *   0 RAW      len:u16 bytes           bytes written as they are
 *   1 PDU      ctl:u8 bhs:48 ahs:bhs[4]*4 len:u16 data
 *              one PDU, framed by the harness unless ctl says otherwise: DataSegmentLength =
 *              len (ctl bit 0 keeps the input's), CmdSN (bit 1 keeps the input's) = ExpCmdSN
 *              plus sn_offset[ctl bits 5-7], or for offset index 1 the initiator's own next
 *              CmdSN (counting ahead of ExpCmdSN like a real initiator), ExpStatSN = the next
 *              StatSN (bit 2 keeps it), padding, and the digests the connection negotiated
 *              (bits 3 and 4 corrupt the header and data digest)
 *   2 LOGIN    plan:3 bytes            a correct login, see login_step(); the plan is fixed by
 *              the connection's first LOGIN and a later LOGIN continues where it stopped
 *   3 CLOSE    how:u8                  bit 0: close the initiator's end, else shut down writing
 *   4 STALL    -                       stop (or resume) reading what the target sends
 *   5 SHUTDOWN -                       server_stop(): the target's SIGTERM path
 *   6 REPEAT   count:u8                the next record runs count + 1 times (limits, windows)
 *
 * The login helper answers CHAP challenges, which random bytes never could, so every later
 * stage is reachable; the PDU record keeps digests and sequence numbers right so that mutations
 * of one field are not lost to framing. Nothing sleeps and nothing touches a disk.
 *
 * ISTHMUS_FUZZ_TRACE=1 prints the target's state after every record; ISTHMUS_FUZZ_LOG=debug its
 * log. ISTHMUS_FUZZ_AVOID=cid-reinstatement gives every connection a CID of its own (login
 * helper and PDU records), for long runs that should look past a known bug in that path.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/loop.h"
#include "proto/chap.h"
#include "proto/digest.h"
#include "proto/pdu.h"
#include "proto/text.h"
#include "scsi/scsi.h"
#include "store/store.h"
#include "target/config.h"
#include "target/target.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"
#include "util/serial.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INITIATOR "iqn.2026-11.org.isthmus:fuzz-initiator"
#define TARGET_PLAIN "iqn.2026-11.org.isthmus:fuzz"
#define TARGET_CHAP "iqn.2026-11.org.isthmus:fuzz-chap"
#define CHAP_USER "fuzz-user"
#define CHAP_SECRET "fuzz-secret-0123"
#define MUTUAL_USER "fuzz-target"
#define MUTUAL_SECRET "fuzz-mutual-4567"

#define MAX_CONNS 3
#define NKINDS 7
#define PUMP_ROUNDS 4096     /* loop turns per step; a step that needs more is cut short */
#define CAPTURE_MAX (1u << 20)
#define LOGIN_CMDSN 0x100u

enum kind { K_RAW, K_PDU, K_LOGIN, K_CLOSE, K_STALL, K_SHUTDOWN, K_REPEAT };

/* Where the login helper of one connection stands. */
enum hlogin { HL_START, HL_CHAP_A, HL_CHAP_R, HL_OPER, HL_DONE, HL_FAILED };

/* Plan byte 0 */
#define P0_DISCOVERY 0x01
#define P0_CHAP_TARGET 0x02
#define P0_JOIN 0x04
#define P0_HDIGEST 0x08
#define P0_DDIGEST 0x10
#define P0_SKIP_SECURITY 0x20
#define P0_NO_IMMEDIATE 0x40
#define P0_INITIAL_R2T 0x80
/* Plan byte 1: bits 0-1 MaxRecvDataSegmentLength, 2-3 burst lengths, 4-5 MaxOutstandingR2T */
#define P1_MUTUAL 0x40
#define P1_WRONG_SECRET 0x80
/* Plan byte 2: bits 0-1 ISID, bits 4-5 requests per LOGIN record (0: as many as needed) */
#define P2_SAME_CID 0x04
#define P2_SPLIT 0x08
#define P2_ONE_CONNECTION 0x40
#define P2_ODD_KEYS 0x80

struct hconn {
	int fd;            /* the initiator's end; -1 once closed */
	int tfd;           /* the target's end: identifies its struct conn while that lives */
	bool stalled;      /* the harness does not read what the target sends */
	bool capture;      /* keep what the target sends (for the login helper) */
	struct sbuf in;
	enum hlogin state;
	uint8_t plan[3];
	bool planned;
	uint8_t isid[6];
	uint16_t tsih;
	uint16_t cid;
	uint32_t expstatsn;
	struct chap_credentials cred;
	struct chap_initiator chap;
	struct text_list last; /* keys of the last Login Response */
};

static struct server srv;
static bool trace; /* ISTHMUS_FUZZ_TRACE: one line per record, for checking seeds */
static bool avoid_cid_reuse; /* ISTHMUS_FUZZ_AVOID=cid-reinstatement */
static struct cfg_chap discovery_chap; /* swapped into the configuration per input */
static struct hconn hc[MAX_CONNS];
static unsigned nhc;
static uint16_t first_tsih;             /* the first normal session this input logged in */
static uint8_t first_isid[6];
static struct io_stats scsi_seen;       /* srv.shards[0]->closed when the LUs were last fresh */
static uint32_t nodes_used;             /* bit i: srv.nodes[i] had a session in this input */
static uint16_t own_tsih;               /* the session own_cmdsn numbers (SN_OWN) */
static uint32_t own_cmdsn;

static void fatal(const char *what, char *err)
{
	fprintf(stderr, "fuzz_target_conn: %s: %s\n", what, err ? err : "failed");
	abort();
}

static void build_server(void)
{
	struct cfg *cfg = xcalloc(1, sizeof(*cfg));
	cfg_init(cfg);
	/* PERSISTENT RESERVE OUT with APTPL writes its state there: no disk I/O while fuzzing. */
	free(cfg->state_dir);
	cfg->state_dir = NULL;
	char *err = NULL;
	if (cfg_add_listen(cfg, "127.0.0.1:3260", &err) < 0)
		fatal("portal", err);
	cfg->portals[0].port = 0; /* any free port; the listener is closed right after start */
	struct cfg_target *t = cfg_add_target(cfg, TARGET_PLAIN, &err);
	if (!t)
		fatal("target", err);
	t->alias = xstrdup("fuzz");
	if (cfg_add_lun_spec(cfg, t, "memory,size=1M", &err) < 0 ||
	    cfg_add_lun_spec(cfg, t, "memory,size=1M,bs=4096", &err) < 0)
		fatal("lun", err);
	t = cfg_add_target(cfg, TARGET_CHAP, &err);
	if (!t || cfg_add_lun_spec(cfg, t, "memory,size=1M", &err) < 0 || cfg_acl_add(t, INITIATOR, &err) < 0 ||
	    cfg_set_chap(&t->chap, CHAP_USER, CHAP_SECRET, MUTUAL_USER, MUTUAL_SECRET, &err) < 0)
		fatal("chap target", err);
	if (cfg_set_chap(&discovery_chap, CHAP_USER, CHAP_SECRET, MUTUAL_USER, MUTUAL_SECRET, &err) < 0)
		fatal("discovery chap", err);
	srv.sigfd = -1;
	srv.next_tsih = 1;
	srv.loop = loop_new();
	if (!srv.loop)
		fatal("loop", NULL);
	if (server_apply_config(&srv, cfg, &err) < 0)
		fatal("server", err);
	for (size_t i = 0; i < srv.nportals; i++)
		portal_stop_listening(srv.portals[i]);
}

/*
 * SCSI state (data, reservations, mode pages, unit attentions) would carry over from one input
 * to the next and make findings irreproducible: after an input that ran SCSI commands or task
 * management, the LUs of the targets it had sessions with are replaced by fresh ones. The SCSI
 * target itself stays: creating one and adding or removing a LU each scan its whole LU table.
 */
static void reset_luns(void)
{
	for (size_t i = 0; i < srv.nnodes; i++) {
		struct tnode *n = srv.nodes[i];
		if (!(nodes_used & (1u << i)))
			continue;
		for (size_t j = 0; j < n->cfg->nluns; j++) {
			const struct cfg_lun *l = &n->cfg->luns[j];
			char *err = NULL;
			scsi_target_remove_lu(n->scsi, l->lun);
			struct store *st = store_mem_open(l->size, &err);
			struct scsi_lu_params p = {
				.block_size = l->block_size ? l->block_size : 512,
				.read_only = l->read_only,
				.thin = l->thin,
				.write_cache = l->write_cache,
			};
			if (!st || scsi_target_add_lu(n->scsi, l->lun, st, &p, &err) < 0)
				fatal("lu", err);
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Logging costs more than the rest of an input; ISTHMUS_FUZZ_LOG=debug shows it all. */
	const char *lv = getenv("ISTHMUS_FUZZ_LOG");
	log_set_level(!lv ? LOG_ERROR
		      : strcmp(lv, "debug") == 0 ? LOG_DEBUG
		      : strcmp(lv, "info") == 0  ? LOG_INFO
		      : strcmp(lv, "warn") == 0  ? LOG_WARN
						 : LOG_ERROR);
	trace = getenv("ISTHMUS_FUZZ_TRACE") != NULL;
	const char *avoid = getenv("ISTHMUS_FUZZ_AVOID");
	avoid_cid_reuse = avoid && strstr(avoid, "cid-reinstatement");
	signal(SIGPIPE, SIG_IGN); /* the target writes to peers that have gone */
	build_server();
	return 0;
}

/* --- input ---------------------------------------------------------------------------------- */

struct reader {
	const uint8_t *p;
	size_t left;
};

static uint8_t rd_u8(struct reader *r)
{
	if (!r->left)
		return 0;
	r->left--;
	return *r->p++;
}

static uint16_t rd_u16(struct reader *r)
{
	uint16_t hi = rd_u8(r);
	return (uint16_t)(hi << 8 | rd_u8(r));
}

/* Up to n bytes (fewer at the end of the input); *n becomes what was taken. */
static const uint8_t *rd_take(struct reader *r, size_t *n)
{
	if (*n > r->left)
		*n = r->left;
	const uint8_t *p = r->p;
	r->p += *n;
	r->left -= *n;
	return p;
}

/* --- the initiators' ends --------------------------------------------------------------------- */

static struct conn *target_conn(const struct hconn *h)
{
	for (struct conn *c = srv.shards[0]->conns; c; c = c->next)
		if (c->fd == h->tfd)
			return c;
	return NULL;
}

/* Read what the target sent on one connection; true if there was anything. */
static bool drain(struct hconn *h, bool force)
{
	static uint8_t buf[65536];
	bool got = false;
	if (h->fd < 0 || (h->stalled && !force))
		return false;
	for (;;) {
		ssize_t n = recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			break;
		got = true;
		if (h->capture && h->in.len + (size_t)n <= CAPTURE_MAX)
			sbuf_append(&h->in, buf, (size_t)n);
	}
	return got;
}

/* Run the target until it has nothing left to do with what it was given. */
static void pump(void)
{
	for (int round = 0; round < PUMP_ROUNDS; round++) {
		int n = loop_run_once(srv.loop, 0);
		bool got = false;
		for (unsigned i = 0; i < nhc; i++)
			got |= drain(&hc[i], false);
		if (n <= 0 && !got)
			return;
	}
}

static void send_all(struct hconn *h, const uint8_t *p, size_t len)
{
	for (int stuck = 0; len && h->fd >= 0 && stuck < 64;) {
		ssize_t w = send(h->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return; /* the target closed its end */
			pump();
			drain(h, true); /* a stalled reader must not deadlock the writer */
			stuck++;
			continue;
		}
		p += w;
		len -= (size_t)w;
	}
	pump();
}

static bool numbered(uint8_t opcode)
{
	switch (opcode) {
	case OP_NOP_OUT:
	case OP_SCSI_CMD:
	case OP_TASK_MGMT_REQ:
	case OP_LOGIN_REQ:
	case OP_TEXT_REQ:
	case OP_LOGOUT_REQ: return true;
	default: return false;
	}
}

/* The CmdSN the target expects next on this connection. */
static uint32_t expected_cmdsn(const struct conn *c)
{
	if (c->sess)
		return c->sess->exp_cmdsn;
	return c->login ? c->login->cmdsn : LOGIN_CMDSN;
}

/* Queue offsets for the PDU record: in order, ahead (held), behind and out of the window. */
static const uint32_t sn_offset[8] = {0, 0, 1, 2, 3, (uint32_t)-1, 127, 0x80000000u};
#define SN_OWN 1 /* sn_offset index: the initiator's own numbering */

/* CmdSN for a PDU of this connection's session, as the PDU record's control byte asks. */
static uint32_t pick_cmdsn(const struct conn *c, unsigned which, bool immediate)
{
	uint32_t exp = expected_cmdsn(c);
	if (which != SN_OWN)
		return exp + sn_offset[which];
	/* One counter for the session this input numbers: a real initiator's CmdSN runs ahead of
	 * ExpCmdSN by the commands in flight, and only non-immediate PDUs advance it. */
	uint16_t tsih = c->sess ? c->sess->tsih : 0;
	if (tsih != own_tsih || sn_lt(own_cmdsn, exp)) {
		own_tsih = tsih;
		own_cmdsn = exp;
	}
	return immediate ? own_cmdsn : own_cmdsn++;
}

#define CTL_KEEP_LEN 0x01
#define CTL_KEEP_CMDSN 0x02
#define CTL_KEEP_STATSN 0x04
#define CTL_BAD_HDIGEST 0x08
#define CTL_BAD_DDIGEST 0x10

/* Frame one PDU as the connection's negotiation says (padding, digests) and send it. */
static void send_pdu(struct hconn *h, uint8_t ctl, uint8_t bhs[BHS_LEN], const uint8_t *ahs, size_t ahs_len,
		     const uint8_t *data, size_t len)
{
	struct conn *c = target_conn(h);
	bool hd = c && c->params.header_digest;
	bool dd = c && c->params.data_digest;
	if (!(ctl & CTL_KEEP_LEN)) {
		bhs[5] = (uint8_t)(len >> 16);
		bhs[6] = (uint8_t)(len >> 8);
		bhs[7] = (uint8_t)len;
	}
	if (avoid_cid_reuse && (bhs[0] & 0x3f) == OP_LOGIN_REQ)
		put_be16(bhs + 20, (uint16_t)(h - hc));
	if (c && !(ctl & CTL_KEEP_CMDSN) && numbered(bhs[0] & 0x3f))
		put_be32(bhs + 24, pick_cmdsn(c, ctl >> 5, bhs[0] & 0x40));
	if (c && !(ctl & CTL_KEEP_STATSN))
		put_be32(bhs + 28, c->statsn);
	size_t padded = pad4((uint32_t)len);
	size_t total = BHS_LEN + ahs_len + (hd ? 4 : 0) + padded + (dd && len ? 4 : 0);
	uint8_t *buf = xcalloc(1, total);
	memcpy(buf, bhs, BHS_LEN);
	if (ahs_len)
		memcpy(buf + BHS_LEN, ahs, ahs_len);
	size_t off = BHS_LEN + ahs_len;
	if (hd) {
		digest_store(buf + off, crc32c(buf, off) ^ (ctl & CTL_BAD_HDIGEST ? 1u : 0u));
		off += 4;
	}
	if (len)
		memcpy(buf + off, data, len);
	if (dd && len)
		digest_store(buf + off + padded, crc32c(buf + off, padded) ^ (ctl & CTL_BAD_DDIGEST ? 1u : 0u));
	send_all(h, buf, total);
	free(buf);
}

/* --- the login helper ------------------------------------------------------------------------ */

static const char *const mrdsl_values[4] = {"512", "8192", "65536", "16777215"};
static const char *const max_burst_values[4] = {"512", "16384", "262144", "16777215"};
static const char *const first_burst_values[4] = {"512", "8192", "65536", "16777215"};
static const char *const max_r2t_values[4] = {"1", "2", "16", "65535"};

static bool plan_chap(const struct hconn *h)
{
	if (h->plan[0] & P0_DISCOVERY)
		return srv.cfg->discovery_chap.user != NULL;
	return (h->plan[0] & P0_CHAP_TARGET) != 0;
}

static void login_plan(struct hconn *h, unsigned index, const uint8_t plan[3])
{
	memcpy(h->plan, plan, 3);
	h->planned = true;
	static const uint8_t isids[4][6] = {
		{0x80, 0x00, 0x00, 0x01, 0x00, 0x00},
		{0x80, 0x00, 0x00, 0x01, 0x00, 0x01},
		{0x40, 0x00, 0x12, 0x34, 0x00, 0x00},
		{0x00, 0x02, 0x3d, 0x00, 0x00, 0x07},
	};
	memcpy(h->isid, isids[plan[2] & 3], 6);
	h->cid = plan[2] & P2_SAME_CID && !avoid_cid_reuse ? 0 : (uint16_t)index;
	if ((plan[0] & P0_JOIN) && first_tsih) {
		h->tsih = first_tsih;
		memcpy(h->isid, first_isid, 6);
	}
	h->cred.user = CHAP_USER;
	h->cred.secret = plan[1] & P1_WRONG_SECRET ? "not-the-secret-at-all" : CHAP_SECRET;
	if (plan[1] & P1_MUTUAL) {
		h->cred.mutual_user = MUTUAL_USER;
		h->cred.mutual_secret = MUTUAL_SECRET;
	}
	chap_initiator_init(&h->chap, &h->cred);
}

static void add_identity(const struct hconn *h, struct text_list *kv)
{
	text_add(kv, "InitiatorName", INITIATOR);
	text_add(kv, "InitiatorAlias", "fuzz");
	if (h->plan[0] & P0_DISCOVERY)
		text_add(kv, "SessionType", "Discovery");
	else
		text_add(kv, "TargetName", h->plan[0] & P0_CHAP_TARGET ? TARGET_CHAP : TARGET_PLAIN);
}

static void add_operational(const struct hconn *h, struct text_list *kv)
{
	const uint8_t *p = h->plan;
	text_add(kv, "HeaderDigest", p[0] & P0_HDIGEST ? "CRC32C,None" : "None");
	text_add(kv, "DataDigest", p[0] & P0_DDIGEST ? "CRC32C,None" : "None");
	text_add(kv, "MaxRecvDataSegmentLength", mrdsl_values[p[1] & 3]);
	if (h->tsih == 0 && !(p[0] & P0_DISCOVERY)) {
		/* Session-wide keys belong to the leading connection only. */
		text_add(kv, "InitialR2T", p[0] & P0_INITIAL_R2T ? "Yes" : "No");
		text_add(kv, "ImmediateData", p[0] & P0_NO_IMMEDIATE ? "No" : "Yes");
		text_add(kv, "MaxBurstLength", max_burst_values[(p[1] >> 2) & 3]);
		text_add(kv, "FirstBurstLength", first_burst_values[(p[1] >> 2) & 3]);
		text_add(kv, "MaxOutstandingR2T", max_r2t_values[(p[1] >> 4) & 3]);
		text_add(kv, "MaxConnections", p[2] & P2_ONE_CONNECTION ? "1" : "8");
		text_add(kv, "DefaultTime2Wait", "0");
		text_add(kv, "DefaultTime2Retain", "0");
		text_add(kv, "ErrorRecoveryLevel", "0");
		text_add(kv, "DataPDUInOrder", "Yes");
		text_add(kv, "DataSequenceInOrder", "Yes");
	}
	if (p[2] & P2_ODD_KEYS) {
		text_add(kv, "X-org.isthmus.fuzz", "1");
		text_add(kv, "ErrorRecoveryLevel2", "2");
		text_add(kv, "IFMarker", "Yes");
		text_add(kv, "TaskReporting", "FastAbort");
	}
}

static void send_login(struct hconn *h, int csg, int nsg, bool transit, bool cont, const uint8_t *text,
		       size_t len)
{
	struct conn *c = target_conn(h);
	struct bhs b = {0};
	b.opcode = OP_LOGIN_REQ;
	b.immediate = true;
	b.final = transit;
	b.data_len = (uint32_t)len;
	b.itt = 0x10 + (uint32_t)(h - hc);
	b.login.cont = cont;
	b.login.csg = (uint8_t)csg;
	b.login.nsg = transit ? (uint8_t)nsg : 0;
	memcpy(b.login.isid, h->isid, 6);
	b.login.tsih = h->tsih;
	b.login.cid = h->cid;
	b.login.cmdsn = LOGIN_CMDSN;
	if (h->tsih) {
		for (size_t i = 0; i < srv.nsessions; i++)
			if (srv.sessions[i]->tsih == h->tsih)
				b.login.cmdsn = srv.sessions[i]->exp_cmdsn;
	}
	b.login.expstatsn = c && c->login && c->login->phase != LOGIN_AWAIT_FIRST ? h->expstatsn : 0;
	uint8_t raw[BHS_LEN];
	bhs_encode(&b, raw);
	h->capture = true;
	sbuf_reset(&h->in);
	send_pdu(h, CTL_KEEP_LEN | CTL_KEEP_CMDSN | CTL_KEEP_STATSN, raw, NULL, 0, text, len);
	drain(h, true);
}

/* The last Login Response the target sent, its keys in h->last. False if there was none. */
static bool read_login_response(struct hconn *h, struct bhs *rsp)
{
	bool found = false;
	text_clear(&h->last);
	for (size_t pos = 0; pos + BHS_LEN <= h->in.len;) {
		const uint8_t *p = h->in.data + pos;
		struct bhs b;
		char why[96];
		if (bhs_decode(p, &b, why, sizeof(why)) != 0)
			break;
		size_t dpos = pos + BHS_LEN + b.total_ahs_len;
		size_t end = dpos + pad4(b.data_len);
		if (end > h->in.len)
			break;
		if (b.opcode == OP_LOGIN_RESP) {
			*rsp = b;
			found = true;
			text_clear(&h->last);
			char err[128];
			text_parse(h->in.data + dpos, b.data_len, &h->last, err, sizeof(err));
		}
		pos = end;
	}
	h->capture = false;
	sbuf_reset(&h->in);
	if (found)
		h->expstatsn = rsp->login.statsn + 1;
	return found;
}

/* Send a request with these keys (split over two PDUs with the C bit if planned); read the answer. */
static bool login_exchange(struct hconn *h, int csg, int nsg, bool transit, const struct text_list *kv,
			   struct bhs *rsp)
{
	struct sbuf text = {0};
	text_encode(kv, &text);
	size_t first = h->plan[2] & P2_SPLIT ? text.len / 2 : 0;
	bool ok = true;
	if (first) {
		send_login(h, csg, nsg, false, true, text.data, first);
		ok = read_login_response(h, rsp) && rsp->login.status_class == 0;
	}
	if (ok) {
		send_login(h, csg, nsg, transit, false, text.data + first, text.len - first);
		ok = read_login_response(h, rsp) && rsp->login.status_class == 0;
	}
	sbuf_free(&text);
	return ok;
}

/*
 * One step of a correct login: the security stage (AuthMethod; CHAP_A; CHAP_N and CHAP_R, with
 * CHAP_I and CHAP_C for mutual CHAP), then the operational stage, then full feature phase.
 * Returns false when nothing more can be done.
 */
static bool login_step(struct hconn *h)
{
	struct text_list kv = {0}, out = {0};
	struct bhs rsp;
	char why[160];
	bool ok = false;
	switch (h->state) {
	case HL_START:
		add_identity(h, &kv);
		if (h->plan[0] & P0_SKIP_SECURITY) {
			add_operational(h, &kv);
			ok = login_exchange(h, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, true, &kv, &rsp);
			h->state = !ok ? HL_FAILED : rsp.final && rsp.login.nsg == STAGE_FULL_FEATURE ? HL_DONE : HL_OPER;
			break;
		}
		text_add(&kv, "AuthMethod", plan_chap(h) ? "CHAP,None" : "None");
		ok = login_exchange(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, &kv, &rsp);
		if (!ok)
			h->state = HL_FAILED;
		else if (text_get(&h->last, "AuthMethod") && strcmp(text_get(&h->last, "AuthMethod"), "CHAP") == 0)
			h->state = HL_CHAP_A;
		else
			h->state = rsp.final ? HL_OPER : HL_START;
		break;
	case HL_CHAP_A:
		chap_initiator_step(&h->chap, NULL, &kv, why, sizeof(why));
		ok = login_exchange(h, STAGE_SECURITY, STAGE_OPERATIONAL, false, &kv, &rsp);
		if (ok) {
			/* CHAP_DONE for one-way CHAP; CHAP_CONTINUE when the target has to prove itself too. */
			enum chap_result cr = chap_initiator_step(&h->chap, &h->last, &out, why, sizeof(why));
			ok = cr == CHAP_DONE || cr == CHAP_CONTINUE;
		}
		h->state = ok ? HL_CHAP_R : HL_FAILED;
		/* The answer goes out in the next step; keep it where that step finds it. */
		text_clear(&h->last);
		h->last = out;
		out = (struct text_list){0};
		break;
	case HL_CHAP_R:
		kv = h->last;
		h->last = (struct text_list){0};
		ok = login_exchange(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, &kv, &rsp);
		if (ok && (h->plan[1] & P1_MUTUAL))
			ok = chap_initiator_step(&h->chap, &h->last, &out, why, sizeof(why)) == CHAP_DONE;
		h->state = ok && rsp.final ? HL_OPER : HL_FAILED;
		break;
	case HL_OPER:
		add_operational(h, &kv);
		ok = login_exchange(h, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, true, &kv, &rsp);
		h->state = !ok ? HL_FAILED : rsp.final && rsp.login.nsg == STAGE_FULL_FEATURE ? HL_DONE : HL_OPER;
		break;
	case HL_DONE:
	case HL_FAILED:
		break;
	}
	if (h->state == HL_DONE && !(h->plan[0] & P0_DISCOVERY) && !first_tsih) {
		first_tsih = rsp.login.tsih;
		memcpy(first_isid, h->isid, 6);
	}
	text_clear(&kv);
	text_clear(&out);
	return ok && h->state != HL_DONE && h->state != HL_FAILED;
}

static void rec_login(struct hconn *h, unsigned index, struct reader *r)
{
	uint8_t plan[3] = {rd_u8(r), rd_u8(r), rd_u8(r)};
	if (!h->planned)
		login_plan(h, index, plan);
	unsigned budget = (h->plan[2] >> 4) & 3;
	if (!budget)
		budget = 8;
	for (unsigned i = 0; i < budget && target_conn(h) && login_step(h); i++) {
	}
}

/* With a sanitizer runtime: the heap in use, which shows what the target holds between records. */
size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static void trace_record(unsigned index, unsigned kind)
{
	static const char *const names[NKINDS] = {"raw", "pdu", "login", "close", "stall", "shutdown", "repeat"};
	const struct hconn *h = &hc[index];
	const struct conn *c = target_conn(h);
	if (!c) {
		fprintf(stderr, "trace: %-8s conn %u: gone\n", names[kind], index);
		return;
	}
	fprintf(stderr,
		"trace: %-8s conn %u: phase %d login-helper %d TSIH %u ExpCmdSN %u StatSN %u tasks %u held %s "
		"pdus in/out %llu/%llu commands %llu errors %llu r2ts %llu digest errors %llu heap %zu KiB\n",
		names[kind], index, c->phase, h->state, c->sess ? c->sess->tsih : 0, c->sess ? c->sess->exp_cmdsn : 0,
		c->statsn, c->ntasks, c->sess && c->sess->nheld ? "yes" : "no", (unsigned long long)c->stats.pdus_in,
		(unsigned long long)c->stats.pdus_out, (unsigned long long)c->stats.commands,
		(unsigned long long)c->stats.errors, (unsigned long long)c->stats.r2ts,
		(unsigned long long)c->stats.digest_errors,
		__sanitizer_get_current_allocated_bytes ? __sanitizer_get_current_allocated_bytes() / 1024 : 0);
}

/* --- one input -------------------------------------------------------------------------------- */

static void broken(const char *what, const struct conn *c)
{
	fprintf(stderr, "fuzz_target_conn: %s (connection cid %u, phase %d)\n", what, c->cid, c->phase);
	abort();
}

/*
 * The target's own bookkeeping, checked after every record: a connection's task count and
 * buffered bytes match its tasks, its session is one the server still has and lists it.
 */
static void check_state(void)
{
	for (const struct conn *c = srv.shards[0]->conns; c; c = c->next) {
		uint32_t n = 0;
		uint64_t buffered = 0;
		for (const struct task *t = c->tasks; t && n <= c->ntasks; t = t->next) {
			n++;
			buffered += t->buffered;
		}
		if (n != c->ntasks)
			broken("ntasks differs from the task list", c);
		if (buffered != c->buffered)
			broken("buffered bytes differ from the sum over its tasks", c);
		if (!c->sess)
			continue;
		bool live = false;
		for (size_t i = 0; i < srv.nsessions && !live; i++)
			live = srv.sessions[i] == c->sess;
		if (!live)
			broken("connection belongs to a session the server no longer has", c);
		bool listed = false;
		for (const struct conn *o = c->sess->conns; o && !listed; o = o->sess_next)
			listed = o == c;
		if (!listed)
			broken("connection missing from its session's list", c);
	}
}

static void rec_pdu(struct hconn *h, struct reader *r)
{
	uint8_t ctl = rd_u8(r);
	uint8_t bhs[BHS_LEN] = {0};
	size_t n = BHS_LEN;
	memcpy(bhs, rd_take(r, &n), n);
	size_t ahs_len = bhs[4] * 4u;
	const uint8_t *ahs = rd_take(r, &ahs_len);
	size_t len = rd_u16(r);
	const uint8_t *data = rd_take(r, &len);
	send_pdu(h, ctl, bhs, ahs, ahs_len, data, len);
}

static void open_conns(unsigned n)
{
	nhc = 0;
	for (unsigned i = 0; i < n; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			fatal("socketpair", strerror(errno));
		struct hconn *h = &hc[nhc++];
		memset(h, 0, sizeof(*h));
		h->fd = sv[0];
		h->tfd = sv[1];
		conn_accept(&srv, sv[1], 1);
	}
}

/* Close everything and check the server is back where it started. */
static void finish_input(void)
{
	for (unsigned i = 0; i < nhc; i++) {
		struct hconn *h = &hc[i];
		if (h->fd >= 0)
			close(h->fd);
		h->fd = -1;
		sbuf_free(&h->in);
		text_clear(&h->last);
	}
	pump();
	if (srv.shards[0]->conns) {
		/* Every peer has gone: a connection still here would live forever in a real target. */
		fprintf(stderr, "fuzz_target_conn: connection (phase %d) outlived its peer\n", srv.shards[0]->conns->phase);
		abort();
	}
	loop_run_once(srv.loop, 0); /* deferred frees */
	if (srv.nsessions) {
		fprintf(stderr, "fuzz_target_conn: session TSIH %u outlived its connections\n", srv.sessions[0]->tsih);
		abort();
	}
	srv.shutting_down = false;
	loop_timer_stop(srv.loop, &srv.tick);
	srv.next_tsih = 1;
	srv.next_nexus_id = 0;
	if (srv.shards[0]->closed.commands != scsi_seen.commands || srv.shards[0]->closed.task_mgmt != scsi_seen.task_mgmt)
		reset_luns();
	scsi_seen = srv.shards[0]->closed;
	nodes_used = 0;
}

static void run_record(uint8_t op, unsigned n, struct reader *r)
{
	unsigned index = (op >> 6) % n;
	struct hconn *h = &hc[index];
	unsigned kind = (op & 0x3f) % NKINDS;
	switch (kind) {
	case K_RAW: {
		size_t len = rd_u16(r);
		const uint8_t *p = rd_take(r, &len);
		send_all(h, p, len);
		break;
	}
	case K_PDU: rec_pdu(h, r); break;
	case K_LOGIN: rec_login(h, index, r); break;
	case K_CLOSE: {
		uint8_t how = rd_u8(r);
		if (h->fd >= 0) {
			if (how & 1) {
				close(h->fd);
				h->fd = -1;
			} else {
				shutdown(h->fd, SHUT_WR);
			}
		}
		pump();
		break;
	}
	case K_STALL:
		h->stalled = !h->stalled;
		pump();
		break;
	case K_SHUTDOWN:
		server_stop(&srv);
		pump();
		break;
	}
	for (size_t i = 0; i < srv.nsessions; i++)
		for (size_t k = 0; k < srv.nnodes && k < 32; k++)
			if (srv.sessions[i]->node == srv.nodes[k])
				nodes_used |= 1u << k;
	check_state();
	if (trace)
		trace_record(index, kind);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reader r = {data, size};
	uint8_t mode = rd_u8(&r);
	unsigned n = 1 + (mode & 3) % 3;
	static const struct cfg_chap no_chap;
	srv.cfg->discovery_chap = mode & 4 ? discovery_chap : no_chap;
	first_tsih = 0;
	own_tsih = 0;
	own_cmdsn = 0;
	open_conns(n);
	pump();
	while (r.left) {
		uint8_t op = rd_u8(&r);
		unsigned times = 1;
		if ((op & 0x3f) % NKINDS == K_REPEAT) {
			times = rd_u8(&r) + 1u;
			op = rd_u8(&r);
			if ((op & 0x3f) % NKINDS == K_REPEAT)
				continue; /* no nesting: one input stays bounded in time */
		}
		/* Every repetition reads the same record body. */
		struct reader body = r;
		for (unsigned i = 0; i < times; i++) {
			body = r;
			run_record(op, n, &body);
		}
		r = body;
	}
	finish_input();
	return 0;
}
