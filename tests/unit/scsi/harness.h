/*
 * Shared helpers for the SCSI unit tests: a target with memory-backed LUs, a store wrapper
 * that counts flushes and injects errors, and a synchronous way to run one CDB.
 */
#ifndef ISTHMUS_TESTS_UNIT_SCSI_HARNESS_H
#define ISTHMUS_TESTS_UNIT_SCSI_HARNESS_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include "../test.h"
#include "scsi/scsi.h"
#include "store/store.h"
#include "store/store_io.h"
#include "util/bytes.h"

/* A memory store whose failures and flushes the test controls. */
/* Counters are atomic: long operations call the store from offload workers. */
struct fault_store {
	struct store base;
	struct store *inner;
	_Atomic int flushes;
	int fail_read;      /* negative errno returned by read, 0 for none */
	int fail_write;
	int fail_flush;
	bool no_unmap;      /* unmap and zero return -EOPNOTSUPP */
	_Atomic int zeroes; /* zero calls */
	_Atomic int writes; /* write calls */
	_Atomic int reads;  /* read calls (they may come from offload workers) */
	_Atomic int reading, most_reading; /* reads in progress now, and at most at once */
	unsigned read_delay_us; /* each read sleeps this long first: a slow device */
};

/*
 * State a store keeps with its medium (store_ops state_get/state_put), as an RBD image keeps it
 * in the cluster: it outlives the stores (a restart, another machine) that use it.
 */
struct fault_medium {
	char *data;
	size_t len;
	bool present;
	int fail_put;       /* negative errno returned by state_put, 0 for none */
	int puts;
};

static inline int fs_read(struct store *st, void *b, size_t n, uint64_t off)
{
	struct fault_store *f = (struct fault_store *)st;
	f->reads++;
	int now = ++f->reading;
	if (now > f->most_reading)
		f->most_reading = now; /* good enough: the tests only ask whether it exceeded 1 */
	if (f->read_delay_us)
		usleep(f->read_delay_us);
	int rc = f->fail_read ? f->fail_read : store_read(f->inner, b, n, off);
	f->reading--;
	return rc;
}
static inline int fs_write(struct store *st, const void *b, size_t n, uint64_t off)
{
	struct fault_store *f = (struct fault_store *)st;
	f->writes++;
	return f->fail_write ? f->fail_write : store_write(f->inner, b, n, off);
}
static inline int fs_flush(struct store *st)
{
	struct fault_store *f = (struct fault_store *)st;
	f->flushes++;
	return f->fail_flush;
}
static inline int fs_unmap(struct store *st, uint64_t off, uint64_t len)
{
	struct fault_store *f = (struct fault_store *)st;
	return f->no_unmap ? -EOPNOTSUPP : f->inner->ops->unmap(f->inner, off, len);
}
static inline int fs_extent(struct store *st, uint64_t off, bool *m, uint64_t *run)
{
	struct fault_store *f = (struct fault_store *)st;
	return f->inner->ops->extent(f->inner, off, m, run);
}
static inline int fs_resize(struct store *st, uint64_t n)
{
	struct fault_store *f = (struct fault_store *)st;
	int rc = f->inner->ops->resize(f->inner, n);
	if (rc == 0)
		st->size = n;
	return rc;
}
static inline int fs_zero(struct store *st, uint64_t off, uint64_t len)
{
	struct fault_store *f = (struct fault_store *)st;
	f->zeroes++;
	if (f->fail_write)
		return f->fail_write;
	return f->no_unmap ? -EOPNOTSUPP : store_zero(f->inner, off, len);
}
static inline void fs_close(struct store *st)
{
	struct fault_store *f = (struct fault_store *)st;
	store_close(f->inner);
	free(f);
}
#define FAULT_STORE_OPS                                                                                 \
	.read = fs_read, .write = fs_write, .flush = fs_flush, .unmap = fs_unmap, .extent = fs_extent, \
	.resize = fs_resize, .close = fs_close, .zero = fs_zero
static const struct store_ops fault_ops = { FAULT_STORE_OPS };

