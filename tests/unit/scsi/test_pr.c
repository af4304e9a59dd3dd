/* Persistent reservations: registration, the reservation types, preemption and APTPL. */
#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

#include "harness.h"

static int rd(struct h *h, int nxi)
{
	uint8_t c[10];

	cdb_rw10(c, 0x28, 0, 1, 0);
	return h_run_full(h, nxi, 0, c, 10, NULL, 0, 512);
}

static int wr(struct h *h, int nxi)
{
	static uint8_t blk[512];
	uint8_t c[10];

	cdb_rw10(c, 0x2a, 0, 1, 0);
	return h_run_full(h, nxi, 0, c, 10, blk, 512, 0);
}

static void test_register_reserve(void)
{
	struct h *h = h_ready(64);
	h_clear_ua(h, 1, 0);
	CHECK_EQ(h_prin(h, 0, 0), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 0);
	CHECK_EQ(h_prout(h, 0, 0, 0, 0, 0xaa, 0), SCSI_GOOD);
	/* Registering again with the wrong key conflicts; with IGNORE it replaces. */
	CHECK_EQ(h_prout(h, 0, 0, 0, 0, 0xab, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_prout(h, 0, 6, 0, 0, 0xab, 0), SCSI_GOOD);
	CHECK_EQ(h_prout(h, 0, 0, 0, 0xab, 0xaa, 0), SCSI_GOOD);
	CHECK_EQ(h_prout(h, 1, 0, 0, 0, 0xbb, 0), SCSI_GOOD);
	CHECK_EQ(h_prin(h, 0, 0), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 16);
	CHECK_EQ(get_be32(h->in), 4);
	CHECK_EQ(get_be64(h->in + 8), 0xaa);

	/* RESERVE needs a registration and the right key. */
	CHECK_EQ(h_prout(h, 0, 1, 1, 0xbb, 0, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_prout(h, 0, 1, 1, 0xaa, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_prout(h, 0, 1, 1, 0xaa, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_prout(h, 1, 1, 1, 0xbb, 0, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_prin(h, 1, 1), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 16);
	CHECK_EQ(get_be64(h->in + 8), 0xaa);
	CHECK_EQ(h->in[21], 1);
	/* Write exclusive: the other nexus may read but not write. */
	CHECK_EQ(rd(h, 1), SCSI_GOOD);
	CHECK_EQ(wr(h, 1), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(wr(h, 0), SCSI_GOOD);
	/* RESERVE(6) is refused while persistent reservations exist. */
	uint8_t rsv[6] = { 0x16 };
	CHECK_EQ(h_run(h, rsv, 6, NULL, 0, 0), SCSI_RESERVATION_CONFLICT);
	/* Release with the wrong type. */
	CHECK_EQ(h_prout(h, 0, 2, 3, 0xaa, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x04);
	CHECK_EQ(h_prout(h, 0, 2, 1, 0xaa, 0, 0), SCSI_GOOD);
	CHECK_EQ(wr(h, 1), SCSI_GOOD);

	/* Exclusive access: the other nexus cannot even read. */
	CHECK_EQ(h_prout(h, 0, 1, 3, 0xaa, 0, 0), SCSI_GOOD);
	CHECK_EQ(rd(h, 1), SCSI_RESERVATION_CONFLICT);
	uint8_t tur[6] = { 0 };
	CHECK_EQ(h_run_full(h, 1, 0, tur, 6, NULL, 0, 0), SCSI_GOOD);
	/* Preempt by the other registrant: it takes over, the old holder's registration goes. */
	CHECK_EQ(h_prout(h, 1, 4, 6, 0xbb, 0xaa, 0), SCSI_GOOD);
	CHECK_EQ(rd(h, 1), SCSI_GOOD);
	CHECK_EQ(rd(h, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_UNIT_ATTENTION, 0x2a, 0x05);
	CHECK_EQ(rd(h, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_prin(h, 0, 0), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 8);
	CHECK_EQ(get_be64(h->in + 8), 0xbb);
	/* Registrants-only: once registered, nexus 0 gets access. */
	CHECK_EQ(h_prout(h, 0, 0, 0, 0, 0xcc, 0), SCSI_GOOD);
	CHECK_EQ(rd(h, 0), SCSI_GOOD);
	CHECK_EQ(wr(h, 0), SCSI_GOOD);
	/* READ FULL STATUS lists both, the holder flagged. */
	CHECK_EQ(h_prin(h, 0, 3), SCSI_GOOD);
	{
		size_t len = get_be32(h->in + 4) + 8, off = 8;
		int holders = 0, regs = 0;
		while (off < len) {
			regs++;
			if (h->in[off + 12] & 1)
				holders++;
			CHECK_EQ(h->in[off + 24], 0x45);
			off += 24 + get_be32(h->in + off + 20);
		}
		CHECK_EQ(regs, 2);
		CHECK_EQ(holders, 1);
	}
	CHECK_EQ(h_prin(h, 0, 2), SCSI_GOOD);
	CHECK_EQ(get_be16(h->in), 8);
	/* CLEAR drops everything and tells the others. */
	CHECK_EQ(h_prout(h, 0, 3, 0, 0xcc, 0, 0), SCSI_GOOD);
	CHECK_EQ(rd(h, 1), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_UNIT_ATTENTION, 0x2a, 0x03);
	CHECK_EQ(h_prin(h, 1, 0), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 0);
	/* Wrong parameter list length, bad type. */
	uint8_t c[10] = { 0x5f, 0, 0, 0, 0, 0, 0, 0, 20, 0 };
	CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x1a, 0x00, c, 10, h->in, 20, 0);
	CHECK_EQ(h_prout(h, 0, 0, 0, 0, 0xaa, 0), SCSI_GOOD);
	CHECK_EQ(h_prout(h, 0, 1, 2, 0xaa, 0, 0), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00);
	CHECK_EQ(h_prin(h, 0, 9), SCSI_CHECK_CONDITION);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x24, 0x00);
	h_free(h);
}

static void test_all_registrants(void)
{
	struct h *h = h_ready(64);
	h_clear_ua(h, 1, 0);
	CHECK_EQ(h_prout(h, 0, 0, 0, 0, 0xa, 0), SCSI_GOOD);
	CHECK_EQ(h_prout(h, 0, 1, 8, 0xa, 0, 0), SCSI_GOOD);
	CHECK_EQ(rd(h, 1), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_prout(h, 1, 0, 0, 0, 0xb, 0), SCSI_GOOD);
	CHECK_EQ(rd(h, 1), SCSI_GOOD);
	/* The reservation outlives the registrant that made it. */
	CHECK_EQ(h_prout(h, 0, 0, 0, 0xa, 0, 0), SCSI_GOOD);
	CHECK_EQ(rd(h, 1), SCSI_GOOD);
	CHECK_EQ(rd(h, 0), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(h_prin(h, 0, 1), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 16);
	CHECK_EQ(get_be64(h->in + 8), 0);
	CHECK_EQ(h->in[21], 8);
	h_free(h);
}

static void test_aptpl(void)
{
	char dir[] = "/tmp/isthmus-pr-XXXXXX";
	char *err = NULL;
	struct scsi_lu_params p = { .block_size = 512, .state_dir = NULL };

	CHECK(mkdtemp(dir) != NULL);
	p.state_dir = dir;
	struct h *h = h_new(64, &p);
	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_prout(h, 0, 0, 0, 0, 0x1234, 0x01), SCSI_GOOD);
	CHECK_EQ(h_prout(h, 0, 1, 5, 0x1234, 0, 0), SCSI_GOOD);
	CHECK_EQ(h_prin(h, 0, 2), SCSI_GOOD);
	CHECK_EQ(h->in[3] & 1, 1);
	h_free(h);

	/* A new target on the same state_dir comes back with the registration and reservation. */
	h = h_new(64, &p);
	h_clear_ua(h, 0, 0);
	h_clear_ua(h, 1, 0);
	CHECK_EQ(h_prin(h, 0, 1), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 16);
	CHECK_EQ(get_be64(h->in + 8), 0x1234);
	CHECK_EQ(h->in[21], 5);
	CHECK_EQ(wr(h, 1), SCSI_RESERVATION_CONFLICT);
	CHECK_EQ(wr(h, 0), SCSI_GOOD);
	/* Cold reset keeps APTPL state; dropping APTPL and restarting loses it. */
	scsi_target_task_mgmt(h->t, SCSI_TMF_TARGET_COLD_RESET, 0, true, &h->nx[0]);
	h_clear_ua(h, 1, 0);
	CHECK_EQ(wr(h, 1), SCSI_RESERVATION_CONFLICT);
	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_prout(h, 0, 0, 0, 0x1234, 0x1234, 0), SCSI_GOOD);
	h_free(h);
	h = h_new(64, &p);
	h_clear_ua(h, 0, 0);
	CHECK_EQ(h_prin(h, 0, 0), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 0);
	h_free(h);

	/* Malformed state is an error at add_lu time, and the store stays with the caller. */
	char path[512] = "";
	DIR *dp = opendir(dir);
	struct dirent *de;
	while (dp && (de = readdir(dp))) {
		size_t n = strlen(de->d_name);
		if (n > 3 && strcmp(de->d_name + n - 3, ".pr") == 0)
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
	}
	if (dp)
		closedir(dp);
	CHECK(path[0] != 0);
	FILE *f = fopen(path, "w");
	fputs("garbage\n", f);
	fclose(f);
	struct scsi_target *t = scsi_target_new("iqn.2024-01.org.example:unit");
	struct store *st = store_mem_open(1 << 20, &err);
	CHECK_EQ(scsi_target_add_lu(t, 0, st, &p, &err), -1);
	CHECK(err != NULL);
	free(err);
	store_close(st);
	scsi_target_free(t);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_EQ(system(cmd), 0);
}

/* The documented default of PR_MAX_REGISTRATIONS (src/scsi/scsi_int.h, docs). */
#define REG_CAP 8192

/* An initiator port name of about 200 characters: long enough that the READ FULL STATUS data
 * of a full LU is larger than the target's 1 MiB scratch buffer. */
static void long_port_nexus(struct scsi_nexus *nx, unsigned i)
{
	memset(nx, 0, sizeof(*nx));
	nx->id = 1000 + i;
	snprintf(nx->initiator_name, sizeof(nx->initiator_name), "iqn.2024-01.org.example:h%u-%0180u", i, 0u);
	snprintf(nx->initiator_port, sizeof(nx->initiator_port), "%s,i,0x40%010x", nx->initiator_name, i);
	nx->rel_port_id = 1;
}

/* Registers from nexus nx (a fresh one: its power-on unit attention is taken first). */
static int register_from(struct h *h, const struct scsi_nexus *nx, uint64_t sark)
{
	uint8_t tur[6] = { 0 };
	uint8_t c[10] = { 0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t p[24] = { 0 };
	struct scsi_cmd *cmd = &h->cmd;

	for (int i = 0; i < 4; i++) {
		memset(cmd, 0, sizeof(*cmd));
		cmd->nexus = nx;
		cmd->lun_valid = true;
		memcpy(cmd->cdb, tur, 6);
		cmd->cdb_len = 16;
		cmd->done = h_done;
		cmd->priv = h;
		scsi_port_submit(h->ctx, cmd);
		if (cmd->status == SCSI_GOOD)
			break;
	}
	put_be64(p + 8, sark);
	memset(cmd, 0, sizeof(*cmd));
	cmd->nexus = nx;
	cmd->lun_valid = true;
	memcpy(cmd->cdb, c, 10);
	cmd->cdb_len = 16;
	cmd->out = p;
	cmd->out_len = 24;
	cmd->done = h_done;
	cmd->priv = h;
	scsi_port_submit(h->ctx, cmd);
	return cmd->status;
}

static int prin_alloc(struct h *h, int nxi, uint8_t sa, uint16_t alloc)
{
	uint8_t c[10] = { 0x5e, sa };

	put_be16(c + 7, alloc);
	memset(h->in, 0xee, sizeof(h->in));
	return h_run_full(h, nxi, 0, c, 10, NULL, 0, sizeof(h->in));
}

/*
 * Registrations come from I_T nexus identities and outlive their sessions, so an initiator can
 * pile them up from ever new ISIDs. The LU keeps at most REG_CAP (more get INSUFFICIENT
 * REGISTRATION RESOURCES), and PERSISTENT RESERVE IN returns at most ALLOCATION LENGTH bytes
 * while its length field reports all of the data, however much that is.
 */
static void test_registration_limits(void)
{
	struct h *h = h_new(64, NULL);
	struct scsi_nexus nx;
	unsigned refused_at = 0;

	h_clear_ua(h, 0, 0);
	for (unsigned i = 0; i < REG_CAP + 4 && !refused_at; i++) {
		long_port_nexus(&nx, i);
		if (register_from(h, &nx, 0x1000 + i) != SCSI_GOOD)
			refused_at = i;
		scsi_target_nexus_lost(h->t, &nx);
	}
	printf("registrations accepted before the first refusal: %u\n", refused_at ? refused_at : REG_CAP + 4);
	CHECK_EQ(refused_at, REG_CAP);
	CHECK_SENSE(h, SK_ILLEGAL_REQUEST, 0x55, 0x04);

	/* READ KEYS: 8 bytes per registration in ADDITIONAL LENGTH, only ALLOCATION LENGTH sent. */
	CHECK_EQ(prin_alloc(h, 0, 0, 0xffff), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), 8u * REG_CAP);
	CHECK_EQ(h->cmd.in_len, 0xffff);
	CHECK_EQ(get_be64(h->in + 8), 0x1000);
	CHECK_EQ(get_be64(h->in + 8 + 8 * 100), 0x1000 + 100);
	CHECK_EQ(prin_alloc(h, 0, 0, 12), SCSI_GOOD);
	CHECK_EQ(h->cmd.in_len, 12);
	CHECK_EQ(get_be32(h->in + 4), 8u * REG_CAP);
	CHECK_EQ(h->in[12], 0xee);

	/* READ FULL STATUS: the whole list is over 1 MiB; its length is still reported whole. */
	size_t want = 0;
	for (unsigned i = 0; i < REG_CAP; i++) {
		long_port_nexus(&nx, i);
		want += 24 + 4 + ((strlen(nx.initiator_port) + 1 + 3) & ~(size_t)3);
	}
	CHECK(want > (1u << 20));
	CHECK_EQ(prin_alloc(h, 0, 3, 0xffff), SCSI_GOOD);
	CHECK_EQ(get_be32(h->in + 4), want);
	CHECK_EQ(h->cmd.in_len, 0xffff);
	{
		size_t off = 8, seen = 0;
		while (off + 24 <= h->cmd.in_len) {
			long_port_nexus(&nx, (unsigned)seen);
			CHECK_EQ(get_be64(h->in + off), 0x1000 + seen);
			if (off + 24 + 4 + strlen(nx.initiator_port) <= h->cmd.in_len)
				CHECK(memcmp(h->in + off + 28, nx.initiator_port, strlen(nx.initiator_port)) == 0);
			off += 24 + get_be32(h->in + off + 20);
			seen++;
		}
		CHECK(seen > 200);
	}
	CHECK_EQ(prin_alloc(h, 0, 1, 4), SCSI_GOOD); /* READ RESERVATION: 4 bytes of the header only */
	CHECK_EQ(h->cmd.in_len, 4);
	CHECK_EQ(h->in[4], 0xee);

	/* REGISTER AND MOVE cannot create one past the limit either. */
	long_port_nexus(&nx, 0);
	scsi_target_nexus_added(h->t, &nx);
	h_clear_ua(h, 0, 0);
	{
		uint8_t c[10] = { 0x5f, 0x01, 0x01, 0, 0, 0, 0, 0, 24, 0 };
		uint8_t p[24 + 64] = { 0 };
		struct scsi_nexus *saved = &h->nx[0];
		h->nx[0] = nx;
		h_clear_ua(h, 0, 0);
		put_be64(p, 0x1000);
		CHECK_EQ(h_run(h, c, 10, p, 24, 0), SCSI_GOOD); /* RESERVE, write exclusive */
		c[1] = 0x07;
		put_be32(c + 5, sizeof(p));
		put_be64(p + 8, 0x77);
		put_be32(p + 20, 64);
		p[24] = 0x45;
		put_be16(p + 26, 60);
		memcpy(p + 28, "iqn.2024-01.org.example:elsewhere,i,0x400000000099", 50);
		CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x55, 0x04, c, 10, p, sizeof(p), 0);
		/* A TransportID name with a control character is refused (it would end up in files). */
		memcpy(p + 28, "iqn.2024-01.org.example:a\nreg 1 1 1 x,i,0x1", 44);
		CHECK_RUN_SENSE(h, SK_ILLEGAL_REQUEST, 0x26, 0x00, c, 10, p, sizeof(p), 0);
		(void)saved;
	}
	/* Once one registration goes, another fits. */
	CHECK_EQ(h_prout(h, 0, 0, 0, 0x1000, 0, 0), SCSI_GOOD);
	long_port_nexus(&nx, REG_CAP + 10);
	CHECK_EQ(register_from(h, &nx, 0x99), SCSI_GOOD);
	scsi_target_nexus_lost(h->t, &nx);
	h_free(h);
}

int main(void)
{
	test_registration_limits();
	test_register_reserve();
	test_all_registrants();
	test_aptpl();
	TEST_MAIN_END();
}
