/* Unit tests of the daemon's pure parts: config parsing, durations and sizes, login options to
 * and from JSON (secrets masked for display), ISIDs, atomic 0600 writes, session id counter,
 * iBFT directory, RPC operations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "daemon/daemon.h"
#include "daemon/ibft.h"
#include "daemon/ops.h"
#include "daemon/session.h"
#include "daemon/store.h"
#include "util/sbuf.h"

static char tmpdir[] = "/tmp/isthmus-dmn-unit.XXXXXX";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void test_parse(void)
{
	uint8_t isid[6];
	CHECK(parse_isid("0x400001370000", isid) && isid[0] == 0x40 && isid[5] == 0);
	CHECK(!parse_isid("40000137", isid));
	char h[13];
	hex_isid(isid, h);
	CHECK_STR(h, "400001370000");
	CHECK_EQ(dsess_type_parse("boot"), DS_TYPE_BOOT);
	CHECK_EQ(dsess_type_parse("info"), DS_TYPE_INFORMATIONAL);
	CHECK_EQ(dsess_type_parse("x"), -1);
}

static void test_config(void)
{
	char path[256], err[256];
	snprintf(path, sizeof(path), "%s/ini.conf", tmpdir);
	write_file(path, "# comment\n[initiator]\ninitiator-name = iqn.2026-11.org.isthmus:u\n"
			 "reconnect-interval = 2\nremoval-latency = 3.5\nqueue-limit = 1M\nfuse = no\nfailback = 0\n"
			 "block = no\n");
	struct dmn_config c;
	dmn_config_defaults(&c);
	CHECK_EQ(c.failback_ms, 30000);
	CHECK_EQ(c.removal_latency_ms, 60000);
	CHECK_EQ(c.reconnect_interval_ms, 5000);
	CHECK(c.block);
	CHECK_EQ(dmn_config_load(&c, path, err, sizeof(err)), 0);
	CHECK_STR(c.initiator_name, "iqn.2026-11.org.isthmus:u");
	CHECK_EQ(c.reconnect_interval_ms, 2000);
	CHECK_EQ(c.removal_latency_ms, 3500);
	CHECK_EQ(c.queue_limit_bytes, 1u << 20);
	CHECK(!c.fuse && c.nbd && !c.block);
	CHECK_EQ(c.failback_ms, 0);
	write_file(path, "bogus = 1\n");
	CHECK_EQ(dmn_config_load(&c, path, err, sizeof(err)), -1);
	CHECK(strstr(err, "unknown setting") != NULL);
	write_file(path, "removal-latency = soon\n");
	CHECK_EQ(dmn_config_load(&c, path, err, sizeof(err)), -1);
	dmn_config_free(&c);
}

static void test_opts(void)
{
	char err[256];
	struct dsess_opts o;
	json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:f,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal",
			      "127.0.0.1:3260", "type", "boot", "chap_user", "u", "chap_secret", "s3cret-s3cret",
			      "header_digest", 1, "removal_latency", 3.0, "isid", "400001370001");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), 0);
	CHECK_EQ(o.type, DS_TYPE_BOOT);
	CHECK_EQ(o.removal_latency_ms, 3000);
	CHECK(o.header_digest && !o.data_digest && o.isid_set && o.isid[5] == 1);
	json_t *shown = dsess_opts_to_json(&o, false);
	CHECK_STR(json_string_value(json_object_get(shown, "chap_secret")), "********");
	json_t *stored = dsess_opts_to_json(&o, true);
	CHECK_STR(json_string_value(json_object_get(stored, "chap_secret")), "s3cret-s3cret");
	struct dsess_opts back;
	CHECK_EQ(dsess_opts_from_json(&back, stored, err, sizeof(err)), 0);
	CHECK_STR(back.chap_secret, "s3cret-s3cret");
	CHECK_EQ(back.removal_latency_ms, 3000);
	CHECK(!memcmp(back.isid, o.isid, 6));
	dsess_opts_free(&back);
	dsess_opts_free(&o);
	json_decref(shown);
	json_decref(stored);
	json_decref(j);

	j = json_pack("{s:s}", "target", "iqn.2026-11.org.isthmus:t");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	CHECK(strstr(err, "portal") != NULL);
	json_decref(j);
	j = json_pack("{s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "chap_user", "u");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	json_decref(j);
	j = json_pack("{s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "type", "weird");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	json_decref(j);
	j = json_pack("{s:i}", "target", 3);
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	json_decref(j);
	CHECK_EQ(dsess_opts_from_json(&o, NULL, err, sizeof(err)), -1);
}

/* Several portals of one target and the failback: kept through the stored form, the first portal
 * the login one, duplicates dropped, bad or too many portals refused. */
