/*
 * Daemon sessions: creation and lookup, their local devices, and logout. Login and recovery are
 * in recovery.c, the I/O queue in io.c, the libisthmus session in the loop in libbridge.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/fuse.h"
#include "daemon/io.h"
#include "daemon/libbridge.h"
#include "daemon/nbd.h"
#include "daemon/ops.h"
#include "daemon/portals.h"
#include "daemon/recovery.h"
#include "daemon/session.h"
#include "daemon/store.h"
#include "scsi/codes.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sbuf.h"

#define LOGOUT_TIMEOUT_MS 10000

void dsess_format_id(uint64_t id, char *out, size_t len) { snprintf(out, len, "0x%016" PRIx64, id); }

void dsess_set_state(struct dsession *s, enum dsess_state st)
{
	if (s->state == st)
		return;
	s->state = st;
	s->state_since = time(NULL);
	log_info("session %s (%s at %s): %s", s->idstr, s->opts.target, s->opts.portal, dsess_state_str(st));
}

uint32_t dsess_removal_latency(struct dsession *s)
{
	int ms = s->opts.removal_latency_ms >= 0 ? s->opts.removal_latency_ms : s->d->cfg.removal_latency_ms;
	return (uint32_t)ms;
}

struct dsession *dsess_by_id(struct daemon *d, uint64_t id)
{
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->id == id && s->state != DS_GONE)
			return s;
	return NULL;
}

struct dsession *dsess_find(struct daemon *d, const char *idstr)
{
	if (!idstr || !*idstr)
		return NULL;
	uint64_t id;
	if (parse_uint(idstr, 0, 0, UINT64_MAX, &id) < 0)
		return NULL;
	return dsess_by_id(d, id);
}

struct dsession *dsess_find_target(struct daemon *d, const char *target, const char *portal)
{
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->state != DS_GONE && s->state != DS_LOGGING_OUT && !strcmp(s->opts.target, target) &&
		    (!portal || !strcmp(s->opts.portal, portal)))
			return s;
	return NULL;
}

struct dlun *dsess_lun(struct dsession *s, uint64_t lun)
{
	for (size_t i = 0; i < s->nluns; i++)
		if (s->luns[i].lun == lun)
			return &s->luns[i];
	return NULL;
}

void dsess_free_luns(struct dlun *luns, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < DMN_VPD_CACHED; k++)
			free(luns[i].vpd[k].data);
	free(luns);
}

static bool isid_in_use(struct daemon *d, const uint8_t isid[6], const char *target)
{
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->state != DS_GONE && !memcmp(s->opts.isid, isid, 6) && !strcmp(s->opts.target, target))
			return true;
	return false;
}

struct dsession *dsess_new(struct daemon *d, const struct dsess_opts *o, bool interactive)
{
	struct dsession *s = xcalloc(1, sizeof(*s));
	s->d = d;
	dsess_opts_copy(&s->opts, o);
	s->id = store_next_session_id(d);
	dsess_format_id(s->id, s->idstr, sizeof(s->idstr));
	s->interactive_login = interactive;
	if (!s->opts.isid_set) {
		/* Same initiator, target and portal give the same ISID; another session to the same
		 * target (asked for explicitly) gets another one, or it would reinstate the first. */
		for (unsigned n = 0;; n++) {
			char *pg = n ? xasprintf("%s#%u", o->portal, n) : xstrdup(o->portal);
			ism_isid_derive(d->initiator_name, o->target, pg, s->opts.isid);
			free(pg);
			if (!isid_in_use(d, s->opts.isid, o->target) || n > 1000)
				break;
		}
		s->opts.isid_set = true;
	}
	for (size_t i = 0; i < json_array_size(d->discovered); i++) {
		const char *t = json_string_value(json_object_get(json_array_get(d->discovered, i), "target"));
		if (t && !strcmp(t, o->target))
			s->discovered = true;
	}
	portals_init(s);
	s->state = DS_LOGGING_IN;
	s->state_since = time(NULL);
	for (int i = 0; i < DMN_MAX_WATCH; i++)
		s->watch[i].fd = -1;
	struct dsession **pp = &d->sessions;
	while (*pp)
		pp = &(*pp)->next;
	*pp = s;
	return s;
}

