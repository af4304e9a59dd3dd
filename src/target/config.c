#include "target/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/iscsi_name.h"
#include "util/sbuf.h"

#define DEFAULT_PORT 3260
#define MAX_LUN 16383 /* flat space addressing (SAM-5) reaches 14 bits */
#define MIN_SECRET 12 /* 96 bits: RFC 7143 wants CHAP secrets at least this strong */
#define MAX_SECRET 255
#define MAX_NOP 86400
#define DEFAULT_MAX_COMMANDS 128
#define MAX_COMMANDS 4096 /* the hold ring is sized to the window */

static char *vformat(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0) {
		fputs("isthmus: out of memory\n", stderr);
		abort();
	}
	return s;
}

static int fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = vformat(fmt, ap);
	va_end(ap);
	if (err)
		*err = s;
	else
		free(s);
	return -1;
}

void cfg_init(struct cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* Where a packaged daemon keeps state; make run and the tests pass a directory of their own. */
	cfg->state_dir = xstrdup(CFG_DEFAULT_STATE_DIR);
	cfg->nop_interval = 5;
	cfg->nop_timeout = 30;
	cfg->max_commands = DEFAULT_MAX_COMMANDS;
	cfg->max_data_connection = 512ull << 20;
	cfg->max_data_session = 1ull << 30;
	cfg->max_data_total = 4ull << 30;
	cfg->data_out_timeout = 30;
	cfg->max_connections = CFG_MAX_CONNECTIONS_DEFAULT;
	cfg->max_connections_per_portal = CFG_MAX_PORTAL_CONNECTIONS_DEFAULT;
	cfg->mgmt_max_clients = CFG_MGMT_MAX_CLIENTS_DEFAULT;
}

static void chap_free(struct cfg_chap *c)
{
	free(c->user);
	free(c->secret);
	free(c->mutual_user);
	free(c->mutual_secret);
	memset(c, 0, sizeof(*c));
}

static void target_free(struct cfg_target *t)
{
	free(t->name);
	free(t->alias);
	for (size_t i = 0; i < t->nluns; i++) {
		free(t->luns[i].path);
		free(t->luns[i].serial);
		free(t->luns[i].vendor);
		free(t->luns[i].product);
	}
	free(t->luns);
	for (size_t i = 0; i < t->nacl; i++)
		free(t->acl[i]);
	free(t->acl);
	chap_free(&t->chap);
	for (size_t i = 0; i < t->naccounts; i++) {
		free(t->accounts[i].initiator);
		chap_free(&t->accounts[i].chap);
	}
	free(t->accounts);
	text_clear(&t->params);
}

void cfg_free(struct cfg *cfg)
{
	for (size_t i = 0; i < cfg->nportals; i++)
		free(cfg->portals[i].host);
	free(cfg->portals);
	for (size_t i = 0; i < cfg->ntargets; i++)
		target_free(&cfg->targets[i]);
	free(cfg->targets);
	chap_free(&cfg->discovery_chap);
	free(cfg->state_dir);
	free(cfg->mgmt_socket);
	free(cfg->source);
	free(cfg->groups);
	memset(cfg, 0, sizeof(*cfg));
}

/* Unsigned decimal without sign, spaces or overflow. */
static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	if (!*s)
		return -1;
	unsigned long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (max - (unsigned long)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

int cfg_parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	uint64_t v = 0;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	/* Sizes are binary whatever the spelling: people write 1G, 1GB and 1GiB for the same disk. */
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{"", 0},     {"b", 0},     {"k", 10},    {"kb", 10},   {"kib", 10}, {"m", 20},   {"mb", 20},
		{"mib", 20}, {"g", 30},    {"gb", 30},   {"gib", 30},  {"t", 40},   {"tb", 40},  {"tib", 40},
		{"p", 50},   {"pb", 50},   {"pib", 50},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		if (units[i].shift && v > UINT64_MAX >> units[i].shift)
			return -1;
		*out = v << units[i].shift;
		return 0;
	}
	return -1;
}

int cfg_check_secret(const char *what, const char *secret, char **err)
{
	size_t len = strlen(secret);
	if (len < MIN_SECRET)
		return fail(err, "%s is %zu bytes; CHAP secrets must be at least %d bytes (96 bits, RFC 7143)", what,
			    len, MIN_SECRET);
	if (len > MAX_SECRET)
		return fail(err, "%s is %zu bytes; CHAP secrets may be at most %d bytes", what, len, MAX_SECRET);
	if (strpbrk(secret, "\r\n"))
		return fail(err, "%s contains a line break", what);
	return 0;
}

void cfg_add_group(struct cfg *cfg, uint16_t tpgt)
{
	for (size_t i = 0; i < cfg->ngroups; i++)
		if (cfg->groups[i] == tpgt)
			return;
	cfg->groups = xrealloc(cfg->groups, (cfg->ngroups + 1) * sizeof(*cfg->groups));
	cfg->groups[cfg->ngroups++] = tpgt;
}

static bool group_declared(const struct cfg *cfg, uint16_t tpgt)
{
	for (size_t i = 0; i < cfg->ngroups; i++)
		if (cfg->groups[i] == tpgt)
			return true;
	return false;
}

static bool group_has_portal(const struct cfg *cfg, uint16_t tpgt)
{
	for (size_t i = 0; i < cfg->nportals; i++)
		if (cfg->portals[i].tpgt == tpgt)
			return true;
	return false;
}

int cfg_add_listen_group(struct cfg *cfg, const char *spec, uint16_t tpgt, char **err)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port = NULL;
	size_t hlen;
	if (tpgt == 0)
		return fail(err, "portal group tag 0 is reserved; use 1 to 65535");
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close)
			return fail(err, "listen address '%s' lacks the closing ']'", spec);
		hlen = (size_t)(close - spec - 1);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != 0)
			return fail(err, "listen address '%s' has junk after ']'", spec);
		spec++;
	} else {
		const char *colon = strchr(spec, ':');
		/* More than one ':' without brackets can only be a bare IPv6 address. */
		if (colon && !strchr(colon + 1, ':')) {
			hlen = (size_t)(colon - spec);
			port = colon + 1;
		} else {
			hlen = strlen(spec);
		}
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return fail(err, "listen address '%s' has no valid host", spec);
	memcpy(host, spec, hlen);
	host[hlen] = 0;
	unsigned long portnum = DEFAULT_PORT;
	if (port && parse_uint(port, 1, 65535, &portnum) < 0)
		return fail(err, "listen port '%s' is not a number from 1 to 65535", port);

	/* Store the canonical spelling so that equal addresses compare equal. */
	unsigned char addr[sizeof(struct in6_addr)];
	char canon[INET6_ADDRSTRLEN];
	if (inet_pton(AF_INET, host, addr) == 1)
		inet_ntop(AF_INET, addr, canon, sizeof(canon));
	else if (inet_pton(AF_INET6, host, addr) == 1)
		inet_ntop(AF_INET6, addr, canon, sizeof(canon));
	else
		return fail(err, "listen host '%s' is not a numeric IPv4 or IPv6 address", host);

	for (size_t i = 0; i < cfg->nportals; i++) {
		const struct cfg_portal *p = &cfg->portals[i];
		if (p->port == portnum && strcmp(p->host, canon) == 0)
			return fail(err, "%s%s%s:%lu is already a portal (of portal group %u)", strchr(canon, ':') ? "[" : "",
				    canon, strchr(canon, ':') ? "]" : "", portnum, p->tpgt);
	}
	cfg->portals = xrealloc(cfg->portals, (cfg->nportals + 1) * sizeof(*cfg->portals));
	cfg->portals[cfg->nportals++] = (struct cfg_portal){xstrdup(canon), (uint16_t)portnum, tpgt};
	cfg_add_group(cfg, tpgt);
	return 0;
}

