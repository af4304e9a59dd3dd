/*
 * JSON-RPC 2.0 over a Unix stream socket, one JSON text per line in each direction. One server
 * serves both daemons; the client is what the CLI uses.
 */
#ifndef ISTHMUS_MGMT_RPC_H
#define ISTHMUS_MGMT_RPC_H

#include <jansson.h>
#include <stdbool.h>
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

/* Room for an error that names a path, an image spec and the line that fixes it. */
struct rpc_error {
	int code;
	char message[1024];
};

/*
 * A method returns a new reference to its result, or NULL with err filled, or RPC_DEFERRED after
 * rpc_defer() when the answer comes later (see below).
 */
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
 * Returns NULL with *errmsg (malloc'd) on failure. path NULL listens nowhere: clients come only
 * through rpc_server_add_client (tests, fuzzing).
 */
struct rpc_server *rpc_server_new(struct loop *loop, const char *path, const struct rpc_method *methods,
				  size_t nmethods, void *ctx, char **errmsg);
void rpc_server_free(struct rpc_server *s);

/*
 * What one server lets its clients hold. A management socket is reachable only by its owner,
 * but a stuck or careless script must not take the daemon's memory or its last client slot.
 */
struct rpc_limits {
	unsigned max_clients;        /* clients at once; one more is told so in an error line and closed [64] */
	unsigned max_pending;        /* deferred answers one client may wait for; beyond, rpc_defer returns
					NULL and the method answers at once [32] */
	size_t max_request;          /* bytes of one request line; a longer one is answered with an error and
					the client closed [1 MiB] */
	size_t max_unsent;           /* answers queued that the client has not read; beyond, nothing more is read
					from it until it reads [4 MiB] */
	unsigned request_timeout_ms; /* from a request's first byte to its newline; then an error and close [30 s] */
	unsigned send_timeout_ms;    /* answers queued and none of them read; then close [30 s] */
	unsigned idle_timeout_ms;    /* nothing in progress, pending or queued; then close [60 s] */
};
void rpc_limits_default(struct rpc_limits *l);
/* Takes effect for what happens next (clients over a lowered max_clients are not closed). */
void rpc_server_set_limits(struct rpc_server *s, const struct rpc_limits *l);
void rpc_server_get_limits(const struct rpc_server *s, struct rpc_limits *l);

/*
 * Serve a connected stream socket as one more client; fd is owned from now on and made
 * non-blocking. Accepted connections come through here; tests and fuzzers hand in one end of a
 * socketpair. Returns false (fd closed) when the server is at max_clients.
 */
bool rpc_server_add_client(struct rpc_server *s, int fd);
/*
 * For a server without an event loop (tests, fuzzing): serve every client once, as the loop does
 * when its socket is ready: send what is queued, read what came, answer it. Returns the number
 * of clients still connected.
 */
size_t rpc_server_poll(struct rpc_server *s);

/*
 * Answer one request text (exposed for tests and fuzzing): returns the response line, or NULL
 * for a notification (no id). The caller frees it. Methods called this way cannot defer
 * (rpc_defer returns NULL: there is no connection to answer on later).
 */
char *rpc_server_handle(struct rpc_server *s, const char *request, size_t len);

/*
 * Deferred replies. A method that finishes later (network operations) calls rpc_defer(server)
 * and returns RPC_DEFERRED; the server then answers nothing for now and goes on serving (other
 * requests, also on the same connection, are answered meanwhile, so replies may come out of
 * order: JSON-RPC matches them by id). Later, on the loop's thread, rpc_complete(pending, ...)
 * sends the response with the request's id and frees the handle.
 *
 * - rpc_defer returns NULL outside a method call, when called twice for one request, for a
 *   request that came through rpc_server_handle, or when the client already waits for
 *   max_pending deferred answers: the method must then answer at once.
 * - A method that called rpc_defer and then returns something other than RPC_DEFERRED has that
 *   answer sent; the handle then answers nothing but must still be completed (or freed with the
 *   server). If the method completed the handle itself before returning, that was the answer
 *   and what it returns is dropped. Returning RPC_DEFERRED without rpc_defer is answered with
 *   an internal error.
 * - If the client disconnects before the answer, the handle stays valid and rpc_complete drops
 *   the answer. A client that only shuts down its sending side (EOF) still gets its pending
 *   answers; the connection is closed after the last one.
 * - rpc_server_free answers every handle still pending with RPC_INTERNAL_ERROR ("the server
 *   stopped"), as far as the client's socket takes it at once, and frees it: complete or forget
 *   every handle before freeing the server.
 * - A deferred notification (no id) is completed like any other; nothing is sent.
 */
struct rpc_pending;
extern json_t *const rpc_deferred_marker;
#define RPC_DEFERRED rpc_deferred_marker
struct rpc_pending *rpc_defer(struct rpc_server *s);
/*
 * Send the answer: err (when not NULL and err->code != 0) as a JSON-RPC error, else result
 * (stolen; NULL is sent as an internal error, like a method returning NULL without err). Frees p.
 * Returns true when the answer was queued on a connected client, false when it was dropped.
 */
bool rpc_complete(struct rpc_pending *p, json_t *result, const struct rpc_error *err);
/* The name of the method p answers (for logs); valid until rpc_complete. */
const char *rpc_pending_method(const struct rpc_pending *p);
/* Deferred replies not completed yet (all clients). */
size_t rpc_server_pending_count(const struct rpc_server *s);

/*
 * Client: call method with params (stolen reference; NULL for none) on the server at path.
 * Returns the result (new reference) or NULL with *errmsg set (malloc'd) and *code the
 * JSON-RPC error code (0 for transport errors). timeout_ms bounds the whole exchange.
 */
json_t *rpc_call(const char *path, const char *method, json_t *params, int timeout_ms, int *code, char **errmsg);

#endif
