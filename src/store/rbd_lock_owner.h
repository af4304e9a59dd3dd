/*
 * Which gateway of a group holds an RBD image's exclusive lock (docs/gateways.md): the lock is
 * librbd's cls lock "rbd_lock" on the image's header object, taken with the tag "internal" by
 * the client that writes; the holder is named by its client address, which each gateway
 * publishes on the group's reservation record (rbd_lu_state.h, RBD_LU_STATE_GATEWAY_XATTR).
 *
 * Asked of the cluster directly rather than through an open librbd image: the gateway's image
 * handle belongs to its store (and changes when the store reopens it), and a second read-write
 * handle would take part in the lock's hand-overs itself.
 */
#ifndef ISTHMUS_STORE_RBD_LOCK_OWNER_H
#define ISTHMUS_STORE_RBD_LOCK_OWNER_H

#include <stdbool.h>
#include <stdint.h>

struct store_rbd_spec;
struct rbd_lock_owner;

struct rbd_lock_sample {
	bool held;          /* a client holds the exclusive lock */
	unsigned gateway;   /* the holder's gateway number; 0: nobody, or a client no gateway published */
	/*
	 * The header object's version: every taking or giving of the lock writes the object, so
	 * two samples with the same version saw a lock that did not move in between.
	 */
	uint64_t version;
};

/* On the image's cluster connection; does not wait for the cluster. NULL with *err set (malloc'd). */
struct rbd_lock_owner *rbd_lock_owner_open(const struct store_rbd_spec *spec, char **err);
void rbd_lock_owner_close(struct rbd_lock_owner *o);
/*
 * Who holds the lock now: 0 or a negative errno. Blocks on the cluster (two OSD reads, three
 * the first time): a worker's call, one at a time per rbd_lock_owner.
 */
int rbd_lock_owner_sample(struct rbd_lock_owner *o, struct rbd_lock_sample *out);

#endif
