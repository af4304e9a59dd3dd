#include "target/config.h"

#include <dirent.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "store/store_io.h"

static char *write_tmp(const char *content)
{
	char *path = xstrdup("/tmp/isthmus-cfg-XXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	size_t len = strlen(content);
	CHECK_EQ(write(fd, content, len), (long long)len);
	close(fd);
	return path;
}

/* Loads content from a temporary file; *path_out keeps the file name for messages. */
static int load(const char *content, struct cfg *cfg, char **err, char **path_out)
{
	char *path = write_tmp(content);
	cfg_init(cfg);
	*err = NULL;
	int rc = cfg_load_file(cfg, path, err);
	unlink(path);
	if (path_out)
		*path_out = path;
	else
		free(path);
	return rc;
}

/*
 * err starts with "path:line: reason"; when not, says which case of which table it was. Frees err
 * and path.
 */
static void check_located_error(const char *table, size_t i, char *err, char *path, unsigned line, const char *reason)
{
	char *want = xasprintf("%s:%u: %s", path, line, reason);
	bool ok = err && strncmp(err, want, strlen(want)) == 0;
	if (!ok)
		fprintf(stderr, "  %s case %zu: want '%s...'\n  got  '%s'\n", table, i, want, err ? err : "(none)");
	CHECK(ok);
	free(want);
	free(err);
	free(path);
}

static const char example[] =
	"# comment lines and blank lines ignored\n"
	"\n"
	"[global]\n"
	"state-dir = /var/lib/isthmus\n"
	"nop-interval = 10          # seconds; 0 disables pings\n"
	"nop-timeout=60\n"
	"max-connections = 500\n"
	"max-connections-per-portal = 100\n"
	"mgmt-max-clients = 8\n"
	"io-engine = workers\n"
	"mgmt-socket = /run/isthmus/target.sock\n"
	"discovery-chap-user = disc\n"
	"discovery-chap-secret-file = @SECRET@\n"
	"discovery-mutual-user = tgt\n"
	"discovery-mutual-secret = tgtsecret123\n"
	"\n"
	"[portal-group 1]                # tag 1..65535\n"
	"listen = 127.0.0.1:3260\n"
	"listen = [::1]:3260\n"
	"\t listen =  0.0.0.0:3261  \n"
	"[portal-group 7]\n"
	"listen = [fe80::0001]\n"
	"listen = 10.0.0.1\n"
	"listen = 2001:db8::5\n"
	"\n"
	"[target iqn.2026-11.org.isthmus:disk1]\n"
	"alias = disk one\n"
	"portal-group = 1\n"
	"lun 0 = /var/lib/isthmus/disk0.img,size=1G\n"
	"lun 1 = memory,size=64M\n"
	"lun   2 = /dev/sdb,ro\n"
	"lun = /srv/x.img,size=10G,bs=4096\n"
	"allow = iqn.1994-05.com.example:host1\n"
	"allow = iqn.1994-05.com.example:host2\n"
	"chap-user = alice\n"
	"chap-secret = \"alice # secret\"\n"
	"mutual-user = target1\n"
	"mutual-secret = targetsecret1#nocomment\n"
	"MaxRecvDataSegmentLength = 262144\n"
	"HeaderDigest = CRC32C,None\n"
	"\n"
	"[target iqn.2026-11.org.isthmus:disk2]\n"
	"portal-group = 7\n"
	"lun 5 = memory,size=1MiB,thick,wce=0,serial=SN0005,vendor=ISTHMUS,product=RAMDISK\n"
	"lun = memory,size=4k\n"
	"lun = /srv/y.img,size=8KB,thin,rw\n"
	"lun = null,size=1T\n";

static char *subst(const char *tmpl, const char *secret_path)
{
	const char *at = strstr(tmpl, "@SECRET@");
	return xasprintf("%.*s%s%s", (int)(at - tmpl), tmpl, secret_path, at + 8);
}

static void check_example(const struct cfg *c)
{
	CHECK_STR(c->state_dir, "/var/lib/isthmus");
	CHECK_EQ(c->nop_interval, 10);
	CHECK_EQ(c->nop_timeout, 60);
	CHECK_EQ(c->max_connections, 500);
	CHECK_EQ(c->max_connections_per_portal, 100);
	CHECK_EQ(c->io_engine, STORE_BACKEND_WORKERS);
	CHECK_EQ(c->mgmt_max_clients, 8);
	CHECK_STR(c->mgmt_socket, "/run/isthmus/target.sock");
	CHECK_STR(c->discovery_chap.user, "disc");
	CHECK_STR(c->discovery_chap.secret, "discsecret12");
	CHECK_STR(c->discovery_chap.mutual_user, "tgt");
	CHECK_STR(c->discovery_chap.mutual_secret, "tgtsecret123");

	CHECK_EQ(c->nportals, 6);
	if (c->nportals == 6) {
		CHECK_STR(c->portals[0].host, "127.0.0.1");
		CHECK_EQ(c->portals[0].port, 3260);
		CHECK_EQ(c->portals[0].tpgt, 1);
		CHECK_STR(c->portals[1].host, "::1");
		CHECK_EQ(c->portals[1].port, 3260);
		CHECK_STR(c->portals[2].host, "0.0.0.0");
		CHECK_EQ(c->portals[2].port, 3261);
		CHECK_STR(c->portals[3].host, "fe80::1");
		CHECK_EQ(c->portals[3].port, 3260);
		CHECK_EQ(c->portals[3].tpgt, 7);
		CHECK_STR(c->portals[4].host, "10.0.0.1");
		CHECK_STR(c->portals[5].host, "2001:db8::5");
		CHECK_EQ(c->portals[5].port, 3260);
		CHECK_EQ(c->portals[5].tpgt, 7);
	}

	CHECK_EQ(c->ntargets, 2);
	if (c->ntargets != 2)
		return;
	const struct cfg_target *t = cfg_find_target(c, "iqn.2026-11.org.isthmus:disk1");
	CHECK(t == &c->targets[0]);
	CHECK_STR(t->alias, "disk one");
	CHECK_EQ(t->tpgt, 1);
	CHECK_EQ(t->nluns, 4);
	if (t->nluns == 4) {
		CHECK_EQ(t->luns[0].lun, 0);
		CHECK_EQ(t->luns[0].kind, LUN_FILE);
		CHECK_STR(t->luns[0].path, "/var/lib/isthmus/disk0.img");
		CHECK_EQ(t->luns[0].size, 1ull << 30);
		CHECK_EQ(t->luns[0].block_size, 512);
		CHECK(!t->luns[0].read_only);
		CHECK(t->luns[0].thin);
		CHECK(t->luns[0].write_cache);
		CHECK(t->luns[0].serial == NULL && t->luns[0].vendor == NULL && t->luns[0].product == NULL);
		CHECK_EQ(t->luns[1].lun, 1);
		CHECK_EQ(t->luns[1].kind, LUN_MEMORY);
		CHECK(t->luns[1].path == NULL);
		CHECK_EQ(t->luns[1].size, 64ull << 20);
		CHECK_EQ(t->luns[2].lun, 2);
		CHECK_EQ(t->luns[2].kind, LUN_BLOCK);
		CHECK_STR(t->luns[2].path, "/dev/sdb");
		CHECK_EQ(t->luns[2].size, 0);
		CHECK(t->luns[2].read_only);
		CHECK(!t->luns[2].thin);
		CHECK_EQ(t->luns[3].lun, 3);
		CHECK_EQ(t->luns[3].kind, LUN_FILE);
		CHECK_EQ(t->luns[3].size, 10ull << 30);
		CHECK_EQ(t->luns[3].block_size, 4096);
	}
	CHECK_EQ(t->nacl, 2);
	if (t->nacl == 2) {
		CHECK_STR(t->acl[0], "iqn.1994-05.com.example:host1");
		CHECK_STR(t->acl[1], "iqn.1994-05.com.example:host2");
	}
	CHECK_STR(t->chap.user, "alice");
	CHECK_STR(t->chap.secret, "alice # secret");
	CHECK_STR(t->chap.mutual_user, "target1");
	CHECK_STR(t->chap.mutual_secret, "targetsecret1#nocomment");
	CHECK_EQ(t->params.n, 2);
	CHECK_STR(text_get(&t->params, "MaxRecvDataSegmentLength"), "262144");
	CHECK_STR(text_get(&t->params, "HeaderDigest"), "CRC32C,None");

	t = &c->targets[1];
	CHECK_STR(t->name, "iqn.2026-11.org.isthmus:disk2");
	CHECK(t->alias == NULL);
	CHECK_EQ(t->tpgt, 7);
	CHECK(t->chap.user == NULL);
	CHECK_EQ(t->nacl, 0);
	CHECK_EQ(t->nluns, 4);
	if (t->nluns == 4) {
		const struct cfg_lun *l = &t->luns[0];
		CHECK_EQ(l->lun, 5);
		CHECK_EQ(l->size, 1 << 20);
		CHECK(!l->thin);
		CHECK(!l->write_cache);
		CHECK_STR(l->serial, "SN0005");
		CHECK_STR(l->vendor, "ISTHMUS");
		CHECK_STR(l->product, "RAMDISK");
		/* Without a number: the lowest free one. */
		CHECK_EQ(t->luns[1].lun, 0);
		CHECK_EQ(t->luns[1].size, 4096);
		CHECK_EQ(t->luns[2].lun, 1);
		CHECK_EQ(t->luns[2].size, 8192);
		CHECK(t->luns[2].thin);
		CHECK(!t->luns[2].read_only);
		CHECK_EQ(t->luns[3].lun, 2);
		CHECK_EQ(t->luns[3].kind, LUN_NULL);
		CHECK(t->luns[3].path == NULL);
		CHECK_EQ(t->luns[3].size, 1ull << 40);
		CHECK(t->luns[3].thin);
		CHECK_STR(cfg_lun_kind_name(t->luns[3].kind), "null");
	}
}

static bool cfg_equal(const struct cfg *a, const struct cfg *b);

static void test_example_and_round_trip(void)
{
	char *secret = write_tmp("discsecret12\r\nsecond line ignored\n");
	char *text = subst(example, secret);
	struct cfg c;
	char *err;
	int rc = load(text, &c, &err, NULL);
	CHECK_EQ(rc, 0);
	if (rc)
		fprintf(stderr, "  %s\n", err);
	free(err);
	check_example(&c);
	err = NULL;
	CHECK_EQ(cfg_validate(&c, &err), 0);
	if (err)
		fprintf(stderr, "  validate: %s\n", err);
	free(err);

	/* Save and reload: the same configuration, secrets included. */
	char *out = cfg_format(&c);
	struct cfg c2;
	rc = load(out, &c2, &err, NULL);
	CHECK_EQ(rc, 0);
	if (rc)
		fprintf(stderr, "  reload: %s\n--\n%s--\n", err, out);
	free(err);
	CHECK(cfg_equal(&c, &c2));
	check_example(&c2);
	/* And formatting is stable. */
	char *out2 = cfg_format(&c2);
	CHECK_STR(out, out2);
	free(out);
	free(out2);
	cfg_free(&c2);
	cfg_free(&c);
	unlink(secret);
	free(secret);
	free(text);
}

/* Each case: file content, the line the error names, and a fragment of the reason. */
static void test_errors(void)
{
	static const struct {
		const char *content;
		unsigned line;
		const char *reason;
	} cases[] = {
		{"[global]\nfoo = 1\n", 2, "unknown key 'foo' in [global]"},
		{"[target iqn.2026-11.org.x:t]\n\nfoo = bar\n", 3, "unknown key 'foo' in [target iqn.2026-11.org.x:t]"},
		{"[portal-group 1]\nport = 1\n", 2, "unknown key 'port' in [portal-group 1]"},
		{"[global]\n[frobnicate]\n", 2, "unknown section '[frobnicate]'"},
		{"[target]\n", 1, "[target] needs an iSCSI name"},
		{"[portal-group 0]\n", 1, "portal group tag '0' is not a number from 1 to 65535"},
		{"[portal-group 65536]\n", 1, "portal group tag '65536'"},
		{"[portal-group x]\n", 1, "portal group tag 'x'"},
		{"[portal-group 1]\n[portal-group 1]\n", 2, "[portal-group 1] given twice"},
		{"[global]\n[global]\n", 2, "[global] given twice"},
		{"[global\n", 1, "section header without ']'"},
		{"[global] x\n", 1, "text after the section header"},
		{"state-dir = /x\n", 1, "key 'state-dir' outside any section"},
		{"[global]\nstate-dir\n", 2, "expected 'key = value'"},
		{"[global]\n= x\n", 2, "line starts with '=' and has no key"},
		{"[global]\nstate-dir =\n", 2, "key 'state-dir' has no value"},
		{"[global]\nstate-dir =    # nothing\n", 2, "key 'state-dir' has no value"},
		{"[global]\nstate-dir = \"abc\n", 2, "unterminated quoted value"},
		{"[global]\nstate-dir = \"abc\" def\n", 2, "text after the closing quote"},
		{"[global]\nstate-dir = /a\nstate-dir = /b\n", 3, "key 'state-dir' given twice in [global]"},
		{"[global]\nnop-interval = -1\n", 2, "nop-interval '-1' is not a number of seconds"},
		{"[global]\nnop-timeout = 0\n", 2, "nop-timeout '0'"},
		{"[global]\nnop-interval = 99999999999999999999999\n", 2, "nop-interval"},
		{"[global]\nnop-interval = 2.5\n", 2, "nop-interval '2.5' is not a number of seconds"},
		{"[global]\nnop-timeout = 86401s\n", 2, "nop-timeout '86401s'"},
		{"[global]\ndata-out-timeout = 1500ms\n", 2, "data-out-timeout '1500ms' is not a number from 1 to 86400"},
		{"[global]\nmax-data-total = 1Q\n", 2, "max-data-total '1Q' is not a size of at least 1M"},
		{"[global]\nmax-connections = 0\n", 2, "max-connections '0' is not a number from 1 to 65536"},
		{"[global]\nmax-connections = 65537\n", 2, "max-connections '65537'"},
		{"[global]\nmax-connections-per-portal = -4\n", 2, "max-connections-per-portal '-4'"},
		{"[global]\nmgmt-max-clients = 1025\n", 2, "mgmt-max-clients '1025' is not a number from 1 to 1024"},
		{"[global]\nio-engine = aio\n", 2, "io-engine 'aio' is not auto, io_uring or workers"},
		{"[global]\nmax-connections = 5\nmax-connections = 6\n", 3, "key 'max-connections' given twice"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1Q\n", 2, "invalid size '1Q'"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=\n", 2, "LUN option 'size' needs a value"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory\n", 2, "memory LUN needs size="},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = null,ro\n", 2, "null LUN needs size="},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1000\n", 2, "LUN size 1000 is not a multiple of the 512-byte"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1M,bs=1024\n", 2, "invalid block size '1024'"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1M,fast\n", 2, "unknown LUN option 'fast'"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1M,size=2M\n", 2, "LUN option 'size' given twice"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1M,ro=1\n", 2, "LUN option 'ro' takes no value"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1M,wce=2\n", 2, "invalid wce '2'"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1M,vendor=TOOLONGVENDOR\n", 2,
		 "LUN vendor 'TOOLONGVENDOR' must be 1 to 8"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = /dev/sdz,size=1G\n", 2, "size= does not apply to block device"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = ,size=1G\n", 2, "LUN spec ',size=1G' needs a path, 'memory' or 'null' first"},
		{"[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=1M\nlun 1 = memory,size=1M\nlun 0 = memory,size=1M\n",
		 4, "LUN 0 is defined twice in target 'iqn.2026-11.org.x:t'"},
		{"[target iqn.2026-11.org.x:t]\nlun x = memory,size=1M\n", 2, "LUN number 'x' is not a number"},
		{"[target iqn.2026-11.org.x:t]\nlun 16384 = memory,size=1M\n", 2, "LUN number 16384 is above 16383"},
		{"[target iqn.2026-11.org.X:t]\n", 1, "invalid iSCSI name 'iqn.2026-11.org.X:t': iSCSI names may only hold"},
		{"[target iqn.2026-13.org.x:t]\n", 1, "invalid iSCSI name 'iqn.2026-13.org.x:t': iqn. name has an invalid month"},
		{"[target disk1]\n", 1, "invalid iSCSI name 'disk1'"},
		{"[target iqn.2026-11.org.x:t]\nallow = host1\n", 2, "invalid iSCSI name 'host1'"},
		{"[target iqn.2026-11.org.x:t]\nallow = iqn.2026-11.org.x:i\nallow = iqn.2026-11.org.x:i\n", 3,
		 "initiator 'iqn.2026-11.org.x:i' is allowed twice in [target iqn.2026-11.org.x:t]"},
		{"[target iqn.2026-11.org.x:t]\n[target iqn.2026-11.org.x:u]\n[target iqn.2026-11.org.x:t]\n", 3,
		 "target 'iqn.2026-11.org.x:t' is defined twice"},
		{"[target iqn.2026-11.org.x:t]\nchap-user = a\nchap-secret = short\n", 3,
		 "chap-secret is 5 bytes; CHAP secrets must be at least 12 bytes"},
		{"[target iqn.2026-11.org.x:t]\nmutual-secret = 12345678901\n", 2, "mutual-secret is 11 bytes"},
		{"[global]\ndiscovery-chap-secret = abc\n", 2, "discovery-chap-secret is 3 bytes"},
		{"[target iqn.2026-11.org.x:t]\nchap-secret = 123456789012\nchap-secret-file = /x\n", 3,
		 "'chap-secret' given twice in [target iqn.2026-11.org.x:t] ('chap-secret-file' is an alternative"},
		{"[target iqn.2026-11.org.x:t]\nchap-secret-file = /nonexistent/isthmus/secret\n", 2,
		 "cannot open secret file '/nonexistent/isthmus/secret'"},
		{"[target iqn.2026-11.org.x:t]\nportal-group = 0\n", 2, "portal-group '0' is not a number from 1 to 65535"},
		{"[target iqn.2026-11.org.x:t]\nportal-group = 1\nportal-group = 2\n", 3, "key 'portal-group' given twice"},
		{"[target iqn.2026-11.org.x:t]\nMaxBurstLength = 1\nMaxBurstLength = 2\n", 3,
		 "key 'MaxBurstLength' given twice"},
		{"[target iqn.2026-11.org.x:t]\nMax*Burst = 1\n", 2, "'Max*Burst' is not a valid iSCSI key name"},
		{"[portal-group 1]\nlisten = 1.2.3.4:0\n", 2, "listen port '0' is not a number from 1 to 65535"},
		{"[portal-group 1]\nlisten = 1.2.3.4:65536\n", 2, "listen port '65536'"},
		{"[portal-group 1]\nlisten = localhost:3260\n", 2, "listen host 'localhost' is not a numeric"},
		{"[portal-group 1]\nlisten = 1.2.3.4\n[portal-group 2]\nlisten = 1.2.3.4:3260\n", 4,
		 "1.2.3.4:3260 is already a portal (of portal group 1)"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg c;
		char *err = NULL, *path = NULL;
		int rc = load(cases[i].content, &c, &err, &path);
		CHECK_EQ(rc, -1);
		if (rc != -1)
			fprintf(stderr, "  errors case %zu loaded (%d)\n", i, rc);
		check_located_error("errors", i, err, path, cases[i].line, cases[i].reason);
		cfg_free(&c);
	}

	struct cfg c;
	char *err = NULL;
	cfg_init(&c);
	CHECK_EQ(cfg_load_file(&c, "/nonexistent/isthmus.conf", &err), -1);
	CHECK(err && strstr(err, "/nonexistent/isthmus.conf: No such file") == err);
	free(err);
	cfg_free(&c);
}

/* Errors only cfg_validate can see, still pointing at the line that caused them. */
static void test_validate(void)
{
	static const struct {
		const char *content;
		unsigned line; /* 0: no location */
		const char *reason;
	} cases[] = {
		{"[portal-group 1]\nlisten = 127.0.0.1\n[target iqn.2026-11.org.x:t]\nportal-group = 2\n", 4,
		 "target 'iqn.2026-11.org.x:t' refers to portal group 2, which is not defined"},
		{"[target iqn.2026-11.org.x:t]\nlun = memory,size=1M\n", 1,
		 "target 'iqn.2026-11.org.x:t' refers to portal group 1, which is not defined"},
		{"[portal-group 1]\nlisten = 127.0.0.1\n[portal-group 3]\n[target iqn.2026-11.org.x:t]\nportal-group = 3\n",
		 5, "portal group 3 of target 'iqn.2026-11.org.x:t' has no listen address"},
		{"[portal-group 1]\nlisten = 127.0.0.1\n[target iqn.2026-11.org.x:t]\nalias = a\nchap-user = alice\n", 5,
		 "target 'iqn.2026-11.org.x:t' has chap-user but no chap-secret"},
		{"[portal-group 1]\nlisten = 127.0.0.1\n[target iqn.2026-11.org.x:t]\nchap-secret = alicesecret12\n", 4,
		 "target 'iqn.2026-11.org.x:t' has chap-secret settings but no chap-user"},
		{"[portal-group 1]\nlisten = 127.0.0.1\n[target iqn.2026-11.org.x:t]\nchap-user = a\n"
		 "chap-secret = alicesecret12\nmutual-user = t\n",
		 4, "target 'iqn.2026-11.org.x:t' needs both mutual-user and mutual-secret"},
		{"[portal-group 1]\nlisten = 127.0.0.1\n[target iqn.2026-11.org.x:t]\nchap-user = a\n"
		 "chap-secret = alicesecret12\nmutual-user = t\nmutual-secret = alicesecret12\n",
		 4, "target 'iqn.2026-11.org.x:t' uses the same secret"},
		{"[global]\ndiscovery-chap-user = d\n", 2, "discovery has discovery-chap-user but no discovery-chap-secret"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg c;
		char *err = NULL, *path = NULL;
		int rc = load(cases[i].content, &c, &err, &path);
		CHECK_EQ(rc, 0);
		if (rc)
			fprintf(stderr, "  validate case %zu loads with: %s\n", i, err);
		free(err);
		err = NULL;
		CHECK_EQ(cfg_validate(&c, &err), -1);
		check_located_error("validate", i, err, path, cases[i].line, cases[i].reason);
		cfg_free(&c);
	}

	/* Built from flags: no location, same checks. */
	struct cfg c;
	char *err = NULL;
	cfg_init(&c);
	struct cfg_target *t = cfg_add_target(&c, "iqn.2026-11.org.x:t", &err);
	CHECK(t != NULL);
	CHECK_EQ(cfg_validate(&c, &err), -1);
	CHECK_STR(err, "target 'iqn.2026-11.org.x:t' refers to portal group 1, which is not defined");
	free(err);
	err = NULL;
	CHECK_EQ(cfg_add_listen(&c, "0.0.0.0", &err), 0);
	CHECK_EQ(cfg_validate(&c, &err), 0);
	t->chap.user = xstrdup("alice");
	t->chap.secret = xstrdup("short");
	CHECK_EQ(cfg_validate(&c, &err), -1);
	CHECK_STR(err, "target 'iqn.2026-11.org.x:t': chap-secret is 5 bytes; CHAP secrets must be at least 12 "
		       "bytes (96 bits, RFC 7143)");
	free(err);
	err = NULL;
	CHECK(cfg_add_target(&c, "iqn.2026-11.org.x:t", &err) == NULL);
	CHECK_STR(err, "target 'iqn.2026-11.org.x:t' is defined twice");
	free(err);
	err = NULL;
	CHECK(cfg_add_target(&c, "iqn.bad", &err) == NULL);
	CHECK(err && strncmp(err, "invalid iSCSI name 'iqn.bad': ", 30) == 0);
	free(err);
	cfg_free(&c);
}

static void test_lun_spec(void)
{
	struct cfg c;
	char *err = NULL;
	cfg_init(&c);
	struct cfg_target *t = cfg_add_target(&c, "eui.0123456789ABCDEF", &err);
	CHECK(t != NULL);
	CHECK(cfg_find_target(&c, "eui.0123456789abcdef") == t);
	CHECK_EQ(cfg_add_lun_spec(&c, t, "memory,size=64M", &err), 0);
	CHECK_EQ(cfg_add_lun_spec(&c, t, "/tmp/isthmus-no-such.img,size=1G,ro,bs=4096,thick,wce=0", &err), 0);
	CHECK_EQ(cfg_add_lun(&c, t, 7, "/dev/null", &err), 0);
	CHECK_EQ(cfg_add_lun_spec(&c, t, "/tmp/isthmus-no-such.img", &err), 0);
	CHECK_EQ(t->nluns, 4);
	CHECK_EQ(t->luns[0].lun, 0);
	CHECK_EQ(t->luns[0].kind, LUN_MEMORY);
	CHECK_EQ(t->luns[1].lun, 1);
	CHECK_EQ(t->luns[1].kind, LUN_FILE);
	CHECK_EQ(t->luns[1].size, 1ull << 30);
	CHECK(t->luns[1].read_only && !t->luns[1].thin && !t->luns[1].write_cache);
	CHECK_EQ(t->luns[1].block_size, 4096);
	CHECK_EQ(t->luns[2].lun, 7);
	CHECK_EQ(t->luns[2].kind, LUN_BLOCK);
	CHECK_EQ(t->luns[3].lun, 2);
	CHECK_EQ(t->luns[3].size, 0);
	CHECK_EQ(cfg_add_lun(&c, t, 7, "memory,size=1M", &err), -1);
	CHECK_STR(err, "LUN 7 is defined twice in target 'eui.0123456789ABCDEF'");
	free(err);
	err = NULL;
	CHECK_EQ(cfg_add_lun_spec(&c, t, "memory,size=6K,bs=4096", &err), -1);
	CHECK_STR(err, "LUN size 6144 is not a multiple of the 4096-byte block size");
	free(err);
	err = NULL;
	CHECK_EQ(cfg_add_lun_spec(&c, t, "", &err), -1);
	free(err);
	err = NULL;
	CHECK_EQ(t->nluns, 4);

	/* RBD images: rbd:POOL/IMAGE with the cluster's options; size is the image's. */
	CHECK_EQ(cfg_add_lun_spec(&c, t, "rbd:pool1/img-a,conf=/etc/ceph/x.conf,id=gw,namespace=ns1,ro", &err), 0);
	CHECK_EQ(t->nluns, 5);
	const struct cfg_lun *r = &t->luns[4];
	CHECK_EQ(r->kind, LUN_RBD);
	CHECK_STR(r->path, "rbd:pool1/img-a");
	CHECK_STR(r->rbd_conf, "/etc/ceph/x.conf");
	CHECK_STR(r->rbd_id, "gw");
	CHECK_STR(r->rbd_namespace, "ns1");
	CHECK(r->read_only && r->thin);
	CHECK_EQ(cfg_add_lun_spec(&c, t, "rbd:pool1/img-b", &err), 0);
	CHECK(t->luns[5].rbd_conf == NULL && t->luns[5].rbd_id == NULL && !t->luns[5].read_only);
	char *out = cfg_format(&c);
	CHECK(strstr(out, "= rbd:pool1/img-a,ro,conf=/etc/ceph/x.conf,id=gw,namespace=ns1\n") != NULL);
	free(out);
	static const char *const bad[][2] = {
		{"rbd:pool1", "must be rbd:POOL/IMAGE"},
		{"rbd:/img", "must be rbd:POOL/IMAGE"},
		{"rbd:p/", "must be rbd:POOL/IMAGE"},
		{"rbd:p/a/b", "must be rbd:POOL/IMAGE"},
		{"rbd:p/a,size=1G", "size= does not apply to RBD image"},
		{"memory,size=1M,conf=/x", "is for RBD LUNs"},
		{"rbd:p/a,id=a/b", "invalid RBD id"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		CHECK_EQ(cfg_add_lun_spec(&c, t, bad[i][0], &err), -1);
		CHECK(err && strstr(err, bad[i][1]));
		if (!err || !strstr(err, bad[i][1]))
			fprintf(stderr, "  %s: %s\n", bad[i][0], err ? err : "(no error)");
		free(err);
	}
	CHECK_EQ(t->nluns, 6);
	cfg_free(&c);
}

static void test_listen(void)
{
	struct cfg c;
	char *err = NULL;
	cfg_init(&c);
	CHECK_STR(c.state_dir, "/var/lib/isthmus/target");
	CHECK_EQ(c.nop_interval, 5);
	CHECK_EQ(c.nop_timeout, 30);
	CHECK(c.mgmt_socket == NULL && c.source == NULL && c.nportals == 0 && c.ntargets == 0);

	const struct {
		const char *spec, *host;
		unsigned port;
	} good[] = {
		{"127.0.0.1:3260", "127.0.0.1", 3260}, {"0.0.0.0", "0.0.0.0", 3260},   {"10.1.2.3:1", "10.1.2.3", 1},
		{"[::1]:3261", "::1", 3261},           {"[::]", "::", 3260},           {"::", "::", 3260},
		{"fe80::1", "fe80::1", 3260},          {"[2001:db8::1]:65535", "2001:db8::1", 65535},
	};
	/* "::" and "[::]" are the same portal: expect the duplicate to be refused. */
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc = cfg_add_listen(&c, good[i].spec, &err);
		if (i == 5) {
			CHECK_EQ(rc, -1);
			CHECK_STR(err, "[::]:3260 is already a portal (of portal group 1)");
			free(err);
			err = NULL;
			continue;
		}
		CHECK_EQ(rc, 0);
		if (rc) {
			fprintf(stderr, "  listen '%s': %s\n", good[i].spec, err);
			free(err);
			err = NULL;
			continue;
		}
		const struct cfg_portal *p = &c.portals[c.nportals - 1];
		CHECK_STR(p->host, good[i].host);
		CHECK_EQ(p->port, good[i].port);
		CHECK_EQ(p->tpgt, 1);
	}
	CHECK_EQ(cfg_add_listen_group(&c, "127.0.0.1:3270", 9, &err), 0);
	CHECK_EQ(c.portals[c.nportals - 1].tpgt, 9);

	static const struct {
		const char *spec, *why;
	} bad[] = {
		{"127.0.0.1:0", "listen port '0' is not a number from 1 to 65535"},
		{"127.0.0.1:65536", "listen port '65536' is not a number from 1 to 65535"},
		{"127.0.0.1:", "listen port '' is not a number from 1 to 65535"},
		{"127.0.0.1:+80", "listen port '+80'"},
		{"127.0.0.1:80x", "listen port '80x'"},
		{"[::1]:0", "listen port '0'"},
		{"[::1]x", "has junk after ']'"},
		{"[::1", "lacks the closing ']'"},
		{"[]:3260", "has no valid host"},
		{":3260", "has no valid host"},
		{"", "has no valid host"},
		{"example.com:3260", "listen host 'example.com' is not a numeric"},
		{"256.1.1.1", "listen host '256.1.1.1'"},
		{"[127.0.0.1]:3262", NULL}, /* brackets around v4 are harmless */
		{"fe80::1%eth0", "is not a numeric"},
		{"1::2::3", "is not a numeric"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = cfg_add_listen(&c, bad[i].spec, &err);
		if (!bad[i].why) {
			CHECK_EQ(rc, 0);
			continue;
		}
		CHECK_EQ(rc, -1);
		if (rc != -1 || !strstr(err, bad[i].why))
			fprintf(stderr, "  listen '%s': want '%s', got '%s'\n", bad[i].spec, bad[i].why,
				rc ? err : "(accepted)");
		CHECK(rc == -1 && strstr(err, bad[i].why) != NULL);
		free(err);
		err = NULL;
	}
	CHECK_EQ(cfg_add_listen_group(&c, "1.1.1.1", 0, &err), -1);
	free(err);
	cfg_free(&c);
}

/* A configuration built entirely through the API survives format and reload, odd values included. */
static void test_format_api(void)
{
	struct cfg c;
	char *err = NULL;
	cfg_init(&c);
	free(c.state_dir);
	c.state_dir = xstrdup(" /path with spaces/ ");
	c.nop_interval = 0;
	c.mgmt_socket = xstrdup("/run/a#b");
	c.discovery_chap.user = xstrdup("d\"q");
	c.discovery_chap.secret = xstrdup("back\\slash # and quote \"");
	CHECK_EQ(cfg_add_listen(&c, "[::1]:3260", &err), 0);
	CHECK_EQ(cfg_add_listen_group(&c, "127.0.0.1:3261", 4, &err), 0);
	cfg_add_group(&c, 2);
	struct cfg_target *t = cfg_add_target(&c, "naa.0123456789abcdef0123456789abcdef", &err);
	t->tpgt = 4;
	t->alias = xstrdup("#1 alias");
	CHECK_EQ(cfg_add_lun(&c, t, 100, "memory,size=3000K,bs=4096", &err), 0);
	CHECK_EQ(cfg_add_lun(&c, t, 3, "/dev/sdq,thin,ro", &err), 0);
	CHECK_EQ(cfg_add_lun(&c, t, 0, "/srv/img#1.raw,size=512,serial=ABC-123", &err), 0);
	text_set(&t->params, "InitialR2T", "No");
	t->acl = xmalloc(sizeof(char *));
	t->acl[0] = xstrdup("iqn.2026-11.org.x:init");
	t->nacl = 1;
	t = cfg_add_target(&c, "iqn.2026-11.org.x:empty", &err);
	CHECK(t != NULL);

	char *out = cfg_format(&c);
	struct cfg c2;
	int rc = load(out, &c2, &err, NULL);
	CHECK_EQ(rc, 0);
	if (rc)
		fprintf(stderr, "  reload: %s\n--\n%s--\n", err, out);
	CHECK(cfg_equal(&c, &c2));
	CHECK_STR(c2.state_dir, " /path with spaces/ ");
	CHECK_STR(c2.discovery_chap.secret, "back\\slash # and quote \"");
	CHECK_EQ(c2.ngroups, 3);
	free(out);
	cfg_free(&c);
	cfg_free(&c2);
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static bool chap_eq(const struct cfg_chap *a, const struct cfg_chap *b)
{
	return str_eq(a->user, b->user) && str_eq(a->secret, b->secret) && str_eq(a->mutual_user, b->mutual_user) &&
	       str_eq(a->mutual_secret, b->mutual_secret);
}

#define SAME(cond)                                                                                 \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "  differs: %s\n", #cond);                                 \
			return false;                                                              \
		}                                                                                  \
	} while (0)

static bool cfg_equal(const struct cfg *a, const struct cfg *b)
{
	SAME(str_eq(a->state_dir, b->state_dir) && str_eq(a->mgmt_socket, b->mgmt_socket));
	SAME(a->nop_interval == b->nop_interval && a->nop_timeout == b->nop_timeout);
	SAME(a->max_connections == b->max_connections &&
	     a->max_connections_per_portal == b->max_connections_per_portal &&
	     a->mgmt_max_clients == b->mgmt_max_clients);
	SAME(chap_eq(&a->discovery_chap, &b->discovery_chap));
	SAME(a->nportals == b->nportals);
	for (size_t i = 0; i < a->nportals; i++) {
		/* Portals come back grouped by tag. */
		bool found = false;
		for (size_t j = 0; j < b->nportals; j++)
			found |= str_eq(a->portals[i].host, b->portals[j].host) && a->portals[i].port == b->portals[j].port &&
				 a->portals[i].tpgt == b->portals[j].tpgt;
		SAME(found);
	}
	SAME(a->ngroups == b->ngroups);
	SAME(a->ntargets == b->ntargets);
	for (size_t i = 0; i < a->ntargets; i++) {
		const struct cfg_target *x = &a->targets[i], *y = &b->targets[i];
		SAME(str_eq(x->name, y->name) && str_eq(x->alias, y->alias) && x->tpgt == y->tpgt);
		SAME(chap_eq(&x->chap, &y->chap));
		SAME(x->nacl == y->nacl);
		for (size_t j = 0; j < x->nacl; j++)
			SAME(str_eq(x->acl[j], y->acl[j]));
		SAME(x->params.n == y->params.n);
		for (size_t j = 0; j < x->params.n; j++)
			SAME(str_eq(x->params.kv[j].key, y->params.kv[j].key) &&
			     str_eq(x->params.kv[j].value, y->params.kv[j].value));
		SAME(x->nluns == y->nluns);
		for (size_t j = 0; j < x->nluns; j++) {
			const struct cfg_lun *l = &x->luns[j], *m = &y->luns[j];
			SAME(l->lun == m->lun && l->kind == m->kind && str_eq(l->path, m->path) && l->size == m->size);
			SAME(l->block_size == m->block_size && l->read_only == m->read_only && l->thin == m->thin &&
			     l->write_cache == m->write_cache);
			SAME(str_eq(l->serial, m->serial) && str_eq(l->vendor, m->vendor) &&
			     str_eq(l->product, m->product) && str_eq(l->rbd_conf, m->rbd_conf) &&
			     str_eq(l->rbd_id, m->rbd_id) && str_eq(l->rbd_namespace, m->rbd_namespace));
		}
	}
	return true;
}

/* Defaults of the connection limits, and their bounds from the flags' parser. */
/* The sizes and durations of util/parse, through the target's keys: every spelling lands the same. */
static void test_value_syntax(void)
{
	struct cfg c;
	cfg_init(&c);
	char *err = NULL;
	int rc = cfg_load_string(&c, "t.conf",
				 "[global]\nnop-interval = 1m\nnop-timeout = 45s\ndata-out-timeout = 2000ms\n"
				 "max-data-per-connection = 64Mi\nmax-data-per-session = 1GiB\nmax-data-total = 2g\n"
				 "[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=8Mi\nlun 1 = memory,size=4096KB\n",
				 &err);
	if (rc != 0)
		fprintf(stderr, "  %s\n", err ? err : "?");
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.nop_interval, 60);
	CHECK_EQ(c.nop_timeout, 45);
	CHECK_EQ(c.data_out_timeout, 2);
	CHECK_EQ(c.max_data_connection, 64ull << 20);
	CHECK_EQ(c.max_data_session, 1ull << 30);
	CHECK_EQ(c.max_data_total, 2ull << 30);
	if (rc == 0 && c.ntargets == 1 && c.targets[0].nluns == 2) {
		CHECK_EQ(c.targets[0].luns[0].size, 8u << 20);
		CHECK_EQ(c.targets[0].luns[1].size, 4u << 20);
	} else {
		CHECK(!"target with two LUNs");
	}
	free(err);
	cfg_free(&c);
	printf("ok: durations with s/ms/m and sizes with Mi/GiB/KB/g suffixes in the target's keys\n");
}

static void test_limits(void)
{
	struct cfg c;
	cfg_init(&c);
	CHECK_EQ(c.max_connections, 1024);
	CHECK_EQ(c.max_connections_per_portal, 256);
	CHECK_EQ(c.mgmt_max_clients, 64);
	unsigned v = 7;
	char *err = NULL;
	CHECK_EQ(cfg_parse_limit("--max-connections", "65536", CFG_MAX_CONNECTIONS_LIMIT, &v, &err), 0);
	CHECK_EQ(v, 65536);
	CHECK_EQ(cfg_parse_limit("--max-connections", "1x", CFG_MAX_CONNECTIONS_LIMIT, &v, &err), -1);
	CHECK(err && strstr(err, "--max-connections '1x'"));
	free(err);
	cfg_free(&c);
}

/*
 * threads not set: as many loops as the CPUs the process may run on (its affinity mask, not the
 * machine's count), and a written file leaves the key out so it keeps meaning that elsewhere.
 */
static void test_threads_default(void)
{
	struct cfg c;
	cfg_init(&c);
	char *err = NULL;
	CHECK_EQ(cfg_load_string(&c, "t.conf", "[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=8M\n", &err), 0);
	CHECK_EQ(c.threads, CFG_THREADS_AUTO);
	cpu_set_t all, one;
	CPU_ZERO(&all);
	CHECK_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
	unsigned cpus = (unsigned)CPU_COUNT(&all);
	CHECK_EQ(cfg_threads(&c), cpus < CFG_THREADS_LIMIT ? cpus : CFG_THREADS_LIMIT);
	CPU_ZERO(&one);
	for (int i = 0; i < CPU_SETSIZE; i++) {
		if (CPU_ISSET(i, &all)) {
			CPU_SET(i, &one);
			break;
		}
	}
	CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
	CHECK_EQ(cfg_threads(&c), 1);
	CHECK_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
	char *text = cfg_format(&c);
	CHECK(text && !strstr(text, "threads ="));
	free(text);
	cfg_free(&c);
	cfg_init(&c);
	CHECK_EQ(cfg_load_string(&c, "t.conf", "[global]\nthreads = 1\n[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=8M\n",
				 &err),
		 0);
	CHECK_EQ(cfg_threads(&c), 1);
	text = cfg_format(&c);
	CHECK(text && strstr(text, "threads = 1\n"));
	free(text);
	cfg_free(&c);
	printf("ok: threads not set is the %u CPU(s) the process may run on (1 when pinned to one), left out of a "
	       "written file; threads = 1 is kept\n",
	       cpus);
}

/*
 * save-config writes a fresh file with a random name, created exclusively: a symlink planted
 * where the temporary file used to go (PATH.tmp.PID) is not followed, and the file is 0600 even
 * under a permissive umask.
 */
static void test_save_safely(void)
{
	char dir[] = "/tmp/isthmus-save-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *path = xasprintf("%s/target.conf", dir);
	char *victim = xasprintf("%s/victim", dir);
	char *planted = xasprintf("%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(victim, "w");
	CHECK(f != NULL);
	if (f) {
		fputs("precious\n", f);
		fclose(f);
	}
	CHECK_EQ(symlink(victim, planted), 0);

	struct cfg c;
	cfg_init(&c);
	char *err = NULL;
	CHECK_EQ(cfg_add_listen(&c, "127.0.0.1:3260", &err), 0);
	CHECK(cfg_add_target(&c, "iqn.2026-11.org.x:saved", &err) != NULL);
	mode_t old = umask(0);
	int rc = cfg_save(&c, path, &err);
	umask(old);
	CHECK_EQ(rc, 0);
	if (rc)
		fprintf(stderr, "  cfg_save: %s\n", err);
	free(err);
	err = NULL;

	char buf[64] = "";
	f = fopen(victim, "r");
	CHECK(f != NULL);
	if (f) {
		CHECK(fgets(buf, sizeof(buf), f) != NULL);
		fclose(f);
	}
	CHECK_STR(buf, "precious\n");
	struct stat st;
	CHECK_EQ(lstat(path, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK_EQ(lstat(planted, &st), 0); /* left alone */
	CHECK(S_ISLNK(st.st_mode));
	struct cfg back;
	cfg_init(&back);
	CHECK_EQ(cfg_load_file(&back, path, &err), 0);
	free(err);
	CHECK(cfg_find_target(&back, "iqn.2026-11.org.x:saved") != NULL);
	cfg_free(&back);

	/* Saving again replaces the file; no temporary file is left behind. */
	CHECK_EQ(cfg_save(&c, path, &err), 0);
	free(err);
	DIR *d = opendir(dir);
	int entries = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			entries++;
	if (d)
		closedir(d);
	CHECK_EQ(entries, 3); /* target.conf, victim, the planted link */

	/* A directory that cannot be written: an error naming the file, nothing changed. */
	CHECK_EQ(cfg_save(&c, "/nonexistent-dir/isthmus/target.conf", &err), -1);
	CHECK(err && strstr(err, "/nonexistent-dir/isthmus/target.conf"));
	free(err);

	cfg_free(&c);
	unlink(planted);
	unlink(victim);
	unlink(path);
	rmdir(dir);
	free(planted);
	free(victim);
	free(path);
}

/* isns and isns-entity: parsed, checked, and kept by the writer (cfg_clone goes through it). */
static void test_isns_keys(void)
{
	struct cfg c;
	cfg_init(&c);
	char *err = NULL;
	int rc = cfg_load_string(&c, "t.conf",
				 "[global]\nisns = [2001:db8::7]:3206\nisns-entity = storage-1\nisns-access = yes\n"
				 "[target iqn.2026-11.org.x:t]\nlun 0 = memory,size=8M\n",
				 &err);
	CHECK_EQ(rc, 0);
	CHECK_STR(c.isns, "[2001:db8::7]:3206");
	CHECK_STR(c.isns_entity, "storage-1");
	CHECK(c.isns_access);
	struct cfg *copy = cfg_clone(&c, &err);
	CHECK(copy != NULL);
	if (copy) {
		CHECK_STR(copy->isns, "[2001:db8::7]:3206");
		CHECK_STR(copy->isns_entity, "storage-1");
		CHECK(copy->isns_access);
		cfg_free(copy);
		free(copy);
	}
	cfg_free(&c);
	cfg_init(&c);
	CHECK_EQ(cfg_load_string(&c, "t.conf", "[global]\nisns = isns.example.org\n", &err), -1);
	CHECK(err && strstr(err, "t.conf:2") && strstr(err, "numeric"));
	free(err);
	err = NULL;
	cfg_free(&c);
	cfg_init(&c);
	CHECK_EQ(cfg_load_string(&c, "t.conf", "[global]\nisns-access = maybe\n", &err), -1);
	CHECK(err && strstr(err, "yes or no"));
	free(err);
	cfg_free(&c);
	printf("ok: isns, isns-entity and isns-access parsed, a host name refused, all kept by the writer\n");
}

/* gateway and gateway-portal: parsed, checked against the portal group, kept by the writer. */
static void test_gateway_keys(void)
{
	struct cfg c;
	cfg_init(&c);
	char *err = NULL;
	int rc = cfg_load_string(&c, "t.conf",
				 "[portal-group 2]\nlisten = 127.0.0.1:3262\n"
				 "[target iqn.2026-11.org.x:t]\ngateway = 2\ngateway-portal = 1 127.0.0.1:3261\n"
				 "gateway-portal = 2 127.0.0.1:3262\ngateway-portal = 3 [::1]:3263\nlun 0 = memory,size=8M\n",
				 &err);
	CHECK_EQ(rc, 0);
	CHECK_EQ(cfg_validate(&c, &err), 0);
	CHECK_EQ(c.targets[0].gateway, 2);
	CHECK_EQ(c.targets[0].tpgt, 2);
	CHECK_EQ(c.targets[0].ngateways, 3);
	struct cfg *copy = cfg_clone(&c, &err);
	CHECK(copy != NULL);
	if (copy) {
		const struct cfg_target *t = &copy->targets[0];
		CHECK_EQ(t->gateway, 2);
		CHECK_EQ(t->ngateways, 3);
		const struct cfg_gateway *g = cfg_find_gateway(t, 3);
		CHECK(g && strcmp(g->host, "::1") == 0 && g->port == 3263);
		cfg_free(copy);
		free(copy);
	}
	cfg_free(&c);
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "gateway = 1\ngateway-portal = 2 127.0.0.1:3262\n", "no gateway-portal names" },
		{ "gateway-portal = 1 127.0.0.1:3262\n", "not which gateway" },
		{ "gateway = 1\nportal-group = 2\ngateway-portal = 1 127.0.0.1:3262\n", "portal-group must be" },
		{ "gateway = 1\ngateway-portal = 1 host.example:3262\n", "numeric" },
		{ "gateway = 1\ngateway-portal = 1 127.0.0.1\n", "HOST:PORT" },
		{ "gateway = 1\ngateway-portal = 1 127.0.0.1:1\ngateway-portal = 1 127.0.0.1:2\n", "twice" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text = xasprintf("[portal-group 1]\nlisten = 127.0.0.1:3261\n[portal-group 2]\n"
				       "listen = 127.0.0.1:3262\n[target iqn.2026-11.org.x:t]\n%s", bad[i].text);
		cfg_init(&c);
		err = NULL;
		rc = cfg_load_string(&c, "t.conf", text, &err);
		if (rc == 0)
			rc = cfg_validate(&c, &err);
		CHECK_EQ(rc, -1);
		CHECK(err && strstr(err, bad[i].why));
		if (!err || !strstr(err, bad[i].why))
			printf("case %zu: %s\n", i, err ? err : "(no error)");
		free(err);
		free(text);
		cfg_free(&c);
	}
	printf("ok: gateway keys parsed, checked and kept by the writer\n");
}

int main(void)
{
	test_gateway_keys();
	test_isns_keys();
	test_example_and_round_trip();
	test_errors();
	test_validate();
	test_lun_spec();
	test_listen();
	test_format_api();
	test_value_syntax();
	test_limits();
	test_threads_default();
	test_save_safely();
	TEST_MAIN_END();
}
