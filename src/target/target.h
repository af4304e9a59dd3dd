/*
 * The target daemon's objects: the server (portals, target nodes), sessions, connections and
 * tasks. Everything runs on one event loop thread, so session-wide ordering (CmdSN across
 * connections) needs no locks.
 */
#ifndef ISTHMUS_TARGET_TARGET_H
#define ISTHMUS_TARGET_TARGET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "net/loop.h"
#include "proto/chap.h"
#include "proto/frame.h"
#include "proto/pdu_conn.h"
#include "proto/params.h"
#include "proto/pdu.h"
#include "proto/text.h"
#include "scsi/scsi.h"
#include "target/config.h"
#include "target/stats.h"
#include "util/bufpool.h"

struct server;
struct session;
struct conn;
struct held_pdu;
struct rpc_server;
struct metrics_server;

/* A target node: an iSCSI name, its LUs and its access rules. */
struct tnode {
	struct server *srv;
	struct cfg_target *cfg;
	struct scsi_target *scsi;
	struct iscsi_params want; /* negotiation defaults: RFC defaults, our limits, config overrides */
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
	/* Command-line additions, applied on top of every (re)loaded configuration file. */
	int (*overlay)(struct cfg *cfg, void *arg, char **err);
	void *overlay_arg;
	struct io_stats closed;    /* counters of connections that have ended */
	uint64_t buffered;         /* data buffer bytes held by every task of every connection */
	uint64_t cfg_generation;   /* bumped by every applied configuration */
	struct bufpool bufpool;    /* command data buffers, reused */
	struct offload *offload;   /* workers for reads that may wait for a device */
	struct loop_watch offload_watch;
};

enum task_state {
	TASK_WAIT_CMDSN,  /* arrived ahead of ExpCmdSN; held until its turn */
	TASK_WAIT_DATA,   /* collecting Data-Out (immediate, unsolicited, solicited) */
	TASK_RUNNING,     /* handed to the SCSI layer */
	TASK_SENDING,     /* response queued; buffers still referenced by the send queue */
};

enum task_refusal {
	TASK_REFUSE_NONE,
	TASK_REFUSE_TOO_BIG,       /* over the largest transfer one command may ask for */
	TASK_REFUSE_SET_FULL,      /* the connection's data buffers are at max-data-per-connection */
	TASK_REFUSE_SESSION_DATA,  /* the session's are at max-data-per-session */
	TASK_REFUSE_TOTAL_DATA,    /* the target's are at max-data-total */
	TASK_REFUSE_SLOTS,         /* every command slot of the session is taken (immediate commands) */
};

struct task {
	struct conn *conn;
	struct task *next;        /* in the connection's task list / free list */
	enum task_state state;
	bool orphan;              /* its connection is gone while a worker still reads for it */
	uint32_t itt;
	uint32_t cmdsn;
	bool immediate;
	bool read, write;
	uint8_t lun_field[8];
	uint32_t edtl;            /* expected data transfer length (write side for bidi) */
	uint32_t bidi_read_len;
	/* write side */
	uint8_t *out;
	uint32_t out_received;    /* bytes of Data-Out so far (all in order at ERL 0 we require offsets) */
	uint32_t unsolicited_end; /* first burst boundary: data below it comes unsolicited */
	uint32_t r2t_offset;      /* next offset to solicit */
	uint32_t r2t_outstanding;
	uint32_t r2tsn;
	uint32_t ttt;
	uint32_t next_datasn;     /* expected DataSN of the next Data-Out in the current sequence */
	uint32_t seq_end;         /* end offset of the current solicited or unsolicited sequence */
	/* read side */
	uint8_t *in;
	uint32_t in_cap;
	struct bufpool *pool;     /* where out and in come from and go back to */
	uint32_t refs;            /* queued send items still pointing at buffers */
	bool aborted;
	uint8_t refuse;           /* enum task_refusal: answered with an error in its CmdSN turn */
	uint64_t buffered;        /* bytes of data buffers this task holds */
	uint64_t last_data_ms;    /* last Data-Out (or the command) arrived; for the Data-Out timeout */
	uint64_t start_us;        /* arrival, for the latency histogram */
	struct scsi_cmd scmd;
};

/* One item of the send queue: a framed PDU and the task it keeps alive until written. */
struct txitem {
	struct pdu_txitem base;   /* first: the engine's item */
	struct task *task;        /* released when this item is written; NULL if none */
};

enum conn_phase { PHASE_LOGIN, PHASE_FULL_FEATURE, PHASE_LOGGED_OUT, PHASE_CLOSED };

