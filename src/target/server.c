/*
 * The target server: target nodes and their LUs built from the configuration, listening
 * portals, the once-a-second housekeeping tick (NOP-In pings, dead peers, login timeouts), and
 * signal handling (SIGTERM asks initiators to log out, flushes, exits).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgmt/rpc.h"
#include "net/accept.h"
#include "store/store_io.h"
#include "store/store.h"
#include "store/store_rbd.h"
#include "target/conn.h"
#include "target/ffp.h"
#include "target/gateway.h"
#include "target/isns.h"
#include "target/metrics.h"
#include "target/mgmt.h"
#include "target/server.h"
#include "target/recovery.h"
#include "target/session.h"
#include "target/task.h"
#include "util/log.h"
#include "util/sbuf.h"
#include "util/sd_notify.h"

#define LOGIN_TIMEOUT_MS 15000u
#define SHUTDOWN_GRACE_MS 3000u

struct tnode *server_find_node(struct server *srv, const char *name)
{
	for (size_t i = 0; i < srv->nnodes; i++)
		if (strcmp(srv->nodes[i]->cfg->name, name) == 0)
			return srv->nodes[i];
	return NULL;
}

bool node_allows(const struct tnode *node, const char *initiator)
{
	/* Disallowing the last initiator must not open the target to everyone: that takes access = open. */
	if (!node->cfg->restricted)
		return true;
	for (size_t i = 0; i < node->cfg->nacl; i++)
		if (strcmp(node->cfg->acl[i], initiator) == 0)
			return true;
	return false;
}

void server_index_lock(struct server *srv)
{
	if (srv->index_lock_ready)
		pthread_mutex_lock(&srv->index_lock);
}

void server_index_unlock(struct server *srv)
{
	if (srv->index_lock_ready)
		pthread_mutex_unlock(&srv->index_lock);
}

void server_add_session(struct server *srv, struct session *s)
{
	server_index_lock(srv);
	if (srv->nsessions == srv->capsessions) {
		srv->capsessions = srv->capsessions ? srv->capsessions * 2 : 16;
		srv->sessions = xrealloc(srv->sessions, srv->capsessions * sizeof(*srv->sessions));
	}
	srv->sessions[srv->nsessions++] = s;
	server_index_unlock(srv);
	shard_add_session(s->shard, s);
}

void server_remove_session(struct server *srv, struct session *s)
{
	shard_remove_session(s->shard, s);
	server_index_lock(srv);
	for (size_t i = 0; i < srv->nsessions; i++) {
		if (srv->sessions[i] == s) {
			srv->sessions[i] = srv->sessions[--srv->nsessions];
			break;
		}
	}
	server_index_unlock(srv);
}

uint16_t server_alloc_tsih(struct server *srv)
{
	uint16_t found = 0;
	server_index_lock(srv);
	for (int tries = 0; tries < 65536 && !found; tries++) {
		uint16_t t = srv->next_tsih++;
		if (t == 0)
			continue;
		bool used = false;
		for (size_t i = 0; i < srv->nsessions && !used; i++)
			used = srv->sessions[i]->tsih == t;
		if (!used)
			found = t;
	}
	server_index_unlock(srv);
	return found;
}

/* The identity fields of a session are set before it enters the index and never change. */
static struct session *index_find(struct server *srv, const char *initiator, const uint8_t isid[6], uint16_t tsih,
				  const char *target)
{
	for (size_t i = 0; i < srv->nsessions; i++) {
		struct session *s = srv->sessions[i];
		if (memcmp(s->isid, isid, 6) != 0 || strcmp(s->initiator_name, initiator) != 0)
			continue;
		if (target ? s->type == SESSION_NORMAL && strcmp(s->node->cfg->name, target) == 0 : s->tsih == tsih)
			return s;
	}
	return NULL;
}

static struct session *find_here(struct server *srv, struct shard *sh, const char *initiator, const uint8_t isid[6],
				 uint16_t tsih, const char *target, bool *elsewhere)
{
	server_index_lock(srv);
	struct session *s = index_find(srv, initiator, isid, tsih, target);
	bool away = s && sh && s->shard != sh;
	server_index_unlock(srv);
	if (elsewhere)
		*elsewhere = away;
	return away ? NULL : s;
}

