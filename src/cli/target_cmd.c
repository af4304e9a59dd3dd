/* isthmus target ...: manage a running isthmus-target through its JSON-RPC socket. */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/exit_status.h"
#include "cli/target_cmd.h"
#include "mgmt/rpc.h"
#include "util/parse.h"

#define DEFAULT_TARGET_SOCKET "/run/isthmus/target.sock"
#define RPC_TIMEOUT_MS 10000

static void target_usage(FILE *f)
{
	fputs("usage: isthmus target [--socket PATH] [--json] COMMAND ...\n"
	      "\n"
	      "  session list                      every session (WT_Session fields)\n"
	      "  session show TSIH                 one session with connections and counters\n"
	      "  session kill TSIH [--grace S]     ask the initiator to log out, drop it after S seconds\n"
	      "  list                              targets, portals, LUNs, access lists\n"
	      "  stats                             target-wide counters\n"
	      "  add-target IQN [--alias A] [--portal-group N]\n"
	      "  remove-target IQN\n"
	      "  add-lun IQN SPEC [--lun N]        SPEC as for isthmus-target --lun\n"
	      "  remove-lun IQN LUN\n"
	      "  resize-lun IQN LUN SIZE\n"
	      "  allow IQN INITIATOR | disallow IQN INITIATOR\n"
	      "  set-chap (IQN [--initiator NAME] | --discovery) [--user U --secret S\n"
	      "           [--mutual-user U --mutual-secret S]]   no --user: CHAP off (or that initiator's account gone)\n"
	      "  add-portal HOST:PORT [--portal-group N] | remove-portal HOST:PORT\n"
	      "  save-config [PATH]                write the running configuration (atomically, 0600)\n"
	      "  reload                            reload the configuration file (as SIGHUP)\n"
	      "\n"
	      "The socket is --socket, else $ISTHMUS_TARGET_SOCKET, else " DEFAULT_TARGET_SOCKET ".\n",
	      f);
}

static const char *str(json_t *o, const char *k) { return jget_str(o, k, ""); }

