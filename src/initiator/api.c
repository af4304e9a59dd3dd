/*
 * The public asynchronous operations: log in a session's leading connection, add and remove
 * connections, log out, and submit SCSI commands, task management functions and NOP-Out pings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/internal.h"

static struct ism_task *login_task(struct ism_session *s, uint16_t cid, ism_done_cb cb, ism_conn_cb ccb, void *priv)
{
	struct ism_task *t = ism_task_alloc(s, TASK_LOGIN);
	t->done_cb = cb;
	t->conn_cb = ccb;
	t->priv = priv;
	t->state = TASK_QUEUED;
	t->res.cid = cid; /* not allegiant to a connection: ism_task_complete leaves it */
	return t;
}

static int start_conn(struct ism_session *s, const char *portal, int fd, bool leading, ism_done_cb cb,
		      ism_conn_cb ccb, void *priv)
{
	if (s->free_requested) {
		ism_set_error(s, "the session is being freed");
		return ISM_ERR_CLOSED;
	}
	struct ism_conn *c = ism_conn_alloc(s);
	if (!c) {
		ism_set_error(s, "the session already has %d connections", ISM_MAX_CONNS);
		return ISM_ERR_INVALID;
	}
	c->login = xcalloc(1, sizeof(*c->login));
	c->login->leading = leading;
	c->login->task = login_task(s, c->cid, cb, ccb, priv);
	if (leading && s->state != SESSION_LOGGED_IN)
		s->state = SESSION_IDLE;
	if (portal)
		snprintf(c->portal, sizeof(c->portal), "%s", portal);
	else
		snprintf(c->portal, sizeof(c->portal), "fd %d", fd);
	if (leading && !s->isid_known) {
		char host[256], pg[300];
		uint16_t port = ISM_DEFAULT_PORT;
		if (portal && ism_parse_portal(portal, host, sizeof(host), &port) == 0)
			snprintf(pg, sizeof(pg), "%s:%u", host, port);
		else
			snprintf(pg, sizeof(pg), "%s", c->portal);
		ism_isid_derive(s->initiator_name, s->target_name ? s->target_name : "", pg, s->isid);
		s->isid_known = true;
	}
	if (s->state == SESSION_FAILED)
		s->state = SESSION_IDLE;
	if (fd >= 0) {
		c->fd = fd;
		snprintf(c->peer, sizeof(c->peer), "%s", c->portal);
		ism_conn_connected(c);
		return 0;
	}
	c->state = CONN_CONNECTING;
	if (ism_conn_start_connect(c) < 0) {
		c->login->fail_status = ISM_ERR_TRANSPORT;
		ism_conn_closed(c, ISM_ERR_TRANSPORT);
		return 0; /* the callback reports it */
	}
	return 0;
}

int ism_connect_async(struct ism_session *s, const char *portal, ism_done_cb cb, void *priv)
{
	if (s->state == SESSION_LOGGED_IN || ism_live_conns(s)) {
		ism_set_error(s, "the session is already connected");
		return ISM_ERR_INVALID;
	}
	return start_conn(s, portal, -1, true, cb, NULL, priv);
}

int ism_attach_fd_async(struct ism_session *s, int fd, bool leading, ism_done_cb cb, void *priv)
{
	return start_conn(s, NULL, fd, leading, cb, NULL, priv);
}

int ism_add_connection_async(struct ism_session *s, const char *portal, ism_conn_cb cb, void *priv)
{
	if (s->state != SESSION_LOGGED_IN || s->cfg.session_type != ISM_SESSION_NORMAL) {
		ism_set_error(s, "connections can only be added to a logged-in normal session");
		return ISM_ERR_INVALID;
	}
	if ((uint32_t)ism_live_conns(s) >= s->params.max_connections) {
		ism_set_error(s, "the target allows %u connections in this session (MaxConnections)",
			      s->params.max_connections);
		return ISM_ERR_INVALID;
	}
	return start_conn(s, portal, -1, false, NULL, cb, priv);
}

void ism_queue_logout(struct ism_session *s, struct ism_conn *c, uint8_t reason, ism_done_cb cb, void *priv)
{
	struct ism_task *t = ism_task_new(s, TASK_LOGOUT);
	t->logout_reason = reason;
	t->logout_cid = c ? c->cid : 0;
	t->conn = c; /* NULL: a session logout goes on any connection */
	t->done_cb = cb;
	t->priv = priv;
	if (c)
		c->logout_queued = true;
	if (reason == LOGOUT_CLOSE_SESSION)
		s->logging_out = true;
	ism_submit(s, t);
}