struct session *server_find_session(struct server *srv, struct shard *sh, const char *initiator,
				    const uint8_t isid[6], uint16_t tsih, bool *elsewhere)
{
	return find_here(srv, sh, initiator, isid, tsih, NULL, elsewhere);
}

struct session *server_find_session_isid(struct server *srv, struct shard *sh, const char *initiator,
					 const uint8_t isid[6], const char *target, bool *elsewhere)
{
	return find_here(srv, sh, initiator, isid, 0, target, elsewhere);
}

int server_login_shard(struct server *srv, const char *initiator, const uint8_t isid[6], uint16_t tsih,
		       const char *target)
{
	if (!initiator || (!tsih && !target))
		return -1;
	server_index_lock(srv);
	struct session *s = index_find(srv, initiator, isid, tsih, tsih ? NULL : target);
	int id = s ? (int)s->shard->id : -1;
	server_index_unlock(srv);
	return id;
}

struct shard *server_pick_shard(struct server *srv)
{
	/* Ties go round: sessions that come and go one at a time still use every loop. */
	unsigned start = srv->place_next++ % srv->nshards;
	struct shard *best = srv->shards[start];
	unsigned least = atomic_load(&best->nconns);
	for (unsigned k = 1; k < srv->nshards; k++) {
		struct shard *sh = srv->shards[(start + k) % srv->nshards];
		unsigned n = atomic_load(&sh->nconns);
		if (n < least) {
			least = n;
			best = sh;
		}
	}
	return best;
}

int server_shards_init(struct server *srv, char **err)
{
	if (srv->nshards)
		return 0;
	srv->shards = xcalloc(1, sizeof(*srv->shards));
	srv->shards[0] = shard_new(srv, 0, srv->loop);
	if (!srv->shards[0]) {
		*err = xasprintf("cannot make the mailbox of loop 0: %s", strerror(errno));
		return -1;
	}
	srv->nshards = 1;
	pthread_mutex_init(&srv->index_lock, NULL);
	pthread_mutex_init(&srv->pause_lock, NULL);
	pthread_cond_init(&srv->pause_cond, NULL);
	srv->index_lock_ready = true;
	return 0;
}

/*
 * Does connection c come through portal p? Two listeners cannot share an address and a port, so
 * a wildcard portal owns every local address of its family on its port.
 */
static bool portal_owns(const struct portal *p, const struct conn *c)
{
	if (c->local_sa.ss_family != p->addr.ss_family)
		return false;
	if (p->addr.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&p->addr;
		const struct sockaddr_in *l = (const struct sockaddr_in *)&c->local_sa;
		return a->sin_port == l->sin_port &&
		       (a->sin_addr.s_addr == htonl(INADDR_ANY) || a->sin_addr.s_addr == l->sin_addr.s_addr);
	}
	const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&p->addr;
	const struct sockaddr_in6 *l = (const struct sockaddr_in6 *)&c->local_sa;
	return a->sin6_port == l->sin6_port &&
	       (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) || IN6_ARE_ADDR_EQUAL(&a->sin6_addr, &l->sin6_addr));
}

/* Which connection limit a new connection through p would break, or NULL. */
static const char *portal_limit_reached(struct portal *p)
{
	struct server *srv = p->srv;
	const struct cfg *cfg = srv->cfg;
	if (atomic_load(&srv->nconns) >= cfg->max_connections)
		return "max-connections reached";
	if (srv->nconns < cfg->max_connections_per_portal)
		return NULL;
	/* Counted only when it could matter, over at most max-connections connections. */
	uint32_t n = 0;
	const char *why = NULL;
	server_index_lock(p->srv);
	for (unsigned i = 0; i < srv->nshards && !why; i++)
		for (const struct conn *c = srv->shards[i]->conns; c && !why; c = c->next)
			if (portal_owns(p, c) && ++n >= cfg->max_connections_per_portal)
				why = "max-connections-per-portal reached";
	server_index_unlock(p->srv);
	return why;
}

static void portal_log_refused(struct portal *p, uint64_t now)
{
	log_warn("%s: closed %llu new connection(s) at once: %s", p->name, (unsigned long long)p->refused_unlogged,
		 p->refused_why);
	p->refused_log_ms = now;
	p->refused_unlogged = 0;
}

