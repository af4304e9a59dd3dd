/*
 * Peer liveness: a non-blocking TCP connect to each other gateway's portal every
 * GATEWAY_PROBE_INTERVAL_MS, at most one in flight per peer, given up after
 * GATEWAY_PROBE_TIMEOUT_MS. The connection is closed as soon as it is made (before any login).
 */

/*
 * The gateways of a group start at about the same time: a peer that has not answered one probe
 * yet is reported unavailable only once it has not answered for this long since the probes
 * started. Otherwise a gateway started a moment before its peer reports it unavailable, then
 * available at the next probe, and every nexus gets ASYMMETRIC ACCESS STATE CHANGED for a
 * peer that was only starting.
 */
#define GATEWAY_PEER_START_GRACE_MS 10000u
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store/offload.h"
#include "store/rbd_gate.h"
#include "store/rbd_lock_owner.h"
#include "store/rbd_lu_state.h"
#include "store/store_io.h"
#include "store/store_rbd.h"
#include "target/gateway.h"
#include "target/gateway_int.h"
#include "target/server.h"
#include "util/log.h"
#include "util/sbuf.h"

struct gateway_shared *gateway_shared_lus;

static void gs_job_submit(struct gateway_shared *gs, enum gs_job_kind kind, uint16_t peer);

static bool answers(uint16_t local, const uint16_t *alive, size_t n, uint16_t id)
{
	if (id == local)
		return true;
	for (size_t i = 0; i < n; i++) {
		if (alive[i] == id)
			return true;
	}
	return false;
}

uint16_t gateway_optimized(uint16_t local, const uint16_t *alive, size_t n, enum gateway_lock lock, uint16_t holder,
			   uint16_t current)
{
	if (lock == GATEWAY_LOCK_AT_REST && holder && answers(local, alive, n, holder))
		return holder;
	/* Writes through several gateways pass the lock back and forth: the role stays where it is. */
	if (lock == GATEWAY_LOCK_MOVING && current && answers(local, alive, n, current))
		return current;
	uint16_t best = local;
	for (size_t i = 0; i < n; i++) {
		if (alive[i] < best)
			best = alive[i];
	}
	return best;
}

enum scsi_alua_state gateway_decide_state(uint16_t local, uint16_t tpg, bool alive, uint16_t optimized)
{
	if (tpg != local && !alive)
		return ALUA_UNAVAILABLE;
	return tpg == optimized ? ALUA_ACTIVE_OPTIMIZED : ALUA_ACTIVE_NON_OPTIMIZED;
}

/* What an LU's image's exclusive lock says: where it rests, or that it moves. */
static enum gateway_lock lock_view(const struct gateway_shared *gs, uint16_t *holder)
{
	*holder = (uint16_t)gs->last.gateway;
	/*
	 * A gateway that starts takes the lock where its first sample finds it, as its peers do,
	 * rather than report the lowest-numbered gateway until a second sample and then change.
	 */
	if (gs->nsamples == 1 && gs->first)
		return GATEWAY_LOCK_AT_REST;
	if (gs->nsamples < 2 || gs->last.version != gs->before.version || gs->last.held != gs->before.held ||
	    gs->last.gateway != gs->before.gateway)
		return GATEWAY_LOCK_MOVING;
	return GATEWAY_LOCK_AT_REST;
}

/*
 * Every group's state from what the probes and the lock samples know now: the target's states
 * (liveness, and the lowest-numbered answering gateway optimized, for the LUs that follow no
 * lock: files, images whose lock cannot be read), then, for each shared RBD LU whose lock is
 * followed, the gateway optimized for that LU alone (its image's lock may rest on another
 * gateway than another LU's).
 */
