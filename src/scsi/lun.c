/*
 * Which LUN fields address one of our LUs: the two single-level formats that hold every LUN
 * below SCSI_MAX_LUNS (16384). Other formats, even of a small number, name nothing here.
 */
#include "scsi/scsi_int.h"
#include "util/lun.h"

bool scsi_lun_decode(const uint8_t f[8], uint16_t *lun)
{
	uint64_t v;
	switch (lun_decode(f, &v)) {
	case LUN_PERIPHERAL:
	case LUN_FLAT:
		*lun = (uint16_t)v;
		return true;
	default:
		return false;
	}
}
