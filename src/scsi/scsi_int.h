/*
 * Internal state of the SCSI device emulation, shared by the per-command files. Nothing here
 * is visible to the transport.
 */
#ifndef ISTHMUS_SCSI_SCSI_INT_H
#define ISTHMUS_SCSI_SCSI_INT_H

#include <pthread.h>

#include "scsi/scsi.h"
#include "store/store.h"
#include "util/bytes.h"

struct sbuf;
struct pr_persist;
struct lu_shared;

#define SCSI_MAX_LUNS 16384u
#define NEXUS_NONE UINT64_MAX   /* "no nexus excepted" for lu_ua_set_all */
#define NEXUS_ANON (UINT64_MAX - 1) /* commands without a nexus (tools, fuzzing) */

/*
 * Limits we advertise in the Block Limits VPD page and enforce. MAX_XFER_BYTES matches the
 * largest data transfer the iSCSI layer accepts for one command (32 MiB).
 */
#define MAX_XFER_BYTES (32u << 20)
#define MAX_UNMAP_BLOCKS (1u << 20)
#define MAX_UNMAP_DESCRIPTORS 256u
#define MAX_COMPARE_WRITE_BLOCKS 255u

/*
 * MAXIMUM WRITE SAME LENGTH (Block Limits VPD), in bytes: the blocks one WRITE SAME may cover,
 * also when NUMBER OF LOGICAL BLOCKS 0 asks for everything to the end of the medium.
 */
#define MAX_WRITE_SAME_BYTES (1ull << 30)

/* EXTENDED COPY (LID1) limits, reported by RECEIVE COPY RESULTS and VPD 0x8F. */
#define XCOPY_MAX_TGT_DESC 32u
#define XCOPY_MAX_SEG_DESC 64u
#define XCOPY_TGT_DESC_LEN 32u
#define XCOPY_B2B_SEG_LEN 28u
#define XCOPY_MAX_DESC_LIST_LEN (XCOPY_MAX_TGT_DESC * XCOPY_TGT_DESC_LEN + XCOPY_MAX_SEG_DESC * XCOPY_B2B_SEG_LEN)
#define XCOPY_MAX_SEG_BYTES MAX_XFER_BYTES  /* MAXIMUM SEGMENT LENGTH: 64 of them make one command */
#define XCOPY_MAX_INLINE 0u      /* MAXIMUM INLINE DATA LENGTH: none taken */
#define XCOPY_HELD_MAX 16u       /* held copy results per LU */

/*
 * Long medium operations (longop.c) run in steps: each step on a worker reads, writes or
 * compares through a LONGOP_BUF buffer for about LONGOP_STEP_MS, and at most LONGOP_STEP_BYTES,
 * or deallocates or zeroes at most LONGOP_STEP_DEALLOC, before the loop thread sees it again
 * (to learn whether its LU went away, and to start the next step). A cancelled command's step
 * stops at the next buffer.
 */
#define LONGOP_BUF (1u << 20)
#define LONGOP_STEP_BYTES (1u << 30)
#define LONGOP_STEP_MS 200
#define LONGOP_STEP_DEALLOC (1ull << 30)

/*
 * Persistent reservation registrations one LU keeps. They belong to I_T nexus identities, not
 * sessions, so an initiator can create them from ever new ISIDs; past this many, REGISTER gets
 * INSUFFICIENT REGISTRATION RESOURCES (SPC-4 5.13.7).
 */
#define PR_MAX_REGISTRATIONS 8192u

/* Pending unit attentions, one bit each; lower bits are reported first. */
enum scsi_ua {
	UA_POWER_ON = 1u << 0,            /* 29/00 */
	UA_LU_RESET = 1u << 1,            /* 29/03 BUS DEVICE RESET FUNCTION OCCURRED */
	UA_RESERVATIONS_PREEMPTED = 1u << 2, /* 2A/03 */
	UA_RESERVATIONS_RELEASED = 1u << 3,  /* 2A/04 */
	UA_REGISTRATIONS_PREEMPTED = 1u << 4, /* 2A/05 */
	UA_MODE_CHANGED = 1u << 5,        /* 2A/01 */
	UA_CAPACITY_CHANGED = 1u << 6,    /* 2A/09 */
	UA_COMMANDS_CLEARED = 1u << 7,    /* 2F/00 */
	UA_LUNS_CHANGED = 1u << 8,        /* 3F/0E */
	UA_ASYM_ACCESS_CHANGED = 1u << 9, /* 2A/06 */
};