static void apply_states(struct gateway_probes *g)
{
	struct tnode *n = g->node;
	uint16_t local = n->cfg->gateway, alive[CFG_MAX_GATEWAYS], holder;
	size_t nalive = 0;

	for (size_t i = 0; i < g->npeers; i++) {
		if (g->peers[i].alive)
			alive[nalive++] = g->peers[i].id;
	}
	uint16_t opt = gateway_optimized(local, alive, nalive, GATEWAY_LOCK_NOT_FOLLOWED, 0, g->optimized);
	g->optimized = opt;
	scsi_target_set_tpg_state(n->scsi, local, gateway_decide_state(local, local, true, opt));
	for (size_t i = 0; i < g->npeers; i++)
		scsi_target_set_tpg_state(n->scsi, g->peers[i].id,
					  gateway_decide_state(local, g->peers[i].id, g->peers[i].alive, opt));
	for (struct gateway_shared *gs = gateway_shared_lus; gs; gs = gs->next) {
		if (gs->node != n || gs->released || !gs->lo)
			continue;
		enum gateway_lock lock = lock_view(gs, &holder);
		uint16_t lu_opt = gateway_optimized(local, alive, nalive, lock, holder, gs->optimized ? gs->optimized : opt);
		if (lu_opt != gs->optimized && gs->optimized) {
			const char *why = lock == GATEWAY_LOCK_AT_REST && lu_opt == holder
						  ? "it holds the image's exclusive lock"
						  : "the lowest-numbered gateway that answers";
			log_info("target %s LUN %u: gateway %u is active/optimized now (%s)", n->cfg->name, gs->lun, lu_opt,
				 why);
		}
		gs->optimized = lu_opt;
		scsi_target_set_lu_optimized(n->scsi, gs->lun, lu_opt);
	}
}

static void peer_close(struct gateway_probes *g, struct gateway_peer *p)
{
	if (p->fd < 0)
		return;
	loop_watch_del(g->node->srv->loop, &p->watch);
	close(p->fd);
	p->fd = -1;
}

static void peer_learned(struct gateway_probes *g, struct gateway_peer *p, bool alive)
{
	struct tnode *n = g->node;

	peer_close(g, p);
	if (alive)
		p->answered = true;
	else if (!p->answered && loop_now_ms() - g->since_ms < GATEWAY_PEER_START_GRACE_MS)
		return; /* perhaps still starting: its state stays as it is */
	if (alive != p->alive)
		log_info("target %s: gateway %u %s", n->cfg->name, p->id, alive ? "answers again" : "does not answer");
	/*
	 * Gone, still gone after a cluster saw it last time, or still waiting for a witness that
	 * was lost with its LU: ask the clusters before fencing.
	 */
	bool ask = !alive && (p->alive || p->spared || p->suspect);
	if (alive) {
		p->suspect = p->spared = p->told = false;
		gateway_peer_forget_fences(p);
	}
	p->alive = alive;
	apply_states(g);
	if (ask) {
		p->suspect = true;
		gateway_witness(n);
	}
}

static void peer_on_connect(void *arg, uint32_t events)
{
	struct gateway_peer *p = arg;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	(void)events;
	if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	peer_learned(p->owner, p, soerr == 0);
}

static void peer_probe(struct gateway_probes *g, struct gateway_peer *p, uint64_t now)
{
	if (p->fd >= 0) {
		if (now - p->started_ms >= GATEWAY_PROBE_TIMEOUT_MS)
			peer_learned(g, p, false);
		return;
	}
	int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;   /* out of descriptors: try again next time, the state stays as it is */
	if (connect(fd, (struct sockaddr *)&p->addr, p->addr_len) == 0) {
		close(fd);
		peer_learned(g, p, true);
		return;
	}
	if (errno != EINPROGRESS) {
		close(fd);
		peer_learned(g, p, false);
		return;
	}
	if (loop_watch_add(g->node->srv->loop, &p->watch, fd, EPOLLOUT, peer_on_connect, p) < 0) {
		close(fd);
		return;
	}
	p->fd = fd;
	p->started_ms = now;
}

/*
 * Who holds each shared image's exclusive lock, asked at the probe interval and never per I/O:
 * what the states follow is where the lock rests, not each hand-over (gateway_optimized).
 */
static void gs_sample_locks(struct tnode *n)
{
	for (struct gateway_shared *gs = gateway_shared_lus; gs; gs = gs->next) {
		if (gs->node == n && !gs->released && gs->lo && !gs->sampling) {
			gs->sampling = true;
			gs_job_submit(gs, GJ_LOCK_SAMPLE, 0);
		}
	}
}

static void probes_tick(void *arg)
{
	struct gateway_probes *g = arg;
	uint64_t now = loop_now_ms();

	for (size_t i = 0; i < g->npeers; i++)
		peer_probe(g, &g->peers[i], now);
	gs_sample_locks(g->node);
}

