/*
 * RPC operations that finish later (login, logout, SCSI commands, discovery). The method that
 * starts one answers with dop_answer: the result at once when the operation already finished,
 * else a deferred reply (mgmt/rpc.h, rpc_defer) that dop_done/dop_fail send when it finishes.
 * Only when no deferred reply is possible (a request through rpc_server_handle) does the method
 * answer {"pending": ID} and the client ask "op.result" until the operation is done; results
 * not collected are dropped after a while.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/daemon.h"
#include "daemon/ops.h"
#include "util/sbuf.h"

#define DOP_KEEP_MS (5u * 60u * 1000u)

struct dop {
	struct dop *next;
	uint64_t id;
	bool done;
	json_t *result;
	int code;
	char message[sizeof(((struct rpc_error *)0)->message)]; /* answered as an rpc_error */
	uint64_t done_ms;
	struct rpc_pending *reply; /* the caller waits on its connection: answered when done */
};

static void dop_expire(struct daemon *d)
{
	uint64_t now = loop_now_ms();
	for (struct dop **pp = &d->ops; *pp;) {
		struct dop *o = *pp;
		if (o->done && now - o->done_ms > DOP_KEEP_MS) {
			*pp = o->next;
			json_decref(o->result);
			free(o);
		} else {
			pp = &o->next;
		}
	}
}

uint64_t dop_new(struct daemon *d)
{
	dop_expire(d);
	struct dop *o = xcalloc(1, sizeof(*o));
	o->id = ++d->next_op;
	o->next = d->ops;
	d->ops = o;
	return o->id;
}

static struct dop *dop_find(struct daemon *d, uint64_t id)
{
	for (struct dop *o = d->ops; o; o = o->next)
		if (o->id == id)
			return o;
	return NULL;
}

static void dop_unlink(struct daemon *d, struct dop *o)
{
	for (struct dop **pp = &d->ops; *pp; pp = &(*pp)->next) {
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	}
	json_decref(o->result);
	free(o);
}

void dop_done(struct daemon *d, uint64_t id, json_t *result)
{
	struct dop *o = id ? dop_find(d, id) : NULL;
	if (!o || o->done) {
		json_decref(result);
		return;
	}
	if (o->reply) {
		rpc_complete(o->reply, result ? result : json_null(), NULL);
		dop_unlink(d, o);
		return;
	}
	o->done = true;
	o->result = result ? result : json_null();
	o->done_ms = loop_now_ms();
}

void dop_fail(struct daemon *d, uint64_t id, int code, const char *fmt, ...)
{
	struct dop *o = id ? dop_find(d, id) : NULL;
	if (!o || o->done)
		return;
	o->done = true;
	o->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->message, sizeof(o->message), fmt, ap);
	va_end(ap);
	o->done_ms = loop_now_ms();
	if (o->reply) {
		struct rpc_error e = {.code = code};
		snprintf(e.message, sizeof(e.message), "%s", o->message);
		rpc_complete(o->reply, NULL, &e);
		dop_unlink(d, o);
	}
}

json_t *dop_pending(uint64_t id) { return json_pack("{s:I}", "pending", (json_int_t)id); }

json_t *dop_take(struct daemon *d, uint64_t id, struct rpc_error *err)
{
	struct dop *o = dop_find(d, id);
	if (!o)
		return rpc_fail(err, RPC_NOT_FOUND, "no operation %llu (finished long ago or never started)",
				(unsigned long long)id);
	if (!o->done)
		return dop_pending(id);
	if (o->reply)
		return dop_pending(id); /* answered on the caller's connection when done */
	json_t *r = NULL;
	if (o->code)
		rpc_fail(err, o->code, "%s", o->message);
	else
		r = json_incref(o->result);
	dop_unlink(d, o);
	return r;
}

json_t *dop_answer(struct daemon *d, uint64_t id, struct rpc_error *err)
{
	struct dop *o = dop_find(d, id);
	if (o && !o->done && !o->reply) {
		o->reply = d->rpc ? rpc_defer(d->rpc) : NULL;
		if (o->reply)
			return RPC_DEFERRED;
	}
	return dop_take(d, id, err);
}

void dop_free_all(struct daemon *d)
{
	while (d->ops) {
		struct dop *o = d->ops;
		d->ops = o->next;
		if (o->reply) {
			struct rpc_error e = {.code = RPC_FAILED};
			snprintf(e.message, sizeof(e.message), "the daemon stopped before the operation finished");
			rpc_complete(o->reply, NULL, &e);
		}
		json_decref(o->result);
		free(o);
	}
}
