/* The configuration file format of docs/config.md, read into a struct cfg line by line. */
#include "target/config.h"
#include "store/store_io.h"

#include <arpa/inet.h>
#include <ctype.h>
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

#include "proto/isns.h"
#include "target/config_internal.h"
#include "util/iscsi_name.h"
#include "util/parse.h"
#include "util/sbuf.h"

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
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	cfg_fail(p->err, "%s:%u: %s", p->path, p->line, msg);
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

/* Whole seconds within min..max, with the duration suffixes of util/parse.h ("30", "30s", "1m"). */
static int parse_seconds(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	uint64_t ms;
	if (parse_duration_ms(s, &ms) < 0 || ms % 1000 || ms / 1000 < min || ms / 1000 > max)
		return -1;
	*out = (unsigned long)(ms / 1000);
	return 0;
}

static struct cfg_target *cur_target(struct parser *p) { return &p->cfg->targets[p->target]; }

static bool is_space(char c) { return c == ' ' || c == '\t'; }

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

/* What chap_key made of a key: its values line up with the -1 / 0 the key handlers return. */
enum chap_key_outcome {
	CHAP_KEY_FAILED = -1,
	CHAP_KEY_TAKEN = 0,
	CHAP_KEY_OTHER = 1, /* not a CHAP key: the section's own handler goes on */
};

/*
 * user/secret/mutual keys of a CHAP block, shared by [global] (prefix "discovery-"), [target]
 * and [initiator] (no prefix).
 */
static enum chap_key_outcome chap_key(struct parser *p, struct cfg_chap *c, const char *prefix, const char *key,
				      const char *value)
{
	size_t plen = strlen(prefix);
	if (strncmp(key, prefix, plen) != 0)
		return CHAP_KEY_OTHER;
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
		return CHAP_KEY_OTHER;
	char name[64];
	snprintf(name, sizeof(name), "%s%s", prefix, base);
	if (once(p, name, key) < 0)
		return CHAP_KEY_FAILED;
	if (!c->line)
		c->line = p->line;
	if (!secret) {
		free(*field);
		*field = xstrdup(value);
		return CHAP_KEY_TAKEN;
	}
	char *v = NULL;
	if (strcmp(k + strlen(base), "-file") == 0) {
		if (read_secret_file(p, value, &v) < 0)
			return CHAP_KEY_FAILED;
	} else {
		v = xstrdup(value);
	}
	char *why = NULL;
	if (cfg_check_secret(name, v, &why) < 0) {
		free(v);
		pwrap(p, why);
		return CHAP_KEY_FAILED;
	}
	free(*field);
	*field = v;
	return CHAP_KEY_TAKEN;
}

