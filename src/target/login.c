/*
 * The target side of login (RFC 7143 section 6.3 and 11.12-11.13): a state machine over the
 * security and operational stages, with the exact status class and detail for each refusal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/text_join.h"
#include "target/conn.h"
#include "target/erl2.h"
#include "target/isns.h"
#include "target/login.h"
#include "target/server.h"
#include "target/session.h"
#include "util/iscsi_name.h"
#include "util/log.h"
#include "util/sbuf.h"

static struct login_state *login_get(struct conn *c)
{
	if (!c->login) {
		c->login = xcalloc(1, sizeof(*c->login));
		c->login->stage = -1;
	}
	return c->login;
}

void login_free(struct conn *c)
{
	if (!c->login)
		return;
	struct login_state *ls = c->login;
	sbuf_free(&ls->pending);
	sbuf_free(&ls->reply);
	free(ls->auth_user);
	free(ls->auth_mutual_user);
	secret_free(ls->auth_secret);
	secret_free(ls->auth_mutual_secret);
	/* CHAP state holds the challenge; wipe it with the rest. */
	memset(c->login, 0, sizeof(*c->login));
	free(c->login);
	c->login = NULL;
}

/* Login PDUs carry at most the RFC default MaxRecvDataSegmentLength before negotiation ends. */
#define LOGIN_MAX_DSL 8192u
/* What one login may make the target say, over all its continued responses. */
#define LOGIN_MAX_REPLY (64u * 1024u)
/* What one login request may say, over all the PDUs it is continued in. */
#define LOGIN_MAX_REQUEST (64u * 1024u)

/* The session a joining login names, found again each time: it may have ended meanwhile. */
static struct session *login_joined_session(const struct conn *c)
{
	const struct login_state *ls = c->login;
	if (ls->tsih == 0 || ls->phase < LOGIN_AUTH_NEEDED)
		return NULL;
	return server_find_session(c->srv, c->shard, ls->initiator_name, ls->isid, ls->tsih, NULL);
}

/*
 * A login whose session (or the one it would reinstate) lives on another loop: the connection
 * was not moved there because its first PDU did not say enough (InitiatorName in a continued
 * PDU). The initiator is asked to try again, and its new connection is routed by its first PDU.
 */
static bool login_session_elsewhere(const struct conn *c)
{
	const struct login_state *ls = c->login;
	bool elsewhere = false;
	if (ls->tsih)
		server_find_session(c->srv, c->shard, ls->initiator_name, ls->isid, ls->tsih, &elsewhere);
	else if (ls->session_type == SESSION_NORMAL)
		server_find_session_isid(c->srv, c->shard, ls->initiator_name, ls->isid, ls->target_name, &elsewhere);
	if (elsewhere)
		log_warn("%s:%u: login of '%s' for a session on another event loop: answered 'service unavailable'",
			 c->peer_addr, c->peer_port, ls->initiator_name);
	return elsewhere;
}

void login_window(struct conn *c, uint32_t *expcmdsn, uint32_t *maxcmdsn)
{
	const struct login_state *ls = c->login;
	/* The window the session will really have: a new one starts with every slot free. */
	struct session *s = ls ? login_joined_session(c) : NULL;
	if (s) {
		*expcmdsn = s->exp_cmdsn;
		*maxcmdsn = session_max_cmdsn(s);
	} else if (ls) {
		*expcmdsn = ls->cmdsn;
		*maxcmdsn = ls->cmdsn + session_queue_depth(c->srv) - 1;
	} else {
		*expcmdsn = *maxcmdsn = 0;
	}
}

