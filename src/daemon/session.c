/*
 * Daemon sessions: login, the LUN probe and its cache, recovery after a lost connection
 * (reinstatement with the same ISID every reconnect interval), the I/O queue kept while there is
 * no session, device removal after the removal latency, and logout.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

#define DIO_MAX_TRIES 8
#define DIO_MAX_BLAMED_TRIES 3
#define LOGOUT_TIMEOUT_MS 10000

static void ds_sync(struct dsession *s);
static void attempt_login(struct dsession *s);
static void probe_start(struct dsession *s);
static void flush_queue(struct dsession *s);
static void finish_logout(struct dsession *s, const char *why);

void dsess_format_id(uint64_t id, char *out, size_t len) { snprintf(out, len, "0x%016" PRIx64, id); }

static void set_state(struct dsession *s, enum dsess_state st)
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

struct dsession *dsess_find(struct daemon *d, const char *idstr)
{
	if (!idstr || !*idstr)
		return NULL;
	char *end;
	errno = 0;
	uint64_t id = strtoull(idstr, &end, 0);
	if (errno || *end)
		return NULL;
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->id == id && s->state != DS_GONE)
			return s;
	return NULL;
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
	attempt_login(s);
}

/* ------------------------------------------------------------------------------------------ */
/* libisthmus in the event loop */

static void ds_service(struct dsession *s, int fd, short revents);

static void on_fd(void *arg, uint32_t events)
{
	struct dwatch *w = arg;
	short rev = 0;
	if (events & EPOLLIN)
		rev |= POLLIN;
	if (events & EPOLLOUT)
		rev |= POLLOUT;
	if (events & EPOLLERR)
		rev |= POLLERR;
	if (events & EPOLLHUP)
		rev |= POLLHUP;
	ds_service(w->s, w->fd, rev);
}

static void on_lib_timer(void *arg) { ds_service(arg, -1, 0); }

static void watches_off(struct dsession *s)
{
	for (int i = 0; i < DMN_MAX_WATCH; i++) {
		if (!s->watch[i].on)
			continue;
		loop_watch_del(s->d->loop, &s->watch[i].w);
		s->watch[i].on = false;
		s->watch[i].fd = -1;
	}
	s->nsynced = 0;
	loop_timer_stop(s->d->loop, &s->lib_timer);
}

static uint32_t epoll_events(short poll_events)
{
	return (poll_events & POLLIN ? EPOLLIN : 0) | (poll_events & POLLOUT ? EPOLLOUT : 0);
}

/* The watch slot registered for fd, or DMN_MAX_WATCH. */
static int watch_slot(const struct dsession *s, int fd)
{
	int k;
	for (k = 0; k < DMN_MAX_WATCH; k++)
		if (s->watch[k].on && s->watch[k].fd == fd)
			break;
	return k;
}

/* Every descriptor that the library lists is passed to epoll again (MOD, or ADD when epoll no
 * longer knows it). */
static void sync_all(struct dsession *s, const struct pollfd *p, int n)
{
	bool seen[DMN_MAX_WATCH] = {false};
	for (int i = 0; i < n; i++) {
		uint32_t ev = epoll_events(p[i].events);
		int k = watch_slot(s, p[i].fd);
		if (k < DMN_MAX_WATCH) {
			/* The library may have closed the fd and got the same number for a new socket:
			 * always tell epoll, and register again when it no longer knows the fd. */
			s->watch[k].w.events = 0;
			if (loop_watch_mod(s->d->loop, &s->watch[k].w, ev) == -ENOENT)
				loop_watch_add(s->d->loop, &s->watch[k].w, p[i].fd, ev, on_fd, &s->watch[k]);
			seen[k] = true;
			continue;
		}
		for (k = 0; k < DMN_MAX_WATCH; k++)
			if (!s->watch[k].on)
				break;
		if (k == DMN_MAX_WATCH)
			continue;
		s->watch[k].s = s;
		s->watch[k].fd = p[i].fd;
		if (loop_watch_add(s->d->loop, &s->watch[k].w, p[i].fd, ev, on_fd, &s->watch[k]) == -EEXIST) {
			s->watch[k].w.events = 0;
			loop_watch_mod(s->d->loop, &s->watch[k].w, ev);
		}
		s->watch[k].on = true;
		seen[k] = true;
	}
	for (int k = 0; k < DMN_MAX_WATCH; k++) {
		if (s->watch[k].on && !seen[k]) {
			loop_watch_del(s->d->loop, &s->watch[k].w);
			s->watch[k].on = false;
			s->watch[k].fd = -1;
		}
	}
	for (int i = 0; i < n; i++)
		s->synced_fd[i] = p[i].fd;
	s->nsynced = n;
	s->watch_dirty = false;
	s->synced_ms = loop_now_ms();
}

