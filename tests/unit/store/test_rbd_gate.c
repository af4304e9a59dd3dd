/*
 * The RBD store's gate for other gateways' holds (src/store/rbd_gate.c), on its own: which writes
 * a hold makes wait, when its acknowledgement goes out (only once the writes under way before
 * it have ended, including a hold that comes while another one's drain is under way), its
 * release, its lease, a full table, and the record's watch going away. The store around it is
 * replaced by the stubs below: a held write let go is "resubmitted" (noted), a failed one noted.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/rbd_gate.h"
#include "store/store_rbd_int.h"

static int failures;
#define CHECK(c)                                                                                        \
	do {                                                                                            \
		if (!(c)) {                                                                             \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);           \
			failures++;                                                                     \
		}                                                                                       \
	} while (0)

/* ---- the store around the gate ---- */

static struct rbd_store fake;
static struct store_io *resubmitted[64], *failed[64];
static size_t nresubmitted, nfailed;
static uint64_t acked[64];
static size_t nacked;

bool store_is_rbd(const struct store *st) { return st == &fake.st; }

void rbds_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	(void)st, (void)e;
	resubmitted[nresubmitted++] = io;
}

void rbd_post_io(struct store_io *io, void (*fn)(struct store_engine_post *p))
{
	io->post.fn = fn;
	fn(&io->post);
}

void store_io_complete(struct store_io *io, int result)
{
	io->result = result;
	failed[nfailed++] = io;
}

static void ack(void *arg, uint64_t notify_id, uint64_t cookie)
{
	(void)arg;
	CHECK(cookie == notify_id + 1000);
	acked[nacked++] = notify_id;
}

static struct store_io *io_at(struct store_io *io, uint64_t off, uint64_t len)
{
	memset(io, 0, sizeof(*io));
	io->op = STORE_IO_WRITE;
	io->off = off;
	io->len = len;
	io->st = &fake.st;
	return io;
}

static bool hold(struct rbd_gate *g, const char *who, uint64_t off, uint64_t len, uint64_t lease, uint64_t id)
{
	return rbd_gate_hold(g, who, off, len, lease, id, id + 1000);
}

int main(void)
{
	struct store_io w1, w2, w3, w4, w5;

	fake.gate = rbd_gate_new();
	struct rbd_gate *g = store_rbd_gate(&fake.st);
	CHECK(g == fake.gate);
	CHECK(store_rbd_gate(NULL) == NULL);

	/* Without a watch to answer for it, nothing is held. */
	CHECK(!hold(g, "gateway 1 a", 0, 4096, 60000, 1));
	rbd_gate_set_ack(g, ack, NULL);

	/* No hold: writes pass. */
	CHECK(!rbd_gate_enter(g, io_at(&w1, 0, 4096)));
	CHECK(w1.store_priv[PRIV_GATE] != 0);

	/* A hold while w1 is under way: not acknowledged until w1 ends. */
	CHECK(hold(g, "gateway 1 a", 0, 4096, 60000, 1));
	CHECK(nacked == 0);
	CHECK(rbd_gate_enter(g, io_at(&w2, 2048, 4096)));   /* overlaps: waits */
	CHECK(w2.store_priv[PRIV_GATE] == 0);
	CHECK(!rbd_gate_enter(g, io_at(&w3, 4096, 4096)));  /* just past it: goes */
	rbd_gate_leave(g, &w3);
	CHECK(nacked == 0);                                  /* w3 came after the hold */
	rbd_gate_leave(g, &w1);
	CHECK(nacked == 1 && acked[0] == 1);
	rbd_gate_leave(g, &w1);                              /* twice is once */
	CHECK(nresubmitted == 0);

	/* The release lets the held write go; nothing else is held then. */
	rbd_gate_release(g, "gateway 1 a");
	CHECK(nresubmitted == 1 && resubmitted[0] == &w2);
	CHECK(!rbd_gate_enter(g, io_at(&w2, 2048, 4096)));
	rbd_gate_leave(g, &w2);

	/* A hold coming during another one's drain waits for the writes that came in between. */
	nacked = 0;
	CHECK(!rbd_gate_enter(g, io_at(&w1, 0, 512)));
	CHECK(hold(g, "gateway 1 a", 0, 512, 60000, 2));     /* waits for w1 */
	CHECK(!rbd_gate_enter(g, io_at(&w4, 8192, 4096)));  /* not in hold 2's range: goes */
	CHECK(hold(g, "gateway 3 c", 8192, 4096, 60000, 3)); /* waits for w1 and w4 */
	CHECK(rbd_gate_enter(g, io_at(&w5, 8192, 512)));    /* in hold 3's range now: waits */
	CHECK(nacked == 0);
	rbd_gate_leave(g, &w1);
	CHECK(nacked == 1 && acked[0] == 2);
	rbd_gate_leave(g, &w4);
	CHECK(nacked == 2 && acked[1] == 3);
	nresubmitted = 0;
	rbd_gate_release(g, "gateway 1 a");                  /* w5 is let go, and meets hold 3 again */
	CHECK(nresubmitted == 1 && resubmitted[0] == &w5);
	CHECK(rbd_gate_enter(g, &w5));
	rbd_gate_release(g, "gateway 9 none");               /* another holder's release ends nothing */
	CHECK(nresubmitted == 1);

	/* The watch goes: the holds end and the held write fails (NOT READY). */
	rbd_gate_set_ack(g, NULL, NULL);
	CHECK(nfailed == 1 && failed[0] == &w5 && w5.result == -ETIMEDOUT);
	CHECK(!rbd_gate_enter(g, io_at(&w5, 8192, 512)));
	rbd_gate_leave(g, &w5);
	rbd_gate_set_ack(g, ack, NULL);

	/* A hold whose lease is over holds nothing, and expire ends it (letting its writes go). */
	nacked = 0;
	nresubmitted = 0;
	CHECK(hold(g, "gateway 2 b", 0, 4096, 50, 4));
	CHECK(nacked == 1);                                  /* nothing under way: at once */
	CHECK(rbd_gate_enter(g, io_at(&w1, 0, 4096)));
	struct timespec t = {.tv_sec = 0, .tv_nsec = 80 * 1000000L};
	nanosleep(&t, NULL);
	CHECK(!rbd_gate_enter(g, io_at(&w2, 0, 4096)));
	rbd_gate_leave(g, &w2);
	rbd_gate_expire(g);
	CHECK(nresubmitted == 1 && resubmitted[0] == &w1);

	/* The same holder again replaces its hold; past RBD_GATE_MAX_HOLDS holders, refused. */
	char who[32];
	for (unsigned i = 0; i < RBD_GATE_MAX_HOLDS; i++) {
		snprintf(who, sizeof(who), "gateway %u x", i);
		CHECK(hold(g, who, (uint64_t)i << 20, 512, 60000, 10 + i));
	}
	CHECK(hold(g, "gateway 0 x", 1u << 30, 512, 60000, 50));
	CHECK(!rbd_gate_enter(g, io_at(&w3, 0, 512)));       /* gateway 0's first range is not held any more */
	rbd_gate_leave(g, &w3);
	CHECK(!hold(g, "gateway 99 y", 0, 512, 60000, 51));

	rbd_gate_put(g);
	rbd_gate_put(fake.gate);
	if (failures)
		return 1;
	printf("rbd gate: all checks passed\n");
	return 0;
}
