#include "proto/chap.h"
#include "util/hex.h"
#include "util/sbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/*
 * Challenges shorter than this give an eavesdropper a realistic chance of seeing one repeat, and
 * longer ones buy nothing: 16 bytes is the floor both sides enforce, 32 is what we send.
 */
#define CHAP_MIN_CHALLENGE 16
#define CHAP_OUR_CHALLENGE 32

/* "0x" + two digits per byte + NUL: big enough for any challenge we accept. */
#define CHAP_HEX_MAX (2 + 2 * CHAP_MAX_CHALLENGE + 1)

/* What this side offers, strongest first; MD5 stays last only so that old targets still work. */
#define CHAP_OFFER "7,8,6,5"

/* ST_MUTUAL: the initiator has challenged the target and waits for its answer. */
enum { ST_START, ST_RESPONSE, ST_MUTUAL, ST_DONE, ST_FAILED };

static const EVP_MD *chap_md(int alg)
{
	switch (alg) {
	case CHAP_ALG_MD5:
		return EVP_md5();
	case CHAP_ALG_SHA1:
		return EVP_sha1();
	case CHAP_ALG_SHA256:
		return EVP_sha256();
	case CHAP_ALG_SHA3_256:
		return EVP_sha3_256();
	default:
		return NULL;
	}
}

size_t chap_digest_len(int alg)
{
	switch (alg) {
	case CHAP_ALG_MD5:
		return 16;
	case CHAP_ALG_SHA1:
		return 20;
	case CHAP_ALG_SHA256:
	case CHAP_ALG_SHA3_256:
		return 32;
	default:
		return 0;
	}
}

size_t chap_compute(int alg, uint8_t id, const uint8_t *secret, size_t secret_len, const uint8_t *challenge,
		    size_t challenge_len, uint8_t out[CHAP_MAX_DIGEST])
{
	const EVP_MD *md = chap_md(alg);
	if (!md)
		return 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return 0;
	unsigned int n = 0;
	int ok = EVP_DigestInit_ex(ctx, md, NULL) && EVP_DigestUpdate(ctx, &id, 1) &&
		 EVP_DigestUpdate(ctx, secret, secret_len) && EVP_DigestUpdate(ctx, challenge, challenge_len) &&
		 EVP_DigestFinal_ex(ctx, out, &n);
	EVP_MD_CTX_free(ctx);
	if (!ok || n != chap_digest_len(alg))
		return 0;
	return n;
}

int chap_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool chap_equal(const uint8_t *a, const uint8_t *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }

static long decode_hex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s);
	if (n == 0)
		return -1;
	/* RFC 7143 6.1: n digits make (n+1)/2 bytes, so an odd count has an implied leading zero. */
	size_t bytes = (n + 1) / 2;
	if (bytes > cap)
		return -1;
	size_t i = 0, o = 0;
	if (n % 2) {
		int lo = hex_digit_value(s[0]);
		if (lo < 0)
			return -1;
		out[o++] = (uint8_t)lo;
		i = 1;
	}
	for (; i < n; i += 2) {
		int hi = hex_digit_value(s[i]), lo = hex_digit_value(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[o++] = (uint8_t)(hi << 4 | lo);
	}
	return (long)o;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * RFC 4648 base64. Padding is optional because some peers leave it off, but a padded value
 * must be a whole number of quads and nothing may follow the '='.
 */
static long decode_base64(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s);
	size_t data = n;
	while (data > 0 && s[data - 1] == '=')
		data--;
	size_t pad = n - data;
	if (data == 0 || pad > 2 || (pad && n % 4) || data % 4 == 1)
		return -1;
	size_t bytes = data / 4 * 3 + (data % 4 ? data % 4 - 1 : 0);
	if (bytes > cap)
		return -1;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < data; i++) {
		int v = b64_value(s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return (long)o;
}

long chap_decode_binary(const char *s, uint8_t *out, size_t cap)
{
	if (!s || s[0] != '0')
		return -1;
	if (s[1] == 'x' || s[1] == 'X')
		return decode_hex(s + 2, out, cap);
	if (s[1] == 'b' || s[1] == 'B')
		return decode_base64(s + 2, out, cap);
	return -1;
}

void chap_encode_hex(const uint8_t *in, size_t len, char *out, size_t cap)
{
	static const char digits[] = "0123456789abcdef";
	if (cap == 0)
		return;
	if (cap < 3) {
		out[0] = 0;
		return;
	}
	/* Only whole bytes: a truncated value must not decode to a different, shorter one silently. */
	size_t fit = (cap - 3) / 2;
	if (len > fit)
		len = fit;
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < len; i++) {
		out[2 + 2 * i] = digits[in[i] >> 4];
		out[3 + 2 * i] = digits[in[i] & 15];
	}
	out[2 + 2 * len] = 0;
}

