/*
 * The target's login (RFC 7143 6.3, 11.12-11.13) seen from a fake initiator: stages and
 * transitions, CHAP, every refusal with its status class and detail, requests continued over
 * several PDUs, and the negotiated values taking effect in full feature phase.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "engine_harness.h"
#include "proto/chap.h"

#define DEPTH 128u /* the default command slots per session: the login window */

static const char names[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET "\0SessionType=Normal";

static const char op_plain[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
			       "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=65536\0FirstBurstLength=16384\0"
			       "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";

/* A Login Response with these header fields; the status (class << 8 | detail) and StatSN exact. */
static void check_login_rsp(const struct eh_pdu *p, bool transit, int csg, int nsg, uint16_t status, uint32_t statsn)
{
	CHECK_EQ(p->b.opcode, OP_LOGIN_RESP);
	CHECK_EQ(p->b.final, transit);
	CHECK_EQ(p->b.login.cont, false);
	CHECK_EQ(p->b.login.csg, csg);
	CHECK_EQ(p->b.login.nsg, nsg);
	CHECK_EQ(p->b.login.status_class << 8 | p->b.login.status_detail, status);
	CHECK_EQ(p->b.login.statsn, statsn);
	CHECK_EQ(p->b.login.version_max, 0);
	CHECK_EQ(p->b.login.version_min, 0);
	CHECK_EQ(p->b.itt, 0x77);
	CHECK_EQ(p->b.login.isid[0], 0x80);
	CHECK_EQ(p->b.login.isid[5], 0x07);
}

/* A refused login: one response with the status, T=0, then the target closes the connection. */
static void check_refused(struct eh *h, int csg, uint16_t status, uint32_t statsn)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, false, csg, 0, status, statsn);
	CHECK_EQ(p.b.login.tsih, 0);
	CHECK_EQ(p.len, 0);
	eh_pdu_free(&p);
	CHECK_EQ(eh_recv(h, &p), -1);
	CHECK(eh_closed(h));
}

/* A new connection's first Login Request (T bit set), refused with status at its own stage. */
static void first_request_refused(const struct eh_opts *o, int csg, int nsg, const char *keys, uint32_t len,
				  uint16_t status)
{
	struct eh *h = eh_new(o);
	eh_login_req(h, csg, nsg, true, false, EH_CMDSN0, EH_STATSN0, keys, len);
	check_refused(h, csg, status, EH_STATSN0);
	eh_free(h);
}

/* The operational stage offering op_plain, answered with the transit to full feature phase, TSIH 1. */
static void operational_to_full_feature(struct eh *h, uint32_t expstatsn, struct eh_pdu *p)
{
	eh_login_req(h, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, true, false, EH_CMDSN0, expstatsn, EH_KEYS(op_plain));
	CHECK_EQ(eh_recv(h, p), 0);
	check_login_rsp(p, true, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, 0, expstatsn);
	CHECK_EQ(p->b.login.tsih, 1);
}

static void test_login_stages(void)
{
	printf("login: security -> operational -> full feature, StatSN / CmdSN / TSIH on every response\n");
	struct eh *h = eh_new(NULL);
	static const char sec[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET
				  "\0SessionType=Normal\0AuthMethod=None";
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, false, EH_CMDSN0, EH_STATSN0, EH_KEYS(sec));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	/* The first response's StatSN is the first request's ExpStatSN. */
	check_login_rsp(&p, true, STAGE_SECURITY, STAGE_OPERATIONAL, 0, EH_STATSN0);
	CHECK_EQ(p.b.login.tsih, 0);
	CHECK_EQ(p.b.login.expcmdsn, EH_CMDSN0);
	CHECK_EQ(p.b.login.maxcmdsn, EH_CMDSN0 + DEPTH - 1);
	struct text_list k = eh_keys(&p);
	CHECK_STR(text_get(&k, "AuthMethod"), "None");
	CHECK_STR(text_get(&k, "TargetPortalGroupTag"), "1");
	CHECK_STR(text_get(&k, "TargetAlias"), "engine");
	CHECK_EQ(k.n, 3);
	text_clear(&k);
	eh_pdu_free(&p);

	operational_to_full_feature(h, EH_STATSN0 + 1, &p);
	CHECK_EQ(p.b.login.expcmdsn, EH_CMDSN0);
	CHECK_EQ(p.b.login.maxcmdsn, EH_CMDSN0 + DEPTH - 1);
	eh_pdu_free(&p);
	CHECK_EQ(eh_recv(h, &p), -1);

	/* Full feature phase: a NOP-Out is answered, numbered after the login. */
	struct bhs b = {0};
	b.opcode = OP_NOP_OUT;
	b.final = true;
	b.itt = 0x500;
	b.nop_out.ttt = RESERVED_TAG;
	b.nop_out.cmdsn = EH_CMDSN0;
	b.nop_out.expstatsn = EH_STATSN0 + 2;
	eh_send(h, &b, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_NOP_IN);
	CHECK_EQ(p.b.itt, 0x500);
	CHECK_EQ(p.b.nop_in.statsn, EH_STATSN0 + 2);
	CHECK_EQ(p.b.nop_in.expcmdsn, EH_CMDSN0 + 1);
	CHECK_EQ(p.b.nop_in.maxcmdsn, EH_CMDSN0 + DEPTH);
	eh_pdu_free(&p);
	eh_free(h);
}

