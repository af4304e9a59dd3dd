/*
 * The session core: configuration, connections, tasks and their ITTs, the CmdSN window with
 * its queue of waiting commands, round-robin connection choice, the full feature phase PDUs
 * (Data-In, R2T, SCSI Response, NOP, Async, Reject, TMF, Logout) and the timers.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "initiator/internal.h"
#include "util/bytes.h"
#include "util/iscsi_name.h"
#include "util/log.h"
#include "util/serial.h"

void ism_conn_connect_ready(struct ism_conn *c);
static void session_destroy(struct ism_session *s);

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

/* ------------------------------------------------------------------------------------------ */
/* Tasks */

static unsigned bucket(uint32_t itt) { return (itt ^ (itt >> 8)) % ISM_TASK_BUCKETS; }

struct ism_task *ism_task_find(struct ism_session *s, uint32_t itt)
{
	for (struct ism_task *t = s->tasks[bucket(itt)]; t; t = t->hnext)
		if (t->itt == itt)
			return t;
	return NULL;
}

/* A zeroed task from the session's pool (allocated only while the pool is empty). */
static struct ism_task *task_alloc(struct ism_session *s)
{
	struct ism_task *t = s->task_pool;
	if (!t)
		return xcalloc(1, sizeof(*t));
	s->task_pool = t->qnext;
	s->task_pool_n--;
	/* Zero everything but the sense bytes (sense_len says how many are valid). */
	memset(t, 0, offsetof(struct ism_task, res) + offsetof(struct ism_scsi_result, sense));
	memset(&t->res.sense_len, 0, sizeof(t->res) - offsetof(struct ism_scsi_result, sense_len));
	memset((char *)t + offsetof(struct ism_task, res) + sizeof(t->res), 0,
	       sizeof(*t) - offsetof(struct ism_task, res) - sizeof(t->res));
	return t;
}

struct ism_task *ism_task_new(struct ism_session *s, enum task_kind kind)
{
	struct ism_task *t = task_alloc(s);
	t->kind = kind;
	t->s = s;
	do {
		t->itt = s->next_itt++;
	} while (t->itt == RESERVED_TAG || ism_task_find(s, t->itt));
	t->next_r2tsn = 0;
	unsigned b = bucket(t->itt);
	t->hnext = s->tasks[b];
	s->tasks[b] = t;
	s->ntasks++;
	return t;
}

void ism_task_unhash(struct ism_task *t)
{
	struct ism_session *s = t->s;
	for (struct ism_task **pp = &s->tasks[bucket(t->itt)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == t) {
			*pp = t->hnext;
			s->ntasks--;
			return;
		}
	}
}

static void pending_remove(struct ism_session *s, struct ism_task *t)
{
	struct ism_task *prev = NULL;
	for (struct ism_task *p = s->pending_head; p; prev = p, p = p->qnext) {
		if (p != t)
			continue;
		if (prev)
			prev->qnext = p->qnext;
		else
			s->pending_head = p->qnext;
		if (s->pending_tail == p)
			s->pending_tail = prev;
		s->npending--;
		p->qnext = NULL;
		return;
	}
}

void ism_task_free(struct ism_task *t)
{
	struct ism_session *s = t->s;
	sbuf_free(&t->text);
	if (s && s->task_pool_n < ISM_TASK_POOL_MAX) {
		t->qnext = s->task_pool;
		s->task_pool = t;
		s->task_pool_n++;
		return;
	}
	free(t);
}

/* The connection's list of sent tasks, oldest first: its head is the next to time out. */
static void sent_list_add(struct ism_conn *c, struct ism_task *t)
{
	t->snext = NULL;
	t->sprev = c->sent_tail;
	if (c->sent_tail)
		c->sent_tail->snext = t;
	else
		c->sent_head = t;
	c->sent_tail = t;
	t->on_sent_list = true;
}

static void sent_list_remove(struct ism_conn *c, struct ism_task *t)
{
	if (!t->on_sent_list)
		return;
	if (t->sprev)
		t->sprev->snext = t->snext;
	else
		c->sent_head = t->snext;
	if (t->snext)
		t->snext->sprev = t->sprev;
	else
		c->sent_tail = t->sprev;
	t->snext = t->sprev = NULL;
	t->on_sent_list = false;
}

/* Finish a task: it leaves the ITT table and its callback runs from ism_run_callbacks. */
void ism_task_complete(struct ism_task *t)
{
	if (t->done)
		return;
	struct ism_session *s = t->s;
	t->done = true;
	ism_task_unhash(t);
	if (!t->sent)
		pending_remove(s, t);
	if (t->conn) {
		if (t->sent && t->conn->outstanding)
			t->conn->outstanding--;
		sent_list_remove(t->conn, t);
		pdu_conn_forget_direct(&t->conn->pc, t); /* the rest of its Data-In is dropped */
		if (t->txrefs)
			ism_conn_detach_task(t->conn, t);
		t->res.cid = t->conn->cid;
	}
	t->qnext = NULL;
	if (s->done_tail)
		s->done_tail->qnext = t;
	else
		s->done_head = t;
	s->done_tail = t;
}

static void task_fail(struct ism_task *t, int err)
{
	t->res.error = err;
	ism_task_complete(t);
}

void ism_run_callbacks(struct ism_session *s)
{
	if (s->in_service > 0)
		return;
	s->in_service++;
	s->in_callbacks++;
	while (s->done_head) {
		struct ism_task *t = s->done_head;
		s->done_head = t->qnext;
		if (!s->done_head)
			s->done_tail = NULL;
		switch (t->kind) {
		case TASK_SCSI:
			if (t->scsi_cb)
				t->scsi_cb(s, &t->res, t->priv);
			break;
		case TASK_TEXT:
			if (t->disc_cb) {
				struct ism_discovery *d = t->result;
				t->result = NULL;
				t->disc_cb(s, t->res.error, d, t->priv);
			}
			break;
		default:
			if (t->conn_cb)
				t->conn_cb(s, t->res.error, t->res.cid, t->priv);
			else if (t->done_cb)
				t->done_cb(s, t->res.error, t->priv);
			break;
		}
		if (t->result)
			ism_discovery_free(t->result);
		ism_task_free(t);
	}
	s->in_callbacks--;
	s->in_service--;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections */

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

static bool conn_usable(const struct ism_conn *c) { return c->state == CONN_FFP && !c->draining && c->fd >= 0; }

static int live_conns(const struct ism_session *s)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		enum conn_state st = s->conns[i].state;
		if (st == CONN_CONNECTING || st == CONN_LOGIN || st == CONN_FFP || st == CONN_LOGOUT)
			n++;
	}
	return n;
}