/* A connection closed as soon as accepted; logged at most once a second per portal (a flood of them is one line). */
static void portal_refused(struct portal *p, const char *why)
{
	uint64_t now = loop_now_ms();
	p->srv->conns_refused++;
	p->refused_unlogged++;
	p->refused_why = why;
	if (now - p->refused_log_ms >= 1000)
		portal_log_refused(p, now);
}

/* Even the reserve descriptor could not take the waiting connection: rest rather than spin. */
static void portal_pause(struct portal *p, int err)
{
	struct server *srv = p->srv;
	log_warn("accept on %s: %s; not accepting for %u ms", p->name, strerror(err), NET_ACCEPT_PAUSE_MS);
	loop_watch_mod(srv->loop, &p->watch, 0);
	p->accept_paused = true;
	srv->accept_resume_ms = loop_now_ms() + NET_ACCEPT_PAUSE_MS;
}

/* From the tick: listen again after a pause, and log refusals not logged yet. */
static void portals_tick(struct server *srv, uint64_t now)
{
	for (size_t i = 0; i < srv->nportals; i++) {
		struct portal *p = srv->portals[i];
		if (p->accept_paused && now >= srv->accept_resume_ms && p->fd >= 0) {
			p->accept_paused = false;
			loop_watch_mod(srv->loop, &p->watch, EPOLLIN);
		}
		if (p->refused_unlogged && now - p->refused_log_ms >= 1000)
			portal_log_refused(p, now);
	}
}

void portal_on_accept(void *arg, uint32_t events)
{
	(void)events;
	struct portal *p = arg;
	struct server *srv = p->srv;
	/* Bounded per wake-up; the listener is level-triggered, so the rest comes next round. */
	for (int i = 0; i < 64; i++) {
		int fd;
		switch (net_accept(p->fd, &fd)) {
		case NET_ACCEPT_NONE:
			return;
		case NET_ACCEPT_RETRY:
			continue;
		case NET_ACCEPT_DROPPED:
			portal_refused(p, "out of file descriptors");
			continue;
		case NET_ACCEPT_PAUSE:
			portal_pause(p, errno);
			return;
		case NET_ACCEPT_OK:
			break;
		}
		if (srv->shutting_down) {
			close(fd);
			continue;
		}
		const char *limit = portal_limit_reached(p);
		if (limit) {
			close(fd);
			portal_refused(p, limit);
			continue;
		}
		server_place_conn(srv, fd, p->tpgt);
	}
}

static void server_ping(struct server *srv, struct conn *c, uint64_t now)
{
	struct bhs b = {0};
	b.opcode = OP_NOP_IN;
	b.final = true;
	b.itt = RESERVED_TAG;
	c->ping_ttt = c->next_ttt++;
	if (c->ping_ttt == RESERVED_TAG)
		c->ping_ttt = c->next_ttt++;
	b.nop_in.ttt = c->ping_ttt;
	conn_send_pdu(c, &b, NULL, 0, NULL, NULL);
	c->ping_sent_ms = now;
	(void)srv;
	conn_flush(c);
}

/* A last flush of one LU's store; it holds the store open (a job) until it completes. */
struct shutdown_flush {
	struct store_io io;
	uint16_t lun;
	char target[];
};

static void shutdown_flushed(struct store_io *io)
{
	struct shutdown_flush *f = (struct shutdown_flush *)io;
	struct store *st = io->st;
	if (io->result < 0)
		log_error("flush of target %s LUN %u failed: %s", f->target, f->lun, strerror(-io->result));
	if (--st->jobs == 0 && st->closing)
		store_close(st);
	free(f);
}

/* Every LU's store flushed through the engine; server_free waits for the flushes to end. */
static void server_finish_shutdown(struct server *srv)
{
	for (size_t i = 0; i < srv->nnodes; i++) {
		uint16_t luns[1024];
		size_t n = scsi_target_list_luns(srv->nodes[i]->scsi, luns, 1024);
		for (size_t j = 0; j < n; j++) {
			struct store *st = scsi_target_lu_store(srv->nodes[i]->scsi, luns[j]);
			if (!st)
				continue;
			const char *name = srv->nodes[i]->cfg->name;
			struct shutdown_flush *f = xcalloc(1, sizeof(*f) + strlen(name) + 1);
			strcpy(f->target, name);
			f->lun = luns[j];
			f->io.op = STORE_IO_FLUSH;
			f->io.done = shutdown_flushed;
			f->io.priv = f;
			st->jobs++;
			store_io_submit(srv->engine, st, &f->io);
		}
	}
	loop_stop(srv->loop);
}

