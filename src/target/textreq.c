/*
 * Text requests in full feature phase (RFC 7143 11.10-11.11): SendTargets discovery and
 * renegotiation of the keys allowed there, with long answers split over several Text
 * Responses (C bit, Target Transfer Tag).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/text_join.h"
#include "target/conn.h"
#include "target/ffp.h"
#include "target/server.h"
#include "target/session.h"
#include "util/log.h"
#include "util/sbuf.h"

/* What one Text request may say, over all the PDUs it is continued in. */
#define TEXT_MAX_REQUEST (64u * 1024u)

static void portal_text(const struct conn *c, const struct portal *p, char *out, size_t len)
{
	const char *host = p->name;
	char buf[96];
	/* A wildcard listener answers with the address this connection actually reached. */
	bool wildcard = false;
	if (p->addr.ss_family == AF_INET) {
		wildcard = ((const struct sockaddr_in *)&p->addr)->sin_addr.s_addr == htonl(INADDR_ANY);
	} else {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)&p->addr)->sin6_addr;
		wildcard = IN6_IS_ADDR_UNSPECIFIED(a);
	}
	if (wildcard) {
		uint16_t port = p->addr.ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)&p->addr)->sin_port)
							     : ntohs(((const struct sockaddr_in6 *)&p->addr)->sin6_port);
		if (strchr(c->local_addr, ':'))
			snprintf(buf, sizeof(buf), "[%s]:%u", c->local_addr, port);
		else
			snprintf(buf, sizeof(buf), "%s:%u", c->local_addr, port);
		host = buf;
	}
	snprintf(out, len, "%s,%u", host, p->tpgt);
}

static void add_target(struct conn *c, const struct tnode *node, struct text_list *out)
{
	/* text_list refuses nothing, but SendTargets repeats TargetAddress: encode by hand. */
	text_add(out, "TargetName", node->cfg->name);
	if (node->cfg->gateway) {
		/* One device behind every gateway of the group: each gateway's portal, its group's tag. */
		for (size_t i = 0; i < node->cfg->ngateways; i++) {
			const struct cfg_gateway *g = &node->cfg->gateways[i];
			char addr[112];
			bool v6 = strchr(g->host, ':') != NULL;
			snprintf(addr, sizeof(addr), "%s%s%s:%u,%u", v6 ? "[" : "", g->host, v6 ? "]" : "", g->port, g->id);
			text_add(out, "TargetAddress", addr);
		}
		return;
	}
	for (size_t i = 0; i < c->srv->nportals; i++) {
		const struct portal *p = c->srv->portals[i];
		if (p->tpgt != node->cfg->tpgt)
			continue;
		char addr[112];
		portal_text(c, p, addr, sizeof(addr));
		text_add(out, "TargetAddress", addr);
	}
}

void send_targets(struct conn *c, const char *what, struct text_list *out)
{
	struct server *srv = c->srv;
	const char *initiator = c->sess->initiator_name;
	for (size_t i = 0; i < srv->nnodes; i++) {
		struct tnode *n = srv->nodes[i];
		bool wanted;
		if (strcmp(what, "All") == 0)
			wanted = true;
		else if (what[0] == 0)
			wanted = c->sess->node == n;
		else
			wanted = strcmp(what, n->cfg->name) == 0;
		if (wanted && node_allows(n, initiator))
			add_target(c, n, out);
	}
}

static uint32_t text_fresh_ttt(struct conn *c)
{
	uint32_t t = c->next_ttt++;
	if (t == RESERVED_TAG)
		t = c->next_ttt++;
	return t;
}

