/*
 * Reservation state shared by two gateways (lu_state.c) through an in-memory record: what one
 * gateway's reservation commands do is what the other's answer, a store lost to another gateway
 * runs the command again on the newer record, an unreachable record fails reservation commands
 * and, before the first load, medium access; a LOGICAL UNIT RESET reaches the other gateway.
 */
#include <pthread.h>

#include "harness.h"
#include "util/sbuf.h"

static struct {
	pthread_mutex_t lock;
	struct sbuf rec;
	uint64_t version;
	int stale_once;     /* the next store finds the record changed by "someone else" */
	int fail;           /* loads and stores fail with this */
	int stores;
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int f_load(void *ctx, struct sbuf *out, uint64_t *version)
{
	(void)ctx;
	pthread_mutex_lock(&rec.lock);
	int rc = rec.fail;
	if (!rc) {
		sbuf_append(out, rec.rec.data, rec.rec.len);
		*version = rec.version;
	}
	pthread_mutex_unlock(&rec.lock);
	return rc;
}

static int f_store(void *ctx, const void *data, size_t len, uint64_t expect, uint64_t *version)
{
	int rc = 0;

	(void)ctx;
	pthread_mutex_lock(&rec.lock);
	if (rec.fail) {
		rc = rec.fail;
	} else if (rec.stale_once) {
		rec.stale_once = 0;
		rec.version++;   /* another gateway stored the same record meanwhile */
		rc = -ESTALE;
	} else if (expect != rec.version) {
		rc = -ESTALE;
	} else {
		sbuf_reset(&rec.rec);
		sbuf_append(&rec.rec, data, len);
		*version = ++rec.version;
		rec.stores++;
	}
	pthread_mutex_unlock(&rec.lock);
	return rc;
}

static const struct scsi_shared_ops ops = { .load = f_load, .store = f_store };

static uint8_t param[24];

static int prout(struct h *h, int nxi, uint8_t sa, uint8_t type, uint64_t key, uint64_t sark)
{
	uint8_t cdb[10] = { 0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0 };
	memset(param, 0, sizeof(param));
	put_be64(param, key);
	put_be64(param + 8, sark);
	return h_run_full(h, nxi, 0, cdb, 10, param, 24, 0);
}

static uint32_t read_keys(struct h *h, int nxi, uint32_t *gen)
{
	uint8_t cdb[10] = { 0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0 };
	CHECK_EQ(h_run_full(h, nxi, 0, cdb, 10, NULL, 0, 4096), SCSI_GOOD);
	*gen = get_be32(h->in);
	return get_be32(h->in + 4) / 8;
}

/* Gateway gw: its nexuses come in through relative port gw; they share one record. */
static struct h *gateway(uint16_t gw)
{
	struct h *h = h_new(1024, NULL);
	for (int i = 0; i < 2; i++) {
		scsi_target_nexus_lost(h->t, &h->nx[i]);
		h->nx[i].rel_port_id = gw;
		scsi_target_nexus_added(h->t, &h->nx[i]);
	}
	CHECK_EQ(scsi_target_share_lu(h->t, 0, &ops, NULL), 0);
	for (int i = 0; i < 100; i++)
		h_pump(h, 10);
	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 1, 0);
	return h;
}

/* The other gateway's change notice: load, as the watch would make it. */
static void notice(struct h *h)
{
	scsi_target_lu_shared_changed(h->t, 0);
	for (int i = 0; i < 50; i++)
		h_pump(h, 5);
}

