/*
 * The target's write data flow (RFC 7143 4.2.4, 11.7-11.8) seen from a fake initiator: R2Ts
 * with InitialR2T Yes and No, immediate and unsolicited data within FirstBurstLength, solicited
 * bursts of MaxBurstLength, MaxOutstandingR2T, DataSN and buffer offsets, and the answer to
 * Data-Out that breaks the rules (CHECK CONDITION, ABORTED COMMAND, the connection survives),
 * and large Data-Out arriving in pieces, whose data goes straight into the command's buffer; the
 * same for large immediate data, within every data rule and bound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "engine_harness.h"

#define C EH_CMDSN1
#define S EH_STATSN1
#define DEPTH 128u
#define GOOD 0x00

/* One key set per data flow; the target's own limits are larger than all of these. */
static const char op_r2t_only[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
				  "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=4096\0FirstBurstLength=2048\0"
				  "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";
static const char op_two_r2t[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
				 "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=4096\0FirstBurstLength=2048\0"
				 "MaxOutstandingR2T=2\0ErrorRecoveryLevel=0\0MaxConnections=1";
static const char op_unsolicited[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
				     "InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=8192\0FirstBurstLength=4096\0"
				     "MaxOutstandingR2T=4\0ErrorRecoveryLevel=0\0MaxConnections=1";
static const char op_immediate_r2t[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
				       "InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=8192\0FirstBurstLength=4096\0"
				       "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";

static const char op_large[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=65536\0"
			       "InitialR2T=Yes\0ImmediateData=No\0MaxBurstLength=65536\0FirstBurstLength=65536\0"
			       "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";

static uint8_t pattern[131072];

static void fill_pattern(uint32_t seed)
{
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7u + seed);
}

static void expect_nothing(struct eh *h)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), -1);
	CHECK(!eh_closed(h));
}

/* The next PDU is an R2T for itt: R2TSN, offset, length and the window exact; returns its TTT. */
static uint32_t expect_r2t(struct eh *h, uint32_t itt, uint32_t r2tsn, uint32_t off, uint32_t len, uint32_t statsn,
			   uint32_t expcmdsn)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_R2T);
	CHECK(p.b.final);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.r2t.r2tsn, r2tsn);
	CHECK_EQ(p.b.r2t.offset, off);
	CHECK_EQ(p.b.r2t.desired_len, len);
	CHECK_EQ(p.b.r2t.statsn, statsn);
	CHECK_EQ(p.b.r2t.expcmdsn, expcmdsn);
	CHECK_EQ(p.b.r2t.maxcmdsn, expcmdsn + DEPTH - 2); /* the write holds one slot */
	CHECK_EQ(p.len, 0);
	uint32_t ttt = p.b.r2t.ttt;
	CHECK(ttt != RESERVED_TAG);
	eh_pdu_free(&p);
	return ttt;
}

/* The next PDU is a Reject for the given reason. */
static void expect_reject(struct eh *h, uint8_t reason)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, reason);
	eh_pdu_free(&p);
}

/* The SCSI Response closing a write: GOOD, no residual, ExpDataSN = R2Ts sent. */
static void expect_write_done(struct eh *h, uint32_t itt, uint32_t statsn, uint32_t expcmdsn, uint32_t r2ts)
{
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_RESP);
	CHECK_EQ(p.b.itt, itt);
	CHECK_EQ(p.b.rsp.response, 0);
	CHECK_EQ(p.b.rsp.status, GOOD);
	CHECK_EQ(p.b.rsp.flags, 0);
	CHECK_EQ(p.b.rsp.residual, 0);
	CHECK_EQ(p.b.rsp.statsn, statsn);
	CHECK_EQ(p.b.rsp.expcmdsn, expcmdsn);
	CHECK_EQ(p.b.rsp.maxcmdsn, expcmdsn + DEPTH - 1);
	CHECK_EQ(p.b.rsp.expdatasn, r2ts);
	CHECK_EQ(p.len, 0);
	eh_pdu_free(&p);
}

