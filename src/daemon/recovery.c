/*
 * Login and recovery. A lost connection frees the libisthmus session; a new one with the same
 * ISID logs in again (reinstating the session at the target) soon, then every reconnect
 * interval. The devices and the queued I/O wait for it during the removal latency; after that the
 * devices go and the queue fails, while the attempts go on (a boot session keeps its devices).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/connections.h"
#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/libbridge.h"
#include "daemon/ops.h"
#include "daemon/portals.h"
#include "daemon/pr.h"
#include "daemon/probe.h"
#include "daemon/recovery.h"
#include "daemon/session.h"
#include "util/log.h"
#include "util/sbuf.h"

static void on_removal(void *arg)
{
	struct dsession *s = arg;
	if (s->state != DS_RECONNECTING)
		return;
	log_warn("session %s: no session for %.1f s (removal latency): removing its devices, failing %" PRIu64
		 " bytes of queued I/O", s->idstr, dsess_removal_latency(s) / 1000.0, s->queued_bytes);
	dsess_set_state(s, DS_FAILED);
	dsess_remove_devices(s);
	dio_fail_queue(s, -EIO);
}

static void on_retry(void *arg)
{
	struct dsession *s = arg;
	if (s->ism || s->state == DS_GONE || s->state == DS_LOGGING_OUT || s->state == DS_CONNECTED)
		return;
	recovery_login(s);
}

static void schedule_retry(struct dsession *s, uint64_t delay_ms)
{
	loop_timer_start(s->d->loop, &s->retry_timer, delay_ms, 0, on_retry, s);
}

/* The session's libisthmus session goes; the devices wait for the next one (removal latency). */
static void enter_reconnecting(struct dsession *s)
{
	portals_stop(s);
	pr_abandon(s);
	lib_detach(s);
	dsess_set_state(s, DS_RECONNECTING);
	if (s->opts.type != DS_TYPE_BOOT)
		loop_timer_start(s->d->loop, &s->removal_timer, dsess_removal_latency(s), 0, on_removal, s);
}

static const char *login_portal(const struct dsession *s) { return s->login_portal ? s->login_portal : s->opts.portal; }

/* The loss the library reports, with the lost connection as it was (from conns), as the last one. */
static void set_last_loss(struct dsession *s, const struct ism_recovery_info *ri, const struct ism_conn_info *conns,
			  int n)
{
	struct dconn_loss *l = &s->last_loss;
	memset(l, 0, sizeof(*l));
	l->valid = true;
	l->at = time(NULL);
	l->conn.cid = ri->lost_cid;
	snprintf(l->reason, sizeof(l->reason), "%s", ri->reason);
	l->closed_with_it = ri->closed_with_it;
	for (int i = 0; i < n; i++)
		if (conns[i].state == ISM_CONN_FAILED)
			l->conn = conns[i];
}

/*
 * The session ended because one of its connections was lost: which one, why, and the connections
 * as they were, for `session show`. Returns how many other connections were closed with it (-1:
 * no connection loss ended the session).
 */
static int note_connection_loss(struct dsession *s)
{
	struct ism_recovery_info ri;
	ism_session_get_recovery_info(s->ism, &ri);
	s->nlost = 0;
	if (!ri.connection_lost)
		return -1;
	int n = ism_session_lost_connection_info(s->ism, s->lost_conns, DMN_MAX_WATCH);
	s->nlost = n < DMN_MAX_WATCH ? n : DMN_MAX_WATCH;
	s->connection_losses++;
	set_last_loss(s, &ri, s->lost_conns, s->nlost);
	return ri.closed_with_it;
}

/*
 * ErrorRecoveryLevel 2: the library lost a connection and replaces it without ending the session.
 * The loss is shown as the last one (the counters come from the library); the connections listed
 * stay the live session's.
 */
void recovery_note_kept_loss(struct dsession *s)
{
	struct ism_conn_recovery_info cr;
	ism_session_get_conn_recovery_info(s->ism, &cr);
	if (cr.losses == s->kept_losses_seen)
		return;
	s->kept_losses_seen = cr.losses;
	struct ism_recovery_info ri;
	ism_session_get_recovery_info(s->ism, &ri);
	struct ism_conn_info lost[DMN_MAX_WATCH];
	int n = ism_session_lost_connection_info(s->ism, lost, DMN_MAX_WATCH);
	set_last_loss(s, &ri, lost, n < DMN_MAX_WATCH ? n : DMN_MAX_WATCH);
	log_warn("session %s: connection %u lost (%s); replacing it (ErrorRecoveryLevel 2)", s->idstr, ri.lost_cid,
		 ri.reason);
}

