/* Internals of libisthmus shared by its source files and its unit tests. */
#ifndef ISTHMUS_INITIATOR_INTERNAL_H
#define ISTHMUS_INITIATOR_INTERNAL_H

#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "isthmus/isthmus.h"
#include "proto/chap.h"
#include "proto/params.h"
#include "proto/frame.h"
#include "proto/pdu_conn.h"
#include "proto/pdu.h"
#include "proto/text.h"
#include "util/sbuf.h"

#define ISM_MAX_CONNS 16
#define ISM_ERRLEN 512
#define ISM_LOGIN_MAX_DSL 8192u
#define ISM_LOGIN_TEXT_MAX (64u * 1024u)
#define ISM_TEXT_MAX (1024u * 1024u)
/* Text Responses one Text exchange may take: a target that keeps answering "more to come"
 * (F clear, with or without data) is cut off here, whatever it sends. */
#define ISM_TEXT_MAX_EXCHANGES 1024u
/* NOP-Out answers to the target's pings that may wait unwritten on one connection: a target that
 * pings without reading the answers would otherwise grow the send queue without end. */
#define ISM_MAX_QUEUED_PING_ANSWERS 64u
#define ISM_TASK_BUCKETS 256

enum conn_state {
	CONN_FREE = 0,
	CONN_CONNECTING, /* non-blocking connect in progress */
	CONN_LOGIN,
	CONN_FFP,
	CONN_LOGOUT,     /* Logout Request sent or waiting to be sent */
	CONN_CLOSED,
	CONN_RECOVERING, /* ErrorRecoveryLevel 2: lost, its tasks kept, waiting for its next login */
};

/* ErrorRecoveryLevel 2 (erl2.c): where the connection recovery of a slot stands. */
enum conn_recovery {
	RECOVERY_NONE = 0,
	RECOVERY_WAIT,     /* CONN_RECOVERING: the next login attempt is due at recover_at_ms */
	RECOVERY_LOGIN,    /* the replacement connection (same CID, same TSIH) is logging in */
	RECOVERY_REASSIGN, /* logged in: TASK REASSIGN sent for each kept task, answers awaited */
};

/* The keepalive of a connection in full feature phase: a NOP-Out after a silence, then its answer. */
enum keepalive_state {
	KEEPALIVE_IDLE = 0,    /* nothing outstanding: the next ping goes after nop_interval_ms of silence */
	KEEPALIVE_OUTSTANDING, /* a NOP-Out was sent: the connection fails without an answer in nop_timeout_ms */
};

/*
 * One queued PDU: header (+ digest), data (borrowed or owned), padding and data digest. Items come
 * from a per-session free list, so queueing a PDU allocates nothing once the pool is warm.
 */
struct txitem {
	struct pdu_txitem base; /* first: the engine's item */
	struct ism_task *task; /* data borrowed from this task's buffer (NULL: none) */
	bool r2t_last;         /* last Data-Out answering an R2T: written means that R2T is answered */
	struct ism_conn *ping_conn; /* a NOP-Out answering a ping of this connection's target */
};

enum task_kind { TASK_SCSI, TASK_TMF, TASK_NOP, TASK_TEXT, TASK_LOGOUT, TASK_LOGIN };

enum task_state {
	TASK_QUEUED = 0, /* waiting for the CmdSN window or a connection (a login: for its login) */
	TASK_SENT,       /* its PDU went to a connection: the target knows its ITT */
	TASK_DONE,       /* out of the ITT table, its callback queued or run */
};

