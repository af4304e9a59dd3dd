/*
 * What gateway.c (peer probes, shared LUs, the optimized group) and gateway_fence.c (the
 * cluster as witness, fencing) share: the peers, the shared RBD LUs and their cluster jobs.
 * Everything here runs on the server's loop 0, except gs_job's work on the store engine's
 * workers.
 */
#ifndef ISTHMUS_TARGET_GATEWAY_INT_H
#define ISTHMUS_TARGET_GATEWAY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/loop.h"
#include "store/offload.h"
#include "store/rbd_lock_owner.h"
#include "target/config.h"
#include "target/gateway.h"

struct gateway_peer {
	struct loop_watch watch;
	struct gateway_probes *owner;
	uint16_t id;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int fd;                 /* probe in flight, or -1 */
	uint64_t started_ms;
	bool alive;
	bool answered;          /* a probe of it succeeded since the probes started */
	/*
	 * Fencing asks the clusters first (gateway_witness): suspect, a witness round is to decide
	 * about it; spared, the last round saw it alive on at least one cluster (cut off from this
	 * gateway only: asked again there at every failed probe); told, that was logged in this
	 * episode. fenced: the clusters (rbd_lu_state_cluster identities) it was fenced on in this
	 * episode, not asked about again until it answers a probe.
	 */
	bool suspect, spared, told;
	const void **fenced;
	size_t nfenced;
};

struct gateway_probes {
	struct tnode *node;
	struct loop_timer timer;
	uint64_t since_ms;      /* when the probes started (see GATEWAY_PEER_START_GRACE_MS) */
	struct gateway_peer peers[CFG_MAX_GATEWAYS];
	size_t npeers;
	uint16_t optimized;     /* the target's optimized group (LUs that follow no lock); 0: not yet */
};

struct caw_waiter {
	struct caw_waiter *next;
	void (*done)(void *arg, int rc);
	void *arg;
	uint64_t off, len;          /* the command's bytes of the image */
};

/* The group's COMPARE AND WRITE lock as this gateway has it (one command of the LU at a time). */
enum gs_caw { CAW_FREE, CAW_ASKING, CAW_HELD, CAW_GIVING };

/*
 * An RBD LU of a gateway group whose reservation record lives in the cluster: the SCSI layer's
 * ops on it, the record's change notices on the loop, and the periodic load. Owned by the LU (it
 * goes with release); on the loop only while its node's gateways are applied.
 */
struct gateway_shared {
	struct gateway_shared *next;
	struct tnode *node;         /* not followed once released */
	struct offload *off;        /* the workers of its jobs (the server's first engine's) */
	uint16_t lun;
	struct rbd_lu_state *rs;
	struct loop_watch watch;
	struct loop_timer timer;
	bool on_loop;
	bool released;              /* the LU is gone: closed after the last job (gs_close) */
	unsigned jobs;              /* cluster jobs on workers (and witness answers kept for their round) */
	enum gs_caw caw;
	struct caw_waiter *caw_q, **caw_tail; /* in arrival order; the head is the one asked for */
	/*
	 * The image's exclusive lock, sampled on a worker every probe interval (NULL: not
	 * followed): the last two samples; nsamples counts the good ones in a row, up to 2, and
	 * first is set until a second good sample came.
	 */
	struct rbd_lock_owner *lo;
	bool sampling, first;
	bool witnessing;            /* a witness notification of this LU's record is out */
	uint16_t optimized;         /* the gateway optimized for this LU as last decided; 0: not yet */
	unsigned nsamples;
	struct rbd_lock_sample last, before;
};

/* The shared LUs of every node, newest first. */
extern struct gateway_shared *gateway_shared_lus;

struct witness_round;

/*
 * Blocking cluster calls of a shared LU, on the store engine's workers: the loop never waits for
 * the cluster, nor for a gateway that does not answer a notification. GJ_CLOSE is the last.
 */
enum gs_job_kind { GJ_FENCE, GJ_CAW_LOCK, GJ_CAW_UNLOCK, GJ_LOCK_SAMPLE, GJ_WITNESS, GJ_CLOSE };
struct gs_job {
	struct offload_job job;
	struct gateway_shared *gs;
	enum gs_job_kind kind;
	uint16_t peer;
	int rc;
	uint64_t off, len;          /* GJ_CAW_LOCK: the bytes the other gateways hold their writes to */
	struct rbd_lock_sample sample;
	struct witness_round *round;     /* GJ_WITNESS: the round it answers for */
	unsigned seen[CFG_MAX_GATEWAYS]; /* GJ_WITNESS: the gateways that acknowledged */
	size_t nseen;
	/*
	 * GJ_WITNESS: the peers asked about and their client addresses on this cluster as announced
	 * before the notification (a gateway restarted meanwhile announces a new one, which is not
	 * fenced); GJ_FENCE: the address to fence in addr[0], empty for the one announced now.
	 */
	uint16_t ask[CFG_MAX_GATEWAYS];
	size_t nask;
	char addr[CFG_MAX_GATEWAYS][256];
};

struct gs_job *gs_job_new(struct gateway_shared *gs, enum gs_job_kind kind, uint16_t peer);
void gs_job_go(struct gs_job *gj);
/*
 * The LU is released and its last job is done: the record and the lock sampler are closed on a
 * worker (GJ_CLOSE), and gs is freed when that is done.
 */
void gs_close(struct gateway_shared *gs);

/*
 * Asks every cluster n shares LUs on about its suspect peers (gateway_fence.c), at most one round
 * per node at a time; the answers fence each peer on the clusters it is gone from.
 */
void gateway_witness(struct tnode *n);
/* A GJ_WITNESS job is done: its round takes it (and frees it with the round). */
void gateway_witness_answered(struct gs_job *gj);
/* The peer answers a probe again, or the probes stop: its fencing episode is over. */
void gateway_peer_forget_fences(struct gateway_peer *p);

#endif
