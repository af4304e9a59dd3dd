/*
 * Command dispatch: each command's row of the opcode table (opcodes.c) decides what is
 * checked before it runs (LU, readiness, reservations, unit attentions) and whether it waits
 * for the LU's work on workers.
 */
#include <string.h>

#include "scsi/scsi_int.h"

/*
 * Lookup by opcode; *opcode_known tells apart an unknown opcode from an unknown service action.
 * Rows that do not apply to the LU (see op_supported) count as unknown.
 */
static const struct scsi_opdef *find_op(const uint8_t *cdb, const struct scsi_lu *lu, bool *opcode_known)
{
	*opcode_known = false;
	for (size_t i = 0; i < scsi_nopdefs; i++) {
		const struct scsi_opdef *op = &scsi_opdefs[i];

		if (op->opcode != cdb[0] || !op_supported(op, lu))
			continue;
		*opcode_known = true;
		if (!(op->flags & OPF_SA) || op->sa == (cdb[1] & 0x1f))
			return op;
	}
	return NULL;
}

void req_data_in(struct scsi_req *r, const void *buf, uint32_t len, uint32_t alloc)
{
	struct scsi_cmd *cmd = r->cmd;
	uint32_t n = len < alloc ? len : alloc;

	if (n > cmd->in_cap)
		n = cmd->in_cap;
	if (n && buf != cmd->in)
		memmove(cmd->in, buf, n);
	cmd->in_len = n;
	cmd->xfer_len = alloc;
}

void din_start(struct din *d, struct scsi_req *r, uint32_t alloc)
{
	d->buf = r->ctx->scratch;
	d->cap = alloc < r->ctx->scratch_len ? alloc : r->ctx->scratch_len;
	d->len = 0;
}

void din_patch(struct din *d, size_t off, const void *p, size_t n)
{
	if (off >= d->cap)
		return;
	memcpy(d->buf + off, p, n < d->cap - off ? n : d->cap - off);
}

void din_put(struct din *d, const void *p, size_t n)
{
	din_patch(d, d->len, p, n);
	d->len += n;
}

void din_put_be32_at(struct din *d, size_t off, uint32_t v)
{
	uint8_t b[4];

	put_be32(b, v);
	din_patch(d, off, b, 4);
}

void din_finish(struct scsi_req *r, struct din *d, uint32_t alloc)
{
	req_data_in(r, d->buf, (uint32_t)(d->len < d->cap ? d->len : d->cap), alloc);
}

/* Reports, and so clears, exactly one condition: the lowest bit. False when none was left. */
static bool report_ua(struct scsi_req *r)
{
	uint8_t asc = 0, ascq = 0;
	uint32_t bit = ua_take(r->ln);

	if (!bit)
		return false;
	ua_to_sense(bit, &asc, &ascq);
	req_sense(r, SK_UNIT_ATTENTION, asc, ascq);
	return true;
}

/* The SPC-2 RESERVE rule (SPC-2 5.5.1): only the holder's nexus may run most commands. */
static bool rsv_conflict(const struct scsi_req *r)
{
	const struct scsi_lu *lu = r->lu;

	return lu->rsv_held && !rsv_holder(lu, r->cmd->nexus) && !(r->op->flags & OPF_RSV_OK);
}

bool lu_access_conflict(struct scsi_req *r)
{
	return rsv_conflict(r) || pr_conflict(r);
}

/*
 * Reads and flushes may still be running on workers (SIMPLE ones only). An ORDERED command must
 * come after them, and writes other than plain WRITEs (COMPARE AND WRITE, WRITE SAME, UNMAP,
 * SANITIZE, ...) promise more than a disk's per-block behaviour: both wait until the LU's work
 * on workers is done, without holding up the other LUs.
 */
static bool waits_for_jobs(const struct scsi_cmd *cmd, const struct scsi_opdef *op)
{
	if (cmd->task_attr == TASK_ORDERED)
		return true;
	/* One long operation per LU at a time: each holds a buffer and a worker while it runs. */
	if (op && (op->flags & OPF_LONG))
		return true;
	return op && (op->flags & OPF_WRITE) && !(op->flags & OPF_PER_BLOCK);
}

