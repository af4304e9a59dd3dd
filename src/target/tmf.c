/*
 * Task management functions (RFC 7143 11.5-11.6); TASK REASSIGN is in erl2.c. A response that
 * aborts commands still able to change the medium (writes with store ios in flight) waits for
 * them to end, so that once the initiator has it nothing aborted writes any more; responses
 * of one connection go out in the order their requests came.
 *
 * With several loops, the functions that reach other sessions' tasks (CLEAR TASK SET, LOGICAL
 * UNIT RESET, TARGET WARM and COLD RESET) abort on every loop: the request's loop posts a part of
 * the request to each other loop, which aborts its own sessions' tasks of the LU (or target) as
 * the request's loop does its own, and reports back once none of them can change the medium any
 * more. The response waits for every part, as for its own loop's tasks.
 */
#include <stdlib.h>
#include <string.h>

#include "target/conn.h"
#include "target/erl2.h"
#include "target/ffp.h"
#include "target/server.h"
#include "target/shard.h"
#include "target/session.h"
#include "target/task.h"
#include "util/log.h"
#include "util/sbuf.h"
#include "util/serial.h"

void tmf_send_response(struct conn *c, uint32_t itt, uint8_t response)
{
	struct bhs r = {0};
	r.opcode = OP_TASK_MGMT_RESP;
	r.final = true;
	r.itt = itt;
	r.tmf_rsp.response = response;
	conn_send_pdu(c, &r, NULL, 0, NULL, NULL);
}

/*
 * Task management responses one connection may have waiting for aborted writes. A request past
 * it is answered at once with FUNCTION REJECTED, so that a peer cannot make us hold memory for
 * ever more requests behind a write that does not finish.
 */
#define TMF_MAX_WAITING 64u

struct tmf_wait {
	struct tmf_wait *next;
	struct conn *c;         /* NULL: the connection went; freed once no task holds it */
	uint64_t origin;        /* serial of the connection the response goes to (a part: the request's) */
	struct shard *shard;    /* c's loop, where it is answered (a part: the loop it aborts on) */
	uint32_t itt;
	uint8_t response;
	bool queued;            /* the response is decided and queued on c */
	bool cold;              /* a TARGET COLD RESET: every connection of the target closes after it */
	char *cold_target;      /* ... of this target */
	unsigned tasks;         /* aborted tasks still able to change the medium, and parts not back */
	/*
	 * A part of a request of another loop (c NULL): its loop's aborted tasks hold it, and it
	 * reports to the request's wait (on the request's loop) once none does.
	 */
	struct tmf_wait *parent;
};

static void tmf_cold_close_all(struct server *srv, const char *target);

/* The response is out (or its connection went): a cold reset now drops the target's connections. */
static void tmf_wait_free(struct server *srv, struct tmf_wait *w)
{
	if (w->cold)
		tmf_cold_close_all(srv, w->cold_target);
	free(w->cold_target);
	free(w);
}

/* Sends the responses at the head of c's queue that wait for nothing any more. */
static void tmf_send_ready(struct conn *c)
{
	while (c->tmf_waits && c->tmf_waits->tasks == 0) {
		struct tmf_wait *w = c->tmf_waits;
		c->tmf_waits = w->next;
		if (!c->tmf_waits)
			c->tmf_waits_tail = NULL;
		tmf_send_response(c, w->itt, w->response);
		if (w->cold)
			conn_flush(c); /* before the connections close */
		tmf_wait_free(c->srv, w);
	}
}

/*
 * One response (or part of one) waiting for one aborted task. A task has one per connection
 * whose responses wait for it: requests of other connections and parts of other loops' requests
 * all wait, as each response promises its own initiator that nothing aborted writes any more.
 * Waits of a task and the task live on the same loop (a part waits on the loop it aborts on).
 */
struct tmf_hold {
	struct tmf_hold *next;
	struct tmf_wait *w;
};

/* The response waits for t if t may still change the medium (and no earlier one of its connection does). */
static void tmf_hold(struct tmf_wait *w, struct task *t)
{
	if (t->state != TASK_RUNNING || !scsi_cmd_changes_medium(&t->scmd))
		return;
	for (const struct tmf_hold *h = t->tmf; h; h = h->next)
		if (h->w->origin == w->origin)
			return; /* responses of one connection go out in order: this one goes after that one */
	struct tmf_hold *h = xmalloc(sizeof(*h));
	h->w = w;
	h->next = t->tmf;
	t->tmf = h;
	w->tasks++;
}

