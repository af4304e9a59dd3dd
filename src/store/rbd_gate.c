/*
 * Holds of other gateways on an RBD image's writes (rbd_gate.h).
 *
 * Which writes were under way when a hold came: every write counts, from the gate to its
 * completion, in one of two counters, the one of the generation it passed the gate in. A hold
 * starts a drain: the generation moves on (new writes count in the other counter) and the hold
 * is acknowledged once the old generation's counter falls to 0. A hold that comes while a drain
 * is under way waits for that one and for the next (the writes of the generation in between may
 * overlap it too). Drains never overlap, so when one starts the counter it waits for holds every
 * write that passed the gate before it (the generations before the last drain ended then).
 *
 * The order that makes it safe: a write counts itself, then looks whether a hold is on (and if
 * so at the table, under the lock); a hold goes into the table, then its drain reads the counter.
 * So a write that missed the hold was counted before the drain looked, and the drain waits for it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/rbd_gate.h"
#include "store/store_rbd.h"
#include "store/store_rbd_int.h"
#include "util/clock.h"
#include "util/sbuf.h"

/* Where a hold's acknowledgement stands. */
enum hold_wait { HOLD_ACKED, HOLD_DRAIN, HOLD_NEXT_DRAIN };

struct gate_hold {
	char holder[96];            /* "": a free slot */
	uint64_t off, end;          /* bytes of the image held */
	uint64_t until_ms;          /* the lease's end, monotonic */
	uint64_t notify_id, cookie; /* what to acknowledge */
	enum hold_wait wait;
};

struct rbd_gate {
	pthread_mutex_t lock;       /* the fields marked (lock) */
	unsigned refs;              /* (lock) */
	atomic_bool on;             /* a hold is in the table: writes look at it */
	atomic_bool draining;       /* a drain waits for count[parity] to fall to 0 */
	_Atomic uint64_t gen;       /* the generation new writes count in */
	_Atomic unsigned count[2];  /* writes between the gate and their completion, by generation parity */
	unsigned parity;            /* (lock) the counter the drain under way waits for */
	struct gate_hold holds[RBD_GATE_MAX_HOLDS]; /* (lock) */
	size_t nholds;              /* (lock) slots in use */
	struct store_io *held, **held_tail; /* (lock) writes waiting, in arrival order */
	void (*ack)(void *arg, uint64_t notify_id, uint64_t cookie); /* (lock) */
	void *ack_arg;              /* (lock) */
};


struct rbd_gate *rbd_gate_new(void)
{
	struct rbd_gate *g = xcalloc(1, sizeof(*g));

	pthread_mutex_init(&g->lock, NULL);
	g->refs = 1;
	g->held_tail = &g->held;
	atomic_init(&g->on, false);
	atomic_init(&g->draining, false);
	atomic_init(&g->gen, 0);
	atomic_init(&g->count[0], 0);
	atomic_init(&g->count[1], 0);
	return g;
}

struct rbd_gate *store_rbd_gate(struct store *st)
{
	if (!store_is_rbd(st))
		return NULL;
	struct rbd_gate *g = rbds_of(st)->gate;
	pthread_mutex_lock(&g->lock);
	g->refs++;
	pthread_mutex_unlock(&g->lock);
	return g;
}