static inline struct fault_medium *fs_medium(struct store *st);
static inline int fs_state_get(struct store *st, char **data, size_t *len)
{
	struct fault_medium *m = fs_medium(st);
	if (!m->present)
		return -ENOENT;
	*data = malloc(m->len + 1);
	memcpy(*data, m->data, m->len);
	(*data)[m->len] = '\0';
	*len = m->len;
	return 0;
}
static inline int fs_state_put(struct store *st, const void *data, size_t len)
{
	struct fault_medium *m = fs_medium(st);
	m->puts++;
	if (m->fail_put)
		return m->fail_put;
	free(m->data);
	m->data = malloc(len ? len : 1);
	memcpy(m->data, data, len);
	m->len = len;
	m->present = true;
	return 0;
}
static inline const char *fs_state_name(const struct store *st)
{
	(void)st;
	return "fault-medium";
}
static const struct store_ops fault_medium_ops = {
	FAULT_STORE_OPS,
	.state_get = fs_state_get,
	.state_put = fs_state_put,
	.state_name = fs_state_name,
};

static inline struct fault_store *fault_store_init(struct fault_store *f, uint64_t size)
{
	char *err = NULL;

	f->inner = store_mem_open(size, &err);
	f->base.ops = &fault_ops;
	f->base.size = size;
	f->base.thin = true;
	f->base.path = (char *)"fault";
	f->base.fd = -1;
	return f;
}

static inline struct fault_store *fault_store_new(uint64_t size)
{
	return fault_store_init(calloc(1, sizeof(struct fault_store)), size);
}

struct h {
	struct scsi_target *t;
	struct scsi_port_ctx *ctx; /* the one loop's context */
	struct store_engine *eng;  /* every store io goes through it, as in the server */
	struct scsi_nexus nx[2];
	struct fault_store *fs;    /* LU 0's store */
	uint8_t in[1 << 17];
	struct scsi_cmd cmd;
	int done_calls;
};

static inline void h_done(struct scsi_cmd *cmd) { ((struct h *)cmd->priv)->done_calls++; }

static inline void h_nexus(struct scsi_nexus *nx, uint64_t id, const char *iname)
{
	memset(nx, 0, sizeof(*nx));
	nx->id = id;
	snprintf(nx->initiator_name, sizeof(nx->initiator_name), "%s", iname);
	nx->isid[5] = (uint8_t)id;
	snprintf(nx->initiator_port, sizeof(nx->initiator_port), "%s,i,0x00000000000%llx", iname,
		 (unsigned long long)id);
	nx->rel_port_id = 1;
}

/* A fault store that keeps state with its medium m, which outlives it. */
struct fault_store_on_medium {
	struct fault_store fs;
	struct fault_medium *m;
};
static inline struct fault_medium *fs_medium(struct store *st) { return ((struct fault_store_on_medium *)st)->m; }

static inline struct h *h_new_on(const char *name, struct fault_store *fs, const struct scsi_lu_params *p);

/* A target named `name` with LU 0 on a fault store of `blocks` blocks; nexuses added. */
static inline struct h *h_new_named(const char *name, uint64_t blocks, const struct scsi_lu_params *p)
{
	return h_new_on(name, fault_store_new(blocks * (p && p->block_size ? p->block_size : 512)), p);
}

/* The same with LU 0 on fs, which keeps its state with medium m. */
static inline struct h *h_new_medium(const char *name, uint64_t blocks, const struct scsi_lu_params *p,
				     struct fault_medium *m)
{
	struct fault_store_on_medium *f = calloc(1, sizeof(*f));

	fault_store_init(&f->fs, blocks * (p && p->block_size ? p->block_size : 512));
	f->fs.base.ops = &fault_medium_ops;
	f->m = m;
	return h_new_on(name, &f->fs, p);
}

