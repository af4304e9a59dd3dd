/*
 * Target and logical-unit lifecycle, I_T nexus bookkeeping, unit attentions and the effects
 * of task management. Commands with store ios in flight are the transport's to abort
 * (scsi_cmd_cancel: they stop at their next io or step and complete); resets only change state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_int.h"
#include "util/log.h"
#include "util/sbuf.h"

#define SCRATCH_LEN (1u << 20)

struct scsi_target *scsi_target_new(const char *target_name)
{
	struct scsi_target *t = xcalloc(1, sizeof(*t));

	t->name = xstrdup(target_name ? target_name : "");
	t->lu = xcalloc(SCSI_MAX_LUNS, sizeof(*t->lu));
	pthread_mutex_init(&t->nexus_lock, NULL);
	return t;
}

struct scsi_port_ctx *scsi_port_ctx_new(struct scsi_target *t, struct store_engine *e)
{
	struct scsi_port_ctx *ctx = xcalloc(1, sizeof(*ctx));

	ctx->t = t;
	ctx->scratch_len = SCRATCH_LEN;
	ctx->scratch = xmalloc(SCRATCH_LEN);
	ctx->scratch2 = xmalloc(SCRATCH_LEN);
	ctx->engine = e;
	ctx->offload = e ? store_engine_offload(e) : NULL;
	struct scsi_port_ctx **pp = &t->ctxs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = ctx;
	return ctx;
}

void scsi_port_ctx_free(struct scsi_port_ctx *ctx)
{
	if (!ctx)
		return;
	for (struct scsi_port_ctx **pp = &ctx->t->ctxs; *pp; pp = &(*pp)->next) {
		if (*pp == ctx) {
			*pp = ctx->next;
			break;
		}
	}
	free(ctx->scratch);
	free(ctx->scratch2);
	free(ctx->ln);
	free(ctx);
}

struct offload *target_home_offload(const struct scsi_target *t) { return t->ctxs ? t->ctxs->offload : NULL; }

/* Commands of one context that waited for this LU's jobs: the LU is gone, so LOGICAL UNIT NOT SUPPORTED. */
static void lu_fail_blocked(struct scsi_port_ctx *ctx, struct scsi_lu *lu)
{
	struct scsi_cmd **pp = &ctx->blocked, *prev = NULL;
	while (*pp) {
		struct scsi_cmd *cmd = *pp;
		if (!cmd->lun_valid || cmd->lun != lu->lun) {
			prev = cmd;
			pp = &cmd->defer.blocked_next;
			continue;
		}
		blocked_unlink(ctx, pp, prev);
		cmd->status = SCSI_CHECK_CONDITION;
		cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), lu->d_sense, SK_ILLEGAL_REQUEST,
							   0x25, 0x00, NULL, NULL);
		cmd->done(cmd);
	}
}

static void ctx_ln_remove(struct lu_nexus *ln);

static void lu_free(struct scsi_lu *lu)
{
	for (struct scsi_port_ctx *ctx = lu->t->ctxs; ctx; ctx = ctx->next)
		lu_fail_blocked(ctx, lu);
	while (lu->nexuses) {
		struct lu_nexus *ln = lu->nexuses;
		lu->nexuses = ln->lu_next;
		ctx_ln_remove(ln);
		free(ln);
	}
	/* Reads still on workers finish first; the last one closes the store. */
	if (lu->st && lu->st->jobs)
		lu->st->closing = true;
	else
		store_close(lu->st);
	lu_shared_detach(lu);
	pr_persist_release(lu);
	pr_free(&lu->pr);
	free(lu->state_dir);
	pthread_mutex_destroy(&lu->lock);
	pthread_mutex_destroy(&lu->nexus_lock);
	free(lu);
}

void scsi_target_free(struct scsi_target *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
		if (t->lu[i])
			lu_free(t->lu[i]);
	}
	while (t->ctxs)
		scsi_port_ctx_free(t->ctxs);
	free(t->lu);
	for (size_t i = 0; i < t->nnexus; i++)
		free(t->nexus[i].nx);
	free(t->nexus);
	idmap_free(&t->nexus_map);
	pthread_mutex_destroy(&t->nexus_lock);
	free(t->name);
	free(t);
}

