/*
 * The daemon's JSON-RPC methods. Methods that need the network (login, logout, connections, live
 * SCSI commands, discovery) answer when the operation finished: their reply is deferred
 * (mgmt/rpc.h) while the daemon goes on serving others. See ops.c; "op.result" remains for
 * operations answered {"pending": OP}.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon/connections.h"
#include "daemon/daemon.h"
#include "daemon/fuse.h"
#include "daemon/io.h"
#include "daemon/isns.h"
#include "daemon/methods.h"
#include "daemon/nbd.h"
#include "daemon/ops.h"
#include "daemon/portals.h"
#include "daemon/session.h"
#include "daemon/session_json.h"
#include "daemon/store.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/lun.h"
#include "util/sbuf.h"

static struct dsession *session_param(struct daemon *d, json_t *params, struct rpc_error *err)
{
	json_t *v = json_object_get(params, "session_id");
	char buf[32];
	const char *id = NULL;
	if (json_is_string(v))
		id = json_string_value(v);
	else if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		id = buf;
	}
	if (!id) {
		rpc_fail(err, RPC_INVALID_PARAMS, "'session_id' is required");
		return NULL;
	}
	struct dsession *s = dsess_find(d, id);
	if (!s)
		rpc_fail(err, RPC_NOT_FOUND, "no session %s", id);
	return s;
}

static bool lun_param(json_t *params, uint64_t *lun, struct rpc_error *err)
{
	json_t *v = json_object_get(params, "lun");
	if (!v) {
		*lun = 0;
		return true;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 16383) {
		rpc_fail(err, RPC_INVALID_PARAMS, "'lun' must be an integer 0..16383");
		return false;
	}
	*lun = (uint64_t)json_integer_value(v);
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Persistent records */

static json_t *record_new(struct daemon *d, const struct dsess_opts *o)
{
	json_t *r = dsess_opts_to_json(o, true);
	json_object_set_new(r, "id", json_integer((json_int_t)d->next_record_id++));
	json_array_append(d->records, r);
	store_save_records(d);
	return r;
}

static bool record_remove(struct daemon *d, uint64_t id)
{
	for (size_t i = 0; i < json_array_size(d->records); i++) {
		json_t *r = json_array_get(d->records, i);
		if ((uint64_t)json_integer_value(json_object_get(r, "id")) == id) {
			json_array_remove(d->records, i);
			store_save_records(d);
			for (struct dsession *s = d->sessions; s; s = s->next)
				if (s->record_id == id) {
					s->record_id = 0;
					s->persistent = false;
				}
			return true;
		}
	}
	return false;
}

static json_t *record_public(json_t *r)
{
	json_t *c = json_deep_copy(r);
	if (json_object_get(c, "chap_secret"))
		json_object_set_new(c, "chap_secret", json_string("********"));
	if (json_object_get(c, "mutual_secret"))
		json_object_set_new(c, "mutual_secret", json_string("********"));
	return c;
}

/* ------------------------------------------------------------------------------------------ */
/* Sessions */

