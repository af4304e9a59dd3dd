/* The configuration model: defaults, lookups, additions and removals, release. */
#include "target/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "target/config_internal.h"
#include "util/iscsi_name.h"
#include "util/parse.h"
#include "util/sbuf.h"

int cfg_fail(char **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
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
	cfg->max_retained_data = 64ull << 20;
	cfg->max_connections = CFG_MAX_CONNECTIONS_DEFAULT;
	cfg->threads = CFG_THREADS_AUTO;
	cfg->max_connections_per_portal = CFG_MAX_PORTAL_CONNECTIONS_DEFAULT;
	cfg->mgmt_max_clients = CFG_MGMT_MAX_CLIENTS_DEFAULT;
}

unsigned cfg_threads(const struct cfg *cfg)
{
	if (cfg->threads != CFG_THREADS_AUTO)
		return cfg->threads;
	/* The CPUs of the affinity mask (taskset, cgroup cpusets), not every CPU of the machine. */
	cpu_set_t set;
	CPU_ZERO(&set);
	int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
	if (n < 1) {
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		n = online > 0 ? (int)(online < (long)CFG_THREADS_LIMIT ? online : (long)CFG_THREADS_LIMIT) : 1;
	}
	return (unsigned)n > CFG_THREADS_LIMIT ? CFG_THREADS_LIMIT : (unsigned)n;
}

static void chap_free(struct cfg_chap *c)
{
	free(c->user);
	secret_free(c->secret);
	free(c->mutual_user);
	secret_free(c->mutual_secret);
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
		free(t->luns[i].rbd_conf);
		free(t->luns[i].rbd_id);
		free(t->luns[i].rbd_namespace);
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
	cfg_free_gateways(t);
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
	free(cfg->isns);
	free(cfg->isns_entity);
	free(cfg->source);
	free(cfg->groups);
	memset(cfg, 0, sizeof(*cfg));
}

int cfg_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	uint64_t v;
	if (parse_uint(s, 10, min, max, &v) < 0)
		return -1;
	*out = (unsigned long)v;
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

