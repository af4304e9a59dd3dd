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
 * The rule, in one place: the lowest-numbered gateway that answers is active/optimized, the
 * other answering ones active/non-optimized, the silent ones unavailable. Every gateway that
 * sees the same peers says the same, and initiators that follow it send their I/O through one
 * gateway, which then keeps the image's exclusive lock rather than passing it back and forth
 * with the others (docs/gateways.md says why the lock itself does not decide).
 * gateway_optimized: the optimized group, given the peers that answer (alive, n of them).
 */
uint16_t gateway_optimized(uint16_t local, const uint16_t *alive, size_t n);
enum scsi_alua_state gateway_decide_state(uint16_t local, uint16_t tpg, bool alive, uint16_t optimized);

/*
 * An RBD LU of a gateway group keeps its reservations in a record in the cluster
 * (store/rbd_lu_state.h), loaded on every change notice and at least this often, ms.
 */
#define GATEWAY_SHARED_RELOAD_MS 5000u
struct cfg_lun;
struct store;
/* After the LU was added to n's SCSI target: shares its reservation state when it is an RBD image. */
void gateway_lu_added(struct tnode *n, const struct cfg_lun *l, struct store *st);

/* Applies n->cfg's gateway group to its SCSI target and starts (or stops) probing the peers. */
void gateway_apply(struct tnode *n);
/* Stops probing; before the node is freed. */
void gateway_stop(struct tnode *n);

#endif
