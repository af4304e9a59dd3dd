/*
 * Reconfiguration: make the running target match a configuration, touching only what differs.
 * Start-up, SIGHUP and every management change go through server_apply_config, in two phases:
 * prepare everything that can fail (listen sockets, backing stores) without changing anything,
 * then commit. A failed change leaves the running target exactly as it was.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/offload.h"
#include "store/store.h"
#include "store/store_io.h"
#include "store/store_rbd.h"
#include "target/gateway.h"
#include "target/isns.h"
#include "target/server.h"
#include "target/session.h"
#include "util/log.h"
#include "util/sd_notify.h"
#include "util/sbuf.h"

void portal_stop_listening(struct portal *p)
{
	if (p->fd < 0)
		return;
	loop_watch_del(p->srv->loop, &p->watch);
	close(p->fd);
	p->fd = -1;
}

void portal_close(struct portal *p)
{
	if (!p)
		return;
	portal_stop_listening(p);
	log_info("stopped listening on %s", p->name);
	free(p->host);
	free(p);
}

static struct portal *portal_open(struct server *srv, const struct cfg_portal *cp, char **err)
{
	struct portal *p = xcalloc(1, sizeof(*p));
	p->fd = -1;
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
		free(p);
		return NULL;
	}
	p->srv = srv;
	p->host = xstrdup(cp->host);
	p->port = cp->port;
	p->tpgt = cp->tpgt;
	p->fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (p->fd >= 0) {
		setsockopt(p->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (p->addr.ss_family == AF_INET6)
			setsockopt(p->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (p->fd < 0 || bind(p->fd, (struct sockaddr *)&p->addr, alen) < 0 || listen(p->fd, 128) < 0 ||
	    loop_watch_add(srv->loop, &p->watch, p->fd, EPOLLIN, portal_on_accept, p) < 0) {
		*err = xasprintf("cannot listen on %s: %s", p->name, strerror(errno));
		if (p->fd >= 0)
			close(p->fd);
		free(p->host);
		free(p);
		return NULL;
	}
	log_info("listening on %s (portal group %u)", p->name, p->tpgt);
	return p;
}

/* What this target offers in negotiation: generous limits, config overrides on top. */
static int node_params(const struct cfg_target *t, struct iscsi_params *w, char **err)
{
	params_defaults(w);
	w->max_recv_dsl = 262144;
	w->max_connections = 8;
	w->initial_r2t = false;
	w->immediate_data = true;
	w->max_burst_length = 1048576;
	w->first_burst_length = 262144;
	w->max_outstanding_r2t = 16;
	w->default_time2wait = 2;
	/* Level 2 keeps a failed connection's tasks for DefaultTime2Retain: 0 would keep none. */
	w->default_time2retain = t->max_erl >= 2 ? 20 : 0;
	w->error_recovery_level = t->max_erl;
	w->protocol_level = 1;
	for (size_t i = 0; i < t->params.n; i++) {
		const char *k = t->params.kv[i].key, *v = t->params.kv[i].value;
		const struct key_def *d = key_lookup(k);
		if (!d || d->offset == SIZE_MAX) {
			*err = xasprintf("target %s: '%s' is not a negotiable iSCSI key", t->name, k);
			return -1;
		}
		char *end;
		if (d->kind == KEY_BOOL_AND || d->kind == KEY_BOOL_OR) {
			if (strcmp(v, "Yes") && strcmp(v, "No")) {
				*err = xasprintf("target %s: %s must be Yes or No", t->name, k);
				return -1;
			}
			*(bool *)((char *)w + d->offset) = strcmp(v, "Yes") == 0;
		} else if (d->kind == KEY_LIST) {
			/* HeaderDigest / DataDigest: naming CRC32C means "accept and prefer it" */
			*(bool *)((char *)w + d->offset) = strstr(v, "CRC32C") != NULL;
		} else {
			errno = 0;
			unsigned long x = strtoul(v, &end, 0);
			if (errno || *end || x < d->min || x > d->max) {
				*err = xasprintf("target %s: %s=%s is outside %u..%u", t->name, k, v, d->min, d->max);
				return -1;
			}
			*(uint32_t *)((char *)w + d->offset) = (uint32_t)x;
		}
	}
	/* An ErrorRecoveryLevel key may offer less than max-error-recovery-level allows, never more. */
	if (w->error_recovery_level > t->max_erl)
		w->error_recovery_level = t->max_erl;
	return 0;
}

