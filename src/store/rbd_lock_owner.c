/*
 * The holder of an RBD image's exclusive lock, mapped to a gateway of the group (see
 * rbd_lock_owner.h).
 *
 * RBD's on-disk format, as this relies on it: a format 2 image <name> has an object
 * rbd_id.<name> whose cls method rbd.get_id gives the image id (an encoded string: a 32-bit
 * little-endian length, then the bytes); its header object is rbd_header.<id>; librbd's exclusive
 * lock is the exclusive cls lock "rbd_lock" on it with the tag "internal" and a cookie
 * "auto <n>", and the locker's address is its client's address (as "v1:IP:PORT/NONCE"). A format
 * 1 image has no exclusive lock: nobody holds it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>

#include "store/rbd_lock_owner.h"
#include "store/rbd_lu_state.h"
#include "store/store_rbd.h"
#include "store/store_rbd_cluster.h"
#include "util/sbuf.h"

#define RBD_LOCK_NAME "rbd_lock"
#define RBD_LOCK_TAG "internal"
#define RBD_LOCK_COOKIE_PREFIX "auto "
/* librados reports a blocklisted client instance with this errno. */
#define LOCK_EBLOCKLISTED ESHUTDOWN
/* Room for one locker's tag, client, cookie and address (librbd's lock has one locker). */
#define LOCKER_FIELD_MAX 512u

struct rbd_lock_owner {
	struct rbd_cluster *cl;
	struct rbd_conn *conn;   /* the client instance io lives on */
	rados_ioctx_t io;
	char *pool, *ns, *image, *record_oid;
	char *header_oid;        /* rbd_header.<id>, once asked */
};

static int ioctx_on(struct rbd_lock_owner *o, struct rbd_conn *k, rados_ioctx_t *io)
{
	int rc = rados_ioctx_create(rbd_conn_handle(k), o->pool, io);
	if (rc < 0)
		return rc;
	rados_ioctx_set_namespace(*io, o->ns && *o->ns ? o->ns : NULL);
	return 0;
}

struct rbd_lock_owner *rbd_lock_owner_open(const struct store_rbd_spec *spec, char **err)
{
	struct rbd_lock_owner *o = xcalloc(1, sizeof(*o));
	int rc;

	o->pool = xstrdup(spec->pool);
	o->ns = spec->ns ? xstrdup(spec->ns) : NULL;
	o->image = xstrdup(spec->image);
	o->record_oid = xasprintf(RBD_LU_STATE_OID, spec->image);
	if (!(o->cl = rbd_cluster_get(spec->conf, spec->id, err))) {
		rbd_lock_owner_close(o);
		return NULL;
	}
	o->conn = rbd_cluster_conn_get(o->cl);
	if ((rc = ioctx_on(o, o->conn, &o->io)) < 0) {
		*err = xasprintf("pool %s: %s", spec->pool, strerror(-rc));
		rbd_lock_owner_close(o);
		return NULL;
	}
	return o;
}

void rbd_lock_owner_close(struct rbd_lock_owner *o)
{
	if (!o)
		return;
	if (o->io)
		rados_ioctx_destroy(o->io);
	if (o->conn)
		rbd_conn_put(o->cl, o->conn);
	if (o->cl)
		rbd_cluster_put(o->cl);
	free(o->pool);
	free(o->ns);
	free(o->image);
	free(o->record_oid);
	free(o->header_oid);
	free(o);
}

/*
 * Our client was blocklisted (this gateway was fenced): go on with the connection's current
 * instance, once whoever noticed first (the store, the reservation record) has made one.
 */
static int follow_current(struct rbd_lock_owner *o)
{
	struct rbd_conn *k = rbd_cluster_conn_get(o->cl);
	rados_ioctx_t io;

	if (k == o->conn || ioctx_on(o, k, &io) < 0) {
		rbd_conn_put(o->cl, k);
		return -LOCK_EBLOCKLISTED;
	}
	rados_ioctx_destroy(o->io);
	rbd_conn_put(o->cl, o->conn);
	o->io = io;
	o->conn = k;
	return 0;
}

