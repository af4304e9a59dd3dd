/*
 * The target's management API (JSON-RPC methods): live sessions with their negotiated
 * parameters (the WT_Session view), connections and counters, session kill, targets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/rpc.h"
#include "store/store.h"
#include "target/conn.h"
#include "store/store_io.h"
#include "store/store_rbd.h"
#include "target/mgmt.h"
#include "target/server.h"
#include "target/shard.h"
#include "target/session.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sbuf.h"

/* Text from the wire as a JSON string: json_string refuses invalid UTF-8, so such bytes become '?'. */
static json_t *json_text(const char *text)
{
	json_t *j = json_string(text);
	if (j)
		return j;
	char *copy = xstrdup(text);
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static json_t *stats_json(const struct io_stats *s, uint32_t queue_depth)
{
	json_t *o = json_object();
	json_object_set_new(o, "pdus_in", json_integer((json_int_t)s->pdus_in));
	json_object_set_new(o, "pdus_out", json_integer((json_int_t)s->pdus_out));
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)s->bytes_in));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)s->bytes_out));
	json_object_set_new(o, "commands", json_integer((json_int_t)s->commands));
	json_object_set_new(o, "read_bytes", json_integer((json_int_t)s->read_bytes));
	json_object_set_new(o, "write_bytes", json_integer((json_int_t)s->write_bytes));
	json_object_set_new(o, "zero_copy_bytes", json_integer((json_int_t)s->zero_copy_bytes));
	json_object_set_new(o, "r2ts", json_integer((json_int_t)s->r2ts));
	json_object_set_new(o, "digest_errors", json_integer((json_int_t)s->digest_errors));
	json_object_set_new(o, "pdus_resent", json_integer((json_int_t)s->pdus_resent));
	json_object_set_new(o, "task_mgmt_requests", json_integer((json_int_t)s->task_mgmt));
	json_object_set_new(o, "errors", json_integer((json_int_t)s->errors));
	json_object_set_new(o, "device_waits", json_integer((json_int_t)s->device_waits));
	json_object_set_new(o, "queue_depth", json_integer(queue_depth));
	json_t *h = json_array();
	for (int i = 0; i < STATS_LAT_BUCKETS; i++) {
		json_t *b = json_object();
		if (i < STATS_LAT_BUCKETS - 1)
			json_object_set_new(b, "le_us", json_integer(stats_lat_bounds_us[i]));
		else
			json_object_set_new(b, "le_us", json_null());
		json_object_set_new(b, "count", json_integer((json_int_t)s->latency[i]));
		json_array_append_new(h, b);
	}
	json_object_set_new(o, "latency_histogram", h);
	json_object_set_new(o, "latency_sum_us", json_integer((json_int_t)s->latency_sum_us));
	return o;
}

static json_t *conn_json(const struct conn *c)
{
	json_t *o = json_object();
	json_object_set_new(o, "cid", json_integer(c->cid));
	json_object_set_new(o, "initiator_address", json_string(c->peer_addr));
	json_object_set_new(o, "initiator_port", json_integer(c->peer_port));
	json_object_set_new(o, "target_address", json_string(c->local_addr));
	json_object_set_new(o, "target_port", json_integer(c->local_port));
	json_object_set_new(o, "header_digest", json_string(c->params.header_digest ? "CRC32C" : "None"));
	json_object_set_new(o, "data_digest", json_string(c->params.data_digest ? "CRC32C" : "None"));
	json_object_set_new(o, "max_recv_data_segment_length", json_integer(c->params.max_recv_dsl));
	json_object_set_new(o, "initiator_max_recv_data_segment_length", json_integer(c->params.peer_max_recv_dsl));
	const char *state = c->phase == PHASE_FULL_FEATURE ? "full_feature"
			    : c->phase == PHASE_LOGIN      ? "login"
			    : c->phase == PHASE_LOGGED_OUT ? "logging_out"
			    : c->phase == PHASE_FAILED     ? "failed"
							   : "closed";
	json_object_set_new(o, "state", json_string(state));
	if (c->phase == PHASE_FAILED) {
		/* Level 2: its tasks wait for reassignment until then. */
		uint64_t now = loop_now_ms();
		json_object_set_new(o, "discarded_in_ms", json_integer((json_int_t)(c->recover_deadline_ms > now
											  ? c->recover_deadline_ms - now
											  : 0)));
	}
	json_object_set_new(o, "login_time", json_integer((json_int_t)c->login_time));
	json_object_set_new(o, "stats", stats_json(&c->stats, c->ntasks));
	return o;
}