static void test_login_skip_security(void)
{
	printf("login: straight into the operational stage when no CHAP is required\n");
	struct eh *h = eh_new(NULL);
	struct sbuf t = {0};
	sbuf_append(&t, names, sizeof(names));
	sbuf_append(&t, op_plain, sizeof(op_plain));
	eh_login_req(h, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, true, false, 7, 40, t.data, (uint32_t)t.len);
	sbuf_free(&t);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, true, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, 0, 40);
	CHECK_EQ(p.b.login.tsih, 1);
	CHECK_EQ(p.b.login.expcmdsn, 7);
	CHECK_EQ(p.b.login.maxcmdsn, 7 + DEPTH - 1);
	struct text_list k = eh_keys(&p);
	CHECK_STR(text_get(&k, "TargetPortalGroupTag"), "1");
	CHECK(text_get(&k, "AuthMethod") == NULL);
	text_clear(&k);
	eh_pdu_free(&p);
	eh_free(h);
}

static const char neg_offer[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
				"InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=16384\0"
				"MaxOutstandingR2T=4\0ErrorRecoveryLevel=0\0MaxConnections=1\0DefaultTime2Wait=5\0"
				"DefaultTime2Retain=10\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes";

static void test_login_negotiation(void)
{
	printf("login: negotiation results (min, and, or, declared) and MaxRecvDataSegmentLength in effect\n");
	struct eh *h = eh_new(NULL);
	struct text_list k = {0};
	CHECK_EQ(eh_login(h, EH_KEYS(neg_offer), &k), 1);
	CHECK_STR(text_get(&k, "HeaderDigest"), "None");
	CHECK_STR(text_get(&k, "DataDigest"), "None");
	CHECK_STR(text_get(&k, "MaxRecvDataSegmentLength"), "262144"); /* the target's own, declared */
	CHECK_STR(text_get(&k, "InitialR2T"), "No");                  /* OR of No and No */
	CHECK_STR(text_get(&k, "ImmediateData"), "Yes");              /* AND of Yes and Yes */
	CHECK_STR(text_get(&k, "MaxBurstLength"), "65536");          /* min(65536, 1048576) */
	CHECK_STR(text_get(&k, "FirstBurstLength"), "16384");        /* min(16384, 262144) */
	CHECK_STR(text_get(&k, "MaxOutstandingR2T"), "4");           /* min(4, 16) */
	CHECK_STR(text_get(&k, "ErrorRecoveryLevel"), "0");
	CHECK_STR(text_get(&k, "MaxConnections"), "1");              /* min(1, 8) */
	CHECK_STR(text_get(&k, "DefaultTime2Wait"), "5");            /* max(5, 2) */
	CHECK_STR(text_get(&k, "DefaultTime2Retain"), "0");          /* min(10, 0) */
	CHECK_STR(text_get(&k, "DataPDUInOrder"), "Yes");
	CHECK_STR(text_get(&k, "DataSequenceInOrder"), "Yes");
	text_clear(&k);

	/* The initiator's MaxRecvDataSegmentLength of 4096 splits a 16 KiB read into four Data-In. */
	eh_clear_unit_attention(h, 0x0f, EH_CMDSN0);
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, false, 0, 32);
	eh_scsi_cmd(h, 0x10, EH_CMDSN0 + 1, false, true, true, false, 16384, cdb, NULL, 0);
	for (uint32_t i = 0; i < 4; i++) {
		struct eh_pdu p;
		CHECK_EQ(eh_recv(h, &p), 0);
		CHECK_EQ(p.b.opcode, OP_DATA_IN);
		CHECK_EQ(p.len, 4096);
		CHECK_EQ(p.b.data_in.datasn, i);
		CHECK_EQ(p.b.data_in.offset, i * 4096);
		CHECK_EQ(p.b.data_in.status_present, i == 3);
		CHECK_EQ(p.b.final, i == 3);
		if (i == 3) {
			CHECK_EQ(p.b.data_in.status, 0);
			CHECK_EQ(p.b.data_in.statsn, EH_STATSN0 + 3);
			CHECK_EQ(p.b.data_in.expcmdsn, EH_CMDSN0 + 2);
			CHECK_EQ(p.b.data_in.maxcmdsn, EH_CMDSN0 + 1 + DEPTH);
		}
		eh_pdu_free(&p);
	}
	eh_free(h);

	printf("login: the target's configured InitialR2T=Yes and ImmediateData=No win the negotiation\n");
	struct eh_opts o = {.target_params = "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=8192\0\0"};
	h = eh_new(&o);
	CHECK_EQ(eh_login(h, EH_KEYS(neg_offer), &k), 1);
	CHECK_STR(text_get(&k, "InitialR2T"), "Yes");
	CHECK_STR(text_get(&k, "ImmediateData"), "No");
	CHECK_STR(text_get(&k, "MaxBurstLength"), "8192");
	/* FirstBurstLength may not exceed MaxBurstLength (RFC 7143 13.14). */
	CHECK_STR(text_get(&k, "FirstBurstLength"), "8192");
	text_clear(&k);
	eh_free(h);
}

