/*
 * The session's persistent reservation after a login, on each direct-access LUN in turn:
 *
 *   1. PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY (SPC-4 6.16.2) with the session's
 *      key. Ignoring the existing key makes it work both on a nexus the target has never seen (a
 *      new gateway) and on one it still knows (a reinstatement at the same gateway).
 *   2. With a reservation type (login option pr_type): PERSISTENT RESERVE IN, READ RESERVATION.
 *      - nobody holds one: RESERVE with the session's key and type;
 *      - one of our type is held with our key (or, for the all-registrants types, which report
 *        key 0, by the registrants, which we now are): the registration through this nexus is
 *        all the access a registrants-only or all-registrants type needs. WRITE EXCLUSIVE and
 *        EXCLUSIVE ACCESS have one holder, an I_T nexus (SPC-4 5.13, the persistent reservation
 *        holder), which after a failover is the old one, through a gateway that may be gone:
 *        RESERVE through this nexus is GOOD when it already holds it, and when it answers
 *        RESERVATION CONFLICT the reservation is moved here with PREEMPT, our own key as the
 *        service action reservation key. SPC-4 5.13, preempting persistent reservations: that
 *        releases the old holder's reservation, removes the registrations carrying our key on
 *        every other nexus (only our own older nexuses carry it, which get REGISTRATIONS
 *        PREEMPTED), and creates the reservation, same type and scope, for this nexus. Other
 *        registrants keep their registrations, and as neither type nor scope changes they get
 *        no unit attention;
 *      - any other reservation (another key, another type): left alone, a conflict.
 *
 * Queued I/O is held until every LUN is done. A step that fails or meets a conflict is logged,
 * kept for `session show` (pr_reservation, pr_error), and the I/O released all the same: the
 * target then answers RESERVATION CONFLICT where the reservation excludes the session.
 *
 * A step the target cannot serve yet is sent again, not failed: a gateway answers NOT READY,
 * LOGICAL UNIT IS IN PROCESS OF BECOMING READY (04h/01h) while its group's shared reservation
 * record is not loaded (just started, the cluster out of reach), which is what a failover often
 * meets; so are an asymmetric access state transition (04h/0Ah), BUSY and TASK SET FULL. Such a
 * command goes again every PR_RETRY_MS from a loop timer (the loop runs on meanwhile), for at
 * most PR_RETRY_LIMIT_MS since the first such answer of this login; then the step fails as any
 * other. A unit attention (a new nexus may have several pending, one reported per command) is
 * sent again at once, PR_UA_TRIES times per command, then on the timer too. The queued I/O stays
 * held all along: it must not reach the LUN before the reservation is in place.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/pr.h"
#include "daemon/session.h"
#include "net/loop.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

#define PR_IN 0x5e
#define PR_OUT 0x5f
#define PR_IN_READ_RESERVATION 0x01
#define PR_OUT_RESERVE 0x01
#define PR_OUT_PREEMPT 0x04
#define PR_OUT_REGISTER_AND_IGNORE 0x06
#define PR_PARAM_LEN 24
#define PR_READ_RES_LEN 24 /* header and one reservation descriptor */
/* the reinstated nexus reports its reset, and other pending unit attentions, one per command */
#define PR_UA_TRIES 8
/* a target not ready yet (NOT READY 04h/01h or 04h/0Ah, BUSY, TASK SET FULL): asked again every
 * PR_RETRY_MS, for at most PR_RETRY_LIMIT_MS per login (docs/initiator.md) */
#define PR_RETRY_MS 250
#define PR_RETRY_LIMIT_MS 30000
#define ASC_NOT_READY_CAUSE 0x04
#define ASCQ_BECOMING_READY 0x01
#define ASCQ_ALUA_TRANSITION 0x0a
/* READ RESERVATION again after a refused RESERVE (another initiator raced us): a few rounds */
#define PR_MAX_ROUNDS 3

enum pr_step {
	PR_STEP_REGISTER,
	PR_STEP_READ_RESERVATION,
	PR_STEP_RESERVE,
	PR_STEP_PREEMPT,
};

struct pr_job {
	struct dsession *s;
	struct ism_session *ism;
	uint64_t gen;
	struct dio io;
	size_t idx;
	enum pr_step step;
	int tries, rounds;
	bool reserve_refused; /* this nexus's RESERVE met a conflict: a holder-only type moves here */
	unsigned registered, reserved, conflicts, failed, reg_failed;
	/* the retries of answers that said "not yet": since when (0: none yet), how many, the timer */
	uint64_t wait_since_ms;
	unsigned waits, step_waits;
	bool gave_up;
	struct loop_timer timer;
	uint8_t param[PR_PARAM_LEN];
	uint8_t in[PR_READ_RES_LEN];
};