struct ism_task {
	enum task_kind kind;
	enum task_state state;
	struct ism_session *s;
	struct ism_conn *conn; /* connection the task is allegiant to (NULL while pending) */
	struct ism_task *hnext;       /* ITT hash chain */
	struct ism_task *qnext;       /* pending (CmdSN window) queue; free list of the task pool */
	struct ism_task *snext, *sprev; /* the connection's sent tasks, oldest first (command timeout) */
	uint32_t itt, cmdsn;
	bool immediate;
	uint64_t lun;
	uint8_t cdb[16];
	size_t cdb_len;
	enum ism_dir dir;
	uint8_t *buf;
	uint32_t len;
	/* write progress */
	uint32_t write_covered;    /* bytes sent unsolicited or asked for by R2Ts */
	uint32_t write_end;        /* end of the highest range sent or asked for: R2Ts go forward */
	uint32_t next_r2tsn;
	uint32_t r2t_active; /* R2Ts whose Data-Out is queued but not yet all written */
	/* read progress */
	uint32_t next_datasn;
	bool snack_sent;     /* ERL 1: a Data SNACK from snack_begrun is out */
	uint32_t snack_begrun;
	uint64_t last_send_ms;  /* ERL 1: its command PDU last sent (0: at sent_ms), for the CmdSN gap check */
	uint32_t cmd_retries;   /* ERL 1: sent again to plug a CmdSN gap (at most ISM_ERL1_MAX_CMD_RETRIES) */
	uint32_t r2t_missing_beg, r2t_missing_end; /* ERL 1: R2TSNs asked for by an R2T SNACK, [beg, end) */
	/* ERL 2: allegiant to a lost connection, waiting for its TASK REASSIGN (or answered, and the
	 * target's next R2T may ask again for data sent on the lost connection) */
	bool reassign, reassigned;
	uint32_t read_bytes; /* Data-In bytes placed, all in order from offset 0 */
	uint32_t txrefs; /* tx items borrowing buf */
	struct ism_scsi_result res;
	ism_scsi_cb scsi_cb;
	ism_done_cb done_cb;
	ism_conn_cb conn_cb; /* TASK_LOGIN of ism_add_connection_async: called with the CID */
	ism_discovery_cb disc_cb;
	void *priv;
	/* TMF */
	uint8_t tmf_function;
	uint32_t tmf_ref_itt, tmf_ref_cmdsn;
	uint32_t tmf_expdatasn; /* TASK REASSIGN of a read: the next DataSN it needs */
	/* logout */
	uint8_t logout_reason;
	uint16_t logout_cid;
	/* text (discovery) */
	struct sbuf text;
	uint32_t text_exchanges; /* Text Responses received for this request */
	/* NOP, and every sent task for the command timeout */
	uint64_t sent_ms;
	uint64_t queued_ms; /* submitted: a command the CmdSN window holds back times out from here */
	bool on_sent_list;
	/* discovery result handed to the callback */
	struct ism_discovery *result;
};

struct login_ctx {
	enum login_stage stage; /* current CSG */
	bool chap_started, chap_done, auth_none;
	struct chap_initiator chap;
	struct chap_credentials cred;
	struct negotiator neg;
	bool op_sent;
	int rounds;
	struct sbuf rx_text; /* response text joined over C-bit PDUs */
	uint32_t statsn;     /* last StatSN seen in a login response */
	bool have_statsn;
	uint64_t deadline_ms;
	int redirects;
	struct ism_task *task; /* completion of the login (TASK_LOGIN, not in the ITT table) */
	int fail_status;       /* status for the callback when the connection fails during login */
	bool leading;
	bool restart; /* connection reinstatement: the first request carries the old ExpStatSN */
	struct text_list pending_keys; /* keys to send in the next request */
	struct text_list offered;       /* operational keys we sent: the target's keys by these names answer us */
};

