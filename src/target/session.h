/*
 * A session on the target: its connections, the CmdSN window and the PDUs held until their
 * CmdSN turn comes.
 */
#ifndef ISTHMUS_TARGET_SESSION_H
#define ISTHMUS_TARGET_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "net/loop.h"
#include "proto/params.h"
#include "proto/pdu.h"
#include "scsi/scsi.h"
#include "target/stats.h"

struct server;
struct shard;
struct tnode;
struct conn;
struct task;
struct held_pdu;

struct session {
	struct server *srv;
	struct shard *shard;        /* the loop of all its connections */
	struct tnode *node;         /* NULL for discovery */
	enum session_type type;
	uint16_t tsih;
	uint8_t isid[6];
	char initiator_name[224];
	char initiator_alias[256];
	uint16_t tpgt;
	struct iscsi_params params; /* session-wide negotiated values */
	struct conn *conns;
	uint32_t nconns;
	uint32_t exp_cmdsn;
	uint32_t max_cmdsn;         /* highest MaxCmdSN advertised; never lowered */
	uint32_t queue_depth;       /* command slots: the window is the free ones */
	struct held_pdu **ring;     /* PDUs waiting for their CmdSN turn, any connection */
	uint32_t ring_mask;         /* ring size - 1; the size is a power of two >= queue_depth */
	uint32_t nheld;             /* entries in the ring */
	uint32_t held_other;        /* held PDUs that are not SCSI commands (no task) */
	uint64_t held_bytes;        /* data segments copied for held PDUs */
	uint64_t buffered;          /* data buffer bytes held by the tasks of its connections */
	bool ended;                 /* its last connection is gone; freed after this loop iteration */
	char *auth_user;            /* CHAP name it authenticated with, NULL for none */
	struct scsi_nexus nexus;
	bool nexus_registered;
	char auth_method[8];        /* "None" or "CHAP" */
	uint64_t created;           /* wall clock seconds */
	struct io_stats closed;     /* counters of connections that have ended */
	uint64_t kill_deadline_ms;  /* session kill: drop at this time unless logged out; 0 = none */
	bool closing;               /* session_close runs: its connections close for good */
	/* ErrorRecoveryLevel 2 (erl2.c): failed connections whose tasks wait for reassignment */
	struct conn *failed;        /* linked by sess_next, oldest last */
	uint32_t nfailed;
	struct loop_timer recover_timer; /* the next failed connection's deadline */
	uint64_t conn_recoveries;   /* failed connections replaced by a login or whose tasks moved */
	uint64_t task_reassigns;    /* tasks moved to another connection by TASK REASSIGN */
};

struct session *session_create(struct server *srv, struct conn *c, uint16_t tsih);
void session_add_conn(struct session *s, struct conn *c);
void session_remove_conn(struct session *s, struct conn *c);
void session_close(struct session *s, const char *why);
void session_revoke(struct session *s, unsigned grace, const char *why);
void session_advance(struct session *s);
void session_unhold_task(struct session *s, struct task *t);
void session_skip_cmdsn(struct session *s, uint32_t sn);
/* A connection fails: its PDUs still waiting for their CmdSN turn are dropped, CmdSN untaken. */
void session_drop_held(struct session *s, struct conn *c);
/* Ends the session once neither a connection nor a failed one awaiting recovery is left. */
void session_end_if_empty(struct session *s);
/* CmdSN ordering: true if the PDU with this CmdSN may be processed now (else it is held). */
bool session_order(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len, struct task *task);
/* The MaxCmdSN to send: ExpCmdSN + free command slots - 1, never below what was sent before. */
uint32_t session_max_cmdsn(struct session *s);
uint32_t session_outstanding(const struct session *s);
uint64_t session_oldest_held_ms(const struct session *s);
uint32_t session_queue_depth(const struct server *srv);

#endif
