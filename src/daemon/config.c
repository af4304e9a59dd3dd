/* The daemon's configuration file and the login options of a session (with their JSON form). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "proto/isns.h"
#include "util/parse.h"
#include "util/sbuf.h"

/* Faster retries than this would only hammer a target that is down. */
#define MIN_RECONNECT_INTERVAL_MS 100

void dmn_config_defaults(struct dmn_config *c)
{
	memset(c, 0, sizeof(*c));
	c->reconnect_interval_ms = 5000;
	c->removal_latency_ms = 60000;
	c->nop_interval_ms = 5000;
	c->nop_timeout_ms = 10000;
	c->login_timeout_ms = 15000;
	c->failback_ms = 30000;
	c->queue_limit_bytes = 64u << 20;
	c->nbd_max_clients = 32;
	c->fuse = true;
	c->nbd = true;
	c->block = true;
	c->devices_dir = xstrdup("/run/isthmus/devices");
	c->nbd_dir = xstrdup("/run/isthmus/nbd");
}

void dmn_config_free(struct dmn_config *c)
{
	free(c->initiator_name);
	free(c->initiator_alias);
	free(c->devices_dir);
	free(c->nbd_dir);
	free(c->isns);
	memset(c, 0, sizeof(*c));
}

static bool parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
		*out = false;
	else
		return false;
	return true;
}

int dmn_config_load(struct dmn_config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	char line[1024];
	int lineno = 0, rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *l = trim(line);
		if (!*l || *l == '[') /* sections are allowed and ignored */
			continue;
		char *eq = strchr(l, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
			rc = -1;
			break;
		}
		*eq = 0;
		char *k = trim(l), *v = trim(eq + 1);
		int *ms = NULL;
		bool *flag = NULL;
		if (!strcmp(k, "initiator-name")) {
			free(c->initiator_name);
			c->initiator_name = xstrdup(v);
		} else if (!strcmp(k, "initiator-alias")) {
			free(c->initiator_alias);
			c->initiator_alias = xstrdup(v);
		} else if (!strcmp(k, "devices-dir")) {
			free(c->devices_dir);
			c->devices_dir = xstrdup(v);
		} else if (!strcmp(k, "nbd-dir")) {
			free(c->nbd_dir);
			c->nbd_dir = xstrdup(v);
		} else if (!strcmp(k, "isns")) {
			char addr[64], why[160];
			uint16_t port;
			if (isns_parse_server(v, addr, sizeof(addr), &port, why, sizeof(why)) < 0) {
				snprintf(err, errlen, "%s:%d: isns: %s", path, lineno, why);
				rc = -1;
			} else {
				free(c->isns);
				c->isns = xstrdup(v);
			}
		} else if (!strcmp(k, "reconnect-interval"))
			ms = &c->reconnect_interval_ms;
		else if (!strcmp(k, "removal-latency"))
			ms = &c->removal_latency_ms;
		else if (!strcmp(k, "nop-interval"))
			ms = &c->nop_interval_ms;
		else if (!strcmp(k, "nop-timeout"))
			ms = &c->nop_timeout_ms;
		else if (!strcmp(k, "login-timeout"))
			ms = &c->login_timeout_ms;
		else if (!strcmp(k, "failback"))
			ms = &c->failback_ms;
		else if (!strcmp(k, "fuse"))
			flag = &c->fuse;
		else if (!strcmp(k, "nbd"))
			flag = &c->nbd;
		else if (!strcmp(k, "block"))
			flag = &c->block;
		else if (!strcmp(k, "nbd-max-clients")) {
			uint64_t n;
			if (parse_uint(v, 10, 1, 65536, &n) < 0) {
				snprintf(err, errlen, "%s:%d: nbd-max-clients: want a number from 1 to 65536", path, lineno);
				rc = -1;
			} else {
				c->nbd_max_clients = (unsigned)n;
			}
		} else if (!strcmp(k, "error-recovery-level")) {
			uint64_t n;
			if (parse_uint(v, 10, 0, 2, &n) < 0) {
				snprintf(err, errlen, "%s:%d: error-recovery-level: want 0, 1 or 2", path, lineno);
				rc = -1;
			} else {
				c->error_recovery_level = (unsigned)n;
			}
		} else if (!strcmp(k, "queue-limit")) {
			if (parse_size(v, &c->queue_limit_bytes) < 0) {
				snprintf(err, errlen, "%s:%d: queue-limit: want a size like 64M", path, lineno);
				rc = -1;
			}
		} else {
			snprintf(err, errlen, "%s:%d: unknown setting '%s'", path, lineno, k);
			rc = -1;
		}
		if (ms) {
			uint64_t v_ms;
			if (parse_duration_ms(v, &v_ms) < 0 || v_ms > INT_MAX) {
				snprintf(err, errlen, "%s:%d: %s: want seconds like 5 or 2.5", path, lineno, k);
				rc = -1;
			} else {
				*ms = (int)v_ms;
			}
		}
		if (flag && !parse_bool(v, flag)) {
			snprintf(err, errlen, "%s:%d: %s: want yes or no", path, lineno, k);
			rc = -1;
		}
	}
	fclose(f);
	if (rc == 0 && c->reconnect_interval_ms < MIN_RECONNECT_INTERVAL_MS)
		c->reconnect_interval_ms = MIN_RECONNECT_INTERVAL_MS;
	return rc;
}

