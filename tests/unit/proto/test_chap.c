#include "proto/chap.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

static const struct chap_credentials one_way = {"alice", "alicesecret12", NULL, NULL};
static const struct chap_credentials mutual = {"alice", "alicesecret12", "target1", "targetsecret1"};

static void hex_to_bytes(const char *hex, uint8_t *out)
{
	for (size_t i = 0; hex[2 * i]; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
}

/* Expected values from `openssl dgst` over 0x2a || "alicesecret12" || 00 01 .. 0f. */
static void test_known_answers(void)
{
	static const struct {
		int alg;
		const char *hex;
	} kat[] = {
		{CHAP_ALG_MD5, "9e0aeb3d1083833ff250776b6cfbb235"},
		{CHAP_ALG_SHA1, "94f6998d2a8b1310b73303dc1fc527f4baef521c"},
		{CHAP_ALG_SHA256, "f8296a49d3c700f1edcc54b4ae2a80f0121ec82299795c8bf33bbca2a02fbc7a"},
		{CHAP_ALG_SHA3_256, "0a937fdba3a3fc19340fe69c32678678aa499dfb24683ba5d46fce8701df1713"},
	};
	uint8_t ch[16];
	for (int i = 0; i < 16; i++)
		ch[i] = (uint8_t)i;
	for (size_t k = 0; k < sizeof(kat) / sizeof(kat[0]); k++) {
		uint8_t want[CHAP_MAX_DIGEST], got[CHAP_MAX_DIGEST];
		size_t len = strlen(kat[k].hex) / 2;
		hex_to_bytes(kat[k].hex, want);
		CHECK_EQ(chap_digest_len(kat[k].alg), len);
		CHECK_EQ(chap_compute(kat[k].alg, 0x2a, (const uint8_t *)"alicesecret12", 13, ch, sizeof(ch), got), len);
		CHECK(memcmp(got, want, len) == 0);
		char hex[2 + 2 * CHAP_MAX_DIGEST + 1];
		chap_encode_hex(got, len, hex, sizeof(hex));
		CHECK(strncmp(hex, "0x", 2) == 0);
		CHECK_STR(hex + 2, kat[k].hex);
	}
	/* RFC 1994 form with a short ASCII challenge: MD5(01 || "secret" || "challenge"). */
	uint8_t got[CHAP_MAX_DIGEST], want[16];
	hex_to_bytes("46e47770030e2b4e26a0db72a7efec00", want);
	CHECK_EQ(chap_compute(CHAP_ALG_MD5, 1, (const uint8_t *)"secret", 6, (const uint8_t *)"challenge", 9, got), 16);
	CHECK(memcmp(got, want, 16) == 0);

	CHECK_EQ(chap_digest_len(4), 0);
	CHECK_EQ(chap_digest_len(9), 0);
	CHECK_EQ(chap_compute(9, 1, (const uint8_t *)"s", 1, ch, 16, got), 0);
	CHECK(chap_equal(want, want, 16));
	CHECK(!chap_equal(want, got + 1, 16));
}

static void test_binary_codec(void)
{
	uint8_t b[CHAP_MAX_CHALLENGE + 8];
	CHECK_EQ(chap_decode_binary("0x00ff10", b, sizeof(b)), 3);
	CHECK(b[0] == 0 && b[1] == 0xff && b[2] == 0x10);
	CHECK_EQ(chap_decode_binary("0XAbCd", b, sizeof(b)), 2);
	CHECK(b[0] == 0xab && b[1] == 0xcd);
	/* Odd digit count: implied leading zero, (n+1)/2 bytes. */
	CHECK_EQ(chap_decode_binary("0xabc", b, sizeof(b)), 2);
	CHECK(b[0] == 0x0a && b[1] == 0xbc);
	CHECK_EQ(chap_decode_binary("0bAAECAw==", b, sizeof(b)), 4);
	CHECK(b[0] == 0 && b[1] == 1 && b[2] == 2 && b[3] == 3);
	CHECK_EQ(chap_decode_binary("0BAAEC", b, sizeof(b)), 3);
	CHECK(b[0] == 0 && b[1] == 1 && b[2] == 2);
	CHECK_EQ(chap_decode_binary("0bAAE=", b, sizeof(b)), 2);
	CHECK_EQ(chap_decode_binary("0bAAE", b, sizeof(b)), 2);
	CHECK_EQ(chap_decode_binary("0b+/8=", b, sizeof(b)), 2);
	CHECK(b[0] == 0xfb && b[1] == 0xff);

	/* Malformed. */
	const char *bad[] = {"",      "0",      "0x",       "0b",     "0xg0",  "0x12 ",   "x12",  "12",
			     "0c12",  "0bA",    "0bAA=A",   "0bA===", "0bAAE*", "0bAA=",   "0b====", " 0x12",
			     "0x-1", "0bAAECAw=", "0bAAEC AA"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long n = chap_decode_binary(bad[i], b, sizeof(b));
		if (n != -1)
			fprintf(stderr, "accepted malformed '%s'\n", bad[i]);
		CHECK_EQ(n, -1);
	}
	CHECK_EQ(chap_decode_binary(NULL, b, sizeof(b)), -1);

	/* Capacity: exactly cap bytes fits, one more does not. */
	CHECK_EQ(chap_decode_binary("0x0102", b, 2), 2);
	CHECK_EQ(chap_decode_binary("0x010203", b, 2), -1);
	CHECK_EQ(chap_decode_binary("0bAAECAw==", b, 3), -1);

	/* Largest challenge round-trips; one byte more is refused. */
	static char hex[2 + 2 * (CHAP_MAX_CHALLENGE + 1) + 1];
	uint8_t big[CHAP_MAX_CHALLENGE + 1];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	chap_encode_hex(big, CHAP_MAX_CHALLENGE, hex, sizeof(hex));
	CHECK_EQ(strlen(hex), 2 + 2 * CHAP_MAX_CHALLENGE);
	CHECK_EQ(chap_decode_binary(hex, b, CHAP_MAX_CHALLENGE), CHAP_MAX_CHALLENGE);
	CHECK(memcmp(b, big, CHAP_MAX_CHALLENGE) == 0);
	chap_encode_hex(big, sizeof(big), hex, sizeof(hex));
	CHECK_EQ(chap_decode_binary(hex, b, CHAP_MAX_CHALLENGE), -1);

	/* Encoding into a short buffer keeps whole bytes only. */
	char small[7];
	chap_encode_hex(big, 4, small, sizeof(small));
	CHECK_STR(small, "0x0007");

	uint8_t r1[32], r2[32];
	CHECK_EQ(chap_random(r1, sizeof(r1)), 0);
	CHECK_EQ(chap_random(r2, sizeof(r2)), 0);
	CHECK(memcmp(r1, r2, sizeof(r1)) != 0);
}

static void offer(struct text_list *l, const char *algs)
{
	text_clear(l);
	text_add(l, "CHAP_A", algs);
}

/* Full login exchange; returns the final result and leaves the last message in *last. */
static void run_exchange(const struct chap_credentials *icred, const struct chap_credentials *tcred, int expect_alg,
			 const char *target_offer, enum chap_result expect_target, enum chap_result expect_init)
{
	struct chap_initiator ini;
	struct chap_target tgt;
	struct text_list m1 = {0}, m2 = {0}, m3 = {0}, m4 = {0}, m5 = {0};
	char why[256] = "";
	chap_initiator_init(&ini, icred);
	chap_target_init(&tgt, tcred);

	CHECK_EQ(chap_initiator_step(&ini, NULL, &m1, why, sizeof(why)), CHAP_CONTINUE);
	CHECK_STR(text_get(&m1, "CHAP_A"), "7,8,6,5");
	if (target_offer)
		text_set(&m1, "CHAP_A", target_offer);
	CHECK_EQ(chap_target_step(&tgt, &m1, &m2, why, sizeof(why)), CHAP_CONTINUE);
	CHECK_EQ(atoi(text_get(&m2, "CHAP_A")), expect_alg);
	CHECK(text_has(&m2, "CHAP_I"));
	CHECK(text_has(&m2, "CHAP_C"));
	CHECK_EQ(strlen(text_get(&m2, "CHAP_C")), 2 + 2 * 32);

	bool mut = icred->mutual_user != NULL;
	enum chap_result r = chap_initiator_step(&ini, &m2, &m3, why, sizeof(why));
	CHECK_EQ(r, mut ? CHAP_CONTINUE : CHAP_DONE);
	CHECK_STR(text_get(&m3, "CHAP_N"), icred->user);
	CHECK_EQ(strlen(text_get(&m3, "CHAP_R")), 2 + 2 * chap_digest_len(expect_alg));
	CHECK_EQ(text_has(&m3, "CHAP_I"), mut);
	CHECK_EQ(text_has(&m3, "CHAP_C"), mut);
	if (mut)
		CHECK(strcmp(text_get(&m3, "CHAP_C"), text_get(&m2, "CHAP_C")) != 0);

	why[0] = 0;
	r = chap_target_step(&tgt, &m3, &m4, why, sizeof(why));
	CHECK_EQ(r, expect_target);
	if (r != expect_target)
		fprintf(stderr, "  target: %s\n", why);
	if (r == CHAP_DONE && mut) {
		CHECK_STR(text_get(&m4, "CHAP_N"), tcred->mutual_user);
		why[0] = 0;
		r = chap_initiator_step(&ini, &m4, &m5, why, sizeof(why));
		CHECK_EQ(r, expect_init);
		if (r != expect_init)
			fprintf(stderr, "  initiator: %s\n", why);
		CHECK_EQ(m5.n, 0);
	} else if (r == CHAP_DONE) {
		CHECK_EQ(m4.n, 0);
	} else {
		/* A failure reason never carries the secrets. */
		CHECK(strstr(why, "secret1") == NULL);
		CHECK(why[0] != 0);
	}
	/* A finished exchange does not restart. */
	CHECK_EQ(chap_target_step(&tgt, &m3, &m5, why, sizeof(why)), CHAP_PROTO_FAIL);
	text_clear(&m1);
	text_clear(&m2);
	text_clear(&m3);
	text_clear(&m4);
	text_clear(&m5);
}

static void test_exchanges(void)
{
	static const struct {
		const char *offer;
		int alg;
	} algs[] = {{NULL, 7}, {"5", 5}, {"6", 6}, {"7", 7}, {"8", 8}, {"3,8,5", 8}, {"foo,,6,7", 6}};
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		run_exchange(&one_way, &one_way, algs[i].alg, algs[i].offer, CHAP_DONE, CHAP_DONE);
		run_exchange(&mutual, &mutual, algs[i].alg, algs[i].offer, CHAP_DONE, CHAP_DONE);
		/* Target holding mutual credentials, initiator not asking: still a one-way success. */
		run_exchange(&one_way, &mutual, algs[i].alg, algs[i].offer, CHAP_DONE, CHAP_DONE);
	}

	struct chap_credentials wrong_secret = {"alice", "wrongsecret12", NULL, NULL};
	struct chap_credentials wrong_user = {"mallory", "alicesecret12", NULL, NULL};
	struct chap_credentials bad_target = {"alice", "alicesecret12", "target1", "impostor1234"};
	struct chap_credentials wrong_target_name = {"alice", "alicesecret12", "target2", "targetsecret1"};
	struct chap_credentials no_cred = {NULL, NULL, NULL, NULL};
	for (int alg = 5; alg <= 8; alg++) {
		char o[2] = {(char)('0' + alg), 0};
		run_exchange(&wrong_secret, &one_way, alg, o, CHAP_AUTH_FAIL, CHAP_DONE);
		run_exchange(&wrong_user, &one_way, alg, o, CHAP_AUTH_FAIL, CHAP_DONE);
		/* Initiator wants mutual, target has no mutual credentials. */
		run_exchange(&mutual, &one_way, alg, o, CHAP_AUTH_FAIL, CHAP_DONE);
		/* Target proves itself with the wrong secret or under the wrong name. */
		run_exchange(&mutual, &bad_target, alg, o, CHAP_DONE, CHAP_AUTH_FAIL);
		run_exchange(&wrong_target_name, &mutual, alg, o, CHAP_DONE, CHAP_AUTH_FAIL);
		run_exchange(&one_way, &no_cred, alg, o, CHAP_AUTH_FAIL, CHAP_DONE);
	}
}