static int gs_load(void *ctx, struct sbuf *rec, uint64_t *version)
{
	struct gateway_shared *gs = ctx;
	return rbd_lu_state_load(gs->rs, rec, version);
}

static int gs_store(void *ctx, const void *rec, size_t len, uint64_t expect, uint64_t *version)
{
	struct gateway_shared *gs = ctx;
	return rbd_lu_state_store(gs->rs, rec, len, expect, version);
}

static void gs_ack(void *ctx)
{
	struct gateway_shared *gs = ctx;
	rbd_lu_state_ack(gs->rs);
}

static void gs_off_loop(struct gateway_shared *gs)
{
	if (!gs->on_loop)
		return;
	loop_watch_del(gs->node->srv->loop, &gs->watch);
	loop_timer_stop(gs->node->srv->loop, &gs->timer);
	gs->on_loop = false;
}

void gs_close(struct gateway_shared *gs)
{
	gs_job_submit(gs, GJ_CLOSE, 0);
}

static void gs_caw_unlock(void *ctx);

static void gs_release(void *ctx)
{
	struct gateway_shared *gs = ctx;

	gs_off_loop(gs);
	for (struct gateway_shared **p = &gateway_shared_lus; *p; p = &(*p)->next) {
		if (*p == gs) {
			*p = gs->next;
			break;
		}
	}
	gs->released = true;
	while (gs->caw_q) {
		struct caw_waiter *w = gs->caw_q;
		gs->caw_q = w->next;
		w->done(w->arg, -ENODEV);
		free(w);
	}
	/*
	 * A lock still held goes with the LU, though its command's write may still be at the
	 * cluster. On a worker: the release waits for every other gateway's answer, up to
	 * RBD_LU_STATE_HOLD_MS for one that is stopped.
	 */
	gs_caw_unlock(gs);
	if (gs->jobs == 0)
		gs_close(gs);
}

/* ---- the group's COMPARE AND WRITE lock ---- */

static void gs_caw_next(struct gateway_shared *gs)
{
	if (gs->released || gs->caw != CAW_FREE || !gs->caw_q)
		return;
	gs->caw = CAW_ASKING;
	/* Copied: the waiter may go (its LU released) while the job runs. */
	struct gs_job *gj = gs_job_new(gs, GJ_CAW_LOCK, 0);
	gj->off = gs->caw_q->off;
	gj->len = gs->caw_q->len;
	gs_job_go(gj);
}

static void gs_caw_lock(void *ctx, uint64_t off, uint64_t len, void (*done)(void *arg, int rc), void *arg)
{
	struct gateway_shared *gs = ctx;
	struct caw_waiter *w = xcalloc(1, sizeof(*w));

	w->done = done;
	w->arg = arg;
	w->off = off;
	w->len = len;
	if (!gs->caw_q)
		gs->caw_tail = &gs->caw_q;
	*gs->caw_tail = w;
	gs->caw_tail = &w->next;
	gs_caw_next(gs);
}

static void gs_caw_unlock(void *ctx)
{
	struct gateway_shared *gs = ctx;

	if (gs->caw != CAW_HELD)
		return;
	gs->caw = CAW_GIVING;
	gs_job_submit(gs, GJ_CAW_UNLOCK, 0);
}

static void gs_job_work(struct offload_job *j)
{
	struct gs_job *gj = (struct gs_job *)j;

	switch (gj->kind) {
	case GJ_FENCE:
		gj->rc = rbd_lu_state_fence(gj->gs->rs, gj->peer, gj->addr[0]);
		break;
	case GJ_CAW_LOCK:
		gj->rc = rbd_lu_state_caw_lock(gj->gs->rs, gj->off, gj->len);
		break;
	case GJ_CAW_UNLOCK:
		rbd_lu_state_caw_unlock(gj->gs->rs);
		break;
	case GJ_LOCK_SAMPLE:
		gj->rc = rbd_lock_owner_sample(gj->gs->lo, &gj->sample);
		break;
	case GJ_WITNESS:
		for (size_t i = 0; i < gj->nask; i++) {
			if (rbd_lu_state_peer_addr(gj->gs->rs, gj->ask[i], gj->addr[i], sizeof(gj->addr[i])) < 0)
				gj->addr[i][0] = '\0';
		}
		gj->rc = rbd_lu_state_witness(gj->gs->rs, gj->seen, CFG_MAX_GATEWAYS, &gj->nseen);
		break;
	case GJ_CLOSE:
		/*
		 * The last gateway to let the LU go removes the record when it holds nothing
		 * (docs/gateways.md): an unwatch, a read and a notification that waits for the others.
		 */
		rbd_lu_state_close(gj->gs->rs, true);
		rbd_lock_owner_close(gj->gs->lo);
		break;
	}
}

