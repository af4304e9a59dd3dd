/*
 * The daemon's configuration file, and the login options of a session as they are stored and
 * shown (both parsed and printed in config.c).
 */
#ifndef ISTHMUS_DAEMON_CONFIG_H
#define ISTHMUS_DAEMON_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Settings from the configuration file (times in milliseconds). */
struct dmn_config {
	char *initiator_name;
	char *initiator_alias;
	int reconnect_interval_ms;  /* login attempt period while reconnecting (5000) */
	int removal_latency_ms;     /* devices removed after this long without a session (60000) */
	int nop_interval_ms;        /* NOP-Out keepalive after this much silence (5000) */
	int nop_timeout_ms;         /* connection dead without NOP-In within this (10000) */
	int login_timeout_ms;       /* per login attempt (15000) */
	int failback_ms;            /* back to the preferred portal after it answers this long (30000; 0: never) */
	uint64_t queue_limit_bytes; /* I/O held while reconnecting (64 MiB) */
	unsigned nbd_max_clients;   /* NBD clients at once over all exports (32) */
	unsigned error_recovery_level; /* ErrorRecoveryLevel offered at login, 0 to 2 (0) */
	bool fuse;                  /* expose data LUNs as files (true) */
	bool nbd;                   /* serve data LUNs over NBD (true) */
	bool block;                 /* a loop device on each LUN file, where /dev/loop-control is (true) */
	char *devices_dir;
	char *nbd_dir;
	char *isns; /* iSNS server "ADDR[:PORT]" to register with (docs/isns.md), NULL: none */
};

void dmn_config_defaults(struct dmn_config *c);
/* Parse "key = value" lines; returns 0 or -1 with err. Unknown keys are errors. */
int dmn_config_load(struct dmn_config *c, const char *path, char *err, size_t errlen);
void dmn_config_free(struct dmn_config *c);

/* Session kinds: informational (no devices), data, boot (data, never removed). */
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
#define DMN_MAX_PORTALS 16

struct dsess_opts {
	char *target;
	char *portal; /* the first (preferred) portal */
	/* every portal of the target given at login, opts.portal first (owned; 0 or 1: only portal) */
	char *portals[DMN_MAX_PORTALS];
	int nportals;
	int failback_ms; /* < 0: the daemon's default */
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
	bool pr_key_set; /* a persistent reservation key registered through every new I_T nexus (pr.c) */
	uint64_t pr_key;
	uint8_t pr_type; /* a reservation the session takes with pr_key (SPC-4 type code); 0: none */
};
void dsess_opts_free(struct dsess_opts *o);
void dsess_opts_copy(struct dsess_opts *dst, const struct dsess_opts *src);
/* JSON for persistence (with secrets) or display (secrets masked). */
json_t *dsess_opts_to_json(const struct dsess_opts *o, bool with_secrets);
/* Parse options from RPC params or a stored record; 0 or -1 with err. */
int dsess_opts_from_json(struct dsess_opts *o, json_t *j, char *err, size_t errlen);

/* Persistent reservation types (SPC-4 6.16.3.4) by their login option names. */
enum {
	DS_PR_WE = 1,
	DS_PR_EA = 3,
	DS_PR_WE_RO = 5,
	DS_PR_EA_RO = 6,
	DS_PR_WE_AR = 7,
	DS_PR_EA_AR = 8,
};
/* "we-ro" and so on, or NULL for a code that is not a type. */
const char *ds_pr_type_name(uint8_t type);
/* The type code of a name, or 0. */
uint8_t ds_pr_type_parse(const char *name);

void hex_isid(const uint8_t isid[6], char out[13]);
bool parse_isid(const char *s, uint8_t isid[6]);
/* A JSON string of text a target sent (an alias, a discovered name): as it is when it is UTF-8,
 * otherwise with every byte outside printable ASCII as '?' (JSON holds UTF-8 only). */
json_t *json_text(const char *s);

#endif
