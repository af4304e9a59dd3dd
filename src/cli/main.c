/* isthmus: one-shot initiator commands on top of libisthmus (no daemon). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/daemon_cmd.h"
#include "cli/target_cmd.h"
#include "isthmus/isthmus.h"
#include "util/bytes.h"

struct opts {
	bool json;
	const char *chap_user, *chap_secret, *mutual_user, *mutual_secret;
	const char *header_digest, *data_digest;
	const char *chap_alg;
	const char *initiator_name_opt;
	const char *alias;
	char initiator_name[256];
	int page;
	bool has_lba, has_blocks;
	uint64_t lba, blocks;
	const char *out, *in;
	int connections, io;
	bool reinstate;
	int timeout_s;
	int depth;
	uint32_t io_kib;
};

static const char *cmd_name = "isthmus";
static bool json_mode;

static void usage(FILE *f)
{
	fputs("usage: isthmus COMMAND [OPTIONS]\n"
	      "\n"
	      "commands:\n"
	      "  discover PORTAL                 list targets (SendTargets=All) at host[:port] or [v6][:port]\n"
	      "  inquiry URL [--page N]          standard INQUIRY, or the VPD page N\n"
	      "  readcapacity URL                READ CAPACITY(16) (falls back to 10)\n"
	      "  reportluns URL                  REPORT LUNS\n"
	      "  read URL --lba N --blocks N [--out FILE]\n"
	      "  write URL --lba N --in FILE\n"
	      "  session-test URL --connections N --io N [--reinstate]\n"
	      "  target ...                      manage a running isthmus-target (isthmus target --help)\n"
	      "  login, logout, session, persistent, chap, discover --daemon\n"
	      "                                  through the initiator daemon (isthmus login --help)\n"
	      "\n"
	      "URL: iscsi://[user[%password]@]host[:port]/target-iqn/lun[?target_user=U&target_password=P]\n"
	      "\n"
	      "options:\n"
	      "  --chap-user U --chap-secret S        CHAP credentials the initiator proves\n"
	      "  --mutual-user U --mutual-secret S    credentials the target must prove (mutual CHAP)\n"
	      "  --chap-alg LIST                      CHAP_A offer, e.g. sha256,sha1,md5 (default sha256,sha3-256,sha1,md5)\n"
	      "  --header-digest none|crc32c|prefer   default none (prefer offers CRC32C,None)\n"
	      "  --data-digest none|crc32c|prefer\n"
	      "  --initiator-name IQN                 default: initiator-name in $ISTHMUS_CONFIG or\n"
	      "                                       /etc/isthmus/initiator.conf, else one kept in\n"
	      "                                       $ISTHMUS_STATE_DIR (/var/lib/isthmus)/initiatorname\n"
	      "  --initiator-alias NAME\n"
	      "  --timeout SECONDS                    per command and per login (default 60 / 15)\n"
	      "  --depth N                            commands in flight for read/write (default 8)\n"
	      "  --io-size KIB                        transfer size per command (default 1024, session-test 64)\n"
	      "  --json                               print one JSON object\n",
	      f);
}

/* --json output: jansson values, printed as one compact line. */

/* A JSON string from C text (NULL: null); bytes that are not UTF-8 become '?'. */
static json_t *jstr(const char *v)
{
	if (!v)
		return json_null();
	json_t *r = json_string(v);
	if (r)
		return r;
	char *copy = strdup(v);
	if (!copy)
		return json_null();
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	r = json_string(copy);
	free(copy);
	return r ? r : json_null();
}

static json_t *jnum(uint64_t v) { return json_integer((json_int_t)v); }

/* Print the object as one line on standard output and release it. */
static void jprint(json_t *o)
{
	json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
	fputc('\n', stdout);
	json_decref(o);
}

/* One line to stderr (and {"error": ...} with --json), exit status 1. */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "isthmus: %s: %s\n", cmd_name, msg);
	if (json_mode) {
		json_t *j = json_object();
		json_object_set_new(j, "command", jstr(cmd_name));
		json_object_set_new(j, "error", jstr(msg));
		jprint(j);
	}
	return 1;
}

static int parse_digest(const char *v, bool *want, bool *require)
{
	if (!v || strcasecmp(v, "none") == 0)
		return 0;
	if (strcasecmp(v, "crc32c") == 0) {
		*want = true;
		*require = true;
		return 0;
	}
	if (strcasecmp(v, "prefer") == 0 || strcasecmp(v, "crc32c,none") == 0) {
		*want = true;
		return 0;
	}
	return -1;
}

static int make_config(struct opts *o, struct ism_config *cfg, const struct ism_url *u)
{
	ism_config_init(cfg);
	cfg->initiator_name = o->initiator_name;
	cfg->initiator_alias = o->alias;
	cfg->chap_user = o->chap_user;
	cfg->chap_secret = o->chap_secret;
	cfg->mutual_user = o->mutual_user;
	cfg->mutual_secret = o->mutual_secret;
	cfg->chap_algorithms = o->chap_alg;
	if (u && u->user) {
		cfg->chap_user = u->user;
		cfg->chap_secret = u->secret;
	}
	if (u && u->target_user) {
		cfg->mutual_user = u->target_user;
		cfg->mutual_secret = u->target_secret;
	}
	bool hreq = false, dreq = false;
	if (parse_digest(o->header_digest, &cfg->header_digest, &hreq) < 0)
		return fail("--header-digest takes none, crc32c or prefer, not '%s'", o->header_digest);
	if (parse_digest(o->data_digest, &cfg->data_digest, &dreq) < 0)
		return fail("--data-digest takes none, crc32c or prefer, not '%s'", o->data_digest);
	/* "crc32c" for one digest means: offer only CRC32C for that one. */
	cfg->require_digest = false;
	if (hreq && dreq)
		cfg->require_digest = true;
	if (o->timeout_s > 0) {
		cfg->cmd_timeout_ms = o->timeout_s * 1000;
		cfg->login_timeout_ms = o->timeout_s * 1000;
	}
	return 0;
}

