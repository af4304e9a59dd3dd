/*
 * The ALUA probe after each login of a session with several portals, and after ASYMMETRIC ACCESS
 * STATE CHANGED: on the first LU whose standard INQUIRY reports TPGS != 0, Device Identification
 * (0x83) through this portal names its target port group and relative target port; then REPORT
 * TARGET PORT GROUPS through every such LU, in LUN order, gives the groups' states as that LU
 * sees them (a gateway group on RBD optimizes each LU on the gateway holding its image's lock).
 * A command met by a unit attention (a new nexus has one pending on every LU, one more per
 * change of the access states) is sent again, a few times. An LU that does not answer REPORT
 * TARGET PORT GROUPS (ILLEGAL REQUEST, or any other failure) keeps what it had.
 * portals_alua then chooses the preferred portal from all of it.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/alua.h"
#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/portals.h"
#include "daemon/probe.h"
#include "daemon/session.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/log.h"
#include "util/sbuf.h"

enum alua_step { ALUA_STEP_VPD83, ALUA_STEP_RTPG };

/* sends of one command past unit attentions */
#define ALUA_UA_TRIES 8

struct alua_probe {
	struct dsession *s;
	struct ism_session *ism;
	struct dio io;
	enum alua_step step;
	int tpg, rel_port;
	/* the LUs asked, in order, and how far; the first one's groups for the portals' states */
	uint64_t *luns;
	size_t nluns, idx;
	struct alua_lun_opt *opt;
	size_t nopt;
	struct alua_group first[ALUA_MAX_GROUPS];
	int nfirst;
	bool refused;
	int ua_tries;
	uint8_t buf[RTPG_ALLOC];
};

static void alua_send(struct alua_probe *a);

static void alua_probe_free(struct alua_probe *a)
{
	a->s->alua_probes--;
	free(a->luns);
	free(a->opt);
	free(a);
}

/* The active/optimized group of an answer: -1 when none is. */
static int optimized_group(const struct alua_group *g, int n)
{
	for (int k = 0; k < n; k++)
		if (g[k].state == ALUA_ACTIVE_OPTIMIZED)
			return g[k].tpg;
	return -1;
}

static void alua_rtpg_done(struct alua_probe *a, bool ok, uint32_t got)
{
	struct alua_group g[ALUA_MAX_GROUPS];
	int n = ok ? alua_parse_rtpg(a->buf, got, g, ALUA_MAX_GROUPS) : -1;
	if (n < 0) {
		a->refused = true;
	} else {
		a->opt[a->nopt++] = (struct alua_lun_opt){.lun = a->luns[a->idx], .tpg = optimized_group(g, n)};
		if (a->idx == 0) {
			memcpy(a->first, g, sizeof(g));
			a->nfirst = n;
		}
	}
	a->idx++;
}

static void alua_cb(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct alua_probe *a = io->priv;
	struct dsession *s = a->s;
	uint32_t got;
	bool ok = dio_good(err, r, &got);
	if (s->ism != a->ism || s->state != DS_CONNECTED) {
		alua_probe_free(a);
		return;
	}
	uint8_t key, asc, ascq;
	if (!ok && err == 0 && r && r->status == SCSI_CHECK_CONDITION &&
	    ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq) && key == SK_UNIT_ATTENTION &&
	    ++a->ua_tries < ALUA_UA_TRIES) {
		alua_send(a);
		return;
	}
	a->ua_tries = 0;
	if (a->step == ALUA_STEP_VPD83) {
		if (ok)
			alua_port_from_vpd83(a->buf, got, &a->tpg, &a->rel_port);
		a->step = ALUA_STEP_RTPG;
	} else {
		alua_rtpg_done(a, ok, got);
	}
	if (a->idx < a->nluns) {
		alua_send(a);
		return;
	}
	if (a->refused)
		log_info("session %s: REPORT TARGET PORT GROUPS not answered on %zu of %zu LUN(s); their ALUA states "
			 "stay as they were", s->idstr, a->nluns - a->nopt, a->nluns);
	portals_alua(s, false, a->tpg, a->rel_port, a->first, a->nfirst, a->opt, a->nopt);
	alua_probe_free(a);
}

static void alua_send(struct alua_probe *a)
{
	struct dsession *s = a->s;
	struct dio *io = &a->io;
	uint64_t lun = a->luns[a->idx];
	if (a->step == ALUA_STEP_VPD83) {
		dio_prepare(io, s, lun, ISM_DIR_READ, a->buf, DMN_VPD_LEN, alua_cb, a);
		io->cdb_len = ism_cdb_inquiry(io->cdb, 0x83, DMN_VPD_LEN);
	} else {
		dio_prepare(io, s, lun, ISM_DIR_READ, a->buf, RTPG_ALLOC, alua_cb, a);
		io->cdb_len = alua_cdb_rtpg(io->cdb, RTPG_ALLOC);
	}
	if (dio_send_once(s, io) < 0)
		alua_probe_free(a);
}

static int cmp_lun(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

void probe_alua(struct dsession *s)
{
	if (s->nportals < 2 || !s->ism || s->state != DS_CONNECTED)
		return;
	uint64_t *luns = xcalloc(s->nluns ? s->nluns : 1, sizeof(*luns));
	size_t n = 0;
	bool known = false;
	for (size_t i = 0; i < s->nluns; i++) {
		const struct dlun *l = &s->luns[i];
		if (!l->have_inquiry || l->device_type == SCSI_PDT_UNKNOWN)
			continue;
		known = true;
		if (alua_tpgs(l->inquiry, l->inquiry_len) > 0)
			luns[n++] = l->lun;
	}
	if (!known) {
		free(luns);
		return;
	}
	if (n == 0) {
		free(luns);
		portals_alua(s, true, -1, -1, NULL, -1, NULL, 0);
		return;
	}
	qsort(luns, n, sizeof(*luns), cmp_lun);
	struct alua_probe *a = xcalloc(1, sizeof(*a));
	s->alua_probes++;
	a->s = s;
	a->ism = s->ism;
	a->luns = luns;
	a->nluns = n;
	a->opt = xcalloc(n, sizeof(*a->opt));
	a->tpg = a->rel_port = -1;
	a->nfirst = -1;
	a->step = ALUA_STEP_VPD83;
	alua_send(a);
}
