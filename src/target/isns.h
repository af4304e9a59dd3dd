/*
 * The target's iSNS client (docs/isns.md): registers the network entity, its portals, its
 * target nodes and their portal groups with the server named by the configuration's isns key,
 * keeps the registration alive within the server's registration period, registers again after
 * every applied configuration, and deregisters at shutdown. It runs on the server's event loop
 * and never waits on the network there: a server that is down is retried with backoff.
 */
#ifndef ISTHMUS_TARGET_ISNS_H
#define ISTHMUS_TARGET_ISNS_H

#include <stdint.h>

struct server;

/* Time bounds of the client (documented in docs/isns.md). */
#define ISNS_IO_TIMEOUT_MS 5000u      /* connect, or a response, within this or the attempt fails */
#define ISNS_RETRY_MIN_MS 1000u       /* first retry after a failure; doubles each time ... */
#define ISNS_RETRY_MAX_MS 60000u      /* ... up to this */
#define ISNS_REFRESH_MIN_S 5u         /* never refresh more often than this */
#define ISNS_DEREG_WAIT_MS 1000u      /* what shutdown waits for the deregistration to be answered */
/* isns-access: each target's list of initiators sharing a discovery domain with it. */
#define ISNS_ACCESS_REFRESH_MS 5000u  /* asked for again this often */
#define ISNS_ACCESS_TTL_MS 15000u     /* an answer older than this decides nothing: logins get 0x0301 */
#define ISNS_ACCESS_RECHECK_MS 1000u  /* a refused login asks again once the answer is this old */
#define ISNS_ACCESS_MAX_INITIATORS 4096u /* initiators kept from one answer */

/*
 * isns-access (docs/isns.md): may initiator log in to target? LOGIN_OK (also when isns-access is
 * off), LOGIN_AUTHZ_FAILED when the server's last answer does not pair them, or
 * LOGIN_SERVICE_UNAVAILABLE when there is no answer young enough; why is set when not LOGIN_OK.
 * Never waits: answers come from a copy the client refreshes in the background.
 */
uint16_t isns_target_access(struct server *srv, const char *target, const char *initiator, const char **why);

/* After every applied configuration: (re)register what now exists, or deregister when isns is gone. */
void isns_target_changed(struct server *srv);
/* SIGTERM: start deregistering now, on the loop. */
void isns_target_stop(struct server *srv);
/* After the loop has stopped: finish the deregistration (bounded wait) and release everything. */
void isns_target_free(struct server *srv);

#endif
