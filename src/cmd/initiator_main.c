/* isthmus-initiator: the initiator daemon (see docs/initiator.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/daemon_cmd.h"
#include "daemon/config.h"
#include "daemon/run.h"
#include "proto/isns.h"
#include "util/log.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: isthmus-initiator [--config FILE] [--state-dir DIR] [--socket PATH] [--devices-dir DIR]\n"
		   "                         [--nbd-dir DIR] [--ibft DIR] [--isns ADDR[:PORT]] [--no-fuse] [--no-nbd]\n"
		   "                         [--no-block] [--foreground] [--log-level error|warn|info|debug]\n"
		   "                         [--check-config]\n"
		   "       isthmus-initiator ctl COMMAND ...   (the CLI's daemon commands: login, logout, session,\n"
		   "                                            persistent, chap, discover)\n"
		   "       isthmus-initiator --help | --version\n"
		   "defaults: --config /etc/isthmus/initiator.conf when present, --state-dir /var/lib/isthmus,\n"
		   "          --socket /run/isthmus/initiator.sock, --devices-dir /run/isthmus/devices,\n"
		   "          --nbd-dir /run/isthmus/nbd\n"
		   "--foreground stays attached (for a service manager: with $NOTIFY_SOCKET set, READY=1 is sent\n"
		   "once the start-up logins are done or have had their login timeout); --ibft DIR adds the boot\n"
		   "session that firmware describes; --isns registers with that iSNS server (port 3205 by default)\n"
		   "and overrides the file's isns; --no-fuse, --no-nbd and --no-block turn a kind of local device\n"
		   "off;\n"
		   "--check-config reads the configuration file and exits: 0 when it is valid, else 1.\n");
}

/* --check-config: the file as start-up reads it, nothing else opened. */
static int check_config(const char *path)
{
	if (!path) {
		fprintf(stderr, "isthmus-initiator: no configuration file: give --config FILE\n");
		return 1;
	}
	struct dmn_config c;
	char err[512];
	dmn_config_defaults(&c);
	int rc = dmn_config_load(&c, path, err, sizeof(err));
	dmn_config_free(&c);
	if (rc < 0) {
		fprintf(stderr, "isthmus-initiator: %s\n", err);
		return 1;
	}
	printf("%s: configuration is valid\n", path);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
		return cmd_daemon(argc - 2, argv + 2);
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},     {"state-dir", required_argument, NULL, 's'},
		{"socket", required_argument, NULL, 'S'},     {"devices-dir", required_argument, NULL, 'd'},
		{"nbd-dir", required_argument, NULL, 'n'},    {"ibft", required_argument, NULL, 'i'},
		{"no-fuse", no_argument, NULL, 'F'},          {"no-nbd", no_argument, NULL, 'N'},
		{"foreground", no_argument, NULL, 'f'},       {"log-level", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},             {"version", no_argument, NULL, 'V'},
		{"check-config", no_argument, NULL, 'k'},     {"no-block", no_argument, NULL, 'B'},
		{"isns", required_argument, NULL, 'I'},
		{NULL, 0, NULL, 0},
	};
	struct dmn_args a = {.ready_fd = -1};
	bool foreground = false, check_only = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:s:S:d:n:i:I:FNBfl:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': a.config = optarg; break;
		case 's': a.state_dir = optarg; break;
		case 'S': a.socket = optarg; break;
		case 'd': a.devices_dir = optarg; break;
		case 'n': a.nbd_dir = optarg; break;
		case 'i': a.ibft = optarg; break;
		case 'I': {
			char addr[64], why[160];
			uint16_t port;
			if (isns_parse_server(optarg, addr, sizeof(addr), &port, why, sizeof(why)) < 0) {
				fprintf(stderr, "isthmus-initiator: --isns: %s\n", why);
				return 2;
			}
			a.isns = optarg;
			break;
		}
		case 'F': a.no_fuse = true; break;
		case 'N': a.no_nbd = true; break;
		case 'B': a.no_block = true; break;
		case 'f': foreground = true; break;
		case 'k': check_only = true; break;
		case 'l':
			if (!strcmp(optarg, "error")) log_set_level(LOG_ERROR);
			else if (!strcmp(optarg, "warn")) log_set_level(LOG_WARN);
			else if (!strcmp(optarg, "info")) log_set_level(LOG_INFO);
			else if (!strcmp(optarg, "debug")) log_set_level(LOG_DEBUG);
			else {
				fprintf(stderr, "isthmus-initiator: --log-level: error, warn, info or debug\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("isthmus-initiator %s\n", ISTHMUS_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	struct stat st;
	if (!a.config && stat("/etc/isthmus/initiator.conf", &st) == 0)
		a.config = "/etc/isthmus/initiator.conf";
	if (check_only)
		return check_config(a.config);
	if (!foreground) {
		/* Detach; the parent returns once the daemon listens, so scripts can use it at once. */
		int p[2];
		if (pipe(p) < 0) {
			perror("pipe");
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid > 0) {
			close(p[1]);
			char buf[4];
			ssize_t r = read(p[0], buf, sizeof(buf));
			return r > 0 ? 0 : 1;
		}
		close(p[0]);
		setsid();
		if (!freopen("/dev/null", "r", stdin))
			return 1;
		a.ready_fd = p[1];
	}
	return dmn_run(&a);
}
