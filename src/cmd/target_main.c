/* isthmus-target: serve LUNs over iSCSI. Flags build or extend the configuration file's setup. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/isns.h"
#include "store/store_io.h"
#include "target/config.h"
#include "target/target.h"
#include "util/log.h"
#include "util/sbuf.h"
#include "util/sd_notify.h"

static void usage(FILE *f)
{
	fputs("usage: isthmus-target [--config FILE] [--listen HOST:PORT]... [--target IQN] [--lun SPEC]...\n"
	      "                      [--mgmt-socket PATH] [--state-dir DIR] [--log-level error|warn|info|debug]\n"
	      "                      [--max-connections N] [--max-connections-per-portal N] [--metrics HOST:PORT]\n"
	      "                      [--isns ADDR[:PORT]] [--isns-access] [--io-engine auto|io_uring|workers]\n"
	      "                      [--check-config] [--max-error-recovery-level N] [--threads N]\n"
	      "                      [--gateway N --gateway-portal N=HOST:PORT...]\n"
	      "       isthmus-target --help | --version\n"
	      "\n"
	      "  --config FILE      load portals, targets, LUNs, ACLs and CHAP from FILE (see isthmus-target.conf(5));\n"
	      "                     SIGHUP reloads it and applies only the differences\n"
	      "  --check-config     check the configuration (file and flags) and exit: 0 when it is valid,\n"
	      "                     1 with the error (file and line) on standard error; nothing is opened\n"
	      "  --listen HOST:PORT add a portal to portal group 1 (IPv6 as [ADDR]:PORT); may repeat\n"
	      "  --target IQN       the target the --lun flags belong to (created in portal group 1)\n"
	      "  --lun SPEC         PATH[,size=1G][,ro][,bs=4096][,thick], memory,size=64M or null,size=1T\n"
	      "                     (reads zeros, drops writes); numbered from 0\n"
	      "  --mgmt-socket PATH JSON-RPC management socket (mode 0600), default /run/isthmus/target.sock;\n"
	      "                     the CLI reaches it with isthmus target --socket PATH or ISTHMUS_TARGET_SOCKET\n"
	      "  --state-dir DIR    where persistent reservations made with APTPL are kept (overrides the\n"
	      "                     file's state-dir), default " CFG_DEFAULT_STATE_DIR "\n"
	      "  --metrics HOST:PORT serve Prometheus metrics over HTTP (bind to loopback unless you mean it)\n"
	      "  --max-connections N            iSCSI connections at once, whole target (default 1024)\n"
	      "  --max-connections-per-portal N iSCSI connections at once through one portal (default 256)\n"
	      "  --isns ADDR[:PORT] register with this iSNS server (port 3205 by default; see docs/isns.md)\n"
	      "  --isns-access      admit only initiators that share an iSNS discovery domain with the target\n"
	      "                     (they must be registered with the server; see docs/isns.md)\n"
	      "  --io-engine KIND   how file and block-device LUNs are driven: io_uring, worker threads, or\n"
	      "                     auto (io_uring where the kernel allows it; the default)\n"
	      "  --threads N        event loops (threads) serving connections, 1 to 256 (default: the CPUs\n"
	      "                     the process may run on, at most 256); read at start-up only\n"
	      "  --zero-copy-reads  send reads of 64 KiB and more of tmpfs LUNs by splice, without a copy\n"
	      "                     (see docs/performance.md: on some machines it costs more than it saves)\n"
	      "  --gateway N        this process is gateway N of the --target's gateway group (one LU behind\n"
	      "                     several gateways, implicit ALUA; see docs/gateways.md); its --listen\n"
	      "                     portals go to portal group N\n"
	      "  --gateway-portal N=HOST:PORT  the portal of gateway N of the group (this one included); repeat\n"
	      "                     for every gateway\n"
	      "  --max-error-recovery-level N  the highest ErrorRecoveryLevel the --target offers: 0, 1 or 2\n"
	      "                     (1: digest errors cost one PDU, SNACK; 2: a failed connection's\n"
	      "                     tasks are reassigned; see docs/recovery.md); default 0\n"
	      "  --log-level LEVEL  default info\n"
	      "  --help             this text; --version: the version\n",
	      f);
}

/* What the flags add; applied to the file's configuration at start and at every reload. */
struct flags {
	char **listens;
	size_t nlistens;
	const char *target;
	char **luns;
	size_t nluns;
	const char *mgmt;
	unsigned max_connections, max_connections_per_portal; /* 0: as the file says */
	unsigned threads;       /* 0: as the file says */
	const char *state_dir;
	const char *isns;
	bool isns_access;
	const char *io_engine;  /* NULL: as the file says */
	bool zero_copy_reads;   /* false: as the file says */
	unsigned gateway;       /* 0: none */
	char **gateway_portals; /* "N HOST:PORT" */
	size_t ngateway_portals;
	int max_erl;            /* -1: as the file says */
};

