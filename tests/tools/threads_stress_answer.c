/*
 * isthmus-threads-stress: every answer checked against what the driver knows when it comes (the
 * rules are described at the top of threads_stress.c): the reset unit attention, own slots read
 * back, reservation conflicts, PERSISTENT RESERVE OUT outcomes and IN answers, ABORT TASK and
 * LOGICAL UNIT RESET answers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "threads_stress.h"

/* ---- answers ------------------------------------------------------------------------------- */

/* The reset unit attention check of one session, once what it waits for may have come. */
void st_due_evaluate(struct sess *s)
{
	if (!s->due)
		return;
	if (s->ua29 > s->due_ua29) {
		s->due = false;
		s->due_check_seq = 0;
		stress.ua_checks++;
		return;
	}
	if (!s->due_check_seq)
		return;
	/* A command sent earlier and still unanswered may yet bring the attention: it ran first. */
	for (int k = 0; k < DEPTH; k++)
		if (s->cmds[k].busy && s->cmds[k].seq < s->due_check_seq)
			return;
	st_violation("session %d: its %s (command #%" PRIu64 "), sent after session %d's LOGICAL UNIT RESET completed, "
		  "ran without the reset unit attention (29h) ever being reported to it",
		  s->id, s->due_check_desc, s->due_check_seq, s->due_by);
	s->due = false;
	s->due_check_seq = 0;
}

void st_verify_own_read(struct sess *s, struct cmd *c)
{
	struct slot *sl = &s->slots[c->slot];
	if (sl->unknown)
		return;
	stress.verified_reads++;
	for (uint32_t b = 0; b < SLOT_BLOCKS; b++) {
		const uint8_t *p = c->buf + (size_t)b * stress.bs;
		bool ok = st_block_is(p, stress.bs, stress.salt, s->id, c->slot, sl->acked, b);
		for (int k = 0; !ok && k < sl->nunc; k++)
			ok = st_block_is(p, stress.bs, stress.salt, s->id, c->slot, sl->unc[k], b);
		if (!ok) {
			char who[160] = "";
			for (int i = 0; i < stress.nsess && !who[0]; i++)
				for (uint32_t sl2 = 0; sl2 < OWN_SLOTS && !who[0]; sl2++)
					for (uint32_t gen = 0; gen <= stress.sess[i].next_gen && gen < 4096 && !who[0]; gen++)
						if (st_block_is(p, stress.bs, stress.salt, i, sl2, gen, b))
							snprintf(who, sizeof(who), " (it holds session %d's slot %u generation %u)", i,
								 sl2, gen);
			st_violation("session %d: block %u of its slot %u (LBA %" PRIu64 ") reads back neither its last "
				  "acknowledged write (generation %u) nor one of %d aborted since%s",
				  s->id, b, c->slot, c->lba + b, sl->acked, sl->nunc, who);
			return;
		}
	}
}

static void own_write_ended(struct sess *s, struct cmd *c, enum st_outcome o)
{
	struct slot *sl = &s->slots[c->slot];
	if (o == OUT_GOOD) {
		sl->acked = c->gen;
		sl->nunc = 0;
		sl->unknown = false;
	} else if (o == OUT_ABORTED || o == OUT_BAD) {
		s->hot_slot = (int)c->slot;
		/* It may or may not have reached the medium, block by block. */
		if (sl->nunc < MAX_UNCERTAIN)
			sl->unc[sl->nunc++] = c->gen;
		else
			sl->unknown = true;
	}
}

static void check_data(struct sess *s, struct cmd *c, enum st_outcome o)
{
	if (c->kind == K_TUR) {
		if (o == OUT_CONFLICT)
			st_violation("session %d: TEST UNIT READY met RESERVATION CONFLICT (allowed under every reservation)", s->id);
		return;
	}
	if (o != OUT_GOOD && o != OUT_CONFLICT)
		return;
	if (c->exact && c->pr_seq == stress.pr_seq) {
		stress.exact_data++;
		char st[200];
		st_describe_model(&c->before, stress.nsess, st, sizeof(st));
		if (o == OUT_CONFLICT && !c->expect_conflict)
			st_violation("session %d: %s met RESERVATION CONFLICT, but the state was %s with no reservation command "
				  "in flight",
				  s->id, c->desc, st);
		else if (o == OUT_GOOD && c->expect_conflict)
			st_violation("session %d: %s ran (GOOD), but the state was %s, which excludes it (no reservation "
				  "command in flight)",
				  s->id, c->desc, st);
		return;
	}
	if (o == OUT_CONFLICT && !c->could_conflict)
		st_violation("session %d: %s met RESERVATION CONFLICT while no reservation could be held (none known, no "
			  "RESERVE or PREEMPT sent since)",
			  s->id, c->desc);
}

