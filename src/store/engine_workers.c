/*
 * The workers backend: an io runs the store's synchronous ops on an offload thread. ios with the
 * same key run one at a time, in order (engine.c picks keys: one per sequential read stream,
 * one for a store's flushes, else the io itself).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "store/engine_int.h"

struct worker_io {
	struct offload_job job;
	size_t skip;
	int rc;
};

_Static_assert(sizeof(struct worker_io) <= sizeof(((struct store_io *)0)->engine_priv),
	       "the worker's bookkeeping lives in the io");

static struct worker_io *wio(struct store_io *io) { return (struct worker_io *)(void *)io->engine_priv; }

static struct store_io *job_io(struct offload_job *j)
{
	return (struct store_io *)((char *)j - offsetof(struct store_io, engine_priv));
}

static void worker_run(struct offload_job *j)
{
	struct store_io *io = job_io(j);
	if (io->cancelled && atomic_load(io->cancelled))
		wio(io)->rc = -ECANCELED; /* nobody wants it any more: spare the device */
	else
		wio(io)->rc = engine_run_sync(io->st, io, wio(io)->skip);
}

static void worker_done(struct offload_job *j)
{
	struct store_io *io = job_io(j);
	engine_complete(io, wio(io)->rc);
}

void engine_workers_submit(struct store_engine *e, struct store_io *io, size_t skip, const void *key)
{
	struct worker_io *w = wio(io);

	w->skip = skip;
	w->job.work = worker_run;
	w->job.done = worker_done;
	w->job.key = key;
	e->stats.worker_submitted++;
	offload_submit(e->off, &w->job);
}