/* ------------------------------------------------------------------------------------------ */

const char *dsess_type_str(enum dsess_type t)
{
	switch (t) {
	case DS_TYPE_INFORMATIONAL: return "informational";
	case DS_TYPE_DATA: return "data";
	case DS_TYPE_BOOT: return "boot";
	}
	return "?";
}

int dsess_type_parse(const char *s)
{
	if (!strcmp(s, "informational") || !strcmp(s, "info"))
		return DS_TYPE_INFORMATIONAL;
	if (!strcmp(s, "data"))
		return DS_TYPE_DATA;
	if (!strcmp(s, "boot"))
		return DS_TYPE_BOOT;
	return -1;
}

const char *dsess_state_str(enum dsess_state st)
{
	switch (st) {
	case DS_LOGGING_IN: return "logging_in";
	case DS_CONNECTED: return "connected";
	case DS_RECONNECTING: return "reconnecting";
	case DS_FAILED: return "failed";
	case DS_LOGGING_OUT: return "logging_out";
	case DS_GONE: return "logged_out";
	}
	return "?";
}

void hex_isid(const uint8_t isid[6], char out[13])
{
	for (int i = 0; i < 6; i++)
		snprintf(out + 2 * i, 3, "%02x", isid[i]);
}

bool parse_isid(const char *s, uint8_t isid[6])
{
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	if (strlen(s) != 12)
		return false;
	for (int i = 0; i < 6; i++) {
		unsigned v;
		char two[3] = {s[2 * i], s[2 * i + 1], 0};
		if (!isxdigit((unsigned char)two[0]) || !isxdigit((unsigned char)two[1]) || sscanf(two, "%x", &v) != 1)
			return false;
		isid[i] = (uint8_t)v;
	}
	return true;
}

json_t *json_text(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	char *t = xstrdup(s);
	for (char *p = t; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	j = json_string(t);
	free(t);
	return j;
}

static char *dup_opt(const char *s) { return s ? xstrdup(s) : NULL; }

void dsess_opts_free(struct dsess_opts *o)
{
	free(o->target);
	free(o->portal);
	free(o->chap_user);
	secret_free(o->chap_secret);
	free(o->mutual_user);
	secret_free(o->mutual_secret);
	free(o->chap_algorithms);
	for (int i = 0; i < o->nportals; i++)
		free(o->portals[i]);
	memset(o, 0, sizeof(*o));
}

static const struct {
	uint8_t code;
	const char *name;
} pr_types[] = {
	{DS_PR_WE, "we"},       {DS_PR_EA, "ea"},       {DS_PR_WE_RO, "we-ro"},
	{DS_PR_EA_RO, "ea-ro"}, {DS_PR_WE_AR, "we-ar"}, {DS_PR_EA_AR, "ea-ar"},
};

const char *ds_pr_type_name(uint8_t type)
{
	for (size_t i = 0; i < sizeof(pr_types) / sizeof(pr_types[0]); i++) {
		if (pr_types[i].code == type)
			return pr_types[i].name;
	}
	return NULL;
}

uint8_t ds_pr_type_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof(pr_types) / sizeof(pr_types[0]); i++) {
		if (!strcmp(pr_types[i].name, name))
			return pr_types[i].code;
	}
	return 0;
}

void dsess_opts_copy(struct dsess_opts *dst, const struct dsess_opts *src)
{
	*dst = *src;
	dst->target = dup_opt(src->target);
	dst->portal = dup_opt(src->portal);
	dst->chap_user = dup_opt(src->chap_user);
	dst->chap_secret = dup_opt(src->chap_secret);
	dst->mutual_user = dup_opt(src->mutual_user);
	dst->mutual_secret = dup_opt(src->mutual_secret);
	dst->chap_algorithms = dup_opt(src->chap_algorithms);
	for (int i = 0; i < src->nportals; i++)
		dst->portals[i] = xstrdup(src->portals[i]);
}

