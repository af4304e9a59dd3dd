/* BHS encode/decode, AHS parsing and the negotiation table. */
#include <string.h>

#include "../test.h"
#include "proto/params.h"
#include "proto/pdu.h"

static void test_scsi_cmd_roundtrip(void)
{
	struct bhs b = {0}, d;
	b.opcode = OP_SCSI_CMD;
	b.final = true;
	b.immediate = true;
	b.cmd.read = true;
	b.cmd.attr = 1;
	b.lun[1] = 3;
	b.itt = 0x11223344;
	b.cmd.edtl = 4096;
	b.cmd.cmdsn = 7;
	b.cmd.expstatsn = 9;
	b.cmd.cdb[0] = 0x28;
	b.data_len = 0;
	uint8_t raw[BHS_LEN];
	bhs_encode(&b, raw);
	CHECK_EQ(raw[0], 0x41);
	CHECK_EQ(raw[1], 0xc1);
	CHECK_EQ(raw[9], 3);
	CHECK_EQ(raw[16], 0x11);
	CHECK_EQ(raw[23], 0x00);
	CHECK_EQ(raw[22], 0x10); /* 4096 = 0x1000 */
	CHECK_EQ(raw[32], 0x28);
	char why[96];
	CHECK_EQ(bhs_decode(raw, &d, why, sizeof(why)), 0);
	CHECK(d.cmd.read && !d.cmd.write);
	CHECK_EQ(d.cmd.edtl, 4096);
	CHECK_EQ(d.cmd.cmdsn, 7);
	CHECK_EQ(d.itt, 0x11223344);
}

static void test_decode_rejects(void)
{
	uint8_t raw[BHS_LEN] = {0};
	struct bhs b;
	char why[96];
	raw[0] = 0x1f; /* no such opcode */
	CHECK_EQ(bhs_decode(raw, &b, why, sizeof(why)), REJECT_CMD_NOT_SUPPORTED);
	CHECK(strcmp(why, "unknown opcode") == 0);
	/* A short buffer gets the start of the reason, terminated. */
	char shortwhy[8];
	CHECK_EQ(bhs_decode(raw, &b, shortwhy, sizeof(shortwhy)), REJECT_CMD_NOT_SUPPORTED);
	CHECK(strcmp(shortwhy, "unknown") == 0);
	memset(raw, 0, sizeof(raw));
	raw[0] = OP_NOP_OUT;
	raw[1] = 0x80;
	raw[4] = 1; /* AHS on a NOP-Out */
	CHECK_EQ(bhs_decode(raw, &b, why, sizeof(why)), REJECT_PROTOCOL_ERROR);
	CHECK_EQ(b.total_ahs_len, 4); /* framing still known */
	raw[4] = 0;
	raw[1] = 0x00; /* NOP-Out without F */
	CHECK_EQ(bhs_decode(raw, &b, why, sizeof(why)), REJECT_PROTOCOL_ERROR);
	memset(raw, 0, sizeof(raw));
	raw[0] = OP_LOGIN_REQ | 0x40;
	raw[1] = 0xc0; /* T and C together */
	CHECK_EQ(bhs_decode(raw, &b, why, sizeof(why)), REJECT_PROTOCOL_ERROR);
}

static void test_login_fields(void)
{
	uint8_t raw[BHS_LEN] = {0};
	raw[0] = 0x43;
	raw[1] = 0x87; /* T, CSG 1, NSG 3 */
	raw[3] = 0;
	raw[8] = 0x40;
	raw[13] = 0x2a;
	raw[14] = 0;
	raw[15] = 5; /* TSIH */
	raw[21] = 2;  /* CID */
	raw[27] = 9;  /* CmdSN */
	struct bhs b;
	char why[96];
	CHECK_EQ(bhs_decode(raw, &b, why, sizeof(why)), 0);
	CHECK(b.final && b.immediate);
	CHECK_EQ(b.login.csg, 1);
	CHECK_EQ(b.login.nsg, 3);
	CHECK_EQ(b.login.isid[0], 0x40);
	CHECK_EQ(b.login.isid[5], 0x2a);
	CHECK_EQ(b.login.tsih, 5);
	CHECK_EQ(b.login.cid, 2);
	CHECK_EQ(b.login.cmdsn, 9);
}