static struct ism_url *parse_url(const char *s, bool need_target)
{
	char err[512];
	struct ism_url *u = ism_url_parse(s, err, sizeof(err));
	if (!u) {
		fail("%s", err);
		return NULL;
	}
	if (need_target && !u->target) {
		fail("URL '%s' names no target (iscsi://host[:port]/target-iqn/lun)", s);
		ism_url_free(u);
		return NULL;
	}
	return u;
}

/*
 * The first command after login usually meets a UNIT ATTENTION (power on / reset, I_T nexus
 * loss): take it with TEST UNIT READY so the real command sees the device's answer.
 */
static void settle(struct ism_session *s, uint64_t lun)
{
	for (int i = 0; i < 3 && ism_session_logged_in(s); i++) {
		struct ism_scsi_result r;
		uint8_t cdb[16];
		size_t cl = ism_cdb_test_unit_ready(cdb);
		int rc = ism_scsi(s, lun, cdb, cl, ISM_DIR_NONE, NULL, 0, &r);
		uint8_t key = 0, asc, ascq;
		if (rc == 0 || r.error != ISM_OK || r.status != 2 || !ism_sense_decode(r.sense, r.sense_len, &key, &asc, &ascq) ||
		    key != 6)
			break;
	}
	ism_session_clear_error(s);
}

/* Log in to the URL's target; NULL after printing the error. */
static struct ism_session *open_session(struct opts *o, const struct ism_url *u)
{
	struct ism_config cfg;
	if (make_config(o, &cfg, u) != 0)
		return NULL;
	cfg.target_name = u->target;
	char err[512];
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	if (!s) {
		fail("%s", err);
		return NULL;
	}
	if (ism_connect(s, u->portal) < 0) {
		fail("%s", ism_session_error(s));
		ism_session_free(s);
		return NULL;
	}
	settle(s, u->lun);
	return s;
}

static void close_session(struct ism_session *s)
{
	if (ism_session_logged_in(s))
		ism_logout(s);
	ism_session_free(s);
}

/* ------------------------------------------------------------------------------------------ */

static int cmd_discover(struct opts *o, const char *portal_arg)
{
	char portal[300];
	if (strncmp(portal_arg, "iscsi://", 8) == 0) {
		struct ism_url *u = parse_url(portal_arg, false);
		if (!u)
			return 1;
		snprintf(portal, sizeof(portal), "%s", u->portal);
		ism_url_free(u);
	} else {
		char host[256];
		uint16_t port;
		if (ism_parse_portal(portal_arg, host, sizeof(host), &port) < 0)
			return fail("bad portal '%s' (want host[:port] or [ipv6][:port])", portal_arg);
		snprintf(portal, sizeof(portal), "%s", portal_arg);
	}
	struct ism_config cfg;
	if (make_config(o, &cfg, NULL) != 0)
		return 1;
	struct ism_discovery *d = NULL;
	char err[512];
	if (ism_discover(&cfg, portal, &d, err, sizeof(err)) < 0)
		return fail("%s", err);
	if (o->json) {
		json_t *j = json_object(), *targets = json_array();
		json_object_set_new(j, "portal", jstr(portal));
		for (size_t i = 0; i < d->n; i++) {
			json_t *t = json_object(), *addrs = json_array();
			json_object_set_new(t, "name", jstr(d->targets[i].name));
			for (size_t k = 0; k < d->targets[i].naddr; k++)
				json_array_append_new(addrs, jstr(d->targets[i].addresses[k]));
			json_object_set_new(t, "addresses", addrs);
			json_array_append_new(targets, t);
		}
		json_object_set_new(j, "targets", targets);
		jprint(j);
	} else {
		for (size_t i = 0; i < d->n; i++) {
			printf("%s\n", d->targets[i].name);
			for (size_t k = 0; k < d->targets[i].naddr; k++)
				printf("    %s\n", d->targets[i].addresses[k]);
		}
	}
	ism_discovery_free(d);
	return 0;
}