int cfg_add_listen(struct cfg *cfg, const char *spec, char **err) { return cfg_add_listen_group(cfg, spec, 1, err); }

struct cfg_target *cfg_find_target(const struct cfg *cfg, const char *name)
{
	/* iSCSI names compare case-insensitively (RFC 3722 folds case); eui./naa. hex may differ. */
	for (size_t i = 0; i < cfg->ntargets; i++)
		if (strcasecmp(cfg->targets[i].name, name) == 0)
			return &cfg->targets[i];
	return NULL;
}

struct cfg_target *cfg_add_target(struct cfg *cfg, const char *name, char **err)
{
	char why[128];
	if (!iscsi_name_valid(name, why, sizeof(why))) {
		fail(err, "invalid iSCSI name '%s': %s", name, why);
		return NULL;
	}
	if (cfg_find_target(cfg, name)) {
		fail(err, "target '%s' is defined twice", name);
		return NULL;
	}
	cfg->targets = xrealloc(cfg->targets, (cfg->ntargets + 1) * sizeof(*cfg->targets));
	struct cfg_target *t = &cfg->targets[cfg->ntargets++];
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(name);
	t->tpgt = 1;
	return t;
}

static struct cfg_lun *find_lun(const struct cfg_target *t, unsigned lun)
{
	for (size_t i = 0; i < t->nluns; i++)
		if (t->luns[i].lun == lun)
			return &t->luns[i];
	return NULL;
}

/* Vendor, product and serial go into INQUIRY data: printable ASCII, and no ',' so specs stay parseable. */
static int check_inquiry_text(const char *what, const char *v, size_t max, char **err)
{
	size_t len = strlen(v);
	if (len == 0 || len > max)
		return fail(err, "LUN %s '%s' must be 1 to %zu characters", what, v, max);
	for (const char *p = v; *p; p++)
		if (*p < 0x21 || *p > 0x7e || *p == ',')
			return fail(err, "LUN %s '%s' may only hold printable ASCII without spaces or ','", what, v);
	return 0;
}

static void lun_free(struct cfg_lun *l)
{
	free(l->path);
	free(l->serial);
	free(l->vendor);
	free(l->product);
}

static int lun_option(struct cfg_lun *l, const char *opt, unsigned *seen, char **err)
{
	static const char *const names[] = {"size", "bs", "ro", "thick", "wce", "serial", "vendor", "product"};
	const char *eq = strchr(opt, '=');
	size_t nlen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *v = eq ? eq + 1 : NULL;
	/* "rw" and "thin" spell out defaults; they count as ro and thick for repetition checks. */
	size_t idx = sizeof(names) / sizeof(names[0]);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == nlen && strncmp(opt, names[i], nlen) == 0)
			idx = i;
	if (nlen == 2 && strncmp(opt, "rw", 2) == 0)
		idx = 2;
	if (nlen == 4 && strncmp(opt, "thin", 4) == 0)
		idx = 3;
	if (idx == sizeof(names) / sizeof(names[0]))
		return fail(err, "unknown LUN option '%s' (known: size=, bs=, ro, rw, thick, thin, wce=, serial=, "
				 "vendor=, product=)",
			    opt);
	if (*seen & (1u << idx))
		return fail(err, "LUN option '%.*s' given twice", (int)nlen, opt);
	*seen |= 1u << idx;
	bool flag = idx == 2 || idx == 3;
	if (flag && v)
		return fail(err, "LUN option '%.*s' takes no value", (int)nlen, opt);
	if (!flag && (!v || !*v))
		return fail(err, "LUN option '%.*s' needs a value", (int)nlen, opt);
	switch (idx) {
	case 0:
		if (cfg_parse_size(v, &l->size) < 0)
			return fail(err, "invalid size '%s' (a number with an optional K, M, G or T suffix)", v);
		return 0;
	case 1:
		if (strcmp(v, "512") != 0 && strcmp(v, "4096") != 0)
			return fail(err, "invalid block size '%s' (512 or 4096)", v);
		l->block_size = (uint32_t)atoi(v);
		return 0;
	case 2:
		l->read_only = strcmp(opt, "ro") == 0;
		return 0;
	case 3:
		l->thin = strcmp(opt, "thin") == 0;
		return 0;
	case 4:
		if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
			return fail(err, "invalid wce '%s' (0 or 1)", v);
		l->write_cache = v[0] == '1';
		return 0;
	case 5:
		if (check_inquiry_text("serial", v, 64, err) < 0)
			return -1;
		l->serial = xstrdup(v);
		return 0;
	case 6:
		if (check_inquiry_text("vendor", v, 8, err) < 0)
			return -1;
		l->vendor = xstrdup(v);
		return 0;
	default:
		if (check_inquiry_text("product", v, 16, err) < 0)
			return -1;
		l->product = xstrdup(v);
		return 0;
	}
}

static int parse_lun_spec(const char *spec, struct cfg_lun *l, char **err)
{
	memset(l, 0, sizeof(*l));
	l->block_size = 512;
	l->write_cache = true;
	char *copy = xstrdup(spec);
	char *save = NULL;
	char *first = strtok_r(copy, ",", &save);
	if (!first || spec[0] == ',') {
		free(copy);
		return fail(err, "LUN spec '%s' needs a path or 'memory' first", spec);
	}
	bool memory = strcmp(first, "memory") == 0;
	if (memory) {
		l->kind = LUN_MEMORY;
	} else {
		struct stat st;
		/* What the path is decides; only a path that does not exist yet is judged by its place
		 * (a regular file under /dev/shm is a file). */
		bool exists = stat(first, &st) == 0;
		bool blk = exists && S_ISBLK(st.st_mode);
		if (!(exists && (S_ISBLK(st.st_mode) || S_ISREG(st.st_mode))))
			blk = strncmp(first, "/dev/", 5) == 0 && strncmp(first, "/dev/shm/", 9) != 0;
		l->kind = blk ? LUN_BLOCK : LUN_FILE;
		l->path = xstrdup(first);
	}
	/* A block device's size and allocation are the device's; the others are sparse unless asked. */
	l->thin = l->kind != LUN_BLOCK;
	unsigned seen = 0;
	for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
		if (lun_option(l, opt, &seen, err) < 0) {
			free(copy);
			lun_free(l);
			return -1;
		}
	}
	free(copy);
	if (memory && l->size == 0) {
		lun_free(l);
		return fail(err, "memory LUN needs size= (e.g. memory,size=64M)");
	}
	if (l->kind == LUN_BLOCK && l->size) {
		fail(err, "size= does not apply to block device '%s'", l->path);
		lun_free(l);
		return -1;
	}
	if (l->size % l->block_size) {
		lun_free(l);
		return fail(err, "LUN size %llu is not a multiple of the %u-byte block size", (unsigned long long)l->size,
			    l->block_size);
	}
	return 0;
}