int cfg_add_listen_group(struct cfg *cfg, const char *spec, uint16_t tpgt, char **err)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port = NULL;
	size_t hlen;
	if (tpgt == 0)
		return cfg_fail(err, "portal group tag 0 is reserved; use 1 to 65535");
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close)
			return cfg_fail(err, "listen address '%s' lacks the closing ']'", spec);
		hlen = (size_t)(close - spec - 1);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != 0)
			return cfg_fail(err, "listen address '%s' has junk after ']'", spec);
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
		return cfg_fail(err, "listen address '%s' has no valid host", spec);
	memcpy(host, spec, hlen);
	host[hlen] = 0;
	unsigned long portnum = DEFAULT_PORT;
	if (port && cfg_parse_uint(port, 1, 65535, &portnum) < 0)
		return cfg_fail(err, "listen port '%s' is not a number from 1 to 65535", port);

	/* Store the canonical spelling so that equal addresses compare equal. */
	unsigned char addr[sizeof(struct in6_addr)];
	char canon[INET6_ADDRSTRLEN];
	if (inet_pton(AF_INET, host, addr) == 1)
		inet_ntop(AF_INET, addr, canon, sizeof(canon));
	else if (inet_pton(AF_INET6, host, addr) == 1)
		inet_ntop(AF_INET6, addr, canon, sizeof(canon));
	else
		return cfg_fail(err, "listen host '%s' is not a numeric IPv4 or IPv6 address", host);

	for (size_t i = 0; i < cfg->nportals; i++) {
		const struct cfg_portal *p = &cfg->portals[i];
		if (p->port == portnum && strcmp(p->host, canon) == 0)
			return cfg_fail(err, "%s%s%s:%lu is already a portal (of portal group %u)", strchr(canon, ':') ? "[" : "",
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
		cfg_fail(err, "invalid iSCSI name '%s': %s", name, why);
		return NULL;
	}
	if (cfg_find_target(cfg, name)) {
		cfg_fail(err, "target '%s' is defined twice", name);
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
		return cfg_fail(err, "LUN %s '%s' must be 1 to %zu characters", what, v, max);
	for (const char *p = v; *p; p++)
		if (*p < 0x21 || *p > 0x7e || *p == ',')
			return cfg_fail(err, "LUN %s '%s' may only hold printable ASCII without spaces or ','", what, v);
	return 0;
}

static void lun_free(struct cfg_lun *l)
{
	free(l->path);
	free(l->serial);
	free(l->vendor);
	free(l->product);
	free(l->rbd_conf);
	free(l->rbd_id);
	free(l->rbd_namespace);
}

/* The options of a LUN spec; "rw" and "thin" spell out defaults and count as ro and thick. */
enum lun_option {
	LUN_OPT_SIZE,
	LUN_OPT_BLOCK_SIZE,
	LUN_OPT_READ_ONLY,
	LUN_OPT_THICK,
	LUN_OPT_WRITE_CACHE,
	LUN_OPT_SERIAL,
	LUN_OPT_VENDOR,
	LUN_OPT_PRODUCT,
	LUN_OPT_RBD_CONF,
	LUN_OPT_RBD_ID,
	LUN_OPT_RBD_NAMESPACE,
	LUN_OPT_COUNT,
};

static const struct {
	const char *name;
	enum lun_option opt;
} lun_option_names[] = {
	{"size", LUN_OPT_SIZE},       {"bs", LUN_OPT_BLOCK_SIZE}, {"ro", LUN_OPT_READ_ONLY},
	{"rw", LUN_OPT_READ_ONLY},    {"thick", LUN_OPT_THICK},   {"thin", LUN_OPT_THICK},
	{"wce", LUN_OPT_WRITE_CACHE}, {"serial", LUN_OPT_SERIAL}, {"vendor", LUN_OPT_VENDOR},
	{"product", LUN_OPT_PRODUCT}, {"conf", LUN_OPT_RBD_CONF}, {"id", LUN_OPT_RBD_ID},
	{"namespace", LUN_OPT_RBD_NAMESPACE},
};

/* seen: one bit per enum lun_option already given in this spec. */
static int lun_option(struct cfg_lun *l, const char *opt, unsigned *seen, char **err)
{
	const char *eq = strchr(opt, '=');
	size_t nlen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *v = eq ? eq + 1 : NULL;
	enum lun_option idx = LUN_OPT_COUNT;
	for (size_t i = 0; i < sizeof(lun_option_names) / sizeof(lun_option_names[0]); i++)
		if (strlen(lun_option_names[i].name) == nlen && strncmp(opt, lun_option_names[i].name, nlen) == 0)
			idx = lun_option_names[i].opt;
	if (idx == LUN_OPT_COUNT)
		return cfg_fail(err, "unknown LUN option '%s' (known: size=, bs=, ro, rw, thick, thin, wce=, serial=, "
				 "vendor=, product=; RBD: conf=, id=, namespace=)",
			    opt);
	if (*seen & (1u << idx))
		return cfg_fail(err, "LUN option '%.*s' given twice", (int)nlen, opt);
	*seen |= 1u << idx;
	bool flag = idx == LUN_OPT_READ_ONLY || idx == LUN_OPT_THICK;
	if (flag && v)
		return cfg_fail(err, "LUN option '%.*s' takes no value", (int)nlen, opt);
	if (!flag && (!v || !*v))
		return cfg_fail(err, "LUN option '%.*s' needs a value", (int)nlen, opt);
	switch (idx) {
	case LUN_OPT_SIZE:
		if (parse_size(v, &l->size) < 0)
			return cfg_fail(err, "invalid size '%s' (a number with an optional K, M, G, T or P suffix, as 64M, 64MiB or 64MB)", v);
		return 0;
	case LUN_OPT_BLOCK_SIZE:
		if (strcmp(v, "512") != 0 && strcmp(v, "4096") != 0)
			return cfg_fail(err, "invalid block size '%s' (512 or 4096)", v);
		l->block_size = (uint32_t)atoi(v);
		return 0;
	case LUN_OPT_READ_ONLY:
		l->read_only = strcmp(opt, "ro") == 0;
		return 0;
	case LUN_OPT_THICK:
		l->thin = strcmp(opt, "thin") == 0;
		return 0;
	case LUN_OPT_WRITE_CACHE:
		if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
			return cfg_fail(err, "invalid wce '%s' (0 or 1)", v);
		l->write_cache = v[0] == '1';
		return 0;
	case LUN_OPT_SERIAL:
		if (check_inquiry_text("serial", v, 64, err) < 0)
			return -1;
		l->serial = xstrdup(v);
		return 0;
	case LUN_OPT_VENDOR:
		if (check_inquiry_text("vendor", v, 8, err) < 0)
			return -1;
		l->vendor = xstrdup(v);
		return 0;
	case LUN_OPT_PRODUCT:
		if (check_inquiry_text("product", v, 16, err) < 0)
			return -1;
		l->product = xstrdup(v);
		return 0;
	case LUN_OPT_RBD_CONF:
	case LUN_OPT_RBD_ID:
	case LUN_OPT_RBD_NAMESPACE:
		if (l->kind != LUN_RBD)
			return cfg_fail(err, "LUN option '%.*s' is for RBD LUNs (rbd:POOL/IMAGE) only", (int)nlen, opt);
		if (strchr(v, '/') && idx != LUN_OPT_RBD_CONF)
			return cfg_fail(err, "invalid RBD %.*s '%s'", (int)nlen, opt, v);
		*(idx == LUN_OPT_RBD_CONF ? &l->rbd_conf : idx == LUN_OPT_RBD_ID ? &l->rbd_id : &l->rbd_namespace) = xstrdup(v);
		return 0;
	case LUN_OPT_COUNT: break;
	}
	return -1;
}

const char *cfg_lun_kind_name(enum cfg_lun_kind k)
{
	switch (k) {
	case LUN_FILE: return "file";
	case LUN_BLOCK: return "block";
	case LUN_MEMORY: return "memory";
	case LUN_NULL: return "null";
	case LUN_RBD: return "rbd";
	}
	return "?";
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
		return cfg_fail(err, "LUN spec '%s' needs a path, 'memory' or 'null' first", spec);
	}
	/* Kinds without a path are named by a word; anything else is a path. */
	bool pathless = strcmp(first, "memory") == 0 || strcmp(first, "null") == 0;
	if (pathless) {
		l->kind = first[0] == 'm' ? LUN_MEMORY : LUN_NULL;
	} else if (strncmp(first, "rbd:", 4) == 0) {
		const char *slash = strchr(first + 4, '/');
		if (!slash || slash == first + 4 || !slash[1] || strchr(slash + 1, '/')) {
			cfg_fail(err, "RBD LUN '%s' must be rbd:POOL/IMAGE", first);
			free(copy);
			return -1;
		}
		l->kind = LUN_RBD;
		l->path = xstrdup(first);
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
	if (pathless && l->size == 0) {
		const char *kind = cfg_lun_kind_name(l->kind);
		lun_free(l);
		return cfg_fail(err, "%s LUN needs size= (e.g. %s,size=64M)", kind, kind);
	}
	if ((l->kind == LUN_BLOCK || l->kind == LUN_RBD) && l->size) {
		cfg_fail(err, "size= does not apply to %s '%s' (it has its own size)",
			 l->kind == LUN_RBD ? "RBD image" : "block device", l->path);
		lun_free(l);
		return -1;
	}
	if (l->size % l->block_size) {
		lun_free(l);
		return cfg_fail(err, "LUN size %llu is not a multiple of the %u-byte block size", (unsigned long long)l->size,
			    l->block_size);
	}
	return 0;
}

int cfg_add_lun(struct cfg *cfg, struct cfg_target *t, int lun, const char *spec, char **err)
{
	(void)cfg;
	if (lun > MAX_LUN)
		return cfg_fail(err, "LUN number %d is above %d", lun, MAX_LUN);
	if (lun >= 0 && find_lun(t, (unsigned)lun))
		return cfg_fail(err, "LUN %d is defined twice in target '%s'", lun, t->name);
	if (lun < 0) {
		lun = 0;
		while (lun <= MAX_LUN && find_lun(t, (unsigned)lun))
			lun++;
		if (lun > MAX_LUN)
			return cfg_fail(err, "target '%s' has no free LUN number left", t->name);
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
	return cfg_fail(err, "no target %s", name);
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
	return cfg_fail(err, "target %s has no LUN %u", t->name, lun);
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
	return cfg_fail(err, "%s is not a portal", spec);
}

int cfg_acl_add(struct cfg_target *t, const char *initiator, char **err)
{
	char why[160];
	if (!iscsi_name_valid(initiator, why, sizeof(why)))
		return cfg_fail(err, "'%s': %s", initiator, why);
	for (size_t i = 0; i < t->nacl; i++)
		if (strcmp(t->acl[i], initiator) == 0)
			return cfg_fail(err, "%s is already allowed on %s", initiator, t->name);
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
	return cfg_fail(err, "%s is not in the access list of %s", initiator, t->name);
}

int cfg_set_chap(struct cfg_chap *c, const char *user, const char *secret, const char *mutual_user,
		 const char *mutual_secret, char **err)
{
	if (user && (!secret || cfg_check_secret("chap secret", secret, err) < 0))
		return secret ? -1 : cfg_fail(err, "CHAP needs a secret with the user name");
	if (mutual_user && (!user || !mutual_secret || cfg_check_secret("mutual secret", mutual_secret, err) < 0))
		return (!user || !mutual_secret) ? cfg_fail(err, "mutual CHAP needs user, secret and mutual secret") : -1;
	if (mutual_secret && secret && strcmp(mutual_secret, secret) == 0)
		return cfg_fail(err, "the mutual secret must differ from the initiator's secret");
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
		return cfg_fail(err, "'%s': %s", initiator, why);
	size_t i = 0;
	while (i < t->naccounts && strcasecmp(t->accounts[i].initiator, initiator) != 0)
		i++;
	if (!user) {
		if (i == t->naccounts)
			return cfg_fail(err, "%s has no CHAP account of its own on %s", initiator, t->name);
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

