/*
 * SendTargets discovery (RFC 7143 appendix C): one Text Request, the answer spread over Text
 * Responses (F bit clear + Target Transfer Tag asks for more, C bit splits a pair), then the
 * TargetName/TargetAddress pairs grouped per target. A target never done answering is cut off at
 * ISM_TEXT_MAX_EXCHANGES responses or ISM_TEXT_MAX bytes of text, whichever comes first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/internal.h"
#include "proto/text_join.h"

void ism_discovery_free(struct ism_discovery *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		for (size_t j = 0; j < d->targets[i].naddr; j++)
			free(d->targets[i].addresses[j]);
		free(d->targets[i].addresses);
		free(d->targets[i].name);
	}
	free(d->targets);
	free(d);
}

/* Walk the raw pairs: TargetName (and TargetAddress) repeat, so text_parse's one-key rule does not apply. */
struct ism_discovery *ism_parse_sendtargets(const uint8_t *data, size_t len)
{
	struct ism_discovery *d = xcalloc(1, sizeof(*d));
	size_t pos = 0;
	while (pos < len) {
		const uint8_t *start = data + pos;
		const uint8_t *nul = memchr(start, 0, len - pos);
		size_t plen = nul ? (size_t)(nul - start) : len - pos;
		pos += plen + 1;
		if (plen == 0)
			continue;
		const uint8_t *eq = memchr(start, '=', plen);
		if (!eq)
			goto bad;
		size_t klen = (size_t)(eq - start);
		size_t vlen = plen - klen - 1;
		char *val = xmalloc(vlen + 1);
		memcpy(val, eq + 1, vlen);
		val[vlen] = 0;
		if (klen == 10 && memcmp(start, "TargetName", 10) == 0) {
			d->targets = xrealloc(d->targets, (d->n + 1) * sizeof(*d->targets));
			d->targets[d->n] = (struct ism_target_entry){val, 0, NULL};
			d->n++;
		} else if (klen == 13 && memcmp(start, "TargetAddress", 13) == 0) {
			if (d->n == 0) {
				free(val);
				goto bad;
			}
			struct ism_target_entry *t = &d->targets[d->n - 1];
			t->addresses = xrealloc(t->addresses, (t->naddr + 1) * sizeof(char *));
			t->addresses[t->naddr++] = val;
		} else {
			free(val); /* TargetAlias and others: not part of the result */
		}
	}
	return d;
bad:
	ism_discovery_free(d);
	return NULL;
}

void ism_text_response(struct ism_conn *c, struct ism_task *t, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_session *s = c->s;
	switch (text_join_add(&t->text, &t->text_exchanges, data, len, !b->final, ISM_TEXT_MAX, ISM_TEXT_MAX_EXCHANGES)) {
	case TEXT_JOIN_TOO_LONG:
		ism_conn_fail(c, "SendTargets response longer than %u bytes", ISM_TEXT_MAX);
		return;
	case TEXT_JOIN_TOO_MANY:
		ism_conn_fail(c, "SendTargets response still not complete after %u Text Responses (%zu bytes of text)",
			      ISM_TEXT_MAX_EXCHANGES, t->text.len);
		return;
	case TEXT_JOIN_MORE:
	case TEXT_JOIN_COMPLETE:
		break;
	}
	if (!b->final) {
		if (b->text.ttt == RESERVED_TAG) {
			ism_conn_fail(c, "Text Response without F bit and with the reserved Target Transfer Tag");
			return;
		}
		/* Ask for the rest: an empty Text Request with the target's TTT. */
		struct bhs r = {0};
		r.opcode = OP_TEXT_REQ;
		r.final = true;
		r.itt = t->itt;
		r.text.ttt = b->text.ttt;
		r.text.cmdsn = s->cmdsn++;
		r.text.expstatsn = c->exp_statsn;
		ism_conn_send(c, &r, NULL, 0, NULL, NULL);
		ism_conn_flush(c);
		return;
	}
	if (b->text.cont) {
		ism_conn_fail(c, "final Text Response with the C bit set");
		return;
	}
	struct ism_discovery *d = ism_parse_sendtargets(t->text.data, t->text.len);
	if (!d) {
		ism_set_error(s, "malformed SendTargets response");
		t->res.error = ISM_ERR_TARGET;
	} else {
		t->result = d;
		t->res.error = ISM_OK;
	}
	ism_task_complete(t);
}

int ism_discovery_async(struct ism_session *s, ism_discovery_cb cb, void *priv)
{
	if (s->state != SESSION_LOGGED_IN || s->cfg.session_type != ISM_SESSION_DISCOVERY) {
		ism_set_error(s, "SendTargets needs a logged-in discovery session");
		return ISM_ERR_INVALID;
	}
	struct ism_task *t = ism_task_new(s, TASK_TEXT);
	t->disc_cb = cb;
	t->priv = priv;
	ism_submit(s, t);
	return 0;
}
