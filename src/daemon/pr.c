/*
 * PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY (SPC-4 6.16.2) with the session's key,
 * on each direct-access LUN in turn after a login. Ignoring the existing key makes it work both on
 * a nexus the target has never seen (a new gateway) and on one it still knows (a reinstatement at
 * the same gateway). A registration that fails is logged and the I/O released all the same: the
 * target then answers RESERVATION CONFLICT where the reservation excludes the session.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/pr.h"
#include "daemon/session.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

#define PR_OUT 0x5f
#define PR_REGISTER_AND_IGNORE 0x06
#define PR_PARAM_LEN 24
/* the reinstated nexus reports its reset once (UNIT ATTENTION): a few tries per LUN */
#define PR_MAX_TRIES 4

struct pr_job {
	struct dsession *s;
	struct ism_session *ism;
	uint64_t gen;
	struct dio io;
	size_t idx;
	int tries;
	unsigned registered, failed;
	uint8_t param[PR_PARAM_LEN];
};

static void pr_next(struct pr_job *j);

static bool is_target_lun(const struct dlun *l) { return l->have_inquiry && l->device_type == SCSI_PDT_DIRECT_ACCESS; }

static void pr_end(struct pr_job *j)
{
	struct dsession *s = j->s;
	if (j->gen == s->pr_gen) {
		s->pr_pending = false;
		s->pr_registered = j->failed == 0;
		log_info("session %s: reservation key 0x%016" PRIx64 " registered on %u LUN(s)%s", s->idstr,
			 s->opts.pr_key, j->registered, j->failed ? ", failed on some (see above)" : "");
		dio_flush_later(s);
	}
	free(j);
}

static void pr_cb(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct pr_job *j = io->priv;
	struct dsession *s = j->s;
	if (j->gen != s->pr_gen || s->ism != j->ism || s->state != DS_CONNECTED) {
		free(j); /* the session went away: the next login registers again */
		return;
	}
	uint8_t key = 0, asc = 0, ascq = 0;
	bool sense = err == 0 && r && r->status == SCSI_CHECK_CONDITION &&
		     ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq);
	if (sense && key == SK_UNIT_ATTENTION && ++j->tries < PR_MAX_TRIES) {
		pr_next(j);
		return;
	}
	const struct dlun *l = &s->luns[j->idx];
	uint32_t got;
	if (dio_good(err, r, &got)) {
		j->registered++;
	} else {
		j->failed++;
		log_warn("session %s LUN %" PRIu64 ": registering the reservation key failed (status 0x%02x, sense key %u "
			 "asc 0x%02x ascq 0x%02x)", s->idstr, l->lun, r ? r->status : 0, key, asc, ascq);
	}
	j->idx++;
	j->tries = 0;
	pr_next(j);
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
	dio_prepare(io, s, s->luns[j->idx].lun, ISM_DIR_WRITE, j->param, PR_PARAM_LEN, pr_cb, j);
	io->cdb[0] = PR_OUT;
	io->cdb[1] = PR_REGISTER_AND_IGNORE;
	put_be32(io->cdb + 5, PR_PARAM_LEN);
	io->cdb_len = 10;
	if (dio_send_once(s, io) < 0) {
		j->failed++;
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
	/* parameter list: reservation key ignored (0), service action reservation key: ours */
	put_be64(j->param + 8, s->opts.pr_key);
	s->pr_pending = true;
	s->pr_registered = false;
	pr_next(j);
	return true;
}

void pr_abandon(struct dsession *s)
{
	s->pr_gen++;
	s->pr_pending = false;
}
