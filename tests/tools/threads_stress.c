/*
 * isthmus-threads-stress: several sessions (distinct initiator names and ISIDs) hammer one LU at
 * once for a bounded time and check that the LU's shared state stays right: data, persistent
 * reservations, unit attentions, LOGICAL UNIT RESET and ABORT TASK. Test-only, never installed;
 * run by tests/interop/test_threads_stress.sh. Built on libisthmus's public API only.
 *
 *   isthmus-threads-stress iscsi://HOST:PORT/IQN/LUN [--sessions 8] [--seconds 12] [--bound 10]
 *                          [--seed N] [--ready-file PATH] [--name-prefix IQN]
 *
 * Every session runs, on one poll loop, a mix of: WRITE/READ of its own slots (verified: a slot
 * reads back what its owner last had acknowledged, or one of the writes that were aborted since,
 * block by block), WRITE/READ of a shared range where writes race (status only), TEST UNIT READY,
 * PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY, RESERVE and RELEASE of types Write
 * Exclusive - Registrants Only, Exclusive Access - Registrants Only and Exclusive Access, PREEMPT
 * of another session's key, unregister, CLEAR), PERSISTENT RESERVE IN (READ KEYS then READ
 * RESERVATION, READ FULL STATUS), ABORT TASK of one of its own commands, and now and then a
 * LOGICAL UNIT RESET.
 *
 * Reservation conflicts are judged in two kinds of phase, alternating:
 *  - checked: PERSISTENT RESERVE OUT commands are serialized over the whole driver (one in flight
 *    at a time, none while a LU RESET is), so the driver knows the registrations and the
 *    reservation exactly (struct st_pr_model). Each PERSISTENT RESERVE OUT must then have the
 *    outcome SPC-4 gives for that state; a READ or WRITE sent while the state is known and
 *    answered before the next PERSISTENT RESERVE OUT is even sent ran under that state, so it
 *    must meet RESERVATION CONFLICT exactly when the state excludes its session (both ways: a
 *    conflict the state does not explain, and a command let through that it excludes, are
 *    violations); READ KEYS / READ RESERVATION / READ FULL STATUS answered in such a window must
 *    describe that state.
 *  - free: every session sends reservation commands whenever it likes, so the target orders them
 *    and the driver cannot know the state. Any RESERVATION CONFLICT is then accepted on a READ or
 *    WRITE that was in flight while a reservation could be held, that is unless the state was
 *    known to have none when it was sent and no RESERVE or PREEMPT (the only ways to take one) was
 *    sent before it was answered. At the end of a free phase the driver waits until no
 *    reservation command is in flight, reads the state with READ FULL STATUS (checked for
 *    consistency) and takes it as the known state of the next checked phase.
 * A command that met a unit attention, BUSY or TASK SET FULL did not run and judges nothing.
 * These rules never call a correct target wrong: a judgement is only made where the target had
 * one state to answer from.
 *
 * Other invariants: every command and task management request is answered exactly once within
 * --bound seconds (commands another session's LU RESET ends without a word are asked about with
 * ABORT TASK, as an initiator's error handling does: then the library ends them as aborted); an
 * ABORT TASK answered "function complete" or "task does not exist" finds its task already ended,
 * one way or the other; after a LU RESET completed, the first command each other session sends
 * that runs must not run unless that session was given a 29h unit attention since the reset was
 * sent; generations of PERSISTENT RESERVE IN never go back; at the end every session gets the same
 * READ KEYS and READ RESERVATION, every own slot reads back right, every session logs out cleanly,
 * and a fresh session logs in and gets answers. Exit 0 when all held, 1 with one line per
 * violation (VIOLATION: ...), 2 on a usage or set-up error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threads_stress.h"

struct st_run stress = {.nsess = 8, .seconds = 12, .bound_s = 10, .prefix = "iqn.2026-11.org.isthmus:stress"};

uint64_t st_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t st_rnd(void)
{
	stress.rng ^= stress.rng << 13;
	stress.rng ^= stress.rng >> 7;
	stress.rng ^= stress.rng << 17;
	return stress.rng;
}

unsigned st_pick(unsigned n) { return (unsigned)(st_rnd() % n); }

void st_violation(const char *fmt, ...)
{
	va_list ap;
	stress.violations++;
	if (stress.violations > 40)
		return;
	fprintf(stderr, "VIOLATION [%.3fs]: ", (double)(st_now_ms() - stress.t0) / 1000.0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void st_fatal(const char *fmt, ...)
{
	va_list ap;
	stress.violations++;
	stress.fatal = true;
	fprintf(stderr, "VIOLATION [%.3fs]: ", (double)(st_now_ms() - stress.t0) / 1000.0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- set-up and the end, one command at a time --------------------------------------------- */