/*
 * When the lost connection was the one to the portal the session logs in to, and a connection to
 * another portal was up, the session is reinstated through that other portal (its path worked a
 * moment ago) and the lost one's portal is the one re-added afterwards.
 */
static void login_through_survivor(struct dsession *s)
{
	const char *cur = login_portal(s);
	if (strcmp(s->last_loss.conn.portal, cur) != 0)
		return;
	for (int i = 0; i < s->nlost; i++) {
		const char *p = s->lost_conns[i].portal;
		if (s->lost_conns[i].state != ISM_CONN_CLOSED || !strcmp(p, cur))
			continue;
		for (int k = 0; k < s->nextra; k++) {
			if (strcmp(s->extra_portals[k], p) != 0)
				continue;
			char *next = s->extra_portals[k];
			s->extra_portals[k] = xstrdup(cur);
			free(s->login_portal);
			s->login_portal = next;
			log_info("session %s: reinstating through %s, the path of a connection that was still up", s->idstr,
				 next);
			return;
		}
	}
}

void recovery_lost(struct dsession *s)
{
	snprintf(s->last_error, sizeof(s->last_error), "%s",
		 s->ism && *ism_session_error(s->ism) ? ism_session_error(s->ism) : "the target closed the session");
	int others = s->ism ? note_connection_loss(s) : -1;
	bool elsewhere = false;
	if (others > 0) {
		/* ErrorRecoveryLevel 0: the library closed the other connections too (session recovery). */
		log_warn("session %s: connection %u lost (%s); its %d other connection(s) closed with it "
			 "(ErrorRecoveryLevel 0): reinstating the session now", s->idstr, s->last_loss.conn.cid,
			 s->last_error, others);
		login_through_survivor(s);
	} else {
		log_warn("session %s: connection lost (%s); a login attempt every %.1f s", s->idstr, s->last_error,
			 s->d->cfg.reconnect_interval_ms / 1000.0);
		/* The only path to this portal is gone: another portal of the target takes over now. */
		elsewhere = portals_fail_over(s);
	}
	enter_reconnecting(s);
	/*
	 * With other connections up a moment ago the target is reachable: the session is reinstated
	 * at once, every write waiting meanwhile; so it is when another portal takes over. Otherwise
	 * the first attempt comes soon (the target may only have dropped this one connection), then
	 * one every reconnect interval.
	 */
	uint64_t first = s->d->cfg.reconnect_interval_ms < 1000 ? (uint64_t)s->d->cfg.reconnect_interval_ms : 1000;
	schedule_retry(s, others > 0 || elsewhere ? 0 : first);
}

void recovery_move(struct dsession *s, const char *why)
{
	log_info("session %s: %s: logging in through %s", s->idstr, why, login_portal(s));
	enter_reconnecting(s);
	schedule_retry(s, 0);
}

static void on_login(struct ism_session *ism, int status, void *priv)
{
	struct dsession *s = priv;
	if (s->ism != ism)
		return;
	if (status == 0) {
		s->attempts = 0;
		s->last_error[0] = 0;
		loop_timer_stop(s->d->loop, &s->retry_timer);
		loop_timer_stop(s->d->loop, &s->removal_timer);
		bool again = s->ever_connected;
		s->ever_connected = true;
		s->nlost = 0; /* the connections shown are the new session's again */
		dsess_set_state(s, DS_CONNECTED);
		portals_connected(s);
		if (again) {
			s->session_recoveries++;
			log_info("session %s: reinstated at %s", s->idstr, login_portal(s));
		}
		dsess_readd_connections(s);
		if (!s->probed || !s->devices_present) {
			probe_start(s);
		} else {
			probe_refresh(s);
		}
		return;
	}
	snprintf(s->last_error, sizeof(s->last_error), "%s",
		 *ism_session_error(ism) ? ism_session_error(ism) : "login failed");
	lib_detach(s);
	log_info("session %s: login through %s failed (%s)", s->idstr, login_portal(s), s->last_error);
	bool elsewhere = portals_fail_over(s);
	if (s->state == DS_LOGGING_IN && s->interactive_login && !elsewhere) {
		log_warn("session %s: login to %s at %s failed: %s", s->idstr, s->opts.target, s->opts.portal,
			 s->last_error);
		dop_fail(s->d, s->login_op, RPC_FAILED, "%s", s->last_error);
		s->login_op = 0;
		dsess_finish_logout(s, NULL);
		return;
	}
	if (s->state == DS_LOGGING_IN && !(s->interactive_login && elsewhere))
		dsess_set_state(s, DS_RECONNECTING);
	if (elsewhere) {
		schedule_retry(s, 0);
		return;
	}
	log_info("session %s: login attempt %u failed (%s); next in %.1f s", s->idstr, s->attempts, s->last_error,
		 s->d->cfg.reconnect_interval_ms / 1000.0);
	schedule_retry(s, (uint64_t)s->d->cfg.reconnect_interval_ms);
}