/* The CHAP_R for a challenge in p's keys with this secret, as "0x..." in out. */
static void chap_answer(const struct text_list *k, const char *secret, char *out, size_t cap)
{
	const char *id = text_get(k, "CHAP_I"), *chal = text_get(k, "CHAP_C");
	CHECK(id && chal);
	uint8_t c[CHAP_MAX_CHALLENGE], r[CHAP_MAX_DIGEST];
	long clen = chal ? chap_decode_binary(chal, c, sizeof(c)) : -1;
	CHECK(clen > 0);
	size_t n = chap_compute(CHAP_ALG_MD5, (uint8_t)atoi(id ? id : "0"), (const uint8_t *)secret, strlen(secret), c,
				clen > 0 ? (size_t)clen : 0, r);
	CHECK_EQ(n, 16);
	chap_encode_hex(r, n, out, cap);
}

/* Security stage with CHAP up to the challenge; returns its keys. StatSN EH_STATSN0, +1 used. */
static struct text_list chap_challenge(struct eh *h)
{
	static const char offer[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET
				    "\0SessionType=Normal\0AuthMethod=CHAP,None";
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, false, EH_CMDSN0, EH_STATSN0, EH_KEYS(offer));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	/* Authentication is not done yet: the target stays in the security stage (T=0). */
	check_login_rsp(&p, false, STAGE_SECURITY, 0, 0, EH_STATSN0);
	struct text_list k = eh_keys(&p);
	CHECK_STR(text_get(&k, "AuthMethod"), "CHAP");
	text_clear(&k);
	eh_pdu_free(&p);
	static const char alg[] = "CHAP_A=5";
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, false, false, EH_CMDSN0, EH_STATSN0 + 1, EH_KEYS(alg));
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, false, STAGE_SECURITY, 0, 0, EH_STATSN0 + 1);
	k = eh_keys(&p);
	CHECK_STR(text_get(&k, "CHAP_A"), "5");
	eh_pdu_free(&p);
	return k;
}

static void chap_respond_as(struct eh *h, const char *user, const char *secret, const struct text_list *k)
{
	char r[2 * CHAP_MAX_DIGEST + 3];
	chap_answer(k, secret, r, sizeof(r));
	char text[256];
	int n = snprintf(text, sizeof(text), "CHAP_N=%s%cCHAP_R=%s", user, 0, r);
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, false, EH_CMDSN0, EH_STATSN0 + 2, text,
		     (uint32_t)n + 1);
}

/* The CHAP exchange up to the initiator's response, as user with secret, to the challenge it got. */
static void chap_answered(struct eh *h, const char *user, const char *secret)
{
	struct text_list k = chap_challenge(h);
	chap_respond_as(h, user, secret, &k);
	text_clear(&k);
}

