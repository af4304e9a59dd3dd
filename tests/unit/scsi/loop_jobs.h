/*
 * SCSI commands of nexuses that live on the mailbox threads of mailbox.h, as a nexus lives on
 * one event loop of the target: a job is submitted on its nexus's thread, must complete there,
 * and is awaited from the main thread. Included after harness.h and mailbox.h by a test that
 * defines, anywhere in the file, nx_thread(NXI) (the thread of its nexus NXI) and nexus_of(NXI).
 * A completion on another thread is counted in wrong_thread, which the test checks is 0.
 */
#ifndef ISTHMUS_TEST_SCSI_LOOP_JOBS_H
#define ISTHMUS_TEST_SCSI_LOOP_JOBS_H

#include <stdio.h>

#include "harness.h"
#include "mailbox.h"

static int nx_thread(int nxi);
static struct scsi_nexus *nexus_of(int nxi);

static atomic_int wrong_thread;
static struct scsi_port_ctx *ctx[NTH];

struct job {
	struct scsi_cmd cmd;
	int th;
	bool cancel; /* cancelled right after its submission, on its thread */
	atomic_int done;
	uint8_t in[4096];
	uint8_t out[1024];
};

/* Runs fn(arg) on thread i and waits for it. */
static inline void on_thread(int i, void (*fn)(void *), void *arg) { CHECK(mb_call(i, fn, arg)); }

/* One context of t per thread, each told its thread; engs[i]: thread i's engine (NULL: inline). */
static inline void job_contexts(struct scsi_target *t, struct store_engine *const engs[NTH])
{
	for (int i = 0; i < NTH; i++) {
		ctx[i] = scsi_port_ctx_new(t, engs[i]);
		const struct scsi_port_thread th = { .post = mb_post, .here = mb_here, .owner = &mb[i] };
		scsi_port_ctx_set_thread(ctx[i], &th);
	}
}

/* Nexuses 0..n-1 of t, initiator iqn.2026-11.org.example:iNXI with ISID NXI + 1. */
static inline void job_nexuses(struct scsi_target *t, int n)
{
	for (int i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof(name), "iqn.2026-11.org.example:i%d", i);
		h_nexus(nexus_of(i), (uint64_t)i + 1, name);
		scsi_target_nexus_added(t, nexus_of(i));
	}
}

static inline void job_done(struct scsi_cmd *cmd)
{
	struct job *j = cmd->priv;
	if (self != &mb[j->th]) {
		fprintf(stderr, "a command of thread %d completed on another thread\n", j->th);
		atomic_fetch_add(&wrong_thread, 1);
	}
	atomic_fetch_add(&j->done, 1);
}

static inline void job_submit_here(void *arg)
{
	struct job *j = arg;
	bool cancel = j->cancel; /* j is the waiter's again once done ran (maybe inside the submit) */
	scsi_port_submit(ctx[j->th], &j->cmd);
	if (cancel)
		scsi_cmd_cancel(&j->cmd);
}

/* The command cdb (len bytes, out_len bytes of out to send) of nexus nxi, posted to its thread
 * where how (job_submit_here, or a function that calls it) submits it. */
static inline void job_post(struct job *j, int nxi, const uint8_t *cdb, size_t len, const void *out,
			    uint32_t out_len, bool cancel, void (*how)(void *))
{
	memset(j, 0, sizeof(*j));
	j->cancel = cancel;
	j->th = nx_thread(nxi);
	j->cmd.nexus = nexus_of(nxi);
	j->cmd.lun = 0;
	j->cmd.lun_valid = true;
	memcpy(j->cmd.cdb, cdb, len);
	j->cmd.cdb_len = 16;
	j->cmd.task_attr = TASK_SIMPLE;
	if (out_len)
		memcpy(j->out, out, out_len);
	j->cmd.out = j->out;
	j->cmd.out_len = out_len;
	j->cmd.in = j->in;
	j->cmd.in_cap = sizeof(j->in);
	j->cmd.done = job_done;
	j->cmd.priv = j;
	mb_post(&mb[j->th], how, j);
}

static inline void job_start(struct job *j, int nxi, const uint8_t *cdb, size_t len, const void *out,
			     uint32_t out_len)
{
	job_post(j, nxi, cdb, len, out, out_len, false, job_submit_here);
}

/* Waits (10 s at most) for the job, which must complete once: its status. */
static inline int job_wait(struct job *j)
{
	for (int k = 0; k < 10000 && !atomic_load(&j->done); k++)
		msleep(1);
	CHECK_EQ(atomic_load(&j->done), 1);
	return j->cmd.status;
}

static inline int job_run(int nxi, const uint8_t *cdb, size_t len, const void *out, uint32_t out_len, struct job *j)
{
	job_start(j, nxi, cdb, len, out, out_len);
	return job_wait(j);
}

/* TEST UNIT READY from nexus nxi until GOOD (8 tries): past the unit attentions it was given. */
static inline void job_settle(int nxi)
{
	uint8_t tur[6] = { 0 };
	struct job j;
	for (int i = 0; i < 8 && job_run(nxi, tur, 6, NULL, 0, &j) != SCSI_GOOD; i++)
		;
	CHECK_EQ(j.cmd.status, SCSI_GOOD);
}

#endif
