/*
 * isthmus-initiator: the daemon that owns the host's iSCSI sessions.
 *
 * Everything runs on one thread around the event loop (net/loop.h): the RPC server, every
 * libisthmus session (its descriptors and timers are watched by the loop), the FUSE session (its
 * /dev/fuse descriptor is read in the loop) and the NBD listeners. No locks are needed.
 */
#ifndef ISTHMUS_DAEMON_DAEMON_H
#define ISTHMUS_DAEMON_DAEMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/config.h"
#include "isthmus/isthmus.h"
#include "mgmt/rpc.h"
#include "net/loop.h"

struct dsession;
struct dop;
struct fuse_dev;
struct dmn_isns;

struct daemon {
	struct loop *loop;
	struct rpc_server *rpc;
	struct dmn_config cfg;
	char *state_dir;
	char *socket_path;
	char *ibft_dir;
	char *initiator_name;
	struct dsession *sessions;
	uint64_t next_session_id;
	uint64_t next_record_id;
	json_t *records;    /* persistent logins (array of objects) */
	json_t *discovered; /* targets found by discovery: array of {target, portal} */
	char *initiator_secret;
	struct fuse_dev *fuse;
	struct dmn_isns *isns; /* registration with an iSNS server (isns_node.c), NULL: none */
	bool settle_deferred; /* sessions with settle_pending settle after this loop iteration */
	unsigned nbd_clients; /* NBD clients connected, over all exports */
	bool stopping;
	int sigfd;
	struct loop_watch sigwatch;
	struct loop_timer stop_timer;
	/* READY=1 to the service manager once the start-up logins are done, or at this time. */
	struct loop_timer ready_timer;
	uint64_t ready_deadline_ms;
	/* RPC operations that complete later */
	struct dop *ops;
	uint64_t next_op;
};

#endif