/* CHAP_I is a numerical value (RFC 7143 6.1): decimal or hex, and must fit the one-byte identifier. */
static int parse_id(const char *s, uint8_t *id)
{
	if (!s || !*s)
		return -1;
	unsigned long v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		uint8_t b[1];
		if (strlen(s + 2) > 2 || chap_decode_binary(s, b, sizeof(b)) != 1)
			return -1;
		v = b[0];
	} else {
		for (const char *p = s; *p; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > 255)
				return -1;
		}
	}
	*id = (uint8_t)v;
	return 0;
}

static bool has_secret(const char *user, const char *secret) { return user && *user && secret && *secret; }

static void put_binary(struct text_list *out, const char *key, const uint8_t *v, size_t len)
{
	char hex[CHAP_HEX_MAX];
	chap_encode_hex(v, len, hex, sizeof(hex));
	text_set(out, key, hex);
}

static void put_id(struct text_list *out, uint8_t id)
{
	char s[4];
	snprintf(s, sizeof(s), "%u", (unsigned)id);
	text_set(out, "CHAP_I", s);
}

/* Decode a peer's challenge, enforcing the length bounds both directions share. */
static enum chap_result read_challenge(const char *value, uint8_t *buf, size_t *len, char *why, size_t whylen)
{
	long n = chap_decode_binary(value, buf, CHAP_MAX_CHALLENGE);
	if (n < 0) {
		set_why(why, whylen, "CHAP_C is not a valid hex or base64 value of at most %d bytes",
			CHAP_MAX_CHALLENGE);
		return CHAP_PROTO_FAIL;
	}
	if (n < CHAP_MIN_CHALLENGE) {
		set_why(why, whylen, "CHAP_C is %ld bytes, shorter than the %d required", n, CHAP_MIN_CHALLENGE);
		return CHAP_PROTO_FAIL;
	}
	*len = (size_t)n;
	return CHAP_CONTINUE;
}

/*
 * Checks the peer's CHAP_N/CHAP_R against what the holder of (user, secret) would have answered
 * to our (id, challenge). The mismatch reasons stay vague on purpose: they end up in logs.
 */
static enum chap_result verify_response(int alg, const char *user, const char *secret, uint8_t id,
					const uint8_t *challenge, size_t challenge_len, const char *got_user,
					const char *got_r, char *why, size_t whylen)
{
	uint8_t r[CHAP_MAX_CHALLENGE];
	long n = chap_decode_binary(got_r, r, sizeof(r));
	size_t dlen = chap_digest_len(alg);
	if (n < 0) {
		set_why(why, whylen, "CHAP_R is not a valid hex or base64 value");
		return CHAP_PROTO_FAIL;
	}
	if ((size_t)n != dlen) {
		set_why(why, whylen, "CHAP_R is %ld bytes, but CHAP_A=%d digests are %zu bytes", n, alg, dlen);
		return CHAP_PROTO_FAIL;
	}
	uint8_t expect[CHAP_MAX_DIGEST];
	if (chap_compute(alg, id, (const uint8_t *)secret, strlen(secret), challenge, challenge_len, expect) !=
	    dlen) {
		set_why(why, whylen, "cannot compute the CHAP_A=%d digest", alg);
		return CHAP_AUTH_FAIL;
	}
	/* Compare the response even for a wrong user so the timing does not tell which was wrong. */
	bool r_ok = chap_equal(expect, r, dlen);
	bool user_ok = strcmp(got_user, user) == 0;
	OPENSSL_cleanse(expect, sizeof(expect));
	if (!user_ok) {
		set_why(why, whylen, "CHAP_N is not the configured CHAP user");
		return CHAP_AUTH_FAIL;
	}
	if (!r_ok) {
		set_why(why, whylen, "CHAP_R does not match (wrong secret)");
		return CHAP_AUTH_FAIL;
	}
	return CHAP_DONE;
}

