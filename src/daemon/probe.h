/* The LUN probe after each login: REPORT LUNS, then per LUN INQUIRY (standard, VPD 0x00, 0x80,
 * 0x83) and READ CAPACITY. */
#ifndef ISTHMUS_DAEMON_PROBE_H
#define ISTHMUS_DAEMON_PROBE_H

#include <stdint.h>

struct dsession;

/* Ends by replacing the LUN cache, exposing the devices and answering the login operation; a
 * session lost meanwhile abandons it (the next login probes again). */
void probe_start(struct dsession *s);
/* The target reported CAPACITY DATA HAS CHANGED for lun: its capacity is read again, and a new one
 * reaches its FUSE file, its block device and `session show`. */
void probe_capacity(struct dsession *s, uint64_t lun);
/* A reconnect of a session whose devices are present: write protection, capacity and block size
 * of its exposed LUNs read again (its I/O waits meanwhile), then the reservation key and ALUA as
 * after any login. */
void probe_refresh(struct dsession *s);
/* ALUA after a login (sessions with several portals), and when the access states changed: which
 * target port group this portal leads to and each LU's groups' states, handed to portals_alua
 * (alua_probe.c). */
void probe_alua(struct dsession *s);

#endif