/* One command, again while it meets a unit attention or BUSY (bounded). 0 when GOOD. */
static int blocking(struct sess *s, const uint8_t *cdb, size_t cl, enum ism_dir dir, void *buf, uint32_t len,
		    struct ism_scsi_result *res, const char *what)
{
	for (int i = 0; i < 20; i++) {
		if (ism_scsi(s->is, stress.u->lun, cdb, cl, dir, buf, len, res) == 0)
			return 0;
		enum st_outcome o = st_classify(res);
		if (o != OUT_UA_RESET && o != OUT_UA_OTHER && o != OUT_BUSY)
			break;
	}
	st_violation("session %d: %s: %s", s->id, what, ism_session_error(s->is));
	return -1;
}

static int pr_out_blocking(struct sess *s, uint8_t sa, uint64_t sark)
{
	uint8_t p[24] = {0};
	uint64_t key = st_key_of(s->id);
	for (int i = 0; i < 8; i++) {
		p[i] = (uint8_t)(key >> (56 - 8 * i));
		p[8 + i] = (uint8_t)(sark >> (56 - 8 * i));
	}
	uint8_t cdb[16] = {0x5f, sa, 0, 0, 0, 0, 0, 0, 24, 0};
	struct ism_scsi_result res;
	return blocking(s, cdb, 10, ISM_DIR_WRITE, p, 24, &res, st_pr_out_name(sa, sark));
}

static int pr_in_blocking(struct sess *s, uint8_t sa, struct st_pr_in *in)
{
	uint8_t buf[PR_IN_ALLOC];
	uint8_t cdb[16] = {0x5e, sa, 0, 0, 0, 0, 0, PR_IN_ALLOC >> 8, PR_IN_ALLOC & 0xff, 0};
	struct ism_scsi_result res;
	char why[400];
	if (blocking(s, cdb, 10, ISM_DIR_READ, buf, sizeof(buf), &res, "PERSISTENT RESERVE IN") < 0)
		return -1;
	if (!st_parse_pr_in(sa, buf, res.transferred, in, why, sizeof(why)) ||
	    !st_pr_in_consistent(sa, in, stress.nsess, stress.ports, why, sizeof(why))) {
		st_violation("session %d: PERSISTENT RESERVE IN (service action %u) at the end: %s", s->id, sa, why);
		return -1;
	}
	return 0;
}

static struct ism_session *login(const char *name, const uint8_t isid[6], char *err, size_t errlen)
{
	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = name;
	cfg.target_name = stress.u->target;
	cfg.isid_set = true;
	memcpy(cfg.isid, isid, 6);
	cfg.max_connections = 1;
	/* The library's own bound stays above ours, so that ours is the one that reports. */
	cfg.cmd_timeout_ms = (int)stress.bound_s * 3000;
	struct ism_session *is = ism_session_new(&cfg, err, errlen);
	if (!is)
		return NULL;
	if (ism_connect(is, stress.u->portal) < 0) {
		snprintf(err, errlen, "%s", ism_session_error(is));
		ism_session_free(is);
		return NULL;
	}
	return is;
}

