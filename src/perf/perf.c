/*
 * isthmus-perf: a load generator on libisthmus's asynchronous core, with the options of
 * libiscsi's iscsi-perf. It keeps max_requests READ(16) (or WRITE(16)) commands in flight on one
 * session (one or more connections), drives the session with its own poll loop
 * (ism_session_fds / poll / ism_session_service), prints a progress line each second and ends
 * with "iops average N (M MB/s)" and the completion latency of the successful commands
 * ("latency p50 N us, p99 N us, max N us"). Every buffer is allocated before the clock starts: the loop
 * itself allocates nothing (the library takes its tasks and PDU slots from pools).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "isthmus/isthmus.h"
#include "util/parse.h"

#define PERF_MAX_FDS 16

struct slot {
	struct perf *p;
	uint8_t *buf;
	uint64_t issued_ns;
	bool busy;
};

/* Latencies in microseconds, one counter per microsecond up to LAT_SLOTS; slower commands
 * share the last counter (and still set max_us exactly). */
#define LAT_SLOTS 200000

struct latency {
	uint32_t *count; /* LAT_SLOTS counters */
	uint64_t n, max_us;
};

struct perf {
	struct ism_session *s;
	uint64_t lun;
	uint64_t num_blocks;
	uint32_t block_size;
	uint32_t blocks;
	bool random, write, ignore_errors;
	uint64_t pos;   /* next LBA of the sequential pattern */
	uint64_t rng;   /* xorshift state for the random pattern */
	uint64_t last_lba;
	bool stop;      /* time is up: no new commands */
	bool failed;
	int in_flight;
	uint64_t done, errors, busy;
	struct slot *slots;
	int nslots;
	struct latency lat;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t next_random(struct perf *p)
{
	uint64_t x = p->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	p->rng = x;
	return x;
}

static void on_io(struct ism_session *s, const struct ism_scsi_result *r, void *priv);

static void latency_record(struct latency *l, uint64_t us)
{
	l->count[us < LAT_SLOTS ? us : LAT_SLOTS - 1]++;
	l->n++;
	if (us > l->max_us)
		l->max_us = us;
}

/* The smallest latency at or below which `permille` thousandths of the commands completed. */
static uint64_t latency_percentile(const struct latency *l, unsigned permille)
{
	uint64_t want = (l->n * permille + 999) / 1000, seen = 0;
	for (uint64_t us = 0; us < LAT_SLOTS; us++) {
		seen += l->count[us];
		if (seen >= want && seen > 0)
			return us == LAT_SLOTS - 1 ? l->max_us : us;
	}
	return l->max_us;
}

static int issue(struct slot *sl)
{
	struct perf *p = sl->p;
	uint64_t lba;
	if (p->random) {
		uint64_t span = p->num_blocks / p->blocks;
		lba = (next_random(p) % span) * p->blocks;
	} else {
		if (p->pos + p->blocks > p->num_blocks)
			p->pos = 0;
		lba = p->pos;
		p->pos += p->blocks;
	}
	p->last_lba = lba;
	uint8_t cdb[16];
	size_t n = ism_cdb_rw16(cdb, p->write, lba, p->blocks);
	uint32_t len = p->blocks * p->block_size;
	if (!ism_scsi_async(p->s, p->lun, cdb, n, p->write ? ISM_DIR_WRITE : ISM_DIR_READ, sl->buf, len, on_io, sl)) {
		fprintf(stderr, "isthmus-perf: cannot queue a command: %s\n", ism_session_error(p->s));
		p->failed = true;
		return -1;
	}
	sl->busy = true;
	sl->issued_ns = now_ns();
	p->in_flight++;
	return 0;
}

static void on_io(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	(void)s;
	struct slot *sl = priv;
	struct perf *p = sl->p;
	sl->busy = false;
	p->in_flight--;
	if (r->error == ISM_OK && r->status == 0) {
		p->done++;
		latency_record(&p->lat, (now_ns() - sl->issued_ns) / 1000u);
	} else if (r->error == ISM_OK && (r->status == 0x08 || r->status == 0x28)) {
		p->busy++; /* BUSY / TASK SET FULL: retried like iscsi-perf does */
	} else {
		p->errors++;
		if (!p->ignore_errors) {
			char text[400];
			fprintf(stderr, "\nisthmus-perf: %s failed: %s\n", p->write ? "WRITE(16)" : "READ(16)",
				ism_result_text(r, text, sizeof(text)));
			if (r->error != ISM_OK)
				fprintf(stderr, "isthmus-perf: %s\n", ism_session_error(p->s));
			p->failed = true;
			return;
		}
	}
	if (!p->stop && !p->failed)
		issue(sl);
}

static void usage(FILE *f)
{
	fputs("usage: isthmus-perf [-i initiator-name] [-m max_requests] [-b blocks_per_request] [-t seconds]\n"
	      "                    [-r|--random] [-n|--ignore-errors] [-l|--logging] [--write] [--connections N]\n"
	      "                    iscsi://[user[%password]@]host[:port]/target-iqn/lun\n"
	      "\n"
	      "  -i, --initiator-name IQN  initiator name (default iqn.2026-01.org.isthmus:perf)\n"
	      "  -m, --max N               commands in flight (default 32)\n"
	      "  -b, --blocks N            blocks per command (default 8)\n"
	      "  -t, --timeout SECONDS     run time (default 10)\n"
	      "  -r, --random              random LBAs (default sequential)\n"
	      "  -n, --ignore-errors       count failed commands and go on\n"
	      "  -l, --logging             trace the login and PDUs to standard error\n"
	      "      --write               WRITE(16) instead of READ(16): this overwrites the LUN\n"
	      "      --connections N       connections in the session (default 1)\n"
	      "  -x, --max-reconnects N    accepted for iscsi-perf's command lines; a failed session ends the run\n"
	      "  -h, --help                this text\n"
	      "      --version             the version\n",
	      f);
}

static bool parse_count(const char *s, unsigned long max, unsigned long *out)
{
	uint64_t v;
	if (parse_uint(s, 10, 0, max, &v) < 0)
		return false;
	*out = (unsigned long)v;
	return true;
}

static void progress(const struct perf *p, int remaining_s, uint64_t cur_ios, double cur_s, uint64_t total,
		     double total_s, bool tty)
{
	uint64_t bytes = (uint64_t)p->blocks * p->block_size;
	uint64_t iops_cur = cur_s > 0 ? (uint64_t)((double)cur_ios / cur_s) : 0;
	uint64_t iops_avg = total_s > 0 ? (uint64_t)((double)total / total_s) : 0;
	if (remaining_s < 0)
		remaining_s = 0;
	printf("%02d:%02d:%02d - lba %" PRIu64 ", iops current %" PRIu64 " (%" PRIu64 " MB/s), iops average %" PRIu64
	       " (%" PRIu64 " MB/s), in_flight %d, busy %" PRIu64 "%s",
	       remaining_s / 3600, remaining_s / 60 % 60, remaining_s % 60, p->last_lba, iops_cur,
	       iops_cur * bytes >> 20, iops_avg, iops_avg * bytes >> 20, p->in_flight, p->busy, tty ? "        \r" : "\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"initiator-name", required_argument, NULL, 'i'},
		{"max", required_argument, NULL, 'm'},
		{"blocks", required_argument, NULL, 'b'},
		{"timeout", required_argument, NULL, 't'},
		{"random", no_argument, NULL, 'r'},
		{"ignore-errors", no_argument, NULL, 'n'},
		{"logging", no_argument, NULL, 'l'},
		{"max-reconnects", required_argument, NULL, 'x'},
		{"write", no_argument, NULL, 'W'},
		{"connections", required_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *initiator = "iqn.2026-01.org.isthmus:perf";
	unsigned long max_req = 32, blocks = 8, seconds = 10, conns = 1, ul;
	struct perf p = {0};
	int c;
	while ((c = getopt_long(argc, argv, "i:m:b:t:rnlx:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': initiator = optarg; break;
		case 'm':
			if (!parse_count(optarg, 4096, &max_req) || max_req == 0) {
				fprintf(stderr, "isthmus-perf: -m takes 1 to 4096, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'b':
			if (!parse_count(optarg, 65535, &blocks) || blocks == 0) {
				fprintf(stderr, "isthmus-perf: -b takes 1 to 65535, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (!parse_count(optarg, 86400, &seconds) || seconds == 0) {
				fprintf(stderr, "isthmus-perf: -t takes 1 to 86400 seconds, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'r': p.random = true; break;
		case 'n': p.ignore_errors = true; break;
		case 'l': ism_set_debug(true); break;
		case 'x': /* reconnects: accepted for iscsi-perf compatibility; a failed session ends the run */
			if (!parse_count(optarg, 1000000, &ul)) {
				fprintf(stderr, "isthmus-perf: -x takes a number, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'W': p.write = true; break;
		case 'C':
			if (!parse_count(optarg, PERF_MAX_FDS, &conns) || conns == 0) {
				fprintf(stderr, "isthmus-perf: --connections takes 1 to %d, not '%s'\n", PERF_MAX_FDS, optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("isthmus-perf %s\n", ISTHMUS_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	const char *url_text = argv[optind];
	char err[512];
	struct ism_url *u = ism_url_parse(url_text, err, sizeof(err));
	if (!u) {
		fprintf(stderr, "isthmus-perf: %s\n", err);
		return 2;
	}
	if (!u->target || !u->has_lun) {
		fprintf(stderr, "isthmus-perf: the URL must name a target and a LUN: iscsi://host[:port]/iqn/lun\n");
		ism_url_free(u);
		return 2;
	}
	printf("isthmus-perf (libisthmus)\n\n");

	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = initiator;
	cfg.target_name = u->target;
	cfg.chap_user = u->user;
	cfg.chap_secret = u->secret;
	cfg.mutual_user = u->target_user;
	cfg.mutual_secret = u->target_secret;
	p.s = ism_session_new(&cfg, err, sizeof(err));
	if (!p.s) {
		fprintf(stderr, "isthmus-perf: %s\n", err);
		ism_url_free(u);
		return 1;
	}
	p.lun = u->lun;
	int rc = 1;
	if (ism_connect(p.s, u->portal) < 0) {
		fprintf(stderr, "isthmus-perf: %s\n", ism_session_error(p.s));
		goto out;
	}
	for (unsigned long i = 1; i < conns; i++) {
		if (ism_add_connection(p.s, u->portal, NULL) < 0) {
			fprintf(stderr, "isthmus-perf: connection %lu: %s\n", i + 1, ism_session_error(p.s));
			goto out;
		}
	}
	printf("connected to %s (%d connection%s)\n", url_text, ism_session_connections(p.s, NULL, 0),
	       conns > 1 ? "s" : "");
	uint64_t last;
	if (ism_read_capacity16(p.s, p.lun, &last, &p.block_size) < 0) {
		uint32_t l32;
		if (ism_read_capacity10(p.s, p.lun, &l32, &p.block_size) < 0) {
			fprintf(stderr, "isthmus-perf: READ CAPACITY: %s\n", ism_session_error(p.s));
			goto out;
		}
		last = l32;
	}
	if (p.block_size == 0) {
		fprintf(stderr, "isthmus-perf: the LUN reports a block size of 0\n");
		goto out;
	}
	p.num_blocks = last + 1;
	p.blocks = (uint32_t)blocks;
	if (p.num_blocks < p.blocks) {
		fprintf(stderr, "isthmus-perf: the LUN has %" PRIu64 " blocks, fewer than one request\n", p.num_blocks);
		goto out;
	}
	uint64_t req_bytes = (uint64_t)p.blocks * p.block_size;
	if (req_bytes > 0xffffffffu) {
		fprintf(stderr, "isthmus-perf: a request of %" PRIu64 " bytes is too large\n", req_bytes);
		goto out;
	}
	printf("capacity is %" PRIu64 " blocks or %" PRIu64 " byte (%" PRIu64 " MB)\n", p.num_blocks,
	       p.num_blocks * p.block_size, (p.num_blocks * p.block_size) >> 20);
	printf("performing %s %s with %lu parallel requests\n", p.random ? "RANDOM" : "SEQUENTIAL",
	       p.write ? "WRITE" : "READ", max_req);
	printf("FIXED transfer size of %u blocks (%" PRIu64 " byte)\n", p.blocks, req_bytes);
	printf("will run for %lu seconds.\n\n", seconds);
	fflush(stdout);

	/* Everything the loop needs, allocated once. */
	p.nslots = (int)max_req;
	p.slots = calloc((size_t)p.nslots, sizeof(*p.slots));
	p.lat.count = calloc(LAT_SLOTS, sizeof(*p.lat.count));
	if (!p.slots || !p.lat.count) {
		fprintf(stderr, "isthmus-perf: out of memory\n");
		goto out;
	}
	for (int i = 0; i < p.nslots; i++) {
		p.slots[i].p = &p;
		if (posix_memalign((void **)&p.slots[i].buf, 4096, (size_t)req_bytes) != 0) {
			fprintf(stderr, "isthmus-perf: out of memory for %d buffers of %" PRIu64 " bytes\n", p.nslots,
				req_bytes);
			goto out;
		}
		memset(p.slots[i].buf, p.write ? 0xa5 : 0, (size_t)req_bytes);
	}
	p.rng = (uint64_t)now_ns() | 1;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	bool tty = isatty(STDOUT_FILENO);

	uint64_t start = now_ns();
	uint64_t end = start + (uint64_t)seconds * 1000000000u;
	uint64_t next_report = start + 1000000000u;
	uint64_t last_report = start, last_done = 0;
	for (int i = 0; i < p.nslots && !p.failed; i++)
		issue(&p.slots[i]);

	struct pollfd fds[PERF_MAX_FDS];
	while (!p.failed && (p.in_flight > 0 || !p.stop)) {
		uint64_t t = now_ns();
		if (!p.stop && (t >= end || interrupted))
			p.stop = true;
		if (t >= next_report && !p.stop) {
			uint64_t left = end > t ? (end - t + 999999999u) / 1000000000u : 0;
			progress(&p, (int)left, p.done - last_done, (double)(t - last_report) / 1e9, p.done,
				 (double)(t - start) / 1e9, tty);
			last_done = p.done;
			last_report = t;
			next_report += 1000000000u;
		}
		if (p.stop && p.in_flight == 0)
			break;
		int n = ism_session_fds(p.s, fds, PERF_MAX_FDS);
		int to = ism_session_timeout_ms(p.s);
		int until_report = (int)((next_report > t ? next_report - t : 0) / 1000000u) + 1;
		if (to < 0 || to > until_report)
			to = until_report;
		if (n == 0) {
			fprintf(stderr, "\nisthmus-perf: no connection left: %s\n", ism_session_error(p.s));
			p.failed = true;
			break;
		}
		int r = poll(fds, (nfds_t)n, to);
		if (r < 0 && errno != EINTR) {
			perror("poll");
			p.failed = true;
			break;
		}
		for (int i = 0; r > 0 && i < n; i++) {
			if (fds[i].revents && ism_session_service(p.s, fds[i].fd, fds[i].revents) < 0) {
				fprintf(stderr, "\nisthmus-perf: session failed: %s\n", ism_session_error(p.s));
				p.failed = true;
			}
		}
		if (r == 0 && ism_session_service(p.s, -1, 0) < 0) {
			fprintf(stderr, "\nisthmus-perf: session failed: %s\n", ism_session_error(p.s));
			p.failed = true;
		}
	}
	uint64_t elapsed = now_ns() - start;
	double secs = (double)elapsed / 1e9;
	uint64_t iops = secs > 0 ? (uint64_t)((double)p.done / secs) : 0;
	if (tty)
		printf("\n");
	if (p.errors)
		fprintf(stderr, "isthmus-perf: %" PRIu64 " command%s failed\n", p.errors, p.errors == 1 ? "" : "s");
	if (!p.failed || p.ignore_errors) {
		if (ism_session_logged_in(p.s) && ism_logout(p.s) < 0)
			fprintf(stderr, "isthmus-perf: logout: %s\n", ism_session_error(p.s));
		rc = p.failed ? 1 : 0;
	}
	printf("iops average %" PRIu64 " (%" PRIu64 " MB/s)\n", iops, iops * req_bytes >> 20);
	if (p.lat.n)
		printf("latency p50 %" PRIu64 " us, p99 %" PRIu64 " us, max %" PRIu64 " us\n",
		       latency_percentile(&p.lat, 500), latency_percentile(&p.lat, 990), p.lat.max_us);
out:
	ism_session_free(p.s);
	if (p.slots)
		for (int i = 0; i < p.nslots; i++)
			free(p.slots[i].buf);
	free(p.slots);
	free(p.lat.count);
	ism_url_free(u);
	return rc;
}