static void tmf_part_back(void *arg);

/* One thing the response waited for is done: send it if it was the last (or free it, orphaned). */
static void tmf_wait_done(struct tmf_wait *w)
{
	w->tasks--;
	if (w->parent) {
		if (w->tasks == 0) {
			shard_post(w->parent->shard, tmf_part_back, w->parent);
			free(w);
		}
		return;
	}
	if (!w->c) {
		if (w->tasks == 0)
			tmf_wait_free(w->shard->srv, w);
		return;
	}
	if (w->queued)
		tmf_send_ready(w->c);
}

/* On the request's loop: another loop's part is done (nothing it aborted changes the medium). */
static void tmf_part_back(void *arg) { tmf_wait_done(arg); }

void tmf_task_ended(struct task *t)
{
	struct tmf_hold *h = t->tmf;
	t->tmf = NULL;
	while (h) {
		struct tmf_hold *next = h->next;
		tmf_wait_done(h->w);
		free(h);
		h = next;
	}
}

/* A LOGICAL UNIT RESET of a gateway group's LU is answered once the other gateways know of it. */
static void tmf_shared_stored_here(void *arg) { tmf_wait_done(arg); }

/* Stored on the thread of the target's first context: answered on the TMF's own loop. */
static void tmf_shared_stored(void *arg)
{
	struct tmf_wait *w = arg;
	if (shard_on_thread(w->shard))
		tmf_wait_done(w);
	else
		shard_post(w->shard, tmf_shared_stored_here, w);
}

void tmf_conn_gone(struct conn *c)
{
	while (c->tmf_waits) {
		struct tmf_wait *w = c->tmf_waits;
		c->tmf_waits = w->next;
		w->c = NULL;
		if (w->tasks == 0)
			tmf_wait_free(c->srv, w);
	}
	c->tmf_waits_tail = NULL;
}

static bool lun_matches(const struct task *t, const uint8_t lun[8]) { return memcmp(t->lun_field, lun, 8) == 0; }

/* Abort the not-yet-answered tasks of one session, optionally only those of one LUN; how many. */
static unsigned abort_conn_tasks(struct session *s, struct conn *c, const uint8_t *lun, const struct task *keep,
				 struct tmf_wait *w)
{
	unsigned n = 0;
	for (struct task *t = c->tasks, *next; t; t = next) {
		next = t->next;
		if (t != keep && t->state != TASK_SENDING && (!lun || lun_matches(t, lun))) {
			session_unhold_task(s, t);
			tmf_hold(w, t);
			task_abort(t);
			n++;
		}
	}
	return n;
}

/* Tasks of failed connections awaiting reassignment (level 2) are the session's too. */
static unsigned abort_session_tasks(struct session *s, const uint8_t *lun, const struct task *keep,
				    struct tmf_wait *w)
{
	unsigned n = 0;
	for (struct conn *c = s->conns; c; c = c->sess_next)
		n += abort_conn_tasks(s, c, lun, keep, w);
	for (struct conn *c = s->failed; c; c = c->sess_next)
		n += abort_conn_tasks(s, c, lun, keep, w);
	return n;
}

/*
 * The transport's part of a reset or CLEAR TASK SET on one loop: the tasks of this shard's
 * sessions of the target (of one LUN, or all). After a CLEAR TASK SET (cleared_by: the nexus that
 * asked) every other nexus that lost tasks is told COMMANDS CLEARED BY ANOTHER INITIATOR (SAM-5,
 * TAS 0: their tasks end without a response).
 */
static void abort_node_tasks(struct shard *sh, struct tnode *node, const uint8_t *lun, struct tmf_wait *w,
			     const struct scsi_nexus *cleared_by)
{
	uint16_t l = 0;
	bool lun_ok = lun && scsi_lun_decode(lun, &l);
	for (size_t i = 0; i < sh->nsessions; i++) {
		struct session *s = sh->sessions[i];
		if (s->node != node)
			continue;
		unsigned n = abort_session_tasks(s, lun, NULL, w);
		if (n && cleared_by && lun_ok && s->nexus.id != cleared_by->id)
			scsi_target_commands_cleared(node->scsi, l, &s->nexus);
	}
}