/* Drives the target through its challenge; m2 receives it. */
static void target_challenge(struct chap_target *t, const struct chap_credentials *cred, struct text_list *m2)
{
	struct text_list m1 = {0};
	char why[128];
	chap_target_init(t, cred);
	offer(&m1, "7");
	CHECK_EQ(chap_target_step(t, &m1, m2, why, sizeof(why)), CHAP_CONTINUE);
	text_clear(&m1);
}

/* The correct initiator response to the challenge in m2, as hex. */
static void correct_response(const struct text_list *m2, const char *secret, char *hex, size_t cap)
{
	uint8_t c[CHAP_MAX_CHALLENGE], r[CHAP_MAX_DIGEST];
	long n = chap_decode_binary(text_get(m2, "CHAP_C"), c, sizeof(c));
	CHECK_EQ(n, 32);
	size_t d = chap_compute(7, (uint8_t)atoi(text_get(m2, "CHAP_I")), (const uint8_t *)secret, strlen(secret), c,
				(size_t)n, r);
	chap_encode_hex(r, d, hex, cap);
}

static enum chap_result target_answer(const struct chap_credentials *cred, void (*tweak)(struct text_list *m3,
										     const struct text_list *m2),
				      char *why, size_t whylen)
{
	struct chap_target t;
	struct text_list m2 = {0}, m3 = {0}, m4 = {0};
	char hex[80];
	target_challenge(&t, cred, &m2);
	correct_response(&m2, cred->secret, hex, sizeof(hex));
	text_add(&m3, "CHAP_N", cred->user);
	text_add(&m3, "CHAP_R", hex);
	tweak(&m3, &m2);
	why[0] = 0;
	enum chap_result r = chap_target_step(&t, &m3, &m4, why, whylen);
	if (r != CHAP_DONE) {
		CHECK_EQ(m4.n, 0);
		CHECK(why[0] != 0);
		CHECK(strstr(why, hex) == NULL);
		CHECK(strstr(why, "secret") == NULL || strstr(why, "wrong secret") != NULL);
	}
	text_clear(&m2);
	text_clear(&m3);
	text_clear(&m4);
	return r;
}