static void pr_next(struct pr_job *j);

static bool is_target_lun(const struct dlun *l) { return l->have_inquiry && l->device_type == SCSI_PDT_DIRECT_ACCESS; }

static bool holder_is_one_nexus(uint8_t type) { return type == DS_PR_WE || type == DS_PR_EA; }
static bool all_registrants(uint8_t type) { return type == DS_PR_WE_AR || type == DS_PR_EA_AR; }

static const char *step_name(enum pr_step st)
{
	switch (st) {
	case PR_STEP_REGISTER:
		return "registering the key";
	case PR_STEP_READ_RESERVATION:
		return "READ RESERVATION";
	case PR_STEP_RESERVE:
		return "RESERVE";
	case PR_STEP_PREEMPT:
		return "PREEMPT";
	}
	return "?";
}

static void pr_note(struct dsession *s, const char *msg)
{
	snprintf(s->pr_error, sizeof(s->pr_error), "%s", msg);
}

static void pr_end(struct pr_job *j)
{
	struct dsession *s = j->s;
	if (j->gen == s->pr_gen) {
		s->pr_pending = false;
		if (j->waits)
			log_info("session %s: the reservation steps were sent again %u time(s) over %.1f s while the target "
				 "was not ready", s->idstr, j->waits, (loop_now_ms() - j->wait_since_ms) / 1000.0);
		s->pr_registered = j->reg_failed == 0;
		log_info("session %s: reservation key 0x%016" PRIx64 " registered on %u LUN(s)%s", s->idstr,
			 s->opts.pr_key, j->registered, j->reg_failed ? ", failed on some (see above)" : "");
		if (s->opts.pr_type) {
			if (j->failed)
				s->pr_res = DS_PR_RES_FAILED;
			else if (j->conflicts)
				s->pr_res = DS_PR_RES_CONFLICT;
			else
				s->pr_res = DS_PR_RES_HELD;
			if (s->pr_res == DS_PR_RES_HELD) {
				s->pr_error[0] = 0;
				log_info("session %s: %s reservation held with key 0x%016" PRIx64 " on %u LUN(s)", s->idstr,
					 ds_pr_type_name(s->opts.pr_type), s->opts.pr_key, j->reserved);
			} else {
				log_warn("session %s: %s reservation not held on %u LUN(s): %s", s->idstr,
					 ds_pr_type_name(s->opts.pr_type), j->failed + j->conflicts, s->pr_error);
			}
		} else if (!j->failed) {
			s->pr_error[0] = 0;
		}
		dio_flush_later(s);
	}
	free(j);
}

static void pr_lun_done(struct pr_job *j)
{
	j->idx++;
	j->step = PR_STEP_REGISTER;
	j->tries = 0;
	j->rounds = 0;
	j->step_waits = 0;
	j->reserve_refused = false;
	pr_next(j);
}

static void pr_lun_failed(struct pr_job *j, const struct ism_scsi_result *r, uint8_t key, uint8_t asc, uint8_t ascq)
{
	struct dsession *s = j->s;
	char msg[sizeof(s->pr_error)];
	char after[64] = "";
	if (j->gave_up)
		snprintf(after, sizeof(after), ", still not ready after %d s of retries", PR_RETRY_LIMIT_MS / 1000);
	snprintf(msg, sizeof(msg), "LUN %" PRIu64 ": %s failed (status 0x%02x, sense key %u asc 0x%02x ascq 0x%02x)%s",
		 s->luns[j->idx].lun, step_name(j->step), r ? r->status : 0, key, asc, ascq, after);
	j->gave_up = false;
	log_warn("session %s %s", s->idstr, msg);
	pr_note(s, msg);
	j->failed++;
	if (j->step == PR_STEP_REGISTER)
		j->reg_failed++;
	pr_lun_done(j);
}

static void pr_lun_conflict(struct pr_job *j, const char *why)
{
	struct dsession *s = j->s;
	char msg[sizeof(s->pr_error)];
	snprintf(msg, sizeof(msg), "LUN %" PRIu64 ": reservation conflict: %s", s->luns[j->idx].lun, why);
	log_warn("session %s %s", s->idstr, msg);
	pr_note(s, msg);
	j->conflicts++;
	pr_lun_done(j);
}

