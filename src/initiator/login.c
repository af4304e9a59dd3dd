/*
 * The initiator's login (RFC 7143 sections 6 and 11.12-11.13): security stage with AuthMethod and
 * CHAP (one-way or mutual), operational stage through the shared negotiator, C-bit continuation
 * of response text, and redirection (status class 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/internal.h"
#include "proto/text_join.h"
#include "util/log.h"
#include "util/serial.h"

#define LOGIN_MAX_ROUNDS 16

static void refuse(struct ism_conn *c, const char *what)
{
	if (c->login)
		c->login->fail_status = ISM_ERR_LOGIN;
	ism_conn_fail(c, "%s", what);
}

static bool has_chap(const struct ism_session *s) { return s->chap_user && s->chap_secret; }
static bool wants_mutual(const struct ism_session *s) { return s->mutual_user && s->mutual_secret; }

static void login_reset(struct ism_conn *c)
{
	struct login_ctx *l = c->login;
	struct ism_session *s = c->s;
	l->stage = STAGE_SECURITY;
	l->chap_started = l->chap_done = l->auth_none = false;
	l->op_sent = false;
	l->rounds = 0;
	l->have_statsn = false;
	sbuf_reset(&l->rx_text);
	text_clear(&l->pending_keys);
	text_clear(&l->offered);
	l->cred = (struct chap_credentials){s->chap_user, s->chap_secret, s->mutual_user, s->mutual_secret};
	chap_initiator_init(&l->chap, &l->cred);

	struct iscsi_params want;
	params_defaults(&want);
	want.header_digest = s->cfg.header_digest || s->cfg.require_digest;
	want.data_digest = s->cfg.data_digest || s->cfg.require_digest;
	want.max_recv_dsl = s->cfg.max_recv_dsl;
	want.max_burst_length = s->cfg.max_burst_length;
	want.first_burst_length = s->cfg.first_burst_length;
	want.max_connections = s->cfg.max_connections;
	want.initial_r2t = s->cfg.initial_r2t == 1;
	want.immediate_data = s->cfg.immediate_data != 0;
	want.max_outstanding_r2t = 8;
	want.error_recovery_level = s->erl_offer;
	/* Connection recovery can log in a replacement at once; the target's offer (the larger
	 * wins) says how long it needs first. */
	if (s->erl_offer >= 2)
		want.default_time2wait = 0;
	want.session_type = s->cfg.session_type == ISM_SESSION_DISCOVERY ? SESSION_DISCOVERY : SESSION_NORMAL;
	negotiator_init(&l->neg, &want, l->leading, false);
	if (s->cfg.require_digest)
		l->neg.accept_none_digest = false;
}

void ism_login_free(struct ism_conn *c)
{
	if (!c->login)
		return;
	sbuf_free(&c->login->rx_text);
	text_clear(&c->login->pending_keys);
	text_clear(&c->login->offered);
	free(c->login);
	c->login = NULL;
}

static void send_request(struct ism_conn *c, const struct text_list *keys, bool transit, int csg, int nsg)
{
	struct ism_session *s = c->s;
	struct login_ctx *l = c->login;
	struct sbuf sb = {0};
	if (keys)
		text_encode(keys, &sb);
	if (keys && log_get_level() >= LOG_DEBUG)
		for (size_t i = 0; i < keys->n; i++)
			log_debug("login -> %s=%s", keys->kv[i].key, keys->kv[i].value);
	if (sb.len > ISM_LOGIN_MAX_DSL) {
		size_t n = sb.len;
		sbuf_free(&sb);
		ism_conn_fail(c, "login request text of %zu bytes is too long", n);
		return;
	}
	struct bhs b = {0};
	b.opcode = OP_LOGIN_REQ;
	b.immediate = true;
	b.final = transit;
	b.login.csg = (uint8_t)csg;
	b.login.nsg = transit ? (uint8_t)nsg : 0;
	b.login.version_max = 0;
	b.login.version_min = 0;
	memcpy(b.login.isid, s->isid, 6);
	b.login.tsih = l->leading ? 0 : s->tsih;
	b.login.cid = c->cid;
	b.itt = c->login_itt; /* the login's task tag, chosen at start */
	b.login.cmdsn = s->cmdsn;
	/* a connection restarted with its CID acknowledges the old one's statuses (RFC 7143 11.12.8) */
	b.login.expstatsn = l->have_statsn ? l->statsn + 1 : l->restart ? c->exp_statsn : 0;
	uint8_t *owned = NULL;
	uint32_t len = (uint32_t)sb.len;
	if (len) {
		owned = sb.data;
		sb.data = NULL;
	}
	sbuf_free(&sb);
	ism_conn_send(c, &b, owned, len, NULL, owned);
	ism_conn_flush(c);
	l->rounds++;
}

