/* The options every initiator command shares: credentials, digests, names, timeouts, output. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "util/parse.h"

int cli_parse_u64(const char *opt, const char *v, uint64_t *out)
{
	if (parse_uint(v, 0, 0, UINT64_MAX, out) < 0) {
		fprintf(stderr, "isthmus: %s takes a number, not '%s'\n", opt, v);
		return -1;
	}
	return 0;
}

/* "sha256,md5" -> "7,5": algorithm names to the CHAP_A codes offered at login. */
static int chap_alg_list(const char *in, char *out, size_t outlen)
{
	static const struct {
		const char *name;
		char code;
	} algs[] = {{"md5", '5'}, {"sha1", '6'}, {"sha-1", '6'}, {"sha256", '7'}, {"sha-256", '7'},
		    {"sha3-256", '8'}, {"5", '5'}, {"6", '6'}, {"7", '7'}, {"8", '8'}};
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", in);
	size_t n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char code = 0;
		for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
			if (strcasecmp(tok, algs[i].name) == 0)
				code = algs[i].code;
		if (!code || n + 3 > outlen)
			return -1;
		if (n)
			out[n++] = ',';
		out[n++] = code;
	}
	out[n] = 0;
	return n ? 0 : -1;
}

int cli_login_option(struct cli_opts *o, int opt, const char *arg)
{
	uint64_t v;
	switch ((enum cli_option)opt) {
	case CLI_O_CHAP_USER: o->chap_user = arg; return 0;
	case CLI_O_CHAP_SECRET: o->chap_secret = arg; return 0;
	case CLI_O_MUTUAL_USER: o->mutual_user = arg; return 0;
	case CLI_O_MUTUAL_SECRET: o->mutual_secret = arg; return 0;
	case CLI_O_HDIGEST: o->header_digest = arg; return 0;
	case CLI_O_DDIGEST: o->data_digest = arg; return 0;
	case CLI_O_INAME: o->initiator_name_opt = arg; return 0;
	case CLI_O_ALIAS: o->alias = arg; return 0;
	case CLI_O_JSON: o->json = true; return 0;
	case CLI_O_TIMEOUT:
		if (cli_parse_u64("--timeout", arg, &v) < 0 || v > 3600)
			return -1;
		o->timeout_s = (int)v;
		return 0;
	case CLI_O_IOSIZE:
		if (cli_parse_u64("--io-size", arg, &v) < 0 || v < 1 || v > 16384)
			return -1;
		o->io_kib = (uint32_t)v;
		return 0;
	case CLI_O_CHAP_ALG:
		if (chap_alg_list(arg, o->chap_alg_buf, sizeof(o->chap_alg_buf)) < 0) {
			fprintf(stderr, "isthmus: --chap-alg takes a list of md5, sha1, sha256, sha3-256\n");
			return -1;
		}
		o->chap_alg = o->chap_alg_buf;
		return 0;
	case CLI_O_FIRST_COMMAND_OPTION: break;
	}
	return -1;
}

void cli_debug_from_env(void)
{
	const char *dbg = getenv("ISTHMUS_DEBUG");
	if (dbg && *dbg && strcmp(dbg, "0") != 0)
		ism_set_debug(true);
}