static void test_ahs(void)
{
	uint8_t ahs[32] = {0};
	ahs[0] = 0;
	ahs[1] = 17; /* 1 reserved + 16 CDB bytes */
	ahs[2] = 1;
	for (int i = 0; i < 16; i++)
		ahs[4 + i] = (uint8_t)(0xa0 + i);
	struct ahs_info ai;
	char why[96];
	CHECK_EQ(ahs_parse(ahs, 20, &ai, why, sizeof(why)), 0);
	CHECK_EQ(ai.ext_cdb_len, 16);
	CHECK_EQ(ai.ext_cdb[15], 0xaf);
	/* Extended CDB followed by a bidirectional read length. */
	ahs[20] = 0;
	ahs[21] = 5;
	ahs[22] = 2;
	ahs[27] = 0x40;
	CHECK_EQ(ahs_parse(ahs, 28, &ai, why, sizeof(why)), 0);
	CHECK(ai.has_bidi_read_len);
	CHECK_EQ(ai.bidi_read_len, 0x40);
	/* Length running past TotalAHSLength. */
	ahs[1] = 40;
	CHECK_EQ(ahs_parse(ahs, 28, &ai, why, sizeof(why)), REJECT_PROTOCOL_ERROR);
	/* Truncated header. */
	CHECK_EQ(ahs_parse(ahs, 3, &ai, why, sizeof(why)), REJECT_PROTOCOL_ERROR);
}

static const char *answer(const struct text_list *l, const char *k) { return text_get(l, k); }

static void test_negotiation_target(void)
{
	struct iscsi_params want;
	params_defaults(&want);
	want.max_burst_length = 1048576;
	want.first_burst_length = 262144;
	want.max_recv_dsl = 262144;
	want.initial_r2t = false;
	want.max_connections = 8;
	struct negotiator n;
	negotiator_init(&n, &want, true, true);
	struct text_list in = {0}, out = {0};
	text_add(&in, "HeaderDigest", "CRC32C,None");
	text_add(&in, "DataDigest", "None");
	text_add(&in, "MaxBurstLength", "65536");
	text_add(&in, "FirstBurstLength", "131072");
	text_add(&in, "InitialR2T", "No");
	text_add(&in, "ImmediateData", "No");
	text_add(&in, "MaxConnections", "4");
	text_add(&in, "MaxRecvDataSegmentLength", "8192");
	text_add(&in, "DefaultTime2Wait", "5");
	text_add(&in, "X-org.example.thing", "1");
	text_add(&in, "BogusKey", "1");
	text_add(&in, "OFMarker", "Yes");
	text_add(&in, "OFMarkInt", "2048");
	text_add(&in, "ErrorRecoveryLevel", "7");
	char why[128];
	CHECK_EQ(negotiate_respond(&n, &in, &out, false, why, sizeof(why)), NEGOTIATE_OK);
	negotiate_finish(&n, &out);
	CHECK_STR(answer(&out, "HeaderDigest"), "CRC32C");
	CHECK_STR(answer(&out, "DataDigest"), "None");
	CHECK_STR(answer(&out, "MaxBurstLength"), "65536");
	CHECK_STR(answer(&out, "FirstBurstLength"), "65536"); /* never above MaxBurstLength */
	CHECK_STR(answer(&out, "InitialR2T"), "No");
	CHECK_STR(answer(&out, "ImmediateData"), "No");
	CHECK_STR(answer(&out, "MaxConnections"), "4");
	CHECK_STR(answer(&out, "DefaultTime2Wait"), "5");
	CHECK_STR(answer(&out, "X-org.example.thing"), "NotUnderstood");
	CHECK_STR(answer(&out, "BogusKey"), "NotUnderstood");
	CHECK_STR(answer(&out, "OFMarker"), "No");
	CHECK_STR(answer(&out, "OFMarkInt"), "Reject");
	CHECK_STR(answer(&out, "ErrorRecoveryLevel"), "Reject");
	CHECK_STR(answer(&out, "MaxRecvDataSegmentLength"), "262144");
	CHECK(n.result.header_digest);
	CHECK(!n.result.data_digest);
	CHECK_EQ(n.result.peer_max_recv_dsl, 8192);
	CHECK_EQ(n.result.max_burst_length, 65536);
	CHECK_EQ(n.result.first_burst_length, 65536);
	CHECK_EQ(n.result.error_recovery_level, 0);
	text_clear(&out);
	/* The same key twice in one negotiation is a protocol error. */
	struct text_list again = {0};
	text_add(&again, "MaxBurstLength", "4096");
	CHECK_EQ(negotiate_respond(&n, &again, &out, false, why, sizeof(why)), NEGOTIATE_PROTOCOL_ERROR);
	text_clear(&again);
	text_clear(&in);
	text_clear(&out);
	/* A security key outside the security stage. */
	negotiator_init(&n, &want, true, true);
	text_add(&in, "AuthMethod", "None");
	CHECK_EQ(negotiate_respond(&n, &in, &out, false, why, sizeof(why)), NEGOTIATE_PROTOCOL_ERROR);
	text_clear(&in);
	text_clear(&out);
	/* Leading-only keys on a second connection are irrelevant. */
	negotiator_init(&n, &want, false, true);
	text_add(&in, "MaxBurstLength", "4096");
	CHECK_EQ(negotiate_respond(&n, &in, &out, false, why, sizeof(why)), NEGOTIATE_OK);
	CHECK_STR(answer(&out, "MaxBurstLength"), "Irrelevant");
	text_clear(&in);
	text_clear(&out);
}