static void tw_none(struct text_list *m3, const struct text_list *m2)
{
	(void)m3;
	(void)m2;
}
static void tw_reflect(struct text_list *m3, const struct text_list *m2)
{
	text_add(m3, "CHAP_I", "9");
	text_add(m3, "CHAP_C", text_get(m2, "CHAP_C"));
}
static void tw_reflect_b64(struct text_list *m3, const struct text_list *m2)
{
	uint8_t c[64];
	unsigned char b64[100] = "0b";
	long n = chap_decode_binary(text_get(m2, "CHAP_C"), c, sizeof(c));
	EVP_EncodeBlock(b64 + 2, c, (int)n);
	text_add(m3, "CHAP_I", "0x09");
	text_add(m3, "CHAP_C", (const char *)b64);
}
static void tw_mutual_ok(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_add(m3, "CHAP_I", "255");
	text_add(m3, "CHAP_C", "0x000102030405060708090a0b0c0d0e0f");
}
static void tw_no_r(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_remove(m3, "CHAP_R");
}
static void tw_no_n(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_remove(m3, "CHAP_N");
}
static void tw_r_b64(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	uint8_t r[64];
	unsigned char b64[100] = "0b";
	long n = chap_decode_binary(text_get(m3, "CHAP_R"), r, sizeof(r));
	EVP_EncodeBlock(b64 + 2, r, (int)n);
	text_set(m3, "CHAP_R", (const char *)b64);
}
static void tw_r_short(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	char *r = xstrdup(text_get(m3, "CHAP_R"));
	r[strlen(r) - 2] = 0;
	text_set(m3, "CHAP_R", r);
	free(r);
}
static void tw_r_bad(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_set(m3, "CHAP_R", "0xzz");
}
static void tw_r_flip(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	char *r = xstrdup(text_get(m3, "CHAP_R"));
	r[5] = r[5] == '0' ? '1' : '0';
	text_set(m3, "CHAP_R", r);
	free(r);
}
static void tw_i_only(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_add(m3, "CHAP_I", "1");
}
static void tw_c_only(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_add(m3, "CHAP_C", "0x000102030405060708090a0b0c0d0e0f");
}
static void tw_bad_i(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_add(m3, "CHAP_I", "256");
	text_add(m3, "CHAP_C", "0x000102030405060708090a0b0c0d0e0f");
}
static void tw_short_c(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_add(m3, "CHAP_I", "1");
	text_add(m3, "CHAP_C", "0x0001020304");
}
static void tw_again_a(struct text_list *m3, const struct text_list *m2)
{
	(void)m2;
	text_add(m3, "CHAP_A", "7");
}

