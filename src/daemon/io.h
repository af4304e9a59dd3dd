/*
 * I/O of the device front ends (FUSE, NBD), the RPC layer and the LUN probe on a daemon session:
 * sent when the session is ready, queued in submission order while it is not (up to queue-limit),
 * sent again after a reconnect.
 */
#ifndef ISTHMUS_DAEMON_IO_H
#define ISTHMUS_DAEMON_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isthmus/isthmus.h"

struct dsession;
struct dio;

/* err: 0 (see r for the SCSI status), or -errno. */
typedef void (*dio_done_fn)(struct dio *io, int err, const struct ism_scsi_result *r);

/* Whether a command that did not complete is sent again. */
enum dio_resend {
	DIO_RESEND = 0, /* after a unit attention, after a lost connection (bounded tries, io.c) */
	DIO_ONCE,       /* never: its owner starts over on the next session (the LUN probe) */
};

struct dio {
	struct dio *next;
	struct dsession *s;
	uint64_t seq; /* submission order: requeued I/O is sent again in this order */
	uint64_t lun;
	uint8_t cdb[16];
	size_t cdb_len;
	enum ism_dir dir;
	void *buf;
	uint32_t len;
	int tries;
	enum dio_resend resend;
	bool whole; /* block READ or WRITE: GOOD status after less than len bytes is an error (-EIO) */
	dio_done_fn done;
	void *priv;
};

/* io cleared and filled for a command on s (its cdb is the caller's), numbered in submission
 * order; resent after a unit attention or a lost connection unless the caller says DIO_ONCE. */
void dio_prepare(struct dio *io, struct dsession *s, uint64_t lun, enum ism_dir dir, void *buf, uint32_t len,
		 dio_done_fn done, void *priv);
/* io prepared (dio_prepare) as READ(16) or WRITE(16) of blocks blocks of bs bytes from lba, whole
 * (a GOOD status after fewer bytes is -EIO): the block I/O of the FUSE files and NBD exports. */
void dio_prepare_rw16(struct dio *io, struct dsession *s, uint64_t lun, bool write, uint64_t lba, uint32_t blocks,
		      uint32_t bs, void *buf, dio_done_fn done, void *priv);
/* A session step's own command (the LUN probe, the reservation key): sent at once, never again
 * (DIO_ONCE). 0, or -1 when the session has no library session or it refuses the command. */
int dio_send_once(struct dsession *s, struct dio *io);
/* Whether a command ended with GOOD status; *got: the bytes it moved then, else 0. */
bool dio_good(int err, const struct ism_scsi_result *r, uint32_t *got);
/* Submit I/O: sent now, queued while reconnecting, or failed (done called with -errno). */
void dio_submit(struct dsession *s, struct dio *io);
/* Send io on the session's libisthmus session now, ready or not (the LUN probe runs before the
 * session is ready for the others): 0, or -1 when the library refuses it. */
int dio_send_now(struct dsession *s, struct dio *io);
/* Send what waits, as far as the session is ready. */
void dio_flush_queue(struct dsession *s);
/* The same, after the events of this loop iteration. */
void dio_flush_later(struct dsession *s);
/* Every queued request ends with err. */
void dio_fail_queue(struct dsession *s, int err);

#endif
