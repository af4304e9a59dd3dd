/* libisthmus pure helpers: URLs, portals, ISID derivation, sense text, CDBs, SendTargets parsing,
 * the sequence numbers taken from received PDUs. */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "initiator/internal.h"

static void test_urls(void)
{
	char err[256];
	struct ism_url *u = ism_url_parse("iscsi://127.0.0.1/iqn.2026-01.org.example:disk/3", err, sizeof(err));
	CHECK(u != NULL);
	if (u) {
		CHECK_STR(u->host, "127.0.0.1");
		CHECK_EQ(u->port, 3260);
		CHECK_STR(u->portal, "127.0.0.1:3260");
		CHECK_STR(u->target, "iqn.2026-01.org.example:disk");
		CHECK_EQ(u->lun, 3);
		CHECK(u->has_lun);
		CHECK(u->user == NULL);
		ism_url_free(u);
	}
	u = ism_url_parse("iscsi://alice%s3cr%t@[::1]:3261/iqn.2026-01.org.example:d/0"
			  "?target_user=tgt&target_password=p%40ss",
			  err, sizeof(err));
	CHECK(u != NULL);
	if (u) {
		CHECK_STR(u->user, "alice");
		CHECK_STR(u->secret, "s3cr%t");
		CHECK_STR(u->host, "::1");
		CHECK_EQ(u->port, 3261);
		CHECK_STR(u->portal, "[::1]:3261");
		CHECK_STR(u->target_user, "tgt");
		CHECK_STR(u->target_secret, "p@ss");
		CHECK_EQ(u->lun, 0);
		ism_url_free(u);
	}
	u = ism_url_parse("iscsi://bob@storage.example:860/iqn.2026-01.org.example:d", err, sizeof(err));
	CHECK(u != NULL);
	if (u) {
		CHECK_STR(u->user, "bob");
		CHECK(u->secret == NULL);
		CHECK_STR(u->host, "storage.example");
		CHECK_EQ(u->port, 860);
		CHECK(!u->has_lun);
		ism_url_free(u);
	}
	u = ism_url_parse("iscsi://10.0.0.1:3260", err, sizeof(err));
	CHECK(u != NULL && u->target == NULL);
	ism_url_free(u);

	static const char *const bad[] = {
		"http://host/iqn.x/0",
		"iscsi://",
		"iscsi://host:99999/iqn.2026-01.org.example:d/0",
		"iscsi://host:/iqn.2026-01.org.example:d/0",
		"iscsi://[::1/iqn.2026-01.org.example:d/0",
		"iscsi://host/iqn.2026-01.org.example:d/x1",
		"iscsi://host/iqn.2026-01.org.example:d/0?bogus=1",
		"iscsi://host/iqn.2026-01.org.example:d/0?target_user=a",
		"iscsi://%pw@host/iqn.2026-01.org.example:d/0",
		"iscsi://user%@host/iqn.2026-01.org.example:d/0",
		"iscsi://host//0",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		u = ism_url_parse(bad[i], err, sizeof(err));
		CHECK(u == NULL);
		CHECK(strstr(err, "bad iSCSI URL") != NULL);
		ism_url_free(u);
	}
}

static void test_portals(void)
{
	char host[64];
	uint16_t port = 0;
	CHECK_EQ(ism_parse_portal("192.0.2.1", host, sizeof(host), &port), 0);
	CHECK_STR(host, "192.0.2.1");
	CHECK_EQ(port, 3260);
	CHECK_EQ(ism_parse_portal("[fe80::1]:3262", host, sizeof(host), &port), 0);
	CHECK_STR(host, "fe80::1");
	CHECK_EQ(port, 3262);
	CHECK_EQ(ism_parse_portal("[::1]", host, sizeof(host), &port), 0);
	CHECK_EQ(port, 3260);
	CHECK_EQ(ism_parse_portal("::1", host, sizeof(host), &port), 0);
	CHECK_STR(host, "::1");
	CHECK_EQ(ism_parse_portal("host.example:3263,7", host, sizeof(host), &port), 0);
	CHECK_STR(host, "host.example");
	CHECK_EQ(port, 3263);
	CHECK_EQ(ism_parse_portal("[::1]:3264,1", host, sizeof(host), &port), 0);
	CHECK_EQ(port, 3264);
	CHECK_EQ(ism_parse_portal("", host, sizeof(host), &port), -1);
	CHECK_EQ(ism_parse_portal("host:0", host, sizeof(host), &port), -1);
	CHECK_EQ(ism_parse_portal("host:abc", host, sizeof(host), &port), -1);
	CHECK_EQ(ism_parse_portal("[]:3260", host, sizeof(host), &port), -1);
	CHECK_EQ(ism_parse_portal("[::1]x", host, sizeof(host), &port), -1);
	char tiny[4];
	CHECK_EQ(ism_parse_portal("longhostname", tiny, sizeof(tiny), &port), -1);
}

