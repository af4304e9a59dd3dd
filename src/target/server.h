/*
 * The target daemon: its portals and target nodes, its shards (target/shard.h: event loops, each
 * running its connections, their sessions and tasks on one thread, so session-wide ordering
 * needs no locks), and applying a configuration to the running server.
 */
#ifndef ISTHMUS_TARGET_SERVER_H
#define ISTHMUS_TARGET_SERVER_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/loop.h"
#include "proto/params.h"
#include "scsi/scsi.h"
#include "target/config.h"
#include "target/shard.h"
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
	uint64_t gen;             /* unique among the server's nodes, for ever (a freed node's address is not) */
	struct cfg_target *cfg;
	struct scsi_target *scsi;
	struct scsi_port_ctx **scsi_ctx; /* each shard's context of it, by shard id (freed with scsi) */
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
	struct loop *loop;         /* loop 0: portals, signals, management, metrics, iSNS, gateways, reloads */
	struct cfg *cfg;
	struct portal **portals;
	size_t nportals;
	struct tnode **nodes;
	size_t nnodes;
	struct shard **shards;     /* shards[0] runs on loop */
	unsigned nshards;
	unsigned place_next;       /* where server_pick_shard starts looking (loop 0 only) */
	/*
	 * The session index (every live session, normal and discovery, of every shard), next_tsih
	 * and the shards' connection lists change under index_lock: at accept, login, logout and
	 * close. Loop 0 reads them without it while the other shards are paused.
	 */
	pthread_mutex_t index_lock;
	bool index_lock_ready;
	struct session **sessions;
	size_t nsessions, capsessions;
	atomic_uint nconns;        /* every connection, logged in or not: bounded by cfg->max_connections */
	uint64_t conns_refused;    /* connections closed at once: a limit reached, or out of descriptors */
	uint64_t accept_resume_ms; /* when paused portals listen again */
	uint16_t next_tsih;
	atomic_uint_fast64_t next_nexus_id;
	atomic_uint_fast64_t next_conn_serial;
	struct loop_timer tick;    /* once a second on loop 0: portals, limits, shutdown */
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
	atomic_uint_fast64_t buffered; /* data buffer bytes held by every task of every connection */
	/* ErrorRecoveryLevel 2 (erl2.c): failed connections of every loop awaiting recovery, and what they keep. */
	atomic_uint nfailed;
	atomic_uint_fast64_t failed_kept;
	uint64_t cfg_generation;   /* bumped by every applied configuration */
	uint64_t next_node_gen;    /* the last node's gen (loop 0, every other loop paused) */
	struct store_engine *engine; /* shard 0's: its sessions' ios, and the workers of loop 0's long operations */
	struct config_apply *applying; /* a change whose RBD images open on a worker (reconfig.c), or NULL */
	/* server_pause_shards (shard.c) */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	unsigned parked;
	uint64_t resume_gen;
	bool paused;
	unsigned pause_depth;
};

struct tnode *server_find_node(struct server *srv, const char *name);
/* index_lock (see struct server); a no-op before server_shards_init. */
void server_index_lock(struct server *srv);
void server_index_unlock(struct server *srv);
/* The session index. */
void server_add_session(struct server *srv, struct session *s);
/* A TSIH no live session has (0: none left). */
uint16_t server_alloc_tsih(struct server *srv);
void server_remove_session(struct server *srv, struct session *s);
/*
 * A session of shard sh (the caller's), or NULL; *elsewhere (may be NULL) is set when the
 * session exists but lives on another shard, which only that shard may touch.
 */
struct session *server_find_session(struct server *srv, struct shard *sh, const char *initiator,
				    const uint8_t isid[6], uint16_t tsih, bool *elsewhere);
struct session *server_find_session_isid(struct server *srv, struct shard *sh, const char *initiator,
					 const uint8_t isid[6], const char *target, bool *elsewhere);
/*
 * Where a first Login PDU belongs: the shard of the session its TSIH names (TSIH != 0) or of
 * the live session it would reinstate (TSIH 0); -1 when none.
 */
int server_login_shard(struct server *srv, const char *initiator, const uint8_t isid[6], uint16_t tsih,
		       const char *target);
/* The shard with the fewest connections (ties in turn): where a new one goes. Loop 0 only. */
struct shard *server_pick_shard(struct server *srv);
/* Shard 0 on srv->loop (made once; the engine is shard_engine_start's, or none). */
int server_shards_init(struct server *srv, char **err);
bool node_allows(const struct tnode *node, const char *initiator);

/* Takes ownership of cfg (heap-allocated) in every case. */
int server_start(struct server *srv, struct cfg *cfg);
void portal_on_accept(void *arg, uint32_t events);

/* The store engine of cfg's io-engine, watched by srv's loop (before the first LU). */
int server_engine_start(struct server *srv, const struct cfg *cfg, char **err);
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
