/*
 * libisthmus: the Isthmus iSCSI initiator library.
 *
 * One `struct ism_session` is one iSCSI session (normal or discovery) with one or more TCP
 * connections. The core is asynchronous and never blocks: the caller's event loop asks for the
 * descriptors to watch (ism_session_fds, or is told about them: ism_session_set_fd_cb), hands back
 * readiness (ism_session_service) and wakes up for timers (ism_session_timeout_ms). Every *_async
 * call takes a completion callback.
 *
 * The blocking helpers (ism_connect, ism_scsi, ism_inquiry, ...) run a private poll loop
 * over the same core and return when their request completed.
 *
 * Errors are return values (0 success, -1 failure). The reason is kept in the session and read with
 * ism_session_error(); it is set once, where the reason is known, for example
 *   "login failed: authentication failure (0x0201)"
 *   "SCSI status CHECK CONDITION, sense ILLEGAL REQUEST / LBA OUT OF RANGE (0x21/0x00)"
 *
 * A session is not thread-safe: use it from one thread at a time.
 */
#ifndef ISTHMUS_ISTHMUS_H
#define ISTHMUS_ISTHMUS_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ISM_DEFAULT_PORT 3260

struct ism_session;
struct ism_task;

/* ------------------------------------------------------------------------------------------ */
/* Configuration */

enum ism_session_type { ISM_SESSION_NORMAL = 0, ISM_SESSION_DISCOVERY = 1 };

struct ism_config {
	const char *initiator_name;  /* required: iqn./eui./naa. name */
	const char *initiator_alias; /* optional InitiatorAlias */
	const char *target_name;     /* required for a normal session, NULL for discovery */
	enum ism_session_type session_type;

	/* CHAP: user/secret we prove; mutual_user/mutual_secret the target must prove. NULL: none. */
	const char *chap_user, *chap_secret;
	const char *mutual_user, *mutual_secret;
	/*
	 * CHAP_A values to offer, strongest first, e.g. "7,6,5" (5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256).
	 * NULL: "7,8,6,5". Some targets pick an algorithm they then fail to verify: offer "5" there.
	 */
	const char *chap_algorithms;

	bool header_digest; /* offer CRC32C,None (true) or None only (false) */
	bool data_digest;
	bool require_digest; /* offer CRC32C only */

	/* Operational offers (0 means the library default). */
	uint32_t max_recv_dsl;       /* our MaxRecvDataSegmentLength, default 262144 */
	uint32_t max_burst_length;   /* default 1048576 */
	uint32_t first_burst_length; /* default 262144 */
	uint32_t max_connections;    /* default 16 */
	int initial_r2t;             /* -1 default (No), 0 No, 1 Yes */
	int immediate_data;          /* -1 default (Yes), 0 No, 1 Yes */

	/* ISID: explicit when isid_set, else derived with ism_isid_derive from (initiator, target, portal). */
	bool isid_set;
	uint8_t isid[6];

	/* Timers in milliseconds (0: default, negative: off). */
	int login_timeout_ms; /* per login attempt, default 15000 */
	int nop_interval_ms;  /* idle time before a NOP-Out keepalive, default 5000 */
	int nop_timeout_ms;   /* no NOP-In answer within this fails the connection, default 10000 */
	/*
	 * A command (or TMF, NOP, Text, Logout) sent and not answered within this completes with
	 * ISM_ERR_TIMEOUT and its connection fails (ErrorRecoveryLevel 0 cannot recover the task);
	 * the blocking helpers wait as long. Default 60000.
	 */
	int cmd_timeout_ms;
	int max_redirects;    /* login redirections followed, default 5 */
};

/* Trace logins and PDUs to standard error (process-wide). */
void ism_set_debug(bool on);

/* Fill cfg with the defaults (all strings NULL). */
void ism_config_init(struct ism_config *cfg);

