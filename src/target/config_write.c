/* Writes a configuration back out in the file format, and saves it atomically. */
#include "target/config.h"
#include "store/store_io.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "target/config_internal.h"
#include "util/iscsi_name.h"
#include "util/parse.h"
#include "util/sbuf.h"

/* Blanks at either end would be trimmed on reading, so such values are quoted. */
static bool needs_quotes(const char *v)
{
	if (!*v || isspace((unsigned char)v[0]) || isspace((unsigned char)v[strlen(v) - 1]) || v[0] == '"')
		return true;
	return strpbrk(v, "#\"\\") != NULL;
}

static void put_kv(struct sbuf *b, const char *key, const char *v)
{
	if (!needs_quotes(v)) {
		sbuf_printf(b, "%s = %s\n", key, v);
		return;
	}
	sbuf_printf(b, "%s = \"", key);
	for (const char *c = v; *c; c++) {
		if (*c == '"' || *c == '\\')
			sbuf_putc(b, '\\');
		sbuf_putc(b, *c);
	}
	sbuf_printf(b, "\"\n");
}

static void put_chap(struct sbuf *b, const struct cfg_chap *c, const char *prefix)
{
	char key[64];
	const char *names[] = {"chap-user", "chap-secret", "mutual-user", "mutual-secret"};
	const char *vals[] = {c->user, c->secret, c->mutual_user, c->mutual_secret};
	for (int i = 0; i < 4; i++) {
		if (!vals[i])
			continue;
		snprintf(key, sizeof(key), "%s%s", prefix, names[i]);
		put_kv(b, key, vals[i]);
	}
}

static void put_size(struct sbuf *b, uint64_t size)
{
	static const char units[] = "KMGTP";
	int u = -1;
	while (u < 4 && size && size % 1024 == 0) {
		size /= 1024;
		u++;
	}
	if (u < 0)
		sbuf_printf(b, ",size=%llu", (unsigned long long)size);
	else
		sbuf_printf(b, ",size=%llu%c", (unsigned long long)size, units[u]);
}

static void put_lun(struct sbuf *b, const struct cfg_lun *l)
{
	struct sbuf spec = {0};
	sbuf_printf(&spec, "%s", cfg_lun_pathless(l->kind) ? cfg_lun_kind_name(l->kind) : l->path);
	if (l->size)
		put_size(&spec, l->size);
	if (l->block_size != 512)
		sbuf_printf(&spec, ",bs=%u", l->block_size);
	if (l->read_only)
		sbuf_printf(&spec, ",ro");
	if (l->thin != (l->kind != LUN_BLOCK))
		sbuf_printf(&spec, ",%s", l->thin ? "thin" : "thick");
	if (!l->write_cache)
		sbuf_printf(&spec, ",wce=0");
	if (l->serial)
		sbuf_printf(&spec, ",serial=%s", l->serial);
	if (l->vendor)
		sbuf_printf(&spec, ",vendor=%s", l->vendor);
	if (l->product)
		sbuf_printf(&spec, ",product=%s", l->product);
	if (l->rbd_conf)
		sbuf_printf(&spec, ",conf=%s", l->rbd_conf);
	if (l->rbd_id)
		sbuf_printf(&spec, ",id=%s", l->rbd_id);
	if (l->rbd_namespace)
		sbuf_printf(&spec, ",namespace=%s", l->rbd_namespace);
	char key[16];
	snprintf(key, sizeof(key), "lun %u", l->lun);
	put_kv(b, key, sbuf_cstr(&spec));
	sbuf_free(&spec);
}

