/*
 * Asymmetric logical unit access (SPC-4 5.16): what the daemon reads to learn which target port
 * group a portal leads to and which group is active/optimized. Pure parsers, no I/O.
 */
#ifndef ISTHMUS_DAEMON_ALUA_H
#define ISTHMUS_DAEMON_ALUA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scsi/scsi.h" /* enum scsi_alua_state: the asymmetric access states (SPC-4 6.37) */

#define ALUA_UNKNOWN (-1)

#define ALUA_MAX_GROUPS 16
#define RTPG_ALLOC 1024

struct alua_group {
	uint16_t tpg;
	int state; /* enum scsi_alua_state, or ALUA_UNKNOWN */
	bool preferred;
};

/* The TPGS field of a standard INQUIRY answer (0: no ALUA; -1: too short). */
int alua_tpgs(const uint8_t *inq, uint32_t len);
/* The target port group and relative target port designators of a Device Identification VPD page
 * (0x83) for the port the command came through; false when it names no target port group. */
bool alua_port_from_vpd83(const uint8_t *page, uint32_t len, int *tpg, int *rel_port);
/* The groups of a REPORT TARGET PORT GROUPS answer (length-only format); how many, or -1. */
int alua_parse_rtpg(const uint8_t *data, uint32_t len, struct alua_group *out, int max);
/* The MAINTENANCE IN / REPORT TARGET PORT GROUPS CDB; its length. */
size_t alua_cdb_rtpg(uint8_t *cdb, uint32_t alloc);
const char *alua_state_str(int state);

#endif
