/*
 * One LU shared by nexuses of several threads, each thread with its own context (as each event
 * loop of the target will have): READ/WRITE of each thread's own blocks, persistent
 * reservations, RESERVE/RELEASE(6), unit attentions posted from other threads, capacity changes
 * and LOGICAL UNIT RESET, all at once. Built with ThreadSanitizer (tests/run.sh tsan) any data
 * race fails it; in every build it checks that reservation conflicts come exactly where SPC-4
 * says, that each unit attention reaches each nexus once, and that no thread loses a write.
 */
#include <pthread.h>
#include <stdio.h>

#include "../tsan_options.h"
#include "harness.h"

#define NTHREADS 6
#define BLOCKS_EACH 32u                 /* each thread writes only its own blocks */
#define BASE_BLOCKS (NTHREADS * BLOCKS_EACH + 64)
#define MAX_BLOCKS (BASE_BLOCKS + 4096) /* what capacity changes may grow the LU to */
#define CHAOS_OPS 400
#define UA_ROUNDS 9

/* A memory store whose visible size grows (an online resize that never moves the data). */
struct grow_store {
	struct store base;
	struct store *inner;
};
static int gs_read(struct store *st, void *b, size_t n, uint64_t off)
{
	return store_read(((struct grow_store *)st)->inner, b, n, off);
}
static int gs_write(struct store *st, const void *b, size_t n, uint64_t off)
{
	return store_write(((struct grow_store *)st)->inner, b, n, off);
}
static int gs_flush(struct store *st) { (void)st; return 0; }
static int gs_unmap(struct store *st, uint64_t off, uint64_t len)
{
	return store_unmap(((struct grow_store *)st)->inner, off, len);
}
static int gs_extent(struct store *st, uint64_t off, bool *m, uint64_t *run)
{
	return store_extent(((struct grow_store *)st)->inner, off, m, run);
}
static int gs_resize(struct store *st, uint64_t n)
{
	if (n > ((struct grow_store *)st)->inner->size)
		return -ENOSPC;
	__atomic_store_n(&st->size, n, __ATOMIC_RELEASE);
	return 0;
}
static void gs_close(struct store *st)
{
	store_close(((struct grow_store *)st)->inner);
	free(st);
}
static const struct store_ops grow_ops = { .read = gs_read, .write = gs_write, .flush = gs_flush, .unmap = gs_unmap,
					   .extent = gs_extent, .resize = gs_resize, .close = gs_close };

static struct scsi_target *tgt;
static struct grow_store *gstore;
static pthread_barrier_t bar;
static pthread_mutex_t resize_lock = PTHREAD_MUTEX_INITIALIZER;

/* Unit attentions a thread was told of, by kind. */
enum { UAK_POWER_ON, UAK_LU_RESET, UAK_CAPACITY, UAK_MODE, UAK_REG_PREEMPTED, UAK_RSV_PREEMPTED, UAK_RSV_RELEASED,
       UAK_OTHER, UAK_N };

struct worker {
	pthread_t th;
	int idx;
	struct scsi_port_ctx *ctx;
	struct store_engine *eng;
	struct scsi_nexus nx;
	struct scsi_cmd cmd;
	int done;
	uint8_t in[4096];
	uint8_t out[4096];
	uint32_t shadow[BLOCKS_EACH]; /* sequence number of the last write that got GOOD, 0: none */
	uint32_t seq;
	unsigned rng;
	int ua[UAK_N];
	int failures;
};
static struct worker w[NTHREADS];

