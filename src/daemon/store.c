/*
 * The state directory: session id counter, initiator name, persistent logins, discovered targets
 * and the initiator CHAP secret. Every file is replaced atomically (temp file, fsync, rename,
 * fsync of the directory) and created 0600: some hold CHAP secrets.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/session.h"
#include "daemon/store.h"
#include "util/iscsi_name.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sbuf.h"

/* Session ids are handed out from a block reserved on disk, so a crash never reuses one. */
#define ID_BLOCK 64

static uint64_t id_reserved_until;

int store_write_atomic(const char *path, const void *data, size_t len, int mode)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	int rc = 0;
	if (fd < 0) {
		rc = -errno;
		free(tmp);
		return rc;
	}
	if (fchmod(fd, (mode_t)mode) < 0)
		rc = -errno;
	const uint8_t *p = data;
	size_t off = 0;
	while (rc == 0 && off < len) {
		ssize_t w = write(fd, p + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc != 0) {
		unlink(tmp);
		free(tmp);
		return rc;
	}
	free(tmp);
	/* The rename itself must reach the disk too. */
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash) {
		if (slash == dir)
			slash[1] = 0;
		else
			*slash = 0;
		int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	free(dir);
	return 0;
}

char *store_read_file(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct sbuf b = {0};
	char buf[4096];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		sbuf_append(&b, buf, (size_t)r);
		if (b.len > max)
			break;
	}
	close(fd);
	sbuf_cstr(&b);
	if (len)
		*len = b.len;
	return (char *)b.data;
}

static char *state_path(struct daemon *d, const char *name) { return xasprintf("%s/%s", d->state_dir, name); }

static int mkdir_p(const char *path, mode_t mode)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			int e = errno;
			free(p);
			return -e;
		}
		*s = '/';
	}
	int rc = mkdir(p, mode) < 0 && errno != EEXIST ? -errno : 0;
	free(p);
	return rc;
}

/* The file holds the first id not yet reserved: the next start begins there. */
static void reserve_ids(struct daemon *d)
{
	id_reserved_until = d->next_session_id + ID_BLOCK;
	char *path = state_path(d, "session-id");
	char text[32];
	int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", id_reserved_until);
	int rc = store_write_atomic(path, text, (size_t)n, 0600);
	if (rc < 0)
		log_error("cannot save the session id counter in %s: %s", path, strerror(-rc));
	free(path);
}

uint64_t store_next_session_id(struct daemon *d)
{
	if (d->next_session_id >= id_reserved_until)
		reserve_ids(d);
	return d->next_session_id++;
}

static json_t *load_json(struct daemon *d, const char *name)
{
	char *path = state_path(d, name);
	json_error_t jerr;
	json_t *j = NULL;
	if (access(path, F_OK) == 0) {
		j = json_load_file(path, 0, &jerr);
		if (!j)
			log_error("%s: %s (line %d); starting with an empty list", path, jerr.text, jerr.line);
	}
	free(path);
	return j;
}

static int save_json(struct daemon *d, const char *name, json_t *j)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	char *path = state_path(d, name);
	int rc = store_write_atomic(path, text, strlen(text), 0600);
	if (rc < 0)
		log_error("cannot save %s: %s", path, strerror(-rc));
	free(path);
	free(text);
	return rc;
}

int store_save_records(struct daemon *d)
{
	json_t *j = json_object();
	json_object_set_new(j, "next_record_id", json_integer((json_int_t)d->next_record_id));
	json_object_set(j, "records", d->records);
	int rc = save_json(d, "persistent.json", j);
	json_decref(j);
	return rc;
}

int store_save_discovered(struct daemon *d) { return save_json(d, "discovered.json", d->discovered); }

int store_set_initiator_secret(struct daemon *d, const char *secret, char *err, size_t errlen)
{
	size_t n = strlen(secret);
	if (n < 12 || n > 255) {
		snprintf(err, errlen, "the CHAP secret must have 12 to 255 characters (RFC 7143 recommends 12 or more)");
		return -1;
	}
	char *path = state_path(d, "chap-secret");
	int rc = store_write_atomic(path, secret, n, 0600);
	free(path);
	if (rc < 0) {
		snprintf(err, errlen, "cannot store the secret: %s", strerror(-rc));
		return -1;
	}
	secret_free(d->initiator_secret);
	d->initiator_secret = xstrdup(secret);
	return 0;
}

static char *make_initiator_name(void)
{
	uint8_t r[6];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		memset(r, 0x5a, sizeof(r));
	char host[64] = "host";
	gethostname(host, sizeof(host) - 1);
	for (char *p = host; *p; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
		else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			*p = '-';
	}
	return xasprintf("iqn.2024-01.org.isthmus:%s-%02x%02x%02x%02x%02x%02x", host, r[0], r[1], r[2], r[3], r[4],
			 r[5]);
}

int store_init(struct daemon *d, char *err, size_t errlen)
{
	int rc = mkdir_p(d->state_dir, 0700);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create the state directory %s: %s", d->state_dir, strerror(-rc));
		return -1;
	}
	/* Session ids */
	char *path = state_path(d, "session-id");
	char *text = store_read_file(path, 64, NULL);
	d->next_session_id = 1;
	if (text) {
		uint64_t v;
		if (parse_uint(trim(text), 10, 1, UINT64_MAX, &v) == 0)
			d->next_session_id = v;
		free(text);
	}
	free(path);
	/* Reserve the first block now: ids handed out before a crash are never handed out again. */
	id_reserved_until = 0;
	reserve_ids(d);

	/* Initiator name */
	if (d->cfg.initiator_name) {
		d->initiator_name = xstrdup(d->cfg.initiator_name);
	} else {
		path = state_path(d, "initiatorname");
		text = store_read_file(path, 300, NULL);
		if (text) {
			text[strcspn(text, "\r\n")] = 0;
			d->initiator_name = text;
		} else {
			d->initiator_name = make_initiator_name();
			char *line = xasprintf("%s\n", d->initiator_name);
			store_write_atomic(path, line, strlen(line), 0644);
			free(line);
		}
		free(path);
	}
	char why[200];
	if (!iscsi_name_valid(d->initiator_name, why, sizeof(why))) {
		snprintf(err, errlen, "bad initiator name '%s': %s", d->initiator_name, why);
		return -1;
	}

	/* Persistent logins */
	json_t *p = load_json(d, "persistent.json");
	d->next_record_id = 1;
	json_t *recs = p ? json_object_get(p, "records") : NULL;
	d->records = json_is_array(recs) ? json_incref(recs) : json_array();
	if (p && json_is_integer(json_object_get(p, "next_record_id")))
		d->next_record_id = (uint64_t)json_integer_value(json_object_get(p, "next_record_id"));
	json_decref(p);

	json_t *disc = load_json(d, "discovered.json");
	d->discovered = json_is_array(disc) ? disc : (json_decref(disc), json_array());

	path = state_path(d, "chap-secret");
	size_t n = 0;
	text = store_read_file(path, 300, &n);
	if (text && n)
		d->initiator_secret = text;
	else
		free(text);
	free(path);
	return 0;
}
