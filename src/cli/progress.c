#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

#define PROGRESS_INTERVAL_MS 250 /* redraws per second: enough to look alive, few writes */
#define MIB 1048576.0

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

bool progress_wanted(bool quiet, bool json) { return !quiet && !json && isatty(STDERR_FILENO); }

void progress_start(struct progress *p, bool on, const char *verb, uint64_t total)
{
	*p = (struct progress){.on = on, .verb = verb, .total = total};
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	p->last = p->start;
}

static void progress_draw(struct progress *p, const struct timespec *now)
{
	double secs = seconds_between(&p->start, now);
	double rate = secs > 0 ? (double)p->done / secs / MIB : 0.0;
	/* \r and erase-to-end-of-line: the line is rewritten in place */
	if (p->total)
		fprintf(stderr, "\r%s %.1f MiB of %.1f MiB (%u%%), %.1f MiB/s\033[K", p->verb, (double)p->done / MIB,
			(double)p->total / MIB, (unsigned)(p->done * 100 / p->total), rate);
	else
		fprintf(stderr, "\r%s %.1f MiB, %.1f MiB/s\033[K", p->verb, (double)p->done / MIB, rate);
	fflush(stderr);
	p->shown = true;
	p->last = *now;
}

void progress_add(struct progress *p, uint64_t bytes)
{
	p->done += bytes;
	if (!p->on)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (seconds_between(&p->last, &now) * 1000 >= PROGRESS_INTERVAL_MS)
		progress_draw(p, &now);
}

void progress_end(struct progress *p)
{
	if (!p->on)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	progress_draw(p, &now);
	fputc('\n', stderr);
	p->on = false;
}