/* What READ RESERVATION found decides the next step. */
static void pr_after_read_reservation(struct pr_job *j, uint32_t got)
{
	struct dsession *s = j->s;
	uint8_t want = s->opts.pr_type;
	uint32_t len = got >= 8 ? get_be32(j->in + 4) : 0;
	if (len < 16 || got < 8 + 16) {
		j->step = PR_STEP_RESERVE;
		pr_next(j);
		return;
	}
	uint64_t key = get_be64(j->in + 8);
	uint8_t type = j->in[8 + 13] & 0x0f;
	bool ours = type == want && (key == s->opts.pr_key || (all_registrants(want) && key == 0));
	if (!ours) {
		char why[128];
		snprintf(why, sizeof(why), "held by key 0x%016" PRIx64 ", type %s", key,
			 ds_pr_type_name(type) ? ds_pr_type_name(type) : "unknown");
		pr_lun_conflict(j, why);
		return;
	}
	if (!holder_is_one_nexus(want)) {
		j->reserved++;
		pr_lun_done(j);
		return;
	}
	j->step = j->reserve_refused ? PR_STEP_PREEMPT : PR_STEP_RESERVE;
	pr_next(j);
}

/* The answer says the command may succeed later (see the top of this file). */
static bool answer_says_later(int err, const struct ism_scsi_result *r, bool sense, uint8_t key, uint8_t asc,
			      uint8_t ascq)
{
	if (err != 0 || !r)
		return false;
	if (r->status == SCSI_BUSY || r->status == SCSI_TASK_SET_FULL)
		return true;
	if (!sense)
		return false;
	if (key == SK_NOT_READY && asc == ASC_NOT_READY_CAUSE &&
	    (ascq == ASCQ_BECOMING_READY || ascq == ASCQ_ALUA_TRANSITION))
		return true;
	return key == SK_UNIT_ATTENTION; /* past PR_UA_TRIES at once */
}

static void on_pr_retry(void *arg)
{
	struct pr_job *j = arg;
	struct dsession *s = j->s;
	if (s->pr_wait == j)
		s->pr_wait = NULL;
	if (j->gen != s->pr_gen || s->ism != j->ism || s->state != DS_CONNECTED) {
		free(j);
		return;
	}
	j->tries = 0;
	pr_next(j);
}

/* The same command again after PR_RETRY_MS; false once the job has waited PR_RETRY_LIMIT_MS. */
static bool pr_try_later(struct pr_job *j, const struct ism_scsi_result *r, uint8_t key, uint8_t asc, uint8_t ascq)
{
	struct dsession *s = j->s;
	uint64_t now = loop_now_ms();
	if (!j->wait_since_ms)
		j->wait_since_ms = now;
	if (now - j->wait_since_ms >= PR_RETRY_LIMIT_MS) {
		j->gave_up = true;
		return false;
	}
	if (!j->step_waits++)
		log_info("session %s LUN %" PRIu64 ": %s: not ready yet (status 0x%02x, sense key %u asc 0x%02x ascq "
			 "0x%02x); sending it again every %d ms, the I/O held meanwhile", s->idstr, s->luns[j->idx].lun,
			 step_name(j->step), r->status, key, asc, ascq, PR_RETRY_MS);
	j->waits++;
	s->pr_wait = j;
	loop_timer_start(s->d->loop, &j->timer, PR_RETRY_MS, 0, on_pr_retry, j);
	return true;
}

static void pr_cb(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct pr_job *j = io->priv;
	struct dsession *s = j->s;
	if (j->gen != s->pr_gen || s->ism != j->ism || s->state != DS_CONNECTED) {
		free(j); /* the session went away: the next login starts over */
		return;
	}
	uint8_t key = 0, asc = 0, ascq = 0;
	bool sense = err == 0 && r && r->status == SCSI_CHECK_CONDITION &&
		     ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq);
	if (sense && key == SK_UNIT_ATTENTION && ++j->tries < PR_UA_TRIES) {
		pr_next(j);
		return;
	}
	if (answer_says_later(err, r, sense, key, asc, ascq) && pr_try_later(j, r, key, asc, ascq))
		return;
	j->tries = 0;
	uint32_t got;
	bool good = dio_good(err, r, &got);
	bool refused = err == 0 && r && r->status == SCSI_RESERVATION_CONFLICT;
	switch (j->step) {
	case PR_STEP_REGISTER:
		if (!good) {
			pr_lun_failed(j, r, key, asc, ascq);
			return;
		}
		j->registered++;
		if (!s->opts.pr_type) {
			pr_lun_done(j);
			return;
		}
		j->step = PR_STEP_READ_RESERVATION;
		pr_next(j);
		return;
	case PR_STEP_READ_RESERVATION:
		if (!good) {
			pr_lun_failed(j, r, key, asc, ascq);
			return;
		}
		pr_after_read_reservation(j, got);
		return;
	case PR_STEP_RESERVE:
		if (good) {
			j->reserved++;
			pr_lun_done(j);
			return;
		}
		if (refused && ++j->rounds < PR_MAX_ROUNDS) {
			/* held meanwhile, by another initiator or by our own older nexus: look again */
			j->reserve_refused = true;
			j->step = PR_STEP_READ_RESERVATION;
			pr_next(j);
			return;
		}
		if (refused)
			pr_lun_conflict(j, "RESERVE refused");
		else
			pr_lun_failed(j, r, key, asc, ascq);
		return;
	case PR_STEP_PREEMPT:
		if (good) {
			log_info("session %s LUN %" PRIu64 ": %s reservation moved to this nexus (PREEMPT with its own key)",
				 s->idstr, s->luns[j->idx].lun, ds_pr_type_name(s->opts.pr_type));
			j->reserved++;
			pr_lun_done(j);
		} else if (refused) {
			pr_lun_conflict(j, "PREEMPT refused (the reservation changed hands)");
		} else {
			pr_lun_failed(j, r, key, asc, ascq);
		}
		return;
	}
}

