/* COMPARE AND WRITE of a gateway group's LU under the group's lock (lu_state_int.h's rules). */
#include <stdlib.h>

#include "scsi/lu_state_int.h"
#include "util/log.h"

/* ---- COMPARE AND WRITE under the group's lock ---- */

static void caw_unlock_home(void *arg)
{
	struct lu_shared *sh = arg;
	struct scsi_lu *lu = sh_home_arrive(sh);

	/* A LU gone gives the lock back as it is released. */
	if (lu)
		sh->ops->caw_unlock(sh->ctx);
	sh_home_leave(sh, lu);
}

/* cmd is done with the group's lock, if it held it (the LU's lock held; any thread). */
static void caw_release(struct lu_shared *sh, struct scsi_cmd *cmd)
{
	if (sh->caw_holder != cmd)
		return;
	sh->caw_holder = NULL;
	if (th_here(&sh->home))
		sh->ops->caw_unlock(sh->ctx);
	else
		sh_home_post(sh, caw_unlock_home, sh);
}

/* On the command's own thread, the group's lock taken for it: the command runs again. */
static void caw_run(struct lu_shared *sh, struct scsi_cmd *cmd)
{
	struct scsi_lu *lu = sh->lu;

	lu_lock(lu);
	bool go = sh->caw_holder == cmd && !atomic_load(&cmd->defer.cancelled);
	if (!go)
		caw_release(sh, cmd);
	lu_unlock(lu);
	if (!go) {
		sh_cmd_finish_here(cmd); /* cancelled on the way: nothing of it ran */
		return;
	}
	cmd->defer.active = false;
	scsi_cmd_run_shared(cmd->defer.ctx, cmd);
	if (!cmd->defer.active) { /* ended before any io (a reservation taken meanwhile, ...) */
		lu_lock(lu);
		caw_release(sh, cmd);
		lu_unlock(lu);
		cmd->done(cmd);
	}
}

static void caw_run_posted(void *arg)
{
	struct sh_hand *h = arg;
	struct lu_shared *sh = h->sh;
	struct scsi_cmd *cmd = h->cmd;

	if (sh->lu) { /* cleared only while every other loop is paused */
		caw_run(sh, cmd);
	} else {
		if (!atomic_load(&cmd->defer.cancelled))
			sh_cmd_fail(cmd, cmd->defer.desc, SK_ILLEGAL_REQUEST, 0x25, 0x00);
		sh_cmd_finish_here(cmd);
	}
	th_post(&sh->home, sh_hand_back, h);
}

/* On the home thread: the group's lock is this gateway's (rc 0), or cannot be. */
static void caw_locked(void *arg, int rc)
{
	struct sh_hand *h = arg;
	struct lu_shared *sh = h->sh;
	struct scsi_cmd *cmd = h->cmd;
	struct scsi_lu *lu = sh->lu;

	if (rc == 0 && lu && !atomic_load(&cmd->defer.cancelled)) {
		lu_lock(lu);
		sh->caw_holder = cmd;
		if (sh_own_here(cmd)) {
			lu_unlock(lu);
			free(h);
			caw_run(sh, cmd);
			return;
		}
		sh_own_post(h, caw_run_posted);
		lu_unlock(lu);
		return;
	}
	free(h);
	if (rc == 0)
		sh->ops->caw_unlock(sh->ctx);
	if (!atomic_load(&cmd->defer.cancelled) && lu)
		sh_cmd_fail(cmd, cmd->defer.desc, SK_NOT_READY, 0x04, 0x01);
	else if (!atomic_load(&cmd->defer.cancelled))
		sh_cmd_fail(cmd, cmd->defer.desc, SK_ILLEGAL_REQUEST, 0x25, 0x00);
	sh_cmd_finish(cmd);
}

/* A COMPARE AND WRITE of another thread asks for the group's lock on the home thread. */
static void caw_ask_home(void *arg)
{
	struct sh_hand *h = arg;
	struct lu_shared *sh = h->sh;
	struct scsi_lu *lu = sh_home_arrive(sh);

	if (lu) {
		sh->ops->caw_lock(sh->ctx, h->off, h->len, caw_locked, h);
	} else {
		if (!atomic_load(&h->cmd->defer.cancelled))
			sh_cmd_fail(h->cmd, h->cmd->defer.desc, SK_ILLEGAL_REQUEST, 0x25, 0x00);
		sh_cmd_finish(h->cmd);
		free(h);
	}
	sh_home_leave(sh, lu);
}

bool lu_shared_caw_begin(struct scsi_req *r)
{
	struct scsi_lu *lu = r->lu;
	struct scsi_cmd *cmd = r->cmd;

	lu_lock(lu);
	struct lu_shared *sh = lu->shared;
	bool waits = sh && sh->ops->caw_lock && sh->caw_holder != cmd;
	if (waits) {
		struct sh_hand *h = xcalloc(1, sizeof(*h));
		h->sh = sh;
		h->cmd = cmd;
		/* The CDB was checked (scsi_compare_and_write): its range is in the LU. */
		h->off = get_be64(r->cdb + 2) << lu->block_shift;
		h->len = (uint64_t)r->cdb[13] << lu->block_shift;
		cmd->defer.active = true;
		cmd->defer.desc = lu->d_sense;
		if (th_here(&sh->home))
			sh->ops->caw_lock(sh->ctx, h->off, h->len, caw_locked, h);
		else
			sh_home_post(sh, caw_ask_home, h);
	}
	lu_unlock(lu);
	return waits;
}

void lu_shared_caw_end(struct scsi_cmd *cmd)
{
	struct scsi_target *t = cmd->defer.t;
	struct scsi_lu *lu = t && cmd->defer.lun < SCSI_MAX_LUNS ? t->lu[cmd->defer.lun] : NULL;

	if (!lu)
		return;
	lu_lock(lu);
	if (lu->shared)
		caw_release(lu->shared, cmd);
	lu_unlock(lu);
}
