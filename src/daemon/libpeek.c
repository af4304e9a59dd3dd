/* See libpeek.h: connection details through the library's public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/libpeek.h"

static const char *state_str(enum ism_conn_state st)
{
	switch (st) {
	case ISM_CONN_CONNECTING: return "connecting";
	case ISM_CONN_LOGIN: return "login";
	case ISM_CONN_FULL_FEATURE: return "full_feature";
	case ISM_CONN_LOGGING_OUT: return "logging_out";
	}
	return "unknown";
}

int libpeek_connections(struct ism_session *s, struct dconn_info *out, int max)
{
	if (max <= 0)
		return 0;
	struct ism_conn_info *ci = calloc((size_t)max, sizeof(*ci));
	if (!ci)
		return 0;
	int n = ism_session_connection_info(s, ci, max);
	if (n > max)
		n = max;
	for (int i = 0; i < n; i++) {
		struct dconn_info *o = &out[i];
		memset(o, 0, sizeof(*o));
		o->lib = ci[i];
		o->cid = ci[i].cid;
		memcpy(o->local_address, ci[i].local_address, sizeof(o->local_address));
		o->local_port = ci[i].local_port;
		memcpy(o->remote_address, ci[i].remote_address, sizeof(o->remote_address));
		o->remote_port = ci[i].remote_port;
		o->header_digest = ci[i].header_digest;
		o->data_digest = ci[i].data_digest;
		o->state = state_str(ci[i].state);
	}
	free(ci);
	return n;
}
