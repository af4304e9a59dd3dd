/*
 * RESERVE/RELEASE (6) and (10), the SPC-2 reservations: one holder per LU, lost on nexus loss
 * and resets, and mutually exclusive with persistent reservations (SPC-4 5.13.3).
 */
#include "scsi/scsi_int.h"

static bool pr_active(const struct scsi_lu *lu) { return lu->pr.nregs > 0 || lu->pr.held; }

static void reserve(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	uint64_t me = r->cmd->nexus->id;

	if (pr_active(lu) || (lu->rsv_held && lu->rsv_nexus != me)) {
		r->cmd->status = SCSI_RESERVATION_CONFLICT;
		return;
	}
	lu->rsv_held = true;
	lu->rsv_nexus = me;
}

static void release(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;

	if (pr_active(lu)) {
		r->cmd->status = SCSI_RESERVATION_CONFLICT;
		return;
	}
	/* Releasing someone else's reservation is a no-op, not an error (SPC-2 7.17). */
	if (lu->rsv_held && lu->rsv_nexus == r->cmd->nexus->id)
		lu->rsv_held = false;
}

void scsi_reserve6(struct scsi_req *r) { reserve(r); }
void scsi_release6(struct scsi_req *r) { release(r); }
void scsi_reserve10(struct scsi_req *r) { reserve(r); }
void scsi_release10(struct scsi_req *r) { release(r); }