/* How far one connection's login has come, in the order it must happen (RFC 7143 6.3). */
enum login_phase {
	LOGIN_AWAIT_FIRST,    /* no Login Request yet: ISID, TSIH and CID not known */
	LOGIN_AWAIT_NAMES,    /* first request seen; its text (names, session type) not checked yet */
	LOGIN_AUTH_NEEDED,    /* names and access checked; no authentication method settled */
	LOGIN_CHAP,           /* AuthMethod=CHAP chosen; the exchange is under way */
	LOGIN_AUTHENTICATED,  /* security done, or none required */
};

/* Login negotiation state of one connection. */
struct login_state {
	int stage;                /* current stage (CSG) */
	enum login_phase phase;
	uint8_t isid[6];
	uint16_t tsih;
	uint32_t itt;
	uint16_t cid;
	uint32_t cmdsn;
	char initiator_name[224];
	char initiator_alias[256];
	char target_name[224];
	enum session_type session_type;
	/*
	 * No pointers into the session table or the configuration: either may change while the login
	 * goes on (another login, a logout, a reconfiguration). The session joined is found again by
	 * its TSIH, the target by its name, and the CHAP account is a copy.
	 */
	uint64_t cfg_generation;  /* configuration the access checks were made against */
	struct negotiator neg;
	struct chap_target chap;
	struct chap_credentials cred; /* points at the copies below */
	char *auth_user, *auth_secret, *auth_mutual_user, *auth_mutual_secret;
	struct sbuf pending;      /* text of a request spread over several PDUs (C bit) */
	struct sbuf reply;        /* response text not yet sent (C bit, RFC 7143 11.13) */
	size_t reply_off;
	bool reply_transit;       /* the last part of the pending reply carries T=1 */
	int reply_nsg;
	uint8_t version_max;
};

struct conn {
	struct server *srv;
	struct session *sess;
	struct conn *next;          /* in server->conns */
	struct conn *sess_next;     /* in session->conns */
	struct loop_watch watch;
	int fd;
	enum conn_phase phase;
	uint16_t cid;
	uint16_t tpgt;
	char local_addr[64], peer_addr[64];
	uint16_t local_port, peer_port;
	struct sockaddr_storage local_sa;
	struct iscsi_params params; /* negotiated; session-wide values mirrored from the session */
	uint32_t statsn;            /* next StatSN to send */
	uint32_t exp_statsn;        /* from the initiator */
	struct pdu_conn pc;         /* reception and send queue */
	struct pdu_txpool txpool;   /* spare send items, reused instead of allocated per PDU */
	bool want_write;
	bool want_read;             /* EPOLLIN is in the watch's events */
	/* tasks */
	struct task *tasks;         /* active tasks */
	struct task *free_tasks;
	uint32_t ntasks;
	uint32_t nsending;          /* of them, answered: only their response is still queued */
	uint64_t buffered;          /* data buffer bytes held by its tasks */
	bool rx_paused;             /* not reading: the send backlog is over its bound */
	uint32_t next_ttt;
	/* login */
	struct login_state *login;
	/* text continuation */
	struct sbuf text_pending;   /* request text collected over C-bit PDUs */
	struct sbuf text_reply;     /* reply text not yet sent (response spread over PDUs) */
	size_t text_reply_off;
	uint32_t text_ttt;
	/* liveness */
	uint64_t last_rx_ms;
	uint64_t ping_sent_ms;      /* 0: no ping outstanding */
	uint32_t ping_ttt;
	uint64_t login_started_ms;
	bool closing;
	bool logout_async_sent;
	struct io_stats stats;
	uint64_t login_time;        /* wall clock seconds */
};

struct session {
	struct server *srv;
	struct tnode *node;         /* NULL for discovery */
	enum session_type type;
	uint16_t tsih;
	uint8_t isid[6];
	char initiator_name[224];
	char initiator_alias[256];
	uint16_t tpgt;
	struct iscsi_params params; /* session-wide negotiated values */
	struct conn *conns;
	uint32_t nconns;
	uint32_t exp_cmdsn;
	uint32_t max_cmdsn;         /* highest MaxCmdSN advertised; never lowered */
	uint32_t queue_depth;       /* command slots: the window is the free ones */
	struct held_pdu **ring;     /* PDUs waiting for their CmdSN turn, any connection */
	uint32_t ring_mask;         /* ring size - 1; the size is a power of two >= queue_depth */
	uint32_t nheld;             /* entries in the ring */
	uint32_t held_other;        /* held PDUs that are not SCSI commands (no task) */
	uint64_t held_bytes;        /* data segments copied for held PDUs */
	uint64_t buffered;          /* data buffer bytes held by the tasks of its connections */
	bool ended;                 /* its last connection is gone; freed after this loop iteration */
	char *auth_user;            /* CHAP name it authenticated with, NULL for none */
	struct scsi_nexus nexus;
	bool nexus_registered;
	char auth_method[8];        /* "None" or "CHAP" */
	uint64_t created;           /* wall clock seconds */
	struct io_stats closed;     /* counters of connections that have ended */
	uint64_t kill_deadline_ms;  /* session kill: drop at this time unless logged out; 0 = none */
};

