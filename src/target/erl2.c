/*
 * ErrorRecoveryLevel 2 on the target: connection recovery and task reassignment (RFC 7143
 * 6.2.2, 6.3.4, 7.1.5, 11.5.1, 11.14-11.15).
 *
 * A connection of a level-2 session that breaks (socket error or close, unanswered NOP-In,
 * a PDU that breaks the protocol, a Logout "remove the connection for recovery", a login that
 * reinstates its CID) fails instead of closing: its socket goes, and it moves from the session's
 * connections to its failed ones with its tasks and the PDUs kept for them (snack.c). Its
 * requests still waiting for their CmdSN turn are dropped with their CmdSN untaken (11.14: not
 * acknowledged by ExpCmdSN), so the initiator sends them again with the same CmdSN. Tasks keep
 * running; what they answer is kept, not sent. A TASK REASSIGN on a live connection moves a task
 * there: a write still collecting data gets recovery R2Ts for what has not come, a read that
 * ended sends its Data-In again from ExpDataSN and then its status. After DefaultTime2Wait +
 * DefaultTime2Retain (at most ERL2_MAX_HOLD_S) what is left is discarded, and a session left
 * with no connection at all ends then.
 *
 * Bounds: a session keeps at most MaxConnections failed connections (the oldest goes first);
 * the PDUs they keep count together against max-retained-data (the newest one's are bounded on
 * their own, as on a live connection); their tasks keep their command slots and data buffers,
 * which count against the command window and max-data-per-session like any others. Across the
 * target, failed connections of every loop count against max-connections and what they keep
 * against max-data-total: struct server has their number and kept bytes (atomics, changed where
 * a connection fails, keeps or lets go of PDUs, and is discarded), so no loop needs another's
 * lists to know where the target stands.
 */
#include <stdlib.h>
#include <string.h>

#include "target/conn.h"
#include "target/erl2.h"
#include "target/ffp.h"
#include "target/login.h"
#include "target/recovery.h"
#include "target/server.h"
#include "target/session.h"
#include "target/shard.h"
#include "target/task.h"
#include "util/log.h"
#include "util/sbuf.h"

static uint64_t hold_ms(const struct session *s)
{
	uint16_t w, r;
	erl2_hold_times(s, &w, &r);
	return r ? ((uint64_t)w + r) * 1000u : 0;
}

void erl2_hold_times(const struct session *s, uint16_t *time2wait, uint16_t *time2retain)
{
	uint32_t w = s->params.default_time2wait, r = s->params.default_time2retain;
	if (w > ERL2_MAX_HOLD_S)
		w = ERL2_MAX_HOLD_S;
	if (w + r > ERL2_MAX_HOLD_S)
		r = ERL2_MAX_HOLD_S - w;
	*time2wait = (uint16_t)w;
	*time2retain = (uint16_t)r;
}

bool erl2_keeps_tasks(const struct conn *c)
{
	const struct session *s = c->sess;
	if (!s || s->type != SESSION_NORMAL || s->closing || s->ended || c->srv->shutting_down ||
	    s->params.error_recovery_level < 2 || hold_ms(s) == 0)
		return false;
	return c->phase == PHASE_FULL_FEATURE || (c->phase == PHASE_LOGGED_OUT && c->recover_on_close);
}

/* The failed connection's kept bytes as the server counts them: brought up to date. */
static void recount_kept(struct conn *f)
{
	struct server *srv = f->srv;
	uint64_t now = f->phase == PHASE_FAILED ? snack_kept_bytes(f) : 0;
	if (now > f->kept_counted)
		atomic_fetch_add(&srv->failed_kept, now - f->kept_counted);
	else if (now < f->kept_counted)
		atomic_fetch_sub(&srv->failed_kept, f->kept_counted - now);
	f->kept_counted = now;
}

void erl2_keep_unsent(struct conn *c, struct bhs *b, const void *data, uint32_t len, const struct task *t)
{
	snack_mark(c, b, len, t);
	bool status = b->opcode == OP_SCSI_RESP || (b->opcode == OP_DATA_IN && b->data_in.status_present);
	/* Numbered past what the connection sent: no ExpStatSN can have acknowledged it. */
	snack_keep(c, b, data, len, status, c->statsn);
	recount_kept(c);
}

/* Everything the connection had is dropped: its tasks end, its copies go. */
static void discard(struct conn *f, const char *why)
{
	struct session *s = f->sess;
	for (struct conn **pp = &s->failed; *pp; pp = &(*pp)->sess_next) {
		if (*pp == f) {
			*pp = f->sess_next;
			s->nfailed--;
			break;
		}
	}
	atomic_fetch_sub(&f->srv->nfailed, 1);
	atomic_fetch_sub(&f->shard->nfailed, 1);
	atomic_fetch_sub(&f->srv->failed_kept, f->kept_counted);
	f->kept_counted = 0;
	if (f->ntasks || snack_kept_bytes(f))
		log_info("TSIH %u: failed connection CID %u discarded with %u task(s): %s", s->tsih, f->cid, f->ntasks,
			 why);
	stats_add(&s->closed, &f->stats);
	stats_add(&f->shard->closed, &f->stats);
	s->buffered -= f->buffered;
	f->sess = NULL;
	f->phase = PHASE_CLOSED;
	conn_free_later(f);
}

