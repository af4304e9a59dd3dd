/*
 * Reservation state kept with the other gateways of a group (scsi_shared_ops in scsi.h).
 *
 * The record is text, one item a line:
 *   isthmus-lu 1
 *   generation G / aptpl 0|1        PRgeneration and APTPL
 *   reservation TYPE INDEX|-        the persistent reservation; INDEX: the holder's reg line
 *   reg KEY REL ATP PORT            one per registration, in registration order
 *   rsv2 REL PORT                   the SPC-2 reservation's holder
 *   evseq N                         the number of the newest event
 *   ev SEQ UA ALL EXREL EXPORT|- N  a unit attention event: for every nexus (ALL), or for the N
 *   id REL ATP PORT                 identities that follow, but the EXPORT/EXREL nexus
 * A nexus is known by its identity (initiator port, relative target port): the other gateways
 * have no nexus of ours. Only the last LU_SHARED_MAX_EVENTS events are kept; a gateway raises
 * those newer than the last it raised.
 *
 * One cycle at a time per LU: load the record; run the background actions (resets, lost
 * nexuses) or else the oldest waiting reservation command on it; if that changed the record,
 * store it with the version loaded; a store lost to another gateway loads and runs again. Only
 * once it is stored are its unit attentions raised here and the command completed: the store
 * returns once the other gateways have loaded the record, so what the command did holds on
 * every gateway before its status goes out. A record that cannot be loaded or stored fails the
 * command (NOT READY), never answers from what this gateway remembers.
 *
 * Threads: the cycle runs on the home thread, the one that reaps the workers of the target's
 * first context (sh->home). A reservation command is run where it belongs, on the thread of the
 * context it came through (its engine, buffers, queues and nexus entries are that thread's): the
 * cycle hands it over and waits in SH_RUNNING until it is back, then encodes and stores. The
 * group's COMPARE AND WRITE lock is asked for and given back on the home thread too, its command
 * run on its own. Everything in struct lu_shared is under the LU's lock while the LU is there;
 * once it is gone (only while every other loop is paused) only the home thread touches it, and
 * the last job or message to come back frees it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/lu_record.h"
#include "scsi/lu_state_int.h"
#include "scsi/scsi_int.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sbuf.h"

static void kick(struct lu_shared *sh);
static void shared_free(struct lu_shared *sh);

/* ---- threads ---- */

/* fn(arg) later on the home thread; counted until it ran (the LU's lock held). */
void sh_home_post(struct lu_shared *sh, void (*fn)(void *arg), void *arg)
{
	sh->jobs++;
	th_post(&sh->home, fn, arg);
}

/* fn(h) on the thread of h's command; counted until h is back home (the LU's lock held). */
void sh_own_post(struct sh_hand *h, void (*fn)(void *arg))
{
	h->sh->jobs++;
	th_post(&h->cmd->defer.ctx->thread, fn, h);
}

bool sh_own_here(const struct scsi_cmd *cmd) { return !cmd->defer.ctx || th_here(&cmd->defer.ctx->thread); }

/*
 * A job or message back on the home thread: the LU's lock while the LU is there (NULL once it
 * is gone: then only this thread touches sh), and one fewer under way.
 */
struct scsi_lu *sh_home_arrive(struct lu_shared *sh)
{
	struct scsi_lu *lu = sh->lu;

	if (lu)
		lu_lock(lu);
	sh->jobs--;
	return lu;
}

/* The end of sh_home_arrive's part: the last one back after the LU has gone frees what is left. */
void sh_home_leave(struct lu_shared *sh, struct scsi_lu *lu)
{
	if (lu)
		lu_unlock(lu);
	else if (sh->jobs == 0)
		shared_free(sh);
}

/* A hand-over that only had to come back (its command is answered). */
void sh_hand_back(void *arg)
{
	struct sh_hand *h = arg;
	struct lu_shared *sh = h->sh;
	struct scsi_lu *lu = sh_home_arrive(sh);

	free(h);
	sh_home_leave(sh, lu);
}