int cfg_add_lun(struct cfg *cfg, struct cfg_target *t, int lun, const char *spec, char **err)
{
	(void)cfg;
	if (lun > MAX_LUN)
		return fail(err, "LUN number %d is above %d", lun, MAX_LUN);
	if (lun >= 0 && find_lun(t, (unsigned)lun))
		return fail(err, "LUN %d is defined twice in target '%s'", lun, t->name);
	if (lun < 0) {
		lun = 0;
		while (lun <= MAX_LUN && find_lun(t, (unsigned)lun))
			lun++;
		if (lun > MAX_LUN)
			return fail(err, "target '%s' has no free LUN number left", t->name);
	}
	struct cfg_lun l;
	if (parse_lun_spec(spec, &l, err) < 0)
		return -1;
	l.lun = (uint16_t)lun;
	t->luns = xrealloc(t->luns, (t->nluns + 1) * sizeof(*t->luns));
	t->luns[t->nluns++] = l;
	return 0;
}

int cfg_add_lun_spec(struct cfg *cfg, struct cfg_target *t, const char *spec, char **err)
{
	return cfg_add_lun(cfg, t, -1, spec, err);
}

enum section { SEC_NONE, SEC_GLOBAL, SEC_GROUP, SEC_TARGET, SEC_INITIATOR };

struct parser {
	struct cfg *cfg;
	const char *path;
	unsigned line;
	enum section sec;
	char *sec_name;     /* "[target iqn...]" for messages */
	uint16_t tpgt;      /* SEC_GROUP */
	size_t target;      /* SEC_TARGET, SEC_INITIATOR: index, as adding targets moves the array */
	bool have_target;   /* a [target] section came before: [initiator] sections belong to it */
	size_t account;     /* SEC_INITIATOR: index into the target's accounts */
	char **seen;        /* single-valued keys already given in this section */
	size_t nseen;
	bool had_global;
	uint16_t *groups;   /* portal-group sections of this file */
	size_t ngroups;
	char **err;
};

static int perr(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = vformat(fmt, ap);
	va_end(ap);
	fail(p->err, "%s:%u: %s", p->path, p->line, msg);
	free(msg);
	return -1;
}

/* Puts the location in front of a reason that a shared helper produced. */
static int pwrap(struct parser *p, char *reason)
{
	perr(p, "%s", reason);
	free(reason);
	return -1;
}

static void clear_seen(struct parser *p)
{
	for (size_t i = 0; i < p->nseen; i++)
		free(p->seen[i]);
	free(p->seen);
	p->seen = NULL;
	p->nseen = 0;
}

/* A single-valued key, or alternatives sharing one name (chap-secret / chap-secret-file). */
static int once(struct parser *p, const char *name, const char *key)
{
	for (size_t i = 0; i < p->nseen; i++)
		if (strcmp(p->seen[i], name) == 0) {
			if (strcmp(name, key) == 0)
				return perr(p, "key '%s' given twice in %s", key, p->sec_name);
			return perr(p, "'%s' given twice in %s ('%s' is an alternative to '%s')", name, p->sec_name,
				    key, name);
		}
	p->seen = xrealloc(p->seen, (p->nseen + 1) * sizeof(*p->seen));
	p->seen[p->nseen++] = xstrdup(name);
	return 0;
}

static struct cfg_target *cur_target(struct parser *p) { return &p->cfg->targets[p->target]; }

static bool is_space(char c) { return c == ' ' || c == '\t'; }