/* A part of a request for another loop: what it aborts there, and for whom. */
struct tmf_part {
	struct tmf_wait *w;         /* on the loop it goes to; its parent is the request's */
	uint64_t node_gen;          /* the target's node (its pointer may be freed and reused meanwhile) */
	uint8_t lun[8];
	bool all_luns;
	bool clear;                 /* CLEAR TASK SET: other nexuses are told */
	struct scsi_nexus by;       /* the nexus that asked */
};

/* The node of that generation, or NULL once it is gone (a target removed by a reload since). */
static struct tnode *node_live(const struct server *srv, uint64_t gen)
{
	/* Nodes come and go only while every loop but 0 is paused: reading the list here is safe. */
	for (size_t i = 0; i < srv->nnodes; i++)
		if (srv->nodes[i]->gen == gen)
			return srv->nodes[i];
	return NULL;
}

/* On the part's loop: abort there, then drop the part's own hold (it reports once nothing else holds it). */
static void tmf_part_abort(void *arg)
{
	struct tmf_part *p = arg;
	struct shard *sh = p->w->shard;
	struct tnode *node = node_live(sh->srv, p->node_gen);
	if (node)
		abort_node_tasks(sh, node, p->all_luns ? NULL : p->lun, p->w, p->clear ? &p->by : NULL);
	tmf_wait_done(p->w);
	free(p);
}

/* The same abort on every other loop; w (the request's) waits for each of them. */
static void tmf_fan_out(struct conn *c, const uint8_t *lun, bool clear, struct tmf_wait *w)
{
	struct server *srv = c->srv;
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct shard *o = srv->shards[i];
		if (o == c->shard)
			continue;
		struct tmf_part *p = xcalloc(1, sizeof(*p));
		p->w = xcalloc(1, sizeof(*p->w));
		p->w->shard = o;
		p->w->parent = w;
		p->w->origin = w->origin;
		p->w->tasks = 1; /* its own, dropped once it has aborted */
		p->node_gen = c->sess->node->gen;
		p->all_luns = !lun;
		if (lun)
			memcpy(p->lun, lun, 8);
		p->clear = clear;
		p->by = c->sess->nexus;
		w->tasks++;
		shard_post(o, tmf_part_abort, p);
	}
}

struct cold_reset {
	struct server *srv;
	char target[];
};

static void cold_reset_close(void *arg);

static void tmf_cold_close_all(struct server *srv, const char *target)
{
	struct cold_reset *r = xcalloc(1, sizeof(*r) + strlen(target) + 1);
	r->srv = srv;
	strcpy(r->target, target);
	shard_post(srv->shards[0], cold_reset_close, r);
}

/* On loop 0, every other loop paused: every session of the target ends, on whichever loop. */
static void cold_reset_close(void *arg)
{
	struct cold_reset *r = arg;
	struct server *srv = r->srv;
	struct tnode *node = server_find_node(srv, r->target);
	server_pause_shards(srv);
	for (size_t i = 0; node && i < srv->nsessions;) {
		struct session *s = srv->sessions[i];
		if (s->node == node) {
			session_close(s, "target cold reset");
			i = 0; /* the array changed */
			continue;
		}
		i++;
	}
	server_resume_shards(srv);
	free(r);
}

