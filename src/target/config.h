/*
 * The target's configuration: portals, targets, LUNs, ACLs, CHAP and negotiation defaults.
 * Loaded from a file (format in docs/config.md) and/or built from command-line flags.
 */
#ifndef ISTHMUS_TARGET_CONFIG_H
#define ISTHMUS_TARGET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/text.h"

struct cfg_portal {
	char *host;          /* numeric address: "127.0.0.1", "::1", "0.0.0.0", "::" */
	uint16_t port;       /* default 3260 */
	uint16_t tpgt;       /* portal group tag, default 1 */
};

enum cfg_lun_kind { LUN_FILE, LUN_BLOCK, LUN_MEMORY, LUN_NULL, LUN_RBD };
/* "file", "block", "memory", "null", "rbd": the word a LUN spec and `lun.list` use. */
const char *cfg_lun_kind_name(enum cfg_lun_kind k);
/* The kind a LUN spec names by a word rather than a path. */
static inline bool cfg_lun_pathless(enum cfg_lun_kind k) { return k == LUN_MEMORY || k == LUN_NULL; }

struct cfg_lun {
	uint16_t lun;
	enum cfg_lun_kind kind;
	char *path;          /* NULL for memory and null; "rbd:POOL/IMAGE" for RBD */
	uint64_t size;       /* bytes; 0 = use the existing file/device size */
	uint32_t block_size; /* 512 (default) or 4096 */
	bool read_only;
	bool thin;           /* default true for files, memory and null */
	bool write_cache;    /* default true */
	char *serial;        /* NULL: derived */
	char *vendor;        /* NULL: default */
	char *product;       /* NULL: default */
	char *rbd_conf;      /* RBD only, each NULL: Ceph's default ceph.conf, client.admin, */
	char *rbd_id;        /* the pool's default namespace */
	char *rbd_namespace;
};

struct cfg_chap {
	char *user;
	char *secret;
	char *mutual_user;   /* set for mutual CHAP */
	char *mutual_secret;
	unsigned line;       /* config line of the first CHAP key of this block, 0 if not from a file */
};

/* An initiator's own CHAP account on a target: it must prove this one, not the target's. */
struct cfg_account {
	char *initiator;     /* iSCSI name, validated */
	struct cfg_chap chap;
	unsigned line;       /* config line of its [initiator] header, 0 if not from a file */
};

/* One gateway of a target's gateway group (docs/gateways.md). */
struct cfg_gateway {
	uint16_t id;         /* gateway number: its target port group, relative port and portal group tag */
	char *host;          /* numeric address */
	uint16_t port;
};
#define CFG_MAX_GATEWAYS 16u

struct cfg_target {
	char *name;          /* iSCSI name (iqn./eui./naa.), validated */
	char *alias;         /* TargetAlias, may be NULL */
	uint16_t tpgt;       /* portal group serving it, default 1 */
	struct cfg_lun *luns;
	size_t nluns;
	char **acl;          /* initiator names allowed */
	size_t nacl;
	bool restricted;     /* only the initiators in acl may log in (set by any allow); else everyone */
	struct cfg_chap chap; /* default account; user NULL = no CHAP required */
	struct cfg_account *accounts; /* per-initiator accounts ([initiator NAME] sections) */
	size_t naccounts;
	struct text_list params; /* negotiation defaults, e.g. MaxRecvDataSegmentLength=262144 */
	unsigned line;       /* config line of its [target] header, 0 if not from a file */
	unsigned tpgt_line;  /* config line of its portal-group key, 0 if defaulted */
	uint16_t gateway;    /* which gateway of the group this process is; 0: a lone target */
	unsigned max_erl;    /* highest ErrorRecoveryLevel offered at login, default 0 */
	struct cfg_gateway *gateways; /* every gateway of the group, this one included */
	size_t ngateways;
};

/* The highest ErrorRecoveryLevel the target implements (max-error-recovery-level). */
#define CFG_MAX_ERL 2u

