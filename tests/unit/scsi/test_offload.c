/*
 * Commands that wait for a device on worker threads: the pool's ordering per key, its reaping and
 * shutdown, and READ / SYNCHRONIZE CACHE commands that complete from offload_reap (data, errors,
 * task attributes, LU removal while a read is on a worker).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "store/offload.h"

/* ---- the pool on its own */

struct tjob {
	struct offload_job job;
	int id;
	int key;
};

static atomic_int started_seq;
static atomic_int running_now, running_max;
static int order_by_key[4][16];
static int nby_key[4];
static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static int done_order[64];
static int ndone;

static void tjob_work(struct offload_job *j)
{
	struct tjob *t = (struct tjob *)j;
	int now = atomic_fetch_add(&running_now, 1) + 1;
	int max = atomic_load(&running_max);
	while (now > max && !atomic_compare_exchange_weak(&running_max, &max, now))
		;
	pthread_mutex_lock(&order_mu);
	order_by_key[t->key][nby_key[t->key]++] = t->id;
	pthread_mutex_unlock(&order_mu);
	atomic_fetch_add(&started_seq, 1);
	usleep(3000);
	atomic_fetch_sub(&running_now, 1);
}

static void tjob_done(struct offload_job *j)
{
	done_order[ndone++] = ((struct tjob *)j)->id;
}

static void test_pool(void)
{
	char *err = NULL;
	struct offload *o = offload_new(4, &err);
	CHECK(o != NULL);
	static int keys[4];
	struct tjob jobs[32];
	for (int i = 0; i < 32; i++) {
		jobs[i] = (struct tjob){.id = i, .key = i % 4};
		jobs[i].job.work = tjob_work;
		jobs[i].job.done = tjob_done;
		jobs[i].job.key = &keys[i % 4];
		offload_submit(o, &jobs[i].job);
	}
	CHECK_EQ(offload_pending(o), 32);
	offload_quiesce(o);
	CHECK_EQ(atomic_load(&started_seq), 32);
	CHECK_EQ(ndone, 0); /* done callbacks wait for the owner's reap */
	CHECK_EQ(offload_pending(o), 32);
	/* Same key: one at a time, in submission order. Different keys: in parallel. */
	for (int k = 0; k < 4; k++) {
		CHECK_EQ(nby_key[k], 8);
		for (int i = 0; i < 8; i++)
			CHECK_EQ(order_by_key[k][i], k + 4 * i);
	}
	CHECK(atomic_load(&running_max) >= 2);
	CHECK(atomic_load(&running_max) <= 4);
	offload_reap(o);
	CHECK_EQ(ndone, 32);
	CHECK_EQ(offload_pending(o), 0);

	/* Freeing with work still queued runs it and reaps it: nothing is dropped. */
	ndone = 0;
	for (int i = 0; i < 8; i++) {
		jobs[i] = (struct tjob){.id = i, .key = 0};
		jobs[i].job.work = tjob_work;
		jobs[i].job.done = tjob_done;
		jobs[i].job.key = &keys[0];
		offload_submit(o, &jobs[i].job);
	}
	offload_free(o);
	CHECK_EQ(ndone, 8);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(done_order[i], i);
}

/* ---- READ commands through the pool */

static void submit_read10(struct h *h, uint32_t lba, uint16_t blocks, uint8_t attr)
{
	uint8_t cdb[10] = {0x28};
	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, blocks);
	struct scsi_cmd *c = &h->cmd;
	memset(c, 0, sizeof(*c));
	c->nexus = &h->nx[0];
	c->lun = 0;
	c->lun_valid = true;
	memcpy(c->cdb, cdb, sizeof(cdb));
	c->cdb_len = 16;
	c->task_attr = attr;
	c->in = h->in;
	c->in_cap = (uint32_t)blocks * 512;
	c->done = h_done;
	c->priv = h;
	h->done_calls = 0;
	scsi_port_submit(h->ctx, c);
}

