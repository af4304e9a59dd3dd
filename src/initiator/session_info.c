/* What a session tells its user: its connections, their state and counters, the negotiated values. */
#include <stdio.h>
#include <string.h>

#include "initiator/internal.h"

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

bool ism_session_logged_in(const struct ism_session *s) { return s->state == SESSION_LOGGED_IN; }

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
		ism_conn_info_fill(c, &out[n++]);
	}
	return n;
}

/* What each connection negotiates for itself (digests, data segment lengths), as both reports give it. */
struct conn_values {
	bool header_digest, data_digest;
	uint32_t max_recv_dsl, peer_max_recv_dsl;
};

static struct conn_values conn_values(const struct iscsi_params *p)
{
	return (struct conn_values){p->header_digest, p->data_digest, p->max_recv_dsl, p->peer_max_recv_dsl};
}

void ism_conn_info_fill(const struct ism_conn *c, struct ism_conn_info *o)
{
	memset(o, 0, sizeof(*o));
	o->cid = c->cid;
	o->state = c->recovery != RECOVERY_NONE ? ISM_CONN_RECOVERING
		   : c->state == CONN_CONNECTING ? ISM_CONN_CONNECTING
		   : c->state == CONN_LOGIN	 ? ISM_CONN_LOGIN
		   : c->state == CONN_FFP	 ? ISM_CONN_FULL_FEATURE
						 : ISM_CONN_LOGGING_OUT;
	o->draining = c->draining;
	snprintf(o->portal, sizeof(o->portal), "%.*s", (int)sizeof(o->portal) - 1, c->portal);
	pdu_sockaddr_split((const struct sockaddr *)&c->local_sa, o->local_address, sizeof(o->local_address),
			   &o->local_port);
	pdu_sockaddr_split((const struct sockaddr *)&c->peer_sa, o->remote_address, sizeof(o->remote_address),
			   &o->remote_port);
	struct conn_values v = conn_values(&c->params);
	o->header_digest = v.header_digest, o->data_digest = v.data_digest;
	o->max_recv_dsl = v.max_recv_dsl, o->peer_max_recv_dsl = v.peer_max_recv_dsl;
	o->commands = c->ios;
	o->outstanding = c->outstanding;
	o->bytes_sent = c->bytes_sent;
	o->bytes_received = c->bytes_received;
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
	struct conn_values v = conn_values(p);
	info->header_digest = v.header_digest, info->data_digest = v.data_digest;
	info->max_recv_dsl = v.max_recv_dsl, info->peer_max_recv_dsl = v.peer_max_recv_dsl;
	/* the session-wide values, from the leading login */
	const struct iscsi_params *sp = &s->params;
	info->max_burst_length = sp->max_burst_length, info->first_burst_length = sp->first_burst_length;
	info->max_outstanding_r2t = sp->max_outstanding_r2t, info->max_connections = sp->max_connections;
	info->initial_r2t = sp->initial_r2t, info->immediate_data = sp->immediate_data;
	info->cmdsn = s->cmdsn;
	info->exp_cmdsn = s->exp_cmdsn;
	info->max_cmdsn = s->max_cmdsn;
}

void ism_session_get_recovery_info(const struct ism_session *s, struct ism_recovery_info *info)
{
	memset(info, 0, sizeof(*info));
	info->error_recovery_level = s->params.error_recovery_level;
	info->default_time2wait = s->params.default_time2wait;
	info->default_time2retain = s->params.default_time2retain;
	if (s->nlost) {
		info->connection_lost = true;
		info->lost_cid = s->lost_cid;
		snprintf(info->reason, sizeof(info->reason), "%s", s->lost_reason);
		info->closed_with_it = s->closed_with_lost;
	}
}

int ism_session_lost_connection_info(const struct ism_session *s, struct ism_conn_info *out, int max)
{
	for (int i = 0; i < s->nlost && i < max && out; i++)
		out[i] = s->lost[i];
	return s->nlost;
}
