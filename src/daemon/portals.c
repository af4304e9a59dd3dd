/*
 * Failover between the portals of one target (gateways presenting the same target IQN).
 *
 * A session logs in through one portal at a time. When that portal's session is lost, or a login
 * through it fails, the next login goes to the next portal at once, round-robin, until every
 * portal has failed in a row; only then does the next attempt wait a reconnect interval. The
 * session keeps its id and ISID, so each gateway sees the same initiator port.
 *
 * The preferred portal: each LU may have its own active/optimized target port group (gateways on
 * RBD optimize each LU where its image's lock rests), as the ALUA probe after each login learnt
 * them (alua_probe.c); the session prefers the portal that is active/optimized for the most of
 * its LUs, ties going to the current portal, then to the one optimized for the lowest-numbered
 * LU (alua_choose_portal); with no LU optimized in a known portal's group, the first one given.
 * A portal's group is known once the session has been logged in through it. After a failure the
 * next login tries the best other portal first. While the session runs through another one, the
 * preferred portal is probed every second with a TCP connection; once it has accepted every
 * probe for the failback period, new commands are held, the in-flight ones finish, and the
 * session logs in through the preferred portal again (its queue replayed there in order). A
 * change of the preferred portal starts the failback period anew.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/alua.h"
#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/portals.h"
#include "daemon/recovery.h"
#include "daemon/session.h"
#include "util/log.h"
#include "util/sbuf.h"

#define FAILBACK_PROBE_MS 1000
/* How long a failback waits for the in-flight commands (polled every DRAIN_TICK_MS); past it the
 * commands held meanwhile go out again and the failback is tried at the next probe. */
#define DRAIN_TICK_MS 10
#define DRAIN_MAX_TICKS 300

static int find_portal(const struct dsession *s, const char *addr)
{
	for (int i = 0; i < s->nportals; i++)
		if (!strcmp(s->portals[i].addr, addr))
			return i;
	return -1;
}

static void add_portal(struct dsession *s, const char *addr, int tpgt, bool given)
{
	int i = find_portal(s, addr);
	if (i >= 0) {
		if (tpgt >= 0)
			s->portals[i].tpgt = tpgt;
		return;
	}
	if (s->nportals >= DMN_MAX_PORTALS) {
		log_warn("session %s: more than %d portals; %s ignored", s->idstr, DMN_MAX_PORTALS, addr);
		return;
	}
	struct dportal *p = &s->portals[s->nportals++];
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	p->tpgt = tpgt;
	p->given = given;
	p->tpg = p->rel_port = p->alua_state = -1;
}

void portals_learn(struct dsession *s, json_t *addresses)
{
	for (size_t i = 0; i < json_array_size(addresses); i++) {
		const char *a = json_string_value(json_array_get(addresses, i));
		if (!a)
			continue;
		char addr[ISM_PORTAL_MAX];
		snprintf(addr, sizeof(addr), "%s", a);
		int tpgt = -1;
		char *comma = strrchr(addr, ',');
		if (comma) {
			char *end;
			long v = strtol(comma + 1, &end, 10);
			if (*end || v < 0 || v > 65535)
				continue;
			tpgt = (int)v;
			*comma = 0;
		}
		char host[256];
		uint16_t port;
		if (ism_parse_portal(addr, host, sizeof(host), &port) < 0)
			continue;
		add_portal(s, addr, tpgt, false);
	}
}

void portals_init(struct dsession *s)
{
	s->fb_fd = -1;
	add_portal(s, s->opts.portal, -1, true);
	for (int i = 0; i < s->opts.nportals; i++)
		add_portal(s, s->opts.portals[i], -1, true);
	for (size_t i = 0; i < json_array_size(s->d->discovered); i++) {
		json_t *e = json_array_get(s->d->discovered, i);
		const char *t = json_string_value(json_object_get(e, "target"));
		if (t && !strcmp(t, s->opts.target))
			portals_learn(s, json_object_get(e, "addresses"));
	}
	s->round_left = s->nportals - 1;
}

