/*
 * isthmus-threads-stress: shared definitions of the driver (threads_stress.c) and of its pure
 * checks (threads_stress_check.c: the persistent reservation model, the answers of PERSISTENT
 * RESERVE IN, the data patterns of the verified ranges).
 */
#ifndef ISTHMUS_THREADS_STRESS_H
#define ISTHMUS_THREADS_STRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <isthmus/isthmus.h>

#define ST_MAX_SESSIONS 16

/* PERSISTENT RESERVE OUT service actions and reservation types the driver uses (SPC-4 6.16). */
enum st_pr_sa {
	PRO_REGISTER = 0x00,
	PRO_RESERVE = 0x01,
	PRO_RELEASE = 0x02,
	PRO_CLEAR = 0x03,
	PRO_PREEMPT = 0x04,
	PRO_REGISTER_IGNORE = 0x06,
};
enum st_pr_in_sa { PRI_READ_KEYS = 0x00, PRI_READ_RESERVATION = 0x01, PRI_READ_FULL_STATUS = 0x03 };
enum st_pr_type { PRT_EA = 3, PRT_WE_RO = 5, PRT_EA_RO = 6 };

/* What a command's answer amounts to for the checks. */
enum st_outcome {
	OUT_GOOD,
	OUT_CONFLICT,     /* RESERVATION CONFLICT */
	OUT_UA_RESET,     /* UNIT ATTENTION 29h/xx: power on or reset */
	OUT_UA_OTHER,     /* UNIT ATTENTION 2Ah/xx (reservations) or 2Fh/00 */
	OUT_ILLEGAL_26_04, /* INVALID RELEASE OF PERSISTENT RESERVATION */
	OUT_BUSY,         /* BUSY or TASK SET FULL: not run, allowed under load */
	OUT_ABORTED,      /* ended by task management (ABORT TASK, LU RESET) */
	OUT_BAD,          /* anything else: always a violation */
};
enum st_outcome st_classify(const struct ism_scsi_result *r);
const char *st_outcome_name(enum st_outcome o);

/*
 * The reservation state as the driver knows it while persistent reservation commands are
 * serialized (one PERSISTENT RESERVE OUT in flight in the whole driver): registrations and the
 * reservation, sessions by index. Keys are fixed per session, so a key names its session.
 */
struct st_pr_model {
	bool known;
	bool registered[ST_MAX_SESSIONS];
	bool held;
	int holder;
	uint8_t type;
};

uint64_t st_key_of(int session);
int st_session_of_key(uint64_t key, int nsessions); /* -1: not a key of this run */
bool st_type_used(uint8_t type);

/* What SPC-4 says a PERSISTENT RESERVE OUT does to the model: the expected outcome, and the model after. */
enum st_outcome st_pr_out_predict(const struct st_pr_model *m, int me, uint8_t sa, uint8_t type, uint64_t sark,
				  int nsessions, struct st_pr_model *after);
/* Whether a READ (write false) or WRITE from session s meets RESERVATION CONFLICT under m. */
bool st_data_conflicts(const struct st_pr_model *m, int s, bool write);

/* A parsed READ KEYS / READ RESERVATION / READ FULL STATUS answer. */
struct st_pr_in {
	uint32_t generation;
	size_t nkeys;
	uint64_t keys[64];
	bool held;
	uint64_t holder_key;
	uint8_t type;
	/* READ FULL STATUS: the initiator port of each key, and the holder's index in keys (-1 none). */
	char ports[64][256];
	int holder_index;
};
/* Parse an answer of len bytes; false with why set when it is malformed. */
bool st_parse_pr_in(uint8_t sa, const uint8_t *buf, uint32_t len, struct st_pr_in *out, char *why, size_t whylen);
/*
 * Checks of one answer on its own: keys of this run, no key twice, a valid type, the holder a key
 * of this run, for READ FULL STATUS each key on the initiator port of its session and at most one
 * holder. ports[i] is the initiator port name of session i.
 */
bool st_pr_in_consistent(uint8_t sa, const struct st_pr_in *in, int nsessions, char ports[][256], char *why,
			 size_t whylen);
/* The model an answer of READ FULL STATUS describes. */
void st_model_from_full_status(const struct st_pr_in *in, int nsessions, struct st_pr_model *m);
/* Whether an answer agrees with a known model; why names the difference. */
bool st_pr_in_matches(uint8_t sa, const struct st_pr_in *in, const struct st_pr_model *m, int nsessions, char *why,
		      size_t whylen);

/* The data pattern of one block of a verified slot: (run salt, session, slot, generation, block). */
void st_fill_block(uint8_t *p, uint32_t bs, uint64_t salt, int session, uint32_t slot, uint32_t gen, uint32_t block);
bool st_block_is(const uint8_t *p, uint32_t bs, uint64_t salt, int session, uint32_t slot, uint32_t gen,
		 uint32_t block);

#endif
