/*
 * SCSI values an initiator reads in answers (SPC-4) beyond the status and sense key
 * (enum scsi_status, enum scsi_sense_key in scsi/scsi.h): INQUIRY's peripheral byte and the
 * additional sense codes acted on.
 */
#ifndef ISTHMUS_SCSI_CODES_H
#define ISTHMUS_SCSI_CODES_H

/* Peripheral device type (INQUIRY byte 0, bits 4-0). */
enum scsi_peripheral_type {
	SCSI_PDT_DIRECT_ACCESS = 0x00,
	SCSI_PDT_UNKNOWN = 0x1f, /* unknown or no device type */
};
#define SCSI_PDT_MASK 0x1f
/* Peripheral qualifier (INQUIRY byte 0, bits 7-5): 0 is "a device is connected to this LUN". */
#define SCSI_PQ_SHIFT 5
#define SCSI_PQ_CONNECTED 0

/* Additional sense codes. */
enum scsi_asc {
	SCSI_ASC_LBA_OUT_OF_RANGE = 0x21,
};

#endif
