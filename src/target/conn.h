/*
 * One TCP connection to the target: its PDU engine, its tasks, and what login, Text and
 * liveness keep per connection.
 */
#ifndef ISTHMUS_TARGET_CONN_H
#define ISTHMUS_TARGET_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/loop.h"
#include "proto/params.h"
#include "proto/pdu.h"
#include "proto/pdu_conn.h"
#include "target/stats.h"
#include "util/sbuf.h"

struct server;
struct shard;
struct session;
struct task;
struct login_state;
struct retained;

/* One item of the send queue: a framed PDU and the task it keeps alive until written. */
struct txitem {
	struct pdu_txitem base;   /* first: the engine's item */
	struct task *task;        /* released when this item is written; NULL if none */
};

/*
 * PHASE_FAILED: at ErrorRecoveryLevel 2 a connection that broke keeps its tasks, without a
 * socket, until they are reassigned or DefaultTime2Wait + DefaultTime2Retain pass (erl2.c).
 */
enum conn_phase { PHASE_LOGIN, PHASE_FULL_FEATURE, PHASE_LOGGED_OUT, PHASE_CLOSED, PHASE_FAILED };

struct conn {
	struct server *srv;
	struct shard *shard;        /* the loop it runs on, with its session and tasks */
	struct session *sess;
	struct conn *next;          /* in shard->conns */
	struct conn *sess_next;     /* in session->conns */
	struct loop_watch watch;
	int fd;
	enum conn_phase phase;
	uint16_t cid;
	uint64_t serial;            /* unique among the server's connections, for ever */
	uint16_t tpgt;
	char local_addr[64], peer_addr[64];
	uint16_t local_port, peer_port;
	struct sockaddr_storage local_sa;
	struct iscsi_params params; /* negotiated; session-wide values mirrored from the session */
	uint32_t statsn;            /* next StatSN to send */
	uint32_t exp_statsn;        /* from the initiator */
	struct pdu_conn pc;         /* reception and send queue */
	struct pdu_txpool txpool;   /* spare send items, reused instead of allocated per PDU */
	bool want_write;
	bool want_read;             /* EPOLLIN is in the watch's events */
	/* tasks */
	struct task *tasks;         /* active tasks */
	struct task *free_tasks;
	struct tmf_wait *tmf_waits, *tmf_waits_tail; /* responses waiting for aborted writes, in order */
	uint32_t ntasks;
	uint32_t nsending;          /* of them, answered: only their response is still queued */
	uint64_t buffered;          /* data buffer bytes held by its tasks */
	/*
	 * The buffer a SCSI Command's immediate data is being read into (task_place_immediate): of
	 * placed_size bytes (the command's EDTL, counted in buffered), taken over by the command's
	 * task once the PDU is whole, else given back (task_drop_placed).
	 */
	uint8_t *placed;
	uint32_t placed_size;
	bool rx_paused;             /* not reading: the send backlog is over its bound */
	uint32_t next_ttt;
	/* login */
	struct login_state *login;
	/* text continuation */
	struct sbuf text_pending;   /* request text collected over C-bit PDUs */
	struct sbuf text_reply;     /* reply text not yet sent (response spread over PDUs) */
	size_t text_reply_off;
	uint32_t text_ttt;
	bool text_collecting;        /* text_ttt asks for the next part of a request */
	/* liveness */
	uint64_t last_rx_ms;
	uint64_t ping_sent_ms;      /* 0: no ping outstanding */
	uint32_t ping_ttt;
	uint64_t login_started_ms;
	bool routed;                /* its first Login PDU was looked at for the shard it belongs on */
	bool closing;
	bool logout_async_sent;
	/* ErrorRecoveryLevel 1 (snack.c, recovery.c) */
	struct retained *kept;      /* sent PDUs a SNACK may ask for again; NULL until one is kept */
	bool resending;             /* the PDU being queued is a resend: not kept twice */
	bool statsn_fixed;          /* ... and a status keeping its StatSN, fixed_statsn */
	uint32_t fixed_statsn;
	uint64_t header_skipped_ms; /* when a header was last skipped; 0 once stalled writes were looked at */
	/* ErrorRecoveryLevel 2 (erl2.c) */
	bool recover_on_close;      /* logged out for recovery: closing it keeps its tasks */
	bool recovered;             /* failed, and counted once as recovered */
	uint64_t recover_deadline_ms; /* failed: its tasks are discarded at this time */
	uint64_t kept_counted;      /* failed: its kept bytes as counted in srv->failed_kept */
	struct io_stats stats;
	uint64_t login_time;        /* wall clock seconds */
};

/* The connection has no socket any more (closed, or failed and waiting for recovery). */
static inline bool conn_gone(const struct conn *c) { return c->phase >= PHASE_CLOSED; }

/* A new connection on shard 0, made now (test harnesses drive loop 0 themselves). */
void conn_accept(struct server *srv, int fd, uint16_t tpgt);
/* A connection a portal accepted: made on the shard with the fewest connections. */
void server_place_conn(struct server *srv, int fd, uint16_t tpgt);
void conn_close(struct conn *c, const char *why);
/* Stop watching and close the socket, leave the server's list: what closing and failing share. */
void conn_detach_socket(struct conn *c);
/* The deferred free of a connection that is gone, with its tasks and copies. */
void conn_free_later(struct conn *c);
void conn_flush(struct conn *c);
/*
 * Queue a PDU: bhs is encoded, StatSN, ExpCmdSN and MaxCmdSN filled in, digests and padding
 * added; data may be NULL.
 */
void conn_send_pdu(struct conn *c, struct bhs *b, const void *data, uint32_t len, struct task *task,
		   uint8_t *owned);

#endif
