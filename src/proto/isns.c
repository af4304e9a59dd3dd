/* iSNS PDUs and attributes (RFC 4171 sections 5 and 6). */
#include "proto/isns.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/bytes.h"
#include "util/sbuf.h"

void isns_hdr_encode(const struct isns_hdr *h, uint8_t out[ISNS_HDR_LEN])
{
	put_be16(out, h->version);
	put_be16(out + 2, h->func);
	put_be16(out + 4, h->len);
	put_be16(out + 6, h->flags);
	put_be16(out + 8, h->xid);
	put_be16(out + 10, h->seq);
}

int isns_hdr_decode(const uint8_t in[ISNS_HDR_LEN], struct isns_hdr *h, char *why, size_t whylen)
{
	h->version = get_be16(in);
	h->func = get_be16(in + 2);
	h->len = get_be16(in + 4);
	h->flags = get_be16(in + 6);
	h->xid = get_be16(in + 8);
	h->seq = get_be16(in + 10);
	if (h->version != ISNS_VERSION) {
		set_why(why, whylen, "iSNS version %u (only %u is known)", h->version, ISNS_VERSION);
		return -1;
	}
	if (h->len % 4) {
		set_why(why, whylen, "iSNS PDU length %u is not a multiple of 4", h->len);
		return -1;
	}
	return 0;
}

int isns_parse_server(const char *spec, char *addr, size_t addrlen, uint16_t *port, char *why, size_t whylen)
{
	const char *host = spec, *colon = NULL;
	size_t hlen;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || (close[1] && close[1] != ':'))
			goto bad;
		host = spec + 1;
		hlen = (size_t)(close - host);
		colon = close[1] ? close + 1 : NULL;
	} else {
		colon = strchr(spec, ':');
		if (colon && strchr(colon + 1, ':'))
			goto bad; /* a bare IPv6 address would be ambiguous with a port */
		hlen = colon ? (size_t)(colon - spec) : strlen(spec);
	}
	if (hlen == 0 || hlen >= addrlen || hlen >= INET6_ADDRSTRLEN)
		goto bad;
	memcpy(addr, host, hlen);
	addr[hlen] = 0;
	uint8_t tmp[16];
	if (inet_pton(AF_INET, addr, tmp) != 1 && inet_pton(AF_INET6, addr, tmp) != 1)
		goto bad;
	*port = ISNS_DEFAULT_PORT;
	if (colon) {
		char *end;
		unsigned long v = strtoul(colon + 1, &end, 10);
		if (!colon[1] || *end || v == 0 || v > 65535 || colon[1] < '0' || colon[1] > '9')
			goto bad;
		*port = (uint16_t)v;
	}
	return 0;
bad:
	set_why(why, whylen, "iSNS server '%s' is not ADDR[:PORT] with a numeric address", spec);
	return -1;
}

/* ---- Building ---- */

static void put_tl(struct sbuf *b, uint32_t tag, uint32_t len)
{
	uint8_t tl[8];
	put_be32(tl, tag);
	put_be32(tl + 4, len);
	sbuf_append(b, tl, sizeof(tl));
}

void isns_put_u32(struct sbuf *b, uint32_t tag, uint32_t value)
{
	uint8_t v[4];
	put_tl(b, tag, 4);
	put_be32(v, value);
	sbuf_append(b, v, 4);
}

void isns_put_str(struct sbuf *b, uint32_t tag, const char *s)
{
	static const uint8_t zeros[4];
	size_t n = strlen(s) + 1;
	size_t padded = (n + 3) & ~(size_t)3;
	put_tl(b, tag, (uint32_t)padded);
	sbuf_append(b, s, n - 1);
	sbuf_append(b, zeros, padded - (n - 1));
}

int isns_put_ip(struct sbuf *b, uint32_t tag, const char *addr)
{
	uint8_t v[16] = {0};
	struct in_addr a4;
	if (inet_pton(AF_INET, addr, &a4) == 1) {
		v[10] = v[11] = 0xff;
		memcpy(v + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, addr, v) != 1) {
		return -1;
	}
	put_tl(b, tag, 16);
	sbuf_append(b, v, 16);
	return 0;
}

void isns_put_empty(struct sbuf *b, uint32_t tag) { put_tl(b, tag, 0); }