static void test_isid(void)
{
	uint8_t a[6], b[6], c[6], d[6];
	ism_isid_derive("iqn.2026-01.org.example:ini", "iqn.2026-01.org.example:tgt", "1", a);
	ism_isid_derive("iqn.2026-01.org.example:ini", "iqn.2026-01.org.example:tgt", "1", b);
	ism_isid_derive("iqn.2026-01.org.example:ini", "iqn.2026-01.org.example:tgt", "2", c);
	ism_isid_derive("iqn.2026-01.org.example:ini", "iqn.2026-01.org.example:tgt2", "1", d);
	CHECK(memcmp(a, b, 6) == 0);
	CHECK(memcmp(a, c, 6) != 0);
	CHECK(memcmp(a, d, 6) != 0);
	CHECK_EQ(a[0], 0x40); /* type 01b, random */
	CHECK_EQ(c[0], 0x40);
	/* Field boundaries count: ("ab","c") and ("a","bc") differ. */
	ism_isid_derive("ab", "c", "", c);
	ism_isid_derive("a", "bc", "", d);
	CHECK(memcmp(c, d, 6) != 0);
	/* A session keeps the derived ISID for every login of the same triple. */
	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = "iqn.2026-01.org.example:ini";
	cfg.target_name = "iqn.2026-01.org.example:tgt";
	char err[128];
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	CHECK(s != NULL);
	ism_session_free(s);
	cfg.isid_set = true;
	memcpy(cfg.isid, "\x80\x01\x02\x03\x04\x05", 6);
	s = ism_session_new(&cfg, err, sizeof(err));
	CHECK(s && memcmp(s->isid, cfg.isid, 6) == 0);
	ism_session_free(s);
}

static void test_sense(void)
{
	char buf[200];
	uint8_t fixed[18] = {0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00};
	CHECK_STR(ism_sense_text(fixed, sizeof(fixed), buf, sizeof(buf)), "ILLEGAL REQUEST / LBA OUT OF RANGE (0x21/0x00)");
	uint8_t desc[8] = {0x72, 0x06, 0x29, 0x00};
	CHECK_STR(ism_sense_text(desc, sizeof(desc), buf, sizeof(buf)),
		  "UNIT ATTENTION / POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (0x29/0x00)");
	uint8_t odd[18] = {0x70, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x99, 0x42};
	CHECK_STR(ism_sense_text(odd, sizeof(odd), buf, sizeof(buf)), "MEDIUM ERROR / ASC 0x99 ASCQ 0x42");
	CHECK(strstr(ism_sense_text(fixed, 2, buf, sizeof(buf)), "no valid sense") != NULL);
	CHECK(strstr(ism_sense_text(NULL, 0, buf, sizeof(buf)), "no valid sense") != NULL);
	uint8_t junk[4] = {0x12, 0x34, 0x56, 0x78};
	CHECK(strstr(ism_sense_text(junk, sizeof(junk), buf, sizeof(buf)), "no valid sense") != NULL);
	CHECK_STR(ism_sense_key_str(7), "DATA PROTECT");
	CHECK_STR(ism_sense_key_str(0xff), "COMPLETED");
	CHECK_STR(ism_status_str(0x18), "RESERVATION CONFLICT");
	CHECK_STR(ism_asc_str(0x24, 0x00), "INVALID FIELD IN CDB");
	CHECK(ism_asc_str(0xee, 0xee) == NULL);

	struct ism_scsi_result r = {0};
	r.status = 2;
	memcpy(r.sense, fixed, sizeof(fixed));
	r.sense_len = sizeof(fixed);
	CHECK_STR(ism_result_text(&r, buf, sizeof(buf)),
		  "SCSI status CHECK CONDITION, sense ILLEGAL REQUEST / LBA OUT OF RANGE (0x21/0x00)");
	r.status = 8;
	r.sense_len = 0;
	CHECK_STR(ism_result_text(&r, buf, sizeof(buf)), "SCSI status BUSY (0x08)");
	CHECK_STR(ism_device_type_str(0), "DIRECT_ACCESS");
}