/* FNV-1a: stable across runs, so derived identifiers survive restarts. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t lu_derived_naa(const struct scsi_target *t, uint16_t lun)
{
	uint64_t h = fnv1a(0xcbf29ce484222325ull, t->name, strlen(t->name));
	uint8_t l[2] = { (uint8_t)(lun >> 8), (uint8_t)lun };

	return fnv1a(h, l, 2);
}

static void copy_ascii(char *dst, size_t cap, const char *src, const char *dflt)
{
	size_t n = 0;

	if (!src || !*src)
		src = dflt;
	/* SPC-4 4.4.1: only printable ASCII in identification fields. */
	for (; *src && n + 1 < cap; src++)
		dst[n++] = (*src >= 0x20 && *src <= 0x7e) ? *src : '_';
	dst[n] = 0;
}

void lu_lock(struct scsi_lu *lu) { pthread_mutex_lock(&lu->lock); }

void lu_unlock(struct scsi_lu *lu)
{
	unsigned g = 0;

	if (lu->pr.held)
		g |= LU_GATE_PR;
	if (lu->rsv_held)
		g |= LU_GATE_RSV;
	if (lu->stopped)
		g |= LU_GATE_STOPPED;
	if (lu->sanitizing)
		g |= LU_GATE_SANITIZING;
	if (lu->sanitize_failed)
		g |= LU_GATE_SANITIZE_FAILED;
	if (lu->shared && !lu_shared_loaded(lu))
		g |= LU_GATE_UNSHARED;
	atomic_store(&lu->gate, g);
	pthread_mutex_unlock(&lu->lock);
}

/* ---- each context's table of its nexuses' entries: (nexus id, LU) -> lu_nexus ---- */

static size_t ln_bucket(const struct scsi_port_ctx *ctx, uint64_t nexus_id, const struct scsi_lu *lu)
{
	uint64_t h = (nexus_id ^ ((uint64_t)(uintptr_t)lu >> 4)) * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 32) & (ctx->ln_cap - 1);
}

static struct lu_nexus *ctx_ln_find(const struct scsi_port_ctx *ctx, uint64_t nexus_id, const struct scsi_lu *lu)
{
	if (!ctx->ln_cap)
		return NULL;
	for (struct lu_nexus *ln = ctx->ln[ln_bucket(ctx, nexus_id, lu)]; ln; ln = ln->ctx_next) {
		if (ln->nexus_id == nexus_id && ln->lu == lu)
			return ln;
	}
	return NULL;
}

static void ctx_ln_insert(struct scsi_port_ctx *ctx, struct lu_nexus *ln)
{
	if (ctx->nln >= ctx->ln_cap) {
		size_t old_cap = ctx->ln_cap;
		struct lu_nexus **old = ctx->ln;
		ctx->ln_cap = old_cap ? old_cap * 2 : 16;
		ctx->ln = xcalloc(ctx->ln_cap, sizeof(*ctx->ln));
		for (size_t i = 0; i < old_cap; i++) {
			while (old[i]) {
				struct lu_nexus *e = old[i];
				old[i] = e->ctx_next;
				size_t b = ln_bucket(ctx, e->nexus_id, e->lu);
				e->ctx_next = ctx->ln[b];
				ctx->ln[b] = e;
			}
		}
		free(old);
	}
	size_t b = ln_bucket(ctx, ln->nexus_id, ln->lu);
	ln->ctx_next = ctx->ln[b];
	ctx->ln[b] = ln;
	ctx->nln++;
}

/* On the entry's context (its nexus is lost), or while no command runs (its LU is removed). */
static void ctx_ln_remove(struct lu_nexus *ln)
{
	struct scsi_port_ctx *ctx = ln->ctx;
	for (struct lu_nexus **pp = &ctx->ln[ln_bucket(ctx, ln->nexus_id, ln->lu)]; *pp; pp = &(*pp)->ctx_next) {
		if (*pp == ln) {
			*pp = ln->ctx_next;
			ctx->nln--;
			return;
		}
	}
}