static void gs_lock_sampled(struct gateway_shared *gs, const struct gs_job *gj)
{
	gs->sampling = false;
	if (gs->released)
		return;
	if (gj->rc < 0) {
		if (gs->nsamples)
			log_warn("target %s LUN %u: cannot see who holds the image's exclusive lock: %s (the "
				 "optimized gateway stays as it is)", gs->node->cfg->name, gs->lun, strerror(-gj->rc));
		gs->nsamples = 0;
	} else {
		gs->before = gs->last;
		gs->last = gj->sample;
		if (gs->nsamples < 2)
			gs->nsamples++;
		if (gs->nsamples == 2)
			gs->first = false;
	}
	if (gs->node->gateways)
		apply_states(gs->node->gateways);
}

static void gs_job_done(struct offload_job *j)
{
	struct gs_job *gj = (struct gs_job *)j;
	struct gateway_shared *gs = gj->gs;

	switch (gj->kind) {
	case GJ_FENCE:
		if (gj->rc < 0 && !gs->released)
			log_warn("target %s LUN %u: cannot fence gateway %u's cluster client: %s (its watches and "
				 "locks go when the cluster times them out)", gs->node->cfg->name, gs->lun, gj->peer,
				 strerror(-gj->rc));
		break;
	case GJ_CAW_LOCK:
		gs->caw = gj->rc == 0 ? CAW_HELD : CAW_FREE;
		if (gs->released) {
			/* Given back after it, in order (the same key), before the record closes. */
			gs_caw_unlock(gs);
			break;
		}
		struct caw_waiter *w = gs->caw_q;
		gs->caw_q = w->next;
		w->done(w->arg, gj->rc);
		free(w);
		gs_caw_next(gs);
		break;
	case GJ_CAW_UNLOCK:
		gs->caw = CAW_FREE;
		gs_caw_next(gs);
		break;
	case GJ_LOCK_SAMPLE:
		gs_lock_sampled(gs, gj);
		break;
	case GJ_WITNESS:
		gateway_witness_answered(gj); /* its round frees it, and counts it off gs->jobs */
		return;
	case GJ_CLOSE:
		free(gj);
		free(gs);
		return;
	}
	free(gj);
	if (--gs->jobs == 0 && gs->released)
		gs_close(gs);
}

struct gs_job *gs_job_new(struct gateway_shared *gs, enum gs_job_kind kind, uint16_t peer)
{
	struct gs_job *gj = xcalloc(1, sizeof(*gj));

	gj->gs = gs;
	gj->kind = kind;
	gj->peer = peer;
	gj->job.work = gs_job_work;
	gj->job.done = gs_job_done;
	/* The lock's calls in order, one at a time; fencing, lock samples and the witness beside them. */
	switch (kind) {
	case GJ_FENCE:
		gj->job.key = &gs->jobs;
		break;
	case GJ_LOCK_SAMPLE:
		gj->job.key = &gs->lo;
		break;
	case GJ_WITNESS:
		gj->job.key = &gs->witnessing;
		break;
	default:
		gj->job.key = gs;
		break;
	}
	return gj;
}

void gs_job_go(struct gs_job *gj)
{
	gj->gs->jobs++;
	/*
	 * Not through gs->node, which a released LU may outlive. At shutdown the nodes go before the
	 * engines, whose pools then run what is queued and, in their last reap, what a done callback
	 * submits (the close after a release): the record lets its cluster connection go before the
	 * pool goes.
	 */
	offload_submit(gj->gs->off, &gj->job);
}

static void gs_job_submit(struct gateway_shared *gs, enum gs_job_kind kind, uint16_t peer)
{
	gs_job_go(gs_job_new(gs, kind, peer));
}

/* A LU whose record cannot be reached at all: every load fails, so nothing stale is answered. */
static int broken_load(void *ctx, struct sbuf *rec, uint64_t *version)
{
	(void)ctx;
	(void)rec;
	(void)version;
	return -ENOTCONN;
}

