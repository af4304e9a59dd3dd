/* isthmus discover PORTAL: the targets a portal lists for SendTargets=All. */
#include <string.h>

#include "cli/cli.h"

int cmd_discover(struct cli_opts *o, const char *portal_arg)
{
	char portal[300];
	if (strncmp(portal_arg, "iscsi://", 8) == 0) {
		struct ism_url *u = cli_parse_url(portal_arg, false);
		if (!u)
			return 1;
		snprintf(portal, sizeof(portal), "%s", u->portal);
		ism_url_free(u);
	} else {
		char host[256];
		uint16_t port;
		if (ism_parse_portal(portal_arg, host, sizeof(host), &port) < 0)
			return cli_fail("bad portal '%s' (want host[:port] or [ipv6][:port])", portal_arg);
		snprintf(portal, sizeof(portal), "%s", portal_arg);
	}
	struct ism_config cfg;
	if (cli_make_config(o, &cfg, NULL) != 0)
		return 1;
	struct ism_discovery *d = NULL;
	char err[512];
	if (ism_discover(&cfg, portal, &d, err, sizeof(err)) < 0)
		return cli_fail("%s", err);
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