static const struct scsi_nexus *target_nexus_add(struct scsi_target *t, const struct scsi_nexus *nx);

struct lu_nexus *lu_nexus_get(struct scsi_port_ctx *ctx, struct scsi_lu *lu, const struct scsi_nexus *nx)
{
	struct lu_nexus *ln = ctx_ln_find(ctx, nx->id, lu);

	if (ln)
		return ln;
	ln = xcalloc(1, sizeof(*ln));
	ln->nexus_id = nx->id;
	ln->nx = nx->id == NEXUS_ANON ? nx : target_nexus_add(lu->t, nx);
	ln->lu = lu;
	ln->ctx = ctx;
	/* First contact between this nexus and this LU: as after power on. */
	atomic_init(&ln->ua, UA_POWER_ON);
	ctx_ln_insert(ctx, ln);
	pthread_mutex_lock(&lu->nexus_lock);
	ln->lu_next = lu->nexuses;
	lu->nexuses = ln;
	pthread_mutex_unlock(&lu->nexus_lock);
	return ln;
}

static void lu_nexus_drop(struct scsi_lu *lu, uint64_t nexus_id)
{
	pthread_mutex_lock(&lu->nexus_lock);
	for (struct lu_nexus **pp = &lu->nexuses; *pp; pp = &(*pp)->lu_next) {
		struct lu_nexus *ln = *pp;
		if (ln->nexus_id == nexus_id) {
			*pp = ln->lu_next;
			ctx_ln_remove(ln);
			free(ln);
			break;
		}
	}
	pthread_mutex_unlock(&lu->nexus_lock);
}

void ua_add(struct lu_nexus *ln, uint32_t ua)
{
	uint32_t cur = atomic_load(&ln->ua), want;

	do {
		/* A power-on/reset condition supersedes every other pending attention (SAM-5 5.14). */
		if (cur & UA_RESETS)
			return;
		want = (ua & UA_RESETS) ? (ua & UA_RESETS) : (cur | ua);
	} while (!atomic_compare_exchange_weak(&ln->ua, &cur, want));
}

uint32_t ua_take(struct lu_nexus *ln)
{
	uint32_t cur = atomic_load(&ln->ua), bit;

	do {
		if (!cur)
			return 0;
		bit = cur & (~cur + 1);
	} while (!atomic_compare_exchange_weak(&ln->ua, &cur, cur & ~bit));
	return bit;
}

/*
 * Only the nexuses that have met the LU have entries; the others get POWER ON when they first
 * do (lu_nexus_get), which supersedes whatever is raised here anyway. So one pass over the
 * entries, not one lookup per session: MODE SELECT and LUN RESET come from initiators.
 */
void lu_ua_set_all(struct scsi_lu *lu, uint32_t ua, uint64_t except_nexus)
{
	pthread_mutex_lock(&lu->nexus_lock);
	for (struct lu_nexus *ln = lu->nexuses; ln; ln = ln->lu_next) {
		if (ln->nexus_id != except_nexus)
			ua_add(ln, ua);
	}
	pthread_mutex_unlock(&lu->nexus_lock);
}

bool ua_to_sense(uint32_t ua, uint8_t *asc, uint8_t *ascq)
{
	static const struct {
		uint32_t bit;
		uint8_t asc, ascq;
	} map[] = {
		{ UA_POWER_ON, 0x29, 0x00 },
		{ UA_LU_RESET, 0x29, 0x03 },
		{ UA_RESERVATIONS_PREEMPTED, 0x2a, 0x03 },
		{ UA_RESERVATIONS_RELEASED, 0x2a, 0x04 },
		{ UA_REGISTRATIONS_PREEMPTED, 0x2a, 0x05 },
		{ UA_MODE_CHANGED, 0x2a, 0x01 },
		{ UA_CAPACITY_CHANGED, 0x2a, 0x09 },
		{ UA_COMMANDS_CLEARED, 0x2f, 0x00 },
		{ UA_LUNS_CHANGED, 0x3f, 0x0e },
		{ UA_ASYM_ACCESS_CHANGED, 0x2a, 0x06 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (ua & map[i].bit) {
			*asc = map[i].asc;
			*ascq = map[i].ascq;
			return true;
		}
	}
	return false;
}

static void luns_changed(struct scsi_target *t, uint16_t except_lun)
{
	for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
		if (t->lu[i] && i != except_lun)
			lu_ua_set_all(t->lu[i], UA_LUNS_CHANGED, NEXUS_NONE);
	}
}

