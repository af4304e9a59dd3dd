/* See libpeek.h: connection details read from libisthmus internals (read only). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon/libpeek.h"
#include "initiator/internal.h"

static void addr_of(const struct sockaddr_storage *ss, char *out, size_t len, uint16_t *port)
{
	out[0] = 0;
	*port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &a->sin_addr, out, (socklen_t)len);
		*port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, out, (socklen_t)len);
		*port = ntohs(a->sin6_port);
	}
}

int libpeek_connections(struct ism_session *s, struct dconn_info *out, int max)
{
	int n = 0;
	for (int i = 0; i < ISM_MAX_CONNS && n < max; i++) {
		const struct ism_conn *c = &s->conns[i];
		if (c->state == CONN_FREE || c->state == CONN_CLOSED)
			continue;
		struct dconn_info *o = &out[n++];
		memset(o, 0, sizeof(*o));
		o->cid = c->cid;
		o->header_digest = c->params.header_digest;
		o->data_digest = c->params.data_digest;
		o->state = c->state == CONN_CONNECTING ? "connecting"
			   : c->state == CONN_LOGIN    ? "login"
			   : c->state == CONN_FFP      ? "full_feature"
						       : "logging_out";
		if (c->fd >= 0) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0)
				addr_of(&ss, o->local_address, sizeof(o->local_address), &o->local_port);
			sl = sizeof(ss);
			if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0)
				addr_of(&ss, o->remote_address, sizeof(o->remote_address), &o->remote_port);
		}
	}
	return n;
}