/* Data-Out answering one R2T with PDUs of at most pdu bytes, DataSN from 0. */
static void answer_r2t(struct eh *h, uint32_t itt, uint32_t ttt, uint32_t off, uint32_t len, uint32_t pdu)
{
	for (uint32_t done = 0, sn = 0; done < len; sn++) {
		uint32_t n = len - done < pdu ? len - done : pdu;
		eh_data_out(h, itt, ttt, sn, off + done, done + n == len, pattern + off + done, n);
		done += n;
	}
}

/* READ(10) of what was written; Data-In split at MaxBurstLength, compared with the pattern. */
static void read_back(struct eh *h, uint32_t itt, uint32_t cmdsn, uint32_t lba, uint32_t len, uint32_t burst,
		      uint32_t statsn)
{
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, false, lba, (uint16_t)(len / 512));
	eh_scsi_cmd(h, itt, cmdsn, false, true, true, false, len, cdb, NULL, 0);
	uint32_t off = 0;
	for (uint32_t sn = 0; off < len; sn++) {
		struct eh_pdu p;
		if (eh_recv(h, &p) < 0) {
			CHECK(!"Data-In missing");
			return;
		}
		CHECK_EQ(p.b.opcode, OP_DATA_IN);
		CHECK_EQ(p.b.itt, itt);
		CHECK_EQ(p.b.data_in.datasn, sn);
		CHECK_EQ(p.b.data_in.offset, off);
		CHECK_EQ(p.len, burst < len - off ? burst : len - off);
		CHECK(p.b.final); /* every PDU ends a burst here */
		CHECK(p.data && memcmp(p.data, pattern + off, p.len) == 0);
		bool last = off + p.len == len;
		CHECK_EQ(p.b.data_in.status_present, last);
		if (last)
			CHECK_EQ(p.b.data_in.statsn, statsn);
		off += p.len;
		eh_pdu_free(&p);
	}
}

static void test_r2t_bursts(void)
{
	printf("write: InitialR2T=Yes, one R2T at a time, MaxBurstLength 4096 splits 12 KiB into three R2Ts\n");
	fill_pattern(1);
	struct eh *h = eh_start(NULL, EH_KEYS(op_r2t_only));
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, true, 8, 24);
	eh_scsi_cmd(h, 0x10, C, false, true, false, true, 12288, cdb, NULL, 0);
	uint32_t ttt = expect_r2t(h, 0x10, 0, 0, 4096, S, C + 1);
	expect_nothing(h); /* MaxOutstandingR2T=1 */
	answer_r2t(h, 0x10, ttt, 0, 4096, 2048);
	uint32_t t2 = expect_r2t(h, 0x10, 1, 4096, 4096, S, C + 1);
	CHECK_EQ(t2, ttt);
	answer_r2t(h, 0x10, ttt, 4096, 4096, 4096);
	CHECK_EQ(expect_r2t(h, 0x10, 2, 8192, 4096, S, C + 1), ttt);
	answer_r2t(h, 0x10, ttt, 8192, 4096, 1024);
	expect_write_done(h, 0x10, S, C + 1, 3);
	read_back(h, 0x11, C + 1, 8, 12288, 4096, S + 1);
	eh_free(h);

	printf("write: MaxOutstandingR2T=2 keeps two R2Ts out, the next one follows each completed burst\n");
	fill_pattern(2);
	h = eh_start(NULL, EH_KEYS(op_two_r2t));
	eh_cdb_rw10(cdb, true, 0, 32);
	eh_scsi_cmd(h, 0x20, C, false, true, false, true, 16384, cdb, NULL, 0);
	ttt = expect_r2t(h, 0x20, 0, 0, 4096, S, C + 1);
	CHECK_EQ(expect_r2t(h, 0x20, 1, 4096, 4096, S, C + 1), ttt);
	expect_nothing(h);
	answer_r2t(h, 0x20, ttt, 0, 4096, 4096);
	CHECK_EQ(expect_r2t(h, 0x20, 2, 8192, 4096, S, C + 1), ttt);
	answer_r2t(h, 0x20, ttt, 4096, 4096, 4096);
	CHECK_EQ(expect_r2t(h, 0x20, 3, 12288, 4096, S, C + 1), ttt);
	answer_r2t(h, 0x20, ttt, 8192, 4096, 4096);
	expect_nothing(h);
	answer_r2t(h, 0x20, ttt, 12288, 4096, 4096);
	expect_write_done(h, 0x20, S, C + 1, 4);
	read_back(h, 0x21, C + 1, 0, 16384, 4096, S + 1);
	eh_free(h);
}

