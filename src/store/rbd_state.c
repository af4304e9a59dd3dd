/*
 * State the SCSI layer keeps with an RBD image rather than on the gateway's machine (store_ops
 * state_get / state_put: a standalone LU's APTPL reservations, scsi/pr_persist.c): one RADOS
 * object next to the image, isthmus.pr.<image> in its pool and namespace, replaced whole with
 * write_full, which the OSD applies atomically. Read once when the image opens (a worker, or
 * start-up), so that adding the LU never waits for the cluster; written by a worker. Each write
 * makes its own ioctx on the cluster connection's current client instance: a reopen after a
 * blocklisting changes nothing here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_rbd_int.h"
#include "util/sbuf.h"

/* Largest state object read back: far above what the SCSI layer's registrations can fill. */
#define RBD_STATE_MAX (16u << 20)
/* What the first read asks for: a LU's state with a few hundred registrations, in one trip. */
#define RBD_STATE_FIRST (64u << 10)

static int state_ioctx(struct rbd_store *rs, struct rbd_conn *conn, rados_ioctx_t *io)
{
	int rc = rados_ioctx_create(rbd_conn_handle(conn), rs->pool, io);

	if (rc < 0)
		return rc;
	rados_ioctx_set_namespace(*io, rs->ns ? rs->ns : "");
	return 0;
}

/*
 * One round trip, one version: the object's size and its first `cap` bytes in one compound read
 * op (the OSD runs both on the same version, so a write_full in between cannot split them).
 */
static int state_read(rados_ioctx_t io, const char *oid, char *buf, size_t cap, uint64_t *size, size_t *got)
{
	rados_read_op_t op = rados_create_read_op();
	int stat_rv = 0, read_rv = 0;
	time_t mtime;

	rados_read_op_stat(op, size, &mtime, &stat_rv);
	rados_read_op_read(op, 0, cap, buf, got, &read_rv);
	int rc = rados_read_op_operate(op, io, oid, 0);
	rados_release_read_op(op);
	if (rc == 0)
		rc = stat_rv < 0 ? stat_rv : read_rv;
	return rc;
}

int rbd_state_load(struct rbd_store *rs, char **err)
{
	rados_ioctx_t io;
	size_t cap = RBD_STATE_FIRST, got = 0;
	uint64_t size = 0;
	int rc;

	rs->pr_oid = xasprintf("isthmus.pr.%s", rs->image);
	if ((rc = state_ioctx(rs, rs->im.conn, &io)) < 0) {
		*err = xasprintf("%s: pool '%s': %s", rs->st.path, rs->pool, strerror(-rc));
		return rc;
	}
	rs->pr_blob = xmalloc(cap + 1);
	/* A larger object is read again whole at the size just seen; it may be replaced by a larger
	 * one meanwhile, so the tries are bounded. */
	for (int tries = 0; (rc = state_read(io, rs->pr_oid, rs->pr_blob, cap, &size, &got)) == 0 && size > got;
	     tries++) {
		if (size > RBD_STATE_MAX || tries == 3) {
			rc = size > RBD_STATE_MAX ? -EFBIG : -EAGAIN;
			break;
		}
		cap = (size_t)size;
		rs->pr_blob = xrealloc(rs->pr_blob, cap + 1);
	}
	rados_ioctx_destroy(io);
	if (rc < 0) {
		free(rs->pr_blob);
		rs->pr_blob = NULL;
		if (rc == -ENOENT)
			return 0; /* nothing saved yet */
		*err = xasprintf("%s: cannot read its reservation state (%s): %s", rs->st.path, rs->pr_oid,
				 strerror(-rc));
		return rc;
	}
	rs->pr_len = got;
	rs->pr_blob[got] = '\0';
	rs->pr_found = got > 0; /* an empty object holds nothing either */
	return 0;
}

int rbds_state_get(struct store *st, char **data, size_t *len)
{
	struct rbd_store *rs = rbds_of(st);

	if (!rs->pr_found)
		return -ENOENT;
	*data = xmalloc(rs->pr_len + 1);
	memcpy(*data, rs->pr_blob, rs->pr_len + 1);
	*len = rs->pr_len;
	return 0;
}

int rbds_state_put(struct store *st, const void *data, size_t len)
{
	struct rbd_store *rs = rbds_of(st);
	struct rbd_conn *conn = rbd_cluster_conn_get(rs->cl);
	rados_ioctx_t io;
	int rc = state_ioctx(rs, conn, &io);

	if (rc == 0) {
		rc = rados_write_full(io, rs->pr_oid, data, len);
		rados_ioctx_destroy(io);
	}
	rbd_conn_put(rs->cl, conn);
	return rc;
}

const char *rbds_state_name(const struct store *st) { return ((const struct rbd_store *)st)->pr_oid; }
