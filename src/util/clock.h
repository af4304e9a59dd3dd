/* The monotonic clock in milliseconds, for deadlines and leases that wall-clock steps must not move. */
#ifndef ISTHMUS_UTIL_CLOCK_H
#define ISTHMUS_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