/* The 29h family: any one of them supersedes every other pending attention (SAM-5 5.14). */
#define UA_RESETS (UA_POWER_ON | UA_LU_RESET)

/*
 * idmap.c: identifier -> array position, for arrays whose elements start with a uint64_t id.
 * Insert after appending (n elements, the new one at idx); remove before taking the element
 * out; after moving the last element into the hole, tell where it went.
 */
struct idmap {
	uint32_t *slot;   /* array position + 1; 0: empty */
	size_t cap;       /* a power of two */
};
bool idmap_find(const struct idmap *m, const void *base, size_t stride, uint64_t id, size_t *idx);
void idmap_insert(struct idmap *m, const void *base, size_t stride, size_t n, size_t idx);
void idmap_remove(struct idmap *m, const void *base, size_t stride, uint64_t id);
void idmap_moved(struct idmap *m, uint64_t id, size_t from, size_t to);
void idmap_free(struct idmap *m);

/*
 * What one I_T nexus has pending or holds on one LU. Made by the nexus's own context at its first
 * command to the LU and found again through that context's table (ctx->ln), without a lock; on
 * the LU's list (lu->nexuses, under lu->lock) for whoever posts attentions to every nexus.
 */
struct lu_nexus {
	uint64_t nexus_id;
	const struct scsi_nexus *nx; /* the target's copy, freed after every entry of the nexus */
	struct scsi_lu *lu;
	struct scsi_port_ctx *ctx;   /* whose table holds it */
	struct lu_nexus *lu_next;    /* lu->nexuses: under lu->nexus_lock */
	struct lu_nexus *ctx_next;   /* its bucket of ctx->ln: ctx's thread only */
	/*
	 * Pending unit attentions (enum scsi_ua): posted by any thread holding lu->nexus_lock
	 * (ua_add, a compare-and-swap, since a reset supersedes the rest), taken by the nexus's own
	 * thread without a lock (ua_take, one bit at a time).
	 */
	_Atomic uint32_t ua;
	bool prevent;                /* under lu->lock */
};

struct pr_reg {
	struct pr_reg *hnext; /* next in its hash bucket */
	uint64_t key;
	uint32_t hash;        /* of port */
	uint16_t rel_port;    /* target port the registration came through */
	bool all_tg_pt;
	bool doomed;          /* PREEMPT: removed in one pass once every victim is known */
	char port[];          /* initiator port TransportID name, NUL-terminated */
};

struct pr_state {
	uint32_t generation;
	struct pr_reg **regs; /* in registration order: READ KEYS and READ FULL STATUS report it */
	size_t nregs, cap;
	struct pr_reg **bucket; /* by port name, so a command finds its registration in O(1) */
	size_t nbucket;       /* a power of two, >= nregs */
	bool held;
	uint8_t type;
	struct pr_reg *holder; /* NULL for the all-registrants types, where every registrant holds it */
	bool aptpl;
	bool full_logged;     /* the refusal for want of room was logged since the list was last full */
	struct sbuf *log;     /* where changes are recorded for the APTPL journal; NULL: not recorded */
	struct pr_persist *persist; /* the LU's state files; NULL without a state directory */
};

/* What a PERSISTENT RESERVE OUT started from, to tell what it changed (pr_persist_commit). */
struct pr_mark {
	size_t log_len;
	uint32_t generation;
	bool aptpl, held;
	uint8_t type;
	const struct pr_reg *holder;
};

/*
 * The gate (lu->gate): one bit for each state that can refuse or change a command of any nexus.
 * All zero, a READ or WRITE runs without lu->lock; otherwise, and for every other command, the
 * dispatcher takes the lock and checks the state itself. lu_unlock recomputes it from the
 * fields it summarizes, which are only written under the lock.
 */
enum lu_gate_bit {
	LU_GATE_PR = 1u << 0,              /* a persistent reservation is held (pr.held) */
	LU_GATE_RSV = 1u << 1,             /* a RESERVE(6/10) is held (rsv_held) */
	LU_GATE_STOPPED = 1u << 2,         /* stopped */
	LU_GATE_SANITIZING = 1u << 3,      /* sanitizing */
	LU_GATE_SANITIZE_FAILED = 1u << 4, /* sanitize_failed */
	LU_GATE_UNSHARED = 1u << 5,        /* shared, but the group's record not loaded yet */
};