int ism_remove_connection_async(struct ism_session *s, uint16_t cid, ism_done_cb cb, void *priv)
{
	struct ism_conn *c = ism_conn_by_cid(s, cid);
	if (!c || c->state != CONN_FFP) {
		ism_set_error(s, "no logged-in connection with CID %u", cid);
		return ISM_ERR_INVALID;
	}
	int others = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		if (&s->conns[i] != c && s->conns[i].state == CONN_FFP)
			others++;
	c->draining = true;
	ism_queue_logout(s, c, others ? LOGOUT_CLOSE_CONNECTION : LOGOUT_CLOSE_SESSION, cb, priv);
	return 0;
}

int ism_logout_async(struct ism_session *s, ism_done_cb cb, void *priv)
{
	if (s->state != SESSION_LOGGED_IN) {
		ism_set_error(s, "the session is not logged in");
		return ISM_ERR_INVALID;
	}
	ism_queue_logout(s, NULL, LOGOUT_CLOSE_SESSION, cb, priv);
	return 0;
}

struct ism_task *ism_scsi_async(struct ism_session *s, uint64_t lun, const uint8_t *cdb, size_t cdb_len,
				enum ism_dir dir, void *buf, uint32_t len, ism_scsi_cb cb, void *priv)
{
	if (!cdb || cdb_len == 0 || cdb_len > 16) {
		ism_set_error(s, "CDB length %zu not supported (1 to 16 bytes)", cdb_len);
		return NULL;
	}
	if (dir != ISM_DIR_NONE && len && !buf) {
		ism_set_error(s, "data buffer missing");
		return NULL;
	}
	if (s->state != SESSION_LOGGED_IN || s->logging_out || s->cfg.session_type != ISM_SESSION_NORMAL) {
		ism_set_error(s, "the session is not logged in");
		return NULL;
	}
	struct ism_task *t = ism_task_new(s, TASK_SCSI);
	t->lun = lun;
	memcpy(t->cdb, cdb, cdb_len);
	t->cdb_len = cdb_len;
	t->dir = len ? dir : ISM_DIR_NONE;
	t->buf = buf;
	t->len = dir == ISM_DIR_NONE ? 0 : len;
	t->scsi_cb = cb;
	t->priv = priv;
	ism_submit(s, t);
	return t;
}

int ism_task_mgmt_async(struct ism_session *s, enum ism_tmf function, uint64_t lun, struct ism_task *ref,
			ism_done_cb cb, void *priv)
{
	if (s->state != SESSION_LOGGED_IN) {
		ism_set_error(s, "the session is not logged in");
		return ISM_ERR_INVALID;
	}
	if (function == ISM_TMF_ABORT_TASK && (!ref || ref->kind != TASK_SCSI || ref->state == TASK_DONE)) {
		ism_set_error(s, "ABORT TASK needs a task in progress");
		return ISM_ERR_INVALID;
	}
	struct ism_task *t = ism_task_new(s, TASK_TMF);
	t->immediate = true;
	t->tmf_function = (uint8_t)function;
	t->lun = ref ? ref->lun : lun;
	if (ref) {
		t->tmf_ref_itt = ref->itt;
		t->tmf_ref_cmdsn = ref->state == TASK_SENT ? ref->cmdsn : s->cmdsn;
		if (ref->state != TASK_SENT) {
			/* Never sent: it can be dropped here; the target does not know it. */
			ref->res.error = ISM_ERR_ABORTED;
			ism_task_complete(ref);
			t->res.error = ISM_OK;
			ism_task_complete(t);
			return 0;
		}
		t->conn = ref->conn;
	}
	t->done_cb = cb;
	t->priv = priv;
	ism_submit(s, t);
	return 0;
}

struct nop_group {
	int left, status;
	ism_done_cb cb;
	void *priv;
};

static void nop_all_done(struct ism_session *s, int status, void *priv)
{
	struct nop_group *g = priv;
	if (status && !g->status)
		g->status = status;
	if (--g->left == 0) {
		if (g->cb)
			g->cb(s, g->status, g->priv);
		free(g);
	}
}

int ism_nop_async(struct ism_session *s, ism_done_cb cb, void *priv)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		if (s->conns[i].state == CONN_FFP)
			n++;
	if (!n) {
		ism_set_error(s, "no logged-in connection");
		return ISM_ERR_INVALID;
	}
	struct nop_group *g = xcalloc(1, sizeof(*g));
	g->left = n;
	g->cb = cb;
	g->priv = priv;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		if (s->conns[i].state != CONN_FFP)
			continue;
		struct ism_task *t = ism_task_new(s, TASK_NOP);
		t->immediate = true;
		t->conn = &s->conns[i];
		t->done_cb = nop_all_done;
		t->priv = g;
		ism_submit(s, t);
	}
	return 0;
}
