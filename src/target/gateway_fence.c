/*
 * Fencing a gateway that went away (docs/gateways.md): before a peer the probes lost is
 * blocklisted, every cluster the target shares LUs on is asked, as a witness, whether the peer's
 * client there is still alive; the peer is then fenced on exactly the clusters it is gone from.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/rbd_lu_state.h"
#include "target/gateway.h"
#include "target/gateway_int.h"
#include "target/server.h"
#include "util/log.h"
#include "util/sbuf.h"

size_t gateway_fence_plan(const void *const *cluster, const uint16_t *lun, size_t n, size_t *pick)
{
	size_t npick = 0;

	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < npick && cluster[pick[k]] != cluster[i])
			k++;
		if (k == npick)
			pick[npick++] = i;
		else if (lun[i] < lun[pick[k]])
			pick[k] = i;
	}
	return npick;
}

static bool acknowledged(const struct gateway_witness *w, uint16_t peer)
{
	for (size_t i = 0; i < w->nseen; i++) {
		if (w->seen[i] == peer)
			return true;
	}
	return false;
}

size_t gateway_witness_verdict(uint16_t peer, const struct gateway_witness *w, size_t n, bool *fence)
{
	size_t count = 0;

	for (size_t i = 0; i < n; i++) {
		/* No answer to decode proves nothing about the peer: fenced, as without a witness. */
		fence[i] = w[i].rc < 0 || !acknowledged(&w[i], peer);
		count += fence[i];
	}
	return count;
}

/*
 * One question to every cluster of a node about its suspect peers: a witness job per cluster, on
 * the record of that cluster's lowest-numbered shared LU. The jobs (and so their LUs) are kept
 * until the last one answered, and the round decides for every peer at once.
 */
struct witness_round {
	unsigned pending;
	size_t n;
	struct gs_job *jobs[];
};

static bool fenced_on(const struct gateway_peer *p, const void *cluster)
{
	for (size_t i = 0; i < p->nfenced; i++) {
		if (p->fenced[i] == cluster)
			return true;
	}
	return false;
}

static void mark_fenced(struct gateway_peer *p, const void *cluster)
{
	if (fenced_on(p, cluster))
		return;
	p->fenced = xrealloc(p->fenced, (p->nfenced + 1) * sizeof(*p->fenced));
	p->fenced[p->nfenced++] = cluster;
}

void gateway_peer_forget_fences(struct gateway_peer *p)
{
	free(p->fenced);
	p->fenced = NULL;
	p->nfenced = 0;
}

/* A cluster none of the node's LUs is on any more is forgotten (its identity may be reused). */
static void prune_fences(struct gateway_peer *p, const void *const *cluster, size_t n)
{
	size_t kept = 0;

	for (size_t i = 0; i < p->nfenced; i++) {
		for (size_t k = 0; k < n; k++) {
			if (cluster[k] == p->fenced[i]) {
				p->fenced[kept++] = p->fenced[i];
				break;
			}
		}
	}
	p->nfenced = kept;
}

/*
 * Asks the clusters about the suspect peers, each cluster about the peers not fenced on it yet:
 * every gateway watches every record of a cluster, and a peer's client serves all its LUs there,
 * so one LU per cluster speaks for the cluster (gateway_fence_plan). At most one round per node
 * is out; a peer that becomes suspect meanwhile is decided by it, or by the next failed probe.
 * Without a shared LU there is nothing to fence.
 */
void gateway_witness(struct tnode *n)
{
	struct gateway_probes *g = n->gateways;
	size_t count = 0;

	if (!g)
		return;
	for (struct gateway_shared *gs = gateway_shared_lus; gs; gs = gs->next) {
		if (gs->node != n || gs->released)
			continue;
		if (gs->witnessing)
			return;
		count++;
	}
	struct gateway_shared **lus = xcalloc(count + 1, sizeof(*lus));
	const void **cluster = xcalloc(count + 1, sizeof(*cluster));
	uint16_t *lun = xcalloc(count + 1, sizeof(*lun));
	size_t *pick = xcalloc(count + 1, sizeof(*pick));
	size_t i = 0;
	for (struct gateway_shared *gs = gateway_shared_lus; gs; gs = gs->next) {
		if (gs->node == n && !gs->released) {
			lus[i] = gs;
			cluster[i] = rbd_lu_state_cluster(gs->rs);
			lun[i] = gs->lun;
			i++;
		}
	}
	size_t npick = gateway_fence_plan(cluster, lun, count, pick);
	struct witness_round *r = xcalloc(1, sizeof(*r) + (npick + 1) * sizeof(r->jobs[0]));
	for (size_t k = 0; k < g->npeers; k++)
		prune_fences(&g->peers[k], cluster, count);
	for (size_t k = 0; k < npick; k++) {
		struct gateway_shared *gs = lus[pick[k]];
		struct gs_job *gj = NULL;
		for (size_t j = 0; j < g->npeers; j++) {
			struct gateway_peer *p = &g->peers[j];
			if (!p->suspect || fenced_on(p, cluster[pick[k]]))
				continue;
			if (!gj)
				gj = gs_job_new(gs, GJ_WITNESS, 0);
			gj->ask[gj->nask++] = p->id;
		}
		if (gj) {
			gj->round = r;
			r->jobs[r->n++] = gj;
		}
	}
	free(pick);
	free(lun);
	free(cluster);
	free(lus);
	if (!r->n) {
		/* No shared LU, or fenced on every cluster already: nothing left to ask. */
		for (size_t k = 0; k < g->npeers; k++) {
			struct gateway_peer *p = &g->peers[k];
			if (p->suspect)
				p->suspect = p->spared = p->told = false;
		}
		free(r);
		return;
	}
	r->pending = (unsigned)r->n;
	for (size_t k = 0; k < r->n; k++) {
		r->jobs[k]->gs->witnessing = true;
		gs_job_go(r->jobs[k]);
	}
}

