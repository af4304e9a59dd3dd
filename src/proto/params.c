#include "proto/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P(field) offsetof(struct iscsi_params, field)
#define NONE SIZE_MAX
#define I KEY_FROM_INITIATOR
#define T KEY_FROM_TARGET
#define LOGIN_ONLY KEY_LOGIN
#define ANY (KEY_LOGIN | KEY_FULL_FEATURE)

/* RFC 7143 section 13, in section order. Values with offset NONE are handled by the login code. */
static const struct key_def key_table[] = {
	{"HeaderDigest", KEY_LIST, I | T | KEY_CONNECTION | LOGIN_ONLY, 0, 0, P(header_digest)},
	{"DataDigest", KEY_LIST, I | T | KEY_CONNECTION | LOGIN_ONLY, 0, 0, P(data_digest)},
	{"MaxConnections", KEY_NUM_MIN, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 1, 65535, P(max_connections)},
	{"SendTargets", KEY_DECLARE, I | KEY_FULL_FEATURE, 0, 0, NONE},
	{"TargetName", KEY_DECLARE, I | T | LOGIN_ONLY, 0, 0, NONE},
	{"InitiatorName", KEY_DECLARE, I | LOGIN_ONLY, 0, 0, NONE},
	{"TargetAlias", KEY_DECLARE, T | ANY, 0, 0, NONE},
	{"InitiatorAlias", KEY_DECLARE, I | ANY, 0, 0, NONE},
	{"TargetAddress", KEY_DECLARE, T | ANY, 0, 0, NONE},
	{"TargetPortalGroupTag", KEY_DECLARE, T | LOGIN_ONLY, 0, 65535, NONE},
	{"InitialR2T", KEY_BOOL_OR, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 0, P(initial_r2t)},
	{"ImmediateData", KEY_BOOL_AND, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 0, P(immediate_data)},
	{"MaxRecvDataSegmentLength", KEY_DECLARE, I | T | KEY_CONNECTION | ANY, 512, 16777215, P(max_recv_dsl)},
	{"MaxBurstLength", KEY_NUM_MIN, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 512, 16777215, P(max_burst_length)},
	{"FirstBurstLength", KEY_NUM_MIN, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 512, 16777215,
	 P(first_burst_length)},
	{"DefaultTime2Wait", KEY_NUM_MAX, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 3600, P(default_time2wait)},
	{"DefaultTime2Retain", KEY_NUM_MIN, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 3600, P(default_time2retain)},
	{"MaxOutstandingR2T", KEY_NUM_MIN, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 1, 65535, P(max_outstanding_r2t)},
	{"DataPDUInOrder", KEY_BOOL_OR, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 0, P(data_pdu_in_order)},
	{"DataSequenceInOrder", KEY_BOOL_OR, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 0,
	 P(data_sequence_in_order)},
	{"ErrorRecoveryLevel", KEY_NUM_MIN, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 2, P(error_recovery_level)},
	{"SessionType", KEY_DECLARE, I | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 0, NONE},
	{"AuthMethod", KEY_LIST, I | T | KEY_SECURITY | LOGIN_ONLY, 0, 0, NONE},
	{"TaskReporting", KEY_LIST, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 0, NONE},
	{"iSCSIProtocolLevel", KEY_NUM_MIN, I | T | KEY_LEADING_ONLY | LOGIN_ONLY, 0, 31, P(protocol_level)},
	{"IFMarker", KEY_BOOL_AND, I | T | KEY_OBSOLETE | LOGIN_ONLY, 0, 0, NONE},
	{"OFMarker", KEY_BOOL_AND, I | T | KEY_OBSOLETE | LOGIN_ONLY, 0, 0, NONE},
	{"IFMarkInt", KEY_NUM_MIN, I | T | KEY_OBSOLETE | LOGIN_ONLY, 0, 0, NONE},
	{"OFMarkInt", KEY_NUM_MIN, I | T | KEY_OBSOLETE | LOGIN_ONLY, 0, 0, NONE},
};

#define NKEYS (sizeof(key_table) / sizeof(key_table[0]))
_Static_assert(NKEYS <= 32, "negotiator bit masks hold 32 keys");