static void fail_pending(struct ism_session *s, int err)
{
	while (s->pending_head)
		task_fail(s->pending_head, err);
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
				task_fail(t, err);
			t = next;
		}
	}
}

static void conn_closed(struct ism_conn *c, int err)
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
	if (live_conns(s) == 0) {
		if (s->logged_in && err == ISM_OK)
			s->logged_out = true; /* the last connection logged out: the session is over */
		if (s->logged_in && err != ISM_OK)
			s->failed = true;
		if (!s->logged_in && err != ISM_OK && !s->logging_out)
			s->failed = true;
		s->logged_in = false;
		fail_pending(s, err != ISM_OK ? err : ISM_ERR_CLOSED);
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
	ism_set_error(c->s, "connection %u to %s: %s", c->cid, c->peer[0] ? c->peer : c->portal, msg);
	conn_closed(c, ISM_ERR_TRANSPORT);
}

static void conn_close_clean(struct ism_conn *c) { conn_closed(c, ISM_OK); }

void ism_conn_release(struct ism_conn *c)
{
	pdu_conn_rx_free(&c->pc);
	c->state = CONN_FREE;
}

static struct ism_conn *conn_by_cid(struct ism_session *s, uint16_t cid)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->state != CONN_FREE && c->state != CONN_CLOSED && c->cid == cid)
			return c;
	}
	return NULL;
}

/* Round robin over the slots in use (slots past the highest one ever used are never looked at). */
static struct ism_conn *pick_conn(struct ism_session *s)
{
	unsigned n = s->conn_slots;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = s->rr + k;
		if (i >= n)
			i -= n;
		struct ism_conn *c = &s->conns[i];
		if (conn_usable(c)) {
			s->rr = i + 1 < n ? i + 1 : 0;
			return c;
		}
	}
	return NULL;
}

bool ism_session_ok(struct ism_session *s) { return !s->failed; }

/* ------------------------------------------------------------------------------------------ */
/* Sending */

static void encode_lun(uint64_t lun, uint8_t out[8])
{
	memset(out, 0, 8);
	if (lun < 256) {
		out[1] = (uint8_t)lun;
	} else if (lun < 16384) {
		out[0] = (uint8_t)(0x40 | (lun >> 8));
		out[1] = (uint8_t)lun;
	} else {
		put_be64(out, lun);
	}
}

/* Queue the Data-Out PDUs of one sequence; returns the last one (NULL if the connection is gone). */
static struct txitem *send_data_out(struct ism_conn *c, struct ism_task *t, uint32_t ttt, uint32_t offset,
				    uint32_t len)
{
	uint32_t seg = c->params.peer_max_recv_dsl ? c->params.peer_max_recv_dsl : 8192;
	uint32_t datasn = 0;
	struct txitem *last = NULL;
	while (len) {
		uint32_t n = len < seg ? len : seg;
		struct bhs b = {0};
		b.opcode = OP_DATA_OUT;
		b.final = n == len;
		encode_lun(t->lun, b.lun);
		b.itt = t->itt;
		b.data_out.ttt = ttt;
		b.data_out.expstatsn = c->exp_statsn;
		b.data_out.datasn = datasn++;
		b.data_out.offset = offset;
		last = ism_conn_send(c, &b, t->buf + offset, n, t, NULL);
		offset += n;
		len -= n;
	}
	return last;
}

/* Write now unless inside ism_session_service, which writes every connection's queue at its end. */
static void flush_soon(struct ism_conn *c)
{
	if (c->s->in_service == 0)
		ism_conn_flush(c);
}

static void send_scsi(struct ism_conn *c, struct ism_task *t)
{
	struct ism_session *s = c->s;
	struct bhs b = {0};
	b.opcode = OP_SCSI_CMD;
	b.cmd.read = t->dir == ISM_DIR_READ;
	b.cmd.write = t->dir == ISM_DIR_WRITE;
	b.cmd.attr = 1; /* SIMPLE */
	b.cmd.edtl = t->dir == ISM_DIR_NONE ? 0 : t->len;
	b.cmd.cmdsn = t->cmdsn;
	b.cmd.expstatsn = c->exp_statsn;
	memcpy(b.cmd.cdb, t->cdb, 16);
	encode_lun(t->lun, b.lun);
	b.itt = t->itt;
	uint32_t imm = 0, unsol = 0;
	if (t->dir == ISM_DIR_WRITE && t->len) {
		uint32_t first = s->params.first_burst_length;
		uint32_t seg = c->params.peer_max_recv_dsl;
		if (s->params.immediate_data) {
			imm = t->len < first ? t->len : first;
			if (imm > seg)
				imm = seg;
		}
		if (!s->params.initial_r2t) {
			unsol = t->len < first ? t->len : first;
			unsol = unsol > imm ? unsol - imm : 0;
		}
	}
	b.final = unsol == 0;
	ism_conn_send(c, &b, imm ? t->buf : NULL, imm, t, NULL);
	if (unsol)
		send_data_out(c, t, RESERVED_TAG, imm, unsol);
	t->unsolicited_sent = imm + unsol;
	t->write_covered = t->write_end = imm + unsol;
	c->ios++;
}