/* APTPL persistent reservation state of an installed target (created on first use, mode 0700). */
#define CFG_DEFAULT_STATE_DIR "/var/lib/isthmus/target"

struct cfg {
	struct cfg_portal *portals;
	size_t nportals;
	struct cfg_target *targets;
	size_t ntargets;
	struct cfg_chap discovery_chap; /* user NULL = discovery without CHAP */
	char *state_dir;     /* default CFG_DEFAULT_STATE_DIR */
	char *mgmt_socket;   /* NULL: none */
	char *isns;          /* iSNS server "ADDR[:PORT]" to register with (docs/isns.md), NULL: none */
	char *isns_entity;   /* iSNS Entity Identifier, NULL: "isthmus-target:" + host name */
	bool isns_access;    /* an initiator must share an iSNS discovery domain with the target to log in */
	unsigned nop_interval; /* seconds between NOP-In pings to an idle initiator, default 5; 0 = off */
	unsigned nop_timeout;  /* seconds without any PDU before a pinged connection is dropped, default 30 */
	/* What one peer may make the target hold (docs/security.md). */
	unsigned max_commands;          /* command slots per session (the CmdSN window), default 128 */
	uint64_t max_data_connection;   /* data buffers of one connection's commands, default 512 MiB */
	uint64_t max_data_session;      /* ... of one session's commands, default 1 GiB */
	uint64_t max_data_total;        /* ... of every command of the target, default 4 GiB */
	unsigned data_out_timeout;      /* seconds a write waits for its next Data-Out, default 30 */
	uint64_t max_retained_data;     /* sent PDUs one ERL>=1 connection keeps for SNACK, default 64 MiB */
	unsigned max_connections;            /* iSCSI connections at once, whole target; default 1024 */
	unsigned max_connections_per_portal; /* iSCSI connections at once through one portal; default 256 */
	unsigned mgmt_max_clients;           /* management socket clients at once; default 64 */
	unsigned io_engine;  /* enum store_engine_backend (io-engine); default auto */
	unsigned threads;    /* event loops (threads); 0: not set, the CPUs it may run on (cfg_threads); read at start-up only */
	bool zero_copy_reads; /* zero-copy-reads: large reads of tmpfs LUNs sent by splice; default no */
	char *source;        /* file it was loaded from, or NULL */
	uint16_t *groups;    /* portal group tags declared, with or without listen addresses */
	size_t ngroups;
};

/* Bounds of the connection limits (max-connections, max-connections-per-portal, mgmt-max-clients). */
#define CFG_MAX_CONNECTIONS_DEFAULT 1024u
#define CFG_MAX_PORTAL_CONNECTIONS_DEFAULT 256u
#define CFG_MAX_CONNECTIONS_LIMIT 65536u
#define CFG_MGMT_MAX_CLIENTS_DEFAULT 64u
#define CFG_MGMT_MAX_CLIENTS_LIMIT 1024u
/* threads: event loops of the target; not set (0), as many as the CPUs it may run on. */
#define CFG_THREADS_AUTO 0u
#define CFG_THREADS_LIMIT 256u

/* ---- The model (config.c): defaults, lookups, additions, run-time changes, release. ---- */

/* Fill an empty cfg with defaults (nop interval/timeout, state dir, connection limits). */
void cfg_init(struct cfg *cfg);
/* The event loops cfg asks for: threads, or when not set the CPUs the process may run on (at most CFG_THREADS_LIMIT). */
unsigned cfg_threads(const struct cfg *cfg);
void cfg_free(struct cfg *cfg);
/* "HOST:PORT", "[V6]:PORT", "HOST" -> portal (tpgt 1). Returns 0 or -1 with *err. */
int cfg_add_listen(struct cfg *cfg, const char *spec, char **err);
/* The same for portal group tpgt (1..65535), which it declares. */
int cfg_add_listen_group(struct cfg *cfg, const char *spec, uint16_t tpgt, char **err);
/* Declares portal group tpgt without adding an address (an empty [portal-group N] section). */
void cfg_add_group(struct cfg *cfg, uint16_t tpgt);
/* Quick-start flag "--lun PATH[,size=1G][,ro][,bs=4096]" or "memory,size=64M" for target t. */
int cfg_add_lun_spec(struct cfg *cfg, struct cfg_target *t, const char *spec, char **err);
/* The same with an explicit LUN number (0..16383); lun < 0 takes the lowest free number. */
int cfg_add_lun(struct cfg *cfg, struct cfg_target *t, int lun, const char *spec, char **err);
/*
 * Adding a target may move the targets array: pointers from earlier calls are only valid until
 * the next cfg_add_target or cfg_load_file.
 */