#define WCHECK(wk, cond)                                                                                    \
	do {                                                                                                \
		if (!(cond)) {                                                                              \
			fprintf(stderr, "thread %d: %s:%d: %s\n", (wk)->idx, __FILE__, __LINE__, #cond);       \
			(wk)->failures++;                                                                   \
		}                                                                                           \
	} while (0)

static void w_done(struct scsi_cmd *cmd) { ((struct worker *)cmd->priv)->done++; }

static int sense_key(const struct scsi_cmd *c)
{
	return (c->sense[0] & 0x7f) >= 0x72 ? c->sense[1] & 0x0f : c->sense[2] & 0x0f;
}
static int sense_asc(const struct scsi_cmd *c) { return (c->sense[0] & 0x7f) >= 0x72 ? c->sense[2] : c->sense[12]; }
static int sense_ascq(const struct scsi_cmd *c) { return (c->sense[0] & 0x7f) >= 0x72 ? c->sense[3] : c->sense[13]; }

/* Runs one CDB through the thread's own context, as its event loop would. Returns the status. */
static int w_run(struct worker *wk, const uint8_t *cdb, size_t len, const void *out, uint32_t out_len, uint32_t in_cap)
{
	struct scsi_cmd *c = &wk->cmd;
	memset(c, 0, sizeof(*c));
	c->nexus = &wk->nx;
	c->lun = 0;
	c->lun_valid = true;
	memcpy(c->cdb, cdb, len);
	c->cdb_len = 16 > len ? 16 : (uint16_t)len;
	c->task_attr = TASK_SIMPLE;
	c->out = out;
	c->out_len = out_len;
	c->in = wk->in;
	c->in_cap = in_cap;
	c->done = w_done;
	c->priv = wk;
	wk->done = 0;
	scsi_port_submit(wk->ctx, c);
	for (int i = 0; i < 2000 && wk->done == 0; i++) {
		struct pollfd p = { .fd = store_engine_fd(wk->eng), .events = POLLIN };
		if (poll(&p, 1, 10) > 0)
			store_engine_reap(wk->eng);
		scsi_port_run_blocked(wk->ctx);
	}
	WCHECK(wk, wk->done == 1);
	return c->status;
}

/* Counts a unit attention the last command reported; false when it reported none. */
static bool w_took_ua(struct worker *wk)
{
	const struct scsi_cmd *c = &wk->cmd;
	if (c->status != SCSI_CHECK_CONDITION || sense_key(c) != SK_UNIT_ATTENTION)
		return false;
	int asc = sense_asc(c), ascq = sense_ascq(c), k = UAK_OTHER;
	if (asc == 0x29)
		k = ascq == 0x03 ? UAK_LU_RESET : UAK_POWER_ON;
	else if (asc == 0x2a && ascq == 0x09)
		k = UAK_CAPACITY;
	else if (asc == 0x2a && ascq == 0x01)
		k = UAK_MODE;
	else if (asc == 0x2a && ascq == 0x05)
		k = UAK_REG_PREEMPTED;
	else if (asc == 0x2a && ascq == 0x03)
		k = UAK_RSV_PREEMPTED;
	else if (asc == 0x2a && ascq == 0x04)
		k = UAK_RSV_RELEASED;
	wk->ua[k]++;
	return true;
}

/* A command, again after each unit attention it met (counted). */
static int w_cmd(struct worker *wk, const uint8_t *cdb, size_t len, const void *out, uint32_t out_len, uint32_t in_cap)
{
	int st = SCSI_GOOD;
	for (int i = 0; i < 16; i++) {
		st = w_run(wk, cdb, len, out, out_len, in_cap);
		if (!w_took_ua(wk))
			return st;
	}
	WCHECK(wk, !"unit attentions without end");
	return st;
}

/* Takes every pending unit attention (TEST UNIT READY until GOOD). */
static void w_drain(struct worker *wk)
{
	uint8_t tur[6] = { 0 };
	WCHECK(wk, w_cmd(wk, tur, 6, NULL, 0, 0) == SCSI_GOOD);
}

static uint32_t own_lba(const struct worker *wk, unsigned i) { return (uint32_t)wk->idx * BLOCKS_EACH + i; }

static void fill(uint8_t *b, int idx, uint32_t lba, uint32_t seq)
{
	for (unsigned i = 0; i < 512; i += 12) {
		put_be32(b + i, (uint32_t)idx);
		if (i + 8 <= 512)
			put_be32(b + i + 4, lba);
		if (i + 12 <= 512)
			put_be32(b + i + 8, seq);
	}
}

static int w_write(struct worker *wk, unsigned i)
{
	uint8_t cdb[10];
	uint32_t seq = ++wk->seq;
	fill(wk->out, wk->idx, own_lba(wk, i), seq);
	cdb_rw10(cdb, 0x2a, own_lba(wk, i), 1, 0);
	int st = w_cmd(wk, cdb, 10, wk->out, 512, 0);
	if (st == SCSI_GOOD)
		wk->shadow[i] = seq;
	return st;
}

/* Reads block i; checks it against the last write that got GOOD. */
static int w_read(struct worker *wk, unsigned i)
{
	uint8_t cdb[10], want[512];
	cdb_rw10(cdb, 0x28, own_lba(wk, i), 1, 0);
	int st = w_cmd(wk, cdb, 10, NULL, 0, 512);
	if (st == SCSI_GOOD && wk->shadow[i]) {
		fill(want, wk->idx, own_lba(wk, i), wk->shadow[i]);
		WCHECK(wk, memcmp(wk->in, want, 512) == 0);
	}
	return st;
}

static uint64_t key_of(const struct worker *wk) { return 0x1000u + (uint64_t)wk->idx; }

static int w_prout(struct worker *wk, uint8_t sa, uint8_t type, uint64_t key, uint64_t sark)
{
	uint8_t cdb[10] = { 0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t p[24] = { 0 };
	put_be64(p, key);
	put_be64(p + 8, sark);
	return w_cmd(wk, cdb, 10, p, 24, 0);
}

enum { PR_REGISTER = 0, PR_RESERVE = 1, PR_RELEASE = 2, PR_CLEAR = 3, PR_PREEMPT = 4, PR_REGISTER_IGNORE = 6 };
enum { TYPE_WE = 1, TYPE_WE_RO = 5 };

static int w_reserve6(struct worker *wk)
{
	uint8_t cdb[6] = { 0x16, 0, 0, 0, 0, 0 };
	return w_cmd(wk, cdb, 6, NULL, 0, 0);
}
static int w_release6(struct worker *wk)
{
	uint8_t cdb[6] = { 0x17, 0, 0, 0, 0, 0 };
	return w_cmd(wk, cdb, 6, NULL, 0, 0);
}

/* MODE SELECT (6) of the caching page with WCE as given: MODE PARAMETERS CHANGED for the others. */
static int w_mode_wce(struct worker *wk, bool wce)
{
	uint8_t cdb[6] = { 0x15, 0x10, 0, 0, 24, 0 };
	uint8_t p[24] = { 0 };
	p[4] = 0x08;
	p[5] = 0x12;
	p[6] = wce ? 0x04 : 0;
	return w_cmd(wk, cdb, 6, p, 24, 0);
}

/* A capacity change: the store grows, the SCSI layer is told (from whichever thread). */
static void grow(void)
{
	pthread_mutex_lock(&resize_lock);
	uint64_t now = __atomic_load_n(&gstore->base.size, __ATOMIC_ACQUIRE);
	if (now + 8 * 512 <= (uint64_t)MAX_BLOCKS * 512)
		gs_resize(&gstore->base, now + 8 * 512);
	scsi_target_lu_resized(tgt, 0);
	pthread_mutex_unlock(&resize_lock);
}

static unsigned rnd(struct worker *wk) { return wk->rng = wk->rng * 1103515245u + 12345u, wk->rng >> 16; }

/* Everything at once; statuses only from the set each command may get under any state. */
static void chaos(struct worker *wk)
{
	for (int n = 0; n < CHAOS_OPS; n++) {
		unsigned what = rnd(wk) % 100, i = rnd(wk) % BLOCKS_EACH;
		int st;
		if (what < 40) {
			st = w_write(wk, i);
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT);
		} else if (what < 70) {
			st = w_read(wk, i);
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT);
		} else if (what < 76) {
			st = w_prout(wk, PR_REGISTER_IGNORE, 0, 0, key_of(wk));
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT);
		} else if (what < 81) {
			st = w_prout(wk, PR_RESERVE, TYPE_WE, key_of(wk), 0);
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT);
		} else if (what < 85) {
			st = w_prout(wk, PR_RELEASE, TYPE_WE, key_of(wk), 0);
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT || st == SCSI_CHECK_CONDITION);
		} else if (what < 88) {
			st = w_prout(wk, PR_PREEMPT, TYPE_WE, key_of(wk), key_of(&w[rnd(wk) % NTHREADS]));
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT || st == SCSI_CHECK_CONDITION);
		} else if (what < 90) {
			st = w_prout(wk, PR_REGISTER, 0, key_of(wk), 0);
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT);
		} else if (what < 93) {
			st = w_reserve6(wk);
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT);
		} else if (what < 96) {
			st = w_release6(wk);
			WCHECK(wk, st == SCSI_GOOD || st == SCSI_RESERVATION_CONFLICT);
		} else if (what < 98) {
			grow();
		} else {
			WCHECK(wk, scsi_target_task_mgmt(tgt, SCSI_TMF_LUN_RESET, 0, true, &wk->nx) == 0);
		}
	}
}