static void trimmed(const uint8_t *p, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		out[k++] = isprint(p[i]) ? (char)p[i] : '.';
	while (k && out[k - 1] == ' ')
		k--;
	out[k] = 0;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

static const char *designator_type(uint8_t t)
{
	switch (t & 0x0f) {
	case 0: return "vendor specific";
	case 1: return "T10 vendor id";
	case 2: return "EUI-64";
	case 3: return "NAA";
	case 4: return "relative target port";
	case 5: return "target port group";
	case 6: return "logical unit group";
	case 7: return "MD5 logical unit";
	case 8: return "SCSI name string";
	default: return "reserved";
	}
}

static int cmd_inquiry(struct opts *o, const char *url)
{
	struct ism_url *u = parse_url(url, true);
	if (!u)
		return 1;
	struct ism_session *s = open_session(o, u);
	if (!s) {
		ism_url_free(u);
		return 1;
	}
	uint8_t buf[4096] = {0};
	uint32_t got = 0;
	int rc = 0;
	if (ism_inquiry(s, u->lun, o->page, buf, o->page < 0 ? 255 : sizeof(buf), &got) < 0) {
		rc = fail("%s", ism_session_error(s));
		goto out;
	}
	if (o->page < 0) {
		if (got < 36) {
			rc = fail("standard INQUIRY returned %u bytes, want at least 36", got);
			goto out;
		}
		char vendor[9], product[17], rev[5];
		trimmed(buf + 8, 8, vendor);
		trimmed(buf + 16, 16, product);
		trimmed(buf + 32, 4, rev);
		uint8_t qual = buf[0] >> 5, type = buf[0] & 0x1f;
		if (o->json) {
			json_t *j = json_object();
			json_object_set_new(j, "lun", jnum(u->lun));
			json_object_set_new(j, "peripheral_qualifier", jnum(qual));
			json_object_set_new(j, "device_type", jnum(type));
			json_object_set_new(j, "device_type_name", jstr(ism_device_type_str(type)));
			json_object_set_new(j, "removable", json_boolean(buf[1] & 0x80));
			json_object_set_new(j, "version", jnum(buf[2]));
			json_object_set_new(j, "vendor", jstr(vendor));
			json_object_set_new(j, "product", jstr(product));
			json_object_set_new(j, "revision", jstr(rev));
			jprint(j);
		} else {
			printf("Peripheral Qualifier: %u%s\n", qual, qual == 0 ? " (connected)" : "");
			printf("Device Type: %s (0x%02x)\n", ism_device_type_str(type), type);
			printf("Removable: %s\n", (buf[1] & 0x80) ? "yes" : "no");
			printf("Version: 0x%02x\n", buf[2]);
			printf("Vendor: %s\n", vendor);
			printf("Product: %s\n", product);
			printf("Revision: %s\n", rev);
		}
		goto out;
	}
	if (got < 4) {
		rc = fail("VPD page 0x%02x returned %u bytes", o->page, got);
		goto out;
	}
	uint32_t plen = get_be16(buf + 2) + 4;
	if (plen > got)
		plen = got;
	char *hx = malloc(2 * plen + 1);
	hex(buf, plen, hx);
	json_t *j = NULL, *list = NULL;
	if (o->json) {
		j = json_object();
		json_object_set_new(j, "lun", jnum(u->lun));
		json_object_set_new(j, "page", jnum(buf[1]));
		json_object_set_new(j, "length", jnum(plen));
		json_object_set_new(j, "hex", jstr(hx));
	} else {
		printf("VPD page 0x%02x (%u bytes)\n", buf[1], plen);
	}
	if (buf[1] == 0x00) {
		if (o->json)
			list = json_array();
		for (uint32_t i = 4; i < plen; i++) {
			if (o->json)
				json_array_append_new(list, jnum(buf[i]));
			else
				printf("  supported page 0x%02x\n", buf[i]);
		}
		if (o->json)
			json_object_set_new(j, "supported_pages", list);
	} else if (buf[1] == 0x80) {
		char serial[300];
		trimmed(buf + 4, plen - 4 < 255 ? plen - 4 : 255, serial);
		if (o->json)
			json_object_set_new(j, "serial", jstr(serial));
		else
			printf("  unit serial number: %s\n", serial);
	} else if (buf[1] == 0x83) {
		if (o->json)
			list = json_array();
		for (uint32_t p = 4; p + 4 <= plen;) {
			uint8_t codeset = buf[p] & 0x0f, dtype = buf[p + 1] & 0x0f, dlen = buf[p + 3];
			if (p + 4 + dlen > plen)
				break;
			char val[600];
			if (codeset == 2 || codeset == 3)
				trimmed(buf + p + 4, dlen, val);
			else
				hex(buf + p + 4, dlen, val);
			if (o->json) {
				json_t *d = json_object();
				json_object_set_new(d, "type", jstr(designator_type(dtype)));
				json_object_set_new(d, "association", jnum((buf[p + 1] >> 4) & 3));
				json_object_set_new(d, "value", jstr(val));
				json_array_append_new(list, d);
			} else {
				printf("  %s: %s\n", designator_type(dtype), val);
			}
			p += 4 + dlen;
		}
		if (o->json)
			json_object_set_new(j, "designators", list);
	} else if (!o->json) {
		printf("  %s\n", hx);
	}
	if (o->json)
		jprint(j);
	free(hx);
out:
	close_session(s);
	ism_url_free(u);
	return rc;
}

static int get_capacity(struct ism_session *s, uint64_t lun, uint64_t *last, uint32_t *bs)
{
	if (ism_read_capacity16(s, lun, last, bs) == 0)
		return 0;
	uint32_t l10;
	if (ism_read_capacity10(s, lun, &l10, bs) == 0) {
		*last = l10;
		return 0;
	}
	return -1;
}

static int cmd_readcapacity(struct opts *o, const char *url)
{
	struct ism_url *u = parse_url(url, true);
	if (!u)
		return 1;
	struct ism_session *s = open_session(o, u);
	if (!s) {
		ism_url_free(u);
		return 1;
	}
	uint64_t last;
	uint32_t bs;
	int rc = 0;
	if (get_capacity(s, u->lun, &last, &bs) < 0) {
		rc = fail("%s", ism_session_error(s));
	} else if (o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "lun", jnum(u->lun));
		json_object_set_new(j, "last_lba", jnum(last));
		json_object_set_new(j, "blocks", jnum(last + 1));
		json_object_set_new(j, "block_size", jnum(bs));
		json_object_set_new(j, "bytes", jnum((last + 1) * bs));
		jprint(j);
	} else {
		printf("Last LBA: %" PRIu64 "\nBlocks: %" PRIu64 "\nBlock size: %u\nBytes: %" PRIu64 "\n", last,
		       last + 1, bs, (last + 1) * bs);
	}
	close_session(s);
	ism_url_free(u);
	return rc;
}