struct cfg_target *cfg_add_target(struct cfg *cfg, const char *name, char **err);
struct cfg_target *cfg_find_target(const struct cfg *cfg, const char *name);

/* Run-time changes (management API); each returns 0, or -1 with *err. */
int cfg_remove_target(struct cfg *cfg, const char *name, char **err);
int cfg_remove_lun(struct cfg_target *t, unsigned lun, char **err);
int cfg_remove_listen(struct cfg *cfg, const char *spec, char **err);
int cfg_acl_add(struct cfg_target *t, const char *initiator, char **err);
int cfg_acl_remove(struct cfg_target *t, const char *initiator, char **err);
/* The account an initiator must prove on t: its own, else the target's default. */
const struct cfg_chap *cfg_target_chap_for(const struct cfg_target *t, const char *initiator);
/* Sets (user non-NULL) or removes (user NULL) an initiator's own account on t. */
int cfg_set_initiator_chap(struct cfg_target *t, const char *initiator, const char *user, const char *secret,
			   const char *mutual_user, const char *mutual_secret, char **err);
/* user NULL switches CHAP off; mutual_user NULL makes it one-way. */
int cfg_set_chap(struct cfg_chap *c, const char *user, const char *secret, const char *mutual_user,
		 const char *mutual_secret, char **err);

/* config_gateway.c: "M HOST:PORT" names gateway M of t's group. 0 or -1 with *err. */
int cfg_add_gateway_portal(struct cfg_target *t, const char *spec, char **err);
const struct cfg_gateway *cfg_find_gateway(const struct cfg_target *t, uint16_t id);

/* ---- The file format (config_parse.c, docs/config.md). ---- */

/* Returns 0, or -1 with *err = "FILE:LINE: reason" (malloc'd). Adds to cfg (defaults first). */
int cfg_load_file(struct cfg *cfg, const char *path, char **err);
/* The same, from text in memory; name stands for the file in messages. */
int cfg_load_string(struct cfg *cfg, const char *name, const char *text, char **err);
/* A deep copy (through the file format, so it also proves the format round-trips). */
struct cfg *cfg_clone(const struct cfg *cfg, char **err);
/* "N" within 1..max for a limit named what (flags use it too); 0 or -1 with *err. */
int cfg_parse_limit(const char *what, const char *value, unsigned max, unsigned *out, char **err);

/* ---- Validation (config_validate.c). ---- */

/* Checks cross-references: every target's tpgt has a portal, LUN numbers unique, names valid. */
int cfg_validate(const struct cfg *cfg, char **err);
/* CHAP secrets: 12..255 bytes, no line breaks. Returns 0 or -1 with *err naming what. */
int cfg_check_secret(const char *what, const char *secret, char **err);

/* ---- The writer (config_write.c). ---- */

/* Writes the configuration in the file format (for save-config). */
char *cfg_format(const struct cfg *cfg);
/*
 * Write the configuration file atomically, mode 0600: a new temporary file with a random name
 * next to it (O_CREAT | O_EXCL | O_NOFOLLOW, so nothing planted there is followed or reused),
 * fsync, rename over path, fsync of the directory.
 */
int cfg_save(const struct cfg *cfg, const char *path, char **err);

#endif