static inline struct h *h_new_on(const char *name, struct fault_store *fs, const struct scsi_lu_params *p)
{
	struct h *h = calloc(1, sizeof(*h));
	struct scsi_lu_params dp = { .block_size = 512, .thin = true, .write_cache = true };
	char *err = NULL;

	if (!p)
		p = &dp;
	h->t = scsi_target_new(name);
	h->eng = store_engine_new(NULL, &err);
	if (!h->eng) {
		fprintf(stderr, "store_engine_new: %s\n", err);
		abort();
	}
	h->ctx = scsi_port_ctx_new(h->t, h->eng);
	h->fs = fs;
	if (scsi_target_add_lu(h->t, 0, &h->fs->base, p, &err) != 0) {
		fprintf(stderr, "add_lu: %s\n", err);
		abort();
	}
	h_nexus(&h->nx[0], 1, "iqn.2024-01.org.example:init1");
	h_nexus(&h->nx[1], 2, "iqn.2024-01.org.example:init2");
	scsi_target_nexus_added(h->t, &h->nx[0]);
	scsi_target_nexus_added(h->t, &h->nx[1]);
	return h;
}

/* A target with LU 0 on a fault store of `blocks` blocks; nexuses added. */
static inline struct h *h_new(uint64_t blocks, const struct scsi_lu_params *p)
{
	return h_new_named("iqn.2024-01.org.example:unit", blocks, p);
}

static inline void h_free(struct h *h)
{
	scsi_target_free(h->t);
	store_engine_free(h->eng);
	free(h);
}

/* Completes what the engine finished (as the server's loop does): reap, then the waiting commands. */
static inline void h_pump(struct h *h, int timeout_ms)
{
	struct pollfd p = { .fd = store_engine_fd(h->eng), .events = POLLIN };
	if (poll(&p, 1, timeout_ms) > 0)
		store_engine_reap(h->eng);
	scsi_port_run_blocked(h->ctx);
}

/* Runs one CDB from nexus nxi on LU lun. Returns the status. */
static inline int h_run_full(struct h *h, int nxi, uint16_t lun, const uint8_t *cdb, size_t cdb_len,
			     const void *out, uint32_t out_len, uint32_t in_cap)
{
	struct scsi_cmd *c = &h->cmd;

	memset(c, 0, sizeof(*c));
	c->nexus = &h->nx[nxi];
	c->lun = lun;
	c->lun_valid = true;
	memcpy(c->cdb, cdb, cdb_len);
	c->cdb_len = 16 > cdb_len ? 16 : (uint16_t)cdb_len;
	c->task_attr = TASK_SIMPLE;
	c->out = out;
	c->out_len = out_len;
	c->in = h->in;
	c->in_cap = in_cap;
	c->done = h_done;
	c->priv = h;
	h->done_calls = 0;
	scsi_port_submit(h->ctx, c);
	/* Long operations finish on the engine's workers: wait for them, boundedly. */
	for (int i = 0; i < 2000 && h->done_calls == 0; i++)
		h_pump(h, 10);
	CHECK_EQ(h->done_calls, 1);
	return c->status;
}

static inline int h_run(struct h *h, const uint8_t *cdb, size_t len, const void *out, uint32_t out_len,
			uint32_t in_cap)
{
	return h_run_full(h, 0, 0, cdb, len, out, out_len, in_cap);
}

/* Sense key / ASC / ASCQ of the last command, whichever format it used. */
static inline int h_key(const struct h *h)
{
	const uint8_t *s = h->cmd.sense;
	return (s[0] & 0x7f) >= 0x72 ? s[1] & 0x0f : s[2] & 0x0f;
}
static inline int h_asc(const struct h *h)
{
	const uint8_t *s = h->cmd.sense;
	return (s[0] & 0x7f) >= 0x72 ? s[2] : s[12];
}
static inline int h_ascq(const struct h *h)
{
	const uint8_t *s = h->cmd.sense;
	return (s[0] & 0x7f) >= 0x72 ? s[3] : s[13];
}

#define CHECK_SENSE(h, key, asc, ascq)                                                             \
	do {                                                                                       \
		CHECK_EQ((h)->cmd.status, SCSI_CHECK_CONDITION);                                   \
		CHECK_EQ(h_key(h), key);                                                           \
		CHECK_EQ(h_asc(h), asc);                                                           \
		CHECK_EQ(h_ascq(h), ascq);                                                         \
	} while (0)

