/*
 * iSNS discovery in the initiator daemon (docs/isns.md): a DevAttrQry to an iSNS server with
 * this initiator's name as Source, so the server answers with the targets that share a
 * discovery domain with it; the targets are remembered as discovered, like SendTargets ones.
 */
#ifndef ISTHMUS_DAEMON_ISNS_H
#define ISTHMUS_DAEMON_ISNS_H

#include <jansson.h>
#include <stddef.h>

#include "mgmt/rpc.h"
#include "proto/isns.h"

/* Bounds of one query (docs/isns.md). */
#define DISC_ISNS_TIMEOUT_MS 10000u        /* connect, send and the whole answer */
#define DISC_ISNS_MAX_MESSAGE (1u << 20)   /* reassembled response */
#define DISC_ISNS_MAX_NODES 1024u          /* targets kept from one answer */
#define DISC_ISNS_MAX_PORTALS 64u          /* portals kept per target */

struct daemon;
struct sbuf;

/*
 * One request and its response on a connection of its own, all within timeout_ms (blocking: run
 * off the event loop). The response's payload (status first) lands in resp, at most max_message
 * bytes. 0 with *status, or -1 with err.
 */
int disc_isns_call(const char *addr, uint16_t port, uint16_t func, const struct sbuf *payload, uint16_t xid,
		   size_t max_message, uint32_t timeout_ms, struct sbuf *resp, uint32_t *status, char *err, size_t errlen);

/*
 * The blocking query (run off the event loop): the targets visible to source at server
 * ("ADDR[:PORT]"). 0, or -1 with err.
 */
int disc_isns_query(const char *server, const char *source, struct isns_node_list *out, char *err, size_t errlen);

/* On the loop: the targets of a query answer recorded as discovered; returns how many there were. */
size_t disc_isns_remember(struct daemon *d, const struct isns_node_list *l);

/* ---- The daemon's own registration and state change notifications (isns_node.c) ---- */

#define DMN_ISNS_IO_TIMEOUT_MS 5000u        /* one request: connect, send, the whole answer */
#define DMN_ISNS_DEREG_TIMEOUT_MS 2000u     /* the deregistration at a clean stop */
#define DMN_ISNS_MAX_RESPONSE (64u << 10)   /* a response to a registration */
#define DMN_ISNS_RETRY_MIN_MS 1000u         /* first retry after a failure; doubles each time ... */
#define DMN_ISNS_RETRY_MAX_MS 60000u        /* ... up to this */
#define DMN_ISNS_REFRESH_MIN_S 5u           /* never re-register more often than this */
#define DMN_ISNS_SCN_MAX_CONNS 4u           /* SCN connections open at once; the oldest makes room */
#define DMN_ISNS_SCN_MAX_MESSAGE (64u << 10) /* one reassembled SCN */
#define DMN_ISNS_SCN_IDLE_MS 600000u        /* an SCN connection silent this long is closed */
#define DMN_ISNS_QUERY_MIN_MS 1000u         /* SCNs closer together than this share one query */

/*
 * Registers this initiator with server ("ADDR[:PORT]"), keeps the registration, listens for
 * SCNs and logs in persistent logins to targets that appear (a thread of its own). 0, or -1
 * with err.
 */
int dmn_isns_start(struct daemon *d, const char *server, char *err, size_t errlen);
/* A clean stop begins: deregister now, in the background. */
void dmn_isns_stop(struct daemon *d);
/* After the loop: wait for the thread (bounded by the timeouts above) and release everything. */
void dmn_isns_free(struct daemon *d);

/* JSON-RPC discovery.isns: server. Answers when the query is done (an operation, like discovery.run). */
json_t *dmn_discover_isns(void *ctx, json_t *params, struct rpc_error *err);

#endif