static int setup(void)
{
	char err[512];
	for (int i = 0; i < stress.nsess; i++) {
		struct sess *s = &stress.sess[i];
		s->id = i;
		s->hot_slot = -1;
		snprintf(s->name, sizeof(s->name), "%s-l%" PRIu64 "-s%d", stress.prefix, stress.u->lun, i);
		uint8_t isid[6] = {0x80, 0x53, 0x54, (uint8_t)stress.u->lun, (uint8_t)(stress.seed & 0xff), (uint8_t)i};
		snprintf(s->port, sizeof(s->port), "%s,i,0x%02x%02x%02x%02x%02x%02x", s->name, isid[0], isid[1], isid[2],
			 isid[3], isid[4], isid[5]);
		memcpy(stress.ports[i], s->port, sizeof(s->port));
		s->is = login(s->name, isid, err, sizeof(err));
		if (!s->is) {
			fprintf(stderr, "isthmus-threads-stress: login of session %d (%s): %s\n", i, s->name, err);
			return -1;
		}
		for (int k = 0; k < DEPTH; k++)
			s->cmds[k].buf = malloc(PR_IN_ALLOC > 2 * SLOT_BLOCKS * 4096 ? PR_IN_ALLOC : 2 * SLOT_BLOCKS * 4096);
	}
	printf("stress: %d sessions logged in to %s LUN %" PRIu64 "\n", stress.nsess, stress.u->target, stress.u->lun);
	fflush(stdout);
	if (stress.ready_file) {
		FILE *f = fopen(stress.ready_file, "w");
		if (f)
			fclose(f);
	}
	struct ism_scsi_result res;
	uint8_t cdb[16];
	for (int i = 0; i < stress.nsess; i++) {
		size_t cl = ism_cdb_test_unit_ready(cdb);
		if (blocking(&stress.sess[i], cdb, cl, ISM_DIR_NONE, NULL, 0, &res, "TEST UNIT READY") < 0)
			return -1;
	}
	uint64_t last;
	if (ism_read_capacity16(stress.sess[0].is, stress.u->lun, &last, &stress.bs) < 0) {
		fprintf(stderr, "isthmus-threads-stress: READ CAPACITY: %s\n", ism_session_error(stress.sess[0].is));
		return -1;
	}
	if (stress.bs < 512 || stress.bs > 4096) {
		fprintf(stderr, "isthmus-threads-stress: block size %u not handled\n", stress.bs);
		return -1;
	}
	stress.own_base = 0;
	stress.shared_base = (uint64_t)stress.nsess * OWN_SLOTS * SLOT_BLOCKS;
	uint64_t need = stress.shared_base + SHARED_SLOTS * SLOT_BLOCKS;
	if (last + 1 < need || need > 0xffffffffull) {
		fprintf(stderr, "isthmus-threads-stress: the LU has %" PRIu64 " blocks, %" PRIu64 " needed\n", last + 1, need);
		return -1;
	}
	/* A known start: no registration, no reservation, every own slot written (generation 0). */
	if (pr_out_blocking(&stress.sess[0], PRO_REGISTER_IGNORE, st_key_of(0)) < 0 || pr_out_blocking(&stress.sess[0], PRO_CLEAR, 0) < 0)
		return -1;
	memset(&stress.model, 0, sizeof(stress.model));
	stress.model.known = true;
	uint32_t len = OWN_SLOTS * SLOT_BLOCKS * stress.bs;
	uint8_t *buf = malloc(len);
	for (int i = 0; i < stress.nsess; i++) {
		for (uint32_t sl = 0; sl < OWN_SLOTS; sl++)
			for (uint32_t b = 0; b < SLOT_BLOCKS; b++)
				st_fill_block(buf + ((size_t)sl * SLOT_BLOCKS + b) * stress.bs, stress.bs, stress.salt, i, sl, 0, b);
		uint8_t wcdb[16];
		size_t cl = ism_cdb_rw16(wcdb, true, stress.own_base + (uint64_t)i * OWN_SLOTS * SLOT_BLOCKS, OWN_SLOTS * SLOT_BLOCKS);
		if (blocking(&stress.sess[i], wcdb, cl, ISM_DIR_WRITE, buf, len, &res, "first WRITE of its slots") < 0) {
			free(buf);
			return -1;
		}
	}
	free(buf);
	return 0;
}

