/* Daemon start-up (state, persistent logins, boot session), signals and orderly stop. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/fuse.h"
#include "daemon/ibft.h"
#include "daemon/isns.h"
#include "daemon/methods.h"
#include "daemon/ops.h"
#include "daemon/run.h"
#include "daemon/session.h"
#include "daemon/store.h"
#include "util/log.h"
#include "util/sbuf.h"
#include "util/sd_notify.h"

#define STOP_TIMEOUT_MS 8000

static void on_stop_timeout(void *arg)
{
	struct daemon *d = arg;
	log_warn("sessions still logging out after %d ms; closing them", STOP_TIMEOUT_MS);
	dsess_abort_all(d);
	loop_stop(d->loop);
}

static void begin_stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	sd_notify_stopping();
	dmn_isns_stop(d);
	log_info("stopping: logging out every session");
	if (!d->sessions) {
		loop_stop(d->loop);
		return;
	}
	loop_timer_start(d->loop, &d->stop_timer, STOP_TIMEOUT_MS, 0, on_stop_timeout, d);
	/* dsess_logout may unlink the session: walk a snapshot of ids */
	uint64_t ids[1024];
	size_t n = 0;
	for (struct dsession *s = d->sessions; s && n < 1024; s = s->next)
		ids[n++] = s->id;
	for (size_t i = 0; i < n; i++) {
		char idstr[32];
		dsess_format_id(ids[i], idstr, sizeof(idstr));
		struct dsession *s = dsess_find(d, idstr);
		if (s && s->state != DS_LOGGING_OUT)
			dsess_logout(s, 0);
	}
}

static void on_signal(void *arg, uint32_t events)
{
	(void)events;
	struct daemon *d = arg;
	struct signalfd_siginfo si;
	while (read(d->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_info("signal %u", si.ssi_signo);
			begin_stop(d);
		}
	}
}

static int mkdir_parents(const char *path, mode_t mode)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		mkdir(p, mode);
		*s = '/';
	}
	free(p);
	return 0;
}

static void start_persistent(struct daemon *d, const struct dsess_opts *o, uint64_t record_id)
{
	struct dsession *s = dsess_new(d, o, false);
	s->persistent = record_id != 0;
	s->record_id = record_id;
	dsess_start(s);
}

static void start_records(struct daemon *d, bool boot)
{
	for (size_t i = 0; i < json_array_size(d->records); i++) {
		json_t *r = json_array_get(d->records, i);
		struct dsess_opts o;
		char err[256];
		if (dsess_opts_from_json(&o, r, err, sizeof(err)) < 0) {
			log_error("persistent login %zu: %s; skipped", i, err);
			continue;
		}
		if ((o.type == DS_TYPE_BOOT) == boot)
			start_persistent(d, &o, (uint64_t)json_integer_value(json_object_get(r, "id")));
		dsess_opts_free(&o);
	}
}

/* A start-up login is done once it is connected with its LUNs probed, or it failed (and now retries). */
static bool startup_logins_done(const struct daemon *d)
{
	for (const struct dsession *s = d->sessions; s; s = s->next)
		if (s->state == DS_LOGGING_IN || (s->state == DS_CONNECTED && !s->probed))
			return false;
	return true;
}

/* Units ordered after the daemon (remote file systems) start once its persistent sessions are up. */
static void check_startup_ready(void *arg)
{
	struct daemon *d = arg;
	if (!d->stopping && !startup_logins_done(d) && loop_now_ms() < d->ready_deadline_ms)
		return;
	loop_timer_stop(d->loop, &d->ready_timer);
	if (!d->stopping)
		sd_notify_ready();
}