static int apply_flags(struct cfg *cfg, void *arg, char **err)
{
	const struct flags *f = arg;
	for (size_t i = 0; i < f->nlistens; i++)
		if ((f->gateway ? cfg_add_listen_group(cfg, f->listens[i], (uint16_t)f->gateway, err)
				: cfg_add_listen(cfg, f->listens[i], err)) < 0)
			return -1;
	if (f->target) {
		struct cfg_target *t = cfg_find_target(cfg, f->target);
		if (!t && !(t = cfg_add_target(cfg, f->target, err)))
			return -1;
		if (f->gateway) {
			t->gateway = (uint16_t)f->gateway;
			t->tpgt = (uint16_t)f->gateway;
		}
		if (f->max_erl >= 0)
			t->max_erl = (unsigned)f->max_erl;
		for (size_t i = 0; i < f->ngateway_portals; i++)
			if (cfg_add_gateway_portal(t, f->gateway_portals[i], err) < 0)
				return -1;
		for (size_t i = 0; i < f->nluns; i++)
			if (cfg_add_lun_spec(cfg, t, f->luns[i], err) < 0)
				return -1;
	}
	if (f->mgmt) {
		free(cfg->mgmt_socket);
		cfg->mgmt_socket = xstrdup(f->mgmt);
	}
	if (f->max_connections)
		cfg->max_connections = f->max_connections;
	if (f->max_connections_per_portal)
		cfg->max_connections_per_portal = f->max_connections_per_portal;
	if (f->threads)
		cfg->threads = f->threads;
	if (f->state_dir) {
		free(cfg->state_dir);
		cfg->state_dir = xstrdup(f->state_dir);
	}
	if (f->isns) {
		free(cfg->isns);
		cfg->isns = xstrdup(f->isns);
	}
	if (f->isns_access)
		cfg->isns_access = true;
	if (f->io_engine) {
		enum store_engine_backend b;
		if (!store_engine_backend_parse(f->io_engine, &b)) {
			*err = xasprintf("--io-engine '%s' is not auto, io_uring or workers", f->io_engine);
			return -1;
		}
		cfg->io_engine = (unsigned)b;
	}
	if (f->zero_copy_reads)
		cfg->zero_copy_reads = true;
	if (cfg->nportals == 0 && cfg_add_listen(cfg, "127.0.0.1:3260", err) < 0)
		return -1;
	if (cfg->ntargets == 0) {
		*err = xstrdup("no target configured: give --target and --lun, or --config");
		return -1;
	}
	return 0;
}

/* --check-config: what start-up would check before opening anything (LUN files are not touched). */
static int check_config(struct cfg *cfg, struct flags *fl, const char *config)
{
	char *err = NULL;
	int rc = 0;
	if (apply_flags(cfg, fl, &err) < 0 || cfg_validate(cfg, &err) < 0) {
		fprintf(stderr, "isthmus-target: %s\n", err);
		free(err);
		rc = 1;
	} else {
		printf("%s: configuration is valid\n", config ? config : "command line");
	}
	cfg_free(cfg);
	free(cfg);
	return rc;
}