/* Create a session object (no connection yet). Strings are copied. NULL on bad config (errmsg set). */
struct ism_session *ism_session_new(const struct ism_config *cfg, char *errmsg, size_t errlen);
/*
 * Close every connection without logout and free the session. Every pending callback (commands,
 * logins, logouts, discovery, ...) runs with ISM_ERR_CLOSED before ism_session_free returns, on the
 * caller's stack: do not hold locks those callbacks take, and do not use s in them except to read
 * it. A call from inside one of the session's own callbacks is allowed and deferred: the
 * connections are closed at once, the remaining callbacks run with ISM_ERR_CLOSED, and the memory
 * is freed when the ism_session_service that ran the callback returns (it then returns
 * ISM_SERVICE_FAILED and s must not be used any more). A nested call (from a callback that runs
 * because of ism_session_free) does nothing. Freeing a session from a callback while one of the
 * blocking helpers below runs on it is not allowed.
 */
void ism_session_free(struct ism_session *s);

/* The last error of the session ("" if none). */
const char *ism_session_error(const struct ism_session *s);
/* Forget the last error. */
void ism_session_clear_error(struct ism_session *s);
/*
 * The ErrorRecoveryLevel to offer at the next leading login: 0 (the default), 1, where a PDU
 * damaged or lost on the way (digest error) is asked for again with a SNACK instead of failing the
 * connection, or 2, where a lost connection is replaced and its tasks reassigned (connection
 * recovery, see ism_conn_recovery_info). The target may answer with less. -1 for any other level.
 */
int ism_session_set_error_recovery_level(struct ism_session *s, unsigned level);

/*
 * Derive a stable ISID (RFC 7143 10.12.5, type 01b "random") from the initiator name, target name
 * and a portal-group identity (the TPGT in decimal when known, else the portal "host:port"): the
 * same three strings always give the same ISID, so SCSI persistent reservations keep matching
 * across logins.
 */
void ism_isid_derive(const char *initiator, const char *target, const char *portal_group, uint8_t isid[6]);

/* ------------------------------------------------------------------------------------------ */
/* Event loop integration */

/* Fill up to max pollfds (fd, events) for the session; returns how many. */
int ism_session_fds(struct ism_session *s, struct pollfd *fds, int max);

/*
 * Descriptor notifications, for an event loop that keeps its own registrations (epoll): instead
 * of asking ism_session_fds after every call, it is told when a connection's descriptor appears
 * (ISM_FD_ADD), when the events the library waits for on it change (ISM_FD_MOD), and when it goes
 * away (ISM_FD_DEL, called before the descriptor is closed, so a number the system hands out again
 * is always announced anew). events is POLLIN and/or POLLOUT; POLLERR and POLLHUP are always of
 * interest. The callback runs from inside library calls (ism_session_service, the *_async calls,
 * ism_session_uncork, ism_session_free): it must only update the caller's registrations, never
 * call into the session.
 */
enum ism_fd_op { ISM_FD_ADD = 1, ISM_FD_MOD = 2, ISM_FD_DEL = 3 };
typedef void (*ism_fd_cb)(void *opaque, enum ism_fd_op op, int fd, short events);
/*
 * Register cb (with opaque) for the session's descriptors. A previous callback first gets
 * ISM_FD_DEL for every descriptor it was told about; cb then gets ISM_FD_ADD for every descriptor
 * the session already has. cb NULL stops the notifications (after those ISM_FD_DELs).
 */
void ism_session_set_fd_cb(struct ism_session *s, ism_fd_cb cb, void *opaque);