static int global_key(struct parser *p, const char *key, const char *value)
{
	struct cfg *cfg = p->cfg;
	enum chap_key_outcome r = chap_key(p, &cfg->discovery_chap, "discovery-", key, value);
	if (r != CHAP_KEY_OTHER)
		return r;
	unsigned long n;
	if (strcmp(key, "state-dir") == 0 || strcmp(key, "mgmt-socket") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		char **field = strcmp(key, "state-dir") == 0 ? &cfg->state_dir : &cfg->mgmt_socket;
		free(*field);
		*field = xstrdup(value);
		return 0;
	}
	if (strcmp(key, "isns") == 0 || strcmp(key, "isns-entity") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		char why[160], addr[64];
		uint16_t port;
		if (key[4] == 0 && isns_parse_server(value, addr, sizeof(addr), &port, why, sizeof(why)) < 0)
			return perr(p, "%s", why);
		if (key[4] && (!value[0] || strlen(value) > 223))
			return perr(p, "isns-entity must be 1 to 223 bytes");
		char **field = key[4] == 0 ? &cfg->isns : &cfg->isns_entity;
		free(*field);
		*field = xstrdup(value);
		return 0;
	}
	if (strcmp(key, "isns-access") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0)
			return perr(p, "isns-access must be yes or no");
		cfg->isns_access = value[0] == 'y';
		return 0;
	}
	if (strcmp(key, "max-commands-per-session") == 0 || strcmp(key, "data-out-timeout") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		bool cmds = strcmp(key, "max-commands-per-session") == 0;
		unsigned long hi = cmds ? MAX_COMMANDS : MAX_SECONDS;
		if ((cmds ? cfg_parse_uint(value, 1, hi, &n) : parse_seconds(value, 1, hi, &n)) < 0)
			return perr(p, "%s '%s' is not a number from 1 to %lu", key, value, hi);
		*(cmds ? &cfg->max_commands : &cfg->data_out_timeout) = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "max-data-per-connection") == 0 || strcmp(key, "max-data-per-session") == 0 ||
	    strcmp(key, "max-data-total") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		uint64_t bytes;
		if (parse_size(value, &bytes) < 0 || bytes < (1u << 20))
			return perr(p, "%s '%s' is not a size of at least 1M", key, value);
		uint64_t *field = strcmp(key, "max-data-per-connection") == 0 ? &cfg->max_data_connection
				  : strcmp(key, "max-data-per-session") == 0  ? &cfg->max_data_session
									      : &cfg->max_data_total;
		*field = bytes;
		return 0;
	}
	if (strcmp(key, "max-retained-data") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		uint64_t bytes;
		if (parse_size(value, &bytes) < 0 || bytes < (1u << 20))
			return perr(p, "%s '%s' is not a size of at least 1M", key, value);
		cfg->max_retained_data = bytes;
		return 0;
	}
	if (strcmp(key, "io-engine") == 0) {
		enum store_engine_backend b;
		if (once(p, key, key) < 0)
			return -1;
		if (!store_engine_backend_parse(value, &b))
			return perr(p, "io-engine '%s' is not auto, io_uring or workers", value);
		cfg->io_engine = (unsigned)b;
		return 0;
	}
	if (strcmp(key, "zero-copy-reads") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0)
			return perr(p, "zero-copy-reads '%s' is not yes or no", value);
		cfg->zero_copy_reads = strcmp(value, "yes") == 0;
		return 0;
	}
	if (strcmp(key, "nop-interval") == 0 || strcmp(key, "nop-timeout") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		bool interval = strcmp(key, "nop-interval") == 0;
		if (parse_seconds(value, interval ? 0 : 1, MAX_SECONDS, &n) < 0)
			return perr(p, "%s '%s' is not a number of seconds from %d to %d", key, value, interval ? 0 : 1,
				    MAX_SECONDS);
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
		{"threads", offsetof(struct cfg, threads), CFG_THREADS_LIMIT},
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
	if (cfg_parse_uint(value, 1, max, &n) < 0)
		return cfg_fail(err, "%s '%s' is not a number from 1 to %u", what, value, max);
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
	enum chap_key_outcome r = chap_key(p, &t->chap, "", key, value);
	if (r != CHAP_KEY_OTHER)
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
		if (cfg_parse_uint(value, 1, 65535, &n) < 0)
			return perr(p, "portal-group '%s' is not a number from 1 to 65535", value);
		t->tpgt = (uint16_t)n;
		t->tpgt_line = p->line;
		return 0;
	}
	if (strcmp(key, "gateway") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		if (cfg_parse_uint(value, 1, 65535, &n) < 0)
			return perr(p, "gateway '%s' is not a number from 1 to 65535", value);
		/* The gateway's number is its portal group unless portal-group says otherwise (refused). */
		t->gateway = (uint16_t)n;
		if (!t->tpgt_line)
			t->tpgt = (uint16_t)n;
		return 0;
	}
	if (strcmp(key, "max-error-recovery-level") == 0) {
		if (once(p, key, key) < 0)
			return -1;
		if (cfg_parse_uint(value, 0, CFG_MAX_ERL, &n) < 0)
			return perr(p, "max-error-recovery-level '%s' is not a number from 0 to %u", value, CFG_MAX_ERL);
		t->max_erl = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "gateway-portal") == 0) {
		if (cfg_add_gateway_portal(t, value, &why) < 0) {
			int rc = perr(p, "%s", why);
			free(why);
			return rc;
		}
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
			if (cfg_parse_uint(key + 4, 0, 65535, &n) < 0)
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
	enum chap_key_outcome r = chap_key(p, &a->chap, "", key, value);
	if (r != CHAP_KEY_OTHER)
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
		if (cfg_parse_uint(arg, 1, 65535, &n) < 0)
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
		return cfg_fail(err, "%s: %s", path, strerror(errno));
	free(cfg->source);
	cfg->source = xstrdup(path);
	return cfg_load_stream(cfg, f, path, err);
}

int cfg_load_string(struct cfg *cfg, const char *name, const char *text, char **err)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	if (!f)
		return cfg_fail(err, "%s: %s", name, strerror(errno));
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
		rc = cfg_fail(err, "%s: read error: %s", path, strerror(errno));
	free(line);
	fclose(f);
	clear_seen(&p);
	free(p.sec_name);
	free(p.groups);
	return rc;
}
