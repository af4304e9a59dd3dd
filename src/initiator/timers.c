/*
 * The session's timers: a command unanswered for cmd_timeout_ms, a CmdSN window kept closed as
 * long, a login past its deadline, and the keepalive of each connection (a NOP-Out after
 * nop_interval_ms without a PDU from the target other than its own pings, the connection failed
 * when the answer takes nop_timeout_ms; at ErrorRecoveryLevel 0 that ends the session, see
 * conn_table.c).
 */
#include <stdio.h>

#include "initiator/internal.h"
#include "util/serial.h"

static const char *task_kind_str(const struct ism_task *t)
{
	switch (t->kind) {
	case TASK_SCSI: return "SCSI command";
	case TASK_TMF: return "task management request";
	case TASK_NOP: return "NOP-Out";
	case TASK_TEXT: return "Text request";
	case TASK_LOGOUT: return "Logout request";
	default: return "request";
	}
}

/*
 * The oldest task sent on c that is still unanswered after cmd_timeout_ms completes with
 * ISM_ERR_TIMEOUT, and the connection fails: at ErrorRecoveryLevel 0 the target may still send
 * data for that ITT, so nothing else on the connection can be trusted to complete.
 */
static bool check_cmd_timeout(struct ism_conn *c, uint64_t now)
{
	struct ism_session *s = c->s;
	struct ism_task *t = c->sent_head;
	if (!t || s->cfg.cmd_timeout_ms <= 0 || now - t->sent_ms < (uint64_t)s->cfg.cmd_timeout_ms)
		return false;
	char what[64];
	if (t->kind == TASK_SCSI)
		snprintf(what, sizeof(what), "SCSI command 0x%02x", t->cdb[0]);
	else
		snprintf(what, sizeof(what), "%s", task_kind_str(t));
	ism_set_error(s, "connection %u to %s: %s (ITT 0x%08x) not answered within %d ms", c->cid,
		      c->peer[0] ? c->peer : c->portal, what, t->itt, s->cfg.cmd_timeout_ms);
	ism_task_fail(t, ISM_ERR_TIMEOUT);
	ism_conn_fail(c, "command timed out");
	return true;
}

/* The command at the head of the queue waits for the CmdSN window alone (nothing else holds it). */
static bool held_by_window(const struct ism_session *s)
{
	const struct ism_task *t = s->pending_head;
	return t && !t->immediate && t->kind != TASK_LOGOUT && sn_gt(s->cmdsn, s->max_cmdsn);
}

/*
 * A target may close the CmdSN window for a while, and opens it again with the MaxCmdSN of a later
 * PDU. One that keeps it closed for cmd_timeout_ms (answering our pings all the while, so that
 * no other timer fires) would hold every command for ever: the oldest one times out, and the
 * session's connections fail so that a new login starts with a new window.
 */
static bool check_window_timeout(struct ism_session *s, uint64_t now)
{
	if (!held_by_window(s) || s->cfg.cmd_timeout_ms <= 0 ||
	    now - s->pending_head->queued_ms < (uint64_t)s->cfg.cmd_timeout_ms)
		return false;
	ism_set_error(s, "the target kept the CmdSN window closed for %d ms (MaxCmdSN %u, next CmdSN %u)",
		      s->cfg.cmd_timeout_ms, s->max_cmdsn, s->cmdsn);
	ism_task_fail(s->pending_head, ISM_ERR_TIMEOUT);
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		ism_conn_fail(&s->conns[i], "CmdSN window closed too long");
	return true;
}

