/*
 * isthmus-session-test: a test-only initiator that drives one multi-connection session (writes,
 * then reads verified against them, spread over every connection) and session reinstatement,
 * built from the CLI's login code and never installed. Used by tests/interop/test_initiator_session.sh.
 *
 *   isthmus-session-test URL --connections N --io N [--reinstate] [--io-size KIB] [--json]
 *                        [--error-recovery-level N] [the login options of isthmus: --chap-user, --header-digest, ...]
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/exit_status.h"

struct st_io {
	struct ism_session *s;
	int *inflight;
	int *failed;
	uint16_t cid;
	char err[256];
	bool done;
};

static void st_done(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	struct st_io *io = priv;
	(void)s;
	io->done = true;
	io->cid = r->cid;
	(*io->inflight)--;
	if (r->error != ISM_OK || r->status != 0) {
		(*io->failed)++;
		if (r->error != ISM_OK && ism_session_error(s)[0])
			snprintf(io->err, sizeof(io->err), "%s", ism_session_error(s));
		else
			ism_result_text(r, io->err, sizeof(io->err));
	}
}

/* The ErrorRecoveryLevel the session offers (--error-recovery-level). */
static unsigned st_erl;

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int reinstate_test(struct cli_opts *o, const struct ism_url *u, json_t *j)
{
	struct ism_session *a = cli_open_session(o, u);
	if (!a)
		return 1;
	if (ism_test_unit_ready(a, u->lun) < 0 && !ism_session_logged_in(a)) {
		int rc = cli_fail("first session: %s", ism_session_error(a));
		ism_session_free(a);
		return rc;
	}
	ism_session_clear_error(a); /* a UNIT ATTENTION on the first command is not what we look for */
	struct ism_session_info ia, ib;
	ism_session_get_info(a, &ia);
	struct ism_session *b = cli_open_session(o, u);
	if (!b) {
		ism_session_free(a);
		return 1;
	}
	ism_session_get_info(b, &ib);
	/* The target must drop the first session: its connection closes within a few seconds. */
	bool dropped = false;
	for (int i = 0; i < 100 && !dropped; i++) {
		struct pollfd fds[16];
		int n = ism_session_fds(a, fds, 16);
		if (n == 0) {
			dropped = true;
			break;
		}
		int r = poll(fds, (nfds_t)n, 100);
		for (int k = 0; r > 0 && k < n; k++)
			if (fds[k].revents && ism_session_service(a, fds[k].fd, fds[k].revents) < 0)
				dropped = true;
		if (ism_session_service(a, -1, 0) < 0 || !ism_session_logged_in(a))
			dropped = true;
		if (!dropped && i == 20) {
			/* Nudge: a command on the old session shows whether the target still has it. */
			uint8_t cdb[16];
			size_t cl = ism_cdb_test_unit_ready(cdb);
			static int inflight, failed;
			static struct st_io io;
			io.inflight = &inflight;
			io.failed = &failed;
			inflight++;
			if (!ism_scsi_async(a, u->lun, cdb, cl, ISM_DIR_NONE, NULL, 0, st_done, &io))
				dropped = true;
		}
	}
	char aerr[512];
	snprintf(aerr, sizeof(aerr), "%s", ism_session_error(a));
	ism_session_free(a);
	int rc = 0;
	if (!dropped) {
		rc = cli_fail("the target kept the first session (ISID %02x%02x%02x%02x%02x%02x, TSIH %u) after a second "
			  "login with the same ISID",
			  ia.isid[0], ia.isid[1], ia.isid[2], ia.isid[3], ia.isid[4], ia.isid[5], ia.tsih);
	} else if (ism_test_unit_ready(b, u->lun) < 0 && !ism_session_logged_in(b)) {
		rc = cli_fail("second session unusable after reinstatement: %s", ism_session_error(b));
	}
	if (!rc) {
		char isid[16];
		snprintf(isid, sizeof(isid), "%02x%02x%02x%02x%02x%02x", ia.isid[0], ia.isid[1], ia.isid[2], ia.isid[3],
			 ia.isid[4], ia.isid[5]);
		if (o->json) {
			json_t *r = json_object();
			json_object_set_new(r, "isid", jstr(isid));
			json_object_set_new(r, "first_tsih", jnum(ia.tsih));
			json_object_set_new(r, "second_tsih", jnum(ib.tsih));
			json_object_set_new(r, "first_dropped", json_true());
			json_object_set_new(r, "first_error", jstr(aerr));
			json_object_set_new(j, "reinstate", r);
		} else {
			printf("reinstatement: ISID %s, first session (TSIH %u) dropped by the target (%s), second session "
			       "(TSIH %u) works\n",
			       isid, ia.tsih, aerr[0] ? aerr : "closed", ib.tsih);
		}
	}
	cli_close_session(b);
	return rc;
}