static char *isid_text(const uint8_t isid[6], char buf[16])
{
	snprintf(buf, 16, "%02x%02x%02x%02x%02x%02x", isid[0], isid[1], isid[2], isid[3], isid[4], isid[5]);
	return buf;
}

json_t *mgmt_session_json(const struct session *s)
{
	json_t *o = json_object();
	char isid[16];
	const struct iscsi_params *p = &s->params;
	bool normal = s->type == SESSION_NORMAL;
	json_object_set_new(o, "tsih", json_integer(s->tsih));
	json_object_set_new(o, "isid", json_string(isid_text(s->isid, isid)));
	json_object_set_new(o, "session_type", json_string(normal ? "normal" : "discovery"));
	json_object_set_new(o, "loop", json_integer(s->shard->id));
	/* WT_Session: HostName names the target serving the session, empty for discovery. */
	json_object_set_new(o, "host_name",
			    json_string(normal ? (s->node->cfg->alias ? s->node->cfg->alias : s->node->cfg->name) : ""));
	json_object_set_new(o, "initiator_iqn", json_string(s->initiator_name));
	json_object_set_new(o, "initiator_alias", json_text(s->initiator_alias));
	json_object_set_new(o, "host_target_iqn", json_string(normal ? s->node->cfg->name : ""));
	json_object_set_new(o, "portal_group_tag", json_integer(s->tpgt));
	json_object_set_new(o, "authentication_type", json_string(s->auth_method));
	json_object_set_new(o, "created", json_integer((json_int_t)s->created));
	json_t *conns = json_array();
	struct io_stats total = s->closed;
	uint32_t depth = 0;
	for (const struct conn *c = s->conns; c; c = c->sess_next) {
		json_array_append_new(conns, conn_json(c));
		stats_add(&total, &c->stats);
		depth += c->ntasks;
	}
	json_object_set_new(o, "connections", conns);
	json_t *failed = json_array();
	for (const struct conn *c = s->failed; c; c = c->sess_next) {
		json_array_append_new(failed, conn_json(c));
		stats_add(&total, &c->stats);
		depth += c->ntasks;
	}
	json_object_set_new(o, "failed_connections", failed);
	json_object_set_new(o, "connection_recoveries", json_integer((json_int_t)s->conn_recoveries));
	json_object_set_new(o, "task_reassignments", json_integer((json_int_t)s->task_reassigns));
	json_object_set_new(o, "current_connections", json_integer(s->nconns));
	json_object_set_new(o, "max_connections", json_integer(p->max_connections));
	json_object_set_new(o, "allow_initial_r2t", json_boolean(p->initial_r2t));
	json_object_set_new(o, "allow_immediate_data", json_boolean(p->immediate_data));
	json_object_set_new(o, "max_first_data_burst_length", json_integer(p->first_burst_length));
	json_object_set_new(o, "max_data_burst_length", json_integer(p->max_burst_length));
	json_object_set_new(o, "is_data_sequence_in_order", json_boolean(p->data_sequence_in_order));
	json_object_set_new(o, "is_data_pdu_in_order", json_boolean(p->data_pdu_in_order));
	json_object_set_new(o, "default_time2wait", json_integer(p->default_time2wait));
	json_object_set_new(o, "default_time2retain", json_integer(p->default_time2retain));
	json_object_set_new(o, "max_outstanding_r2t", json_integer(p->max_outstanding_r2t));
	json_object_set_new(o, "error_recovery_level", json_integer(p->error_recovery_level));
	json_object_set_new(o, "stats", stats_json(&total, depth));
	return o;
}