static enum chap_result answer(int alg, uint8_t id, const char *user, const char *secret, const uint8_t *challenge,
			       size_t challenge_len, struct text_list *out, char *why, size_t whylen)
{
	uint8_t r[CHAP_MAX_DIGEST];
	size_t n = chap_compute(alg, id, (const uint8_t *)secret, strlen(secret), challenge, challenge_len, r);
	if (n == 0) {
		set_why(why, whylen, "cannot compute the CHAP_A=%d digest", alg);
		return CHAP_AUTH_FAIL;
	}
	text_set(out, "CHAP_N", user);
	put_binary(out, "CHAP_R", r, n);
	OPENSSL_cleanse(r, sizeof(r));
	return CHAP_DONE;
}

void chap_target_init(struct chap_target *c, const struct chap_credentials *cred)
{
	memset(c, 0, sizeof(*c));
	c->state = ST_START;
	c->cred = cred;
}

/* First supported entry of a CHAP_A list; unknown or non-numeric entries are skipped (RFC 7143 6.2). */
static int pick_alg(const char *list)
{
	const char *p = list;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 1 && p[0] >= '5' && p[0] <= '8')
			return p[0] - '0';
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

static enum chap_result target_offer(struct chap_target *c, const struct text_list *in, struct text_list *out,
				     char *why, size_t whylen)
{
	const char *a = text_get(in, "CHAP_A");
	if (!a) {
		set_why(why, whylen, "CHAP_A missing from the first CHAP request");
		return CHAP_PROTO_FAIL;
	}
	if (text_has(in, "CHAP_N") || text_has(in, "CHAP_R") || text_has(in, "CHAP_I") || text_has(in, "CHAP_C")) {
		set_why(why, whylen, "CHAP response keys sent before the target's challenge");
		return CHAP_PROTO_FAIL;
	}
	c->alg = pick_alg(a);
	if (!c->alg) {
		text_set(out, "CHAP_A", "Reject");
		set_why(why, whylen, "initiator offered no supported CHAP algorithm (CHAP_A=%.64s)", a);
		return CHAP_PROTO_FAIL;
	}
	c->challenge_len = CHAP_OUR_CHALLENGE;
	if (chap_random(&c->id, 1) < 0 || chap_random(c->challenge, c->challenge_len) < 0) {
		set_why(why, whylen, "cannot read random bytes for the CHAP challenge: %s", strerror(errno));
		return CHAP_PROTO_FAIL;
	}
	char alg[2] = {(char)('0' + c->alg), 0};
	text_set(out, "CHAP_A", alg);
	put_id(out, c->id);
	put_binary(out, "CHAP_C", c->challenge, c->challenge_len);
	return CHAP_CONTINUE;
}