static void test_unsolicited(void)
{
	printf("write: InitialR2T=No: immediate plus unsolicited data fill FirstBurstLength, R2Ts solicit the rest\n");
	fill_pattern(3);
	struct eh *h = eh_start(NULL, EH_KEYS(op_unsolicited));
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, true, 0, 32);
	eh_scsi_cmd(h, 0x30, C, false, false, false, true, 16384, cdb, pattern, 1024);
	expect_nothing(h);
	eh_data_out(h, 0x30, RESERVED_TAG, 0, 1024, false, pattern + 1024, 1024);
	expect_nothing(h);
	eh_data_out(h, 0x30, RESERVED_TAG, 1, 2048, true, pattern + 2048, 2048);
	/* The rest in bursts of MaxBurstLength (8192): offsets 4096 and 12288. */
	uint32_t ttt = expect_r2t(h, 0x30, 0, 4096, 8192, S, C + 1);
	CHECK_EQ(expect_r2t(h, 0x30, 1, 12288, 4096, S, C + 1), ttt);
	answer_r2t(h, 0x30, ttt, 4096, 8192, 8192);
	expect_nothing(h);
	answer_r2t(h, 0x30, ttt, 12288, 4096, 4096);
	expect_write_done(h, 0x30, S, C + 1, 2);
	read_back(h, 0x31, C + 1, 0, 16384, 8192, S + 1);

	printf("write: the F bit ends the unsolicited burst early; the R2T starts where the data stopped\n");
	fill_pattern(4);
	eh_cdb_rw10(cdb, true, 100, 16);
	eh_scsi_cmd(h, 0x32, C + 2, false, false, false, true, 8192, cdb, NULL, 0);
	expect_nothing(h);
	eh_data_out(h, 0x32, RESERVED_TAG, 0, 0, true, pattern, 1024);
	ttt = expect_r2t(h, 0x32, 0, 1024, 7168, S + 2, C + 3);
	answer_r2t(h, 0x32, ttt, 1024, 7168, 8192);
	expect_write_done(h, 0x32, S + 2, C + 3, 1);
	read_back(h, 0x33, C + 3, 100, 8192, 8192, S + 3);

	printf("write: all the data as immediate data: answered at once, no R2T\n");
	fill_pattern(5);
	eh_cdb_rw10(cdb, true, 200, 2);
	eh_scsi_cmd(h, 0x34, C + 4, false, true, false, true, 1024, cdb, pattern, 1024);
	expect_write_done(h, 0x34, S + 4, C + 5, 0);
	read_back(h, 0x35, C + 5, 200, 1024, 8192, S + 5);
	eh_free(h);

	printf("write: InitialR2T=Yes with ImmediateData=Yes: immediate data, then R2Ts for the rest\n");
	fill_pattern(6);
	h = eh_start(NULL, EH_KEYS(op_immediate_r2t));
	eh_cdb_rw10(cdb, true, 0, 16);
	eh_scsi_cmd(h, 0x40, C, false, true, false, true, 8192, cdb, pattern, 2048);
	ttt = expect_r2t(h, 0x40, 0, 2048, 6144, S, C + 1);
	answer_r2t(h, 0x40, ttt, 2048, 6144, 4096);
	expect_write_done(h, 0x40, S, C + 1, 1);
	read_back(h, 0x41, C + 1, 0, 8192, 8192, S + 1);
	eh_free(h);
}