static void send_task(struct ism_conn *c, struct ism_task *t)
{
	struct ism_session *s = c->s;
	struct bhs b = {0};
	b.itt = t->itt;
	b.immediate = t->immediate;
	switch (t->kind) {
	case TASK_SCSI:
		send_scsi(c, t);
		return;
	case TASK_NOP:
		b.opcode = OP_NOP_OUT;
		b.final = true;
		b.nop_out.ttt = RESERVED_TAG;
		b.nop_out.cmdsn = t->cmdsn;
		b.nop_out.expstatsn = c->exp_statsn;
		if (!t->sent_ms)
			t->sent_ms = ism_now_ms();
		ism_conn_send(c, &b, NULL, 0, NULL, NULL);
		return;
	case TASK_TMF:
		b.opcode = OP_TASK_MGMT_REQ;
		b.final = true;
		b.tmf.function = t->tmf_function;
		encode_lun(t->lun, b.lun);
		b.tmf.rtt = t->tmf_function == TMF_ABORT_TASK ? t->tmf_ref_itt : RESERVED_TAG;
		b.tmf.cmdsn = t->cmdsn;
		b.tmf.expstatsn = c->exp_statsn;
		b.tmf.refcmdsn = t->tmf_function == TMF_ABORT_TASK ? t->tmf_ref_cmdsn : 0;
		ism_conn_send(c, &b, NULL, 0, NULL, NULL);
		return;
	case TASK_TEXT: {
		static const char st[] = "SendTargets=All";
		b.opcode = OP_TEXT_REQ;
		b.final = true;
		b.text.ttt = RESERVED_TAG;
		b.text.cmdsn = t->cmdsn;
		b.text.expstatsn = c->exp_statsn;
		uint8_t *d = xmalloc(sizeof(st));
		memcpy(d, st, sizeof(st));
		ism_conn_send(c, &b, d, sizeof(st), NULL, d);
		return;
	}
	case TASK_LOGOUT:
		b.opcode = OP_LOGOUT_REQ;
		b.final = true;
		b.logout.reason = t->logout_reason;
		b.logout.cid = t->logout_reason == LOGOUT_CLOSE_SESSION ? 0 : t->logout_cid;
		b.logout.cmdsn = t->cmdsn;
		b.logout.expstatsn = c->exp_statsn;
		c->state = CONN_LOGOUT;
		if (t->logout_reason == LOGOUT_CLOSE_SESSION)
			s->logging_out = true;
		ism_conn_send(c, &b, NULL, 0, NULL, NULL);
		return;
	case TASK_LOGIN:
		return;
	}
}

/* Can this waiting task go now? Logouts wait for the commands before them to finish. */
static bool logout_ready(struct ism_session *s, struct ism_task *t)
{
	if (t->logout_reason == LOGOUT_CLOSE_SESSION) {
		for (int b = 0; b < ISM_TASK_BUCKETS; b++)
			for (struct ism_task *o = s->tasks[b]; o; o = o->hnext)
				if (o->sent && o != t)
					return false;
		for (struct ism_task *p = s->pending_head; p && p != t; p = p->qnext)
			return false;
		return true;
	}
	return t->conn && t->conn->outstanding == 0;
}

/* Send what the window and the connections allow, in CmdSN order. */
void ism_kick(struct ism_session *s)
{
	struct ism_task *t = s->pending_head;
	while (t) {
		struct ism_task *next = t->qnext;
		struct ism_conn *c = t->conn;
		if (c && c->state != CONN_FFP) {
			ism_set_error(s, "connection %u is not logged in", c->cid);
			task_fail(t, ISM_ERR_TRANSPORT);
			t = next;
			continue;
		}
		if (t->kind == TASK_LOGOUT && !logout_ready(s, t)) {
			t = next;
			continue;
		}
		if (!t->immediate && sn_gt(s->cmdsn, s->max_cmdsn))
			break; /* window closed: everything after waits too, to keep CmdSN order */
		if (!c) {
			c = pick_conn(s);
			if (!c)
				break;
		}
		pending_remove(s, t);
		t->conn = c;
		t->cmdsn = s->cmdsn;
		if (!t->immediate)
			s->cmdsn++;
		t->sent = true;
		c->outstanding++;
		if (s->cfg.cmd_timeout_ms > 0 && t->kind != TASK_LOGIN) {
			t->sent_ms = s->in_service ? s->now_ms : ism_now_ms();
			sent_list_add(c, t);
		}
		send_task(c, t);
		t = next;
	}
	/* Inside ism_session_service everything queued is written at the end, in one writev per
	 * connection; called from outside (a new command), write now unless the caller corked. */
	if (s->in_service == 0 && s->cork == 0)
		ism_flush_all(s);
}

void ism_session_cork(struct ism_session *s) { s->cork++; }

void ism_session_uncork(struct ism_session *s)
{
	if (s->cork > 0 && --s->cork == 0 && s->in_service == 0)
		ism_flush_all(s);
}

void ism_submit(struct ism_session *s, struct ism_task *t)
{
	t->qnext = NULL;
	t->queued_ms = s->in_service ? s->now_ms : ism_now_ms();
	if (s->pending_tail)
		s->pending_tail->qnext = t;
	else
		s->pending_head = t;
	s->pending_tail = t;
	s->npending++;
	ism_kick(s);
}

void ism_update_window(struct ism_session *s, uint32_t expcmdsn, uint32_t maxcmdsn)
{
	/* RFC 7143 4.2.2.1: MaxCmdSN < ExpCmdSN - 1 means the values are to be ignored. */
	if (sn_lt(maxcmdsn, expcmdsn - 1))
		return;
	/* An ExpCmdSN past the next CmdSN acknowledges commands never sent: not a window to trust. */
	if (sn_gt(expcmdsn, s->cmdsn))
		return;
	if (sn_gt(expcmdsn, s->exp_cmdsn))
		s->exp_cmdsn = expcmdsn;
	if (sn_gt(maxcmdsn, s->max_cmdsn))
		s->max_cmdsn = maxcmdsn;
}

/* ------------------------------------------------------------------------------------------ */
/* Full feature phase reception */

static bool check_statsn(struct ism_conn *c, const struct bhs *b, uint32_t statsn)
{
	if (statsn != c->exp_statsn) {
		ism_conn_fail(c, "%s with StatSN %u, expected %u", opcode_str(b->opcode), statsn, c->exp_statsn);
		return false;
	}
	c->exp_statsn = statsn + 1;
	return true;
}

static struct ism_task *task_for(struct ism_conn *c, const struct bhs *b, enum task_kind kind)
{
	struct ism_task *t = ism_task_find(c->s, b->itt);
	if (!t || !t->sent || t->kind != kind) {
		ism_conn_fail(c, "%s for unexpected ITT 0x%08x", opcode_str(b->opcode), b->itt);
		return NULL;
	}
	if (t->conn != c) {
		ism_conn_fail(c, "%s for ITT 0x%08x arrived on connection %u, the task runs on %u",
			      opcode_str(b->opcode), b->itt, c->cid, t->conn ? t->conn->cid : 0);
		return NULL;
	}
	return t;
}

/*
 * The data a read really received: Data-In arrives in order (DataPDUInOrder and
 * DataSequenceInOrder are Yes, as this initiator offers them), so the bytes placed are
 * buf[0, read_bytes). A residual only ever shortens that; the rest of the buffer is zeroed so
 * that a target that answers GOOD with less data than asked never hands the caller whatever the
 * buffer held before (another command's data, in a pooled buffer).
 */
