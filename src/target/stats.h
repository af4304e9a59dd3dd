/* Counters of a connection (and, summed, of a session or the whole target). */
#ifndef ISTHMUS_TARGET_STATS_H
#define ISTHMUS_TARGET_STATS_H

#include <stdint.h>

/* Latency histogram bucket upper bounds in microseconds; the last bucket is unbounded. */
#define STATS_LAT_BUCKETS 12
extern const uint32_t stats_lat_bounds_us[STATS_LAT_BUCKETS - 1];

struct io_stats {
	uint64_t pdus_in, pdus_out;
	uint64_t bytes_in, bytes_out;     /* everything on the wire, headers included */
	uint64_t commands;
	uint64_t read_bytes, write_bytes; /* SCSI data moved to / from the initiator */
	uint64_t zero_copy_bytes;         /* of read_bytes, sent from the store's file without a copy (splice) */
	uint64_t r2ts;
	uint64_t digest_errors;
	uint64_t pdus_resent;             /* ERL 1: Data-In, R2T and responses sent again (SNACK, recovery R2T) */
	uint64_t task_mgmt;
	uint64_t errors;                  /* commands that ended with a status other than GOOD */
	uint64_t device_waits;            /* commands that waited for their device on a worker thread */
	uint64_t latency[STATS_LAT_BUCKETS];
	uint64_t latency_sum_us;
};

void stats_add(struct io_stats *dst, const struct io_stats *src);
void stats_record_latency(struct io_stats *s, uint64_t us);
uint64_t stats_now_us(void);

#endif
