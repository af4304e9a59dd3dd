/*
 * The worker pool used the way the target's loop uses it: the owner submits while workers run
 * and reaps whenever the eventfd says jobs have finished, never waiting for the pool to be idle
 * first (test_offload quiesces before it reaps, which hides the pool's own synchronisation from
 * ThreadSanitizer). Every job's done callback must run once, on the owner's thread, after its
 * work; the jobs of one key must run one at a time in submission order. The build-tsan run
 * (tsan/scsi_offload_concurrent) checks the locking behind all of this.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../test.h"
#include "store/offload.h"

#define NJOBS 4000
#define NKEYS 8
#define BATCH 24

struct cjob {
	struct offload_job job;
	int key;
	int ran;          /* by its worker; read by the owner in done */
	int done;
	unsigned key_seq; /* its place among its key's jobs as they ran */
};

static struct cjob jobs[NJOBS];
static char keys[NKEYS];
static atomic_int key_running[NKEYS];
static atomic_int overlaps;
/* Plain on purpose: only the pool's one-at-a-time rule per key orders these increments. */
static unsigned key_next[NKEYS];
static pthread_t owner;
static int ndone, wrong_thread, done_before_work;

static void cjob_work(struct offload_job *j)
{
	struct cjob *c = (struct cjob *)j;
	if (atomic_fetch_add(&key_running[c->key], 1) != 0)
		atomic_fetch_add(&overlaps, 1);
	c->key_seq = key_next[c->key]++;
	c->ran++;
	for (volatile int i = 0; i < 500; i++) {
	}
	atomic_fetch_sub(&key_running[c->key], 1);
}

static void cjob_done(struct offload_job *j)
{
	struct cjob *c = (struct cjob *)j;
	if (!pthread_equal(pthread_self(), owner))
		wrong_thread++;
	if (c->ran != 1)
		done_before_work++;
	c->done++;
	ndone++;
}

static void test_submit_while_reaping(void)
{
	char *err = NULL;
	struct offload *o = offload_new(4, &err);
	CHECK(o != NULL);
	if (!o)
		return;
	owner = pthread_self();
	int submitted = 0, rounds = 0;
	while (ndone < NJOBS && rounds++ < 1000000) {
		for (int k = 0; k < BATCH && submitted < NJOBS; k++, submitted++) {
			struct cjob *c = &jobs[submitted];
			/* Uneven keys: some streams long, some short, so keys are busy at different times. */
			c->key = (submitted * 7 + submitted / 13) % NKEYS;
			c->job.key = &keys[c->key];
			c->job.work = cjob_work;
			c->job.done = cjob_done;
			offload_submit(o, &c->job);
		}
		struct pollfd p = {.fd = offload_fd(o), .events = POLLIN};
		if (poll(&p, 1, 1000) > 0)
			offload_reap(o);
	}
	CHECK_EQ(ndone, NJOBS);
	CHECK_EQ(offload_pending(o), 0);
	CHECK_EQ(wrong_thread, 0);
	CHECK_EQ(done_before_work, 0);
	CHECK_EQ(atomic_load(&overlaps), 0);
	unsigned seen[NKEYS] = {0};
	int misordered = 0, twice = 0;
	for (int i = 0; i < NJOBS; i++) {
		if (jobs[i].key_seq != seen[jobs[i].key]++)
			misordered++;
		if (jobs[i].done != 1)
			twice++;
	}
	CHECK_EQ(misordered, 0);
	CHECK_EQ(twice, 0);
	offload_free(o);
}

int main(void)
{
	test_submit_while_reaping();
	TEST_MAIN_END();
}
