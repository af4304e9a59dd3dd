/*
 * The gateway group of a target (docs/gateways.md): `gateway = N` says which gateway this
 * process is, `gateway-portal = M HOST:PORT` names every gateway of the group by its portal.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target/config.h"
#include "target/config_internal.h"
#include "util/sbuf.h"

int cfg_add_gateway_portal(struct cfg_target *t, const char *spec, char **err)
{
	char host[INET6_ADDRSTRLEN + 2];
	unsigned long id, port;
	const char *sp = strchr(spec, ' ');
	const char *addr, *colon;
	size_t hlen;

	if (t->ngateways >= CFG_MAX_GATEWAYS)
		return cfg_fail(err, "more than %u gateway portals", CFG_MAX_GATEWAYS);
	if (!sp)
		return cfg_fail(err, "gateway portal '%s' is not 'N HOST:PORT'", spec);
	char num[8];
	if ((size_t)(sp - spec) >= sizeof(num))
		return cfg_fail(err, "gateway number in '%s' is not a number from 1 to 65535", spec);
	memcpy(num, spec, (size_t)(sp - spec));
	num[sp - spec] = 0;
	if (cfg_parse_uint(num, 1, 65535, &id) < 0)
		return cfg_fail(err, "gateway number '%s' is not a number from 1 to 65535", num);
	addr = sp + 1;
	while (*addr == ' ')
		addr++;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return cfg_fail(err, "gateway portal '%s' is not [ADDR]:PORT", addr);
		hlen = (size_t)(close - addr - 1);
		addr++;
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || strchr(addr, ':') != colon)
			return cfg_fail(err, "gateway portal '%s' is not HOST:PORT", addr);
		hlen = (size_t)(colon - addr);
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return cfg_fail(err, "gateway portal '%s' has no valid host", spec);
	memcpy(host, addr, hlen);
	host[hlen] = 0;
	if (cfg_parse_uint(colon + 1, 1, 65535, &port) < 0)
		return cfg_fail(err, "gateway portal port '%s' is not a number from 1 to 65535", colon + 1);
	unsigned char bin[sizeof(struct in6_addr)];
	int family = inet_pton(AF_INET, host, bin) == 1 ? AF_INET : inet_pton(AF_INET6, host, bin) == 1 ? AF_INET6 : 0;
	if (!family)
		return cfg_fail(err, "gateway portal host '%s' is not a numeric IPv4 or IPv6 address", host);
	char canon[INET6_ADDRSTRLEN];
	inet_ntop(family, bin, canon, sizeof(canon));
	for (size_t i = 0; i < t->ngateways; i++) {
		if (t->gateways[i].id == id)
			return cfg_fail(err, "gateway %lu is named twice", id);
	}
	t->gateways = xrealloc(t->gateways, (t->ngateways + 1) * sizeof(*t->gateways));
	t->gateways[t->ngateways++] = (struct cfg_gateway){ (uint16_t)id, xstrdup(canon), (uint16_t)port };
	return 0;
}

const struct cfg_gateway *cfg_find_gateway(const struct cfg_target *t, uint16_t id)
{
	for (size_t i = 0; i < t->ngateways; i++) {
		if (t->gateways[i].id == id)
			return &t->gateways[i];
	}
	return NULL;
}

int cfg_validate_gateways(const struct cfg_target *t, char **err)
{
	if (!t->gateway && !t->ngateways)
		return 0;
	if (!t->gateway)
		return cfg_fail(err, "target '%s' names gateway portals but not which gateway it is (gateway = N)",
				t->name);
	if (!cfg_find_gateway(t, t->gateway))
		return cfg_fail(err, "target '%s' is gateway %u, which no gateway-portal names", t->name, t->gateway);
	if (t->tpgt != t->gateway)
		return cfg_fail(err, "target '%s' is gateway %u: its portal-group must be %u too, not %u", t->name,
				t->gateway, t->gateway, t->tpgt);
	return 0;
}

void cfg_format_gateways(struct sbuf *b, const struct cfg_target *t)
{
	if (t->gateway)
		sbuf_printf(b, "gateway = %u\n", t->gateway);
	for (size_t i = 0; i < t->ngateways; i++) {
		const struct cfg_gateway *g = &t->gateways[i];
		bool v6 = strchr(g->host, ':') != NULL;
		sbuf_printf(b, "gateway-portal = %u %s%s%s:%u\n", g->id, v6 ? "[" : "", g->host, v6 ? "]" : "", g->port);
	}
}

void cfg_free_gateways(struct cfg_target *t)
{
	for (size_t i = 0; i < t->ngateways; i++)
		free(t->gateways[i].host);
	free(t->gateways);
	t->gateways = NULL;
	t->ngateways = 0;
}
