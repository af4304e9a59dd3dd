/*
 * The target daemon: its portals and target nodes, the event loop that runs every session,
 * connection and task on one thread (so session-wide ordering needs no locks), and applying a
 * configuration to the running server.
 */
#ifndef ISTHMUS_TARGET_SERVER_H
#define ISTHMUS_TARGET_SERVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/loop.h"
#include "proto/params.h"
#include "scsi/scsi.h"
#include "target/config.h"
#include "target/stats.h"
#include "util/bufpool.h"

struct server;
struct session;
struct rpc_server;
struct metrics_server;
struct store_engine;
struct gateway_probes;

/* A target node: an iSCSI name, its LUs and its access rules. */
struct tnode {
	struct server *srv;
	struct cfg_target *cfg;
	struct scsi_target *scsi;
	struct scsi_port_ctx *scsi_ctx; /* the event loop's context of it (freed with scsi) */
	struct iscsi_params want; /* negotiation defaults: RFC defaults, our limits, config overrides */
	struct gateway_probes *gateways; /* peer liveness of its gateway group (gateway.c), or NULL */
};

struct portal {
	struct loop_watch watch;
	int fd;
	struct server *srv;
	char *host;    /* as configured (canonical numeric form) */
	uint16_t port;
	uint16_t tpgt;
	struct sockaddr_storage addr;
	char name[64]; /* "127.0.0.1:3260" or "[::1]:3260" */
	bool accept_paused;      /* out of descriptors: not watched until srv->accept_resume_ms */
	uint64_t refused_log_ms; /* connections refused at a limit are logged at most once a second */
	uint64_t refused_unlogged;
	const char *refused_why; /* the limit the last refusal met (a constant string) */
};

struct server {
	struct loop *loop;
	struct cfg *cfg;
	struct portal **portals;
	size_t nportals;
	struct tnode **nodes;
	size_t nnodes;
	struct session **sessions; /* live sessions (normal and discovery) */
	size_t nsessions, capsessions;
	struct conn *conns;        /* every connection, logged in or not */
	uint32_t nconns;           /* how many: bounded by cfg->max_connections */
	uint64_t conns_refused;    /* connections closed at once: a limit reached, or out of descriptors */
	uint64_t accept_resume_ms; /* when paused portals listen again */
	uint16_t next_tsih;
	uint64_t next_nexus_id;
	struct loop_timer tick;    /* once a second: NOP pings, timeouts */
	struct loop_watch sigwatch;
	int sigfd;
	bool shutting_down;
	uint64_t shutdown_deadline_ms;
	int exit_code;
	struct rpc_server *rpc;    /* management socket, NULL when none */
	struct metrics_server *metrics; /* Prometheus endpoint, NULL when none */
	const char *metrics_listen;     /* --metrics HOST:PORT */
	struct isns_client *isns;       /* iSNS registration (target/isns.c), NULL when none */
	/* Command-line additions, applied on top of every (re)loaded configuration file. */
	int (*overlay)(struct cfg *cfg, void *arg, char **err);
	void *overlay_arg;
	struct io_stats closed;    /* counters of connections that have ended */
	uint64_t buffered;         /* data buffer bytes held by every task of every connection */
	uint64_t cfg_generation;   /* bumped by every applied configuration */
	struct bufpool bufpool;    /* command data buffers, reused */
	struct store_engine *engine; /* every store io of every LU, and the long operations' workers */
	struct loop_watch engine_watch;
	struct config_apply *applying; /* a change whose RBD images open on a worker (reconfig.c), or NULL */
};

struct tnode *server_find_node(struct server *srv, const char *name);
void server_add_session(struct server *srv, struct session *s);
void server_remove_session(struct server *srv, struct session *s);
struct session *server_find_session(struct server *srv, const char *initiator, const uint8_t isid[6], uint16_t tsih);
struct session *server_find_session_isid(struct server *srv, const char *initiator, const uint8_t isid[6],
					 const char *target);
bool node_allows(const struct tnode *node, const char *initiator);

/* Takes ownership of cfg (heap-allocated) in every case. */
int server_start(struct server *srv, struct cfg *cfg);
void portal_on_accept(void *arg, uint32_t events);

/* The store engine of cfg's io-engine, watched by srv's loop (before the first LU). */
int server_engine_start(struct server *srv, const struct cfg *cfg, char **err);
/* Commands that waited for their LU's work may run: run them, and send what they queued. */
void server_run_blocked(struct server *srv);
/* Make the running server match cfg (owned on success; freed on failure). */
int server_apply_config(struct server *srv, struct cfg *cfg, char **err);
/*
 * server_apply_config for changes at run time: RBD images the change opens are opened on a
 * worker first (opening one waits for its cluster), the loop serving every session meanwhile;
 * the change is applied on the loop when they are. done runs exactly once, possibly before this
 * returns; err is the reason when rc < 0. One change at a time: another one meanwhile is refused.
 */
typedef void (*server_applied_fn)(struct server *srv, int rc, const char *err, void *arg);
void server_apply_config_async(struct server *srv, struct cfg *cfg, server_applied_fn done, void *arg);
/* Stopping: a change still opening its images is answered "stopping" and dropped when they open. */
void server_cancel_config_apply(struct server *srv);
/* SIGHUP: reload the configuration file and apply only the differences. */
void server_reload(struct server *srv);
void portal_close(struct portal *p);
void portal_stop_listening(struct portal *p);
void node_free(struct tnode *n);
int server_run(struct server *srv);
void server_stop(struct server *srv);
void server_free(struct server *srv);

#endif