/*
 * A logical unit, shared by every context (every event loop) of its target. Who writes what:
 * - made by scsi_target_add_lu, then never changed until it is freed: t, lun, st, block_size,
 *   block_shift, read_only, thin, vendor..naa_desig, state_dir, pb_exp, atomic, wce_default;
 * - atomics, read by any thread without the lock: gate, nblocks (scsi_target_lu_resized writes
 *   it under the lock), wce, d_sense, swp (MODE SELECT writes them under the lock), reset_gen;
 * - under lock: everything else (reservations, stopped, sanitize state, held copy results, the
 *   shared record, the nexus list and each entry's prevent). Unit attention words: see lu_nexus.
 * The lock is recursive: a slow-path command holds it through its handler, and what it calls
 * (attentions to every nexus, the shared record) takes it again.
 */
struct scsi_lu {
	struct scsi_target *t;
	uint16_t lun;
	struct store *st;
	uint32_t block_size;
	uint8_t block_shift;
	_Atomic uint64_t nblocks;
	pthread_mutex_t lock;
	_Atomic unsigned gate;      /* enum lu_gate_bit */
	/*
	 * Bumped by every reset of the LU (LOGICAL UNIT RESET, target resets): a context that finds
	 * it changed knows its commands of the LU were in a task set that was reset (see
	 * scsi_target_lu_reset_gen).
	 */
	_Atomic uint64_t reset_gen;
	bool read_only;
	bool thin;
	char vendor[9];
	char product[17];
	char revision[5];
	char serial[41];
	uint64_t naa;           /* 60 bits of vendor-specific NAA-6 identifier */
	uint8_t naa_desig[16];  /* the NAA designator of VPD page 83h, made once (EXTENDED COPY looks LUs up by it) */
	char *state_dir;

	/* Mode parameters: one set for all nexuses (SPC-4 allows shared pages). */
	atomic_bool wce;
	bool wce_default;
	atomic_bool d_sense;
	atomic_bool swp;

	/* RESERVE(6)/RELEASE(6): the holder's nexus, and its identity for the other gateways */
	bool rsv_held;
	uint64_t rsv_nexus;
	uint16_t rsv_rel;
	char rsv_port[256];
	struct lu_shared *shared;   /* reservation state kept with the other gateways (lu_state.c), or NULL */
	/* the gateway group optimized for this LU alone (alua.c); 0: the target's states apply */
	_Atomic uint16_t alua_optimized;

	struct pr_state pr;
	bool stopped;
	uint8_t pb_exp;         /* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT */
	bool atomic;            /* WRITE ATOMIC (16) offered: the store's writes are all-or-nothing */
	bool sanitize_failed;   /* a SANITIZE failed part way: medium access refused until cleared */
	bool sanitizing;        /* a SANITIZE is running: medium access gets NOT READY (04h/1Bh) */

	/* Results of EXTENDED COPY commands kept for RECEIVE COPY RESULTS (LIST ID USAGE 00b). */
	struct xcopy_held {
		uint64_t nexus_id;
		uint8_t list_id;
		uint8_t status;         /* COPY MANAGER STATUS: 00h completed, 01h completed with errors */
		uint16_t segments;      /* segment descriptors processed */
		uint64_t bytes;         /* data moved */
	} held[XCOPY_HELD_MAX];
	size_t nheld;

	/*
	 * Every nexus that met the LU (see lu_nexus), under nexus_lock: a lock of its own, taken
	 * last and holding no other, as a nexus's first command to a LU adds itself while its
	 * thread may hold another LU's lock (REPORT LUNS, EXTENDED COPY).
	 */
	pthread_mutex_t nexus_lock;
	struct lu_nexus *nexuses;
};

/* The LU's lock; lu_unlock publishes the gate first. lu->nexus_lock may be taken inside it. */
void lu_lock(struct scsi_lu *lu);
void lu_unlock(struct scsi_lu *lu);
/* The gate as it is now (a hint for a check made without the lock). */
static inline unsigned lu_gate(const struct scsi_lu *lu) { return atomic_load(&lu->gate); }

/* One gateway's target port group (alua.c). */
struct alua_group {
	uint16_t id;            /* group id, its port's relative target port identifier */
	_Atomic uint8_t state;  /* enum scsi_alua_state; read by every command, set by the gateway code */
	atomic_bool implicit;   /* last changed by the group's state decision (RTPG status 02h) */
};