uint32_t portals_failback_ms(const struct dsession *s)
{
	int ms = s->opts.failback_ms >= 0 ? s->opts.failback_ms : s->d->cfg.failback_ms;
	return ms > 0 ? (uint32_t)ms : 0;
}

static const char *login_portal(const struct dsession *s) { return s->login_portal ? s->login_portal : s->opts.portal; }

static void use_portal(struct dsession *s, int i)
{
	s->cur_portal = i;
	free(s->login_portal);
	s->login_portal = xstrdup(s->portals[i].addr);
}

/* The ALUA choice among the portals (alua_choose_portal) from what the LUs' last probe said. */
static struct alua_choice choose(const struct dsession *s, int exclude, unsigned *counts)
{
	int tpg[DMN_MAX_PORTALS];
	struct alua_lun_opt opt[DMN_MAX_LUNS];
	size_t n = 0;
	for (int i = 0; i < s->nportals; i++)
		tpg[i] = s->portals[i].tpg;
	for (size_t k = 0; k < s->nluns && n < DMN_MAX_LUNS && !s->alua_none; k++)
		if (s->luns[k].have_alua)
			opt[n++] = (struct alua_lun_opt){.lun = s->luns[k].lun, .tpg = s->luns[k].alua_opt_tpg};
	return alua_choose_portal(tpg, s->nportals, s->cur_portal, exclude, opt, n, counts);
}

int portals_preferred(const struct dsession *s)
{
	unsigned counts[DMN_MAX_PORTALS];
	struct alua_choice c = choose(s, -1, counts);
	return c.portal >= 0 ? c.portal : 0;
}