void sh_cmd_fail(struct scsi_cmd *cmd, bool desc, uint8_t key, uint8_t asc, uint8_t ascq)
{
	cmd->status = SCSI_CHECK_CONDITION;
	cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), desc, key, asc, ascq, NULL, NULL);
}

void sh_cmd_finish_here(void *arg)
{
	struct scsi_cmd *cmd = arg;

	cmd->defer.active = false;
	cmd->done(cmd);
}

/* Completes cmd on its own context's thread, whose transport state (and defer.active) it is. */
void sh_cmd_finish(struct scsi_cmd *cmd)
{
	if (sh_own_here(cmd))
		sh_cmd_finish_here(cmd);
	else
		th_post(&cmd->defer.ctx->thread, sh_cmd_finish_here, cmd);
}


/* ---- identities and events ---- */

static bool ident_is(const struct lu_ident *id, const struct scsi_nexus *nx)
{
	return id->port && strcmp(id->port, nx->initiator_port) == 0 && (id->atp || id->rel == nx->rel_port_id);
}

static void events_clear(struct lu_shared *sh)
{
	for (size_t i = 0; i < sh->nev; i++)
		lu_event_free(&sh->ev[i]);
	sh->nev = 0;
}

/* A new event at the end; the oldest goes when the record holds as many as it keeps. */
static struct lu_event *event_add(struct lu_shared *sh, uint32_t ua)
{
	if (sh->nev == LU_SHARED_MAX_EVENTS) {
		lu_event_free(&sh->ev[0]);
		memmove(&sh->ev[0], &sh->ev[1], (sh->nev - 1) * sizeof(sh->ev[0]));
		memset(&sh->ev[sh->nev - 1], 0, sizeof(sh->ev[0]));
		sh->nev--;
	}
	struct lu_event *e = &sh->ev[sh->nev++];
	e->seq = ++sh->evseq;
	e->ua = ua;
	return e;
}

/*
 * Raises e on this gateway's nexuses (the ones that met the LU: the others get POWER ON at their
 * first command, which supersedes it).
 */
static void event_raise(struct scsi_lu *lu, const struct lu_event *e)
{
	pthread_mutex_lock(&lu->nexus_lock);
	for (struct lu_nexus *ln = lu->nexuses; ln; ln = ln->lu_next) {
		bool hit = e->all;

		if (ident_is(&e->except, ln->nx))
			continue;
		for (size_t k = 0; k < e->nids && !hit; k++)
			hit = ident_is(&e->ids[k], ln->nx);
		if (hit)
			ua_add(ln, e->ua);
	}
	pthread_mutex_unlock(&lu->nexus_lock);
}

/* Raises the events this gateway has not raised yet (skip: only take note of them). */
static void events_catch_up(struct lu_shared *sh, bool skip)
{
	for (size_t i = 0; i < sh->nev; i++) {
		const struct lu_event *e = &sh->ev[i];
		if (e->seq > sh->seen && !skip && !e->here)
			event_raise(sh->lu, e);
	}
	sh->seen = sh->evseq;
}

void lu_shared_ua_regs(struct scsi_lu *lu, bool (*pick)(const struct pr_reg *g), uint32_t ua, uint64_t except)
{
	struct lu_shared *sh = lu->shared;
	const struct scsi_nexus *ex = NULL;
	struct lu_event *e = event_add(sh, ua);

	pthread_mutex_lock(&lu->nexus_lock);
	for (const struct lu_nexus *ln = lu->nexuses; ln && !ex; ln = ln->lu_next) {
		if (ln->nexus_id == except)
			ex = ln->nx;
	}
	/* ex stays valid: only its own thread, which runs this command, drops its entry. */
	pthread_mutex_unlock(&lu->nexus_lock);
	size_t n = 0;

	if (ex)
		lu_ident_set(&e->except, ex->initiator_port, ex->rel_port_id, false);
	for (size_t i = 0; i < lu->pr.nregs; i++)
		n += pick(lu->pr.regs[i]);
	if (n > LU_SHARED_EVENT_MAX_IDS) {
		/* Told to every nexus: a unit attention too many costs a retry, one too few a lost change. */
		e->all = true;
		return;
	}
	e->ids = xcalloc(n ? n : 1, sizeof(*e->ids));
	for (size_t i = 0; i < lu->pr.nregs; i++) {
		const struct pr_reg *g = lu->pr.regs[i];
		if (pick(g))
			lu_ident_set(&e->ids[e->nids++], g->port, g->rel_port, g->all_tg_pt);
	}
}