static uint32_t read_valid_bytes(struct ism_task *t, bool underflow, uint32_t residual)
{
	uint32_t valid = t->read_bytes;
	if (underflow) {
		uint32_t claimed = residual <= t->len ? t->len - residual : 0;
		if (claimed < valid)
			valid = claimed;
	}
	if (valid < t->len)
		memset(t->buf + valid, 0, t->len - valid);
	return valid;
}

/* The data a write delivered: what was sent unsolicited and what R2Ts asked for, less the
 * residual the target reports. */
static uint32_t write_valid_bytes(const struct ism_task *t, bool underflow, uint32_t residual)
{
	uint32_t valid = t->write_covered < t->len ? t->write_covered : t->len;
	if (underflow) {
		uint32_t claimed = residual <= t->len ? t->len - residual : 0;
		if (claimed < valid)
			valid = claimed;
	}
	return valid;
}

/*
 * The target's answer to t broke the protocol: t fails with ISM_ERR_PROTOCOL, so that a caller
 * that retries after a reconnect can tell the command that broke the connection from the ones
 * that only went down with it; then the connection fails (ErrorRecoveryLevel 0 repairs nothing).
 */
static void task_protocol_error(struct ism_conn *c, struct ism_task *t, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void task_protocol_error(struct ism_conn *c, struct ism_task *t, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	t->res.error = ISM_ERR_PROTOCOL;
	ism_task_complete(t);
	ism_conn_fail(c, "%s", msg);
}

static void complete_scsi(struct ism_conn *c, struct ism_task *t, uint8_t status, bool overflow, bool underflow,
			  uint32_t residual)
{
	if (overflow && underflow) {
		task_protocol_error(c, t, "status for ITT 0x%08x with both residual overflow and underflow", t->itt);
		return;
	}
	t->res.error = ISM_OK;
	t->res.status = status;
	uint32_t valid = t->len;
	if (t->dir == ISM_DIR_READ)
		valid = read_valid_bytes(t, underflow, residual);
	else if (t->dir == ISM_DIR_WRITE)
		valid = write_valid_bytes(t, underflow, residual);
	t->res.transferred = t->dir == ISM_DIR_NONE ? 0 : valid;
	t->res.underflow = valid < t->len;
	t->res.residual = t->len - valid;
	t->res.overflow = overflow;
	if (overflow) {
		/* The target wanted to move more than the Expected Data Transfer Length: the command
		 * and its buffer disagree, so nothing it says about the data can be trusted. */
		t->res.residual = residual;
		ism_set_error(c->s, "target reported a residual overflow of %u bytes for SCSI command 0x%02x "
			      "(Expected Data Transfer Length %u)", residual, t->cdb[0], t->len);
		t->res.error = ISM_ERR_TARGET;
	}
	ism_task_complete(t);
}

static void on_data_in(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_task *t = task_for(c, b, TASK_SCSI);
	if (!t)
		return;
	if (t->dir != ISM_DIR_READ) {
		task_protocol_error(c, t, "Data-In for ITT 0x%08x, which is not a read", b->itt);
		return;
	}
	if (b->data_in.datasn != t->next_datasn) {
		task_protocol_error(c, t, "Data-In DataSN %u out of order (expected %u)", b->data_in.datasn,
				    t->next_datasn);
		return;
	}
	t->next_datasn++;
	uint64_t end = (uint64_t)b->data_in.offset + len;
	if (end > t->len) {
		task_protocol_error(c, t, "Data-In at offset %u of %u bytes goes past the expected length %u",
				    b->data_in.offset, len, t->len);
		return;
	}
	if (len && b->data_in.offset != t->read_bytes) {
		task_protocol_error(c, t, "Data-In for ITT 0x%08x at offset %u, expected %u (data must arrive in order)",
				    b->itt, b->data_in.offset, t->read_bytes);
		return;
	}
	if (len && t->buf + b->data_in.offset != data)
		memcpy(t->buf + b->data_in.offset, data, len); /* not already placed by a direct read */
	t->read_bytes += len;
	if (!b->data_in.status_present)
		return;
	if (!check_statsn(c, b, b->data_in.statsn))
		return;
	complete_scsi(c, t, b->data_in.status, b->data_in.overflow, b->data_in.underflow, b->data_in.residual);
}

static void on_scsi_response(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_task *t = task_for(c, b, TASK_SCSI);
	if (!t || !check_statsn(c, b, b->rsp.statsn))
		return;
	if (len) {
		if (len < 2) {
			task_protocol_error(c, t, "SCSI Response with a %u-byte data segment (no room for SenseLength)",
					    len);
			return;
		}
		uint32_t slen = get_be16(data);
		if (slen + 2 > len) {
			task_protocol_error(c, t, "SCSI Response SenseLength %u exceeds its data segment of %u bytes", slen,
					    len);
			return;
		}
		t->res.sense_len = slen < ISM_SENSE_MAX ? slen : ISM_SENSE_MAX;
		memcpy(t->res.sense, data + 2, t->res.sense_len);
	}
	t->res.response = b->rsp.response;
	if (b->rsp.response != 0) {
		ism_set_error(c->s, "target could not complete the command (iSCSI response 0x%02x)", b->rsp.response);
		t->res.error = ISM_ERR_TARGET;
		ism_task_complete(t);
		return;
	}
	complete_scsi(c, t, b->rsp.status, (b->rsp.flags & 0x04) != 0, (b->rsp.flags & 0x02) != 0, b->rsp.residual);
}

static void on_r2t(struct ism_conn *c, const struct bhs *b, uint32_t len)
{
	struct ism_session *s = c->s;
	if (len) {
		ism_conn_fail(c, "R2T with a data segment (DataSegmentLength %u)", len);
		return;
	}
	struct ism_task *t = task_for(c, b, TASK_SCSI);
	if (!t)
		return;
	if (t->dir != ISM_DIR_WRITE) {
		task_protocol_error(c, t, "R2T for ITT 0x%08x, which is not a write", b->itt);
		return;
	}
	if (b->r2t.ttt == RESERVED_TAG) {
		task_protocol_error(c, t, "R2T with the reserved Target Transfer Tag");
		return;
	}
	if (b->r2t.r2tsn != t->next_r2tsn) {
		task_protocol_error(c, t, "R2TSN %u out of order (expected %u)", b->r2t.r2tsn, t->next_r2tsn);
		return;
	}
	uint64_t end = (uint64_t)b->r2t.offset + b->r2t.desired_len;
	if (b->r2t.desired_len == 0 || end > t->len) {
		task_protocol_error(c, t, "R2T for %u bytes at offset %u outside the %u bytes of the write",
				    b->r2t.desired_len, b->r2t.offset, t->len);
		return;
	}
	if (b->r2t.offset < t->write_end) {
		/* DataSequenceInOrder=Yes: each R2T asks for data after what was sent or asked for. */
		task_protocol_error(c, t, "R2T for ITT 0x%08x at offset %u asks again for data before offset %u, "
				    "already sent or asked for", b->itt, b->r2t.offset, t->write_end);
		return;
	}
	if (b->r2t.desired_len > s->params.max_burst_length) {
		task_protocol_error(c, t, "R2T asks for %u bytes, more than MaxBurstLength %u", b->r2t.desired_len,
				    s->params.max_burst_length);
		return;
	}
	/*
	 * MaxOutstandingR2T (RFC 7143 13.17): an R2T stays outstanding until the last Data-Out that
	 * answers it is on the wire. The target may not ask for more at a time than was negotiated;
	 * one that does breaks the session's flow control, which ERL 0 cannot repair.
	 */
	uint32_t max_r2t = s->params.max_outstanding_r2t ? s->params.max_outstanding_r2t : 1;
	if (t->r2t_active >= max_r2t) {
		task_protocol_error(c, t, "target sent R2T %u for ITT 0x%08x while %u R2T%s of it %s still being "
				    "answered (MaxOutstandingR2T=%u)", b->r2t.r2tsn, b->itt, t->r2t_active,
				    t->r2t_active == 1 ? "" : "s", t->r2t_active == 1 ? "is" : "are", max_r2t);
		return;
	}
	t->next_r2tsn++;
	t->write_end = (uint32_t)end;
	t->write_covered += b->r2t.desired_len;
	struct txitem *last = send_data_out(c, t, b->r2t.ttt, b->r2t.offset, b->r2t.desired_len);
	if (last) {
		last->r2t_last = true;
		t->r2t_active++;
	}
	flush_soon(c);
}

static void on_nop_in(struct ism_conn *c, const struct bhs *b)
{
	struct ism_session *s = c->s;
	if (b->itt == RESERVED_TAG) {
		if (b->nop_in.ttt == RESERVED_TAG)
			return; /* an unsolicited update of the window only */
		if (c->ping_answers >= ISM_MAX_QUEUED_PING_ANSWERS) {
			ism_conn_fail(c, "target sends NOP-In pings without reading the answers (%u unsent)",
				      c->ping_answers);
			return;
		}
		struct bhs o = {0};
		o.opcode = OP_NOP_OUT;
		o.immediate = true;
		o.final = true;
		memcpy(o.lun, b->lun, 8);
		o.itt = RESERVED_TAG;
		o.nop_out.ttt = b->nop_in.ttt;
		o.nop_out.cmdsn = s->cmdsn;
		o.nop_out.expstatsn = c->exp_statsn;
		struct txitem *it = ism_conn_send(c, &o, NULL, 0, NULL, NULL);
		if (it) {
			it->ping_conn = c;
			c->ping_answers++;
		}
		flush_soon(c);
		return;
	}
	if (!check_statsn(c, b, b->nop_in.statsn))
		return;
	if (c->nop_sent_ms && b->itt == c->nop_itt) {
		c->nop_sent_ms = 0;
		return;
	}
	struct ism_task *t = task_for(c, b, TASK_NOP);
	if (!t)
		return;
	t->res.error = ISM_OK;
	ism_task_complete(t);
}

static void queue_logout(struct ism_session *s, struct ism_conn *c, uint8_t reason, ism_done_cb cb, void *priv,
			 struct ism_task **out);

static void on_async(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_session *s = c->s;
	(void)data;
	(void)len;
	if (b->async.statsn == c->exp_statsn)
		c->exp_statsn++;
	switch (b->async.event) {
	case ASYNC_SCSI_EVENT:
		break; /* sense data for the application; nothing to do for the transport */
	case ASYNC_LOGOUT_REQUEST: {
		if (c->draining || c->logout_queued)
			break;
		c->draining = true;
		int others = 0;
		for (int i = 0; i < ISM_MAX_CONNS; i++)
			if (&s->conns[i] != c && conn_usable(&s->conns[i]))
				others++;
		queue_logout(s, c, others ? LOGOUT_CLOSE_CONNECTION : LOGOUT_CLOSE_SESSION, NULL, NULL, NULL);
		break;
	}
	case ASYNC_DROP_CONNECTION: {
		struct ism_conn *d = conn_by_cid(s, b->async.param1);
		ism_conn_fail(d ? d : c, "target announced it drops the connection (async event 2)");
		break;
	}
	case ASYNC_DROP_ALL_CONNECTIONS:
		ism_set_error(s, "target announced it drops all connections of the session (async event 3)");
		for (int i = 0; i < ISM_MAX_CONNS; i++)
			ism_conn_fail(&s->conns[i], "target dropped all connections");
		break;
	case ASYNC_NEGOTIATION_REQUEST:
	default:
		break;
	}
}

static void on_reject(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_session *s = c->s;
	if (b->reject.statsn == c->exp_statsn)
		c->exp_statsn++;
	if (len < BHS_LEN) {
		ism_conn_fail(c, "Reject (reason 0x%02x) without the rejected header", b->reject.reason);
		return;
	}
	uint32_t itt = get_be32(data + 16);
	uint8_t op = data[0] & 0x3f;
	ism_set_error(s, "target rejected a %s PDU (reason 0x%02x)", opcode_str(op), b->reject.reason);
	struct ism_task *t = itt != RESERVED_TAG ? ism_task_find(s, itt) : NULL;
	if (t && t->sent) {
		t->res.error = ISM_ERR_TARGET;
		ism_task_complete(t);
	}
}

static void abort_lun_tasks(struct ism_session *s, bool all, uint64_t lun, uint32_t before_cmdsn)
{
	for (int b = 0; b < ISM_TASK_BUCKETS; b++) {
		struct ism_task *t = s->tasks[b];
		while (t) {
			struct ism_task *next = t->hnext;
			if (t->kind == TASK_SCSI && t->sent && (all || t->lun == lun) && sn_lt(t->cmdsn, before_cmdsn + 1))
				task_fail(t, ISM_ERR_ABORTED);
			t = next;
		}
	}
}

static const char *tmf_response_str(uint8_t r)
{
	switch (r) {
	case TMF_RSP_COMPLETE: return "function complete";
	case TMF_RSP_NO_TASK: return "task does not exist";
	case TMF_RSP_NO_LUN: return "LUN does not exist";
	case TMF_RSP_TASK_ALLEGIANT: return "task still allegiant";
	case TMF_RSP_REASSIGN_UNSUPPORTED: return "task allegiance reassignment not supported";
	case TMF_RSP_NOT_SUPPORTED: return "task management function not supported";
	case TMF_RSP_AUTH_FAILED: return "function authorization failed";
	case TMF_RSP_REJECTED: return "function rejected";
	default: return "unknown response";
	}
}

static void on_tmf_response(struct ism_conn *c, const struct bhs *b, uint32_t len)
{
	struct ism_session *s = c->s;
	if (len) {
		ism_conn_fail(c, "Task Management Response with a data segment (DataSegmentLength %u)", len);
		return;
	}
	struct ism_task *t = task_for(c, b, TASK_TMF);
	if (!t || !check_statsn(c, b, b->tmf_rsp.statsn))
		return;
	uint8_t r = b->tmf_rsp.response;
	bool ok = r == TMF_RSP_COMPLETE || (t->tmf_function == TMF_ABORT_TASK && r == TMF_RSP_NO_TASK);
	if (ok) {
		if (t->tmf_function == TMF_ABORT_TASK) {
			struct ism_task *ref = ism_task_find(s, t->tmf_ref_itt);
			if (ref && ref->kind == TASK_SCSI)
				task_fail(ref, ISM_ERR_ABORTED);
		} else if (t->tmf_function == TMF_LOGICAL_UNIT_RESET || t->tmf_function == TMF_ABORT_TASK_SET ||
			   t->tmf_function == TMF_CLEAR_TASK_SET) {
			abort_lun_tasks(s, false, t->lun, t->cmdsn);
		} else if (t->tmf_function == TMF_TARGET_WARM_RESET || t->tmf_function == TMF_TARGET_COLD_RESET) {
			abort_lun_tasks(s, true, 0, t->cmdsn);
		}
		t->res.error = ISM_OK;
	} else {
		ism_set_error(s, "task management function %u failed: %s (0x%02x)", t->tmf_function,
			      tmf_response_str(r), r);
		t->res.error = ISM_ERR_TARGET;
	}
	ism_task_complete(t);
}

static void on_logout_response(struct ism_conn *c, const struct bhs *b, uint32_t len)
{
	struct ism_session *s = c->s;
	if (len) {
		ism_conn_fail(c, "Logout Response with a data segment (DataSegmentLength %u)", len);
		return;
	}
	struct ism_task *t = task_for(c, b, TASK_LOGOUT);
	if (!t || !check_statsn(c, b, b->logout_rsp.statsn))
		return;
	if (b->logout_rsp.response != 0) {
		static const char *const why[] = {"success", "CID not found", "connection recovery not supported",
						  "cleanup failed"};
		uint8_t r = b->logout_rsp.response;
		ism_set_error(s, "logout failed: %s (0x%02x)", r < 4 ? why[r] : "unknown response", r);
		t->res.error = ISM_ERR_TARGET;
		c->state = CONN_FFP;
		s->logging_out = false;
		ism_task_complete(t);
		return;
	}
	t->res.error = ISM_OK;
	ism_task_complete(t);
	if (t->logout_reason == LOGOUT_CLOSE_SESSION) {
		s->logging_out = true;
		s->logged_out = true;
		for (int i = 0; i < ISM_MAX_CONNS; i++) {
			struct ism_conn *o = &s->conns[i];
			if (o->state != CONN_FREE && o->state != CONN_CLOSED)
				conn_close_clean(o);
		}
		s->logged_in = false;
	} else {
		struct ism_conn *o = conn_by_cid(s, t->logout_cid);
		conn_close_clean(o ? o : c);
	}
}

void ism_ffp_pdu(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_session *s = c->s;
	switch (b->opcode) {
	case OP_DATA_IN: ism_update_window(s, b->data_in.expcmdsn, b->data_in.maxcmdsn); break;
	case OP_SCSI_RESP: ism_update_window(s, b->rsp.expcmdsn, b->rsp.maxcmdsn); break;
	case OP_R2T: ism_update_window(s, b->r2t.expcmdsn, b->r2t.maxcmdsn); break;
	case OP_NOP_IN: ism_update_window(s, b->nop_in.expcmdsn, b->nop_in.maxcmdsn); break;
	case OP_TASK_MGMT_RESP: ism_update_window(s, b->tmf_rsp.expcmdsn, b->tmf_rsp.maxcmdsn); break;
	case OP_TEXT_RESP: ism_update_window(s, b->text.expcmdsn, b->text.maxcmdsn); break;
	case OP_LOGOUT_RESP: ism_update_window(s, b->logout_rsp.expcmdsn, b->logout_rsp.maxcmdsn); break;
	case OP_ASYNC_MSG: ism_update_window(s, b->async.expcmdsn, b->async.maxcmdsn); break;
	case OP_REJECT: ism_update_window(s, b->reject.expcmdsn, b->reject.maxcmdsn); break;
	default: break;
	}
	switch (b->opcode) {
	case OP_DATA_IN: on_data_in(c, b, data, len); break;
	case OP_SCSI_RESP: on_scsi_response(c, b, data, len); break;
	case OP_R2T: on_r2t(c, b, len); break;
	case OP_NOP_IN: on_nop_in(c, b); break;
	case OP_ASYNC_MSG: on_async(c, b, data, len); break;
	case OP_REJECT: on_reject(c, b, data, len); break;
	case OP_TASK_MGMT_RESP: on_tmf_response(c, b, len); break;
	case OP_LOGOUT_RESP: on_logout_response(c, b, len); break;
	case OP_TEXT_RESP: {
		struct ism_task *t = task_for(c, b, TASK_TEXT);
		if (t && check_statsn(c, b, b->text.statsn))
			ism_text_response(c, t, b, data, len);
		break;
	}
	case OP_LOGIN_RESP:
		ism_conn_fail(c, "Login Response in full feature phase");
		break;
	default:
		ism_conn_fail(c, "unexpected %s PDU in full feature phase", opcode_str(b->opcode));
		break;
	}
	ism_kick(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Timers and the event loop interface */

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
	task_fail(t, ISM_ERR_TIMEOUT);
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
	task_fail(s->pending_head, ISM_ERR_TIMEOUT);
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		ism_conn_fail(&s->conns[i], "CmdSN window closed too long");
	return true;
}

static void run_timers(struct ism_session *s)
{
	uint64_t now = ism_now_ms();
	if (check_window_timeout(s, now))
		return;
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
		if (c->nop_sent_ms) {
			if (s->cfg.nop_timeout_ms > 0 && now - c->nop_sent_ms >= (uint64_t)s->cfg.nop_timeout_ms)
				ism_conn_fail(c, "no answer to a NOP-Out ping within %d ms", s->cfg.nop_timeout_ms);
			continue;
		}
		if (s->cfg.nop_interval_ms > 0 && now - c->last_rx_ms >= (uint64_t)s->cfg.nop_interval_ms) {
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
			c->nop_sent_ms = now ? now : 1;
			ism_conn_send(c, &b, NULL, 0, NULL, NULL);
			ism_conn_flush(c);
		}
	}
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
			if (c->nop_sent_ms && s->cfg.nop_timeout_ms > 0)
				when = c->nop_sent_ms + (uint64_t)s->cfg.nop_timeout_ms;
			else if (!c->nop_sent_ms && s->cfg.nop_interval_ms > 0)
				when = c->last_rx_ms + (uint64_t)s->cfg.nop_interval_ms;
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
	return best > 0x7fffffff ? 0x7fffffff : (int)best;
}

int ism_session_fds(struct ism_session *s, struct pollfd *fds, int max)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS && n < max; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->fd < 0 || c->state == CONN_FREE || c->state == CONN_CLOSED)
			continue;
		fds[n].fd = c->fd;
		fds[n].revents = 0;
		if (c->state == CONN_CONNECTING)
			fds[n].events = POLLOUT;
		else
			fds[n].events = (short)(POLLIN | (pdu_queue_empty(&c->pc.txq) ? 0 : POLLOUT));
		n++;
	}
	return n;
}