int isns_message_encode(struct sbuf *out, uint16_t func, uint16_t flags, uint16_t xid, const uint8_t *payload,
			size_t len)
{
	size_t off = 0;
	uint16_t seq = 0;
	flags &= (uint16_t) ~(ISNS_F_FIRST | ISNS_F_LAST);
	do {
		/* Take whole attributes while they fit; a response's 4-byte status counts as one. */
		size_t end = off;
		while (end < len) {
			size_t item;
			if (len - end < 8) {
				item = len - end;
			} else {
				uint32_t alen = get_be32(payload + end + 4);
				item = alen > len - end - 8 ? len - end : 8 + (size_t)alen;
			}
			if ((func & ISNS_RESPONSE) && end == 0 && len >= 4)
				item = 4;
			if (end - off + item > ISNS_PDU_MAX_PAYLOAD)
				break;
			end += item;
		}
		if (end == off && off < len)
			return -1;
		struct isns_hdr h = {
			.version = ISNS_VERSION,
			.func = func,
			.len = (uint16_t)(end - off),
			.flags = (uint16_t)(flags | (off == 0 ? ISNS_F_FIRST : 0) | (end == len ? ISNS_F_LAST : 0)),
			.xid = xid,
			.seq = seq++,
		};
		uint8_t hb[ISNS_HDR_LEN];
		isns_hdr_encode(&h, hb);
		sbuf_append(out, hb, sizeof(hb));
		sbuf_append(out, payload + off, end - off);
		off = end;
	} while (off < len);
	return 0;
}

/* ---- Reading ---- */

int isns_pdu_peek(const uint8_t *buf, size_t len, struct isns_hdr *h, size_t *pdu_len, char *why, size_t whylen)
{
	if (len < ISNS_HDR_LEN)
		return 0;
	if (isns_hdr_decode(buf, h, why, whylen) < 0)
		return -1;
	if (len < ISNS_HDR_LEN + (size_t)h->len)
		return 0;
	*pdu_len = ISNS_HDR_LEN + (size_t)h->len;
	return 1;
}

void isns_reasm_reset(struct isns_reasm *r)
{
	r->active = false;
	r->next_seq = 0;
	sbuf_reset(&r->msg);
}

void isns_reasm_free(struct isns_reasm *r)
{
	sbuf_free(&r->msg);
	r->active = false;
}

int isns_reasm_add(struct isns_reasm *r, const struct isns_hdr *h, const uint8_t *p, struct isns_hdr *h_out,
		   char *why, size_t whylen)
{
	size_t max = r->max ? r->max : ISNS_MAX_MESSAGE_DEFAULT;
	if (h->flags & ISNS_F_FIRST) {
		/* A new first PDU abandons whatever was half received. */
		isns_reasm_reset(r);
		if (h->seq != 0) {
			set_why(why, whylen, "first iSNS PDU has sequence ID %u", h->seq);
			return -1;
		}
		r->active = true;
		r->first = *h;
	} else if (!r->active) {
		set_why(why, whylen, "iSNS PDU continues a message that never started");
		return -1;
	} else if (h->func != r->first.func || h->xid != r->first.xid || h->seq != r->next_seq) {
		set_why(why, whylen, "iSNS PDU out of sequence (function %#x transaction %u sequence %u)", h->func,
			h->xid, h->seq);
		isns_reasm_reset(r);
		return -1;
	}
	if (r->msg.len + h->len > max) {
		set_why(why, whylen, "iSNS message longer than %zu bytes", max);
		isns_reasm_reset(r);
		return -1;
	}
	sbuf_append(&r->msg, p, h->len);
	r->next_seq = (uint16_t)(h->seq + 1);
	if (!(h->flags & ISNS_F_LAST))
		return 0;
	*h_out = r->first;
	h_out->len = 0; /* the payload's length is r->msg.len, which may exceed 16 bits */
	r->active = false;
	return 1;
}

int isns_attr_next(const uint8_t *p, size_t len, size_t *off, struct isns_attr *a, char *why, size_t whylen)
{
	if (*off >= len)
		return 0;
	if (len - *off < 8) {
		set_why(why, whylen, "iSNS attribute header cut short at offset %zu", *off);
		return -1;
	}
	a->tag = get_be32(p + *off);
	a->len = get_be32(p + *off + 4);
	if (a->len > len - *off - 8) {
		set_why(why, whylen, "iSNS attribute %u of %u bytes overruns the message", a->tag, a->len);
		return -1;
	}
	if (a->len % 4) {
		set_why(why, whylen, "iSNS attribute %u length %u is not a multiple of 4", a->tag, a->len);
		return -1;
	}
	a->val = p + *off + 8;
	*off += 8 + (size_t)a->len;
	return 1;
}

int isns_attr_u32(const struct isns_attr *a, uint32_t *v)
{
	if (a->len != 4)
		return -1;
	*v = get_be32(a->val);
	return 0;
}