static void pr_out_ended(struct sess *s, struct cmd *c, enum st_outcome o)
{
	stress.pr_out_inflight--;
	if (c->reserve_like)
		stress.reserve_like_inflight--;
	bool ran = o == OUT_GOOD || o == OUT_CONFLICT || o == OUT_ILLEGAL_26_04;
	bool may_have_run = ran || o == OUT_ABORTED || o == OUT_BAD;
	if (c->exact && c->pr_seq == stress.pr_seq && (ran || o == OUT_BAD)) {
		stress.exact_pr_out++;
		if (o != c->expect) {
			char st[200];
			st_describe_model(&c->before, stress.nsess, st, sizeof(st));
			st_violation("session %d: %s answered %s, but with the state %s SPC-4 gives %s", s->id, c->desc,
				  st_outcome_name(o), st, st_outcome_name(c->expect));
			st_model_lost();
			return;
		}
		if (stress.model.known)
			stress.model = c->after;
		return;
	}
	if (o == OUT_BAD || (o == OUT_ILLEGAL_26_04 && c->sa != PRO_RELEASE))
		st_violation("session %d: %s answered %s", s->id, c->desc, st_outcome_name(o));
	if (may_have_run && stress.model.known)
		st_model_lost();
}

static void pr_in_ended(struct sess *s, struct cmd *c, enum st_outcome o, uint32_t got)
{
	if (o == OUT_CONFLICT || o == OUT_BAD || o == OUT_ILLEGAL_26_04) {
		st_violation("session %d: %s answered %s", s->id, c->desc, st_outcome_name(o));
		return;
	}
	if (o != OUT_GOOD)
		return;
	struct st_pr_in in;
	char why[400];
	if (!st_parse_pr_in(c->sa, c->buf, got, &in, why, sizeof(why)) ||
	    !st_pr_in_consistent(c->sa, &in, stress.nsess, stress.ports, why, sizeof(why))) {
		st_violation("session %d: %s: %s", s->id, c->desc, why);
		if (c->sync)
			stress.phase = PH_SETTLE;
		return;
	}
	if ((int32_t)(in.generation - c->gen_floor) < 0)
		st_violation("session %d: %s: PRgeneration %u, but %u was answered before it was sent", s->id, c->desc,
			  in.generation, c->gen_floor);
	if ((int32_t)(in.generation - stress.gen_floor) > 0)
		stress.gen_floor = in.generation;
	if (c->exact && c->pr_seq == stress.pr_seq && stress.model.known) {
		stress.exact_pr_in++;
		if (!st_pr_in_matches(c->sa, &in, &stress.model, stress.nsess, why, sizeof(why)))
			st_violation("session %d: %s while no reservation command was in flight: %s", s->id, c->desc, why);
	}
	if (c->sa == PRI_READ_KEYS) {
		s->rk = in;
		s->rk_valid = true;
		s->want_rr = true;
	} else if (c->sa == PRI_READ_RESERVATION && c->pair_rr && s->rk_valid) {
		/* Same generation: no registration came or went in between, so the holder must be among the keys. */
		if (s->rk.generation == in.generation && in.held) {
			bool found = false;
			for (size_t k = 0; k < s->rk.nkeys; k++)
				found |= s->rk.keys[k] == in.holder_key;
			if (!found)
				st_violation("session %d: READ RESERVATION names holder key 0x%016" PRIx64 " which READ KEYS of "
					  "the same generation %u does not list",
					  s->id, in.holder_key, in.generation);
		}
		s->rk_valid = false;
	}
	if (c->sync && stress.phase == PH_SYNC) {
		st_model_from_full_status(&in, stress.nsess, &stress.model);
		stress.syncs++;
		stress.phase = PH_CHECKED;
		stress.phase_end = st_now_ms() + CHECKED_MS;
		stress.phases++;
	}
}

