/* isthmus: one-shot initiator commands on top of libisthmus, and the front of the daemon and target tools. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/daemon_cmd.h"
#include "cli/exit_status.h"
#include "cli/target_cmd.h"

static void usage(FILE *f)
{
	fputs("usage: isthmus COMMAND [OPTIONS]\n"
	      "\n"
	      "commands:\n"
	      "  discover PORTAL                 list targets (SendTargets=All) at host[:port] or [v6][:port]\n"
	      "  inquiry URL [--page N]          standard INQUIRY, or the VPD page N\n"
	      "  readcapacity URL                READ CAPACITY(16) (falls back to 10)\n"
	      "  reportluns URL                  REPORT LUNS\n"
	      "  read URL --lba N --blocks N [--out FILE]\n"
	      "  write URL --lba N --in FILE\n"
	      "  target ...                      manage a running isthmus-target (isthmus target --help)\n"
	      "  login, logout, session, persistent, chap, discover --daemon, discover --isns\n"
	      "                                  through the initiator daemon (isthmus login --help)\n"
	      "\n"
	      "URL: iscsi://[user[%password]@]host[:port]/target-iqn/lun[?target_user=U&target_password=P]\n"
	      "\n"
	      "options:\n"
	      "  --chap-user U --chap-secret S        CHAP credentials the initiator proves\n"
	      "  --mutual-user U --mutual-secret S    credentials the target must prove (mutual CHAP)\n"
	      "  --chap-alg LIST                      CHAP_A offer, e.g. sha256,sha1,md5 (default sha256,sha3-256,sha1,md5)\n"
	      "  --header-digest none|crc32c|prefer   default none (prefer offers CRC32C,None)\n"
	      "  --data-digest none|crc32c|prefer\n"
	      "  --initiator-name IQN                 default: initiator-name in $ISTHMUS_CONFIG or\n"
	      "                                       /etc/isthmus/initiator.conf, else one kept in\n"
	      "                                       $ISTHMUS_STATE_DIR (/var/lib/isthmus)/initiatorname\n"
	      "  --initiator-alias NAME\n"
	      "  --timeout SECONDS                    per command and per login (default 60 / 15)\n"
	      "  --depth N                            commands in flight for read/write (default 8)\n"
	      "  --io-size KIB                        transfer size per command (default 1024)\n"
	      "  --json                               print one JSON object\n"
	      "  --quiet, -q                          read/write: no progress on a terminal, no summary\n"
	      "  --help                               this text (isthmus COMMAND --help: that command's)\n"
	      "  --version                            the version\n"
	      "\n"
	      "exit status: 0 done, 1 failed, 2 bad command line, 3 (isthmus target) no such object\n",
	      f);
}

/* Commands with option sets of their own, handed the whole command line from their name on. */
static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} own_options[] = {
	{"target", cmd_target},   {"login", cmd_daemon}, {"logout", cmd_daemon},
	{"session", cmd_daemon},  {"persistent", cmd_daemon}, {"chap", cmd_daemon},
};

/* One-shot commands on a single portal or URL, after the global options. */
static const struct {
	const char *name;
	int (*run)(struct cli_opts *o, const char *arg);
	uint32_t io_kib; /* --io-size default, 0 if the command moves no data */
} one_shot[] = {
	{"discover", cmd_discover, 0},         {"inquiry", cmd_inquiry, 0}, {"readcapacity", cmd_readcapacity, 0},
	{"reportluns", cmd_reportluns, 0},     {"read", cmd_read, 1024},    {"write", cmd_write, 1024},
};

enum main_option {
	O_PAGE = CLI_O_FIRST_COMMAND_OPTION,
	O_LBA,
	O_BLOCKS,
	O_OUT,
	O_IN,
	O_DEPTH,
	O_QUIET,
};

