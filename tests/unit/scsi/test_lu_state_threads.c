/*
 * A gateway group's shared LU (lu_state.c) on three threads, as the target runs it with several
 * event loops: the home thread (the first context's: the record's cycle, the group's COMPARE AND
 * WRITE lock) and two loops whose nexuses send reservation commands and COMPARE AND WRITE. Each
 * context knows its thread (scsi_port_ctx_set_thread; here a mailbox per thread, as shard_post
 * in the target). Checked: every command runs and completes on its own thread, the record and
 * the lock are used on the home thread only, the SPC-4 outcomes (registrations, conflicts,
 * PREEMPT, MISCOMPARE) are exact, a command cancelled on its way completes once, and a LU
 * removed while its command is on the way answers LOGICAL UNIT NOT SUPPORTED and frees its
 * shared state. Built with ThreadSanitizer (tests/run.sh tsan) any data race fails it.
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "harness.h"
#include "loop_jobs.h"
#include "mailbox.h"
#include "util/sbuf.h"

static atomic_int bad; /* failures seen on the threads (CHECK is the main thread's) */

/* ---- the group's record and COMPARE AND WRITE lock, used on the home thread only ---- */

static struct sbuf record;
static uint64_t record_version;
static int caw_grants, caw_unlocks, releases;
static bool caw_held;
struct caw_waiter {
	void (*done)(void *arg, int rc);
	void *arg;
	struct caw_waiter *next;
};
static struct caw_waiter *caw_q;

static void on_home(const char *what)
{
	if (self != &mb[HOME]) {
		fprintf(stderr, "%s off the home thread\n", what);
		atomic_fetch_add(&wrong_thread, 1);
	}
}

static int f_load(void *ctx, struct sbuf *out, uint64_t *version)
{
	(void)ctx;
	on_home("load");
	sbuf_append(out, record.data, record.len);
	*version = record_version;
	return 0;
}

static int f_store(void *ctx, const void *data, size_t len, uint64_t expect, uint64_t *version)
{
	(void)ctx;
	on_home("store");
	if (expect != record_version)
		return -ESTALE;
	sbuf_reset(&record);
	sbuf_append(&record, data, len);
	*version = ++record_version;
	return 0;
}

static void f_release(void *ctx)
{
	(void)ctx;
	on_home("release");
	releases++;
	while (caw_q) {
		struct caw_waiter *w = caw_q;
		caw_q = w->next;
		w->done(w->arg, -ENODEV);
		free(w);
	}
}

static void caw_grant(void *arg)
{
	(void)arg;
	if (caw_held || !caw_q)
		return;
	struct caw_waiter *w = caw_q;
	caw_q = w->next;
	caw_held = true;
	caw_grants++;
	w->done(w->arg, 0);
	free(w);
}

static void f_caw_lock(void *ctx, uint64_t off, uint64_t len, void (*done)(void *arg, int rc), void *arg)
{
	(void)ctx;
	(void)off;
	(void)len;
	on_home("caw_lock");
	struct caw_waiter *w = calloc(1, sizeof(*w)), **pp = &caw_q;
	w->done = done;
	w->arg = arg;
	while (*pp)
		pp = &(*pp)->next;
	*pp = w;
	mb_post(&mb[HOME], caw_grant, NULL); /* granted later, as the cluster would */
}

static void f_caw_unlock(void *ctx)
{
	(void)ctx;
	on_home("caw_unlock");
	if (!caw_held)
		atomic_fetch_add(&bad, 1);
	caw_held = false;
	caw_unlocks++;
	mb_post(&mb[HOME], caw_grant, NULL);
}

static const struct scsi_shared_ops ops = { .load = f_load, .store = f_store, .release = f_release,
					    .caw_lock = f_caw_lock, .caw_unlock = f_caw_unlock };

/* ---- a memory store that compares and writes itself ---- */

