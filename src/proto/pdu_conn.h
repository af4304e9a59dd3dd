/*
 * The PDU engine of one iSCSI connection, shared by the target and the initiator: the reception
 * state machine (BHS, then AHS, header digest, data and data digest), its buffer, and the send
 * queue of framed PDUs written with gathered writes. What differs between the roles (what a bad
 * header costs, whether data may go straight into a caller's buffer, what a PDU means) goes
 * through struct pdu_conn_ops.
 */
#ifndef ISTHMUS_PROTO_PDU_CONN_H
#define ISTHMUS_PROTO_PDU_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "proto/frame.h"
#include "proto/params.h"
#include "proto/pdu.h"

enum pdu_recv_state {
	PDU_RECV_BHS,    /* collecting the Basic Header Segment */
	PDU_RECV_REST,   /* collecting AHS, header digest, data and data digest of a PDU to handle */
	PDU_RECV_SKIP,   /* the same for a PDU the role has already answered: passed over unhandled */
	PDU_RECV_DIRECT, /* data going straight into a caller's buffer; header and trailer in rxbuf */
};

/* What the role makes of a header (see pdu_conn_ops.header). */
enum pdu_header_verdict {
	PDU_HEADER_HANDLE, /* read the rest, check the digests, pass the PDU on */
	PDU_HEADER_SKIP,   /* read the rest and drop it (the role has rejected it) */
	PDU_HEADER_WAIT,   /* stop parsing, keep the header: pdu_conn_parse starts from it again */
	PDU_HEADER_STOP,   /* the connection has ended */
};

/* What the header digest of the PDU being received says (pdu_conn_header_digest). */
enum pdu_header_digest { PDU_DIGEST_GOOD, PDU_DIGEST_BAD, PDU_DIGEST_PENDING };

struct pdu_conn;
struct pdu_txitem;

struct pdu_conn_ops {
	/*
	 * A header has arrived and been decoded into pc->rx_bhs; rc and why are bhs_decode's verdict,
	 * raw the header's bytes, pc->rx_need the PDU's size on the wire.
	 */
	enum pdu_header_verdict (*header)(struct pdu_conn *pc, const uint8_t *raw, int rc, const char *why);
	/*
	 * Optional: the header of a PDU with at least direct_min bytes of data (and the opcode
	 * direct_opcode), or of a SCSI Command with at least direct_cmd_min bytes of immediate data,
	 * is in and its data is not all there yet. Return where the data goes (and in *owner who lent
	 * that buffer, for pdu_conn_forget_direct), or NULL to collect it in the receive buffer.
	 */
	uint8_t *(*place)(struct pdu_conn *pc, void **owner);
	/*
	 * A complete PDU with good digests: raw is its header (the AHS follows at raw + BHS_LEN),
	 * data its data segment. Returns false when the connection ended.
	 */
	bool (*pdu)(struct pdu_conn *pc, const uint8_t *raw, const uint8_t *data);
	/* A digest did not match (header: the header digest). False when the connection ended. */
	bool (*digest_error)(struct pdu_conn *pc, bool header, const uint8_t *raw);
	/* Optional: complete the encoded header of a PDU being queued, before its digest. */
	void (*stamp)(struct pdu_conn *pc, const struct bhs *b, uint8_t hdr[BHS_LEN]);
	/* A queued PDU has been written or dropped: release what it kept alive. */
	void (*sent)(struct pdu_conn *pc, struct pdu_txitem *it);
};

/*
 * One queued PDU. Roles that keep more per PDU embed it first in a larger item of
 * pdu_txpool.item_size bytes.
 */
struct pdu_txitem {
	struct pdu_frame f;  /* first: the queue links frames */
	uint8_t *owned;      /* freed once written (text, sense): NULL when the data is borrowed */
	size_t wire;         /* size on the wire, counted in tx_bytes while queued */
};

/* Spare send items, reused rather than allocated per PDU; at most keep of them. */
struct pdu_txpool {
	struct pdu_txitem *free;
	size_t n, keep, item_size;
};

struct pdu_conn {
	const struct pdu_conn_ops *ops;
	void *arg;                          /* the role's connection */
	const struct iscsi_params *params;  /* the digests in force */
	/* reception: rxbuf[rx_start, rx_len) holds bytes not parsed yet */
	enum pdu_recv_state rx_state;
	uint8_t *rxbuf;
	size_t rx_start, rx_len, rx_cap;
	size_t rx_base;                     /* the buffer size the role wants now (grown, never shrunk) */
	size_t rx_need;                     /* bytes of the current PDU (direct: without its data) */
	struct bhs rx_bhs;
	uint64_t rx_epoch;                  /* counts pdu_conn_rx_reset: a handler may start over */
	bool rx_header_skipped;             /* the last PDU was skipped for a header digest error */
	uint32_t direct_min;                /* data segments this long may be placed (0: never) */
	uint8_t direct_opcode;              /* of PDUs with this opcode (0: Data-In, the initiator's) */
	uint32_t direct_cmd_min;            /* SCSI Commands with this much immediate data too (0: never) */
	/*
	 * Direct placement: dr_left bytes of data still to come at dr_dst; dr_owner turns NULL when
	 * the buffer's owner is gone (the rest is then read and dropped).
	 */
	void *dr_owner;
	uint8_t *dr_data, *dr_dst;
	uint32_t dr_left;
	/*
	 * The last PDU was placed directly: reads stop at the end of the next header, so that the
	 * data behind it goes straight to its buffer rather than through rxbuf.
	 */
	bool rx_large;
	/* sending */
	struct pdu_queue txq;
	struct pdu_txpool *pool;
	uint64_t tx_bytes;                  /* bytes queued */
	/*
	 * Data segments in files go file -> tx_pipe -> socket by splice: the pipe (made on first
	 * use, PDU_TX_PIPE_SIZE) holds tx_piped bytes of the head frame's data not yet in the socket.
	 */
	int tx_pipe[2];
	bool tx_pipe_open; /* tx_pipe holds two descriptors: a zeroed pdu_conn (never initialized) has none */
	size_t tx_piped, tx_pipe_cap;
	uint64_t tx_spliced;                /* bytes that went by splice */
};