static struct session *find_tsih(struct server *srv, json_t *params, struct rpc_error *err)
{
	json_t *t = json_object_get(params, "tsih");
	if (!json_is_integer(t)) {
		rpc_fail(err, RPC_INVALID_PARAMS, "params need an integer 'tsih'");
		return NULL;
	}
	for (size_t i = 0; i < srv->nsessions; i++)
		if (srv->sessions[i]->tsih == json_integer_value(t))
			return srv->sessions[i];
	rpc_fail(err, RPC_NOT_FOUND, "no session with TSIH %lld", (long long)json_integer_value(t));
	return NULL;
}

static json_t *m_session_list(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	(void)err;
	struct server *srv = ctx;
	json_t *a = json_array();
	for (size_t i = 0; i < srv->nsessions; i++)
		json_array_append_new(a, mgmt_session_json(srv->sessions[i]));
	return a;
}

static json_t *m_session_show(void *ctx, json_t *params, struct rpc_error *err)
{
	struct session *s = find_tsih(ctx, params, err);
	return s ? mgmt_session_json(s) : NULL;
}

static json_t *m_session_kill(void *ctx, json_t *params, struct rpc_error *err)
{
	struct server *srv = ctx;
	struct session *s = find_tsih(srv, params, err);
	if (!s)
		return NULL;
	json_t *g = json_object_get(params, "grace");
	json_int_t grace = json_is_integer(g) ? json_integer_value(g) : 2;
	if (grace < 0 || grace > 3600)
		return rpc_fail(err, RPC_INVALID_PARAMS, "'grace' must be 0..3600 seconds");
	log_info("management: killing session TSIH %u of '%s' (grace %lld s)", s->tsih, s->initiator_name,
		 (long long)grace);
	session_revoke(s, (unsigned)grace, "killed by the administrator");
	return json_object();
}

static json_t *m_target_list(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	(void)err;
	struct server *srv = ctx;
	json_t *a = json_array();
	for (size_t i = 0; i < srv->nnodes; i++) {
		struct tnode *n = srv->nodes[i];
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(n->cfg->name));
		json_object_set_new(o, "alias", n->cfg->alias ? json_string(n->cfg->alias) : json_null());
		json_object_set_new(o, "portal_group_tag", json_integer(n->cfg->tpgt));
		json_t *portals = json_array();
		for (size_t j = 0; j < srv->nportals; j++)
			if (srv->portals[j]->tpgt == n->cfg->tpgt && srv->portals[j]->fd >= 0)
				json_array_append_new(portals, json_string(srv->portals[j]->name));
		json_object_set_new(o, "portals", portals);
		json_t *luns = json_array();
		for (size_t j = 0; j < n->cfg->nluns; j++) {
			const struct cfg_lun *l = &n->cfg->luns[j];
			struct store *st = scsi_target_lu_store(n->scsi, l->lun);
			json_t *lo = json_object();
			json_object_set_new(lo, "lun", json_integer(l->lun));
			json_object_set_new(lo, "kind", json_string(cfg_lun_kind_name(l->kind)));
			json_object_set_new(lo, "path", l->path ? json_string(l->path) : json_null());
			json_object_set_new(lo, "size_bytes", json_integer(st ? (json_int_t)st->size : 0));
			json_object_set_new(lo, "block_size", json_integer(l->block_size ? l->block_size : 512));
			json_object_set_new(lo, "read_only", json_boolean(l->read_only));
			json_object_set_new(lo, "thin", json_boolean(l->thin));
			const char *cache = store_rbd_cache_override(st);
			json_object_set_new(lo, "librbd_cache", cache ? json_string(cache) : json_null());
			json_array_append_new(luns, lo);
		}
		json_object_set_new(o, "luns", luns);
		json_t *acl = json_array();
		for (size_t j = 0; j < n->cfg->nacl; j++)
			json_array_append_new(acl, json_string(n->cfg->acl[j]));
		json_object_set_new(o, "acl", acl);
		json_object_set_new(o, "chap", json_boolean(n->cfg->chap.user != NULL));
		json_object_set_new(o, "mutual_chap", json_boolean(n->cfg->chap.mutual_user != NULL));
		json_t *accounts = json_array();
		for (size_t j = 0; j < n->cfg->naccounts; j++)
			json_array_append_new(accounts, json_string(n->cfg->accounts[j].initiator));
		json_object_set_new(o, "chap_initiators", accounts);
		size_t nsess = 0;
		for (size_t j = 0; j < srv->nsessions; j++)
			if (srv->sessions[j]->node == n)
				nsess++;
		json_object_set_new(o, "sessions", json_integer((json_int_t)nsess));
		json_array_append_new(a, o);
	}
	return a;
}