/* mgmt-max-clients, from the configuration in force (a reload may change it). */
static void mgmt_apply_limits(struct server *srv)
{
	if (!srv->rpc)
		return;
	struct rpc_limits l;
	rpc_server_get_limits(srv->rpc, &l);
	if (l.max_clients == srv->cfg->mgmt_max_clients)
		return;
	l.max_clients = srv->cfg->mgmt_max_clients;
	rpc_server_set_limits(srv->rpc, &l);
}

/* Once a second on each shard: pings and timeouts of its connections and sessions. */
static void shard_tick(void *arg)
{
	struct shard *sh = arg;
	struct server *srv = sh->srv;
	uint64_t now = loop_now_ms();
	const struct cfg *cfg = srv->cfg;
	for (struct conn *c = sh->conns, *next; c; c = next) {
		next = c->next;
		if (c->phase == PHASE_LOGIN && now - c->login_started_ms > LOGIN_TIMEOUT_MS) {
			conn_close(c, "login did not complete in time");
			continue;
		}
		if (c->phase == PHASE_FULL_FEATURE && c->tasks &&
		    task_expire_data_waits(c, now, (uint64_t)cfg->data_out_timeout * 1000u))
			conn_flush(c);
		if (c->phase == PHASE_FULL_FEATURE && c->tasks && recovery_level(c) >= 1 &&
		    recovery_ask_stalled_data(c, now))
			conn_flush(c);
		if (c->phase != PHASE_FULL_FEATURE || !cfg->nop_interval)
			continue;
		if (c->ping_sent_ms && now - c->last_rx_ms > (uint64_t)cfg->nop_timeout * 1000u) {
			conn_close(c, "initiator did not answer NOP-In pings");
			continue;
		}
		if (!c->ping_sent_ms && now - c->last_rx_ms >= (uint64_t)cfg->nop_interval * 1000u)
			server_ping(srv, c, now);
		else if (c->ping_sent_ms && c->last_rx_ms > c->ping_sent_ms)
			c->ping_sent_ms = 0;
	}
	for (size_t i = sh->nsessions; i-- > 0;) {
		/* From the end: ending a session moves only an already visited one into its place. */
		struct session *s = sh->sessions[i];
		if (s->kill_deadline_ms && now >= s->kill_deadline_ms) {
			session_close(s, "did not log out when asked to");
			continue;
		}
		/* A CmdSN gap that stays open holds every later command (and its data) forever. */
		uint64_t oldest = session_oldest_held_ms(s);
		if (oldest && now - oldest > (uint64_t)cfg->data_out_timeout * 1000u)
			session_close(s, "a CmdSN gap stayed open past data-out-timeout");
	}
	/* A wake-up lost to a race costs at most this second. */
	if (atomic_load(&sh->has_blocked))
		shard_run_blocked(sh, false);
}

/* Once a second on loop 0: portals, limits, the end of a shutdown. */
static void server_tick(void *arg)
{
	struct server *srv = arg;
	uint64_t now = loop_now_ms();
	portals_tick(srv, now);
	mgmt_apply_limits(srv);
	if (srv->shutting_down && (!atomic_load(&srv->nconns) || now >= srv->shutdown_deadline_ms))
		server_finish_shutdown(srv);
}

/*
 * max-connections needs that many descriptors and more (listeners, stores, the management
 * socket). Systems commonly give a soft limit of 1024 under a much higher hard one: take the
 * hard one, and say so when even that is too low for the configured limit.
 */
static void raise_descriptor_limit(const struct cfg *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->max_connections + 64)
		log_warn("the descriptor limit (%llu) is below max-connections (%u) and what the target needs besides: "
			 "connections beyond it are closed at once",
			 (unsigned long long)rl.rlim_cur, cfg->max_connections);
}