/* The target's copy of a nexus identity: its own allocation, so lu_nexus may point at it. */
struct scsi_nexus_ent {
	uint64_t id;
	struct scsi_nexus *nx;
};

/*
 * A target: what every context shares. name and the LU table are read by every command without
 * a lock (a LU is added or removed while no command of it runs: see scsi_target_remove_lu); the
 * nexus table is under nexus_lock (login, logout, a nexus's first command to a LU).
 */
struct scsi_target {
	char *name;
	struct scsi_lu *_Atomic *lu;  /* indexed by LU number */
	size_t nlu;
	pthread_mutex_t nexus_lock;
	struct scsi_nexus_ent *nexus;
	size_t nnexus, nexus_cap;
	struct idmap nexus_map;       /* nexus id -> nexus[] */
	struct scsi_port_ctx *ctxs;   /* every context of the target, the first one created first */
	struct alua_group alua[SCSI_MAX_TPGS];   /* the gateway group; none: no ALUA (TPGS 00b) */
	size_t nalua;
	uint16_t alua_local;
};

/*
 * What one caller (one event loop) needs to run commands of its own nexuses: nothing here is
 * shared with another context, so its commands touch it without a lock.
 */
struct scsi_port_ctx {
	struct scsi_target *t;
	struct scsi_port_ctx *next;   /* in t->ctxs */
	uint8_t *scratch;             /* response building and verify reads; never per command */
	size_t scratch_len;
	uint8_t *scratch2;
	struct store_engine *engine;  /* NULL: every command inline */
	struct offload *offload;      /* the engine's workers, for long operations; NULL: inline */
	struct scsi_cmd *blocked, *blocked_tail; /* commands waiting for their LU's jobs, in order */
	unsigned nblocked;            /* commands in blocked */
	struct lu_nexus **ln;         /* this context's nexuses' entries on LUs, by (nexus id, LU) */
	size_t nln, ln_cap;           /* entries; buckets (a power of two) */
	struct scsi_port_thread thread; /* who owns it (scsi_port_ctx_set_thread); all NULL: inline */
};

/*
 * target.c: the thread of a context (see scsi_port_thread). th_here: whether the caller runs on
 * it (true without a hook); th_post: fn(arg) runs there later (without a hook: now, here).
 */
bool th_here(const struct scsi_port_thread *th);
void th_post(const struct scsi_port_thread *th, void (*fn)(void *arg), void *arg);

/* One command being run: what the handlers see. */
struct scsi_req {
	struct scsi_target *t;
	struct scsi_port_ctx *ctx;    /* the caller's: scratch buffers, engine, blocked queue */
	struct scsi_cmd *cmd;
	const uint8_t *cdb;
	struct scsi_lu *lu;           /* NULL when the LUN does not exist */
	struct lu_nexus *ln;          /* NULL when the LUN does not exist */
	const struct scsi_opdef *op;
};

enum opdef_flags {
	OPF_NO_LU_OK = 1u << 0,   /* runs on a nonexistent LUN (INQUIRY, REPORT LUNS, REQUEST SENSE) */
	OPF_NO_UA = 1u << 1,      /* neither reports nor clears unit attentions */
	OPF_WRITE = 1u << 2,      /* modifies the medium */
	OPF_READ = 1u << 3,       /* reads the medium */
	OPF_SA = 1u << 4,         /* has a service action in byte 1 (bits 4:0) */
	OPF_PR_OK = 1u << 5,      /* allowed in the presence of any persistent reservation */
	OPF_RSV_OK = 1u << 6,     /* allowed while another nexus holds a RESERVE(6/10) */
	OPF_PR_WE_OK = 1u << 7,   /* allowed for non-registrants under write-exclusive types */
	OPF_NEED_READY = 1u << 8, /* medium access: NOT READY when stopped */
	OPF_THIN = 1u << 9,       /* only on LUs with logical block provisioning (LBPME) */
	OPF_ATOMIC = 1u << 10,    /* only on LUs whose store makes writes all-or-nothing */
	OPF_LONG = 1u << 11,      /* work grows with a CDB field, not the transfer: a long operation */
	OPF_PER_BLOCK = 1u << 12, /* a write promising only per-block behaviour: need not wait for jobs */
	OPF_ALUA = 1u << 13,      /* only in a gateway group (REPORT TARGET PORT GROUPS) */
};

