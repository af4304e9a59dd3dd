/*
 * Implicit asymmetric logical unit access (SPC-4 5.16): one LU served by a group of gateways,
 * each gateway one target port group with one target port. The group ids double as relative
 * target port identifiers and as the iSCSI portal group tags (docs/gateways.md).
 */
#include <string.h>

#include "scsi/scsi_int.h"

int scsi_target_set_gateways(struct scsi_target *t, uint16_t local, const uint16_t *tpgs, size_t n)
{
	if (n > SCSI_MAX_TPGS)
		return -1;
	struct alua_group old[SCSI_MAX_TPGS];
	size_t nold = t->nalua;
	memcpy(old, t->alua, sizeof(old));
	t->nalua = 0;
	t->alua_local = local;
	for (size_t i = 0; i < n; i++) {
		struct alua_group *g = &t->alua[t->nalua++];
		g->id = tpgs[i];
		g->state = tpgs[i] == local ? ALUA_ACTIVE_OPTIMIZED : ALUA_ACTIVE_NON_OPTIMIZED;
		g->implicit = false;
		/* A reload keeps what the group's state decision said meanwhile. */
		for (size_t j = 0; j < nold; j++) {
			if (old[j].id == g->id) {
				g->state = old[j].state;
				g->implicit = old[j].implicit;
			}
		}
	}
	return 0;
}

static struct alua_group *alua_find(struct scsi_target *t, uint16_t tpg)
{
	for (size_t i = 0; i < t->nalua; i++) {
		if (t->alua[i].id == tpg)
			return &t->alua[i];
	}
	return NULL;
}

/*
 * A group's state as one LU sees it: the target's state of the group (its liveness: unavailable
 * stays unavailable), with the active ones split by the LU's own optimized group when it has one.
 */
static uint8_t lu_group_state(const struct scsi_lu *lu, const struct alua_group *g, uint8_t base)
{
	uint16_t opt = lu ? atomic_load(&lu->alua_optimized) : 0;

	if (!opt || (base != ALUA_ACTIVE_OPTIMIZED && base != ALUA_ACTIVE_NON_OPTIMIZED))
		return base;
	return g->id == opt ? ALUA_ACTIVE_OPTIMIZED : ALUA_ACTIVE_NON_OPTIMIZED;
}

int scsi_target_set_tpg_state(struct scsi_target *t, uint16_t tpg, enum scsi_alua_state state)
{
	struct alua_group *g = alua_find(t, tpg);

	if (!g)
		return -1;
	uint8_t old = g->state;
	if (old == (uint8_t)state)
		return 0;
	g->state = (uint8_t)state;
	g->implicit = true;
	/*
	 * SPC-4 5.16.2.4: every I_T nexus learns of an implicit change through a unit attention, on
	 * the LUs that see one: a LU with its own optimized group does not see the target's
	 * optimized group move between two active gateways.
	 */
	for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
		struct scsi_lu *lu = t->lu[i];
		if (lu && lu_group_state(lu, g, old) != lu_group_state(lu, g, (uint8_t)state))
			lu_ua_set_all(lu, UA_ASYM_ACCESS_CHANGED, NEXUS_NONE);
	}
	return 0;
}

int scsi_target_set_lu_optimized(struct scsi_target *t, unsigned lun, uint16_t tpg)
{
	struct scsi_lu *lu = lun < SCSI_MAX_LUNS ? t->lu[lun] : NULL;

	if (!lu || (tpg && !alua_find(t, tpg)))
		return -1;
	uint8_t before[SCSI_MAX_TPGS];
	for (size_t i = 0; i < t->nalua; i++)
		before[i] = lu_group_state(lu, &t->alua[i], t->alua[i].state);
	atomic_store(&lu->alua_optimized, tpg);
	bool changed = false;
	for (size_t i = 0; i < t->nalua; i++) {
		if (lu_group_state(lu, &t->alua[i], t->alua[i].state) != before[i]) {
			t->alua[i].implicit = true;
			changed = true;
		}
	}
	if (changed)
		lu_ua_set_all(lu, UA_ASYM_ACCESS_CHANGED, NEXUS_NONE);
	return 0;
}