/*
 * Commands that need no lock while the gate is zero: medium access (but SANITIZE, which changes
 * the LU's state, and EXTENDED COPY, which keeps results in it) and TEST UNIT READY.
 */
static bool runs_unlocked(const struct scsi_opdef *op)
{
	if (op->run == scsi_test_unit_ready)
		return true;
	return (op->flags & (OPF_READ | OPF_WRITE)) && op->run != scsi_sanitize && op->run != scsi_extended_copy;
}

static void run_locked(struct scsi_req *r);

static void run(struct scsi_port_ctx *ctx, struct scsi_cmd *cmd)
{
	struct scsi_target *t = ctx->t;
	struct scsi_req r = { .t = t, .ctx = ctx, .cmd = cmd, .cdb = cmd->cdb };
	bool opcode_known;
	static const struct scsi_nexus anonymous = { .id = NEXUS_ANON };

	if (!cmd->nexus)
		cmd->nexus = &anonymous;
	if (cmd->lun_valid && cmd->lun < SCSI_MAX_LUNS)
		r.lu = t->lu[cmd->lun];
	scsi_sense_set_ctx(cmd, r.lu && r.lu->d_sense);

	if (cmd->cdb_len == 0) {
		req_sense(&r, SK_ILLEGAL_REQUEST, 0x20, 0x00);
		return;
	}
	r.op = find_op(cmd->cdb, r.lu, &opcode_known);
	if (!r.lu && !(r.op && (r.op->flags & OPF_NO_LU_OK))) {
		req_sense(&r, SK_ILLEGAL_REQUEST, 0x25, 0x00);
		return;
	}
	if (r.lu) {
		r.ln = lu_nexus_get(ctx, r.lu, cmd->nexus);
		/* SAM-5 5.14: a pending unit attention pre-empts everything but the three exempt commands. */
		if (!(r.op && (r.op->flags & OPF_NO_UA)) && atomic_load(&r.ln->ua) && report_ua(&r))
			return;
	}
	if (!r.op) {
		if (opcode_known)
			req_bad_cdb(&r, 1, 4);
		else
			req_sense(&r, SK_ILLEGAL_REQUEST, 0x20, 0x00);
		return;
	}
	if (cmd->cdb_len < r.op->cdb_len) {
		req_sense(&r, SK_ILLEGAL_REQUEST, 0x20, 0x00);
		return;
	}
	/* CONTROL byte: no NACA (we keep no ACA) and no linked commands (obsolete). */
	if (cmd->cdb[r.op->cdb_len - 1] & 0x07) {
		req_bad_cdb(&r, r.op->cdb_len - 1u, (cmd->cdb[r.op->cdb_len - 1] & 0x04) ? 2 : 0);
		return;
	}
	/* Every bit the usage data does not list is reserved or unsupported, so must be zero. */
	for (unsigned i = 1; i + 1 < r.op->cdb_len; i++) {
		uint8_t bad = cmd->cdb[i] & (uint8_t)~r.op->usage[i];
		if (bad) {
			int bit = 7;
			while (!(bad & (1u << bit)))
				bit--;
			req_bad_cdb(&r, i, bit);
			return;
		}
	}
	if (!r.lu) {
		r.op->run(&r);
		return;
	}
	/*
	 * READ and WRITE of a LU in no special state take no lock: nothing they would check can
	 * refuse them. Everything else, and they too once the gate says otherwise, runs under the
	 * LU's lock, so state other nexuses change is seen whole.
	 */
	if (lu_gate(r.lu) == 0 && runs_unlocked(r.op)) {
		if (!alua_access_refused(&r))
			r.op->run(&r);
		return;
	}
	lu_lock(r.lu);
	run_locked(&r);
	lu_unlock(r.lu);
}