static enum chap_result target_verify(struct chap_target *c, const struct text_list *in, struct text_list *out,
				      char *why, size_t whylen)
{
	const struct chap_credentials *cred = c->cred;
	const char *n = text_get(in, "CHAP_N"), *r = text_get(in, "CHAP_R");
	const char *mi = text_get(in, "CHAP_I"), *mc = text_get(in, "CHAP_C");
	if (text_has(in, "CHAP_A")) {
		set_why(why, whylen, "CHAP_A sent again after the algorithm was chosen");
		return CHAP_PROTO_FAIL;
	}
	if (!n || !r) {
		set_why(why, whylen, "CHAP_%s missing from the CHAP response", !n ? "N" : "R");
		return CHAP_PROTO_FAIL;
	}
	if (!mi != !mc) {
		set_why(why, whylen, "CHAP_%s without CHAP_%s: a mutual challenge needs both", mi ? "I" : "C",
			mi ? "C" : "I");
		return CHAP_PROTO_FAIL;
	}
	uint8_t peer_id = 0;
	uint8_t peer_c[CHAP_MAX_CHALLENGE];
	size_t peer_clen = 0;
	if (mi) {
		if (parse_id(mi, &peer_id) < 0) {
			set_why(why, whylen, "CHAP_I is not a number from 0 to 255");
			return CHAP_PROTO_FAIL;
		}
		enum chap_result res = read_challenge(mc, peer_c, &peer_clen, why, whylen);
		if (res != CHAP_CONTINUE)
			return res;
	}
	if (!cred || !has_secret(cred->user, cred->secret)) {
		set_why(why, whylen, "no CHAP credentials configured for this target");
		return CHAP_AUTH_FAIL;
	}
	enum chap_result res = verify_response(c->alg, cred->user, cred->secret, c->id, c->challenge,
					       c->challenge_len, n, r, why, whylen);
	if (res != CHAP_DONE)
		return res;
	/*
	 * Mutual CHAP is the initiator's choice (RFC 7143 12.1.3): the target proves itself only
	 * when challenged. A target configured with mutual credentials therefore still accepts a
	 * one-way login; it has nothing to gain from demanding to be checked, and the initiator is
	 * the party that must insist on it.
	 */
	if (!mi)
		return CHAP_DONE;
	if (!has_secret(cred->mutual_user, cred->mutual_secret)) {
		set_why(why, whylen, "initiator asked for mutual CHAP but the target has no mutual credentials");
		return CHAP_AUTH_FAIL;
	}
	/* RFC 7143 12.1.3: answering our own challenge would let a peer replay our response to us. */
	if (peer_clen == c->challenge_len && memcmp(peer_c, c->challenge, peer_clen) == 0) {
		set_why(why, whylen, "initiator reflected the target's CHAP challenge");
		return CHAP_AUTH_FAIL;
	}
	return answer(c->alg, peer_id, cred->mutual_user, cred->mutual_secret, peer_c, peer_clen, out, why, whylen);
}

enum chap_result chap_target_step(struct chap_target *c, const struct text_list *in, struct text_list *out,
				  char *why, size_t whylen)
{
	enum chap_result res;
	if (!in) {
		set_why(why, whylen, "no CHAP keys received");
		res = CHAP_PROTO_FAIL;
	} else if (c->state == ST_START) {
		res = target_offer(c, in, out, why, whylen);
	} else if (c->state == ST_RESPONSE) {
		res = target_verify(c, in, out, why, whylen);
	} else {
		set_why(why, whylen, "CHAP exchange already %s", c->state == ST_DONE ? "finished" : "failed");
		res = CHAP_PROTO_FAIL;
	}
	if (res == CHAP_CONTINUE)
		c->state = ST_RESPONSE;
	else
		c->state = res == CHAP_DONE ? ST_DONE : ST_FAILED;
	if (c->state != ST_RESPONSE)
		OPENSSL_cleanse(c->challenge, sizeof(c->challenge));
	return res;
}

void chap_initiator_init(struct chap_initiator *c, const struct chap_credentials *cred)
{
	memset(c, 0, sizeof(*c));
	c->state = ST_START;
	c->cred = cred;
}

static bool wants_mutual(const struct chap_credentials *cred)
{
	return has_secret(cred->mutual_user, cred->mutual_secret);
}