static void test_cdbs(void)
{
	uint8_t c[16];
	CHECK_EQ(ism_cdb_rw10(c, true, 0x01020304, 8), 10);
	CHECK(c[0] == 0x2a && c[2] == 1 && c[5] == 4 && c[8] == 8);
	CHECK_EQ(ism_cdb_rw16(c, false, 0x0102030405060708ull, 0x10), 16);
	CHECK(c[0] == 0x88 && c[2] == 1 && c[9] == 8 && c[13] == 0x10);
	CHECK_EQ(ism_cdb_read_capacity16(c, 32), 16);
	CHECK(c[0] == 0x9e && c[1] == 0x10 && c[13] == 32);
	CHECK_EQ(ism_cdb_inquiry(c, 0x83, 255), 6);
	CHECK(c[1] == 1 && c[2] == 0x83 && c[4] == 255);
	CHECK_EQ(ism_cdb_inquiry(c, -1, 96), 6);
	CHECK(c[1] == 0 && c[4] == 96);
	CHECK_EQ(ism_cdb_report_luns(c, 4096), 12);
	CHECK(c[0] == 0xa0 && c[8] == 0x10);
	CHECK_EQ(ism_cdb_unmap(c, 24), 10);
	CHECK(c[0] == 0x42 && c[8] == 24);
}

static void test_sendtargets(void)
{
	static const char st[] = "TargetName=iqn.2026-01.org.example:a\0TargetAddress=192.0.2.1:3260,1\0"
				 "TargetAddress=[2001:db8::1]:3260,1\0TargetName=iqn.2026-01.org.example:b\0"
				 "TargetAlias=bee\0TargetAddress=192.0.2.2:3261,2\0";
	struct ism_discovery *d = ism_parse_sendtargets((const uint8_t *)st, sizeof(st) - 1);
	CHECK(d != NULL);
	if (d) {
		CHECK_EQ(d->n, 2);
		CHECK_STR(d->targets[0].name, "iqn.2026-01.org.example:a");
		CHECK_EQ(d->targets[0].naddr, 2);
		CHECK_STR(d->targets[0].addresses[1], "[2001:db8::1]:3260,1");
		CHECK_EQ(d->targets[1].naddr, 1);
		CHECK_STR(d->targets[1].addresses[0], "192.0.2.2:3261,2");
		ism_discovery_free(d);
	}
	static const char orphan[] = "TargetAddress=192.0.2.1:3260,1\0";
	CHECK(ism_parse_sendtargets((const uint8_t *)orphan, sizeof(orphan) - 1) == NULL);
	static const char noeq[] = "TargetName\0";
	CHECK(ism_parse_sendtargets((const uint8_t *)noeq, sizeof(noeq) - 1) == NULL);
	d = ism_parse_sendtargets((const uint8_t *)"", 0);
	CHECK(d && d->n == 0);
	ism_discovery_free(d);
}

static void test_config(void)
{
	struct ism_config cfg;
	char err[256];
	ism_config_init(&cfg);
	cfg.initiator_name = "not a name";
	cfg.target_name = "iqn.2026-01.org.example:t";
	CHECK(ism_session_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "bad initiator name") != NULL);
	cfg.initiator_name = "iqn.2026-01.org.example:i";
	cfg.target_name = NULL;
	CHECK(ism_session_new(&cfg, err, sizeof(err)) == NULL);
	cfg.target_name = "iqn.2026-01.org.example:t";
	cfg.mutual_user = "m";
	cfg.mutual_secret = "msecretmsecret";
	CHECK(ism_session_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "mutual CHAP needs") != NULL);
	cfg.mutual_user = cfg.mutual_secret = NULL;
	cfg.chap_algorithms = "7,9";
	CHECK(ism_session_new(&cfg, err, sizeof(err)) == NULL);
	cfg.chap_algorithms = "7,5";
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	CHECK(s != NULL);
	CHECK(ism_scsi_async(s, 0, (const uint8_t *)"\0\0\0\0\0\0", 6, ISM_DIR_NONE, NULL, 0, NULL, NULL) == NULL);
	CHECK(strstr(ism_session_error(s), "not logged in") != NULL);
	ism_session_free(s);
}