struct cw_store {
	struct store base;
	struct store *inner;
	pthread_mutex_t mu; /* ios of both loops */
};
static int cw_read(struct store *st, void *b, size_t n, uint64_t off)
{
	return store_read(((struct cw_store *)st)->inner, b, n, off);
}
static int cw_write(struct store *st, const void *b, size_t n, uint64_t off)
{
	return store_write(((struct cw_store *)st)->inner, b, n, off);
}
static int cw_flush(struct store *st) { (void)st; return 0; }
static void cw_close(struct store *st)
{
	struct cw_store *c = (struct cw_store *)st;
	store_close(c->inner);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
static void cw_submit(struct store *st, struct store_engine *e, struct store_io *io)
{
	struct cw_store *c = (struct cw_store *)st;
	uint8_t *buf = io->iov[0].iov_base, cur[4096];
	int rc = 0;
	(void)e;
	pthread_mutex_lock(&c->mu);
	switch (io->op) {
	case STORE_IO_READ:
		rc = store_read(c->inner, buf, io->len, io->off);
		break;
	case STORE_IO_WRITE:
		rc = store_write(c->inner, buf, io->len, io->off);
		break;
	case STORE_IO_FLUSH:
		break;
	case STORE_IO_COMPARE_WRITE:
		rc = store_read(c->inner, cur, io->len, io->off);
		for (uint64_t i = 0; rc == 0 && i < io->len; i++) {
			if (cur[i] != buf[i]) {
				io->miscompare_off = i;
				rc = -EILSEQ;
			}
		}
		if (rc == 0)
			rc = store_write(c->inner, buf + io->len, io->len, io->off);
		break;
	default:
		rc = -EOPNOTSUPP;
	}
	pthread_mutex_unlock(&c->mu);
	store_io_complete(io, rc);
}
static const struct store_ops cw_ops = { .read = cw_read, .write = cw_write, .flush = cw_flush, .close = cw_close,
					 .submit = cw_submit };

/* ---- commands from the loops ---- */

static struct scsi_target *tgt;
static struct store_engine *eng[NTH];
static struct scsi_nexus nx[4]; /* 0, 3: on L1; 1, 2: on L2 */

static int nx_thread(int nxi)
{
	static const int th[4] = { L1, L2, L2, L1 };
	return th[nxi];
}
static struct scsi_nexus *nexus_of(int nxi) { return &nx[nxi]; }

/* The command, then the thread blocks (gate) before anything posted to it meanwhile runs. */
static void block_here(void *arg);
static void job_submit_block(void *arg)
{
	job_submit_here(arg);
	block_here(NULL);
}

static int key_of(const struct job *j)
{
	const uint8_t *s = j->cmd.sense;
	return (s[0] & 0x7f) >= 0x72 ? s[1] & 0x0f : s[2] & 0x0f;
}
static int asc_of(const struct job *j) { return (j->cmd.sense[0] & 0x7f) >= 0x72 ? j->cmd.sense[2] : j->cmd.sense[12]; }
static int ascq_of(const struct job *j) { return (j->cmd.sense[0] & 0x7f) >= 0x72 ? j->cmd.sense[3] : j->cmd.sense[13]; }

static int prout(int nxi, uint8_t sa, uint8_t type, uint64_t key, uint64_t sark, struct job *j)
{
	uint8_t cdb[10] = { 0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0 }, p[24] = { 0 };
	put_be64(p, key);
	put_be64(p + 8, sark);
	return job_run(nxi, cdb, 10, p, 24, j);
}

static const uint8_t read_keys_cdb[10] = { 0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0 };

static void rw(uint8_t *cdb, uint8_t op, uint32_t lba)
{
	memset(cdb, 0, 10);
	cdb[0] = op;
	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, 1);
}

static void caw_cdb(uint8_t *cdb, uint64_t lba)
{
	memset(cdb, 0, 16);
	cdb[0] = 0x89;
	put_be64(cdb + 2, lba);
	cdb[13] = 1;
}

static void share(void *arg)
{
	(void)arg;
	if (scsi_target_share_lu(tgt, 0, &ops, NULL) != 0)
		atomic_fetch_add(&bad, 1);
}

static void remove_lu(void *arg)
{
	(void)arg;
	if (scsi_target_remove_lu(tgt, 0) != 0)
		atomic_fetch_add(&bad, 1);
}

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool blocked, go;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false };

static void block_here(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&gate.mu);
	gate.blocked = true;
	pthread_cond_broadcast(&gate.cv);
	while (!gate.go)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
}

static atomic_int reset_stored;
static void reset_waited(void *arg)
{
	(void)arg;
	on_home("the reset's waiter");
	atomic_fetch_add(&reset_stored, 1);
}
static void lu_reset_here(void *arg)
{
	(void)arg;
	if (scsi_target_task_mgmt(tgt, SCSI_TMF_LUN_RESET, 0, true, &nx[1]) != 0)
		atomic_fetch_add(&bad, 1);
	if (!scsi_target_lu_shared_wait(tgt, 0, reset_waited, NULL))
		atomic_fetch_add(&reset_stored, 1);
}

