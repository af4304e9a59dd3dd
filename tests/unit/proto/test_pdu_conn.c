/*
 * The PDU engine over a real socket pair: PDUs split at every byte boundary, AHS, header and
 * data digests good and bad, skipped and held headers, data placed straight into a caller's
 * buffer, the send queue, and the joining of text split by the C bit with its bounds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../test.h"
#include "proto/digest.h"
#include "proto/pdu_conn.h"
#include "proto/text_join.h"
#include "util/bytes.h"

/* What the test role saw. */
struct seen {
	int pdus, hdr_digest_errors, data_digest_errors, sent;
	uint8_t opcodes[64];
	uint32_t lens[64];
	uint8_t data[64][64];       /* first bytes of each data segment */
	uint8_t ahs_len[64];
	const uint8_t *data_ptr[64];
	enum pdu_header_verdict verdict_for_nop_out; /* what the header callback answers NOP-Outs */
	int waits_left;             /* PDU_HEADER_WAIT this many times first */
	uint8_t *place_buf;         /* for Data-In placement (NULL: none) */
	int placed;
};

static struct seen seen;

static enum pdu_header_verdict t_header(struct pdu_conn *pc, const uint8_t *raw, int rc, const char *why)
{
	(void)raw;
	(void)why;
	if (seen.waits_left > 0) {
		seen.waits_left--;
		return PDU_HEADER_WAIT;
	}
	if (rc != 0)
		return PDU_HEADER_STOP;
	if (pc->rx_bhs.opcode == OP_NOP_OUT)
		return seen.verdict_for_nop_out;
	return PDU_HEADER_HANDLE;
}

static uint8_t *t_place(struct pdu_conn *pc, void **owner)
{
	(void)pc;
	if (!seen.place_buf)
		return NULL;
	seen.placed++;
	*owner = seen.place_buf;
	return seen.place_buf;
}

static bool t_pdu(struct pdu_conn *pc, const uint8_t *raw, const uint8_t *data)
{
	(void)raw;
	int i = seen.pdus++;
	if (i >= 64)
		return true;
	seen.opcodes[i] = pc->rx_bhs.opcode;
	seen.lens[i] = pc->rx_bhs.data_len;
	seen.ahs_len[i] = pc->rx_bhs.total_ahs_len;
	seen.data_ptr[i] = data;
	if (data)
		memcpy(seen.data[i], data, pc->rx_bhs.data_len < 64 ? pc->rx_bhs.data_len : 64);
	return true;
}

static bool t_digest_error(struct pdu_conn *pc, bool header, const uint8_t *raw)
{
	(void)pc;
	(void)raw;
	if (header)
		seen.hdr_digest_errors++;
	else
		seen.data_digest_errors++;
	return false;
}

static void t_sent(struct pdu_conn *pc, struct pdu_txitem *it)
{
	(void)pc;
	(void)it;
	seen.sent++;
}

static const struct pdu_conn_ops t_ops = {
	.header = t_header, .place = t_place, .pdu = t_pdu, .digest_error = t_digest_error, .sent = t_sent};

/* Lay out one PDU on the wire: header, AHS, header digest, data, padding, data digest. */
static size_t wire_pdu(uint8_t *out, struct bhs *b, const uint8_t *ahs, uint8_t ahs_len, const uint8_t *data,
		       uint32_t len, bool hd, bool dd)
{
	b->data_len = len;
	b->total_ahs_len = ahs_len;
	bhs_encode(b, out);
	size_t n = BHS_LEN;
	if (ahs_len)
		memcpy(out + n, ahs, ahs_len);
	n += ahs_len;
	if (hd) {
		digest_store(out + n, crc32c(out, n));
		n += 4;
	}
	if (len) {
		memcpy(out + n, data, len);
		memset(out + n + len, 0, pad4(len) - len);
		uint32_t padded = pad4(len);
		if (dd)
			digest_store(out + n + padded, crc32c(out + n, padded));
		n += padded + (dd ? 4 : 0);
	}
	return n;
}

struct rig {
	int sv[2];
	struct iscsi_params params;
	struct pdu_txpool pool;
	struct pdu_conn pc;
};