/*
 * Tell the loop what the library waits for. This runs after every library call, so on the I/O
 * path it must not cost a system call when nothing changed: while the library lists the same
 * descriptors as at the last full sync and every connection is in full feature phase, a socket
 * cannot have been replaced (a new connection needs a login, which takes service rounds that each
 * end here, in another state), so only changed events reach epoll (none, mostly: POLLOUT comes and
 * goes with a full socket buffer). Otherwise, and once a second anyway, every descriptor is
 * registered again.
 */
static void ds_sync(struct dsession *s)
{
	s->sync_pending = false;
	if (s->corked) {
		/* This iteration's commands go out now, together. */
		s->corked = false;
		if (s->ism)
			ism_session_uncork(s->ism);
	}
	if (!s->ism) {
		watches_off(s);
		return;
	}
	struct pollfd p[DMN_MAX_WATCH];
	int n = ism_session_fds(s->ism, p, DMN_MAX_WATCH);
	uint64_t now = loop_now_ms();
	bool same = !s->watch_dirty && n == s->nsynced && now - s->synced_ms < 1000 &&
		    ism_session_connections(s->ism, NULL, 0) == n;
	for (int i = 0; same && i < n; i++)
		same = p[i].fd == s->synced_fd[i];
	if (same) {
		for (int i = 0; i < n; i++) {
			int k = watch_slot(s, p[i].fd);
			if (k < DMN_MAX_WATCH) /* no system call when unchanged */
				loop_watch_mod(s->d->loop, &s->watch[k].w, epoll_events(p[i].events));
		}
	} else {
		sync_all(s, p, n);
	}
	int t = ism_session_timeout_ms(s->ism);
	if (t < 0)
		loop_timer_stop(s->d->loop, &s->lib_timer);
	else if (!s->lib_timer.armed || s->lib_timer.due_ms != now + (uint64_t)t)
		loop_timer_start(s->d->loop, &s->lib_timer, (uint64_t)t, 0, on_lib_timer, s);
}

static void sync_pending_sessions(void *arg)
{
	struct daemon *d = arg;
	d->sync_deferred = false;
	for (struct dsession *s = d->sessions; s; s = s->next)
		if (s->sync_pending)
			ds_sync(s);
}

/* A command was queued in the library from outside ism_session_service: sync once, after the
 * events of this loop iteration (the command itself is already written). */
static void ds_sync_soon(struct dsession *s)
{
	if (s->in_lib || s->sync_pending)
		return; /* ds_service syncs at its end */
	s->sync_pending = true;
	if (!s->d->sync_deferred) {
		s->d->sync_deferred = true;
		loop_defer(s->d->loop, sync_pending_sessions, s->d);
	}
}

static void free_ism_later(void *arg) { ism_session_free(arg); }

/* Drop the libisthmus session: its in-flight I/O comes back (ISM_ERR_CLOSED) and is requeued. */
static void detach_ism(struct dsession *s)
{
	watches_off(s);
	s->corked = false; /* held writes go with the session; its I/O is requeued */
	if (s->ism) {
		loop_defer(s->d->loop, free_ism_later, s->ism);
		s->ism = NULL;
	}
}

static void schedule_retry(struct dsession *s, uint64_t delay_ms);
static void on_removal(void *arg);

static void lost(struct dsession *s)
{
	snprintf(s->last_error, sizeof(s->last_error), "%s",
		 s->ism && *ism_session_error(s->ism) ? ism_session_error(s->ism) : "the target closed the session");
	log_warn("session %s: connection lost (%s); a login attempt every %.1f s", s->idstr, s->last_error,
		 s->d->cfg.reconnect_interval_ms / 1000.0);
	detach_ism(s);
	set_state(s, DS_RECONNECTING);
	if (s->opts.type != DS_TYPE_BOOT)
		loop_timer_start(s->d->loop, &s->removal_timer, dsess_removal_latency(s), 0, on_removal, s);
	/* the first attempt soon; the target may only have dropped this one connection */
	uint64_t first = s->d->cfg.reconnect_interval_ms < 1000 ? (uint64_t)s->d->cfg.reconnect_interval_ms : 1000;
	schedule_retry(s, first);
}

static void ds_service(struct dsession *s, int fd, short revents)
{
	if (!s->ism)
		return;
	struct ism_session *ism = s->ism;
	s->in_lib++;
	int rc = ism_session_service(ism, fd, revents);
	s->in_lib--;
	if (s->ism != ism) { /* a callback dropped it */
		ds_sync(s);
		return;
	}
	/* rc: ISM_SERVICE_FAILED, or ISM_SERVICE_LOGGED_OUT when the session ended with a clean
	 * logout (ours, or the one the target asked for with async event 1) */
	if (s->state == DS_CONNECTED && rc != ISM_SERVICE_OK)
		lost(s);
	else if (s->state == DS_LOGGING_OUT && rc != ISM_SERVICE_OK)
		finish_logout(s, NULL);
	ds_sync(s);
}

