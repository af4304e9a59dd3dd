/*
 * Progress of a long transfer on standard error, for a person watching a terminal: bytes done,
 * the rate and the percentage, rewritten in place a few times a second, and a last line at the
 * end. Silent unless enabled (isthmus read/write: standard error is a terminal, no --json, no
 * --quiet), so scripts and logs never see it.
 */
#ifndef ISTHMUS_CLI_PROGRESS_H
#define ISTHMUS_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct progress {
	bool on;
	const char *verb;          /* "read", "wrote" */
	uint64_t total;            /* bytes; 0: unknown (no percentage) */
	uint64_t done;
	struct timespec start, last;
	bool shown;                /* a line is on the terminal, to be ended with a newline */
};

/* Whether progress should be shown: standard error is a terminal and neither quiet nor json. */
bool progress_wanted(bool quiet, bool json);
void progress_start(struct progress *p, bool on, const char *verb, uint64_t total);
/* bytes more are done: the line is redrawn when PROGRESS_INTERVAL_MS have passed. */
void progress_add(struct progress *p, uint64_t bytes);
/* The final line (when on), ended with a newline. */
void progress_end(struct progress *p);

#endif
