/*
 * Answers to the session's own requests: Task Management Function Response (tasks the function
 * ended fail as aborted) and Logout Response (the connection, or every connection, closes).
 */
#include "initiator/internal.h"
#include "util/serial.h"

/*
 * The commands a LU RESET, ABORT TASK SET or target reset ended: those sent before it, whose
 * CmdSN is below the request's. An immediate request carries the CmdSN the next command takes,
 * so a command sent after it has the same CmdSN and is still the target's to answer.
 */
static void abort_lun_tasks(struct ism_session *s, bool all, uint64_t lun, uint32_t tmf_cmdsn)
{
	for (int b = 0; b < ISM_TASK_BUCKETS; b++) {
		struct ism_task *t = s->tasks[b];
		while (t) {
			struct ism_task *next = t->hnext;
			if (t->kind == TASK_SCSI && t->state == TASK_SENT && (all || t->lun == lun) && sn_lt(t->cmdsn, tmf_cmdsn))
				ism_task_fail(t, ISM_ERR_ABORTED);
			t = next;
		}
	}
}

const char *ism_tmf_response_str(uint8_t r)
{
	switch (r) {
	case TMF_RSP_COMPLETE: return "function complete";
	case TMF_RSP_NO_TASK: return "task does not exist";
	case TMF_RSP_NO_LUN: return "LUN does not exist";
	case TMF_RSP_TASK_ALLEGIANT: return "task still allegiant";
	case TMF_RSP_REASSIGN_UNSUPPORTED: return "task allegiance reassignment not supported";
	case TMF_RSP_NOT_SUPPORTED: return "task management function not supported";
	case TMF_RSP_AUTH_FAILED: return "function authorization failed";
	case TMF_RSP_REJECTED: return "function rejected";
	default: return "unknown response";
	}
}

void ism_on_tmf_response(struct ism_conn *c, const struct bhs *b, uint32_t len)
{
	struct ism_session *s = c->s;
	if (len) {
		ism_conn_fail(c, "Task Management Response with a data segment (DataSegmentLength %u)", len);
		return;
	}
	struct ism_task *t = ism_task_for(c, b, TASK_TMF);
	if (!t)
		return;
	uint8_t r = b->tmf_rsp.response;
	if (t->tmf_function == TMF_TASK_REASSIGN) {
		ism_erl2_reassign_answered(c, t, r);
		return;
	}
	bool ok = r == TMF_RSP_COMPLETE || (t->tmf_function == TMF_ABORT_TASK && r == TMF_RSP_NO_TASK);
	if (ok) {
		if (t->tmf_function == TMF_ABORT_TASK) {
			struct ism_task *ref = ism_task_find(s, t->tmf_ref_itt);
			if (ref && ref->kind == TASK_SCSI)
				ism_task_fail(ref, ISM_ERR_ABORTED);
		} else if (t->tmf_function == TMF_LOGICAL_UNIT_RESET || t->tmf_function == TMF_ABORT_TASK_SET ||
			   t->tmf_function == TMF_CLEAR_TASK_SET) {
			abort_lun_tasks(s, false, t->lun, t->cmdsn);
		} else if (t->tmf_function == TMF_TARGET_WARM_RESET || t->tmf_function == TMF_TARGET_COLD_RESET) {
			abort_lun_tasks(s, true, 0, t->cmdsn);
		}
		t->res.error = ISM_OK;
	} else {
		ism_set_error(s, "task management function %u failed: %s (0x%02x)", t->tmf_function,
			      ism_tmf_response_str(r), r);
		t->res.error = ISM_ERR_TARGET;
	}
	ism_task_complete(t);
}

/* Logout Response codes (RFC 7143 11.15.1). */
enum logout_response {
	LOGOUT_RSP_SUCCESS = 0,
	LOGOUT_RSP_CID_NOT_FOUND = 1,
	LOGOUT_RSP_RECOVERY_UNSUPPORTED = 2,
	LOGOUT_RSP_CLEANUP_FAILED = 3,
};

static const char *logout_response_str(uint8_t r)
{
	switch (r) {
	case LOGOUT_RSP_SUCCESS: return "success";
	case LOGOUT_RSP_CID_NOT_FOUND: return "CID not found";
	case LOGOUT_RSP_RECOVERY_UNSUPPORTED: return "connection recovery not supported";
	case LOGOUT_RSP_CLEANUP_FAILED: return "cleanup failed";
	default: return "unknown response";
	}
}

void ism_on_logout_response(struct ism_conn *c, const struct bhs *b, uint32_t len)
{
	struct ism_session *s = c->s;
	if (len) {
		ism_conn_fail(c, "Logout Response with a data segment (DataSegmentLength %u)", len);
		return;
	}
	struct ism_task *t = ism_task_for(c, b, TASK_LOGOUT);
	if (!t)
		return;
	if (t->logout_reason == LOGOUT_REMOVE_FOR_RECOVERY) {
		ism_erl2_removed(c, t, b->logout_rsp.response);
		return;
	}
	if (b->logout_rsp.response != LOGOUT_RSP_SUCCESS) {
		uint8_t r = b->logout_rsp.response;
		ism_set_error(s, "logout failed: %s (0x%02x)", logout_response_str(r), r);
		t->res.error = ISM_ERR_TARGET;
		c->state = CONN_FFP;
		s->logging_out = false;
		ism_task_complete(t);
		return;
	}
	t->res.error = ISM_OK;
	ism_task_complete(t);
	if (t->logout_reason == LOGOUT_CLOSE_SESSION) {
		s->logging_out = true;
		for (int i = 0; i < ISM_MAX_CONNS; i++) {
			struct ism_conn *o = &s->conns[i];
			if (o->state != CONN_FREE && o->state != CONN_CLOSED)
				ism_conn_closed(o, ISM_OK);
		}
		s->state = SESSION_LOGGED_OUT;
	} else {
		struct ism_conn *o = ism_conn_by_cid(s, t->logout_cid);

		ism_conn_closed(o ? o : c, ISM_OK);
	}
}
