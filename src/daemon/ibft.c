/*
 * The boot session described like /sys/firmware/ibft: initiator/initiator-name and
 * target0/{target-name,ip-addr,port,lun,chap-name,chap-secret,rev-chap-name,rev-chap-secret}.
 * Tests point --ibft at a directory laid out the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/ibft.h"
#include "daemon/store.h"
#include "util/sbuf.h"

static char *read_attr(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	char *v = store_read_file(path, 1024, NULL);
	free(path);
	if (!v)
		return NULL;
	v[strcspn(v, "\r\n")] = 0;
	if (!*v) {
		free(v);
		return NULL;
	}
	return v;
}

int ibft_load(const char *dir, struct dsess_opts *o, char **initiator_name, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->removal_latency_ms = -1;
	o->initial_r2t = -1;
	o->immediate_data = -1;
	o->type = DS_TYPE_BOOT;
	char *idir = xasprintf("%s/initiator", dir), *tdir = xasprintf("%s/target0", dir);
	*initiator_name = read_attr(idir, "initiator-name");
	o->target = read_attr(tdir, "target-name");
	char *ip = read_attr(tdir, "ip-addr"), *port = read_attr(tdir, "port");
	o->chap_user = read_attr(tdir, "chap-name");
	o->chap_secret = read_attr(tdir, "chap-secret");
	o->mutual_user = read_attr(tdir, "rev-chap-name");
	o->mutual_secret = read_attr(tdir, "rev-chap-secret");
	int rc = 0;
	if (!o->target || !ip) {
		snprintf(err, errlen, "%s needs target-name and ip-addr", tdir);
		rc = -1;
	} else {
		o->portal = strchr(ip, ':') ? xasprintf("[%s]:%s", ip, port ? port : "3260")
					    : xasprintf("%s:%s", ip, port ? port : "3260");
	}
	if (rc == 0 && (o->chap_user == NULL) != (o->chap_secret == NULL)) {
		snprintf(err, errlen, "%s: chap-name and chap-secret go together", tdir);
		rc = -1;
	}
	/* Boot firmware does CHAP with MD5 only: offer what it would. */
	if (rc == 0 && o->chap_user)
		o->chap_algorithms = xstrdup("5");
	free(ip);
	free(port);
	free(idir);
	free(tdir);
	if (rc < 0) {
		dsess_opts_free(o);
		free(*initiator_name);
		*initiator_name = NULL;
	}
	return rc;
}