void server_stop(struct server *srv)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	log_info("shutting down: asking initiators to log out");
	/* Logins on other loops read the portals and the iSNS access lists. */
	server_pause_shards(srv);
	isns_target_stop(srv);
	for (size_t i = 0; i < srv->nportals; i++)
		portal_stop_listening(srv->portals[i]);
	for (unsigned i = 0; i < srv->nshards; i++) {
		for (struct conn *c = srv->shards[i]->conns, *next; c; c = next) {
			next = c->next;
			if (c->phase == PHASE_FULL_FEATURE && c->sess && c->sess->type == SESSION_NORMAL) {
				send_async_logout(c, 1);
				conn_flush(c);
			} else {
				conn_close(c, "target shutting down");
			}
		}
	}
	server_resume_shards(srv);
	srv->shutdown_deadline_ms = loop_now_ms() + SHUTDOWN_GRACE_MS;
	/* Check again soon rather than on the next full tick. */
	loop_timer_start(srv->loop, &srv->tick, 100, 100, server_tick, srv);
}

static void server_on_signal(void *arg, uint32_t events)
{
	(void)events;
	struct server *srv = arg;
	struct signalfd_siginfo si;
	while (read(srv->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			sd_notify_stopping();
			server_stop(srv);
		} else if (si.ssi_signo == SIGHUP) {
			server_reload(srv);
		}
	}
}

/* Shard 0 (on srv->loop) with the store engine of cfg's io-engine; the engine is srv->engine too. */
int server_engine_start(struct server *srv, const struct cfg *cfg, char **err)
{
	if (server_shards_init(srv, err) < 0)
		return -1;
	if (shard_engine_start(srv->shards[0], cfg, err) < 0)
		return -1;
	srv->engine = srv->shards[0]->engine;
	return 0;
}

/* Shards 1..n-1 with their engines; their threads start once the nodes have their contexts. */
static int server_shards_add(struct server *srv, unsigned n, const struct cfg *cfg, char **err)
{
	srv->shards = xrealloc(srv->shards, n * sizeof(*srv->shards));
	while (srv->nshards < n) {
		struct shard *sh = shard_new(srv, srv->nshards, NULL);
		if (!sh) {
			*err = xasprintf("cannot make event loop %u: %s", srv->nshards, strerror(errno));
			return -1;
		}
		srv->shards[srv->nshards++] = sh;
		if (shard_engine_start(sh, cfg, err) < 0)
			return -1;
	}
	return 0;
}

static int server_shards_start(struct server *srv, char **err)
{
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct shard *sh = srv->shards[i];
		loop_timer_start(sh->loop, &sh->tick, 1000, 1000, shard_tick, sh);
		if (i && shard_thread_start(sh, err) < 0)
			return -1;
	}
	if (srv->nshards > 1)
		log_info("%u event loops", srv->nshards);
	return 0;
}

int server_start(struct server *srv, struct cfg *cfg)
{
	char *err = NULL;
	srv->sigfd = -1;
	srv->loop = loop_new();
	srv->next_tsih = 1;
	if (!srv->loop) {
		log_error("cannot create the event loop");
		cfg_free(cfg);
		free(cfg);
		return -1;
	}
	/* Start-up is a reconfiguration from nothing: the same code path as SIGHUP and the RPCs. */
	if (srv->overlay && srv->overlay(cfg, srv->overlay_arg, &err) < 0) {
		cfg_free(cfg);
		free(cfg);
		goto fail;
	}
	/*
	 * Blocked before any thread starts (the engine's workers, librados's for an RBD LU): every
	 * thread inherits the mask, so these signals reach the signalfd, never a thread that dies
	 * of them.
	 */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* After the flags: they may choose the backend, which only a restart changes. */
	if (server_engine_start(srv, cfg, &err) < 0 || server_shards_add(srv, cfg_threads(cfg), cfg, &err) < 0) {
		cfg_free(cfg);
		free(cfg);
		goto fail;
	}
	raise_descriptor_limit(cfg);
	/* Before the first listener: the reserve for running out of descriptors (net/accept.h). */
	net_accept_reserve();
	if (server_apply_config(srv, cfg, &err) < 0)
		goto fail;
	signal(SIGPIPE, SIG_IGN);
	srv->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (srv->sigfd < 0 || loop_watch_add(srv->loop, &srv->sigwatch, srv->sigfd, EPOLLIN, server_on_signal, srv) < 0) {
		err = xasprintf("signalfd: %s", strerror(errno));
		goto fail;
	}
	const char *sock = srv->cfg->mgmt_socket;
	if (sock) {
		if (mgmt_start(srv, sock, &err) < 0)
			goto fail;
	} else {
		/* The default socket is a convenience: without it the target still serves. */
		mkdir("/run/isthmus", 0700);
		if (mgmt_start(srv, MGMT_DEFAULT_SOCKET, &err) < 0) {
			log_warn("no management socket: %s", err);
			free(err);
			err = NULL;
		}
	}
	mgmt_apply_limits(srv);
	if (srv->metrics_listen && !(srv->metrics = metrics_start(srv, srv->metrics_listen, &err)))
		goto fail;
	loop_timer_start(srv->loop, &srv->tick, 1000, 1000, server_tick, srv);
	if (server_shards_start(srv, &err) < 0)
		goto fail;
	return 0;
fail:
	log_error("%s", err);
	free(err);
	return -1;
}