static enum chap_result initiator_answer(struct chap_initiator *c, const struct text_list *in, struct text_list *out,
					 char *why, size_t whylen)
{
	const struct chap_credentials *cred = c->cred;
	const char *a = text_get(in, "CHAP_A"), *i = text_get(in, "CHAP_I"), *ch = text_get(in, "CHAP_C");
	if (!a || !i || !ch) {
		set_why(why, whylen, "CHAP_%s missing from the target's challenge", !a ? "A" : !i ? "I" : "C");
		return CHAP_PROTO_FAIL;
	}
	if (strcmp(a, "Reject") == 0) {
		set_why(why, whylen, "target supports none of the offered CHAP algorithms (" CHAP_OFFER ")");
		return CHAP_PROTO_FAIL;
	}
	/* The answer must be one value from our offer, not a list or something we never proposed. */
	if (strlen(a) != 1 || !strchr(CHAP_OFFER, a[0]) || a[0] == ',') {
		set_why(why, whylen, "target chose CHAP_A=%.16s, which was not offered", a);
		return CHAP_PROTO_FAIL;
	}
	c->alg = a[0] - '0';
	uint8_t tid;
	if (parse_id(i, &tid) < 0) {
		set_why(why, whylen, "CHAP_I is not a number from 0 to 255");
		return CHAP_PROTO_FAIL;
	}
	uint8_t tc[CHAP_MAX_CHALLENGE];
	size_t tclen = 0;
	enum chap_result res = read_challenge(ch, tc, &tclen, why, whylen);
	if (res != CHAP_CONTINUE)
		return res;
	if (!cred || !has_secret(cred->user, cred->secret)) {
		set_why(why, whylen, "target requires CHAP but no CHAP user and secret are configured");
		return CHAP_AUTH_FAIL;
	}
	res = answer(c->alg, tid, cred->user, cred->secret, tc, tclen, out, why, whylen);
	if (res != CHAP_DONE || !wants_mutual(cred))
		return res;
	c->challenge_len = CHAP_OUR_CHALLENGE;
	do {
		if (chap_random(&c->id, 1) < 0 || chap_random(c->challenge, c->challenge_len) < 0) {
			set_why(why, whylen, "cannot read random bytes for the CHAP challenge: %s", strerror(errno));
			return CHAP_PROTO_FAIL;
		}
		/* The target must refuse its own challenge coming back, so never send one that matches. */
	} while (tclen == c->challenge_len && memcmp(tc, c->challenge, tclen) == 0);
	put_id(out, c->id);
	put_binary(out, "CHAP_C", c->challenge, c->challenge_len);
	return CHAP_CONTINUE;
}

static enum chap_result initiator_verify(struct chap_initiator *c, const struct text_list *in, char *why,
					 size_t whylen)
{
	const char *n = text_get(in, "CHAP_N"), *r = text_get(in, "CHAP_R");
	if (!n || !r) {
		set_why(why, whylen, "CHAP_%s missing from the target's mutual CHAP response", !n ? "N" : "R");
		return CHAP_PROTO_FAIL;
	}
	return verify_response(c->alg, c->cred->mutual_user, c->cred->mutual_secret, c->id, c->challenge,
			       c->challenge_len, n, r, why, whylen);
}

enum chap_result chap_initiator_step(struct chap_initiator *c, const struct text_list *in, struct text_list *out,
				     char *why, size_t whylen)
{
	enum chap_result res;
	if (c->state == ST_START) {
		text_set(out, "CHAP_A", CHAP_OFFER);
		res = CHAP_CONTINUE;
	} else if (!in) {
		set_why(why, whylen, "no CHAP keys received");
		res = CHAP_PROTO_FAIL;
	} else if (c->state == ST_RESPONSE) {
		res = initiator_answer(c, in, out, why, whylen);
	} else if (c->state == ST_MUTUAL) {
		res = initiator_verify(c, in, why, whylen);
	} else {
		set_why(why, whylen, "CHAP exchange already %s", c->state == ST_DONE ? "finished" : "failed");
		res = CHAP_PROTO_FAIL;
	}
	if (res == CHAP_CONTINUE)
		c->state = c->state == ST_START ? ST_RESPONSE : ST_MUTUAL;
	else
		c->state = res == CHAP_DONE ? ST_DONE : ST_FAILED;
	return res;
}
