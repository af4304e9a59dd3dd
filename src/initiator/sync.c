/* Blocking helpers: a private poll loop over the asynchronous core. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/internal.h"
#include "util/bytes.h"
#include "util/lun.h"

/*
 * One turn of the private loop: wait up to to_ms (-1: no limit) for the session's descriptors,
 * service those that are ready, then its timers and completions. Returns 0, 1 when there is
 * nothing to wait for (no descriptor and no limit), or -1 with the error set.
 */
static int poll_turn(struct ism_session *s, int to_ms)
{
	struct pollfd fds[ISM_MAX_CONNS];
	int n = ism_session_fds(s, fds, ISM_MAX_CONNS);
	if (n == 0 && to_ms < 0)
		return 1;
	int r = poll(fds, (nfds_t)n, to_ms);
	if (r < 0 && errno != EINTR) {
		ism_set_error(s, "poll: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; r > 0 && i < n; i++)
		if (fds[i].revents)
			ism_session_service(s, fds[i].fd, fds[i].revents);
	ism_session_service(s, -1, 0);
	return 0;
}

int ism_run_until(struct ism_session *s, const bool *flag, int timeout_ms)
{
	uint64_t deadline = timeout_ms >= 0 ? ism_now_ms() + (uint64_t)timeout_ms : 0;
	while (!*flag) {
		int to = ism_session_timeout_ms(s);
		if (deadline) {
			uint64_t now = ism_now_ms();
			int left = now >= deadline ? 0 : (int)(deadline - now);
			if (to < 0 || left < to)
				to = left;
		}
		int rc = poll_turn(s, to);
		if (rc < 0)
			return -1;
		if (rc > 0) {
			ism_session_service(s, -1, 0);
			if (*flag)
				break;
			ism_set_error(s, "nothing left to wait for (no connection)");
			return -1;
		}
		if (*flag)
			break;
		if (deadline && ism_now_ms() >= deadline)
			return ISM_ERR_TIMEOUT;
	}
	return 0;
}

struct done_ctx {
	bool done;
	int status;
};

static void on_done(struct ism_session *s, int status, void *priv)
{
	(void)s;
	struct done_ctx *d = priv;
	d->done = true;
	d->status = status;
}

static int wait_done(struct ism_session *s, struct done_ctx *d, int rc)
{
	if (rc != 0)
		return -1;
	if (ism_run_until(s, &d->done, -1) != 0 && !d->done)
		return -1;
	return d->status == ISM_OK ? 0 : -1;
}

int ism_connect(struct ism_session *s, const char *portal)
{
	struct done_ctx d = {0};
	ism_session_clear_error(s);
	return wait_done(s, &d, ism_connect_async(s, portal, on_done, &d));
}

struct add_ctx {
	struct done_ctx d;
	uint16_t cid;
};

static void on_added(struct ism_session *s, int status, uint16_t cid, void *priv)
{
	struct add_ctx *a = priv;
	on_done(s, status, &a->d);
	a->cid = cid;
}

int ism_add_connection(struct ism_session *s, const char *portal, uint16_t *cid)
{
	struct add_ctx a = {0};
	ism_session_clear_error(s);
	int rc = wait_done(s, &a.d, ism_add_connection_async(s, portal, on_added, &a));
	if (rc == 0 && cid)
		*cid = a.cid;
	return rc;
}

int ism_remove_connection(struct ism_session *s, uint16_t cid)
{
	struct done_ctx d = {0};
	ism_session_clear_error(s);
	return wait_done(s, &d, ism_remove_connection_async(s, cid, on_done, &d));
}

int ism_logout(struct ism_session *s)
{
	struct done_ctx d = {0};
	ism_session_clear_error(s);
	return wait_done(s, &d, ism_logout_async(s, on_done, &d));
}

int ism_session_wait(struct ism_session *s)
{
	while (s->ntasks || s->npending || s->done_head) {
		/* Completions already due are delivered without waiting. */
		int rc = poll_turn(s, s->done_head ? 0 : ism_session_timeout_ms(s));
		if (rc < 0)
			return -1;
		if (rc > 0) {
			ism_set_error(s, "commands left but no connection");
			return -1;
		}
	}
	return s->state == SESSION_FAILED ? -1 : 0;
}

struct disc_ctx {
	bool done;
	int status;
	struct ism_discovery *d;
};

static void on_disc(struct ism_session *s, int status, struct ism_discovery *d, void *priv)
{
	(void)s;
	struct disc_ctx *x = priv;
	x->done = true;
	x->status = status;
	x->d = d;
}

int ism_discover(const struct ism_config *cfg, const char *portal, struct ism_discovery **out, char *errmsg,
		 size_t errlen)
{
	struct ism_config c = *cfg;
	c.session_type = ISM_SESSION_DISCOVERY;
	c.target_name = NULL;
	*out = NULL;
	struct ism_session *s = ism_session_new(&c, errmsg, errlen);
	if (!s)
		return -1;
	int rc = -1;
	if (ism_connect(s, portal) == 0) {
		struct disc_ctx x = {0};
		if (ism_discovery_async(s, on_disc, &x) == 0 && ism_run_until(s, &x.done, s->cfg.cmd_timeout_ms) == 0 &&
		    x.done && x.status == ISM_OK) {
			*out = x.d;
			rc = 0;
			ism_logout(s);
		} else {
			ism_discovery_free(x.d);
			if (!x.done)
				ism_set_error(s, "SendTargets timed out");
		}
	}
	if (rc != 0)
		snprintf(errmsg, errlen, "%s", ism_session_error(s)[0] ? ism_session_error(s) : "discovery failed");
	ism_session_free(s);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */

struct scsi_ctx {
	bool done;
	struct ism_scsi_result res;
};

static void on_scsi(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	(void)s;
	struct scsi_ctx *x = priv;
	x->res = *r;
	x->done = true;
}

int ism_scsi(struct ism_session *s, uint64_t lun, const uint8_t *cdb, size_t cdb_len, enum ism_dir dir, void *buf,
	     uint32_t len, struct ism_scsi_result *res)
{
	struct scsi_ctx x = {0};
	ism_session_clear_error(s);
	struct ism_task *t = ism_scsi_async(s, lun, cdb, cdb_len, dir, buf, len, on_scsi, &x);
	if (!t) {
		if (res) {
			memset(res, 0, sizeof(*res));
			res->error = ISM_ERR_INVALID;
		}
		return -1;
	}
	int rc = ism_run_until(s, &x.done, s->cfg.cmd_timeout_ms);
	if (!x.done && rc == ISM_ERR_TIMEOUT) {
		/* The buffer must not be written after we return: give up the connection (ERL 0). */
		ism_set_error(s, "SCSI command 0x%02x timed out after %d ms", cdb[0], s->cfg.cmd_timeout_ms);
		if (t->conn)
			ism_conn_fail(t->conn, "command timed out");
		else {
			t->res.error = ISM_ERR_TIMEOUT;
			ism_task_complete(t);
		}
		ism_session_service(s, -1, 0);
	}
	if (!x.done) {
		/* cannot happen: failing the connection completes the task */
		t->scsi_cb = NULL;
		x.res.error = ISM_ERR_TIMEOUT;
	}
	if (res)
		*res = x.res;
	if (x.res.error == ISM_OK && x.res.status == 0)
		return 0;
	ism_format_scsi_error(s, &x.res);
	return -1;
}

static void on_tmf(struct ism_session *s, int status, void *priv) { on_done(s, status, priv); }

int ism_task_mgmt(struct ism_session *s, enum ism_tmf function, uint64_t lun, struct ism_task *ref)
{
	struct done_ctx d = {0};
	ism_session_clear_error(s);
	return wait_done(s, &d, ism_task_mgmt_async(s, function, lun, ref, on_tmf, &d));
}

int ism_test_unit_ready(struct ism_session *s, uint64_t lun)
{
	uint8_t cdb[16];
	size_t n = ism_cdb_test_unit_ready(cdb);
	return ism_scsi(s, lun, cdb, n, ISM_DIR_NONE, NULL, 0, NULL);
}

int ism_inquiry(struct ism_session *s, uint64_t lun, int page, void *buf, uint32_t len, uint32_t *got)
{
	uint8_t cdb[16];
	if (len > 0xffff)
		len = 0xffff;
	size_t n = ism_cdb_inquiry(cdb, page, (uint16_t)len);
	struct ism_scsi_result r;
	int rc = ism_scsi(s, lun, cdb, n, ISM_DIR_READ, buf, len, &r);
	if (got)
		*got = r.error == ISM_OK ? (r.underflow && r.residual <= len ? len - r.residual : r.transferred) : 0;
	return rc;
}

/* Both READ CAPACITY forms: the answer is unusable unless it holds at least the fields read. */
static int read_capacity(struct ism_session *s, uint64_t lun, const uint8_t *cdb, size_t cdb_len, uint8_t *buf,
			 uint32_t size, uint32_t need, const char *what)
{
	struct ism_scsi_result r;
	if (ism_scsi(s, lun, cdb, cdb_len, ISM_DIR_READ, buf, size, &r) < 0)
		return -1;
	if (r.transferred < need) {
		ism_set_error(s, "%s returned %u bytes, want at least %u", what, r.transferred, need);
		return -1;
	}
	return 0;
}

int ism_read_capacity10(struct ism_session *s, uint64_t lun, uint32_t *last_lba, uint32_t *block_size)
{
	uint8_t cdb[16], buf[8] = {0};
	size_t n = ism_cdb_read_capacity10(cdb);
	if (read_capacity(s, lun, cdb, n, buf, sizeof(buf), 8, "READ CAPACITY(10)") < 0)
		return -1;
	*last_lba = get_be32(buf);
	*block_size = get_be32(buf + 4);
	return 0;
}

int ism_read_capacity16(struct ism_session *s, uint64_t lun, uint64_t *last_lba, uint32_t *block_size)
{
	uint8_t cdb[16], buf[32] = {0};
	size_t n = ism_cdb_read_capacity16(cdb, sizeof(buf));
	if (read_capacity(s, lun, cdb, n, buf, sizeof(buf), 12, "READ CAPACITY(16)") < 0)
		return -1;
	*last_lba = get_be64(buf);
	*block_size = get_be32(buf + 8);
	return 0;
}

int ism_report_luns(struct ism_session *s, uint64_t *luns, size_t *n)
{
	uint32_t alloc = 8 + 8 * 256;
	for (int attempt = 0; attempt < 2; attempt++) {
		uint8_t *buf = xcalloc(1, alloc);
		uint8_t cdb[16];
		size_t cl = ism_cdb_report_luns(cdb, alloc);
		struct ism_scsi_result r;
		if (ism_scsi(s, 0, cdb, cl, ISM_DIR_READ, buf, alloc, &r) < 0) {
			free(buf);
			return -1;
		}
		if (r.transferred < 8) {
			free(buf);
			ism_set_error(s, "REPORT LUNS returned %u bytes, want at least 8", r.transferred);
			return -1;
		}
		uint32_t listlen = get_be32(buf);
		if (listlen + 8 > alloc && attempt == 0 && listlen < 16u * 1024 * 1024) {
			alloc = listlen + 8;
			free(buf);
			continue;
		}
		uint32_t have = r.transferred - 8;
		if (listlen < have)
			have = listlen;
		size_t count = have / 8, out = 0;
		for (size_t i = 0; i < count; i++) {
			if (out < *n)
				luns[out] = lun_value(buf + 8 + 8 * i);
			out++;
		}
		*n = out;
		free(buf);
		return 0;
	}
	return -1;
}

/* A block read or write that GOOD status ended with less data than asked failed: the rest of a
 * read buffer is zeros, not data, and a write did not reach every block. */
static int rw_blocks(struct ism_session *s, uint64_t lun, const uint8_t *cdb, size_t cdb_len, enum ism_dir dir,
		     void *buf, uint32_t len)
{
	struct ism_scsi_result r;
	if (ism_scsi(s, lun, cdb, cdb_len, dir, buf, len, &r) < 0)
		return -1;
	if (r.transferred < len) {
		ism_set_error(s, "%s of %u bytes: the target answered GOOD after %u bytes", dir == ISM_DIR_READ ? "read" : "write",
			      len, r.transferred);
		return -1;
	}
	return 0;
}

static int check_len(struct ism_session *s, uint64_t blocks, uint32_t block_size, uint32_t *len)
{
	uint64_t l = blocks * block_size;
	if (l > 0xffffffffu || block_size == 0) {
		ism_set_error(s, "transfer of %llu blocks of %u bytes is too large", (unsigned long long)blocks,
			      block_size);
		return -1;
	}
	*len = (uint32_t)l;
	return 0;
}

/* The four block transfers differ only in CDB size and direction; the length check and the
 * short-transfer check are the same. */
static int rw_lba(struct ism_session *s, uint64_t lun, bool cdb16, bool write, uint64_t lba, uint32_t blocks,
		  uint32_t block_size, void *buf)
{
	uint8_t cdb[16];
	uint32_t len;
	if (check_len(s, blocks, block_size, &len) < 0)
		return -1;
	size_t n = cdb16 ? ism_cdb_rw16(cdb, write, lba, blocks)
			 : ism_cdb_rw10(cdb, write, (uint32_t)lba, (uint16_t)blocks);
	return rw_blocks(s, lun, cdb, n, write ? ISM_DIR_WRITE : ISM_DIR_READ, buf, len);
}

int ism_read10(struct ism_session *s, uint64_t lun, uint32_t lba, uint16_t blocks, uint32_t block_size, void *buf)
{
	return rw_lba(s, lun, false, false, lba, blocks, block_size, buf);
}

int ism_write10(struct ism_session *s, uint64_t lun, uint32_t lba, uint16_t blocks, uint32_t block_size,
		const void *buf)
{
	return rw_lba(s, lun, false, true, lba, blocks, block_size, (void *)buf);
}

int ism_read16(struct ism_session *s, uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size, void *buf)
{
	return rw_lba(s, lun, true, false, lba, blocks, block_size, buf);
}

int ism_write16(struct ism_session *s, uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size,
		const void *buf)
{
	return rw_lba(s, lun, true, true, lba, blocks, block_size, (void *)buf);
}

int ism_synchronize_cache(struct ism_session *s, uint64_t lun)
{
	uint8_t cdb[16];
	size_t n = ism_cdb_sync_cache10(cdb);
	return ism_scsi(s, lun, cdb, n, ISM_DIR_NONE, NULL, 0, NULL);
}

int ism_unmap(struct ism_session *s, uint64_t lun, const struct ism_unmap_range *ranges, size_t n)
{
	if (n == 0 || n > 4000) {
		ism_set_error(s, "UNMAP takes 1 to 4000 ranges");
		return -1;
	}
	uint32_t plen = (uint32_t)(8 + 16 * n);
	uint8_t *p = xcalloc(1, plen);
	put_be16(p, (uint16_t)(plen - 2));
	put_be16(p + 2, (uint16_t)(16 * n));
	for (size_t i = 0; i < n; i++) {
		put_be64(p + 8 + 16 * i, ranges[i].lba);
		put_be32(p + 8 + 16 * i + 8, ranges[i].blocks);
	}
	uint8_t cdb[16];
	size_t cl = ism_cdb_unmap(cdb, (uint16_t)plen);
	int rc = ism_scsi(s, lun, cdb, cl, ISM_DIR_WRITE, p, plen, NULL);
	free(p);
	return rc;
}