/* After a refused Data-Out: the task is gone, its later data ignored, the connection alive. */
static void check_survives(struct eh *h, uint32_t itt, uint32_t ttt, uint32_t cmdsn, uint32_t statsn)
{
	eh_data_out(h, itt, ttt, 5, 0, true, pattern, 512);
	expect_nothing(h);
	eh_tur(h, 0x99, cmdsn, false);
	eh_expect_status(h, 0x99, GOOD, statsn, cmdsn + 1, cmdsn + DEPTH);
}

static void test_data_out_errors(void)
{
	uint8_t cdb[16];
	uint32_t ttt;
	struct eh *h;
	fill_pattern(7);

	printf("write: Data-Out at the wrong buffer offset -> ABORTED COMMAND, DATA OFFSET ERROR (4Bh/05h)\n");
	h = eh_start(NULL, EH_KEYS(op_r2t_only));
	eh_cdb_rw10(cdb, true, 0, 8);
	eh_scsi_cmd(h, 0x50, C, false, true, false, true, 4096, cdb, NULL, 0);
	ttt = expect_r2t(h, 0x50, 0, 0, 4096, S, C + 1);
	eh_data_out(h, 0x50, ttt, 0, 512, false, pattern, 512);
	eh_expect_sense(h, 0x50, 0x0b, 0x4b, 0x05, S);
	check_survives(h, 0x50, ttt, C + 1, S + 1);
	eh_free(h);

	printf("write: Data-Out beyond the expected data transfer length -> 4Bh/02h (too much write data)\n");
	h = eh_start(NULL, EH_KEYS(op_r2t_only));
	eh_cdb_rw10(cdb, true, 0, 1);
	eh_scsi_cmd(h, 0x51, C, false, true, false, true, 512, cdb, NULL, 0);
	ttt = expect_r2t(h, 0x51, 0, 0, 512, S, C + 1);
	eh_data_out(h, 0x51, ttt, 0, 0, true, pattern, 1024);
	eh_expect_sense(h, 0x51, 0x0b, 0x4b, 0x02, S);
	check_survives(h, 0x51, ttt, C + 1, S + 1);
	eh_free(h);

	printf("write: Data-Out with DataSN out of order -> 4Bh/00h (data phase error)\n");
	h = eh_start(NULL, EH_KEYS(op_r2t_only));
	eh_cdb_rw10(cdb, true, 0, 8);
	eh_scsi_cmd(h, 0x52, C, false, true, false, true, 4096, cdb, NULL, 0);
	ttt = expect_r2t(h, 0x52, 0, 0, 4096, S, C + 1);
	eh_data_out(h, 0x52, ttt, 0, 0, false, pattern, 1024);
	eh_data_out(h, 0x52, ttt, 2, 1024, false, pattern + 1024, 1024);
	eh_expect_sense(h, 0x52, 0x0b, 0x4b, 0x00, S);
	check_survives(h, 0x52, ttt, C + 1, S + 1);
	eh_free(h);

	printf("write: unsolicited data beyond FirstBurstLength -> 4Bh/02h\n");
	h = eh_start(NULL, EH_KEYS(op_unsolicited));
	eh_cdb_rw10(cdb, true, 0, 16);
	eh_scsi_cmd(h, 0x53, C, false, false, false, true, 8192, cdb, NULL, 0);
	eh_data_out(h, 0x53, RESERVED_TAG, 0, 0, true, pattern, 4096);
	expect_r2t(h, 0x53, 0, 4096, 4096, S, C + 1);
	/* More unsolicited data (TTT 0xffffffff) instead of the solicited burst. */
	eh_data_out(h, 0x53, RESERVED_TAG, 1, 4096, true, pattern + 4096, 1024);
	eh_expect_sense(h, 0x53, 0x0b, 0x4b, 0x02, S);
	check_survives(h, 0x53, RESERVED_TAG, C + 1, S + 1);
	eh_free(h);

	printf("write: Data-Out for an ITT the target does not know is discarded without an answer\n");
	h = eh_start(NULL, EH_KEYS(op_r2t_only));
	eh_data_out(h, 0x5555, 0x1234, 0, 0, true, pattern, 512);
	expect_nothing(h);
	eh_tur(h, 0x54, C, false);
	eh_expect_status(h, 0x54, GOOD, S, C + 1, C + DEPTH);
	eh_free(h);
}

