/*
 * A gateway group's reservation record of an RBD LU (docs/gateways.md): one RADOS object next to
 * the image, in its pool and namespace, named isthmus.lu.<image>. Every change is a write that
 * asserts the object version it was made from, so of two gateways storing at once one wins and
 * the other gets -ESTALE; the winner then notifies the object's watchers and waits for their
 * acknowledgements, which each gateway sends once it has loaded the record again.
 *
 * The same object carries, as extended attributes, the cluster address of each gateway's client
 * ("isthmus.gateway.N"): a gateway that sees a peer go away fences that client (blocklists it),
 * so its watches and the image's exclusive lock it may hold go at once instead of after the
 * cluster's watch timeouts. A second object, isthmus.caw.<image>, is the group's COMPARE AND
 * WRITE lock.
 *
 * load, store, ack, fence and the compare-and-write lock block on the cluster (run them on
 * workers; one load or store at a time); open does not wait for it.
 */
#ifndef ISTHMUS_STORE_RBD_LU_STATE_H
#define ISTHMUS_STORE_RBD_LU_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbuf;
struct store_rbd_spec;
struct rbd_lu_state;

/* The record's object name (with the image's name) and each gateway's address attribute on it. */
#define RBD_LU_STATE_OID "isthmus.lu.%s"
#define RBD_LU_STATE_GATEWAY_XATTR "isthmus.gateway.%u"

/* How long a store waits for the other gateways to load the record, ms. */
#define RBD_LU_STATE_NOTIFY_MS 5000u
/*
 * Seconds after which the cluster drops the watch of a gateway that stopped answering without
 * being fenced: until then each store waits RBD_LU_STATE_NOTIFY_MS for it.
 */
#define RBD_LU_STATE_WATCH_TIMEOUT 10u
/* Largest record read (the SCSI layer refuses larger ones too: LU_SHARED_MAX_RECORD). */
#define RBD_LU_STATE_MAX_BYTES (8u << 20)
/* Change notices kept for acknowledgement; past it the newest are left to time out. */
#define RBD_LU_STATE_MAX_NOTICES 1024u
/*
 * The COMPARE AND WRITE lock: a gateway waits at most RBD_LU_STATE_CAW_WAIT_MS for it (then the
 * command gets NOT READY, which initiators retry). It is held with a lease of twice the OSD op
 * timeout plus RBD_LU_STATE_CAW_LEASE_EXTRA_S (the read and the write of one compare-and-write
 * each end within the op timeout), after which the cluster drops it: a gateway that dies holding
 * it holds up the others for at most that long.
 */
#define RBD_LU_STATE_CAW_WAIT_MS 5000u
#define RBD_LU_STATE_CAW_LEASE_EXTRA_S 2u
/* How long closing waits for the other gateways' answer to "is anyone still watching", ms. */
#define RBD_LU_STATE_CLOSE_PROBE_MS 1000u

/* gateway: this gateway's number in its group. Uses the image's cluster connection. NULL with *err set. */
struct rbd_lu_state *rbd_lu_state_open(const struct store_rbd_spec *spec, unsigned gateway, char **err);
/*
 * Unwatches and, when remove is set, the record shows no registration and no reservation, and no
 * other gateway watches it, removes the record and the lock object (docs/gateways.md); not when
 * the cluster did not answer the unwatch. Blocks for at most the OSD op timeout plus a second,
 * plus, when it removes, RBD_LU_STATE_CLOSE_PROBE_MS and three OSD operations.
 */
void rbd_lu_state_close(struct rbd_lu_state *s, bool remove);
/* Readable when the record changed, or the watch on it was lost; rbd_lu_state_clear empties it. */
int rbd_lu_state_fd(const struct rbd_lu_state *s);
void rbd_lu_state_clear(struct rbd_lu_state *s);

int rbd_lu_state_load(struct rbd_lu_state *s, struct sbuf *rec, uint64_t *version);
int rbd_lu_state_store(struct rbd_lu_state *s, const void *rec, size_t len, uint64_t expect, uint64_t *version);
void rbd_lu_state_ack(struct rbd_lu_state *s);

