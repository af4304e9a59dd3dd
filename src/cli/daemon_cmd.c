/*
 * The CLI's daemon commands: each is one JSON-RPC call to isthmus-initiator. Operations that need
 * the network (login, logout, connections, live SCSI commands, discovery) are answered when they
 * finished, so those calls wait longer. Human tables by default, the daemon's JSON with --json.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/daemon_cmd.h"
#include "cli/exit_status.h"
#include "mgmt/rpc.h"
#include "util/parse.h"

#define CALL_TIMEOUT_MS 30000  /* methods that answer at once */
#define OP_TIMEOUT_MS 180000   /* methods answered when their operation finished */

struct dctx {
	const char *socket;
	bool json;
	int npos;
	const char *pos[16];
	json_t *params; /* options turned into RPC params */
	int page;
	bool have_page;
	bool from_stdin;
	bool help;
};

static void print_usage(FILE *f)
{
	fprintf(f,
		"usage: isthmus [--socket PATH] [--json] COMMAND ...\n"
		"  login TARGET --portal HOST[:PORT] [--portal HOST[:PORT] ...] [--failback SECONDS]\n"
		"        [--type data|informational|boot] [--persistent]\n"
		"        [--chap-user U --chap-secret S] [--mutual-user U [--mutual-secret S]] [--chap-algorithms 7,6,5]\n"
		"        [--header-digest] [--data-digest] [--digest] [--removal-latency SECONDS] [--allow-duplicate]\n"
		"        [--max-recv-dsl N] [--max-burst N] [--first-burst N] [--initial-r2t yes|no]\n"
		"        [--immediate-data yes|no] [--isid HEX12] [--pr-key HEX] [--pr-type T]   prints the session id on its last line\n"
		"  logout SID\n"
		"  session list | show SID | logout SID | add-connection SID [--portal P] | remove-connection SID CID\n"
		"          inquiry SID LUN [--page N] | readcapacity SID LUN | reportluns SID | register SID | unregister SID\n"
		"  persistent list | add TARGET --portal P [login options] | remove ID | remove TARGET [--portal P]\n"
		"  chap set-secret [SECRET]    (read from standard input when not given)\n"
		"  discover --daemon PORTAL [--chap-user U --chap-secret S]\n"
		"  discover --isns ADDR[:PORT]   targets an iSNS server lets this initiator see (port 3205 by default)\n"
		"The daemon: --socket PATH, else $ISTHMUS_SOCKET, else /run/isthmus/initiator.sock.\n");
}

static const char *current_command = "login"; /* for the hint of a usage error */

