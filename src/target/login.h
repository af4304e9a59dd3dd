/*
 * The target side of login (RFC 7143 6.3, 11.12-11.13): the state one connection's login keeps
 * until full feature phase.
 */
#ifndef ISTHMUS_TARGET_LOGIN_H
#define ISTHMUS_TARGET_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/chap.h"
#include "proto/params.h"
#include "proto/pdu.h"
#include "util/sbuf.h"

struct conn;

/* How far one connection's login has come, in the order it must happen (RFC 7143 6.3). */
enum login_phase {
	LOGIN_AWAIT_FIRST,    /* no Login Request yet: ISID, TSIH and CID not known */
	LOGIN_AWAIT_NAMES,    /* first request seen; its text (names, session type) not checked yet */
	LOGIN_AUTH_NEEDED,    /* names and access checked; no authentication method settled */
	LOGIN_CHAP,           /* AuthMethod=CHAP chosen; the exchange is under way */
	LOGIN_AUTHENTICATED,  /* security done, or none required */
};

/* Login negotiation state of one connection. */
struct login_state {
	int stage;                /* current stage (CSG) */
	enum login_phase phase;
	uint8_t isid[6];
	uint16_t tsih;
	uint32_t itt;
	uint16_t cid;
	uint32_t cmdsn;
	uint32_t expstatsn;         /* of the first request: the old connection's, on a reinstatement */
	char initiator_name[224];
	char initiator_alias[256];
	char target_name[224];
	enum session_type session_type;
	/*
	 * No pointers into the session table or the configuration: either may change while the login
	 * goes on (another login, a logout, a reconfiguration). The session joined is found again by
	 * its TSIH, the target by its name, and the CHAP account is a copy.
	 */
	uint64_t cfg_generation;  /* configuration the access checks were made against */
	struct negotiator neg;
	struct chap_target chap;
	struct chap_credentials cred; /* points at the copies below */
	char *auth_user, *auth_secret, *auth_mutual_user, *auth_mutual_secret;
	struct sbuf pending;      /* text of a request spread over several PDUs (C bit) */
	struct sbuf reply;        /* response text not yet sent (C bit, RFC 7143 11.13) */
	size_t reply_off;
	bool reply_transit;       /* the last part of the pending reply carries T=1 */
	int reply_nsg;
	uint8_t version_max;
};

void login_handle(struct conn *c, const struct bhs *b, const uint8_t *data, uint32_t len);
/* A Login Request whose header is malformed: Login reject (initiator error), then the close. */
void login_refuse_header(struct conn *c, const struct bhs *b, const char *why);
void login_free(struct conn *c);
/* ExpCmdSN and MaxCmdSN for a Login Response: the window the session will have. */
void login_window(struct conn *c, uint32_t *expcmdsn, uint32_t *maxcmdsn);

#endif