static void submit_cdb(struct h *h, const uint8_t cdb[10], uint8_t attr)
{
	struct scsi_cmd *c = &h->cmd;
	memset(c, 0, sizeof(*c));
	c->nexus = &h->nx[0];
	c->lun_valid = true;
	memcpy(c->cdb, cdb, 10);
	c->cdb_len = 16;
	c->task_attr = attr;
	c->in = h->in;
	c->done = h_done;
	c->priv = h;
	h->done_calls = 0;
	scsi_port_submit(h->ctx, c);
}

static void finish(struct offload *o)
{
	offload_quiesce(o);
	offload_reap(o);
}

static void test_deferred_reads(void)
{
	struct h *h = h_new(2048, NULL);
	struct offload *o = store_engine_offload(h->eng);
	h_clear_ua(h, 0, 0);
	h->fs->base.wait = STORE_WAIT_ALWAYS;

	static uint8_t pattern[8 * 512];
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + 3);
	uint8_t wcdb[10] = {0x2a};
	put_be32(wcdb + 2, 100);
	put_be16(wcdb + 7, 8);
	CHECK_EQ(h_run(h, wcdb, 10, pattern, sizeof(pattern), 0), SCSI_GOOD);

	/* A SIMPLE read completes from the reap, with its data. */
	memset(h->in, 0, sizeof(pattern));
	submit_read10(h, 100, 8, TASK_SIMPLE);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK_EQ(h->cmd.status, SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, sizeof(pattern));
	CHECK(memcmp(h->in, pattern, sizeof(pattern)) == 0);

	/* Untagged, ORDERED and HEAD OF QUEUE too (the last two hold back later commands meanwhile). */
	submit_read10(h, 100, 8, TASK_UNTAGGED);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	submit_read10(h, 100, 8, TASK_ORDERED);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK(memcmp(h->in, pattern, sizeof(pattern)) == 0);
	submit_read10(h, 100, 8, TASK_HEAD_OF_QUEUE);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->done_calls, 1);

	/* A failed read on a worker: MEDIUM ERROR, UNRECOVERED READ ERROR, with the LBA. */
	h->fs->fail_read = -EIO;
	submit_read10(h, 100, 8, TASK_SIMPLE);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK_SENSE(h, 0x03, 0x11, 0x00);
	CHECK_EQ(h->cmd.sense[0] & 0x80, 0x80); /* VALID: the information field holds the LBA */
	CHECK_EQ(get_be32(h->cmd.sense + 3), 100);
	h->fs->fail_read = 0;

	/* Range errors are found before any worker is involved. */
	submit_read10(h, 2047, 8, TASK_SIMPLE);
	CHECK_EQ(h->done_calls, 1);
	CHECK_SENSE(h, 0x05, 0x21, 0x00);

	/* Stores that never wait (memory, tmpfs) read inline. */
	h->fs->base.wait = STORE_WAIT_NEVER;
	submit_read10(h, 100, 8, TASK_SIMPLE);
	CHECK_EQ(h->done_calls, 1);
	CHECK(memcmp(h->in, pattern, sizeof(pattern)) == 0);

	/* A store that cannot read without waiting (no read_nowait) goes to a worker when probed. */
	h->fs->base.wait = STORE_WAIT_PROBE;
	submit_read10(h, 100, 8, TASK_SIMPLE);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK(memcmp(h->in, pattern, sizeof(pattern)) == 0);

	/* SYNCHRONIZE CACHE flushes on a worker too; a failed flush is a write error. */
	h->fs->base.wait = STORE_WAIT_ALWAYS;
	int flushes = h->fs->flushes;
	submit_cdb(h, (const uint8_t[10]){0x35}, TASK_SIMPLE);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK_EQ(h->cmd.status, SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, flushes + 1);
	h->fs->fail_flush = -EIO;
	submit_cdb(h, (const uint8_t[10]){0x35}, TASK_SIMPLE);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK_SENSE(h, 0x03, 0x0c, 0x00);
	h->fs->fail_flush = 0;
	submit_cdb(h, (const uint8_t[10]){0x35}, TASK_ORDERED);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK_EQ(h->fs->flushes, flushes + 3);

	/* A write goes to a worker, and one the LU must make durable (FUA here) then waits for its
	 * flush there too. */
	flushes = h->fs->flushes;
	int writes = h->fs->writes;
	uint8_t fua[10] = {0x2a, 0x08};
	put_be32(fua + 2, 200);
	put_be16(fua + 7, 8);
	memset(&h->cmd, 0, sizeof(h->cmd));
	h->cmd.nexus = &h->nx[0];
	h->cmd.lun_valid = true;
	memcpy(h->cmd.cdb, fua, 10);
	h->cmd.cdb_len = 16;
	h->cmd.task_attr = TASK_SIMPLE;
	h->cmd.out = pattern;
	h->cmd.out_len = sizeof(pattern);
	h->cmd.done = h_done;
	h->cmd.priv = h;
	h->done_calls = 0;
	scsi_port_submit(h->ctx, &h->cmd);
	CHECK_EQ(h->done_calls, 0);
	finish(o);
	CHECK_EQ(h->fs->writes, writes + 1);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK_EQ(h->cmd.status, SCSI_GOOD);
	CHECK_EQ(h->fs->flushes, flushes + 1);
	put_be32(wcdb + 2, 300);
	CHECK_EQ(h_run(h, wcdb, 10, pattern, sizeof(pattern), 0), SCSI_GOOD); /* no flush with the cache on */
	CHECK_EQ(h->fs->flushes, flushes + 1);

	/* The LU goes while its read is on a worker: removal waits for the read, which completes. */
	h->fs->base.wait = STORE_WAIT_ALWAYS;
	memset(h->in, 0, sizeof(pattern));
	submit_read10(h, 100, 8, TASK_SIMPLE);
	CHECK_EQ(scsi_target_remove_lu(h->t, 0), 0); /* does not wait: the store closes after the read */
	CHECK_EQ(offload_pending(o), 1);
	finish(o);
	CHECK_EQ(h->done_calls, 1);
	CHECK_EQ(h->cmd.status, SCSI_GOOD);
	CHECK(memcmp(h->in, pattern, sizeof(pattern)) == 0);

	h_free(h);
}

