/*
 * iSNS protocol (RFC 4171): the 12-byte PDU header, tag-length-value attributes, messages split
 * into PDUs and put back together, and the parts of query responses the initiator reads.
 * Everything here is pure encoding: no sockets, no time. Every length a peer sends is checked
 * before it is used, and a reassembled message never exceeds the caller's bound.
 */
#ifndef ISTHMUS_PROTO_ISNS_H
#define ISTHMUS_PROTO_ISNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/sbuf.h"

#define ISNS_VERSION 1
#define ISNS_HDR_LEN 12
#define ISNS_DEFAULT_PORT 3205
/* PDU Length is 16 bits; a payload ends on a 4-byte boundary, so 65532 is the most one PDU holds. */
#define ISNS_PDU_MAX_PAYLOAD 65532u
/* The most a reassembled message may hold unless the caller says otherwise. */
#define ISNS_MAX_MESSAGE_DEFAULT (1u << 20)

/* Function IDs; a response is the request's ID with ISNS_RESPONSE set. */
enum isns_func {
	ISNS_DEV_ATTR_REG = 0x0001,
	ISNS_DEV_ATTR_QRY = 0x0002,
	ISNS_DEV_GET_NEXT = 0x0003,
	ISNS_DEV_DEREG = 0x0004,
	ISNS_SCN_REG = 0x0005,
	ISNS_SCN_DEREG = 0x0006,
	ISNS_SCN_EVENT = 0x0007,
	ISNS_SCN = 0x0008,
	ISNS_ESI = 0x000d,
	ISNS_RESPONSE = 0x8000,
};

/* Header flags (RFC 4171 5.1.4: bits 16..21 of the second header word). */
#define ISNS_F_CLIENT 0x8000u
#define ISNS_F_SERVER 0x4000u
#define ISNS_F_AUTH 0x2000u
#define ISNS_F_REPLACE 0x1000u
#define ISNS_F_LAST 0x0800u
#define ISNS_F_FIRST 0x0400u

/* Attribute tags used by the target and the initiator. */
enum isns_tag {
	ISNS_TAG_DELIMITER = 0,
	ISNS_TAG_ENTITY_ID = 1,
	ISNS_TAG_ENTITY_PROTOCOL = 2,
	ISNS_TAG_REGISTRATION_PERIOD = 6,
	ISNS_TAG_PORTAL_IP = 16,
	ISNS_TAG_PORTAL_PORT = 17,
	ISNS_TAG_PORTAL_NAME = 18,
	ISNS_TAG_ESI_INTERVAL = 20,
	ISNS_TAG_ESI_PORT = 21,
	ISNS_TAG_SCN_PORT = 23,
	ISNS_TAG_ISCSI_NAME = 32,
	ISNS_TAG_ISCSI_NODE_TYPE = 33,
	ISNS_TAG_ISCSI_ALIAS = 34,
	ISNS_TAG_ISCSI_SCN_BITMAP = 35,
	ISNS_TAG_PG_ISCSI_NAME = 48,
	ISNS_TAG_PG_PORTAL_IP = 49,
	ISNS_TAG_PG_PORTAL_PORT = 50,
	ISNS_TAG_PG_TAG = 51,
	ISNS_TAG_DD_ID = 2065,
};

#define ISNS_ENTITY_PROTOCOL_ISCSI 2u
/* iSCSI Node Type bits (bit 31, the least significant, is Target). */
#define ISNS_NODE_TARGET 0x1u
#define ISNS_NODE_INITIATOR 0x2u
#define ISNS_NODE_CONTROL 0x4u
/* SCN event bits. */
#define ISNS_SCN_DD_MEMBER_ADDED 0x1u
#define ISNS_SCN_DD_MEMBER_REMOVED 0x2u
#define ISNS_SCN_OBJECT_UPDATED 0x4u
#define ISNS_SCN_OBJECT_ADDED 0x8u
#define ISNS_SCN_OBJECT_REMOVED 0x10u
#define ISNS_SCN_MANAGEMENT 0x20u
#define ISNS_SCN_TARGET_AND_SELF 0x40u
#define ISNS_SCN_INITIATOR_AND_SELF 0x80u

/* Response status codes the callers tell apart (RFC 4171 6.4). */
#define ISNS_STATUS_SUCCESS 0u
#define ISNS_STATUS_NO_SUCH_ENTRY 9u

struct isns_hdr {
	uint16_t version;
	uint16_t func;
	uint16_t len; /* payload bytes after the header */
	uint16_t flags;
	uint16_t xid;
	uint16_t seq;
};

void isns_hdr_encode(const struct isns_hdr *h, uint8_t out[ISNS_HDR_LEN]);
/* Checks version and that the payload length is a multiple of 4. 0, or -1 with why. */
int isns_hdr_decode(const uint8_t in[ISNS_HDR_LEN], struct isns_hdr *h, char *why, size_t whylen);

/*
 * An iSNS server as "ADDR", "ADDR:PORT", "[V6]" or "[V6]:PORT", numeric only (no resolver call
 * on the event loop); the port defaults to 3205. 0, or -1 with why.
 */