/* What ism_session_service returns. */
enum ism_service_status {
	ISM_SERVICE_OK = 0,
	/*
	 * The session ended with a successful logout and has no connection left: after
	 * ism_logout_async, after removing its last connection, or because the target asked for it
	 * (Async Message event 1 "logout requested" on the last usable connection: the library then
	 * logs the session out by itself). Returned by this and every later call until the next
	 * ism_connect_async on the session; ism_session_logged_in() is false. Not a failure: the
	 * error text is left as it was. A caller that wants the session back logs in again (a new
	 * session, or ism_connect_async on this one, which reinstates it with the same ISID).
	 */
	ISM_SERVICE_LOGGED_OUT = 1,
	/* The session has failed as a whole (no usable connection left; see ism_session_error). */
	ISM_SERVICE_FAILED = -1,
};
/*
 * Handle readiness of one fd (revents as from poll). fd -1 only runs timers. Returns an enum
 * ism_service_status: 0 while the session goes on, ISM_SERVICE_LOGGED_OUT (1) once it ended with
 * a clean logout, -1 when it failed. A caller that only tests for < 0 treats a clean logout
 * like 0; ism_session_logged_in() or the value 1 tells it apart.
 * One call reads everything the socket has, handles every PDU in it, runs the completion
 * callbacks, and writes what they queued (new commands included) in one writev per connection.
 * Completion callbacks run only from here (and from ism_session_free).
 */
int ism_session_service(struct ism_session *s, int fd, short revents);
/* Milliseconds until the next timer needs ism_session_service (fd -1); -1 for none. */
int ism_session_timeout_ms(struct ism_session *s);

/* ------------------------------------------------------------------------------------------ */
/* Results */

enum ism_error {
	ISM_OK = 0,
	ISM_ERR_TRANSPORT = -1,  /* connection failed / protocol error */
	ISM_ERR_LOGIN = -2,      /* login refused */
	ISM_ERR_TIMEOUT = -3,
	ISM_ERR_ABORTED = -4,    /* task aborted by task management */
	ISM_ERR_CLOSED = -5,     /* session freed or logged out */
	ISM_ERR_INVALID = -6,    /* bad argument */
	ISM_ERR_TARGET = -7,     /* target reported a failure (response code, reject) */
	ISM_ERR_PROTOCOL = -8,   /* the target's answer to this command broke the protocol (the
				  * connection fails too; its other commands get ISM_ERR_TRANSPORT) */
};

enum ism_dir { ISM_DIR_NONE = 0, ISM_DIR_READ = 1, ISM_DIR_WRITE = 2 };

#define ISM_SENSE_MAX 252

struct ism_scsi_result {
	int error;             /* enum ism_error: ISM_OK when a SCSI status was received */
	uint8_t status;        /* SCSI status (0 GOOD, 2 CHECK CONDITION, 8 BUSY, 0x18 RESERVATION CONFLICT) */
	uint8_t response;      /* iSCSI response code (0 command completed at target) */
	uint8_t sense[ISM_SENSE_MAX];
	uint32_t sense_len;
	/*
	 * Data bytes moved: for a read, the bytes of buf[0, transferred) that Data-In filled (less
	 * any residual the target reported); the rest of the buffer is zeroed, never left as it was.
	 * For a write, the bytes sent unsolicited or asked for by R2Ts, less the residual.
	 * underflow: transferred < the buffer length (residual = the difference), whatever the
	 * target claimed. overflow: the target reported more data than the buffer (residual: its
	 * count); such a command ends with error ISM_ERR_TARGET.
	 */
	uint32_t transferred;
	bool overflow, underflow;
	uint32_t residual;
	uint16_t cid;          /* connection the command ran on */
};

typedef void (*ism_done_cb)(struct ism_session *s, int status, void *priv);
typedef void (*ism_scsi_cb)(struct ism_session *s, const struct ism_scsi_result *r, void *priv);

/* ------------------------------------------------------------------------------------------ */
/* Login, connections, logout (asynchronous) */

/*
 * Connect to portal ("host", "host:port", "1.2.3.4:3260", "[::1]:3260") and log in the
 * session's leading connection (following redirects). cb gets 0 or an enum ism_error.
 */
int ism_connect_async(struct ism_session *s, const char *portal, ism_done_cb cb, void *priv);
/*
 * Add a connection to a logged-in normal session (same ISID and TSIH, new CID). cb gets 0 or an
 * enum ism_error and the CID the connection was given (on success it is in full feature phase;
 * on failure it is gone and cid only names it in messages). The CID is fixed when the call
 * returns 0 and stays the same across redirects.
 */