static void engine_stats_add(struct store_engine_stats *sum, const struct store_engine_stats *e)
{
	sum->submitted += e->submitted;
	sum->completed += e->completed;
	sum->inline_completed += e->inline_completed;
	sum->uring_submitted += e->uring_submitted;
	sum->uring_enters += e->uring_enters;
	sum->worker_submitted += e->worker_submitted;
	sum->in_flight += e->in_flight;
}

static json_t *m_stats(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	(void)err;
	struct server *srv = ctx;
	struct io_stats total = {0};
	uint32_t depth = 0;
	size_t nconns = 0;
	json_t *loops = json_array();
	for (unsigned k = 0; k < srv->nshards; k++) {
		struct shard *sh = srv->shards[k];
		size_t n = 0;
		stats_add(&total, &sh->closed);
		for (struct conn *c = sh->conns; c; c = c->next) {
			stats_add(&total, &c->stats);
			depth += c->ntasks;
			n++;
		}
		nconns += n;
		json_t *l = json_object();
		json_object_set_new(l, "id", json_integer(k));
		json_object_set_new(l, "connections", json_integer((json_int_t)n));
		json_object_set_new(l, "sessions", json_integer((json_int_t)sh->nsessions));
		json_object_set_new(l, "cpu_s", json_real(shard_cpu_seconds(sh)));
		json_array_append_new(loops, l);
	}
	for (size_t i = 0; i < srv->nsessions; i++) {
		for (struct conn *c = srv->sessions[i]->failed; c; c = c->sess_next) {
			stats_add(&total, &c->stats);
			depth += c->ntasks;
		}
	}
	json_t *o = stats_json(&total, depth);
	json_object_set_new(o, "sessions", json_integer((json_int_t)srv->nsessions));
	json_object_set_new(o, "connections", json_integer((json_int_t)nconns));
	json_object_set_new(o, "loops", loops);
	if (srv->engine) {
		struct store_engine_stats es = {0};
		for (unsigned k = 0; k < srv->nshards; k++) {
			struct store_engine_stats one;
			if (!srv->shards[k]->engine)
				continue;
			store_engine_get_stats(srv->shards[k]->engine, &one);
			engine_stats_add(&es, &one);
		}
		json_object_set_new(o, "io_engine",
				    json_string(store_engine_backend_name(store_engine_backend(srv->engine))));
		json_object_set_new(o, "io_engine_reason", json_string(store_engine_backend_reason(srv->engine)));
		json_t *e = json_object();
		json_object_set_new(e, "submitted", json_integer((json_int_t)es.submitted));
		json_object_set_new(e, "completed", json_integer((json_int_t)es.completed));
		json_object_set_new(e, "inline_completed", json_integer((json_int_t)es.inline_completed));
		json_object_set_new(e, "uring_submitted", json_integer((json_int_t)es.uring_submitted));
		json_object_set_new(e, "uring_enters", json_integer((json_int_t)es.uring_enters));
		json_object_set_new(e, "worker_submitted", json_integer((json_int_t)es.worker_submitted));
		json_object_set_new(e, "in_flight", json_integer((json_int_t)es.in_flight));
		json_object_set_new(o, "io_engine_stats", e);
	}
	return o;
}

/* ---- run-time changes: clone the configuration, change the copy, apply it as a whole ---- */

typedef int (*cfg_change_fn)(struct cfg *cfg, json_t *params, char **err);

static void change_applied(struct server *srv, int rc, const char *e, void *arg)
{
	struct rpc_error err = {0};
	(void)srv;
	if (rc < 0) {
		rpc_fail(&err, RPC_FAILED, "%s", e ? e : "cannot apply the change");
		rpc_complete(arg, NULL, &err);
		return;
	}
	rpc_complete(arg, json_object(), NULL);
}