int scsi_target_add_lu(struct scsi_target *t, uint16_t lun, struct store *st, const struct scsi_lu_params *p,
		       char **err)
{
	static const struct scsi_lu_params none;
	struct scsi_lu *lu;
	uint32_t bs;

	if (!p)
		p = &none;
	if (lun >= SCSI_MAX_LUNS) {
		*err = xasprintf("LUN %u out of range (0..%u)", lun, SCSI_MAX_LUNS - 1);
		return -1;
	}
	if (t->lu[lun]) {
		*err = xasprintf("LUN %u already exists", lun);
		return -1;
	}
	if (!st) {
		*err = xasprintf("LUN %u: no store", lun);
		return -1;
	}
	bs = p->block_size ? p->block_size : 512;
	if (bs != 512 && bs != 1024 && bs != 2048 && bs != 4096) {
		*err = xasprintf("LUN %u: block size %u unsupported (512, 1024, 2048 or 4096)", lun, bs);
		return -1;
	}
	if (p->phys_block_exp > 15 || ((uint64_t)bs << p->phys_block_exp) > (1u << 20)) {
		*err = xasprintf("LUN %u: physical block exponent %u too large", lun, p->phys_block_exp);
		return -1;
	}
	if (st->size / bs == 0) {
		*err = xasprintf("LUN %u: store smaller than one block", lun);
		return -1;
	}

	lu = xcalloc(1, sizeof(*lu));
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&lu->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_mutex_init(&lu->nexus_lock, NULL);
	lu->t = t;
	lu->lun = lun;
	lu->block_size = bs;
	while ((1u << lu->block_shift) < bs)
		lu->block_shift++;
	lu->nblocks = st->size / bs;
	lu->read_only = p->read_only || st->read_only;
	lu->thin = p->thin;
	/*
	 * Off by default: libiscsi 1.19's GetLBAStatus.UnmapSingle only passes with one logical
	 * block per physical block (see docs/conformance.md).
	 */
	lu->pb_exp = p->phys_block_exp;
	lu->atomic = st->atomic_writes;
	copy_ascii(lu->vendor, sizeof(lu->vendor), p->vendor, "ISTHMUS");
	copy_ascii(lu->product, sizeof(lu->product), p->product, "VIRTUAL-DISK");
	copy_ascii(lu->revision, sizeof(lu->revision), p->revision, "0001");
	lu->naa = p->naa_id ? p->naa_id : lu_derived_naa(t, lun);
	lu_naa_designator_make(lu);
	if (p->serial && *p->serial)
		copy_ascii(lu->serial, sizeof(lu->serial), p->serial, "");
	else
		snprintf(lu->serial, sizeof(lu->serial), "%016llx", (unsigned long long)lu->naa);
	lu->wce = lu->wce_default = p->write_cache;
	lu->state_dir = p->state_dir ? xstrdup(p->state_dir) : NULL;
	lu->st = st; /* pr_load reads what the store keeps; on failure the caller still owns st */
	if (pr_load(lu, err) < 0) {
		free(lu->state_dir);
		pthread_mutex_destroy(&lu->lock);
		pthread_mutex_destroy(&lu->nexus_lock);
		free(lu);
		return -1;
	}
	lu_lock(lu);
	lu_unlock(lu); /* the gate of the reservation state just loaded */
	t->lu[lun] = lu;
	t->nlu++;
	luns_changed(t, lun);
	return 0;
}

int scsi_target_remove_lu(struct scsi_target *t, uint16_t lun)
{
	if (lun >= SCSI_MAX_LUNS || !t->lu[lun])
		return -1;
	lu_free(t->lu[lun]);
	t->lu[lun] = NULL;
	t->nlu--;
	luns_changed(t, lun);
	return 0;
}