static void push(char ***v, size_t *n, char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = s;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},      {"listen", required_argument, NULL, 'l'},
		{"target", required_argument, NULL, 't'},      {"lun", required_argument, NULL, 'u'},
		{"log-level", required_argument, NULL, 'v'},   {"mgmt-socket", required_argument, NULL, 'm'},
		{"metrics", required_argument, NULL, 'M'},     {"help", no_argument, NULL, 'h'},
		{"max-connections", required_argument, NULL, 'C'},
		{"threads", required_argument, NULL, 'T'},
		{"max-connections-per-portal", required_argument, NULL, 'P'},
		{"state-dir", required_argument, NULL, 's'},
		{"isns", required_argument, NULL, 'I'},       {"isns-access", no_argument, NULL, 'A'},
		{"check-config", no_argument, NULL, 'k'},      {"version", no_argument, NULL, 'V'},
		{"io-engine", required_argument, NULL, 'E'},  {"zero-copy-reads", no_argument, NULL, 'Z'},
		{"gateway", required_argument, NULL, 'G'},     {"gateway-portal", required_argument, NULL, 'g'},
		{"max-error-recovery-level", required_argument, NULL, 'R'},
		{NULL, 0, NULL, 0},
	};
	struct flags fl = {.max_erl = -1};
	const char *config = NULL, *metrics = NULL;
	int opt, rc = 2;
	bool check_only = false;
	while ((opt = getopt_long(argc, argv, "c:l:t:u:v:m:M:s:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'l': push(&fl.listens, &fl.nlistens, optarg); break;
		case 't': fl.target = optarg; break;
		case 'u': push(&fl.luns, &fl.nluns, optarg); break;
		case 'm': fl.mgmt = optarg; break;
		case 's': fl.state_dir = optarg; break;
		case 'I': {
			char addr[64], why[160];
			uint16_t port;
			if (isns_parse_server(optarg, addr, sizeof(addr), &port, why, sizeof(why)) < 0) {
				fprintf(stderr, "isthmus-target: --isns: %s\n", why);
				goto out;
			}
			fl.isns = optarg;
			break;
		}
		case 'A': fl.isns_access = true; break;
		case 'E': fl.io_engine = optarg; break;
		case 'R':
			if (strlen(optarg) != 1 || optarg[0] < '0' || (unsigned)(optarg[0] - '0') > CFG_MAX_ERL) {
				fprintf(stderr, "isthmus-target: --max-error-recovery-level '%s' is not a number from 0 to %u\n",
					optarg, CFG_MAX_ERL);
				goto out;
			}
			fl.max_erl = optarg[0] - '0';
			break;
		case 'Z': fl.zero_copy_reads = true; break;
		case 'G': {
			char *e = NULL;
			if (cfg_parse_limit("--gateway", optarg, 65535, &fl.gateway, &e) < 0) {
				fprintf(stderr, "isthmus-target: %s\n", e);
				free(e);
				goto out;
			}
			break;
		}
		case 'g': {
			/* N=HOST:PORT on the command line, "N HOST:PORT" in the file. */
			char *eq = strchr(optarg, '=');
			if (!eq) {
				fprintf(stderr, "isthmus-target: --gateway-portal '%s' is not N=HOST:PORT\n", optarg);
				goto out;
			}
			*eq = ' ';
			push(&fl.gateway_portals, &fl.ngateway_portals, optarg);
			break;
		}
		case 'M': metrics = optarg; break;
		case 'k': check_only = true; break;
		case 'V': printf("isthmus-target %s\n", ISTHMUS_VERSION); rc = 0; goto out;
		case 'T': {
			char *e = NULL;
			if (cfg_parse_limit("--threads", optarg, CFG_THREADS_LIMIT, &fl.threads, &e) < 0) {
				fprintf(stderr, "isthmus-target: %s\n", e);
				free(e);
				goto out;
			}
			break;
		}
		case 'C':
		case 'P': {
			char *e = NULL;
			unsigned *field = opt == 'C' ? &fl.max_connections : &fl.max_connections_per_portal;
			if (cfg_parse_limit(opt == 'C' ? "--max-connections" : "--max-connections-per-portal", optarg,
					    CFG_MAX_CONNECTIONS_LIMIT, field, &e) < 0) {
				fprintf(stderr, "isthmus-target: %s\n", e);
				free(e);
				goto out;
			}
			break;
		}
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
				goto out;
			}
			break;
		case 'h': usage(stdout); rc = 0; goto out;
		default: usage(stderr); goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "isthmus-target: unexpected argument '%s'\n", argv[optind]);
		goto out;
	}
	if ((fl.gateway || fl.ngateway_portals) && !fl.target) {
		fprintf(stderr, "isthmus-target: --gateway and --gateway-portal need --target\n");
		goto out;
	}
	if (fl.max_erl >= 0 && !fl.target) {
		fprintf(stderr, "isthmus-target: --max-error-recovery-level needs --target\n");
		goto out;
	}
	if (fl.nluns && !fl.target) {
		fprintf(stderr, "isthmus-target: --lun needs --target\n");
		goto out;
	}
	struct cfg *cfg = xcalloc(1, sizeof(*cfg));
	cfg_init(cfg);
	char *err = NULL;
	if (check_only)
		rc = 1; /* for --check-config every configuration error is status 1 */
	if (config && cfg_load_file(cfg, config, &err) < 0) {
		fprintf(stderr, "isthmus-target: %s\n", err);
		free(err);
		cfg_free(cfg);
		free(cfg);
		goto out;
	}
	if (check_only) {
		rc = check_config(cfg, &fl, config);
		goto out;
	}
	struct server srv = {.overlay = apply_flags, .overlay_arg = &fl, .metrics_listen = metrics};
	rc = 1;
	if (server_start(&srv, cfg) == 0) {
		/* server_start returns with every portal listening: initiators can connect from here on. */
		sd_notify_ready();
		rc = server_run(&srv);
	}
	server_free(&srv);
out:
	free(fl.listens);
	free(fl.luns);
	free(fl.gateway_portals);
	return rc;
}