void erl2_discard_all(struct session *s)
{
	while (s->failed)
		discard(s->failed, "the session closes");
}

static void arm_timer(struct session *s);

static void expire(void *arg)
{
	struct session *s = arg;
	uint64_t now = loop_now_ms();
	for (struct conn *f = s->failed, *next; f; f = next) {
		next = f->sess_next;
		if (now >= f->recover_deadline_ms)
			discard(f, "not recovered within DefaultTime2Wait + DefaultTime2Retain");
	}
	session_end_if_empty(s);
	if (!s->ended)
		arm_timer(s);
}

static void arm_timer(struct session *s)
{
	loop_timer_stop(s->shard->loop, &s->recover_timer);
	uint64_t first = 0;
	for (const struct conn *f = s->failed; f; f = f->sess_next)
		if (!first || f->recover_deadline_ms < first)
			first = f->recover_deadline_ms;
	if (!first)
		return;
	uint64_t now = loop_now_ms();
	loop_timer_start(s->shard->loop, &s->recover_timer, first > now ? first - now : 0, 0, expire, s);
}

/* What only a live connection needs, let go once the PDU being parsed (if any) is done with. */
static void trim_failed(void *arg)
{
	struct conn *f = arg;
	if (f->phase != PHASE_FAILED)
		return; /* discarded meanwhile: its free comes after this */
	pdu_conn_rx_free(&f->pc);
	pdu_txpool_free(&f->txpool);
	login_free(f);
	sbuf_free(&f->text_pending);
	sbuf_free(&f->text_reply);
}

/* The oldest failed connections go when there are too many, or they keep too much together. */
static void bound_session(struct session *s, struct conn *newest)
{
	uint32_t cap = s->params.max_connections ? s->params.max_connections : 1;
	uint64_t limit = s->srv->cfg->max_retained_data;
	for (;;) {
		struct conn *oldest = NULL;
		uint64_t kept = 0;
		for (struct conn *f = s->failed; f; f = f->sess_next) {
			if (f != newest)
				kept += snack_kept_bytes(f);
			oldest = f;
		}
		if (oldest == newest || (s->nfailed <= cap && kept <= limit))
			return;
		discard(oldest, s->nfailed > cap ? "more failed connections than MaxConnections await recovery"
						 : "the failed connections keep more than max-retained-data");
	}
}

/* Whether the failed connections of every loop, with the live ones, are within the target's bounds. */
static bool target_within(const struct server *srv)
{
	return atomic_load(&srv->nconns) + atomic_load(&srv->nfailed) <= srv->cfg->max_connections &&
	       atomic_load(&srv->failed_kept) + atomic_load(&srv->buffered) <= srv->cfg->max_data_total;
}

/*
 * While the target is over its bounds, sh's failed connections go, the one nearest its end first
 * (its session may end with it), never keep (the one that just failed). Whether sh had none to give.
 */
static bool shed_own(struct shard *sh, const struct conn *keep)
{
	while (!target_within(sh->srv)) {
		struct conn *first = NULL;
		for (size_t i = 0; i < sh->nsessions; i++) {
			for (struct conn *f = sh->sessions[i]->failed; f; f = f->sess_next) {
				recount_kept(f);
				if (f != keep && (!first || f->recover_deadline_ms < first->recover_deadline_ms))
					first = f;
			}
		}
		if (!first)
			return false;
		struct session *s = first->sess;
		discard(first, "the target's failed connections are at max-connections or max-data-total");
		session_end_if_empty(s);
	}
	return true;
}

/* On a loop asked by another one whose failure put the target over its bounds. */
static void shed_asked(void *arg)
{
	struct shard *sh = arg;
	atomic_store(&sh->shed_pending, false);
	if (!sh->srv->shutting_down)
		shed_own(sh, NULL);
}

/*
 * Target-wide, failed connections count as connections (max-connections) and what they keep as
 * command data (max-data-total): a peer that fails connections of ever new sessions, on any
 * loops, cannot make the target hold more. The failing connection's loop gives up its own failed
 * connections first; with none left to give it asks the loop with the most (one request pending
 * per loop), as only a loop touches its sessions.
 */
static void bound_target(struct server *srv, struct conn *newest)
{
	if (shed_own(newest->shard, newest) || srv->nshards < 2)
		return;
	struct shard *most = NULL;
	unsigned most_n = 0;
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct shard *o = srv->shards[i];
		unsigned n = atomic_load(&o->nfailed);
		if (o != newest->shard && n > most_n) {
			most = o;
			most_n = n;
		}
	}
	if (most && !atomic_exchange(&most->shed_pending, true))
		shard_post(most, shed_asked, most);
}

