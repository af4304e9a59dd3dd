/*
 * A small program built against libisthmus.so and the installed header alone (no internal
 * headers, no static libraries): it proves the shared library exports the public API and that
 * the API works through it. It checks URL parsing, CDB builders, sense decoding, session
 * creation with a good and a bad configuration, and a connect to a port nobody listens on.
 */
#include <stdio.h>
#include <string.h>

#include <isthmus/isthmus.h>

static int failures;

#define EXPECT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);           \
		}                                                                                  \
	} while (0)

int main(void)
{
	char err[256];
	struct ism_url *u = ism_url_parse("iscsi://alice%secret@[::1]:3261/iqn.2026-01.org.example:disk/3", err,
					  sizeof(err));
	EXPECT(u != NULL);
	if (u) {
		EXPECT(strcmp(u->host, "::1") == 0);
		EXPECT(u->port == 3261);
		EXPECT(strcmp(u->target, "iqn.2026-01.org.example:disk") == 0);
		EXPECT(u->has_lun && u->lun == 3);
		EXPECT(strcmp(u->user, "alice") == 0 && strcmp(u->secret, "secret") == 0);
		ism_url_free(u);
	}
	EXPECT(ism_url_parse("http://x", err, sizeof(err)) == NULL && err[0]);

	uint8_t cdb[16];
	EXPECT(ism_cdb_rw16(cdb, false, 0x1122334455ull, 8) == 16 && cdb[0] == 0x88 && cdb[13] == 8);
	uint8_t sense[18] = {0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00};
	char text[200];
	EXPECT(strcmp(ism_sense_text(sense, sizeof(sense), text, sizeof(text)),
		      "ILLEGAL REQUEST / LBA OUT OF RANGE (0x21/0x00)") == 0);

	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = "not a name";
	cfg.target_name = "iqn.2026-01.org.example:disk";
	EXPECT(ism_session_new(&cfg, err, sizeof(err)) == NULL && strstr(err, "bad initiator name"));

	cfg.initiator_name = "iqn.2026-01.org.example:shared";
	cfg.login_timeout_ms = 2000;
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	EXPECT(s != NULL);
	if (s) {
		EXPECT(!ism_session_logged_in(s));
		EXPECT(ism_session_connection_info(s, NULL, 0) == 0);
		EXPECT(ism_add_connection_async(s, "127.0.0.1:1", NULL, NULL) == ISM_ERR_INVALID);
		EXPECT(ism_session_service(s, -1, 0) == ISM_SERVICE_OK);
		/* port 1 on loopback: nobody listens, the connect is refused at once */
		EXPECT(ism_connect(s, "127.0.0.1:1") < 0);
		EXPECT(strstr(ism_session_error(s), "127.0.0.1:1") != NULL);
		ism_session_free(s);
	}
	if (failures)
		fprintf(stderr, "example_shared: %d failure(s)\n", failures);
	else
		printf("example_shared: libisthmus.so works\n");
	return failures ? 1 : 0;
}
