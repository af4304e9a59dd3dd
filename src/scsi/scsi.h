/*
 * SCSI target device emulation (SPC-4 / SBC-3): the interface the iSCSI layer uses.
 *
 * A scsi_target holds the logical units of one iSCSI target node. The transport hands it one
 * command at a time with the data it collected; the target runs it against the LU's store and
 * completes it through cmd->done, possibly before scsi_port_submit returns.
 *
 * Threads: each caller (each event loop) has its own scsi_port_ctx and submits the commands of
 * its own nexuses through it; commands of one nexus always use the same context. Contexts of
 * different threads may run commands of one LU at once. Per context, and touched by its thread
 * only: scratch buffers, the store engine, the queue of commands waiting for their LU's ios,
 * each of its nexuses' per-LU entries. Shared: the LUs, the ALUA groups, the nexus identities;
 * a LU's state is read through its gate word and changed under its lock (scsi_int.h, struct
 * scsi_lu), so a READ or WRITE of a LU in no special state takes no lock. The other calls below
 * are made by the thread that owns the target's first context (the main loop) unless they say
 * otherwise; adding and removing LUs, contexts and ALUA groups happens while no command runs.
 * With a store engine (see scsi_port_ctx_new), commands complete later, from store_engine_reap on
 * the context's thread, whenever their store ios do: READ, WRITE, flushes, COMPARE AND WRITE,
 * and long medium operations (VERIFY, WRITE SAME, UNMAP, SANITIZE, EXTENDED COPY, run in bounded
 * steps) and a PERSISTENT RESERVE OUT whose APTPL state must be on disk first.
 */
#ifndef ISTHMUS_SCSI_SCSI_H
#define ISTHMUS_SCSI_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "store/offload.h"
#include "store/store_io.h"

struct store;

enum scsi_status {
	SCSI_GOOD = 0x00,
	SCSI_CHECK_CONDITION = 0x02,
	SCSI_CONDITION_MET = 0x04,
	SCSI_BUSY = 0x08,
	SCSI_RESERVATION_CONFLICT = 0x18,
	SCSI_TASK_SET_FULL = 0x28,
	SCSI_ACA_ACTIVE = 0x30,
	SCSI_TASK_ABORTED = 0x40,
};

enum scsi_sense_key {
	SK_NO_SENSE = 0x0,
	SK_RECOVERED_ERROR = 0x1,
	SK_NOT_READY = 0x2,
	SK_MEDIUM_ERROR = 0x3,
	SK_HARDWARE_ERROR = 0x4,
	SK_ILLEGAL_REQUEST = 0x5,
	SK_UNIT_ATTENTION = 0x6,
	SK_DATA_PROTECT = 0x7,
	SK_BLANK_CHECK = 0x8,
	SK_COPY_ABORTED = 0xa,
	SK_ABORTED_COMMAND = 0xb,
	SK_MISCOMPARE = 0xe,
};

/* SAM task attributes, as carried in the iSCSI SCSI Command PDU. */
enum scsi_task_attr { TASK_UNTAGGED = 0, TASK_SIMPLE = 1, TASK_ORDERED = 2, TASK_HEAD_OF_QUEUE = 3, TASK_ACA = 4 };

/* One I_T nexus: an iSCSI session seen from the SCSI layer. */
struct scsi_nexus {
	uint64_t id;                /* unique for the target's lifetime, never reused */
	char initiator_name[224];   /* iSCSI name of the initiator */
	uint8_t isid[6];
	char initiator_port[256];   /* "<initiator name>,i,0x<isid in hex>" (SPC-4 iSCSI TransportID) */
	uint16_t rel_port_id;       /* relative target port identifier (the portal group tag) */
};