static void sweep(struct ism_session *s)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->state == CONN_CLOSED && s->in_service == 0)
			ism_conn_release(c);
	}
}

int ism_session_service(struct ism_session *s, int fd, short revents)
{
	s->in_service++;
	s->now_ms = ism_now_ms();
	if (fd >= 0) {
		for (int i = 0; i < ISM_MAX_CONNS; i++) {
			struct ism_conn *c = &s->conns[i];
			if (c->fd != fd || c->state == CONN_FREE || c->state == CONN_CLOSED)
				continue;
			if (c->state == CONN_CONNECTING) {
				if (revents & (POLLOUT | POLLERR | POLLHUP))
					ism_conn_connect_ready(c);
				break;
			}
			if (revents & POLLOUT)
				ism_conn_flush(c);
			if (c->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR)))
				ism_conn_readable(c);
			break;
		}
	}
	run_timers(s);
	ism_kick(s);
	s->in_service--;
	sweep(s);
	ism_run_callbacks(s);
	/* What the callbacks queued (typically the next commands) goes out in one writev. */
	ism_flush_all(s);
	sweep(s);
	if (s->free_requested && s->in_service == 0) {
		/* ism_session_free was called from a callback of this round */
		ism_run_callbacks(s);
		session_destroy(s);
		return ISM_SERVICE_FAILED;
	}
	if (s->failed)
		return ISM_SERVICE_FAILED;
	return s->logged_out && !s->logged_in && live_conns(s) == 0 ? ISM_SERVICE_LOGGED_OUT : ISM_SERVICE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Public async operations */

