/* SCSI side of the initiator: CDB builders, status and sense text. */
#include <stdio.h>
#include <string.h>

#include "initiator/internal.h"
#include "util/bytes.h"

/* Each builder fills the 16 CDB bytes of a SCSI Command PDU; those past its own length stay zero. */
static void cdb_begin(uint8_t *cdb, uint8_t opcode)
{
	memset(cdb, 0, 16);
	cdb[0] = opcode;
}

size_t ism_cdb_test_unit_ready(uint8_t *cdb)
{
	cdb_begin(cdb, 0x00);
	return 6;
}

size_t ism_cdb_inquiry(uint8_t *cdb, int page, uint16_t alloc)
{
	cdb_begin(cdb, 0x12);
	if (page >= 0) {
		cdb[1] = 0x01; /* EVPD */
		cdb[2] = (uint8_t)page;
	}
	put_be16(cdb + 3, alloc);
	return 6;
}

size_t ism_cdb_read_capacity10(uint8_t *cdb)
{
	cdb_begin(cdb, 0x25);
	return 10;
}

size_t ism_cdb_read_capacity16(uint8_t *cdb, uint32_t alloc)
{
	cdb_begin(cdb, 0x9e);
	cdb[1] = 0x10; /* SERVICE ACTION IN(16): READ CAPACITY(16) */
	put_be32(cdb + 10, alloc);
	return 16;
}

size_t ism_cdb_report_luns(uint8_t *cdb, uint32_t alloc)
{
	cdb_begin(cdb, 0xa0);
	put_be32(cdb + 6, alloc);
	return 12;
}

size_t ism_cdb_rw10(uint8_t *cdb, bool write, uint32_t lba, uint16_t blocks)
{
	cdb_begin(cdb, write ? 0x2a : 0x28);
	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, blocks);
	return 10;
}

size_t ism_cdb_rw16(uint8_t *cdb, bool write, uint64_t lba, uint32_t blocks)
{
	cdb_begin(cdb, write ? 0x8a : 0x88);
	put_be64(cdb + 2, lba);
	put_be32(cdb + 10, blocks);
	return 16;
}

size_t ism_cdb_sync_cache10(uint8_t *cdb)
{
	cdb_begin(cdb, 0x35);
	return 10;
}

size_t ism_cdb_unmap(uint8_t *cdb, uint16_t param_len)
{
	cdb_begin(cdb, 0x42);
	put_be16(cdb + 7, param_len);
	return 10;
}

const char *ism_status_str(uint8_t status)
{
	switch (status) {
	case 0x00: return "GOOD";
	case 0x02: return "CHECK CONDITION";
	case 0x04: return "CONDITION MET";
	case 0x08: return "BUSY";
	case 0x18: return "RESERVATION CONFLICT";
	case 0x28: return "TASK SET FULL";
	case 0x30: return "ACA ACTIVE";
	case 0x40: return "TASK ABORTED";
	default: return "UNKNOWN STATUS";
	}
}

const char *ism_sense_key_str(uint8_t key)
{
	static const char *const names[16] = {
		"NO SENSE",        "RECOVERED ERROR", "NOT READY",      "MEDIUM ERROR",
		"HARDWARE ERROR",  "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
		"BLANK CHECK",     "VENDOR SPECIFIC", "COPY ABORTED",   "ABORTED COMMAND",
		"RESERVED (0x0c)", "VOLUME OVERFLOW", "MISCOMPARE",     "COMPLETED",
	};
	return names[key & 0x0f];
}