void node_free(struct tnode *n)
{
	if (!n)
		return;
	gateway_stop(n);
	scsi_target_free(n->scsi); /* and the contexts */
	free(n->scsi_ctx);
	free(n);
}

/* "rbd:POOL/IMAGE" (checked by the parser) and its options. */
static struct store *rbd_lun_open(const struct cfg_target *t, const struct cfg_lun *l, char **err)
{
	char *pool = xstrdup(l->path + 4), *image = strchr(pool, '/');
	*image++ = '\0';
	/* A gateway group's gateways must not each cache the image's writes (docs/ceph.md). */
	struct store_rbd_spec spec = {.pool = pool, .image = image, .ns = l->rbd_namespace,
				      .conf = l->rbd_conf, .id = l->rbd_id, .read_only = l->read_only,
				      .refuse_cache = t->gateway && t->ngateways >= 2};
	struct store *st = store_rbd_open(&spec, err);
	free(pool);
	return st;
}

/*
 * A change whose RBD images are being opened on a worker (server_apply_config_async): opening
 * one waits for the cluster, up to the mount and operation timeouts when it is unreachable,
 * which the loop and every session on it must not.
 */
struct preopen {
	const struct cfg_target *t;
	const struct cfg_lun *l;
	struct store *st;             /* opened by the worker; taken by lun_open */
	struct gateway_lu_open gw;    /* a gateway group's: opened by the worker; taken by add_lu */
	char *err;
};

struct config_apply {
	struct offload_job job;
	struct server *srv;           /* NULL once cancelled: the job only cleans up */
	struct cfg *cfg;
	struct preopen *items;
	size_t n;
	server_applied_fn done;
	void *arg;
	bool reload_again;            /* a SIGHUP came meanwhile */
};

static struct store *preopened_take(struct server *srv, const struct cfg_lun *l)
{
	struct config_apply *a = srv->applying;
	for (size_t i = 0; a && i < a->n; i++) {
		if (a->items[i].l == l && a->items[i].st) {
			struct store *st = a->items[i].st;
			a->items[i].st = NULL;
			return st;
		}
	}
	return NULL;
}

/* What the worker opened of the group's shared state for l (not tried: nothing). */
static struct gateway_lu_open *preopened_gateway(struct server *srv, const struct cfg_lun *l)
{
	struct config_apply *a = srv->applying;
	for (size_t i = 0; a && i < a->n; i++)
		if (a->items[i].l == l)
			return &a->items[i].gw;
	return NULL;
}

