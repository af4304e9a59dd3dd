/* A session as JSON: every field of `isthmus session show`. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/fuse.h"
#include "daemon/loopdev.h"
#include "daemon/nbd.h"
#include "daemon/portals.h"
#include "daemon/session.h"
#include "daemon/session_json.h"
#include "util/sbuf.h"

static const char *digest_str(bool on) { return on ? "CRC32C" : "None"; }

static const char *conn_state_str(enum ism_conn_state st)
{
	switch (st) {
	case ISM_CONN_CONNECTING: return "connecting";
	case ISM_CONN_LOGIN: return "login";
	case ISM_CONN_FULL_FEATURE: return "full_feature";
	case ISM_CONN_LOGGING_OUT: return "logging_out";
	case ISM_CONN_FAILED: return "lost";
	case ISM_CONN_CLOSED: return "closed";
	case ISM_CONN_RECOVERING: return "recovering";
	}
	return "unknown";
}

static void iso_time(time_t t, char *out, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *inquiry_str(const uint8_t *p, size_t n)
{
	char s[32];
	size_t k = 0;
	for (size_t i = 0; i < n && k < sizeof(s) - 1; i++)
		s[k++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : ' ';
	while (k && s[k - 1] == ' ')
		k--;
	s[k] = 0;
	return json_string(s);
}

static json_t *loss_json(const struct dconn_loss *l)
{
	json_t *o = json_object();
	char at[32];
	iso_time(l->at, at, sizeof(at));
	json_object_set_new(o, "cid", json_integer(l->conn.cid));
	json_object_set_new(o, "portal", json_string(l->conn.portal));
	json_object_set_new(o, "local_address", json_string(l->conn.local_address));
	json_object_set_new(o, "local_port", json_integer(l->conn.local_port));
	json_object_set_new(o, "remote_address", json_string(l->conn.remote_address));
	json_object_set_new(o, "remote_port", json_integer(l->conn.remote_port));
	json_object_set_new(o, "reason", json_text(l->reason));
	json_object_set_new(o, "closed_with_it", json_integer(l->closed_with_it));
	json_object_set_new(o, "at", json_string(at));
	json_object_set_new(o, "at_epoch", json_integer((json_int_t)l->at));
	return o;
}

json_t *dsess_json(struct dsession *s)
{
	struct daemon *d = s->d;
	json_t *j = json_object();
	char isid[13];
	hex_isid(s->opts.isid, isid);
	char isidx[16];
	snprintf(isidx, sizeof(isidx), "0x%s", isid);
	struct ism_session_info info;
	bool live = s->ism && ism_session_logged_in(s->ism);
	memset(&info, 0, sizeof(info));
	if (live)
		ism_session_get_info(s->ism, &info);
	json_object_set_new(j, "session_id", json_string(s->idstr));
	json_object_set_new(j, "initiator_side_identifier", json_string(isidx));
	char tsih[8];
	snprintf(tsih, sizeof(tsih), "0x%04x", info.tsih);
	json_object_set_new(j, "target_side_identifier", json_string(tsih));
	json_object_set_new(j, "session_type", json_string(dsess_type_str(s->opts.type)));
	json_object_set_new(j, "initiator_node_address", json_string(d->initiator_name));
	char *inst = xasprintf("%s,i,%s", d->initiator_name, isidx);
	json_object_set_new(j, "initiator_instance_name", json_string(inst));
	free(inst);
	json_object_set_new(j, "target_node_address", json_string(s->opts.target));
	json_object_set_new(j, "target_name", json_text(live && info.target_alias[0] ? info.target_alias : s->opts.target));
	json_object_set_new(j, "target_portal", json_string(s->opts.portal));
	json_object_set_new(j, "portals", portals_json(s));
	json_object_set_new(j, "portal_choice", portals_choice_json(s));
	if (s->opts.pr_key_set) {
		char k[24];
		snprintf(k, sizeof(k), "0x%016" PRIx64, s->opts.pr_key);
		json_object_set_new(j, "pr_key", json_string(k));
	} else {
		json_object_set_new(j, "pr_key", json_null());
	}
	json_object_set_new(j, "pr_key_registered", json_boolean(s->pr_registered && s->state == DS_CONNECTED));
	if (s->opts.pr_type) {
		json_object_set_new(j, "pr_type", json_string(ds_pr_type_name(s->opts.pr_type)));
		/* not logged in yet: pending as well */
		const char *res = ds_pr_res_name(s->pr_res);
		json_object_set_new(j, "pr_reservation", json_string(res ? res : "pending"));
	} else {
		json_object_set_new(j, "pr_type", json_null());
		json_object_set_new(j, "pr_reservation", json_null());
	}
	json_object_set_new(j, "pr_error", s->pr_error[0] ? json_string(s->pr_error) : json_null());
	const char *auth = !s->opts.chap_user ? "None"
			   : (s->opts.mutual_secret || s->opts.mutual_from_store) ? "MutualCHAP"
										  : "CHAP";
	json_object_set_new(j, "authentication_type", json_string(auth));
	json_object_set_new(j, "is_header_digest", json_boolean(live ? info.header_digest : s->opts.header_digest));
	json_object_set_new(j, "is_data_digest", json_boolean(live ? info.data_digest : s->opts.data_digest));
	json_object_set_new(j, "is_connected", json_boolean(live && s->state == DS_CONNECTED));
	json_object_set_new(j, "is_persistent", json_boolean(s->persistent));
	json_object_set_new(j, "is_discovered", json_boolean(s->discovered));
	if (s->persistent)
		json_object_set_new(j, "persistent_record", json_integer((json_int_t)s->record_id));

	/* The live connections, then (until the session is back) those of the session that was lost. */
	struct ism_conn_info ci[2 * DMN_MAX_WATCH];
	int nc = s->ism ? ism_session_connection_info(s->ism, ci, DMN_MAX_WATCH) : 0;
	if (nc > DMN_MAX_WATCH)
		nc = DMN_MAX_WATCH;
	for (int i = 0; i < s->nlost; i++)
		ci[nc++] = s->lost_conns[i];
	int nffp = 0;
	json_t *conns = json_array();
	const char *initiator_portal = "";
	for (int i = 0; i < nc; i++) {
		json_t *c = json_object();
		json_object_set_new(c, "cid", json_integer(ci[i].cid));
		json_object_set_new(c, "portal", json_string(ci[i].portal));
		json_object_set_new(c, "local_address", json_string(ci[i].local_address));
		json_object_set_new(c, "local_port", json_integer(ci[i].local_port));
		json_object_set_new(c, "remote_address", json_string(ci[i].remote_address));
		json_object_set_new(c, "remote_port", json_integer(ci[i].remote_port));
		json_object_set_new(c, "header_digest", json_string(digest_str(ci[i].header_digest)));
		json_object_set_new(c, "data_digest", json_string(digest_str(ci[i].data_digest)));
		json_object_set_new(c, "state", json_string(conn_state_str(ci[i].state)));
		json_array_append_new(conns, c);
		if (ci[i].state == ISM_CONN_FULL_FEATURE) {
			if (!nffp)
				initiator_portal = ci[i].local_address;
			nffp++;
		}
	}
	json_object_set_new(j, "initiator_portal_address", json_string(initiator_portal));
	json_object_set_new(j, "number_of_connections", json_integer(nffp));
	json_object_set_new(j, "connections", conns);

	json_t *devs = json_array();
	for (size_t i = 0; i < s->nluns; i++) {
		struct dlun *l = &s->luns[i];
		json_t *o = json_object();
		json_object_set_new(o, "lun", json_integer((json_int_t)l->lun));
		json_object_set_new(o, "device_type", json_string(l->have_inquiry ? ism_device_type_str(l->device_type) : "UNKNOWN"));
		json_object_set_new(o, "vendor", l->inquiry_len >= 16 ? inquiry_str(l->inquiry + 8, 8) : json_string(""));
		json_object_set_new(o, "product", l->inquiry_len >= 32 ? inquiry_str(l->inquiry + 16, 16) : json_string(""));
		json_object_set_new(o, "capacity_bytes", json_integer((json_int_t)l->capacity_bytes));
		json_object_set_new(o, "block_size", json_integer(l->block_size));
		/* the target's write protection (WP in MODE SENSE): the file and block device are read-only */
		json_object_set_new(o, "read_only", json_boolean(l->readonly));
		/* ALUA: the group REPORT TARGET PORT GROUPS through this LU named active/optimized, and a
		 * portal of the session known to lead there */
		bool opt = l->have_alua && l->alua_opt_tpg >= 0 && !s->alua_none;
		json_object_set_new(o, "alua_optimized_target_port_group", opt ? json_integer(l->alua_opt_tpg) : json_null());
		const char *op = opt ? portals_of_group(s, l->alua_opt_tpg) : NULL;
		json_object_set_new(o, "alua_optimized_portal", op ? json_string(op) : json_null());
		char *path = NULL;
		if (l->exposed && d->fuse)
			path = xasprintf("%s/%s/lun%" PRIu64, d->cfg.devices_dir, s->idstr, l->lun);
		json_object_set_new(o, "local_path", path ? json_string(path) : json_null());
		free(path);
		json_object_set_new(o, "nbd_socket", l->nbd ? json_string(nbd_export_path(l->nbd)) : json_null());
		const char *blk = l->exposed ? loopdev_name(d, s->id, l->lun) : NULL;
		json_object_set_new(o, "block_device", blk ? json_string(blk) : json_null());
		char *byid = l->exposed && d->fuse ? fusedev_by_id_path(d, s, l) : NULL;
		json_object_set_new(o, "by_id", byid ? json_string(byid) : json_null());
		free(byid);
		json_array_append_new(devs, o);
	}
	json_object_set_new(j, "devices", devs);

	json_t *p = json_object();
	if (live) {
		json_object_set_new(p, "header_digest", json_string(digest_str(info.header_digest)));
		json_object_set_new(p, "data_digest", json_string(digest_str(info.data_digest)));
		json_object_set_new(p, "max_recv_data_segment_length", json_integer(info.max_recv_dsl));
		json_object_set_new(p, "target_max_recv_data_segment_length", json_integer(info.peer_max_recv_dsl));
		json_object_set_new(p, "max_burst_length", json_integer(info.max_burst_length));
		json_object_set_new(p, "first_burst_length", json_integer(info.first_burst_length));
		json_object_set_new(p, "max_outstanding_r2t", json_integer(info.max_outstanding_r2t));
		json_object_set_new(p, "max_connections", json_integer(info.max_connections));
		json_object_set_new(p, "initial_r2t", json_boolean(info.initial_r2t));
		json_object_set_new(p, "immediate_data", json_boolean(info.immediate_data));
		json_object_set_new(p, "target_portal_group_tag", json_integer(info.tpgt));
		struct ism_recovery_info ri;
		ism_session_get_recovery_info(s->ism, &ri);
		json_object_set_new(p, "error_recovery_level", json_integer(ri.error_recovery_level));
		json_object_set_new(p, "default_time2wait", json_integer(ri.default_time2wait));
		json_object_set_new(p, "default_time2retain", json_integer(ri.default_time2retain));
	}
	json_object_set_new(j, "negotiated_parameters", p);

	json_t *r = json_object();
	char since[32];
	iso_time(s->state_since, since, sizeof(since));
	json_object_set_new(r, "state", json_string(dsess_state_str(s->state)));
	json_object_set_new(r, "since", json_string(since));
	json_object_set_new(r, "since_epoch", json_integer((json_int_t)s->state_since));
	json_object_set_new(r, "login_attempts", json_integer(s->attempts));
	json_object_set_new(r, "last_error", json_string(s->last_error));
	json_object_set_new(r, "removal_latency", json_real(dsess_removal_latency(s) / 1000.0));
	json_object_set_new(r, "reconnect_interval", json_real(d->cfg.reconnect_interval_ms / 1000.0));
	json_object_set_new(r, "queued_io", json_integer((json_int_t)s->queued_bytes));
	json_object_set_new(r, "inflight_io", json_integer((json_int_t)s->inflight));
	json_object_set_new(r, "nop_interval", json_real(d->cfg.nop_interval_ms / 1000.0));
	json_object_set_new(r, "nop_timeout", json_real(d->cfg.nop_timeout_ms / 1000.0));
	/* ErrorRecoveryLevel 2: losses the library recovered (or is recovering) never end the session */
	struct ism_conn_recovery_info cr = {0};
	if (s->ism)
		ism_session_get_conn_recovery_info(s->ism, &cr);
	uint64_t conn_recoveries = s->connection_recoveries + cr.connection_recoveries;
	json_object_set_new(r, "connection_losses",
			    json_integer((json_int_t)(s->connection_losses + conn_recoveries + (uint64_t)cr.recovering)));
	json_object_set_new(r, "session_recoveries", json_integer((json_int_t)s->session_recoveries));
	json_object_set_new(r, "connection_recoveries", json_integer((json_int_t)conn_recoveries));
	json_object_set_new(r, "task_reassignments",
			    json_integer((json_int_t)(s->task_reassignments + cr.task_reassignments)));
	json_object_set_new(r, "recovering_connections", json_integer(cr.recovering));
	json_object_set_new(r, "failovers", json_integer((json_int_t)s->failovers));
	json_object_set_new(r, "failback", json_real(portals_failback_ms(s) / 1000.0));
	json_object_set_new(r, "last_connection_loss", s->last_loss.valid ? loss_json(&s->last_loss) : json_null());
	json_object_set_new(j, "recovery", r);
	json_object_set_new(j, "state", json_string(dsess_state_str(s->state)));
	json_object_set_new(j, "state_since", json_string(since));
	return j;
}
