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

/* One LU's active/optimized target port group as REPORT TARGET PORT GROUPS through it named it
 * (-1: none, or not known). */
struct alua_lun_opt {
	uint64_t lun;
	int tpg;
};

/* Why alua_choose_portal chose its portal. */
enum alua_choice_why {
	ALUA_CHOICE_NONE,        /* no LU's optimized group is a portal's known group: no choice */
	ALUA_CHOICE_MOST,        /* active/optimized for more LUs than any other portal */
	ALUA_CHOICE_TIE_CURRENT, /* tied with others for the most, and the current portal */
	ALUA_CHOICE_TIE_LOWEST,  /* tied, and optimized for the lowest-numbered LU of the tied ones */
};

struct alua_choice {
	int portal; /* index, or -1 (ALUA_CHOICE_NONE) */
	enum alua_choice_why why;
	unsigned count; /* LUs the chosen portal is active/optimized for */
};

/*
 * The portal to prefer for a session whose LUs may each have another optimized group: the one
 * in the active/optimized group of the most LUs; ties go to the current portal, then to the
 * portal optimized for the lowest-numbered LU (of several portals in that group, the first).
 * portal_tpg[i]: portal i's target port group (-1: not known); current: the portal logged in
 * through (-1: none); exclude: a portal not to choose (-1: none). counts[i] (nportals of them):
 * set to how many LUs portal i is active/optimized for.
 */
struct alua_choice alua_choose_portal(const int *portal_tpg, int nportals, int current, int exclude,
				      const struct alua_lun_opt *luns, size_t nluns, unsigned *counts);
const char *alua_choice_why_str(enum alua_choice_why why);

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
