/*
 * Peer liveness in a gateway group (docs/gateways.md): each gateway probes the others' portals
 * with a TCP connect and turns what it learns into ALUA states through one decision function.
 */
#ifndef ISTHMUS_TARGET_GATEWAY_H
#define ISTHMUS_TARGET_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scsi/scsi.h"

struct tnode;

#define GATEWAY_PROBE_INTERVAL_MS 2000u /* a probe of every peer this often */
#define GATEWAY_PROBE_TIMEOUT_MS 1500u  /* a connect that has not completed by then: peer down */

/*
 * What an RBD image's exclusive lock says about the optimized group, as sampled every probe
 * interval (docs/gateways.md).
 */
enum gateway_lock {
	GATEWAY_LOCK_NOT_FOLLOWED, /* the group shares no RBD image, or its lock cannot be asked */
	GATEWAY_LOCK_MOVING,       /* fewer than two samples, a failed one, or it moved between the last two */
	GATEWAY_LOCK_AT_REST,      /* the last two samples, a probe interval apart, saw it stay where it is
				    * (or the gateway's very first sample) */
};

/*
 * The rule, in one place: the gateway holding the image's exclusive lock is active/optimized
 * once the lock has stayed with it for a whole probe interval; while the lock moves (writes
 * through several gateways at once) the optimized gateway stays the one it is, so the states
 * do not follow every hand-over; when nobody (or no gateway that answers) holds it, or the
 * group shares no RBD image, the lowest-numbered gateway that answers. The other answering
 * gateways are active/non-optimized, the silent ones unavailable.
 * gateway_optimized: the optimized group, given the peers that answer (alive, n of them), the
 * lock (holder 0: nobody, or a client of no gateway) and the optimized group so far (0: none).
 */
uint16_t gateway_optimized(uint16_t local, const uint16_t *alive, size_t n, enum gateway_lock lock, uint16_t holder,
			   uint16_t current);
enum scsi_alua_state gateway_decide_state(uint16_t local, uint16_t tpg, bool alive, uint16_t optimized);

/*
 * Fencing a peer covers every cluster the target's shared LUs are on: the peer has a client, with
 * its own address, on each. Given the shared LUs' clusters (an identity: the same pointer for
 * LUs on one cluster) and LUNs, n of each, writes into pick the index of one LU per cluster, its
 * lowest-numbered one, through which that cluster is asked about the peer (the witness) and the
 * peer's client there fenced, in the order the clusters first appear; returns how many.
 */
size_t gateway_fence_plan(const void *const *cluster, const uint16_t *lun, size_t n, size_t *pick);

/*
 * The clusters as witnesses, each for itself (docs/gateways.md): before a peer the probes lost is
 * fenced, each cluster the target shares LUs on is asked whether the peer's client there is
 * alive. w[i] is cluster i's answer: rc < 0 when it gave none to decode, else the gateway numbers
 * that acknowledged (seen, nseen of them). Sets fence[i] when the peer is to be fenced on cluster
 * i (it did not acknowledge there, or the cluster gave no answer) and returns how many: a cluster
 * that still sees the peer keeps it, whatever the others say, so a partition between the
 * gateways fences nobody there, and a peer gone from one cluster only is fenced on that one.
 */
struct gateway_witness {
	int rc;
	const unsigned *seen;
	size_t nseen;
};
size_t gateway_witness_verdict(uint16_t peer, const struct gateway_witness *w, size_t n, bool *fence);

/*
 * An RBD LU of a gateway group keeps its reservations in a record in the cluster
 * (store/rbd_lu_state.h), loaded on every change notice and at least this often, ms.
 */
#define GATEWAY_SHARED_RELOAD_MS 5000u
struct cfg_lun;
struct cfg_target;
struct store;
struct rbd_lu_state;
struct rbd_lock_owner;

/*
 * What a gateway group's RBD LU holds of the cluster besides its image: the reservation record
 * and the view of the image's exclusive lock. Opening them waits for the cluster, so a change of
 * a running target opens them on the worker that opens its images (gateway_lu_open) and hands
 * them to gateway_lu_added; at start-up gateway_lu_added opens them itself.
 */
struct gateway_lu_open {
	bool tried;                   /* the LU is one of a group and the opens were made */
	struct rbd_lu_state *rs;      /* NULL: no record, err says why */
	struct rbd_lock_owner *lo;    /* NULL: the optimized gateway is not chosen by the lock */
	char *err;
};
/* Any thread: opens what t's LU l (its image open as st) shares with the group, if it is one. */
void gateway_lu_open(const struct cfg_target *t, const struct cfg_lun *l, struct store *st, struct gateway_lu_open *o);
/* Any thread: lets go what gateway_lu_open opened and nobody took (it waits for the cluster). */
void gateway_lu_open_discard(struct gateway_lu_open *o);
/*
 * After the LU was added to n's SCSI target: shares its reservation state when it is an RBD
 * image of a group, taking what pre opened (NULL or not tried: opened here).
 */
void gateway_lu_added(struct tnode *n, const struct cfg_lun *l, struct store *st, struct gateway_lu_open *pre);

/* Applies n->cfg's gateway group to its SCSI target and starts (or stops) probing the peers. */
void gateway_apply(struct tnode *n);
/* Stops probing; before the node is freed. */
void gateway_stop(struct tnode *n);

#endif