void ism_run_timers(struct ism_session *s)
{
	uint64_t now = ism_now_ms();
	if (check_window_timeout(s, now))
		return;
	ism_erl2_timers(s, now);
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if ((c->state == CONN_FFP || c->state == CONN_LOGOUT) && check_cmd_timeout(c, now))
			continue;
		if ((c->state == CONN_CONNECTING || c->state == CONN_LOGIN) && c->login && c->login->deadline_ms &&
		    now >= c->login->deadline_ms) {
			ism_set_error(s, "login to %s timed out after %d ms", c->portal, s->cfg.login_timeout_ms);
			if (c->login)
				c->login->fail_status = ISM_ERR_TIMEOUT;
			ism_conn_fail(c, "login timed out");
			continue;
		}
		if (c->state != CONN_FFP && c->state != CONN_LOGOUT)
			continue;
		if (c->keepalive == KEEPALIVE_OUTSTANDING) {
			if (s->cfg.nop_timeout_ms > 0 && now - c->nop_sent_ms >= (uint64_t)s->cfg.nop_timeout_ms)
				ism_conn_fail(c, "no answer to a NOP-Out ping within %d ms", s->cfg.nop_timeout_ms);
			continue;
		}
		if (s->cfg.nop_interval_ms > 0 && now - c->last_rx_ms >= (uint64_t)s->cfg.nop_interval_ms)
			ism_send_keepalive(c, now);
		else if (ism_erl1(c))
			ism_erl1_check_cmd_gap(c, now);
	}
}

/* A NOP-Out ping (immediate, its own ITT); its answer is awaited for nop_timeout_ms. */
void ism_send_keepalive(struct ism_conn *c, uint64_t now)
{
	struct ism_session *s = c->s;
	struct bhs b = {0};
	b.opcode = OP_NOP_OUT;
	b.immediate = true;
	b.final = true;
	c->nop_itt = s->next_itt++;
	while (c->nop_itt == RESERVED_TAG || ism_task_find(s, c->nop_itt))
		c->nop_itt = s->next_itt++;
	b.itt = c->nop_itt;
	b.nop_out.ttt = RESERVED_TAG;
	b.nop_out.cmdsn = s->cmdsn;
	b.nop_out.expstatsn = c->exp_statsn;
	c->keepalive = KEEPALIVE_OUTSTANDING;
	c->nop_sent_ms = now;
	c->gap_probe = false;
	ism_conn_send(c, &b, NULL, 0, NULL, NULL);
	ism_conn_flush(c);
}

int ism_session_timeout_ms(struct ism_session *s)
{
	if (s->done_head)
		return 0;
	uint64_t now = ism_now_ms();
	int64_t best = -1;
	if (held_by_window(s) && s->cfg.cmd_timeout_ms > 0) {
		uint64_t when = s->pending_head->queued_ms + (uint64_t)s->cfg.cmd_timeout_ms;
		best = when > now ? (int64_t)(when - now) : 0;
	}
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		uint64_t when = 0;
		if ((c->state == CONN_CONNECTING || c->state == CONN_LOGIN) && c->login && c->login->deadline_ms)
			when = c->login->deadline_ms;
		else if (c->state == CONN_FFP || c->state == CONN_LOGOUT) {
			if (c->keepalive == KEEPALIVE_OUTSTANDING && s->cfg.nop_timeout_ms > 0)
				when = c->nop_sent_ms + (uint64_t)s->cfg.nop_timeout_ms;
			else if (c->keepalive == KEEPALIVE_IDLE && s->cfg.nop_interval_ms > 0)
				when = c->last_rx_ms + (uint64_t)s->cfg.nop_interval_ms;
			uint64_t gap = c->keepalive == KEEPALIVE_IDLE && ism_erl1(c) ? ism_erl1_cmd_gap_due(c) : 0;
			if (gap && (!when || gap < when))
				when = gap;
			if (c->sent_head && s->cfg.cmd_timeout_ms > 0) {
				uint64_t cw = c->sent_head->sent_ms + (uint64_t)s->cfg.cmd_timeout_ms;
				if (!when || cw < when)
					when = cw;
			}
		}
		if (!when)
			continue;
		int64_t d = when > now ? (int64_t)(when - now) : 0;
		if (best < 0 || d < best)
			best = d;
	}

	uint64_t due = ism_erl2_next_due(s);
	if (due) {
		int64_t d = due > now ? (int64_t)(due - now) : 0;
		if (best < 0 || d < best)
			best = d;
	}
	return best > 0x7fffffff ? 0x7fffffff : (int)best;
}