static struct ism_task *login_task(struct ism_session *s, uint16_t cid, ism_done_cb cb, ism_conn_cb ccb, void *priv)
{
	struct ism_task *t = task_alloc(s);
	t->kind = TASK_LOGIN;
	t->s = s;
	t->done_cb = cb;
	t->conn_cb = ccb;
	t->priv = priv;
	t->done = false;
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
	if (leading)
		s->logged_out = false;
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
	s->failed = false;
	if (fd >= 0) {
		c->fd = fd;
		snprintf(c->peer, sizeof(c->peer), "%s", c->portal);
		ism_conn_connected(c);
		return 0;
	}
	c->state = CONN_CONNECTING;
	if (ism_conn_start_connect(c) < 0) {
		c->login->fail_status = ISM_ERR_TRANSPORT;
		conn_closed(c, ISM_ERR_TRANSPORT);
		return 0; /* the callback reports it */
	}
	return 0;
}

int ism_connect_async(struct ism_session *s, const char *portal, ism_done_cb cb, void *priv)
{
	if (s->logged_in || live_conns(s)) {
		ism_set_error(s, "the session is already connected");
		return ISM_ERR_INVALID;
	}
	return start_conn(s, portal, -1, true, cb, NULL, priv);
}

int ism_attach_fd_async(struct ism_session *s, int fd, bool leading, ism_done_cb cb, void *priv)
{
	return start_conn(s, NULL, fd, leading, cb, NULL, priv);
}