static int cmd_reportluns(struct opts *o, const char *url)
{
	struct ism_url *u = parse_url(url, true);
	if (!u)
		return 1;
	struct ism_session *s = open_session(o, u);
	if (!s) {
		ism_url_free(u);
		return 1;
	}
	uint64_t luns[1024];
	size_t n = 1024;
	int rc = 0;
	if (ism_report_luns(s, luns, &n) < 0) {
		rc = fail("%s", ism_session_error(s));
	} else {
		if (n > 1024)
			n = 1024;
		if (o->json) {
			json_t *j = json_object(), *list = json_array();
			json_object_set_new(j, "target", jstr(u->target));
			for (size_t i = 0; i < n; i++)
				json_array_append_new(list, jnum(luns[i]));
			json_object_set_new(j, "luns", list);
			jprint(j);
		} else {
			for (size_t i = 0; i < n; i++)
				printf("LUN %" PRIu64 "\n", luns[i]);
		}
	}
	close_session(s);
	ism_url_free(u);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Pipelined reads and writes: up to depth commands in flight, refilled from their callbacks. */

struct pipe {
	struct ism_session *s;
	uint64_t lun;
	bool write;
	uint64_t lba, blocks, next_block;
	uint32_t bs, chunk_blocks;
	uint8_t *buf;
	int inflight;
	bool error;
	char err[512];
};

static void pipe_submit(struct pipe *p);

static void pipe_done(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	struct pipe *p = priv;
	(void)s;
	p->inflight--;
	if (r->error != ISM_OK || r->status != 0) {
		if (!p->error) {
			p->error = true;
			if (r->error != ISM_OK && ism_session_error(s)[0])
				snprintf(p->err, sizeof(p->err), "%s", ism_session_error(s));
			else
				ism_result_text(r, p->err, sizeof(p->err));
		}
		return;
	}
	if (!p->write && r->underflow && r->residual) {
		if (!p->error) {
			p->error = true;
			snprintf(p->err, sizeof(p->err), "short read: %u bytes missing", r->residual);
		}
		return;
	}
	pipe_submit(p);
}

static void pipe_submit(struct pipe *p)
{
	if (p->error || p->next_block >= p->blocks)
		return;
	uint64_t n = p->blocks - p->next_block;
	if (n > p->chunk_blocks)
		n = p->chunk_blocks;
	uint64_t lba = p->lba + p->next_block;
	uint8_t cdb[16];
	size_t cl;
	if (lba + n <= 0xffffffffull && n <= 0xffff)
		cl = ism_cdb_rw10(cdb, p->write, (uint32_t)lba, (uint16_t)n);
	else
		cl = ism_cdb_rw16(cdb, p->write, lba, (uint32_t)n);
	uint8_t *data = p->buf + p->next_block * p->bs;
	p->next_block += n;
	p->inflight++;
	if (!ism_scsi_async(p->s, p->lun, cdb, cl, p->write ? ISM_DIR_WRITE : ISM_DIR_READ, data, (uint32_t)(n * p->bs),
			    pipe_done, p)) {
		p->inflight--;
		p->error = true;
		snprintf(p->err, sizeof(p->err), "%s", ism_session_error(p->s));
	}
}

static int pipe_run(struct pipe *p, int depth)
{
	for (int i = 0; i < depth; i++)
		pipe_submit(p);
	if (ism_session_wait(p->s) < 0 && !p->error) {
		p->error = true;
		snprintf(p->err, sizeof(p->err), "%s", ism_session_error(p->s));
	}
	return p->error ? -1 : 0;
}

static int cmd_rw(struct opts *o, const char *url, bool write)
{
	if (!o->has_lba)
		return fail("--lba is required");
	if (write && !o->in)
		return fail("--in FILE is required");
	if (!write && !o->has_blocks)
		return fail("--blocks is required");
	if (!write && !o->out && o->json)
		return fail("--json needs --out FILE (the data would go to standard output)");
	struct ism_url *u = parse_url(url, true);
	if (!u)
		return 1;
	uint8_t *buf = NULL;
	size_t size = 0;
	int rc = 0;
	if (write) {
		int fd = open(o->in, O_RDONLY);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			rc = fail("cannot read %s: %s", o->in, strerror(errno));
			if (fd >= 0)
				close(fd);
			ism_url_free(u);
			return rc;
		}
		size = (size_t)st.st_size;
		buf = malloc(size ? size : 1);
		size_t have = 0;
		while (buf && have < size) {
			ssize_t r = read(fd, buf + have, size - have);
			if (r <= 0)
				break;
			have += (size_t)r;
		}
		close(fd);
		if (!buf || have != size) {
			free(buf);
			ism_url_free(u);
			return fail("cannot read %s", o->in);
		}
	}
	struct ism_session *s = open_session(o, u);
	if (!s) {
		free(buf);
		ism_url_free(u);
		return 1;
	}
	uint64_t last;
	uint32_t bs;
	if (get_capacity(s, u->lun, &last, &bs) < 0) {
		rc = fail("%s", ism_session_error(s));
		goto out;
	}
	uint64_t blocks;
	if (write) {
		if (size % bs)
			rc = fail("%s is %zu bytes, not a multiple of the %u-byte block size", o->in, size, bs);
		blocks = size / bs;
		if (o->has_blocks && o->blocks != blocks && !rc)
			rc = fail("--blocks %" PRIu64 " does not match the %" PRIu64 " blocks of %s", o->blocks, blocks,
				  o->in);
	} else {
		blocks = o->blocks;
		if (blocks * bs > (uint64_t)SIZE_MAX / 2)
			rc = fail("transfer too large");
		else
			buf = malloc(blocks * bs + 1);
	}
	if (rc)
		goto out;
	if (o->lba > last + 1 || blocks > last + 1 - o->lba) {
		rc = fail("LBA %" PRIu64 " + %" PRIu64 " blocks goes past the end of the LUN (%" PRIu64 " blocks)",
			  o->lba, blocks, last + 1);
		goto out;
	}
	struct pipe p = {.s = s, .lun = u->lun, .write = write, .lba = o->lba, .blocks = blocks, .bs = bs, .buf = buf};
	uint64_t chunk = (uint64_t)o->io_kib * 1024 / bs;
	p.chunk_blocks = (uint32_t)(chunk ? chunk : 1);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pipe_run(&p, o->depth) < 0) {
		rc = fail("%s", p.err);
		goto out;
	}
	if (write && ism_synchronize_cache(s, u->lun) < 0) {
		rc = fail("SYNCHRONIZE CACHE: %s", ism_session_error(s));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (!write) {
		FILE *f = o->out ? fopen(o->out, "wb") : stdout;
		if (!f || fwrite(buf, 1, blocks * bs, f) != blocks * bs || (o->out && fclose(f) != 0)) {
			rc = fail("cannot write %s: %s", o->out ? o->out : "standard output", strerror(errno));
			goto out;
		}
		if (!o->out)
			fflush(stdout);
	}
	if (o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "command", jstr(write ? "write" : "read"));
		json_object_set_new(j, "lun", jnum(u->lun));
		json_object_set_new(j, "lba", jnum(o->lba));
		json_object_set_new(j, "blocks", jnum(blocks));
		json_object_set_new(j, "block_size", jnum(bs));
		json_object_set_new(j, "bytes", jnum(blocks * bs));
		json_object_set_new(j, write ? "in" : "out", jstr(write ? o->in : o->out));
		json_object_set_new(j, "usec", jnum((uint64_t)(secs * 1e6)));
		jprint(j);
	} else if (o->out || write) {
		printf("%s %" PRIu64 " blocks of %u bytes at LBA %" PRIu64 " (%.1f MiB/s)\n", write ? "wrote" : "read",
		       blocks, bs, o->lba, secs > 0 ? (double)(blocks * bs) / secs / 1048576.0 : 0.0);
	}