int isns_attr_str(const struct isns_attr *a, char *out, size_t outlen)
{
	const uint8_t *nul = a->len ? memchr(a->val, 0, a->len) : NULL;
	if (!nul)
		return -1;
	size_t n = (size_t)(nul - a->val);
	if (n + 1 > outlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (a->val[i] < 0x20 || a->val[i] == 0x7f)
			return -1;
	memcpy(out, a->val, n);
	out[n] = 0;
	return 0;
}

int isns_attr_ip(const struct isns_attr *a, char *out, size_t outlen)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (a->len != 16)
		return -1;
	if (memcmp(a->val, v4mapped, 12) == 0)
		return inet_ntop(AF_INET, a->val + 12, out, (socklen_t)outlen) ? 0 : -1;
	return inet_ntop(AF_INET6, a->val, out, (socklen_t)outlen) ? 0 : -1;
}

int isns_response_status(const uint8_t *p, size_t len, uint32_t *status)
{
	if (len < 4)
		return -1;
	*status = get_be32(p);
	return 0;
}

const char *isns_status_name(uint32_t status)
{
	static const char *const names[] = {
		"Successful", "Unknown Error", "Message Format Error", "Invalid Registration",
		"(reserved)", "Invalid Query", "Source Unknown", "Source Absent",
		"Source Unauthorized", "No Such Entry", "Version Not Supported", "Internal Error",
		"Busy", "Option Not Understood", "Invalid Update", "Message (FUNCTION_ID) Not Supported",
		"SCN Event Rejected", "SCN Registration Rejected", "Attribute Not Implemented",
		"FC_DOMAIN_ID Not Available", "FC_DOMAIN_ID Not Allocated", "ESI Not Available",
		"Invalid Deregistration", "Registration Feature Not Supported",
	};
	return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown status";
}

int isns_response_operating(const uint8_t *p, size_t len, size_t *off, char *why, size_t whylen)
{
	if (len < 4) {
		set_why(why, whylen, "iSNS response without a status");
		return -1;
	}
	*off = 4;
	size_t o = 4;
	struct isns_attr a;
	int rc;
	while ((rc = isns_attr_next(p, len, &o, &a, why, whylen)) == 1) {
		if (a.tag == ISNS_TAG_DELIMITER) {
			*off = o;
			return 0;
		}
	}
	if (rc < 0)
		return -1;
	/* No delimiter: the response has only a key (or nothing), so there are no operating attributes. */
	*off = len;
	return 0;
}

/* ---- Query responses ---- */

struct qportal {
	size_t entity;
	char ip[ISNS_ADDR_MAX];
	uint16_t port;
	bool has_port;
};

struct qpg {
	char name[ISNS_NAME_MAX];
	char ip[ISNS_ADDR_MAX];
	uint16_t port;
	uint32_t tag;
	bool has_tag, has_ip, has_port;
};

struct qnode {
	size_t entity;
};

/* Bound on the portal group records one response may make us hold. */
#define ISNS_MAX_PG_RECORDS 4096u

static void node_add_portal(struct isns_node *n, size_t max_portals, const char *ip, uint16_t port, uint32_t tag)
{
	if (n->nportals >= max_portals)
		return;
	for (size_t i = 0; i < n->nportals; i++)
		if (n->portals[i].port == port && strcmp(n->portals[i].ip, ip) == 0)
			return;
	n->portals = xrealloc(n->portals, (n->nportals + 1) * sizeof(*n->portals));
	struct isns_portal *p = &n->portals[n->nportals++];
	snprintf(p->ip, sizeof(p->ip), "%s", ip);
	p->port = port;
	p->tag = tag;
}