/* Back to no reservation of any kind, every attention taken. */
static void settle(struct worker *wk)
{
	pthread_barrier_wait(&bar);
	if (wk->idx == 0) {
		/* The reset first: a RESERVE(6) left by another nexus refuses PERSISTENT RESERVE OUT. */
		WCHECK(wk, scsi_target_task_mgmt(tgt, SCSI_TMF_LUN_RESET, 0, true, &wk->nx) == 0);
		WCHECK(wk, w_prout(wk, PR_REGISTER_IGNORE, 0, 0, key_of(wk)) == SCSI_GOOD);
		WCHECK(wk, w_prout(wk, PR_CLEAR, 0, key_of(wk), 0) == SCSI_GOOD);
	}
	pthread_barrier_wait(&bar);
	w_drain(wk);
	pthread_barrier_wait(&bar);
	memset(wk->ua, 0, sizeof(wk->ua));
}

/* Conflicts where SPC-4 puts them: WRITE EXCLUSIVE, then RESERVE(6). */
static void conflicts(struct worker *wk)
{
	bool holder = wk->idx == 0, rsv6 = wk->idx == 1;
	unsigned i = wk->idx % BLOCKS_EACH;

	if (holder) {
		WCHECK(wk, w_prout(wk, PR_REGISTER_IGNORE, 0, 0, key_of(wk)) == SCSI_GOOD);
		WCHECK(wk, w_prout(wk, PR_RESERVE, TYPE_WE, key_of(wk), 0) == SCSI_GOOD);
	}
	pthread_barrier_wait(&bar);
	WCHECK(wk, w_write(wk, i) == (holder ? SCSI_GOOD : SCSI_RESERVATION_CONFLICT));
	WCHECK(wk, w_read(wk, i) == SCSI_GOOD); /* WRITE EXCLUSIVE lets everyone read */
	pthread_barrier_wait(&bar);
	if (holder) {
		WCHECK(wk, w_prout(wk, PR_RELEASE, TYPE_WE, key_of(wk), 0) == SCSI_GOOD);
		WCHECK(wk, w_prout(wk, PR_REGISTER, 0, key_of(wk), 0) == SCSI_GOOD); /* unregistered */
	}
	pthread_barrier_wait(&bar);
	WCHECK(wk, w_write(wk, i) == SCSI_GOOD);
	pthread_barrier_wait(&bar);
	if (rsv6)
		WCHECK(wk, w_reserve6(wk) == SCSI_GOOD);
	pthread_barrier_wait(&bar);
	WCHECK(wk, w_read(wk, i) == (rsv6 ? SCSI_GOOD : SCSI_RESERVATION_CONFLICT));
	WCHECK(wk, w_write(wk, i) == (rsv6 ? SCSI_GOOD : SCSI_RESERVATION_CONFLICT));
	if (!rsv6)
		WCHECK(wk, w_reserve6(wk) == SCSI_RESERVATION_CONFLICT);
	pthread_barrier_wait(&bar);
	if (rsv6)
		WCHECK(wk, w_release6(wk) == SCSI_GOOD);
	pthread_barrier_wait(&bar);
	WCHECK(wk, w_read(wk, i) == SCSI_GOOD);
	WCHECK(wk, w_write(wk, i) == SCSI_GOOD);
}