static void test_shared(void)
{
	struct h *g1 = gateway(1), *g2 = gateway(2);
	uint32_t gen;
	uint8_t wr[10], data[512] = { 0 };

	/* A registration through gateway 1 is in READ KEYS through gateway 2. */
	CHECK_EQ(prout(g1, 0, 0x00, 0, 0, 0xa1), SCSI_GOOD);
	CHECK_EQ(read_keys(g2, 1, &gen), 1u);
	CHECK_EQ(gen, 1u);

	/* A store lost to another gateway runs the command again: it still registers, once. */
	rec.stale_once = 1;
	CHECK_EQ(prout(g2, 0, 0x00, 0, 0, 0xb2), SCSI_GOOD);
	CHECK_EQ(read_keys(g1, 1, &gen), 2u);
	CHECK_EQ(gen, 2u);

	/* WRITE EXCLUSIVE - REGISTRANTS ONLY through gateway 1: the unregistered nexus on gateway 2
	 * meets RESERVATION CONFLICT once gateway 2 has loaded the record; the registrant writes. */
	CHECK_EQ(prout(g1, 0, 0x01, 5, 0xa1, 0), SCSI_GOOD);
	notice(g2);
	cdb_rw10(wr, 0x2a, 0, 1, 0);
	CHECK_EQ(h_run_full(g2, 1, 0, wr, 10, data, 512, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_run_full(g2, 0, 0, wr, 10, data, 512, 0), SCSI_GOOD);

	/* PREEMPT through gateway 2: gateway 1's preempted nexus gets 2Ah/05h after its load. */
	CHECK_EQ(prout(g2, 0, 0x04, 5, 0xb2, 0xa1), SCSI_GOOD);
	notice(g1);
	uint8_t tur[6] = { 0 };
	h_run_full(g1, 0, 0, tur, 6, NULL, 0, 0);
	CHECK_SENSE(g1, SK_UNIT_ATTENTION, 0x2a, 0x05);
	CHECK_EQ(prout(g2, 0, 0x03, 0, 0xb2, 0), SCSI_GOOD);   /* CLEAR */
	notice(g1);
	h_clear_ua(g1, 0, 0);
	h_clear_ua(g1, 1, 0);

	/* RESERVE(6) through gateway 1 holds on gateway 2. */
	uint8_t rsv[6] = { 0x16, 0, 0, 0, 0, 0 }, rel[6] = { 0x17, 0, 0, 0, 0, 0 };
	CHECK_EQ(h_run_full(g1, 0, 0, rsv, 6, NULL, 0, 0), SCSI_GOOD);
	notice(g2);
	CHECK_EQ(h_run_full(g2, 0, 0, tur, 6, NULL, 0, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_run_full(g2, 0, 0, rsv, 6, NULL, 0, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_run_full(g1, 0, 0, rel, 6, NULL, 0, 0), SCSI_GOOD);
	notice(g2);
	CHECK_EQ(h_run_full(g2, 0, 0, tur, 6, NULL, 0, 0), SCSI_GOOD);

	/* A LOGICAL UNIT RESET through gateway 1 reaches gateway 2's nexuses. */
	CHECK_EQ(scsi_target_task_mgmt(g1->t, SCSI_TMF_LUN_RESET, 0, true, &g1->nx[0]), 0);
	for (int i = 0; i < 50; i++)
		h_pump(g1, 5);
	notice(g2);
	h_run_full(g2, 1, 0, tur, 6, NULL, 0, 0);
	CHECK_SENSE(g2, SK_UNIT_ATTENTION, 0x29, 0x03);
	h_clear_ua(g2, 0, 0);
	h_clear_ua(g1, 0, 0);

	/* Out of reach: reservation commands fail NOT READY, never answer from memory. */
	rec.fail = -ETIMEDOUT;
	uint8_t rk[10] = { 0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0 };
	h_run_full(g2, 0, 0, rk, 10, NULL, 0, 4096);
	CHECK_SENSE(g2, SK_NOT_READY, 0x04, 0x01);
	h_run_full(g1, 0, 0, rsv, 6, NULL, 0, 0);
	CHECK_SENSE(g1, SK_NOT_READY, 0x04, 0x01);

	/* A gateway starting meanwhile refuses medium access until it has the record. */
	struct h *g3 = h_new(1024, NULL);
	CHECK_EQ(scsi_target_share_lu(g3->t, 0, &ops, NULL), 0);
	for (int i = 0; i < 20; i++)
		h_pump(g3, 5);
	h_clear_ua(g3, 0, 0);
	h_run_full(g3, 0, 0, wr, 10, data, 512, 0);
	CHECK_SENSE(g3, SK_NOT_READY, 0x04, 0x01);
	rec.fail = 0;
	notice(g3);
	CHECK_EQ(h_run_full(g3, 0, 0, wr, 10, data, 512, 0), SCSI_GOOD);

	h_free(g3);
	h_free(g2);
	h_free(g1);
	sbuf_free(&rec.rec);
}

int main(void)
{
	test_shared();
	TEST_MAIN_END();
}
