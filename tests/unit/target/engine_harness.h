/*
 * A fake initiator for unit tests of the target's protocol engine. The harness builds a server
 * from a configuration in memory (one target with one memory LUN, optionally a CHAP account),
 * hands the target's end of a socketpair to it as a new connection (more on request, for sessions
 * of several connections), and drives its event loop
 * from the test: every send steps the loop until the target is idle, so each test runs
 * single-threaded and in a fixed order. Tests speak PDUs only; everything that knows the
 * target's internals stays in engine_harness.c.
 */
#ifndef ISTHMUS_TESTS_UNIT_TARGET_ENGINE_HARNESS_H
#define ISTHMUS_TESTS_UNIT_TARGET_ENGINE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/pdu.h"
#include "proto/text.h"

#define EH_TARGET "iqn.2026-11.org.isthmus:engine"
#define EH_INITIATOR "iqn.2026-11.org.isthmus:engine-initiator"
#define EH_CHAP_USER "engine-user"
#define EH_CHAP_SECRET "engine-secret-0123"
/* EH_INITIATOR's own account on the target (an [initiator] section), when eh_opts asks for it. */
#define EH_OWN_USER "engine-own"
#define EH_OWN_SECRET "engine-own-secret-4567"
#define EH_LUN_BYTES (1024u * 1024u) /* LUN 0, 512-byte blocks */

/* The first CmdSN and ExpStatSN the login helper uses, so tests know every number. */
#define EH_CMDSN0 0x100u
#define EH_STATSN0 0x2000u

/* A literal of NUL-separated pairs "K=V\0K=V" as pointer and length (its last NUL included). */
#define EH_KEYS(lit) (lit), (uint32_t)sizeof(lit)

struct eh;

struct eh_opts {
	bool chap;                  /* the target asks for EH_CHAP_USER / EH_CHAP_SECRET */
	bool own_account;           /* EH_INITIATOR must prove EH_OWN_USER / EH_OWN_SECRET instead */
	unsigned max_commands;      /* command slots per session; 0: the configured default */
	const char *target_params;  /* "K=V\0K=V\0\0": the target's negotiation overrides, or NULL */
	unsigned max_erl;           /* the target's max-error-recovery-level (0 by default) */
	uint64_t max_data_connection; /* the target's max-data-per-connection; 0: the configured default */
};

struct eh_pdu {
	struct bhs b;
	uint8_t raw[BHS_LEN];
	uint8_t *data; /* data segment (no padding), NULL when empty */
	uint32_t len;
};

/* The server and its first connection (connection 0, CID 1). */
struct eh *eh_new(const struct eh_opts *opts);
void eh_free(struct eh *h);

/* Connections of one fake initiator: each has its own CID (index + 1), StatSN and digests. */
#define EH_MAX_CONNS 4
/* Open another connection and make it the current one; returns its index. */
unsigned eh_connect(struct eh *h);
/* Make a connection the current one: eh_send, eh_recv and the builders use it. */
void eh_use(struct eh *h, unsigned conn);
/* Close the current connection's end, as an initiator that goes away. */
void eh_disconnect(struct eh *h);

/*
 * Digests in force from now on (after a login that negotiated them): every PDU sent carries them
 * and every PDU received is checked against them.
 */
void eh_set_digests(struct eh *h, bool header, bool data);
/* Encode, pad and send one PDU (DataSegmentLength = len), then let the target work. */
void eh_send(struct eh *h, struct bhs *b, const void *data, uint32_t len);
/* The same with a wrong header digest (bad_header) or data digest (bad_data). */
void eh_send_bad_digest(struct eh *h, struct bhs *b, const void *data, uint32_t len, bool bad_header,
			bool bad_data);
/*
 * From now on every PDU eh_send and its kin send goes as its first `first` bytes, the target
 * working on them, then the rest (0: whole). Whether the target was reading the last such PDU's
 * data straight into a buffer in between: eh_split_placed.
 */