static long long num(json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

static const char *yesno(json_t *o, const char *k) { return json_is_true(json_object_get(o, k)) ? "yes" : "no"; }

static void human_bytes(long long v, char *out, size_t len)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double d = (double)v;
	int i = 0;
	while (d >= 1024 && i < 4) {
		d /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

static void print_session_table(json_t *arr)
{
	printf("%-6s %-10s %-44s %-40s %5s %12s %10s %10s %9s\n", "TSIH", "TYPE", "INITIATOR", "TARGET", "CONNS",
	       "COMMANDS", "READ", "WRITTEN", "RECOVERED");
	size_t i;
	json_t *s;
	json_array_foreach(arr, i, s)
	{
		json_t *st = json_object_get(s, "stats");
		char rd[32], wr[32];
		human_bytes(num(st, "read_bytes"), rd, sizeof(rd));
		human_bytes(num(st, "write_bytes"), wr, sizeof(wr));
		printf("%-6lld %-10s %-44s %-40s %5lld %12lld %10s %10s %9lld\n", num(s, "tsih"), str(s, "session_type"),
		       str(s, "initiator_iqn"), str(s, "host_target_iqn")[0] ? str(s, "host_target_iqn") : "-",
		       num(s, "current_connections"), num(st, "commands"), rd, wr, num(s, "connection_recoveries"));
	}
	if (json_array_size(arr) == 0)
		printf("(no sessions)\n");
}

static void print_session(json_t *s)
{
	time_t created = (time_t)num(s, "created");
	char when[64];
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&created));
	printf("TSIH                       %lld\n", num(s, "tsih"));
	printf("ISID                       %s\n", str(s, "isid"));
	printf("Session type               %s\n", str(s, "session_type"));
	printf("Host name                  %s\n", str(s, "host_name"));
	printf("Initiator IQN              %s\n", str(s, "initiator_iqn"));
	printf("Initiator alias            %s\n", str(s, "initiator_alias"));
	printf("Host target IQN            %s\n", str(s, "host_target_iqn"));
	printf("Authentication             %s\n", str(s, "authentication_type"));
	printf("Logged in                  %s\n", when);
	printf("Current connections        %lld\n", num(s, "current_connections"));
	printf("Max connections            %lld\n", num(s, "max_connections"));
	printf("Initial R2T                %s\n", yesno(s, "allow_initial_r2t"));
	printf("Immediate data             %s\n", yesno(s, "allow_immediate_data"));
	printf("First burst length         %lld\n", num(s, "max_first_data_burst_length"));
	printf("Max burst length           %lld\n", num(s, "max_data_burst_length"));
	printf("Data sequence in order     %s\n", yesno(s, "is_data_sequence_in_order"));
	printf("Data PDU in order          %s\n", yesno(s, "is_data_pdu_in_order"));
	printf("Default time to wait       %lld\n", num(s, "default_time2wait"));
	printf("Default time to retain     %lld\n", num(s, "default_time2retain"));
	printf("Max outstanding R2T        %lld\n", num(s, "max_outstanding_r2t"));
	printf("Error recovery level       %lld\n", num(s, "error_recovery_level"));
	printf("Connection recoveries      %lld (%lld tasks reassigned, %zu failed connections waiting)\n",
	       num(s, "connection_recoveries"), num(s, "task_reassignments"),
	       json_array_size(json_object_get(s, "failed_connections")));
	json_t *st = json_object_get(s, "stats");
	char rd[32], wr[32];
	human_bytes(num(st, "read_bytes"), rd, sizeof(rd));
	human_bytes(num(st, "write_bytes"), wr, sizeof(wr));
	printf("Commands                   %lld (%lld errors, queue depth %lld)\n", num(st, "commands"),
	       num(st, "errors"), num(st, "queue_depth"));
	printf("Data read / written        %s / %s\n", rd, wr);
	printf("PDUs in / out              %lld / %lld\n", num(st, "pdus_in"), num(st, "pdus_out"));
	printf("R2Ts, digest errors, TMFs  %lld, %lld, %lld\n", num(st, "r2ts"), num(st, "digest_errors"),
	       num(st, "task_mgmt_requests"));
	printf("PDUs sent again            %lld\n", num(st, "pdus_resent"));
	printf("Waited for the device      %lld commands\n", num(st, "device_waits"));
	printf("\nConnections:\n%-5s %-28s %-28s %-8s %-8s %-13s %10s\n", "CID", "INITIATOR", "TARGET", "HDIGEST", "DDIGEST",
	       "STATE", "COMMANDS");
	size_t i;
	json_t *c;
	json_t *lists[2] = {json_object_get(s, "connections"), json_object_get(s, "failed_connections")};
	for (size_t l = 0; l < 2; l++) { /* the live connections, then the failed ones (level 2) */
		json_array_foreach(lists[l], i, c)
		{
			char ia[80], ta[80];
			const char *ih = str(c, "initiator_address"), *th = str(c, "target_address");
			snprintf(ia, sizeof(ia), strchr(ih, ':') ? "[%s]:%lld" : "%s:%lld", ih, num(c, "initiator_port"));
			snprintf(ta, sizeof(ta), strchr(th, ':') ? "[%s]:%lld" : "%s:%lld", th, num(c, "target_port"));
			printf("%-5lld %-28s %-28s %-8s %-8s %-13s %10lld\n", num(c, "cid"), ia, ta, str(c, "header_digest"),
			       str(c, "data_digest"), str(c, "state"), num(json_object_get(c, "stats"), "commands"));
		}
	}
}