static struct store *lun_open(struct server *srv, const struct cfg_target *t, const struct cfg_lun *l, char **err)
{
	char *serr = NULL;
	struct store *pre = srv && l->kind == LUN_RBD ? preopened_take(srv, l) : NULL;
	if (pre)
		return pre;
	struct store *st = l->kind == LUN_MEMORY ? store_mem_open(l->size, &serr)
			   : l->kind == LUN_NULL   ? store_null_open(l->size, l->read_only, &serr)
			   : l->kind == LUN_RBD    ? rbd_lun_open(t, l, &serr)
						   : store_file_open(l->path, l->size, l->read_only, &serr);
	if (!st) {
		*err = xasprintf("target %s LUN %u: %s", t->name, l->lun, serr ? serr : "cannot open");
		free(serr);
	}
	return st;
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static bool chap_same(const struct cfg_chap *a, const struct cfg_chap *b)
{
	return str_eq(a->user, b->user) && str_eq(a->secret, b->secret) && str_eq(a->mutual_user, b->mutual_user) &&
	       str_eq(a->mutual_secret, b->mutual_secret);
}

/* Seconds a revoked session has to log out before it is dropped. */
#define REVOKE_GRACE_S 2u

/*
 * An administrator who disallows an initiator or changes the CHAP account it proved expects its
 * sessions to end, not to live on until they log out. Sessions go from the end of the array,
 * which ending one only reorders behind the cursor.
 */
static void revoke_sessions(struct server *srv, const struct cfg *old, const struct cfg *cfg)
{
	for (size_t i = srv->nsessions; i-- > 0;) {
		struct session *s = srv->sessions[i];
		const char *why = NULL;
		if (s->type == SESSION_DISCOVERY) {
			if (!chap_same(&old->discovery_chap, &cfg->discovery_chap))
				why = "discovery CHAP changed";
		} else {
			const struct cfg_target *ot = cfg_find_target(old, s->node->cfg->name);
			const struct cfg_target *nt = cfg_find_target(cfg, s->node->cfg->name);
			if (!ot || !nt)
				continue; /* a removed target closes its sessions itself */
			struct tnode probe = {.cfg = (struct cfg_target *)nt};
			if (!node_allows(&probe, s->initiator_name))
				why = "initiator no longer in the target's access list";
			else if (!chap_same(cfg_target_chap_for(ot, s->initiator_name),
					    cfg_target_chap_for(nt, s->initiator_name)))
				why = "the initiator's CHAP account changed";
		}
		if (why)
			session_revoke(s, REVOKE_GRACE_S, why);
	}
}

/* The same backing store with the same SCSI identity: only its size may differ. */
static bool lun_same(const struct cfg_lun *a, const struct cfg_lun *b)
{
	return a->kind == b->kind && str_eq(a->path, b->path) && a->block_size == b->block_size &&
	       a->read_only == b->read_only && a->thin == b->thin && a->write_cache == b->write_cache &&
	       str_eq(a->serial, b->serial) && str_eq(a->vendor, b->vendor) && str_eq(a->product, b->product) &&
	       str_eq(a->rbd_conf, b->rbd_conf) && str_eq(a->rbd_id, b->rbd_id) &&
	       str_eq(a->rbd_namespace, b->rbd_namespace);
}

static const struct cfg_lun *find_lun(const struct cfg_target *t, uint16_t lun)
{
	for (size_t i = 0; t && i < t->nluns; i++)
		if (t->luns[i].lun == lun)
			return &t->luns[i];
	return NULL;
}

enum lun_action { LUN_KEEP, LUN_ADD, LUN_REPLACE, LUN_RESIZE };

struct lun_plan {
	size_t target;             /* index into the new cfg's targets */
	const struct cfg_lun *l;
	enum lun_action action;
	struct store *st;          /* opened in the prepare phase for ADD and REPLACE */
};

/* An RBD image resized by anyone (`rbd resize`): its LU takes the size and tells every initiator. */
static void rbd_lu_resized(struct store *st, void *arg)
{
	struct scsi_target *t = arg;
	size_t n = scsi_target_lu_count(t);
	uint16_t *luns = xcalloc(n ? n : 1, sizeof(*luns));
	n = scsi_target_list_luns(t, luns, n);
	for (size_t i = 0; i < n; i++) {
		if (scsi_target_lu_store(t, luns[i]) == st) {
			log_info("LUN %u (%s): the image is now %llu bytes", luns[i], st->path, (unsigned long long)st->size);
			scsi_target_lu_resized(t, luns[i]);
			break;
		}
	}
	free(luns);
}

static int add_lu(struct server *srv, struct tnode *n, const struct cfg_lun *l, struct store *st, const char *state_dir)
{
	struct scsi_lu_params lp = {
		.vendor = l->vendor,
		.product = l->product,
		.serial = l->serial,
		.block_size = l->block_size ? l->block_size : 512,
		.read_only = l->read_only,
		.thin = l->thin,
		.write_cache = l->write_cache,
		.state_dir = state_dir,
	};
	char *serr = NULL;
	if (scsi_target_add_lu(n->scsi, l->lun, st, &lp, &serr) < 0) {
		log_error("target %s LUN %u: %s", n->cfg->name, l->lun, serr ? serr : "cannot add");
		free(serr);
		store_close(st);
		return -1;
	}
	if (store_is_rbd(st)) {
		store_rbd_on_resize(st, rbd_lu_resized, n->scsi);
		/* Watched from now on, so that a resize reaches an idle LU too. */
		int rc = srv->engine ? store_rbd_attach(st, srv->engine) : -ENODEV;
		if (rc < 0)
			log_warn("target %s LUN %u: size changes of the image are seen at its first I/O (%s)",
				 n->cfg->name, l->lun, strerror(-rc));
		gateway_lu_added(n, l, st, preopened_gateway(srv, l));
	}
	log_info("target %s LUN %u: %s, %llu bytes%s", n->cfg->name, l->lun, l->path ? l->path : cfg_lun_kind_name(l->kind),
		 (unsigned long long)st->size, l->read_only ? ", read-only" : "");
	return 0;
}

static int apply_config(struct server *srv, struct cfg *cfg, char **err);

/* Every other loop is paused while the change is made: it touches their sessions and LUs. */
int server_apply_config(struct server *srv, struct cfg *cfg, char **err)
{
	if (server_shards_init(srv, err) < 0) {
		cfg_free(cfg);
		free(cfg);
		return -1;
	}
	if (srv->cfg && srv->cfg != cfg && cfg_threads(cfg) != srv->nshards)
		log_warn("threads changed from %u to %u: that needs a restart (the target keeps %u event loops)",
			 srv->nshards, cfg_threads(cfg), srv->nshards);
	server_pause_shards(srv);
	int rc = apply_config(srv, cfg, err);
	server_resume_shards(srv);
	return rc;
}

static int apply_config(struct server *srv, struct cfg *cfg, char **err)
{
	struct portal **portals = NULL;
	size_t nportals = 0;
	bool *kept = srv->nportals ? xcalloc(srv->nportals, sizeof(bool)) : NULL;
	struct lun_plan *plan = NULL;
	size_t nplan = 0, capplan = 0;
	struct iscsi_params *wants = NULL;

	if (cfg_validate(cfg, err) < 0)
		goto fail;
	wants = xcalloc(cfg->ntargets ? cfg->ntargets : 1, sizeof(*wants));
	for (size_t i = 0; i < cfg->ntargets; i++)
		if (node_params(&cfg->targets[i], &wants[i], err) < 0)
			goto fail;

	/* Prepare: listen sockets for new portals; keep the ones that stay. */
	portals = xcalloc(cfg->nportals ? cfg->nportals : 1, sizeof(*portals));
	for (size_t i = 0; i < cfg->nportals; i++) {
		const struct cfg_portal *cp = &cfg->portals[i];
		struct portal *p = NULL;
		for (size_t j = 0; j < srv->nportals; j++) {
			struct portal *o = srv->portals[j];
			if (!kept[j] && o->fd >= 0 && o->port == cp->port && o->tpgt == cp->tpgt &&
			    strcmp(o->host, cp->host) == 0) {
				kept[j] = true;
				p = o;
				break;
			}
		}
		if (!p && !(p = portal_open(srv, cp, err)))
			goto fail;
		portals[nportals++] = p;
	}

	/* Prepare: open every backing store that is new or changes identity. */
	for (size_t i = 0; i < cfg->ntargets; i++) {
		const struct cfg_target *t = &cfg->targets[i];
		struct tnode *old = server_find_node(srv, t->name);
		for (size_t j = 0; j < t->nluns; j++) {
			const struct cfg_lun *l = &t->luns[j];
			const struct cfg_lun *ol = old ? find_lun(old->cfg, l->lun) : NULL;
			struct lun_plan lp = {.target = i, .l = l, .action = LUN_KEEP};
			if (ol && lun_same(ol, l)) {
				struct store *st = scsi_target_lu_store(old->scsi, l->lun);
				if (l->kind != LUN_BLOCK && l->size && st && st->size != l->size)
					lp.action = LUN_RESIZE;
			} else {
				lp.action = ol ? LUN_REPLACE : LUN_ADD;
				if (!(lp.st = lun_open(srv, t, l, err)))
					goto fail;
			}
			if (nplan == capplan) {
				capplan = capplan ? capplan * 2 : 16;
				plan = xrealloc(plan, capplan * sizeof(*plan));
			}
			plan[nplan++] = lp;
		}
	}

	/* Commit. Nothing below fails in a way that leaves half a change behind. */
	srv->cfg_generation++;
	if (srv->cfg && srv->cfg != cfg)
		revoke_sessions(srv, srv->cfg, cfg);
	for (size_t j = 0; j < srv->nportals; j++)
		if (!kept[j])
			portal_close(srv->portals[j]);
	free(srv->portals);
	srv->portals = portals;
	srv->nportals = nportals;
	portals = NULL;

	for (size_t i = 0; i < srv->nnodes;) {
		struct tnode *n = srv->nodes[i];
		if (cfg_find_target(cfg, n->cfg->name)) {
			i++;
			continue;
		}
		log_info("removing target %s", n->cfg->name);
		for (size_t k = 0; k < srv->nsessions;) {
			if (srv->sessions[k]->node == n) {
				session_close(srv->sessions[k], "target removed");
				k = 0;
				continue;
			}
			k++;
		}
		node_free(n);
		srv->nodes[i] = srv->nodes[--srv->nnodes];
	}
	for (size_t i = 0; i < cfg->ntargets; i++) {
		struct cfg_target *t = &cfg->targets[i];
		struct tnode *n = server_find_node(srv, t->name);
		if (!n) {
			n = xcalloc(1, sizeof(*n));
			n->srv = srv;
			n->gen = ++srv->next_node_gen;
			n->scsi = scsi_target_new(t->name);
			n->scsi_ctx = xcalloc(srv->nshards, sizeof(*n->scsi_ctx));
			for (unsigned k = 0; k < srv->nshards; k++) {
				n->scsi_ctx[k] = scsi_port_ctx_new(n->scsi, srv->shards[k]->engine);
				shard_own_scsi_ctx(srv->shards[k], n->scsi_ctx[k]);
			}
			srv->nodes = xrealloc(srv->nodes, (srv->nnodes + 1) * sizeof(*srv->nodes));
			srv->nodes[srv->nnodes++] = n;
			log_info("serving target %s (portal group %u)", t->name, t->tpgt);
		} else {
			/* LUs that disappear: the SCSI layer tells the other initiators. */
			for (size_t j = 0; j < n->cfg->nluns; j++) {
				uint16_t lun = n->cfg->luns[j].lun;
				if (!find_lun(t, lun)) {
					log_info("target %s: removing LUN %u", t->name, lun);
					scsi_target_remove_lu(n->scsi, lun);
				}
			}
		}
		n->cfg = t;
		n->want = wants[i];
		gateway_apply(n);
	}
	for (size_t k = 0; k < nplan; k++) {
		struct lun_plan *lp = &plan[k];
		struct tnode *n = server_find_node(srv, cfg->targets[lp->target].name);
		switch (lp->action) {
		case LUN_KEEP:
			break;
		case LUN_RESIZE: {
			struct store *st = scsi_target_lu_store(n->scsi, lp->l->lun);
			int rc = st->ops->resize ? st->ops->resize(st, lp->l->size) : -EOPNOTSUPP;
			if (rc < 0) {
				log_error("target %s LUN %u: resize to %llu bytes failed: %s", n->cfg->name, lp->l->lun,
					  (unsigned long long)lp->l->size, strerror(-rc));
			} else {
				log_info("target %s LUN %u: resized to %llu bytes", n->cfg->name, lp->l->lun,
					 (unsigned long long)lp->l->size);
				scsi_target_lu_resized(n->scsi, lp->l->lun);
			}
			break;
		}
		case LUN_REPLACE:
			scsi_target_remove_lu(n->scsi, lp->l->lun);
			/* fall through */
		case LUN_ADD:
			add_lu(srv, n, lp->l, lp->st, cfg->state_dir);
			lp->st = NULL;
			break;
		}
	}
	free(plan);
	free(wants);
	free(kept);
	if (srv->cfg && srv->cfg != cfg) {
		if (!str_eq(srv->cfg->mgmt_socket, cfg->mgmt_socket))
			log_warn("a new management socket path takes effect at the next start");
		cfg_free(srv->cfg);
		free(srv->cfg);
	}
	srv->cfg = cfg;
	isns_target_changed(srv);
	return 0;

fail:
	for (size_t k = 0; k < nplan; k++)
		store_close(plan[k].st);
	for (size_t i = 0; i < nportals; i++) {
		bool was_old = false;
		for (size_t j = 0; j < srv->nportals; j++)
			if (srv->portals[j] == portals[i])
				was_old = true;
		if (!was_old)
			portal_close(portals[i]);
	}
	free(portals);
	free(plan);
	free(wants);
	free(kept);
	cfg_free(cfg);
	free(cfg);
	return -1;
}

/*
 * The worker: every RBD image of the change, each with its own error, and what a gateway group
 * shares of each. A change refused for one image lets the group's shares go here, where waiting
 * for the cluster is harmless.
 */
static void preopen_work(struct offload_job *j)
{
	struct config_apply *a = (struct config_apply *)j;
	bool refused = false;
	for (size_t i = 0; i < a->n; i++) {
		struct preopen *p = &a->items[i];
		p->st = lun_open(NULL, p->t, p->l, &p->err);
		if (p->st)
			gateway_lu_open(p->t, p->l, p->st, &p->gw);
		refused |= !p->st;
	}
	for (size_t i = 0; refused && i < a->n; i++)
		gateway_lu_open_discard(&a->items[i].gw);
}

static bool gateway_opens_left(const struct config_apply *a)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->items[i].gw.tried)
			return true;
	return false;
}