static void test_immediate_data_refused(void)
{
	printf("write: immediate data when ImmediateData=No is rejected (Reject, protocol error 0x04)\n");
	fill_pattern(8);
	struct eh *h = eh_start(NULL, EH_KEYS(op_r2t_only));
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, true, 0, 2);
	eh_scsi_cmd(h, 0x60, C, false, true, false, true, 1024, cdb, pattern, 512);
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK(p.b.final);
	CHECK_EQ(p.b.itt, RESERVED_TAG);
	CHECK_EQ(p.b.reject.reason, REJECT_PROTOCOL_ERROR);
	CHECK_EQ(p.b.reject.statsn, S);
	CHECK_EQ(p.len, BHS_LEN);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_free(h);

	printf("write: immediate data over FirstBurstLength is rejected likewise\n");
	h = eh_start(NULL, EH_KEYS(op_immediate_r2t));
	eh_cdb_rw10(cdb, true, 0, 16);
	eh_scsi_cmd(h, 0x61, C, false, true, false, true, 8192, cdb, pattern, 8192);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_REJECT);
	CHECK_EQ(p.b.reject.reason, REJECT_PROTOCOL_ERROR);
	CHECK_EQ(p.b.reject.statsn, S);
	eh_pdu_free(&p);
	expect_nothing(h);
	eh_free(h);
}

/* One Data-Out of len bytes at offset 0 sent as its header, then the data in the given pieces. */
static void data_out_in_pieces(struct eh *h, uint32_t itt, uint32_t ttt, uint32_t datasn, uint32_t len,
			       const uint32_t *pieces, size_t npieces)
{
	struct bhs b = {0};
	uint8_t hdr[BHS_LEN];
	b.opcode = OP_DATA_OUT;
	b.final = true;
	b.itt = itt;
	b.data_len = len;
	b.data_out.ttt = ttt;
	b.data_out.datasn = datasn;
	bhs_encode(&b, hdr);
	eh_send_raw(h, hdr, sizeof(hdr));
	uint32_t off = 0;
	for (size_t i = 0; i < npieces && off < len; i++) {
		uint32_t n = pieces[i] < len - off ? pieces[i] : len - off;
		eh_send_raw(h, pattern + off, n); /* the target reads what came before the rest arrives */
		off += n;
	}
	if (off < len)
		eh_send_raw(h, pattern + off, len - off);
}

static void test_large_data_out_in_pieces(void)
{
	static const uint32_t pieces[] = { 100, 20000, 3 };
	uint8_t cdb[16];
	printf("write: a 32 KiB Data-Out arriving as its header and three pieces is written whole\n");
	fill_pattern(5);
	struct eh *h = eh_start(NULL, EH_KEYS(op_large));
	eh_cdb_rw10(cdb, true, 16, 64);
	eh_scsi_cmd(h, 0x50, C, false, true, false, true, 32768, cdb, NULL, 0);
	uint32_t ttt = expect_r2t(h, 0x50, 0, 0, 32768, S, C + 1);
	data_out_in_pieces(h, 0x50, ttt, 0, 32768, pieces, 3);
	expect_write_done(h, 0x50, S, C + 1, 1);
	read_back(h, 0x51, C + 1, 16, 32768, 32768, S + 1);

	printf("write: the same with a wrong DataSN ends the command with ABORTED COMMAND, the medium untouched\n");
	fill_pattern(6);
	eh_cdb_rw10(cdb, true, 16, 64);
	eh_scsi_cmd(h, 0x52, C + 2, false, true, false, true, 32768, cdb, NULL, 0);
	ttt = expect_r2t(h, 0x52, 0, 0, 32768, S + 2, C + 3);
	data_out_in_pieces(h, 0x52, ttt, 7, 32768, pieces, 3);
	eh_expect_sense(h, 0x52, 0x0b, 0x4b, 0x00, S + 2);
	fill_pattern(5); /* what the first write left there */
	read_back(h, 0x53, C + 3, 16, 32768, 32768, S + 3);
	eh_free(h);
}