/* Runs the command: CHECK CONDITION with this sense (a macro, so a failure names the test's line). */
#define CHECK_RUN_SENSE(h, key, asc, ascq, cdb, len, out, out_len, in_cap)                          \
	do {                                                                                       \
		CHECK_EQ(h_run(h, cdb, len, out, out_len, in_cap), SCSI_CHECK_CONDITION);          \
		CHECK_SENSE(h, key, asc, ascq);                                                    \
	} while (0)

/* Clears the power-on unit attention of nexus nxi on lun. */
static inline void h_clear_ua(struct h *h, int nxi, uint16_t lun)
{
	uint8_t tur[6] = { 0 };
	for (int i = 0; i < 8 && h_run_full(h, nxi, lun, tur, 6, NULL, 0, 0) != SCSI_GOOD; i++)
		;
}

/* A LU of that many 512-byte blocks, the power-on unit attention of nexus 0 on LUN 0 cleared. */
static inline struct h *h_ready(uint64_t blocks)
{
	struct h *h = h_new(blocks, NULL);
	h_clear_ua(h, 0, 0);
	return h;
}

static inline void cdb_rw10(uint8_t *c, uint8_t op, uint32_t lba, uint16_t n, uint8_t flags)
{
	memset(c, 0, 10);
	c[0] = op;
	c[1] = flags;
	put_be32(c + 2, lba);
	put_be16(c + 7, n);
}

static inline void cdb_rw16(uint8_t *c, uint8_t op, uint64_t lba, uint32_t n, uint8_t flags)
{
	memset(c, 0, 16);
	c[0] = op;
	c[1] = flags;
	put_be64(c + 2, lba);
	put_be32(c + 10, n);
}

/* PERSISTENT RESERVE OUT (10) with the basic parameter list, from nexus nxi to LU 0. */
static inline int h_prout(struct h *h, int nxi, uint8_t sa, uint8_t type, uint64_t key, uint64_t sark, uint8_t flags)
{
	uint8_t c[10] = { 0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t p[24] = { 0 };

	put_be64(p, key);
	put_be64(p + 8, sark);
	p[20] = flags;
	return h_run_full(h, nxi, 0, c, 10, p, 24, 0);
}

/* PERSISTENT RESERVE IN (10), 4 KiB allocation, from nexus nxi to LU 0. */
static inline int h_prin(struct h *h, int nxi, uint8_t sa)
{
	uint8_t c[10] = { 0x5e, sa, 0, 0, 0, 0, 0, 0x10, 0, 0 };

	return h_run_full(h, nxi, 0, c, 10, NULL, 0, 4096);
}

/* A command of the tests that submit several at once: each logs its id when done. */
struct rec {
	struct scsi_cmd cmd;
	uint8_t buf[4096];
	int *log, *nlog;
	int id;
};

static inline void rec_done(struct scsi_cmd *c)
{
	struct rec *r = c->priv;
	r->log[(*r->nlog)++] = r->id;
}

/* Submits a 16-byte CDB without a nexus through ctx. */
static inline void rec_submit(struct scsi_port_ctx *ctx, struct rec *r, uint16_t lun, const uint8_t *cdb, uint8_t attr,
			      const void *out, uint32_t out_len)
{
	memset(&r->cmd, 0, sizeof(r->cmd));
	r->cmd.lun = lun;
	r->cmd.lun_valid = true;
	memcpy(r->cmd.cdb, cdb, 16);
	r->cmd.cdb_len = 16;
	r->cmd.task_attr = attr;
	r->cmd.out = out;
	r->cmd.out_len = out_len;
	r->cmd.in = r->buf;
	r->cmd.in_cap = sizeof(r->buf);
	r->cmd.done = rec_done;
	r->cmd.priv = r;
	scsi_port_submit(ctx, &r->cmd);
}

#endif