struct scsi_opdef {
	uint8_t opcode;
	uint8_t sa;
	uint16_t flags;
	void (*run)(struct scsi_req *r);
	uint8_t cdb_len;
	uint8_t usage[16];        /* CDB usage data; usage[0] is the opcode */
	uint32_t timeout;         /* nominal command timeout, seconds (RCTD) */
};

/* the opcode table (opcodes.c) */
extern const struct scsi_opdef scsi_opdefs[];
extern const size_t scsi_nopdefs;
/* Whether the row applies to the LU (per-LU capabilities: thin provisioning, atomic writes). */
bool op_supported(const struct scsi_opdef *op, const struct scsi_lu *lu);
/* The row for an opcode (and service action when the opcode has them), NULL when unknown. */
const struct scsi_opdef *op_lookup(uint8_t opcode, uint16_t sa);

/* sense.c */
void req_sense(struct scsi_req *r, uint8_t key, uint8_t asc, uint8_t ascq);
void req_sense_info(struct scsi_req *r, uint8_t key, uint8_t asc, uint8_t ascq, uint64_t info);
void req_bad_cdb(struct scsi_req *r, unsigned byte, int bit);
void req_bad_param(struct scsi_req *r, unsigned byte, int bit);
void req_param_len_error(struct scsi_req *r);
void req_lba_oob(struct scsi_req *r);
/* Sense with a 3-byte sense-key-specific field (SKSV set by the caller in sks[0]). */
void req_sense_sks(struct scsi_req *r, uint8_t key, uint8_t asc, uint8_t ascq, const uint8_t *sks);
void scsi_sense_set_ctx(const struct scsi_cmd *cmd, bool desc);

/* target.c helpers */
void req_data_in(struct scsi_req *r, const void *buf, uint32_t len, uint32_t alloc);

/*
 * Variable-length data-in built in the target's scratch buffer. Only what the ALLOCATION
 * LENGTH (and the scratch) can hold is written; the rest is only counted, so the length
 * fields still report the whole (SPC-4 4.2.5.6) and no count of list entries can make the
 * builder write past its buffer.
 */
struct din {
	uint8_t *buf;
	size_t cap;   /* bytes that may be written at buf */
	size_t len;   /* bytes of the whole data, written or not */
};
void din_start(struct din *d, struct scsi_req *r, uint32_t alloc);
/* Appends n bytes (the part that fits is written). */
void din_put(struct din *d, const void *p, size_t n);
/* Overwrites n bytes at off (a length field known only at the end), as far as they fit. */
void din_patch(struct din *d, size_t off, const void *p, size_t n);
void din_put_be32_at(struct din *d, size_t off, uint32_t v);
/* Hands the written part to the initiator. */
void din_finish(struct scsi_req *r, struct din *d, uint32_t alloc);
/* The entry of the nexus on the LU, made at the first call; on the nexus's own context only. */
struct lu_nexus *lu_nexus_get(struct scsi_port_ctx *ctx, struct scsi_lu *lu, const struct scsi_nexus *nx);
/* Takes the first pending attention (lowest bit) of ln: its bit, 0 when none. Nexus's thread. */
uint32_t ua_take(struct lu_nexus *ln);
/* Posts ua to ln (lu->nexus_lock held, so that ln is not freed meanwhile). */
void ua_add(struct lu_nexus *ln, uint32_t ua);
/* Attentions for every nexus of the LU (but except_nexus); takes lu->nexus_lock itself. */
void lu_ua_set_all(struct scsi_lu *lu, uint32_t ua, uint64_t except_nexus);
bool ua_to_sense(uint32_t ua, uint8_t *asc, uint8_t *ascq);
void lu_medium_error(struct scsi_req *r, bool write, int err, uint64_t lba);
/* lu_medium_error for a read or flush finishing on a worker, when its LU may be gone. */
void scsi_medium_error(struct scsi_cmd *cmd, bool desc, uint16_t lun, bool write, int err, uint64_t lba);
/* Takes *pp (prev: the command before it, NULL at the head) off ctx->blocked; it is no longer pending. */
void blocked_unlink(struct scsi_port_ctx *ctx, struct scsi_cmd **pp, struct scsi_cmd *prev);
/* The workers of the target's first context: where work of the LU itself (not of one command) runs. */
struct offload *target_home_offload(const struct scsi_target *t);
uint64_t lu_derived_naa(const struct scsi_target *t, uint16_t lun);