void dsess_start(struct dsession *s)
{
	log_info("session %s: logging in to %s at %s (%s)", s->idstr, s->opts.target, s->opts.portal,
		 dsess_type_str(s->opts.type));
	recovery_login(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Devices */

void dsess_expose_devices(struct dsession *s)
{
	if (s->opts.type == DS_TYPE_INFORMATIONAL || s->devices_present)
		return;
	for (size_t i = 0; i < s->nluns; i++) {
		struct dlun *l = &s->luns[i];
		if (l->device_type != SCSI_PDT_DIRECT_ACCESS || !l->have_capacity || !l->capacity_bytes)
			continue;
		l->exposed = true;
		if (s->d->cfg.nbd) {
			char err[256];
			l->nbd = nbd_export_new(s, l, err, sizeof(err));
			if (!l->nbd)
				log_warn("session %s LUN %" PRIu64 ": no NBD export: %s", s->idstr, l->lun, err);
		}
	}
	s->devices_present = true;
	fusedev_changed(s->d, s);
}

void dsess_remove_devices(struct dsession *s)
{
	if (!s->devices_present)
		return;
	for (size_t i = 0; i < s->nluns; i++) {
		struct dlun *l = &s->luns[i];
		l->exposed = false;
		if (l->nbd) {
			nbd_export_free(l->nbd);
			l->nbd = NULL;
		}
	}
	s->devices_present = false;
	fusedev_changed(s->d, s);
}

/* ------------------------------------------------------------------------------------------ */
/* Logout */

static void free_session_later(void *arg)
{
	struct dsession *s = arg;
	dsess_free_luns(s->luns, s->nluns);
	for (int i = 0; i < s->nextra; i++)
		free(s->extra_portals[i]);
	free(s->login_portal);
	dsess_opts_free(&s->opts);
	free(s);
}

static void free_session_after_ism(void *arg)
{
	/* runs after the deferred free of the libisthmus session, whose callbacks use s */
	struct dsession *s = arg;
	loop_defer(s->d->loop, free_session_later, s);
}

void dsess_finish_logout(struct dsession *s, const char *why)
{
	struct daemon *d = s->d;
	if (s->state == DS_GONE)
		return;
	loop_timer_stop(d->loop, &s->retry_timer);
	loop_timer_stop(d->loop, &s->removal_timer);
	loop_timer_stop(d->loop, &s->logout_timer);
	portals_stop(s);
	pr_abandon(s);
	dsess_remove_devices(s);
	lib_detach(s);
	dsess_set_state(s, DS_GONE);
	dio_fail_queue(s, -EIO);
	if (s->logout_op) {
		if (why)
			dop_done(d, s->logout_op, json_pack("{s:s,s:b,s:s}", "session_id", s->idstr, "logged_out", 1,
							  "note", why));
		else
			dop_done(d, s->logout_op, json_pack("{s:s,s:b}", "session_id", s->idstr, "logged_out", 1));
		s->logout_op = 0;
	}
	if (s->login_op) {
		dop_fail(d, s->login_op, RPC_FAILED, "session %s was logged out during its login", s->idstr);
		s->login_op = 0;
	}
	for (struct dsession **pp = &d->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	loop_defer(d->loop, free_session_after_ism, s);
	if (d->stopping && !d->sessions)
		loop_stop(d->loop);
}

static void on_logout_done(struct ism_session *ism, int status, void *priv)
{
	struct dsession *s = priv;
	if (s->ism != ism)
		return;
	dsess_finish_logout(s, status == 0 ? NULL : "the target did not answer the logout; connections closed");
}

static void on_logout_timeout(void *arg)
{
	struct dsession *s = arg;
	log_warn("session %s: no logout response within %d ms; closing the connections", s->idstr, LOGOUT_TIMEOUT_MS);
	dsess_finish_logout(s, "no logout response; connections closed");
}

void dsess_logout(struct dsession *s, uint64_t op)
{
	if (s->state == DS_GONE) {
		dop_fail(s->d, op, RPC_NOT_FOUND, "session %s is already logged out", s->idstr);
		return;
	}
	if (s->state == DS_LOGGING_OUT) {
		dop_fail(s->d, op, RPC_CONFLICT, "session %s is already logging out", s->idstr);
		return;
	}
	if (s->logout_op)
		dop_fail(s->d, s->logout_op, RPC_CONFLICT, "superseded");
	s->logout_op = op;
	log_info("session %s: logout requested (state %s)", s->idstr, dsess_state_str(s->state));
	if (s->state == DS_CONNECTED && s->ism && ism_session_logged_in(s->ism)) {
		dsess_remove_devices(s);
		dsess_set_state(s, DS_LOGGING_OUT);
		dio_fail_queue(s, -EIO);
		s->in_lib++;
		int rc = ism_logout_async(s->ism, on_logout_done, s);
		s->in_lib--;
		if (rc != 0) {
			dsess_finish_logout(s, "logout request failed; connections closed");
			return;
		}
		loop_timer_start(s->d->loop, &s->logout_timer, LOGOUT_TIMEOUT_MS, 0, on_logout_timeout, s);
		lib_settle(s);
		return;
	}
	/* Logging in, reconnecting or failed: nothing to log out from; recovery stops now. */
	dsess_finish_logout(s, NULL);
}

void dsess_abort_all(struct daemon *d)
{
	while (d->sessions)
		dsess_finish_logout(d->sessions, "daemon stopped");
}
