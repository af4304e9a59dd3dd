/* RPC results that arrive later (see ops.c). */
#ifndef ISTHMUS_DAEMON_OPS_H
#define ISTHMUS_DAEMON_OPS_H

#include <jansson.h>
#include <stdint.h>

#include "mgmt/rpc.h"

struct daemon;

uint64_t dop_new(struct daemon *d);
void dop_done(struct daemon *d, uint64_t id, json_t *result);
void dop_fail(struct daemon *d, uint64_t id, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
json_t *dop_pending(uint64_t id);
json_t *dop_take(struct daemon *d, uint64_t id, struct rpc_error *err);
/* From inside an RPC method: the result when the op is done, else RPC_DEFERRED (answered when it
 * is; {"pending": id} only where the server cannot defer). */
json_t *dop_answer(struct daemon *d, uint64_t id, struct rpc_error *err);
void dop_free_all(struct daemon *d);

#endif