static json_t *apply_change(struct server *srv, json_t *params, struct rpc_error *err, cfg_change_fn fn)
{
	char *e = NULL;
	struct cfg *copy = cfg_clone(srv->cfg, &e);
	if (!copy) {
		rpc_fail(err, RPC_INTERNAL_ERROR, "%s", e);
		free(e);
		return NULL;
	}
	if (fn(copy, params, &e) < 0) {
		rpc_fail(err, RPC_INVALID_PARAMS, "%s", e ? e : "invalid parameters");
		free(e);
		cfg_free(copy);
		free(copy);
		return NULL;
	}
	struct rpc_pending *p = rpc_defer(srv->rpc);
	if (p) {
		/* Answered when the change is in: an RBD image it adds opens on a worker first. */
		server_apply_config_async(srv, copy, change_applied, p);
		return RPC_DEFERRED;
	}
	if (server_apply_config(srv, copy, &e) < 0) {
		rpc_fail(err, RPC_FAILED, "%s", e);
		free(e);
		return NULL;
	}
	return json_object();
}

static const char *pstr(json_t *params, const char *key)
{
	return json_string_value(json_object_get(params, key));
}

static int need_str(json_t *params, const char *key, const char **out, char **err)
{
	*out = pstr(params, key);
	if (!*out) {
		*err = xasprintf("params need a string '%s'", key);
		return -1;
	}
	return 0;
}

static struct cfg_target *need_target(struct cfg *cfg, json_t *params, char **err)
{
	const char *name;
	if (need_str(params, "target", &name, err) < 0)
		return NULL;
	struct cfg_target *t = cfg_find_target(cfg, name);
	if (!t)
		*err = xasprintf("no target %s", name);
	return t;
}

static int need_lun(json_t *params, unsigned *lun, char **err)
{
	json_t *l = json_object_get(params, "lun");
	if (!json_is_integer(l) || json_integer_value(l) < 0 || json_integer_value(l) > 16383) {
		*err = xstrdup("params need an integer 'lun' (0..16383)");
		return -1;
	}
	*lun = (unsigned)json_integer_value(l);
	return 0;
}

static int ch_target_add(struct cfg *cfg, json_t *params, char **err)
{
	const char *name;
	if (need_str(params, "name", &name, err) < 0)
		return -1;
	json_t *g = json_object_get(params, "portal_group");
	if (g && (!json_is_integer(g) || json_integer_value(g) < 1 || json_integer_value(g) > 65535)) {
		*err = xstrdup("'portal_group' must be 1..65535");
		return -1;
	}
	struct cfg_target *t = cfg_add_target(cfg, name, err);
	if (!t)
		return -1;
	if (pstr(params, "alias"))
		t->alias = xstrdup(pstr(params, "alias"));
	if (g)
		t->tpgt = (uint16_t)json_integer_value(g);
	return 0;
}

static int ch_target_remove(struct cfg *cfg, json_t *params, char **err)
{
	const char *name;
	return need_str(params, "name", &name, err) < 0 ? -1 : cfg_remove_target(cfg, name, err);
}

static int ch_lun_add(struct cfg *cfg, json_t *params, char **err)
{
	const char *spec;
	struct cfg_target *t = need_target(cfg, params, err);
	if (!t || need_str(params, "spec", &spec, err) < 0)
		return -1;
	unsigned lun = 0;
	bool numbered = json_object_get(params, "lun") != NULL;
	if (numbered && need_lun(params, &lun, err) < 0)
		return -1;
	return cfg_add_lun(cfg, t, numbered ? (int)lun : -1, spec, err);
}

static int ch_lun_remove(struct cfg *cfg, json_t *params, char **err)
{
	unsigned lun;
	struct cfg_target *t = need_target(cfg, params, err);
	if (!t || need_lun(params, &lun, err) < 0)
		return -1;
	return cfg_remove_lun(t, lun, err);
}