static void text_send_chunk(struct conn *c, uint32_t itt, const uint8_t *lun)
{
	size_t left = c->text_reply.len - c->text_reply_off;
	size_t max = c->params.peer_max_recv_dsl;
	size_t n = left > max ? max : left;
	bool more = n < left;
	struct bhs r = {0};
	r.opcode = OP_TEXT_RESP;
	r.final = !more;
	r.text.cont = more;
	if (lun)
		memcpy(r.lun, lun, 8);
	r.itt = itt;
	if (more)
		c->text_ttt = text_fresh_ttt(c);
	r.text.ttt = more ? c->text_ttt : RESERVED_TAG;
	uint8_t *copy = NULL;
	if (n) {
		copy = xmalloc(n);
		memcpy(copy, c->text_reply.data + c->text_reply_off, n);
	}
	c->text_reply_off += n;
	if (!more) {
		sbuf_reset(&c->text_reply);
		c->text_reply_off = 0;
	}
	conn_send_pdu(c, &r, copy, (uint32_t)n, NULL, copy);
}

/* Forget a request being collected and an answer being sent: a new exchange starts afresh. */
static void text_exchange_reset(struct conn *c)
{
	sbuf_reset(&c->text_pending);
	sbuf_reset(&c->text_reply);
	c->text_reply_off = 0;
	c->text_collecting = false;
}

void textreq_handle(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len)
{
	if (b->text.ttt != RESERVED_TAG) {
		bool next_part = c->text_collecting && b->text.ttt == c->text_ttt;
		if (!next_part) {
			/* Otherwise the initiator asks for the next part of a long answer. */
			if (b->text.ttt != c->text_ttt || c->text_reply_off == 0) {
				text_exchange_reset(c);
				send_reject(c, REJECT_INVALID_PDU_FIELD, raw);
				return;
			}
			text_send_chunk(c, b->itt, b->lun);
			return;
		}
	} else {
		/* TTT 0xffffffff starts a new exchange (RFC 7143 11.10.4): nothing earlier carries over. */
		text_exchange_reset(c);
	}
	enum text_join_result joined =
		text_join_add(&c->text_pending, NULL, data, len, b->text.cont, TEXT_MAX_REQUEST, 0);
	if (joined == TEXT_JOIN_TOO_LONG || joined == TEXT_JOIN_TOO_MANY) {
		text_exchange_reset(c);
		send_reject(c, REJECT_OUT_OF_RESOURCES, raw);
		return;
	}
	if (joined == TEXT_JOIN_MORE) {
		/* The initiator sends the next part with the tag given here (RFC 7143 11.11.4). */
		c->text_collecting = true;
		c->text_ttt = text_fresh_ttt(c);
		struct bhs r = {0};
		r.opcode = OP_TEXT_RESP;
		r.itt = b->itt;
		memcpy(r.lun, b->lun, 8);
		r.text.ttt = c->text_ttt;
		conn_send_pdu(c, &r, NULL, 0, NULL, NULL);
		return;
	}
	c->text_collecting = false;
	struct text_list in = {0}, out = {0};
	char err[128];
	if (text_parse(c->text_pending.data, c->text_pending.len, &in, err, sizeof(err)) < 0) {
		log_warn("%s:%u: bad text request: %s", c->peer_addr, c->peer_port, err);
		text_clear(&in);
		text_exchange_reset(c);
		send_reject(c, REJECT_PROTOCOL_ERROR, raw);
		return;
	}
	sbuf_reset(&c->text_pending);
	struct text_list rest = {0};
	for (size_t i = 0; i < in.n; i++) {
		if (strcmp(in.kv[i].key, "SendTargets") == 0)
			send_targets(c, in.kv[i].value, &out);
		else
			text_add(&rest, in.kv[i].key, in.kv[i].value);
	}
	if (rest.n) {
		/* Only connection-scoped declarations may change now; the rest is answered per the table. */
		struct negotiator n;
		negotiator_init(&n, c->sess->node ? &c->sess->node->want : &c->params, false, true);
		n.result = c->params;
		char why[128];
		negotiate_respond(&n, &rest, &out, false, why, sizeof(why));
		c->params.peer_max_recv_dsl = n.result.peer_max_recv_dsl;
	}
	text_encode(&out, &c->text_reply);
	c->text_reply_off = 0;
	text_send_chunk(c, b->itt, b->lun);
	text_clear(&in);
	text_clear(&out);
	text_clear(&rest);
}