static void test_target_errors(void)
{
	char why[256];
	CHECK_EQ(target_answer(&one_way, tw_none, why, sizeof(why)), CHAP_DONE);
	CHECK_EQ(target_answer(&one_way, tw_r_b64, why, sizeof(why)), CHAP_DONE);
	CHECK_EQ(target_answer(&mutual, tw_mutual_ok, why, sizeof(why)), CHAP_DONE);

	CHECK_EQ(target_answer(&mutual, tw_reflect, why, sizeof(why)), CHAP_AUTH_FAIL);
	CHECK(strstr(why, "reflect") != NULL);
	/* The same challenge in another encoding is still a reflection. */
	CHECK_EQ(target_answer(&mutual, tw_reflect_b64, why, sizeof(why)), CHAP_AUTH_FAIL);
	CHECK(strstr(why, "reflect") != NULL);
	CHECK_EQ(target_answer(&one_way, tw_mutual_ok, why, sizeof(why)), CHAP_AUTH_FAIL);
	CHECK(strstr(why, "mutual") != NULL);

	CHECK_EQ(target_answer(&one_way, tw_no_r, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK(strstr(why, "CHAP_R missing") != NULL);
	CHECK_EQ(target_answer(&one_way, tw_no_n, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK(strstr(why, "CHAP_N missing") != NULL);
	CHECK_EQ(target_answer(&one_way, tw_r_short, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK_EQ(target_answer(&one_way, tw_r_bad, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK_EQ(target_answer(&one_way, tw_r_flip, why, sizeof(why)), CHAP_AUTH_FAIL);
	CHECK_EQ(target_answer(&one_way, tw_i_only, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK_EQ(target_answer(&one_way, tw_c_only, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK_EQ(target_answer(&mutual, tw_bad_i, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK_EQ(target_answer(&mutual, tw_short_c, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK_EQ(target_answer(&one_way, tw_again_a, why, sizeof(why)), CHAP_PROTO_FAIL);

	/* Only unsupported algorithms: CHAP_A=Reject and failure. */
	const char *unsupported[] = {"1,2,3", "4", "", "05", "7 ", "md5"};
	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		struct chap_target t;
		struct text_list m1 = {0}, m2 = {0};
		chap_target_init(&t, &one_way);
		offer(&m1, unsupported[i]);
		why[0] = 0;
		CHECK_EQ(chap_target_step(&t, &m1, &m2, why, sizeof(why)), CHAP_PROTO_FAIL);
		CHECK_STR(text_get(&m2, "CHAP_A"), "Reject");
		CHECK(!text_has(&m2, "CHAP_C"));
		CHECK(strstr(why, "no supported") != NULL);
		text_clear(&m1);
		text_clear(&m2);
	}

	/* First request without CHAP_A, or with response keys too early. */
	struct chap_target t;
	struct text_list m1 = {0}, m2 = {0};
	chap_target_init(&t, &one_way);
	text_add(&m1, "AuthMethod", "CHAP");
	CHECK_EQ(chap_target_step(&t, &m1, &m2, why, sizeof(why)), CHAP_PROTO_FAIL);
	chap_target_init(&t, &one_way);
	offer(&m1, "7");
	text_add(&m1, "CHAP_R", "0x00");
	CHECK_EQ(chap_target_step(&t, &m1, &m2, why, sizeof(why)), CHAP_PROTO_FAIL);
	chap_target_init(&t, &one_way);
	CHECK_EQ(chap_target_step(&t, NULL, &m2, why, sizeof(why)), CHAP_PROTO_FAIL);
	text_clear(&m1);
	text_clear(&m2);
}

static void test_initiator_errors(void)
{
	char why[256];
	struct chap_initiator ini;
	struct text_list m1 = {0}, m2 = {0}, m3 = {0};
	const char *c16 = "0x000102030405060708090a0b0c0d0e0f";
	static const struct {
		const char *a, *i, *c;
	} bad[] = {
		{"Reject", "1", NULL},          /* target refused all algorithms */
		{"4", "1", NULL},               /* never offered */
		{"7,5", "1", NULL},             /* a list instead of a choice */
		{",", "1", NULL},
		{NULL, "1", NULL},              /* CHAP_A missing */
		{"7", NULL, NULL},              /* CHAP_I missing */
		{"7", "-1", NULL},
		{"7", "300", NULL},
		{"7", "1", "0x00010203"},       /* challenge too short */
		{"7", "1", "0xnothex"},
		{"7", "1", ""},
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		chap_initiator_init(&ini, &one_way);
		CHECK_EQ(chap_initiator_step(&ini, NULL, &m1, why, sizeof(why)), CHAP_CONTINUE);
		if (bad[k].a)
			text_add(&m2, "CHAP_A", bad[k].a);
		if (bad[k].i)
			text_add(&m2, "CHAP_I", bad[k].i);
		text_add(&m2, "CHAP_C", bad[k].c ? bad[k].c : c16);
		why[0] = 0;
		CHECK_EQ(chap_initiator_step(&ini, &m2, &m3, why, sizeof(why)), CHAP_PROTO_FAIL);
		CHECK(why[0] != 0);
		CHECK(!text_has(&m3, "CHAP_R"));
		text_clear(&m1);
		text_clear(&m2);
		text_clear(&m3);
	}

	/* A target answering a mutual challenge without CHAP_R. */
	chap_initiator_init(&ini, &mutual);
	chap_initiator_step(&ini, NULL, &m1, why, sizeof(why));
	text_add(&m2, "CHAP_A", "5");
	text_add(&m2, "CHAP_I", "0x7f");
	text_add(&m2, "CHAP_C", "0bAAECAwQFBgcICQoLDA0ODw==");
	CHECK_EQ(chap_initiator_step(&ini, &m2, &m3, why, sizeof(why)), CHAP_CONTINUE);
	CHECK_EQ(strlen(text_get(&m3, "CHAP_R")), 2 + 32);
	text_clear(&m2);
	text_add(&m2, "CHAP_N", "target1");
	CHECK_EQ(chap_initiator_step(&ini, &m2, &m3, why, sizeof(why)), CHAP_PROTO_FAIL);
	CHECK(strstr(why, "CHAP_R missing") != NULL);
	text_clear(&m1);
	text_clear(&m2);
	text_clear(&m3);

	/* The initiator's response to the known-answer challenge is the known answer. */
	chap_initiator_init(&ini, &one_way);
	chap_initiator_step(&ini, NULL, &m1, why, sizeof(why));
	text_add(&m2, "CHAP_A", "5");
	text_add(&m2, "CHAP_I", "42");
	text_add(&m2, "CHAP_C", c16);
	CHECK_EQ(chap_initiator_step(&ini, &m2, &m3, why, sizeof(why)), CHAP_DONE);
	CHECK_STR(text_get(&m3, "CHAP_R"), "0x9e0aeb3d1083833ff250776b6cfbb235");
	CHECK_STR(text_get(&m3, "CHAP_N"), "alice");
	text_clear(&m1);
	text_clear(&m2);
	text_clear(&m3);
}

int main(void)
{
	test_known_answers();
	test_binary_codec();
	test_exchanges();
	test_target_errors();
	test_initiator_errors();
	TEST_MAIN_END();
}
