/*
 * What the daemon shows about a session's connections and libisthmus has no public call for yet
 * (addresses and state per CID). The only file of the daemon that reads the library's internals;
 * to be replaced by a public ism_session_connection_info() (see docs/initiator.md).
 */
#ifndef ISTHMUS_DAEMON_LIBPEEK_H
#define ISTHMUS_DAEMON_LIBPEEK_H

#include <stdbool.h>
#include <stdint.h>

#include "isthmus/isthmus.h"

struct dconn_info {
	uint16_t cid;
	char local_address[64];
	uint16_t local_port;
	char remote_address[64];
	uint16_t remote_port;
	bool header_digest, data_digest;
	const char *state; /* "connecting", "login", "full_feature", "logging_out" */
};

int libpeek_connections(struct ism_session *s, struct dconn_info *out, int max);

#endif