static void pr_next(struct pr_job *j)
{
	struct dsession *s = j->s;
	while (j->idx < s->nluns && !is_target_lun(&s->luns[j->idx]))
		j->idx++;
	if (j->idx >= s->nluns) {
		pr_end(j);
		return;
	}
	struct dio *io = &j->io;
	uint64_t lun = s->luns[j->idx].lun;
	memset(j->param, 0, sizeof(j->param));
	if (j->step == PR_STEP_READ_RESERVATION) {
		memset(j->in, 0, sizeof(j->in));
		dio_prepare(io, s, lun, ISM_DIR_READ, j->in, PR_READ_RES_LEN, pr_cb, j);
		io->cdb[0] = PR_IN;
		io->cdb[1] = PR_IN_READ_RESERVATION;
		put_be16(io->cdb + 7, PR_READ_RES_LEN);
	} else {
		dio_prepare(io, s, lun, ISM_DIR_WRITE, j->param, PR_PARAM_LEN, pr_cb, j);
		io->cdb[0] = PR_OUT;
		switch (j->step) {
		case PR_STEP_REGISTER:
			/* reservation key ignored (0), service action reservation key: ours */
			io->cdb[1] = PR_OUT_REGISTER_AND_IGNORE;
			put_be64(j->param + 8, s->opts.pr_key);
			break;
		case PR_STEP_RESERVE:
			io->cdb[1] = PR_OUT_RESERVE;
			io->cdb[2] = s->opts.pr_type; /* scope 0: the logical unit */
			put_be64(j->param, s->opts.pr_key);
			break;
		case PR_STEP_PREEMPT:
			io->cdb[1] = PR_OUT_PREEMPT;
			io->cdb[2] = s->opts.pr_type;
			put_be64(j->param, s->opts.pr_key);
			put_be64(j->param + 8, s->opts.pr_key);
			break;
		case PR_STEP_READ_RESERVATION:
			break;
		}
		put_be32(io->cdb + 5, PR_PARAM_LEN);
	}
	io->cdb_len = 10;
	if (dio_send_once(s, io) < 0) {
		pr_note(s, "the command could not be sent");
		j->failed++;
		if (j->step == PR_STEP_REGISTER)
			j->reg_failed++;
		pr_end(j);
	}
}

bool pr_register(struct dsession *s)
{
	if (!s->opts.pr_key_set || !s->ism || s->state != DS_CONNECTED)
		return false;
	struct pr_job *j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->ism = s->ism;
	j->gen = ++s->pr_gen;
	j->step = PR_STEP_REGISTER;
	s->pr_pending = true;
	s->pr_registered = false;
	if (s->opts.pr_type)
		s->pr_res = DS_PR_RES_PENDING;
	pr_next(j);
	return true;
}

void pr_abandon(struct dsession *s)
{
	if (s->pr_wait) {
		/* waiting for its next try, no command out: nothing else will free it */
		loop_timer_stop(s->d->loop, &s->pr_wait->timer);
		free(s->pr_wait);
		s->pr_wait = NULL;
	}
	s->pr_gen++;
	s->pr_pending = false;
	if (s->opts.pr_type && s->pr_res == DS_PR_RES_HELD)
		s->pr_res = DS_PR_RES_PENDING; /* taken again through the next nexus */
}

const char *ds_pr_res_name(enum ds_pr_res r)
{
	switch (r) {
	case DS_PR_RES_NONE:
		return NULL;
	case DS_PR_RES_PENDING:
		return "pending";
	case DS_PR_RES_HELD:
		return "held";
	case DS_PR_RES_CONFLICT:
		return "conflict";
	case DS_PR_RES_FAILED:
		return "failed";
	}
	return NULL;
}