/* Immediate data up to 64 KiB, unsolicited data up to the same first burst, 64 KiB bursts. */
static const char op_imm[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=262144\0"
			     "InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=65536\0"
			     "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";
static const char op_imm_unsol[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=262144\0"
				   "InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=65536\0"
				   "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";
static const char op_imm_erl1[] = "HeaderDigest=None\0DataDigest=CRC32C\0MaxRecvDataSegmentLength=262144\0"
				  "InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=65536\0"
				  "MaxOutstandingR2T=1\0ErrorRecoveryLevel=1\0MaxConnections=1";
#define IMM_TARGET "MaxRecvDataSegmentLength=262144\0FirstBurstLength=262144\0"
static const struct eh_opts imm_target = {.target_params = IMM_TARGET "\0"};
/* The header and 100 bytes of data first: the target has the header, some data, not all of it. */
#define IMM_SPLIT (BHS_LEN + 100u)

/* A WRITE(10) at lba of len bytes of the pattern, all of it immediate data. */
static void write_immediate(struct eh *h, uint32_t itt, uint32_t cmdsn, uint32_t lba, uint32_t len)
{
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, true, lba, (uint16_t)(len / 512));
	eh_scsi_cmd(h, itt, cmdsn, false, true, false, true, len, cdb, pattern, len);
}

static void test_immediate_placed(void)
{
	static const uint32_t sizes[] = { 4096, 16384, 32768, 65536 };
	struct eh *h = eh_start(&imm_target, EH_KEYS(op_imm));
	eh_set_split(h, IMM_SPLIT);
	uint32_t n = 0;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++, n += 2) {
		uint32_t len = sizes[i];
		printf("write: %u bytes of immediate data arriving in two pieces are %s and written whole\n", len,
		       len >= 16384 ? "read straight into the command's buffer" : "copied from the receive buffer");
		fill_pattern(20 + (uint32_t)i);
		write_immediate(h, 0x80 + n, C + n, 0, len);
		CHECK_EQ(eh_split_placed(h), len >= 16384);
		expect_write_done(h, 0x80 + n, S + n, C + n + 1, 0);
		CHECK_EQ(eh_target_buffered(h), 0);
		read_back(h, 0x81 + n, C + n + 1, 0, len, 65536, S + n + 1);
	}
	eh_free(h);
}

static void test_immediate_unsolicited_solicited(void)
{
	printf("write: 128 KiB as 32 KiB immediate, 32 KiB unsolicited Data-Out, one 64 KiB R2T, all placed\n");
	fill_pattern(30);
	struct eh *h = eh_start(&imm_target, EH_KEYS(op_imm_unsol));
	eh_set_split(h, IMM_SPLIT);
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, true, 128, 256);
	eh_scsi_cmd(h, 0x90, C, false, false, false, true, 131072, cdb, pattern, 32768);
	CHECK(eh_split_placed(h));
	expect_nothing(h);
	eh_data_out(h, 0x90, RESERVED_TAG, 0, 32768, true, pattern + 32768, 32768);
	CHECK(eh_split_placed(h));
	uint32_t ttt = expect_r2t(h, 0x90, 0, 65536, 65536, S, C + 1);
	eh_data_out(h, 0x90, ttt, 0, 65536, true, pattern + 65536, 65536);
	CHECK(eh_split_placed(h));
	expect_write_done(h, 0x90, S, C + 1, 1);
	CHECK_EQ(eh_target_buffered(h), 0);
	eh_set_split(h, 0);
	read_back(h, 0x91, C + 1, 128, 131072, 65536, S + 1);
	eh_free(h);
}

