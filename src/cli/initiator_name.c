/* Where the CLI's initiator name comes from: option, config file, or a name kept in the state dir. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/iscsi_name.h"
#include "util/parse.h"

/* 1 found, 0 not there, -1 error (message in err). */
static int from_config(const char *path, bool must_exist, char *out, size_t outlen, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	char line[1024];
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		if (strcmp(trim(line), "initiator-name") != 0)
			continue;
		char *v = trim(eq + 1);
		char why[200];
		if (!iscsi_name_valid(v, why, sizeof(why))) {
			snprintf(err, errlen, "%s: initiator-name '%s' is not a valid iSCSI name: %s", path, v, why);
			fclose(f);
			return -1;
		}
		snprintf(out, outlen, "%s", v);
		found = 1;
	}
	fclose(f);
	return found;
}

static int mkdir_p(const char *dir)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int cli_initiator_name(const char *explicit_name, char *out, size_t outlen, char *err, size_t errlen)
{
	char why[200];
	if (explicit_name) {
		if (!iscsi_name_valid(explicit_name, why, sizeof(why))) {
			snprintf(err, errlen, "--initiator-name '%s' is not a valid iSCSI name: %s", explicit_name, why);
			return -1;
		}
		snprintf(out, outlen, "%s", explicit_name);
		return 0;
	}
	const char *cfg = getenv("ISTHMUS_CONFIG");
	int rc = from_config(cfg && *cfg ? cfg : "/etc/isthmus/initiator.conf", cfg && *cfg, out, outlen, err, errlen);
	if (rc != 0)
		return rc < 0 ? -1 : 0;

	const char *dir = getenv("ISTHMUS_STATE_DIR");
	if (!dir || !*dir)
		dir = "/var/lib/isthmus";
	char path[4096];
	snprintf(path, sizeof(path), "%s/initiatorname", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		char line[512] = "";
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
		char *v = trim(line);
		if (!iscsi_name_valid(v, why, sizeof(why))) {
			snprintf(err, errlen, "%s holds '%s', not a valid iSCSI name: %s", path, v, why);
			return -1;
		}
		snprintf(out, outlen, "%s", v);
		return 0;
	}
	/* First use: make one up and keep it, so the target sees the same initiator every time. */
	uint8_t rnd[6];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		snprintf(err, errlen, "cannot read random bytes: %s", strerror(errno));
		return -1;
	}
	snprintf(out, outlen, "iqn.2026-01.org.isthmus:initiator-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
		 rnd[3], rnd[4], rnd[5]);
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	if (mkdir_p(dir) < 0 || !(f = fopen(tmp, "w"))) {
		fprintf(stderr, "isthmus: warning: cannot keep the generated initiator name in %s: %s\n", path,
			strerror(errno));
		return 0;
	}
	fprintf(f, "%s\n", out);
	/* link() never replaces: when another isthmus won the race, its name is the one kept. */
	if (fclose(f) != 0 || link(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		if (e == EEXIST)
			return cli_initiator_name(NULL, out, outlen, err, errlen);
		fprintf(stderr, "isthmus: warning: cannot keep the generated initiator name in %s: %s\n", path,
			strerror(e));
		return 0;
	}
	unlink(tmp);
	return 0;
}
