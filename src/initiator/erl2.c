/*
 * ErrorRecoveryLevel 2 in the initiator: connection recovery (RFC 7143 6.1.4.2, 7.1.5, 7.2, 11.5.1).
 * When the session negotiated it, a connection lost in full feature phase does not end the
 * session:
 *  - its tasks stay allegiant to it, its slot waits (CONN_RECOVERING), the session's other
 *    connections carry on and new commands go to them (or wait, when it was the only one);
 *  - after DefaultTime2Wait a replacement logs in with the session's TSIH and the same CID
 *    (connection reinstatement: the target logs the old one out implicitly), through the lost
 *    connection's portal, then alternately through the portals of the session's other connections;
 *  - in full feature phase it sends TASK REASSIGN (immediate) for each kept task, with ExpDataSN
 *    the next DataSN a read needs (the data already placed stays), and the tasks go on there:
 *    Data-In resumes, R2Ts are answered from the task's buffer, the status comes;
 *  - a command the target says it does not know and never acknowledged (CmdSN at or past
 *    ExpCmdSN) never reached it: it goes again on the new connection with its ITT and CmdSN
 *    (a retry, RFC 7143 6.2.1), which also closes the CmdSN gap it left;
 *  - a target that refuses the lost CID has it logged out for recovery from another connection
 *    (Logout reason 2), and the replacement comes with a new CID.
 * When the target keeps nothing (DefaultTime2Retain 0), when no login succeeds before
 * DefaultTime2Wait + DefaultTime2Retain have passed since the loss, or when the target refuses the
 * login or a reassignment, the session fails as at level 0 (every connection closed, every task
 * failed with ISM_ERR_TRANSPORT), so that its user reinstates it and sends the commands again:
 * a command is never lost silently.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "initiator/internal.h"
#include "util/log.h"
#include "util/serial.h"

/* Between two login attempts of a replacement connection (within DefaultTime2Retain). */
#define ERL2_RETRY_MS 1000u

static uint64_t now_of(const struct ism_session *s) { return s->in_service ? s->now_ms : ism_now_ms(); }

/*
 * Give up connection recovery: the session fails as at level 0. c is the connection whose
 * recovery failed; every connection closes and every task fails with ISM_ERR_TRANSPORT.
 */