void ism_login_start(struct ism_conn *c)
{
	struct ism_session *s = c->s;
	struct login_ctx *l = c->login;
	params_defaults(&c->params);
	login_reset(c);
	l->deadline_ms = s->cfg.login_timeout_ms > 0 ? ism_now_ms() + (uint64_t)s->cfg.login_timeout_ms : 0;
	c->login_itt = s->next_itt++;
	if (c->login_itt == RESERVED_TAG)
		c->login_itt = s->next_itt++;

	struct text_list keys = {0};
	text_add(&keys, "InitiatorName", s->initiator_name);
	if (s->initiator_alias)
		text_add(&keys, "InitiatorAlias", s->initiator_alias);
	if (l->leading)
		text_add(&keys, "SessionType", s->cfg.session_type == ISM_SESSION_DISCOVERY ? "Discovery" : "Normal");
	if (s->target_name)
		text_add(&keys, "TargetName", s->target_name);
	if (has_chap(s)) {
		text_add(&keys, "AuthMethod", wants_mutual(s) ? "CHAP" : "CHAP,None");
		send_request(c, &keys, false, STAGE_SECURITY, STAGE_OPERATIONAL);
	} else {
		text_add(&keys, "AuthMethod", "None");
		l->auth_none = true;
		send_request(c, &keys, true, STAGE_SECURITY, STAGE_OPERATIONAL);
	}
	text_clear(&keys);
}

void ism_login_finish(struct ism_conn *c, int status)
{
	struct login_ctx *l = c->login;
	if (!l)
		return;
	struct ism_task *t = l->task;
	l->task = NULL;
	ism_login_free(c);
	if (t) {
		t->res.error = status;
		ism_task_complete(t);
	}
}

/* "host:port,tpgt" or "[v6]:port,tpgt" -> portal without the tag. */
static void address_to_portal(const char *addr, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", addr);
	char *comma = strrchr(out, ',');
	if (comma && (!strchr(out, ']') || comma > strchr(out, ']')))
		*comma = 0;
}

static void redirect(struct ism_conn *c, const struct text_list *kv, uint16_t status)
{
	struct ism_session *s = c->s;
	const char *addr = text_get(kv, "TargetAddress");
	if (!addr || !*addr) {
		ism_set_error(s, "login failed: %s (0x%04x) without a TargetAddress", login_status_str(status), status);
		refuse(c, "redirect without TargetAddress");
		return;
	}
	struct login_ctx *l = c->login;
	if (++l->redirects > s->cfg.max_redirects) {
		ism_set_error(s, "login failed: more than %d redirections (last to %s)", s->cfg.max_redirects, addr);
		refuse(c, "too many redirections");
		return;
	}
	char portal[300];
	address_to_portal(addr, portal, sizeof(portal));
	snprintf(c->portal, sizeof(c->portal), "%s", portal);
	ism_conn_close_fd(c);
	ism_conn_drop_tx(c);
	pdu_conn_rx_reset(&c->pc);
	c->state = CONN_CONNECTING;
	if (ism_conn_start_connect(c) < 0)
		ism_conn_fail(c, "redirect to %s failed", portal);
}