static json_t *m_login(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	struct dsess_opts o;
	char msg[256];
	if (d->stopping)
		return rpc_fail(err, RPC_CONFLICT, "the daemon is stopping");
	if (dsess_opts_from_json(&o, params, msg, sizeof(msg)) < 0)
		return rpc_fail(err, RPC_INVALID_PARAMS, "%s", msg);
	json_t *dup = json_object_get(params, "allow_duplicate");
	json_t *pers = json_object_get(params, "persistent");
	if ((dup && !json_is_boolean(dup)) || (pers && !json_is_boolean(pers))) {
		dsess_opts_free(&o);
		return rpc_fail(err, RPC_INVALID_PARAMS, "'allow_duplicate' and 'persistent' must be true or false");
	}
	if (o.mutual_user && !o.mutual_secret)
		o.mutual_from_store = true;
	if (o.mutual_from_store && !d->initiator_secret) {
		dsess_opts_free(&o);
		return rpc_fail(err, RPC_INVALID_PARAMS,
				"mutual CHAP needs the initiator secret: set it first with `isthmus chap set-secret`");
	}
	/* Only a second session of the same type is a duplicate: an informational session (a
	 * management tool's queries) beside a data session to the same target is the usual case. */
	struct dsession *other = NULL;
	for (struct dsession *e = d->sessions; e && !other; e = e->next)
		if (e->opts.type == o.type && e->state != DS_GONE && e->state != DS_LOGGING_OUT &&
		    !strcmp(e->opts.target, o.target) && (!o.portal || !strcmp(e->opts.portal, o.portal)))
			other = e;
	if (other && !json_is_true(dup)) {
		dsess_opts_free(&o);
		return rpc_fail(err, RPC_CONFLICT,
				"%s at %s already has session %s (%s); pass allow_duplicate for another session",
				other->opts.target, other->opts.portal, other->idstr, dsess_state_str(other->state));
	}
	struct dsession *s = dsess_new(d, &o, true);
	dsess_opts_free(&o);
	if (json_is_true(pers)) {
		json_t *r = record_new(d, &s->opts);
		s->record_id = (uint64_t)json_integer_value(json_object_get(r, "id"));
		s->persistent = true;
		json_decref(r);
	}
	s->login_op = dop_new(d);
	uint64_t op = s->login_op;
	dsess_start(s);
	json_t *res = dop_answer(d, op, err);
	if (res && res != RPC_DEFERRED && json_object_get(res, "pending"))
		json_object_set_new(res, "session_id", json_string(s->idstr));
	return res;
}

static json_t *m_logout(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	struct dsession *s = session_param(d, params, err);
	if (!s)
		return NULL;
	uint64_t op = dop_new(d);
	dsess_logout(s, op);
	return dop_answer(d, op, err);
}

static json_t *m_list(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	(void)err;
	struct daemon *d = ctx;
	json_t *a = json_array();
	for (struct dsession *s = d->sessions; s; s = s->next)
		json_array_append_new(a, dsess_json(s));
	return a;
}

static json_t *m_show(void *ctx, json_t *params, struct rpc_error *err)
{
	struct dsession *s = session_param(ctx, params, err);
	return s ? dsess_json(s) : NULL;
}

/*
 * Adding a connection ("portal", optional) and removing one ("cid") are both operations on a
 * session whose answer comes when the connection is up or gone.
 */
static json_t *connection_change(struct daemon *d, json_t *params, bool add, struct rpc_error *err)
{
	struct dsession *s = session_param(d, params, err);
	if (!s)
		return NULL;
	json_t *v = json_object_get(params, add ? "portal" : "cid");
	if (add && v && !json_is_string(v))
		return rpc_fail(err, RPC_INVALID_PARAMS, "'portal' must be a string");
	if (!add && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535))
		return rpc_fail(err, RPC_INVALID_PARAMS, "'cid' must be an integer 0..65535");
	uint64_t op = dop_new(d);
	char msg[256];
	int rc = add ? dsess_add_connection(s, v ? json_string_value(v) : NULL, op, msg, sizeof(msg))
		     : dsess_remove_connection(s, (uint16_t)json_integer_value(v), op, msg, sizeof(msg));
	if (rc < 0)
		dop_fail(d, op, RPC_FAILED, "%s", msg);
	return dop_answer(d, op, err);
}

static json_t *m_add_conn(void *ctx, json_t *params, struct rpc_error *err)
{
	return connection_change(ctx, params, true, err);
}

static json_t *m_remove_conn(void *ctx, json_t *params, struct rpc_error *err)
{
	return connection_change(ctx, params, false, err);
}

/* The answer of register and unregister: the session and its persistent record. */
static json_t *persistence_json(const struct dsession *s, uint64_t record_id, bool persistent)
{
	return json_pack("{s:s,s:I,s:b}", "session_id", s->idstr, "record_id", (json_int_t)record_id, "is_persistent",
			 persistent);
}

static json_t *m_register(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	struct dsession *s = session_param(d, params, err);
	if (!s)
		return NULL;
	if (!s->persistent) {
		json_t *r = record_new(d, &s->opts);
		s->record_id = (uint64_t)json_integer_value(json_object_get(r, "id"));
		s->persistent = true;
		json_decref(r);
		log_info("session %s: registered as persistent login %" PRIu64, s->idstr, s->record_id);
	}
	return persistence_json(s, s->record_id, true);
}