struct ism_conn {
	struct ism_session *s;
	enum conn_state state;
	int fd;
	uint16_t cid;
	char portal[300];  /* as given */
	char peer[300];    /* connected address "host:port" */
	struct addrinfo *ai, *ai_next;
	struct iscsi_params params;
	uint32_t exp_statsn;
	/* ErrorRecoveryLevel 1 (erl1.c) */
	uint64_t statsn_ahead;        /* bit i: StatSN exp_statsn + 1 + i came already (past a gap) */
	bool status_snack_sent;       /* a Status SNACK from status_snack_begrun is out */
	uint32_t status_snack_begrun;
	uint64_t snacks_sent, digest_errors;
	bool gap_probe;               /* the outstanding keepalive NOP-Out asks whether gap_itt's command came */
	uint32_t gap_itt, gap_cmdsn;
	uint64_t gap_probe_ms;        /* when the last such NOP-Out went: at most one a ERL1_CMD_GAP_PROBE_MS */
	uint64_t cmds_retried;        /* commands sent again with their CmdSN (a Reject or a CmdSN gap) */
	/* ErrorRecoveryLevel 2 (erl2.c) */
	enum conn_recovery recovery;
	uint64_t recover_at_ms;     /* RECOVERY_WAIT: the next login attempt */
	uint64_t retain_until_ms;   /* the target keeps the lost connection's tasks until then */
	unsigned recovery_attempts; /* login attempts since the loss */
	bool cid_given_up;          /* the lost CID was logged out for recovery: a new CID logs in */
	uint32_t reassigns_pending; /* TASK REASSIGN requests not answered yet */
	char lost_portal[300];      /* the portal of the connection that was lost */
	char lost_reason[400];
	/* reception and send queue; large Data-In segments go straight into their task's buffer */
	struct pdu_conn pc;
	/* login */
	struct login_ctx *login;
	/* keepalive */
	uint64_t last_rx_ms; /* the last PDU from the target other than its own NOP-In */
	enum keepalive_state keepalive;
	uint64_t nop_sent_ms; /* when the outstanding keepalive NOP-Out was sent */
	uint32_t nop_itt;     /* its ITT */
	uint32_t login_itt;
	uint32_t ping_answers; /* NOP-Outs answering the target's pings, queued and not yet written */
	/* logout on request of the target (async event 1) */
	bool draining;
	bool logout_queued;
	uint32_t outstanding; /* tasks allegiant to this connection */
	struct ism_task *sent_head, *sent_tail; /* sent and not answered, in sending order */
	uint64_t ios;         /* SCSI commands sent on it */
	uint64_t bytes_sent, bytes_received;
	/* addresses recorded when the connection is established (ism_session_connection_info) */
	struct sockaddr_storage local_sa, peer_sa;
	/* the session's fd callback was told about fd (ISM_FD_ADD), last with watch_events */
	bool watched;
	short watch_events;
};

/* Where a session stands; a new leading login starts it again from SESSION_IDLE. */
enum session_state {
	SESSION_IDLE = 0,   /* no leading login completed */
	SESSION_LOGGED_IN,  /* the leading login completed and a connection is still up */
	SESSION_LOGGED_OUT, /* ended with a successful logout (ISM_SERVICE_LOGGED_OUT) */
	SESSION_FAILED,     /* the last connection failed */
};

struct ism_session {
	/* configuration (owned copies) */
	struct ism_config cfg;
	char *initiator_name, *initiator_alias, *target_name;
	char *chap_user, *chap_secret, *mutual_user, *mutual_secret, *chap_algorithms;
	char err[ISM_ERRLEN];

	uint8_t isid[6];
	bool isid_known;
	uint16_t tsih;
	uint16_t tpgt;
	char target_alias[256];
	struct iscsi_params params; /* session-wide result of the leading login */
	uint32_t erl_offer;         /* ErrorRecoveryLevel offered at login (ism_session_set_error_recovery_level) */
	enum session_state state;
	bool logging_out; /* a session logout was asked for (or the session is being freed) */

	uint32_t cmdsn, exp_cmdsn, max_cmdsn;
	uint32_t next_itt;
	uint16_t next_cid;

	struct ism_conn conns[ISM_MAX_CONNS];
	unsigned rr;
	unsigned conn_slots; /* conns[0, conn_slots) have been used */
	uint64_t now_ms;     /* clock at the start of the current ism_session_service */