/* ------------------------------------------------------------------------------------------ */
/* I/O */

static void queue_insert(struct dsession *s, struct dio *io)
{
	struct dio **pp = &s->queue;
	while (*pp && (*pp)->seq < io->seq)
		pp = &(*pp)->next;
	io->next = *pp;
	*pp = io;
	s->queued_bytes += io->len;
}

static void fail_queue(struct dsession *s, int err)
{
	while (s->queue) {
		struct dio *io = s->queue;
		s->queue = io->next;
		s->queued_bytes -= io->len;
		io->next = NULL;
		io->done(io, err, NULL);
	}
}

static bool is_unit_attention(const struct ism_scsi_result *r)
{
	uint8_t key, asc, ascq;
	return r->status == 2 && ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq) && key == 6;
}

static void flush_later(void *arg);

static void dio_cb(struct ism_session *ism, const struct ism_scsi_result *r, void *priv)
{
	(void)ism;
	struct dio *io = priv;
	struct dsession *s = io->s;
	io->inflight = false;
	s->inflight--;
	io->tries++;
	if (r->error == ISM_OK) {
		/* A reinstated session reports the reset once: send the command again. */
		if (is_unit_attention(r) && io->tries < DIO_MAX_TRIES) {
			queue_insert(s, io);
			loop_defer(s->d->loop, flush_later, s);
			return;
		}
		if (io->whole && r->status == 0 && r->transferred < io->len) {
			/* The rest of a read buffer is zeros, not data; a write did not reach every block. */
			log_warn("session %s LUN %" PRIu64 ": %s of %u bytes answered GOOD after %u bytes; failing it",
				 s->idstr, io->lun, io->dir == ISM_DIR_WRITE ? "WRITE" : "READ", io->len, r->transferred);
			io->done(io, -EIO, r);
			return;
		}
		io->done(io, 0, r);
		return;
	}
	bool recoverable = r->error == ISM_ERR_TRANSPORT || r->error == ISM_ERR_CLOSED || r->error == ISM_ERR_TIMEOUT ||
			   r->error == ISM_ERR_PROTOCOL;
	bool alive = s->state == DS_CONNECTED || s->state == DS_RECONNECTING ||
		     (s->state == DS_LOGGING_IN && !s->interactive_login);
	/*
	 * A command whose own answer broke the protocol took the connection down with it and would
	 * take the next one down the same way: it gets a few tries, not the hundreds the commands
	 * that only went down with it get.
	 */
	bool blamed = r->error == ISM_ERR_PROTOCOL;
	int max_tries = blamed ? DIO_MAX_BLAMED_TRIES : DIO_MAX_TRIES * 100;
	if (recoverable && alive && io->tries < max_tries) {
		queue_insert(s, io);
		if (s->state == DS_CONNECTED)
			loop_defer(s->d->loop, flush_later, s);
		return;
	}
	if (blamed)
		log_warn("session %s LUN %" PRIu64 ": command 0x%02x failed %d times (the target broke the protocol "
			 "answering it); failing it", s->idstr, io->lun, io->cdb[0], io->tries);
	io->done(io, -EIO, r);
}

static bool session_ready(struct dsession *s)
{
	return s->state == DS_CONNECTED && s->ism && s->probed && ism_session_logged_in(s->ism);
}

static int send_now(struct dsession *s, struct dio *io)
{
	/* Hold the writes until the end of this loop iteration (ds_sync), so every command the
	 * devices queued in it leaves in one writev instead of one system call each. */
	if (!s->corked && !s->in_lib) {
		ism_session_cork(s->ism);
		s->corked = true;
	}
	struct ism_task *t = ism_scsi_async(s->ism, io->lun, io->cdb, io->cdb_len, io->dir, io->buf, io->len, dio_cb, io);
	if (!t)
		return -1;
	io->inflight = true;
	s->inflight++;
	return 0;
}

static void flush_queue(struct dsession *s)
{
	bool sent = false;
	while (s->queue && session_ready(s)) {
		struct dio *io = s->queue;
		s->queue = io->next;
		s->queued_bytes -= io->len;
		io->next = NULL;
		if (send_now(s, io) < 0) {
			queue_insert(s, io);
			break;
		}
		sent = true;
	}
	if (sent)
		ds_sync_soon(s);
}

static void flush_later(void *arg)
{
	/* the session may be gone: look it up among the live ones */
	struct dsession *s = arg;
	(void)s;
	flush_queue(s);
}

