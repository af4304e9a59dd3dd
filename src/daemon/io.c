/*
 * The I/O queue of a daemon session. A request is sent at once when the session is ready, else
 * queued in submission order (at most queue-limit bytes) until a login brings the session back;
 * a command that comes back because its connection was lost is queued again in its old place.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/libbridge.h"
#include "daemon/probe.h"
#include "daemon/session.h"
#include "scsi/scsi.h"
#include "util/log.h"

/* Sends of a command that came back with a unit attention, or with its connection lost. */
#define DIO_MAX_TRIES 8
#define DIO_MAX_LOST_TRIES (DIO_MAX_TRIES * 100)
/* Sends of a command whose own answer broke the protocol. */
#define DIO_MAX_BLAMED_TRIES 3

static void queue_insert(struct dsession *s, struct dio *io)
{
	struct dio **pp = &s->queue;
	while (*pp && (*pp)->seq < io->seq)
		pp = &(*pp)->next;
	io->next = *pp;
	*pp = io;
	s->queued_bytes += io->len;
}

void dio_fail_queue(struct dsession *s, int err)
{
	while (s->queue) {
		struct dio *io = s->queue;
		s->queue = io->next;
		s->queued_bytes -= io->len;
		io->next = NULL;
		io->done(io, err, NULL);
	}
}

/* CAPACITY DATA HAS CHANGED (SPC-4 additional sense code 2Ah/09h); and 29h (POWER ON, RESET, OR
 * BUS DEVICE RESET OCCURRED), which a target that was restarted reports instead, whatever
 * changed while it was away. */
#define ASC_PARAMETERS_CHANGED 0x2a
#define ASCQ_CAPACITY_CHANGED 0x09
#define ASCQ_ASYMMETRIC_ACCESS_CHANGED 0x06
#define ASC_POWER_ON_RESET 0x29

/*
 * A unit attention; one that says the LUN's capacity changed has it read again. Only the devices'
 * and the RPC layer's commands (DIO_RESEND) look: the session steps' own commands (DIO_ONCE)
 * include that READ CAPACITY, which a target repeating the attention would otherwise loop on.
 */
static bool is_unit_attention(struct dsession *s, uint64_t lun, const struct ism_scsi_result *r)
{
	uint8_t key, asc, ascq;
	if (r->status != SCSI_CHECK_CONDITION || !ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq) ||
	    key != SK_UNIT_ATTENTION)
		return false;
	if ((asc == ASC_PARAMETERS_CHANGED && ascq == ASCQ_CAPACITY_CHANGED) || asc == ASC_POWER_ON_RESET)
		probe_capacity(s, lun);
	/* A gateway of the group came or went: which portal is optimized may have changed. */
	if (asc == ASC_PARAMETERS_CHANGED && ascq == ASCQ_ASYMMETRIC_ACCESS_CHANGED && !s->alua_probes)
		probe_alua(s);
	return true;
}

static void flush_deferred(void *arg) { dio_flush_queue(arg); }

void dio_flush_later(struct dsession *s) { loop_defer(s->d->loop, flush_deferred, s); }

static void dio_cb(struct ism_session *ism, const struct ism_scsi_result *r, void *priv)
{
	(void)ism;
	struct dio *io = priv;
	struct dsession *s = io->s;
	s->inflight--;
	io->tries++;
	bool resend = io->resend == DIO_RESEND;
	if (r->error == ISM_OK) {
		/* A reinstated session reports the reset once: send the command again. */
		if (resend && is_unit_attention(s, io->lun, r) && io->tries < DIO_MAX_TRIES) {
			queue_insert(s, io);
			dio_flush_later(s);
			return;
		}
		if (io->whole && r->status == SCSI_GOOD && r->transferred < io->len) {
			/* The rest of a read buffer is zeros, not data; a write did not reach every block. */
			log_warn("session %s LUN %" PRIu64 ": %s of %u bytes answered GOOD after %u bytes; failing it",
				 s->idstr, io->lun, io->dir == ISM_DIR_WRITE ? "WRITE" : "READ", io->len, r->transferred);
			io->done(io, -EIO, r);
			return;
		}
		io->done(io, 0, r);
		return;
	}
	bool recoverable = r->error == ISM_ERR_TRANSPORT || r->error == ISM_ERR_CLOSED || r->error == ISM_ERR_TIMEOUT ||
			   r->error == ISM_ERR_PROTOCOL;
	bool alive = s->state == DS_CONNECTED || s->state == DS_RECONNECTING ||
		     (s->state == DS_LOGGING_IN && !s->interactive_login);
	/*
	 * A command whose own answer broke the protocol took the connection down with it and would
	 * take the next one down the same way: it gets a few tries, not the hundreds the commands
	 * that only went down with it get.
	 */
	bool blamed = r->error == ISM_ERR_PROTOCOL;
	int max_tries = blamed ? DIO_MAX_BLAMED_TRIES : DIO_MAX_LOST_TRIES;
	if (resend && recoverable && alive && io->tries < max_tries) {
		queue_insert(s, io);
		if (s->state == DS_CONNECTED)
			dio_flush_later(s);
		return;
	}
	if (blamed)
		log_warn("session %s LUN %" PRIu64 ": command 0x%02x failed %d times (the target broke the protocol "
			 "answering it); failing it", s->idstr, io->lun, io->cdb[0], io->tries);
	io->done(io, -EIO, r);
}

