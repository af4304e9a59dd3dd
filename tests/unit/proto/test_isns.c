/* iSNS codec: header, attributes, messages split into PDUs and reassembled, query responses. */
#include "proto/isns.h"

#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "util/bytes.h"

static void test_header(void)
{
	struct isns_hdr h = {.version = 1, .func = 0x8001, .len = 8, .flags = 0x4c00, .xid = 7, .seq = 0};
	uint8_t b[ISNS_HDR_LEN];
	isns_hdr_encode(&h, b);
	static const uint8_t want[] = {0, 1, 0x80, 1, 0, 8, 0x4c, 0, 0, 7, 0, 0};
	CHECK(memcmp(b, want, sizeof(want)) == 0);
	struct isns_hdr d;
	char why[128];
	CHECK_EQ(isns_hdr_decode(b, &d, why, sizeof(why)), 0);
	CHECK(memcmp(&d, &h, sizeof(h)) == 0);
	b[1] = 2; /* version 2 */
	CHECK_EQ(isns_hdr_decode(b, &d, why, sizeof(why)), -1);
	b[1] = 1;
	b[5] = 6; /* a length that is not 4-aligned */
	CHECK_EQ(isns_hdr_decode(b, &d, why, sizeof(why)), -1);
}

static void test_attributes(void)
{
	struct sbuf b = {0};
	isns_put_str(&b, ISNS_TAG_ISCSI_NAME, "iqn.x");   /* 5 chars + NUL -> 8 */
	isns_put_str(&b, ISNS_TAG_ISCSI_ALIAS, "abc");    /* 3 + NUL -> 4 */
	isns_put_u32(&b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_TARGET);
	CHECK_EQ(isns_put_ip(&b, ISNS_TAG_PORTAL_IP, "192.0.2.1"), 0);
	CHECK_EQ(isns_put_ip(&b, ISNS_TAG_PORTAL_IP, "2001:db8::1"), 0);
	CHECK_EQ(isns_put_ip(&b, ISNS_TAG_PORTAL_IP, "not-an-address"), -1);
	isns_put_empty(&b, ISNS_TAG_DELIMITER);
	CHECK_EQ(b.len, (8 + 8) + (8 + 4) + (8 + 4) + (8 + 16) * 2 + 8);

	size_t off = 0;
	struct isns_attr a;
	char s[64], why[128];
	uint32_t v;
	CHECK_EQ(isns_attr_next(b.data, b.len, &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(a.tag, ISNS_TAG_ISCSI_NAME);
	CHECK_EQ(a.len, 8);
	CHECK_EQ(isns_attr_str(&a, s, sizeof(s)), 0);
	CHECK_STR(s, "iqn.x");
	CHECK_EQ(isns_attr_str(&a, s, 5), -1); /* does not fit with its NUL */
	CHECK_EQ(isns_attr_next(b.data, b.len, &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(isns_attr_str(&a, s, sizeof(s)), 0);
	CHECK_STR(s, "abc");
	CHECK_EQ(isns_attr_next(b.data, b.len, &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(isns_attr_u32(&a, &v), 0);
	CHECK_EQ(v, ISNS_NODE_TARGET);
	CHECK_EQ(isns_attr_next(b.data, b.len, &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(isns_attr_ip(&a, s, sizeof(s)), 0);
	CHECK_STR(s, "192.0.2.1");
	CHECK_EQ(isns_attr_next(b.data, b.len, &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(isns_attr_ip(&a, s, sizeof(s)), 0);
	CHECK_STR(s, "2001:db8::1");
	CHECK_EQ(isns_attr_u32(&a, &v), -1);
	CHECK_EQ(isns_attr_next(b.data, b.len, &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(a.tag, ISNS_TAG_DELIMITER);
	CHECK_EQ(a.len, 0);
	CHECK_EQ(isns_attr_next(b.data, b.len, &off, &a, why, sizeof(why)), 0);

	/* A length that overruns, one that is not aligned, a header cut short. */
	uint8_t bad[12] = {0, 0, 0, 32, 0, 0, 0, 8, 'a', 0, 0, 0};
	off = 0;
	CHECK_EQ(isns_attr_next(bad, sizeof(bad), &off, &a, why, sizeof(why)), -1);
	put_be32(bad + 4, 0xfffffff8u);
	off = 0;
	CHECK_EQ(isns_attr_next(bad, sizeof(bad), &off, &a, why, sizeof(why)), -1);
	put_be32(bad + 4, 3);
	off = 0;
	CHECK_EQ(isns_attr_next(bad, sizeof(bad), &off, &a, why, sizeof(why)), -1);
	off = 0;
	CHECK_EQ(isns_attr_next(bad, 6, &off, &a, why, sizeof(why)), -1);
	/* A control byte in a string is refused. */
	uint8_t ctl[12] = {0, 0, 0, 32, 0, 0, 0, 4, 'a', '\n', 0, 0};
	off = 0;
	CHECK_EQ(isns_attr_next(ctl, sizeof(ctl), &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(isns_attr_str(&a, s, sizeof(s)), -1);
	/* A string without its NUL is refused. */
	memcpy(ctl + 8, "abcd", 4);
	off = 0;
	CHECK_EQ(isns_attr_next(ctl, sizeof(ctl), &off, &a, why, sizeof(why)), 1);
	CHECK_EQ(isns_attr_str(&a, s, sizeof(s)), -1);
	sbuf_free(&b);
}

/* A message larger than one PDU goes out in several, cut at attribute boundaries, and comes back whole. */
static void test_split_and_reassemble(void)
{
	struct sbuf payload = {0}, wire = {0};
	char name[200];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	for (int i = 0; i < 400; i++) /* 400 * 208 bytes: two PDUs */
		isns_put_str(&payload, ISNS_TAG_ISCSI_NAME, name);
	CHECK_EQ(isns_message_encode(&wire, ISNS_DEV_ATTR_REG, ISNS_F_CLIENT, 42, payload.data, payload.len), 0);
	CHECK_EQ(wire.len, payload.len + 2 * ISNS_HDR_LEN);

	struct isns_reasm r = {.max = 1 << 20};
	size_t off = 0;
	int pdus = 0, done = 0;
	char why[128];
	struct isns_hdr h, msg;
	size_t plen;
	while (off < wire.len) {
		CHECK_EQ(isns_pdu_peek(wire.data + off, wire.len - off, &h, &plen, why, sizeof(why)), 1);
		CHECK_EQ(h.seq, pdus);
		CHECK_EQ(h.xid, 42);
		CHECK(!!(h.flags & ISNS_F_FIRST) == (pdus == 0));
		CHECK_EQ(h.len % 208, 0); /* whole attributes only */
		/* A PDU cut short is not complete yet. */
		CHECK_EQ(isns_pdu_peek(wire.data + off, plen - 1, &h, &plen, why, sizeof(why)), 0);
		CHECK_EQ(isns_pdu_peek(wire.data + off, wire.len - off, &h, &plen, why, sizeof(why)), 1);
		int rc = isns_reasm_add(&r, &h, wire.data + off + ISNS_HDR_LEN, &msg, why, sizeof(why));
		pdus++;
		off += plen;
		if (rc == 1)
			done++;
		else
			CHECK_EQ(rc, 0);
	}
	CHECK_EQ(pdus, 2);
	CHECK_EQ(done, 1);
	CHECK_EQ(msg.func, ISNS_DEV_ATTR_REG);
	CHECK_EQ(r.msg.len, payload.len);
	CHECK(memcmp(r.msg.data, payload.data, payload.len) == 0);

	/* The bound: the same message into a reassembly allowed less. */
	isns_reasm_free(&r);
	struct isns_reasm small = {.max = 4096};
	CHECK_EQ(isns_pdu_peek(wire.data, wire.len, &h, &plen, why, sizeof(why)), 1);
	CHECK_EQ(isns_reasm_add(&small, &h, wire.data + ISNS_HDR_LEN, &msg, why, sizeof(why)), -1);
	/* A continuation without a first PDU, and one out of sequence. */
	size_t second = plen;
	CHECK_EQ(isns_pdu_peek(wire.data + second, wire.len - second, &h, &plen, why, sizeof(why)), 1);
	CHECK_EQ(isns_reasm_add(&small, &h, wire.data + second + ISNS_HDR_LEN, &msg, why, sizeof(why)), -1);
	struct isns_hdr first = {.version = 1, .func = 1, .len = 0, .flags = ISNS_F_FIRST, .xid = 42, .seq = 0};
	CHECK_EQ(isns_reasm_add(&small, &first, NULL, &msg, why, sizeof(why)), 0);
	h.seq = 5;
	CHECK_EQ(isns_reasm_add(&small, &h, wire.data + second + ISNS_HDR_LEN, &msg, why, sizeof(why)), -1);
	isns_reasm_free(&small);

	/* An attribute larger than a PDU cannot be sent. */
	struct sbuf huge = {0}, w2 = {0};
	uint8_t tl[8];
	put_be32(tl, ISNS_TAG_ISCSI_NAME);
	put_be32(tl + 4, 70000);
	sbuf_append(&huge, tl, 8);
	sbuf_reserve(&huge, 70000);
	memset(huge.data + 8, 'a', 70000);
	huge.len += 70000;
	CHECK_EQ(isns_message_encode(&w2, ISNS_DEV_ATTR_REG, ISNS_F_CLIENT, 1, huge.data, huge.len), -1);
	sbuf_free(&huge);
	sbuf_free(&w2);
	sbuf_free(&payload);
	sbuf_free(&wire);
}

/* A query response as a server shapes it: two entities; one names its portal groups, one does not. */
static void test_parse_nodes(void)
{
	struct sbuf b = {0};
	uint8_t st[4] = {0};
	sbuf_append(&b, st, 4);
	isns_put_u32(&b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_TARGET); /* key */
	isns_put_empty(&b, ISNS_TAG_DELIMITER);
	isns_put_str(&b, ISNS_TAG_ENTITY_ID, "e1");
	isns_put_ip(&b, ISNS_TAG_PORTAL_IP, "192.0.2.1");
	isns_put_u32(&b, ISNS_TAG_PORTAL_PORT, 3260);
	isns_put_ip(&b, ISNS_TAG_PORTAL_IP, "192.0.2.2");
	isns_put_u32(&b, ISNS_TAG_PORTAL_PORT, 3261);
	isns_put_str(&b, ISNS_TAG_ISCSI_NAME, "iqn.2026-11.org.isthmus:a");
	isns_put_u32(&b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_TARGET);
	isns_put_str(&b, ISNS_TAG_ISCSI_ALIAS, "disk a");
	isns_put_str(&b, ISNS_TAG_ENTITY_ID, "e2");
	isns_put_ip(&b, ISNS_TAG_PORTAL_IP, "2001:db8::5");
	isns_put_u32(&b, ISNS_TAG_PORTAL_PORT, 3260);
	isns_put_str(&b, ISNS_TAG_ISCSI_NAME, "iqn.2026-11.org.isthmus:b");
	isns_put_u32(&b, ISNS_TAG_ISCSI_NODE_TYPE, ISNS_NODE_TARGET);
	/* Only the second portal of e1 serves node a, with tag 7; a NULL tag gives no access. */
	isns_put_str(&b, ISNS_TAG_PG_ISCSI_NAME, "iqn.2026-11.org.isthmus:a");
	isns_put_ip(&b, ISNS_TAG_PG_PORTAL_IP, "192.0.2.2");
	isns_put_u32(&b, ISNS_TAG_PG_PORTAL_PORT, 3261);
	isns_put_u32(&b, ISNS_TAG_PG_TAG, 7);
	isns_put_str(&b, ISNS_TAG_PG_ISCSI_NAME, "iqn.2026-11.org.isthmus:a");
	isns_put_ip(&b, ISNS_TAG_PG_PORTAL_IP, "192.0.2.1");
	isns_put_u32(&b, ISNS_TAG_PG_PORTAL_PORT, 3260);
	isns_put_empty(&b, ISNS_TAG_PG_TAG);

	uint32_t status = 99;
	CHECK_EQ(isns_response_status(b.data, b.len, &status), 0);
	CHECK_EQ(status, 0);
	size_t off;
	char why[128];
	CHECK_EQ(isns_response_operating(b.data, b.len, &off, why, sizeof(why)), 0);
	CHECK_EQ(off, 4 + 12 + 8);
	struct isns_node_list l;
	CHECK_EQ(isns_parse_nodes(b.data + off, b.len - off, 16, 8, &l, why, sizeof(why)), 0);
	CHECK_EQ(l.n, 2);
	if (l.n == 2) {
		CHECK_STR(l.nodes[0].name, "iqn.2026-11.org.isthmus:a");
		CHECK_STR(l.nodes[0].alias, "disk a");
		CHECK_EQ(l.nodes[0].type, ISNS_NODE_TARGET);
		CHECK_EQ(l.nodes[0].nportals, 1);
		if (l.nodes[0].nportals == 1) {
			CHECK_STR(l.nodes[0].portals[0].ip, "192.0.2.2");
			CHECK_EQ(l.nodes[0].portals[0].port, 3261);
			CHECK_EQ(l.nodes[0].portals[0].tag, 7);
		}
		CHECK_STR(l.nodes[1].name, "iqn.2026-11.org.isthmus:b");
		CHECK_EQ(l.nodes[1].nportals, 1);
		if (l.nodes[1].nportals == 1) {
			CHECK_STR(l.nodes[1].portals[0].ip, "2001:db8::5");
			CHECK_EQ(l.nodes[1].portals[0].tag, 0);
		}
	}
	isns_node_list_free(&l);
	/* The bounds: one node, and a malformed tail refuses the whole response. */
	CHECK_EQ(isns_parse_nodes(b.data + off, b.len - off, 1, 8, &l, why, sizeof(why)), 0);
	CHECK_EQ(l.n, 1);
	isns_node_list_free(&l);
	CHECK_EQ(isns_parse_nodes(b.data + off, b.len - off - 2, 16, 8, &l, why, sizeof(why)), -1);
	CHECK_EQ(l.n, 0);
	CHECK_EQ(isns_response_status(b.data, 3, &status), -1);
	CHECK_STR(isns_status_name(9), "No Such Entry");
	sbuf_free(&b);
}

static void test_server_spec(void)
{
	char a[64], why[128];
	uint16_t port = 0;
	CHECK_EQ(isns_parse_server("192.0.2.1", a, sizeof(a), &port, why, sizeof(why)), 0);
	CHECK_STR(a, "192.0.2.1");
	CHECK_EQ(port, 3205);
	CHECK_EQ(isns_parse_server("192.0.2.1:13205", a, sizeof(a), &port, why, sizeof(why)), 0);
	CHECK_EQ(port, 13205);
	CHECK_EQ(isns_parse_server("[2001:db8::1]:99", a, sizeof(a), &port, why, sizeof(why)), 0);
	CHECK_STR(a, "2001:db8::1");
	CHECK_EQ(port, 99);
	CHECK_EQ(isns_parse_server("[::1]", a, sizeof(a), &port, why, sizeof(why)), 0);
	CHECK_EQ(port, 3205);
	CHECK_EQ(isns_parse_server("isns.example", a, sizeof(a), &port, why, sizeof(why)), -1);
	CHECK_EQ(isns_parse_server("::1", a, sizeof(a), &port, why, sizeof(why)), -1);
	CHECK_EQ(isns_parse_server("192.0.2.1:", a, sizeof(a), &port, why, sizeof(why)), -1);
	CHECK_EQ(isns_parse_server("192.0.2.1:70000", a, sizeof(a), &port, why, sizeof(why)), -1);
	CHECK_EQ(isns_parse_server("192.0.2.1:+5", a, sizeof(a), &port, why, sizeof(why)), -1);
	CHECK_EQ(isns_parse_server("", a, sizeof(a), &port, why, sizeof(why)), -1);
}

/* RFC 4171 6.1 (function IDs) and 6.4.4 (SCN bitmap: bit 31 is the least significant). */
static void test_rfc_numbers(void)
{
	CHECK(ISNS_DEV_ATTR_REG == 0x0001 && ISNS_DEV_ATTR_QRY == 0x0002 && ISNS_DEV_DEREG == 0x0004);
	CHECK(ISNS_SCN_REG == 0x0005);
	CHECK(ISNS_SCN_DEREG == 0x0006);
	CHECK(ISNS_SCN_EVENT == 0x0007);
	CHECK(ISNS_SCN == 0x0008);
	CHECK(ISNS_ESI == 0x000d);
	CHECK(ISNS_SCN_DD_MEMBER_ADDED == 0x01 && ISNS_SCN_DD_MEMBER_REMOVED == 0x02);
	CHECK(ISNS_SCN_OBJECT_UPDATED == 0x04 && ISNS_SCN_OBJECT_ADDED == 0x08 && ISNS_SCN_OBJECT_REMOVED == 0x10);
	CHECK(ISNS_SCN_TARGET_AND_SELF == 0x40);
	CHECK(ISNS_SCN_INITIATOR_AND_SELF == 0x80);
}

int main(void)
{
	test_rfc_numbers();
	test_server_spec();
	test_header();
	test_attributes();
	test_split_and_reassemble();
	test_parse_nodes();
	TEST_MAIN_END();
}