int isns_parse_server(const char *spec, char *addr, size_t addrlen, uint16_t *port, char *why, size_t whylen);

/* ---- Building a message's payload (attributes in order). ---- */

void isns_put_u32(struct sbuf *b, uint32_t tag, uint32_t value);
/* A NUL-terminated string padded with NULs to a 4-byte boundary. */
void isns_put_str(struct sbuf *b, uint32_t tag, const char *s);
/* A 16-byte address: IPv6, or IPv4 as ::ffff:a.b.c.d. Returns -1 if addr is neither. */
int isns_put_ip(struct sbuf *b, uint32_t tag, const char *addr);
/* A zero-length attribute: the delimiter (tag 0), or a key/attribute asked for in a query. */
void isns_put_empty(struct sbuf *b, uint32_t tag);

/*
 * The wire bytes of one message: its payload in as many PDUs as it needs, cut at attribute
 * boundaries, First and Last set as they apply, sequence IDs from 0. Appends to out.
 * Returns 0, or -1 if one attribute is larger than a PDU can carry.
 */
int isns_message_encode(struct sbuf *out, uint16_t func, uint16_t flags, uint16_t xid, const uint8_t *payload,
			size_t len);

/* ---- Reading. ---- */

/*
 * Is there a whole PDU at the start of buf? 1 with its header and *pdu_len (header included),
 * 0 when more bytes are needed, -1 with why when the header is invalid.
 */
int isns_pdu_peek(const uint8_t *buf, size_t len, struct isns_hdr *h, size_t *pdu_len, char *why, size_t whylen);

/* Putting one message back together from its PDUs. */
struct isns_reasm {
	size_t max;         /* bound on the message payload; 0 means ISNS_MAX_MESSAGE_DEFAULT */
	struct sbuf msg;    /* the payload so far */
	bool active;        /* a first PDU has been seen */
	struct isns_hdr first;
	uint16_t next_seq;
};
/*
 * Adds one PDU (header h, payload p of h->len bytes). Returns 1 when the message is complete
 * (its header in *h_out: the first PDU's, payload in r->msg), 0 when more PDUs are needed, -1
 * with why on a broken sequence or a message larger than the bound (the reassembly is reset).
 */
int isns_reasm_add(struct isns_reasm *r, const struct isns_hdr *h, const uint8_t *p, struct isns_hdr *h_out,
		   char *why, size_t whylen);
void isns_reasm_reset(struct isns_reasm *r);
void isns_reasm_free(struct isns_reasm *r);

struct isns_attr {
	uint32_t tag;
	uint32_t len;
	const uint8_t *val;
};
/* The attribute at *off, advancing it. 1, 0 at the end, -1 with why when one overruns. */
int isns_attr_next(const uint8_t *p, size_t len, size_t *off, struct isns_attr *a, char *why, size_t whylen);
/* Values: 0, or -1 when the attribute is not of that shape. */
int isns_attr_u32(const struct isns_attr *a, uint32_t *v);
/* A string with its NUL inside the attribute and no other control byte; copied into out. */
int isns_attr_str(const struct isns_attr *a, char *out, size_t outlen);
/* A 16-byte address as text: dotted IPv4 when it is v4-mapped, else IPv6. */
int isns_attr_ip(const struct isns_attr *a, char *out, size_t outlen);

/* A response's status code and where its attributes start. 0, or -1 when shorter than 4 bytes. */
int isns_response_status(const uint8_t *p, size_t len, uint32_t *status);
const char *isns_status_name(uint32_t status);

/* ---- Query responses: the target nodes an initiator sees and where to reach them. ---- */

#define ISNS_NAME_MAX 224 /* RFC 3720 bounds iSCSI names at 223 bytes */
#define ISNS_ALIAS_MAX 256
#define ISNS_ADDR_MAX 48

struct isns_portal {
	char ip[ISNS_ADDR_MAX];
	uint16_t port;
	uint32_t tag; /* portal group tag; 0 when the server gave none */
};

struct isns_node {
	char name[ISNS_NAME_MAX];
	char alias[ISNS_ALIAS_MAX];
	uint32_t type;
	struct isns_portal *portals;
	size_t nportals;
};

struct isns_node_list {
	struct isns_node *nodes;
	size_t n;
};

/*
 * The operating attributes of a DevAttrQry response (after the status, the key and the
 * delimiter): entities, their portals, their nodes, and portal groups naming which portals
 * serve which node. Nodes without portal group records get every portal of their entity.
 * At most max_nodes nodes and max_portals portals per node are kept. 0, or -1 with why.
 */
int isns_parse_nodes(const uint8_t *p, size_t len, size_t max_nodes, size_t max_portals, struct isns_node_list *out,
		     char *why, size_t whylen);
void isns_node_list_free(struct isns_node_list *l);
/* Where the operating attributes of a response start: after status, key attributes and delimiter. */
int isns_response_operating(const uint8_t *p, size_t len, size_t *off, char *why, size_t whylen);

#endif