static size_t asked_slot(const struct gs_job *gj, uint16_t peer)
{
	for (size_t i = 0; i < gj->nask; i++) {
		if (gj->ask[i] == peer)
			return i;
	}
	return SIZE_MAX;
}

/*
 * A peer the probes lost, with every cluster's answer about it: on a cluster where it
 * acknowledged it is alive and reaches that cluster, so it serves its own initiators there and is
 * not fenced there (it stays unavailable here, as it does not answer us); on a cluster where it
 * did not, its client there is fenced, with the address it announced there before the question.
 */
static void witness_judge(struct tnode *n, struct gateway_peer *p, struct witness_round *r)
{
	struct gateway_witness *w = xcalloc(r->n, sizeof(*w));
	struct gs_job **by = xcalloc(r->n, sizeof(*by));
	size_t *slot = xcalloc(r->n, sizeof(*slot));
	bool *fence = xcalloc(r->n, sizeof(*fence));
	size_t m = 0;

	/*
	 * Every watcher answers a notification, so a peer that became suspect after the round went
	 * out is judged by it too, with the address it announces when it is fenced.
	 */
	for (size_t k = 0; k < r->n; k++) {
		struct gs_job *gj = r->jobs[k];
		if (gj->gs->released || fenced_on(p, rbd_lu_state_cluster(gj->gs->rs)))
			continue;
		w[m] = (struct gateway_witness){.rc = gj->rc, .seen = gj->seen, .nseen = gj->nseen};
		by[m] = gj;
		slot[m++] = asked_slot(gj, p->id);
	}
	gateway_witness_verdict(p->id, w, m, fence);
	bool spared = false;
	for (size_t j = 0; j < m; j++) {
		struct gateway_shared *gs = by[j]->gs;
		if (!fence[j]) {
			spared = true;
			if (!p->told)
				log_info("target %s: gateway %u does not answer its probes but acknowledged on the "
					 "cluster of LUN %u within %u ms: alive there and cut off from this gateway only, "
					 "so not fenced there (unavailable here; asked again at every probe)",
					 n->cfg->name, p->id, gs->lun, RBD_LU_STATE_WITNESS_MS);
			continue;
		}
		if (by[j]->rc < 0)
			log_info("target %s: gateway %u does not answer and the cluster of LUN %u gave no witness (%s): "
				 "fencing it there", n->cfg->name, p->id, gs->lun, strerror(-by[j]->rc));
		else
			log_info("target %s: gateway %u does not answer and did not acknowledge on the cluster of LUN "
				 "%u within %u ms: fencing it there", n->cfg->name, p->id, gs->lun,
				 RBD_LU_STATE_WITNESS_MS);
		mark_fenced(p, rbd_lu_state_cluster(gs->rs));
		struct gs_job *f = gs_job_new(gs, GJ_FENCE, p->id);
		if (slot[j] != SIZE_MAX)
			snprintf(f->addr[0], sizeof(f->addr[0]), "%s", by[j]->addr[slot[j]]);
		gs_job_go(f);
	}
	p->spared = spared;
	p->told = spared;
	/* Became suspect after the round went out, and a cluster of the node was not asked: again. */
	for (struct gateway_shared *gs = gateway_shared_lus; gs && !spared && !p->suspect; gs = gs->next) {
		if (gs->node == n && !gs->released && !fenced_on(p, rbd_lu_state_cluster(gs->rs)))
			p->suspect = true;
	}
	free(fence);
	free(slot);
	free(by);
	free(w);
}

/* Returns the node when a peer is left to ask about (witness_judge), else NULL. */
static struct tnode *witness_round_decide(struct witness_round *r)
{
	struct tnode *n = NULL;
	bool again = false;

	/* A LU of the node still there: the node is too (it lets its LUs go before it goes). */
	for (size_t k = 0; k < r->n && !n; k++) {
		if (!r->jobs[k]->gs->released)
			n = r->jobs[k]->gs->node;
	}
	struct gateway_probes *g = n ? n->gateways : NULL;
	for (size_t i = 0; g && i < g->npeers; i++) {
		struct gateway_peer *p = &g->peers[i];
		if (!p->suspect)
			continue;
		p->suspect = false;
		if (!p->alive)
			witness_judge(n, p, r);
		again |= p->suspect;
	}
	return again ? n : NULL;
}

void gateway_witness_answered(struct gs_job *gj)
{
	struct witness_round *r = gj->round;

	if (--r->pending)
		return;
	struct tnode *again = witness_round_decide(r);
	for (size_t k = 0; k < r->n; k++) {
		struct gateway_shared *gs = r->jobs[k]->gs;
		gs->witnessing = false;
		free(r->jobs[k]);
		if (--gs->jobs == 0 && gs->released)
			gs_close(gs);
	}
	free(r);
	if (again)
		gateway_witness(again);
}