/* One Login Response PDU; text is the part of the reply it carries. */
static void login_send_pdu(struct conn *c, bool transit, bool cont, int csg, int nsg, uint16_t status,
			   const uint8_t *text, uint32_t len, uint16_t tsih)
{
	struct login_state *ls = c->login;
	struct bhs b = {0};
	b.opcode = OP_LOGIN_RESP;
	b.final = transit;
	b.itt = ls->itt;
	b.login.csg = (uint8_t)csg;
	b.login.nsg = transit ? (uint8_t)nsg : 0;
	b.login.cont = cont;
	b.login.version_max = 0;
	b.login.version_min = 0;
	memcpy(b.login.isid, ls->isid, 6);
	b.login.tsih = tsih;
	b.login.status_class = (uint8_t)(status >> 8);
	b.login.status_detail = (uint8_t)status;
	uint8_t *owned = NULL;
	if (len) {
		owned = xmalloc(len);
		memcpy(owned, text, len);
	}
	conn_send_pdu(c, &b, owned, len, NULL, owned);
}

/* The next part of a reply too long for one PDU (C bit set while more follows). */
static void login_send_reply_part(struct conn *c, int csg, uint16_t tsih)
{
	struct login_state *ls = c->login;
	size_t left = ls->reply.len - ls->reply_off;
	size_t n = left > LOGIN_MAX_DSL ? LOGIN_MAX_DSL : left;
	bool more = n < left;
	bool transit = !more && ls->reply_transit;
	login_send_pdu(c, transit, more, csg, ls->reply_nsg, LOGIN_OK, ls->reply.data + ls->reply_off, (uint32_t)n,
		       tsih);
	ls->reply_off += n;
	if (!more) {
		sbuf_reset(&ls->reply);
		ls->reply_off = 0;
	}
}

static bool login_reply_pending(const struct login_state *ls) { return ls->reply_off > 0; }

static size_t text_size(const struct text_list *kv)
{
	size_t n = 0;
	for (size_t i = 0; kv && i < kv->n; i++)
		n += strlen(kv->kv[i].key) + 1 + strlen(kv->kv[i].value) + 1;
	return n;
}

/* A response that fits one PDU (transit allowed) or the first of several (never transit). */
static void login_send(struct conn *c, bool transit, int csg, int nsg, uint16_t status, const struct text_list *kv,
		       uint16_t tsih)
{
	struct login_state *ls = c->login;
	sbuf_reset(&ls->reply);
	ls->reply_off = 0;
	if (kv && kv->n)
		text_encode(kv, &ls->reply);
	if (ls->reply.len <= LOGIN_MAX_DSL) {
		login_send_pdu(c, transit, false, csg, nsg, status, ls->reply.data, (uint32_t)ls->reply.len, tsih);
		sbuf_reset(&ls->reply);
		return;
	}
	ls->reply_transit = false;
	ls->reply_nsg = 0;
	login_send_reply_part(c, csg, tsih);
}

static void login_fail(struct conn *c, int csg, uint16_t status, const char *why)
{
	struct login_state *ls = c->login;
	log_warn("login refused: initiator '%s' at %s:%u, target '%s': %s (status 0x%04x): %s",
		 ls->initiator_name[0] ? ls->initiator_name : "?", c->peer_addr, c->peer_port,
		 ls->target_name[0] ? ls->target_name : (ls->session_type == SESSION_DISCOVERY ? "(discovery)" : "?"),
		 login_status_str(status), status, why);
	login_send(c, false, csg, 0, status, NULL, 0);
	/* Close once the response has gone out. */
	c->phase = PHASE_LOGGED_OUT;
}