static void test_login_chap(void)
{
	printf("login: CHAP (MD5) with the target's account, then operational, then full feature\n");
	struct eh_opts o = {.chap = true};
	struct eh *h = eh_new(&o);
	chap_answered(h, EH_CHAP_USER, EH_CHAP_SECRET);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, true, STAGE_SECURITY, STAGE_OPERATIONAL, 0, EH_STATSN0 + 2);
	CHECK_EQ(p.len, 0); /* one-way CHAP: nothing more to say */
	eh_pdu_free(&p);
	operational_to_full_feature(h, EH_STATSN0 + 3, &p);
	eh_pdu_free(&p);
	eh_free(h);

	printf("login: a wrong CHAP response is refused with 0x0201 and the connection closes\n");
	h = eh_new(&o);
	chap_answered(h, EH_CHAP_USER, "not-the-secret-at-all");
	check_refused(h, STAGE_SECURITY, LOGIN_AUTH_FAILED, EH_STATSN0 + 2);
	eh_free(h);

	printf("login: a CHAP target refuses AuthMethod=None (0x0201)\n");
	static const char none[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET "\0AuthMethod=None";
	first_request_refused(&o, STAGE_SECURITY, STAGE_OPERATIONAL, EH_KEYS(none), LOGIN_AUTH_FAILED);

	printf("login: a CHAP target refuses a login that skips the security stage (0x0201)\n");
	first_request_refused(&o, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, EH_KEYS(names), LOGIN_AUTH_FAILED);
}

static void test_login_own_account(void)
{
	printf("login: an initiator with its own CHAP account proves that one (the target's default would fail)\n");
	struct eh_opts o = {.chap = true, .own_account = true};
	struct eh *h = eh_new(&o);
	chap_answered(h, EH_OWN_USER, EH_OWN_SECRET);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, true, STAGE_SECURITY, STAGE_OPERATIONAL, 0, EH_STATSN0 + 2);
	eh_pdu_free(&p);
	eh_free(h);

	h = eh_new(&o);
	chap_answered(h, EH_CHAP_USER, EH_CHAP_SECRET);
	check_refused(h, STAGE_SECURITY, LOGIN_AUTH_FAILED, EH_STATSN0 + 2);
	eh_free(h);
}

static void test_login_refusals(void)
{
	struct eh *h;
	printf("login: unknown TargetName -> 0x0203 (not found)\n");
	static const char unknown[] = "InitiatorName=" EH_INITIATOR "\0TargetName=iqn.2026-11.org.isthmus:nope";
	first_request_refused(NULL, STAGE_SECURITY, STAGE_OPERATIONAL, EH_KEYS(unknown), LOGIN_NOT_FOUND);

	printf("login: no InitiatorName -> 0x0207 (missing parameter)\n");
	static const char noname[] = "TargetName=" EH_TARGET "\0AuthMethod=None";
	first_request_refused(NULL, STAGE_SECURITY, STAGE_OPERATIONAL, EH_KEYS(noname), LOGIN_MISSING_PARAMETER);

	printf("login: no TargetName in a normal session -> 0x0207\n");
	static const char notarget[] = "InitiatorName=" EH_INITIATOR "\0AuthMethod=None";
	first_request_refused(NULL, STAGE_SECURITY, STAGE_OPERATIONAL, EH_KEYS(notarget), LOGIN_MISSING_PARAMETER);

	printf("login: Version-min 1 -> 0x0205 (unsupported version)\n");
	h = eh_new(NULL);
	struct bhs b = {0};
	b.opcode = OP_LOGIN_REQ;
	b.immediate = true;
	b.final = true;
	b.itt = 0x77;
	b.login.csg = STAGE_SECURITY;
	b.login.nsg = STAGE_OPERATIONAL;
	b.login.version_max = 2;
	b.login.version_min = 1;
	b.login.isid[0] = 0x80;
	b.login.isid[5] = 0x07;
	b.login.cid = 1;
	b.login.cmdsn = EH_CMDSN0;
	b.login.expstatsn = EH_STATSN0;
	eh_send(h, &b, EH_KEYS(names));
	check_refused(h, STAGE_SECURITY, LOGIN_UNSUPPORTED_VERSION, EH_STATSN0);
	eh_free(h);

	printf("login: transit to the reserved stage 2 -> 0x0200 (initiator error)\n");
	first_request_refused(NULL, STAGE_SECURITY, 2, EH_KEYS(names), LOGIN_INITIATOR_ERROR);

	printf("login: transit backwards (operational -> security) -> 0x0200\n");
	first_request_refused(NULL, STAGE_OPERATIONAL, STAGE_SECURITY, EH_KEYS(names), LOGIN_INITIATOR_ERROR);

	printf("login: a request in a stage other than the current one -> 0x0200\n");
	h = eh_new(NULL);
	static const char sec[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET "\0AuthMethod=None";
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, false, false, EH_CMDSN0, EH_STATSN0, EH_KEYS(sec));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, false, STAGE_SECURITY, 0, 0, EH_STATSN0);
	eh_pdu_free(&p);
	eh_login_req(h, STAGE_OPERATIONAL, STAGE_FULL_FEATURE, true, false, EH_CMDSN0, EH_STATSN0 + 1,
		     EH_KEYS(op_plain));
	check_refused(h, STAGE_SECURITY, LOGIN_INITIATOR_ERROR, EH_STATSN0 + 1);
	eh_free(h);

	printf("login: a non-login PDU during login -> 0x020b (invalid during login)\n");
	h = eh_new(NULL);
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, false, false, EH_CMDSN0, EH_STATSN0, EH_KEYS(sec));
	CHECK_EQ(eh_recv(h, &p), 0);
	eh_pdu_free(&p);
	memset(&b, 0, sizeof(b));
	b.opcode = OP_NOP_OUT;
	b.immediate = true;
	b.final = true;
	b.itt = 0x78;
	b.nop_out.ttt = RESERVED_TAG;
	b.nop_out.cmdsn = EH_CMDSN0;
	eh_send(h, &b, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGIN_RESP);
	CHECK_EQ(p.b.login.status_class << 8 | p.b.login.status_detail, LOGIN_INVALID_DURING_LOGIN);
	CHECK_EQ(p.b.login.statsn, EH_STATSN0 + 1);
	eh_pdu_free(&p);
	CHECK(eh_closed(h));
	eh_free(h);

	printf("login: a first PDU that is not a Login Request closes the connection without an answer\n");
	h = eh_new(NULL);
	eh_send(h, &b, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), -1);
	CHECK(eh_closed(h));
	eh_free(h);
}

