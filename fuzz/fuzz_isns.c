/*
 * libFuzzer: a byte stream from an iSNS server, read as the target's and the initiator's clients
 * read it: PDUs peeked and reassembled into messages within a bound, each message's status,
 * attributes and (as a query response) its nodes and portals. Whatever attributes decode must
 * encode back to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/isns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_message(const uint8_t *p, size_t len)
{
	uint32_t status;
	char why[128];
	if (isns_response_status(p, len, &status) < 0)
		return;
	(void)isns_status_name(status);
	size_t op;
	if (isns_response_operating(p, len, &op, why, sizeof(why)) < 0)
		return;
	struct isns_node_list l;
	if (isns_parse_nodes(p + op, len - op, 64, 16, &l, why, sizeof(why)) == 0) {
		for (size_t i = 0; i < l.n; i++)
			if (l.nodes[i].nportals > 16 || !memchr(l.nodes[i].name, 0, sizeof(l.nodes[i].name)))
				__builtin_trap();
		isns_node_list_free(&l);
	}
	/* Round trip: every attribute re-encoded from its value gives the bytes it came from. */
	size_t off = 4;
	struct isns_attr a;
	while (isns_attr_next(p, len, &off, &a, why, sizeof(why)) == 1) {
		struct sbuf b = {0};
		uint32_t v;
		char s[ISNS_ALIAS_MAX];
		size_t same = 0;
		if (isns_attr_u32(&a, &v) == 0) {
			isns_put_u32(&b, a.tag, v);
			same = 4;
		} else if (isns_attr_str(&a, s, sizeof(s)) == 0) {
			isns_put_str(&b, a.tag, s);
			same = strlen(s) + 1; /* the padding after the NUL is the peer's */
		}
		if (same && (b.len < 8 + same || memcmp(b.data + 8, a.val, same) != 0))
			__builtin_trap();
		sbuf_free(&b);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct isns_reasm r = {.max = 1u << 16};
	size_t off = 0;
	char why[128];
	while (off < size) {
		struct isns_hdr h, msg;
		size_t plen;
		int rc = isns_pdu_peek(data + off, size - off, &h, &plen, why, sizeof(why));
		if (rc <= 0)
			break;
		rc = isns_reasm_add(&r, &h, data + off + ISNS_HDR_LEN, &msg, why, sizeof(why));
		off += plen;
		if (rc == 1)
			read_message(r.msg.data, r.msg.len);
	}
	isns_reasm_free(&r);
	return 0;
}
