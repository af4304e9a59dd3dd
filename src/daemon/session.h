/*
 * A daemon session (struct dsession) outlives its libisthmus sessions: when the connection is
 * lost, the libisthmus session is freed and a new one with the same ISID reinstates it at the
 * target; the daemon session keeps its id, its LUN cache, its devices and its queue of I/O.
 *
 * Its modules: session.c (life cycle, devices, logout), libbridge.c (the libisthmus session in
 * the event loop), io.c (the I/O queue), recovery.c (login, reconnect, removal latency),
 * connections.c (extra connections), probe.c (the LUN probe), session_json.c (`session show`).
 */
#ifndef ISTHMUS_DAEMON_SESSION_H
#define ISTHMUS_DAEMON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "daemon/config.h"
#include "daemon/pr.h"
#include "isthmus/isthmus.h"
#include "net/loop.h"

#define DMN_MAX_WATCH 20
#define DMN_MAX_LUNS 256
#define DMN_INQ_LEN 96
#define DMN_VPD_LEN 512
#define DMN_VPD_CACHED 4

struct daemon;
struct dio;
struct nbd_export;
struct pr_job;
struct probe_refresh;

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
	} vpd[DMN_VPD_CACHED];
	bool exposed; /* a local device exists */
	struct nbd_export *nbd;
	bool readonly;
	/* ALUA: the target port group REPORT TARGET PORT GROUPS through this LU named active/optimized
	 * at the last ALUA probe that got an answer (have_alua; -1: none of its groups) */
	bool have_alua;
	int alua_opt_tpg;
};

/* One descriptor of the libisthmus session in the event loop (libbridge.c). */
struct dwatch {
	struct dsession *s;
	struct loop_watch w;
	int fd;
	bool on;
};

/* One portal of the session's target (portals.c). */
struct dportal {
	char addr[ISM_PORTAL_MAX];
	int tpgt; /* portal group tag from SendTargets, -1: unknown */
	bool given; /* from the login options (else learnt from a SendTargets answer) */
	/* ALUA, learnt while logged in through it: its target port group and relative target port
	 * (VPD 0x83), its group's asymmetric access state (REPORT TARGET PORT GROUPS); -1: unknown */
	int tpg, rel_port, alua_state;
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
	bool settle_pending; /* a lib_settle waits for the end of this loop iteration */
	bool corked;         /* the library holds this iteration's commands until lib_settle */
	struct loop_timer lib_timer, retry_timer, removal_timer, logout_timer;
	unsigned attempts;
	/* LUNs */
	struct dlun *luns;
	size_t nluns;
	bool probed;
	bool devices_present;
	struct probe_refresh *refresh; /* the LUNs read again after a reconnect: I/O waits (probe.c) */
	unsigned alua_probes;   /* ALUA probes in flight: an access-state attention starts one only when none is */
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
	/* where the next login goes when not to opts.portal (owned; NULL: opts.portal) */
	char *login_portal;
	/* error recovery (recovery.c): counters since the session was created, the last connection
	 * loss, and the connections as they were at that loss (shown until the session is back) */
	uint64_t connection_losses;
	uint64_t session_recoveries;
	/* ErrorRecoveryLevel 2: connections the library recovered within the libisthmus sessions
	 * freed so far (the current one's counters add to these) */
	uint64_t connection_recoveries, task_reassignments;
	uint64_t kept_losses_seen; /* of the current libisthmus session, noted as last_loss */
	struct dconn_loss {
		bool valid;
		time_t at;
		struct ism_conn_info conn;
		char reason[400];
		int closed_with_it;
	} last_loss;
	struct ism_conn_info lost_conns[DMN_MAX_WATCH];
	int nlost;
	/* failover (portals.c): every portal of the target, the one logged in through, how many
	 * more the current round may try before waiting a reconnect interval, and the failback
	 * to the preferred portal (probed, then moved to once it has answered for a while) */
	struct dportal portals[DMN_MAX_PORTALS];
	int nportals;
	int cur_portal;
	int round_left;
	uint64_t failovers;
	struct loop_timer failback_timer, drain_timer;
	struct loop_watch fb_watch;
	int fb_fd;
	uint64_t fb_up_since_ms; /* the preferred portal answered every probe since (0: not now) */
	unsigned drain_ticks;
	bool draining; /* no new commands go out: the session moves once the in-flight ones are done */
	bool alua_none; /* the LUN reports TPGS 0: no ALUA, the first portal given is preferred */
	/* the reservation key registration after a login (pr.c): I/O is held while it runs */
	uint64_t pr_gen;
	struct pr_job *pr_wait; /* the registration waiting for its next try (pr.c), or NULL */
	bool pr_pending, pr_registered;
	enum ds_pr_res pr_res;
	char pr_error[256]; /* the last failure or conflict, for session show ("" when none) */
};

struct dsession *dsess_new(struct daemon *d, const struct dsess_opts *o, bool interactive);
void dsess_start(struct dsession *s);
struct dsession *dsess_find(struct daemon *d, const char *idstr);
/* The live session with this id (any state but gone), or NULL. */
struct dsession *dsess_by_id(struct daemon *d, uint64_t id);
struct dsession *dsess_find_target(struct daemon *d, const char *target, const char *portal);
/* Log out (or abandon recovery); completes the op when done. */
void dsess_logout(struct dsession *s, uint64_t op);
/* The session ends now: devices removed, queued I/O failed, waiting RPC operations answered. */
void dsess_finish_logout(struct dsession *s, const char *why);
void dsess_abort_all(struct daemon *d);
void dsess_format_id(uint64_t id, char *out, size_t len);
void dsess_set_state(struct dsession *s, enum dsess_state st);
struct dlun *dsess_lun(struct dsession *s, uint64_t lun);
uint32_t dsess_removal_latency(struct dsession *s);
/* Local devices (FUSE files, NBD exports) for the probed data LUNs, or none. */
void dsess_expose_devices(struct dsession *s);
void dsess_remove_devices(struct dsession *s);
void dsess_free_luns(struct dlun *luns, size_t n);

#endif
