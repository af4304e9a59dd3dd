/*
 * Data-In without a copy in user space: a read whose data stays in its store's file
 * (scsi_cmd.in_ref) is sent by splice, file -> pipe -> socket, instead of being read into the
 * task's buffer and written from there. The PDUs (MaxRecvDataSegmentLength, MaxBurstLength,
 * F and S bits, residuals) are the same either way: task.c lays them out, this only changes
 * where each one's data comes from.
 */
#ifndef ISTHMUS_TARGET_DATAIN_H
#define ISTHMUS_TARGET_DATAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/pdu.h"

struct conn;
struct task;

/*
 * Reads shorter than this are copied: below it the extra system calls of a splice (a pipe
 * fill and drain per PDU, the header on its own) cost more than copying the data saves.
 */
#define DATAIN_ZERO_COPY_MIN (64u * 1024u)

/*
 * Whether t's data may stay in the store's file until sent: zero-copy-reads configured (off by
 * default: measured on loopback in a VM, splice cost more CPU per read than the copy it saves,
 * docs/performance.md), a plain read, no DataDigest (the
 * data would have to be read to compute it), ErrorRecoveryLevel 0 (at higher levels a SNACK
 * may ask for the data again, so it is kept in the task's buffer), at least DATAIN_ZERO_COPY_MIN.
 */
bool datain_zero_copy_ok(const struct task *t);
/* Queue one Data-In PDU b carrying [off, off+len) of t's read data, from wherever it is. */
void datain_queue(struct conn *c, struct task *t, struct bhs *b, uint32_t off, uint32_t len);
/* t is done with its data (sent, dropped or never sent): the store it held is let go. */
void datain_release(struct task *t);

#endif