void params_defaults(struct iscsi_params *p)
{
	memset(p, 0, sizeof(*p));
	p->header_digest = false;
	p->data_digest = false;
	p->max_recv_dsl = 8192;
	p->peer_max_recv_dsl = 8192;
	p->max_connections = 1;
	p->initial_r2t = true;
	p->immediate_data = true;
	p->max_burst_length = 262144;
	p->first_burst_length = 65536;
	p->default_time2wait = 2;
	p->default_time2retain = 20;
	p->max_outstanding_r2t = 1;
	p->data_pdu_in_order = true;
	p->data_sequence_in_order = true;
	p->error_recovery_level = 0;
	p->protocol_level = 1;
	p->session_type = SESSION_NORMAL;
}

const struct key_def *key_lookup(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(key_table[i].name, name) == 0)
			return &key_table[i];
	return NULL;
}

static size_t key_index(const struct key_def *d) { return (size_t)(d - key_table); }

static bool *param_bool(struct iscsi_params *p, const struct key_def *d) { return (bool *)((char *)p + d->offset); }
static uint32_t *param_num(struct iscsi_params *p, const struct key_def *d)
{
	return (uint32_t *)((char *)p + d->offset);
}

void negotiator_init(struct negotiator *n, const struct iscsi_params *want, bool leading, bool is_target)
{
	memset(n, 0, sizeof(*n));
	n->want = *want;
	n->leading = leading;
	n->is_target = is_target;
	n->accept_crc32c = true;
	n->accept_none_digest = true;
	params_defaults(&n->result);
	n->result.max_recv_dsl = want->max_recv_dsl;
	n->result.session_type = want->session_type;
}

/*
 * RFC 7143 6.1: numbers are decimal or 0x-hex constants (0b base64 is not taken). Only digits:
 * no sign, no blanks, and a value that fits in 32 bits.
 */
static bool parse_number(const char *s, uint32_t *out)
{
	bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	const char *d = hex ? s + 2 : s;
	if (!*d)
		return false;
	uint64_t v = 0;
	for (; *d; d++) {
		unsigned digit;
		if (*d >= '0' && *d <= '9')
			digit = (unsigned)(*d - '0');
		else if (hex && *d >= 'a' && *d <= 'f')
			digit = (unsigned)(*d - 'a' + 10);
		else if (hex && *d >= 'A' && *d <= 'F')
			digit = (unsigned)(*d - 'A' + 10);
		else
			return false;
		v = v * (hex ? 16 : 10) + digit;
		if (v > 0xffffffffull)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

static uint32_t clamp_to_key(const struct key_def *d, uint32_t v)
{
	return v < d->min ? d->min : v > d->max ? d->max : v;
}

static bool parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "Yes") == 0)
		*out = true;
	else if (strcmp(s, "No") == 0)
		*out = false;
	else
		return false;
	return true;
}

static int fail(char *why, size_t whylen, const char *fmt, const char *key)
{
	if (why && whylen)
		snprintf(why, whylen, fmt, key);
	return NEGOTIATE_PROTOCOL_ERROR;
}

/* Pick the first digest in the originator's list that we accept. */
static const char *answer_digest(const struct negotiator *n, const char *list, bool *chosen)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", list);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "CRC32C") == 0 && n->accept_crc32c) {
			*chosen = true;
			return "CRC32C";
		}
		if (strcmp(tok, "None") == 0 && n->accept_none_digest) {
			*chosen = false;
			return "None";
		}
	}
	return NULL;
}

static bool list_contains(const char *list, const char *item)
{
	size_t il = strlen(item);
	for (const char *p = list; p && *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l == il && strncmp(p, item, l) == 0)
			return true;
		p = c ? c + 1 : NULL;
	}
	return false;
}