/* per-file command handlers */
void scsi_inquiry(struct scsi_req *r);
void scsi_mode_sense6(struct scsi_req *r);
void scsi_mode_sense10(struct scsi_req *r);
void scsi_mode_select6(struct scsi_req *r);
void scsi_mode_select10(struct scsi_req *r);
void scsi_read6(struct scsi_req *r);
void scsi_read10(struct scsi_req *r);
void scsi_read12(struct scsi_req *r);
void scsi_read16(struct scsi_req *r);
void scsi_write6(struct scsi_req *r);
void scsi_write10(struct scsi_req *r);
void scsi_write12(struct scsi_req *r);
void scsi_write16(struct scsi_req *r);
void scsi_verify10(struct scsi_req *r);
void scsi_verify12(struct scsi_req *r);
void scsi_verify16(struct scsi_req *r);
void scsi_write_verify10(struct scsi_req *r);
void scsi_write_verify12(struct scsi_req *r);
void scsi_write_verify16(struct scsi_req *r);
void scsi_orwrite16(struct scsi_req *r);
void scsi_compare_and_write(struct scsi_req *r);
void scsi_prefetch10(struct scsi_req *r);
void scsi_prefetch16(struct scsi_req *r);
void scsi_sync_cache10(struct scsi_req *r);
void scsi_sync_cache16(struct scsi_req *r);
void scsi_read_capacity10(struct scsi_req *r);
void scsi_read_capacity16(struct scsi_req *r);
void scsi_get_lba_status(struct scsi_req *r);
void scsi_unmap(struct scsi_req *r);
void scsi_write_same10(struct scsi_req *r);
void scsi_write_same16(struct scsi_req *r);
void scsi_test_unit_ready(struct scsi_req *r);
void scsi_request_sense(struct scsi_req *r);
void scsi_report_luns(struct scsi_req *r);
void scsi_start_stop_unit(struct scsi_req *r);
void scsi_prevent_allow(struct scsi_req *r);
void scsi_read_defect_data10(struct scsi_req *r);
void scsi_read_defect_data12(struct scsi_req *r);
void scsi_report_supported_opcodes(struct scsi_req *r);
void scsi_reserve6(struct scsi_req *r);
void scsi_release6(struct scsi_req *r);
void scsi_reserve10(struct scsi_req *r);
void scsi_release10(struct scsi_req *r);
void scsi_pr_in(struct scsi_req *r);
void scsi_pr_out(struct scsi_req *r);
void scsi_write_atomic16(struct scsi_req *r);
void scsi_sanitize(struct scsi_req *r);
void scsi_extended_copy(struct scsi_req *r);
void scsi_receive_copy_results(struct scsi_req *r);
void scsi_report_target_port_groups(struct scsi_req *r);

/* alua.c: whether the target is in a gateway group; refusal of r through a non-active port */
bool alua_enabled(const struct scsi_target *t);
bool alua_access_refused(struct scsi_req *r);

/* inquiry.c: the LU's NAA designator (16 bytes of designator, no header), and making it */
void lu_naa_designator(const struct scsi_lu *lu, uint8_t id[16]);
void lu_naa_designator_make(struct scsi_lu *lu);

/*
 * longop.c: a command whose work grows with a CDB or parameter field, run as a chain of bounded
 * steps. A step runs on an offload worker (inline, one after the other, without a pool) and may
 * touch only the operation's own data and stores; `next` runs on the loop thread after it, with
 * the step's result, and either starts another step or ends the command. The operation holds its
 * LU's store (a job), so the LU's ORDERED commands and the writes that wait for jobs queue behind
 * it. A cancelled command gets next(op, -ECANCELED); if its LU goes, the operation ends by itself
 * with LOGICAL UNIT NOT SUPPORTED and next is not called again.
 */
struct longop;
typedef int (*longop_step_fn)(struct longop *op);
typedef void (*longop_next_fn)(struct longop *op, int rc);

struct longop {
	struct offload_job job;
	struct scsi_target *t;
	struct scsi_port_ctx *ctx;
	struct scsi_cmd *cmd;
	struct scsi_lu *lu;       /* valid while st is not closing */
	struct store *st;
	longop_step_fn step;
	longop_next_fn next;
	void (*cleanup)(struct longop *op); /* at the end, however it comes (also with the LU gone) */
	uint8_t *buf;             /* LONGOP_BUF bytes of the operation's own */
	uint64_t step_start_ns;   /* when the step in progress started (CLOCK_MONOTONIC) */
	int rc;
	bool offloaded, submitted;   /* steps go to workers; one went (the handler has returned) */
	bool queued, running, ended; /* inline: a step is waiting; the chain runs; the command is done */
};