void dio_submit(struct dsession *s, struct dio *io)
{
	io->s = s;
	io->next = NULL;
	if (!io->seq)
		io->seq = ++s->next_seq;
	switch (s->state) {
	case DS_CONNECTED:
		if (session_ready(s) && !s->queue) {
			if (send_now(s, io) == 0) {
				ds_sync_soon(s);
				return;
			}
			/* fall through to the queue: the session went away under us */
		}
		/* fall through */
	case DS_LOGGING_IN:
	case DS_RECONNECTING:
		if (s->queued_bytes + io->len > s->d->cfg.queue_limit_bytes) {
			log_warn("session %s: %" PRIu64 " bytes of I/O already wait for the session (queue-limit); "
				 "failing new I/O of %u bytes", s->idstr, s->queued_bytes, io->len);
			io->done(io, -ENOBUFS, NULL);
			return;
		}
		queue_insert(s, io);
		if (s->state == DS_CONNECTED)
			flush_queue(s);
		return;
	case DS_FAILED:
	case DS_LOGGING_OUT:
	case DS_GONE:
		break;
	}
	io->done(io, -EIO, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Devices */

static void expose_devices(struct dsession *s)
{
	if (s->opts.type == DS_TYPE_INFORMATIONAL || s->devices_present)
		return;
	for (size_t i = 0; i < s->nluns; i++) {
		struct dlun *l = &s->luns[i];
		if ((l->device_type & 0x1f) != 0 || !l->have_capacity || !l->capacity_bytes)
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

static void remove_devices(struct dsession *s)
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

static void on_removal(void *arg)
{
	struct dsession *s = arg;
	if (s->state != DS_RECONNECTING)
		return;
	log_warn("session %s: no session for %.1f s (removal latency): removing its devices, failing %" PRIu64
		 " bytes of queued I/O", s->idstr, dsess_removal_latency(s) / 1000.0, s->queued_bytes);
	set_state(s, DS_FAILED);
	remove_devices(s);
	fail_queue(s, -EIO);
}

/* ------------------------------------------------------------------------------------------ */
/* Login and recovery */

static void on_retry(void *arg)
{
	struct dsession *s = arg;
	if (s->ism || s->state == DS_GONE || s->state == DS_LOGGING_OUT || s->state == DS_CONNECTED)
		return;
	attempt_login(s);
}

static void schedule_retry(struct dsession *s, uint64_t delay_ms)
{
	loop_timer_start(s->d->loop, &s->retry_timer, delay_ms, 0, on_retry, s);
}

static void readd_connections(struct dsession *s);

static void on_login(struct ism_session *ism, int status, void *priv)
{
	struct dsession *s = priv;
	if (s->ism != ism)
		return;
	if (status == 0) {
		s->attempts = 0;
		s->last_error[0] = 0;
		loop_timer_stop(s->d->loop, &s->retry_timer);
		loop_timer_stop(s->d->loop, &s->removal_timer);
		bool again = s->ever_connected;
		s->ever_connected = true;
		set_state(s, DS_CONNECTED);
		if (again)
			log_info("session %s: reinstated at %s", s->idstr, s->opts.portal);
		readd_connections(s);
		if (!s->probed || !s->devices_present)
			probe_start(s);
		else
			loop_defer(s->d->loop, flush_later, s);
		return;
	}
	snprintf(s->last_error, sizeof(s->last_error), "%s",
		 *ism_session_error(ism) ? ism_session_error(ism) : "login failed");
	detach_ism(s);
	if (s->state == DS_LOGGING_IN && s->interactive_login) {
		log_warn("session %s: login to %s at %s failed: %s", s->idstr, s->opts.target, s->opts.portal,
			 s->last_error);
		dop_fail(s->d, s->login_op, RPC_FAILED, "%s", s->last_error);
		s->login_op = 0;
		finish_logout(s, NULL);
		return;
	}
	if (s->state == DS_LOGGING_IN)
		set_state(s, DS_RECONNECTING);
	log_info("session %s: login attempt %u failed (%s); next in %.1f s", s->idstr, s->attempts, s->last_error,
		 s->d->cfg.reconnect_interval_ms / 1000.0);
	schedule_retry(s, (uint64_t)s->d->cfg.reconnect_interval_ms);
}

static void attempt_login(struct dsession *s)
{
	struct daemon *d = s->d;
	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = d->initiator_name;
	cfg.initiator_alias = d->cfg.initiator_alias;
	cfg.target_name = s->opts.target;
	cfg.session_type = ISM_SESSION_NORMAL;
	cfg.chap_user = s->opts.chap_user;
	cfg.chap_secret = s->opts.chap_secret;
	cfg.mutual_user = s->opts.mutual_user;
	cfg.mutual_secret = s->opts.mutual_from_store ? d->initiator_secret : s->opts.mutual_secret;
	if (cfg.mutual_secret && !cfg.mutual_user)
		cfg.mutual_user = s->opts.target;
	cfg.chap_algorithms = s->opts.chap_algorithms;
	cfg.header_digest = s->opts.header_digest;
	cfg.data_digest = s->opts.data_digest;
	cfg.max_recv_dsl = s->opts.max_recv_dsl;
	cfg.max_burst_length = s->opts.max_burst_length;
	cfg.first_burst_length = s->opts.first_burst_length;
	cfg.initial_r2t = s->opts.initial_r2t;
	cfg.immediate_data = s->opts.immediate_data;
	cfg.isid_set = true;
	memcpy(cfg.isid, s->opts.isid, 6);
	cfg.login_timeout_ms = d->cfg.login_timeout_ms;
	cfg.nop_interval_ms = d->cfg.nop_interval_ms ? d->cfg.nop_interval_ms : -1;
	cfg.nop_timeout_ms = d->cfg.nop_timeout_ms ? d->cfg.nop_timeout_ms : -1;
	s->attempts++;
	char err[512];
	if (s->opts.mutual_from_store && !d->initiator_secret) {
		snprintf(err, sizeof(err), "mutual CHAP asked for, but no initiator secret is set (isthmus chap set-secret)");
		goto failed;
	}
	struct ism_session *ism = ism_session_new(&cfg, err, sizeof(err));
	if (!ism)
		goto failed;
	s->ism = ism;
	s->watch_dirty = true;
	s->in_lib++;
	int rc = ism_connect_async(ism, s->opts.portal, on_login, s);
	s->in_lib--;
	if (rc != 0 && s->ism == ism) {
		snprintf(err, sizeof(err), "%s", ism_session_error(ism));
		detach_ism(s);
		goto failed;
	}
	ds_sync(s);
	return;
failed:
	snprintf(s->last_error, sizeof(s->last_error), "%s", err);
	if (s->state == DS_LOGGING_IN && s->interactive_login) {
		dop_fail(d, s->login_op, RPC_FAILED, "%s", err);
		s->login_op = 0;
		finish_logout(s, NULL);
		return;
	}
	log_warn("session %s: cannot log in: %s", s->idstr, err);
	if (s->state == DS_LOGGING_IN)
		set_state(s, DS_RECONNECTING);
	schedule_retry(s, (uint64_t)d->cfg.reconnect_interval_ms);
}

/* ------------------------------------------------------------------------------------------ */
/* Extra connections */

struct conn_op {
	struct dsession *s;
	uint64_t op;
	char *portal;
	bool replay;
};

static void on_conn_added(struct ism_session *ism, int status, uint16_t cid, void *priv)
{
	struct conn_op *c = priv;
	struct dsession *s = c->s;
	s->watch_dirty = true;
	if (status == 0 && s->ism == ism) {
		if (!c->replay && s->nextra < DMN_MAX_WATCH)
			s->extra_portals[s->nextra++] = xstrdup(c->portal);
		log_info("session %s: connection %d to %s added", s->idstr, cid, c->portal);
		dop_done(s->d, c->op, json_pack("{s:s,s:i,s:s}", "session_id", s->idstr, "cid", cid, "portal", c->portal));
		loop_defer(s->d->loop, flush_later, s);
	} else {
		const char *e = *ism_session_error(ism) ? ism_session_error(ism) : "login failed";
		log_warn("session %s: adding a connection to %s failed: %s", s->idstr, c->portal, e);
		dop_fail(s->d, c->op, RPC_FAILED, "adding a connection to %s failed: %s", c->portal, e);
		ism_session_clear_error(ism);
	}
	free(c->portal);
	free(c);
}

static int add_conn(struct dsession *s, const char *portal, uint64_t op, bool replay, char *err, size_t errlen)
{
	if (!s->ism || s->state != DS_CONNECTED) {
		snprintf(err, errlen, "session %s is %s", s->idstr, dsess_state_str(s->state));
		return -1;
	}
	struct conn_op *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->op = op;
	c->replay = replay;
	c->portal = xstrdup(portal ? portal : s->opts.portal);
	s->watch_dirty = true;
	s->in_lib++;
	int rc = ism_add_connection_async(s->ism, c->portal, on_conn_added, c);
	s->in_lib--;
	if (rc != 0) {
		snprintf(err, errlen, "%s", ism_session_error(s->ism));
		ism_session_clear_error(s->ism);
		free(c->portal);
		free(c);
		return -1;
	}
	if (!s->in_lib)
		ds_sync(s);
	return 0;
}

int dsess_add_connection(struct dsession *s, const char *portal, uint64_t op, char *err, size_t errlen)
{
	return add_conn(s, portal, op, false, err, errlen);
}

static void readd_connections(struct dsession *s)
{
	char err[256];
	for (int i = 0; i < s->nextra; i++)
		if (add_conn(s, s->extra_portals[i], 0, true, err, sizeof(err)) < 0)
			log_warn("session %s: connection to %s not restored: %s", s->idstr, s->extra_portals[i], err);
}

struct rm_op {
	struct dsession *s;
	uint64_t op;
	uint16_t cid;
};

static void on_conn_removed(struct ism_session *ism, int status, void *priv)
{
	struct rm_op *r = priv;
	(void)ism;
	r->s->watch_dirty = true;
	if (status == 0) {
		log_info("session %s: connection %u removed", r->s->idstr, r->cid);
		dop_done(r->s->d, r->op, json_pack("{s:s,s:i}", "session_id", r->s->idstr, "cid", r->cid));
	} else {
		dop_fail(r->s->d, r->op, RPC_FAILED, "removing connection %u failed (%d)", r->cid, status);
	}
	free(r);
}

int dsess_remove_connection(struct dsession *s, uint16_t cid, uint64_t op, char *err, size_t errlen)
{
	if (!s->ism || s->state != DS_CONNECTED) {
		snprintf(err, errlen, "session %s is %s", s->idstr, dsess_state_str(s->state));
		return -1;
	}
	uint16_t cids[DMN_MAX_WATCH];
	int n = ism_session_connections(s->ism, cids, DMN_MAX_WATCH);
	bool found = false;
	for (int i = 0; i < n && i < DMN_MAX_WATCH; i++)
		found |= cids[i] == cid;
	if (!found) {
		snprintf(err, errlen, "session %s has no connection with CID %u", s->idstr, cid);
		return -1;
	}
	if (n <= 1) {
		snprintf(err, errlen, "CID %u is the session's only connection; log the session out instead", cid);
		return -1;
	}
	struct rm_op *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->op = op;
	r->cid = cid;
	s->watch_dirty = true;
	s->in_lib++;
	int rc = ism_remove_connection_async(s->ism, cid, on_conn_removed, r);
	s->in_lib--;
	if (rc != 0) {
		snprintf(err, errlen, "%s", ism_session_error(s->ism));
		ism_session_clear_error(s->ism);
		free(r);
		return -1;
	}
	/* it is not restored after a reconnect any more */
	if (s->nextra) {
		free(s->extra_portals[--s->nextra]);
		s->extra_portals[s->nextra] = NULL;
	}
	ds_sync(s);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Probe: REPORT LUNS, then per LUN INQUIRY (standard, VPD 0x00, 0x80, 0x83) and READ CAPACITY */

struct probe {
	struct dsession *s;
	struct dio io;
	int step;
	size_t idx;
	struct dlun *luns;
	size_t nluns;
	uint8_t buf[4096];
	struct ism_session *ism;
};

static const int probe_pages[3] = {0x00, 0x80, 0x83};

static void probe_next(struct probe *p);

static void probe_finish(struct probe *p, bool complete)
{
	struct dsession *s = p->s;
	if (complete) {
		for (size_t i = 0; i < s->nluns; i++)
			for (int k = 0; k < 4; k++)
				free(s->luns[i].vpd[k].data);
		free(s->luns);
		s->luns = p->luns;
		s->nluns = p->nluns;
		s->probed = true;
		log_info("session %s: %zu LUN(s)", s->idstr, s->nluns);
		if (s->opts.type != DS_TYPE_INFORMATIONAL)
			expose_devices(s);
		if (s->login_op) {
			dop_done(s->d, s->login_op, json_pack("{s:s}", "session_id", s->idstr));
			s->login_op = 0;
		}
		s->interactive_login = false;
		flush_queue(s);
	} else {
		for (size_t i = 0; i < p->nluns; i++)
			for (int k = 0; k < 4; k++)
				free(p->luns[i].vpd[k].data);
		free(p->luns);
	}
	free(p);
}

/*
 * READ CAPACITY's answer as the devices can serve it: a block size that is a power of two from 512
 * to 64 KiB (what NBD can advertise, and what keeps a FUSE request's blocks within its buffer)
 * and a byte capacity that fits a file size (off_t). Anything else leaves the LUN without a device.
 */
static bool capacity_usable(struct dsession *s, struct dlun *l, uint64_t last_lba, uint32_t bs)
{
	if (bs < 512 || bs > 65536 || (bs & (bs - 1)) || last_lba >= (uint64_t)INT64_MAX / bs) {
		log_warn("session %s LUN %" PRIu64 ": READ CAPACITY gives %u-byte blocks up to LBA %" PRIu64
			 "; not exposed as a device", s->idstr, l->lun, bs, last_lba);
		return false;
	}
	l->capacity_bytes = (last_lba + 1) * bs;
	l->block_size = bs;
	l->have_capacity = true;
	return true;
}

static bool lun_listed(const struct probe *p, uint64_t lun)
{
	for (size_t i = 0; i < p->nluns; i++)
		if (p->luns[i].lun == lun)
			return true;
	return false;
}

static void probe_cb(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct probe *p = io->priv;
	struct dsession *s = p->s;
	if (s->ism != p->ism || s->state != DS_CONNECTED) {
		/* the session went away; the next login probes again */
		probe_finish(p, false);
		return;
	}
	bool ok = err == 0 && r && r->status == 0;
	uint32_t got = ok ? r->transferred : 0;
	struct dlun *l = p->idx < p->nluns ? &p->luns[p->idx] : NULL;
	switch (p->step) {
	case 0: /* REPORT LUNS */
		if (ok && got >= 8) {
			uint32_t n = get_be32(p->buf) / 8;
			if (n > (got - 8) / 8)
				n = (got - 8) / 8;
			if (n > DMN_MAX_LUNS)
				n = DMN_MAX_LUNS;
			p->luns = xcalloc(n ? n : 1, sizeof(*p->luns));
			for (uint32_t i = 0; i < n; i++) {
				const uint8_t *e = p->buf + 8 + 8 * i;
				uint64_t lun = (e[0] >> 6) == 1 ? (uint64_t)(((e[0] & 0x3f) << 8) | e[1]) : e[1];
				if (!lun_listed(p, lun)) /* a LUN listed twice would get two devices */
					p->luns[p->nluns++].lun = lun;
			}
		}
		if (!p->nluns) {
			free(p->luns);
			p->luns = xcalloc(1, sizeof(*p->luns));
			p->nluns = 1;
		}
		p->idx = 0;
		p->step = 1;
		break;
	case 1: /* standard INQUIRY */
		if (ok && got >= 5) {
			memcpy(l->inquiry, p->buf, got > DMN_INQ_LEN ? DMN_INQ_LEN : got);
			l->inquiry_len = got > DMN_INQ_LEN ? DMN_INQ_LEN : got;
			l->have_inquiry = true;
			l->device_type = p->buf[0] & 0x1f;
			if ((p->buf[0] >> 5) != 0)
				l->device_type = 0x1f; /* not connected: never a device */
		}
		p->step = 2;
		break;
	case 2: case 3: case 4: /* VPD pages */
		if (ok && got >= 4 && p->buf[1] == probe_pages[p->step - 2]) {
			int k = p->step - 2;
			uint32_t n = got > DMN_VPD_LEN ? DMN_VPD_LEN : got;
			l->vpd[k].page = probe_pages[k];
			l->vpd[k].len = n;
			l->vpd[k].data = xmalloc(n);
			memcpy(l->vpd[k].data, p->buf, n);
		}
		p->step++;
		if (p->step == 5 && (!l->have_inquiry || l->device_type != 0))
			goto next_lun;
		break;
	case 5: /* READ CAPACITY(16) */
		if (ok && got >= 12) {
			capacity_usable(s, l, get_be64(p->buf), get_be32(p->buf + 8));
			goto next_lun;
		}
		p->step = 6;
		break;
	case 6: /* READ CAPACITY(10) */
		if (ok && got >= 8)
			capacity_usable(s, l, get_be32(p->buf), get_be32(p->buf + 4));
		goto next_lun;
	}
	probe_next(p);
	return;
next_lun:
	p->idx++;
	p->step = 1;
	probe_next(p);
}

static void probe_next(struct probe *p)
{
	if (p->step > 0 && p->idx >= p->nluns) {
		probe_finish(p, true);
		return;
	}
	struct dio *io = &p->io;
	memset(io, 0, sizeof(*io));
	io->priv = p;
	io->done = probe_cb;
	io->dir = ISM_DIR_READ;
	io->buf = p->buf;
	io->len = sizeof(p->buf);
	io->lun = p->step ? p->luns[p->idx].lun : 0;
	switch (p->step) {
	case 0: io->cdb_len = ism_cdb_report_luns(io->cdb, sizeof(p->buf)); break;
	case 1: io->cdb_len = ism_cdb_inquiry(io->cdb, -1, DMN_INQ_LEN); io->len = DMN_INQ_LEN; break;
	case 2: case 3: case 4:
		io->cdb_len = ism_cdb_inquiry(io->cdb, probe_pages[p->step - 2], DMN_VPD_LEN);
		io->len = DMN_VPD_LEN;
		break;
	case 5: io->cdb_len = ism_cdb_read_capacity16(io->cdb, 32); io->len = 32; break;
	case 6: io->cdb_len = ism_cdb_read_capacity10(io->cdb); io->len = 8; break;
	}
	struct dsession *s = p->s;
	io->s = s;
	io->seq = ++s->next_seq;
	io->tries = DIO_MAX_TRIES * 100; /* a lost session abandons the probe: never requeued */
	if (!s->ism || send_now(s, io) < 0) {
		probe_finish(p, false);
		return;
	}
	ds_sync_soon(s);
}

static void probe_start(struct dsession *s)
{
	struct probe *p = xcalloc(1, sizeof(*p));
	p->s = s;
	p->ism = s->ism;
	probe_next(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Logout */

static void free_session_later(void *arg)
{
	struct dsession *s = arg;
	for (size_t i = 0; i < s->nluns; i++)
		for (int k = 0; k < 4; k++)
			free(s->luns[i].vpd[k].data);
	free(s->luns);
	for (int i = 0; i < s->nextra; i++)
		free(s->extra_portals[i]);
	dsess_opts_free(&s->opts);
	free(s);
}

static void free_session_after_ism(void *arg)
{
	/* runs after the deferred free of the libisthmus session, whose callbacks use s */
	struct dsession *s = arg;
	loop_defer(s->d->loop, free_session_later, s);
}

static void finish_logout(struct dsession *s, const char *why)
{
	struct daemon *d = s->d;
	if (s->state == DS_GONE)
		return;
	loop_timer_stop(d->loop, &s->retry_timer);
	loop_timer_stop(d->loop, &s->removal_timer);
	loop_timer_stop(d->loop, &s->logout_timer);
	remove_devices(s);
	detach_ism(s);
	set_state(s, DS_GONE);
	fail_queue(s, -EIO);
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
	finish_logout(s, status == 0 ? NULL : "the target did not answer the logout; connections closed");
}

static void on_logout_timeout(void *arg)
{
	struct dsession *s = arg;
	log_warn("session %s: no logout response within %d ms; closing the connections", s->idstr, LOGOUT_TIMEOUT_MS);
	finish_logout(s, "no logout response; connections closed");
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
		remove_devices(s);
		set_state(s, DS_LOGGING_OUT);
		fail_queue(s, -EIO);
		s->in_lib++;
		int rc = ism_logout_async(s->ism, on_logout_done, s);
		s->in_lib--;
		if (rc != 0) {
			finish_logout(s, "logout request failed; connections closed");
			return;
		}
		loop_timer_start(s->d->loop, &s->logout_timer, LOGOUT_TIMEOUT_MS, 0, on_logout_timeout, s);
		ds_sync(s);
		return;
	}
	/* Logging in, reconnecting or failed: nothing to log out from; recovery stops now. */
	finish_logout(s, NULL);
}

void dsess_abort_all(struct daemon *d)
{
	while (d->sessions)
		finish_logout(d->sessions, "daemon stopped");
}

/* ------------------------------------------------------------------------------------------ */
/* The session as JSON: every field of `isthmus session show` */

static const char *digest_str(bool on) { return on ? "CRC32C" : "None"; }

static const char *conn_state_str(enum ism_conn_state st)
{
	switch (st) {
	case ISM_CONN_CONNECTING: return "connecting";
	case ISM_CONN_LOGIN: return "login";
	case ISM_CONN_FULL_FEATURE: return "full_feature";
	case ISM_CONN_LOGGING_OUT: return "logging_out";
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

	struct ism_conn_info ci[DMN_MAX_WATCH];
	int nc = s->ism ? ism_session_connection_info(s->ism, ci, DMN_MAX_WATCH) : 0;
	if (nc > DMN_MAX_WATCH)
		nc = DMN_MAX_WATCH;
	int nffp = 0;
	json_t *conns = json_array();
	const char *initiator_portal = "";
	for (int i = 0; i < nc; i++) {
		json_t *c = json_object();
		json_object_set_new(c, "cid", json_integer(ci[i].cid));
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
		char *path = NULL;
		if (l->exposed && d->fuse)
			path = xasprintf("%s/%s/lun%" PRIu64, d->cfg.devices_dir, s->idstr, l->lun);
		json_object_set_new(o, "local_path", path ? json_string(path) : json_null());
		free(path);
		json_object_set_new(o, "nbd_socket", l->nbd ? json_string(nbd_export_path(l->nbd)) : json_null());
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
	json_object_set_new(j, "recovery", r);
	json_object_set_new(j, "state", json_string(dsess_state_str(s->state)));
	json_object_set_new(j, "state_since", json_string(since));
	return j;
}