static int cmp_tag(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

char *cfg_format(const struct cfg *cfg)
{
	struct sbuf b = {0};
	sbuf_printf(&b, "# isthmus target configuration (format: docs/config.md). Holds secrets: keep it 0600.\n\n");
	sbuf_printf(&b, "[global]\n");
	if (cfg->state_dir)
		put_kv(&b, "state-dir", cfg->state_dir);
	sbuf_printf(&b, "nop-interval = %u\nnop-timeout = %u\n", cfg->nop_interval, cfg->nop_timeout);
	sbuf_printf(&b, "max-commands-per-session = %u\ndata-out-timeout = %u\n", cfg->max_commands,
		    cfg->data_out_timeout);
	sbuf_printf(&b, "max-data-per-connection = %llu\nmax-data-per-session = %llu\nmax-data-total = %llu\n",
		    (unsigned long long)cfg->max_data_connection, (unsigned long long)cfg->max_data_session,
		    (unsigned long long)cfg->max_data_total);
	sbuf_printf(&b, "max-retained-data = %llu\n", (unsigned long long)cfg->max_retained_data);
	sbuf_printf(&b, "max-connections = %u\nmax-connections-per-portal = %u\nmgmt-max-clients = %u\n",
		    cfg->max_connections, cfg->max_connections_per_portal, cfg->mgmt_max_clients);
	if (cfg->mgmt_socket)
		put_kv(&b, "mgmt-socket", cfg->mgmt_socket);
	if (cfg->isns)
		put_kv(&b, "isns", cfg->isns);
	if (cfg->isns_entity)
		put_kv(&b, "isns-entity", cfg->isns_entity);
	if (cfg->isns_access)
		put_kv(&b, "isns-access", "yes");
	if (cfg->threads != CFG_THREADS_AUTO) /* not set: the CPU count wherever the file is read */
		sbuf_printf(&b, "threads = %u\n", cfg->threads);
	if (cfg->io_engine != STORE_BACKEND_AUTO)
		put_kv(&b, "io-engine", store_engine_backend_name((enum store_engine_backend)cfg->io_engine));
	if (cfg->zero_copy_reads)
		put_kv(&b, "zero-copy-reads", "yes");
	put_chap(&b, &cfg->discovery_chap, "discovery-");

	/* Every group with a portal or a declaration, in tag order, each once. */
	uint16_t *tags = xmalloc((cfg->ngroups + cfg->nportals) * sizeof(*tags));
	size_t ntags = 0;
	for (size_t i = 0; i < cfg->ngroups; i++)
		tags[ntags++] = cfg->groups[i];
	for (size_t i = 0; i < cfg->nportals; i++)
		tags[ntags++] = cfg->portals[i].tpgt;
	qsort(tags, ntags, sizeof(*tags), cmp_tag);
	for (size_t i = 0; i < ntags; i++) {
		if (i > 0 && tags[i] == tags[i - 1])
			continue;
		sbuf_printf(&b, "\n[portal-group %u]\n", tags[i]);
		for (size_t j = 0; j < cfg->nportals; j++) {
			const struct cfg_portal *p = &cfg->portals[j];
			if (p->tpgt != tags[i])
				continue;
			if (strchr(p->host, ':'))
				sbuf_printf(&b, "listen = [%s]:%u\n", p->host, p->port);
			else
				sbuf_printf(&b, "listen = %s:%u\n", p->host, p->port);
		}
	}
	free(tags);

	for (size_t i = 0; i < cfg->ntargets; i++) {
		const struct cfg_target *t = &cfg->targets[i];
		sbuf_printf(&b, "\n[target %s]\n", t->name);
		if (t->alias)
			put_kv(&b, "alias", t->alias);
		sbuf_printf(&b, "portal-group = %u\n", t->tpgt);
		if (t->max_erl)
			sbuf_printf(&b, "max-error-recovery-level = %u\n", t->max_erl);
		cfg_format_gateways(&b, t);
		for (size_t j = 0; j < t->nluns; j++)
			put_lun(&b, &t->luns[j]);
		for (size_t j = 0; j < t->nacl; j++)
			put_kv(&b, "allow", t->acl[j]);
		if (t->restricted && !t->nacl)
			put_kv(&b, "access", "restricted");
		put_chap(&b, &t->chap, "");
		for (size_t j = 0; j < t->params.n; j++)
			put_kv(&b, t->params.kv[j].key, t->params.kv[j].value);
		/* Sub-sections last: a section header ends the target's own keys. */
		for (size_t j = 0; j < t->naccounts; j++) {
			sbuf_printf(&b, "\n[initiator %s]\n", t->accounts[j].initiator);
			put_chap(&b, &t->accounts[j].chap, "");
		}
	}
	sbuf_cstr(&b);
	return (char *)b.data;
}
/*
 * A fresh file next to path, only ours: a random name, created exclusively (so a file or a
 * symlink someone planted under that name is never opened), mode 0600 whatever the umask.
 * Returns the descriptor and sets *tmp_out, or -1 with *err.
 */
static int save_open_temp(const char *path, char **tmp_out, char **err)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		uint8_t rnd[8];
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return cfg_fail(err, "%s: no random bytes for a temporary name: %s", path, strerror(errno));
		char *tmp = xasprintf("%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2], rnd[3],
				      rnd[4], rnd[5], rnd[6], rnd[7]);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (fchmod(fd, 0600) < 0) {
				cfg_fail(err, "%s: %s", tmp, strerror(errno));
				close(fd);
				unlink(tmp);
				free(tmp);
				return -1;
			}
			*tmp_out = tmp;
			return fd;
		}
		int e = errno;
		if (e != EEXIST) {
			cfg_fail(err, "%s: %s", tmp, strerror(e));
			free(tmp);
			return -1;
		}
		free(tmp);
	}
	return cfg_fail(err, "%s: no free temporary name next to it", path);
}

int cfg_save(const struct cfg *cfg, const char *path, char **err)
{
	char *text = cfg_format(cfg);
	char *tmp = NULL;
	int rc = -1;
	int fd = save_open_temp(path, &tmp, err);
	if (fd < 0)
		goto out;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			cfg_fail(err, "%s: %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			goto out;
		}
		off += (size_t)w;
	}
	/* Durable before visible: sync the data, rename over the old file, sync the directory. */
	if (fsync(fd) < 0) {
		cfg_fail(err, "%s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		cfg_fail(err, "%s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = 0;
	int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dir);
	rc = 0;
out:
	free(tmp);
	free(text);
	return rc;
}