static void login_config(struct dsession *s, struct ism_config *cfg)
{
	struct daemon *d = s->d;
	ism_config_init(cfg);
	cfg->initiator_name = d->initiator_name;
	cfg->initiator_alias = d->cfg.initiator_alias;
	cfg->target_name = s->opts.target;
	cfg->session_type = ISM_SESSION_NORMAL;
	cfg->chap_user = s->opts.chap_user;
	cfg->chap_secret = s->opts.chap_secret;
	cfg->mutual_user = s->opts.mutual_user;
	cfg->mutual_secret = s->opts.mutual_from_store ? d->initiator_secret : s->opts.mutual_secret;
	if (cfg->mutual_secret && !cfg->mutual_user)
		cfg->mutual_user = s->opts.target;
	cfg->chap_algorithms = s->opts.chap_algorithms;
	cfg->header_digest = s->opts.header_digest;
	cfg->data_digest = s->opts.data_digest;
	cfg->max_recv_dsl = s->opts.max_recv_dsl;
	cfg->max_burst_length = s->opts.max_burst_length;
	cfg->first_burst_length = s->opts.first_burst_length;
	cfg->initial_r2t = s->opts.initial_r2t;
	cfg->immediate_data = s->opts.immediate_data;
	cfg->isid_set = true;
	memcpy(cfg->isid, s->opts.isid, 6);
	cfg->login_timeout_ms = d->cfg.login_timeout_ms;
	cfg->nop_interval_ms = d->cfg.nop_interval_ms ? d->cfg.nop_interval_ms : -1;
	cfg->nop_timeout_ms = d->cfg.nop_timeout_ms ? d->cfg.nop_timeout_ms : -1;
}

void recovery_login(struct dsession *s)
{
	struct daemon *d = s->d;
	struct ism_config cfg;
	login_config(s, &cfg);
	s->attempts++;
	char err[512];
	if (s->opts.mutual_from_store && !d->initiator_secret) {
		snprintf(err, sizeof(err), "mutual CHAP asked for, but no initiator secret is set (isthmus chap set-secret)");
		goto failed;
	}
	struct ism_session *ism = ism_session_new(&cfg, err, sizeof(err));
	if (!ism)
		goto failed;
	ism_session_set_error_recovery_level(ism, d->cfg.error_recovery_level);
	lib_attach(s, ism);
	s->in_lib++;
	int rc = ism_connect_async(ism, login_portal(s), on_login, s);
	s->in_lib--;
	if (rc != 0 && s->ism == ism) {
		snprintf(err, sizeof(err), "%s", ism_session_error(ism));
		lib_detach(s);
		goto failed;
	}
	lib_settle(s);
	return;
failed:
	snprintf(s->last_error, sizeof(s->last_error), "%s", err);
	bool elsewhere = portals_fail_over(s);
	if (s->state == DS_LOGGING_IN && s->interactive_login && !elsewhere) {
		dop_fail(d, s->login_op, RPC_FAILED, "%s", err);
		s->login_op = 0;
		dsess_finish_logout(s, NULL);
		return;
	}
	log_warn("session %s: cannot log in: %s", s->idstr, err);
	if (s->state == DS_LOGGING_IN && !s->interactive_login)
		dsess_set_state(s, DS_RECONNECTING);
	schedule_retry(s, elsewhere ? 0 : (uint64_t)d->cfg.reconnect_interval_ms);
}
