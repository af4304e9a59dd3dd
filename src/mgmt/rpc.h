/*
 * JSON-RPC 2.0 over a Unix stream socket, one JSON text per line in each direction. One server
 * serves both daemons; the client is what the CLI uses.
 */
#ifndef ISTHMUS_MGMT_RPC_H
#define ISTHMUS_MGMT_RPC_H

#include <jansson.h>
#include <stddef.h>

struct loop;
struct rpc_server;

/* JSON-RPC 2.0 error codes. */
enum rpc_code {
	RPC_PARSE_ERROR = -32700,
	RPC_INVALID_REQUEST = -32600,
	RPC_METHOD_NOT_FOUND = -32601,
	RPC_INVALID_PARAMS = -32602,
	RPC_INTERNAL_ERROR = -32603,
	RPC_NOT_FOUND = -32000,  /* the object named in params does not exist */
	RPC_CONFLICT = -32001,   /* the change conflicts with the current state */
	RPC_FAILED = -32002,     /* the operation was tried and failed */
};

struct rpc_error {
	int code;
	char message[256];
};

/* A method returns a new reference to its result, or NULL with err filled. */
typedef json_t *(*rpc_method_fn)(void *ctx, json_t *params, struct rpc_error *err);

struct rpc_method {
	const char *name;
	rpc_method_fn fn;
	const char *help; /* one line, listed by the built-in "rpc.methods" */
};

/* Set err and return NULL: for use as `return rpc_fail(err, code, fmt, ...)`. */
json_t *rpc_fail(struct rpc_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Listen on path (mode 0600; a stale socket file is replaced, a live one is an error).
 * Returns NULL with *errmsg (malloc'd) on failure.
 */
struct rpc_server *rpc_server_new(struct loop *loop, const char *path, const struct rpc_method *methods,
				  size_t nmethods, void *ctx, char **errmsg);
void rpc_server_free(struct rpc_server *s);

/*
 * Answer one request text (exposed for tests and fuzzing): returns the response line, or NULL
 * for a notification (no id). The caller frees it.
 */
char *rpc_server_handle(struct rpc_server *s, const char *request, size_t len);

/*
 * Client: call method with params (stolen reference; NULL for none) on the server at path.
 * Returns the result (new reference) or NULL with *errmsg set (malloc'd) and *code the
 * JSON-RPC error code (0 for transport errors). timeout_ms bounds the whole exchange.
 */
json_t *rpc_call(const char *path, const char *method, json_t *params, int timeout_ms, int *code, char **errmsg);

#endif