struct scsi_cmd {
	/* Set by the transport before submit. */
	const struct scsi_nexus *nexus;
	uint16_t lun;               /* decoded LUN (see scsi_lun_decode) */
	bool lun_valid;             /* false when the 8-byte LUN field had an unsupported format */
	uint8_t cdb[260];
	uint16_t cdb_len;
	uint8_t task_attr;          /* enum scsi_task_attr */
	const uint8_t *out;         /* data received from the initiator (write direction) */
	uint32_t out_len;           /* bytes in out: the expected data transfer length, or fewer */
	uint8_t *in;                /* buffer for data to the initiator (read direction) */
	uint32_t in_cap;            /* size of in: the expected data transfer length */
	bool in_ref_ok;             /* the transport can send read data from the store itself (in_ref) */
	void (*done)(struct scsi_cmd *cmd);
	void *priv;                 /* transport's own */

	/* Set by the SCSI layer before done. */
	uint32_t in_len;            /* bytes placed in in (<= in_cap) */
	uint32_t xfer_len;          /* bytes the CDB itself asks to move in its direction */
	/*
	 * With in_ref_ok, a READ of a store whose file never waits may leave its data where it
	 * is: in_len bytes of in_ref->fd from in_ref_off on, nothing placed in in. The command
	 * holds the store (a job: ORDERED commands and writes that wait for jobs stay behind it)
	 * until the transport has sent the data and calls scsi_cmd_in_ref_put.
	 */
	struct store *in_ref;
	uint64_t in_ref_off;
	uint8_t status;             /* enum scsi_status */
	uint8_t sense_len;
	uint8_t sense[252];

	/*
	 * The SCSI layer's own: a command whose store ios complete later (store/store_io.h), a
	 * long operation on workers, or one waiting for its LU or for reservation state.
	 */
	struct {
		struct store_io io;
		struct iovec iov[1];
		void (*next)(struct scsi_cmd *cmd, int rc); /* after the io in flight, on the loop thread */
		struct scsi_target *t;
		struct scsi_port_ctx *ctx;  /* the context it was submitted through */
		struct store *st;
		uint8_t *buf;               /* a buffer of the command's own (ORWRITE, COMPARE AND WRITE) */
		uint64_t pos, end;          /* bytes done and to do of a command in several ios */
		uint64_t lba;
		uint32_t n;
		uint32_t block_size;
		uint16_t lun;
		bool desc;
		bool flush;                 /* make the writes durable before GOOD */
		bool active;
		bool waited;                /* this command waited for a device (statistics) */
		bool async;                 /* an io completed after the handler returned */
		bool in_submit, inline_done; /* an io completing before store_io_submit returns */
		bool barrier;               /* counted in st->barriers */
		bool exclusive;             /* no later command of the LU starts before this one ends */
		int inline_rc;
		atomic_bool cancelled;      /* see scsi_cmd_cancel */
		struct scsi_cmd *blocked_next; /* waiting for its LU's ios in flight */
		struct scsi_cmd *wait_next;    /* waiting for reservation state to be durable */
		bool shared;                /* runs on reservation state just loaded from the group's store */
	} defer;
};

enum scsi_tmf {
	SCSI_TMF_ABORT_TASK_SET,
	SCSI_TMF_CLEAR_TASK_SET,
	SCSI_TMF_LUN_RESET,
	SCSI_TMF_TARGET_WARM_RESET,
	SCSI_TMF_TARGET_COLD_RESET,
};

struct scsi_lu_params {
	const char *vendor;         /* 8 chars max, default "ISTHMUS" */
	const char *product;        /* 16 chars max, default "VIRTUAL-DISK" */
	const char *revision;       /* 4 chars max */
	const char *serial;         /* unit serial number (VPD 0x80); derived when NULL */
	uint64_t naa_id;            /* NAA 6 identifier low bits; derived when 0 */
	uint32_t block_size;        /* 512 or 4096, default 512 */
	uint8_t phys_block_exp;     /* 2^n logical blocks per physical block (READ CAPACITY 16); default 0 */
	bool read_only;
	bool thin;                  /* advertise thin provisioning (LBPME, UNMAP, WRITE SAME UNMAP) */
	bool write_cache;           /* WCE in the caching mode page */
	const char *state_dir;      /* where APTPL persistent reservation state is kept; NULL: none */
};