/*
 * The cluster as witness before fencing (docs/gateways.md): a notification on the record with
 * this payload, which every gateway's watch acknowledges at once with "gateway N" (its number)
 * instead of after a load. A peer that answers it is alive and reaches the cluster, however its
 * probes fare; one that does not within RBD_LU_STATE_WITNESS_MS is dead or cut off from the
 * cluster too. The timeout adds up to that much to the failover from a killed gateway, whose
 * watch the cluster still holds.
 */
#define RBD_LU_STATE_WITNESS_MSG "isthmus.witness"
#define RBD_LU_STATE_WITNESS_MS 1000u
/*
 * Notifies the record's watchers with RBD_LU_STATE_WITNESS_MSG and returns in seen (at most
 * max entries, *nseen of them) the gateway numbers that acknowledged, this one included.
 * Blocks for at most RBD_LU_STATE_WITNESS_MS plus the OSD round trip. 0, or -errno when the
 * cluster gave no answer to decode (then nobody counts as seen).
 */
int rbd_lu_state_witness(struct rbd_lu_state *s, unsigned *seen, size_t max, size_t *nseen);

/*
 * The client address gateway number `gateway` announced on the record, into addr (len bytes):
 * its length, 0 when it announced none, or -errno. Read before a witness, so that what is fenced
 * after it is the client that was gone, not one a restarted gateway announced meanwhile.
 */
int rbd_lu_state_peer_addr(struct rbd_lu_state *s, unsigned gateway, char *addr, size_t len);
/*
 * Blocklists addr (as rbd_lu_state_peer_addr gave it) or, when addr is NULL or empty, the client
 * gateway number `gateway` announced, if it announced one. 0 or -errno.
 */
int rbd_lu_state_fence(struct rbd_lu_state *s, unsigned gateway, const char *addr);

/*
 * The cluster connection the record is on, as an identity only: records of images on one
 * cluster (one conf and client id) give the same pointer, records on different clusters
 * different ones. A peer has one client, and one address, per cluster.
 */
const void *rbd_lu_state_cluster(const struct rbd_lu_state *s);

/*
 * Holds for a long COMPARE AND WRITE (docs/gateways.md): once the holder has the group's lock it
 * notifies the record's watchers with "isthmus.hold OFF LEN LEASE_MS HOLDER" (bytes of the image,
 * the ms left of the lock's lease, the holder's lock cookie) and waits RBD_LU_STATE_HOLD_MS at
 * most for every one to answer RBD_LU_STATE_HELD: each answers once its writes to the range wait
 * and none of them is under way (rbd_gate.h). After the write or the miscompare,
 * "isthmus.release HOLDER" ends the holds; the lease ends them if it never comes.
 */
#define RBD_LU_STATE_HOLD_MSG "isthmus.hold"
#define RBD_LU_STATE_RELEASE_MSG "isthmus.release"
#define RBD_LU_STATE_HELD "held"
#define RBD_LU_STATE_HOLD_MS 2000u

/*
 * This gateway's writes to the image (the store's gate, whose reference s takes): the other
 * gateways' holds act on it. Before the first load (the watch).
 */
struct rbd_gate;
void rbd_lu_state_set_gate(struct rbd_lu_state *s, struct rbd_gate *gate);
/* Ends the holds past their lease (run periodically). */
void rbd_lu_state_expire_holds(struct rbd_lu_state *s);

/*
 * Takes the group's COMPARE AND WRITE lock (waiting RBD_LU_STATE_CAW_WAIT_MS at most) for a
 * compare-and-write of [off, off + len) of the image and, when librbd cannot do that one in a
 * single call, has the other gateways hold their writes to it (adding at most
 * RBD_LU_STATE_HOLD_MS): 0, or -errno and the lock is not held.
 */
int rbd_lu_state_caw_lock(struct rbd_lu_state *s, uint64_t off, uint64_t len);
/* Ends the holds asked for (waiting RBD_LU_STATE_HOLD_MS at most) and gives the lock back. */
void rbd_lu_state_caw_unlock(struct rbd_lu_state *s);

#endif
