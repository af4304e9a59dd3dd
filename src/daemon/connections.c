/*
 * Connections the user adds to a session (portals) or removes by CID. The added ones are
 * remembered and added again after every reconnect.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/connections.h"
#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/libbridge.h"
#include "daemon/ops.h"
#include "daemon/session.h"
#include "util/log.h"
#include "util/sbuf.h"

struct conn_op {
	struct dsession *s;
	uint64_t op;
	char *portal;
	bool replay;
};

static void on_conn_added(struct ism_session *ism, int status, uint16_t cid, void *priv)
{
	struct conn_op *c = priv;
	struct dsession *s = c->s;
	if (status == 0 && s->ism == ism) {
		if (!c->replay && s->nextra < DMN_MAX_WATCH)
			s->extra_portals[s->nextra++] = xstrdup(c->portal);
		log_info("session %s: connection %d to %s added", s->idstr, cid, c->portal);
		dop_done(s->d, c->op, json_pack("{s:s,s:i,s:s}", "session_id", s->idstr, "cid", cid, "portal", c->portal));
		dio_flush_later(s);
	} else {
		const char *e = *ism_session_error(ism) ? ism_session_error(ism) : "login failed";
		log_warn("session %s: adding a connection to %s failed: %s", s->idstr, c->portal, e);
		dop_fail(s->d, c->op, RPC_FAILED, "adding a connection to %s failed: %s", c->portal, e);
		ism_session_clear_error(ism);
	}
	free(c->portal);
	free(c);
}

static int add_conn(struct dsession *s, const char *portal, uint64_t op, bool replay, char *err, size_t errlen)
{
	if (!s->ism || s->state != DS_CONNECTED) {
		snprintf(err, errlen, "session %s is %s", s->idstr, dsess_state_str(s->state));
		return -1;
	}
	struct conn_op *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->op = op;
	c->replay = replay;
	c->portal = xstrdup(portal ? portal : s->opts.portal);
	s->in_lib++;
	int rc = ism_add_connection_async(s->ism, c->portal, on_conn_added, c);
	s->in_lib--;
	if (rc != 0) {
		snprintf(err, errlen, "%s", ism_session_error(s->ism));
		ism_session_clear_error(s->ism);
		free(c->portal);
		free(c);
		return -1;
	}
	if (!s->in_lib)
		lib_settle(s);
	return 0;
}

int dsess_add_connection(struct dsession *s, const char *portal, uint64_t op, char *err, size_t errlen)
{
	return add_conn(s, portal, op, false, err, errlen);
}

void dsess_readd_connections(struct dsession *s)
{
	char err[256];
	for (int i = 0; i < s->nextra; i++)
		if (add_conn(s, s->extra_portals[i], 0, true, err, sizeof(err)) < 0)
			log_warn("session %s: connection to %s not restored: %s", s->idstr, s->extra_portals[i], err);
}

struct rm_op {
	struct dsession *s;
	uint64_t op;
	uint16_t cid;
};

static void on_conn_removed(struct ism_session *ism, int status, void *priv)
{
	struct rm_op *r = priv;
	(void)ism;
	if (status == 0) {
		log_info("session %s: connection %u removed", r->s->idstr, r->cid);
		dop_done(r->s->d, r->op, json_pack("{s:s,s:i}", "session_id", r->s->idstr, "cid", r->cid));
	} else {
		dop_fail(r->s->d, r->op, RPC_FAILED, "removing connection %u failed (%d)", r->cid, status);
	}
	free(r);
}

/*
 * The connections restored after a reconnect are the login portal and the extra portals: removing
 * a connection takes its own portal out of them (not just any), so that what comes back is what
 * the user left. When it is the login portal's only connection, the first extra portal becomes the
 * login portal.
 */
static void forget_portal(struct dsession *s, const char *portal)
{
	for (int i = 0; i < s->nextra; i++) {
		if (strcmp(s->extra_portals[i], portal) != 0)
			continue;
		free(s->extra_portals[i]);
		memmove(&s->extra_portals[i], &s->extra_portals[i + 1], (size_t)(s->nextra - i - 1) * sizeof(char *));
		s->extra_portals[--s->nextra] = NULL;
		return;
	}
	if (!s->nextra)
		return;
	free(s->login_portal);
	s->login_portal = s->extra_portals[0];
	memmove(&s->extra_portals[0], &s->extra_portals[1], (size_t)(s->nextra - 1) * sizeof(char *));
	s->extra_portals[--s->nextra] = NULL;
}

int dsess_remove_connection(struct dsession *s, uint16_t cid, uint64_t op, char *err, size_t errlen)
{
	if (!s->ism || s->state != DS_CONNECTED) {
		snprintf(err, errlen, "session %s is %s", s->idstr, dsess_state_str(s->state));
		return -1;
	}
	struct ism_conn_info ci[DMN_MAX_WATCH];
	int nc = ism_session_connection_info(s->ism, ci, DMN_MAX_WATCH);
	int n = 0;
	char portal[ISM_PORTAL_MAX] = "";
	bool found = false;
	for (int i = 0; i < nc && i < DMN_MAX_WATCH; i++) {
		if (ci[i].state != ISM_CONN_FULL_FEATURE)
			continue;
		n++;
		if (ci[i].cid == cid) {
			found = true;
			snprintf(portal, sizeof(portal), "%s", ci[i].portal);
		}
	}
	if (!found) {
		snprintf(err, errlen, "session %s has no connection with CID %u", s->idstr, cid);
		return -1;
	}
	if (n <= 1) {
		snprintf(err, errlen, "CID %u is the session's only connection; log the session out instead", cid);
		return -1;
	}
	struct rm_op *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->op = op;
	r->cid = cid;
	s->in_lib++;
	int rc = ism_remove_connection_async(s->ism, cid, on_conn_removed, r);
	s->in_lib--;
	if (rc != 0) {
		snprintf(err, errlen, "%s", ism_session_error(s->ism));
		ism_session_clear_error(s->ism);
		free(r);
		return -1;
	}
	forget_portal(s, portal);
	lib_settle(s);
	return 0;
}