static void fall_back(struct ism_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fall_back(struct ism_conn *c, const char *fmt, ...)
{
	struct ism_session *s = c->s;
	char why[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn("connection %u: connection recovery given up (%s): the session fails", c->cid, why);
	ism_session_clear_error(s);
	ism_set_error(s, "connection %u lost (%s); connection recovery failed: %s", c->cid, c->lost_reason, why);
	s->conn_recovery_fallbacks++;
	snprintf(c->portal, sizeof(c->portal), "%s", c->lost_portal);
	char reason[400];
	snprintf(reason, sizeof(reason), "%s", c->lost_reason);
	ism_record_loss(c, reason, true);
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *o = &s->conns[i];
		if (o->state == CONN_FREE || o->state == CONN_CLOSED)
			continue;
		o->recovery = RECOVERY_NONE;
		if (o->login)
			o->login->fail_status = ISM_ERR_TRANSPORT;
		ism_conn_closed(o, ISM_ERR_TRANSPORT);
	}
}

/* The slot without a socket, waiting for its next login attempt at `at`. */
static void wait_for_attempt(struct ism_conn *c, uint64_t at)
{
	ism_conn_close_fd(c);
	ism_conn_drop_tx(c);
	pdu_conn_rx_reset(&c->pc);
	ism_login_free(c);
	if (c->ai) {
		freeaddrinfo(c->ai);
		c->ai = c->ai_next = NULL;
	}
	c->state = CONN_RECOVERING;
	c->recovery = RECOVERY_WAIT;
	c->keepalive = KEEPALIVE_IDLE;
	c->draining = false;
	c->recover_at_ms = at;
}

bool ism_erl2_conn_lost(struct ism_conn *c, const char *why)
{
	struct ism_session *s = c->s;
	if (c->state != CONN_FFP)
		return false; /* a connection logging out has no command left to keep */
	if (s->params.default_time2retain == 0) {
		log_warn("connection %u lost (%s); the target keeps no task for reassignment (DefaultTime2Retain 0)",
			 c->cid, why);
		return false;
	}
	uint64_t now = now_of(s);
	s->conn_losses_kept++;
	bool again = c->recovery == RECOVERY_REASSIGN;
	if (!again) {
		snprintf(c->lost_portal, sizeof(c->lost_portal), "%s", c->portal);
		c->recovery_attempts = 0;
		c->cid_given_up = false;
	}
	snprintf(c->lost_reason, sizeof(c->lost_reason), "%s", why);
	wait_for_attempt(c, now + (uint64_t)s->params.default_time2wait * 1000u);
	/* DefaultTime2Retain counts from the end of DefaultTime2Wait (RFC 7143 13.10). */
	c->retain_until_ms = now + ((uint64_t)s->params.default_time2wait + s->params.default_time2retain) * 1000u;
	c->reassigns_pending = 0;
	/* SCSI tasks are kept; pings, task management and text requests sent on it are lost with it. */
	int kept = 0;
	for (int b = 0; b < ISM_TASK_BUCKETS; b++) {
		struct ism_task *t = s->tasks[b];
		while (t) {
			struct ism_task *next = t->hnext;
			if (t->conn == c && t->kind == TASK_SCSI && t->state == TASK_SENT) {
				t->reassign = true;
				t->r2t_active = 0; /* the Data-Out queued for it went with the socket */
				t->snack_sent = false;
				kept++;
			} else if (t->conn == c) {
				ism_task_fail(t, ISM_ERR_TRANSPORT);
			}
			t = next;
		}
	}
	log_warn("connection %u lost (%s): %d task(s) kept for reassignment, a replacement logs in after %u s "
		 "(DefaultTime2Wait), at most %u s more (DefaultTime2Retain)",
		 c->cid, why, kept, s->params.default_time2wait, s->params.default_time2retain);
	return true;
}

/* The portal of the next attempt: the lost connection's first, then alternately another one the
 * session is connected through (the lost path may stay down while the target is reachable). */
static void choose_portal(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	snprintf(c->portal, sizeof(c->portal), "%s", c->lost_portal);
	if (c->recovery_attempts % 2 == 0)
		return;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		const struct ism_conn *o = &s->conns[i];
		if (o != c && o->state == CONN_FFP && strcmp(o->portal, c->lost_portal) != 0 &&
		    strncmp(o->portal, "fd ", 3) != 0) {
			snprintf(c->portal, sizeof(c->portal), "%s", o->portal);
			return;
		}
	}
}

static void start_attempt(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	choose_portal(c);
	c->recovery_attempts++;
	c->recovery = RECOVERY_LOGIN;
	c->login = xcalloc(1, sizeof(*c->login));
	c->login->leading = false;
	c->login->restart = true;
	c->state = CONN_CONNECTING;
	/* a connect that hangs (a path that drops packets) ends with the login timeout, and never
	 * outlives what the target keeps */
	uint64_t deadline = now_of(s) + (uint64_t)(s->cfg.login_timeout_ms > 0 ? s->cfg.login_timeout_ms : 15000);
	c->login->deadline_ms = deadline < c->retain_until_ms ? deadline : c->retain_until_ms;
	log_info("connection %u: replacement login through %s (attempt %u)", c->cid, c->portal, c->recovery_attempts);
	if (strncmp(c->portal, "fd ", 3) == 0) {
		ism_erl2_attempt_failed(c, "the lost connection was handed over as a descriptor: no portal to log in to");
		return;
	}
	/* the session's message is this attempt's now (fall_back writes the whole story) */
	ism_session_clear_error(s);
	if (ism_conn_start_connect(c) < 0)
		ism_erl2_attempt_failed(c, *s->err ? s->err : "cannot connect");
}

/* A connection of the session in full feature phase other than c (NULL: none). */
static struct ism_conn *survivor(struct ism_conn *c)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *o = &c->s->conns[i];
		if (o != c && ism_conn_usable(o) && o->recovery == RECOVERY_NONE)
			return o;
	}
	return NULL;
}