static void test_login_continued(void)
{
	printf("login: a request split over three PDUs with the C bit; each part acknowledged with no keys\n");
	struct eh *h = eh_new(NULL);
	static const char sec[] = "InitiatorName=" EH_INITIATOR "\0TargetName=" EH_TARGET
				  "\0SessionType=Normal\0AuthMethod=None";
	/* Cut in the middle of a key and in the middle of a value: only the whole text is parsed. */
	const uint32_t cut1 = 5, cut2 = 60;
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, false, true, EH_CMDSN0, EH_STATSN0, sec, cut1);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, false, STAGE_SECURITY, 0, 0, EH_STATSN0);
	CHECK_EQ(p.len, 0);
	CHECK_EQ(p.b.login.expcmdsn, EH_CMDSN0);
	eh_pdu_free(&p);
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, false, true, EH_CMDSN0, EH_STATSN0 + 1, sec + cut1,
		     cut2 - cut1);
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, false, STAGE_SECURITY, 0, 0, EH_STATSN0 + 1);
	CHECK_EQ(p.len, 0);
	eh_pdu_free(&p);
	/* The last part carries T=1: the answer to the whole request. */
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, false, EH_CMDSN0, EH_STATSN0 + 2, sec + cut2,
		     (uint32_t)sizeof(sec) - cut2);
	CHECK_EQ(eh_recv(h, &p), 0);
	check_login_rsp(&p, true, STAGE_SECURITY, STAGE_OPERATIONAL, 0, EH_STATSN0 + 2);
	struct text_list k = eh_keys(&p);
	CHECK_STR(text_get(&k, "AuthMethod"), "None");
	CHECK_STR(text_get(&k, "TargetPortalGroupTag"), "1");
	text_clear(&k);
	eh_pdu_free(&p);
	operational_to_full_feature(h, EH_STATSN0 + 3, &p);
	eh_pdu_free(&p);
	eh_free(h);

	printf("login: the C bit together with the T bit (RFC 7143 11.12.2) -> 0x0200, then the close\n");
	h = eh_new(NULL);
	eh_login_req(h, STAGE_SECURITY, STAGE_OPERATIONAL, true, true, EH_CMDSN0, EH_STATSN0, sec, cut2);
	/* The header itself is malformed: a protocol error answered with a Login reject. */
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_LOGIN_RESP);
	CHECK_EQ(p.b.login.status_class, 0x02);
	CHECK_EQ(p.b.login.status_detail, 0x00);
	CHECK(!p.b.final && !p.b.login.cont);
	eh_pdu_free(&p);
	CHECK_EQ(eh_recv(h, &p), -1);
	CHECK(eh_closed(h));
	eh_free(h);
}

int main(void)
{
	test_login_stages();
	test_login_skip_security();
	test_login_negotiation();
	test_login_chap();
	test_login_own_account();
	test_login_refusals();
	test_login_continued();
	TEST_MAIN_END();
}