static const struct {
	uint8_t asc, ascq;
	const char *text;
} asc_table[] = {
	{0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION"},
	{0x04, 0x00, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE"},
	{0x04, 0x01, "LOGICAL UNIT IS IN PROCESS OF BECOMING READY"},
	{0x04, 0x02, "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED"},
	{0x04, 0x03, "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED"},
	{0x0c, 0x00, "WRITE ERROR"},
	{0x10, 0x01, "LOGICAL BLOCK GUARD CHECK FAILED"},
	{0x11, 0x00, "UNRECOVERED READ ERROR"},
	{0x1a, 0x00, "PARAMETER LIST LENGTH ERROR"},
	{0x1d, 0x00, "MISCOMPARE DURING VERIFY OPERATION"},
	{0x20, 0x00, "INVALID COMMAND OPERATION CODE"},
	{0x21, 0x00, "LBA OUT OF RANGE"},
	{0x24, 0x00, "INVALID FIELD IN CDB"},
	{0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED"},
	{0x26, 0x00, "INVALID FIELD IN PARAMETER LIST"},
	{0x27, 0x00, "WRITE PROTECTED"},
	{0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT"},
	{0x28, 0x00, "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED"},
	{0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED"},
	{0x29, 0x01, "POWER ON OCCURRED"},
	{0x29, 0x02, "SCSI BUS RESET OCCURRED"},
	{0x29, 0x03, "BUS DEVICE RESET FUNCTION OCCURRED"},
	{0x29, 0x07, "I_T NEXUS LOSS OCCURRED"},
	{0x2a, 0x01, "MODE PARAMETERS CHANGED"},
	{0x2a, 0x03, "RESERVATIONS PREEMPTED"},
	{0x2a, 0x04, "RESERVATIONS RELEASED"},
	{0x2a, 0x05, "REGISTRATIONS PREEMPTED"},
	{0x2a, 0x09, "CAPACITY DATA HAS CHANGED"},
	{0x2c, 0x00, "COMMAND SEQUENCE ERROR"},
	{0x3a, 0x00, "MEDIUM NOT PRESENT"},
	{0x3f, 0x0e, "REPORTED LUNS DATA HAS CHANGED"},
	{0x44, 0x00, "INTERNAL TARGET FAILURE"},
	{0x4b, 0x00, "DATA PHASE ERROR"},
	{0x55, 0x03, "INSUFFICIENT RESOURCES"},
	{0x5d, 0x00, "FAILURE PREDICTION THRESHOLD EXCEEDED"},
};

const char *ism_asc_str(uint8_t asc, uint8_t ascq)
{
	for (size_t i = 0; i < sizeof(asc_table) / sizeof(asc_table[0]); i++)
		if (asc_table[i].asc == asc && asc_table[i].ascq == ascq)
			return asc_table[i].text;
	return NULL;
}

bool ism_sense_decode(const uint8_t *sense, size_t len, uint8_t *key, uint8_t *asc, uint8_t *ascq)
{
	if (!sense || len < 1)
		return false;
	uint8_t rc = sense[0] & 0x7f;
	*asc = *ascq = 0;
	if (rc == 0x70 || rc == 0x71) {
		if (len < 3)
			return false;
		*key = sense[2] & 0x0f;
		if (len >= 14) {
			*asc = sense[12];
			*ascq = sense[13];
		}
		return true;
	}
	if (rc == 0x72 || rc == 0x73) {
		if (len < 4)
			return false;
		*key = sense[1] & 0x0f;
		*asc = sense[2];
		*ascq = sense[3];
		return true;
	}
	return false;
}

char *ism_sense_text(const uint8_t *sense, size_t len, char *buf, size_t buflen)
{
	uint8_t key, asc, ascq;
	if (!ism_sense_decode(sense, len, &key, &asc, &ascq)) {
		snprintf(buf, buflen, "no valid sense data (%zu bytes)", len);
		return buf;
	}
	const char *t = ism_asc_str(asc, ascq);
	if (t)
		snprintf(buf, buflen, "%s / %s (0x%02x/0x%02x)", ism_sense_key_str(key), t, asc, ascq);
	else
		snprintf(buf, buflen, "%s / ASC 0x%02x ASCQ 0x%02x", ism_sense_key_str(key), asc, ascq);
	return buf;
}

static const char *error_str(int e)
{
	switch (e) {
	case ISM_OK: return "ok";
	case ISM_ERR_TRANSPORT: return "transport error";
	case ISM_ERR_LOGIN: return "login failed";
	case ISM_ERR_TIMEOUT: return "timed out";
	case ISM_ERR_ABORTED: return "aborted by task management";
	case ISM_ERR_CLOSED: return "session closed";
	case ISM_ERR_INVALID: return "invalid request";
	case ISM_ERR_TARGET: return "target reported a failure";
	case ISM_ERR_PROTOCOL: return "target broke the protocol";
	default: return "unknown error";
	}
}

char *ism_result_text(const struct ism_scsi_result *r, char *buf, size_t buflen)
{
	if (r->error != ISM_OK) {
		snprintf(buf, buflen, "command not completed: %s", error_str(r->error));
		return buf;
	}
	if (r->status == 0x02 && r->sense_len) {
		char st[160];
		snprintf(buf, buflen, "SCSI status %s, sense %s", ism_status_str(r->status),
			 ism_sense_text(r->sense, r->sense_len, st, sizeof(st)));
	} else {
		snprintf(buf, buflen, "SCSI status %s (0x%02x)", ism_status_str(r->status), r->status);
	}
	return buf;
}

void ism_format_scsi_error(struct ism_session *s, const struct ism_scsi_result *r)
{
	char text[300];
	ism_result_text(r, text, sizeof(text));
	ism_set_error(s, "%s", text);
}

const char *ism_device_type_str(uint8_t type)
{
	switch (type & 0x1f) {
	case 0x00: return "DIRECT_ACCESS";
	case 0x01: return "SEQUENTIAL_ACCESS";
	case 0x02: return "PRINTER";
	case 0x03: return "PROCESSOR";
	case 0x04: return "WRITE_ONCE";
	case 0x05: return "MMC";
	case 0x06: return "SCANNER";
	case 0x07: return "OPTICAL_MEMORY";
	case 0x08: return "MEDIUM_CHANGER";
	case 0x09: return "COMMUNICATIONS";
	case 0x0c: return "STORAGE_ARRAY_CONTROLLER";
	case 0x0d: return "ENCLOSURE_SERVICES";
	case 0x0e: return "SIMPLIFIED_DIRECT_ACCESS";
	case 0x0f: return "OPTICAL_CARD_READER";
	case 0x11: return "OBJECT_STORAGE";
	case 0x12: return "AUTOMATION_DRIVE_INTERFACE";
	case 0x1e: return "WELL_KNOWN_LUN";
	case 0x1f: return "UNKNOWN";
	default: return "RESERVED";
	}
}
