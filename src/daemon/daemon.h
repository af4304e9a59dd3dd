/*
 * isthmus-initiator: the daemon that owns the host's iSCSI sessions.
 *
 * Everything runs on one thread around the event loop (net/loop.h): the RPC server, every
 * libisthmus session (its descriptors and timers are watched by the loop), the FUSE session (its
 * /dev/fuse descriptor is read in the loop) and the NBD listeners. No locks are needed.
 *
 * A daemon session (struct dsession) outlives its libisthmus sessions: when the connection is
 * lost, the libisthmus session is freed and a new one with the same ISID reinstates it at the
 * target; the daemon session keeps its id, its LUN cache, its devices and its queue of I/O.
 */
#ifndef ISTHMUS_DAEMON_DAEMON_H
#define ISTHMUS_DAEMON_DAEMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "isthmus/isthmus.h"
#include "mgmt/rpc.h"
#include "net/loop.h"

#define DMN_MAX_WATCH 20
#define DMN_MAX_LUNS 256
#define DMN_INQ_LEN 96
#define DMN_VPD_LEN 512

struct daemon;
struct dsession;
struct dio;
struct fuse_dev;
struct nbd_export;

/* Settings from the configuration file (times in milliseconds). */
struct dmn_config {
	char *initiator_name;
	char *initiator_alias;
	int reconnect_interval_ms;  /* login attempt period while reconnecting (5000) */
	int removal_latency_ms;     /* devices removed after this long without a session (60000) */
	int nop_interval_ms;        /* NOP-Out keepalive after this much silence (5000) */
	int nop_timeout_ms;         /* connection dead without NOP-In within this (10000) */
	int login_timeout_ms;       /* per login attempt (15000) */
	uint64_t queue_limit_bytes; /* I/O held while reconnecting (64 MiB) */
	unsigned nbd_max_clients;   /* NBD clients at once over all exports (32) */
	bool fuse;                  /* expose data LUNs as files (true) */
	bool nbd;                   /* serve data LUNs over NBD (true) */
	char *devices_dir;
	char *nbd_dir;
};

void dmn_config_defaults(struct dmn_config *c);
/* Parse "key = value" lines; returns 0 or -1 with err. Unknown keys are errors. */
int dmn_config_load(struct dmn_config *c, const char *path, char *err, size_t errlen);
void dmn_config_free(struct dmn_config *c);

/* Session kinds of the issue: informational (no devices), data, boot (data, never removed). */
enum dsess_type { DS_TYPE_INFORMATIONAL = 0, DS_TYPE_DATA = 1, DS_TYPE_BOOT = 2 };
const char *dsess_type_str(enum dsess_type t);
int dsess_type_parse(const char *s);

enum dsess_state {
	DS_LOGGING_IN = 0, /* first login in progress */
	DS_CONNECTED,
	DS_RECONNECTING, /* connection lost, login attempts running; devices kept */
	DS_FAILED,       /* removal latency passed: devices removed, attempts go on */
	DS_LOGGING_OUT,
	DS_GONE, /* logged out; freed soon */
};
const char *dsess_state_str(enum dsess_state st);

/* What a login needs; kept for reconnects and persistence. Strings owned. */
struct dsess_opts {
	char *target;
	char *portal;
	enum dsess_type type;
	char *chap_user, *chap_secret;
	char *mutual_user, *mutual_secret;
	bool mutual_from_store; /* mutual secret is the initiator secret set by chap set-secret */
	char *chap_algorithms;
	bool header_digest, data_digest;
	int removal_latency_ms; /* < 0: the daemon's default */
	uint32_t max_recv_dsl, max_burst_length, first_burst_length;
	int initial_r2t, immediate_data;
	bool isid_set;
	uint8_t isid[6];
};
void dsess_opts_free(struct dsess_opts *o);
void dsess_opts_copy(struct dsess_opts *dst, const struct dsess_opts *src);
/* JSON for persistence (with secrets) or display (secrets masked). */
json_t *dsess_opts_to_json(const struct dsess_opts *o, bool with_secrets);
/* Parse options from RPC params or a stored record; 0 or -1 with err. */
int dsess_opts_from_json(struct dsess_opts *o, json_t *j, char *err, size_t errlen);

/* One LUN as seen at the last probe. */
struct dlun {
	uint64_t lun;
	bool have_inquiry;
	uint8_t inquiry[DMN_INQ_LEN];
	uint32_t inquiry_len;
	uint8_t device_type;
	bool have_capacity;
	uint64_t capacity_bytes;
	uint32_t block_size;
	bool unmap; /* the LUN accepts UNMAP (VPD B2/B0 not checked; tried and remembered) */
	/* cached VPD pages (0x00, 0x80, 0x83) */
	struct {
		int page;
		uint32_t len;
		uint8_t *data;
	} vpd[4];
	bool exposed; /* a local device exists */
	struct nbd_export *nbd;
	bool readonly;
};

/* An I/O request from a device front end (FUSE, NBD) or the RPC layer. */
typedef void (*dio_done_fn)(struct dio *io, int err, const struct ism_scsi_result *r);
struct dio {
	struct dio *next;
	struct dsession *s;
	uint64_t seq; /* submission order: requeued I/O is sent again in this order */
	uint64_t lun;
	uint8_t cdb[16];
	size_t cdb_len;
	enum ism_dir dir;
	void *buf;
	uint32_t len;
	int tries;
	bool inflight;
	bool whole; /* block READ or WRITE: GOOD status after less than len bytes is an error (-EIO) */
	dio_done_fn done; /* err: 0 (see r for the SCSI status), or -errno */
	void *priv;
};

struct dwatch {
	struct dsession *s;
	struct loop_watch w;
	int fd;
	bool on;
};