/* server.c */
struct tnode *server_find_node(struct server *srv, const char *name);
void server_add_session(struct server *srv, struct session *s);
void server_remove_session(struct server *srv, struct session *s);
struct session *server_find_session(struct server *srv, const char *initiator, const uint8_t isid[6], uint16_t tsih);
struct session *server_find_session_isid(struct server *srv, const char *initiator, const uint8_t isid[6],
					 const char *target);
bool node_allows(const struct tnode *node, const char *initiator);

/* conn.c */
void conn_accept(struct server *srv, int fd, uint16_t tpgt);
void conn_close(struct conn *c, const char *why);
void conn_flush(struct conn *c);
/*
 * Queue a PDU: bhs is encoded, StatSN, ExpCmdSN and MaxCmdSN filled in, digests and padding
 * added; data may be NULL.
 */
void conn_send_pdu(struct conn *c, struct bhs *b, const void *data, uint32_t len, struct task *task,
		   uint8_t *owned);
/* The MaxCmdSN to send: ExpCmdSN + free command slots - 1, never below what was sent before. */
uint32_t session_max_cmdsn(struct session *s);
uint32_t session_outstanding(const struct session *s);
uint64_t session_oldest_held_ms(const struct session *s);
uint32_t session_queue_depth(const struct server *srv);

/* login.c */
void login_handle(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void login_free(struct conn *c);
/* ExpCmdSN and MaxCmdSN for a Login Response: the window the session will have. */
void login_window(struct conn *c, uint32_t *expcmdsn, uint32_t *maxcmdsn);

/* session.c */
struct session *session_create(struct server *srv, struct conn *c);
void session_add_conn(struct session *s, struct conn *c);
void session_remove_conn(struct session *s, struct conn *c);
void session_close(struct session *s, const char *why);
void session_revoke(struct session *s, unsigned grace, const char *why);
void session_advance(struct session *s);
void session_unhold_task(struct session *s, struct task *t);
void session_skip_cmdsn(struct session *s, uint32_t sn);
/* CmdSN ordering: true if the PDU with this CmdSN may be processed now (else it is held). */
bool session_order(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len, struct task *task);

/* task.c */
void task_handle_command(struct conn *c, const struct bhs *b, const uint8_t *ahs, const uint8_t *data, uint32_t len);
void task_handle_data_out(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void task_start(struct task *t);
void task_release(struct task *t);
void task_abort(struct task *t);
void task_free_all(struct conn *c);
struct task *task_find_itt(struct session *s, uint32_t itt);
unsigned task_expire_data_waits(struct conn *c, uint64_t now_ms, uint64_t timeout_ms);

/* tmf.c */
void tmf_handle(struct conn *c, const struct bhs *b);

/* text.c (Text requests in full feature phase, SendTargets) */
void textreq_handle(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void send_targets(struct conn *c, const char *what, struct text_list *out);

/* misc PDU handlers in ffp.c */
void ffp_dispatch(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len);
void ffp_run_ordered(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void send_reject(struct conn *c, uint8_t reason, const uint8_t *hdr);
void send_async_logout(struct conn *c, uint16_t seconds);

/* Takes ownership of cfg (heap-allocated) in every case. */
int server_start(struct server *srv, struct cfg *cfg);
void portal_on_accept(void *arg, uint32_t events);

/* reconfig.c: make the running server match cfg (owned on success; freed on failure). */
int server_apply_config(struct server *srv, struct cfg *cfg, char **err);
/* SIGHUP: reload the configuration file and apply only the differences. */
void server_reload(struct server *srv);
void portal_close(struct portal *p);
void portal_stop_listening(struct portal *p);
void node_free(struct tnode *n);
int server_run(struct server *srv);
void server_stop(struct server *srv);
void server_free(struct server *srv);

#endif