static char *trim(char *s)
{
	while (is_space(*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && is_space(s[n - 1]))
		s[--n] = 0;
	return s;
}

/* Cuts a comment: '#' at the start or after whitespace, so that "abc#def" stays a value. */
static void cut_comment(char *s)
{
	for (char *c = s; *c; c++)
		if (*c == '#' && (c == s || is_space(c[-1]))) {
			*c = 0;
			return;
		}
}

/* Value after '=': bare (comment cut, trimmed) or "quoted" with \" and \\ escapes. */
static int parse_value(struct parser *p, char *s, char **out)
{
	while (is_space(*s))
		s++;
	if (*s != '"') {
		cut_comment(s);
		*out = trim(s);
		return 0;
	}
	char *w = s, *r = s + 1;
	for (; *r && *r != '"'; r++) {
		if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
			r++;
		*w++ = *r;
	}
	if (*r != '"')
		return perr(p, "unterminated quoted value");
	*w = 0;
	char *rest = r + 1;
	cut_comment(rest);
	if (*trim(rest))
		return perr(p, "text after the closing quote");
	*out = s;
	return 0;
}

static int read_secret_file(struct parser *p, const char *file, char **out)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return perr(p, "cannot open secret file '%s': %s", file, strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	int e = errno;
	bool bad = ferror(f);
	fclose(f);
	if (n < 0) {
		free(line);
		return bad ? perr(p, "cannot read secret file '%s': %s", file, strerror(e))
			   : perr(p, "secret file '%s' is empty", file);
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	if ((size_t)n != strlen(line)) {
		free(line);
		return perr(p, "secret file '%s' contains a NUL byte", file);
	}
	*out = line;
	return 0;
}

/*
 * user/secret/mutual keys of a CHAP block, shared by [global] (prefix "discovery-") and
 * [target] (no prefix). Returns 1 if key is not a CHAP key.
 */
static int chap_key(struct parser *p, struct cfg_chap *c, const char *prefix, const char *key, const char *value)
{
	size_t plen = strlen(prefix);
	if (strncmp(key, prefix, plen) != 0)
		return 1;
	const char *k = key + plen;
	char **field;
	bool secret = true;
	const char *base;
	if (strcmp(k, "chap-user") == 0)
		field = &c->user, secret = false, base = "chap-user";
	else if (strcmp(k, "mutual-user") == 0)
		field = &c->mutual_user, secret = false, base = "mutual-user";
	else if (strcmp(k, "chap-secret") == 0 || strcmp(k, "chap-secret-file") == 0)
		field = &c->secret, base = "chap-secret";
	else if (strcmp(k, "mutual-secret") == 0 || strcmp(k, "mutual-secret-file") == 0)
		field = &c->mutual_secret, base = "mutual-secret";
	else
		return 1;
	char name[64];
	snprintf(name, sizeof(name), "%s%s", prefix, base);
	if (once(p, name, key) < 0)
		return -1;
	if (!c->line)
		c->line = p->line;
	if (!secret) {
		free(*field);
		*field = xstrdup(value);
		return 0;
	}
	char *v = NULL;
	if (strcmp(k + strlen(base), "-file") == 0) {
		if (read_secret_file(p, value, &v) < 0)
			return -1;
	} else {
		v = xstrdup(value);
	}
	char *why = NULL;
	if (cfg_check_secret(name, v, &why) < 0) {
		free(v);
		return pwrap(p, why);
	}
	free(*field);
	*field = v;
	return 0;
}

static int global_key(struct parser *p, const char *key, const char *value)
{
	struct cfg *cfg = p->cfg;
	int r = chap_key(p, &cfg->discovery_chap, "discovery-", key, value);
	if (r <= 0)
		return r;
	unsigned long n;
	if (strcmp(key, "state-dir") == 0 || strcmp(key, "mgmt-socket") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		char **field = key[0] == 's' ? &cfg->state_dir : &cfg->mgmt_socket;
		free(*field);
		*field = xstrdup(value);
		return 0;
	}
	if (strcmp(key, "max-commands-per-session") == 0 || strcmp(key, "data-out-timeout") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		bool cmds = key[0] == 'm';
		unsigned long hi = cmds ? MAX_COMMANDS : MAX_NOP;
		if (parse_uint(value, 1, hi, &n) < 0)
			return perr(p, "%s '%s' is not a number from 1 to %lu", key, value, hi);
		*(cmds ? &cfg->max_commands : &cfg->data_out_timeout) = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "max-data-per-connection") == 0 || strcmp(key, "max-data-per-session") == 0 ||
	    strcmp(key, "max-data-total") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		uint64_t bytes;
		if (cfg_parse_size(value, &bytes) < 0 || bytes < (1u << 20))
			return perr(p, "%s '%s' is not a size of at least 1M", key, value);
		uint64_t *field = strcmp(key, "max-data-per-connection") == 0 ? &cfg->max_data_connection
				  : strcmp(key, "max-data-per-session") == 0  ? &cfg->max_data_session
									      : &cfg->max_data_total;
		*field = bytes;
		return 0;
	}
	if (strcmp(key, "nop-interval") == 0 || strcmp(key, "nop-timeout") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		bool interval = strcmp(key, "nop-interval") == 0;
		if (parse_uint(value, interval ? 0 : 1, MAX_NOP, &n) < 0)
			return perr(p, "%s '%s' is not a number of seconds from %d to %d", key, value, interval ? 0 : 1,
				    MAX_NOP);
		*(interval ? &cfg->nop_interval : &cfg->nop_timeout) = (unsigned)n;
		return 0;
	}
	static const struct {
		const char *key;
		size_t offset;
		unsigned max;
	} limits[] = {
		{"max-connections", offsetof(struct cfg, max_connections), CFG_MAX_CONNECTIONS_LIMIT},
		{"max-connections-per-portal", offsetof(struct cfg, max_connections_per_portal),
		 CFG_MAX_CONNECTIONS_LIMIT},
		{"mgmt-max-clients", offsetof(struct cfg, mgmt_max_clients), CFG_MGMT_MAX_CLIENTS_LIMIT},
	};
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		if (strcmp(key, limits[i].key) != 0)
			continue;
		if (once(p, key, key) < 0)
			return -1;
		char *why = NULL;
		if (cfg_parse_limit(key, value, limits[i].max, (unsigned *)((char *)cfg + limits[i].offset), &why) < 0)
			return pwrap(p, why);
		return 0;
	}
	return perr(p, "unknown key '%s' in %s", key, p->sec_name);
}

int cfg_parse_limit(const char *what, const char *value, unsigned max, unsigned *out, char **err)
{
	unsigned long n;
	if (parse_uint(value, 1, max, &n) < 0)
		return fail(err, "%s '%s' is not a number from 1 to %u", what, value, max);
	*out = (unsigned)n;
	return 0;
}

static int group_key(struct parser *p, const char *key, const char *value)
{
	if (strcmp(key, "listen") != 0)
		return perr(p, "unknown key '%s' in %s", key, p->sec_name);
	char *why = NULL;
	if (cfg_add_listen_group(p->cfg, value, p->tpgt, &why) < 0)
		return pwrap(p, why);
	return 0;
}

/* RFC 7143 6.1: key names are letters, digits, '.', '-', '+', '@' and '_', up to 63 bytes. */
static bool iscsi_key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n == 0 || n > TEXT_MAX_KEY)
		return false;
	for (; *k; k++)
		if (!isalnum((unsigned char)*k) && !strchr(".-+@_", *k))
			return false;
	return true;
}

static int target_key(struct parser *p, const char *key, const char *value)
{
	struct cfg_target *t = cur_target(p);
	int r = chap_key(p, &t->chap, "", key, value);
	if (r <= 0)
		return r;
	char *why = NULL;
	unsigned long n;
	if (strcmp(key, "alias") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		if (strlen(value) > 255)
			return perr(p, "alias is longer than 255 bytes");
		free(t->alias);
		t->alias = xstrdup(value);
		return 0;
	}
	if (strcmp(key, "portal-group") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		if (parse_uint(value, 1, 65535, &n) < 0)
			return perr(p, "portal-group '%s' is not a number from 1 to 65535", value);
		t->tpgt = (uint16_t)n;
		t->tpgt_line = p->line;
		return 0;
	}
	if (strcmp(key, "allow") == 0) {
		char nwhy[128];
		if (!iscsi_name_valid(value, nwhy, sizeof(nwhy)))
			return perr(p, "invalid iSCSI name '%s': %s", value, nwhy);
		for (size_t i = 0; i < t->nacl; i++)
			if (strcasecmp(t->acl[i], value) == 0)
				return perr(p, "initiator '%s' is allowed twice in %s", value, p->sec_name);
		t->acl = xrealloc(t->acl, (t->nacl + 1) * sizeof(*t->acl));
		t->acl[t->nacl++] = xstrdup(value);
		t->restricted = true;
		return 0;
	}
	if (strcmp(key, "access") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		if (strcmp(value, "restricted") != 0 && strcmp(value, "open") != 0)
			return perr(p, "access must be 'open' or 'restricted', not '%s'", value);
		if (strcmp(value, "open") == 0 && t->nacl)
			return perr(p, "access = open contradicts the allow lines of %s", p->sec_name);
		t->restricted = strcmp(value, "restricted") == 0;
		return 0;
	}
	if (strcmp(key, "lun") == 0 || strncmp(key, "lun ", 4) == 0) {
		int lun = -1;
		if (key[3]) {
			if (parse_uint(key + 4, 0, 65535, &n) < 0)
				return perr(p, "LUN number '%s' is not a number", key + 4);
			if (n > MAX_LUN)
				return perr(p, "LUN number %lu is above %d", n, MAX_LUN);
			lun = (int)n;
		}
		if (cfg_add_lun(p->cfg, t, lun, value, &why) < 0)
			return pwrap(p, why);
		return 0;
	}
	if (isupper((unsigned char)key[0])) {
		if (!iscsi_key_ok(key))
			return perr(p, "'%s' is not a valid iSCSI key name", key);
		if (strlen(value) > 255)
			return perr(p, "value of %s is longer than 255 bytes", key);
		if (text_has(&t->params, key))
			return perr(p, "key '%s' given twice in %s", key, p->sec_name);
		text_set(&t->params, key, value);
		return 0;
	}
	return perr(p, "unknown key '%s' in %s", key, p->sec_name);
}