static void record_target_keys(struct ism_conn *c, const struct text_list *kv)
{
	struct ism_session *s = c->s;
	const char *alias = text_get(kv, "TargetAlias");
	if (alias)
		snprintf(s->target_alias, sizeof(s->target_alias), "%s", alias);
	const char *tpgt = text_get(kv, "TargetPortalGroupTag");
	if (tpgt)
		s->tpgt = (uint16_t)strtoul(tpgt, NULL, 0);
}

static void login_complete(struct ism_conn *c, const struct bhs *b)
{
	struct ism_session *s = c->s;
	struct login_ctx *l = c->login;
	if (wants_mutual(s) && !l->chap_done) {
		ism_set_error(s, "login failed: the target did not authenticate itself (mutual CHAP required)");
		refuse(c, "mutual CHAP not done");
		return;
	}
	struct iscsi_params r = l->neg.result;
	r.max_recv_dsl = l->neg.want.max_recv_dsl;
	if (s->cfg.require_digest && (!r.header_digest || !r.data_digest)) {
		ism_set_error(s, "login failed: the target does not accept CRC32C digests");
		refuse(c, "digests refused");
		return;
	}
	if (l->leading) {
		if (b->login.tsih == 0 && s->cfg.session_type == ISM_SESSION_NORMAL) {
			ism_set_error(s, "login failed: the target's final login response has TSIH 0");
			refuse(c, "TSIH 0");
			return;
		}
		s->tsih = b->login.tsih;
		s->params = r;
		s->exp_cmdsn = b->login.expcmdsn;
		s->max_cmdsn = b->login.maxcmdsn;
		s->cmdsn = b->login.expcmdsn;
		s->state = SESSION_LOGGED_IN;
		c->params = r;
	} else {
		if (b->login.tsih != s->tsih) {
			ism_set_error(s, "login failed: target answered with TSIH %u, session has %u", b->login.tsih,
				      s->tsih);
			refuse(c, "TSIH mismatch");
			return;
		}
		struct iscsi_params p = s->params;
		p.header_digest = r.header_digest;
		p.data_digest = r.data_digest;
		p.max_recv_dsl = r.max_recv_dsl;
		p.peer_max_recv_dsl = r.peer_max_recv_dsl;
		c->params = p;
		ism_update_window(s, b->login.expcmdsn, b->login.maxcmdsn);
	}
	c->exp_statsn = b->login.statsn + 1;
	c->statsn_ahead = 0;
	c->status_snack_sent = c->pc.rx_header_skipped = false;
	c->state = CONN_FFP;
	c->last_rx_ms = ism_now_ms();
	ism_login_finish(c, ISM_OK);
	if (c->recovery == RECOVERY_LOGIN)
		ism_erl2_logged_in(c);
	ism_kick(s);
}

/*
 * The keys of an operational-stage response: answers to what we offered go to the negotiator's
 * originator side; keys the target offers on its own are answered through its responder side
 * (NotUnderstood for keys nobody defined, Irrelevant or Reject where the rules say so), and the
 * answers go into reply for the next request. -1 when the login failed.
 */
static int operational_keys(struct ism_conn *c, const struct text_list *kv, struct text_list *reply)
{
	struct ism_session *s = c->s;
	struct login_ctx *l = c->login;
	struct text_list answers = {0}, offers = {0};
	char why[256] = "";
	for (size_t i = 0; i < kv->n; i++) {
		const char *key = kv->kv[i].key;
		if (text_has(&l->offered, key))
			text_add(&answers, key, kv->kv[i].value);
		else
			text_add(&offers, key, kv->kv[i].value);
	}
	int rc = 0;
	if (negotiate_accept(&l->neg, &answers, why, sizeof(why)) != NEGOTIATE_OK ||
	    negotiate_respond(&l->neg, &offers, reply, false, why, sizeof(why)) != NEGOTIATE_OK) {
		ism_set_error(s, "login failed: negotiation: %s", why);
		refuse(c, "negotiation");
		rc = -1;
	}
	if (rc == 0 && log_get_level() >= LOG_DEBUG)
		for (size_t i = 0; i < reply->n; i++)
			log_debug("login: answering the target's %s with %s", reply->kv[i].key, reply->kv[i].value);
	text_clear(&answers);
	text_clear(&offers);
	return rc;
}