/* Answer one key of a request (see negotiate_respond). */
static enum negotiate_result respond_key(struct negotiator *n, const char *key, const char *val, struct text_list *out,
					 bool security_stage, char *why, size_t whylen)
{
	const struct key_def *d = key_lookup(key);
	if (!d) {
		/* Unknown keys, X- and X# extensions included, are answered, never fatal. */
		if (strncmp(key, "CHAP_", 5) != 0)
			text_add(out, key, "NotUnderstood");
		return NEGOTIATE_OK;
	}
	if ((d->use & KEY_SECURITY) && !security_stage)
		return fail(why, whylen, "security key %s outside the security stage", key);
	if (d->use & KEY_OBSOLETE) {
		/* RFC 7143 13.25: markers may be answered No; marker intervals must be rejected. */
		text_add(out, key, d->kind == KEY_BOOL_AND ? "No" : "Reject");
		return NEGOTIATE_OK;
	}
	if (d->offset == NONE && strcmp(key, "TaskReporting") != 0)
		return NEGOTIATE_OK; /* names, SessionType, AuthMethod, SendTargets: the caller's business */
	unsigned from = n->is_target ? KEY_FROM_INITIATOR : KEY_FROM_TARGET;
	if (!(d->use & from)) {
		text_add(out, key, "Reject");
		return NEGOTIATE_OK;
	}
	size_t idx = key_index(d);
	if (n->answered & (1u << idx))
		return fail(why, whylen, "key %s negotiated twice", key);
	n->answered |= 1u << idx;
	if (strcmp(val, "NotUnderstood") == 0 || strcmp(val, "Irrelevant") == 0 || strcmp(val, "Reject") == 0)
		return NEGOTIATE_OK;
	if ((d->use & KEY_LEADING_ONLY) && !n->leading) {
		text_add(out, key, "Irrelevant");
		return NEGOTIATE_OK;
	}
	if (n->result.session_type == SESSION_DISCOVERY && (d->use & KEY_LEADING_ONLY) &&
	    d->offset != P(error_recovery_level) && d->offset != P(protocol_level)) {
		/* Data-transfer keys mean nothing to a discovery session. */
		text_add(out, key, "Irrelevant");
		return NEGOTIATE_OK;
	}
	/* RFC 7143 6.1: a value of these keys is at most 255 bytes; a longer one cannot be meant. */
	if (strlen(val) > TEXT_MAX_SIMPLE_VALUE) {
		text_add(out, key, "Reject");
		return NEGOTIATE_OK;
	}
	char num[16];
	switch (d->kind) {
	case KEY_LIST: {
		if (strcmp(key, "TaskReporting") == 0) {
			text_add(out, key, list_contains(val, "RFC3720") ? "RFC3720" : "Reject");
			break;
		}
		bool chosen = false;
		const char *ans = answer_digest(n, val, &chosen);
		if (!ans) {
			text_add(out, key, "Reject");
			break;
		}
		*param_bool(&n->result, d) = chosen;
		text_add(out, key, ans);
		break;
	}
	case KEY_BOOL_AND:
	case KEY_BOOL_OR: {
		bool theirs;
		if (!parse_bool(val, &theirs)) {
			text_add(out, key, "Reject");
			break;
		}
		bool ours = *param_bool(&n->want, d);
		bool r = d->kind == KEY_BOOL_AND ? (ours && theirs) : (ours || theirs);
		*param_bool(&n->result, d) = r;
		text_add(out, key, r ? "Yes" : "No");
		break;
	}
	case KEY_NUM_MIN:
	case KEY_NUM_MAX: {
		uint32_t theirs;
		if (!parse_number(val, &theirs) || theirs < d->min || theirs > d->max) {
			text_add(out, key, "Reject");
			break;
		}
		uint32_t ours = *param_num(&n->want, d);
		uint32_t r = d->kind == KEY_NUM_MIN ? (theirs < ours ? theirs : ours) : (theirs > ours ? theirs : ours);
		/* Our own offer bounds the result too: a configuration outside the key's range never leaks out. */
		r = clamp_to_key(d, r);
		/* FirstBurstLength may never exceed MaxBurstLength (RFC 7143 13.14). */
		if (d->offset == P(first_burst_length) && r > n->result.max_burst_length)
			r = n->result.max_burst_length;
		*param_num(&n->result, d) = r;
		snprintf(num, sizeof(num), "%u", r);
		text_add(out, key, num);
		break;
	}
	case KEY_DECLARE: {
		uint32_t theirs;
		if (!parse_number(val, &theirs) || theirs < d->min || theirs > d->max) {
			text_add(out, key, "Reject");
			break;
		}
		n->result.peer_max_recv_dsl = theirs;
		break;
	}
	}
	return NEGOTIATE_OK;
}

enum negotiate_result negotiate_respond(struct negotiator *n, const struct text_list *in, struct text_list *out,
					bool security_stage, char *why, size_t whylen)
{
	/*
	 * MaxBurstLength first, wherever the originator put it: the FirstBurstLength answer is
	 * bounded by it, and an answer stated before a smaller MaxBurstLength could not be taken back.
	 */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < in->n; i++) {
			const char *key = in->kv[i].key;
			if ((strcmp(key, "MaxBurstLength") == 0) != (pass == 0))
				continue;
			const char *val = in->kv[i].value;
			enum negotiate_result r = respond_key(n, key, val, out, security_stage, why, whylen);
			if (r != NEGOTIATE_OK)
				return r;
		}
	}
	return NEGOTIATE_OK;
}