void erl2_conn_fail(struct conn *c, const char *why)
{
	struct session *s = c->sess;
	uint16_t w, r;
	erl2_hold_times(s, &w, &r);
	log_info("connection %s:%u (CID %u) of TSIH %u failed: %s; its %u task(s) wait up to %u s for reassignment",
		 c->peer_addr, c->peer_port, c->cid, s->tsih, why, c->ntasks, w + r);
	c->phase = PHASE_FAILED;
	conn_detach_socket(c);
	/* What was queued but not written is kept (snack.c) and goes with the tasks' reassignment. */
	pdu_conn_drop_tx(&c->pc);
	tmf_conn_gone(c);
	c->ping_sent_ms = 0;
	for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->sess_next) {
		if (*pp == c) {
			*pp = c->sess_next;
			s->nconns--;
			break;
		}
	}
	c->sess_next = s->failed;
	s->failed = c;
	s->nfailed++;
	atomic_fetch_add(&c->srv->nfailed, 1);
	atomic_fetch_add(&c->shard->nfailed, 1);
	recount_kept(c);
	c->recover_deadline_ms = loop_now_ms() + hold_ms(s);
	session_drop_held(s, c);
	loop_defer(c->shard->loop, trim_failed, c);
	bound_session(s, c);
	bound_target(c->srv, c);
	arm_timer(s);
}

struct conn *erl2_find_failed(struct session *s, uint16_t cid)
{
	for (struct conn *f = s->failed; f; f = f->sess_next)
		if (f->cid == cid)
			return f;
	return NULL;
}

static void count_recovered(struct session *s, struct conn *f)
{
	if (f->recovered)
		return;
	f->recovered = true;
	s->conn_recoveries++;
}

void erl2_login_joined(struct session *s, struct conn *c, uint32_t old_expstatsn)
{
	struct conn *f = erl2_find_failed(s, c->cid);
	if (!f)
		return;
	count_recovered(s, f);
	/* The first login request's ExpStatSN is the one of the connection it restarts (11.12.8). */
	snack_ack_statsn(f, old_expstatsn);
	recount_kept(f);
	log_info("TSIH %u: CID %u recovered; %u task(s) of the failed connection await TASK REASSIGN", s->tsih, c->cid,
		 f->ntasks);
}

static struct task *find_task(struct conn *o, uint32_t itt)
{
	for (struct task *t = o->tasks; t; t = t->next)
		if (t->itt == itt && !t->aborted)
			return t;
	return NULL;
}

static void reassign_task(struct conn *c, struct conn *f, struct task *t, const struct bhs *b)
{
	struct session *s = c->sess;
	snack_forget_itt(f, t->itt); /* its R2Ts: the data not yet come is asked for again */
	recount_kept(f);
	task_move(t, c);
	count_recovered(s, f);
	s->task_reassigns++;
	tmf_send_response(c, b->itt, TMF_RSP_COMPLETE);
	log_info("%s:%u: TASK REASSIGN: ITT 0x%08x from CID %u (%s, %u of %u bytes of data in)", c->peer_addr,
		 c->peer_port, t->itt, f->cid, t->state == TASK_WAIT_DATA ? "collecting data" : "running",
		 t->out_received, t->write ? t->edtl : 0);
	task_resume_data(t);
}

void erl2_task_reassign(struct conn *c, const struct bhs *b)
{
	struct session *s = c->sess;
	uint32_t itt = b->tmf.rtt;
	if (s->params.error_recovery_level < 2) {
		tmf_send_response(c, b->itt, TMF_RSP_REASSIGN_UNSUPPORTED);
		return;
	}
	for (struct conn *f = s->failed; f; f = f->sess_next) {
		struct task *t = find_task(f, itt);
		if (t) {
			reassign_task(c, f, t, b);
			return;
		}
		switch (snack_reassign_check(f, itt, b->tmf.expdatasn)) {
		case SNACK_REASSIGN_NONE:
			continue;
		case SNACK_REASSIGN_INCOMPLETE:
			log_warn("%s:%u: TASK REASSIGN of ITT 0x%08x from DataSN %u: the data is no longer kept",
				 c->peer_addr, c->peer_port, itt, b->tmf.expdatasn);
			snack_forget_itt(f, itt);
			recount_kept(f);
			tmf_send_response(c, b->itt, TMF_RSP_REJECTED);
			return;
		case SNACK_REASSIGN_OK:
			count_recovered(s, f);
			s->task_reassigns++;
			tmf_send_response(c, b->itt, TMF_RSP_COMPLETE);
			snack_reassign_send(f, c, itt, b->tmf.expdatasn);
			recount_kept(f);
			return;
		}
	}
	/* A task of a live connection stays with it until that one fails or logs out (11.5.1). */
	for (struct conn *o = s->conns; o; o = o->sess_next) {
		if (find_task(o, itt)) {
			tmf_send_response(c, b->itt, TMF_RSP_TASK_ALLEGIANT);
			return;
		}
	}
	tmf_send_response(c, b->itt, TMF_RSP_NO_TASK);
}
