/*
 * The APTPL journal (pr_persist.c) with several event loops: PERSISTENT RESERVE OUT REGISTER and
 * RESERVE with APTPL from two loop threads at once, the journal written on the workers of the
 * home thread (the target's first context's, which alone submits and reaps them). Each context
 * knows its thread (scsi_port_ctx_set_thread; here a mailbox per thread, as shard_post in the
 * target). Checked: every command completes on its own thread, the registrations, reservation
 * and generation read back after the LU is removed and loaded again from its files are those
 * the commands left. Built with ThreadSanitizer (tests/run.sh tsan) any data race fails it.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "harness.h"
#include "loop_jobs.h"
#include "mailbox.h"

/* ---- the home thread reaps its workers, as loop 0 polls offload_fd ---- */

static struct offload *home_off;
static atomic_bool reap_posted, poller_stop;

static void reap_here(void *arg)
{
	(void)arg;
	atomic_store(&reap_posted, false);
	offload_reap(home_off);
}

static void *poller(void *arg)
{
	(void)arg;
	while (!atomic_load(&poller_stop)) {
		struct pollfd p = { .fd = offload_fd(home_off), .events = POLLIN };
		if (poll(&p, 1, 5) == 1 && !atomic_exchange(&reap_posted, true))
			mb_post(&mb[HOME], reap_here, NULL);
		else if (p.revents)
			msleep(1); /* a reap is on its way */
	}
	return NULL;
}

/* ---- commands from the loops ---- */

enum { NNX = 8, ROUNDS = 12 };
static struct scsi_target *tgt;
static struct store_engine *eng[NTH];
static struct scsi_nexus nx[NNX]; /* even: on L1, odd: on L2 */
static char dir[] = "/tmp/isthmus-prpt-XXXXXX";

static int nx_thread(int nxi) { return nxi % 2 ? L2 : L1; }
static struct scsi_nexus *nexus_of(int nxi) { return &nx[nxi]; }

/* PERSISTENT RESERVE OUT with APTPL set in the parameter list. */
static void prout_start(struct job *j, int nxi, uint8_t sa, uint8_t type, uint64_t key, uint64_t sark)
{
	uint8_t cdb[10] = { 0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0 }, p[24] = { 0 };
	put_be64(p, key);
	put_be64(p + 8, sark);
	p[20] = 0x01;
	job_start(j, nxi, cdb, 10, p, 24);
}

static uint64_t key_of(int nxi, int round) { return 0x1000u * (uint64_t)(nxi + 1) + (uint64_t)round; }

/* READ KEYS and READ RESERVATION: the generation, the keys (sorted), the reservation type (0: none). */
struct seen {
	uint32_t gen;
	uint64_t keys[NNX];
	unsigned nkeys;
	uint64_t rsv_key;
	int type;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void read_state(int nxi, struct seen *s)
{
	static const uint8_t keys_cdb[10] = { 0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0 };
	static const uint8_t rsv_cdb[10] = { 0x5e, 1, 0, 0, 0, 0, 0, 0x10, 0, 0 };
	struct job j;

	memset(s, 0, sizeof(*s));
	job_start(&j, nxi, keys_cdb, 10, NULL, 0);
	CHECK_EQ(job_wait(&j), SCSI_GOOD);
	s->gen = get_be32(j.in);
	uint32_t len = get_be32(j.in + 4);
	CHECK(len / 8 <= NNX);
	s->nkeys = len / 8;
	for (unsigned i = 0; i < s->nkeys; i++)
		s->keys[i] = get_be64(j.in + 8 + 8 * i);
	qsort(s->keys, s->nkeys, sizeof(s->keys[0]), cmp_u64);
	job_start(&j, nxi, rsv_cdb, 10, NULL, 0);
	CHECK_EQ(job_wait(&j), SCSI_GOOD);
	if (get_be32(j.in + 4) >= 16) {
		s->rsv_key = get_be64(j.in + 8);
		s->type = j.in[8 + 13] & 0x0f;
	}
}

static void add_lu(void *arg)
{
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 512, .state_dir = dir };
	(void)arg;
	if (scsi_target_add_lu(tgt, 0, store_mem_open(64 * 512, &err), &p, &err) != 0) {
		fprintf(stderr, "add_lu: %s\n", err);
		abort();
	}
}