static void read_state(void *arg)
{
	int *out = arg;
	out[0] = caw_grants;
	out[1] = caw_unlocks;
	out[2] = releases;
}

int main(void)
{
	char *err = NULL;
	static struct job j, k, many[2][40];

	mb_start_all();
	tgt = scsi_target_new("iqn.2026-11.org.isthmus:lu-state-threads");
	/* The home context has no engine: the record's jobs run inline, on the home thread. */
	for (int i = 0; i < NTH; i++)
		eng[i] = i == HOME ? NULL : store_engine_new(NULL, &err);
	job_contexts(tgt, eng);
	struct cw_store *cs = calloc(1, sizeof(*cs));
	cs->inner = store_mem_open(1 << 20, &err);
	cs->base.ops = &cw_ops;
	cs->base.size = 1 << 20;
	cs->base.fd = -1;
	cs->base.caps = STORE_CAP_COMPARE_WRITE;
	cs->base.path = (char *)"cw";
	pthread_mutex_init(&cs->mu, NULL);
	struct scsi_lu_params lp = { .block_size = 512 };
	CHECK_EQ(scsi_target_add_lu(tgt, 0, &cs->base, &lp, &err), 0);
	job_nexuses(tgt, 4);
	on_thread(HOME, share, NULL);
	for (int i = 0; i < 4; i++)
		job_settle(i);

	/* Registrations from both loops at once; READ KEYS from both at once sees both. */
	uint8_t p[2][24] = { { 0 } };
	put_be64(p[0] + 8, 0xa);
	put_be64(p[1] + 8, 0xb);
	uint8_t reg[10] = { 0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0 };
	job_start(&j, 0, reg, 10, p[0], 24);
	job_start(&k, 1, reg, 10, p[1], 24);
	CHECK_EQ(job_wait(&j), SCSI_GOOD);
	CHECK_EQ(job_wait(&k), SCSI_GOOD);
	for (int n = 0; n < 40; n++) {
		job_start(&many[0][n], 0, read_keys_cdb, 10, NULL, 0);
		job_start(&many[1][n], 1, read_keys_cdb, 10, NULL, 0);
	}
	for (int n = 0; n < 40; n++) {
		for (int t = 0; t < 2; t++) {
			CHECK_EQ(job_wait(&many[t][n]), SCSI_GOOD);
			CHECK_EQ(get_be32(many[t][n].in), 2u);
			CHECK_EQ(get_be32(many[t][n].in + 4), 16u);
		}
	}

	/* EXCLUSIVE ACCESS of nexus 0 (L1): the unregistered nexus 2 (L2) conflicts for RESERVE and
	 * WRITE, the registered non-holder 1 (L2) for READ; the holder writes. */
	uint8_t cdb[16], data[1024];
	CHECK_EQ(prout(0, 0x01, 3, 0xa, 0, &j), SCSI_GOOD);
	CHECK_EQ(prout(2, 0x01, 3, 0, 0, &j), SCSI_RESERVATION_CONFLICT);
	memset(data, 0x11, sizeof(data));
	rw(cdb, 0x2a, 10);
	CHECK_EQ(job_run(2, cdb, 10, data, 512, &j), SCSI_RESERVATION_CONFLICT);
	rw(cdb, 0x28, 10);
	CHECK_EQ(job_run(1, cdb, 10, NULL, 0, &j), SCSI_RESERVATION_CONFLICT);
	rw(cdb, 0x2a, 10);
	CHECK_EQ(job_run(0, cdb, 10, data, 512, &j), SCSI_GOOD);

	/* PREEMPT from L2: the preempted holder on L1 gets 2Ah/05h, then RESERVATION CONFLICT. */
	CHECK_EQ(prout(1, 0x04, 3, 0xb, 0xa, &j), SCSI_GOOD);
	uint8_t tur[6] = { 0 };
	CHECK_EQ(job_run(0, tur, 6, NULL, 0, &j), SCSI_CHECK_CONDITION);
	CHECK_EQ(key_of(&j), SK_UNIT_ATTENTION);
	CHECK_EQ(asc_of(&j), 0x2a);
	CHECK_EQ(ascq_of(&j), 0x05);
	CHECK_EQ(job_run(0, cdb, 10, data, 512, &j), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(prout(1, 0x03, 0, 0xb, 0, &j), SCSI_GOOD); /* CLEAR */
	for (int i = 0; i < 4; i++)
		job_settle(i);

	/* COMPARE AND WRITE from both loops: matches write, a mismatch gets MISCOMPARE at its offset. */
	memset(data, 0x11, 512);
	memset(data + 512, 0x22, 512);
	caw_cdb(cdb, 10);
	CHECK_EQ(job_run(0, cdb, 16, data, 1024, &j), SCSI_GOOD);
	memset(data, 0x22, 512); /* what the medium holds now, but for one byte */
	data[300] = 0x99;
	CHECK_EQ(job_run(1, cdb, 16, data, 1024, &j), SCSI_CHECK_CONDITION);
	CHECK_EQ(key_of(&j), SK_MISCOMPARE);
	CHECK_EQ(asc_of(&j), 0x1d);
	CHECK_EQ(get_be32(j.cmd.sense + 3), 300u);
	rw(cdb, 0x28, 10);
	CHECK_EQ(job_run(3, cdb, 10, NULL, 0, &j), SCSI_GOOD);
	CHECK_EQ(j.in[0], 0x22);
	CHECK_EQ(j.in[300], 0x22);
	for (int n = 0; n < 40; n++) {
		/* Each COMPARE AND WRITE of a block of its own: all at once, one holding the lock at a time. */
		uint8_t d[1024];
		memset(d, 0, 512);
		memset(d + 512, n + 1, 512);
		caw_cdb(cdb, 100 + (uint64_t)n);
		job_start(&many[n % 2][n], n % 2 ? 1 : 0, cdb, 16, d, 1024);
	}
	for (int n = 0; n < 40; n++)
		CHECK_EQ(job_wait(&many[n % 2][n]), SCSI_GOOD);
	int st[3];
	on_thread(HOME, read_state, st);
	CHECK_EQ(st[0], 42);
	CHECK_EQ(st[1], 42);

	/* A LOGICAL UNIT RESET from L2: nexus 0 on L1 is told; the record is stored on the home thread. */
	on_thread(L2, lu_reset_here, NULL);
	for (int k2 = 0; k2 < 5000 && !atomic_load(&reset_stored); k2++)
		msleep(1);
	CHECK_EQ(atomic_load(&reset_stored), 1);
	CHECK_EQ(job_run(0, tur, 6, NULL, 0, &j), SCSI_CHECK_CONDITION);
	CHECK_EQ(asc_of(&j), 0x29);
	CHECK_EQ(ascq_of(&j), 0x03);
	for (int i = 0; i < 4; i++)
		job_settle(i);

	/* Cancelled right after submission, on its thread: completes exactly once. */
	for (int n = 0; n < 20; n++)
		job_post(&many[0][n], n % 2 ? 1 : 3, read_keys_cdb, 10, NULL, 0, true, job_submit_here);
	for (int n = 0; n < 20; n++)
		job_wait(&many[0][n]);
	msleep(50);
	for (int n = 0; n < 20; n++)
		CHECK_EQ(atomic_load(&many[0][n].done), 1);

	/*
	 * The LU removed while a command of L1 waits there to run: L1 blocks right after submitting
	 * it, the home thread's hand-over queues behind, the LU goes (every loop idle), L1 goes on:
	 * LOGICAL UNIT NOT SUPPORTED, and the shared state goes once that command is back home.
	 */
	job_post(&k, 0, read_keys_cdb, 10, NULL, 0, false, job_submit_block);
	pthread_mutex_lock(&gate.mu);
	while (!gate.blocked)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
	for (int n = 0; n < 5000 && mb_queued(&mb[L1]) == 0; n++)
		msleep(1);
	CHECK(mb_queued(&mb[L1]) > 0);
	on_thread(HOME, read_state, st);
	CHECK_EQ(st[2], 0);
	on_thread(HOME, remove_lu, NULL);
	pthread_mutex_lock(&gate.mu);
	gate.go = true;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
	CHECK_EQ(job_wait(&k), SCSI_CHECK_CONDITION);
	CHECK_EQ(key_of(&k), SK_ILLEGAL_REQUEST);
	CHECK_EQ(asc_of(&k), 0x25);
	for (int n = 0; n < 5000; n++) {
		on_thread(HOME, read_state, st);
		if (st[2])
			break;
		msleep(1);
	}
	CHECK_EQ(st[2], 1);

	mb_stop_all();
	CHECK_EQ(atomic_load(&wrong_thread), 0);
	CHECK_EQ(atomic_load(&bad), 0);
	scsi_target_free(tgt);
	for (int i = 0; i < NTH; i++)
		if (eng[i])
			store_engine_free(eng[i]);
	sbuf_free(&record);
	TEST_MAIN_END();
}
