/*
 * One SCSI command on the target: its data buffers, the Data-Out it collects (immediate,
 * unsolicited, solicited by R2T) and the Data-In and response that answer it.
 */
#ifndef ISTHMUS_TARGET_TASK_H
#define ISTHMUS_TARGET_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/pdu.h"
#include "scsi/scsi.h"
#include "util/bufpool.h"

struct conn;
struct shard;
struct session;

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
	struct shard *shard;      /* its connection's, kept when the connection goes (orphans) */
	struct task *next;        /* in the connection's task list / free list */
	struct task *prev;        /* in the connection's task list: a task leaves it without a walk */
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
	uint32_t hole_off, hole_len; /* ERL 1: Data-Out lost to a digest error, asked for again (recovery.c) */
	/* read side */
	uint8_t *in;
	uint32_t in_cap;
	struct bufpool *pool;     /* where out and in come from and go back to */
	uint32_t refs;            /* queued send items still pointing at buffers */
	bool aborted;
	struct tmf_hold *tmf;     /* task management responses waiting for this task to end (tmf.c) */
	uint8_t refuse;           /* enum task_refusal: answered with an error in its CmdSN turn */
	uint64_t buffered;        /* bytes of data buffers this task holds */
	uint64_t last_data_ms;    /* last Data-Out (or the command) arrived; for the Data-Out timeout */
	uint64_t start_us;        /* arrival, for the latency histogram */
	struct scsi_cmd scmd;
};

void task_handle_command(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len);
void task_handle_data_out(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
struct pdu_conn;
/* pdu_conn_ops.place: where a large Data-Out's data goes, or NULL (see task.c). */
uint8_t *task_place_data_out(struct pdu_conn *pc, void **owner);
/* pdu_conn_ops.place: where a write command's immediate data goes (c->placed), or NULL. */
uint8_t *task_place_immediate(struct pdu_conn *pc, void **owner);
/* Give back c->placed when no task took it over (the command was rejected, damaged, or cut off). */
void task_drop_placed(struct conn *c);
void task_start(struct task *t);
void task_release(struct task *t);
void task_abort(struct task *t);
void task_free_all(struct conn *c);
/* tmf.c: an aborted task a task management response waits for has ended. */
void tmf_task_ended(struct task *t);
/* tmf.c: the connection goes; responses still waiting for tasks are dropped. */
void tmf_conn_gone(struct conn *c);
/* Whether a Data-Out at the write's current offset opens the next R2T's sequence (DataSN 0). */
bool task_opens_sequence(const struct task *t, const struct bhs *b);
/* Where the sequence a Data-Out would open at the current offset ends: one burst at most. */
uint32_t task_next_seq_end(const struct task *t);
/* The write a Data-Out belongs to (same ITT, and its TTT or the unsolicited one), or NULL. */
struct task *task_find_data_owner(struct conn *c, const struct bhs *b);
struct task *task_find_itt(struct session *s, uint32_t itt);
/* Queue one R2T of the task for [offset, offset + len): the next R2TSN, the task's TTT. */
void task_queue_r2t(struct task *t, uint32_t offset, uint32_t len);
/* Level 2 TASK REASSIGN (erl2.c): move the task to another connection, then resume its Data-Out. */
void task_move(struct task *t, struct conn *to);
void task_resume_data(struct task *t);
unsigned task_expire_data_waits(struct conn *c, uint64_t now_ms, uint64_t timeout_ms);

#endif