void scsi_target_lu_resized(struct scsi_target *t, uint16_t lun)
{
	struct scsi_lu *lu;

	if (lun >= SCSI_MAX_LUNS || !(lu = t->lu[lun]))
		return;
	/* Under the lock, so no nexus sees the attention without the new capacity. */
	lu_lock(lu);
	lu->nblocks = __atomic_load_n(&lu->st->size, __ATOMIC_ACQUIRE) / lu->block_size;
	lu_ua_set_all(lu, UA_CAPACITY_CHANGED, NEXUS_NONE);
	lu_unlock(lu);
}

size_t scsi_target_lu_count(const struct scsi_target *t) { return t->nlu; }

size_t scsi_target_list_luns(const struct scsi_target *t, uint16_t *luns, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < SCSI_MAX_LUNS && n < max; i++) {
		if (t->lu[i])
			luns[n++] = (uint16_t)i;
	}
	return n;
}

struct store *scsi_target_lu_store(struct scsi_target *t, uint16_t lun)
{
	if (lun >= SCSI_MAX_LUNS || !t->lu[lun])
		return NULL;
	return t->lu[lun]->st;
}

/* The target's copy of nx's identity, made if it has none. */
static const struct scsi_nexus *target_nexus_add(struct scsi_target *t, const struct scsi_nexus *nx)
{
	size_t i;

	pthread_mutex_lock(&t->nexus_lock);
	if (!idmap_find(&t->nexus_map, t->nexus, sizeof(*t->nexus), nx->id, &i)) {
		if (t->nnexus == t->nexus_cap) {
			t->nexus_cap = t->nexus_cap ? t->nexus_cap * 2 : 8;
			t->nexus = xrealloc(t->nexus, t->nexus_cap * sizeof(*t->nexus));
		}
		/* Its entry in each LU comes with the first command there, carrying POWER ON (lu_nexus_get). */
		i = t->nnexus++;
		t->nexus[i].id = nx->id;
		t->nexus[i].nx = xmalloc(sizeof(*nx));
		*t->nexus[i].nx = *nx;
		idmap_insert(&t->nexus_map, t->nexus, sizeof(*t->nexus), t->nnexus, i);
	}
	const struct scsi_nexus *copy = t->nexus[i].nx;
	pthread_mutex_unlock(&t->nexus_lock);
	return copy;
}

void scsi_target_nexus_added(struct scsi_target *t, const struct scsi_nexus *nx) { target_nexus_add(t, nx); }

void scsi_target_nexus_lost(struct scsi_target *t, const struct scsi_nexus *nx)
{
	for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
		struct scsi_lu *lu = t->lu[i];

		if (!lu)
			continue;
		lu_lock(lu);
		lu_nexus_drop(lu, nx->id);
		xcopy_nexus_lost(lu, nx->id);
		if (rsv_holder(lu, nx)) {
			lu->rsv_held = false;
			if (lu->shared)
				lu_shared_action(lu, LU_ACT_RSV_DROP, 0, nx);
		}
		lu_unlock(lu);
	}
	size_t i;
	pthread_mutex_lock(&t->nexus_lock);
	if (idmap_find(&t->nexus_map, t->nexus, sizeof(*t->nexus), nx->id, &i)) {
		idmap_remove(&t->nexus_map, t->nexus, sizeof(*t->nexus), nx->id);
		free(t->nexus[i].nx);
		t->nexus[i] = t->nexus[--t->nnexus];
		if (i != t->nnexus)
			idmap_moved(&t->nexus_map, t->nexus[i].id, t->nnexus, i);
	}
	pthread_mutex_unlock(&t->nexus_lock);
}

/* What a logical unit reset does to one LU (SAM-5 6.3.3); persistent reservations survive. */
/* ua: what every nexus is told: a LOGICAL UNIT RESET reports itself (29/03), a target reset as
 * a reset in general (29/00). */
