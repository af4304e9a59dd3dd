/* Logging in to the LUN a URL names, with the credentials and digests the options ask for. */
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "scsi/scsi.h"

static int parse_digest(const char *v, bool *want, bool *require)
{
	if (!v || strcasecmp(v, "none") == 0)
		return 0;
	if (strcasecmp(v, "crc32c") == 0) {
		*want = true;
		*require = true;
		return 0;
	}
	if (strcasecmp(v, "prefer") == 0 || strcasecmp(v, "crc32c,none") == 0) {
		*want = true;
		return 0;
	}
	return -1;
}

int cli_make_config(struct cli_opts *o, struct ism_config *cfg, const struct ism_url *u)
{
	ism_config_init(cfg);
	cfg->initiator_name = o->initiator_name;
	cfg->initiator_alias = o->alias;
	cfg->chap_user = o->chap_user;
	cfg->chap_secret = o->chap_secret;
	cfg->mutual_user = o->mutual_user;
	cfg->mutual_secret = o->mutual_secret;
	cfg->chap_algorithms = o->chap_alg;
	if (u && u->user) {
		cfg->chap_user = u->user;
		cfg->chap_secret = u->secret;
	}
	if (u && u->target_user) {
		cfg->mutual_user = u->target_user;
		cfg->mutual_secret = u->target_secret;
	}
	bool hreq = false, dreq = false;
	if (parse_digest(o->header_digest, &cfg->header_digest, &hreq) < 0)
		return cli_fail("--header-digest takes none, crc32c or prefer, not '%s'", o->header_digest);
	if (parse_digest(o->data_digest, &cfg->data_digest, &dreq) < 0)
		return cli_fail("--data-digest takes none, crc32c or prefer, not '%s'", o->data_digest);
	/* "crc32c" for one digest means: offer only CRC32C for that one. */
	cfg->require_digest = false;
	if (hreq && dreq)
		cfg->require_digest = true;
	if (o->timeout_s > 0) {
		cfg->cmd_timeout_ms = o->timeout_s * 1000;
		cfg->login_timeout_ms = o->timeout_s * 1000;
	}
	return 0;
}

struct ism_url *cli_parse_url(const char *s, bool need_target)
{
	char err[512];
	struct ism_url *u = ism_url_parse(s, err, sizeof(err));
	if (!u) {
		cli_fail("%s", err);
		return NULL;
	}
	if (need_target && !u->target) {
		cli_fail("URL '%s' names no target (iscsi://host[:port]/target-iqn/lun)", s);
		ism_url_free(u);
		return NULL;
	}
	return u;
}

/*
 * The first command after login usually meets a UNIT ATTENTION (power on / reset, I_T nexus
 * loss): take it with TEST UNIT READY so the real command sees the device's answer.
 */
void cli_settle(struct ism_session *s, uint64_t lun)
{
	for (int i = 0; i < 3 && ism_session_logged_in(s); i++) {
		struct ism_scsi_result r;
		uint8_t cdb[16];
		size_t cl = ism_cdb_test_unit_ready(cdb);
		int rc = ism_scsi(s, lun, cdb, cl, ISM_DIR_NONE, NULL, 0, &r);
		uint8_t key = 0, asc, ascq;
		if (rc == 0 || r.error != ISM_OK || r.status != SCSI_CHECK_CONDITION ||
		    !ism_sense_decode(r.sense, r.sense_len, &key, &asc, &ascq) || key != SK_UNIT_ATTENTION)
			break;
	}
	ism_session_clear_error(s);
}

struct ism_session *cli_open_session(struct cli_opts *o, const struct ism_url *u)
{
	struct ism_config cfg;
	if (cli_make_config(o, &cfg, u) != 0)
		return NULL;
	cfg.target_name = u->target;
	char err[512];
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	if (!s) {
		cli_fail("%s", err);
		return NULL;
	}
	if (ism_connect(s, u->portal) < 0) {
		cli_fail("%s", ism_session_error(s));
		ism_session_free(s);
		return NULL;
	}
	cli_settle(s, u->lun);
	return s;
}

struct ism_session *cli_open_url(struct cli_opts *o, const char *url, struct ism_url **up)
{
	struct ism_url *u = cli_parse_url(url, true);
	if (!u)
		return NULL;
	struct ism_session *s = cli_open_session(o, u);
	if (!s) {
		ism_url_free(u);
		return NULL;
	}
	*up = u;
	return s;
}

void cli_close_session(struct ism_session *s)
{
	if (ism_session_logged_in(s))
		ism_logout(s);
	ism_session_free(s);
}

int cli_get_capacity(struct ism_session *s, uint64_t lun, uint64_t *last, uint32_t *bs)
{
	if (ism_read_capacity16(s, lun, last, bs) == 0)
		return 0;
	uint32_t l10;
	if (ism_read_capacity10(s, lun, &l10, bs) == 0) {
		*last = l10;
		return 0;
	}
	return -1;
}