/* The LU takes the decoded state over (d is emptied). */
static void install(struct lu_shared *sh, struct lu_record *d)
{
	struct scsi_lu *lu = sh->lu;

	pr_free(&lu->pr);
	lu->pr = d->pr;
	memset(&d->pr, 0, sizeof(d->pr));
	lu->rsv_held = d->rsv_held;
	lu->rsv_rel = d->rsv_rel;
	memcpy(lu->rsv_port, d->rsv_port, sizeof(lu->rsv_port));
	lu->rsv_nexus = NEXUS_NONE;
	pthread_mutex_lock(&lu->nexus_lock);
	for (const struct lu_nexus *ln = lu->nexuses; lu->rsv_held && ln; ln = ln->lu_next) {
		if (rsv_holder(lu, ln->nx))
			lu->rsv_nexus = ln->nexus_id;
	}
	pthread_mutex_unlock(&lu->nexus_lock);
	events_clear(sh);
	memcpy(sh->ev, d->ev, sizeof(sh->ev));
	sh->nev = d->nev;
	d->nev = 0;
	sh->evseq = d->evseq;
}

/* ---- commands and actions ---- */

/* The record is out of reach: LOGICAL UNIT IS IN PROCESS OF BECOMING READY, which initiators retry. */
static void cmd_unreachable(struct lu_shared *sh, struct scsi_cmd *cmd)
{
	if (!atomic_load(&cmd->defer.cancelled))
		sh_cmd_fail(cmd, sh->lu && sh->lu->d_sense, SK_NOT_READY, 0x04, 0x01);
	sh_cmd_finish(cmd);
}

bool lu_shared_loaded(const struct scsi_lu *lu) { return lu->shared && lu->shared->loaded; }

bool lu_shared_defer(struct scsi_req *r)
{
	struct lu_shared *sh = r->lu->shared;
	struct scsi_cmd *cmd = r->cmd;
	void (*run)(struct scsi_req *) = r->op->run;
	bool rsv_cmd = run == scsi_pr_in || run == scsi_pr_out || run == scsi_reserve6 || run == scsi_release6 ||
		       run == scsi_reserve10 || run == scsi_release10;

	if (!sh->loaded && (r->op->flags & (OPF_READ | OPF_WRITE)) && !rsv_cmd) {
		/* Until the record is loaded, nobody's reservation is known: no medium access. */
		req_sense(r, SK_NOT_READY, 0x04, 0x01);
		return true;
	}
	if (!rsv_cmd || cmd->defer.shared)
		return false;
	cmd->defer.active = true;
	cmd->defer.waited = true;
	cmd->defer.desc = r->lu->d_sense;
	cmd->defer.wait_next = NULL;
	*(sh->q_tail ? &sh->q_tail->defer.wait_next : &sh->q) = cmd;
	sh->q_tail = cmd;
	kick(sh);
	return true;
}

void lu_shared_action(struct scsi_lu *lu, enum lu_shared_action kind, uint32_t ua, const struct scsi_nexus *nx)
{
	struct lu_shared *sh = lu->shared;

	if (sh->nacts >= LU_SHARED_MAX_ACTIONS) {
		log_warn("LUN %u: %zu reservation changes already wait for the group's record: one dropped", lu->lun,
			 sh->nacts);
		return;
	}
	struct lu_act *a = xcalloc(1, sizeof(*a));
	a->kind = kind;
	a->ua = ua;
	if (nx)
		lu_ident_set(&a->who, nx->initiator_port, nx->rel_port_id, false);
	*(sh->acts_tail ? &sh->acts_tail->next : &sh->acts) = a;
	sh->acts_tail = a;
	sh->nacts++;
	kick(sh);
}

