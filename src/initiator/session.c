/*
 * A session's lifecycle: the configuration it is created with (validated, defaults filled in),
 * the error message it keeps, and its end (every connection closed, every task failed, memory
 * freed once the last callback has run).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "initiator/internal.h"
#include "util/iscsi_name.h"
#include "util/log.h"

uint64_t ism_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ism_set_error(struct ism_session *s, const char *fmt, ...)
{
	if (s->err[0])
		return; /* the first reason, set where it is known, wins */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

const char *ism_session_error(const struct ism_session *s) { return s ? s->err : "no session"; }
void ism_session_clear_error(struct ism_session *s) { s->err[0] = 0; }

int ism_session_set_error_recovery_level(struct ism_session *s, unsigned level)
{
	if (level > 2)
		return -1;
	s->erl_offer = level;
	return 0;
}

void ism_set_debug(bool on) { log_set_level(on ? LOG_DEBUG : LOG_INFO); }

void ism_config_init(struct ism_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->initial_r2t = -1;
	cfg->immediate_data = -1;
}

static char *dup_or_null(const char *s) { return s && *s ? xstrdup(s) : NULL; }

struct ism_session *ism_session_new(const struct ism_config *cfg, char *errmsg, size_t errlen)
{
	char why[200];
	if (!cfg->initiator_name || !iscsi_name_valid(cfg->initiator_name, why, sizeof(why))) {
		snprintf(errmsg, errlen, "bad initiator name '%s': %s", cfg->initiator_name ? cfg->initiator_name : "",
			 cfg->initiator_name ? why : "missing");
		return NULL;
	}
	if (cfg->session_type == ISM_SESSION_NORMAL && (!cfg->target_name || !*cfg->target_name)) {
		snprintf(errmsg, errlen, "a normal session needs a target name");
		return NULL;
	}
	if ((cfg->mutual_user || cfg->mutual_secret) && !(cfg->chap_user && cfg->chap_secret)) {
		snprintf(errmsg, errlen, "mutual CHAP needs the initiator's CHAP user and secret too");
		return NULL;
	}
	if ((cfg->chap_user == NULL) != (cfg->chap_secret == NULL)) {
		snprintf(errmsg, errlen, "CHAP needs both a user and a secret");
		return NULL;
	}
	if ((cfg->mutual_user == NULL) != (cfg->mutual_secret == NULL)) {
		snprintf(errmsg, errlen, "mutual CHAP needs both a user and a secret");
		return NULL;
	}
	if (cfg->chap_algorithms) {
		const char *a = cfg->chap_algorithms;
		bool ok = *a != 0;
		for (size_t i = 0; a[i]; i++)
			if (i % 2 == 0 ? !strchr("5678", a[i]) : a[i] != ',')
				ok = false;
		if (!ok || a[strlen(a) - 1] == ',') {
			snprintf(errmsg, errlen, "CHAP algorithms '%s': want a list like 7,6,5 of 5 (MD5), 6 (SHA-1), "
				 "7 (SHA-256), 8 (SHA3-256)", a);
			return NULL;
		}
	}
	struct ism_session *s = xcalloc(1, sizeof(*s));
	s->tx_pool.item_size = sizeof(struct txitem);
	s->tx_pool.keep = ISM_TX_POOL_MAX;
	s->cfg = *cfg;
	s->chap_algorithms = dup_or_null(cfg->chap_algorithms);
	s->cfg.chap_algorithms = s->chap_algorithms;
	s->initiator_name = xstrdup(cfg->initiator_name);
	s->initiator_alias = dup_or_null(cfg->initiator_alias);
	s->target_name = cfg->session_type == ISM_SESSION_NORMAL ? xstrdup(cfg->target_name) : NULL;
	s->chap_user = dup_or_null(cfg->chap_user);
	s->chap_secret = dup_or_null(cfg->chap_secret);
	s->mutual_user = dup_or_null(cfg->mutual_user);
	s->mutual_secret = dup_or_null(cfg->mutual_secret);
	s->cfg.initiator_name = s->initiator_name;
	s->cfg.initiator_alias = s->initiator_alias;
	s->cfg.target_name = s->target_name;
	s->cfg.chap_user = s->chap_user;
	s->cfg.chap_secret = s->chap_secret;
	s->cfg.mutual_user = s->mutual_user;
	s->cfg.mutual_secret = s->mutual_secret;
	struct ism_config *c = &s->cfg;
	if (!c->max_recv_dsl)
		c->max_recv_dsl = 262144;
	if (c->max_recv_dsl < 512 || c->max_recv_dsl > 16777215)
		c->max_recv_dsl = 262144;
	if (!c->max_burst_length)
		c->max_burst_length = 1048576;
	if (!c->first_burst_length)
		c->first_burst_length = 262144;
	if (c->first_burst_length > c->max_burst_length)
		c->first_burst_length = c->max_burst_length;
	if (!c->max_connections)
		c->max_connections = ISM_MAX_CONNS;
	if (c->max_connections > ISM_MAX_CONNS)
		c->max_connections = ISM_MAX_CONNS;
	if (c->initial_r2t < 0)
		c->initial_r2t = 0;
	if (c->immediate_data < 0)
		c->immediate_data = 1;
	if (!c->login_timeout_ms)
		c->login_timeout_ms = 15000;
	if (!c->nop_interval_ms)
		c->nop_interval_ms = 5000;
	if (!c->nop_timeout_ms)
		c->nop_timeout_ms = 10000;
	if (!c->cmd_timeout_ms)
		c->cmd_timeout_ms = 60000;
	if (!c->max_redirects)
		c->max_redirects = 5;
	if (cfg->isid_set) {
		memcpy(s->isid, cfg->isid, 6);
		s->isid_known = true;
	}
	s->cmdsn = 1;
	s->exp_cmdsn = 1;
	s->max_cmdsn = 1;
	s->next_itt = 0x10;
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		s->conns[i].fd = -1;
	return s;
}

/* Close every connection and fail every task (their callbacks are queued, not run). */
static void session_close_all(struct ism_session *s)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->state != CONN_FREE && c->state != CONN_CLOSED) {
			s->logging_out = true;
			ism_conn_closed(c, ISM_ERR_CLOSED);
		}
	}
	ism_fail_pending(s, ISM_ERR_CLOSED);
	for (int b = 0; b < ISM_TASK_BUCKETS; b++)
		while (s->tasks[b])
			ism_task_fail(s->tasks[b], ISM_ERR_CLOSED);
}

void ism_session_destroy(struct ism_session *s)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		ism_login_free(c);
		ism_conn_drop_tx(c);
		ism_conn_close_fd(c);
		if (c->ai)
			freeaddrinfo(c->ai);
		pdu_conn_rx_free(&c->pc);
	}
	free(s->initiator_name);
	free(s->initiator_alias);
	free(s->target_name);
	free(s->chap_user);
	secret_free(s->chap_secret);
	free(s->mutual_user);
	secret_free(s->mutual_secret);
	free(s->chap_algorithms);
	while (s->task_pool) {
		struct ism_task *t = s->task_pool;
		s->task_pool = t->qnext;
		free(t);
	}
	ism_tx_pool_free(s);
	free(s->lost);
	free(s);
}

void ism_session_free(struct ism_session *s)
{
	if (!s || s->freeing || s->free_requested)
		return;
	if (s->in_callbacks) {
		/* From a callback: the running ism_session_service runs the rest and frees at its end. */
		s->free_requested = true;
		session_close_all(s);
		return;
	}
	s->freeing = true;
	session_close_all(s);
	s->in_service = 0;
	ism_run_callbacks(s);
	ism_session_destroy(s);
}