json_t *dsess_opts_to_json(const struct dsess_opts *o, bool with_secrets)
{
	json_t *j = json_object();
	json_object_set_new(j, "target", json_string(o->target ? o->target : ""));
	json_object_set_new(j, "portal", json_string(o->portal ? o->portal : ""));
	json_object_set_new(j, "type", json_string(dsess_type_str(o->type)));
	if (o->nportals > 1) {
		json_t *a = json_array();
		for (int i = 0; i < o->nportals; i++)
			json_array_append_new(a, json_string(o->portals[i]));
		json_object_set_new(j, "portals", a);
	}
	if (o->failback_ms >= 0)
		json_object_set_new(j, "failback", json_real(o->failback_ms / 1000.0));
	if (o->chap_user)
		json_object_set_new(j, "chap_user", json_string(o->chap_user));
	if (o->chap_secret)
		json_object_set_new(j, "chap_secret", json_string(with_secrets ? o->chap_secret : "********"));
	if (o->mutual_user)
		json_object_set_new(j, "mutual_user", json_string(o->mutual_user));
	if (o->mutual_secret && !o->mutual_from_store)
		json_object_set_new(j, "mutual_secret", json_string(with_secrets ? o->mutual_secret : "********"));
	if (o->mutual_from_store)
		json_object_set_new(j, "mutual_from_store", json_true());
	if (o->chap_algorithms)
		json_object_set_new(j, "chap_algorithms", json_string(o->chap_algorithms));
	json_object_set_new(j, "header_digest", json_boolean(o->header_digest));
	json_object_set_new(j, "data_digest", json_boolean(o->data_digest));
	if (o->removal_latency_ms >= 0)
		json_object_set_new(j, "removal_latency", json_real(o->removal_latency_ms / 1000.0));
	if (o->max_recv_dsl)
		json_object_set_new(j, "max_recv_data_segment_length", json_integer(o->max_recv_dsl));
	if (o->max_burst_length)
		json_object_set_new(j, "max_burst_length", json_integer(o->max_burst_length));
	if (o->first_burst_length)
		json_object_set_new(j, "first_burst_length", json_integer(o->first_burst_length));
	if (o->initial_r2t >= 0)
		json_object_set_new(j, "initial_r2t", json_boolean(o->initial_r2t));
	if (o->immediate_data >= 0)
		json_object_set_new(j, "immediate_data", json_boolean(o->immediate_data));
	if (o->pr_key_set) {
		char k[24];
		snprintf(k, sizeof(k), "0x%016" PRIx64, o->pr_key);
		json_object_set_new(j, "pr_key", json_string(k));
	}
	if (o->pr_type)
		json_object_set_new(j, "pr_type", json_string(ds_pr_type_name(o->pr_type)));
	if (o->isid_set) {
		char h[13];
		hex_isid(o->isid, h);
		json_object_set_new(j, "isid", json_string(h));
	}
	return j;
}

static int get_str(json_t *j, const char *key, char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "'%s' must be a string", key);
		return -1;
	}
	free(*out);
	*out = json_string_length(v) ? xstrdup(json_string_value(v)) : NULL;
	return 0;
}

static int get_bool(json_t *j, const char *key, bool *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		snprintf(err, errlen, "'%s' must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

static int get_u32(json_t *j, const char *key, uint32_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0xffffffffLL) {
		snprintf(err, errlen, "'%s' must be a non-negative integer", key);
		return -1;
	}
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

static bool portal_ok(const char *p)
{
	char host[256];
	uint16_t port;
	return ism_parse_portal(p, host, sizeof(host), &port) == 0;
}

/*
 * "portals": every portal of the target, the preferred one first. Without "portal" the first of
 * them is the login portal; with it, "portal" is put first when the list lacks it.
 */
static int get_portals(struct dsess_opts *o, json_t *j, char *err, size_t errlen)
{
	json_t *a = json_object_get(j, "portals");
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a)) {
		snprintf(err, errlen, "'portals' must be an array of \"host[:port]\" strings");
		return -1;
	}
	if (o->portal)
		o->portals[o->nportals++] = xstrdup(o->portal);
	for (size_t i = 0; i < json_array_size(a); i++) {
		const char *p = json_string_value(json_array_get(a, i));
		if (!p || !portal_ok(p)) {
			snprintf(err, errlen, "'portals': bad portal (want host[:port])");
			return -1;
		}
		bool dup = false;
		for (int k = 0; k < o->nportals; k++)
			dup |= !strcmp(o->portals[k], p);
		if (dup)
			continue;
		if (o->nportals >= DMN_MAX_PORTALS) {
			snprintf(err, errlen, "'portals': at most %d portals", DMN_MAX_PORTALS);
			return -1;
		}
		o->portals[o->nportals++] = xstrdup(p);
	}
	if (!o->portal && o->nportals)
		o->portal = xstrdup(o->portals[0]);
	return 0;
}