static void acts_free(struct lu_act *a)
{
	while (a) {
		struct lu_act *next = a->next;
		free(a->who.port);
		free(a);
		a = next;
	}
}

static void act_apply(struct lu_shared *sh, const struct lu_act *a)
{
	struct scsi_lu *lu = sh->lu;

	switch (a->kind) {
	case LU_ACT_RESET: {
		lu->rsv_held = false;
		struct lu_event *e = event_add(sh, a->ua);
		e->all = true;
		e->here = true;
		break;
	}
	case LU_ACT_COLD_RESET:
		pr_nexus_reset(lu);
		break;
	case LU_ACT_RSV_DROP:
		if (lu->rsv_held && lu->rsv_rel == a->who.rel && strcmp(lu->rsv_port, a->who.port) == 0)
			lu->rsv_held = false;
		break;
	}
}

static void waiters_done(struct lu_shared *sh)
{
	struct lu_waiter *w = sh->waiters;

	sh->waiters = NULL;
	while (w) {
		struct lu_waiter *next = w->next;
		w->done(w->arg);
		free(w);
		w = next;
	}
}

/* ---- the cycle ---- */

static void job_work(struct offload_job *j)
{
	struct sh_job *sj = (struct sh_job *)j;
	struct lu_shared *sh = sj->sh;

	switch (sj->kind) {
	case J_LOAD:
		sj->rc = sh->ops->load(sh->ctx, &sj->rec, &sj->version);
		if (sj->rc == 0 && sj->rec.len > LU_SHARED_MAX_RECORD)
			sj->rc = -EFBIG;
		break;
	case J_STORE:
		sj->rc = sh->ops->store(sh->ctx, sj->rec.data, sj->rec.len, sj->expect, &sj->version);
		break;
	case J_ACK:
		sh->ops->ack(sh->ctx);
		break;
	}
}

static void shared_free(struct lu_shared *sh)
{
	events_clear(sh);
	acts_free(sh->acts);
	acts_free(sh->cur_acts);
	sbuf_free(&sh->rec);
	if (sh->ops->release)
		sh->ops->release(sh->ctx);
	free(sh);
}

static void job_done(struct offload_job *j);

static void job_submit(struct lu_shared *sh, int kind, struct sbuf *rec, uint64_t expect)
{
	struct sh_job *sj = xcalloc(1, sizeof(*sj));

	sj->sh = sh;
	sj->kind = kind;
	sj->expect = expect;
	if (rec)
		sj->rec = *rec;
	sj->job.work = job_work;
	sj->job.done = job_done;
	/*
	 * One after the other, acknowledgements included: one must not answer for a load whose
	 * record is not installed yet. Two gateways never both wait in a store for each other: of
	 * two stores from the same version, one fails at once.
	 */
	sj->job.key = sh;
	sh->jobs++;
	if (target_home_offload(sh->t)) {
		offload_submit(target_home_offload(sh->t), &sj->job);
		return;
	}
	job_work(&sj->job);
	job_done(&sj->job);
}

static void start_load(struct lu_shared *sh)
{
	sh->phase = SH_LOADING;
	sh->reload = false;
	job_submit(sh, J_LOAD, NULL, 0);
}

static void kick_home(void *arg)
{
	struct lu_shared *sh = arg;
	struct scsi_lu *lu = sh_home_arrive(sh);

	sh->kick_posted = false;
	if (lu)
		kick(sh);
	sh_home_leave(sh, lu);
}

/* A cycle when there is work and none runs (the LU's lock held). */
static void kick(struct lu_shared *sh)
{
	if (sh->phase != SH_IDLE || !sh->lu)
		return;
	if (!sh->q && !sh->acts && !sh->reload && sh->loaded)
		return;
	if (!th_here(&sh->home)) {
		/* The record's jobs are submitted and reaped by the home thread only. */
		if (!sh->kick_posted) {
			sh->kick_posted = true;
			sh_home_post(sh, kick_home, sh);
		}
		return;
	}
	start_load(sh);
}