typedef void (*ism_conn_cb)(struct ism_session *s, int status, uint16_t cid, void *priv);
int ism_add_connection_async(struct ism_session *s, const char *portal, ism_conn_cb cb, void *priv);
/* Log out the connection with CID cid (reason "close the connection"). */
int ism_remove_connection_async(struct ism_session *s, uint16_t cid, ism_done_cb cb, void *priv);
/* Log out the whole session (after outstanding commands completed). */
int ism_logout_async(struct ism_session *s, ism_done_cb cb, void *priv);

/* Number of connections in full feature phase; their CIDs into cids (up to max). */
int ism_session_connections(const struct ism_session *s, uint16_t *cids, int max);
bool ism_session_logged_in(const struct ism_session *s);
/* Negotiated values after login. */
struct ism_session_info {
	uint16_t tsih;
	uint8_t isid[6];
	uint16_t tpgt;
	char target_alias[256];
	bool header_digest, data_digest; /* of the leading connection */
	uint32_t max_recv_dsl, peer_max_recv_dsl;
	uint32_t max_burst_length, first_burst_length, max_outstanding_r2t, max_connections;
	bool initial_r2t, immediate_data;
	uint32_t cmdsn, exp_cmdsn, max_cmdsn;
};
void ism_session_get_info(const struct ism_session *s, struct ism_session_info *info);

/* Per-connection details (ism_session_connection_info). */
enum ism_conn_state {
	ISM_CONN_CONNECTING = 0,   /* TCP connect in progress */
	ISM_CONN_LOGIN = 1,        /* login phase */
	ISM_CONN_FULL_FEATURE = 2, /* full feature phase: carries commands (unless draining) */
	ISM_CONN_LOGGING_OUT = 3,  /* Logout Request queued or sent */
	/* Only in ism_session_lost_connection_info: */
	ISM_CONN_FAILED = 4, /* the connection whose loss ended the session */
	ISM_CONN_CLOSED = 5, /* closed because of that loss */
	/* ErrorRecoveryLevel 2: lost, its tasks kept; a replacement with its CID is awaited, logging
	 * in, or having the tasks reassigned to it */
	ISM_CONN_RECOVERING = 6,
};
#define ISM_ADDR_MAX 64
#define ISM_PORTAL_MAX 256
struct ism_conn_info {
	uint16_t cid;
	enum ism_conn_state state;
	/*
	 * No new commands go to this connection: its logout was asked for (by the target with
	 * Async Message event 1, or with ism_remove_connection_async) and waits for its commands.
	 */
	bool draining;
	char portal[ISM_PORTAL_MAX]; /* as given (after a redirect: where it was sent) */
	/* Numeric addresses without brackets, "" (port 0) while unknown or for a non-IP socket. */
	char local_address[ISM_ADDR_MAX];
	uint16_t local_port;
	char remote_address[ISM_ADDR_MAX];
	uint16_t remote_port;
	bool header_digest, data_digest;      /* CRC32C in force (negotiated values after login) */
	uint32_t max_recv_dsl, peer_max_recv_dsl;
	/* Counters of this connection (since it was created; kept in the library at no extra cost). */
	uint64_t commands;        /* SCSI commands sent on it */
	uint32_t outstanding;     /* tasks sent on it and not answered yet */
	uint64_t bytes_sent, bytes_received; /* iSCSI bytes (headers, data, digests) */
};
/*
 * Every connection of the session that is not closed (all states above), in slot order, up to
 * max into out; returns how many there are (which may be more than max; out may be NULL with max 0
 * to count). Costs no system call: addresses are recorded when a connection is established.
 * The struct may only grow with a new symbol version of the library.
 */
int ism_session_connection_info(const struct ism_session *s, struct ism_conn_info *out, int max);