int dmn_run(struct dmn_args *a)
{
	struct daemon *d = xcalloc(1, sizeof(*d));
	char err[512];
	int rc = 1;
	dmn_config_defaults(&d->cfg);
	if (a->config && dmn_config_load(&d->cfg, a->config, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	if (a->devices_dir) {
		free(d->cfg.devices_dir);
		d->cfg.devices_dir = xstrdup(a->devices_dir);
	}
	if (a->nbd_dir) {
		free(d->cfg.nbd_dir);
		d->cfg.nbd_dir = xstrdup(a->nbd_dir);
	}
	if (a->isns) {
		free(d->cfg.isns);
		d->cfg.isns = xstrdup(a->isns);
	}
	if (a->no_fuse)
		d->cfg.fuse = false;
	if (a->no_nbd)
		d->cfg.nbd = false;
	if (a->no_block)
		d->cfg.block = false;
	d->state_dir = xstrdup(a->state_dir ? a->state_dir : "/var/lib/isthmus");
	d->socket_path = xstrdup(a->socket ? a->socket : "/run/isthmus/initiator.sock");
	d->ibft_dir = a->ibft ? xstrdup(a->ibft) : NULL;

	struct dsess_opts boot;
	bool have_boot = false;
	char *ibft_name = NULL;
	if (d->ibft_dir) {
		if (ibft_load(d->ibft_dir, &boot, &ibft_name, err, sizeof(err)) < 0) {
			log_error("iBFT %s: %s", d->ibft_dir, err);
			goto out;
		}
		have_boot = true;
		if (ibft_name && !d->cfg.initiator_name)
			d->cfg.initiator_name = xstrdup(ibft_name);
		free(ibft_name);
	}
	if (store_init(d, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	d->loop = loop_new();
	mkdir_parents(d->socket_path, 0755);
	char *rerr = NULL;
	d->rpc = rpc_server_new(d->loop, d->socket_path, dmn_methods, dmn_nmethods, d, &rerr);
	if (!d->rpc) {
		log_error("%s", rerr);
		free(rerr);
		goto out;
	}
	if (d->cfg.nbd) {
		mkdir_parents(d->cfg.nbd_dir, 0755);
		if (mkdir(d->cfg.nbd_dir, 0700) < 0 && errno != EEXIST)
			log_warn("cannot create %s: %s; no NBD exports", d->cfg.nbd_dir, strerror(errno));
	}
	if (d->cfg.fuse && fusedev_start(d, err, sizeof(err)) < 0) {
		log_warn("no FUSE devices: %s", err);
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	loop_watch_add(d->loop, &d->sigwatch, d->sigfd, EPOLLIN, on_signal, d);

	log_info("isthmus-initiator: %s, state %s, socket %s, devices %s", d->initiator_name, d->state_dir,
		 d->socket_path, d->cfg.fuse ? d->cfg.devices_dir : "(no FUSE)");
	/* Boot sessions first (the iBFT one, then stored ones), then the rest; none waits for another. */
	if (have_boot) {
		struct dsession *dup = dsess_find_target(d, boot.target, boot.portal);
		if (!dup)
			start_persistent(d, &boot, 0);
		dsess_opts_free(&boot);
	}
	start_records(d, true);
	start_records(d, false);
	if (d->cfg.isns && dmn_isns_start(d, d->cfg.isns, err, sizeof(err)) < 0)
		log_error("iSNS: %s; running without it", err);
	/* A login attempt is bounded by login-timeout; the LUN probe after it gets a little more. */
	d->ready_deadline_ms = loop_now_ms() + (uint64_t)d->cfg.login_timeout_ms + 5000;
	loop_timer_start(d->loop, &d->ready_timer, 50, 50, check_startup_ready, d);
	if (a->ready_fd >= 0) {
		ssize_t w = write(a->ready_fd, "ok\n", 3);
		(void)w;
		close(a->ready_fd);
	}
	loop_run(d->loop);
	rc = 0;
	dmn_isns_free(d);
	dsess_abort_all(d);
	loop_timer_stop(d->loop, &d->stop_timer);
	loop_timer_stop(d->loop, &d->ready_timer);
	if (d->fuse)
		fusedev_stop(d);
out:
	/* RPC callers still waiting get their answer (an error) before the server goes */
	dop_free_all(d);
	if (d->rpc)
		rpc_server_free(d->rpc);
	if (d->loop) {
		if (d->sigfd > 0) {
			loop_watch_del(d->loop, &d->sigwatch);
			close(d->sigfd);
		}
		loop_free(d->loop);
	}
	json_decref(d->records);
	json_decref(d->discovered);
	secret_free(d->initiator_secret);
	free(d->initiator_name);
	free(d->state_dir);
	free(d->socket_path);
	free(d->ibft_dir);
	dmn_config_free(&d->cfg);
	free(d);
	log_info("isthmus-initiator stopped");
	return rc;
}