/* respond to one key=value with a fresh leading-login negotiator; returns the answer (or NULL) */
static const char *respond_one(const struct iscsi_params *want, const char *key, const char *value,
			       struct negotiator *n, struct text_list *out)
{
	struct text_list in = {0};
	char why[128];
	negotiator_init(n, want, true, true);
	text_clear(out);
	text_add(&in, key, value);
	CHECK_EQ(negotiate_respond(n, &in, out, false, why, sizeof(why)), NEGOTIATE_OK);
	text_clear(&in);
	return text_get(out, key);
}

/*
 * Values from a hostile or broken initiator: out of range, malformed numbers, overlong values,
 * MaxBurstLength after FirstBurstLength. Whatever comes in, the result stays within the table's
 * ranges, so nothing later divides by zero or sizes a buffer from a wild number.
 */
static void test_negotiation_absurd(void)
{
	struct iscsi_params want;
	params_defaults(&want);
	want.max_burst_length = 1048576;
	want.first_burst_length = 262144;
	want.max_connections = 8;
	want.max_outstanding_r2t = 4;
	struct negotiator n;
	struct text_list out = {0};

	CHECK_STR(respond_one(&want, "MaxRecvDataSegmentLength", "511", &n, &out), "Reject");
	CHECK_EQ(n.result.peer_max_recv_dsl, 8192);
	CHECK_STR(respond_one(&want, "MaxRecvDataSegmentLength", "4294967295", &n, &out), "Reject");
	CHECK_EQ(n.result.peer_max_recv_dsl, 8192);
	CHECK_STR(respond_one(&want, "MaxRecvDataSegmentLength", "4294967296", &n, &out), "Reject");
	respond_one(&want, "MaxRecvDataSegmentLength", "512", &n, &out);
	CHECK_EQ(n.result.peer_max_recv_dsl, 512);
	respond_one(&want, "MaxRecvDataSegmentLength", "0xffffff", &n, &out);
	CHECK_EQ(n.result.peer_max_recv_dsl, 16777215);
	CHECK_STR(respond_one(&want, "MaxConnections", "0", &n, &out), "Reject");
	CHECK_EQ(n.result.max_connections, 1);
	CHECK_STR(respond_one(&want, "MaxConnections", "65535", &n, &out), "8");
	CHECK_STR(respond_one(&want, "MaxConnections", "65536", &n, &out), "Reject");
	CHECK_STR(respond_one(&want, "MaxOutstandingR2T", "0", &n, &out), "Reject");
	CHECK_EQ(n.result.max_outstanding_r2t, 1);
	CHECK_STR(respond_one(&want, "MaxBurstLength", "511", &n, &out), "Reject");
	CHECK_STR(respond_one(&want, "FirstBurstLength", "0", &n, &out), "Reject");
	CHECK_STR(respond_one(&want, "DefaultTime2Wait", "3601", &n, &out), "Reject");
	CHECK_EQ(n.result.default_time2wait, 2);
	CHECK_STR(respond_one(&want, "DefaultTime2Wait", "3600", &n, &out), "3600");

	/* Numbers are digits only: no sign, blanks, empty hex or trailing junk. */
	static const char *const bad_numbers[] = {" 5", "+5", "5 ", "-1", "0x", "0X", "", "5k", "0x1g", "0b1010",
						  "0x100000000", "18446744073709551617"};
	for (size_t i = 0; i < sizeof(bad_numbers) / sizeof(bad_numbers[0]); i++) {
		const char *a = respond_one(&want, "DefaultTime2Retain", bad_numbers[i], &n, &out);
		if (!a || strcmp(a, "Reject") != 0)
			fprintf(stderr, "  DefaultTime2Retain=\"%s\" answered %s\n", bad_numbers[i], a ? a : "nothing");
		CHECK_STR(a, "Reject");
		CHECK_EQ(n.result.default_time2retain, 20);
	}
	CHECK_STR(respond_one(&want, "DefaultTime2Retain", "0x0A", &n, &out), "10");

	/* A value of a negotiated key longer than RFC 7143's 255 bytes is refused, not truncated. */
	char list[400] = "";
	while (strlen(list) < 300)
		strcat(list, "None,");
	strcat(list, "CRC32C");
	CHECK_STR(respond_one(&want, "HeaderDigest", list, &n, &out), "Reject");
	CHECK(!n.result.header_digest);

	/* MaxBurstLength after a larger FirstBurstLength: both answers obey FirstBurstLength <= MaxBurstLength. */
	struct text_list in = {0};
	char why[128];
	negotiator_init(&n, &want, true, true);
	text_clear(&out);
	text_add(&in, "FirstBurstLength", "262144");
	text_add(&in, "MaxBurstLength", "512");
	CHECK_EQ(negotiate_respond(&n, &in, &out, false, why, sizeof(why)), NEGOTIATE_OK);
	CHECK_STR(text_get(&out, "MaxBurstLength"), "512");
	CHECK_STR(text_get(&out, "FirstBurstLength"), "512");
	CHECK_EQ(n.result.first_burst_length, 512);
	text_clear(&in);

	/* Our own configured values outside a key's range are clamped into it too. */
	struct iscsi_params odd = want;
	odd.max_outstanding_r2t = 0;
	odd.max_burst_length = 0xffffffffu;
	CHECK_STR(respond_one(&odd, "MaxOutstandingR2T", "16", &n, &out), "1");
	CHECK_EQ(n.result.max_outstanding_r2t, 1);
	CHECK_STR(respond_one(&odd, "MaxBurstLength", "16777215", &n, &out), "16777215");
	text_clear(&out);

	/* The initiator side: a target answering FirstBurstLength above MaxBurstLength is bounded. */
	struct iscsi_params iw;
	params_defaults(&iw);
	iw.max_burst_length = 1048576;
	iw.first_burst_length = 262144;
	negotiator_init(&n, &iw, true, false);
	struct text_list prop = {0}, ans = {0};
	negotiate_propose(&n, &prop, false);
	text_add(&ans, "FirstBurstLength", "65536");
	text_add(&ans, "MaxBurstLength", "4096");
	CHECK_EQ(negotiate_accept(&n, &ans, why, sizeof(why)), NEGOTIATE_OK);
	CHECK_EQ(n.result.max_burst_length, 4096);
	CHECK_EQ(n.result.first_burst_length, 4096);
	text_clear(&ans);
	text_add(&ans, "MaxRecvDataSegmentLength", "4294967295");
	CHECK_EQ(negotiate_accept(&n, &ans, why, sizeof(why)), NEGOTIATE_PROTOCOL_ERROR);
	text_clear(&ans);
	text_clear(&prop);
}