static int broken_store(void *ctx, const void *rec, size_t len, uint64_t expect, uint64_t *version)
{
	(void)ctx;
	(void)rec;
	(void)len;
	(void)expect;
	(void)version;
	return -ENOTCONN;
}

static const struct scsi_shared_ops gs_broken_ops = {
	.load = broken_load,
	.store = broken_store,
};

static const struct scsi_shared_ops gs_ops = {
	.load = gs_load,
	.store = gs_store,
	.ack = gs_ack,
	.release = gs_release,
	.caw_lock = gs_caw_lock,
	.caw_unlock = gs_caw_unlock,
};

static void gs_on_notice(void *arg, uint32_t events)
{
	struct gateway_shared *gs = arg;

	(void)events;
	rbd_lu_state_clear(gs->rs);
	scsi_target_lu_shared_changed(gs->node->scsi, gs->lun);
}

static void gs_tick(void *arg)
{
	struct gateway_shared *gs = arg;
	/* Holds of other gateways whose release never came end here, at most this late. */
	rbd_lu_state_expire_holds(gs->rs);
	scsi_target_lu_shared_changed(gs->node->scsi, gs->lun);
}

static void gs_on_loop(struct gateway_shared *gs)
{
	struct loop *l = gs->node->srv->loop;

	if (gs->on_loop)
		return;
	if (loop_watch_add(l, &gs->watch, rbd_lu_state_fd(gs->rs), EPOLLIN, gs_on_notice, gs) < 0) {
		log_warn("target %s LUN %u: reservation record changes are seen every %u ms only", gs->node->cfg->name,
			 gs->lun, GATEWAY_SHARED_RELOAD_MS);
	}
	loop_timer_start(l, &gs->timer, GATEWAY_SHARED_RELOAD_MS, GATEWAY_SHARED_RELOAD_MS, gs_tick, gs);
	gs->on_loop = true;
}

/* Whether t's LU l (opened as st) is an RBD image its gateway group shares. */
static bool lu_is_shared(const struct cfg_target *t, const struct cfg_lun *l, struct store *st)
{
	return t->gateway && t->ngateways >= 2 && store_is_rbd(st) && l->path && strncmp(l->path, "rbd:", 4) == 0 &&
	       strchr(l->path + 4, '/');
}

void gateway_lu_open(const struct cfg_target *t, const struct cfg_lun *l, struct store *st, struct gateway_lu_open *o)
{
	*o = (struct gateway_lu_open){0};
	/* A cache turned on by the image's configuration is refused when the LU is added. */
	if (!lu_is_shared(t, l, st) || store_rbd_cache_override(st))
		return;
	char *pool = xstrdup(l->path + 4), *image = strchr(pool, '/');
	*image++ = '\0';
	struct store_rbd_spec spec = {.pool = pool, .image = image, .ns = l->rbd_namespace, .conf = l->rbd_conf,
				      .id = l->rbd_id};
	o->tried = true;
	o->rs = rbd_lu_state_open(&spec, t->gateway, &o->err);
	if (o->rs) {
		char *lerr = NULL;
		if (!(o->lo = rbd_lock_owner_open(&spec, &lerr))) {
			log_warn("target %s LUN %u: the image's exclusive lock does not choose the optimized gateway "
				 "(%s)", t->name, l->lun, lerr);
			free(lerr);
		}
	}
	free(pool);
}

void gateway_lu_open_discard(struct gateway_lu_open *o)
{
	if (o->rs)
		rbd_lu_state_close(o->rs, false);
	rbd_lock_owner_close(o->lo);
	free(o->err);
	*o = (struct gateway_lu_open){0};
}

