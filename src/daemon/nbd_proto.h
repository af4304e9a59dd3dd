/*
 * The server side of one NBD client connection, without sockets: the fixed newstyle handshake
 * and the transmission phase as a state machine over bytes. The owner (src/daemon/nbd.c, or a
 * fuzzer) reads the client's bytes into the space the engine offers, writes out the iovecs it
 * hands back, and runs the requests it submits through a backend that ends each one with
 * nbd_req_done().
 *
 * Everything a client can make the server hold is bounded: requests in flight (submitted, or
 * answered and not yet sent back) by count and by bytes, handshake answers not yet read, and the
 * input buffered. At a bound the engine offers no room to read into (nbd_conn_rx_space returns
 * 0): the owner stops reading the client until the backend's wake() says there is room again.
 */
#ifndef ISTHMUS_DAEMON_NBD_PROTO_H
#define ISTHMUS_DAEMON_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "daemon/io.h"

#define NBD_MAX_IO (1u << 20)              /* largest READ or WRITE (advertised as the maximum block size) */
#define NBD_MAX_INFLIGHT 64u               /* requests per client between arrival and the end of their reply */
#define NBD_MAX_INFLIGHT_BYTES (16u << 20) /* READ/WRITE bytes per client over the same span */
#define NBD_MAX_HANDSHAKE_OUT (64u << 10)  /* handshake answers a client leaves unread */

#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_FLAG_FUA 1

/* The export as it is now. */
struct nbd_export_info {
	uint64_t size;
	uint32_t block_size; /* a power of two, 512 to 65536 */
	/* The LUN is write-protected: advertised as NBD_FLAG_READ_ONLY, and a WRITE, TRIM or
	 * WRITE_ZEROES is answered EPERM without reaching the target. */
	bool read_only;
};

/* A READ, WRITE, FLUSH or TRIM that passed the checks, handed to the backend. */
struct nbd_req {
	/* The backend's: the SCSI command the request becomes and room for a parameter list. */
	struct dio io;
	uint8_t param[24];
	/* The request: offset and len are whole blocks inside the export. */
	uint16_t type, flags;
	uint64_t offset;
	uint32_t len;
	uint32_t block_size;
	uint8_t *buf; /* WRITE: its payload; READ: where the data goes (len bytes) */
	/* the engine's */
	struct nbd_conn *c;
	struct nbd_req *next;
	uint64_t cookie;
	size_t cap;
	uint32_t data_len; /* data bytes in the reply */
	uint32_t err;      /* a large WRITE refused at its header, answered once its payload is in */
	bool counted;      /* in the client's bytes in flight */
	uint8_t hdr[16];   /* the simple reply header */
};

struct nbd_backend {
	/* The export now; false when it is gone (the handshake then refuses it, requests get EIO). */
	bool (*info)(void *ctx, struct nbd_export_info *out);
	/* Run q; nbd_req_done(q, ...) follows exactly once, maybe before this returns. */
	void (*submit)(void *ctx, struct nbd_req *q);
	/* Output is waiting, or room to read opened again: the owner flushes and reads. */
	void (*wake)(void *ctx);
	void *ctx;
};

enum nbd_rx_result {
	NBD_RX_OK = 0,
	NBD_RX_CLOSE = -1,       /* close the connection now (protocol error, NBD_CMD_DISC) */
	NBD_RX_CLOSE_AFTER = 1,  /* send what is queued, then close (NBD_OPT_ABORT) */
};

struct nbd_conn;

struct nbd_conn *nbd_conn_new(const struct nbd_backend *be);
/* Where the client's next bytes go and how many fit; 0: do not read now (a bound is reached). */
size_t nbd_conn_rx_space(struct nbd_conn *c, uint8_t **at);
/* n bytes were read to where nbd_conn_rx_space said: act on every complete message. */
enum nbd_rx_result nbd_conn_rx_done(struct nbd_conn *c, size_t n);
/* What is ready to send, as at most max iovecs; returns their count (0: nothing). */
int nbd_conn_tx_iov(struct nbd_conn *c, struct iovec *iov, int max);
/* n bytes of those iovecs were sent; input held back at a bound may be acted on now (hence the
 * result, as for nbd_conn_rx_done). */
enum nbd_rx_result nbd_conn_tx_done(struct nbd_conn *c, size_t n);
bool nbd_conn_tx_pending(const struct nbd_conn *c);
/* Would the engine take input now (no bound reached, not closing)? */
bool nbd_conn_wants_input(const struct nbd_conn *c);
/* Requests submitted and not yet done (their replies may still be unsent). */
unsigned nbd_conn_inflight(const struct nbd_conn *c);
/* The client is gone: the backend is not called again; requests still running end into nothing,
 * and the engine is freed when the last one does. */
void nbd_conn_release(struct nbd_conn *c);
/* The backend finished q: err is 0 or an NBD error (a positive errno). */
void nbd_req_done(struct nbd_req *q, uint32_t err);
/* Free the pool of idle requests (at exit, for leak checkers). */
void nbd_req_pool_drain(void);

#endif