static void rig_open(struct rig *r, bool hd, bool dd)
{
	memset(&seen, 0, sizeof(seen));
	memset(r, 0, sizeof(*r));
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, r->sv), 0);
	fcntl(r->sv[1], F_SETFL, O_NONBLOCK);
	params_defaults(&r->params);
	r->params.header_digest = hd;
	r->params.data_digest = dd;
	r->pool.item_size = sizeof(struct pdu_txitem);
	r->pool.keep = 4;
	pdu_conn_init(&r->pc, &t_ops, r, &r->params, &r->pool, 4096);
}

static void rig_close(struct rig *r)
{
	pdu_conn_drop_tx(&r->pc);
	pdu_txpool_free(&r->pool);
	pdu_conn_rx_free(&r->pc);
	close(r->sv[0]);
	close(r->sv[1]);
}

/* Send bytes to the engine's end and let it read and parse all of them; false once it stops. */
static bool rig_feed(struct rig *r, const uint8_t *p, size_t n)
{
	if (n)
		CHECK_EQ(write(r->sv[0], p, n), (ssize_t)n);
	for (int i = 0; i < 10000; i++) {
		size_t asked;
		ssize_t got = pdu_conn_read(&r->pc, r->sv[1], &asked);
		if (got == PDU_READ_DRAINED)
			return true;
		if (got <= 0)
			return false;
		if (!pdu_conn_parse(&r->pc))
			return false;
	}
	return true;
}

static uint8_t stream[200000];

/* Three PDUs (one with an AHS, one with padding): build the stream, return its length. */
static size_t three_pdus(bool hd, bool dd)
{
	size_t n = 0;
	struct bhs b = {0};
	b.opcode = OP_NOP_IN;
	b.final = true;
	b.itt = 1;
	b.nop_in.ttt = RESERVED_TAG;
	n += wire_pdu(stream + n, &b, NULL, 0, (const uint8_t *)"hello", 5, hd, dd);
	struct bhs c = {0};
	c.opcode = OP_SCSI_CMD;
	c.final = true;
	c.cmd.read = true;
	c.itt = 2;
	c.cmd.edtl = 512;
	uint8_t ahs[8] = {0, 5, 2, 0, 0, 0, 2, 0}; /* bidirectional expected read length 512 */
	n += wire_pdu(stream + n, &c, ahs, sizeof(ahs), NULL, 0, hd, dd);
	struct bhs d = {0};
	d.opcode = OP_NOP_IN;
	d.final = true;
	d.itt = 3;
	d.nop_in.ttt = RESERVED_TAG;
	uint8_t data[100];
	for (int i = 0; i < 100; i++)
		data[i] = (uint8_t)i;
	n += wire_pdu(stream + n, &d, NULL, 0, data, sizeof(data), hd, dd);
	return n;
}

static void check_three(void)
{
	CHECK_EQ(seen.pdus, 3);
	CHECK_EQ(seen.opcodes[0], OP_NOP_IN);
	CHECK_EQ(seen.lens[0], 5);
	CHECK(memcmp(seen.data[0], "hello", 5) == 0);
	CHECK_EQ(seen.opcodes[1], OP_SCSI_CMD);
	CHECK_EQ(seen.ahs_len[1], 8);
	CHECK_EQ(seen.lens[1], 0);
	CHECK_EQ(seen.lens[2], 100);
	CHECK_EQ(seen.data[2][63], 63);
}

static void test_split_everywhere(void)
{
	printf("PDUs with AHS, padding and digests arrive whole however the stream is split\n");
	for (int mode = 0; mode < 4; mode++) {
		bool hd = mode & 1, dd = mode & 2;
		size_t n = three_pdus(hd, dd);
		for (size_t cut = 0; cut <= n; cut++) {
			struct rig r;
			rig_open(&r, hd, dd);
			CHECK(rig_feed(&r, stream, cut));
			CHECK(rig_feed(&r, stream + cut, n - cut));
			check_three();
			CHECK_EQ(pdu_conn_rx_pending(&r.pc), 0);
			rig_close(&r);
		}
		struct rig r;
		rig_open(&r, hd, dd);
		for (size_t i = 0; i < n; i++)
			CHECK(rig_feed(&r, stream + i, 1));
		check_three();
		rig_close(&r);
	}
}