/* A zeroed operation of `size` bytes (a struct starting with struct longop) for r's command. */
void *longop_new(struct scsi_req *r, size_t size);
/* Runs step, then next; the first call starts the operation. */
void longop_then(struct longop *op, longop_step_fn step, longop_next_fn next);
/* Ends the command with the status and sense set so far. */
void longop_end(struct longop *op);
/* The request, for sense data (the LU is there: next only runs while it is). */
void longop_req(struct longop *op, struct scsi_req *r);
/* Takes and gives back a hold on another store (a copy's source or destination). */
void longop_hold(struct store *st);
void longop_release(struct store *st);
/* A step that flushes op->st. */
int longop_flush_step(struct longop *op);
/* Within a step: whether it may go on (not cancelled, its LONGOP_STEP_MS not used up). */
bool longop_step_more(const struct longop *op);

/* lbp.c: deallocates (or zero-fills where the store cannot), in steps; ends the command */
void lu_deallocate_ranges(struct scsi_req *r, const uint64_t (*ranges)[2], size_t n, bool sanitize);
uint64_t lu_max_write_same(const struct scsi_lu *lu);

/* xcopy.c */
void xcopy_nexus_lost(struct scsi_lu *lu, uint64_t nexus_id);

/*
 * medium.c: a command's store ios, one at a time. medium_start records what the continuations
 * need (they may run after the LU is gone); medium_io submits one io, and next runs on the loop
 * thread with its result, before medium_io returns or later from store_engine_reap; medium_end
 * completes the command. A command whose LU went away while its io was in flight gets that io's
 * result, then ends with LOGICAL UNIT NOT SUPPORTED if it wants another; a cancelled one starts
 * no further io.
 */
typedef void (*medium_next_fn)(struct scsi_cmd *cmd, int rc);
void medium_start(struct scsi_req *r, uint64_t lba, bool flush);
void medium_io(struct scsi_cmd *cmd, enum store_io_op op, uint64_t off, uint64_t len, void *buf, size_t buf_len,
	       medium_next_fn next);
void medium_end(struct scsi_cmd *cmd);
/*
 * A read whose data the transport may send from the store's file itself (scsi_cmd.in_ref):
 * true when taken that way, the store held; false when it must be read into cmd->in.
 */
bool medium_read_by_ref(struct scsi_req *r, uint64_t off, uint32_t len);
/* A medium error for the command's recorded LU and LBA (lba: the failing block). */
void medium_error(struct scsi_cmd *cmd, bool write, int err, uint64_t lba);
/* A flush when the command asked for durability (medium_start's flush), then the end. */
void medium_flush_then_end(struct scsi_cmd *cmd, int rc);

/* rw.c: shared by write-like commands elsewhere (WRITE SAME, XCOPY) */
bool lu_write_blocked(struct scsi_req *r);
bool lu_range_ok(const struct scsi_lu *lu, uint64_t lba, uint64_t nblocks);
/* A write-like command's own checks in order: its block count against its limit (else INVALID
 * FIELD IN CDB at len_byte), the LBA range, write protection. False when sense was set. */
bool lu_write_checks(struct scsi_req *r, uint64_t lba, uint64_t n, uint64_t max, unsigned len_byte);

/* target.c: SPC-2 reservation or persistent reservation conflict for r->op on r->lu */
bool lu_access_conflict(struct scsi_req *r);

/* reserve.c: whether nx holds the LU's RESERVE(6/10) */
bool rsv_holder(const struct scsi_lu *lu, const struct scsi_nexus *nx);
void rsv_take(struct scsi_lu *lu, const struct scsi_nexus *nx);

/*
 * lu_state.c: the LU's reservation state shared through scsi_shared_ops. lu_shared_defer holds
 * a reservation command until the record is loaded (true: r is taken care of); the unit
 * attentions a command raises become events of the record, raised here and on the other
 * gateways once it is stored; resets and lost nexuses change the record in the background.
 */