static void test_immediate_over_bound(void)
{
	printf("write: immediate data of a command over max-data-per-connection is not placed; TASK SET FULL as before\n");
	fill_pattern(40);
	struct eh_opts o = {.target_params = IMM_TARGET "\0", .max_data_connection = 65536};
	struct eh *h = eh_start(&o, EH_KEYS(op_imm));
	eh_set_split(h, IMM_SPLIT);
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, true, 0, 256);
	eh_scsi_cmd(h, 0xa0, C, false, false, false, true, 131072, cdb, pattern, 32768);
	CHECK(!eh_split_placed(h));
	eh_expect_status(h, 0xa0, 0x28, S, C + 1, C + DEPTH);
	CHECK_EQ(eh_target_buffered(h), 0);
	printf("write: one that fits the bound exactly is placed and written\n");
	write_immediate(h, 0xa1, C + 1, 0, 65536);
	CHECK(eh_split_placed(h));
	expect_write_done(h, 0xa1, S + 1, C + 2, 0);
	CHECK_EQ(eh_target_buffered(h), 0);
	read_back(h, 0xa2, C + 2, 0, 65536, 65536, S + 2);
	printf("write: immediate data without the write bit is rejected as before, nothing held\n");
	eh_cdb_rw10(cdb, false, 0, 64);
	eh_scsi_cmd(h, 0xa3, C + 3, false, true, true, false, 32768, cdb, pattern, 32768);
	CHECK(!eh_split_placed(h));
	expect_reject(h, REJECT_PROTOCOL_ERROR);
	CHECK_EQ(eh_target_buffered(h), 0);
	eh_free(h);
}

static void test_immediate_held_for_cmdsn(void)
{
	printf("write: a command with placed immediate data ahead of its CmdSN waits, then runs after the gap\n");
	fill_pattern(50);
	struct eh *h = eh_start(&imm_target, EH_KEYS(op_imm));
	eh_set_split(h, IMM_SPLIT);
	write_immediate(h, 0xb1, C + 1, 64, 65536);
	CHECK(eh_split_placed(h));
	expect_nothing(h);
	CHECK_EQ(eh_target_buffered(h), 65536); /* the held task keeps its buffer */
	eh_tur(h, 0xb0, C, false);
	eh_expect_status(h, 0xb0, GOOD, S, C + 1, C + DEPTH - 1);
	expect_write_done(h, 0xb1, S + 1, C + 2, 0);
	CHECK_EQ(eh_target_buffered(h), 0);
	eh_set_split(h, 0);
	read_back(h, 0xb2, C + 2, 64, 65536, 65536, S + 2);
	eh_free(h);
}

static const char op_imm_erl0_dd[] = "HeaderDigest=None\0DataDigest=CRC32C\0MaxRecvDataSegmentLength=262144\0"
				     "InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=65536\0FirstBurstLength=65536\0"
				     "MaxOutstandingR2T=1\0ErrorRecoveryLevel=0\0MaxConnections=1";

/*
 * A WRITE(10) of 32 KiB at lba, all of it immediate data read straight into the command's buffer,
 * sent with a bad data digest: answered with Reject (data digest error). *b is the command, for
 * sending it again.
 */