static void note_failure(struct lu_shared *sh, const char *what, int rc)
{
	if (!sh->failing)
		log_error("LUN %u: %s the gateway group's reservation record: %s (reservation commands fail until "
			  "it works again)", sh->lu ? sh->lu->lun : 0, what, strerror(-rc));
	sh->failing = true;
}

/* The cycle's actions go back in front of the others, for the next load. */
static void acts_requeue(struct lu_shared *sh)
{
	struct lu_act *last = sh->cur_acts;

	if (!last)
		return;
	sh->nacts++;
	while (last->next) {
		last = last->next;
		sh->nacts++;
	}
	last->next = sh->acts;
	if (!sh->acts)
		sh->acts_tail = last;
	sh->acts = sh->cur_acts;
	sh->cur_acts = NULL;
}

/* The cycle could not reach the record: every waiting command fails, the actions wait. */
static void fail_waiting(struct lu_shared *sh)
{
	if (sh->cur) {
		cmd_unreachable(sh, sh->cur);
		sh->cur = NULL;
	}
	while (sh->q) {
		struct scsi_cmd *c = sh->q;
		sh->q = c->defer.wait_next;
		c->defer.wait_next = NULL;
		cmd_unreachable(sh, c);
	}
	sh->q_tail = NULL;
	acts_requeue(sh);
	waiters_done(sh);
}

/* The cycle's actions and command are done (stored, or nothing to store): the next one. */
static void cycle_end(struct lu_shared *sh)
{
	acts_free(sh->cur_acts);
	sh->cur_acts = NULL;
	if (sh->cur)
		sh_cmd_finish(sh->cur);
	sh->cur = NULL;
	if (!sh->acts)
		waiters_done(sh);
	kick(sh);
}

/* The cycle's actions and command ran: store the record if they changed it. */
static void cycle_store(struct lu_shared *sh)
{
	struct sbuf now = { 0 };

	lu_record_encode(sh->lu, sh->evseq, sh->ev, sh->nev, &now);
	if (now.len == sh->rec.len && memcmp(now.data, sh->rec.data, now.len) == 0) {
		sbuf_free(&now);
		cycle_end(sh);
		return;
	}
	sh->phase = SH_STORING;
	job_submit(sh, J_STORE, &now, sh->version);
}

/* Home again after the cycle's command ran on its own thread (SH_RUNNING ends). */
static void cycle_cmd_back(void *arg)
{
	struct sh_hand *h = arg;
	struct lu_shared *sh = h->sh;
	struct scsi_lu *lu = sh_home_arrive(sh);

	sh->phase = SH_IDLE;
	if (lu) {
		cycle_store(sh);
	} else {
		if (!h->ended) {
			/* It ran, but the LU went before its change was stored: answered as the LU's others were. */
			sh_cmd_fail(h->cmd, false, SK_ILLEGAL_REQUEST, 0x25, 0x00);
			sh_cmd_finish(h->cmd);
		}
		sh->cur = NULL;
	}
	free(h);
	sh_home_leave(sh, lu);
}

/*
 * On the command's own thread: it runs on the record just loaded, which nobody changes
 * meanwhile (the cycle waits in SH_RUNNING). A command cancelled on the way does not run.
 */
static void cycle_cmd_run(void *arg)
{
	struct sh_hand *h = arg;
	struct lu_shared *sh = h->sh;
	struct scsi_cmd *cmd = h->cmd;
	struct scsi_lu *lu = sh->lu; /* cleared only while every other loop is paused */

	if (lu) {
		lu_lock(lu);
		if (!atomic_load(&cmd->defer.cancelled))
			scsi_cmd_run_shared(cmd->defer.ctx, cmd);
		lu_unlock(lu);
	} else {
		sh_cmd_fail(cmd, false, SK_ILLEGAL_REQUEST, 0x25, 0x00);
		sh_cmd_finish_here(cmd);
		h->ended = true;
	}
	th_post(&sh->home, cycle_cmd_back, h);
}