struct scsi_target;

struct scsi_target *scsi_target_new(const char *target_name);
void scsi_target_free(struct scsi_target *t);

/* Takes ownership of st. Returns 0, or -1 with *err set (malloc'd). */
int scsi_target_add_lu(struct scsi_target *t, uint16_t lun, struct store *st, const struct scsi_lu_params *p,
		       char **err);
/*
 * Removes and closes the LU; other nexuses get REPORTED LUNS DATA HAS CHANGED. Its commands
 * waiting in any context fail with LOGICAL UNIT NOT SUPPORTED: no context may be running a
 * command meanwhile (with several loops, the others are paused first).
 */
int scsi_target_remove_lu(struct scsi_target *t, uint16_t lun);
/* Notes a capacity change of a LU (after store resize): CAPACITY DATA HAS CHANGED. Any thread. */
void scsi_target_lu_resized(struct scsi_target *t, uint16_t lun);
size_t scsi_target_lu_count(const struct scsi_target *t);
/* Fills luns (up to max) with the LU numbers in ascending order; returns the count. */
size_t scsi_target_list_luns(const struct scsi_target *t, uint16_t *luns, size_t max);
struct store *scsi_target_lu_store(struct scsi_target *t, uint16_t lun);

/*
 * Implicit ALUA for a LU served by a group of gateways (docs/gateways.md). Each gateway is one
 * target port group whose id is also its port's relative target port identifier; local is this
 * process's. n = 0: a lone target (no ALUA). New groups start active/optimized (local) or
 * active/non-optimized; a group already known keeps its state.
 */
#define SCSI_MAX_TPGS 16
enum scsi_alua_state {
	ALUA_ACTIVE_OPTIMIZED = 0x0,
	ALUA_ACTIVE_NON_OPTIMIZED = 0x1,
	ALUA_STANDBY = 0x2,
	ALUA_UNAVAILABLE = 0x3,
	ALUA_OFFLINE = 0xe,
	ALUA_TRANSITIONING = 0xf,
};
int scsi_target_set_gateways(struct scsi_target *t, uint16_t local, const uint16_t *tpgs, size_t n);
/* Sets a group's state for the target's LUs; a change raises ASYMMETRIC ACCESS STATE CHANGED on
 * every I_T nexus of each LU whose view of the group changed. Returns -1 for a group not in the set. */
int scsi_target_set_tpg_state(struct scsi_target *t, uint16_t tpg, enum scsi_alua_state state);
/* The group that is active/optimized for one LU (its image's exclusive lock rests there), the
 * others that are active being active/non-optimized for it; 0: the LU follows the target's
 * states. A change raises ASYMMETRIC ACCESS STATE CHANGED on that LU only. -1: no such LU or group. */
int scsi_target_set_lu_optimized(struct scsi_target *t, unsigned lun, uint16_t tpg);
/* The group's state as LU lun sees it (-1 when unknown). */
int scsi_target_lu_tpg_state(const struct scsi_target *t, unsigned lun, uint16_t tpg);
/* The group's state, -1 when unknown. */
int scsi_target_tpg_state(const struct scsi_target *t, uint16_t tpg);
const char *scsi_alua_state_name(int state);

/*
 * Reservation state shared by the gateways of a group (docs/gateways.md): persistent
 * reservations, SPC-2 reservations and the unit attentions they raise, kept as one record per LU
 * outside the process. A reservation command (PERSISTENT RESERVE IN/OUT, RESERVE, RELEASE)
 * runs on the record as just loaded and, when it changed it, completes once the record is stored
 * and every other gateway has seen it. The SCSI layer knows nothing of where the record lives.
 */