static void immediate_with_bad_digest(struct eh *h, uint32_t itt, uint32_t lba, struct bhs *b)
{
	uint8_t cdb[16];
	eh_cdb_rw10(cdb, true, lba, 64);
	memset(b, 0, sizeof(*b));
	b->opcode = OP_SCSI_CMD;
	b->final = true;
	b->itt = itt;
	b->cmd.write = true;
	b->cmd.attr = 1;
	b->cmd.edtl = 32768;
	b->cmd.cmdsn = C;
	b->cmd.expstatsn = S;
	memcpy(b->cmd.cdb, cdb, 16);
	eh_send_bad_digest(h, b, pattern, 32768, false, true);
	CHECK(eh_split_placed(h));
	expect_reject(h, REJECT_DATA_DIGEST);
}

static void test_immediate_digest_error_erl0(void)
{
	printf("write: ERL 0, a data digest error on placed immediate data -> Reject 0x02, then the close\n");
	fill_pattern(70);
	struct eh_opts o = {.target_params = IMM_TARGET "DataDigest=CRC32C,None\0\0"};
	struct eh *h = eh_new(&o);
	CHECK_EQ(eh_login(h, EH_KEYS(op_imm_erl0_dd), NULL), 1);
	eh_set_digests(h, false, true);
	eh_clear_unit_attention(h, 0xfff0, EH_CMDSN0);
	eh_set_split(h, IMM_SPLIT);
	struct bhs b;
	immediate_with_bad_digest(h, 0xd0, 0, &b);
	CHECK(eh_closed(h));
	eh_free(h);
}

static void test_immediate_digest_error_erl1(void)
{
	printf("write: ERL 1, a data digest error on placed immediate data -> Reject 0x02, the buffer given back;"
	       " the command sent again with its CmdSN is written\n");
	fill_pattern(60);
	struct eh_opts o = {.max_erl = 1, .target_params = IMM_TARGET "DataDigest=CRC32C,None\0ErrorRecoveryLevel=1\0\0"};
	struct eh *h = eh_new(&o);
	struct text_list k = {0};
	CHECK_EQ(eh_login(h, EH_KEYS(op_imm_erl1), &k), 1);
	CHECK_STR(text_get(&k, "DataDigest"), "CRC32C");
	CHECK_STR(text_get(&k, "ErrorRecoveryLevel"), "1");
	text_clear(&k);
	eh_set_digests(h, false, true);
	eh_clear_unit_attention(h, 0xfff0, EH_CMDSN0);
	eh_set_split(h, IMM_SPLIT);
	struct bhs b;
	immediate_with_bad_digest(h, 0xc0, 32, &b);
	CHECK(!eh_closed(h));
	CHECK_EQ(eh_target_buffered(h), 0);
	eh_send(h, &b, pattern, 32768);
	CHECK(eh_split_placed(h));
	struct eh_pdu p;
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_SCSI_RESP);
	CHECK_EQ(p.b.itt, 0xc0);
	CHECK_EQ(p.b.rsp.status, GOOD);
	CHECK_EQ(p.b.rsp.expcmdsn, C + 1);
	eh_pdu_free(&p);
	CHECK_EQ(eh_target_buffered(h), 0);
	eh_set_split(h, 0);
	uint8_t rcdb[16];
	eh_cdb_rw10(rcdb, false, 32, 64);
	eh_scsi_cmd(h, 0xc1, C + 1, false, true, true, false, 32768, rcdb, NULL, 0);
	CHECK_EQ(eh_recv(h, &p), 0);
	CHECK_EQ(p.b.opcode, OP_DATA_IN);
	CHECK_EQ(p.len, 32768);
	CHECK(p.data && memcmp(p.data, pattern, 32768) == 0);
	eh_pdu_free(&p);
	eh_free(h);
}

int main(void)
{
	test_r2t_bursts();
	test_unsolicited();
	test_data_out_errors();
	test_immediate_data_refused();
	test_large_data_out_in_pieces();
	test_immediate_placed();
	test_immediate_unsolicited_solicited();
	test_immediate_over_bound();
	test_immediate_held_for_cmdsn();
	test_immediate_digest_error_erl0();
	test_immediate_digest_error_erl1();
	TEST_MAIN_END();
}
