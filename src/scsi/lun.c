/* SAM-5 4.7 LUN field formats: the two single-level ones a target with <= 16384 LUs needs. */
#include "scsi/scsi_int.h"

bool scsi_lun_decode(const uint8_t f[8], uint16_t *lun)
{
	/* Only single-level LUNs exist here: any second-level address names nothing of ours. */
	for (int i = 2; i < 8; i++) {
		if (f[i])
			return false;
	}
	switch (f[0] >> 6) {
	case 0: /* peripheral device addressing; a non-zero bus identifier is another bus */
		if (f[0] & 0x3f)
			return false;
		*lun = f[1];
		return true;
	case 1: /* flat space addressing */
		*lun = (uint16_t)((f[0] & 0x3f) << 8 | f[1]);
		return true;
	default:
		return false;
	}
}

void scsi_lun_encode(uint16_t lun, uint8_t f[8])
{
	for (int i = 0; i < 8; i++)
		f[i] = 0;
	if (lun < 256) {
		f[1] = (uint8_t)lun;
	} else {
		f[0] = (uint8_t)(0x40 | ((lun >> 8) & 0x3f));
		f[1] = (uint8_t)lun;
	}
}