void tmf_handle(struct conn *c, const struct bhs *b)
{
	struct session *s = c->sess;
	uint8_t fn = b->tmf.function;
	if (s->type != SESSION_NORMAL) {
		tmf_send_response(c, b->itt, TMF_RSP_NOT_SUPPORTED);
		return;
	}
	uint16_t lun = 0;
	bool lun_ok = scsi_lun_decode(b->lun, &lun);
	struct scsi_target *st = s->node->scsi;
	unsigned waiting = 0;
	for (struct tmf_wait *q = c->tmf_waits; q; q = q->next)
		waiting++;
	if (waiting >= TMF_MAX_WAITING) {
		log_warn("task management function %u from '%s' rejected: %u responses wait already", fn,
			 s->initiator_name, waiting);
		tmf_send_response(c, b->itt, TMF_RSP_REJECTED);
		return;
	}
	if (fn == TMF_TASK_REASSIGN) {
		/* Answered at once: the reassigned task's PDUs follow the response (erl2.c). */
		c->stats.task_mgmt++;
		log_info("task management function %u from '%s' (TSIH %u)", fn, s->initiator_name, s->tsih);
		erl2_task_reassign(c, b);
		return;
	}
	uint8_t response = TMF_RSP_COMPLETE;
	struct tmf_wait *w = xcalloc(1, sizeof(*w));
	w->c = c;
	w->origin = c->serial;
	w->shard = c->shard;
	w->itt = b->itt;
	c->stats.task_mgmt++;
	log_info("task management function %u from '%s' (TSIH %u)", fn, s->initiator_name, s->tsih);
	switch (fn) {
	case TMF_ABORT_TASK: {
		struct task *t = task_find_itt(s, b->tmf.rtt);
		if (t) {
			session_unhold_task(s, t);
			tmf_hold(w, t);
			task_abort(t);
		} else if (sn_ge(b->tmf.refcmdsn, s->exp_cmdsn) && sn_le(b->tmf.refcmdsn, session_max_cmdsn(s)) &&
			   (b->immediate || sn_lt(b->tmf.refcmdsn, b->tmf.cmdsn))) {
			/*
			 * Never received but within the window: treat as received and done (RFC 7143
			 * 11.5.1), so the commands held behind the hole run. In practice only an immediate
			 * request gets here: a queued one runs after its own CmdSN, past the hole.
			 */
			session_skip_cmdsn(s, b->tmf.refcmdsn);
		} else {
			/* Already completed and answered, or never within the window. */
			response = TMF_RSP_NO_TASK;
		}
		break;
	}
	case TMF_ABORT_TASK_SET:
	case TMF_CLEAR_TASK_SET:
		if (!lun_ok || !scsi_target_lu_store(st, lun)) {
			response = TMF_RSP_NO_LUN;
			break;
		}
		if (fn == TMF_CLEAR_TASK_SET) {
			abort_node_tasks(c->shard, s->node, b->lun, w, &s->nexus);
			tmf_fan_out(c, b->lun, true, w);
		} else {
			abort_session_tasks(s, b->lun, NULL, w);
		}
		response = (uint8_t)scsi_target_task_mgmt(
			st, fn == TMF_CLEAR_TASK_SET ? SCSI_TMF_CLEAR_TASK_SET : SCSI_TMF_ABORT_TASK_SET, lun, lun_ok,
			&s->nexus);
		break;
	case TMF_LOGICAL_UNIT_RESET:
		if (!lun_ok || !scsi_target_lu_store(st, lun)) {
			response = TMF_RSP_NO_LUN;
			break;
		}
		abort_node_tasks(c->shard, s->node, b->lun, w, NULL);
		tmf_fan_out(c, b->lun, false, w);
		response = (uint8_t)scsi_target_task_mgmt(st, SCSI_TMF_LUN_RESET, lun, lun_ok, &s->nexus);
		if (response == TMF_RSP_COMPLETE && scsi_target_lu_shared_wait(st, lun, tmf_shared_stored, w))
			w->tasks++;
		break;
	case TMF_TARGET_WARM_RESET:
	case TMF_TARGET_COLD_RESET:
		abort_node_tasks(c->shard, s->node, NULL, w, NULL);
		tmf_fan_out(c, NULL, false, w);
		response = (uint8_t)scsi_target_task_mgmt(
			st, fn == TMF_TARGET_COLD_RESET ? SCSI_TMF_TARGET_COLD_RESET : SCSI_TMF_TARGET_WARM_RESET, 0,
			false, &s->nexus);
		if (fn == TMF_TARGET_COLD_RESET && response == TMF_RSP_COMPLETE) {
			/* Every connection to the target closes once the response is out (tmf_wait_free). */
			w->cold = true;
			w->cold_target = xstrdup(s->node->cfg->name);
		}
		break;
	case TMF_CLEAR_ACA:
		response = TMF_RSP_NOT_SUPPORTED;
		break;
	default:
		response = TMF_RSP_REJECTED;
		break;
	}
	w->response = response;
	w->queued = true;
	*(c->tmf_waits_tail ? &c->tmf_waits_tail->next : &c->tmf_waits) = w;
	c->tmf_waits_tail = w;
	tmf_send_ready(c);
}