static int initiator_key(struct parser *p, const char *key, const char *value)
{
	struct cfg_account *a = &cur_target(p)->accounts[p->account];
	int r = chap_key(p, &a->chap, "", key, value);
	if (r <= 0)
		return r;
	return perr(p, "unknown key '%s' in %s (only chap-user, chap-secret, mutual-user, mutual-secret)", key,
		    p->sec_name);
}

static int section(struct parser *p, char *line)
{
	char *close = strchr(line, ']');
	if (!close)
		return perr(p, "section header without ']'");
	char *rest = close + 1;
	cut_comment(rest);
	if (*trim(rest))
		return perr(p, "text after the section header");
	*close = 0;
	char *inner = trim(line + 1);
	char *arg = inner + strcspn(inner, " \t");
	if (*arg)
		*arg++ = 0;
	arg = trim(arg);
	clear_seen(p);
	free(p->sec_name);
	p->sec_name = NULL;
	p->sec = SEC_NONE;
	if (strcmp(inner, "global") == 0) {
		if (*arg)
			return perr(p, "[global] takes no argument");
		if (p->had_global)
			return perr(p, "[global] given twice");
		p->had_global = true;
		p->sec = SEC_GLOBAL;
		p->sec_name = xstrdup("[global]");
		return 0;
	}
	if (strcmp(inner, "portal-group") == 0) {
		unsigned long n;
		if (parse_uint(arg, 1, 65535, &n) < 0)
			return perr(p, "portal group tag '%s' is not a number from 1 to 65535", arg);
		for (size_t i = 0; i < p->ngroups; i++)
			if (p->groups[i] == n)
				return perr(p, "[portal-group %lu] given twice", n);
		p->groups = xrealloc(p->groups, (p->ngroups + 1) * sizeof(*p->groups));
		p->groups[p->ngroups++] = (uint16_t)n;
		cfg_add_group(p->cfg, (uint16_t)n);
		p->sec = SEC_GROUP;
		p->tpgt = (uint16_t)n;
		p->sec_name = xasprintf("[portal-group %lu]", n);
		return 0;
	}
	if (strcmp(inner, "target") == 0) {
		if (!*arg)
			return perr(p, "[target] needs an iSCSI name");
		char *why = NULL;
		struct cfg_target *t = cfg_add_target(p->cfg, arg, &why);
		if (!t)
			return pwrap(p, why);
		t->line = p->line;
		p->target = p->cfg->ntargets - 1;
		p->have_target = true;
		p->sec = SEC_TARGET;
		p->sec_name = xasprintf("[target %s]", arg);
		return 0;
	}
	if (strcmp(inner, "initiator") == 0) {
		if (!p->have_target)
			return perr(p, "[initiator NAME] must follow the [target] section it belongs to");
		char why[128];
		if (!iscsi_name_valid(arg, why, sizeof(why)))
			return perr(p, "invalid iSCSI name '%s': %s", arg, why);
		struct cfg_target *t = cur_target(p);
		for (size_t i = 0; i < t->naccounts; i++)
			if (strcasecmp(t->accounts[i].initiator, arg) == 0)
				return perr(p, "[initiator %s] given twice for target %s", arg, t->name);
		t->accounts = xrealloc(t->accounts, (t->naccounts + 1) * sizeof(*t->accounts));
		struct cfg_account *a = &t->accounts[t->naccounts];
		memset(a, 0, sizeof(*a));
		a->initiator = xstrdup(arg);
		a->line = p->line;
		p->account = t->naccounts++;
		p->sec = SEC_INITIATOR;
		p->sec_name = xasprintf("[initiator %s] of target %s", arg, t->name);
		return 0;
	}
	return perr(p, "unknown section '[%s%s%s]' (expected [global], [portal-group N], [target NAME] or [initiator NAME])",
		    inner, *arg ? " " : "", arg);
}

/* Collapses runs of blanks inside a key, so that "lun   0" reads as "lun 0". */
static void squeeze(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (is_space(*r) && (w == s || is_space(r[1]) || !r[1]))
			continue;
		*w++ = is_space(*r) ? ' ' : *r;
	}
	*w = 0;
}

static int parse_line(struct parser *p, char *raw)
{
	char *s = raw;
	while (is_space(*s))
		s++;
	if (*s == 0 || *s == '#')
		return 0;
	if (*s == '[')
		return section(p, s);
	char *eq = strchr(s, '=');
	if (!eq) {
		cut_comment(s);
		return perr(p, "expected 'key = value', got '%s'", trim(s));
	}
	*eq = 0;
	char *key = trim(s);
	squeeze(key);
	if (!*key)
		return perr(p, "line starts with '=' and has no key");
	char *value = NULL;
	if (parse_value(p, eq + 1, &value) < 0)
		return -1;
	if (!*value)
		return perr(p, "key '%s' has no value", key);
	switch (p->sec) {
	case SEC_GLOBAL:
		return global_key(p, key, value);
	case SEC_GROUP:
		return group_key(p, key, value);
	case SEC_TARGET:
		return target_key(p, key, value);
	case SEC_INITIATOR:
		return initiator_key(p, key, value);
	default:
		return perr(p, "key '%s' outside any section (start with [global], [portal-group N] or [target NAME])",
			    key);
	}
}

static int cfg_load_stream(struct cfg *cfg, FILE *f, const char *path, char **err);

int cfg_load_file(struct cfg *cfg, const char *path, char **err)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(err, "%s: %s", path, strerror(errno));
	free(cfg->source);
	cfg->source = xstrdup(path);
	return cfg_load_stream(cfg, f, path, err);
}

int cfg_load_string(struct cfg *cfg, const char *name, const char *text, char **err)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	if (!f)
		return fail(err, "%s: %s", name, strerror(errno));
	return cfg_load_stream(cfg, f, name, err);
}

struct cfg *cfg_clone(const struct cfg *cfg, char **err)
{
	char *text = cfg_format(cfg);
	struct cfg *copy = xcalloc(1, sizeof(*copy));
	cfg_init(copy);
	if (cfg_load_string(copy, cfg->source ? cfg->source : "(running configuration)", text, err) < 0) {
		free(text);
		cfg_free(copy);
		free(copy);
		return NULL;
	}
	free(text);
	free(copy->source);
	copy->source = cfg->source ? xstrdup(cfg->source) : NULL;
	return copy;
}

