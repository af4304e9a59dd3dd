/*
 * PDUs on their way out: one frame per PDU (header with its digest, data, padding with the data
 * digest) as iovecs, and a queue of frames written with gathered writes. Shared by the target's
 * and the initiator's connections.
 */
#ifndef ISTHMUS_PROTO_FRAME_H
#define ISTHMUS_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "proto/pdu.h"

struct pdu_frame {
	struct pdu_frame *next;
	int niov;
	int iov_done;    /* iovecs fully written */
	size_t iov_off;  /* bytes written of iov[iov_done] */
	/*
	 * src_fd >= 0: the data segment (iov[1], iov_base NULL) is not in memory but in that file
	 * from src_off on; the sender moves it from there (pdu_conn_flush splices it).
	 */
	int src_fd;
	uint64_t src_off;
	struct iovec iov[3];
	uint8_t hdr[BHS_LEN + 4];
	uint8_t trailer[8];
};

/*
 * Encode b (its data_len set to len) and lay out the frame; data is referenced, not copied, and
 * must stay valid until the frame is sent. Returns the frame's size on the wire.
 */
size_t pdu_frame_build(struct pdu_frame *f, struct bhs *b, const void *data, uint32_t len, bool header_digest,
		       bool data_digest);
/* pdu_frame_build in two steps, so that f->hdr may be completed in between. */
void pdu_frame_begin(struct pdu_frame *f, struct bhs *b, uint32_t len);
size_t pdu_frame_finish(struct pdu_frame *f, const void *data, uint32_t len, bool header_digest, bool data_digest);

/* The data segment of f is in a file: iov[1] has no memory behind it. */
static inline bool pdu_frame_data_in_file(const struct pdu_frame *f, int i) { return f->src_fd >= 0 && i == 1; }

struct pdu_queue {
	struct pdu_frame *head, *tail;
};

static inline bool pdu_queue_empty(const struct pdu_queue *q) { return q->head == NULL; }
void pdu_queue_push(struct pdu_queue *q, struct pdu_frame *f);
/*
 * The unsent parts of queued frames, in order, at most max iovecs, stopping before a data
 * segment that is in a file (pdu_frame.src_fd; *at_file then true); *bytes gets their total.
 */
int pdu_queue_gather(const struct pdu_queue *q, struct iovec *iov, int max, size_t *bytes, bool *at_file);
/* n bytes went out: advance and pass each frame now completely sent to done, in order. */
void pdu_queue_consume(struct pdu_queue *q, size_t n, void (*done)(struct pdu_frame *f, void *arg), void *arg);
/* Take every frame off the queue (sent or not), passing each to done. */
void pdu_queue_drain(struct pdu_queue *q, void (*done)(struct pdu_frame *f, void *arg), void *arg);

#endif