/* A usage error: one line that says where the forms of the command are listed. */
static int usage(void)
{
	fprintf(stderr, "isthmus: %s: missing or unknown arguments (isthmus %s --help lists its forms)\n",
		current_command, current_command);
	return CLI_EXIT_USAGE;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Methods whose answer waits for the network (the daemon defers it). */
static bool long_method(const char *method)
{
	static const char *const names[] = {"session.login", "session.logout", "session.add_connection",
					    "session.remove_connection", "session.inquiry", "session.readcapacity",
					    "session.reportluns", "discovery.run", "discovery.isns", NULL};
	for (int i = 0; names[i]; i++)
		if (!strcmp(names[i], method))
			return true;
	return false;
}

/*
 * Call a method and return its answer. A daemon that cannot answer directly sends
 * {"pending": op}; that is followed with "op.result" until the operation finished.
 * NULL on error (printed).
 */
static json_t *call(struct dctx *c, const char *method, json_t *params)
{
	int code = 0;
	char *err = NULL;
	json_t *r = rpc_call(c->socket, method, params, long_method(method) ? OP_TIMEOUT_MS : CALL_TIMEOUT_MS, &code,
			     &err);
	long deadline = now_ms() + OP_TIMEOUT_MS;
	long pause = 20;
	while (r && json_is_object(r) && json_is_integer(json_object_get(r, "pending"))) {
		json_int_t op = json_integer_value(json_object_get(r, "pending"));
		json_decref(r);
		if (now_ms() > deadline) {
			fprintf(stderr, "isthmus: no result from the daemon within %d s (operation %lld)\n",
				OP_TIMEOUT_MS / 1000, (long long)op);
			return NULL;
		}
		sleep_ms(pause);
		if (pause < 200)
			pause += 20;
		r = rpc_call(c->socket, "op.result", json_pack("{s:I}", "op", op), CALL_TIMEOUT_MS, &code, &err);
	}
	if (!r) {
		/* Code 0: no answer at all, so say where the socket came from. */
		fprintf(stderr, "isthmus: %s%s\n", err ? err : "failed",
			code == 0 ? " (is isthmus-initiator running? --socket PATH or $ISTHMUS_SOCKET names its socket)"
				  : "");
		free(err);
	}
	return r;
}

static void print_scalar(json_t *v)
{
	if (json_is_string(v))
		printf("%s", json_string_value(v));
	else if (json_is_true(v))
		printf("yes");
	else if (json_is_false(v))
		printf("no");
	else if (json_is_null(v))
		printf("-");
	else if (json_is_integer(v))
		printf("%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		printf("%g", json_real_value(v));
}

/* key: value lines; nested objects and arrays indented. */
static void print_kv(json_t *j, int indent)
{
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) {
		if (json_is_object(v)) {
			printf("%*s%s:\n", indent, "", k);
			print_kv(v, indent + 2);
		} else if (json_is_array(v)) {
			printf("%*s%s:%s\n", indent, "", k, json_array_size(v) ? "" : " (none)");
			size_t i;
			json_t *e;
			json_array_foreach(v, i, e) {
				if (json_is_object(e)) {
					printf("%*s- [%zu]\n", indent + 2, "", i);
					print_kv(e, indent + 4);
				} else {
					printf("%*s- ", indent + 2, "");
					print_scalar(e);
					printf("\n");
				}
			}
		} else {
			printf("%*s%s: ", indent, "", k);
			print_scalar(v);
			printf("\n");
		}
	}
}

static const char *str(json_t *o, const char *k) { return jget_str(o, k, "-"); }

static void print_sessions(json_t *a)
{
	if (!json_array_size(a)) {
		printf("no sessions\n");
		return;
	}
	printf("%-18s  %-13s  %-12s  %-5s  %-7s  %-21s  %s\n", "SESSION", "TYPE", "STATE", "CONNS", "DEVICES", "PORTAL",
	       "TARGET");
	size_t i;
	json_t *s;
	json_array_foreach(a, i, s) {
		printf("%-18s  %-13s  %-12s  %-5lld  %-7zu  %-21s  %s\n", str(s, "session_id"), str(s, "session_type"),
		       str(s, "state"), (long long)json_integer_value(json_object_get(s, "number_of_connections")),
		       json_array_size(json_object_get(s, "devices")), str(s, "target_portal"),
		       str(s, "target_node_address"));
	}
}

/*
 * session show: every field, then the portals side by side with the LUNs each is active/optimized
 * for, which is what the preferred portal is chosen by (portal_choice says by which rule).
 */
static void print_session_show(json_t *r)
{
	print_kv(r, 0);
	json_t *ps = json_object_get(r, "portals");
	if (json_array_size(ps) < 2)
		return;
	json_t *c = json_object_get(r, "portal_choice");
	printf("\nportal choice: %s (%s)\n", str(c, "preferred"), str(c, "rule"));
	printf("  %-21s  %-4s  %-20s  %s\n", "PORTAL", "TPG", "ALUA (FIRST LUN)", "OPTIMIZED LUNS");
	size_t i;
	json_t *p;
	json_array_foreach(ps, i, p) {
		char tpg[16] = "-", luns[64] = "", *o = luns;
		json_t *t = json_object_get(p, "target_port_group");
		if (json_is_integer(t))
			snprintf(tpg, sizeof(tpg), "%lld", (long long)json_integer_value(t));
		size_t k;
		json_t *l;
		json_array_foreach(json_object_get(p, "optimized_luns"), k, l) {
			size_t left = sizeof(luns) - (size_t)(o - luns);
			int w = snprintf(o, left, "%s%lld", k ? "," : "", (long long)json_integer_value(l));
			if (w < 0 || (size_t)w >= left) {
				snprintf(luns + sizeof(luns) - 4, 4, "...");
				break;
			}
			o += w;
		}
		size_t nopt = json_array_size(json_object_get(p, "optimized_luns"));
		char count[sizeof(luns) + 32];
		snprintf(count, sizeof(count), "%zu%s%s%s", nopt, nopt ? " (" : "", luns, nopt ? ")" : "");
		printf("  %-21s  %-4s  %-20s  %-16s  %s%s\n", str(p, "address"), tpg, str(p, "alua_state"), count,
		       json_is_true(json_object_get(p, "preferred")) ? "preferred " : "",
		       json_is_true(json_object_get(p, "current")) ? "current" : "");
	}
}

static void print_records(json_t *a)
{
	if (!json_array_size(a)) {
		printf("no persistent logins\n");
		return;
	}
	printf("%-4s  %-13s  %-21s  %-18s  %s\n", "ID", "TYPE", "PORTAL", "SESSION", "TARGET");
	size_t i;
	json_t *r;
	json_array_foreach(a, i, r) {
		printf("%-4lld  %-13s  %-21s  %-18s  %s\n", (long long)json_integer_value(json_object_get(r, "id")),
		       str(r, "type"), str(r, "portal"), str(r, "session_id"), str(r, "target"));
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Options */

static bool yesno(const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
		*out = false;
	else
		return false;
	return true;
}

static bool number(const char *v, double *out)
{
	char *end;
	errno = 0;
	*out = strtod(v, &end);
	return !errno && end != v && !*end && *out >= 0;
}

/* Parse argv[1..] into positional args and params; -1 on a usage error. */
static int parse(struct dctx *c, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = NULL;
		if (a[0] != '-' || !a[1]) {
			if (c->npos >= 16)
				return -1;
			c->pos[c->npos++] = a;
			continue;
		}
		static const char *const with_value[] = {"--socket", "--portal", "--type", "--chap-user", "--chap-secret",
							 "--mutual-user", "--mutual-secret", "--chap-algorithms",
							 "--removal-latency", "--failback", "--pr-key", "--pr-type", "--max-recv-dsl", "--max-burst", "--first-burst",
							 "--initial-r2t", "--immediate-data", "--isid", "--page", "--isns", NULL};
		char name[64];
		snprintf(name, sizeof(name), "%s", a);
		char *eq = strchr(name, '=');
		if (eq) {
			*eq = 0;
			v = a + (eq - name) + 1;
		}
		bool needs = false;
		for (int k = 0; with_value[k]; k++)
			needs |= !strcmp(with_value[k], name);
		if (needs && !v) {
			if (i + 1 >= argc) {
				fprintf(stderr, "isthmus: %s needs a value\n", name);
				return -1;
			}
			v = argv[++i];
		}
		double num;
		bool b;
		if (!strcmp(name, "--socket"))
			c->socket = v;
		else if (!strcmp(name, "--json"))
			c->json = true;
		else if (!strcmp(name, "--daemon"))
			;
		else if (!strcmp(name, "--isns"))
			json_object_set_new(c->params, "server", json_string(v));
		else if (!strcmp(name, "--stdin"))
			c->from_stdin = true;
		else if (!strcmp(name, "--portal")) {
			/* the first is the login (preferred) portal; every one given is a portal to fail over to */
			if (!json_object_get(c->params, "portal"))
				json_object_set_new(c->params, "portal", json_string(v));
			json_t *all = json_object_get(c->params, "portals");
			if (!all) {
				all = json_array();
				json_object_set_new(c->params, "portals", all);
			}
			json_array_append_new(all, json_string(v));
		}
		else if (!strcmp(name, "--type"))
			json_object_set_new(c->params, "type", json_string(v));
		else if (!strcmp(name, "--chap-user"))
			json_object_set_new(c->params, "chap_user", json_string(v));
		else if (!strcmp(name, "--chap-secret"))
			json_object_set_new(c->params, "chap_secret", json_string(v));
		else if (!strcmp(name, "--mutual-user"))
			json_object_set_new(c->params, "mutual_user", json_string(v));
		else if (!strcmp(name, "--mutual-secret"))
			json_object_set_new(c->params, "mutual_secret", json_string(v));
		else if (!strcmp(name, "--chap-algorithms"))
			json_object_set_new(c->params, "chap_algorithms", json_string(v));
		else if (!strcmp(name, "--pr-key"))
			json_object_set_new(c->params, "pr_key", json_string(v));
		else if (!strcmp(name, "--pr-type"))
			json_object_set_new(c->params, "pr_type", json_string(v));
		else if (!strcmp(name, "--isid"))
			json_object_set_new(c->params, "isid", json_string(v));
		else if (!strcmp(name, "--persistent"))
			json_object_set_new(c->params, "persistent", json_true());
		else if (!strcmp(name, "--allow-duplicate"))
			json_object_set_new(c->params, "allow_duplicate", json_true());
		else if (!strcmp(name, "--header-digest"))
			json_object_set_new(c->params, "header_digest", json_true());
		else if (!strcmp(name, "--data-digest"))
			json_object_set_new(c->params, "data_digest", json_true());
		else if (!strcmp(name, "--digest")) {
			json_object_set_new(c->params, "header_digest", json_true());
			json_object_set_new(c->params, "data_digest", json_true());
		} else if (!strcmp(name, "--failback")) {
			uint64_t ms;
			if (parse_duration_ms(v, &ms) < 0) {
				fprintf(stderr, "isthmus: --failback: want seconds\n");
				return -1;
			}
			json_object_set_new(c->params, "failback", json_real((double)ms / 1000.0));
		} else if (!strcmp(name, "--removal-latency")) {
			uint64_t ms;
			if (parse_duration_ms(v, &ms) < 0) {
				fprintf(stderr, "isthmus: --removal-latency: want seconds\n");
				return -1;
			}
			json_object_set_new(c->params, "removal_latency", json_real((double)ms / 1000.0));
		} else if (!strcmp(name, "--max-recv-dsl") || !strcmp(name, "--max-burst") ||
			   !strcmp(name, "--first-burst") || !strcmp(name, "--page")) {
			if (!number(v, &num) || num > 0xffffffffu || num != (double)(long long)num) {
				fprintf(stderr, "isthmus: %s: want a whole number\n", name);
				return -1;
			}
			const char *key = !strcmp(name, "--max-recv-dsl") ? "max_recv_data_segment_length"
					  : !strcmp(name, "--max-burst")  ? "max_burst_length"
					  : !strcmp(name, "--first-burst") ? "first_burst_length"
									   : NULL;
			if (key)
				json_object_set_new(c->params, key, json_integer((json_int_t)num));
			else {
				c->page = (int)num;
				c->have_page = true;
			}
		} else if (!strcmp(name, "--initial-r2t") || !strcmp(name, "--immediate-data")) {
			if (!yesno(v, &b)) {
				fprintf(stderr, "isthmus: %s: yes or no\n", name);
				return -1;
			}
			json_object_set_new(c->params, !strcmp(name, "--initial-r2t") ? "initial_r2t" : "immediate_data",
					    json_boolean(b));
		} else if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
			c->help = true;
		} else {
			fprintf(stderr, "isthmus: unknown option '%s' (isthmus %s --help lists the options)\n", a,
				argv[0]);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */

static int finish(struct dctx *c, json_t *r, void (*human)(json_t *))
{
	if (!r)
		return 1;
	if (c->json)
		jprint_indented(r);
	else if (human)
		human(r);
	else if (json_is_object(r))
		print_kv(r, 0);
	else
		jprint_indented(r);
	json_decref(r);
	return 0;
}

static json_t *sid_params(struct dctx *c, const char *sid)
{
	(void)c;
	json_t *p = json_object();
	json_object_set_new(p, "session_id", json_string(sid));
	return p;
}

static bool parse_lun(const char *s, long *lun)
{
	uint64_t v;
	if (parse_uint(s, 0, 0, 16383, &v) < 0)
		return false;
	*lun = (long)v;
	return true;
}

static int do_login(struct dctx *c)
{
	if (c->npos != 1 || !json_object_get(c->params, "portal")) {
		fprintf(stderr, "isthmus: login TARGET --portal HOST[:PORT]\n");
		return CLI_EXIT_USAGE;
	}
	json_object_set_new(c->params, "target", json_string(c->pos[0]));
	json_t *r = call(c, "session.login", json_incref(c->params));
	if (!r)
		return 1;
	if (c->json)
		jprint_indented(r);
	else
		printf("%s\n", str(r, "session_id"));
	json_decref(r);
	return 0;
}

static int do_logout(struct dctx *c, const char *sid)
{
	json_t *r = call(c, "session.logout", sid_params(c, sid));
	if (!r)
		return 1;
	if (c->json)
		jprint_indented(r);
	else
		printf("session %s logged out\n", sid);
	json_decref(r);
	return 0;
}

static void print_inquiry(json_t *r)
{
	json_t *copy = json_deep_copy(r);
	if (!json_object_get(r, "supported_pages") && !json_object_get(r, "unit_serial_number") &&
	    json_object_get(r, "vendor"))
		json_object_del(copy, "data");
	print_kv(copy, 0);
	json_decref(copy);
}

static void print_luns(json_t *r)
{
	json_t *a = json_object_get(r, "luns");
	size_t i;
	json_t *v;
	printf("LUN%s\n", json_is_true(json_object_get(r, "cached")) ? " (cached)" : "");
	json_array_foreach(a, i, v) printf("%lld\n", (long long)json_integer_value(v));
}

static int do_session(struct dctx *c)
{
	if (c->npos < 1)
		return usage();
	const char *sub = c->pos[0];
	if (!strcmp(sub, "list"))
		return finish(c, call(c, "session.list", NULL), print_sessions);
	if (c->npos < 2)
		return usage();
	const char *sid = c->pos[1];
	if (!strcmp(sub, "show"))
		return finish(c, call(c, "session.show", sid_params(c, sid)), print_session_show);
	if (!strcmp(sub, "logout"))
		return do_logout(c, sid);
	if (!strcmp(sub, "register"))
		return finish(c, call(c, "session.register", sid_params(c, sid)), NULL);
	if (!strcmp(sub, "unregister"))
		return finish(c, call(c, "session.unregister", sid_params(c, sid)), NULL);
	if (!strcmp(sub, "reportluns"))
		return finish(c, call(c, "session.reportluns", sid_params(c, sid)), print_luns);
	if (!strcmp(sub, "add-connection")) {
		json_t *p = sid_params(c, sid);
		if (json_object_get(c->params, "portal"))
			json_object_set(p, "portal", json_object_get(c->params, "portal"));
		return finish(c, call(c, "session.add_connection", p), NULL);
	}
	if (!strcmp(sub, "remove-connection") || !strcmp(sub, "inquiry") || !strcmp(sub, "readcapacity")) {
		long n;
		if (c->npos != 3 || !parse_lun(c->pos[2], &n)) {
			fprintf(stderr, "isthmus: session %s SID %s\n", sub, !strcmp(sub, "remove-connection") ? "CID" : "LUN");
			return CLI_EXIT_USAGE;
		}
		json_t *p = sid_params(c, sid);
		if (!strcmp(sub, "remove-connection")) {
			json_object_set_new(p, "cid", json_integer(n));
			return finish(c, call(c, "session.remove_connection", p), NULL);
		}
		json_object_set_new(p, "lun", json_integer(n));
		if (!strcmp(sub, "readcapacity"))
			return finish(c, call(c, "session.readcapacity", p), NULL);
		if (c->have_page)
			json_object_set_new(p, "page", json_integer(c->page));
		return finish(c, call(c, "session.inquiry", p), print_inquiry);
	}
	return usage();
}

static int do_persistent(struct dctx *c)
{
	if (c->npos < 1)
		return usage();
	const char *sub = c->pos[0];
	if (!strcmp(sub, "list"))
		return finish(c, call(c, "persistent.list", NULL), print_records);
	if (!strcmp(sub, "add")) {
		if (c->npos != 2 || !json_object_get(c->params, "portal")) {
			fprintf(stderr, "isthmus: persistent add TARGET --portal HOST[:PORT] [login options]\n");
			return CLI_EXIT_USAGE;
		}
		json_object_set_new(c->params, "target", json_string(c->pos[1]));
		return finish(c, call(c, "persistent.add", json_incref(c->params)), NULL);
	}
	if (!strcmp(sub, "remove")) {
		if (c->npos != 2)
			return usage();
		json_t *p = json_object();
		uint64_t id;
		if (parse_uint(c->pos[1], 10, 0, INT64_MAX, &id) == 0)
			json_object_set_new(p, "id", json_integer((json_int_t)id));
		else {
			json_object_set_new(p, "target", json_string(c->pos[1]));
			if (json_object_get(c->params, "portal"))
				json_object_set(p, "portal", json_object_get(c->params, "portal"));
		}
		return finish(c, call(c, "persistent.remove", p), NULL);
	}
	return usage();
}

static int do_chap(struct dctx *c)
{
	if (c->npos < 1 || strcmp(c->pos[0], "set-secret") != 0 || c->npos > 2)
		return usage();
	char buf[512];
	const char *secret = c->npos == 2 ? c->pos[1] : NULL;
	if (!secret) {
		if (isatty(0))
			fprintf(stderr, "initiator CHAP secret: ");
		if (!fgets(buf, sizeof(buf), stdin)) {
			fprintf(stderr, "isthmus: no secret on standard input\n");
			return 1;
		}
		buf[strcspn(buf, "\r\n")] = 0;
		secret = buf;
	}
	json_t *r = call(c, "chap.set_secret", json_pack("{s:s}", "secret", secret));
	explicit_bzero(buf, sizeof(buf));
	if (!r)
		return 1;
	if (c->json)
		jprint_indented(r);
	else
		printf("initiator CHAP secret set\n");
	json_decref(r);
	return 0;
}

static void print_discovery(json_t *r)
{
	json_t *a = json_object_get(r, "targets");
	size_t i, k;
	json_t *t, *addr;
	if (!json_array_size(a))
		printf("no targets at %s\n", str(r, "portal"));
	json_array_foreach(a, i, t) {
		json_array_foreach(json_object_get(t, "addresses"), k, addr)
			printf("%s %s\n", json_string_value(addr), str(t, "target"));
		if (!json_array_size(json_object_get(t, "addresses")))
			printf("- %s\n", str(t, "target"));
	}
}

static int do_discover(struct dctx *c)
{
	if (json_object_get(c->params, "server")) {
		if (c->npos != 0) {
			fprintf(stderr, "isthmus: discover --isns ADDR[:PORT]\n");
			return CLI_EXIT_USAGE;
		}
		return finish(c, call(c, "discovery.isns", json_incref(c->params)), print_discovery);
	}
	if (c->npos != 1) {
		fprintf(stderr, "isthmus: discover --daemon PORTAL\n");
		return CLI_EXIT_USAGE;
	}
	json_object_set_new(c->params, "portal", json_string(c->pos[0]));
	return finish(c, call(c, "discovery.run", json_incref(c->params)), print_discovery);
}

int cmd_daemon(int argc, char **argv)
{
	if (argc < 1)
		return usage();
	current_command = argv[0];
	struct dctx c = {0};
	c.params = json_object();
	c.socket = getenv("ISTHMUS_SOCKET");
	int rc;
	if (parse(&c, argc, argv) < 0) {
		json_decref(c.params);
		return CLI_EXIT_USAGE;
	}
	if (c.help) {
		print_usage(stdout);
		json_decref(c.params);
		return CLI_EXIT_OK;
	}
	if (!c.socket || !*c.socket)
		c.socket = "/run/isthmus/initiator.sock";
	const char *cmd = argv[0];
	if (!strcmp(cmd, "login"))
		rc = do_login(&c);
	else if (!strcmp(cmd, "logout"))
		rc = c.npos == 1 ? do_logout(&c, c.pos[0]) : usage();
	else if (!strcmp(cmd, "session"))
		rc = do_session(&c);
	else if (!strcmp(cmd, "persistent"))
		rc = do_persistent(&c);
	else if (!strcmp(cmd, "chap"))
		rc = do_chap(&c);
	else if (!strcmp(cmd, "discover"))
		rc = do_discover(&c);
	else if (!strcmp(cmd, "help") || !strcmp(cmd, "--help")) {
		print_usage(stdout);
		rc = CLI_EXIT_OK;
	} else
		rc = usage();
	json_decref(c.params);
	return rc;
}
