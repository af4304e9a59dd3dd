/*
 * The session's persistent reservation key (login option pr_key): registered through every new
 * I_T nexus (each login, whichever gateway) before the queued I/O is released, so that a
 * reservation held with that key keeps admitting the session's writes after a failover.
 */
#ifndef ISTHMUS_DAEMON_PR_H
#define ISTHMUS_DAEMON_PR_H

#include <stdbool.h>

struct dsession;

/* Starts the registration on every direct-access LUN and holds new I/O until it ends (then the
 * queue is flushed); false when the session has no key (nothing held, the caller flushes). */
bool pr_register(struct dsession *s);
/* The libisthmus session went away: a registration under way is abandoned. */
void pr_abandon(struct dsession *s);

#endif