out:
	close_session(s);
	free(buf);
	ism_url_free(u);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* session-test */

struct st_io {
	struct ism_session *s;
	int *inflight;
	int *failed;
	uint16_t cid;
	char err[256];
	bool done;
};

static void st_done(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	struct st_io *io = priv;
	(void)s;
	io->done = true;
	io->cid = r->cid;
	(*io->inflight)--;
	if (r->error != ISM_OK || r->status != 0) {
		(*io->failed)++;
		if (r->error != ISM_OK && ism_session_error(s)[0])
			snprintf(io->err, sizeof(io->err), "%s", ism_session_error(s));
		else
			ism_result_text(r, io->err, sizeof(io->err));
	}
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int reinstate_test(struct opts *o, const struct ism_url *u, json_t *j)
{
	struct ism_session *a = open_session(o, u);
	if (!a)
		return 1;
	if (ism_test_unit_ready(a, u->lun) < 0 && !ism_session_logged_in(a)) {
		int rc = fail("first session: %s", ism_session_error(a));
		ism_session_free(a);
		return rc;
	}
	ism_session_clear_error(a); /* a UNIT ATTENTION on the first command is not what we look for */
	struct ism_session_info ia, ib;
	ism_session_get_info(a, &ia);
	struct ism_session *b = open_session(o, u);
	if (!b) {
		ism_session_free(a);
		return 1;
	}
	ism_session_get_info(b, &ib);
	/* The target must drop the first session: its connection closes within a few seconds. */
	bool dropped = false;
	for (int i = 0; i < 100 && !dropped; i++) {
		struct pollfd fds[16];
		int n = ism_session_fds(a, fds, 16);
		if (n == 0) {
			dropped = true;
			break;
		}
		int r = poll(fds, (nfds_t)n, 100);
		for (int k = 0; r > 0 && k < n; k++)
			if (fds[k].revents && ism_session_service(a, fds[k].fd, fds[k].revents) < 0)
				dropped = true;
		if (ism_session_service(a, -1, 0) < 0 || !ism_session_logged_in(a))
			dropped = true;
		if (!dropped && i == 20) {
			/* Nudge: a command on the old session shows whether the target still has it. */
			uint8_t cdb[16];
			size_t cl = ism_cdb_test_unit_ready(cdb);
			static int inflight, failed;
			static struct st_io io;
			io.inflight = &inflight;
			io.failed = &failed;
			inflight++;
			if (!ism_scsi_async(a, u->lun, cdb, cl, ISM_DIR_NONE, NULL, 0, st_done, &io))
				dropped = true;
		}
	}
	char aerr[512];
	snprintf(aerr, sizeof(aerr), "%s", ism_session_error(a));
	ism_session_free(a);
	int rc = 0;
	if (!dropped) {
		rc = fail("the target kept the first session (ISID %02x%02x%02x%02x%02x%02x, TSIH %u) after a second "
			  "login with the same ISID",
			  ia.isid[0], ia.isid[1], ia.isid[2], ia.isid[3], ia.isid[4], ia.isid[5], ia.tsih);
	} else if (ism_test_unit_ready(b, u->lun) < 0 && !ism_session_logged_in(b)) {
		rc = fail("second session unusable after reinstatement: %s", ism_session_error(b));
	}
	if (!rc) {
		char isid[16];
		snprintf(isid, sizeof(isid), "%02x%02x%02x%02x%02x%02x", ia.isid[0], ia.isid[1], ia.isid[2], ia.isid[3],
			 ia.isid[4], ia.isid[5]);
		if (o->json) {
			json_t *r = json_object();
			json_object_set_new(r, "isid", jstr(isid));
			json_object_set_new(r, "first_tsih", jnum(ia.tsih));
			json_object_set_new(r, "second_tsih", jnum(ib.tsih));
			json_object_set_new(r, "first_dropped", json_true());
			json_object_set_new(r, "first_error", jstr(aerr));
			json_object_set_new(j, "reinstate", r);
		} else {
			printf("reinstatement: ISID %s, first session (TSIH %u) dropped by the target (%s), second session "
			       "(TSIH %u) works\n",
			       isid, ia.tsih, aerr[0] ? aerr : "closed", ib.tsih);
		}
	}
	close_session(b);
	return rc;
}

static int cmd_session_test(struct opts *o, const char *url)
{
	struct ism_url *u = parse_url(url, true);
	if (!u)
		return 1;
	if (o->connections < 1 || o->connections > 16) {
		ism_url_free(u);
		return fail("--connections takes 1 to 16");
	}
	if (o->io < 1) {
		ism_url_free(u);
		return fail("--io takes a positive number");
	}
	json_t *j = NULL;
	if (o->json) {
		j = json_object();
		json_object_set_new(j, "command", jstr("session-test"));
	}
	int rc = 0;
	if (o->reinstate) {
		rc = reinstate_test(o, u, j);
		if (rc) {
			json_decref(j);
			ism_url_free(u);
			return rc;
		}
	}
	struct ism_config cfg;
	if (make_config(o, &cfg, u) != 0) {
		json_decref(j);
		ism_url_free(u);
		return 1;
	}
	cfg.target_name = u->target;
	cfg.max_connections = (uint32_t)o->connections;
	char err[512];
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	if (!s) {
		json_decref(j);
		ism_url_free(u);
		return fail("%s", err);
	}
	uint8_t *wbuf = NULL, *rbuf = NULL;
	struct st_io *ios = NULL;
	if (ism_connect(s, u->portal) < 0) {
		rc = fail("%s", ism_session_error(s));
		goto out;
	}
	settle(s, u->lun);
	for (int i = 1; i < o->connections; i++) {
		uint16_t cid;
		if (ism_add_connection(s, u->portal, &cid) < 0) {
			rc = fail("adding connection %d of %d: %s", i + 1, o->connections, ism_session_error(s));
			goto out;
		}
	}
	uint16_t cids[16];
	int nconn = ism_session_connections(s, cids, 16);
	if (nconn != o->connections) {
		rc = fail("session has %d connections, want %d", nconn, o->connections);
		goto out;
	}
	uint64_t last;
	uint32_t bs;
	if (get_capacity(s, u->lun, &last, &bs) < 0) {
		rc = fail("%s", ism_session_error(s));
		goto out;
	}
	uint32_t iosize = o->io_kib * 1024;
	if (iosize < bs)
		iosize = bs;
	iosize -= iosize % bs;
	uint64_t per = iosize / bs;
	uint64_t slots = (last + 1) / per;
	if (slots == 0) {
		rc = fail("LUN too small for %u-byte I/Os", iosize);
		goto out;
	}
	size_t total = (size_t)o->io * iosize;
	wbuf = malloc(total);
	rbuf = malloc(total);
	ios = calloc((size_t)o->io, sizeof(*ios));
	if (!wbuf || !rbuf || !ios) {
		rc = fail("out of memory for %d I/Os of %u bytes", o->io, iosize);
		goto out;
	}
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)time(NULL);
	seed |= 1;
	for (size_t k = 0; k + 8 <= total; k += 8) {
		uint64_t v = xorshift(&seed);
		memcpy(wbuf + k, &v, 8);
	}
	/* Distinct LBAs for every I/O (wrapping only when the LUN is smaller than the test). */
	int inflight = 0, failed = 0;
	uint64_t wcount[16] = {0}, rcount[16] = {0};
	for (int phase = 0; phase < 2 && !rc; phase++) {
		bool write = phase == 0;
		int next = 0, depth = 32;
		memset(ios, 0, (size_t)o->io * sizeof(*ios));
		while ((next < o->io || inflight > 0) && !failed) {
			while (next < o->io && inflight < depth) {
				struct st_io *io = &ios[next];
				io->inflight = &inflight;
				io->failed = &failed;
				uint64_t lba = ((uint64_t)next % slots) * per;
				uint8_t cdb[16];
				size_t cl = lba + per <= 0xffffffffull ? ism_cdb_rw10(cdb, write, (uint32_t)lba, (uint16_t)per)
								       : ism_cdb_rw16(cdb, write, lba, (uint32_t)per);
				uint8_t *data = (write ? wbuf : rbuf) + (size_t)next * iosize;
				inflight++;
				if (!ism_scsi_async(s, u->lun, cdb, cl, write ? ISM_DIR_WRITE : ISM_DIR_READ, data, iosize,
						    st_done, io)) {
					inflight--;
					failed++;
					snprintf(io->err, sizeof(io->err), "%s", ism_session_error(s));
					break;
				}
				next++;
			}
			struct pollfd fds[16];
			int n = ism_session_fds(s, fds, 16);
			int to = ism_session_timeout_ms(s);
			if (n == 0) {
				if (!failed) {
					failed++;
					snprintf(ios[0].err, sizeof(ios[0].err), "%s", ism_session_error(s));
				}
				break;
			}
			int r = poll(fds, (nfds_t)n, to < 0 || to > 1000 ? 1000 : to);
			for (int k = 0; r > 0 && k < n; k++)
				if (fds[k].revents)
					ism_session_service(s, fds[k].fd, fds[k].revents);
			ism_session_service(s, -1, 0);
		}
		if (failed) {
			const char *why = "unknown error";
			for (int k = 0; k < o->io; k++)
				if (ios[k].err[0]) {
					why = ios[k].err;
					break;
				}
			rc = fail("%s phase: %s", write ? "write" : "read", why);
			break;
		}
		for (int k = 0; k < o->io; k++) {
			for (int c = 0; c < nconn; c++)
				if (cids[c] == ios[k].cid)
					(write ? wcount : rcount)[c]++;
		}
	}
	if (rc)
		goto out;
	/* With wrapping, a later write to the same slot wins: compare against the last writer. */
	for (int k = 0; k < o->io; k++) {
		int w = k;
		for (int later = k + (int)slots; later < o->io; later += (int)slots)
			w = later;
		if (memcmp(rbuf + (size_t)k * iosize, wbuf + (size_t)w * iosize, iosize) != 0) {
			rc = fail("data mismatch in I/O %d (LBA %" PRIu64 ")", k, ((uint64_t)k % slots) * per);
			goto out;
		}
	}
	for (int c = 0; c < nconn && o->io >= nconn; c++) {
		if (!wcount[c] || !rcount[c]) {
			rc = fail("connection CID %u carried %" PRIu64 " writes and %" PRIu64 " reads; I/O is not spread",
				  cids[c], wcount[c], rcount[c]);
			goto out;
		}
	}
	struct ism_session_info info;
	ism_session_get_info(s, &info);
	if (ism_logout(s) < 0) {
		rc = fail("logout: %s", ism_session_error(s));
		goto out;
	}
	if (o->json) {
		json_object_set_new(j, "connections", jnum((uint64_t)nconn));
		json_object_set_new(j, "ios", jnum((uint64_t)o->io));
		json_object_set_new(j, "io_size", jnum(iosize));
		json_object_set_new(j, "tsih", jnum(info.tsih));
		json_object_set_new(j, "verified", json_true());
		json_t *per = json_array();
		for (int c = 0; c < nconn; c++) {
			json_t *pc = json_object();
			json_object_set_new(pc, "cid", jnum(cids[c]));
			json_object_set_new(pc, "writes", jnum(wcount[c]));
			json_object_set_new(pc, "reads", jnum(rcount[c]));
			json_array_append_new(per, pc);
		}
		json_object_set_new(j, "per_connection", per);
	} else {
		printf("session-test: %d connection%s, %d writes and %d reads of %u bytes verified\n", nconn, nconn == 1 ? "" : "s", o->io, o->io,
		       iosize);
		for (int c = 0; c < nconn; c++)
			printf("    CID %u: %" PRIu64 " writes, %" PRIu64 " reads\n", cids[c], wcount[c], rcount[c]);
	}
out:
	if (o->json) {
		if (!rc)
			jprint(j);
		else
			json_decref(j);
	}
	free(wbuf);
	free(rbuf);
	free(ios);
	close_session(s);
	ism_url_free(u);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */

static int parse_u64(const char *opt, const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (errno || end == v || *end || v[0] == '-') {
		fprintf(stderr, "isthmus: %s takes a number, not '%s'\n", opt, v);
		return -1;
	}
	*out = x;
	return 0;
}

/* "sha256,md5" -> "7,5" */
static int chap_alg_list(const char *in, char *out, size_t outlen)
{
	static const struct {
		const char *name;
		char code;
	} algs[] = {{"md5", '5'}, {"sha1", '6'}, {"sha-1", '6'}, {"sha256", '7'}, {"sha-256", '7'},
		    {"sha3-256", '8'}, {"5", '5'}, {"6", '6'}, {"7", '7'}, {"8", '8'}};
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", in);
	size_t n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char code = 0;
		for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
			if (strcasecmp(tok, algs[i].name) == 0)
				code = algs[i].code;
		if (!code || n + 3 > outlen)
			return -1;
		if (n)
			out[n++] = ',';
		out[n++] = code;
	}
	out[n] = 0;
	return n ? 0 : -1;
}

