/*
 * ErrorRecoveryLevel 2 on the target (RFC 7143 6.2.2, 6.3.4, 7.1.5, 11.5.1, 11.14): a connection
 * that fails leaves its tasks to another connection of the session instead of ending it. The
 * failed connection stays, without a socket (PHASE_FAILED), with its tasks and the PDUs kept for
 * them, until a TASK REASSIGN moves each task to a live connection or DefaultTime2Wait +
 * DefaultTime2Retain pass.
 */
#ifndef ISTHMUS_TARGET_ERL2_H
#define ISTHMUS_TARGET_ERL2_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/pdu.h"

struct conn;
struct session;
struct task;

/*
 * The longest a failed connection's tasks are kept, whatever DefaultTime2Wait + DefaultTime2Retain
 * say (both may be negotiated up to 3600 s).
 */
#define ERL2_MAX_HOLD_S 300u

/* Whether closing c now leaves its tasks waiting for reassignment rather than ending them. */
bool erl2_keeps_tasks(const struct conn *c);
/* c broke (or was logged out for recovery): keep its tasks, drop its socket. */
void erl2_conn_fail(struct conn *c, const char *why);
/* A PDU queued on a failed connection (a task that completed after the failure): kept only. */
void erl2_keep_unsent(struct conn *c, struct bhs *b, const void *data, uint32_t len, const struct task *t);
/* Every failed connection of a session goes, with its tasks (the session closes). */
void erl2_discard_all(struct session *s);
/* The failed connection with this CID, the most recent one first; NULL if none. */
struct conn *erl2_find_failed(struct session *s, uint16_t cid);
/* The seconds a failed connection's tasks are kept: Time2Wait and the Time2Retain after it. */
void erl2_hold_times(const struct session *s, uint16_t *time2wait, uint16_t *time2retain);
/*
 * A login joined c to the session: a failed connection with its CID is recovered, and the
 * login's ExpStatSN acknowledges that connection's statuses (RFC 7143 11.12.8).
 */
void erl2_login_joined(struct session *s, struct conn *c, uint32_t old_expstatsn);
/* TASK REASSIGN (RFC 7143 11.5.1): answered here, then the task goes on on c. */
void erl2_task_reassign(struct conn *c, const struct bhs *b);

#endif
