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

/*
 * The blocking query (run off the event loop): the targets visible to source at server
 * ("ADDR[:PORT]"). 0, or -1 with err.
 */
int disc_isns_query(const char *server, const char *source, struct isns_node_list *out, char *err, size_t errlen);

/* JSON-RPC discovery.isns: server. Answers when the query is done (an operation, like discovery.run). */
json_t *dmn_discover_isns(void *ctx, json_t *params, struct rpc_error *err);

#endif