static int ch_lun_resize(struct cfg *cfg, json_t *params, char **err)
{
	unsigned lun;
	const char *size;
	struct cfg_target *t = need_target(cfg, params, err);
	if (!t || need_lun(params, &lun, err) < 0 || need_str(params, "size", &size, err) < 0)
		return -1;
	uint64_t bytes;
	if (parse_size(size, &bytes) < 0 || bytes == 0) {
		*err = xasprintf("bad size '%s'", size);
		return -1;
	}
	for (size_t i = 0; i < t->nluns; i++) {
		struct cfg_lun *l = &t->luns[i];
		if (l->lun != lun)
			continue;
		if (l->kind == LUN_BLOCK) {
			*err = xstrdup("a block device LUN has the size of its device");
			return -1;
		}
		if (l->kind == LUN_RBD) {
			*err = xstrdup("an RBD LUN has the size of its image: `rbd resize` it, the LUN follows");
			return -1;
		}
		if (bytes % (l->block_size ? l->block_size : 512)) {
			*err = xstrdup("the size must be a multiple of the block size");
			return -1;
		}
		l->size = bytes;
		return 0;
	}
	*err = xasprintf("target %s has no LUN %u", t->name, lun);
	return -1;
}

static int ch_acl_add(struct cfg *cfg, json_t *params, char **err)
{
	const char *who;
	struct cfg_target *t = need_target(cfg, params, err);
	if (!t || need_str(params, "initiator", &who, err) < 0)
		return -1;
	return cfg_acl_add(t, who, err);
}

static int ch_acl_remove(struct cfg *cfg, json_t *params, char **err)
{
	const char *who;
	struct cfg_target *t = need_target(cfg, params, err);
	if (!t || need_str(params, "initiator", &who, err) < 0)
		return -1;
	return cfg_acl_remove(t, who, err);
}

static int ch_chap_set(struct cfg *cfg, json_t *params, char **err)
{
	struct cfg_chap *c;
	if (json_is_true(json_object_get(params, "discovery"))) {
		c = &cfg->discovery_chap;
	} else {
		struct cfg_target *t = need_target(cfg, params, err);
		if (!t)
			return -1;
		const char *initiator = pstr(params, "initiator");
		if (initiator)
			return cfg_set_initiator_chap(t, initiator, pstr(params, "user"), pstr(params, "secret"),
						      pstr(params, "mutual_user"), pstr(params, "mutual_secret"), err);
		c = &t->chap;
	}
	return cfg_set_chap(c, pstr(params, "user"), pstr(params, "secret"), pstr(params, "mutual_user"),
			    pstr(params, "mutual_secret"), err);
}

static int ch_portal_add(struct cfg *cfg, json_t *params, char **err)
{
	const char *listen;
	if (need_str(params, "listen", &listen, err) < 0)
		return -1;
	json_t *g = json_object_get(params, "portal_group");
	json_int_t tag = json_is_integer(g) ? json_integer_value(g) : 1;
	if (tag < 1 || tag > 65535) {
		*err = xstrdup("'portal_group' must be 1..65535");
		return -1;
	}
	return cfg_add_listen_group(cfg, listen, (uint16_t)tag, err);
}

static int ch_portal_remove(struct cfg *cfg, json_t *params, char **err)
{
	const char *listen;
	return need_str(params, "listen", &listen, err) < 0 ? -1 : cfg_remove_listen(cfg, listen, err);
}

#define CHANGE_METHOD(name, fn)                                                                    \
	static json_t *name(void *ctx, json_t *params, struct rpc_error *err)                     \
	{                                                                                          \
		return apply_change(ctx, params, err, fn);                                          \
	}
CHANGE_METHOD(m_target_add, ch_target_add)
CHANGE_METHOD(m_target_remove, ch_target_remove)
CHANGE_METHOD(m_lun_add, ch_lun_add)
CHANGE_METHOD(m_lun_remove, ch_lun_remove)
CHANGE_METHOD(m_lun_resize, ch_lun_resize)
CHANGE_METHOD(m_acl_add, ch_acl_add)
CHANGE_METHOD(m_acl_remove, ch_acl_remove)
CHANGE_METHOD(m_chap_set, ch_chap_set)
CHANGE_METHOD(m_portal_add, ch_portal_add)
CHANGE_METHOD(m_portal_remove, ch_portal_remove)