/* The image's header object name; -ENOENT for a format 1 image (or none by that name). */
static int header_oid(struct rbd_lock_owner *o)
{
	char id_oid[512], out[256];

	if (o->header_oid)
		return 0;
	snprintf(id_oid, sizeof(id_oid), "rbd_id.%s", o->image);
	int n = rados_exec(o->io, id_oid, "rbd", "get_id", NULL, 0, out, sizeof(out));
	if (n < 0)
		return n;
	if (n < 4)
		return -EIO;
	uint32_t len = (uint32_t)(uint8_t)out[0] | (uint32_t)(uint8_t)out[1] << 8 | (uint32_t)(uint8_t)out[2] << 16 |
		       (uint32_t)(uint8_t)out[3] << 24;
	if (len == 0 || len > (uint32_t)n - 4)
		return -EIO;
	o->header_oid = xasprintf("rbd_header.%.*s", (int)len, out + 4);
	return 0;
}

/* One address of a client as "IP:PORT/NONCE", without the messenger type ("v1:", "v2:", "any:"). */
static size_t addr_core(const char *a, size_t len, const char **core)
{
	static const char *const types[] = { "v1:", "v2:", "any:" };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t tl = strlen(types[i]);
		if (len >= tl && memcmp(a, types[i], tl) == 0) {
			a += tl;
			len -= tl;
			break;
		}
	}
	*core = a;
	return len;
}

/* Whether addr (one address) is one of vec's ("ADDR" or "[ADDR,ADDR...]", as rados_getaddrs gives). */
static bool addr_in(const char *addr, const char *vec, size_t vec_len)
{
	const char *want;
	size_t want_len = addr_core(addr, strlen(addr), &want);

	for (size_t at = 0; at < vec_len;) {
		while (at < vec_len && (vec[at] == '[' || vec[at] == ',' || vec[at] == ' '))
			at++;
		size_t end = at;
		while (end < vec_len && vec[end] != ',' && vec[end] != ']' && vec[end] != '\0')
			end++;
		const char *core;
		size_t core_len = addr_core(vec + at, end - at, &core);
		if (core_len && core_len == want_len && memcmp(core, want, want_len) == 0)
			return true;
		at = end + 1;
	}
	return false;
}

/* The gateway that published addr on the record; 0 when none did. */
static int gateway_of(struct rbd_lock_owner *o, const char *addr, unsigned *gateway)
{
	rados_xattrs_iter_t it;
	const char *name, *val;
	size_t len;

	*gateway = 0;
	int rc = rados_getxattrs(o->io, o->record_oid, &it);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	while (rados_getxattrs_next(it, &name, &val, &len) == 0 && name) {
		unsigned id;
		char tail;
		if (sscanf(name, RBD_LU_STATE_GATEWAY_XATTR "%c", &id, &tail) == 1 && id && addr_in(addr, val, len)) {
			*gateway = id;
			break;
		}
	}
	rados_getxattrs_end(it);
	return 0;
}

static int sample_once(struct rbd_lock_owner *o, struct rbd_lock_sample *out)
{
	char tag[LOCKER_FIELD_MAX], clients[LOCKER_FIELD_MAX], cookies[LOCKER_FIELD_MAX], addrs[LOCKER_FIELD_MAX];
	size_t tag_len = sizeof(tag), clients_len = sizeof(clients), cookies_len = sizeof(cookies);
	size_t addrs_len = sizeof(addrs);
	int exclusive = 0;

	memset(out, 0, sizeof(*out));
	int rc = header_oid(o);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	ssize_t n = rados_list_lockers(o->io, o->header_oid, RBD_LOCK_NAME, &exclusive, tag, &tag_len, clients,
				       &clients_len, cookies, &cookies_len, addrs, &addrs_len);
	if (n == -ENOENT) {
		/* The image went (or was made again under its name): ask for its id again next time. */
		free(o->header_oid);
		o->header_oid = NULL;
		return 0;
	}
	if (n == -ERANGE)
		return -EIO; /* more than librbd's one locker: not its exclusive lock */
	if (n < 0)
		return (int)n;
	out->version = rados_get_last_version(o->io);
	/* The fields are NUL-terminated lists; librbd's lock has one locker. */
	tag[sizeof(tag) - 1] = cookies[sizeof(cookies) - 1] = addrs[sizeof(addrs) - 1] = '\0';
	if (n != 1 || !exclusive || strcmp(tag, RBD_LOCK_TAG) != 0 ||
	    strncmp(cookies, RBD_LOCK_COOKIE_PREFIX, strlen(RBD_LOCK_COOKIE_PREFIX)) != 0)
		return 0;
	out->held = true;
	return gateway_of(o, addrs, &out->gateway);
}

int rbd_lock_owner_sample(struct rbd_lock_owner *o, struct rbd_lock_sample *out)
{
	int rc = sample_once(o, out);
	if (rc == -LOCK_EBLOCKLISTED && follow_current(o) == 0)
		rc = sample_once(o, out);
	return rc;
}