static int add_connection(struct ism_session *s, const char *portal, ism_done_cb cb, ism_conn_cb ccb, void *priv)
{
	if (!s->logged_in || s->cfg.session_type != ISM_SESSION_NORMAL) {
		ism_set_error(s, "connections can only be added to a logged-in normal session");
		return ISM_ERR_INVALID;
	}
	if ((uint32_t)live_conns(s) >= s->params.max_connections) {
		ism_set_error(s, "the target allows %u connections in this session (MaxConnections)",
			      s->params.max_connections);
		return ISM_ERR_INVALID;
	}
	return start_conn(s, portal, -1, false, cb, ccb, priv);
}

int ism_add_connection_async(struct ism_session *s, const char *portal, ism_done_cb cb, void *priv)
{
	return add_connection(s, portal, cb, NULL, priv);
}

int ism_add_connection_async2(struct ism_session *s, const char *portal, ism_conn_cb cb, void *priv)
{
	return add_connection(s, portal, NULL, cb, priv);
}

static void queue_logout(struct ism_session *s, struct ism_conn *c, uint8_t reason, ism_done_cb cb, void *priv,
			 struct ism_task **out)
{
	struct ism_task *t = ism_task_new(s, TASK_LOGOUT);
	t->logout_reason = reason;
	t->logout_cid = c ? c->cid : 0;
	t->conn = reason == LOGOUT_CLOSE_SESSION ? NULL : c;
	if (reason == LOGOUT_CLOSE_SESSION && c)
		t->conn = c;
	t->done_cb = cb;
	t->priv = priv;
	if (c)
		c->logout_queued = true;
	if (reason == LOGOUT_CLOSE_SESSION)
		s->logging_out = true;
	if (out)
		*out = t;
	ism_submit(s, t);
}