static void test_opts_portals(void)
{
	char err[256];
	struct dsess_opts o, back;
	json_t *j = json_pack("{s:s,s:[s,s,s],s:f}", "target", "iqn.2026-11.org.isthmus:t", "portals", "10.0.0.1:3260",
			      "10.0.0.2:3260", "10.0.0.1:3260", "failback", 3.0);
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), 0);
	CHECK_STR(o.portal, "10.0.0.1:3260");
	CHECK_EQ(o.nportals, 2);
	CHECK_EQ(o.failback_ms, 3000);
	json_t *stored = dsess_opts_to_json(&o, true);
	CHECK_EQ(dsess_opts_from_json(&back, stored, err, sizeof(err)), 0);
	CHECK_EQ(back.nportals, 2);
	CHECK_STR(back.portals[1], "10.0.0.2:3260");
	CHECK_EQ(back.failback_ms, 3000);
	dsess_opts_free(&back);
	dsess_opts_free(&o);
	json_decref(stored);
	json_decref(j);
	j = json_pack("{s:s,s:s,s:[s]}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "portals", "[::1");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	json_decref(j);
	j = json_pack("{s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "pr_key", "0xABC");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), 0);
	CHECK(o.pr_key_set && o.pr_key == 0xabc);
	stored = dsess_opts_to_json(&o, true);
	CHECK_STR(json_string_value(json_object_get(stored, "pr_key")), "0x0000000000000abc");
	json_decref(stored);
	dsess_opts_free(&o);
	json_decref(j);
	const char *bad_keys[] = {"0", "xyz", "-1", "12345678901234567", ""};
	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		j = json_pack("{s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "pr_key", bad_keys[i]);
		CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
		json_decref(j);
	}
	j = json_pack("{s:s,s:s,s:f}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "failback", -1.0);
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	json_decref(j);
	json_t *many = json_array();
	for (int i = 0; i < DMN_MAX_PORTALS + 1; i++) {
		char p[32];
		snprintf(p, sizeof(p), "10.0.0.%d:3260", i + 1);
		json_array_append_new(many, json_string(p));
	}
	j = json_pack("{s:s,s:o}", "target", "iqn.2026-11.org.isthmus:t", "portals", many);
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	CHECK(strstr(err, "at most") != NULL);
	json_decref(j);
}

static void test_store(void)
{
	char path[300], err[256];
	snprintf(path, sizeof(path), "%s/f.txt", tmpdir);
	CHECK_EQ(store_write_atomic(path, "abc", 3, 0600), 0);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 3);
	CHECK_EQ(store_write_atomic(path, "abcdef", 6, 0600), 0);
	size_t n = 0;
	char *t = store_read_file(path, 100, &n);
	CHECK(t && n == 6 && !strcmp(t, "abcdef"));
	free(t);

	struct daemon d;
	memset(&d, 0, sizeof(d));
	dmn_config_defaults(&d.cfg);
	d.state_dir = xasprintf("%s/state", tmpdir);
	CHECK_EQ(store_init(&d, err, sizeof(err)), 0);
	CHECK(d.initiator_name && !strncmp(d.initiator_name, "iqn.", 4));
	uint64_t a = store_next_session_id(&d), b = store_next_session_id(&d);
	CHECK(a >= 1 && b == a + 1);
	/* the name is kept; ids after a restart (or crash) are never below the ones handed out */
	char *name = xstrdup(d.initiator_name);
	json_decref(d.records);
	json_decref(d.discovered);
	free(d.initiator_name);
	CHECK_EQ(store_init(&d, err, sizeof(err)), 0);
	CHECK_STR(d.initiator_name, name);
	CHECK(store_next_session_id(&d) > b);
	CHECK_EQ(store_set_initiator_secret(&d, "short", err, sizeof(err)), -1);
	CHECK_EQ(store_set_initiator_secret(&d, "a-long-enough-secret", err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/chap-secret", d.state_dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	json_array_append_new(d.records, json_pack("{s:i,s:s}", "id", 1, "target", "x"));
	CHECK_EQ(store_save_records(&d), 0);
	snprintf(path, sizeof(path), "%s/persistent.json", d.state_dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	free(name);
	json_decref(d.records);
	json_decref(d.discovered);
	free(d.initiator_name);
	free(d.initiator_secret);
	free(d.state_dir);
	dmn_config_free(&d.cfg);
}

static void test_ibft(void)
{
	char dir[300], p[400], err[256];
	snprintf(dir, sizeof(dir), "%s/ibft", tmpdir);
	mkdir(dir, 0700);
	snprintf(p, sizeof(p), "%s/initiator", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/target0", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/initiator/initiator-name", dir);
	write_file(p, "iqn.2026-11.org.isthmus:boot\n");
	snprintf(p, sizeof(p), "%s/target0/target-name", dir);
	write_file(p, "iqn.2026-11.org.isthmus:tgt\n");
	snprintf(p, sizeof(p), "%s/target0/ip-addr", dir);
	write_file(p, "::1\n");
	snprintf(p, sizeof(p), "%s/target0/port", dir);
	write_file(p, "3261\n");
	struct dsess_opts o;
	char *name = NULL;
	CHECK_EQ(ibft_load(dir, &o, &name, err, sizeof(err)), 0);
	CHECK_STR(name, "iqn.2026-11.org.isthmus:boot");
	CHECK_STR(o.portal, "[::1]:3261");
	CHECK_EQ(o.type, DS_TYPE_BOOT);
	CHECK(o.chap_user == NULL);
	free(name);
	dsess_opts_free(&o);
	snprintf(p, sizeof(p), "%s/target0/chap-name", dir);
	write_file(p, "u\n");
	CHECK_EQ(ibft_load(dir, &o, &name, err, sizeof(err)), -1);
}

static void test_ops(void)
{
	struct daemon d;
	memset(&d, 0, sizeof(d));
	struct rpc_error err = {0};
	uint64_t a = dop_new(&d), b = dop_new(&d);
	json_t *r = dop_take(&d, a, &err);
	CHECK(r && json_integer_value(json_object_get(r, "pending")) == (json_int_t)a);
	json_decref(r);
	dop_done(&d, a, json_pack("{s:i}", "x", 1));
	dop_fail(&d, b, RPC_FAILED, "nope %d", 7);
	r = dop_take(&d, a, &err);
	CHECK(r && json_integer_value(json_object_get(r, "x")) == 1);
	json_decref(r);
	CHECK(dop_take(&d, a, &err) == NULL && err.code == RPC_NOT_FOUND);
	memset(&err, 0, sizeof(err));
	CHECK(dop_take(&d, b, &err) == NULL && err.code == RPC_FAILED && !strcmp(err.message, "nope 7"));
	dop_free_all(&d);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_parse();
	test_config();
	test_opts();
	test_opts_portals();
	test_store();
	test_ibft();
	test_ops();
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	free(cmd);
	TEST_MAIN_END();
}