	struct ism_task *tasks[ISM_TASK_BUCKETS];
	size_t ntasks;
	struct ism_task *pending_head, *pending_tail;
	size_t npending;

	/* deferred callbacks: tasks completed while inside the core */
	struct ism_task *done_head, *done_tail;
	int in_service;
	int cork;           /* ism_session_cork depth: hold writes of new commands */
	int in_callbacks;    /* a completion callback is running */
	bool free_requested; /* ism_session_free from a callback: freed at the end of the service call */
	bool freeing;        /* ism_session_free is running the last callbacks */

	/* Pools: finished tasks and written PDUs are kept for reuse (freed with the session). */
	struct ism_task *task_pool;
	struct pdu_txpool tx_pool; /* spare send items of all its connections */
	size_t task_pool_n;

	/* ism_session_set_fd_cb */
	ism_fd_cb fd_cb;
	void *fd_opaque;

	/* The connection loss that ended the session (session recovery, conn_table.c): the
	 * connections as they were then (allocated at the loss), and why. */
	struct ism_conn_info *lost;
	int nlost;
	uint16_t lost_cid;
	int closed_with_lost;
	char lost_reason[400];

	/* ErrorRecoveryLevel 2 (erl2.c): connections lost and recovered without ending the session */
	uint64_t conn_losses_kept, conn_recoveries, task_reassignments, conn_recovery_fallbacks;
};

/* At most this many idle tasks and PDU slots are kept per session. */
#define ISM_TASK_POOL_MAX 1024
#define ISM_TX_POOL_MAX 4096

