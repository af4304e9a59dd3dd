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

#include "daemon/connections.h"
#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/libbridge.h"
#include "daemon/ops.h"
#include "daemon/probe.h"
#include "daemon/recovery.h"
#include "daemon/session.h"
#include "util/log.h"

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

void recovery_lost(struct dsession *s)
{
	snprintf(s->last_error, sizeof(s->last_error), "%s",
		 s->ism && *ism_session_error(s->ism) ? ism_session_error(s->ism) : "the target closed the session");
	log_warn("session %s: connection lost (%s); a login attempt every %.1f s", s->idstr, s->last_error,
		 s->d->cfg.reconnect_interval_ms / 1000.0);
	lib_detach(s);
	dsess_set_state(s, DS_RECONNECTING);
	if (s->opts.type != DS_TYPE_BOOT)
		loop_timer_start(s->d->loop, &s->removal_timer, dsess_removal_latency(s), 0, on_removal, s);
	/* the first attempt soon; the target may only have dropped this one connection */
	uint64_t first = s->d->cfg.reconnect_interval_ms < 1000 ? (uint64_t)s->d->cfg.reconnect_interval_ms : 1000;
	schedule_retry(s, first);
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
		dsess_set_state(s, DS_CONNECTED);
		if (again)
			log_info("session %s: reinstated at %s", s->idstr, s->opts.portal);
		dsess_readd_connections(s);
		if (!s->probed || !s->devices_present)
			probe_start(s);
		else
			dio_flush_later(s);
		return;
	}
	snprintf(s->last_error, sizeof(s->last_error), "%s",
		 *ism_session_error(ism) ? ism_session_error(ism) : "login failed");
	lib_detach(s);
	if (s->state == DS_LOGGING_IN && s->interactive_login) {
		log_warn("session %s: login to %s at %s failed: %s", s->idstr, s->opts.target, s->opts.portal,
			 s->last_error);
		dop_fail(s->d, s->login_op, RPC_FAILED, "%s", s->last_error);
		s->login_op = 0;
		dsess_finish_logout(s, NULL);
		return;
	}
	if (s->state == DS_LOGGING_IN)
		dsess_set_state(s, DS_RECONNECTING);
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
	lib_attach(s, ism);
	s->in_lib++;
	int rc = ism_connect_async(ism, s->opts.portal, on_login, s);
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
	if (s->state == DS_LOGGING_IN && s->interactive_login) {
		dop_fail(d, s->login_op, RPC_FAILED, "%s", err);
		s->login_op = 0;
		dsess_finish_logout(s, NULL);
		return;
	}
	log_warn("session %s: cannot log in: %s", s->idstr, err);
	if (s->state == DS_LOGGING_IN)
		dsess_set_state(s, DS_RECONNECTING);
	schedule_retry(s, (uint64_t)d->cfg.reconnect_interval_ms);
}
