/*
 * isthmus-threads-stress: shared definitions of the driver (threads_stress.c: options, set-up and
 * the end; threads_stress_send.c: the load and its loop; threads_stress_answer.c: the checks of
 * each answer) and of its pure checks (threads_stress_check.c: the persistent reservation model,
 * the answers of PERSISTENT RESERVE IN, the data patterns of the verified ranges).
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

/* "registered { 0 3 }, held by session 3 type 5" */
void st_describe_model(const struct st_pr_model *m, int nsessions, char *buf, size_t len);

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

/* ---- the driver: sessions, their commands, and what the whole run knows ------------------- */

#define DEPTH 6            /* commands one session keeps in flight */
#define NTMF 12            /* task management requests of one session at once */
#define SLOT_BLOCKS 8      /* blocks of one verified slot */
#define OWN_SLOTS 128      /* verified slots of each session */
#define SHARED_SLOTS 64    /* slots of the shared range */
#define MAX_UNCERTAIN 6    /* aborted writes remembered per slot before it is left unverified */
#define PR_IN_ALLOC 8192
#define CHECKED_MS 1500    /* phase lengths */
#define FREE_MS 1000
#define RESET_EVERY_MS 1200 /* least time between two LU RESETs */
#define EH_DELAY_MS 300    /* time given to commands a LU RESET may have ended before asking */

enum phase { PH_CHECKED, PH_FREE, PH_SETTLE, PH_SYNC };
enum cmd_kind { K_WRITE_OWN, K_READ_OWN, K_WRITE_SHARED, K_READ_SHARED, K_TUR, K_PR_OUT, K_PR_IN };

struct sess;
struct tmf;

struct cmd {
	struct sess *s;
	bool busy;
	uint64_t seq;              /* order of sending in its session (so CmdSN order) */
	enum cmd_kind kind;
	struct ism_task *task;
	uint64_t sent_ms;
	uint32_t slot, gen, blocks;
	uint64_t lba;
	uint8_t sa, type;
	uint64_t sark;
	bool reserve_like;         /* RESERVE or PREEMPT: may take a reservation */
	uint64_t pr_seq;           /* PERSISTENT RESERVE OUT commands sent before this one was sent (or by it) */
	bool exact;                /* sent while the state was known and no PERSISTENT RESERVE OUT in flight */
	struct st_pr_model before, after;
	enum st_outcome expect;
	bool expect_conflict;
	bool could_conflict;       /* a reservation could be held at some time while it was in flight */
	uint32_t gen_floor;        /* highest generation answered before this was sent */
	bool sync, pair_rr;
	struct tmf *abort;
	uint8_t *buf;
	uint32_t len;
	char desc[120];
};

struct tmf {
	struct sess *s;
	bool busy;
	enum ism_tmf fn;
	struct cmd *ref;
	uint64_t ref_seq;
	uint64_t sent_ms;
	bool eh;
};

struct slot {
	bool busy;
	uint32_t acked;
	uint32_t unc[MAX_UNCERTAIN];
	int nunc;
	bool unknown;
};

struct sess {
	int id;
	char name[224];
	char port[256];            /* initiator port name: name,i,0x<ISID> */
	struct ism_session *is;
	struct cmd cmds[DEPTH];
	struct tmf tmfs[NTMF];
	int outstanding;
	uint64_t next_seq;
	uint32_t next_gen;
	struct cmd *pr;            /* its one reservation command in flight */
	bool rk_valid, want_rr;
	struct st_pr_in rk;
	struct slot slots[OWN_SLOTS];
	/* unit attention after another session's LU RESET */
	uint64_t ua29;             /* 29h unit attentions received */
	uint64_t ua29_at_send;     /* ua29 when the reset was sent */
	bool due;
	uint64_t due_ua29, due_first_seq, due_check_seq;
	char due_check_desc[120];
	int due_by;
	bool eh;
	uint64_t eh_before_seq, eh_at_ms;
	struct tmf *abort_pending; /* its own ABORT TASK of choice, one at a time */
	/*
	 * The slot of its last write that ended aborted: written again and read at once, so that an
	 * aborted write reaching the medium after its abort was answered shows.
	 */
	int hot_slot;
};


struct st_run {
	struct ism_url *u;
	int nsess;
	unsigned seconds, bound_s;
	uint64_t seed, salt, rng;
	const char *ready_file;
	const char *prefix;
	struct sess sess[ST_MAX_SESSIONS];
	uint32_t bs;
	uint64_t own_base, shared_base;
	enum phase phase;
	uint64_t phase_end, t0, end;
	struct st_pr_model model;
	unsigned pr_out_inflight, reserve_like_inflight;
	uint64_t pr_seq;
	uint32_t gen_floor;
	bool reset_inflight;
	int reset_by;
	uint64_t reset_done_ms;
	bool closing, fatal;
	unsigned violations;
	char ports[ST_MAX_SESSIONS][256];
	/* what happened */
	uint64_t sent, answered, by_outcome[OUT_BAD + 1], resets, aborts_asked, aborts_ended_task, eh_aborts;
	uint64_t verified_reads, exact_data, exact_pr_out, exact_pr_in, pr_out, pr_in, syncs, ua_checks, phases;
};

extern struct st_run stress;

uint64_t st_now_ms(void);
uint64_t st_rnd(void);
unsigned st_pick(unsigned n);
/* One broken invariant: a VIOLATION line (the first 40), and the run fails. */
void st_violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, and the run stops. */
void st_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* threads_stress_send.c: the reservation state as known, sending, the loop */
bool st_may_be_held(void);
void st_mark_could_conflict(void);
void st_model_lost(void);
bool st_pr_out_allowed(void);
const char *st_pr_out_name(uint8_t sa, uint64_t sark);
void st_workload(void);

/* threads_stress_answer.c: what each answer must be */
void st_on_scsi_done(struct ism_session *is, const struct ism_scsi_result *r, void *priv);
void st_on_tmf_done(struct ism_session *is, int status, void *priv);
void st_due_evaluate(struct sess *s);
void st_verify_own_read(struct sess *s, struct cmd *c);

#endif
