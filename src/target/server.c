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
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "target/mgmt.h"
#include "target/target.h"
#include "util/log.h"
#include "util/sbuf.h"

#define LOGIN_TIMEOUT_MS 15000u
#define SHUTDOWN_GRACE_MS 3000u

struct tnode *server_find_node(struct server *srv, const char *name)
{
	for (size_t i = 0; i < srv->nnodes; i++)
		if (strcmp(srv->nodes[i].cfg->name, name) == 0)
			return &srv->nodes[i];
	return NULL;
}

bool node_allows(const struct tnode *node, const char *initiator)
{
	if (node->cfg->nacl == 0)
		return true;
	for (size_t i = 0; i < node->cfg->nacl; i++)
		if (strcmp(node->cfg->acl[i], initiator) == 0)
			return true;
	return false;
}

void server_add_session(struct server *srv, struct session *s)
{
	if (srv->nsessions == srv->capsessions) {
		srv->capsessions = srv->capsessions ? srv->capsessions * 2 : 16;
		srv->sessions = xrealloc(srv->sessions, srv->capsessions * sizeof(*srv->sessions));
	}
	srv->sessions[srv->nsessions++] = s;
}

void server_remove_session(struct server *srv, struct session *s)
{
	for (size_t i = 0; i < srv->nsessions; i++) {
		if (srv->sessions[i] == s) {
			srv->sessions[i] = srv->sessions[--srv->nsessions];
			return;
		}
	}
}

struct session *server_find_session(struct server *srv, const char *initiator, const uint8_t isid[6], uint16_t tsih)
{
	for (size_t i = 0; i < srv->nsessions; i++) {
		struct session *s = srv->sessions[i];
		if (s->tsih == tsih && memcmp(s->isid, isid, 6) == 0 && strcmp(s->initiator_name, initiator) == 0)
			return s;
	}
	return NULL;
}

struct session *server_find_session_isid(struct server *srv, const char *initiator, const uint8_t isid[6],
					 const char *target)
{
	for (size_t i = 0; i < srv->nsessions; i++) {
		struct session *s = srv->sessions[i];
		if (s->type == SESSION_NORMAL && memcmp(s->isid, isid, 6) == 0 &&
		    strcmp(s->initiator_name, initiator) == 0 && strcmp(s->node->cfg->name, target) == 0)
			return s;
	}
	return NULL;
}

static void portal_on_accept(void *arg, uint32_t events)
{
	(void)events;
	struct portal *p = arg;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(p->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("accept on %s: %s", p->name, strerror(errno));
			return;
		}
		if (p->srv->shutting_down) {
			close(fd);
			continue;
		}
		conn_accept(p->srv, fd, p->tpgt);
	}
}