static void remove_lu(void *arg)
{
	(void)arg;
	if (scsi_target_remove_lu(tgt, 0) != 0)
		abort();
}

static void stop_all(void)
{
	atomic_store(&poller_stop, true);
	mb_stop_all();
}

int main(void)
{
	char *err = NULL;
	static struct job jobs[NNX];
	pthread_t poll_th;

	CHECK(mkdtemp(dir) != NULL);
	mb_start_all();
	tgt = scsi_target_new("iqn.2026-12.org.isthmus:pr-persist-threads");
	/* The home context (the first) has workers: the journal's; the loops run their commands inline. */
	eng[HOME] = store_engine_new(NULL, &err);
	job_contexts(tgt, eng);
	home_off = store_engine_offload(eng[HOME]);
	CHECK(home_off != NULL);
	pthread_create(&poll_th, NULL, poller, NULL);
	on_thread(HOME, add_lu, NULL);
	job_nexuses(tgt, NNX);
	for (int i = 0; i < NNX; i++)
		job_settle(i);

	printf("REGISTER with APTPL from %d nexuses on two loops at once, %d rounds of new keys\n", NNX, ROUNDS);
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < NNX; i++)
			prout_start(&jobs[i], i, 0x00, 0, r ? key_of(i, r - 1) : 0, key_of(i, r));
		for (int i = 0; i < NNX; i++)
			CHECK_EQ(job_wait(&jobs[i]), SCSI_GOOD);
	}

	printf("RESERVE (WRITE EXCLUSIVE, REGISTRANTS ONLY) on L1 while L2's nexuses change keys\n");
	prout_start(&jobs[0], 0, 0x01, 5, key_of(0, ROUNDS - 1), 0);
	for (int i = 1; i < NNX; i += 2)
		prout_start(&jobs[i], i, 0x00, 0, key_of(i, ROUNDS - 1), key_of(i, ROUNDS));
	CHECK_EQ(job_wait(&jobs[0]), SCSI_GOOD);
	for (int i = 1; i < NNX; i += 2)
		CHECK_EQ(job_wait(&jobs[i]), SCSI_GOOD);
	/* ... and a RESERVE from L2 by another registrant: held by nexus 0, so RESERVATION CONFLICT. */
	prout_start(&jobs[1], 1, 0x01, 5, key_of(1, ROUNDS), 0);
	CHECK_EQ(job_wait(&jobs[1]), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(atomic_load(&wrong_thread), 0);

	struct seen before, after;
	read_state(2, &before);
	CHECK_EQ(before.nkeys, (unsigned)NNX);
	for (int i = 0; i < NNX; i++)
		CHECK_EQ(before.keys[i], key_of(i, i % 2 ? ROUNDS : ROUNDS - 1));
	CHECK_EQ(before.type, 5);
	CHECK_EQ(before.rsv_key, key_of(0, ROUNDS - 1));

	printf("the LU removed and loaded again from its state files: the same keys, reservation, generation\n");
	on_thread(HOME, remove_lu, NULL);
	on_thread(HOME, add_lu, NULL);
	for (int i = 0; i < NNX; i++)
		job_settle(i);
	read_state(3, &after);
	CHECK_EQ(after.nkeys, before.nkeys);
	for (unsigned i = 0; i < after.nkeys; i++)
		CHECK_EQ(after.keys[i], before.keys[i]);
	CHECK_EQ(after.type, 5);
	CHECK_EQ(after.rsv_key, before.rsv_key);
	CHECK_EQ(after.gen, before.gen);

	on_thread(HOME, remove_lu, NULL);
	stop_all();
	pthread_join(poll_th, NULL);
	scsi_target_free(tgt);
	for (int i = 0; i < NTH; i++)
		if (eng[i])
			store_engine_free(eng[i]);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_EQ(system(cmd), 0);
	CHECK_EQ(atomic_load(&wrong_thread), 0);
	TEST_MAIN_END();
}