static int session_test(struct cli_opts *o, const char *url)
{
	struct ism_url *u = cli_parse_url(url, true);
	if (!u)
		return 1;
	if (o->connections < 1 || o->connections > 16) {
		ism_url_free(u);
		return cli_fail("--connections takes 1 to 16");
	}
	if (o->io < 1) {
		ism_url_free(u);
		return cli_fail("--io takes a positive number");
	}
	json_t *j = NULL;
	if (o->json) {
		j = json_object();
		json_object_set_new(j, "command", jstr("session-test"));
	}
	int rc = 0;
	if (o->reinstate) {
		rc = reinstate_test(o, u, j);
		if (rc) {
			json_decref(j);
			ism_url_free(u);
			return rc;
		}
	}
	struct ism_config cfg;
	if (cli_make_config(o, &cfg, u) != 0) {
		json_decref(j);
		ism_url_free(u);
		return 1;
	}
	cfg.target_name = u->target;
	cfg.max_connections = (uint32_t)o->connections;
	char err[512];
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	if (!s) {
		json_decref(j);
		ism_url_free(u);
		return cli_fail("%s", err);
	}
	ism_session_set_error_recovery_level(s, st_erl);
	uint8_t *wbuf = NULL, *rbuf = NULL;
	struct st_io *ios = NULL;
	if (ism_connect(s, u->portal) < 0) {
		rc = cli_fail("%s", ism_session_error(s));
		goto out;
	}
	cli_settle(s, u->lun);
	for (int i = 1; i < o->connections; i++) {
		uint16_t cid;
		if (ism_add_connection(s, u->portal, &cid) < 0) {
			rc = cli_fail("adding connection %d of %d: %s", i + 1, o->connections, ism_session_error(s));
			goto out;
		}
	}
	uint16_t cids[16];
	int nconn = ism_session_connections(s, cids, 16);
	if (nconn != o->connections) {
		rc = cli_fail("session has %d connections, want %d", nconn, o->connections);
		goto out;
	}
	uint64_t last;
	uint32_t bs;
	if (cli_get_capacity(s, u->lun, &last, &bs) < 0) {
		rc = cli_fail("%s", ism_session_error(s));
		goto out;
	}
	uint32_t iosize = o->io_kib * 1024;
	if (iosize < bs)
		iosize = bs;
	iosize -= iosize % bs;
	uint64_t per = iosize / bs;
	uint64_t slots = (last + 1) / per;
	if (slots == 0) {
		rc = cli_fail("LUN too small for %u-byte I/Os", iosize);
		goto out;
	}
	size_t total = (size_t)o->io * iosize;
	wbuf = malloc(total);
	rbuf = malloc(total);
	ios = calloc((size_t)o->io, sizeof(*ios));
	if (!wbuf || !rbuf || !ios) {
		rc = cli_fail("out of memory for %d I/Os of %u bytes", o->io, iosize);
		goto out;
	}
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)time(NULL);
	seed |= 1;
	for (size_t k = 0; k + 8 <= total; k += 8) {
		uint64_t v = xorshift(&seed);
		memcpy(wbuf + k, &v, 8);
	}
	/* Distinct LBAs for every I/O (wrapping only when the LUN is smaller than the test). */
	int inflight = 0, failed = 0;
	uint64_t wcount[16] = {0}, rcount[16] = {0};
	for (int phase = 0; phase < 2 && !rc; phase++) {
		bool write = phase == 0;
		int next = 0, depth = 32;
		memset(ios, 0, (size_t)o->io * sizeof(*ios));
		while ((next < o->io || inflight > 0) && !failed) {
			while (next < o->io && inflight < depth) {
				struct st_io *io = &ios[next];
				io->inflight = &inflight;
				io->failed = &failed;
				uint64_t lba = ((uint64_t)next % slots) * per;
				uint8_t cdb[16];
				size_t cl = lba + per <= 0xffffffffull ? ism_cdb_rw10(cdb, write, (uint32_t)lba, (uint16_t)per)
								       : ism_cdb_rw16(cdb, write, lba, (uint32_t)per);
				uint8_t *data = (write ? wbuf : rbuf) + (size_t)next * iosize;
				inflight++;
				if (!ism_scsi_async(s, u->lun, cdb, cl, write ? ISM_DIR_WRITE : ISM_DIR_READ, data, iosize,
						    st_done, io)) {
					inflight--;
					failed++;
					snprintf(io->err, sizeof(io->err), "%s", ism_session_error(s));
					break;
				}
				next++;
			}
			struct pollfd fds[16];
			int n = ism_session_fds(s, fds, 16);
			int to = ism_session_timeout_ms(s);
			if (n == 0) {
				if (!failed) {
					failed++;
					snprintf(ios[0].err, sizeof(ios[0].err), "%s", ism_session_error(s));
				}
				break;
			}
			int r = poll(fds, (nfds_t)n, to < 0 || to > 1000 ? 1000 : to);
			for (int k = 0; r > 0 && k < n; k++)
				if (fds[k].revents)
					ism_session_service(s, fds[k].fd, fds[k].revents);
			ism_session_service(s, -1, 0);
		}
		if (failed) {
			const char *why = "unknown error";
			for (int k = 0; k < o->io; k++)
				if (ios[k].err[0]) {
					why = ios[k].err;
					break;
				}
			rc = cli_fail("%s phase: %s", write ? "write" : "read", why);
			break;
		}
		for (int k = 0; k < o->io; k++) {
			for (int c = 0; c < nconn; c++)
				if (cids[c] == ios[k].cid)
					(write ? wcount : rcount)[c]++;
		}
	}
	if (rc)
		goto out;
	/* With wrapping, a later write to the same slot wins: compare against the last writer. */
	for (int k = 0; k < o->io; k++) {
		int w = k;
		for (int later = k + (int)slots; later < o->io; later += (int)slots)
			w = later;
		if (memcmp(rbuf + (size_t)k * iosize, wbuf + (size_t)w * iosize, iosize) != 0) {
			rc = cli_fail("data mismatch in I/O %d (LBA %" PRIu64 ")", k, ((uint64_t)k % slots) * per);
			goto out;
		}
	}
	for (int c = 0; c < nconn && o->io >= nconn; c++) {
		if (!wcount[c] || !rcount[c]) {
			rc = cli_fail("connection CID %u carried %" PRIu64 " writes and %" PRIu64 " reads; I/O is not spread",
				  cids[c], wcount[c], rcount[c]);
			goto out;
		}
	}
	struct ism_session_info info;
	ism_session_get_info(s, &info);
	if (ism_logout(s) < 0) {
		rc = cli_fail("logout: %s", ism_session_error(s));
		goto out;
	}
	if (o->json) {
		json_object_set_new(j, "connections", jnum((uint64_t)nconn));
		json_object_set_new(j, "ios", jnum((uint64_t)o->io));
		json_object_set_new(j, "io_size", jnum(iosize));
		json_object_set_new(j, "tsih", jnum(info.tsih));
		json_object_set_new(j, "verified", json_true());
		json_t *per = json_array();
		for (int c = 0; c < nconn; c++) {
			json_t *pc = json_object();
			json_object_set_new(pc, "cid", jnum(cids[c]));
			json_object_set_new(pc, "writes", jnum(wcount[c]));
			json_object_set_new(pc, "reads", jnum(rcount[c]));
			json_array_append_new(per, pc);
		}
		json_object_set_new(j, "per_connection", per);
	} else {
		printf("session-test: %d connection%s, %d writes and %d reads of %u bytes verified\n", nconn,
		       nconn == 1 ? "" : "s", o->io, o->io, iosize);
		for (int c = 0; c < nconn; c++)
			printf("    CID %u: %" PRIu64 " writes, %" PRIu64 " reads\n", cids[c], wcount[c], rcount[c]);
	}