int scsi_target_lu_tpg_state(const struct scsi_target *t, unsigned lun, uint16_t tpg)
{
	const struct scsi_lu *lu = lun < SCSI_MAX_LUNS ? t->lu[lun] : NULL;

	for (size_t i = 0; i < t->nalua; i++) {
		if (t->alua[i].id == tpg)
			return lu_group_state(lu, &t->alua[i], t->alua[i].state);
	}
	return -1;
}

int scsi_target_tpg_state(const struct scsi_target *t, uint16_t tpg)
{
	for (size_t i = 0; i < t->nalua; i++) {
		if (t->alua[i].id == tpg)
			return t->alua[i].state;
	}
	return -1;
}

const char *scsi_alua_state_name(int state)
{
	switch (state) {
	case ALUA_ACTIVE_OPTIMIZED: return "active/optimized";
	case ALUA_ACTIVE_NON_OPTIMIZED: return "active/non-optimized";
	case ALUA_STANDBY: return "standby";
	case ALUA_UNAVAILABLE: return "unavailable";
	case ALUA_OFFLINE: return "offline";
	case ALUA_TRANSITIONING: return "transitioning";
	default: return "unknown";
	}
}

bool alua_enabled(const struct scsi_target *t) { return t->nalua > 0; }

/*
 * SPC-4 5.16.2.4.4-6: through a port of a group that is not active, only the commands that let
 * an initiator find another path run; the rest get NOT READY with the state's reason.
 */
bool alua_access_refused(struct scsi_req *r)
{
	struct scsi_target *t = r->t;
	const struct alua_group *g = t->nalua ? alua_find(t, r->cmd->nexus->rel_port_id) : NULL;
	uint8_t state = g ? atomic_load(&g->state) : ALUA_ACTIVE_OPTIMIZED;

	if (state == ALUA_ACTIVE_OPTIMIZED || state == ALUA_ACTIVE_NON_OPTIMIZED)
		return false;
	if (r->op->flags & (OPF_NO_UA | OPF_ALUA))
		return false;
	if (r->op->run == scsi_report_supported_opcodes || r->op->run == scsi_mode_sense6 ||
	    r->op->run == scsi_mode_sense10)
		return false;
	if (state == ALUA_STANDBY && (r->op->run == scsi_pr_in || r->op->run == scsi_pr_out))
		return false;
	switch (state) {
	case ALUA_STANDBY: req_sense(r, SK_NOT_READY, 0x04, 0x0b); break;
	case ALUA_TRANSITIONING: req_sense(r, SK_NOT_READY, 0x04, 0x0a); break;
	default: req_sense(r, SK_NOT_READY, 0x04, 0x0c); break;
	}
	return true;
}

/* REPORT TARGET PORT GROUPS (SPC-4 6.27): every gateway's group, its state for the addressed LU
 * and its one port. */
void scsi_report_target_port_groups(struct scsi_req *r)
{
	struct scsi_target *t = r->t;
	uint8_t format = r->cdb[1] >> 5;
	uint32_t alloc = get_be32(r->cdb + 6);
	uint8_t hdr[8] = { 0 };
	struct din d;

	if (format > 1) {
		req_bad_cdb(r, 1, 7);
		return;
	}
	din_start(&d, r, alloc);
	if (format == 1) {
		hdr[4] = 0x10;   /* extended header; implicit transition time 0: unspecified */
		din_put(&d, hdr, 8);
	} else {
		din_put(&d, hdr, 4);
	}
	for (size_t i = 0; i < t->nalua; i++) {
		const struct alua_group *g = &t->alua[i];
		uint8_t e[12] = { 0 };

		e[0] = lu_group_state(r->lu, g, g->state);
		/* T_SUP, O_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP: the states the group can be put in. */
		e[1] = 0x80 | 0x40 | 0x08 | 0x04 | 0x02 | 0x01;
		put_be16(e + 2, g->id);
		e[5] = g->implicit ? 0x02 : 0x00;   /* altered by implicit asymmetric access behaviour */
		e[7] = 1;
		put_be16(e + 10, g->id);             /* its port: relative target port = group id */
		din_put(&d, e, sizeof(e));
	}
	din_put_be32_at(&d, 0, (uint32_t)(d.len - 4));
	din_finish(r, &d, alloc);
}