void eh_set_split(struct eh *h, size_t first);
bool eh_split_placed(struct eh *h);
/* Data buffer bytes the target counts for the current connection (tasks, placed data). */
uint64_t eh_target_buffered(struct eh *h);
/* Send bytes as they are, then let the target work. */
void eh_send_raw(struct eh *h, const void *buf, size_t len);
/* The next PDU the target sent: 0, or -1 when there is none (the target is idle). */
int eh_recv(struct eh *h, struct eh_pdu *p);
/* How many complete PDUs wait to be read. */
unsigned eh_pending(struct eh *h);
/* True once the target has closed its end and everything it sent has been read. */
bool eh_closed(struct eh *h);
void eh_pdu_free(struct eh_pdu *p);

/* The pairs of a text data segment (checked to parse). */
struct text_list eh_keys(const struct eh_pdu *p);

/* One Login Request: ISID fixed, CID the connection's, TSIH 0 or the joined session's. */
void eh_login_req(struct eh *h, int csg, int nsg, bool transit, bool cont, uint32_t cmdsn, uint32_t expstatsn,
		  const void *text, uint32_t len);
/*
 * A whole login without CHAP: security stage (AuthMethod=None) with the names, then the
 * operational stage with op_keys, into full feature phase. CmdSN EH_CMDSN0, first ExpStatSN
 * EH_STATSN0. The last response's keys go to *final_keys when not NULL. Returns the TSIH, 0 on
 * failure.
 */
uint16_t eh_login(struct eh *h, const char *op_keys, uint32_t op_len, struct text_list *final_keys);

/*
 * The same on the current connection of a session eh_login created: a login with its TSIH
 * (joining it), CmdSN the session's next, first ExpStatSN as given. Returns the TSIH, 0 on failure.
 */
uint16_t eh_join(struct eh *h, uint32_t cmdsn, uint32_t expstatsn, const char *op_keys, uint32_t op_len);

/* A SCSI Command PDU (16-byte CDB) with the given flags; data is immediate data. */
void eh_scsi_cmd(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate, bool final, bool read, bool write,
		 uint32_t edtl, const uint8_t cdb[16], const void *data, uint32_t len);
/* WRITE(10) / READ(10) CDBs of LUN 0. */
void eh_cdb_rw10(uint8_t cdb[16], bool write, uint32_t lba, uint16_t blocks);
/*
 * TEST UNIT READY as the session's first command: CHECK CONDITION with UNIT ATTENTION, POWER ON
 * OR RESET OCCURRED (29h) and fixed-format sense, checked. Takes one CmdSN and one StatSN.
 */
void eh_clear_unit_attention(struct eh *h, uint32_t itt, uint32_t cmdsn);
/*
 * A session ready for commands: eh_new, eh_login with op_keys, the unit attention cleared. The
 * next CmdSN is EH_CMDSN1 and the next StatSN EH_STATSN1.
 */
struct eh *eh_start(const struct eh_opts *opts, const char *op_keys, uint32_t op_len);
#define EH_CMDSN1 (EH_CMDSN0 + 1u)
#define EH_STATSN1 (EH_STATSN0 + 3u)

/* TEST UNIT READY of LUN 0. */
void eh_tur(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate);
/* The next PDU is a SCSI Response for itt with this status and these sequence numbers. */
void eh_expect_status(struct eh *h, uint32_t itt, uint8_t status, uint32_t statsn, uint32_t expcmdsn,
		      uint32_t maxcmdsn);
/* The next PDU is CHECK CONDITION for itt with fixed-format sense key/ASC/ASCQ. */
void eh_expect_sense(struct eh *h, uint32_t itt, uint8_t key, uint8_t asc, uint8_t ascq, uint32_t statsn);
/* NOP-Out with this ITT (TTT reserved); data is the ping data. */
void eh_nop_out(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate, const void *data, uint32_t len);
/* A Logout Request with this reason for connection cid (ExpStatSN left 0). */
void eh_logout(struct eh *h, uint32_t itt, uint32_t cmdsn, bool immediate, uint8_t reason, uint16_t cid);
/* A Data-Out PDU. */
void eh_data_out(struct eh *h, uint32_t itt, uint32_t ttt, uint32_t datasn, uint32_t offset, bool final,
		 const void *data, uint32_t len);

#endif