#define LU_SHARED_MAX_EVENTS 32u      /* unit attention events the record keeps */
#define LU_SHARED_EVENT_MAX_IDS 64u   /* nexus identities one event names; past it: every nexus */
#define LU_SHARED_MAX_ACTIONS 256u    /* background changes waiting to be stored */
#define LU_SHARED_MAX_RETRIES 32u     /* stores lost to another gateway before a command gives up */
#define LU_SHARED_MAX_RECORD (8u << 20) /* largest record loaded */
enum lu_shared_action { LU_ACT_RESET, LU_ACT_COLD_RESET, LU_ACT_RSV_DROP };
bool lu_shared_defer(struct scsi_req *r);
/* Whether the group's record was loaded (lu->lock held). */
bool lu_shared_loaded(const struct scsi_lu *lu);
void lu_shared_ua_regs(struct scsi_lu *lu, bool (*pick)(const struct pr_reg *g), uint32_t ua, uint64_t except);
void lu_shared_action(struct scsi_lu *lu, enum lu_shared_action a, uint32_t ua, const struct scsi_nexus *nx);
void lu_shared_detach(struct scsi_lu *lu);
/* COMPARE AND WRITE of a shared LU: true while it waits for the group's lock (it runs again then); end gives it back. */
bool lu_shared_caw_begin(struct scsi_req *r);
void lu_shared_caw_end(struct scsi_cmd *cmd);
/*
 * target.c: runs a command held by lu_shared_defer, without completing it; on the thread of
 * ctx, the context it was submitted through.
 */
void scsi_cmd_run_shared(struct scsi_port_ctx *ctx, struct scsi_cmd *cmd);

/* pr_record.c: names as one token of printable non-blank ASCII (%XX escapes) and back */
void pr_name_put(struct sbuf *b, const char *s);
bool pr_name_get(const char *in, char *out, size_t cap);
/* The reservation and registration lines of a state record (the APTPL snapshot, the shared record). */
void pr_regs_put(struct sbuf *b, const struct pr_state *pr);

/* pr.c */
bool pr_conflict(struct scsi_req *r);
void pr_free(struct pr_state *pr);
void pr_nexus_reset(struct scsi_lu *lu);
bool pr_all_registrants(uint8_t type);
bool pr_type_valid(uint8_t type);
/* The registration table, for loading saved state: exact identity (port, port id, ALL_TG_PT). */
/* Splits a state-record line at single spaces, in place (pr_record.c; also the shared record). */
int pr_record_fields(char *line, char **f, int max);
struct pr_reg *pr_find_exact(const struct pr_state *pr, const char *port, uint16_t rel, bool atp);
struct pr_reg *pr_add_reg(struct pr_state *pr, const char *port, uint16_t rel, bool atp, uint64_t key);
void pr_remove_reg(struct pr_state *pr, struct pr_reg *g);
void pr_remove_all(struct pr_state *pr);

/*
 * pr_persist.c: the APTPL state on disk, in state_dir under the LU's NAA designator. A snapshot
 * plus an append-only journal of changes, written and synced on offload workers; a PERSISTENT
 * RESERVE OUT whose changes must survive power loss completes once they are durable. The writes
 * are submitted and reaped on the home thread only (the target's first context's, whose workers
 * they are); the command completes on its own context's thread.
 */
int pr_load(struct scsi_lu *lu, char **err);
/* The LU is going: queued writes still finish (their commands complete), then it frees itself. */
void pr_persist_release(struct scsi_lu *lu);
/* pr_record.c: change records, made as the state changes (no-ops while pr->log is NULL). */
void pr_log_put(struct pr_state *pr, const struct pr_reg *g);   /* registered, or new key */
void pr_log_del(struct pr_state *pr, const struct pr_reg *g);   /* registration removed */
void pr_log_clear(struct pr_state *pr);                         /* every registration removed */
/* The records that end every batch entry: the reservation, the generation and APTPL as they are. */
void pr_log_tail(struct pr_state *pr);
/* Applies one record to the state; false if it is malformed or does not fit the state. */
bool pr_apply_record(struct pr_state *pr, char *line);
uint64_t pr_fnv64(const void *p, size_t n);
bool pr_parse_u64(const char *s, int base, uint64_t max, uint64_t *v);
void pr_persist_begin(struct scsi_lu *lu, struct pr_mark *m);
/* End of a PERSISTENT RESERVE OUT: queues what must survive (APTPL) and defers the command until
 * it is durable; changes without APTPL never touch the disk. */
void pr_persist_commit(struct scsi_req *r, const struct pr_mark *m);

#endif
