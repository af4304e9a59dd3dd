/*
 * PDUs the target sends of its own accord or about a request it could not take: NOP-In (pings
 * answered, keepalive and NOP-Out answers), Async Message (logout requests, dropped
 * connections) and Reject.
 */
#include <string.h>

#include "initiator/internal.h"
#include "util/bytes.h"

void ism_on_nop_in(struct ism_conn *c, const struct bhs *b)
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
		ism_flush_soon(c);
		return;
	}
	if (c->keepalive == KEEPALIVE_OUTSTANDING && b->itt == c->nop_itt) {
		c->keepalive = KEEPALIVE_IDLE;
		ism_erl1_ping_answered(c);
		return;
	}
	struct ism_task *t = ism_task_for(c, b, TASK_NOP);
	if (!t)
		return;
	t->res.error = ISM_OK;
	ism_task_complete(t);
}

void ism_on_async(struct ism_conn *c, const struct bhs *b)
{
	struct ism_session *s = c->s;
	switch (b->async.event) {
	case ASYNC_SCSI_EVENT:
		break; /* sense data for the application; nothing to do for the transport */
	case ASYNC_LOGOUT_REQUEST: {
		if (c->draining || c->logout_queued)
			break;
		c->draining = true;
		int others = 0;
		for (int i = 0; i < ISM_MAX_CONNS; i++)
			if (&s->conns[i] != c && ism_conn_usable(&s->conns[i]))
				others++;
		ism_queue_logout(s, c, others ? LOGOUT_CLOSE_CONNECTION : LOGOUT_CLOSE_SESSION, NULL, NULL);
		break;
	}
	case ASYNC_DROP_CONNECTION: {
		struct ism_conn *d = ism_conn_by_cid(s, b->async.param1);
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

void ism_on_reject(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len)
{
	struct ism_session *s = c->s;
	if (len < BHS_LEN) {
		ism_conn_fail(c, "Reject (reason 0x%02x) without the rejected header", b->reject.reason);
		return;
	}
	if (ism_erl1(c) && ism_erl1_reject(c, b, data))
		return;
	uint32_t itt = get_be32(data + 16);
	uint8_t op = data[0] & 0x3f;
	ism_set_error(s, "target rejected a %s PDU (reason 0x%02x)", opcode_str(op), b->reject.reason);
	struct ism_task *t = itt != RESERVED_TAG ? ism_task_find(s, itt) : NULL;
	if (t && t->state == TASK_SENT) {
		t->res.error = ISM_ERR_TARGET;
		ism_task_complete(t);
	}
}