/*
 * Error recovery. At ErrorRecoveryLevel 0 (and 1) the recovery from a lost connection is session
 * recovery (RFC 7143 7.1.4.4, 7.1.5): a connection that fails in full feature phase (no answer to
 * the keepalive within nop_timeout_ms, a reset, a protocol error) ends the session. Its other connections are closed with it, every task fails with
 * ISM_ERR_TRANSPORT and ism_session_service returns ISM_SERVICE_FAILED: the caller reinstates the
 * session (a new one with the same ISID) and sends its commands again. Going on over the other
 * connections instead would leave the CmdSNs sent on the lost one as a gap the target waits on
 * for ever, holding every later command.
 */
struct ism_recovery_info {
	uint32_t error_recovery_level; /* negotiated by the leading login */
	uint32_t default_time2wait, default_time2retain; /* seconds, negotiated by the leading login */
	bool connection_lost; /* a lost connection ended the session; then: */
	uint16_t lost_cid;
	char reason[400];     /* why it was declared lost */
	int closed_with_it;   /* the session's other connections, closed because of it */
};
void ism_session_get_recovery_info(const struct ism_session *s, struct ism_recovery_info *info);
/*
 * When a lost connection ended the session: its connections as they were at that moment (the lost
 * one ISM_CONN_FAILED, the others ISM_CONN_CLOSED), up to max into out; returns how many there
 * were (0 when the session did not end that way).
 */
int ism_session_lost_connection_info(const struct ism_session *s, struct ism_conn_info *out, int max);

/*
 * ErrorRecoveryLevel 2 (offered with ism_session_set_error_recovery_level(s, 2) when the target
 * allows it): a connection lost in full feature phase does not end the session. Its tasks wait
 * (the connection shows ISM_CONN_RECOVERING), the other connections carry on, and after
 * DefaultTime2Wait a replacement logs in with the same CID; the tasks are reassigned to it (TASK
 * REASSIGN) and go on there. When that cannot be done within DefaultTime2Wait + DefaultTime2Retain,
 * or the target refuses it, the session fails as described above.
 */
struct ism_conn_recovery_info {
	uint64_t losses;                /* connections lost and kept for a replacement (the last one:
				         * ism_session_get_recovery_info, ism_session_lost_connection_info) */
	uint64_t connection_recoveries; /* lost connections replaced, their tasks reassigned */
	uint64_t task_reassignments;    /* tasks the target took over on a replacement (TASK REASSIGN) */
	uint64_t fallbacks;             /* recoveries given up: the session failed as at level 0 */
	int recovering;                 /* connections being recovered now */
};
void ism_session_get_conn_recovery_info(const struct ism_session *s, struct ism_conn_recovery_info *info);

/* ------------------------------------------------------------------------------------------ */
/* Commands (asynchronous) */

/*
 * Queue a SCSI command. buf holds len bytes to send (ISM_DIR_WRITE) or receives up to len bytes
 * (ISM_DIR_READ); it must stay valid until cb runs. Commands are delivered in CmdSN order and
 * spread round-robin over the session's connections; when the target's window is closed they wait.
 * Called from a completion callback the command goes out with the others at the end of that
 * ism_session_service; called elsewhere it is written at once. Tasks come from a per-session pool:
 * once warm, queueing a command allocates nothing. Large Data-In segments are read straight into
 * buf. Returns a handle (valid until cb returns) or NULL with the error set.
 */
struct ism_task *ism_scsi_async(struct ism_session *s, uint64_t lun, const uint8_t *cdb, size_t cdb_len,
				enum ism_dir dir, void *buf, uint32_t len, ism_scsi_cb cb, void *priv);

enum ism_tmf {
	ISM_TMF_ABORT_TASK = 1,
	ISM_TMF_ABORT_TASK_SET = 2,
	ISM_TMF_LUN_RESET = 5,
	ISM_TMF_TARGET_WARM_RESET = 6,
	ISM_TMF_TARGET_COLD_RESET = 7,
};
/*
 * Task management. ref is the task to abort (ISM_TMF_ABORT_TASK) or NULL. cb's status is 0 for
 * "function complete", ISM_ERR_TARGET otherwise (the response code is in the error text).
 */