/* A received PDU of the given opcode with StatSN, ExpCmdSN and MaxCmdSN in its own fields. */
static struct bhs serials_pdu(uint8_t opcode, uint32_t statsn, uint32_t expcmdsn, uint32_t maxcmdsn)
{
	struct bhs b = {0};
	b.opcode = opcode;
	b.itt = 0x10;
	switch (opcode) {
	case OP_SCSI_RESP: b.rsp.statsn = statsn, b.rsp.expcmdsn = expcmdsn, b.rsp.maxcmdsn = maxcmdsn; break;
	case OP_DATA_IN: b.data_in.statsn = statsn, b.data_in.expcmdsn = expcmdsn, b.data_in.maxcmdsn = maxcmdsn; break;
	case OP_R2T: b.r2t.statsn = statsn, b.r2t.expcmdsn = expcmdsn, b.r2t.maxcmdsn = maxcmdsn; break;
	case OP_NOP_IN: b.nop_in.statsn = statsn, b.nop_in.expcmdsn = expcmdsn, b.nop_in.maxcmdsn = maxcmdsn; break;
	case OP_ASYNC_MSG: b.async.statsn = statsn, b.async.expcmdsn = expcmdsn, b.async.maxcmdsn = maxcmdsn; break;
	case OP_REJECT: b.reject.statsn = statsn, b.reject.expcmdsn = expcmdsn, b.reject.maxcmdsn = maxcmdsn; break;
	default: break;
	}
	return b;
}

static void test_pdu_serials(void)
{
	printf("checks: ExpStatSN and the CmdSN window after each kind of received PDU\n");
	struct ism_config cfg;
	char err[256];
	ism_config_init(&cfg);
	cfg.initiator_name = "iqn.2026-01.org.example:i";
	cfg.target_name = "iqn.2026-01.org.example:t";
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	CHECK(s != NULL);
	struct ism_conn *c = ism_conn_alloc(s);
	CHECK(c != NULL);
	c->state = CONN_FFP;
	c->exp_statsn = 100;
	s->cmdsn = 10;
	s->exp_cmdsn = 10;
	s->max_cmdsn = 10;

	/* A status advances ExpStatSN and opens the window. */
	struct bhs b = serials_pdu(OP_SCSI_RESP, 100, 10, 20);
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(c->exp_statsn, 101u);
	CHECK_EQ(s->max_cmdsn, 20u);
	/* R2T, Data-In without status and the target's own NOP-In carry StatSN without advancing it. */
	b = serials_pdu(OP_R2T, 101, 10, 21);
	CHECK(ism_process_pdu_serials(c, &b));
	b = serials_pdu(OP_DATA_IN, 101, 10, 22);
	CHECK(ism_process_pdu_serials(c, &b));
	b = serials_pdu(OP_NOP_IN, 101, 10, 23);
	b.itt = RESERVED_TAG;
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(c->exp_statsn, 101u);
	CHECK_EQ(s->max_cmdsn, 23u);
	/* Data-In with status advances it. */
	b = serials_pdu(OP_DATA_IN, 101, 10, 23);
	b.data_in.status_present = true;
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(c->exp_statsn, 102u);
	/* MaxCmdSN < ExpCmdSN - 1: both ignored (RFC 7143 4.2.2.1). */
	b = serials_pdu(OP_SCSI_RESP, 102, 10, 5);
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(s->max_cmdsn, 23u);
	CHECK_EQ(s->exp_cmdsn, 10u);
	/* A window that only shrinks does not close what was opened; an ExpCmdSN past the next CmdSN
	 * is not trusted. */
	b = serials_pdu(OP_SCSI_RESP, 103, 10, 15);
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(s->max_cmdsn, 23u);
	b = serials_pdu(OP_SCSI_RESP, 104, 11, 40);
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(s->exp_cmdsn, 10u);
	CHECK_EQ(s->max_cmdsn, 23u);
	/* Async Message and Reject advance ExpStatSN when they carry the next one; a gap is no error. */
	b = serials_pdu(OP_ASYNC_MSG, 200, 10, 23);
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(c->exp_statsn, 105u);
	b = serials_pdu(OP_REJECT, 105, 10, 23);
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(c->exp_statsn, 106u);
	/* Serial arithmetic across the wrap of CmdSN. */
	s->cmdsn = 3;
	s->exp_cmdsn = 0xfffffffeu;
	s->max_cmdsn = 0xffffffffu;
	b = serials_pdu(OP_NOP_IN, 0, 2, 8);
	b.itt = RESERVED_TAG;
	CHECK(ism_process_pdu_serials(c, &b));
	CHECK_EQ(s->exp_cmdsn, 2u);
	CHECK_EQ(s->max_cmdsn, 8u);
	/* A status out of order fails the connection and is not handled. */
	b = serials_pdu(OP_SCSI_RESP, 107, 2, 8);
	CHECK(!ism_process_pdu_serials(c, &b));
	CHECK_EQ(c->state, CONN_CLOSED);
	CHECK(strstr(ism_session_error(s), "StatSN 107, expected 106") != NULL);
	ism_session_free(s);
}

int main(void)
{
	test_urls();
	test_portals();
	test_isid();
	test_sense();
	test_cdbs();
	test_sendtargets();
	test_config();
	test_pdu_serials();
	TEST_MAIN_END();
}