/* The pipe a connection splices file data through: what one splice moves at most. */
#define PDU_TX_PIPE_SIZE (256u * 1024u)

void pdu_conn_init(struct pdu_conn *pc, const struct pdu_conn_ops *ops, void *arg, const struct iscsi_params *params,
		   struct pdu_txpool *pool, size_t rx_base);
/* Forget any partial PDU: the next byte read starts a header. The buffer is kept. */
void pdu_conn_rx_reset(struct pdu_conn *pc);
void pdu_conn_rx_free(struct pdu_conn *pc);
/* Let the receive buffer grow to size (before the next read). */
void pdu_conn_rx_grow(struct pdu_conn *pc, size_t size);

/* pdu_conn_read's answer when the nonblocking socket has nothing more for now. */
#define PDU_READ_DRAINED (-2)
/*
 * One read from fd: into the placed buffer while direct data is due, else into rxbuf. Returns
 * the bytes read, 0 at the end of the stream, PDU_READ_DRAINED when nothing more is there now,
 * or -1 with errno set; an interrupted read is retried. *asked gets how many bytes were asked for.
 */
ssize_t pdu_conn_read(struct pdu_conn *pc, int fd, size_t *asked);
/* Run the reception state machine over the buffered bytes; false when the connection ended. */
bool pdu_conn_parse(struct pdu_conn *pc);
/* Bytes of an incomplete PDU held (0 between PDUs). */
size_t pdu_conn_rx_pending(const struct pdu_conn *pc);
static inline bool pdu_conn_in_pdu(const struct pdu_conn *pc) { return pc->rx_state != PDU_RECV_BHS; }
/* The owner of a placed buffer is gone: the rest of its data is read and dropped. */
void pdu_conn_forget_direct(struct pdu_conn *pc, const void *owner);
/* Bytes of header, AHS and header digest of the PDU in pc->rx_bhs. */
size_t pdu_conn_header_size(const struct pdu_conn *pc);

/*
 * Queue a PDU (b encoded with data_len = len; data borrowed unless it is owned, which is freed
 * once written). Returns the item, for the role's own fields.
 */
struct pdu_txitem *pdu_conn_queue(struct pdu_conn *pc, struct bhs *b, const void *data, uint32_t len, uint8_t *owned);
/*
 * Queue a PDU whose data segment is len bytes of file fd from off on, sent without passing
 * through user space (splice). Only without a data digest (nothing here reads the data). fd
 * must stay open, and that part of the file this long, until the item is released.
 */
struct pdu_txitem *pdu_conn_queue_file(struct pdu_conn *pc, struct bhs *b, int fd, uint64_t off, uint32_t len);
/* Makes the splice pipe if there is none yet: 0, or -1 with errno set (out of descriptors). */
int pdu_conn_tx_pipe_open(struct pdu_conn *pc);
/* From a header callback: checks the header digest (HeaderDigest negotiated) of raw before the
 * data is read, so a role at ErrorRecoveryLevel 1 can skip one damaged PDU by its length;
 * PENDING: the digest is not in the buffer yet (answer PDU_HEADER_WAIT). */
enum pdu_header_digest pdu_conn_header_digest(const struct pdu_conn *pc, const uint8_t *raw);
/*
 * The header digest check of a role at ErrorRecoveryLevel 1 or more (RFC 7143 7.8), from its
 * header callback: false when HeaderDigest is not in force or the header is good, and the role
 * goes on with its own checks. Otherwise true with *v: PDU_HEADER_WAIT while the digest is not in
 * the buffer yet; PDU_HEADER_SKIP for a damaged header, skipped by the length it gives; and
 * PDU_HEADER_STOP (with why) when that length cannot be trusted either: a second damaged header
 * in a row, or a data segment length over MaxRecvDataSegmentLength. On SKIP and STOP the role
 * counts a digest error; on STOP it ends the connection.
 */
bool pdu_conn_recover_header(struct pdu_conn *pc, const uint8_t *raw, enum pdu_header_verdict *v, const char **why);
/*
 * Write what the socket takes, at most iov_max iovecs per writev, and data in files by splice,
 * until the queue is empty or the socket full. Returns the bytes written, or -1 with errno set
 * (EIO: a file ended before the data it was to give).
 */
ssize_t pdu_conn_flush(struct pdu_conn *pc, int fd, int iov_max);
/* Take one item that is off the queue out of the count and release it (pdu_conn_ops.sent). */
void pdu_conn_tx_release(struct pdu_conn *pc, struct pdu_txitem *it);
/* Drop everything queued (the connection is gone), the splice pipe with it. */
void pdu_conn_drop_tx(struct pdu_conn *pc);
/* Put a dequeued item back (pool or free). */
void pdu_txpool_put(struct pdu_txpool *pool, struct pdu_txitem *it);
void pdu_txpool_free(struct pdu_txpool *pool);

/* Numeric address and port of an IPv4 or IPv6 socket address; false ("" and 0) for others. */
bool pdu_sockaddr_split(const struct sockaddr *sa, char *addr, size_t alen, uint16_t *port);
/* "host:port", "[v6]:port", or "local socket" for other families. */
void pdu_sockaddr_text(const struct sockaddr *sa, char *out, size_t outlen);

#endif
