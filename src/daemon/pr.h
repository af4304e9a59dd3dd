/*
 * The session's persistent reservation key (login option pr_key): registered through every new
 * I_T nexus (each login, whichever gateway) before the queued I/O is released, so that a
 * reservation held with that key keeps admitting the session's writes after a failover. With a
 * reservation type (login option pr_type) the session also takes the reservation, and moves a
 * one-holder reservation (WRITE EXCLUSIVE, EXCLUSIVE ACCESS) to the new nexus (pr.c).
 */
#ifndef ISTHMUS_DAEMON_PR_H
#define ISTHMUS_DAEMON_PR_H

#include <stdbool.h>

struct dsession;

/* Where the session's reservation stands (session show: pr_reservation). */
enum ds_pr_res {
	DS_PR_RES_NONE = 0, /* no reservation type asked for */
	DS_PR_RES_PENDING,  /* being taken through the current nexus, or waiting for one */
	DS_PR_RES_HELD,     /* held on every direct-access LUN, giving this nexus access */
	DS_PR_RES_CONFLICT, /* another reservation is held on some LUN (pr_error says which) */
	DS_PR_RES_FAILED,   /* a command failed on some LUN (pr_error says which) */
};

/* Starts the registration on every direct-access LUN and holds new I/O until it ends (then the
 * queue is flushed); false when the session has no key (nothing held, the caller flushes). */
bool pr_register(struct dsession *s);
/* The libisthmus session went away, or the session ends: a registration under way is abandoned
 * (one waiting to try a command again stops its timer). */
void pr_abandon(struct dsession *s);
/* "pending", "held", ...; NULL for DS_PR_RES_NONE. */
const char *ds_pr_res_name(enum ds_pr_res r);

#endif