int server_run(struct server *srv)
{
	loop_run(srv->loop);
	log_info("stopped");
	return srv->exit_code;
}

void server_free(struct server *srv)
{
	if (!srv->loop)
		return;
	/* The other loops first: from here on everything runs on this thread. */
	for (unsigned i = 1; i < srv->nshards; i++)
		shard_thread_stop(srv->shards[i]);
	for (unsigned i = 0; i < srv->nshards; i++)
		shard_drain(srv->shards[i]); /* connections handed over and not made yet */
	server_cancel_config_apply(srv);
	mgmt_stop(srv);
	metrics_stop(srv->metrics);
	/* Sessions first: one may have only failed connections awaiting recovery (erl2.c). */
	while (srv->nsessions)
		session_close(srv->sessions[srv->nsessions - 1], "target stopped");
	for (unsigned i = 0; i < srv->nshards; i++)
		while (srv->shards[i]->conns)
			conn_close(srv->shards[i]->conns, "target stopped");
	for (size_t i = 0; i < srv->nportals; i++)
		portal_close(srv->portals[i]);
	if (srv->sigfd >= 0)
		close(srv->sigfd);
	loop_timer_stop(srv->loop, &srv->tick);
	for (size_t i = 0; i < srv->nnodes; i++)
		gateway_stop(srv->nodes[i]); /* its probes are on the loop */
	isns_target_free(srv);
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct shard *sh = srv->shards[i];
		loop_timer_stop(sh->loop, &sh->tick);
		if (sh->engine)
			loop_watch_del(sh->loop, &sh->engine_watch);
		shard_drain(sh);
		loop_watch_del(sh->loop, &sh->mb_watch);
		if (i)
			loop_free(sh->loop); /* runs the deferred frees of its connections and sessions */
	}
	loop_free(srv->loop);
	for (size_t i = 0; i < srv->nnodes; i++)
		node_free(srv->nodes[i]);
	/*
	 * Last: ios still in flight finish, and their commands (orphaned by now) are freed. All the
	 * engines together first: a completion on one may post to another.
	 */
	struct store_engine **engines = xcalloc(srv->nshards, sizeof(*engines));
	for (unsigned i = 0; i < srv->nshards; i++)
		engines[i] = srv->shards[i]->engine;
	store_engines_drain(engines, srv->nshards);
	free(engines);
	for (unsigned i = 0; i < srv->nshards; i++) {
		store_engine_free(srv->shards[i]->engine);
		srv->shards[i]->engine = NULL;
		srv->shards[i]->loop = NULL;
		shard_free(srv->shards[i]);
	}
	srv->engine = NULL;
	/*
	 * The closed RBD LUs' images, let go on threads of their own, released before the process
	 * ends; after the engines, whose last jobs (an image's reopen) may close one.
	 */
	store_rbd_releases_wait();
	free(srv->shards);
	free(srv->nodes);
	free(srv->portals);
	free(srv->sessions);
	if (srv->cfg) {
		cfg_free(srv->cfg);
		free(srv->cfg);
	}
	if (srv->index_lock_ready) {
		pthread_mutex_destroy(&srv->index_lock);
		pthread_mutex_destroy(&srv->pause_lock);
		pthread_cond_destroy(&srv->pause_cond);
	}
	memset(srv, 0, sizeof(*srv));
}
