/*
 * A gateway group's reservation record of an RBD LU (docs/gateways.md): one RADOS object next to
 * the image, in its pool and namespace, named isthmus.lu.<image>. Every change is a write that
 * asserts the object version it was made from, so of two gateways storing at once one wins and
 * the other gets -ESTALE; the winner then notifies the object's watchers and waits for their
 * acknowledgements, which each gateway sends once it has loaded the record again.
 *
 * load, store and ack block on the cluster (run them on workers, one load or store at a time);
 * open and close do not wait for it.
 */
#ifndef ISTHMUS_STORE_RBD_LU_STATE_H
#define ISTHMUS_STORE_RBD_LU_STATE_H

#include <stddef.h>
#include <stdint.h>

struct sbuf;
struct store_rbd_spec;
struct rbd_lu_state;

/* How long a store waits for the other gateways to load the record, ms. */
#define RBD_LU_STATE_NOTIFY_MS 5000u
/*
 * Seconds after which the cluster drops the watch of a gateway that stopped answering: until
 * then each store waits RBD_LU_STATE_NOTIFY_MS for it.
 */
#define RBD_LU_STATE_WATCH_TIMEOUT 10u
/* Largest record read (the SCSI layer refuses larger ones too: LU_SHARED_MAX_RECORD). */
#define RBD_LU_STATE_MAX_BYTES (8u << 20)
/* Change notices kept for acknowledgement; past it the newest are left to time out. */
#define RBD_LU_STATE_MAX_NOTICES 1024u

/* Uses the image's cluster connection (already open: the image is). NULL with *err set. */
struct rbd_lu_state *rbd_lu_state_open(const struct store_rbd_spec *spec, char **err);
void rbd_lu_state_close(struct rbd_lu_state *s);
/* Readable when the record changed, or the watch on it was lost; rbd_lu_state_clear empties it. */
int rbd_lu_state_fd(const struct rbd_lu_state *s);
void rbd_lu_state_clear(struct rbd_lu_state *s);

int rbd_lu_state_load(struct rbd_lu_state *s, struct sbuf *rec, uint64_t *version);
int rbd_lu_state_store(struct rbd_lu_state *s, const void *rec, size_t len, uint64_t expect, uint64_t *version);
void rbd_lu_state_ack(struct rbd_lu_state *s);

#endif