void negotiate_finish(struct negotiator *n, struct text_list *out)
{
	char num[16];
	snprintf(num, sizeof(num), "%u", n->want.max_recv_dsl);
	if (!text_has(out, "MaxRecvDataSegmentLength"))
		text_add(out, "MaxRecvDataSegmentLength", num);
	n->result.max_recv_dsl = n->want.max_recv_dsl;
	if (n->result.first_burst_length > n->result.max_burst_length)
		n->result.first_burst_length = n->result.max_burst_length;
}

void negotiate_propose(struct negotiator *n, struct text_list *out, bool discovery)
{
	char num[16];
	text_add(out, "HeaderDigest", n->want.header_digest ? "CRC32C,None" : "None");
	text_add(out, "DataDigest", n->want.data_digest ? "CRC32C,None" : "None");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *d = &key_table[i];
		if (d->offset == NONE || d->kind == KEY_LIST || (d->use & KEY_OBSOLETE))
			continue;
		if (d->offset == P(max_recv_dsl)) {
			snprintf(num, sizeof(num), "%u", n->want.max_recv_dsl);
			text_add(out, d->name, num);
			continue;
		}
		if (!n->leading && (d->use & KEY_LEADING_ONLY))
			continue;
		if (discovery && (d->use & KEY_LEADING_ONLY))
			continue;
		if (d->kind == KEY_BOOL_AND || d->kind == KEY_BOOL_OR) {
			text_add(out, d->name, *param_bool(&n->want, d) ? "Yes" : "No");
		} else {
			snprintf(num, sizeof(num), "%u", *param_num(&n->want, d));
			text_add(out, d->name, num);
		}
		n->offered |= 1u << i;
	}
}

enum negotiate_result negotiate_accept(struct negotiator *n, const struct text_list *in, char *why, size_t whylen)
{
	for (size_t i = 0; i < in->n; i++) {
		const char *key = in->kv[i].key, *val = in->kv[i].value;
		const struct key_def *d = key_lookup(key);
		if (!d || d->offset == NONE || (d->use & KEY_OBSOLETE))
			continue;
		if (strcmp(val, "NotUnderstood") == 0 || strcmp(val, "Irrelevant") == 0 || strcmp(val, "Reject") == 0)
			continue; /* the default stays in force */
		switch (d->kind) {
		case KEY_LIST: {
			bool crc = strcmp(val, "CRC32C") == 0;
			if (!crc && strcmp(val, "None") != 0)
				return fail(why, whylen, "target chose an unknown value for %s", key);
			bool wanted = *param_bool(&n->want, d);
			if (crc && !wanted)
				return fail(why, whylen, "target chose CRC32C for %s, which was not offered", key);
			*param_bool(&n->result, d) = crc;
			break;
		}
		case KEY_BOOL_AND:
		case KEY_BOOL_OR: {
			bool v;
			if (!parse_bool(val, &v))
				return fail(why, whylen, "target answered %s with a non-boolean", key);
			bool ours = *param_bool(&n->want, d);
			/* An AND result cannot be Yes if we said No, nor an OR result No if we said Yes. */
			if ((d->kind == KEY_BOOL_AND && v && !ours) || (d->kind == KEY_BOOL_OR && !v && ours))
				return fail(why, whylen, "target's answer to %s breaks the negotiation rule", key);
			*param_bool(&n->result, d) = v;
			break;
		}
		case KEY_NUM_MIN:
		case KEY_NUM_MAX: {
			uint32_t v;
			if (!parse_number(val, &v) || v < d->min || v > d->max)
				return fail(why, whylen, "target answered %s out of range", key);
			uint32_t ours = *param_num(&n->want, d);
			if ((n->offered & (1u << key_index(d))) &&
			    ((d->kind == KEY_NUM_MIN && v > ours) || (d->kind == KEY_NUM_MAX && v < ours)))
				return fail(why, whylen, "target's answer to %s breaks the negotiation rule", key);
			*param_num(&n->result, d) = v;
			break;
		}
		case KEY_DECLARE: {
			uint32_t v;
			if (!parse_number(val, &v) || v < d->min || v > d->max)
				return fail(why, whylen, "target declared %s out of range", key);
			n->result.peer_max_recv_dsl = v;
			break;
		}
		}
	}
	/* A target may answer FirstBurstLength above its own MaxBurstLength; what we send must not be. */
	if (n->result.first_burst_length > n->result.max_burst_length)
		n->result.first_burst_length = n->result.max_burst_length;
	return NEGOTIATE_OK;
}
