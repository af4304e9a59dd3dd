/*
 * The session's connection slots: allocation of a slot and its CID, lookups, and what happens
 * when a connection ends (its tasks fail; with the last one gone the session ends or fails; one
 * lost in full feature phase takes the others with it: session recovery, ErrorRecoveryLevel 0).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/internal.h"

struct ism_conn *ism_conn_alloc(struct ism_session *s)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->state != CONN_FREE)
			continue;
		pdu_conn_rx_free(&c->pc);
		memset(c, 0, sizeof(*c));
		c->s = s;
		c->fd = -1;
		c->cid = s->next_cid++;
		if ((unsigned)i >= s->conn_slots)
			s->conn_slots = (unsigned)i + 1;
		ism_conn_init_engine(c);
		params_defaults(&c->params);
		return c;
	}
	return NULL;
}

bool ism_conn_usable(const struct ism_conn *c) { return c->state == CONN_FFP && !c->draining && c->fd >= 0; }

int ism_live_conns(const struct ism_session *s)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		enum conn_state st = s->conns[i].state;
		if (st == CONN_CONNECTING || st == CONN_LOGIN || st == CONN_FFP || st == CONN_LOGOUT ||
		    st == CONN_RECOVERING)
			n++;
	}
	return n;
}

void ism_fail_pending(struct ism_session *s, int err)
{
	while (s->pending_head)
		ism_task_fail(s->pending_head, err);
}

/* Tasks allegiant to c (and pending tasks pinned to it) fail with err. */
static void fail_conn_tasks(struct ism_conn *c, int err)
{
	struct ism_session *s = c->s;
	for (int b = 0; b < ISM_TASK_BUCKETS; b++) {
		struct ism_task *t = s->tasks[b];
		while (t) {
			struct ism_task *next = t->hnext;
			if (t->conn == c)
				ism_task_fail(t, err);
			t = next;
		}
	}
}

void ism_conn_closed(struct ism_conn *c, int err)
{
	struct ism_session *s = c->s;
	ism_conn_close_fd(c);
	ism_conn_drop_tx(c);
	c->state = CONN_CLOSED;
	if (c->ai) {
		freeaddrinfo(c->ai);
		c->ai = c->ai_next = NULL;
	}
	fail_conn_tasks(c, err);
	if (c->login)
		ism_login_finish(c, c->login->fail_status ? c->login->fail_status : err);
	if (ism_live_conns(s) == 0) {
		if (s->state == SESSION_LOGGED_IN) /* the session is over */
			s->state = err == ISM_OK ? SESSION_LOGGED_OUT : SESSION_FAILED;
		else if (err != ISM_OK && !s->logging_out)
			s->state = SESSION_FAILED;
		ism_fail_pending(s, err != ISM_OK ? err : ISM_ERR_CLOSED);
	}
}

/* The session's connections as they are when c is lost, kept for ism_session_lost_connection_info;
 * closing: the others are closed with it (at ErrorRecoveryLevel 2 they go on). */
void ism_record_loss(struct ism_conn *c, const char *why, bool closing)
{
	struct ism_session *s = c->s;
	if (!s->lost)
		s->lost = xcalloc(ISM_MAX_CONNS, sizeof(*s->lost));
	s->nlost = 0;
	s->closed_with_lost = 0;
	s->lost_cid = c->cid;
	snprintf(s->lost_reason, sizeof(s->lost_reason), "%s", why);
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		const struct ism_conn *o = &s->conns[i];
		if (o->state == CONN_FREE || o->state == CONN_CLOSED)
			continue;
		struct ism_conn_info *info = &s->lost[s->nlost++];
		ism_conn_info_fill(o, info);
		if (o == c)
			info->state = ISM_CONN_FAILED;
		else if (closing)
			info->state = ISM_CONN_CLOSED;
		if (o != c && closing)
			s->closed_with_lost++;
	}
}

/*
 * Session recovery, the only recovery ErrorRecoveryLevel 0 has (RFC 7143 7.1.4.4, 7.1.5): a
 * connection lost in full feature phase takes every other connection of the session with it. The
 * CmdSNs sent on the lost one may never have reached the target, which then holds every later
 * command waiting for them; only a new session (reinstated with the same ISID) starts a new
 * numbering. Their tasks fail with ISM_ERR_TRANSPORT, to be sent again on that session.
 */
static void recover_session(struct ism_session *s, const struct ism_conn *lost)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *o = &s->conns[i];
		if (o == lost || o->state == CONN_FREE || o->state == CONN_CLOSED)
			continue;
		if (o->login)
			o->login->fail_status = ISM_ERR_TRANSPORT;
		ism_conn_closed(o, ISM_ERR_TRANSPORT);
	}
}

void ism_conn_fail(struct ism_conn *c, const char *fmt, ...)
{
	if (c->state == CONN_CLOSED || c->state == CONN_FREE)
		return;
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct ism_session *s = c->s;
	if (c->recovery == RECOVERY_WAIT || c->recovery == RECOVERY_LOGIN) {
		/* a replacement connection that did not make it: the next attempt, or the fallback */
		ism_erl2_attempt_failed(c, msg);
		return;
	}
	ism_set_error(s, "connection %u to %s: %s", c->cid, c->peer[0] ? c->peer : c->portal, msg);
	/* A connection still logging in carries no command: its loss ends only its own login. */
	bool in_ffp = (c->state == CONN_FFP || c->state == CONN_LOGOUT) && s->state == SESSION_LOGGED_IN &&
		      !s->logging_out;
	bool kept = in_ffp && s->params.error_recovery_level >= 2;
	if (in_ffp)
		ism_record_loss(c, msg, !kept);
	if (kept && ism_erl2_conn_lost(c, msg))
		return;
	if (kept) /* not recoverable after all: as at level 0 */
		ism_record_loss(c, msg, true);
	ism_conn_closed(c, ISM_ERR_TRANSPORT);
	if (in_ffp && s->params.error_recovery_level != 1 && ism_live_conns(s) > 0)
		recover_session(s, c);
}

void ism_conn_release(struct ism_conn *c)
{
	pdu_conn_rx_free(&c->pc);
	c->state = CONN_FREE;
}

struct ism_conn *ism_conn_by_cid(struct ism_session *s, uint16_t cid)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->state != CONN_FREE && c->state != CONN_CLOSED && c->cid == cid)
			return c;
	}
	return NULL;
}