/* Parses the global options into o; 0, 1 after --help, or -1 on a usage error. */
static int parse_options(int argc, char **argv, struct cli_opts *o)
{
	static const struct option longopts[] = {
		CLI_LOGIN_LONGOPTS,
		{"page", required_argument, NULL, O_PAGE},
		{"lba", required_argument, NULL, O_LBA},
		{"blocks", required_argument, NULL, O_BLOCKS},
		{"out", required_argument, NULL, O_OUT},
		{"in", required_argument, NULL, O_IN},
		{"depth", required_argument, NULL, O_DEPTH},
		{"quiet", no_argument, NULL, O_QUIET},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t v;
	int opt;
	opterr = 0; /* one line of our own instead of getopt's */
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (opt) {
		case O_PAGE:
			if (cli_parse_u64("--page", optarg, &v) < 0 || v > 255)
				return -1;
			o->page = (int)v;
			break;
		case O_LBA:
			if (cli_parse_u64("--lba", optarg, &o->lba) < 0)
				return -1;
			o->has_lba = true;
			break;
		case O_BLOCKS:
			if (cli_parse_u64("--blocks", optarg, &o->blocks) < 0)
				return -1;
			o->has_blocks = true;
			break;
		case O_OUT: o->out = optarg; break;
		case 'q':
		case O_QUIET: o->quiet = true; break;
		case O_IN: o->in = optarg; break;
		case O_DEPTH:
			if (cli_parse_u64("--depth", optarg, &v) < 0 || v < 1 || v > 128)
				return -1;
			o->depth = (int)v;
			break;
		case 'h': usage(stdout); return 1;
		default:
			if (opt >= CLI_O_CHAP_USER && opt < CLI_O_FIRST_COMMAND_OPTION) {
				if (cli_login_option(o, opt, optarg) < 0)
					return -1;
				break;
			}
			fprintf(stderr, "isthmus: bad option '%s': unknown, or its value is missing (isthmus --help lists them)\n",
				argv[optind - 1]);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
		printf("isthmus %s\n", ISTHMUS_VERSION);
		return CLI_EXIT_OK;
	}
	if (argc > 1) {
		for (size_t i = 0; i < sizeof(own_options) / sizeof(own_options[0]); i++)
			if (strcmp(argv[1], own_options[i].name) == 0)
				return own_options[i].run(argc - 1, argv + 1);
		/* discover is the daemon's when asked for, else a one-shot SendTargets. */
		if (strcmp(argv[1], "discover") == 0)
			for (int i = 2; i < argc; i++)
				if (strcmp(argv[i], "--daemon") == 0 || strncmp(argv[i], "--isns", 6) == 0)
					return cmd_daemon(argc - 1, argv + 1);
	}
	struct cli_opts o = {.page = -1, .depth = 8};
	int rc = parse_options(argc, argv, &o);
	if (rc != 0)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	cli_debug_from_env();
	if (optind >= argc) {
		fprintf(stderr, "isthmus: no command given (isthmus --help lists the commands)\n");
		return CLI_EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	cli_set_command(cmd, o.json);
	if (argc - optind - 1 != 1) {
		fprintf(stderr, "isthmus: %s takes exactly one %s argument\n", cmd,
			strcmp(cmd, "discover") == 0 ? "PORTAL" : "URL");
		return CLI_EXIT_USAGE;
	}
	const char *arg = argv[optind + 1];
	for (size_t i = 0; i < sizeof(one_shot) / sizeof(one_shot[0]); i++) {
		if (strcmp(cmd, one_shot[i].name) != 0)
			continue;
		/* Only a known command may create the initiator name file. */
		char err[512];
		if (cli_initiator_name(o.initiator_name_opt, o.initiator_name, sizeof(o.initiator_name), err,
				       sizeof(err)) < 0)
			return cli_fail("%s", err);
		if (!o.io_kib)
			o.io_kib = one_shot[i].io_kib;
		return one_shot[i].run(&o, arg);
	}
	fprintf(stderr, "isthmus: unknown command '%s' (isthmus --help lists the commands)\n", cmd);
	return CLI_EXIT_USAGE;
}