struct dsession {
	struct daemon *d;
	struct dsession *next;
	uint64_t id;
	char idstr[24];
	struct dsess_opts opts;
	bool persistent;
	uint64_t record_id; /* persistent record (0: none) */
	bool discovered;
	enum dsess_state state;
	time_t state_since;
	bool ever_connected;
	bool interactive_login; /* first login failure ends the session (RPC login) */
	char last_error[512];
	struct ism_session *ism;
	int in_lib;
	struct dwatch watch[DMN_MAX_WATCH];
	/* Descriptors as epoll knows them (see ds_sync): when the library lists the same ones, in
	 * full feature phase, only changed events are passed on; anything else re-registers all. */
	int synced_fd[DMN_MAX_WATCH];
	int nsynced;
	bool watch_dirty;  /* connections added or removed: re-register at the next sync */
	bool sync_pending; /* a ds_sync waits for the end of this loop iteration */
	bool corked;       /* the library holds this iteration's commands until ds_sync */
	uint64_t synced_ms;
	struct loop_timer lib_timer, retry_timer, removal_timer, logout_timer;
	unsigned attempts;
	/* LUNs */
	struct dlun *luns;
	size_t nluns;
	bool probed;
	bool devices_present;
	/* I/O */
	struct dio *queue; /* waiting for a session, sorted by seq */
	uint64_t queued_bytes;
	uint64_t next_seq;
	uint64_t inflight;
	/* RPC operations waiting on this session (ops ids) */
	uint64_t login_op, logout_op;
	/* extra connections added by the user (portals), re-added after a reconnect */
	char *extra_portals[DMN_MAX_WATCH];
	int nextra;
};

struct ism_discovery;

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
	bool sync_deferred; /* sessions with sync_pending are synced after this loop iteration */
	unsigned nbd_clients; /* NBD clients connected, over all exports */
	bool stopping;
	int sigfd;
	struct loop_watch sigwatch;
	struct loop_timer stop_timer;
	/* RPC operations that complete later */
	struct dop *ops;
	uint64_t next_op;
};

/* ---- store.c: state directory */
int store_init(struct daemon *d, char *err, size_t errlen);
/* Write data to path atomically (temp + fsync + rename + dir fsync) with mode. 0 or -errno. */
int store_write_atomic(const char *path, const void *data, size_t len, int mode);
/* The next session id (persisted before it is handed out). */
uint64_t store_next_session_id(struct daemon *d);
int store_save_records(struct daemon *d);
int store_save_discovered(struct daemon *d);
int store_set_initiator_secret(struct daemon *d, const char *secret, char *err, size_t errlen);
char *store_read_file(const char *path, size_t max, size_t *len);

/* ---- session.c */
struct dsession *dsess_new(struct daemon *d, const struct dsess_opts *o, bool interactive);
void dsess_start(struct dsession *s);
struct dsession *dsess_find(struct daemon *d, const char *idstr);
struct dsession *dsess_find_target(struct daemon *d, const char *target, const char *portal);
/* Log out (or abandon recovery); completes the op when done. */
void dsess_logout(struct dsession *s, uint64_t op);
void dsess_format_id(uint64_t id, char *out, size_t len);
json_t *dsess_json(struct dsession *s);
/* Submit I/O: sent now, queued while reconnecting, or failed (done called with -errno). */
void dio_submit(struct dsession *s, struct dio *io);
struct dlun *dsess_lun(struct dsession *s, uint64_t lun);
uint32_t dsess_removal_latency(struct dsession *s);
int dsess_add_connection(struct dsession *s, const char *portal, uint64_t op, char *err, size_t errlen);
int dsess_remove_connection(struct dsession *s, uint16_t cid, uint64_t op, char *err, size_t errlen);
void dsess_abort_all(struct daemon *d);

/* ---- ops.c: RPC results that arrive later */
uint64_t dop_new(struct daemon *d);
void dop_done(struct daemon *d, uint64_t id, json_t *result);
void dop_fail(struct daemon *d, uint64_t id, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
json_t *dop_pending(uint64_t id);
json_t *dop_take(struct daemon *d, uint64_t id, struct rpc_error *err);
/* From inside an RPC method: the result when the op is done, else RPC_DEFERRED (answered when it
 * is; {"pending": id} only where the server cannot defer). */
json_t *dop_answer(struct daemon *d, uint64_t id, struct rpc_error *err);
void dop_free_all(struct daemon *d);

/* ---- methods.c */
extern const struct rpc_method dmn_methods[];
extern const size_t dmn_nmethods;

/* ---- fuse.c */
int fusedev_start(struct daemon *d, char *err, size_t errlen);
void fusedev_stop(struct daemon *d);
/* The session's LUN set changed (devices added or removed). */
void fusedev_changed(struct daemon *d, struct dsession *s);

/* ---- nbd.c */
struct nbd_export *nbd_export_new(struct dsession *s, struct dlun *l, char *err, size_t errlen);
void nbd_export_free(struct nbd_export *e);
const char *nbd_export_path(const struct nbd_export *e);

/* ---- ibft.c */
/* Read an iBFT-style directory into login options (type boot) and the initiator name. */
int ibft_load(const char *dir, struct dsess_opts *o, char **initiator_name, char *err, size_t errlen);

/* ---- helpers */
void hex_isid(const uint8_t isid[6], char out[13]);
bool parse_isid(const char *s, uint8_t isid[6]);
/* A JSON string of text a target sent (an alias, a discovered name): as it is when it is UTF-8,
 * otherwise with every byte outside printable ASCII as '?' (JSON holds UTF-8 only). */
json_t *json_text(const char *s);

#endif