/* ---- commands that wait for their LU's work on workers, and cancelled ones */

static void test_blocked(void)
{
	char *err = NULL;
	struct h *h = h_new(2048, NULL);
	struct offload *o = store_engine_offload(h->eng);
	struct scsi_lu_params lp = {.block_size = 512};
	CHECK_EQ(scsi_target_add_lu(h->t, 1, store_mem_open(1 << 20, &err), &lp, &err), 0);
	/* The anonymous nexus (no cmd->nexus) has the power-on UA on both LUs: take them. */
	static struct rec r[8];
	int log[16], nlog = 0;
	uint8_t tur[16] = {0x00};
	for (int i = 0; i < 8; i++) {
		r[i].log = log;
		r[i].nlog = &nlog;
		r[i].id = i;
	}
	rec_submit(h->ctx, &r[0], 0, tur, TASK_SIMPLE, NULL, 0);
	rec_submit(h->ctx, &r[0], 1, tur, TASK_SIMPLE, NULL, 0);
	nlog = 0;
	h->fs->base.wait = STORE_WAIT_ALWAYS;
	h->fs->read_delay_us = 100000;

	uint8_t rd[16] = {0x88};
	put_be32(rd + 10, 8); /* READ(16) of 8 blocks at LBA 0 */
	rec_submit(h->ctx, &r[0], 0, rd, TASK_SIMPLE, NULL, 0);   /* to a worker, 100 ms */
	rec_submit(h->ctx, &r[1], 0, tur, TASK_ORDERED, NULL, 0); /* waits for it */
	rec_submit(h->ctx, &r[2], 0, tur, TASK_SIMPLE, NULL, 0);  /* queued behind the ORDERED one */
	rec_submit(h->ctx, &r[3], 1, tur, TASK_ORDERED, NULL, 0); /* another LU: at once */
	CHECK_EQ(nlog, 1);
	CHECK_EQ(log[0], 3);
	scsi_port_run_blocked(h->ctx); /* nothing to run yet */
	CHECK_EQ(nlog, 1);
	finish(o);
	scsi_port_run_blocked(h->ctx);
	CHECK_EQ(nlog, 4);
	CHECK_EQ(log[1], 0);
	CHECK_EQ(log[2], 1);
	CHECK_EQ(log[3], 2);
	CHECK_EQ(r[1].cmd.status, SCSI_GOOD);

	/* A waiting command that is cancelled never runs: this ORDERED WRITE leaves the medium alone. */
	static uint8_t ones[512];
	memset(ones, 0xff, sizeof(ones));
	uint8_t wr[16] = {0x8a};
	put_be32(wr + 10, 1); /* WRITE(16), 1 block at LBA 0 */
	nlog = 0;
	rec_submit(h->ctx, &r[4], 0, rd, TASK_SIMPLE, NULL, 0);
	rec_submit(h->ctx, &r[5], 0, wr, TASK_ORDERED, ones, sizeof(ones));
	scsi_cmd_cancel(&r[5].cmd);
	finish(o);
	scsi_port_run_blocked(h->ctx);
	CHECK_EQ(nlog, 2);
	CHECK_EQ(h->fs->writes, 0);

	/* A queued read that is cancelled is not read from the device. */
	int before = h->fs->reads;
	nlog = 0;
	uint8_t rd8[16] = {0x88};
	put_be64(rd8 + 2, 8);
	put_be32(rd8 + 10, 8); /* READ(16) of 8 blocks at LBA 8: continues the read at LBA 0 */
	rec_submit(h->ctx, &r[6], 0, rd, TASK_SIMPLE, NULL, 0);
	rec_submit(h->ctx, &r[7], 0, rd8, TASK_SIMPLE, NULL, 0); /* a stream: queued behind r[6] */
	scsi_cmd_cancel(&r[7].cmd);
	finish(o);
	CHECK_EQ(nlog, 2);
	CHECK_EQ(h->fs->reads - before, 1);

	/* Reads that continue each other run one at a time, in order; scattered ones in parallel. */
	h->fs->read_delay_us = 50000;
	h->fs->most_reading = 0;
	nlog = 0;
	for (int i = 0; i < 4; i++) {
		uint8_t c[16] = {0x88};
		put_be64(c + 2, 16 + 8 * (uint64_t)i); /* the first continues r[7], at LBA 8 */
		put_be32(c + 10, 8);
		rec_submit(h->ctx, &r[i], 0, c, TASK_SIMPLE, NULL, 0);
	}
	finish(o);
	CHECK_EQ(nlog, 4);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(log[i], i);
	CHECK_EQ(h->fs->most_reading, 1);
	nlog = 0;
	for (int i = 0; i < 4; i++) {
		uint8_t c[16] = {0x88};
		put_be64(c + 2, 1000 - 100 * (uint64_t)i);
		put_be32(c + 10, 8);
		rec_submit(h->ctx, &r[i], 0, c, TASK_SIMPLE, NULL, 0);
	}
	finish(o);
	CHECK_EQ(nlog, 4);
	CHECK(h->fs->most_reading >= 2);
	h->fs->read_delay_us = 100000;

	/* Removing an LU fails the commands still waiting for it: LOGICAL UNIT NOT SUPPORTED. */
	nlog = 0;
	rec_submit(h->ctx, &r[0], 0, rd, TASK_SIMPLE, NULL, 0);
	rec_submit(h->ctx, &r[1], 0, tur, TASK_ORDERED, NULL, 0);
	CHECK_EQ(scsi_target_remove_lu(h->t, 0), 0);
	CHECK_EQ(nlog, 1);
	CHECK_EQ(log[0], 1);
	CHECK_EQ(r[1].cmd.status, SCSI_CHECK_CONDITION);
	CHECK_EQ(r[1].cmd.sense[12], 0x25);
	finish(o); /* the read completes, then its store closes */
	CHECK_EQ(nlog, 2);

	h_free(h);
}

int main(void)
{
	test_pool();
	test_deferred_reads();
	test_blocked();
	TEST_MAIN_END();
}