/*
 * Each round one thread raises an attention (capacity change, LOGICAL UNIT RESET, MODE SELECT)
 * while the others do I/O; each nexus must then have met it exactly once (the issuer of MODE
 * SELECT not at all), whether its I/O or the TEST UNIT READY after took it.
 */
static void attentions(struct worker *wk)
{
	for (int round = 0; round < UA_ROUNDS; round++) {
		int poster = round % NTHREADS, kind = round % 3;
		memset(wk->ua, 0, sizeof(wk->ua));
		pthread_barrier_wait(&bar);
		if (wk->idx == poster) {
			if (kind == 0)
				grow();
			else if (kind == 1)
				WCHECK(wk, scsi_target_task_mgmt(tgt, SCSI_TMF_LUN_RESET, 0, true, &wk->nx) == 0);
			else
				WCHECK(wk, w_mode_wce(wk, round & 1) == SCSI_GOOD);
		}
		for (unsigned n = 0; n < 8; n++) {
			WCHECK(wk, w_write(wk, n) == SCSI_GOOD);
			WCHECK(wk, w_read(wk, n) == SCSI_GOOD);
		}
		pthread_barrier_wait(&bar);
		w_drain(wk);
		int want_kind = kind == 0 ? UAK_CAPACITY : kind == 1 ? UAK_LU_RESET : UAK_MODE;
		int want = (kind == 2 && wk->idx == poster) ? 0 : 1;
		for (int k = 0; k < UAK_N; k++)
			WCHECK(wk, wk->ua[k] == (k == want_kind ? want : 0));
		pthread_barrier_wait(&bar);
	}
}

