/* Cross-checks of a whole configuration, whichever way it was built. */
#include "target/config.h"

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

#include "target/config_internal.h"
#include "util/iscsi_name.h"
#include "util/parse.h"
#include "util/sbuf.h"


int cfg_check_secret(const char *what, const char *secret, char **err)
{
	size_t len = strlen(secret);
	if (len < MIN_SECRET)
		return cfg_fail(err, "%s is %zu bytes; CHAP secrets must be at least %d bytes (96 bits, RFC 7143)", what,
			    len, MIN_SECRET);
	if (len > MAX_SECRET)
		return cfg_fail(err, "%s is %zu bytes; CHAP secrets may be at most %d bytes", what, len, MAX_SECRET);
	if (strpbrk(secret, "\r\n"))
		return cfg_fail(err, "%s contains a line break", what);
	return 0;
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
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	char *loc = where(cfg, line);
	cfg_fail(err, "%s%s", loc, msg);
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
	if (cfg->nop_interval > MAX_SECONDS || cfg->nop_timeout == 0 || cfg->nop_timeout > MAX_SECONDS)
		return vfail(cfg, 0, err, "nop-interval must be 0 to %d and nop-timeout 1 to %d seconds", MAX_SECONDS,
			     MAX_SECONDS);
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
		char *gerr = NULL;
		if (cfg_validate_gateways(t, &gerr) < 0) {
			int rc = vfail(cfg, t->line, err, "%s", gerr);
			free(gerr);
			return rc;
		}
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
			if (!cfg_lun_pathless(l->kind) && (!l->path || !*l->path || strchr(l->path, ',')))
				return vfail(cfg, t->line, err, "LUN %u of target '%s' needs a path without ','",
					     l->lun, t->name);
			if (cfg_lun_pathless(l->kind) && l->size == 0)
				return vfail(cfg, t->line, err, "%s LUN %u of target '%s' needs a size",
					     cfg_lun_kind_name(l->kind), l->lun, t->name);
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