static int portal_open(struct server *srv, struct portal *p, const struct cfg_portal *cp, char **err)
{
	memset(&p->addr, 0, sizeof(p->addr));
	socklen_t alen;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&p->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&p->addr;
	if (inet_pton(AF_INET, cp->host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(cp->port);
		alen = sizeof(*s4);
		snprintf(p->name, sizeof(p->name), "%s:%u", cp->host, cp->port);
	} else if (inet_pton(AF_INET6, cp->host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(cp->port);
		alen = sizeof(*s6);
		snprintf(p->name, sizeof(p->name), "[%s]:%u", cp->host, cp->port);
	} else {
		*err = xasprintf("listen address '%s' is not a numeric IPv4 or IPv6 address", cp->host);
		return -1;
	}
	p->srv = srv;
	p->tpgt = cp->tpgt;
	p->fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		*err = xasprintf("socket for %s: %s", p->name, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(p->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (p->addr.ss_family == AF_INET6)
		setsockopt(p->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(p->fd, (struct sockaddr *)&p->addr, alen) < 0 || listen(p->fd, 128) < 0) {
		*err = xasprintf("cannot listen on %s: %s", p->name, strerror(errno));
		close(p->fd);
		p->fd = -1;
		return -1;
	}
	if (loop_watch_add(srv->loop, &p->watch, p->fd, EPOLLIN, portal_on_accept, p) < 0) {
		*err = xasprintf("cannot watch %s", p->name);
		return -1;
	}
	log_info("listening on %s (portal group %u)", p->name, p->tpgt);
	return 0;
}

/* What this target offers in negotiation: generous limits, config overrides on top. */
static int node_params(struct tnode *n, char **err)
{
	struct iscsi_params *w = &n->want;
	params_defaults(w);
	w->max_recv_dsl = 262144;
	w->max_connections = 8;
	w->initial_r2t = false;
	w->immediate_data = true;
	w->max_burst_length = 1048576;
	w->first_burst_length = 262144;
	w->max_outstanding_r2t = 16;
	w->default_time2wait = 2;
	w->default_time2retain = 0;
	w->error_recovery_level = 0;
	w->protocol_level = 1;
	for (size_t i = 0; i < n->cfg->params.n; i++) {
		const char *k = n->cfg->params.kv[i].key, *v = n->cfg->params.kv[i].value;
		const struct key_def *d = key_lookup(k);
		if (!d || d->offset == SIZE_MAX) {
			*err = xasprintf("target %s: '%s' is not a negotiable iSCSI key", n->cfg->name, k);
			return -1;
		}
		char *end;
		if (d->kind == KEY_BOOL_AND || d->kind == KEY_BOOL_OR) {
			if (strcmp(v, "Yes") && strcmp(v, "No")) {
				*err = xasprintf("target %s: %s must be Yes or No", n->cfg->name, k);
				return -1;
			}
			*(bool *)((char *)w + d->offset) = strcmp(v, "Yes") == 0;
		} else if (d->kind == KEY_LIST) {
			/* HeaderDigest / DataDigest: CRC32C means "prefer and accept" */
			*(bool *)((char *)w + d->offset) = strstr(v, "CRC32C") != NULL;
		} else {
			unsigned long x = strtoul(v, &end, 0);
			if (*end || x < d->min || x > d->max) {
				*err = xasprintf("target %s: %s=%s is outside %u..%u", n->cfg->name, k, v, d->min, d->max);
				return -1;
			}
			*(uint32_t *)((char *)w + d->offset) = (uint32_t)x;
		}
	}
	if (w->error_recovery_level > 0)
		w->error_recovery_level = 0; /* only ERL 0 is implemented */
	return 0;
}

static int node_setup(struct server *srv, struct tnode *n, struct cfg_target *ct, char **err)
{
	n->srv = srv;
	n->cfg = ct;
	n->scsi = scsi_target_new(ct->name);
	if (node_params(n, err) < 0)
		return -1;
	for (size_t i = 0; i < ct->nluns; i++) {
		struct cfg_lun *l = &ct->luns[i];
		char *serr = NULL;
		struct store *st = l->kind == LUN_MEMORY ? store_mem_open(l->size, &serr)
							 : store_file_open(l->path, l->size, l->read_only, &serr);
		if (!st) {
			*err = xasprintf("target %s LUN %u: %s", ct->name, l->lun, serr ? serr : "cannot open");
			free(serr);
			return -1;
		}
		struct scsi_lu_params lp = {
			.vendor = l->vendor,
			.product = l->product,
			.serial = l->serial,
			.block_size = l->block_size ? l->block_size : 512,
			.read_only = l->read_only,
			.thin = l->thin,
			.write_cache = l->write_cache,
			.state_dir = srv->cfg->state_dir,
		};
		if (scsi_target_add_lu(n->scsi, l->lun, st, &lp, &serr) < 0) {
			*err = xasprintf("target %s LUN %u: %s", ct->name, l->lun, serr ? serr : "cannot add");
			free(serr);
			return -1;
		}
		log_info("target %s LUN %u: %s, %llu bytes%s", ct->name, l->lun, l->kind == LUN_MEMORY ? "memory" : l->path,
			 (unsigned long long)st->size, l->read_only ? ", read-only" : "");
	}
	return 0;
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
	b.nop_in.statsn = c->statsn; /* a ping does not consume a StatSN */
	b.nop_in.expcmdsn = c->sess->exp_cmdsn;
	b.nop_in.maxcmdsn = session_max_cmdsn(c->sess);
	conn_send_pdu(c, &b, NULL, 0, NULL, NULL);
	c->ping_sent_ms = now;
	(void)srv;
	conn_flush(c);
}

static void server_finish_shutdown(struct server *srv)
{
	for (size_t i = 0; i < srv->nnodes; i++) {
		uint16_t luns[1024];
		size_t n = scsi_target_list_luns(srv->nodes[i].scsi, luns, 1024);
		for (size_t j = 0; j < n; j++) {
			struct store *st = scsi_target_lu_store(srv->nodes[i].scsi, luns[j]);
			if (st && store_flush(st) < 0)
				log_error("flush of target %s LUN %u failed", srv->nodes[i].cfg->name, luns[j]);
		}
	}
	loop_stop(srv->loop);
}

static void server_tick(void *arg)
{
	struct server *srv = arg;
	uint64_t now = loop_now_ms();
	const struct cfg *cfg = srv->cfg;
	for (struct conn *c = srv->conns, *next; c; c = next) {
		next = c->next;
		if (c->phase == PHASE_LOGIN && now - c->login_started_ms > LOGIN_TIMEOUT_MS) {
			conn_close(c, "login did not complete in time");
			continue;
		}
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
	for (size_t i = 0; i < srv->nsessions; i++) {
		struct session *s = srv->sessions[i];
		if (s->kill_deadline_ms && now >= s->kill_deadline_ms) {
			session_close(s, "killed by the administrator");
			break; /* the array changed; the next tick looks again */
		}
	}
	if (srv->shutting_down && (!srv->conns || now >= srv->shutdown_deadline_ms))
		server_finish_shutdown(srv);
}

void server_stop(struct server *srv)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	log_info("shutting down: asking initiators to log out");
	for (size_t i = 0; i < srv->nportals; i++) {
		loop_watch_del(srv->loop, &srv->portals[i].watch);
		close(srv->portals[i].fd);
		srv->portals[i].fd = -1;
	}
	for (struct conn *c = srv->conns, *next; c; c = next) {
		next = c->next;
		if (c->phase == PHASE_FULL_FEATURE && c->sess && c->sess->type == SESSION_NORMAL) {
			send_async_logout(c, 1);
			conn_flush(c);
		} else {
			conn_close(c, "target shutting down");
		}
	}
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
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			server_stop(srv);
		else if (si.ssi_signo == SIGHUP)
			log_info("SIGHUP: configuration reload is not available yet; ignoring");
	}
}

int server_start(struct server *srv, struct cfg *cfg)
{
	char *err = NULL;
	srv->cfg = cfg;
	srv->sigfd = -1;
	srv->loop = loop_new();
	srv->next_tsih = 1;
	if (!srv->loop) {
		log_error("cannot create the event loop");
		return -1;
	}
	if (cfg->state_dir && mkdir(cfg->state_dir, 0700) < 0 && errno != EEXIST)
		log_warn("cannot create state directory %s: %s", cfg->state_dir, strerror(errno));
	srv->nnodes = cfg->ntargets;
	srv->nodes = xcalloc(cfg->ntargets, sizeof(*srv->nodes));
	for (size_t i = 0; i < cfg->ntargets; i++) {
		if (node_setup(srv, &srv->nodes[i], &cfg->targets[i], &err) < 0)
			goto fail;
	}
	srv->nportals = cfg->nportals;
	srv->portals = xcalloc(cfg->nportals, sizeof(*srv->portals));
	for (size_t i = 0; i < cfg->nportals; i++)
		srv->portals[i].fd = -1;
	for (size_t i = 0; i < cfg->nportals; i++) {
		if (portal_open(srv, &srv->portals[i], &cfg->portals[i], &err) < 0)
			goto fail;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	srv->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (srv->sigfd < 0 || loop_watch_add(srv->loop, &srv->sigwatch, srv->sigfd, EPOLLIN, server_on_signal, srv) < 0) {
		err = xasprintf("signalfd: %s", strerror(errno));
		goto fail;
	}
	if (cfg->mgmt_socket) {
		if (mgmt_start(srv, cfg->mgmt_socket, &err) < 0)
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
	loop_timer_start(srv->loop, &srv->tick, 1000, 1000, server_tick, srv);
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
	mgmt_stop(srv);
	while (srv->conns)
		conn_close(srv->conns, "target stopped");
	for (size_t i = 0; i < srv->nportals; i++) {
		if (srv->portals[i].fd >= 0) {
			loop_watch_del(srv->loop, &srv->portals[i].watch);
			close(srv->portals[i].fd);
		}
	}
	if (srv->sigfd >= 0)
		close(srv->sigfd);
	loop_timer_stop(srv->loop, &srv->tick);
	loop_free(srv->loop); /* runs the deferred frees of connections and sessions */
	for (size_t i = 0; i < srv->nnodes; i++)
		scsi_target_free(srv->nodes[i].scsi);
	free(srv->nodes);
	free(srv->portals);
	free(srv->sessions);
	memset(srv, 0, sizeof(*srv));
}