static json_t *m_config_save(void *ctx, json_t *params, struct rpc_error *err)
{
	struct server *srv = ctx;
	const char *path = pstr(params, "path");
	if (!path)
		path = srv->cfg->source;
	if (!path)
		return rpc_fail(err, RPC_INVALID_PARAMS, "the target has no configuration file; give 'path'");
	char *e = NULL;
	if (cfg_save(srv->cfg, path, &e) < 0) {
		rpc_fail(err, RPC_FAILED, "%s", e);
		free(e);
		return NULL;
	}
	log_info("management: configuration saved to %s", path);
	json_t *r = json_object();
	json_object_set_new(r, "path", json_string(path));
	return r;
}

static json_t *m_config_reload(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	struct server *srv = ctx;
	if (!srv->cfg->source)
		return rpc_fail(err, RPC_CONFLICT, "the target was started without --config");
	server_reload(srv);
	return json_object();
}

/*
 * Every method runs with the other event loops paused: they read or change sessions,
 * connections and LUs that those loops own. Management is rare; the I/O path takes no lock.
 */
#define PAUSED(fn)                                                                   \
	static json_t *fn##_paused(void *ctx, json_t *params, struct rpc_error *err) \
	{                                                                            \
		server_pause_shards(ctx);                                            \
		json_t *r = fn(ctx, params, err);                                    \
		server_resume_shards(ctx);                                           \
		return r;                                                            \
	}
PAUSED(m_acl_add)
PAUSED(m_acl_remove)
PAUSED(m_chap_set)
PAUSED(m_lun_add)
PAUSED(m_lun_remove)
PAUSED(m_lun_resize)
PAUSED(m_session_kill)
PAUSED(m_session_list)
PAUSED(m_session_show)
PAUSED(m_stats)
PAUSED(m_target_add)
PAUSED(m_target_list)
PAUSED(m_target_remove)

static const struct rpc_method target_methods[] = {
	{"session.list", m_session_list_paused, "every session with its negotiated parameters, connections and counters"},
	{"session.show", m_session_show_paused, "one session: {tsih}"},
	{"session.kill", m_session_kill_paused, "ask a session to log out, then drop it: {tsih, grace (s, default 2)}"},
	{"target.list", m_target_list_paused, "targets with portals, LUNs, access lists"},
	{"stats", m_stats_paused, "target-wide counters"},
	{"target.add", m_target_add_paused, "new target: {name, alias?, portal_group?}"},
	{"target.remove", m_target_remove_paused, "remove a target and end its sessions: {name}"},
	{"lun.add", m_lun_add_paused, "new LUN: {target, spec, lun?}"},
	{"lun.remove", m_lun_remove_paused, "remove a LUN (REPORTED LUNS DATA HAS CHANGED): {target, lun}"},
	{"lun.resize", m_lun_resize_paused, "grow or shrink a LUN (CAPACITY DATA HAS CHANGED): {target, lun, size}"},
	{"acl.add", m_acl_add_paused, "allow an initiator: {target, initiator}"},
	{"acl.remove", m_acl_remove_paused, "stop allowing an initiator (new logins refused): {target, initiator}"},
	{"chap.set", m_chap_set_paused,
	 "CHAP credentials: {target [, initiator] | discovery: true, user?, secret?, mutual_user?, mutual_secret?}; "
	 "no user = off (with initiator: that initiator's own account, removed without user)"},
	{"portal.add", m_portal_add, "listen on another portal: {listen, portal_group?}"},
	{"portal.remove", m_portal_remove, "stop listening on a portal: {listen}"},
	{"config.save", m_config_save, "write the running configuration (atomically, 0600): {path?}"},
	{"config.reload", m_config_reload, "reload the configuration file, as SIGHUP does"},
};

int mgmt_start(struct server *srv, const char *path, char **err)
{
	srv->rpc = rpc_server_new(srv->loop, path, target_methods, sizeof(target_methods) / sizeof(target_methods[0]),
				  srv, err);
	if (!srv->rpc)
		return -1;
	log_info("management socket %s", path);
	return 0;
}

void mgmt_stop(struct server *srv)
{
	rpc_server_free(srv->rpc);
	srv->rpc = NULL;
}