static int cfg_load_stream(struct cfg *cfg, FILE *f, const char *path, char **err)
{
	struct parser p = {.cfg = cfg, .path = path, .err = err};
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		p.line++;
		if ((size_t)n != strlen(line)) {
			rc = perr(&p, "NUL byte in line");
			break;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		/* Editors on some systems start UTF-8 files with a byte-order mark. */
		char *text = line;
		if (p.line == 1 && strncmp(text, "\xef\xbb\xbf", 3) == 0)
			text += 3;
		if (parse_line(&p, text) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f))
		rc = fail(err, "%s: read error: %s", path, strerror(errno));
	free(line);
	fclose(f);
	clear_seen(&p);
	free(p.sec_name);
	free(p.groups);
	return rc;
}

/* "FILE:LINE: " when the item came from a file, "" when it was built from flags. */
static char *where(const struct cfg *cfg, unsigned line)
{
	if (cfg->source && line)
		return xasprintf("%s:%u: ", cfg->source, line);
	return xstrdup("");
}

static int vfail(const struct cfg *cfg, unsigned line, char **err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int vfail(const struct cfg *cfg, unsigned line, char **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = vformat(fmt, ap);
	va_end(ap);
	char *loc = where(cfg, line);
	fail(err, "%s%s", loc, msg);
	free(loc);
	free(msg);
	return -1;
}

static int validate_chap(const struct cfg *cfg, const struct cfg_chap *c, const char *owner, const char *prefix,
			 unsigned line, char **err)
{
	if (!c->user && !c->secret && !c->mutual_user && !c->mutual_secret)
		return 0;
	if (!c->user || !*c->user)
		return vfail(cfg, line, err, "%s has %s settings but no %schap-user", owner,
			     c->secret ? "chap-secret" : "mutual CHAP", prefix);
	if (!c->secret)
		return vfail(cfg, line, err, "%s has %schap-user but no %schap-secret", owner, prefix, prefix);
	if (!c->mutual_user != !c->mutual_secret || (c->mutual_user && !*c->mutual_user))
		return vfail(cfg, line, err, "%s needs both %smutual-user and %smutual-secret for mutual CHAP", owner,
			     prefix, prefix);
	char *why = NULL;
	char name[64];
	snprintf(name, sizeof(name), "%schap-secret", prefix);
	if (cfg_check_secret(name, c->secret, &why) < 0)
		goto bad;
	if (c->mutual_secret) {
		snprintf(name, sizeof(name), "%smutual-secret", prefix);
		if (cfg_check_secret(name, c->mutual_secret, &why) < 0)
			goto bad;
		/* RFC 7143 forbids one secret for both directions: it would make reflection trivial. */
		if (strcmp(c->secret, c->mutual_secret) == 0)
			return vfail(cfg, line, err, "%s uses the same secret for %schap-secret and %smutual-secret",
				     owner, prefix, prefix);
	}
	return 0;
bad:
	vfail(cfg, line, err, "%s: %s", owner, why);
	free(why);
	return -1;
}

int cfg_validate(const struct cfg *cfg, char **err)
{
	if (validate_chap(cfg, &cfg->discovery_chap, "discovery", "discovery-", cfg->discovery_chap.line, err) < 0)
		return -1;
	if (cfg->nop_interval > MAX_NOP || cfg->nop_timeout == 0 || cfg->nop_timeout > MAX_NOP)
		return vfail(cfg, 0, err, "nop-interval must be 0 to %d and nop-timeout 1 to %d seconds", MAX_NOP,
			     MAX_NOP);
	if (!cfg->max_connections || cfg->max_connections > CFG_MAX_CONNECTIONS_LIMIT ||
	    !cfg->max_connections_per_portal || cfg->max_connections_per_portal > CFG_MAX_CONNECTIONS_LIMIT)
		return vfail(cfg, 0, err, "max-connections and max-connections-per-portal must be 1 to %u",
			     CFG_MAX_CONNECTIONS_LIMIT);
	if (!cfg->mgmt_max_clients || cfg->mgmt_max_clients > CFG_MGMT_MAX_CLIENTS_LIMIT)
		return vfail(cfg, 0, err, "mgmt-max-clients must be 1 to %u", CFG_MGMT_MAX_CLIENTS_LIMIT);
	for (size_t i = 0; i < cfg->ntargets; i++) {
		const struct cfg_target *t = &cfg->targets[i];
		char why[128];
		if (!iscsi_name_valid(t->name, why, sizeof(why)))
			return vfail(cfg, t->line, err, "invalid iSCSI name '%s': %s", t->name, why);
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(cfg->targets[j].name, t->name) == 0)
				return vfail(cfg, t->line, err, "target '%s' is defined twice", t->name);
		unsigned gline = t->tpgt_line ? t->tpgt_line : t->line;
		if (!group_declared(cfg, t->tpgt) && !group_has_portal(cfg, t->tpgt))
			return vfail(cfg, gline, err, "target '%s' refers to portal group %u, which is not defined",
				     t->name, t->tpgt);
		if (!group_has_portal(cfg, t->tpgt))
			return vfail(cfg, gline, err, "portal group %u of target '%s' has no listen address", t->tpgt,
				     t->name);
		for (size_t j = 0; j < t->nluns; j++) {
			const struct cfg_lun *l = &t->luns[j];
			for (size_t k = 0; k < j; k++)
				if (t->luns[k].lun == l->lun)
					return vfail(cfg, t->line, err, "LUN %u is defined twice in target '%s'",
						     l->lun, t->name);
			if (l->kind != LUN_MEMORY && (!l->path || !*l->path || strchr(l->path, ',')))
				return vfail(cfg, t->line, err, "LUN %u of target '%s' needs a path without ','",
					     l->lun, t->name);
			if (l->kind == LUN_MEMORY && l->size == 0)
				return vfail(cfg, t->line, err, "memory LUN %u of target '%s' needs a size", l->lun,
					     t->name);
			if (l->block_size != 512 && l->block_size != 4096)
				return vfail(cfg, t->line, err, "LUN %u of target '%s': block size must be 512 or 4096",
					     l->lun, t->name);
		}
		for (size_t j = 0; j < t->nacl; j++)
			if (!iscsi_name_valid(t->acl[j], why, sizeof(why)))
				return vfail(cfg, t->line, err, "invalid iSCSI name '%s' in allow: %s", t->acl[j], why);
		char *owner = xasprintf("target '%s'", t->name);
		int rc = validate_chap(cfg, &t->chap, owner, "", t->chap.line ? t->chap.line : t->line, err);
		free(owner);
		if (rc < 0)
			return -1;
		for (size_t j = 0; j < t->naccounts; j++) {
			const struct cfg_account *a = &t->accounts[j];
			if (!a->chap.user)
				return vfail(cfg, a->line, err, "[initiator %s] of target '%s' needs chap-user and chap-secret",
					     a->initiator, t->name);
			owner = xasprintf("initiator '%s' of target '%s'", a->initiator, t->name);
			rc = validate_chap(cfg, &a->chap, owner, "", a->chap.line ? a->chap.line : a->line, err);
			free(owner);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

static bool needs_quotes(const char *v)
{
	if (!*v || is_space(v[0]) || is_space(v[strlen(v) - 1]) || v[0] == '"')
		return true;
	return strpbrk(v, "#\"\\") != NULL;
}

static void put_kv(struct sbuf *b, const char *key, const char *v)
{
	if (!needs_quotes(v)) {
		sbuf_printf(b, "%s = %s\n", key, v);
		return;
	}
	sbuf_printf(b, "%s = \"", key);
	for (const char *c = v; *c; c++) {
		if (*c == '"' || *c == '\\')
			sbuf_putc(b, '\\');
		sbuf_putc(b, *c);
	}
	sbuf_printf(b, "\"\n");
}

static void put_chap(struct sbuf *b, const struct cfg_chap *c, const char *prefix)
{
	char key[64];
	const char *names[] = {"chap-user", "chap-secret", "mutual-user", "mutual-secret"};
	const char *vals[] = {c->user, c->secret, c->mutual_user, c->mutual_secret};
	for (int i = 0; i < 4; i++) {
		if (!vals[i])
			continue;
		snprintf(key, sizeof(key), "%s%s", prefix, names[i]);
		put_kv(b, key, vals[i]);
	}
}

static void put_size(struct sbuf *b, uint64_t size)
{
	static const char units[] = "KMGTP";
	int u = -1;
	while (u < 4 && size && size % 1024 == 0) {
		size /= 1024;
		u++;
	}
	if (u < 0)
		sbuf_printf(b, ",size=%llu", (unsigned long long)size);
	else
		sbuf_printf(b, ",size=%llu%c", (unsigned long long)size, units[u]);
}

static void put_lun(struct sbuf *b, const struct cfg_lun *l)
{
	struct sbuf spec = {0};
	sbuf_printf(&spec, "%s", l->kind == LUN_MEMORY ? "memory" : l->path);
	if (l->size)
		put_size(&spec, l->size);
	if (l->block_size != 512)
		sbuf_printf(&spec, ",bs=%u", l->block_size);
	if (l->read_only)
		sbuf_printf(&spec, ",ro");
	if (l->thin != (l->kind != LUN_BLOCK))
		sbuf_printf(&spec, ",%s", l->thin ? "thin" : "thick");
	if (!l->write_cache)
		sbuf_printf(&spec, ",wce=0");
	if (l->serial)
		sbuf_printf(&spec, ",serial=%s", l->serial);
	if (l->vendor)
		sbuf_printf(&spec, ",vendor=%s", l->vendor);
	if (l->product)
		sbuf_printf(&spec, ",product=%s", l->product);
	char key[16];
	snprintf(key, sizeof(key), "lun %u", l->lun);
	put_kv(b, key, sbuf_cstr(&spec));
	sbuf_free(&spec);
}

static int cmp_tag(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

char *cfg_format(const struct cfg *cfg)
{
	struct sbuf b = {0};
	sbuf_printf(&b, "# isthmus target configuration (format: docs/config.md). Holds secrets: keep it 0600.\n\n");
	sbuf_printf(&b, "[global]\n");
	if (cfg->state_dir)
		put_kv(&b, "state-dir", cfg->state_dir);
	sbuf_printf(&b, "nop-interval = %u\nnop-timeout = %u\n", cfg->nop_interval, cfg->nop_timeout);
	sbuf_printf(&b, "max-commands-per-session = %u\ndata-out-timeout = %u\n", cfg->max_commands,
		    cfg->data_out_timeout);
	sbuf_printf(&b, "max-data-per-connection = %llu\nmax-data-per-session = %llu\nmax-data-total = %llu\n",
		    (unsigned long long)cfg->max_data_connection, (unsigned long long)cfg->max_data_session,
		    (unsigned long long)cfg->max_data_total);
	sbuf_printf(&b, "max-connections = %u\nmax-connections-per-portal = %u\nmgmt-max-clients = %u\n",
		    cfg->max_connections, cfg->max_connections_per_portal, cfg->mgmt_max_clients);
	if (cfg->mgmt_socket)
		put_kv(&b, "mgmt-socket", cfg->mgmt_socket);
	put_chap(&b, &cfg->discovery_chap, "discovery-");

	/* Every group with a portal or a declaration, in tag order, each once. */
	uint16_t *tags = xmalloc((cfg->ngroups + cfg->nportals) * sizeof(*tags));
	size_t ntags = 0;
	for (size_t i = 0; i < cfg->ngroups; i++)
		tags[ntags++] = cfg->groups[i];
	for (size_t i = 0; i < cfg->nportals; i++)
		tags[ntags++] = cfg->portals[i].tpgt;
	qsort(tags, ntags, sizeof(*tags), cmp_tag);
	for (size_t i = 0; i < ntags; i++) {
		if (i > 0 && tags[i] == tags[i - 1])
			continue;
		sbuf_printf(&b, "\n[portal-group %u]\n", tags[i]);
		for (size_t j = 0; j < cfg->nportals; j++) {
			const struct cfg_portal *p = &cfg->portals[j];
			if (p->tpgt != tags[i])
				continue;
			if (strchr(p->host, ':'))
				sbuf_printf(&b, "listen = [%s]:%u\n", p->host, p->port);
			else
				sbuf_printf(&b, "listen = %s:%u\n", p->host, p->port);
		}
	}
	free(tags);

	for (size_t i = 0; i < cfg->ntargets; i++) {
		const struct cfg_target *t = &cfg->targets[i];
		sbuf_printf(&b, "\n[target %s]\n", t->name);
		if (t->alias)
			put_kv(&b, "alias", t->alias);
		sbuf_printf(&b, "portal-group = %u\n", t->tpgt);
		for (size_t j = 0; j < t->nluns; j++)
			put_lun(&b, &t->luns[j]);
		for (size_t j = 0; j < t->nacl; j++)
			put_kv(&b, "allow", t->acl[j]);
		if (t->restricted && !t->nacl)
			put_kv(&b, "access", "restricted");
		put_chap(&b, &t->chap, "");
		for (size_t j = 0; j < t->params.n; j++)
			put_kv(&b, t->params.kv[j].key, t->params.kv[j].value);
		/* Sub-sections last: a section header ends the target's own keys. */
		for (size_t j = 0; j < t->naccounts; j++) {
			sbuf_printf(&b, "\n[initiator %s]\n", t->accounts[j].initiator);
			put_chap(&b, &t->accounts[j].chap, "");
		}
	}
	sbuf_cstr(&b);
	return (char *)b.data;
}

int cfg_remove_target(struct cfg *cfg, const char *name, char **err)
{
	for (size_t i = 0; i < cfg->ntargets; i++) {
		if (strcmp(cfg->targets[i].name, name) != 0)
			continue;
		target_free(&cfg->targets[i]);
		memmove(&cfg->targets[i], &cfg->targets[i + 1], (cfg->ntargets - i - 1) * sizeof(*cfg->targets));
		cfg->ntargets--;
		return 0;
	}
	return fail(err, "no target %s", name);
}

int cfg_remove_lun(struct cfg_target *t, unsigned lun, char **err)
{
	for (size_t i = 0; i < t->nluns; i++) {
		if (t->luns[i].lun != lun)
			continue;
		lun_free(&t->luns[i]);
		memmove(&t->luns[i], &t->luns[i + 1], (t->nluns - i - 1) * sizeof(*t->luns));
		t->nluns--;
		return 0;
	}
	return fail(err, "target %s has no LUN %u", t->name, lun);
}

int cfg_remove_listen(struct cfg *cfg, const char *spec, char **err)
{
	/* Parse through a scratch configuration to get the canonical spelling. */
	struct cfg tmp;
	cfg_init(&tmp);
	if (cfg_add_listen(&tmp, spec, err) < 0) {
		cfg_free(&tmp);
		return -1;
	}
	const struct cfg_portal *want = &tmp.portals[0];
	for (size_t i = 0; i < cfg->nportals; i++) {
		struct cfg_portal *p = &cfg->portals[i];
		if (p->port != want->port || strcmp(p->host, want->host) != 0)
			continue;
		free(p->host);
		memmove(p, p + 1, (cfg->nportals - i - 1) * sizeof(*p));
		cfg->nportals--;
		cfg_free(&tmp);
		return 0;
	}
	cfg_free(&tmp);
	return fail(err, "%s is not a portal", spec);
}

int cfg_acl_add(struct cfg_target *t, const char *initiator, char **err)
{
	char why[160];
	if (!iscsi_name_valid(initiator, why, sizeof(why)))
		return fail(err, "'%s': %s", initiator, why);
	for (size_t i = 0; i < t->nacl; i++)
		if (strcmp(t->acl[i], initiator) == 0)
			return fail(err, "%s is already allowed on %s", initiator, t->name);
	t->acl = xrealloc(t->acl, (t->nacl + 1) * sizeof(*t->acl));
	t->acl[t->nacl++] = xstrdup(initiator);
	t->restricted = true;
	return 0;
}

int cfg_acl_remove(struct cfg_target *t, const char *initiator, char **err)
{
	for (size_t i = 0; i < t->nacl; i++) {
		if (strcmp(t->acl[i], initiator) != 0)
			continue;
		free(t->acl[i]);
		memmove(&t->acl[i], &t->acl[i + 1], (t->nacl - i - 1) * sizeof(*t->acl));
		t->nacl--;
		return 0;
	}
	return fail(err, "%s is not in the access list of %s", initiator, t->name);
}

int cfg_set_chap(struct cfg_chap *c, const char *user, const char *secret, const char *mutual_user,
		 const char *mutual_secret, char **err)
{
	if (user && (!secret || cfg_check_secret("chap secret", secret, err) < 0))
		return secret ? -1 : fail(err, "CHAP needs a secret with the user name");
	if (mutual_user && (!user || !mutual_secret || cfg_check_secret("mutual secret", mutual_secret, err) < 0))
		return (!user || !mutual_secret) ? fail(err, "mutual CHAP needs user, secret and mutual secret") : -1;
	if (mutual_secret && secret && strcmp(mutual_secret, secret) == 0)
		return fail(err, "the mutual secret must differ from the initiator's secret");
	chap_free(c);
	c->user = user ? xstrdup(user) : NULL;
	c->secret = user ? xstrdup(secret) : NULL;
	c->mutual_user = mutual_user ? xstrdup(mutual_user) : NULL;
	c->mutual_secret = mutual_user ? xstrdup(mutual_secret) : NULL;
	return 0;
}

const struct cfg_chap *cfg_target_chap_for(const struct cfg_target *t, const char *initiator)
{
	for (size_t i = 0; i < t->naccounts; i++)
		if (strcasecmp(t->accounts[i].initiator, initiator) == 0)
			return &t->accounts[i].chap;
	return &t->chap;
}

int cfg_set_initiator_chap(struct cfg_target *t, const char *initiator, const char *user, const char *secret,
			   const char *mutual_user, const char *mutual_secret, char **err)
{
	char why[160];
	if (!iscsi_name_valid(initiator, why, sizeof(why)))
		return fail(err, "'%s': %s", initiator, why);
	size_t i = 0;
	while (i < t->naccounts && strcasecmp(t->accounts[i].initiator, initiator) != 0)
		i++;
	if (!user) {
		if (i == t->naccounts)
			return fail(err, "%s has no CHAP account of its own on %s", initiator, t->name);
		free(t->accounts[i].initiator);
		chap_free(&t->accounts[i].chap);
		memmove(&t->accounts[i], &t->accounts[i + 1], (t->naccounts - i - 1) * sizeof(*t->accounts));
		t->naccounts--;
		return 0;
	}
	struct cfg_chap c = {0};
	if (cfg_set_chap(&c, user, secret, mutual_user, mutual_secret, err) < 0)
		return -1;
	if (i == t->naccounts) {
		t->accounts = xrealloc(t->accounts, (t->naccounts + 1) * sizeof(*t->accounts));
		memset(&t->accounts[i], 0, sizeof(t->accounts[i]));
		t->accounts[i].initiator = xstrdup(initiator);
		t->naccounts++;
	}
	chap_free(&t->accounts[i].chap);
	t->accounts[i].chap = c;
	return 0;
}

/*
 * A fresh file next to path, only ours: a random name, created exclusively (so a file or a
 * symlink someone planted under that name is never opened), mode 0600 whatever the umask.
 * Returns the descriptor and sets *tmp_out, or -1 with *err.
 */
static int save_open_temp(const char *path, char **tmp_out, char **err)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		uint8_t rnd[8];
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return fail(err, "%s: no random bytes for a temporary name: %s", path, strerror(errno));
		char *tmp = xasprintf("%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2], rnd[3],
				      rnd[4], rnd[5], rnd[6], rnd[7]);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (fchmod(fd, 0600) < 0) {
				fail(err, "%s: %s", tmp, strerror(errno));
				close(fd);
				unlink(tmp);
				free(tmp);
				return -1;
			}
			*tmp_out = tmp;
			return fd;
		}
		int e = errno;
		if (e != EEXIST) {
			fail(err, "%s: %s", tmp, strerror(e));
			free(tmp);
			return -1;
		}
		free(tmp);
	}
	return fail(err, "%s: no free temporary name next to it", path);
}

int cfg_save(const struct cfg *cfg, const char *path, char **err)
{
	char *text = cfg_format(cfg);
	char *tmp = NULL;
	int rc = -1;
	int fd = save_open_temp(path, &tmp, err);
	if (fd < 0)
		goto out;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fail(err, "%s: %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			goto out;
		}
		off += (size_t)w;
	}
	/* Durable before visible: sync the data, rename over the old file, sync the directory. */
	if (fsync(fd) < 0) {
		fail(err, "%s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		fail(err, "%s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = 0;
	int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dir);
	rc = 0;
out:
	free(tmp);
	free(text);
	return rc;
}
