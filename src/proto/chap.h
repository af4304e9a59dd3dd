/*
 * CHAP authentication for iSCSI login (RFC 7143 section 12.1.3, RFC 1994), one-way and mutual,
 * with CHAP_A 5 (MD5), 6 (SHA-1), 7 (SHA-256) and 8 (SHA3-256) through OpenSSL's libcrypto.
 *
 * Both sides are small state machines fed with the key=value pairs of one login request or
 * response, producing the pairs to send back. Secrets never appear in messages.
 */
#ifndef ISTHMUS_PROTO_CHAP_H
#define ISTHMUS_PROTO_CHAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/text.h"

enum chap_alg { CHAP_ALG_MD5 = 5, CHAP_ALG_SHA1 = 6, CHAP_ALG_SHA256 = 7, CHAP_ALG_SHA3_256 = 8 };

#define CHAP_MAX_DIGEST 32
#define CHAP_MAX_CHALLENGE 1024
#define CHAP_MAX_SECRET 256

/* Digest length in bytes of an algorithm, 0 if unsupported. */
size_t chap_digest_len(int alg);
/* Response = H(id || secret || challenge). Returns the digest length, 0 on error. */
size_t chap_compute(int alg, uint8_t id, const uint8_t *secret, size_t secret_len, const uint8_t *challenge,
		    size_t challenge_len, uint8_t out[CHAP_MAX_DIGEST]);
/* Fill buf from the kernel CSPRNG. Returns 0 or -1. */
int chap_random(void *buf, size_t len);
/* Binary values: "0x..." hex or "0b..." base64 (RFC 7143 6.1). Returns length or -1. */
long chap_decode_binary(const char *s, uint8_t *out, size_t cap);
/* Encode as "0x" + lower-case hex into out (cap bytes, NUL-terminated). */
void chap_encode_hex(const uint8_t *in, size_t len, char *out, size_t cap);

struct chap_credentials {
	const char *user;          /* CHAP_N the initiator sends */
	const char *secret;        /* shared secret the initiator proves */
	const char *mutual_user;   /* CHAP_N the target sends back (mutual); NULL: one-way */
	const char *mutual_secret; /* secret the target proves (mutual) */
};

enum chap_result {
	CHAP_CONTINUE,   /* send the output pairs and wait for the next request/response */
	CHAP_DONE,       /* authenticated; output may carry the final pairs (mutual response) */
	CHAP_AUTH_FAIL,  /* wrong user or secret: login status 0x0201 (authentication failure) */
	CHAP_PROTO_FAIL, /* malformed or missing keys: 0x0200 (initiator error) or 0x0207 */
};

/* Target side: receives CHAP_A, then CHAP_N/CHAP_R (and CHAP_I/CHAP_C for mutual). */
struct chap_target {
	int state;
	int alg;
	uint8_t id;
	uint8_t challenge[CHAP_MAX_CHALLENGE];
	size_t challenge_len;
	const struct chap_credentials *cred; /* looked up by the caller; user names checked here */
};

void chap_target_init(struct chap_target *c, const struct chap_credentials *cred);
/* why gets a human reason on failure (never a secret). */
enum chap_result chap_target_step(struct chap_target *c, const struct text_list *in, struct text_list *out,
				  char *why, size_t whylen);

/* Initiator side: offers CHAP_A, answers the challenge, optionally challenges the target. */
struct chap_initiator {
	int state;
	int alg;
	uint8_t id;                  /* our mutual CHAP_I */
	uint8_t challenge[CHAP_MAX_CHALLENGE];
	size_t challenge_len;
	const struct chap_credentials *cred;
};

void chap_initiator_init(struct chap_initiator *c, const struct chap_credentials *cred);
/* First call with in == NULL produces CHAP_A; then feed each target response. */
enum chap_result chap_initiator_step(struct chap_initiator *c, const struct text_list *in, struct text_list *out,
				     char *why, size_t whylen);

/* Constant-time comparison of equal-length buffers. */
bool chap_equal(const uint8_t *a, const uint8_t *b, size_t len);

#endif