/* session.c: session lifecycle and configuration */
void ism_set_error(struct ism_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t ism_now_ms(void);
/* Free the memory (every callback has run). */
void ism_session_destroy(struct ism_session *s);

/* task.c: the task table (ITT hash), the task pool, completion and deferred callbacks */
struct ism_task *ism_task_alloc(struct ism_session *s, enum task_kind kind);
struct ism_task *ism_task_new(struct ism_session *s, enum task_kind kind);
struct ism_task *ism_task_find(struct ism_session *s, uint32_t itt);
void ism_task_unhash(struct ism_task *t);
void ism_pending_remove(struct ism_session *s, struct ism_task *t);
void ism_sent_list_add(struct ism_conn *c, struct ism_task *t);
void ism_task_complete(struct ism_task *t);
void ism_task_fail(struct ism_task *t, int err);
void ism_task_free(struct ism_task *t);
void ism_run_callbacks(struct ism_session *s);

/* session_info.c */
void ism_conn_info_fill(const struct ism_conn *c, struct ism_conn_info *o);

/* conn_table.c: the session's connection slots, their failure and close */
struct ism_conn *ism_conn_alloc(struct ism_session *s);
bool ism_conn_usable(const struct ism_conn *c);
int ism_live_conns(const struct ism_session *s);
struct ism_conn *ism_conn_by_cid(struct ism_session *s, uint16_t cid);
void ism_fail_pending(struct ism_session *s, int err);
/* The connection is gone (err ISM_OK: logged out cleanly): its tasks fail, the session may end. */
void ism_conn_closed(struct ism_conn *c, int err);
void ism_conn_fail(struct ism_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ism_conn_release(struct ism_conn *c);

/* send.c: the command send path, CmdSN window queue and connection choice */
void ism_submit(struct ism_session *s, struct ism_task *t);
void ism_kick(struct ism_session *s);
/* Send t on c at once, ahead of the commands waiting for the window (immediate requests). */
void ism_send_on(struct ism_conn *c, struct ism_task *t);
/* Queue the Data-Out PDUs of one sequence; returns the last one (NULL if the connection is gone). */
struct txitem *ism_send_data_out(struct ism_conn *c, struct ism_task *t, uint32_t ttt, uint32_t offset,
				 uint32_t len);
void ism_flush_soon(struct ism_conn *c);

/* rx.c: full feature phase reception, the window and StatSN updated once per PDU */
void ism_update_window(struct ism_session *s, uint32_t expcmdsn, uint32_t maxcmdsn);
bool ism_process_pdu_serials(struct ism_conn *c, const struct bhs *b);
struct ism_task *ism_task_for(struct ism_conn *c, const struct bhs *b, enum task_kind kind);
void ism_ffp_pdu(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);

/* rsp_scsi.c, rsp_nop_async_reject.c, rsp_tmf_logout.c: the response handlers */
void ism_on_data_in(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void ism_on_scsi_response(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void ism_on_r2t(struct ism_conn *c, const struct bhs *b, uint32_t len);
/* The name RFC 7143 gives a Task Management Response code (rsp_tmf_logout.c). */
const char *ism_tmf_response_str(uint8_t r);
/* Send the Data-Out the R2T b asks of t (rsp_scsi.c; also for R2Ts of recovery). */
void ism_answer_r2t(struct ism_conn *c, struct ism_task *t, const struct bhs *b);
void ism_on_nop_in(struct ism_conn *c, const struct bhs *b);
void ism_on_async(struct ism_conn *c, const struct bhs *b);
void ism_on_reject(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void ism_on_tmf_response(struct ism_conn *c, const struct bhs *b, uint32_t len);
void ism_on_logout_response(struct ism_conn *c, const struct bhs *b, uint32_t len);

/* timers.c: command, window, login and keepalive timers */
void ism_run_timers(struct ism_session *s);

/* api.c: the public asynchronous operations */
void ism_queue_logout(struct ism_session *s, struct ism_conn *c, uint8_t reason, ism_done_cb cb, void *priv);
/* Attach an already connected socket as a new connection and start its login (tests, socketpairs). */
int ism_attach_fd_async(struct ism_session *s, int fd, bool leading, ism_done_cb cb, void *priv);

/* sync.c */
/* Run the loop until *flag is set or the session fails; timeout_ms < 0 waits forever. */
int ism_run_until(struct ism_session *s, const bool *flag, int timeout_ms);

/* erl1.c: ErrorRecoveryLevel 1, active when the session negotiated it */
bool ism_erl1(const struct ism_conn *c);
/* Before a PDU's serials are taken: true when it is dropped (comes again, or came already). */
bool ism_erl1_filter(struct ism_conn *c, const struct bhs *b, bool status, uint32_t statsn);
/* A status's StatSN: ExpStatSN moves, or the gap before it is asked for. False: connection failed. */
bool ism_erl1_status(struct ism_conn *c, uint32_t statsn);
void ism_erl1_data_in_done(struct ism_conn *c, const struct bhs *b);
bool ism_erl1_data_digest_error(struct ism_conn *c, const struct bhs *b);
bool ism_erl1_check_header(struct ism_conn *c, const uint8_t *raw, enum pdu_header_verdict *v);
/* A Reject (hdr: the rejected header): true when recovery takes it over. */
bool ism_erl1_reject(struct ism_conn *c, const struct bhs *b, const uint8_t *hdr);
bool ism_erl1_recovery_r2t(struct ism_conn *c, struct ism_task *t, const struct bhs *b);
/* A command lost on the way (header digest error at the target): found by a NOP-Out sent after
 * it, whose answer shows ExpCmdSN still at or below its CmdSN; then sent again with its CmdSN. */
void ism_erl1_check_cmd_gap(struct ism_conn *c, uint64_t now);
uint64_t ism_erl1_cmd_gap_due(const struct ism_conn *c);
void ism_erl1_ping_answered(struct ism_conn *c);
/* An R2T whose R2TSN is not the next: true when handled (the ones skipped asked for again, or
 * one of them come again and answered). */
bool ism_erl1_r2t_gap(struct ism_conn *c, struct ism_task *t, const struct bhs *b);
/* send.c: the SCSI Command (and its immediate and unsolicited data) of t again, same CmdSN. */
void ism_resend_scsi(struct ism_conn *c, struct ism_task *t);

/* erl2.c: ErrorRecoveryLevel 2, connection recovery (RFC 7143 7.1.5, 7.2) */
/* c, in full feature phase, is lost: true when its tasks are kept for a replacement connection. */
bool ism_erl2_conn_lost(struct ism_conn *c, const char *why);
/* A login attempt of a recovering connection failed. */
void ism_erl2_attempt_failed(struct ism_conn *c, const char *why);
/* The replacement connection is in full feature phase: the kept tasks are reassigned to it. */
void ism_erl2_logged_in(struct ism_conn *c);
/* The answer to a TASK REASSIGN (m completes here). */
void ism_erl2_reassign_answered(struct ism_conn *c, struct ism_task *m, uint8_t response);
/* The answer to a Logout "remove the connection for recovery" of a lost CID (t completes here). */
void ism_erl2_removed(struct ism_conn *c, struct ism_task *t, uint8_t response);
/* An R2T for a task reassigned to c: true when handled (it may ask again for data sent before). */
bool ism_erl2_r2t(struct ism_conn *c, struct ism_task *t, const struct bhs *b);
/* Login attempts due, and the DefaultTime2Retain bound; the earliest due time (0: none). */
void ism_erl2_timers(struct ism_session *s, uint64_t now);
void ism_send_keepalive(struct ism_conn *c, uint64_t now);
uint64_t ism_erl2_next_due(const struct ism_session *s);
/* Record of the loss of c for ism_session_lost_connection_info; closing: the others close with it. */
void ism_record_loss(struct ism_conn *c, const char *why, bool closing);

/* conn.c */
/* Queue one PDU (NULL when the connection is gone; owned is freed then). Nothing is written yet. */
struct txitem *ism_conn_send(struct ism_conn *c, struct bhs *b, const void *data, uint32_t len,
			     struct ism_task *task, uint8_t *owned);
void ism_conn_flush(struct ism_conn *c);
/* A fresh connection slot: its PDU engine set up, nothing received yet. */
void ism_conn_init_engine(struct ism_conn *c);
/* Numeric address and port of an IPv4 or IPv6 socket address ("" and 0 for anything else). */
/* Read what the socket has and dispatch complete PDUs. */
void ism_conn_readable(struct ism_conn *c);
void ism_conn_drop_tx(struct ism_conn *c);
/* Write what every connection of the session has queued (end of a service round). */
void ism_flush_all(struct ism_session *s);
/* Free the PDU slot pool. */
void ism_tx_pool_free(struct ism_session *s);
void ism_conn_detach_task(struct ism_conn *c, struct ism_task *t);
int ism_conn_start_connect(struct ism_conn *c);
void ism_conn_connected(struct ism_conn *c);
/* POLLOUT (or an error) on a connecting socket. */
void ism_conn_connect_ready(struct ism_conn *c);
void ism_conn_close_fd(struct ism_conn *c);

/* watch.c: what c's descriptor waits for (POLLIN / POLLOUT), from its state and send queue. */
short ism_conn_events(const struct ism_conn *c);
/* The fd callback: tells it what c waits for now, if that changed (ADD the first time). */
void ism_watch_update(struct ism_conn *c);
/* c's descriptor is about to be closed. */
void ism_watch_close(struct ism_conn *c);

/* login.c */
void ism_login_start(struct ism_conn *c);
void ism_login_pdu(struct ism_conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
void ism_login_free(struct ism_conn *c);
void ism_login_finish(struct ism_conn *c, int status);

/* discovery.c */
void ism_text_response(struct ism_conn *c, struct ism_task *t, const struct bhs *b, const uint8_t *data, uint32_t len);
struct ism_discovery *ism_parse_sendtargets(const uint8_t *data, size_t len);

/* scsi.c */
void ism_format_scsi_error(struct ism_session *s, const struct ism_scsi_result *r);

#endif