static bool list_has(const char *list, const char *item)
{
	size_t il = strlen(item);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == il && memcmp(p, item, l) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

/* The CHAP account an initiator must prove: its own ACL entry's, else the target's or discovery's. */
static const struct cfg_chap *login_chap_config(const struct conn *c, const struct tnode *node)
{
	const struct login_state *ls = c->login;
	if (ls->session_type == SESSION_DISCOVERY)
		return &c->srv->cfg->discovery_chap;
	return cfg_target_chap_for(node->cfg, ls->initiator_name);
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static bool same_text(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/*
 * Access checks against the running configuration: the target exists on this portal group,
 * admits the initiator, and (when checking again after a reconfiguration) still asks for the
 * CHAP account this login is proving. Returns status.
 */
static uint16_t login_check_access(struct conn *c, bool recheck, const char **why)
{
	struct login_state *ls = c->login;
	if (ls->session_type != SESSION_NORMAL) {
		if (recheck && !same_text(c->srv->cfg->discovery_chap.user, ls->auth_user)) {
			*why = "discovery CHAP changed during the login";
			return LOGIN_AUTH_FAILED;
		}
		return LOGIN_OK;
	}
	struct tnode *node = server_find_node(c->srv, ls->target_name);
	if (!node || node->cfg->tpgt != c->tpgt) {
		*why = node ? "target is not served through this portal group" : "no such target";
		return LOGIN_NOT_FOUND;
	}
	if (c->srv->shutting_down) {
		*why = "target is shutting down";
		return LOGIN_SERVICE_UNAVAILABLE;
	}
	if (!node_allows(node, ls->initiator_name)) {
		*why = "initiator is not in the target's access list";
		return LOGIN_AUTHZ_FAILED;
	}
	uint16_t isns_st = isns_target_access(c->srv, node->cfg->name, ls->initiator_name, why);
	if (isns_st != LOGIN_OK)
		return isns_st;
	if (recheck) {
		const struct cfg_chap *chap = login_chap_config(c, node);
		if (!same_text(chap->user, ls->auth_user) || !same_text(chap->secret, ls->auth_secret) ||
		    !same_text(chap->mutual_user, ls->auth_mutual_user) ||
		    !same_text(chap->mutual_secret, ls->auth_mutual_secret)) {
			*why = "the initiator's CHAP account changed during the login";
			return LOGIN_AUTH_FAILED;
		}
	}
	return LOGIN_OK;
}

/* A joining login's session: it exists, is this initiator's, and has room for one more connection. */
static uint16_t login_check_join(struct conn *c, const char **why)
{
	struct login_state *ls = c->login;
	struct session *s = login_joined_session(c);
	if (!s || s->type != ls->session_type ||
	    (s->node && strcmp(s->node->cfg->name, ls->target_name) != 0)) {
		*why = "TSIH does not name a session of this initiator";
		return LOGIN_SESSION_DOES_NOT_EXIST;
	}
	/* A connection may only join a session authenticated with the same account (or none). */
	if (!same_text(s->auth_user, ls->auth_user)) {
		*why = "the session was authenticated with another CHAP account";
		return LOGIN_AUTH_FAILED;
	}
	uint32_t others = 0;
	for (struct conn *o = s->conns; o; o = o->sess_next)
		if (o->cid != ls->cid)
			others++;
	if (others >= s->params.max_connections) {
		*why = "session already has MaxConnections connections";
		return LOGIN_TOO_MANY_CONNECTIONS;
	}
	return LOGIN_OK;
}

/* First request of the login: who is asking, for what, and may they. Returns status. */
static uint16_t login_identify(struct conn *c, const struct text_list *in, const char **why)
{
	struct login_state *ls = c->login;
	const char *iname = text_get(in, "InitiatorName");
	if (!iname) {
		*why = "InitiatorName missing from the first login request";
		return LOGIN_MISSING_PARAMETER;
	}
	snprintf(ls->initiator_name, sizeof(ls->initiator_name), "%s", iname);
	char nwhy[128];
	if (strlen(iname) >= sizeof(ls->initiator_name) || !iscsi_name_valid(iname, nwhy, sizeof(nwhy))) {
		*why = "InitiatorName is not a valid iSCSI name";
		return LOGIN_INITIATOR_ERROR;
	}
	const char *alias = text_get(in, "InitiatorAlias");
	if (alias)
		snprintf(ls->initiator_alias, sizeof(ls->initiator_alias), "%s", alias);
	const char *stype = text_get(in, "SessionType");
	if (!stype || strcmp(stype, "Normal") == 0) {
		ls->session_type = SESSION_NORMAL;
	} else if (strcmp(stype, "Discovery") == 0) {
		ls->session_type = SESSION_DISCOVERY;
	} else {
		*why = "unknown SessionType";
		return LOGIN_SESSION_TYPE_UNSUPPORTED;
	}
	struct tnode *node = NULL;
	if (ls->session_type == SESSION_NORMAL) {
		const char *tname = text_get(in, "TargetName");
		if (!tname) {
			*why = "TargetName missing from a normal session's login";
			return LOGIN_MISSING_PARAMETER;
		}
		if (strlen(tname) >= sizeof(ls->target_name)) {
			*why = "no such target";
			return LOGIN_NOT_FOUND;
		}
		snprintf(ls->target_name, sizeof(ls->target_name), "%s", tname);
	}
	uint16_t st = login_check_access(c, false, why);
	if (st != LOGIN_OK)
		return st;
	if (ls->session_type == SESSION_NORMAL)
		node = server_find_node(c->srv, ls->target_name);
	const struct cfg_chap *chap = login_chap_config(c, node);
	ls->auth_user = dup_or_null(chap->user);
	ls->auth_secret = dup_or_null(chap->secret);
	ls->auth_mutual_user = dup_or_null(chap->mutual_user);
	ls->auth_mutual_secret = dup_or_null(chap->mutual_secret);
	ls->cred = (struct chap_credentials){.user = ls->auth_user,
					     .secret = ls->auth_secret,
					     .mutual_user = ls->auth_mutual_user,
					     .mutual_secret = ls->auth_mutual_secret};
	ls->cfg_generation = c->srv->cfg_generation;
	if (login_session_elsewhere(c)) {
		*why = "the session is served by another event loop";
		return LOGIN_SERVICE_UNAVAILABLE;
	}
	if (ls->tsih != 0) {
		st = login_check_join(c, why);
		if (st != LOGIN_OK)
			return st;
	}
	struct iscsi_params want;
	if (node) {
		/* ErrorRecoveryLevel in it is max-error-recovery-level, or a lower key (reconfig.c). */
		want = node->want;
	} else {
		params_defaults(&want);
		want.max_recv_dsl = 65536;
	}
	want.session_type = ls->session_type;
	negotiator_init(&ls->neg, &want, ls->tsih == 0, true);
	struct session *s = login_joined_session(c);
	if (s)
		ls->neg.result = s->params;
	ls->neg.result.session_type = ls->session_type;
	return LOGIN_OK;
}

/* Security stage keys: AuthMethod, then the CHAP exchange, moving ls->phase on. Returns the status. */
static uint16_t login_security(struct conn *c, const struct text_list *in, struct text_list *out, const char **why)
{
	struct login_state *ls = c->login;
	bool need_chap = ls->auth_user != NULL;
	const char *am = text_get(in, "AuthMethod");
	if (am) {
		if (need_chap && list_has(am, "CHAP")) {
			text_add(out, "AuthMethod", "CHAP");
			ls->phase = LOGIN_CHAP;
			chap_target_init(&ls->chap, &ls->cred);
		} else if (!need_chap && list_has(am, "None")) {
			text_add(out, "AuthMethod", "None");
			ls->phase = LOGIN_AUTHENTICATED;
		} else {
			text_add(out, "AuthMethod", "Reject");
			*why = need_chap ? "target requires CHAP, initiator does not offer it"
					 : "initiator offers no authentication method the target accepts";
			return LOGIN_AUTH_FAILED;
		}
	} else if (ls->phase == LOGIN_AUTH_NEEDED && !need_chap) {
		/* No AuthMethod offered: the default None applies, fine when no CHAP is required. */
		ls->phase = LOGIN_AUTHENTICATED;
	}
	bool has_chap_keys = false;
	for (size_t i = 0; i < in->n; i++)
		if (strncmp(in->kv[i].key, "CHAP_", 5) == 0)
			has_chap_keys = true;
	if (has_chap_keys) {
		if (ls->phase != LOGIN_CHAP) {
			*why = "CHAP keys without AuthMethod=CHAP";
			return LOGIN_INITIATOR_ERROR;
		}
		static _Thread_local char reason[160]; /* *why points here: one per loop */
		enum chap_result r = chap_target_step(&ls->chap, in, out, reason, sizeof(reason));
		switch (r) {
		case CHAP_CONTINUE:
			break;
		case CHAP_DONE:
			ls->phase = LOGIN_AUTHENTICATED;
			break;
		case CHAP_AUTH_FAIL:
			*why = reason;
			return LOGIN_AUTH_FAILED;
		case CHAP_PROTO_FAIL:
			*why = reason;
			return LOGIN_INITIATOR_ERROR;
		}
	}
	return LOGIN_OK;
}

/*
 * The initiator asked to enter full feature phase and may: check again what may have changed
 * since the login began (the session it joins, the configuration), then answer and switch.
 */
static void login_complete(struct conn *c, struct text_list *out, int csg)
{
	struct login_state *ls = c->login;
	const char *why = NULL;
	uint16_t st = LOGIN_OK;
	if (ls->cfg_generation != c->srv->cfg_generation)
		st = login_check_access(c, true, &why);
	if (st == LOGIN_OK && login_session_elsewhere(c)) {
		st = LOGIN_SERVICE_UNAVAILABLE;
		why = "the session is served by another event loop";
	}
	if (st == LOGIN_OK && ls->tsih != 0)
		st = login_check_join(c, &why);
	if (st != LOGIN_OK) {
		login_fail(c, csg, st, why);
		return;
	}
	negotiate_finish(&ls->neg, out);
	if (text_size(out) > LOGIN_MAX_DSL) {
		/* Too much to say in the last response: say it now, continued, and let the initiator ask
		 * to transit again (a target may answer T=0 to a T=1 request). */
		login_send(c, false, csg, 0, LOGIN_OK, out, 0);
		return;
	}
	struct session *s = login_joined_session(c);
	struct conn *replaced = NULL;
	uint16_t tsih;
	if (!s) {
		if (ls->session_type == SESSION_NORMAL) {
			/* Session reinstatement: a new leading login with the same initiator port ends the old session. */
			struct session *old =
				server_find_session_isid(c->srv, c->shard, ls->initiator_name, ls->isid, ls->target_name, NULL);
			if (old)
				session_close(old, "reinstated by a new login with the same ISID");
		}
		tsih = server_alloc_tsih(c->srv);
		if (!tsih) {
			login_fail(c, csg, LOGIN_OUT_OF_RESOURCES, "no free TSIH");
			return;
		}
	} else {
		tsih = s->tsih;
		for (struct conn *o = s->conns; o; o = o->sess_next)
			if (o->cid == ls->cid && o != c)
				replaced = o;
	}
	login_send(c, true, csg, STAGE_FULL_FEATURE, LOGIN_OK, out, tsih);
	/* Digests and the new limits apply from the next PDU on, not to this response. */
	struct iscsi_params p = ls->neg.result;
	c->cid = ls->cid;
	if (!s) {
		s = session_create(c->srv, c, tsih);
		s->params = p;
	}
	c->params = s->params;
	c->params.header_digest = p.header_digest;
	c->params.data_digest = p.data_digest;
	c->params.max_recv_dsl = p.max_recv_dsl;
	c->params.peer_max_recv_dsl = p.peer_max_recv_dsl;
	c->phase = PHASE_FULL_FEATURE;
	session_add_conn(s, c);
	/* The connection it reinstates goes only now: were it the session's only one, closing it
	 * first would end the session the new connection is joining. */
	if (replaced)
		conn_close(replaced, "connection reinstated with the same CID");
	/* At level 2 the reinstated (or failed) connection's tasks wait for TASK REASSIGN here. */
	if (s->nfailed)
		erl2_login_joined(s, c, ls->expstatsn);
	char loop[24] = "";
	if (c->srv->nshards > 1)
		snprintf(loop, sizeof(loop), ", loop %u", c->shard->id);
	log_info("login: initiator '%s' at %s:%u, %s session to '%s', TSIH %u, CID %u, %u connection(s)%s%s%s",
		 ls->initiator_name, c->peer_addr, c->peer_port,
		 ls->session_type == SESSION_DISCOVERY ? "discovery" : "normal",
		 ls->session_type == SESSION_DISCOVERY ? "-" : ls->target_name, tsih, c->cid, s->nconns,
		 c->params.header_digest ? ", header digest" : "", c->params.data_digest ? ", data digest" : "", loop);
	login_free(c);
}

/*
 * A Login Request whose header breaks a rule of RFC 7143 (T and C both set: 11.12.2 says C MUST
 * be 0 when T is 1) is a protocol error of the initiator: answered with a Login reject, status
 * 0x0200, so the initiator learns why before the connection closes.
 */
void login_refuse_header(struct conn *c, const struct bhs *b, const char *why)
{
	struct login_state *ls = login_get(c);
	if (ls->phase == LOGIN_AWAIT_FIRST)
		memcpy(ls->isid, b->login.isid, 6);
	ls->itt = b->itt;
	login_fail(c, ls->stage < 0 ? b->login.csg : ls->stage, LOGIN_INITIATOR_ERROR, why);
}

void login_handle(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct login_state *ls = login_get(c);
	if (b->opcode != OP_LOGIN_REQ) {
		/* Only login PDUs are legal before full feature phase. */
		if (ls->phase == LOGIN_AWAIT_FIRST) {
			conn_close(c, "first PDU is not a Login Request");
			return;
		}
		login_fail(c, ls->stage, LOGIN_INVALID_DURING_LOGIN, "non-login PDU during login");
		return;
	}
	int csg = b->login.csg;
	if (ls->phase == LOGIN_AWAIT_FIRST) {
		ls->phase = LOGIN_AWAIT_NAMES;
		memcpy(ls->isid, b->login.isid, 6);
		ls->tsih = b->login.tsih;
		ls->cid = b->login.cid;
		ls->cmdsn = b->login.cmdsn;
		ls->version_max = b->login.version_max;
		c->statsn = b->login.expstatsn;
		ls->expstatsn = b->login.expstatsn;
		ls->itt = b->itt;
		ls->stage = csg;
		if (b->login.version_min > 0) {
			login_fail(c, csg, LOGIN_UNSUPPORTED_VERSION, "initiator requires an iSCSI version above 0");
			return;
		}
	} else {
		ls->itt = b->itt;
		c->exp_statsn = b->login.expstatsn;
		if (memcmp(ls->isid, b->login.isid, 6) != 0 || ls->tsih != b->login.tsih || ls->cid != b->login.cid) {
			login_fail(c, ls->stage, LOGIN_INITIATOR_ERROR, "ISID, TSIH or CID changed during login");
			return;
		}
	}
	if (csg != ls->stage || csg == 2 || csg == STAGE_FULL_FEATURE) {
		login_fail(c, ls->stage < 0 ? 0 : ls->stage, LOGIN_INITIATOR_ERROR, "login request in the wrong stage");
		return;
	}
	if (b->final && !(b->login.nsg > csg && b->login.nsg != 2)) {
		login_fail(c, csg, LOGIN_INITIATOR_ERROR, "invalid next stage");
		return;
	}
	if (login_reply_pending(ls)) {
		/* The initiator asks for the rest of a continued response with an empty request. */
		if (len || b->login.cont) {
			login_fail(c, csg, LOGIN_INITIATOR_ERROR, "login text sent while a continued response was pending");
			return;
		}
		login_send_reply_part(c, csg, 0);
		return;
	}
	/* A request spread over several PDUs: acknowledge each part, answer the whole. */
	switch (text_join_add(&ls->pending, NULL, data, len, b->login.cont, LOGIN_MAX_REQUEST, 0)) {
	case TEXT_JOIN_MORE:
		login_send(c, false, csg, 0, LOGIN_OK, NULL, 0);
		return;
	case TEXT_JOIN_COMPLETE:
		break;
	case TEXT_JOIN_TOO_LONG:
	case TEXT_JOIN_TOO_MANY:
		login_fail(c, csg, LOGIN_OUT_OF_RESOURCES, "login text too long");
		return;
	}
	struct text_list in = {0}, out = {0};
	char err[128];
	if (text_parse(ls->pending.data, ls->pending.len, &in, err, sizeof(err)) < 0) {
		login_fail(c, csg, LOGIN_INITIATOR_ERROR, err);
		goto done;
	}
	sbuf_reset(&ls->pending);
	const char *why = NULL;
	uint16_t st = LOGIN_OK;
	bool first_text = ls->phase == LOGIN_AWAIT_NAMES;
	if (first_text) {
		ls->phase = LOGIN_AUTH_NEEDED;
		st = login_identify(c, &in, &why);
		if (st != LOGIN_OK) {
			login_fail(c, csg, st, why);
			goto done;
		}
	}
	if (csg == STAGE_SECURITY) {
		st = login_security(c, &in, &out, &why);
	} else {
		for (size_t i = 0; i < in.n; i++) {
			if (strcmp(in.kv[i].key, "AuthMethod") == 0 || strncmp(in.kv[i].key, "CHAP_", 5) == 0) {
				st = LOGIN_INITIATOR_ERROR;
				why = "security keys in the operational stage";
			}
		}
		if (st == LOGIN_OK && ls->phase != LOGIN_AUTHENTICATED) {
			if (ls->auth_user) {
				st = LOGIN_AUTH_FAILED;
				why = "initiator skipped the security stage but the target requires CHAP";
			} else {
				ls->phase = LOGIN_AUTHENTICATED;
			}
		}
	}
	if (st != LOGIN_OK) {
		login_fail(c, csg, st, why);
		goto done;
	}
	char nwhy[160];
	if (negotiate_respond(&ls->neg, &in, &out, csg == STAGE_SECURITY, nwhy, sizeof(nwhy)) != NEGOTIATE_OK) {
		login_fail(c, csg, LOGIN_INITIATOR_ERROR, nwhy);
		goto done;
	}
	if (first_text && ls->session_type == SESSION_NORMAL && ls->tsih == 0) {
		char tag[8];
		snprintf(tag, sizeof(tag), "%u", c->tpgt);
		text_add(&out, "TargetPortalGroupTag", tag);
		const struct tnode *node = server_find_node(c->srv, ls->target_name);
		if (node && node->cfg->alias)
			text_add(&out, "TargetAlias", node->cfg->alias);
	}
	if (text_size(&out) > LOGIN_MAX_REPLY) {
		login_fail(c, csg, LOGIN_OUT_OF_RESOURCES, "login request asks for too long a response");
		goto done;
	}
	if (b->final && ls->phase == LOGIN_AUTH_NEEDED) {
		login_fail(c, csg, LOGIN_AUTH_FAILED, "target requires CHAP; initiator did not negotiate it");
		goto done;
	}
	/* A response needing continuation cannot transit (the C bit excludes the T bit). */
	bool transit = b->final && ls->phase == LOGIN_AUTHENTICATED && text_size(&out) <= LOGIN_MAX_DSL;
	if (!transit) {
		login_send(c, false, csg, 0, LOGIN_OK, &out, 0);
		goto done;
	}
	if (b->login.nsg == STAGE_FULL_FEATURE) {
		login_complete(c, &out, csg);
		goto done;
	}
	ls->stage = b->login.nsg;
	login_send(c, true, csg, b->login.nsg, LOGIN_OK, &out, 0);
done:
	text_clear(&in);
	text_clear(&out);
}