void ism_login_pdu(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_session *s = c->s;
	struct login_ctx *l = c->login;
	if (!l) {
		ism_conn_fail(c, "PDU during login without a login in progress");
		return;
	}
	if (b->opcode == OP_REJECT) {
		ism_set_error(s, "login failed: target rejected the login request (reason 0x%02x)", b->reject.reason);
		refuse(c, "login rejected");
		return;
	}
	if (b->opcode != OP_LOGIN_RESP) {
		ism_conn_fail(c, "unexpected %s PDU during login", opcode_str(b->opcode));
		return;
	}
	if (b->itt != c->login_itt) {
		ism_conn_fail(c, "login response with unexpected ITT 0x%08x (want 0x%08x)", b->itt, c->login_itt);
		return;
	}
	uint16_t status = (uint16_t)(b->login.status_class << 8 | b->login.status_detail);
	l->statsn = b->login.statsn;
	l->have_statsn = true;

	if (b->login.status_class != 0) {
		struct text_list kv = {0};
		char err[128];
		if (b->login.status_class == 1) {
			if (text_parse(data, len, &kv, err, sizeof(err)) < 0) {
				ism_set_error(s, "login failed: bad redirect text: %s", err);
				refuse(c, "bad redirect");
			} else {
				redirect(c, &kv, status);
			}
			text_clear(&kv);
			return;
		}
		const char *hint = "";
		if (status == LOGIN_AUTH_FAILED && !has_chap(s))
			hint = "; the target may require CHAP";
		ism_set_error(s, "login failed: %s (0x%04x)%s", login_status_str(status), status, hint);
		refuse(c, "login refused");
		return;
	}
	if (b->login.version_min != 0) {
		ism_set_error(s, "login failed: target chose iSCSI version %u, we speak 0", b->login.version_min);
		refuse(c, "bad version");
		return;
	}
	if (l->leading)
		s->exp_cmdsn = b->login.expcmdsn, s->max_cmdsn = b->login.maxcmdsn;

	if (text_join_add(&l->rx_text, NULL, data, len, b->login.cont, ISM_LOGIN_TEXT_MAX, 0) == TEXT_JOIN_TOO_LONG) {
		ism_conn_fail(c, "login response text longer than %u bytes", ISM_LOGIN_TEXT_MAX);
		return;
	}
	if (l->rounds > LOGIN_MAX_ROUNDS) {
		if (b->login.cont)
			ism_set_error(s, "login failed: the target's login response text still continues (C bit) after "
				      "%d login requests", LOGIN_MAX_ROUNDS);
		else
			ism_set_error(s, "login failed: no agreement after %d login requests", LOGIN_MAX_ROUNDS);
		refuse(c, "login does not converge");
		return;
	}
	if (b->login.cont) {
		/* More text follows: ask for it with an empty request (RFC 7143 11.12.2). */
		send_request(c, NULL, false, b->login.csg, 0);
		return;
	}
	struct text_list kv = {0};
	char err[128];
	if (text_parse(l->rx_text.data, l->rx_text.len, &kv, err, sizeof(err)) < 0) {
		sbuf_reset(&l->rx_text);
		ism_set_error(s, "login failed: malformed login response text: %s", err);
		refuse(c, "bad login text");
		return;
	}
	sbuf_reset(&l->rx_text);
	if (log_get_level() >= LOG_DEBUG)
		for (size_t i = 0; i < kv.n; i++)
			log_debug("login <- %s=%s", kv.kv[i].key, kv.kv[i].value);
	record_target_keys(c, &kv);
	bool transit = b->final;
	struct text_list out = {0};
	char why[256] = "";

	if (b->login.csg == STAGE_SECURITY) {
		const char *am = text_get(&kv, "AuthMethod");
		if (am) {
			if (strcmp(am, "CHAP") == 0 && has_chap(s)) {
				if (!l->chap_started) {
					l->chap_started = true;
					chap_initiator_step(&l->chap, NULL, &out, why, sizeof(why));
					if (s->chap_algorithms)
						text_set(&out, "CHAP_A", s->chap_algorithms);
				}
			} else if (strcmp(am, "None") == 0 && !wants_mutual(s)) {
				l->auth_none = true;
			} else {
				ism_set_error(s, "login failed: target chose AuthMethod=%s, which we %s", am,
					      strcmp(am, "Reject") == 0 ? "offered none acceptable to it" : "did not offer");
				refuse(c, "AuthMethod");
				goto out;
			}
		}
		bool chap_keys = text_has(&kv, "CHAP_C") || text_has(&kv, "CHAP_R") || text_has(&kv, "CHAP_A");
		if (chap_keys && l->chap_started && !l->chap_done) {
			enum chap_result r = chap_initiator_step(&l->chap, &kv, &out, why, sizeof(why));
			if (r == CHAP_AUTH_FAIL || r == CHAP_PROTO_FAIL) {
				ism_set_error(s, "login failed: CHAP: %s", why);
				refuse(c, "CHAP failed");
				goto out;
			}
			if (r == CHAP_DONE && (text_has(&kv, "CHAP_R") || !wants_mutual(s)))
				l->chap_done = true;
		}
		if (transit) {
			if (b->login.nsg == STAGE_FULL_FEATURE) {
				login_complete(c, b);
				goto out;
			}
			if (l->chap_started && !l->chap_done && !wants_mutual(s) && out.n == 0) {
				/* one-way CHAP finished by the target's transit */
				l->chap_done = true;
			}
			l->stage = STAGE_OPERATIONAL;
		} else {
			/* Stay in security: answer CHAP or ask to move on. */
			bool ready = l->auth_none || (l->chap_started && out.n && text_has(&out, "CHAP_R")) ||
				     l->chap_done;
			send_request(c, &out, ready, STAGE_SECURITY, STAGE_OPERATIONAL);
			goto out;
		}
	}
	if (l->stage == STAGE_OPERATIONAL || b->login.csg == STAGE_OPERATIONAL) {
		struct text_list reply = {0};
		if (b->login.csg == STAGE_OPERATIONAL) {
			if (operational_keys(c, &kv, &reply) < 0) {
				text_clear(&reply);
				goto out;
			}
			if (transit && b->login.nsg == STAGE_FULL_FEATURE) {
				/* a target should not transit with its own offers unanswered; nothing to add then */
				text_clear(&reply);
				login_complete(c, b);
				goto out;
			}
		}
		l->stage = STAGE_OPERATIONAL;
		text_clear(&out);
		if (!l->op_sent) {
			negotiate_propose(&l->neg, &out, s->cfg.session_type == ISM_SESSION_DISCOVERY);
			if (s->cfg.require_digest) {
				text_set(&out, "HeaderDigest", "CRC32C");
				text_set(&out, "DataDigest", "CRC32C");
			}
			for (size_t i = 0; i < out.n; i++)
				text_add(&l->offered, out.kv[i].key, out.kv[i].value);
			l->op_sent = true;
		}
		for (size_t i = 0; i < reply.n; i++)
			text_add(&out, reply.kv[i].key, reply.kv[i].value);
		text_clear(&reply);
		send_request(c, &out, true, STAGE_OPERATIONAL, STAGE_FULL_FEATURE);
	}
out:
	text_clear(&out);
	text_clear(&kv);
}