static json_t *m_unregister(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	struct dsession *s = session_param(d, params, err);
	if (!s)
		return NULL;
	if (!s->persistent)
		return rpc_fail(err, RPC_CONFLICT, "session %s is not persistent", s->idstr);
	uint64_t id = s->record_id;
	record_remove(d, id);
	log_info("session %s: persistent login %" PRIu64 " removed", s->idstr, id);
	return persistence_json(s, id, false);
}

/* ---- SCSI commands from the CLI: live when the session is up, else from the cache */

enum cmd_kind { CMD_INQUIRY, CMD_RC16, CMD_RC10, CMD_REPORTLUNS };

struct rpc_cmd {
	struct dio io;
	struct daemon *d;
	uint64_t op;
	enum cmd_kind kind;
	int page;
	char sid[24];
	uint8_t buf[4096];
};

static char *hexdump(const uint8_t *p, size_t n)
{
	char *s = xmalloc(n * 2 + 1);
	for (size_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	s[2 * n] = 0;
	return s;
}

static json_t *trimmed(const uint8_t *p, size_t n)
{
	char s[64];
	size_t k = 0;
	for (size_t i = 0; i < n && k < sizeof(s) - 1; i++)
		s[k++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : ' ';
	while (k && s[k - 1] == ' ')
		k--;
	s[k] = 0;
	return json_string(s);
}

static json_t *inquiry_json(const char *sid, uint64_t lun, int page, const uint8_t *p, size_t n, bool cached)
{
	json_t *j = json_object();
	json_object_set_new(j, "session_id", json_string(sid));
	json_object_set_new(j, "lun", json_integer((json_int_t)lun));
	json_object_set_new(j, "page", page < 0 ? json_null() : json_integer(page));
	json_object_set_new(j, "cached", json_boolean(cached));
	if (page < 0 && n >= 36) {
		json_object_set_new(j, "peripheral_qualifier", json_integer(p[0] >> SCSI_PQ_SHIFT));
		json_object_set_new(j, "device_type", json_string(ism_device_type_str(p[0] & SCSI_PDT_MASK)));
		json_object_set_new(j, "removable", json_boolean(p[1] & 0x80));
		json_object_set_new(j, "version", json_integer(p[2]));
		json_object_set_new(j, "vendor", trimmed(p + 8, 8));
		json_object_set_new(j, "product", trimmed(p + 16, 16));
		json_object_set_new(j, "revision", trimmed(p + 32, 4));
	} else if (page == 0x80 && n >= 4) {
		size_t len = get_be16(p + 2);
		json_object_set_new(j, "unit_serial_number", trimmed(p + 4, len < n - 4 ? len : n - 4));
	} else if (page == 0x00 && n >= 4) {
		json_t *a = json_array();
		size_t len = get_be16(p + 2);
		for (size_t i = 0; i < len && 4 + i < n; i++)
			json_array_append_new(a, json_integer(p[4 + i]));
		json_object_set_new(j, "supported_pages", a);
	}
	char *h = hexdump(p, n);
	json_object_set_new(j, "data", json_string(h));
	free(h);
	return j;
}

static json_t *capacity_json(const char *sid, uint64_t lun, uint64_t last_lba, uint32_t bs, bool cached)
{
	return json_pack("{s:s,s:I,s:I,s:i,s:I,s:b}", "session_id", sid, "lun", (json_int_t)lun, "last_lba",
			 (json_int_t)last_lba, "block_size", (int)bs, "capacity_bytes",
			 (json_int_t)((last_lba + 1) * bs), "cached", cached);
}

static void cmd_send(struct dsession *s, struct rpc_cmd *c);

static void cmd_done(struct dio *io, int e, const struct ism_scsi_result *r)
{
	struct rpc_cmd *c = io->priv;
	struct daemon *d = c->d;
	char text[300];
	if (e != 0 || !r || r->status != SCSI_GOOD) {
		if (c->kind == CMD_RC16 && e == 0) {
			/* the target may not know READ CAPACITY(16) */
			struct dsession *s = dsess_find(d, c->sid);
			if (s) {
				c->kind = CMD_RC10;
				cmd_send(s, c);
				return;
			}
		}
		if (e)
			dop_fail(d, c->op, RPC_FAILED, "command failed: %s", strerror(-e));
		else
			dop_fail(d, c->op, RPC_FAILED, "%s", ism_result_text(r, text, sizeof(text)));
		free(c);
		return;
	}
	uint32_t n = r->transferred;
	json_t *res = NULL;
	switch (c->kind) {
	case CMD_INQUIRY:
		res = inquiry_json(c->sid, io->lun, c->page, c->buf, n, false);
		break;
	case CMD_RC16:
		if (n >= 12)
			res = capacity_json(c->sid, io->lun, get_be64(c->buf), get_be32(c->buf + 8), false);
		break;
	case CMD_RC10:
		if (n >= 8)
			res = capacity_json(c->sid, io->lun, get_be32(c->buf), get_be32(c->buf + 4), false);
		break;
	case CMD_REPORTLUNS:
		if (n >= 8) {
			json_t *a = json_array();
			uint32_t cnt = get_be32(c->buf) / 8;
			for (uint32_t i = 0; i < cnt && 8 + 8 * i + 8 <= n; i++) {
				const uint8_t *e8 = c->buf + 8 + 8 * i;
				uint64_t lun = lun_value(e8);
				json_array_append_new(a, json_integer((json_int_t)lun));
			}
			res = json_pack("{s:s,s:o,s:b}", "session_id", c->sid, "luns", a, "cached", 0);
		}
		break;
	}
	if (res)
		dop_done(d, c->op, res);
	else
		dop_fail(d, c->op, RPC_FAILED, "short answer from the target (%u bytes)", n);
	free(c);
}

static void cmd_send(struct dsession *s, struct rpc_cmd *c)
{
	struct dio *io = &c->io;
	uint32_t len = c->kind == CMD_INQUIRY ? (c->page < 0 ? 96 : 1024)
		       : c->kind == CMD_RC16  ? 32
		       : c->kind == CMD_RC10  ? 8
					      : sizeof(c->buf);
	dio_prepare(io, s, io->lun, ISM_DIR_READ, c->buf, len, cmd_done, c);
	switch (c->kind) {
	case CMD_INQUIRY: io->cdb_len = ism_cdb_inquiry(io->cdb, c->page, (uint16_t)len); break;
	case CMD_RC16: io->cdb_len = ism_cdb_read_capacity16(io->cdb, 32); break;
	case CMD_RC10: io->cdb_len = ism_cdb_read_capacity10(io->cdb); break;
	case CMD_REPORTLUNS: io->cdb_len = ism_cdb_report_luns(io->cdb, sizeof(c->buf)); break;
	}
	dio_submit(s, io);
}

static bool live(struct dsession *s) { return s->state == DS_CONNECTED && s->probed; }

static json_t *scsi_method(struct daemon *d, json_t *params, enum cmd_kind kind, struct rpc_error *err)
{
	struct dsession *s = session_param(d, params, err);
	uint64_t lun = 0;
	if (!s || (kind != CMD_REPORTLUNS && !lun_param(params, &lun, err)))
		return NULL;
	int page = -1;
	json_t *pg = json_object_get(params, "page");
	if (pg && !json_is_null(pg)) {
		if (!json_is_integer(pg) || json_integer_value(pg) < 0 || json_integer_value(pg) > 255)
			return rpc_fail(err, RPC_INVALID_PARAMS, "'page' must be 0..255");
		page = (int)json_integer_value(pg);
	}
	if (!live(s)) {
		/* No session right now: answer from what the last probe saw. */
		if (kind == CMD_REPORTLUNS) {
			if (!s->probed)
				return rpc_fail(err, RPC_FAILED, "session %s is %s and has no LUN list yet", s->idstr,
						dsess_state_str(s->state));
			json_t *a = json_array();
			for (size_t i = 0; i < s->nluns; i++)
				json_array_append_new(a, json_integer((json_int_t)s->luns[i].lun));
			return json_pack("{s:s,s:o,s:b}", "session_id", s->idstr, "luns", a, "cached", 1);
		}
		struct dlun *l = dsess_lun(s, lun);
		if (l && kind == CMD_INQUIRY && page < 0 && l->have_inquiry)
			return inquiry_json(s->idstr, lun, -1, l->inquiry, l->inquiry_len, true);
		if (l && kind == CMD_INQUIRY)
			for (int k = 0; k < DMN_VPD_CACHED; k++)
				if (l->vpd[k].data && l->vpd[k].page == page)
					return inquiry_json(s->idstr, lun, page, l->vpd[k].data, l->vpd[k].len, true);
		if (l && kind != CMD_INQUIRY && l->have_capacity && l->block_size)
			return capacity_json(s->idstr, lun, l->capacity_bytes / l->block_size - 1, l->block_size, true);
		return rpc_fail(err, RPC_FAILED, "session %s is %s and this answer is not cached", s->idstr,
				dsess_state_str(s->state));
	}
	struct rpc_cmd *c = xcalloc(1, sizeof(*c));
	c->d = d;
	c->op = dop_new(d);
	c->kind = kind;
	c->page = page;
	c->io.lun = lun;
	snprintf(c->sid, sizeof(c->sid), "%s", s->idstr);
	uint64_t op = c->op;
	cmd_send(s, c);
	return dop_answer(d, op, err);
}

static json_t *m_inquiry(void *ctx, json_t *params, struct rpc_error *err)
{
	return scsi_method(ctx, params, CMD_INQUIRY, err);
}
static json_t *m_readcap(void *ctx, json_t *params, struct rpc_error *err)
{
	return scsi_method(ctx, params, CMD_RC16, err);
}
static json_t *m_reportluns(void *ctx, json_t *params, struct rpc_error *err)
{
	return scsi_method(ctx, params, CMD_REPORTLUNS, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Persistent logins */

static json_t *m_pers_list(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	(void)err;
	struct daemon *d = ctx;
	json_t *a = json_array();
	for (size_t i = 0; i < json_array_size(d->records); i++) {
		json_t *r = record_public(json_array_get(d->records, i));
		uint64_t id = (uint64_t)json_integer_value(json_object_get(r, "id"));
		const char *sid = NULL;
		for (struct dsession *s = d->sessions; s; s = s->next)
			if (s->record_id == id)
				sid = s->idstr;
		json_object_set_new(r, "session_id", sid ? json_string(sid) : json_null());
		json_array_append_new(a, r);
	}
	return a;
}

static json_t *m_pers_add(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	struct dsess_opts o;
	char msg[256];
	json_t *p = json_deep_copy(params);
	json_object_del(p, "persistent");
	json_object_del(p, "allow_duplicate");
	int rc = dsess_opts_from_json(&o, p, msg, sizeof(msg));
	json_decref(p);
	if (rc < 0)
		return rpc_fail(err, RPC_INVALID_PARAMS, "%s", msg);
	if (o.mutual_user && !o.mutual_secret)
		o.mutual_from_store = true;
	if (!o.isid_set) {
		ism_isid_derive(d->initiator_name, o.target, o.portal, o.isid);
		o.isid_set = true;
	}
	json_t *r = record_new(d, &o);
	dsess_opts_free(&o);
	json_t *out = record_public(r);
	json_decref(r);
	return out;
}

static json_t *m_pers_remove(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	json_t *id = json_object_get(params, "id");
	if (json_is_integer(id)) {
		if (!record_remove(d, (uint64_t)json_integer_value(id)))
			return rpc_fail(err, RPC_NOT_FOUND, "no persistent login %lld", (long long)json_integer_value(id));
		return json_pack("{s:i}", "removed", 1);
	}
	const char *t = json_string_value(json_object_get(params, "target"));
	const char *portal = json_string_value(json_object_get(params, "portal"));
	if (!t)
		return rpc_fail(err, RPC_INVALID_PARAMS, "give 'id' or 'target' (and optionally 'portal')");
	int n = 0;
	for (size_t i = json_array_size(d->records); i-- > 0;) {
		json_t *r = json_array_get(d->records, i);
		const char *rt = json_string_value(json_object_get(r, "target"));
		const char *rp = json_string_value(json_object_get(r, "portal"));
		if (rt && !strcmp(rt, t) && (!portal || (rp && !strcmp(rp, portal)))) {
			record_remove(d, (uint64_t)json_integer_value(json_object_get(r, "id")));
			n++;
		}
	}
	if (!n)
		return rpc_fail(err, RPC_NOT_FOUND, "no persistent login for %s", t);
	return json_pack("{s:i}", "removed", n);
}

static json_t *m_chap_secret(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	json_t *s = json_object_get(params, "secret");
	if (!json_is_string(s))
		return rpc_fail(err, RPC_INVALID_PARAMS, "'secret' is required");
	char msg[256];
	if (store_set_initiator_secret(d, json_string_value(s), msg, sizeof(msg)) < 0)
		return rpc_fail(err, RPC_INVALID_PARAMS, "%s", msg);
	log_info("initiator CHAP secret changed");
	return json_pack("{s:b}", "secret_set", 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Discovery: the blocking library helper on a thread, finished in the loop */

struct disc_job {
	struct daemon *d;
	uint64_t op;
	char *portal, *chap_user, *chap_secret, *mutual_user, *mutual_secret;
	struct ism_discovery *result;
	char err[512];
	int rc;
	int efd;
	struct loop_watch w;
	pthread_t th;
};

static void *disc_thread(void *arg)
{
	struct disc_job *j = arg;
	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = j->d->initiator_name;
	cfg.session_type = ISM_SESSION_DISCOVERY;
	cfg.chap_user = j->chap_user;
	cfg.chap_secret = j->chap_secret;
	cfg.mutual_user = j->mutual_user;
	cfg.mutual_secret = j->mutual_secret;
	cfg.login_timeout_ms = j->d->cfg.login_timeout_ms;
	j->rc = ism_discover(&cfg, j->portal, &j->result, j->err, sizeof(j->err));
	uint64_t one = 1;
	ssize_t w = write(j->efd, &one, sizeof(one));
	(void)w;
	return NULL;
}

static void disc_free(void *arg)
{
	struct disc_job *j = arg;
	if (j->efd >= 0)
		close(j->efd);
	free(j->portal);
	free(j->chap_user);
	secret_free(j->chap_secret);
	free(j->mutual_user);
	secret_free(j->mutual_secret);
	free(j);
}

static void disc_done(void *arg, uint32_t events)
{
	(void)events;
	struct disc_job *j = arg;
	struct daemon *d = j->d;
	loop_watch_del(d->loop, &j->w);
	pthread_join(j->th, NULL);
	if (j->rc < 0 || !j->result) {
		dop_fail(d, j->op, RPC_FAILED, "discovery at %s failed: %s", j->portal, j->err);
	} else {
		json_t *a = json_array();
		for (size_t i = 0; i < j->result->n; i++) {
			struct ism_target_entry *t = &j->result->targets[i];
			json_t *addrs = json_array();
			for (size_t k = 0; k < t->naddr; k++)
				json_array_append_new(addrs, json_text(t->addresses[k]));
			json_t *name = json_text(t->name); /* the target's bytes, as JSON can hold them */
			json_array_append_new(a, json_pack("{s:O,s:o}", "target", name, "addresses", addrs));
			/* remember it (once per target and portal) */
			bool known = false;
			for (size_t k = 0; k < json_array_size(d->discovered); k++) {
				json_t *e = json_array_get(d->discovered, k);
				if (json_equal(json_object_get(e, "target"), name) &&
				    !strcmp(json_string_value(json_object_get(e, "portal")) ?: "", j->portal)) {
					known = true;
					json_object_set(e, "addresses", addrs); /* the target's latest answer */
				}
			}
			/* the addresses are kept too: every portal a session of this target may fail over to */
			if (!known)
				json_array_append_new(d->discovered, json_pack("{s:O,s:s,s:O}", "target", name, "portal", j->portal,
									    "addresses", addrs));
			json_decref(name);
			for (struct dsession *s = d->sessions; s; s = s->next) {
				if (!strcmp(s->opts.target, t->name)) {
					s->discovered = true;
					portals_learn(s, addrs);
				}
			}
		}
		store_save_discovered(d);
		log_info("discovery at %s: %zu target(s)", j->portal, j->result->n);
		dop_done(d, j->op, json_pack("{s:s,s:o}", "portal", j->portal, "targets", a));
		ism_discovery_free(j->result);
	}
	loop_defer(d->loop, disc_free, j);
}

static json_t *m_discover(void *ctx, json_t *params, struct rpc_error *err)
{
	struct daemon *d = ctx;
	const char *portal = json_string_value(json_object_get(params, "portal"));
	if (!portal)
		return rpc_fail(err, RPC_INVALID_PARAMS, "'portal' is required");
	struct disc_job *j = xcalloc(1, sizeof(*j));
	j->d = d;
	j->portal = xstrdup(portal);
#define OPTSTR(k) (json_string_value(json_object_get(params, k)) ? xstrdup(json_string_value(json_object_get(params, k))) : NULL)
	j->chap_user = OPTSTR("chap_user");
	j->chap_secret = OPTSTR("chap_secret");
	j->mutual_user = OPTSTR("mutual_user");
	j->mutual_secret = OPTSTR("mutual_secret");
#undef OPTSTR
	if (j->mutual_user && !j->mutual_secret && d->initiator_secret)
		j->mutual_secret = xstrdup(d->initiator_secret);
	j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (j->efd < 0 || loop_watch_add(d->loop, &j->w, j->efd, EPOLLIN, disc_done, j) < 0) {
		disc_free(j);
		return rpc_fail(err, RPC_INTERNAL_ERROR, "cannot start the discovery");
	}
	j->op = dop_new(d);
	uint64_t op = j->op;
	if (pthread_create(&j->th, NULL, disc_thread, j) != 0) {
		loop_watch_del(d->loop, &j->w);
		dop_fail(d, op, RPC_INTERNAL_ERROR, "cannot start the discovery thread");
		disc_free(j);
	}
	return dop_answer(d, op, err);
}

static json_t *m_disc_list(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	(void)err;
	struct daemon *d = ctx;
	return json_deep_copy(d->discovered);
}

/* ------------------------------------------------------------------------------------------ */

static json_t *m_op_result(void *ctx, json_t *params, struct rpc_error *err)
{
	json_t *op = json_object_get(params, "op");
	if (!json_is_integer(op))
		return rpc_fail(err, RPC_INVALID_PARAMS, "'op' must be an integer");
	return dop_take(ctx, (uint64_t)json_integer_value(op), err);
}

static json_t *m_status(void *ctx, json_t *params, struct rpc_error *err)
{
	(void)params;
	(void)err;
	struct daemon *d = ctx;
	int n = 0;
	for (struct dsession *s = d->sessions; s; s = s->next)
		n++;
	return json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:b,s:f,s:f}", "initiator_name", d->initiator_name, "state_dir",
			 d->state_dir, "socket", d->socket_path, "devices_dir", d->cfg.devices_dir, "sessions", n,
			 "persistent_logins", (int)json_array_size(d->records), "initiator_secret_set",
			 d->initiator_secret != NULL, "reconnect_interval", d->cfg.reconnect_interval_ms / 1000.0,
			 "removal_latency", d->cfg.removal_latency_ms / 1000.0);
}

const struct rpc_method dmn_methods[] = {
	{"daemon.status", m_status, "initiator name, directories, counts"},
	{"session.login", m_login, "log in: target, portal, type, persistent, chap_user, chap_secret, ..."},
	{"session.logout", m_logout, "log a session out: session_id"},
	{"session.list", m_list, "every session with all its fields"},
	{"session.show", m_show, "one session: session_id"},
	{"session.add_connection", m_add_conn, "add a connection: session_id, portal"},
	{"session.remove_connection", m_remove_conn, "log a connection out: session_id, cid"},
	{"session.register", m_register, "make the session a persistent login: session_id"},
	{"session.unregister", m_unregister, "remove the session's persistent login: session_id"},
	{"session.inquiry", m_inquiry, "INQUIRY: session_id, lun, page"},
	{"session.readcapacity", m_readcap, "READ CAPACITY: session_id, lun"},
	{"session.reportluns", m_reportluns, "REPORT LUNS: session_id"},
	{"persistent.list", m_pers_list, "persistent logins"},
	{"persistent.add", m_pers_add, "add a persistent login (used at the next start): target, portal, type, ..."},
	{"persistent.remove", m_pers_remove, "remove a persistent login: id, or target and portal"},
	{"chap.set_secret", m_chap_secret, "the initiator's secret for mutual CHAP: secret"},
	{"discovery.run", m_discover, "SendTargets discovery: portal, chap_user, chap_secret"},
	{"discovery.isns", dmn_discover_isns, "iSNS discovery: server (ADDR[:PORT])"},
	{"discovery.list", m_disc_list, "targets found by discovery"},
	{"op.result", m_op_result, "the result of a pending operation: op"},
};
const size_t dmn_nmethods = sizeof(dmn_methods) / sizeof(dmn_methods[0]);