void st_on_scsi_done(struct ism_session *is, const struct ism_scsi_result *r, void *priv)
{
	struct cmd *c = priv;
	struct sess *s = c->s;
	(void)is;
	if (!c->busy) {
		st_violation("session %d: a second answer to %s", s->id, c->desc);
		return;
	}
	c->busy = false;
	c->task = NULL;
	s->outstanding--;
	if (s->pr == c)
		s->pr = NULL;
	if (stress.closing)
		return;
	stress.answered++;
	enum st_outcome o = st_classify(r);
	stress.by_outcome[o]++;
	if (o == OUT_ABORTED && c->abort)
		stress.aborts_ended_task++;
	if (o == OUT_BAD) {
		char txt[300];
		ism_result_text(r, txt, sizeof(txt));
		st_violation("session %d: %s answered %s", s->id, c->desc, txt);
	}
	if (o == OUT_UA_RESET)
		s->ua29++;
	/*
	 * Only a command that ran (GOOD, or the RELEASE refused for its type) proves the attention was
	 * skipped: whether RESERVATION CONFLICT or a pending unit attention comes first is the
	 * target's choice.
	 */
	if (s->due && c->seq >= s->due_first_seq && (o == OUT_GOOD || o == OUT_ILLEGAL_26_04) &&
	    s->ua29 <= s->due_ua29 && (!s->due_check_seq || c->seq < s->due_check_seq)) {
		s->due_check_seq = c->seq;
		snprintf(s->due_check_desc, sizeof(s->due_check_desc), "%s", c->desc);
	}
	switch (c->kind) {
	case K_WRITE_OWN:
		s->slots[c->slot].busy = false;
		own_write_ended(s, c, o);
		check_data(s, c, o);
		break;
	case K_READ_OWN:
		s->slots[c->slot].busy = false;
		if (o == OUT_GOOD)
			st_verify_own_read(s, c);
		check_data(s, c, o);
		break;
	case K_WRITE_SHARED:
	case K_READ_SHARED:
	case K_TUR:
		check_data(s, c, o);
		break;
	case K_PR_OUT:
		pr_out_ended(s, c, o);
		break;
	case K_PR_IN:
		pr_in_ended(s, c, o, r->transferred);
		if (c->sync && stress.phase == PH_SYNC)
			stress.phase = PH_SETTLE; /* not answered with the state: read it again */
		break;
	}
	st_due_evaluate(s);
}

void st_on_tmf_done(struct ism_session *is, int status, void *priv)
{
	struct tmf *t = priv;
	struct sess *s = t->s;
	(void)is;
	if (!t->busy) {
		st_violation("session %d: a second answer to a task management request", s->id);
		return;
	}
	t->busy = false;
	if (s->abort_pending == t)
		s->abort_pending = NULL;
	if (stress.closing)
		return;
	if (t->fn == ISM_TMF_ABORT_TASK) {
		struct cmd *c = t->ref;
		if (c->busy && c->seq == t->ref_seq) {
			c->abort = NULL;
			if (status == 0)
				st_violation("session %d: ABORT TASK of %s was answered, but the task neither completed nor "
					  "ended as aborted",
					  s->id, c->desc);
		}
		if (status != 0)
			st_violation("session %d: ABORT TASK answered %s", s->id, ism_session_error(s->is));
		return;
	}
	/* LOGICAL UNIT RESET */
	stress.reset_inflight = false;
	stress.reset_done_ms = st_now_ms();
	if (status != 0) {
		st_violation("session %d: LOGICAL UNIT RESET answered %s", s->id, ism_session_error(s->is));
		return;
	}
	for (int i = 0; i < stress.nsess; i++) {
		struct sess *o = &stress.sess[i];
		if (o == s)
			continue;
		/* Every other nexus must be told; a 29h already received since the reset was sent counts. */
		o->due = o->ua29 == o->ua29_at_send;
		o->due_ua29 = o->ua29_at_send;
		o->due_first_seq = o->next_seq;
		o->due_check_seq = 0;
		o->due_by = s->id;
		/* Its commands sent before may have been ended by the reset without a word. */
		o->eh = true;
		o->eh_before_seq = o->next_seq;
		o->eh_at_ms = stress.reset_done_ms + EH_DELAY_MS;
	}
}