/*
 * The target refused the replacement with the lost CID: a surviving connection logs that CID out
 * for recovery (Logout reason 2, immediate), and the replacement tries again with a new CID.
 */
static bool give_up_cid(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	struct ism_conn *o = survivor(c);
	if (c->cid_given_up || !o)
		return false;
	c->cid_given_up = true;
	struct ism_task *t = ism_task_new(s, TASK_LOGOUT);
	t->immediate = true;
	t->logout_reason = LOGOUT_REMOVE_FOR_RECOVERY;
	t->logout_cid = c->cid;
	log_info("connection %u: its replacement was refused; connection %u logs CID %u out for recovery", c->cid,
		 o->cid, c->cid);
	ism_send_on(o, t);
	return true;
}

void ism_erl2_removed(struct ism_conn *c, struct ism_task *t, uint8_t response)
{
	struct ism_session *s = c->s;
	uint16_t cid = t->logout_cid;
	t->res.error = response == 0 ? ISM_OK : ISM_ERR_TARGET;
	ism_task_complete(t);
	struct ism_conn *r = NULL;
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		if (s->conns[i].recovery == RECOVERY_WAIT && s->conns[i].cid == cid)
			r = &s->conns[i];
	if (!r)
		return;
	if (response != 0) {
		fall_back(r, "the target refused the replacement login, and the logout of CID %u for recovery "
			  "(Logout response %u)", cid, response);
		return;
	}
	r->cid = s->next_cid++;
	log_info("CID %u logged out for recovery: its tasks go to a replacement with CID %u", cid, r->cid);
	r->recover_at_ms = now_of(s);
}

void ism_erl2_attempt_failed(struct ism_conn *c, const char *why)
{
	struct ism_session *s = c->s;
	bool refused = c->login && c->login->fail_status == ISM_ERR_LOGIN;
	uint64_t now = now_of(s);
	if (refused && give_up_cid(c)) {
		/* the next attempt is made when the logout is answered (or the retain time runs out) */
		wait_for_attempt(c, c->retain_until_ms);
		return;
	}
	if (refused) {
		fall_back(c, "the target refused the replacement login (%s)", why);
		return;
	}
	uint64_t next = now + ERL2_RETRY_MS;
	if (next >= c->retain_until_ms) {
		fall_back(c, "no replacement connection within DefaultTime2Wait + DefaultTime2Retain (%u s; last "
			  "attempt: %s)", s->params.default_time2wait + s->params.default_time2retain, why);
		return;
	}
	log_info("connection %u: replacement login through %s failed (%s); next attempt in %u ms", c->cid, c->portal,
		 why, ERL2_RETRY_MS);
	wait_for_attempt(c, next);
}

static void recovery_done(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	c->recovery = RECOVERY_NONE;
	s->conn_recoveries++;
	log_info("connection %u recovered through %s after %u attempt(s)", c->cid, c->portal, c->recovery_attempts);
}

void ism_erl2_logged_in(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	c->recovery = RECOVERY_REASSIGN;
	c->reassigns_pending = 0;
	ism_session_clear_error(s);
	uint64_t now = now_of(s);
	for (int b = 0; b < ISM_TASK_BUCKETS; b++) {
		for (struct ism_task *t = s->tasks[b]; t; t = t->hnext) {
			if (t->conn != c || !t->reassign || t->state != TASK_SENT)
				continue;
			struct ism_task *m = ism_task_new(s, TASK_TMF);
			m->immediate = true;
			m->tmf_function = TMF_TASK_REASSIGN;
			m->tmf_ref_itt = t->itt;
			m->tmf_ref_cmdsn = t->cmdsn;
			/* the data already placed stays: the target sends from the next DataSN on */
			m->tmf_expdatasn = t->dir == ISM_DIR_READ ? t->next_datasn : 0;
			m->lun = t->lun;
			t->sent_ms = now; /* its command timeout starts again on the new connection */
			c->reassigns_pending++;
			ism_send_on(c, m);
		}
	}
	if (c->reassigns_pending == 0)
		recovery_done(c);
}

