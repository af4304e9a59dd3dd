/*
 * A session's connections as the daemon shows them: libisthmus's public
 * ism_session_connection_info() in the shape session.c prints (state as a string). The file name
 * is historical: the daemon no longer reads the library's internals.
 */
#ifndef ISTHMUS_DAEMON_LIBPEEK_H
#define ISTHMUS_DAEMON_LIBPEEK_H

#include <stdbool.h>
#include <stdint.h>

#include "isthmus/isthmus.h"

struct dconn_info {
	uint16_t cid;
	char local_address[ISM_ADDR_MAX];
	uint16_t local_port;
	char remote_address[ISM_ADDR_MAX];
	uint16_t remote_port;
	bool header_digest, data_digest;
	const char *state; /* "connecting", "login", "full_feature", "logging_out" */
	struct ism_conn_info lib; /* everything the library reports (counters, portal, draining) */
};

/* Up to max connections of s into out; returns how many were written. */
int libpeek_connections(struct ism_session *s, struct dconn_info *out, int max);

#endif