static void test_digests_bad(void)
{
	printf("a bad header digest (covering the AHS too) and a bad data digest are reported\n");
	size_t n = three_pdus(true, true);
	/* the SCSI command's AHS starts after the first PDU: 48 + 4 + 8 + 4 */
	size_t first = BHS_LEN + 4 + 8 + 4;
	struct rig r;
	rig_open(&r, true, true);
	stream[first + BHS_LEN + 2] ^= 1; /* in the AHS */
	CHECK(!rig_feed(&r, stream, n));
	CHECK_EQ(seen.pdus, 1);
	CHECK_EQ(seen.hdr_digest_errors, 1);
	rig_close(&r);

	n = three_pdus(true, true);
	rig_open(&r, true, true);
	stream[BHS_LEN + 4 + 1] ^= 0x40; /* in the first PDU's data */
	CHECK(!rig_feed(&r, stream, n));
	CHECK_EQ(seen.pdus, 0);
	CHECK_EQ(seen.data_digest_errors, 1);
	rig_close(&r);
}

static void test_skip_and_wait(void)
{
	printf("a skipped PDU is passed over whole; a held header is parsed again later\n");
	uint8_t data[300];
	memset(data, 0xab, sizeof(data));
	struct bhs b = {0};
	b.opcode = OP_NOP_OUT;
	b.final = true;
	b.itt = 9;
	b.nop_out.ttt = RESERVED_TAG;
	static uint8_t two[4096];
	size_t n = wire_pdu(two, &b, NULL, 0, data, sizeof(data), false, false);
	size_t rest = three_pdus(false, false);
	memcpy(two + n, stream, rest);
	struct rig r;
	rig_open(&r, false, false);
	seen.verdict_for_nop_out = PDU_HEADER_SKIP;
	seen.waits_left = 1;
	CHECK(rig_feed(&r, two, 10));
	CHECK(rig_feed(&r, two + 10, n + rest - 10));
	CHECK_EQ(seen.waits_left, 0);
	/* the wait left the header in place: parse again now */
	CHECK(pdu_conn_parse(&r.pc));
	check_three();
	rig_close(&r);
}

