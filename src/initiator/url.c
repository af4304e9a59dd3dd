/* Portals, iscsi:// URLs and ISID derivation. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "initiator/internal.h"
#include "util/hex.h"
#include "util/parse.h"

void ism_isid_derive(const char *initiator, const char *target, const char *portal_group, uint8_t isid[6])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	const char *parts[3] = {initiator ? initiator : "", target ? target : "", portal_group ? portal_group : ""};
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	static const char tag[] = "isthmus-isid-v1";
	EVP_DigestUpdate(ctx, tag, sizeof(tag)); /* the NUL separates the fields */
	for (int i = 0; i < 3; i++)
		EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	/* T = 01b (random), A reserved = 0; B, C and the qualifier D from the hash. */
	isid[0] = 0x40;
	memcpy(isid + 1, md, 5);
}

int ism_parse_portal(const char *portal, char *host, size_t hostlen, uint16_t *port)
{
	if (!portal || !*portal)
		return -1;
	const char *hs, *he, *rest;
	if (portal[0] == '[') {
		hs = portal + 1;
		he = strchr(hs, ']');
		if (!he || he == hs)
			return -1;
		rest = he + 1;
	} else {
		hs = portal;
		const char *colon = strchr(portal, ':');
		if (colon && strchr(colon + 1, ':')) {
			/* a bare IPv6 address without brackets: no port */
			he = portal + strlen(portal);
			rest = he;
		} else {
			he = colon ? colon : portal + strlen(portal);
			rest = he;
		}
	}
	size_t hl = (size_t)(he - hs);
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, hs, hl);
	host[hl] = 0;
	*port = ISM_DEFAULT_PORT;
	if (*rest == ',')
		return 0; /* ",tpgt" from a TargetAddress */
	if (*rest == 0)
		return 0;
	if (*rest != ':')
		return -1;
	rest++;
	char *end;
	unsigned long p = strtoul(rest, &end, 10);
	if (end == rest || (*end && *end != ',') || p == 0 || p > 65535)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

static char *dup_range(const char *s, size_t n)
{
	char *r = xmalloc(n + 1);
	memcpy(r, s, n);
	r[n] = 0;
	return r;
}

/* Decode %XX escapes of a query value in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r == '%' && hex_digit_value(r[1]) >= 0 && hex_digit_value(r[2]) >= 0) {
			*w++ = (char)(hex_digit_value(r[1]) * 16 + hex_digit_value(r[2]));
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

void ism_url_free(struct ism_url *u)
{
	if (!u)
		return;
	free(u->host);
	free(u->portal);
	free(u->target);
	free(u->user);
	secret_free(u->secret);
	free(u->target_user);
	secret_free(u->target_secret);
	free(u);
}

static struct ism_url *url_fail(struct ism_url *u, char *errmsg, size_t errlen, const char *why, const char *url)
{
	if (errmsg && errlen)
		snprintf(errmsg, errlen, "bad iSCSI URL '%s': %s", url, why);
	ism_url_free(u);
	return NULL;
}

struct ism_url *ism_url_parse(const char *url, char *errmsg, size_t errlen)
{
	static const char scheme[] = "iscsi://";
	if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
		return url_fail(NULL, errmsg, errlen, "must start with iscsi://", url ? url : "");
	struct ism_url *u = xcalloc(1, sizeof(*u));
	const char *p = url + sizeof(scheme) - 1;
	/* split off the query */
	const char *q = strchr(p, '?');
	size_t mainlen = q ? (size_t)(q - p) : strlen(p);
	char *main = dup_range(p, mainlen);
	char *m = main;
	/* userinfo: the last '@' before the path */
	char *slash = strchr(m, '/');
	char *at = NULL;
	for (char *x = m; *x && (!slash || x < slash); x++)
		if (*x == '@')
			at = x;
	if (at) {
		*at = 0;
		char *pct = strchr(m, '%');
		if (pct) {
			*pct = 0;
			u->secret = xstrdup(pct + 1);
			if (!*u->secret) {
				free(main);
				return url_fail(u, errmsg, errlen, "empty CHAP password after '%'", url);
			}
		}
		if (!*m) {
			free(main);
			return url_fail(u, errmsg, errlen, "empty CHAP user name before '@'", url);
		}
		u->user = xstrdup(m);
		m = at + 1;
	}
	slash = strchr(m, '/');
	char *hostport = slash ? dup_range(m, (size_t)(slash - m)) : xstrdup(m);
	char host[256];
	if (ism_parse_portal(hostport, host, sizeof(host), &u->port) < 0 || strchr(hostport, ',')) {
		free(hostport);
		free(main);
		return url_fail(u, errmsg, errlen, "bad host or port", url);
	}
	free(hostport);
	u->host = xstrdup(host);
	if (strchr(host, ':'))
		u->portal = xasprintf("[%s]:%u", host, u->port);
	else
		u->portal = xasprintf("%s:%u", host, u->port);
	if (slash && slash[1]) {
		char *t = slash + 1;
		char *s2 = strchr(t, '/');
		if (s2) {
			*s2 = 0;
			char *lunstr = s2 + 1;
			if (*lunstr) {
				uint64_t lun;
				if (parse_uint(lunstr, 10, 0, 0xffffffffull, &lun) < 0) {
					free(main);
					return url_fail(u, errmsg, errlen, "LUN is not a number", url);
				}
				u->lun = lun;
				u->has_lun = true;
			}
		}
		if (!*t) {
			free(main);
			return url_fail(u, errmsg, errlen, "empty target name", url);
		}
		u->target = xstrdup(t);
	}
	free(main);
	if (q) {
		char *query = xstrdup(q + 1);
		char *save = NULL;
		for (char *kv = strtok_r(query, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
			char *eq = strchr(kv, '=');
			if (!eq) {
				free(query);
				return url_fail(u, errmsg, errlen, "query argument without '='", url);
			}
			*eq = 0;
			char *val = eq + 1;
			unescape(val);
			if (strcmp(kv, "target_user") == 0) {
				free(u->target_user);
				u->target_user = xstrdup(val);
			} else if (strcmp(kv, "target_password") == 0) {
				secret_free(u->target_secret);
				u->target_secret = xstrdup(val);
			} else if (strcmp(kv, "header_digest") == 0 || strcmp(kv, "header-digest") == 0) {
				/* accepted and ignored here: digests are options of the session */
			} else {
				char why[128];
				snprintf(why, sizeof(why), "unknown query argument '%.40s'", kv);
				free(query);
				return url_fail(u, errmsg, errlen, why, url);
			}
		}
		free(query);
		if ((u->target_user == NULL) != (u->target_secret == NULL))
			return url_fail(u, errmsg, errlen, "target_user and target_password go together", url);
	}
	return u;
}