out:
	if (o->json) {
		if (!rc)
			jprint(j);
		else
			json_decref(j);
	}
	/* Closing runs the callbacks of I/O still pending: their st_io must still be there. */
	cli_close_session(s);
	free(wbuf);
	free(rbuf);
	free(ios);
	ism_url_free(u);
	return rc;
}

static void usage(FILE *f)
{
	fputs("usage: isthmus-session-test URL --connections N --io N [--reinstate] [--io-size KIB] [--json]\n"
	      "                            [--error-recovery-level 0|1]\n"
	      "                            [--chap-user U --chap-secret S ...: the login options of isthmus]\n",
	      f);
}

enum session_test_option {
	O_CONNS = CLI_O_FIRST_COMMAND_OPTION,
	O_IO,
	O_REINSTATE,
	O_ERL,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		CLI_LOGIN_LONGOPTS,
		{"connections", required_argument, NULL, O_CONNS},
		{"io", required_argument, NULL, O_IO},
		{"reinstate", no_argument, NULL, O_REINSTATE},
		{"error-recovery-level", required_argument, NULL, O_ERL},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct cli_opts o = {.page = -1, .connections = 1, .io = 64, .depth = 8};
	uint64_t v;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case O_CONNS:
			if (cli_parse_u64("--connections", optarg, &v) < 0 || v > 16)
				return CLI_EXIT_USAGE;
			o.connections = (int)v;
			break;
		case O_IO:
			if (cli_parse_u64("--io", optarg, &v) < 0 || v > 1000000)
				return CLI_EXIT_USAGE;
			o.io = (int)v;
			break;
		case O_REINSTATE: o.reinstate = true; break;
		case O_ERL:
			if (cli_parse_u64("--error-recovery-level", optarg, &v) < 0 || v > 1)
				return CLI_EXIT_USAGE;
			st_erl = (unsigned)v;
			break;
		case 'h': usage(stdout); return 0;
		default:
			if (opt >= CLI_O_CHAP_USER && opt < CLI_O_FIRST_COMMAND_OPTION) {
				if (cli_login_option(&o, opt, optarg) < 0)
					return CLI_EXIT_USAGE;
				break;
			}
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	cli_debug_from_env();
	cli_set_command("session-test", o.json);
	if (argc - optind != 1) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	char err[512];
	if (cli_initiator_name(o.initiator_name_opt, o.initiator_name, sizeof(o.initiator_name), err, sizeof(err)) < 0)
		return cli_fail("%s", err);
	if (!o.io_kib)
		o.io_kib = 64;
	return session_test(&o, argv[optind]);
}