void ism_erl2_reassign_answered(struct ism_conn *c, struct ism_task *m, uint8_t response)
{
	struct ism_session *s = c->s;
	uint32_t itt = m->tmf_ref_itt;
	m->res.error = response == TMF_RSP_COMPLETE ? ISM_OK : ISM_ERR_TARGET;
	ism_task_complete(m);
	if (c->reassigns_pending)
		c->reassigns_pending--;
	struct ism_task *t = ism_task_find(s, itt);
	if (t && t->kind == TASK_SCSI && t->state == TASK_SENT && t->reassign) {
		t->reassign = false;
		if (response == TMF_RSP_COMPLETE) {
			t->reassigned = true;
			s->task_reassignments++;
		} else if (response == TMF_RSP_NO_TASK && sn_ge(t->cmdsn, s->exp_cmdsn)) {
			/* It never reached the target: sent again whole, same ITT and CmdSN. */
			log_info("connection %u: ITT 0x%08x (CmdSN %u) never reached the target: sent again", c->cid,
				 t->itt, t->cmdsn);
			t->next_datasn = t->read_bytes = 0;
			t->next_r2tsn = t->r2t_active = 0;
			ism_resend_scsi(c, t);
			ism_flush_soon(c);
		} else {
			fall_back(c, "TASK REASSIGN of ITT 0x%08x answered \"%s\" (0x%02x)", itt,
				  ism_tmf_response_str(response), response);
			return;
		}
	}
	if (c->recovery == RECOVERY_REASSIGN && c->reassigns_pending == 0)
		recovery_done(c);
}

bool ism_erl2_r2t(struct ism_conn *c, struct ism_task *t, const struct bhs *b)
{
	struct ism_session *s = c->s;
	if (!t->reassigned)
		return false;
	uint64_t end = (uint64_t)b->r2t.offset + b->r2t.desired_len;
	if (b->r2t.desired_len == 0 || end > t->len || b->r2t.desired_len > s->params.max_burst_length)
		return false; /* the ordinary checks report it */
	/* After a reassignment the target asks for what it lacks, wherever it is (RFC 7143 7.2.2):
	 * data sent on the lost connection may be asked for again, with its own R2TSN numbering. */
	t->next_r2tsn = b->r2t.r2tsn + 1;
	if ((uint32_t)end > t->write_end)
		t->write_end = (uint32_t)end;
	if (t->write_end > t->write_covered)
		t->write_covered = t->write_end;
	ism_answer_r2t(c, t, b);
	return true;
}

void ism_erl2_timers(struct ism_session *s, uint64_t now)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->recovery == RECOVERY_NONE)
			continue;
		if (c->recovery != RECOVERY_REASSIGN && now >= c->retain_until_ms) {
			fall_back(c, "no replacement connection within DefaultTime2Wait + DefaultTime2Retain (%u s)",
				  s->params.default_time2wait + s->params.default_time2retain);
			return; /* every connection is closed now */
		}
		if (c->recovery == RECOVERY_WAIT && now >= c->recover_at_ms)
			start_attempt(c);
	}
}

uint64_t ism_erl2_next_due(const struct ism_session *s)
{
	uint64_t best = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		const struct ism_conn *c = &s->conns[i];
		if (c->recovery != RECOVERY_WAIT && c->recovery != RECOVERY_LOGIN)
			continue;
		uint64_t when = c->recovery == RECOVERY_WAIT && c->recover_at_ms < c->retain_until_ms ? c->recover_at_ms
													: c->retain_until_ms;
		if (!best || when < best)
			best = when;
	}
	return best;
}

void ism_session_get_conn_recovery_info(const struct ism_session *s, struct ism_conn_recovery_info *info)
{
	memset(info, 0, sizeof(*info));
	info->losses = s->conn_losses_kept;
	info->connection_recoveries = s->conn_recoveries;
	info->task_reassignments = s->task_reassignments;
	info->fallbacks = s->conn_recovery_fallbacks;
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		if (s->conns[i].recovery != RECOVERY_NONE && s->conns[i].state != CONN_CLOSED)
			info->recovering++;
}
