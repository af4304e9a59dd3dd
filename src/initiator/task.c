/*
 * Tasks: the ITT table, the pool tasks are taken from and returned to, the per-connection list
 * of sent tasks (oldest first, for the command timeout), completion and the deferred callbacks
 * that run once the core has left the PDU being processed.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/internal.h"

static unsigned bucket(uint32_t itt) { return (itt ^ (itt >> 8)) % ISM_TASK_BUCKETS; }

struct ism_task *ism_task_find(struct ism_session *s, uint32_t itt)
{
	for (struct ism_task *t = s->tasks[bucket(itt)]; t; t = t->hnext)
		if (t->itt == itt)
			return t;
	return NULL;
}

/* A zeroed task of this kind for s, from the session's pool (allocated only while it is empty). */
struct ism_task *ism_task_alloc(struct ism_session *s, enum task_kind kind)
{
	struct ism_task *t = s->task_pool;
	if (t) {
		s->task_pool = t->qnext;
		s->task_pool_n--;
		/* Zero everything but the sense bytes (sense_len says how many are valid). */
		memset(t, 0, offsetof(struct ism_task, res) + offsetof(struct ism_scsi_result, sense));
		memset(&t->res.sense_len, 0, sizeof(t->res) - offsetof(struct ism_scsi_result, sense_len));
		memset((char *)t + offsetof(struct ism_task, res) + sizeof(t->res), 0,
		       sizeof(*t) - offsetof(struct ism_task, res) - sizeof(t->res));
	} else {
		t = xcalloc(1, sizeof(*t));
	}
	t->kind = kind;
	t->s = s;
	return t;
}

struct ism_task *ism_task_new(struct ism_session *s, enum task_kind kind)
{
	struct ism_task *t = ism_task_alloc(s, kind);
	do {
		t->itt = s->next_itt++;
	} while (t->itt == RESERVED_TAG || ism_task_find(s, t->itt));
	t->next_r2tsn = 0;
	unsigned b = bucket(t->itt);
	t->hnext = s->tasks[b];
	s->tasks[b] = t;
	s->ntasks++;
	return t;
}

void ism_task_unhash(struct ism_task *t)
{
	struct ism_session *s = t->s;
	for (struct ism_task **pp = &s->tasks[bucket(t->itt)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == t) {
			*pp = t->hnext;
			s->ntasks--;
			return;
		}
	}
}

void ism_pending_remove(struct ism_session *s, struct ism_task *t)
{
	struct ism_task *prev = NULL;
	for (struct ism_task *p = s->pending_head; p; prev = p, p = p->qnext) {
		if (p != t)
			continue;
		if (prev)
			prev->qnext = p->qnext;
		else
			s->pending_head = p->qnext;
		if (s->pending_tail == p)
			s->pending_tail = prev;
		s->npending--;
		p->qnext = NULL;
		return;
	}
}

void ism_task_free(struct ism_task *t)
{
	struct ism_session *s = t->s;
	sbuf_free(&t->text);
	if (s && s->task_pool_n < ISM_TASK_POOL_MAX) {
		t->qnext = s->task_pool;
		s->task_pool = t;
		s->task_pool_n++;
		return;
	}
	free(t);
}

/* The connection's list of sent tasks, oldest first: its head is the next to time out. */
void ism_sent_list_add(struct ism_conn *c, struct ism_task *t)
{
	t->snext = NULL;
	t->sprev = c->sent_tail;
	if (c->sent_tail)
		c->sent_tail->snext = t;
	else
		c->sent_head = t;
	c->sent_tail = t;
	t->on_sent_list = true;
}

static void sent_list_remove(struct ism_conn *c, struct ism_task *t)
{
	if (!t->on_sent_list)
		return;
	if (t->sprev)
		t->sprev->snext = t->snext;
	else
		c->sent_head = t->snext;
	if (t->snext)
		t->snext->sprev = t->sprev;
	else
		c->sent_tail = t->sprev;
	t->snext = t->sprev = NULL;
	t->on_sent_list = false;
}

/* Finish a task: it leaves the ITT table and its callback runs from ism_run_callbacks. */
void ism_task_complete(struct ism_task *t)
{
	if (t->state == TASK_DONE)
		return;
	struct ism_session *s = t->s;
	bool was_sent = t->state == TASK_SENT;
	t->state = TASK_DONE;
	ism_task_unhash(t);
	if (!was_sent)
		ism_pending_remove(s, t);
	if (t->conn) {
		if (was_sent && t->conn->outstanding)
			t->conn->outstanding--;
		sent_list_remove(t->conn, t);
		pdu_conn_forget_direct(&t->conn->pc, t); /* the rest of its Data-In is dropped */
		if (t->txrefs)
			ism_conn_detach_task(t->conn, t);
		t->res.cid = t->conn->cid;
	}
	t->qnext = NULL;
	if (s->done_tail)
		s->done_tail->qnext = t;
	else
		s->done_head = t;
	s->done_tail = t;
}

void ism_task_fail(struct ism_task *t, int err)
{
	t->res.error = err;
	ism_task_complete(t);
}

void ism_run_callbacks(struct ism_session *s)
{
	if (s->in_service > 0)
		return;
	s->in_service++;
	s->in_callbacks++;
	while (s->done_head) {
		struct ism_task *t = s->done_head;
		s->done_head = t->qnext;
		if (!s->done_head)
			s->done_tail = NULL;
		switch (t->kind) {
		case TASK_SCSI:
			if (t->scsi_cb)
				t->scsi_cb(s, &t->res, t->priv);
			break;
		case TASK_TEXT:
			if (t->disc_cb) {
				struct ism_discovery *d = t->result;
				t->result = NULL;
				t->disc_cb(s, t->res.error, d, t->priv);
			}
			break;
		default:
			if (t->conn_cb)
				t->conn_cb(s, t->res.error, t->res.cid, t->priv);
			else if (t->done_cb)
				t->done_cb(s, t->res.error, t->priv);
			break;
		}
		if (t->result)
			ism_discovery_free(t->result);
		ism_task_free(t);
	}
	s->in_callbacks--;
	s->in_service--;
}
