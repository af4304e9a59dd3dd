/*
 * Full feature phase on the target: PDUs dispatched by opcode, Task Management, Text requests
 * and the target's own Reject and asynchronous messages.
 */
#ifndef ISTHMUS_TARGET_FFP_H
#define ISTHMUS_TARGET_FFP_H

#include <stdint.h>

#include "proto/pdu.h"
#include "proto/text.h"

struct conn;

/* ffp.c: dispatch, NOP-Out/NOP-In, Logout, Reject and Async Messages */
void ffp_dispatch(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len);
void ffp_run_ordered(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
/* hdr: the complete header of the PDU rejected, which the Reject carries (RFC 7143 11.17). */
void send_reject(struct conn *c, uint8_t reason, const uint8_t hdr[BHS_LEN]);
/* A Reject that leaves the CmdSN of a numbered PDU untaken: the initiator sends it again. */
void send_reject_keep_cmdsn(struct conn *c, uint8_t reason, const uint8_t hdr[BHS_LEN]);
void send_async_logout(struct conn *c, uint16_t seconds);

/* tmf.c: Task Management Function requests */
void tmf_handle(struct conn *c, const struct bhs *b);
void tmf_send_response(struct conn *c, uint32_t itt, uint8_t response);

/* textreq.c: Text requests in full feature phase, SendTargets */
void textreq_handle(struct conn *c, const struct bhs *b, const uint8_t *raw, const uint8_t *data, uint32_t len);
void send_targets(struct conn *c, const char *what, struct text_list *out);

#endif