int ism_remove_connection_async(struct ism_session *s, uint16_t cid, ism_done_cb cb, void *priv)
{
	struct ism_conn *c = conn_by_cid(s, cid);
	if (!c || c->state != CONN_FFP) {
		ism_set_error(s, "no logged-in connection with CID %u", cid);
		return ISM_ERR_INVALID;
	}
	int others = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++)
		if (&s->conns[i] != c && s->conns[i].state == CONN_FFP)
			others++;
	c->draining = true;
	queue_logout(s, c, others ? LOGOUT_CLOSE_CONNECTION : LOGOUT_CLOSE_SESSION, cb, priv, NULL);
	return 0;
}

int ism_logout_async(struct ism_session *s, ism_done_cb cb, void *priv)
{
	if (!s->logged_in) {
		ism_set_error(s, "the session is not logged in");
		return ISM_ERR_INVALID;
	}
	queue_logout(s, NULL, LOGOUT_CLOSE_SESSION, cb, priv, NULL);
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
	if (!s->logged_in || s->failed || s->logging_out || s->cfg.session_type != ISM_SESSION_NORMAL) {
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
	if (!s->logged_in) {
		ism_set_error(s, "the session is not logged in");
		return ISM_ERR_INVALID;
	}
	if (function == ISM_TMF_ABORT_TASK && (!ref || ref->kind != TASK_SCSI || ref->done)) {
		ism_set_error(s, "ABORT TASK needs a task in progress");
		return ISM_ERR_INVALID;
	}
	struct ism_task *t = ism_task_new(s, TASK_TMF);
	t->immediate = true;
	t->tmf_function = (uint8_t)function;
	t->lun = ref ? ref->lun : lun;
	if (ref) {
		t->tmf_ref_itt = ref->itt;
		t->tmf_ref_cmdsn = ref->sent ? ref->cmdsn : s->cmdsn;
		if (!ref->sent) {
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

static void nop_all_done(struct ism_session *s, int status, void *priv);

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

int ism_session_queue_length(const struct ism_session *s) { return (int)(s->ntasks); }

int ism_session_connections(const struct ism_session *s, uint16_t *cids, int max)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		if (s->conns[i].state != CONN_FFP)
			continue;
		if (cids && n < max)
			cids[n] = s->conns[i].cid;
		n++;
	}
	return n;
}

bool ism_session_logged_in(const struct ism_session *s) { return s->logged_in && !s->failed; }

int ism_session_connection_info(const struct ism_session *s, struct ism_conn_info *out, int max)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		const struct ism_conn *c = &s->conns[i];
		if (c->state == CONN_FREE || c->state == CONN_CLOSED)
			continue;
		if (!out || n >= max) {
			n++;
			continue;
		}
		struct ism_conn_info *o = &out[n++];
		memset(o, 0, sizeof(*o));
		o->cid = c->cid;
		o->state = c->state == CONN_CONNECTING ? ISM_CONN_CONNECTING
			   : c->state == CONN_LOGIN    ? ISM_CONN_LOGIN
			   : c->state == CONN_FFP      ? ISM_CONN_FULL_FEATURE
						       : ISM_CONN_LOGGING_OUT;
		o->draining = c->draining;
		snprintf(o->portal, sizeof(o->portal), "%.*s", (int)sizeof(o->portal) - 1, c->portal);
		ism_sockaddr_split((const struct sockaddr *)&c->local_sa, o->local_address, sizeof(o->local_address),
				   &o->local_port);
		ism_sockaddr_split((const struct sockaddr *)&c->peer_sa, o->remote_address, sizeof(o->remote_address),
				   &o->remote_port);
		o->header_digest = c->params.header_digest;
		o->data_digest = c->params.data_digest;
		o->max_recv_dsl = c->params.max_recv_dsl;
		o->peer_max_recv_dsl = c->params.peer_max_recv_dsl;
		o->commands = c->ios;
		o->outstanding = c->outstanding;
		o->bytes_sent = c->bytes_sent;
		o->bytes_received = c->bytes_received;
	}
	return n;
}

void ism_session_get_info(const struct ism_session *s, struct ism_session_info *info)
{
	memset(info, 0, sizeof(*info));
	info->tsih = s->tsih;
	memcpy(info->isid, s->isid, 6);
	info->tpgt = s->tpgt;
	snprintf(info->target_alias, sizeof(info->target_alias), "%s", s->target_alias);
	const struct iscsi_params *p = &s->params;
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		if (s->conns[i].state == CONN_FFP) {
			p = &s->conns[i].params;
			break;
		}
	}
	info->header_digest = p->header_digest;
	info->data_digest = p->data_digest;
	info->max_recv_dsl = p->max_recv_dsl;
	info->peer_max_recv_dsl = p->peer_max_recv_dsl;
	info->max_burst_length = s->params.max_burst_length;
	info->first_burst_length = s->params.first_burst_length;
	info->max_outstanding_r2t = s->params.max_outstanding_r2t;
	info->max_connections = s->params.max_connections;
	info->initial_r2t = s->params.initial_r2t;
	info->immediate_data = s->params.immediate_data;
	info->cmdsn = s->cmdsn;
	info->exp_cmdsn = s->exp_cmdsn;
	info->max_cmdsn = s->max_cmdsn;
}

/* Close every connection and fail every task (their callbacks are queued, not run). */
static void session_close_all(struct ism_session *s)
{
	for (int i = 0; i < ISM_MAX_CONNS; i++) {
		struct ism_conn *c = &s->conns[i];
		if (c->state != CONN_FREE && c->state != CONN_CLOSED) {
			s->logging_out = true;
			conn_closed(c, ISM_ERR_CLOSED);
		}
	}
	fail_pending(s, ISM_ERR_CLOSED);
	for (int b = 0; b < ISM_TASK_BUCKETS; b++)
		while (s->tasks[b])
			task_fail(s->tasks[b], ISM_ERR_CLOSED);
}

/* Free the memory (every callback has run). */
static void session_destroy(struct ism_session *s)
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
	free(s->chap_secret);
	free(s->mutual_user);
	free(s->mutual_secret);
	free(s->chap_algorithms);
	while (s->task_pool) {
		struct ism_task *t = s->task_pool;
		s->task_pool = t->qnext;
		free(t);
	}
	ism_tx_pool_free(s);
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
	session_destroy(s);
}