int ism_task_mgmt_async(struct ism_session *s, enum ism_tmf function, uint64_t lun, struct ism_task *ref,
			ism_done_cb cb, void *priv);

/* Send a NOP-Out ping on every connection and call cb when all answered. */
int ism_nop_async(struct ism_session *s, ism_done_cb cb, void *priv);

/* Commands queued or in flight. */
int ism_session_queue_length(const struct ism_session *s);

/*
 * Commands queued from outside ism_session_service are normally written at once. Between cork and
 * the matching uncork they are held and then written together, one writev per connection: a caller
 * that submits many commands per turn of its event loop corks at the first and uncorks at the end
 * of the turn. Nested calls count; the last uncork writes.
 */
void ism_session_cork(struct ism_session *s);
void ism_session_uncork(struct ism_session *s);

/* ------------------------------------------------------------------------------------------ */
/* Discovery */

struct ism_target_entry {
	char *name;
	size_t naddr;
	char **addresses; /* "host:port,tpgt" as the target sent them */
};
struct ism_discovery {
	size_t n;
	struct ism_target_entry *targets;
};
typedef void (*ism_discovery_cb)(struct ism_session *s, int status, struct ism_discovery *d, void *priv);
/* SendTargets=All on a logged-in discovery session; d is owned by the caller (ism_discovery_free). */
int ism_discovery_async(struct ism_session *s, ism_discovery_cb cb, void *priv);
void ism_discovery_free(struct ism_discovery *d);

/* ------------------------------------------------------------------------------------------ */
/* Blocking helpers: each runs the session's poll loop until done. 0 or -1 (see the error). */

int ism_connect(struct ism_session *s, const char *portal);
int ism_add_connection(struct ism_session *s, const char *portal, uint16_t *cid);
int ism_remove_connection(struct ism_session *s, uint16_t cid);
int ism_logout(struct ism_session *s);
/* One-call discovery: a discovery session to portal, SendTargets=All, logout. */
int ism_discover(const struct ism_config *cfg, const char *portal, struct ism_discovery **out, char *errmsg,
		 size_t errlen);
/* Run the loop until every queued command finished (or the session failed). */
int ism_session_wait(struct ism_session *s);

/* Returns 0 when the status is GOOD; -1 otherwise (error text has status and decoded sense). */
int ism_scsi(struct ism_session *s, uint64_t lun, const uint8_t *cdb, size_t cdb_len, enum ism_dir dir,
	     void *buf, uint32_t len, struct ism_scsi_result *res);
int ism_task_mgmt(struct ism_session *s, enum ism_tmf function, uint64_t lun, struct ism_task *ref);

/* SCSI helpers. Data lengths are what the target returned (never more than asked). */
int ism_test_unit_ready(struct ism_session *s, uint64_t lun);
/* page < 0: standard INQUIRY; else EVPD page. */
int ism_inquiry(struct ism_session *s, uint64_t lun, int page, void *buf, uint32_t len, uint32_t *got);
int ism_read_capacity10(struct ism_session *s, uint64_t lun, uint32_t *last_lba, uint32_t *block_size);
int ism_read_capacity16(struct ism_session *s, uint64_t lun, uint64_t *last_lba, uint32_t *block_size);
/*
 * LUNs as numbers (peripheral, flat and extended flat addressing, below 2^24); any other LUN field
 * comes back as its 8 bytes big-endian, which every lun argument also takes. *n in: capacity,
 * out: count.
 */
int ism_report_luns(struct ism_session *s, uint64_t *luns, size_t *n);
int ism_read10(struct ism_session *s, uint64_t lun, uint32_t lba, uint16_t blocks, uint32_t block_size, void *buf);
int ism_write10(struct ism_session *s, uint64_t lun, uint32_t lba, uint16_t blocks, uint32_t block_size,
		const void *buf);