static void config_apply_free(struct config_apply *a)
{
	for (size_t i = 0; i < a->n; i++) {
		store_close(a->items[i].st);
		gateway_lu_open_discard(&a->items[i].gw);
		free(a->items[i].err);
	}
	free(a->items);
	free(a);
}

/* A worker: the group's shares of a change that did not take them (it failed late). */
static void leftovers_work(struct offload_job *j)
{
	struct config_apply *a = (struct config_apply *)j;
	for (size_t i = 0; i < a->n; i++)
		gateway_lu_open_discard(&a->items[i].gw);
}

static void leftovers_done(struct offload_job *j) { config_apply_free((struct config_apply *)j); }

/* The loop: the images are open (or not); apply the change as server_apply_config would have. */
static void preopen_done(struct offload_job *j)
{
	struct config_apply *a = (struct config_apply *)j;
	struct server *srv = a->srv;
	char *err = NULL;
	int rc = 0;

	if (!srv) {
		/* Cancelled: the server is stopping and its caller has had its answer. */
		cfg_free(a->cfg);
		free(a->cfg);
		config_apply_free(a);
		return;
	}
	for (size_t i = 0; i < a->n && !err; i++)
		if (a->items[i].err)
			err = xstrdup(a->items[i].err);
	if (err) {
		rc = -1;
		cfg_free(a->cfg);
		free(a->cfg);
	} else {
		rc = server_apply_config(srv, a->cfg, &err);
	}
	srv->applying = NULL;
	bool again = a->reload_again;
	a->done(srv, rc, err, a->arg);
	free(err);
	if (gateway_opens_left(a))
		store_rbd_offload(srv->engine, &a->job, a, leftovers_work, leftovers_done);
	else
		config_apply_free(a);
	if (again)
		server_reload(srv);
}