/* The checks of a LU's state before a command runs, and the command (lu->lock held). */
static void run_locked(struct scsi_req *r)
{
	const struct scsi_lu *lu = r->lu;
	const struct scsi_opdef *op = r->op;

	/* Reservation commands of a gateway group run on the record as stored: later, here. */
	if (lu->shared && lu_shared_defer(r))
		return;
	if (alua_access_refused(r))
		return;
	if (lu_access_conflict(r)) {
		r->cmd->status = SCSI_RESERVATION_CONFLICT;
		return;
	}
	if (lu->sanitizing && ((op->flags & (OPF_READ | OPF_WRITE | OPF_NEED_READY)) || op->run == scsi_test_unit_ready)) {
		/* SBC-4 4.11: the medium is being sanitized; nothing gets at it meanwhile. */
		req_sense(r, SK_NOT_READY, 0x04, 0x1b);
		return;
	}
	if (lu->sanitize_failed && (op->flags & (OPF_READ | OPF_WRITE)) && op->run != scsi_sanitize) {
		/* SBC-4 4.11: after a failed sanitize only another sanitize gets to the medium. */
		req_sense(r, SK_MEDIUM_ERROR, 0x31, 0x03);
		return;
	}
	if ((op->flags & OPF_NEED_READY) && lu->stopped) {
		/* LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED: START STOP UNIT wakes it. */
		req_sense(r, SK_NOT_READY, 0x04, 0x02);
		return;
	}
	op->run(r);
}

void scsi_port_ctx_set_thread(struct scsi_port_ctx *ctx, const struct scsi_port_thread *th) { ctx->thread = *th; }

bool th_here(const struct scsi_port_thread *th) { return !th->here || th->here(th->owner); }

void th_post(const struct scsi_port_thread *th, void (*fn)(void *arg), void *arg)
{
	if (th->post)
		th->post(th->owner, fn, arg);
	else
		fn(arg);
}

void scsi_cmd_run_shared(struct scsi_port_ctx *ctx, struct scsi_cmd *cmd)
{
	cmd->status = SCSI_GOOD;
	cmd->sense_len = 0;
	cmd->in_len = 0;
	cmd->xfer_len = 0;
	cmd->defer.shared = true;
	run(ctx, cmd);
	scsi_sense_set_ctx(NULL, false);
}

static struct scsi_lu *cmd_lu(const struct scsi_target *t, const struct scsi_cmd *cmd)
{
	return cmd->lun_valid && cmd->lun < SCSI_MAX_LUNS ? t->lu[cmd->lun] : NULL;
}

/*
 * Whether cmd must wait before it runs: behind a command no later one may pass (ORDERED, an
 * exclusive write), or, when it needs the LU to itself, for the LU's ios in flight.
 */
static bool must_wait(const struct scsi_lu *lu, const struct scsi_cmd *cmd)
{
	bool known;
	if (lu->st->barriers)
		return true;
	if (!lu->st->jobs)
		return false;
	const struct scsi_opdef *op = find_op(cmd->cdb, lu, &known);
	/* A store that compares and writes atomically itself needs no quiet LU for it. */
	if (op && op->run == scsi_compare_and_write && (lu->st->caps & STORE_CAP_COMPARE_WRITE) &&
	    cmd->task_attr != TASK_ORDERED)
		return false;
	return waits_for_jobs(cmd, op);
}

static void execute(struct scsi_port_ctx *ctx, struct scsi_cmd *cmd)
{
	run(ctx, cmd);
	scsi_sense_set_ctx(NULL, false);
	if (!cmd->defer.active)
		cmd->done(cmd);
}

/* Whether a command of the same LU already waits in this context: later ones queue behind it. */
static bool lu_has_blocked(const struct scsi_port_ctx *ctx, const struct scsi_cmd *cmd)
{
	if (!ctx->nblocked)
		return false;
	for (const struct scsi_cmd *b = ctx->blocked; b; b = b->defer.blocked_next) {
		if (b->lun_valid && b->lun == cmd->lun)
			return true;
	}
	return false;
}