int ism_read16(struct ism_session *s, uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size, void *buf);
int ism_write16(struct ism_session *s, uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size,
		const void *buf);
int ism_synchronize_cache(struct ism_session *s, uint64_t lun);
struct ism_unmap_range {
	uint64_t lba;
	uint32_t blocks;
};
int ism_unmap(struct ism_session *s, uint64_t lun, const struct ism_unmap_range *ranges, size_t n);

/* ------------------------------------------------------------------------------------------ */
/* CDB builders (cdb must hold 16 bytes; return the CDB length) */

size_t ism_cdb_inquiry(uint8_t *cdb, int page, uint16_t alloc);
size_t ism_cdb_read_capacity10(uint8_t *cdb);
size_t ism_cdb_read_capacity16(uint8_t *cdb, uint32_t alloc);
size_t ism_cdb_report_luns(uint8_t *cdb, uint32_t alloc);
size_t ism_cdb_rw10(uint8_t *cdb, bool write, uint32_t lba, uint16_t blocks);
size_t ism_cdb_rw16(uint8_t *cdb, bool write, uint64_t lba, uint32_t blocks);
size_t ism_cdb_sync_cache10(uint8_t *cdb);
size_t ism_cdb_unmap(uint8_t *cdb, uint16_t param_len);
size_t ism_cdb_test_unit_ready(uint8_t *cdb);

/* ------------------------------------------------------------------------------------------ */
/* Text helpers */

/* "GOOD", "CHECK CONDITION", "BUSY", ... */
const char *ism_status_str(uint8_t status);
/* "NO SENSE" ... "COMPLETED" for sense keys 0..15. */
const char *ism_sense_key_str(uint8_t key);
/* The text of a common ASC/ASCQ pair, or NULL when not in the table. */
const char *ism_asc_str(uint8_t asc, uint8_t ascq);
/* Decoded sense (fixed or descriptor format): key, asc, ascq; false if too short to tell. */
bool ism_sense_decode(const uint8_t *sense, size_t len, uint8_t *key, uint8_t *asc, uint8_t *ascq);
/* "ILLEGAL REQUEST / LBA OUT OF RANGE (0x21/0x00)" into buf; returns buf. */
char *ism_sense_text(const uint8_t *sense, size_t len, char *buf, size_t buflen);
/* "CHECK CONDITION, sense ..." / "GOOD" / transport error text for a result. */
char *ism_result_text(const struct ism_scsi_result *r, char *buf, size_t buflen);

/* Peripheral device type names (0 "DIRECT_ACCESS", 5 "MMC", ...). */
const char *ism_device_type_str(uint8_t type);

/* ------------------------------------------------------------------------------------------ */
/* Portals and URLs */

/* "host[:port]" with IPv6 in brackets into host (no brackets) and port. 0 or -1. */
int ism_parse_portal(const char *portal, char *host, size_t hostlen, uint16_t *port);

struct ism_url {
	char *host;    /* no brackets */
	uint16_t port;
	char *portal;  /* "host:port" ("[v6]:port") for ism_connect */
	char *target;  /* NULL when the URL names only a portal */
	uint64_t lun;
	bool has_lun;
	char *user, *secret;               /* CHAP (user%password) */
	char *target_user, *target_secret; /* mutual CHAP from ?target_user=&target_password= */
};
/*
 * iscsi://[user[%password]@]host[:port][/target-iqn[/lun]][?target_user=U&target_password=P]
 * Returns NULL with errmsg on a malformed URL. Percent-escapes (%XX) in user and password are
 * decoded when followed by two hex digits and not the user/password separator.
 */
struct ism_url *ism_url_parse(const char *url, char *errmsg, size_t errlen);
void ism_url_free(struct ism_url *u);

#ifdef __cplusplus
}
#endif

#endif