/* After a load: the actions, or else the next command, on the state as loaded. */
static void run_cycle(struct lu_shared *sh)
{
	if (sh->acts) {
		sh->cur_acts = sh->acts;
		sh->acts = sh->acts_tail = NULL;
		sh->nacts = 0;
		for (const struct lu_act *a = sh->cur_acts; a; a = a->next)
			act_apply(sh, a);
	} else if (sh->q) {
		struct scsi_cmd *c = sh->q;
		sh->q = c->defer.wait_next;
		if (!sh->q)
			sh->q_tail = NULL;
		c->defer.wait_next = NULL;
		if (atomic_load(&c->defer.cancelled)) {
			sh_cmd_finish(c);
			kick(sh);
			return;
		}
		sh->cur = c;
		if (!sh_own_here(c)) {
			struct sh_hand *h = xcalloc(1, sizeof(*h));
			h->sh = sh;
			h->cmd = c;
			sh->phase = SH_RUNNING;
			sh_own_post(h, cycle_cmd_run);
			return;
		}
		scsi_cmd_run_shared(c->defer.ctx, c);
	}
	cycle_store(sh);
}

static void load_done(struct lu_shared *sh, struct sh_job *sj)
{
	struct lu_record d = { 0 };

	sh->phase = SH_IDLE;
	if (sj->rc < 0) {
		note_failure(sh, "cannot load", sj->rc);
		fail_waiting(sh);
		return;
	}
	sbuf_reset(&sh->rec);
	sbuf_append(&sh->rec, sj->rec.data, sj->rec.len);
	char *text = xmalloc(sj->rec.len + 1);
	memcpy(text, sj->rec.data, sj->rec.len);
	text[sj->rec.len] = 0;
	bool ok = sj->rec.len == 0 || lu_record_decode(text, &d);
	free(text);
	if (!ok) {
		lu_record_free(&d);
		note_failure(sh, "cannot read", -EINVAL);
		fail_waiting(sh);
		return;
	}
	if (sh->failing)
		log_info("LUN %u: the gateway group's reservation record is back in reach", sh->lu->lun);
	sh->failing = false;
	bool first = !sh->loaded;
	install(sh, &d);
	lu_record_free(&d);
	sh->version = sj->version;
	sh->loaded = true;
	/* A gateway that was not there when an event happened had no nexus it was meant for. */
	events_catch_up(sh, first);
	if (sh->ops->ack)
		job_submit(sh, J_ACK, NULL, 0);
	run_cycle(sh);
}

static void store_done(struct lu_shared *sh, struct sh_job *sj)
{
	sh->phase = SH_IDLE;
	if (sj->rc == -ESTALE && ++sh->retries <= LU_SHARED_MAX_RETRIES) {
		/* Another gateway stored first: run again on what it stored. */
		if (sh->cur) {
			sh->cur->defer.wait_next = sh->q;
			sh->q = sh->cur;
			if (!sh->q_tail)
				sh->q_tail = sh->cur;
			sh->cur = NULL;
		}
		acts_requeue(sh);
		start_load(sh);
		return;
	}
	sh->retries = 0;
	if (sj->rc < 0) {
		note_failure(sh, "cannot store", sj->rc);
		/*
		 * What is here now was never stored: nothing relies on it until the next load, which
		 * the next command or change notice starts (not at once: a store that keeps failing
		 * must not turn into a loop of them).
		 */
		sh->loaded = false;
		fail_waiting(sh);
		return;
	}
	sh->failing = false;
	sh->version = sj->version;
	sbuf_reset(&sh->rec);
	sbuf_append(&sh->rec, sj->rec.data, sj->rec.len);
	events_catch_up(sh, false);
	cycle_end(sh);
}