static void lu_reset(struct scsi_lu *lu, uint32_t ua)
{
	lu_lock(lu);
	lu->rsv_held = false;
	lu->nheld = 0;          /* held copy results are lost with the task set */
	pthread_mutex_lock(&lu->nexus_lock);
	for (struct lu_nexus *ln = lu->nexuses; ln; ln = ln->lu_next)
		ln->prevent = false;
	pthread_mutex_unlock(&lu->nexus_lock);
	lu_ua_set_all(lu, ua, NEXUS_NONE);
	/* The other gateways' nexuses are told, and their SPC-2 reservation released, through the record. */
	if (lu->shared)
		lu_shared_action(lu, LU_ACT_RESET, ua, NULL);
	atomic_fetch_add(&lu->reset_gen, 1);
	lu_unlock(lu);
}

/* A cold reset is a power cycle: volatile state goes back to defaults. */
static void lu_power_cycle(struct scsi_lu *lu)
{
	lu_reset(lu, UA_POWER_ON);
	lu_lock(lu);
	lu->wce = lu->wce_default;
	lu->d_sense = false;
	lu->swp = false;
	lu->stopped = false;
	if (lu->shared)
		lu_shared_action(lu, LU_ACT_COLD_RESET, 0, NULL);
	else
		pr_nexus_reset(lu);
	lu_unlock(lu);
}

int scsi_target_task_mgmt(struct scsi_target *t, enum scsi_tmf fn, uint16_t lun, bool lun_valid,
			  const struct scsi_nexus *nx)
{
	struct scsi_lu *lu = (lun_valid && lun < SCSI_MAX_LUNS) ? t->lu[lun] : NULL;

	(void)nx;
	switch (fn) {
	case SCSI_TMF_ABORT_TASK_SET:
	case SCSI_TMF_CLEAR_TASK_SET:
		/* Commands on workers are cancelled by the transport, task by task. */
		return lu ? 0 : 2;
	case SCSI_TMF_LUN_RESET:
		if (!lu)
			return 2;
		lu_reset(lu, UA_LU_RESET);
		return 0;
	case SCSI_TMF_TARGET_WARM_RESET:
	case SCSI_TMF_TARGET_COLD_RESET:
		for (size_t i = 0; i < SCSI_MAX_LUNS; i++) {
			if (!t->lu[i])
				continue;
			if (fn == SCSI_TMF_TARGET_COLD_RESET)
				lu_power_cycle(t->lu[i]);
			else
				lu_reset(t->lu[i], UA_POWER_ON);
		}
		return 0;
	}
	return 5;
}

void scsi_medium_error(struct scsi_cmd *cmd, bool desc, uint16_t lun, bool write, int err, uint64_t lba)
{
	log_error("LUN %u: %s error at LBA %llu: %s", lun, write ? "write" : "read", (unsigned long long)lba,
		  strerror(-err));
	uint8_t key = SK_MEDIUM_ERROR, asc = write ? 0x0c : 0x11, ascq = 0x00;
	if (err == -ENOSPC) {
		/* Thin backing ran out of space: SBC-3 4.7.3.6 has a dedicated code for this. */
		key = SK_DATA_PROTECT;
		asc = 0x27;
		ascq = 0x07;
	} else if (err == -ETIMEDOUT) {
		/*
		 * A network store gave up waiting for its cluster: the medium is out of reach for now,
		 * not damaged. LOGICAL UNIT IS IN PROCESS OF BECOMING READY (SPC-4) is what initiators
		 * retry after a delay for as long as their command timeout lasts.
		 */
		key = SK_NOT_READY;
		asc = 0x04;
		ascq = 0x01;
	}
	cmd->status = SCSI_CHECK_CONDITION;
	cmd->sense_len = (uint8_t)scsi_sense_build(cmd->sense, sizeof(cmd->sense), desc, key, asc, ascq, &lba, NULL);
}

uint64_t scsi_target_lu_reset_gen(struct scsi_target *t, uint16_t lun)
{
	struct scsi_lu *lu = lun < SCSI_MAX_LUNS ? t->lu[lun] : NULL;
	return lu ? atomic_load(&lu->reset_gen) : 0;
}

void lu_medium_error(struct scsi_req *r, bool write, int err, uint64_t lba)
{
	scsi_medium_error(r->cmd, r->lu->d_sense, r->lu->lun, write, err, lba);
}