bool portals_fail_over(struct dsession *s)
{
	if (s->nportals < 2)
		return false;
	int from = find_portal(s, login_portal(s));
	if (from < 0)
		from = s->cur_portal;
	int next = (from + 1) % s->nportals;
	/* a round starts with the other portal optimized for the most LUs, when one is known */
	if (s->round_left == s->nportals - 1) {
		unsigned counts[DMN_MAX_PORTALS];
		struct alua_choice c = choose(s, from, counts);
		if (c.portal >= 0)
			next = c.portal;
	}
	use_portal(s, next);
	s->failovers++;
	if (s->round_left > 0) {
		s->round_left--;
		log_info("session %s: failing over to portal %s", s->idstr, s->portals[next].addr);
		return true;
	}
	s->round_left = s->nportals - 1;
	log_info("session %s: every portal failed; next attempt through %s", s->idstr, s->portals[next].addr);
	return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Failback */

static void probe_close(struct dsession *s)
{
	if (s->fb_fd < 0)
		return;
	loop_watch_del(s->d->loop, &s->fb_watch);
	close(s->fb_fd);
	s->fb_fd = -1;
}

void portals_stop(struct dsession *s)
{
	probe_close(s);
	loop_timer_stop(s->d->loop, &s->failback_timer);
	loop_timer_stop(s->d->loop, &s->drain_timer);
	s->fb_up_since_ms = 0;
	if (s->draining) {
		s->draining = false;
		dio_flush_later(s);
	}
}

static void on_drain_tick(void *arg)
{
	struct dsession *s = arg;
	if (!s->draining || s->state != DS_CONNECTED)
		return;
	if (s->inflight == 0) {
		s->draining = false;
		loop_timer_stop(s->d->loop, &s->drain_timer);
		use_portal(s, portals_preferred(s));
		s->failovers++;
		recovery_move(s, "failback to the preferred portal");
		return;
	}
	if (++s->drain_ticks >= DRAIN_MAX_TICKS) {
		log_warn("session %s: commands still in flight after %d ms; failback put off", s->idstr,
			 DRAIN_TICK_MS * DRAIN_MAX_TICKS);
		s->draining = false;
		s->fb_up_since_ms = 0;
		loop_timer_stop(s->d->loop, &s->drain_timer);
		dio_flush_later(s);
	}
}

static void probe_result(struct dsession *s, bool up)
{
	probe_close(s);
	uint64_t now = loop_now_ms();
	if (!up) {
		s->fb_up_since_ms = 0;
		return;
	}
	if (!s->fb_up_since_ms)
		s->fb_up_since_ms = now;
	if (now - s->fb_up_since_ms < portals_failback_ms(s) || s->draining)
		return;
	log_info("session %s: the preferred portal %s has answered for %.1f s: moving back to it", s->idstr,
		 s->portals[portals_preferred(s)].addr, portals_failback_ms(s) / 1000.0);
	s->draining = true;
	s->drain_ticks = 0;
	loop_timer_start(s->d->loop, &s->drain_timer, 0, DRAIN_TICK_MS, on_drain_tick, s);
}

static void on_probe_io(void *arg, uint32_t events)
{
	(void)events;
	struct dsession *s = arg;
	int e = 0;
	socklen_t len = sizeof(e);
	if (getsockopt(s->fb_fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	probe_result(s, e == 0);
}

/* A TCP connection to the preferred portal: it answers or not by the next probe. */
static void probe_start_connect(struct dsession *s)
{
	char host[256], ports[8];
	uint16_t port;
	if (ism_parse_portal(s->portals[portals_preferred(s)].addr, host, sizeof(host), &port) < 0)
		return;
	snprintf(ports, sizeof(ports), "%u", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV}, *ai = NULL;
	if (getaddrinfo(host, ports, &hints, &ai) != 0) {
		hints.ai_flags = AI_NUMERICSERV;
		if (getaddrinfo(host, ports, &hints, &ai) != 0) {
			probe_result(s, false);
			return;
		}
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (fd < 0 || (rc < 0 && errno != EINPROGRESS)) {
		if (fd >= 0)
			close(fd);
		probe_result(s, false);
		return;
	}
	s->fb_fd = fd;
	if (rc == 0) {
		probe_result(s, true);
		return;
	}
	if (loop_watch_add(s->d->loop, &s->fb_watch, fd, EPOLLOUT, on_probe_io, s) < 0) {
		close(fd);
		s->fb_fd = -1;
		probe_result(s, false);
	}
}

static void on_failback_probe(void *arg)
{
	struct dsession *s = arg;
	if (s->state != DS_CONNECTED || s->draining)
		return;
	if (s->cur_portal == portals_preferred(s)) {
		probe_close(s);
		s->fb_up_since_ms = 0;
		return;
	}
	if (s->fb_fd >= 0) /* no answer within a probe period: not usable */
		probe_result(s, false);
	probe_start_connect(s);
}

void portals_connected(struct dsession *s)
{
	portals_stop(s);
	int i = find_portal(s, login_portal(s));
	if (i < 0) {
		/* the login went where an extra connection was (recovery through a surviving path) */
		add_portal(s, login_portal(s), -1, false);
		i = find_portal(s, login_portal(s));
	}
	if (i >= 0)
		s->cur_portal = i;
	s->round_left = s->nportals - 1;
	/* ALUA states arrive after the login: the probe timer runs whenever there is somewhere to go */
	if (s->nportals > 1 && portals_failback_ms(s) > 0)
		loop_timer_start(s->d->loop, &s->failback_timer, FAILBACK_PROBE_MS, FAILBACK_PROBE_MS, on_failback_probe,
				 s);
}

void portals_alua(struct dsession *s, bool tpgs_none, int tpg, int rel_port, const struct alua_group *groups,
		  int ngroups, const struct alua_lun_opt *opt, size_t nopt)
{
	int before = portals_preferred(s);
	s->alua_none = tpgs_none;
	if (tpgs_none || s->cur_portal >= s->nportals)
		return;
	struct dportal *cur = &s->portals[s->cur_portal];
	if (tpg >= 0)
		cur->tpg = tpg;
	if (rel_port >= 0)
		cur->rel_port = rel_port;
	/* LUs whose REPORT TARGET PORT GROUPS went unanswered keep what they had */
	for (size_t k = 0; k < nopt; k++) {
		struct dlun *l = dsess_lun(s, opt[k].lun);
		if (l) {
			l->have_alua = true;
			l->alua_opt_tpg = opt[k].tpg;
		}
	}
	if (ngroups >= 0) {
		/* each portal's group's state, for the first LU probed */
		for (int i = 0; i < s->nportals; i++) {
			struct dportal *p = &s->portals[i];
			if (p->tpg < 0)
				continue;
			p->alua_state = ALUA_UNKNOWN;
			for (int k = 0; k < ngroups; k++)
				if (groups[k].tpg == p->tpg)
					p->alua_state = groups[k].state;
		}
	}
	unsigned counts[DMN_MAX_PORTALS];
	struct alua_choice c = choose(s, -1, counts);
	int after = c.portal >= 0 ? c.portal : 0;
	if (after == before)
		return;
	log_info("session %s: ALUA: portal %s (target port group %d) is active/optimized for %u of %zu LUN(s) (%s): "
		 "preferred now", s->idstr, s->portals[after].addr, s->portals[after].tpg, c.count, nopt,
		 alua_choice_why_str(c.why));
	/* the failback period counts the answers of the portal preferred now */
	probe_close(s);
	s->fb_up_since_ms = 0;
}

const char *portals_of_group(const struct dsession *s, int tpg)
{
	for (int i = 0; i < s->nportals && tpg >= 0; i++)
		if (s->portals[i].tpg == tpg)
			return s->portals[i].addr;
	return NULL;
}

json_t *portals_choice_json(const struct dsession *s)
{
	unsigned counts[DMN_MAX_PORTALS];
	struct alua_choice c = choose(s, -1, counts);
	size_t known = 0;
	for (size_t k = 0; k < s->nluns && !s->alua_none; k++)
		known += s->luns[k].have_alua;
	int pref = c.portal >= 0 ? c.portal : 0;
	const char *rule = c.portal >= 0 ? alua_choice_why_str(c.why) : "first_portal_given";
	return json_pack("{s:s?,s:s,s:I,s:I}", "preferred", s->nportals ? s->portals[pref].addr : NULL, "rule", rule,
			 "optimized_luns", (json_int_t)c.count, "luns_with_alua_state", (json_int_t)known);
}

json_t *portals_json(const struct dsession *s)
{
	json_t *a = json_array();
	int pref = portals_preferred(s);
	for (int i = 0; i < s->nportals; i++) {
		const struct dportal *p = &s->portals[i];
		json_t *o = json_object();
		json_t *opt = json_array();
		for (size_t k = 0; k < s->nluns && p->tpg >= 0 && !s->alua_none; k++)
			if (s->luns[k].have_alua && s->luns[k].alua_opt_tpg == p->tpg)
				json_array_append_new(opt, json_integer((json_int_t)s->luns[k].lun));
		json_object_set_new(o, "address", json_string(p->addr));
		json_object_set_new(o, "target_portal_group_tag", p->tpgt >= 0 ? json_integer(p->tpgt) : json_null());
		json_object_set_new(o, "target_port_group", p->tpg >= 0 ? json_integer(p->tpg) : json_null());
		json_object_set_new(o, "relative_target_port", p->rel_port >= 0 ? json_integer(p->rel_port) : json_null());
		json_object_set_new(o, "alua_state",
				    p->alua_state >= 0 ? json_string(alua_state_str(p->alua_state)) : json_null());
		json_object_set_new(o, "optimized_luns", opt);
		json_object_set_new(o, "preferred", json_boolean(i == pref));
		json_object_set_new(o, "current", json_boolean(i == s->cur_portal));
		json_object_set_new(o, "source", json_string(p->given ? "login" : "sendtargets"));
		json_array_append_new(a, o);
	}
	return a;
}