/* PREEMPT of one registrant, then CLEAR: the preempted and the cleared hear of it once each. */
static void preempts(struct worker *wk)
{
	bool holder = wk->idx == 0, victim = wk->idx == 1;

	WCHECK(wk, w_prout(wk, PR_REGISTER_IGNORE, 0, 0, key_of(wk)) == SCSI_GOOD);
	pthread_barrier_wait(&bar);
	if (holder)
		WCHECK(wk, w_prout(wk, PR_RESERVE, TYPE_WE_RO, key_of(wk), 0) == SCSI_GOOD);
	pthread_barrier_wait(&bar);
	memset(wk->ua, 0, sizeof(wk->ua));
	pthread_barrier_wait(&bar);
	if (holder)
		WCHECK(wk, w_prout(wk, PR_PREEMPT, TYPE_WE_RO, key_of(wk), key_of(&w[1])) == SCSI_GOOD);
	for (unsigned n = 0; n < 8; n++) {
		int st = w_write(wk, n);
		/* Registrants write under WRITE EXCLUSIVE - REGISTRANTS ONLY; the victim may be one no more. */
		WCHECK(wk, st == SCSI_GOOD || (victim && st == SCSI_RESERVATION_CONFLICT));
	}
	pthread_barrier_wait(&bar);
	w_drain(wk);
	WCHECK(wk, wk->ua[UAK_REG_PREEMPTED] == (victim ? 1 : 0));
	if (victim)
		WCHECK(wk, w_write(wk, 0) == SCSI_RESERVATION_CONFLICT);
	memset(wk->ua, 0, sizeof(wk->ua));
	pthread_barrier_wait(&bar);
	if (holder)
		WCHECK(wk, w_prout(wk, PR_CLEAR, 0, key_of(wk), 0) == SCSI_GOOD);
	pthread_barrier_wait(&bar);
	w_drain(wk);
	WCHECK(wk, wk->ua[UAK_RSV_PREEMPTED] == (holder || victim ? 0 : 1));
	WCHECK(wk, w_write(wk, 0) == SCSI_GOOD);
}

/* Every block a thread wrote holds its last acknowledged write. */
static void verify_own(struct worker *wk)
{
	for (unsigned i = 0; i < BLOCKS_EACH; i++)
		WCHECK(wk, w_read(wk, i) == SCSI_GOOD);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;

	pthread_barrier_wait(&bar);
	w_drain(wk); /* power on */
	pthread_barrier_wait(&bar);
	chaos(wk);
	settle(wk);
	conflicts(wk);
	settle(wk);
	attentions(wk);
	settle(wk);
	preempts(wk);
	settle(wk);
	verify_own(wk);
	return NULL;
}

int main(void)
{
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 512, .write_cache = true };

	tgt = scsi_target_new("iqn.2024-01.org.example:threads");
	gstore = calloc(1, sizeof(*gstore));
	gstore->inner = store_mem_open((uint64_t)MAX_BLOCKS * 512, &err);
	CHECK(gstore->inner != NULL);
	gstore->base.ops = &grow_ops;
	gstore->base.size = (uint64_t)BASE_BLOCKS * 512;
	gstore->base.fd = -1;
	gstore->base.path = (char *)"grow";
	/* Every context is made before any thread runs, as the target makes one per loop at start. */
	for (int i = 0; i < NTHREADS; i++) {
		w[i].idx = i;
		w[i].rng = 0x9e3779b9u * (unsigned)(i + 1);
		w[i].eng = store_engine_new(NULL, &err);
		CHECK(w[i].eng != NULL);
		w[i].ctx = scsi_port_ctx_new(tgt, w[i].eng);
		char name[64];
		snprintf(name, sizeof(name), "iqn.2024-01.org.example:thread%d", i);
		h_nexus(&w[i].nx, (uint64_t)i + 1, name);
		scsi_target_nexus_added(tgt, &w[i].nx);
	}
	CHECK_EQ(scsi_target_add_lu(tgt, 0, &gstore->base, &p, &err), 0);
	printf("%d threads, one memory LU: I/O, reservations, attentions, resets at once\n", NTHREADS);
	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		CHECK_EQ(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
	int failures = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(w[i].th, NULL);
		failures += w[i].failures;
	}
	pthread_barrier_destroy(&bar);
	printf("checked: conflicts per SPC-4, each attention once per nexus, every thread's writes kept\n");
	CHECK_EQ(failures, 0);
	for (int i = 0; i < NTHREADS; i++)
		scsi_target_nexus_lost(tgt, &w[i].nx);
	scsi_target_free(tgt);
	for (int i = 0; i < NTHREADS; i++)
		store_engine_free(w[i].eng);
	TEST_MAIN_END();
}