int dsess_opts_from_json(struct dsess_opts *o, json_t *j, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->removal_latency_ms = -1;
	o->failback_ms = -1;
	o->initial_r2t = -1;
	o->immediate_data = -1;
	o->type = DS_TYPE_DATA;
	if (!json_is_object(j)) {
		snprintf(err, errlen, "params must be an object");
		return -1;
	}
	if (get_str(j, "target", &o->target, err, errlen) || get_str(j, "portal", &o->portal, err, errlen) ||
	    get_str(j, "chap_user", &o->chap_user, err, errlen) ||
	    get_str(j, "chap_secret", &o->chap_secret, err, errlen) ||
	    get_str(j, "mutual_user", &o->mutual_user, err, errlen) ||
	    get_str(j, "mutual_secret", &o->mutual_secret, err, errlen) ||
	    get_str(j, "chap_algorithms", &o->chap_algorithms, err, errlen) ||
	    get_bool(j, "header_digest", &o->header_digest, err, errlen) ||
	    get_bool(j, "data_digest", &o->data_digest, err, errlen) ||
	    get_bool(j, "mutual_from_store", &o->mutual_from_store, err, errlen) ||
	    get_u32(j, "max_recv_data_segment_length", &o->max_recv_dsl, err, errlen) ||
	    get_u32(j, "max_burst_length", &o->max_burst_length, err, errlen) ||
	    get_u32(j, "first_burst_length", &o->first_burst_length, err, errlen))
		goto bad;
	json_t *v = json_object_get(j, "type");
	if (v && !json_is_null(v)) {
		int t = json_is_string(v) ? dsess_type_parse(json_string_value(v)) : -1;
		if (t < 0) {
			snprintf(err, errlen, "'type' must be data, informational or boot");
			goto bad;
		}
		o->type = (enum dsess_type)t;
	}
	v = json_object_get(j, "removal_latency");
	if (v && !json_is_null(v)) {
		if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 86400 * 365) {
			snprintf(err, errlen, "'removal_latency' must be seconds >= 0");
			goto bad;
		}
		o->removal_latency_ms = (int)(json_number_value(v) * 1000 + 0.5);
	}
	v = json_object_get(j, "failback");
	if (v && !json_is_null(v)) {
		if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 86400 * 365) {
			snprintf(err, errlen, "'failback' must be seconds >= 0");
			goto bad;
		}
		o->failback_ms = (int)(json_number_value(v) * 1000 + 0.5);
	}
	if (get_portals(o, j, err, errlen) < 0)
		goto bad;
	v = json_object_get(j, "pr_key");
	if (v && !json_is_null(v)) {
		const char *k = json_string_value(v);
		char *end = NULL;
		errno = 0;
		unsigned long long key = k ? strtoull(k, &end, 16) : 0;
		if (!k || !*k || *k == '-' || *k == '+' || errno || *end || !key) {
			snprintf(err, errlen, "'pr_key' must be a non-zero hexadecimal number of at most 16 digits");
			goto bad;
		}
		o->pr_key = key;
		o->pr_key_set = true;
	}
	v = json_object_get(j, "pr_type");
	if (v && !json_is_null(v)) {
		o->pr_type = ds_pr_type_parse(json_string_value(v));
		if (!o->pr_type) {
			snprintf(err, errlen, "'pr_type' must be one of we, ea, we-ro, ea-ro, we-ar, ea-ar");
			goto bad;
		}
		if (!o->pr_key_set) {
			snprintf(err, errlen, "'pr_type' needs 'pr_key': the reservation is taken with that key");
			goto bad;
		}
	}
	bool b = false;
	v = json_object_get(j, "initial_r2t");
	if (v && !json_is_null(v)) {
		if (get_bool(j, "initial_r2t", &b, err, errlen))
			goto bad;
		o->initial_r2t = b;
	}
	v = json_object_get(j, "immediate_data");
	if (v && !json_is_null(v)) {
		if (get_bool(j, "immediate_data", &b, err, errlen))
			goto bad;
		o->immediate_data = b;
	}
	v = json_object_get(j, "isid");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || !parse_isid(json_string_value(v), o->isid)) {
			snprintf(err, errlen, "'isid' must be 12 hex digits");
			goto bad;
		}
		o->isid_set = true;
	}
	if (!o->target) {
		snprintf(err, errlen, "'target' is required");
		goto bad;
	}
	if (!o->portal) {
		snprintf(err, errlen, "'portal' is required");
		goto bad;
	}
	char host[256];
	uint16_t port;
	if (ism_parse_portal(o->portal, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "bad portal '%s' (want host[:port])", o->portal);
		goto bad;
	}
	if ((o->chap_user == NULL) != (o->chap_secret == NULL)) {
		snprintf(err, errlen, "CHAP needs both chap_user and chap_secret");
		goto bad;
	}
	return 0;
bad:
	dsess_opts_free(o);
	return -1;
}