struct sbuf;
struct scsi_shared_ops {
	/* On a worker: the stored record (empty when there is none) and its version. */
	int (*load)(void *ctx, struct sbuf *rec, uint64_t *version);
	/*
	 * On a worker: stores rec if the stored version is still expect (-ESTALE when another
	 * gateway stored first) and returns once the other gateways have loaded it, or gave up
	 * waiting for them; *version is the new version.
	 */
	int (*store)(void *ctx, const void *rec, size_t len, uint64_t expect, uint64_t *version);
	/* On a worker: tell the gateways that stored before the last load that we have their record. */
	void (*ack)(void *ctx);
	/*
	 * On the home thread (the one of the target's first context, which reaps its workers): the
	 * LU is gone and no call above is running any more.
	 */
	void (*release)(void *ctx);
	/*
	 * Optional, on the home thread, and so is done: done(arg, rc) runs once this gateway holds
	 * the group's COMPARE AND WRITE lock for the bytes [off, off + len) of the medium (rc 0) or
	 * cannot have it; caw_unlock gives it back. A COMPARE AND WRITE runs only while holding it,
	 * so that it is atomic against the other gateways' commands too (they hold their writes to
	 * the range meanwhile where the medium needs it); the command itself runs on its own
	 * context's thread.
	 */
	void (*caw_lock)(void *ctx, uint64_t off, uint64_t len, void (*done)(void *arg, int rc), void *arg);
	void (*caw_unlock)(void *ctx);
};
/* From now on LU lun keeps its reservation state through ops (loaded at once). -1: no such LU. */
int scsi_target_share_lu(struct scsi_target *t, uint16_t lun, const struct scsi_shared_ops *ops, void *ctx);
/* Another gateway changed the record (or it is time to check): load it again. */
void scsi_target_lu_shared_changed(struct scsi_target *t, uint16_t lun);
/*
 * A reset's effect on the shared record (SPC-2 reservation released, unit attentions for the
 * other gateways' nexuses) is stored in the background: true when done(arg) will run, on the home
 * thread, once it is (or could not be); false when nothing waits. Any thread.
 */
bool scsi_target_lu_shared_wait(struct scsi_target *t, uint16_t lun, void (*done)(void *arg), void *arg);

/*
 * A caller's context: one per event loop that submits commands to the target (per-loop scratch
 * buffers, the loop's store engine, its queue of commands waiting for their LU's ios). Every
 * medium access goes through e (store_io_submit); long medium operations and APTPL state writes
 * run on its worker pool (store_engine_offload). e NULL: every command runs inline, on the
 * store's synchronous ops. The engine must outlive the context; the caller reaps it on the
 * context's thread. The context is freed with its target (or before, scsi_port_ctx_free, once
 * none of its commands is pending); contexts are made and freed while no command runs.
 */
struct scsi_port_ctx;
struct scsi_port_ctx *scsi_port_ctx_new(struct scsi_target *t, struct store_engine *e);
void scsi_port_ctx_free(struct scsi_port_ctx *ctx);

/*
 * The thread that owns a context, for work of a LU as a whole (the gateway group's record and
 * COMPARE AND WRITE lock, run on the thread of the target's first context) that hands one of the
 * context's commands back: post(owner, fn, arg) runs fn(arg) later on that thread, from any
 * thread, never before it returns; here(owner) tells whether the caller runs on it. A context
 * without them (unit tests, a single loop) runs that work inline, on whichever thread it is.
 * Set before the context's first command.
 */
struct scsi_port_thread {
	void (*post)(void *owner, void (*fn)(void *arg), void *arg);
	bool (*here)(void *owner);
	void *owner;
};
void scsi_port_ctx_set_thread(struct scsi_port_ctx *ctx, const struct scsi_port_thread *th);

/*
 * Runs a command on ctx's thread; cmd->done is always called exactly once (maybe before this
 * returns), on that thread. Commands of one nexus always go through the same context.
 */
void scsi_port_submit(struct scsi_port_ctx *ctx, struct scsi_cmd *cmd);

/*
 * After store_engine_reap: run the commands of this context that waited for their LU's ios in
 * flight (an ORDERED command, COMPARE AND WRITE, ...), and the commands of those LUs queued
 * behind them.
 */
