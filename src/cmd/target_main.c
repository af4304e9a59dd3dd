/* isthmus-target: serve LUNs over iSCSI. Flags build or extend the configuration file's setup. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target/config.h"
#include "target/target.h"
#include "util/log.h"

static void usage(FILE *f)
{
	fputs("usage: isthmus-target [--config FILE] [--listen HOST:PORT]... [--target IQN] [--lun SPEC]...\n"
	      "                      [--log-level error|warn|info|debug]\n"
	      "\n"
	      "  --config FILE      load portals, targets, LUNs, ACLs and CHAP from FILE (see docs/config.md)\n"
	      "  --listen HOST:PORT add a portal to portal group 1 (IPv6 as [ADDR]:PORT); may repeat\n"
	      "  --target IQN       the target the --lun flags belong to (created in portal group 1)\n"
	      "  --lun SPEC         PATH[,size=1G][,ro][,bs=4096][,thick] or memory,size=64M; numbered from 0\n"
	      "  --mgmt-socket PATH JSON-RPC management socket (mode 0600); the CLI reaches it with\n"
	      "                     isthmus target --socket PATH, or ISTHMUS_TARGET_SOCKET\n"
	      "  --log-level LEVEL  default info\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
		{"target", required_argument, NULL, 't'}, {"lun", required_argument, NULL, 'u'},
		{"log-level", required_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'},
		{"mgmt-socket", required_argument, NULL, 'm'},
		{NULL, 0, NULL, 0},
	};
	struct cfg cfg;
	cfg_init(&cfg);
	const char *config = NULL, *target = NULL, *mgmt = NULL;
	char **listens = NULL, **luns = NULL;
	size_t nlistens = 0, nluns = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:l:t:u:v:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'l':
			listens = realloc(listens, (nlistens + 1) * sizeof(*listens));
			listens[nlistens++] = optarg;
			break;
		case 't': target = optarg; break;
		case 'm': mgmt = optarg; break;
		case 'u':
			luns = realloc(luns, (nluns + 1) * sizeof(*luns));
			luns[nluns++] = optarg;
			break;
		case 'v':
			if (strcmp(optarg, "error") == 0)
				log_set_level(LOG_ERROR);
			else if (strcmp(optarg, "warn") == 0)
				log_set_level(LOG_WARN);
			else if (strcmp(optarg, "info") == 0)
				log_set_level(LOG_INFO);
			else if (strcmp(optarg, "debug") == 0)
				log_set_level(LOG_DEBUG);
			else {
				fprintf(stderr, "isthmus-target: unknown log level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "isthmus-target: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	char *err = NULL;
	if (config && cfg_load_file(&cfg, config, &err) < 0)
		goto fail;
	for (size_t i = 0; i < nlistens; i++)
		if (cfg_add_listen(&cfg, listens[i], &err) < 0)
			goto fail;
	if (nluns && !target) {
		err = strdup("--lun needs --target");
		goto fail;
	}
	if (target) {
		struct cfg_target *t = cfg_find_target(&cfg, target);
		if (!t && !(t = cfg_add_target(&cfg, target, &err)))
			goto fail;
		for (size_t i = 0; i < nluns; i++)
			if (cfg_add_lun_spec(&cfg, t, luns[i], &err) < 0)
				goto fail;
	}
	if (mgmt) {
		free(cfg.mgmt_socket);
		cfg.mgmt_socket = strdup(mgmt);
	}
	if (cfg.nportals == 0 && cfg_add_listen(&cfg, "127.0.0.1:3260", &err) < 0)
		goto fail;
	if (cfg.ntargets == 0) {
		err = strdup("no target configured: give --target and --lun, or --config");
		goto fail;
	}
	if (cfg_validate(&cfg, &err) < 0)
		goto fail;
	free(listens);
	free(luns);
	struct server srv = {0};
	int rc = 1;
	if (server_start(&srv, &cfg) == 0)
		rc = server_run(&srv);
	server_free(&srv);
	cfg_free(&cfg);
	return rc;
fail:
	fprintf(stderr, "isthmus-target: %s\n", err ? err : "configuration error");
	free(err);
	free(listens);
	free(luns);
	cfg_free(&cfg);
	return 2;
}