static void test_negotiation_initiator(void)
{
	struct iscsi_params want;
	params_defaults(&want);
	want.header_digest = true;
	want.max_burst_length = 1048576;
	struct negotiator n;
	negotiator_init(&n, &want, true, false);
	struct text_list prop = {0}, ans = {0};
	negotiate_propose(&n, &prop, false);
	CHECK_STR(text_get(&prop, "HeaderDigest"), "CRC32C,None");
	CHECK_STR(text_get(&prop, "MaxBurstLength"), "1048576");
	text_add(&ans, "HeaderDigest", "CRC32C");
	text_add(&ans, "MaxBurstLength", "262144");
	text_add(&ans, "MaxRecvDataSegmentLength", "65536");
	char why[128];
	CHECK_EQ(negotiate_accept(&n, &ans, why, sizeof(why)), NEGOTIATE_OK);
	CHECK(n.result.header_digest);
	CHECK_EQ(n.result.max_burst_length, 262144);
	CHECK_EQ(n.result.peer_max_recv_dsl, 65536);
	text_clear(&ans);
	/* A MIN answer above what we offered breaks the rule. */
	text_add(&ans, "MaxBurstLength", "2097152");
	CHECK_EQ(negotiate_accept(&n, &ans, why, sizeof(why)), NEGOTIATE_PROTOCOL_ERROR);
	text_clear(&ans);
	text_clear(&prop);
}

int main(void)
{
	test_scsi_cmd_roundtrip();
	test_decode_rejects();
	test_login_fields();
	test_ahs();
	test_negotiation_target();
	test_negotiation_absurd();
	test_negotiation_initiator();
	TEST_MAIN_END();
}
