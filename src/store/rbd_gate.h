/*
 * The holds other gateways of a group put on this gateway's writes to an RBD image while they run
 * a COMPARE AND WRITE longer than librbd's atomic unit (docs/gateways.md): such a command reads,
 * compares and writes, and no write of another gateway may land in between. The holder asks every
 * gateway watching the group's record (rbd_lu_state.c) to hold; each one, here, makes the
 * image's writes that overlap the holder's range wait, and acknowledges once the writes that
 * were already under way have ended. The hold ends with the holder's release, or by itself at the
 * end of the lease the holder gave (the lease of the group's lock), so that a holder that died
 * holds nothing for longer.
 *
 * A gate belongs to one RBD store (its writes pass it) and to the record's watch (which sets and
 * ends holds); each keeps a reference, and either may go first. Any thread.
 */
#ifndef ISTHMUS_STORE_RBD_GATE_H
#define ISTHMUS_STORE_RBD_GATE_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct rbd_gate;

/* Holds at once (one per holding gateway and LU); a hold past them is refused. */
#define RBD_GATE_MAX_HOLDS 16u
/* The longest lease a hold is given, whatever the holder asks for, ms. */
#define RBD_GATE_MAX_LEASE_MS 120000u

/* The gate of an RBD store, as a new reference (rbd_gate_put); NULL for other stores. */
struct rbd_gate *store_rbd_gate(struct store *st);
void rbd_gate_put(struct rbd_gate *g);

/*
 * Who acknowledges a hold once it is in force: ack(arg, notify_id, cookie), called with the
 * gate's lock held, from whichever thread saw the last write under way end (it must not block).
 * NULL: nobody any more (the record's watch is gone): every hold ends, and the writes held fail
 * with -ETIMEDOUT (NOT READY: the initiator retries, through another path if it likes).
 */
void rbd_gate_set_ack(struct rbd_gate *g, void (*ack)(void *arg, uint64_t notify_id, uint64_t cookie), void *arg);

/*
 * Holds the writes overlapping [off, off + len) for holder (a new hold of the same holder
 * replaces its last one) until rbd_gate_release or lease_ms from now (at most
 * RBD_GATE_MAX_LEASE_MS); the acknowledgement (notify_id, cookie) goes out once every write
 * that had passed the gate before has ended, maybe before this returns. False when the table
 * is full: nothing is held and nothing acknowledged.
 */
bool rbd_gate_hold(struct rbd_gate *g, const char *holder, uint64_t off, uint64_t len, uint64_t lease_ms,
		   uint64_t notify_id, uint64_t cookie);
/* The holder's hold ends (its COMPARE AND WRITE wrote or miscompared); its writes go on. */
void rbd_gate_release(struct rbd_gate *g, const char *holder);
/* Holds past their lease end; run periodically. */
void rbd_gate_expire(struct rbd_gate *g);

#endif