static void print_targets(json_t *arr)
{
	size_t i, j;
	json_t *t, *v;
	json_array_foreach(arr, i, t)
	{
		printf("%s%s%s\n", str(t, "name"), json_is_string(json_object_get(t, "alias")) ? "  alias " : "",
		       str(t, "alias"));
		printf("  portal group %lld:", num(t, "portal_group_tag"));
		json_array_foreach(json_object_get(t, "portals"), j, v) printf(" %s", json_string_value(v));
		printf("\n  CHAP: %s%s; sessions: %lld\n", yesno(t, "chap"),
		       json_is_true(json_object_get(t, "mutual_chap")) ? " (mutual)" : "", num(t, "sessions"));
		printf("  access: ");
		if (json_array_size(json_object_get(t, "acl")) == 0)
			printf("any initiator");
		json_array_foreach(json_object_get(t, "acl"), j, v) printf("%s%s", j ? ", " : "", json_string_value(v));
		printf("\n");
		json_array_foreach(json_object_get(t, "luns"), j, v)
		{
			char sz[32];
			human_bytes(num(v, "size_bytes"), sz, sizeof(sz));
			printf("  LUN %-4lld %-7s %-10s bs %-5lld %s%s%s\n", num(v, "lun"), str(v, "kind"), sz,
			       num(v, "block_size"), json_is_string(json_object_get(v, "path")) ? str(v, "path") : "-",
			       json_is_true(json_object_get(v, "read_only")) ? " (read-only)" : "",
			       json_is_true(json_object_get(v, "thin")) ? " (thin)" : "");
			if (json_is_string(json_object_get(v, "librbd_cache")))
				printf("  WARNING: LUN %lld: librbd's write cache is ON (rbd_cache = true in the %s's "
				       "configuration): writes not yet flushed are lost if the target dies (docs/ceph.md)\n",
				       num(v, "lun"), str(v, "librbd_cache"));
		}
	}
}