int main(int argc, char **argv)
{
	/* Management of a running target has its own option set. */
	if (argc > 1 && strcmp(argv[1], "target") == 0)
		return cmd_target(argc - 1, argv + 1);
	/* Commands served by the initiator daemon (discover only with --daemon). */
	if (argc > 1) {
		static const char *const daemon_cmds[] = {"login", "logout", "session", "persistent", "chap"};
		for (size_t i = 0; i < sizeof(daemon_cmds) / sizeof(daemon_cmds[0]); i++)
			if (strcmp(argv[1], daemon_cmds[i]) == 0)
				return cmd_daemon(argc - 1, argv + 1);
		if (strcmp(argv[1], "discover") == 0)
			for (int i = 2; i < argc; i++)
				if (strcmp(argv[i], "--daemon") == 0)
					return cmd_daemon(argc - 1, argv + 1);
	}
	static char chap_alg_buf[64];
	enum {
		O_CHAP_USER = 1000, O_CHAP_SECRET, O_MUTUAL_USER, O_MUTUAL_SECRET, O_HDIGEST, O_DDIGEST, O_INAME,
		O_ALIAS, O_PAGE, O_LBA, O_BLOCKS, O_OUT, O_IN, O_CONNS, O_IO, O_REINSTATE, O_JSON, O_TIMEOUT,
		O_DEPTH, O_IOSIZE, O_CHAP_ALG,
	};
	static const struct option longopts[] = {
		{"chap-user", required_argument, NULL, O_CHAP_USER},
		{"chap-secret", required_argument, NULL, O_CHAP_SECRET},
		{"mutual-user", required_argument, NULL, O_MUTUAL_USER},
		{"mutual-secret", required_argument, NULL, O_MUTUAL_SECRET},
		{"header-digest", required_argument, NULL, O_HDIGEST},
		{"data-digest", required_argument, NULL, O_DDIGEST},
		{"initiator-name", required_argument, NULL, O_INAME},
		{"initiator-alias", required_argument, NULL, O_ALIAS},
		{"page", required_argument, NULL, O_PAGE},
		{"lba", required_argument, NULL, O_LBA},
		{"blocks", required_argument, NULL, O_BLOCKS},
		{"out", required_argument, NULL, O_OUT},
		{"in", required_argument, NULL, O_IN},
		{"connections", required_argument, NULL, O_CONNS},
		{"io", required_argument, NULL, O_IO},
		{"reinstate", no_argument, NULL, O_REINSTATE},
		{"json", no_argument, NULL, O_JSON},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"depth", required_argument, NULL, O_DEPTH},
		{"io-size", required_argument, NULL, O_IOSIZE},
		{"chap-alg", required_argument, NULL, O_CHAP_ALG},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.page = -1, .connections = 1, .io = 64, .depth = 8, .io_kib = 0};
	uint64_t v;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case O_CHAP_USER: o.chap_user = optarg; break;
		case O_CHAP_SECRET: o.chap_secret = optarg; break;
		case O_MUTUAL_USER: o.mutual_user = optarg; break;
		case O_MUTUAL_SECRET: o.mutual_secret = optarg; break;
		case O_HDIGEST: o.header_digest = optarg; break;
		case O_DDIGEST: o.data_digest = optarg; break;
		case O_INAME: o.initiator_name_opt = optarg; break;
		case O_ALIAS: o.alias = optarg; break;
		case O_PAGE:
			if (parse_u64("--page", optarg, &v) < 0 || v > 255)
				return 2;
			o.page = (int)v;
			break;
		case O_LBA:
			if (parse_u64("--lba", optarg, &o.lba) < 0)
				return 2;
			o.has_lba = true;
			break;
		case O_BLOCKS:
			if (parse_u64("--blocks", optarg, &o.blocks) < 0)
				return 2;
			o.has_blocks = true;
			break;
		case O_OUT: o.out = optarg; break;
		case O_IN: o.in = optarg; break;
		case O_CONNS:
			if (parse_u64("--connections", optarg, &v) < 0 || v > 16)
				return 2;
			o.connections = (int)v;
			break;
		case O_IO:
			if (parse_u64("--io", optarg, &v) < 0 || v > 1000000)
				return 2;
			o.io = (int)v;
			break;
		case O_REINSTATE: o.reinstate = true; break;
		case O_JSON: o.json = true; break;
		case O_TIMEOUT:
			if (parse_u64("--timeout", optarg, &v) < 0 || v > 3600)
				return 2;
			o.timeout_s = (int)v;
			break;
		case O_DEPTH:
			if (parse_u64("--depth", optarg, &v) < 0 || v < 1 || v > 128)
				return 2;
			o.depth = (int)v;
			break;
		case O_IOSIZE:
			if (parse_u64("--io-size", optarg, &v) < 0 || v < 1 || v > 16384)
				return 2;
			o.io_kib = (uint32_t)v;
			break;
		case O_CHAP_ALG:
			if (chap_alg_list(optarg, chap_alg_buf, sizeof(chap_alg_buf)) < 0) {
				fprintf(stderr, "isthmus: --chap-alg takes a list of md5, sha1, sha256, sha3-256\n");
				return 2;
			}
			o.chap_alg = chap_alg_buf;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	json_mode = o.json;
	const char *dbg = getenv("ISTHMUS_DEBUG");
	if (dbg && *dbg && strcmp(dbg, "0") != 0)
		ism_set_debug(true);
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	cmd_name = cmd;
	int nargs = argc - optind - 1;
	char **args = argv + optind + 1;
	if (nargs != 1) {
		fprintf(stderr, "isthmus: %s takes exactly one %s argument\n", cmd,
			strcmp(cmd, "discover") == 0 ? "PORTAL" : "URL");
		return 2;
	}
	char err[512];
	if (cli_initiator_name(o.initiator_name_opt, o.initiator_name, sizeof(o.initiator_name), err, sizeof(err)) < 0)
		return fail("%s", err);
	if (strcmp(cmd, "discover") == 0)
		return cmd_discover(&o, args[0]);
	if (strcmp(cmd, "inquiry") == 0)
		return cmd_inquiry(&o, args[0]);
	if (strcmp(cmd, "readcapacity") == 0)
		return cmd_readcapacity(&o, args[0]);
	if (strcmp(cmd, "reportluns") == 0)
		return cmd_reportluns(&o, args[0]);
	if (strcmp(cmd, "read") == 0 || strcmp(cmd, "write") == 0) {
		if (!o.io_kib)
			o.io_kib = 1024;
		return cmd_rw(&o, args[0], cmd[0] == 'w');
	}
	if (strcmp(cmd, "session-test") == 0) {
		if (!o.io_kib)
			o.io_kib = 64;
		return cmd_session_test(&o, args[0]);
	}
	fprintf(stderr, "isthmus: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
