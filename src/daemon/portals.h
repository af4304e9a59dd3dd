/*
 * Failover: the portals of a session's target (the login options' and those a SendTargets answer
 * listed), which one the next login goes to when the current one fails, and the failback to the
 * preferred portal once it has answered for a quiet period.
 */
#ifndef ISTHMUS_DAEMON_PORTALS_H
#define ISTHMUS_DAEMON_PORTALS_H

#include <jansson.h>
#include <stdbool.h>

struct dsession;

/* The portals of a new session: its login options', then the discovered addresses of its target. */
void portals_init(struct dsession *s);
/* Addresses ("host:port,tpgt") a SendTargets answer gave for the session's target. */
void portals_learn(struct dsession *s, json_t *addresses);
/* The portal the current one fails over to; true while this round has portals left to try at once
 * (false: every portal failed in a row, the next attempt waits a reconnect interval). */
bool portals_fail_over(struct dsession *s);
/* A login succeeded (through the session's login portal): it is the current portal now. */
void portals_connected(struct dsession *s);
/* The session left the connected state or ends: probes and timers stop. */
void portals_stop(struct dsession *s);
uint32_t portals_failback_ms(const struct dsession *s);
struct alua_group;
struct alua_lun_opt;
/* What the ALUA probe learnt through the current portal: its target port group and relative
 * target port (-1: unknown), the groups' states for the first LU (ngroups < 0: not reported), and
 * each LU's active/optimized group (those that answered); tpgs_none: the LUs have no ALUA. The
 * preferred portal is chosen again. */
void portals_alua(struct dsession *s, bool tpgs_none, int tpg, int rel_port, const struct alua_group *groups,
		  int ngroups, const struct alua_lun_opt *opt, size_t nopt);
/* The portal the session prefers: the one active/optimized for the most LUs (ties: the current
 * one, then the one optimized for the lowest LUN), else the first given. */
int portals_preferred(const struct dsession *s);
/* The address of the first portal known to lead to target port group tpg, or NULL. */
const char *portals_of_group(const struct dsession *s, int tpg);
/* Why the preferred portal is preferred (session show: portal_choice). */
json_t *portals_choice_json(const struct dsession *s);
json_t *portals_json(const struct dsession *s);

#endif