void gateway_lu_added(struct tnode *n, const struct cfg_lun *l, struct store *st, struct gateway_lu_open *pre)
{
	const struct cfg_target *t = n->cfg;
	struct gateway_lu_open own;

	if (!lu_is_shared(t, l, st))
		return;
	const char *cache = store_rbd_cache_override(st);
	if (cache) {
		/* Opened before the target became a group (a reload): refused now as at open (docs/ceph.md). */
		log_error("target %s LUN %u: the %s's configuration turns librbd's cache on, which a gateway group "
			  "cannot serve: reservation commands and medium access fail on this gateway", t->name, l->lun,
			  cache);
		scsi_target_share_lu(n->scsi, l->lun, &gs_broken_ops, NULL);
		return;
	}
	if (!pre || !pre->tried) {
		gateway_lu_open(t, l, st, &own);
		pre = &own;
	}
	struct rbd_lu_state *rs = pre->rs;
	struct rbd_lock_owner *lo = pre->lo;
	if (!rs) {
		/* Answering from a state of our own would let two gateways grant two reservations. */
		log_error("target %s LUN %u: no reservation record in the cluster (%s): reservation commands and "
			  "medium access fail on this gateway", t->name, l->lun, pre->err);
		gateway_lu_open_discard(pre);
		scsi_target_share_lu(n->scsi, l->lun, &gs_broken_ops, NULL);
		return;
	}
	*pre = (struct gateway_lu_open){0};
	/* The others' holds for their COMPARE AND WRITEs act on this gateway's writes to the image. */
	rbd_lu_state_set_gate(rs, store_rbd_gate(st));
	struct gateway_shared *gs = xcalloc(1, sizeof(*gs));
	gs->node = n;
	gs->off = store_engine_offload(n->srv->engine);
	gs->lun = l->lun;
	gs->rs = rs;
	gs->lo = lo;
	gs->first = true;
	gs->next = gateway_shared_lus;
	gateway_shared_lus = gs;
	if (scsi_target_share_lu(n->scsi, l->lun, &gs_ops, gs) < 0) {
		gs_release(gs);
		return;
	}
	gs_on_loop(gs);
	if (n->gateways)
		gs_sample_locks(n); /* the probes are running: no need to wait for their next round */
	log_info("target %s LUN %u: reservations kept with the gateway group in %s", t->name, l->lun, l->path);
}

void gateway_stop(struct tnode *n)
{
	struct gateway_probes *g = n->gateways;

	for (struct gateway_shared *gs = gateway_shared_lus; gs; gs = gs->next) {
		if (gs->node == n)
			gs_off_loop(gs);
	}
	if (!g)
		return;
	loop_timer_stop(n->srv->loop, &g->timer);
	for (size_t i = 0; i < g->npeers; i++) {
		peer_close(g, &g->peers[i]);
		gateway_peer_forget_fences(&g->peers[i]);
	}
	free(g);
	n->gateways = NULL;
}

static bool peer_addr(const struct cfg_gateway *cg, struct gateway_peer *p)
{
	memset(&p->addr, 0, sizeof(p->addr));
	if (strchr(cg->host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&p->addr;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(cg->port);
		p->addr_len = sizeof(*a);
		return inet_pton(AF_INET6, cg->host, &a->sin6_addr) == 1;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)&p->addr;
	a->sin_family = AF_INET;
	a->sin_port = htons(cg->port);
	p->addr_len = sizeof(*a);
	return inet_pton(AF_INET, cg->host, &a->sin_addr) == 1;
}

void gateway_apply(struct tnode *n)
{
	const struct cfg_target *t = n->cfg;
	uint16_t ids[CFG_MAX_GATEWAYS];
	size_t nids = 0;

	gateway_stop(n);
	for (struct gateway_shared *gs = gateway_shared_lus; gs; gs = gs->next) {
		if (gs->node == n)
			gs_on_loop(gs);
	}
	for (size_t i = 0; t->gateway && i < t->ngateways && nids < CFG_MAX_GATEWAYS; i++)
		ids[nids++] = t->gateways[i].id;
	scsi_target_set_gateways(n->scsi, t->gateway, ids, nids);
	if (nids < 2)
		return;
	struct gateway_probes *g = xcalloc(1, sizeof(*g));
	g->node = n;
	for (size_t i = 0; i < t->ngateways; i++) {
		const struct cfg_gateway *cg = &t->gateways[i];
		struct gateway_peer *p = &g->peers[g->npeers];
		if (cg->id == t->gateway || !peer_addr(cg, p))
			continue;
		p->owner = g;
		p->id = cg->id;
		p->fd = -1;
		/* Until a probe says otherwise, as the state the group already has. */
		p->alive = scsi_target_tpg_state(n->scsi, cg->id) != ALUA_UNAVAILABLE;
		g->npeers++;
	}
	g->since_ms = loop_now_ms();
	n->gateways = g;
	apply_states(g);
	loop_timer_start(n->srv->loop, &g->timer, 0, GATEWAY_PROBE_INTERVAL_MS, probes_tick, g);
}