void server_apply_config_async(struct server *srv, struct cfg *cfg, server_applied_fn done, void *arg)
{
	char *err = NULL;

	if (srv->applying) {
		cfg_free(cfg);
		free(cfg);
		done(srv, -1, "another configuration change is still being applied (its RBD images are opening); "
			      "try again when it is done", arg);
		return;
	}
	struct config_apply *a = xcalloc(1, sizeof(*a));
	for (size_t i = 0; i < cfg->ntargets && srv->engine; i++) {
		const struct cfg_target *t = &cfg->targets[i];
		struct tnode *old = server_find_node(srv, t->name);
		for (size_t k = 0; k < t->nluns; k++) {
			const struct cfg_lun *l = &t->luns[k];
			const struct cfg_lun *ol = old ? find_lun(old->cfg, l->lun) : NULL;
			if (l->kind != LUN_RBD || (ol && lun_same(ol, l)))
				continue;
			a->items = xrealloc(a->items, (a->n + 1) * sizeof(*a->items));
			a->items[a->n++] = (struct preopen){.t = t, .l = l};
		}
	}
	if (a->n == 0 || cfg_validate(cfg, &err) < 0) {
		/* Nothing waits for a cluster (or the change is refused before anything opens). */
		config_apply_free(a);
		free(err);
		err = NULL;
		int rc = server_apply_config(srv, cfg, &err);
		done(srv, rc, err, arg);
		free(err);
		return;
	}
	a->srv = srv;
	a->cfg = cfg;
	a->done = done;
	a->arg = arg;
	srv->applying = a;
	log_info("opening %zu RBD image%s on a worker before applying the change", a->n, a->n == 1 ? "" : "s");
	store_rbd_offload(srv->engine, &a->job, a, preopen_work, preopen_done);
}