/* On the home thread, which reaps the target's first context's workers. */
static void job_done(struct offload_job *j)
{
	struct sh_job *sj = (struct sh_job *)j;
	struct lu_shared *sh = sj->sh;
	struct scsi_lu *lu = sh_home_arrive(sh);

	if (!lu) {
		/*
		 * The LU went: its waiting commands were answered then, the one its load or store was
		 * for now (an acknowledgement may run beside a command on its own thread: that one
		 * comes back by itself).
		 */
		if (sj->kind != J_ACK) {
			sh->phase = SH_IDLE;
			if (sh->cur) {
				sh_cmd_fail(sh->cur, false, SK_ILLEGAL_REQUEST, 0x25, 0x00);
				sh_cmd_finish(sh->cur);
				sh->cur = NULL;
			}
		}
	} else if (sj->kind == J_LOAD) {
		load_done(sh, sj);
	} else if (sj->kind == J_STORE) {
		store_done(sh, sj);
	}
	sbuf_free(&sj->rec);
	free(sj);
	sh_home_leave(sh, lu);
}

/* ---- the interface ---- */

static struct scsi_lu *lu_of(struct scsi_target *t, uint16_t lun)
{
	return lun < SCSI_MAX_LUNS ? t->lu[lun] : NULL;
}

int scsi_target_share_lu(struct scsi_target *t, uint16_t lun, const struct scsi_shared_ops *ops, void *ctx)
{
	struct scsi_lu *lu = lu_of(t, lun);

	if (!lu || lu->shared)
		return -1;
	lu_lock(lu);
	struct lu_shared *sh = xcalloc(1, sizeof(*sh));
	sh->ops = ops;
	sh->ctx = ctx;
	sh->t = t;
	sh->lu = lu;
	if (t->ctxs)
		sh->home = t->ctxs->thread;
	/* The record holds it all, APTPL included: nothing of this LU goes to the state directory. */
	pr_persist_release(lu);
	pr_free(&lu->pr);
	lu->pr.log = NULL;
	lu->rsv_held = false;
	lu->shared = sh;
	kick(sh);
	lu_unlock(lu);
	return 0;
}

void scsi_target_lu_shared_changed(struct scsi_target *t, uint16_t lun)
{
	struct scsi_lu *lu = lu_of(t, lun);

	if (!lu)
		return;
	lu_lock(lu);
	if (lu->shared) {
		lu->shared->reload = true;
		kick(lu->shared);
	}
	lu_unlock(lu);
}

bool scsi_target_lu_shared_wait(struct scsi_target *t, uint16_t lun, void (*done)(void *arg), void *arg)
{
	struct scsi_lu *lu = lu_of(t, lun);
	if (!lu)
		return false;
	lu_lock(lu);
	struct lu_shared *sh = lu->shared;
	bool waits = sh && (sh->acts || sh->cur_acts);
	if (waits) {
		struct lu_waiter *w = xcalloc(1, sizeof(*w));
		w->done = done;
		w->arg = arg;
		w->next = sh->waiters;
		sh->waiters = w;
	}
	lu_unlock(lu);
	return waits;
}

void lu_shared_detach(struct scsi_lu *lu)
{
	struct lu_shared *sh = lu->shared;

	if (!sh)
		return;
	lu->shared = NULL;
	sh->lu = NULL;
	if (sh->caw_holder) {
		/*
		 * Its write may still be at the cluster and end after the target is gone (a target
		 * removed, or stopping): it has no LU to give the lock back through any more, and
		 * the release gives it back.
		 */
		sh->caw_holder->defer.t = NULL;
		sh->caw_holder = NULL;
	}
	while (sh->q) {
		struct scsi_cmd *c = sh->q;
		sh->q = c->defer.wait_next;
		c->defer.wait_next = NULL;
		sh_cmd_fail(c, lu->d_sense, SK_ILLEGAL_REQUEST, 0x25, 0x00);
		sh_cmd_finish(c);
	}
	sh->q_tail = NULL;
	waiters_done(sh);
	if (sh->jobs == 0)
		shared_free(sh);
}
