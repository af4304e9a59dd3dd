/*
 * The small commands a disk must answer: TEST UNIT READY, REQUEST SENSE, REPORT LUNS,
 * START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL and READ DEFECT DATA.
 */
#include <string.h>

#include "scsi/scsi_int.h"
#include "util/lun.h"

void scsi_test_unit_ready(struct scsi_req *r) { (void)r; }

/* REQUEST SENSE (SPC-4 6.39): reports, and thereby clears, one pending unit attention. */
void scsi_request_sense(struct scsi_req *r)
{
	bool desc = r->cdb[1] & 0x01;
	uint8_t b[64];
	uint8_t key = SK_NO_SENSE, asc = 0, ascq = 0;
	size_t n;

	if (!r->lu) {
		key = SK_ILLEGAL_REQUEST;
		asc = 0x25;
	} else {
		uint32_t bit = ua_take(r->ln);
		if (bit) {
			key = SK_UNIT_ATTENTION;
			ua_to_sense(bit, &asc, &ascq);
		}
	}
	n = scsi_sense_build(b, sizeof(b), desc, key, asc, ascq, NULL, NULL);
	req_data_in(r, b, (uint32_t)n, r->cdb[4]);
}

void scsi_report_luns(struct scsi_req *r)
{
	struct scsi_target *t = r->t;
	uint32_t alloc = get_be32(r->cdb + 6);
	uint8_t lun[8] = { 0 };
	struct din d;

	if (r->cdb[2] > 0x02) {
		req_bad_cdb(r, 2, -1);
		return;
	}
	if (alloc < 16) {
		req_bad_cdb(r, 6, -1);
		return;
	}
	din_start(&d, r, alloc);
	din_put(&d, lun, 8);
	/* SELECT REPORT 1 asks for well-known LUs only, and we have none. */
	if (r->cdb[2] != 0x01) {
		for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
			if (t->lu[i]) {
				lun_encode(i, lun);
				din_put(&d, lun, 8);
			}
		}
	}
	din_put_be32_at(&d, 0, (uint32_t)(d.len - 8));
	/* Having seen the new inventory, this nexus no longer needs telling that it changed. */
	for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
		if (t->lu[i])
			atomic_fetch_and(&lu_nexus_get(r->ctx, t->lu[i], r->cmd->nexus)->ua, ~(uint32_t)UA_LUNS_CHANGED);
	}
	din_finish(r, &d, alloc);
}

/*
 * START STOP UNIT: our medium is not removable, so LOEJ is refused; power conditions and
 * START/STOP are accepted without effect, as a virtual disk has nothing to spin.
 */
void scsi_start_stop_unit(struct scsi_req *r)
{
	if ((r->cdb[4] >> 4) == 0 && (r->cdb[4] & 0x02)) {
		req_bad_cdb(r, 4, 1);
		return;
	}
}

void scsi_prevent_allow(struct scsi_req *r)
{
	uint8_t prevent = r->cdb[4] & 0x03;

	if (prevent > 1) {
		req_bad_cdb(r, 4, 1);
		return;
	}
	r->ln->prevent = prevent;
}

/* We know of no defects: an empty list in whatever format was asked for. */
void scsi_read_defect_data10(struct scsi_req *r)
{
	uint8_t b[4] = { 0, (uint8_t)(r->cdb[2] & 0x1f), 0, 0 };

	req_data_in(r, b, sizeof(b), get_be16(r->cdb + 7));
}

void scsi_read_defect_data12(struct scsi_req *r)
{
	uint8_t b[8] = { 0, (uint8_t)(r->cdb[1] & 0x1f), 0, 0, 0, 0, 0, 0 };

	req_data_in(r, b, sizeof(b), get_be32(r->cdb + 6));
}
