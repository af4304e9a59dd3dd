#include "target/stats.h"

#include <time.h>

const uint32_t stats_lat_bounds_us[STATS_LAT_BUCKETS - 1] = {50,   100,   250,   500,    1000,  2500,
							     5000, 10000, 50000, 100000, 1000000};

void stats_add(struct io_stats *dst, const struct io_stats *src)
{
	dst->pdus_in += src->pdus_in;
	dst->pdus_out += src->pdus_out;
	dst->bytes_in += src->bytes_in;
	dst->bytes_out += src->bytes_out;
	dst->commands += src->commands;
	dst->read_bytes += src->read_bytes;
	dst->write_bytes += src->write_bytes;
	dst->zero_copy_bytes += src->zero_copy_bytes;
	dst->r2ts += src->r2ts;
	dst->digest_errors += src->digest_errors;
	dst->pdus_resent += src->pdus_resent;
	dst->task_mgmt += src->task_mgmt;
	dst->errors += src->errors;
	dst->device_waits += src->device_waits;
	for (int i = 0; i < STATS_LAT_BUCKETS; i++)
		dst->latency[i] += src->latency[i];
	dst->latency_sum_us += src->latency_sum_us;
}

void stats_record_latency(struct io_stats *s, uint64_t us)
{
	int i = 0;
	while (i < STATS_LAT_BUCKETS - 1 && us > stats_lat_bounds_us[i])
		i++;
	s->latency[i]++;
	s->latency_sum_us += us;
}

uint64_t stats_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
