/*
 * ErrorRecoveryLevel 1 on the target (RFC 7143 7.1, 7.2, 11.16): what a session that negotiated
 * it gets beyond level 0. snack.c keeps the PDUs a SNACK may ask for again and answers SNACKs;
 * recovery.c turns a digest error into the loss of one PDU instead of the connection.
 */
#ifndef ISTHMUS_TARGET_RECOVERY_H
#define ISTHMUS_TARGET_RECOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/pdu.h"
#include "proto/pdu_conn.h"

struct conn;
struct task;

/* The session's negotiated ErrorRecoveryLevel (0 before full feature phase). */
uint32_t recovery_level(const struct conn *c);

/* snack.c: sent PDUs kept until acknowledged, bounded by max-retained-data per connection. */
/* Whether the PDU being queued is to be kept (level >= 1, full feature phase, not a resend). */
bool snack_wanted(const struct conn *c);
/* Before a PDU is encoded: the last Data-In of a read asks for a DataACK (A bit, RFC 7143 11.7.2). */
void snack_mark(struct conn *c, struct bhs *b, uint32_t len, const struct task *t);
/* After it is queued: keep a copy. status: it took StatSN statsn. */
void snack_keep(struct conn *c, const struct bhs *b, const void *data, uint32_t len, bool status, uint32_t statsn);
/* ExpStatSN from the initiator: statuses below it, and the data of their tasks, are let go. */
void snack_ack_statsn(struct conn *c, uint32_t expstatsn);
/* A SNACK request (level >= 1). */
void snack_handle(struct conn *c, const struct bhs *b, const uint8_t *raw);
void snack_free(struct conn *c);
/* Bytes of copies c keeps. */
uint64_t snack_kept_bytes(const struct conn *c);
/* Whether c keeps Data-In or a SCSI status of this task. */
bool snack_has_itt(const struct conn *c, uint32_t itt);
/* Let go of everything kept for this task. */
void snack_forget_itt(struct conn *c, uint32_t itt);
/* Level 2: what a task that ended on a failed connection can be reassigned with (erl2.c). */
enum snack_reassign { SNACK_REASSIGN_NONE, SNACK_REASSIGN_OK, SNACK_REASSIGN_INCOMPLETE };
enum snack_reassign snack_reassign_check(const struct conn *from, uint32_t itt, uint32_t expdatasn);
void snack_reassign_send(struct conn *from, struct conn *to, uint32_t itt, uint32_t expdatasn);

/* recovery.c */
/*
 * A header is in at level >= 1 with HeaderDigest: true when the role's verdict is decided here
 * (*v): wait for the digest, or skip a PDU whose header digest is wrong.
 */
bool recovery_check_header(struct conn *c, const uint8_t *raw, enum pdu_header_verdict *v);
/* A data digest error at level >= 1: false when the connection ended. */
bool recovery_data_digest_error(struct conn *c, const uint8_t *raw);
/*
 * Writes that stopped getting Data-Out after a header was skipped: the rest of their sequence is
 * asked for with a recovery R2T. Returns how many.
 */
unsigned recovery_ask_stalled_data(struct conn *c, uint64_t now_ms);
/* A recovery R2T for the task's open range again (its Data-Out went with a failed connection). */
void recovery_ask_range(struct conn *c, struct task *t);
/* A Data-Out at level >= 1: true when it was recovery data or filled a gap (taken here). */
bool recovery_data_out(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);

#endif