static bool session_ready(struct dsession *s)
{
	return s->state == DS_CONNECTED && s->ism && s->probed && !s->refresh && !s->draining && !s->pr_pending && ism_session_logged_in(s->ism);
}

/* Sent now on the session (as it is: the LUN probe sends before the session is ready). */
int dio_send_now(struct dsession *s, struct dio *io)
{
	/* Hold the writes until the end of this loop iteration (lib_settle), so every command the
	 * devices queued in it leaves in one writev instead of one system call each. */
	if (!s->corked && !s->in_lib) {
		ism_session_cork(s->ism);
		s->corked = true;
	}
	struct ism_task *t = ism_scsi_async(s->ism, io->lun, io->cdb, io->cdb_len, io->dir, io->buf, io->len, dio_cb, io);
	if (!t)
		return -1;
	s->inflight++;
	return 0;
}

void dio_prepare(struct dio *io, struct dsession *s, uint64_t lun, enum ism_dir dir, void *buf, uint32_t len,
		 dio_done_fn done, void *priv)
{
	*io = (struct dio){.s = s, .seq = ++s->next_seq, .lun = lun, .dir = dir, .buf = buf, .len = len, .done = done,
			   .priv = priv};
}

void dio_prepare_rw16(struct dio *io, struct dsession *s, uint64_t lun, bool write, uint64_t lba, uint32_t blocks,
		      uint32_t bs, void *buf, dio_done_fn done, void *priv)
{
	dio_prepare(io, s, lun, write ? ISM_DIR_WRITE : ISM_DIR_READ, buf, blocks * bs, done, priv);
	io->whole = true;
	io->cdb_len = ism_cdb_rw16(io->cdb, write, lba, blocks);
}

bool dio_good(int err, const struct ism_scsi_result *r, uint32_t *got)
{
	bool ok = err == 0 && r && r->status == SCSI_GOOD;
	*got = ok ? r->transferred : 0;
	return ok;
}

int dio_send_once(struct dsession *s, struct dio *io)
{
	io->resend = DIO_ONCE;
	if (!s->ism || dio_send_now(s, io) < 0)
		return -1;
	lib_settle_soon(s);
	return 0;
}

void dio_flush_queue(struct dsession *s)
{
	bool sent = false;
	while (s->queue && session_ready(s)) {
		struct dio *io = s->queue;
		s->queue = io->next;
		s->queued_bytes -= io->len;
		io->next = NULL;
		if (dio_send_now(s, io) < 0) {
			queue_insert(s, io);
			break;
		}
		sent = true;
	}
	if (sent)
		lib_settle_soon(s);
}

void dio_submit(struct dsession *s, struct dio *io)
{
	io->s = s;
	io->next = NULL;
	if (!io->seq)
		io->seq = ++s->next_seq;
	switch (s->state) {
	case DS_CONNECTED:
		if (session_ready(s) && !s->queue) {
			if (dio_send_now(s, io) == 0) {
				lib_settle_soon(s);
				return;
			}
			/* the library refused it: it waits in the queue like the others */
		}
		/* fall through */
	case DS_LOGGING_IN:
	case DS_RECONNECTING:
		if (s->queued_bytes + io->len > s->d->cfg.queue_limit_bytes) {
			log_warn("session %s: %" PRIu64 " bytes of I/O already wait for the session (queue-limit); "
				 "failing new I/O of %u bytes", s->idstr, s->queued_bytes, io->len);
			io->done(io, -ENOBUFS, NULL);
			return;
		}
		queue_insert(s, io);
		if (s->state == DS_CONNECTED)
			dio_flush_queue(s);
		return;
	case DS_FAILED:
	case DS_LOGGING_OUT:
	case DS_GONE:
		break;
	}
	io->done(io, -EIO, NULL);
}