void server_cancel_config_apply(struct server *srv)
{
	struct config_apply *a = srv->applying;
	if (!a)
		return;
	srv->applying = NULL;
	a->srv = NULL;
	a->done(srv, -1, "the target is stopping", a->arg);
}

static void reload_applied(struct server *srv, int rc, const char *err, void *arg)
{
	(void)srv, (void)arg;
	if (rc < 0)
		log_error("reload refused, the running configuration stays: %s", err ? err : "cannot apply");
	else
		log_info("reload applied: %s", srv->cfg->source);
	/* Only now: a change whose RBD images open on a worker is not in when server_reload returns. */
	sd_notify_ready();
}

/* The service manager counts a reload as done at the READY=1 that follows RELOADING=1: it is
 * sent when the new configuration is in (reload_applied) or refused, not when the file is read. */
void server_reload(struct server *srv)
{
	const char *path = srv->cfg->source;
	if (!path) {
		log_warn("SIGHUP: the target was started without --config; nothing to reload");
		return;
	}
	sd_notify_reloading();
	if (srv->applying) {
		/* Read the file once that change is in: what it says then is what must run. */
		log_warn("SIGHUP: a change is still being applied (RBD images opening); reloading %s after it", path);
		srv->applying->reload_again = true;
		return;
	}
	log_info("SIGHUP: reloading %s", path);
	struct cfg *cfg = xcalloc(1, sizeof(*cfg));
	cfg_init(cfg);
	char *err = NULL;
	if (cfg_load_file(cfg, path, &err) < 0 || (srv->overlay && srv->overlay(cfg, srv->overlay_arg, &err) < 0)) {
		log_error("reload refused, the running configuration stays: %s", err);
		free(err);
		cfg_free(cfg);
		free(cfg);
		sd_notify_ready();
		return;
	}
	server_apply_config_async(srv, cfg, reload_applied, NULL);
}