static void final_checks(void)
{
	/* 1. Every session sees the same registrations and reservation. */
	static struct st_pr_in rk0, rr0, rk, rr;
	for (int i = 0; i < stress.nsess; i++) {
		if (pr_in_blocking(&stress.sess[i], PRI_READ_KEYS, &rk) < 0 ||
		    pr_in_blocking(&stress.sess[i], PRI_READ_RESERVATION, &rr) < 0)
			return;
		if (rr.held && rk.generation == rr.generation) {
			bool found = false;
			for (size_t k = 0; k < rk.nkeys; k++)
				found |= rk.keys[k] == rr.holder_key;
			if (!found)
				st_violation("at the end, session %d: the reservation's holder key is not among READ KEYS", i);
		}
		if (i == 0) {
			rk0 = rk;
			rr0 = rr;
			if (stress.model.known) {
				char why[400];
				if (!st_pr_in_matches(PRI_READ_KEYS, &rk, &stress.model, stress.nsess, why, sizeof(why)) ||
				    !st_pr_in_matches(PRI_READ_RESERVATION, &rr, &stress.model, stress.nsess, why, sizeof(why)))
					st_violation("at the end, the state read back differs from the known one: %s", why);
			}
			continue;
		}
		bool same = rk.generation == rk0.generation && rk.nkeys == rk0.nkeys && rr.held == rr0.held &&
			    rr.generation == rr0.generation && (!rr.held || (rr.holder_key == rr0.holder_key && rr.type == rr0.type));
		for (size_t k = 0; same && k < rk.nkeys; k++) {
			bool found = false;
			for (size_t j = 0; j < rk0.nkeys; j++)
				found |= rk0.keys[j] == rk.keys[k];
			same = found;
		}
		if (!same)
			st_violation("at the end, session %d's READ KEYS / READ RESERVATION (generation %u, %zu keys, %s) differ "
				  "from session 0's (generation %u, %zu keys, %s)",
				  i, rk.generation, rk.nkeys, rr.held ? "held" : "not held", rk0.generation, rk0.nkeys,
				  rr0.held ? "held" : "not held");
	}
	printf("stress: final state agreed by all %d sessions: generation %u, %zu registrations, reservation %s", stress.nsess,
	       rk0.generation, rk0.nkeys, rr0.held ? "held" : "not held");
	if (rr0.held)
		printf(" by session %d type %u", st_session_of_key(rr0.holder_key, stress.nsess), rr0.type);
	printf("\n");
	/* 2. Every own slot reads back right (with the reservation cleared, so that every session may read). */
	if (pr_out_blocking(&stress.sess[0], PRO_REGISTER_IGNORE, st_key_of(0)) < 0 || pr_out_blocking(&stress.sess[0], PRO_CLEAR, 0) < 0)
		return;
	uint32_t len = OWN_SLOTS * SLOT_BLOCKS * stress.bs;
	uint8_t *buf = malloc(len);
	struct cmd c = {.buf = NULL};
	for (int i = 0; i < stress.nsess; i++) {
		struct sess *s = &stress.sess[i];
		uint8_t cdb[16];
		struct ism_scsi_result res;
		size_t cl = ism_cdb_rw16(cdb, false, stress.own_base + (uint64_t)i * OWN_SLOTS * SLOT_BLOCKS, OWN_SLOTS * SLOT_BLOCKS);
		if (blocking(s, cdb, cl, ISM_DIR_READ, buf, len, &res, "last READ of its slots") < 0)
			break;
		for (uint32_t sl = 0; sl < OWN_SLOTS; sl++) {
			c.s = s;
			c.slot = sl;
			c.buf = buf + (size_t)sl * SLOT_BLOCKS * stress.bs;
			c.lba = stress.own_base + ((uint64_t)i * OWN_SLOTS + sl) * SLOT_BLOCKS;
			st_verify_own_read(s, &c);
		}
	}
	free(buf);
}

static int final_logouts(void)
{
	int bad = 0;
	for (int i = 0; i < stress.nsess; i++)
		if (ism_logout(stress.sess[i].is) < 0) {
			st_violation("session %d: logout: %s", i, ism_session_error(stress.sess[i].is));
			bad++;
		}
	if (!bad)
		printf("stress: all %d sessions logged out cleanly\n", stress.nsess);
	return bad;
}

static void fresh_login(void)
{
	char err[512], name[256];
	snprintf(name, sizeof(name), "%s-l%" PRIu64 "-fresh", stress.prefix, stress.u->lun);
	uint8_t isid[6] = {0x80, 0x53, 0x54, (uint8_t)stress.u->lun, (uint8_t)(stress.seed & 0xff), 0xff};
	struct ism_session *is = login(name, isid, err, sizeof(err));
	if (!is) {
		st_violation("a fresh login after the run failed: %s", err);
		return;
	}
	struct sess s = {.id = -1, .is = is};
	struct st_pr_in rr;
	uint8_t cdb[16];
	struct ism_scsi_result res;
	size_t cl = ism_cdb_test_unit_ready(cdb);
	if (blocking(&s, cdb, cl, ISM_DIR_NONE, NULL, 0, &res, "TEST UNIT READY of a fresh session") == 0 &&
	    pr_in_blocking(&s, PRI_READ_RESERVATION, &rr) == 0) {
		if (rr.held)
			st_violation("a fresh session sees a reservation after CLEAR");
		else
			printf("stress: a fresh session logged in and got answers\n");
	}
	if (ism_logout(is) < 0)
		st_violation("the fresh session's logout: %s", ism_session_error(is));
	ism_session_free(is);
}

static void usage(FILE *f)
{
	fputs("usage: isthmus-threads-stress iscsi://HOST:PORT/IQN/LUN [--sessions N (2-16, default 8)]\n"
	      "                              [--seconds N (default 12)] [--bound SECONDS (default 10)] [--seed N]\n"
	      "                              [--ready-file PATH] [--name-prefix IQN]\n",
	      f);
}