void rbd_gate_put(struct rbd_gate *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	unsigned left = --g->refs;
	pthread_mutex_unlock(&g->lock);
	if (left)
		return;
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* A new drain: the generation moves on, and the holds waiting for the next drain wait for this one (lock). */
static void drain_start(struct rbd_gate *g)
{
	atomic_store(&g->draining, true);
	g->parity = (unsigned)(atomic_fetch_add(&g->gen, 1) & 1);
	for (size_t i = 0; i < RBD_GATE_MAX_HOLDS; i++) {
		if (g->holds[i].holder[0] && g->holds[i].wait == HOLD_NEXT_DRAIN)
			g->holds[i].wait = HOLD_DRAIN;
	}
}

/* The drain under way is over when its counter is 0: its holds are acknowledged (lock). */
static void drain_check(struct rbd_gate *g)
{
	while (atomic_load(&g->draining) && atomic_load(&g->count[g->parity]) == 0) {
		bool next = false;
		atomic_store(&g->draining, false);
		for (size_t i = 0; i < RBD_GATE_MAX_HOLDS; i++) {
			struct gate_hold *h = &g->holds[i];
			if (!h->holder[0])
				continue;
			if (h->wait == HOLD_DRAIN) {
				h->wait = HOLD_ACKED;
				if (g->ack)
					g->ack(g->ack_arg, h->notify_id, h->cookie);
			} else if (h->wait == HOLD_NEXT_DRAIN) {
				next = true;
			}
		}
		if (!next)
			return;
		drain_start(g);
	}
}

/* One write fewer under way in counter p. */
static void count_down(struct rbd_gate *g, unsigned p, bool locked)
{
	if (atomic_fetch_sub(&g->count[p], 1) != 1 || !atomic_load(&g->draining))
		return;
	if (!locked)
		pthread_mutex_lock(&g->lock);
	drain_check(g);
	if (!locked)
		pthread_mutex_unlock(&g->lock);
}

/* Whether [off, off + len) meets a hold in force (lock). */
static bool held_range(const struct rbd_gate *g, uint64_t off, uint64_t len, uint64_t now)
{
	for (size_t i = 0; i < RBD_GATE_MAX_HOLDS; i++) {
		const struct gate_hold *h = &g->holds[i];
		if (h->holder[0] && h->until_ms > now && off < h->end && h->off < off + len)
			return true;
	}
	return false;
}

bool rbd_gate_enter(struct rbd_gate *g, struct store_io *io)
{
	uint64_t gen;

	/* Counted in the generation that is current once it is counted (see the top). */
	for (;;) {
		gen = atomic_load(&g->gen);
		atomic_fetch_add(&g->count[gen & 1], 1);
		if (atomic_load(&g->gen) == gen)
			break;
		count_down(g, (unsigned)(gen & 1), false);
	}
	io->store_priv[PRIV_GATE] = 1 + (gen & 1);
	if (!atomic_load(&g->on))
		return false;
	pthread_mutex_lock(&g->lock);
	bool hold = held_range(g, io->off, io->len, mono_ms());
	if (hold) {
		/* Not under way any more: uncounted before another thread can let it go. */
		io->store_priv[PRIV_GATE] = 0;
		count_down(g, (unsigned)(gen & 1), true);
		io->next = NULL;
		*g->held_tail = io;
		g->held_tail = &io->next;
	}
	pthread_mutex_unlock(&g->lock);
	return hold;
}

void rbd_gate_leave(struct rbd_gate *g, struct store_io *io)
{
	uint64_t p = io->store_priv[PRIV_GATE];

	if (!p)
		return;
	io->store_priv[PRIV_GATE] = 0;
	count_down(g, (unsigned)(p - 1), false);
}

/* A held write passes the gate again, on its own engine's thread (it may meet another hold). */
static void held_resubmit(struct store_engine_post *p)
{
	struct store_io *io = rbd_posted_io(p);

	rbds_submit(io->st, io->eng, io);
}

static void held_fail(struct store_engine_post *p) { store_io_complete(rbd_posted_io(p), -ETIMEDOUT); }

/* Holds went: whether any is left, and the held writes go on (or fail: fail set) (lock). */
static void holds_changed(struct rbd_gate *g, bool fail)
{
	atomic_store(&g->on, g->nholds > 0);
	struct store_io *list = g->held;
	g->held = NULL;
	g->held_tail = &g->held;
	while (list) {
		struct store_io *io = list;
		list = io->next;
		io->next = NULL;
		rbd_post_io(io, fail ? held_fail : held_resubmit);
	}
}

static void hold_free(struct rbd_gate *g, struct gate_hold *h)
{
	memset(h, 0, sizeof(*h));
	g->nholds--;
}

void rbd_gate_set_ack(struct rbd_gate *g, void (*ack)(void *arg, uint64_t notify_id, uint64_t cookie), void *arg)
{
	pthread_mutex_lock(&g->lock);
	g->ack = ack;
	g->ack_arg = arg;
	if (!ack) {
		for (size_t i = 0; i < RBD_GATE_MAX_HOLDS; i++) {
			if (g->holds[i].holder[0])
				hold_free(g, &g->holds[i]);
		}
		holds_changed(g, true);
	}
	pthread_mutex_unlock(&g->lock);
}

bool rbd_gate_hold(struct rbd_gate *g, const char *holder, uint64_t off, uint64_t len, uint64_t lease_ms,
		   uint64_t notify_id, uint64_t cookie)
{
	struct gate_hold *h = NULL, *free_slot = NULL;

	pthread_mutex_lock(&g->lock);
	if (!g->ack) {
		pthread_mutex_unlock(&g->lock);
		return false;
	}
	for (size_t i = 0; i < RBD_GATE_MAX_HOLDS && !h; i++) {
		if (!g->holds[i].holder[0] && !free_slot)
			free_slot = &g->holds[i];
		else if (g->holds[i].holder[0] && strncmp(g->holds[i].holder, holder, sizeof(h->holder) - 1) == 0)
			h = &g->holds[i];
	}
	if (!h && !free_slot) {
		pthread_mutex_unlock(&g->lock);
		return false;
	}
	if (!h) {
		h = free_slot;
		g->nholds++;
	}
	snprintf(h->holder, sizeof(h->holder), "%s", holder);
	h->off = off;
	h->end = len > UINT64_MAX - off ? UINT64_MAX : off + len; /* from another gateway's message */
	h->until_ms = mono_ms() + (lease_ms < RBD_GATE_MAX_LEASE_MS ? lease_ms : RBD_GATE_MAX_LEASE_MS);
	h->notify_id = notify_id;
	h->cookie = cookie;
	h->wait = HOLD_NEXT_DRAIN;
	/* In the table and on before the drain reads the counter (see the top). */
	atomic_store(&g->on, true);
	if (!atomic_load(&g->draining))
		drain_start(g);
	drain_check(g);
	pthread_mutex_unlock(&g->lock);
	return true;
}

void rbd_gate_release(struct rbd_gate *g, const char *holder)
{
	pthread_mutex_lock(&g->lock);
	for (size_t i = 0; i < RBD_GATE_MAX_HOLDS; i++) {
		struct gate_hold *h = &g->holds[i];
		if (h->holder[0] && strncmp(h->holder, holder, sizeof(h->holder) - 1) == 0) {
			hold_free(g, h);
			holds_changed(g, false);
			break;
		}
	}
	pthread_mutex_unlock(&g->lock);
}

void rbd_gate_expire(struct rbd_gate *g)
{
	if (!atomic_load(&g->on))
		return;
	uint64_t now = mono_ms();
	bool ended = false;
	pthread_mutex_lock(&g->lock);
	for (size_t i = 0; i < RBD_GATE_MAX_HOLDS; i++) {
		struct gate_hold *h = &g->holds[i];
		if (h->holder[0] && h->until_ms <= now) {
			hold_free(g, h);
			ended = true;
		}
	}
	if (ended)
		holds_changed(g, false);
	pthread_mutex_unlock(&g->lock);
}
