/*
 * RESERVE/RELEASE (6) and (10), the SPC-2 reservations: one holder per LU, lost on nexus loss
 * and resets, and mutually exclusive with persistent reservations (SPC-4 5.13.3). The holder is
 * known by its nexus here and by the nexus's identity (initiator port and relative target port)
 * to the other gateways of a group, which have no nexus of that id.
 */
#include <stdio.h>
#include <string.h>

#include "scsi/scsi_int.h"

static bool pr_active(const struct scsi_lu *lu) { return lu->pr.nregs > 0 || lu->pr.held; }

bool rsv_holder(const struct scsi_lu *lu, const struct scsi_nexus *nx)
{
	if (!lu->rsv_held)
		return false;
	if (!lu->shared)
		return lu->rsv_nexus == nx->id;
	return lu->rsv_rel == nx->rel_port_id && strcmp(lu->rsv_port, nx->initiator_port) == 0;
}

void rsv_take(struct scsi_lu *lu, const struct scsi_nexus *nx)
{
	lu->rsv_held = true;
	lu->rsv_nexus = nx->id;
	lu->rsv_rel = nx->rel_port_id;
	snprintf(lu->rsv_port, sizeof(lu->rsv_port), "%s", nx->initiator_port);
}

static void reserve(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;

	if (pr_active(lu) || (lu->rsv_held && !rsv_holder(lu, r->cmd->nexus))) {
		r->cmd->status = SCSI_RESERVATION_CONFLICT;
		return;
	}
	rsv_take(lu, r->cmd->nexus);
}

static void release(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;

	if (pr_active(lu)) {
		r->cmd->status = SCSI_RESERVATION_CONFLICT;
		return;
	}
	/* Releasing someone else's reservation is a no-op, not an error (SPC-2 7.17). */
	if (rsv_holder(lu, r->cmd->nexus))
		lu->rsv_held = false;
}

void scsi_reserve6(struct scsi_req *r) { reserve(r); }
void scsi_release6(struct scsi_req *r) { release(r); }
void scsi_reserve10(struct scsi_req *r) { reserve(r); }
void scsi_release10(struct scsi_req *r) { release(r); }