void scsi_port_run_blocked(struct scsi_port_ctx *ctx);
/* Whether commands of this context wait for their LU's ios (scsi_port_run_blocked has work). */
bool scsi_port_has_blocked(const struct scsi_port_ctx *ctx);
/*
 * The transport gave up on a submitted command that has not completed (aborted, connection
 * gone): it is not started if it has not been, and its done callback still comes.
 */
void scsi_cmd_cancel(struct scsi_cmd *cmd);
/*
 * The transport is done with cmd->in_ref (sent or dropped). Returns true when commands may
 * have been waiting for that: the caller runs scsi_port_run_blocked (not from within a
 * send path: later, on the loop).
 */
bool scsi_cmd_in_ref_put(struct scsi_cmd *cmd);
/*
 * Whether a submitted command that has not completed may still change the medium (a write-like
 * command whose ios are in flight or still to come): a task management response that aborts it
 * waits for its completion (SAM-5: the aborted commands no longer affect the medium then).
 */
bool scsi_cmd_changes_medium(const struct scsi_cmd *cmd);

/*
 * A new I_T nexus: the SCSI layer sets the power-on unit attention for it. Any thread; nx stays
 * valid (the transport's) until scsi_target_nexus_lost.
 */
void scsi_target_nexus_added(struct scsi_target *t, const struct scsi_nexus *nx);
/*
 * The I_T nexus is gone (session closed): drops per-nexus state (UAs, PREVENT, RESERVE(6/10)).
 * On the thread of the context its commands went through, once none of them is pending.
 */
void scsi_target_nexus_lost(struct scsi_target *t, const struct scsi_nexus *nx);
/*
 * Task management effects inside the SCSI layer; returns an iSCSI TMF response code (0 = done).
 * Any thread: it changes the LU's shared state under its lock.
 */
int scsi_target_task_mgmt(struct scsi_target *t, enum scsi_tmf fn, uint16_t lun, bool lun_valid,
			  const struct scsi_nexus *nx);
/*
 * A CLEAR TASK SET of another nexus aborted commands of nx on LU lun: nx is told COMMANDS
 * CLEARED BY ANOTHER INITIATOR (SAM-5, TAS 0). Any thread.
 */
void scsi_target_commands_cleared(struct scsi_target *t, uint16_t lun, const struct scsi_nexus *nx);
/*
 * How many times LU lun was reset (LOGICAL UNIT RESET, target warm or cold reset), 0 for no
 * such LU. A reset changes only the LU's shared state here (reservations, attentions for every
 * nexus); the commands in flight are each context's. A context that keeps the value it last
 * saw and finds it changed knows the task sets of the LU were cleared from another thread, and
 * aborts its own commands of that LU as the nexus that asked would (scsi_cmd_cancel, then their
 * done callbacks as usual); the response to the LOGICAL UNIT RESET waits until every context has
 * done so. With one context the transport does that itself, as now.
 */
uint64_t scsi_target_lu_reset_gen(struct scsi_target *t, uint16_t lun);

/*
 * 8-byte SAM LUN field -> LU number (util/lun.h decodes): peripheral device or flat space
 * addressing only, the formats our LUs are reported in; false for any other.
 */
bool scsi_lun_decode(const uint8_t lun_field[8], uint16_t *lun);

/*
 * The one sense data builder: fixed (desc false, SCSI_SENSE_FIXED_LEN bytes) or descriptor
 * format, truncated to cap; returns the length. info: the INFORMATION field or NULL; sks: 3
 * sense-key-specific bytes (SKSV set by the caller) or NULL.
 */
#define SCSI_SENSE_FIXED_LEN 18
size_t scsi_sense_build(uint8_t *buf, size_t cap, bool desc, uint8_t key, uint8_t asc, uint8_t ascq,
			const uint64_t *info, const uint8_t *sks);

/* Build sense data into cmd (fixed or descriptor format per the LU's D_SENSE) and set CHECK CONDITION. */
void scsi_cmd_set_sense(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq);

#endif