static bool number(const char *v, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 0);
	if (errno || end == v || *end || n > max)
		return false;
	*out = n;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"sessions", required_argument, NULL, 'n'}, {"seconds", required_argument, NULL, 't'},
		{"bound", required_argument, NULL, 'b'},    {"seed", required_argument, NULL, 's'},
		{"ready-file", required_argument, NULL, 'r'}, {"name-prefix", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
	};
	unsigned long long v;
	int opt;
	stress.seed = (uint64_t)time(NULL) ^ ((uint64_t)st_now_ms() << 20);
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (!number(optarg, ST_MAX_SESSIONS, &v) || v < 2)
				goto bad;
			stress.nsess = (int)v;
			break;
		case 't':
			if (!number(optarg, 3600, &v) || v < 1)
				goto bad;
			stress.seconds = (unsigned)v;
			break;
		case 'b':
			if (!number(optarg, 600, &v) || v < 1)
				goto bad;
			stress.bound_s = (unsigned)v;
			break;
		case 's':
			if (!number(optarg, UINT64_MAX, &v))
				goto bad;
			stress.seed = v;
			break;
		case 'r': stress.ready_file = optarg; break;
		case 'p': stress.prefix = optarg; break;
		case 'h': usage(stdout); return 0;
		default: goto bad;
		}
	}
	if (argc - optind != 1)
		goto bad;
	char err[512];
	stress.u = ism_url_parse(argv[optind], err, sizeof(err));
	if (!stress.u || !stress.u->target || !stress.u->has_lun) {
		fprintf(stderr, "isthmus-threads-stress: %s\n", stress.u ? "the URL must name a target and a LUN" : err);
		return 2;
	}
	if (getenv("ISTHMUS_DEBUG") && strcmp(getenv("ISTHMUS_DEBUG"), "1") == 0)
		ism_set_debug(true);
	stress.rng = stress.seed | 1;
	stress.t0 = st_now_ms();
	stress.salt = st_rnd();
	printf("stress: seed %" PRIu64 ", %d sessions, %u s, answers within %u s\n", stress.seed, stress.nsess, stress.seconds, stress.bound_s);
	int rc = 0;
	if (setup() < 0) {
		rc = 2;
		goto out;
	}
	st_workload();
	if (!stress.fatal) {
		final_checks();
		final_logouts();
		fresh_login();
	}
	printf("stress: %" PRIu64 " commands sent, %" PRIu64 " answered: %" PRIu64 " GOOD, %" PRIu64
	       " RESERVATION CONFLICT, %" PRIu64 " reset unit attentions, %" PRIu64 " other unit attentions, %" PRIu64
	       " busy, %" PRIu64 " aborted\n",
	       stress.sent, stress.answered, stress.by_outcome[OUT_GOOD], stress.by_outcome[OUT_CONFLICT], stress.by_outcome[OUT_UA_RESET],
	       stress.by_outcome[OUT_UA_OTHER], stress.by_outcome[OUT_BUSY], stress.by_outcome[OUT_ABORTED]);
	printf("stress: %" PRIu64 " LOGICAL UNIT RESETs (%" PRIu64 " reset unit attentions checked), %" PRIu64
	       " ABORT TASKs (%" PRIu64 " after a reset, %" PRIu64 " ended their task), %" PRIu64
	       " verified reads of own slots\n",
	       stress.resets, stress.ua_checks, stress.aborts_asked, stress.eh_aborts, stress.aborts_ended_task, stress.verified_reads);
	printf("stress: %" PRIu64 " PERSISTENT RESERVE OUT, %" PRIu64 " PERSISTENT RESERVE IN; judged against the known "
	       "state: %" PRIu64 " reservation commands, %" PRIu64 " state reads, %" PRIu64 " READ/WRITE; %" PRIu64
	       " phases, %" PRIu64 " states read back\n",
	       stress.pr_out, stress.pr_in, stress.exact_pr_out, stress.exact_pr_in, stress.exact_data, stress.phases, stress.syncs);
	rc = stress.violations ? 1 : 0;
out:
	stress.closing = true;
	for (int i = 0; i < stress.nsess; i++)
		if (stress.sess[i].is)
			ism_session_free(stress.sess[i].is);
	for (int i = 0; i < stress.nsess; i++)
		for (int k = 0; k < DEPTH; k++)
			free(stress.sess[i].cmds[k].buf);
	ism_url_free(stress.u);
	if (stress.violations)
		printf("stress: FAILED with %u violation%s\n", stress.violations, stress.violations == 1 ? "" : "s");
	else if (rc == 0)
		printf("stress: PASS\n");
	return stress.violations ? 1 : rc;
bad:
	usage(stderr);
	return 2;
}