static void print_stats(json_t *s)
{
	const char *keys[] = {"sessions",  "connections", "commands",      "read_bytes",         "write_bytes",
			      "pdus_in",   "pdus_out",    "bytes_in",      "bytes_out",          "r2ts",
			      "errors",    "digest_errors", "pdus_resent", "task_mgmt_requests", "device_waits", "queue_depth"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		printf("%-20s %lld\n", keys[i], num(s, keys[i]));
	if (json_is_string(json_object_get(s, "io_engine")))
		printf("%-20s %s (%s)\n", "io_engine", str(s, "io_engine"), str(s, "io_engine_reason"));
	json_t *loops = json_object_get(s, "loops");
	size_t i;
	json_t *l;
	json_array_foreach(loops, i, l)
	{
		json_t *cpu = json_object_get(l, "cpu_s");
		printf("loop %-15lld %lld connection(s), %lld session(s), %.2f CPU s\n", num(l, "id"), num(l, "connections"),
		       num(l, "sessions"), json_is_number(cpu) ? json_number_value(cpu) : 0.0);
	}
}

static int call(const char *sock, const char *method, json_t *params, bool as_json, void (*human)(json_t *))
{
	int code = 0;
	char *err = NULL;
	json_t *r = rpc_call(sock, method, params, RPC_TIMEOUT_MS, &code, &err);
	if (!r) {
		/* Code 0: no answer at all, so say where the socket came from. */
		fprintf(stderr, "isthmus target: %s%s\n", err,
			code == 0 ? " (is isthmus-target running? --socket PATH or $ISTHMUS_TARGET_SOCKET names its "
				    "--mgmt-socket)"
				  : "");
		free(err);
		return code == RPC_NOT_FOUND ? CLI_EXIT_NOT_FOUND : CLI_EXIT_FAILED;
	}
	if (as_json) {
		jprint_indented(r);
	} else if (human) {
		human(r);
	} else {
		printf("ok\n");
	}
	json_decref(r);
	return 0;
}

static bool usage_said; /* need() printed what is missing: no second line */

static int need(int argc, int n, const char *what)
{
	if (argc < n) {
		fprintf(stderr, "isthmus target: %s (isthmus target --help)\n", what);
		usage_said = true;
		return 0;
	}
	return 1;
}

/* TSIHs, LUN and portal group numbers, grace seconds: JSON integers, never negative. */
static int parse_int(const char *s, long long *out)
{
	uint64_t v;
	if (parse_uint(s, 0, 0, INT64_MAX, &v) < 0)
		return 0;
	*out = (long long)v;
	return 1;
}

int cmd_target(int argc, char **argv)
{
	const char *sock = getenv("ISTHMUS_TARGET_SOCKET");
	bool as_json = false;
	const char *alias = NULL, *user = NULL, *secret = NULL, *muser = NULL, *msecret = NULL;
	const char *initiator = NULL;
	long long group = -1, lun = -1, grace = -1;
	bool discovery = false;
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},       {"json", no_argument, NULL, 'j'},
		{"alias", required_argument, NULL, 'a'},        {"portal-group", required_argument, NULL, 'g'},
		{"lun", required_argument, NULL, 'l'},          {"grace", required_argument, NULL, 'G'},
		{"user", required_argument, NULL, 'u'},         {"secret", required_argument, NULL, 'S'},
		{"mutual-user", required_argument, NULL, 'U'},  {"mutual-secret", required_argument, NULL, 'M'},
		{"discovery", no_argument, NULL, 'd'},          {"help", no_argument, NULL, 'h'},
		{"initiator", required_argument, NULL, 'i'},
		{NULL, 0, NULL, 0},
	};
	optind = 1;
	opterr = 0; /* one line of our own instead of getopt's */
	int opt;
	while ((opt = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1 || optind < argc) {
		if (opt == -1) {
			/* Options may follow the subcommand words: collect positionals, keep parsing. */
			optind++;
			continue;
		}
		long long v;
		switch (opt) {
		case 's': sock = optarg; break;
		case 'j': as_json = true; break;
		case 'a': alias = optarg; break;
		case 'u': user = optarg; break;
		case 'S': secret = optarg; break;
		case 'U': muser = optarg; break;
		case 'M': msecret = optarg; break;
		case 'd': discovery = true; break;
		case 'i': initiator = optarg; break;
		case 'g':
		case 'l':
		case 'G':
			if (!parse_int(optarg, &v)) {
				fprintf(stderr, "isthmus target: '%s' is not a number\n", optarg);
				return CLI_EXIT_USAGE;
			}
			*(opt == 'g' ? &group : opt == 'l' ? &lun : &grace) = v;
			break;
		case 'h': target_usage(stdout); return 0;
		default:
			fprintf(stderr,
				"isthmus target: bad option '%s': unknown, or its value is missing (isthmus target --help lists them)\n",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	/* getopt_long with '+' stops at the first word; gather the words it skipped. */
	char *words[8];
	int nw = 0;
	for (int i = 1; i < argc && nw < 8; i++) {
		if (argv[i][0] == '-' && argv[i][1]) {
			bool takes = strcmp(argv[i], "--json") && strcmp(argv[i], "--discovery") && strcmp(argv[i], "-j") &&
				     strcmp(argv[i], "--help") && !strchr(argv[i], '=');
			if (takes)
				i++;
			continue;
		}
		words[nw++] = argv[i];
	}
	if (!sock)
		sock = DEFAULT_TARGET_SOCKET;
	if (nw == 0) {
		fprintf(stderr, "isthmus target: no command given (isthmus target --help lists them)\n");
		return CLI_EXIT_USAGE;
	}
	const char *c = words[0];
	json_t *p = json_object();
	long long n;
	if (strcmp(c, "session") == 0 && nw >= 2) {
		if (strcmp(words[1], "list") == 0) {
			json_decref(p);
			return call(sock, "session.list", NULL, as_json, print_session_table);
		}
		if (!need(nw, 3, "session show|kill needs a TSIH") || !parse_int(words[2], &n)) {
			json_decref(p);
			return CLI_EXIT_USAGE;
		}
		json_object_set_new(p, "tsih", json_integer(n));
		if (strcmp(words[1], "show") == 0)
			return call(sock, "session.show", p, as_json, print_session);
		if (strcmp(words[1], "kill") == 0) {
			if (grace >= 0)
				json_object_set_new(p, "grace", json_integer(grace));
			return call(sock, "session.kill", p, as_json, NULL);
		}
	} else if (strcmp(c, "list") == 0) {
		json_decref(p);
		return call(sock, "target.list", NULL, as_json, print_targets);
	} else if (strcmp(c, "stats") == 0) {
		json_decref(p);
		return call(sock, "stats", NULL, as_json, print_stats);
	} else if (strcmp(c, "add-target") == 0 && need(nw, 2, "add-target needs an IQN")) {
		json_object_set_new(p, "name", json_string(words[1]));
		if (alias)
			json_object_set_new(p, "alias", json_string(alias));
		if (group >= 0)
			json_object_set_new(p, "portal_group", json_integer(group));
		return call(sock, "target.add", p, as_json, NULL);
	} else if (strcmp(c, "remove-target") == 0 && need(nw, 2, "remove-target needs an IQN")) {
		json_object_set_new(p, "name", json_string(words[1]));
		return call(sock, "target.remove", p, as_json, NULL);
	} else if (strcmp(c, "add-lun") == 0 && need(nw, 3, "add-lun needs IQN and SPEC")) {
		json_object_set_new(p, "target", json_string(words[1]));
		json_object_set_new(p, "spec", json_string(words[2]));
		if (lun >= 0)
			json_object_set_new(p, "lun", json_integer(lun));
		return call(sock, "lun.add", p, as_json, NULL);
	} else if ((strcmp(c, "remove-lun") == 0 || strcmp(c, "resize-lun") == 0) &&
		   need(nw, strcmp(c, "resize-lun") == 0 ? 4 : 3,
			strcmp(c, "resize-lun") == 0 ? "resize-lun needs IQN, LUN and SIZE" : "remove-lun needs IQN and LUN") && parse_int(words[2], &n)) {
		json_object_set_new(p, "target", json_string(words[1]));
		json_object_set_new(p, "lun", json_integer(n));
		if (strcmp(c, "resize-lun") == 0) {
			json_object_set_new(p, "size", json_string(words[3]));
			return call(sock, "lun.resize", p, as_json, NULL);
		}
		return call(sock, "lun.remove", p, as_json, NULL);
	} else if ((strcmp(c, "allow") == 0 || strcmp(c, "disallow") == 0) && need(nw, 3, "allow and disallow need IQN and INITIATOR")) {
		json_object_set_new(p, "target", json_string(words[1]));
		json_object_set_new(p, "initiator", json_string(words[2]));
		return call(sock, strcmp(c, "allow") == 0 ? "acl.add" : "acl.remove", p, as_json, NULL);
	} else if (strcmp(c, "set-chap") == 0 && (discovery || need(nw, 2, "set-chap needs IQN or --discovery"))) {
		if (discovery)
			json_object_set_new(p, "discovery", json_true());
		else
			json_object_set_new(p, "target", json_string(words[1]));
		if (initiator)
			json_object_set_new(p, "initiator", json_string(initiator));
		if (user)
			json_object_set_new(p, "user", json_string(user));
		if (secret)
			json_object_set_new(p, "secret", json_string(secret));
		if (muser)
			json_object_set_new(p, "mutual_user", json_string(muser));
		if (msecret)
			json_object_set_new(p, "mutual_secret", json_string(msecret));
		return call(sock, "chap.set", p, as_json, NULL);
	} else if ((strcmp(c, "add-portal") == 0 || strcmp(c, "remove-portal") == 0) && need(nw, 2, "add-portal and remove-portal need HOST:PORT")) {
		json_object_set_new(p, "listen", json_string(words[1]));
		if (group >= 0)
			json_object_set_new(p, "portal_group", json_integer(group));
		return call(sock, strcmp(c, "add-portal") == 0 ? "portal.add" : "portal.remove", p, as_json, NULL);
	} else if (strcmp(c, "save-config") == 0) {
		if (nw >= 2)
			json_object_set_new(p, "path", json_string(words[1]));
		return call(sock, "config.save", p, as_json, NULL);
	} else if (strcmp(c, "reload") == 0) {
		return call(sock, "config.reload", p, as_json, NULL);
	}
	json_decref(p);
	if (!usage_said)
		fprintf(stderr, "isthmus target: unknown command or missing arguments: '%s' (isthmus target --help lists them)\n",
			c);
	return CLI_EXIT_USAGE;
}
