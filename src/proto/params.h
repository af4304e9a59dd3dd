/*
 * Login and text negotiation (RFC 7143 sections 6 and 13): one declarative table of every key,
 * driving both the responder (target) and the originator (initiator) side.
 */
#ifndef ISTHMUS_PROTO_PARAMS_H
#define ISTHMUS_PROTO_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/text.h"

enum session_type { SESSION_NORMAL = 0, SESSION_DISCOVERY = 1 };

/* The operational values of a session and of one of its connections. */
struct iscsi_params {
	/* connection-only */
	bool header_digest;
	bool data_digest;
	uint32_t max_recv_dsl;      /* what this side declared it can receive */
	uint32_t peer_max_recv_dsl; /* what the peer declared: bounds what this side sends */
	/* session-wide */
	uint32_t max_connections;
	bool initial_r2t;
	bool immediate_data;
	uint32_t max_burst_length;
	uint32_t first_burst_length;
	uint32_t default_time2wait;
	uint32_t default_time2retain;
	uint32_t max_outstanding_r2t;
	bool data_pdu_in_order;
	bool data_sequence_in_order;
	uint32_t error_recovery_level;
	uint32_t protocol_level;
	enum session_type session_type;
};

/* RFC 7143 defaults (what applies to a key nobody negotiated). */
void params_defaults(struct iscsi_params *p);

enum key_kind {
	KEY_LIST,      /* comma list, responder picks the first it supports */
	KEY_BOOL_AND,  /* result = both */
	KEY_BOOL_OR,   /* result = either */
	KEY_NUM_MIN,   /* result = minimum */
	KEY_NUM_MAX,   /* result = maximum */
	KEY_DECLARE,   /* declarative: each side states its own value */
};

enum key_use {
	KEY_LEADING_ONLY = 1 << 0, /* only in the login of the session's first connection */
	KEY_SECURITY = 1 << 1,     /* security negotiation stage only */
	KEY_FROM_INITIATOR = 1 << 2, /* may be sent by the initiator */
	KEY_FROM_TARGET = 1 << 3,    /* may be sent by the target */
	KEY_CONNECTION = 1 << 4,     /* connection-only scope */
	KEY_FULL_FEATURE = 1 << 5,   /* may also be negotiated in full feature phase (Text) */
	KEY_LOGIN = 1 << 6,          /* may appear during login */
	KEY_OBSOLETE = 1 << 7,       /* RFC 3720 keys RFC 7143 obsoletes */
};

struct key_def {
	const char *name;
	enum key_kind kind;
	unsigned use;
	uint32_t min, max; /* numeric range */
	size_t offset;     /* into struct iscsi_params; SIZE_MAX for keys without a stored value */
};

const struct key_def *key_lookup(const char *name);

/*
 * The responder's side of one negotiation round. `ours` holds what this side offers: its
 * values for every key (bools and numbers) in an iscsi_params, and the digests it accepts.
 */
struct negotiator {
	struct iscsi_params want;   /* our offer / limits (for MIN keys our maximum) */
	bool accept_crc32c;          /* digests: CRC32C allowed */
	bool accept_none_digest;     /* digests: None allowed */
	bool leading;                /* first connection of the session */
	bool is_target;              /* responder role: target */
	struct iscsi_params result;  /* negotiated so far */
	uint32_t answered;           /* bit per table index: key already negotiated */
	uint32_t offered;            /* bit per table index: key we sent unprompted */
};

void negotiator_init(struct negotiator *n, const struct iscsi_params *want, bool leading, bool is_target);

enum negotiate_result {
	NEGOTIATE_OK,
	NEGOTIATE_PROTOCOL_ERROR, /* e.g. a key repeated, a security key in the operational stage */
};

/*
 * Answer the operational keys of a request (keys handled elsewhere — names, SessionType,
 * AuthMethod and CHAP — are skipped; the caller deals with them). Appends answers to out.
 * `security_stage` tells in which stage the PDU arrived.
 */
enum negotiate_result negotiate_respond(struct negotiator *n, const struct text_list *in, struct text_list *out,
					bool security_stage, char *why, size_t whylen);

/*
 * Keys the responder must state even if the originator did not send them: the target's
 * MaxRecvDataSegmentLength declaration, and any key whose value differs from the default
 * in a way the originator must learn. Call once when leaving the operational stage.
 */
void negotiate_finish(struct negotiator *n, struct text_list *out);

/* Originator side: propose every key where our want differs from the default (plus digests). */
void negotiate_propose(struct negotiator *n, struct text_list *out, bool discovery);
/* Originator side: fold the responder's answers in; protocol error on a bad answer. */
enum negotiate_result negotiate_accept(struct negotiator *n, const struct text_list *in, char *why, size_t whylen);

#endif
