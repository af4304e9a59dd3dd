/*
 * What lu_state.c (the record's cycle) and lu_state_caw.c (COMPARE AND WRITE under the group's
 * lock) share: the LU's shared state and the rules for moving work between the home thread (the
 * one that runs the record's jobs) and a command's own context's thread. Not for other modules.
 */
#ifndef ISTHMUS_SCSI_LU_STATE_INT_H
#define ISTHMUS_SCSI_LU_STATE_INT_H

#include "scsi/lu_record.h"
#include "scsi/scsi_int.h"
#include "util/sbuf.h"

struct lu_act {
	struct lu_act *next;
	enum lu_shared_action kind;
	uint32_t ua;
	struct lu_ident who;
};

struct lu_waiter {
	struct lu_waiter *next;
	void (*done)(void *arg);
	void *arg;
};

/* Where the cycle is: loading the record, running its command on that command's thread, storing. */
enum sh_phase { SH_IDLE, SH_LOADING, SH_RUNNING, SH_STORING };

struct lu_shared {
	const struct scsi_shared_ops *ops;
	void *ctx;
	struct scsi_target *t;
	struct scsi_lu *lu;          /* NULL once the LU is gone */
	struct scsi_port_thread home; /* the thread of the target's first context: the cycle's */
	enum sh_phase phase;
	unsigned jobs;               /* jobs submitted and messages posted that are not back home */
	bool kick_posted;            /* a kick from another thread is on its way home */
	uint64_t version;            /* of the record last loaded or stored */
	bool loaded;                 /* a load succeeded since the LU was shared */
	bool reload;                 /* a change notice came: load even with nothing to run */
	bool failing;                /* the last call failed (logged once until one works) */
	uint64_t seen;               /* newest event raised on this gateway */
	uint64_t evseq;              /* newest event of the record */
	struct lu_event ev[LU_SHARED_MAX_EVENTS];
	size_t nev;                  /* oldest first */
	struct scsi_cmd *q, *q_tail; /* reservation commands waiting, in arrival order */
	struct scsi_cmd *cur;        /* the command of the cycle in flight */
	struct lu_act *acts, *acts_tail, *cur_acts;
	size_t nacts;
	struct lu_waiter *waiters;
	unsigned retries;
	struct sbuf rec;             /* the record as loaded: whether a cycle changed it */
	struct scsi_cmd *caw_holder; /* the COMPARE AND WRITE holding the group's lock */
};

struct sh_job {
	struct offload_job job;
	struct lu_shared *sh;
	enum { J_LOAD, J_STORE, J_ACK } kind;
	struct sbuf rec;
	uint64_t expect, version;
	int rc;
};

/* A command handed between the home thread and its own context's thread. */
struct sh_hand {
	struct lu_shared *sh;
	struct scsi_cmd *cmd;
	bool ended;                  /* it was completed there (its LU had gone) */
	uint64_t off, len;           /* a COMPARE AND WRITE's bytes of the medium */
};

void sh_home_post(struct lu_shared *sh, void (*fn)(void *arg), void *arg);
void sh_own_post(struct sh_hand *h, void (*fn)(void *arg));
bool sh_own_here(const struct scsi_cmd *cmd);
struct scsi_lu *sh_home_arrive(struct lu_shared *sh);
void sh_home_leave(struct lu_shared *sh, struct scsi_lu *lu);
void sh_hand_back(void *arg);
void sh_cmd_fail(struct scsi_cmd *cmd, bool desc, uint8_t key, uint8_t asc, uint8_t ascq);
void sh_cmd_finish_here(void *arg);
void sh_cmd_finish(struct scsi_cmd *cmd);

#endif