static void test_direct_placement(void)
{
	printf("a large Data-In goes straight into the placed buffer, digest checked across both\n");
	static uint8_t data[40000], dst[40000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	for (int mode = 0; mode < 2; mode++) {
		struct bhs b = {0};
		b.opcode = OP_DATA_IN;
		b.itt = 5;
		b.data_in.ttt = RESERVED_TAG;
		size_t n = wire_pdu(stream, &b, NULL, 0, data, 39999, true, true);
		struct bhs e = {0};
		e.opcode = OP_NOP_IN;
		e.final = true;
		e.itt = 6;
		e.nop_in.ttt = RESERVED_TAG;
		n += wire_pdu(stream + n, &e, NULL, 0, NULL, 0, true, true);
		struct rig r;
		rig_open(&r, true, true);
		r.pc.direct_min = 16384;
		memset(dst, 0, sizeof(dst));
		seen.place_buf = dst;
		CHECK(rig_feed(&r, stream, 1000));
		if (mode == 1)
			pdu_conn_forget_direct(&r.pc, dst); /* the buffer's owner went away */
		CHECK(rig_feed(&r, stream + 1000, n - 1000));
		CHECK_EQ(seen.placed, 1);
		CHECK_EQ(seen.pdus, 2);
		CHECK_EQ(seen.data_digest_errors, 0);
		CHECK(seen.data_ptr[0] == dst);
		if (mode == 0)
			CHECK(memcmp(dst, data, 39999) == 0);
		else
			CHECK(memcmp(dst + 2000, data + 2000, 30000) != 0); /* the rest was dropped */
		CHECK_EQ(seen.opcodes[1], OP_NOP_IN);
		rig_close(&r);
	}
}

static void test_send_queue(void)
{
	printf("queued PDUs go out in one gathered write, framed with digests, items reused\n");
	struct rig r;
	rig_open(&r, true, true);
	struct bhs b = {0};
	b.opcode = OP_NOP_IN;
	b.final = true;
	b.itt = 1;
	b.nop_in.ttt = RESERVED_TAG;
	pdu_conn_queue(&r.pc, &b, "abcde", 5, NULL);
	uint8_t *owned = malloc(3);
	memcpy(owned, "xyz", 3);
	b.itt = 2;
	pdu_conn_queue(&r.pc, &b, owned, 3, owned);
	CHECK_EQ(r.pc.tx_bytes, (BHS_LEN + 4 + 8 + 4) + (BHS_LEN + 4 + 4 + 4));
	CHECK_EQ(pdu_conn_flush(&r.pc, r.sv[1], 64), (BHS_LEN + 4 + 8 + 4) + (BHS_LEN + 4 + 4 + 4));
	CHECK_EQ(seen.sent, 2);
	CHECK_EQ(r.pc.tx_bytes, 0);
	CHECK_EQ(r.pool.n, 2);
	uint8_t got[256];
	CHECK_EQ(read(r.sv[0], got, sizeof(got)), (BHS_LEN + 4 + 8 + 4) + (BHS_LEN + 4 + 4 + 4));
	struct bhs d;
	char why[96];
	CHECK_EQ(bhs_decode(got, &d, why, sizeof(why)), 0);
	CHECK_EQ(d.data_len, 5);
	CHECK_EQ(digest_load(got + BHS_LEN), crc32c(got, BHS_LEN));
	CHECK(memcmp(got + BHS_LEN + 4, "abcde", 5) == 0);
	CHECK_EQ(digest_load(got + BHS_LEN + 4 + 8), crc32c(got + BHS_LEN + 4, 8));
	CHECK(memcmp(got + 2 * BHS_LEN + 4 + 8 + 4 + 4, "xyz", 3) == 0);
	rig_close(&r);
}

static void test_text_join(void)
{
	printf("text split by the C bit is joined, within its length and part bounds\n");
	struct sbuf t = {0};
	uint32_t parts = 0;
	CHECK_EQ(text_join_add(&t, &parts, "a=1", 4, true, 10, 3), TEXT_JOIN_MORE);
	CHECK_EQ(text_join_add(&t, &parts, "b=2", 4, false, 10, 3), TEXT_JOIN_COMPLETE);
	CHECK_EQ(t.len, 8);
	CHECK(memcmp(t.data, "a=1\0b=2", 8) == 0);
	CHECK_EQ(text_join_add(&t, &parts, "c=3", 4, true, 10, 3), TEXT_JOIN_TOO_LONG);
	CHECK_EQ(t.len, 8);
	CHECK_EQ(text_join_add(&t, &parts, "c", 1, true, 10, 3), TEXT_JOIN_MORE);
	CHECK_EQ(text_join_add(&t, &parts, "", 0, false, 10, 3), TEXT_JOIN_TOO_MANY);
	CHECK_EQ(text_join_add(&t, NULL, "", 0, false, 10, 0), TEXT_JOIN_COMPLETE);
	CHECK_EQ(text_join_add(&t, NULL, "x", 1, false, 10, 0), TEXT_JOIN_COMPLETE);
	CHECK_EQ(text_join_add(&t, NULL, "y", 1, false, 10, 0), TEXT_JOIN_TOO_LONG);
	sbuf_free(&t);
}

/* A pdu_conn that was never initialized (all zero, as a connection slot of a session is) owns no
 * descriptors: dropping its send queue must not close descriptor 0, which the process may hold
 * for something else. */
static void test_zeroed_drop_closes_nothing(void)
{
	int fd = open("/dev/null", O_RDONLY);
	CHECK(fd >= 0);
	int saved0 = dup(0);
	CHECK(dup2(fd, 0) == 0); /* descriptor 0 is ours, as a daemon's client socket may be */
	struct pdu_conn pc;
	memset(&pc, 0, sizeof(pc));
	pdu_conn_drop_tx(&pc);
	CHECK(fcntl(0, F_GETFD) >= 0);
	if (saved0 >= 0) {
		dup2(saved0, 0);
		close(saved0);
	}
	close(fd);
}

int main(void)
{
	test_split_everywhere();
	test_digests_bad();
	test_skip_and_wait();
	test_direct_placement();
	test_send_queue();
	test_text_join();
	test_zeroed_drop_closes_nothing();
	TEST_MAIN_END();
}