void scsi_port_submit(struct scsi_port_ctx *ctx, struct scsi_cmd *cmd)
{
	cmd->status = SCSI_GOOD;
	cmd->sense_len = 0;
	cmd->in_len = 0;
	cmd->xfer_len = 0;
	cmd->defer.active = false;
	cmd->defer.waited = false;
	cmd->defer.async = false;
	cmd->defer.barrier = false;
	cmd->defer.exclusive = false;
	cmd->defer.buf = NULL;
	cmd->defer.shared = false;
	cmd->defer.t = ctx->t;
	cmd->defer.ctx = ctx;
	atomic_store(&cmd->defer.cancelled, false);
	cmd->defer.blocked_next = NULL;
	struct scsi_lu *lu = cmd_lu(ctx->t, cmd);
	if (lu && (lu_has_blocked(ctx, cmd) || must_wait(lu, cmd))) {
		/* Behind its LU's work on workers, or behind a command already waiting for it. */
		cmd->defer.active = true;
		*(ctx->blocked_tail ? &ctx->blocked_tail->defer.blocked_next : &ctx->blocked) = cmd;
		ctx->blocked_tail = cmd;
		ctx->nblocked++;
		return;
	}
	execute(ctx, cmd);
}

void blocked_unlink(struct scsi_port_ctx *ctx, struct scsi_cmd **pp, struct scsi_cmd *prev)
{
	struct scsi_cmd *cmd = *pp;
	*pp = cmd->defer.blocked_next;
	if (ctx->blocked_tail == cmd)
		ctx->blocked_tail = prev;
	cmd->defer.blocked_next = NULL;
	ctx->nblocked--;
	cmd->defer.active = false;
}

void scsi_target_commands_cleared(struct scsi_target *t, uint16_t lun, const struct scsi_nexus *nx)
{
	struct scsi_lu *lu = lun < SCSI_MAX_LUNS ? t->lu[lun] : NULL;

	if (!lu)
		return;
	pthread_mutex_lock(&lu->nexus_lock);
	for (struct lu_nexus *ln = lu->nexuses; ln; ln = ln->lu_next) {
		if (ln->nexus_id == nx->id)
			ua_add(ln, UA_COMMANDS_CLEARED);
	}
	pthread_mutex_unlock(&lu->nexus_lock);
}

void scsi_cmd_cancel(struct scsi_cmd *cmd) { atomic_store(&cmd->defer.cancelled, true); }

bool scsi_cmd_changes_medium(const struct scsi_cmd *cmd)
{
	bool known;
	const struct scsi_opdef *op = cmd->defer.active ? find_op(cmd->cdb, NULL, &known) : NULL;
	return op && (op->flags & OPF_WRITE);
}

bool scsi_port_has_blocked(const struct scsi_port_ctx *ctx) { return ctx->nblocked != 0; }

void scsi_port_run_blocked(struct scsi_port_ctx *ctx)
{
	/*
	 * In arrival order; an LU whose first waiting command still has to wait keeps the rest of
	 * its commands waiting too (ORDERED means nothing after it starts first).
	 */
	uint16_t stalled[64];
	size_t nstalled = 0;
	struct scsi_cmd **pp = &ctx->blocked, *prev = NULL;
	while (*pp) {
		struct scsi_cmd *cmd = *pp;
		struct scsi_lu *lu = cmd_lu(ctx->t, cmd);
		bool stuck = false;
		for (size_t i = 0; i < nstalled && !stuck; i++)
			stuck = stalled[i] == cmd->lun;
		bool cancelled = atomic_load(&cmd->defer.cancelled);
		if (stuck || nstalled == sizeof(stalled) / sizeof(stalled[0]) || (!cancelled && must_wait(lu, cmd))) {
			if (!stuck && nstalled < sizeof(stalled) / sizeof(stalled[0]))
				stalled[nstalled++] = cmd->lun;
			prev = cmd;
			pp = &cmd->defer.blocked_next;
			continue;
		}
		blocked_unlink(ctx, pp, prev);
		if (cancelled)
			cmd->done(cmd); /* the transport ignores what it gave up on */
		else
			execute(ctx, cmd);
	}
}