int isns_parse_nodes(const uint8_t *p, size_t len, size_t max_nodes, size_t max_portals, struct isns_node_list *out,
		     char *why, size_t whylen)
{
	struct qportal *portals = NULL;
	size_t nportals = 0;
	struct qpg *pgs = NULL;
	size_t npgs = 0;
	struct qnode *where = NULL; /* entity of each node in out */
	size_t entity = 0, off = 0;
	struct isns_node *cur_node = NULL;
	struct qportal *cur_portal = NULL;
	struct qpg *cur_pg = NULL;
	struct isns_attr a;
	int rc, ret = -1;
	size_t portal_cap = max_nodes * max_portals;
	if (portal_cap > ISNS_MAX_PG_RECORDS)
		portal_cap = ISNS_MAX_PG_RECORDS;
	out->nodes = NULL;
	out->n = 0;
	while ((rc = isns_attr_next(p, len, &off, &a, why, whylen)) == 1) {
		uint32_t v;
		switch (a.tag) {
		case ISNS_TAG_ENTITY_ID:
			entity++;
			cur_node = NULL;
			cur_portal = NULL;
			break;
		case ISNS_TAG_PORTAL_IP:
			cur_portal = NULL;
			if (nportals >= portal_cap)
				break;
			portals = xrealloc(portals, (nportals + 1) * sizeof(*portals));
			cur_portal = &portals[nportals];
			memset(cur_portal, 0, sizeof(*cur_portal));
			cur_portal->entity = entity;
			if (isns_attr_ip(&a, cur_portal->ip, sizeof(cur_portal->ip)) < 0) {
				cur_portal = NULL;
				break;
			}
			nportals++;
			break;
		case ISNS_TAG_PORTAL_PORT:
			if (cur_portal && isns_attr_u32(&a, &v) == 0) {
				cur_portal->port = (uint16_t)v;
				cur_portal->has_port = true;
			}
			break;
		case ISNS_TAG_ISCSI_NAME:
			cur_node = NULL;
			if (out->n >= max_nodes)
				break;
			out->nodes = xrealloc(out->nodes, (out->n + 1) * sizeof(*out->nodes));
			where = xrealloc(where, (out->n + 1) * sizeof(*where));
			cur_node = &out->nodes[out->n];
			memset(cur_node, 0, sizeof(*cur_node));
			if (isns_attr_str(&a, cur_node->name, sizeof(cur_node->name)) < 0 || !cur_node->name[0]) {
				cur_node = NULL;
				break;
			}
			where[out->n].entity = entity;
			out->n++;
			break;
		case ISNS_TAG_ISCSI_NODE_TYPE:
			if (cur_node && isns_attr_u32(&a, &v) == 0)
				cur_node->type = v;
			break;
		case ISNS_TAG_ISCSI_ALIAS:
			if (cur_node && isns_attr_str(&a, cur_node->alias, sizeof(cur_node->alias)) < 0)
				cur_node->alias[0] = 0;
			break;
		case ISNS_TAG_PG_ISCSI_NAME:
			cur_pg = NULL;
			if (npgs >= ISNS_MAX_PG_RECORDS)
				break;
			pgs = xrealloc(pgs, (npgs + 1) * sizeof(*pgs));
			cur_pg = &pgs[npgs];
			memset(cur_pg, 0, sizeof(*cur_pg));
			if (isns_attr_str(&a, cur_pg->name, sizeof(cur_pg->name)) < 0) {
				cur_pg = NULL;
				break;
			}
			npgs++;
			break;
		case ISNS_TAG_PG_PORTAL_IP:
			if (cur_pg && isns_attr_ip(&a, cur_pg->ip, sizeof(cur_pg->ip)) == 0)
				cur_pg->has_ip = true;
			break;
		case ISNS_TAG_PG_PORTAL_PORT:
			if (cur_pg && isns_attr_u32(&a, &v) == 0) {
				cur_pg->port = (uint16_t)v;
				cur_pg->has_port = true;
			}
			break;
		case ISNS_TAG_PG_TAG:
			/* A zero-length tag is NULL: that portal gives no access to that node. */
			if (cur_pg && isns_attr_u32(&a, &v) == 0) {
				cur_pg->tag = v;
				cur_pg->has_tag = true;
			}
			break;
		default:
			break;
		}
	}
	if (rc < 0) {
		isns_node_list_free(out);
		goto out;
	}
	for (size_t i = 0; i < out->n; i++) {
		struct isns_node *n = &out->nodes[i];
		bool named = false;
		for (size_t j = 0; j < npgs; j++) {
			if (strcmp(pgs[j].name, n->name) != 0 || !pgs[j].has_ip || !pgs[j].has_port)
				continue;
			named = true;
			if (pgs[j].has_tag)
				node_add_portal(n, max_portals, pgs[j].ip, pgs[j].port, pgs[j].tag);
		}
		if (named)
			continue;
		for (size_t j = 0; j < nportals; j++)
			if (portals[j].entity == where[i].entity && portals[j].has_port)
				node_add_portal(n, max_portals, portals[j].ip, portals[j].port, 0);
	}
	ret = 0;
out:
	free(portals);
	free(pgs);
	free(where);
	return ret;
}

void isns_node_list_free(struct isns_node_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->nodes[i].portals);
	free(l->nodes);
	l->nodes = NULL;
	l->n = 0;
}
