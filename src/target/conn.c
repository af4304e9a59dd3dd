/*
 * The target's side of one TCP connection: what the PDU engine (proto/pdu_conn) leaves to the
 * role. A malformed PDU is answered with a Reject in full feature phase and ends the connection
 * before it; the send backlog pauses reading; complete PDUs go to login or full feature phase.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/text.h"
#include "target/conn.h"
#include "target/erl2.h"
#include "target/ffp.h"
#include "target/login.h"
#include "target/recovery.h"
#include "target/server.h"
#include "target/session.h"
#include "target/shard.h"
#include "target/task.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/sbuf.h"

/* Login PDUs are bounded by the RFC default MaxRecvDataSegmentLength until negotiation ends. */
#define LOGIN_MAX_DSL 8192u
/*
 * Before login a connection needs room for one login PDU (8 KiB of data); the 256 KiB that full
 * feature phase reads at a time would make every unauthenticated connection cost that much.
 */
#define RX_LOGIN (16u * 1024u)
#define RX_FULL_FEATURE (256u * 1024u)
/*
 * A peer that sends requests but does not read the answers would grow the send queue without
 * end: past TX_BACKLOG_MAX queued bytes the connection stops reading (and parsing what it has
 * read) until the queue drains below TX_BACKLOG_RESUME. Read data counts too, so a large read
 * answer pauses new requests only while the socket cannot take it.
 */
#define TX_BACKLOG_MAX (16u * 1024u * 1024u)
#define TX_BACKLOG_RESUME (8u * 1024u * 1024u)
/* Data-Out segments this long go straight into their task's buffer (task_place_data_out). */
#define DATA_OUT_DIRECT_MIN (16u * 1024u)
/*
 * Immediate data this long goes straight into the buffer its command's task will use
 * (task_place_immediate); shorter data costs less to copy than the extra read that placing it
 * takes.
 */
#define IMMEDIATE_DIRECT_MIN (16u * 1024u)
/* Spare send items kept per connection, and iovecs per gathered write. */
#define TX_FREE_KEEP 256u
#define TX_IOV_MAX 64

/* Address text for logs and management; a socketpair from a test harness has no address. */
static void conn_sockaddr_text(const struct sockaddr_storage *sa, char *addr, size_t alen, uint16_t *port)
{
	if (!pdu_sockaddr_split((const struct sockaddr *)sa, addr, alen, port))
		snprintf(addr, alen, "local");
}

static void conn_on_io(void *arg, uint32_t events);
static void conn_update_events(struct conn *c);
static const struct pdu_conn_ops conn_ops;

/* Counted on sh and the server before it is made (server_pick_shard sees it at once). */
static void conn_reserve(struct shard *sh)
{
	atomic_fetch_add(&sh->nconns, 1);
	atomic_fetch_add(&sh->srv->nconns, 1);
}

static void conn_unreserve(struct shard *sh)
{
	atomic_fetch_sub(&sh->nconns, 1);
	atomic_fetch_sub(&sh->srv->nconns, 1);
}

static void conn_list_add(struct conn *c)
{
	server_index_lock(c->srv);
	c->next = c->shard->conns;
	c->shard->conns = c;
	server_index_unlock(c->srv);
}

static void conn_list_remove(struct conn *c)
{
	server_index_lock(c->srv);
	for (struct conn **pp = &c->shard->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	server_index_unlock(c->srv);
}

/* On sh's thread, with the connection already counted there. */
static void conn_accept_on(struct shard *sh, int fd, uint16_t tpgt)
{
	struct server *srv = sh->srv;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct conn *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->shard = sh;
	c->serial = atomic_fetch_add(&srv->next_conn_serial, 1) + 1;
	c->fd = fd;
	c->tpgt = tpgt;
	c->phase = PHASE_LOGIN;
	params_defaults(&c->params);
	c->txpool.item_size = sizeof(struct txitem);
	c->txpool.keep = TX_FREE_KEEP;
	pdu_conn_init(&c->pc, &conn_ops, c, &c->params, &c->txpool, RX_LOGIN);
	c->pc.direct_min = DATA_OUT_DIRECT_MIN;
	c->pc.direct_opcode = OP_DATA_OUT;
	c->pc.direct_cmd_min = IMMEDIATE_DIRECT_MIN;
	c->want_read = true;
	c->last_rx_ms = c->login_started_ms = loop_now_ms();
	c->login_time = (uint64_t)time(NULL);
	/* One loop: nothing to route. */
	c->routed = srv->nshards < 2;
	socklen_t sl = sizeof(c->local_sa);
	getsockname(fd, (struct sockaddr *)&c->local_sa, &sl);
	conn_sockaddr_text(&c->local_sa, c->local_addr, sizeof(c->local_addr), &c->local_port);
	struct sockaddr_storage peer;
	sl = sizeof(peer);
	getpeername(fd, (struct sockaddr *)&peer, &sl);
	conn_sockaddr_text(&peer, c->peer_addr, sizeof(c->peer_addr), &c->peer_port);
	if (loop_watch_add(sh->loop, &c->watch, fd, EPOLLIN | EPOLLRDHUP, conn_on_io, c) < 0) {
		log_error("cannot watch connection from %s: %m", c->peer_addr);
		close(fd);
		pdu_conn_rx_free(&c->pc);
		free(c);
		conn_unreserve(sh);
		return;
	}
	conn_list_add(c);
	log_debug("connection from %s:%u to %s:%u (loop %u)", c->peer_addr, c->peer_port, c->local_addr, c->local_port,
		  sh->id);
}

void conn_accept(struct server *srv, int fd, uint16_t tpgt)
{
	conn_reserve(srv->shards[0]);
	conn_accept_on(srv->shards[0], fd, tpgt);
}

struct conn_handover {
	struct shard *sh;
	int fd;
	uint16_t tpgt;
};

static void conn_take(void *arg)
{
	struct conn_handover *h = arg;
	conn_accept_on(h->sh, h->fd, h->tpgt);
	free(h);
}

void server_place_conn(struct server *srv, int fd, uint16_t tpgt)
{
	struct shard *sh = server_pick_shard(srv);
	conn_reserve(sh);
	if (sh->id == 0) {
		conn_accept_on(sh, fd, tpgt);
		return;
	}
	struct conn_handover *h = xmalloc(sizeof(*h));
	*h = (struct conn_handover){sh, fd, tpgt};
	shard_post(sh, conn_take, h);
}

static void conn_pdu_sent(struct pdu_conn *pc, struct pdu_txitem *item)
{
	(void)pc;
	struct txitem *it = (struct txitem *)item;
	if (it->task)
		task_release(it->task);
}

static void conn_free(void *arg)
{
	struct conn *c = arg;
	pdu_conn_drop_tx(&c->pc);
	pdu_txpool_free(&c->txpool);
	task_free_all(c);
	snack_free(c);
	login_free(c);
	sbuf_free(&c->text_pending);
	sbuf_free(&c->text_reply);
	pdu_conn_rx_free(&c->pc);
	free(c);
}

void conn_detach_socket(struct conn *c)
{
	task_drop_placed(c); /* no more data comes for a command being read */
	loop_watch_del(c->shard->loop, &c->watch);
	close(c->fd);
	c->fd = -1;
	conn_list_remove(c);
	conn_unreserve(c->shard);
}

void conn_free_later(struct conn *c) { loop_defer(c->shard->loop, conn_free, c); }

void conn_close(struct conn *c, const char *why)
{
	if (conn_gone(c))
		return;
	/* At ErrorRecoveryLevel 2 a connection that breaks leaves its tasks for another one. */
	if (erl2_keeps_tasks(c)) {
		erl2_conn_fail(c, why ? why : "logged out for recovery");
		return;
	}
	/* A connection that never completed a PDU is a port probe (another gateway, a health check). */
	if (why && c->stats.bytes_in == 0)
		log_debug("closing connection %s:%u (cid %u): %s", c->peer_addr, c->peer_port, c->cid, why);
	else if (why)
		log_info("closing connection %s:%u (cid %u): %s", c->peer_addr, c->peer_port, c->cid, why);
	c->phase = PHASE_CLOSED;
	conn_detach_socket(c);
	if (c->sess)
		session_remove_conn(c->sess, c);
	stats_add(&c->shard->closed, &c->stats);
	conn_free_later(c);
}

void conn_send_pdu(struct conn *c, struct bhs *b, const void *data, uint32_t len, struct task *task, uint8_t *owned)
{
	if (c->phase == PHASE_FAILED && snack_wanted(c))
		erl2_keep_unsent(c, b, data, len, task);
	if (conn_gone(c)) {
		free(owned);
		if (task)
			task_release(task);
		return;
	}
	bool keep = snack_wanted(c);
	uint32_t statsn = c->statsn;
	if (keep)
		snack_mark(c, b, len, task);
	struct txitem *it = (struct txitem *)pdu_conn_queue(&c->pc, b, data, len, owned);
	it->task = task;
	if (keep)
		snack_keep(c, b, data, len, c->statsn != statsn, statsn);
	c->stats.pdus_out++;
	c->stats.bytes_out += it->base.wire;
}

/* Write as much of the queue as the socket takes, many PDUs per writev. */
void conn_flush(struct conn *c)
{
	if (conn_gone(c))
		return;
	if (pdu_conn_flush(&c->pc, c->fd, TX_IOV_MAX) < 0) {
		conn_close(c, strerror(errno));
		return;
	}
	if (conn_gone(c))
		return;
	if (c->rx_paused && c->pc.tx_bytes <= TX_BACKLOG_RESUME) {
		c->rx_paused = false;
		/* What was read before the pause is parsed now; the socket's rest on the next wake-up. */
		if (!pdu_conn_parse(&c->pc))
			return;
		if (!pdu_queue_empty(&c->pc.txq) && !c->rx_paused) {
			conn_flush(c);
			return;
		}
	}
	conn_update_events(c);
	if (pdu_queue_empty(&c->pc.txq) && c->phase == PHASE_LOGGED_OUT)
		conn_close(c, NULL);
}

/* Readable while not paused, writable while something waits to be sent. */
static void conn_update_events(struct conn *c)
{
	bool want = !pdu_queue_empty(&c->pc.txq);
	bool read = !c->rx_paused;
	if (want == c->want_write && read == c->want_read)
		return;
	c->want_write = want;
	c->want_read = read;
	loop_watch_mod(c->shard->loop, &c->watch, (read ? EPOLLIN | EPOLLRDHUP : 0) | (want ? EPOLLOUT : 0));
}

static uint32_t max_dsl_in(const struct conn *c)
{
	return c->phase == PHASE_FULL_FEATURE ? c->params.max_recv_dsl : LOGIN_MAX_DSL;
}

/*
 * A header is in. Its data segment must fit what we announced; a header we can frame but not
 * accept is rejected and skipped in full feature phase, and ends the connection before it.
 */
static enum pdu_header_verdict conn_on_header(struct pdu_conn *pc, const uint8_t *raw, int rc, const char *why)
{
	struct conn *c = pc->arg;
	if (conn_gone(c))
		return PDU_HEADER_STOP;
	if (pc->tx_bytes > TX_BACKLOG_MAX) {
		c->rx_paused = true;
		return PDU_HEADER_WAIT;
	}
	const struct bhs *b = &pc->rx_bhs;
	enum pdu_header_verdict verdict;
	if (recovery_level(c) >= 1 && recovery_check_header(c, raw, &verdict))
		return verdict;
	uint32_t limit = max_dsl_in(c);
	if (b->data_len > limit) {
		log_warn("%s:%u: %s with DataSegmentLength %u over the limit %u", c->peer_addr, c->peer_port,
			 opcode_str(b->opcode), b->data_len, limit);
		if (c->phase == PHASE_FULL_FEATURE)
			send_reject(c, REJECT_PROTOCOL_ERROR, raw);
		conn_flush(c);
		conn_close(c, "data segment longer than MaxRecvDataSegmentLength");
		return PDU_HEADER_STOP;
	}
	if (rc == REJECT_PROTOCOL_ERROR && raw[4] > 63) {
		conn_close(c, why);
		return PDU_HEADER_STOP;
	}
	if (rc == 0)
		return PDU_HEADER_HANDLE;
	log_warn("%s:%u: rejecting PDU (opcode 0x%02x): %s", c->peer_addr, c->peer_port, b->opcode, why);
	if (c->phase == PHASE_LOGIN && b->opcode == OP_LOGIN_REQ) {
		login_refuse_header(c, b, why);
		return PDU_HEADER_SKIP;
	}
	if (c->phase != PHASE_FULL_FEATURE) {
		conn_close(c, why);
		return PDU_HEADER_STOP;
	}
	send_reject(c, (uint8_t)rc, raw);
	return PDU_HEADER_SKIP; /* the framing is known, so the rest can be passed over */
}

static bool conn_on_digest_error(struct pdu_conn *pc, bool header, const uint8_t *raw)
{
	struct conn *c = pc->arg;
	c->stats.digest_errors++;
	if (!header && recovery_level(c) >= 1) {
		bool alive = recovery_data_digest_error(c, raw);
		task_drop_placed(c); /* damaged immediate data: the command comes again (RFC 7143 6.7) */
		return alive;
	}
	if (header) {
		/* A header we cannot trust gives no reliable framing: at ERL 0 the connection ends. */
		conn_close(c, "header digest error");
		return false;
	}
	send_reject(c, REJECT_DATA_DIGEST, raw);
	if (pc->rx_bhs.opcode == OP_SCSI_CMD || pc->rx_bhs.opcode == OP_DATA_OUT) {
		/* The Reject goes out before the close, or the initiator never learns why. */
		conn_flush(c);
		conn_close(c, "data digest error in write data");
		return false;
	}
	return true;
}

struct conn_move {
	struct conn *c;
	struct shard *to;
};

/* On the new shard: watch the connection and handle the Login PDU still in its buffer. */
static void conn_arrive(void *arg)
{
	struct conn *c = arg;
	struct shard *sh = c->shard;
	conn_list_add(c);
	c->want_read = true;
	c->want_write = false;
	if (loop_watch_add(sh->loop, &c->watch, c->fd, EPOLLIN | EPOLLRDHUP, conn_on_io, c) < 0) {
		conn_close(c, "cannot watch the connection on its new loop");
		return;
	}
	/* The PDU is parsed again from its header, which is where reception stopped. */
	c->pc.rx_state = PDU_RECV_BHS;
	c->pc.rx_need = BHS_LEN;
	if (pdu_conn_parse(&c->pc))
		conn_flush(c);
}

/* On the old shard, once its loop is done with the events of this turn. */
static void conn_depart(void *arg)
{
	struct conn_move *m = arg;
	shard_post(m->to, conn_arrive, m->c);
	free(m);
}

/*
 * A connection's first Login PDU says which session it joins (TSIH) or may reinstate (ISID,
 * InitiatorName, TargetName): a connection belongs on the loop of that session. It owns nothing
 * yet but its receive buffer, so it moves there whole; the PDU is handled on arrival.
 */
static bool conn_route_login(struct conn *c, const struct bhs *b, const uint8_t *data)
{
	c->routed = true;
	if (b->opcode != OP_LOGIN_REQ)
		return false;
	/* A segment the login would refuse routes nowhere: the login answers it where it lands. */
	struct text_list keys = {0};
	char why[128];
	int id = -1;
	if (text_parse(data, b->data_len, &keys, why, sizeof(why)) == TEXT_OK)
		id = server_login_shard(c->srv, text_get(&keys, "InitiatorName"), b->login.isid, b->login.tsih,
					text_get(&keys, "TargetName"));
	text_clear(&keys);
	if (id < 0 || (unsigned)id == c->shard->id)
		return false;
	log_debug("%s:%u: login for TSIH %u moves to loop %d", c->peer_addr, c->peer_port, b->login.tsih, id);
	struct shard *from = c->shard, *to = c->srv->shards[id];
	loop_watch_del(from->loop, &c->watch);
	conn_list_remove(c);
	conn_unreserve(from);
	conn_reserve(to);
	c->shard = to;
	struct conn_move *m = xmalloc(sizeof(*m));
	*m = (struct conn_move){c, to};
	loop_defer(from->loop, conn_depart, m);
	return true;
}

static bool conn_on_pdu(struct pdu_conn *pc, const uint8_t *raw, const uint8_t *data)
{
	struct conn *c = pc->arg;
	const struct bhs *b = &pc->rx_bhs;
	/* Reception stops at this PDU, unconsumed: the connection is not this loop's any more. */
	if (!c->routed && c->phase == PHASE_LOGIN && pc->rx_state != PDU_RECV_DIRECT && conn_route_login(c, b, data))
		return false;
	c->stats.pdus_in++;
	c->stats.bytes_in += pc->rx_need + (pc->rx_state == PDU_RECV_DIRECT ? pc->rx_bhs.data_len : 0);
	if (c->phase == PHASE_LOGIN)
		login_handle(c, b, data, b->data_len);
	else if (c->phase == PHASE_FULL_FEATURE)
		ffp_dispatch(c, b, raw, data, b->data_len);
	task_drop_placed(c); /* a command rejected before it became a task leaves its buffer */
	return !conn_gone(c);
}

/*
 * StatSN, ExpCmdSN and MaxCmdSN sit at bytes 24, 28 and 32 of every PDU the target sends and are
 * filled here, in queueing order. StatSN advances only for the PDUs that carry a status (RFC 7143
 * 11.7.4, 11.8.1, 11.19.1): an R2T and a NOP-In that pings show the next StatSN without taking
 * it, and a Data-In without the S bit carries none. Login responses announce the window of the
 * session the login will have.
 */
static void conn_stamp_sn(struct pdu_conn *pc, const struct bhs *b, uint8_t hdr[BHS_LEN])
{
	struct conn *c = pc->arg;
	uint32_t statsn, next = c->statsn;
	switch (b->opcode) {
	case OP_R2T:
		statsn = c->statsn;
		break;
	case OP_NOP_IN:
		statsn = b->itt == RESERVED_TAG ? c->statsn : c->statsn++;
		break;
	case OP_DATA_IN:
		statsn = b->data_in.status_present ? c->statsn++ : 0;
		break;
	default:
		statsn = c->statsn++;
		break;
	}
	if (c->statsn_fixed) { /* a status sent again (SNACK) keeps its number */
		c->statsn = next;
		statsn = c->fixed_statsn;
	}
	put_be32(hdr + 24, statsn);
	uint32_t expcmdsn, maxcmdsn;
	if (b->opcode == OP_LOGIN_RESP) {
		login_window(c, &expcmdsn, &maxcmdsn);
	} else if (c->sess) {
		expcmdsn = c->sess->exp_cmdsn;
		maxcmdsn = session_max_cmdsn(c->sess);
	} else {
		return; /* a Reject before any session: no window to announce */
	}
	put_be32(hdr + 28, expcmdsn);
	put_be32(hdr + 32, maxcmdsn);
}

/* Where the data of a large Data-Out or of a command's immediate data goes (task.c), or NULL. */
static uint8_t *conn_place(struct pdu_conn *pc, void **owner)
{
	if (pc->rx_bhs.opcode == OP_SCSI_CMD)
		return task_place_immediate(pc, owner);
	return task_place_data_out(pc, owner);
}

static const struct pdu_conn_ops conn_ops = {
	.header = conn_on_header,
	.place = conn_place,
	.pdu = conn_on_pdu,
	.digest_error = conn_on_digest_error,
	.stamp = conn_stamp_sn,
	.sent = conn_pdu_sent,
};

static void conn_on_readable(struct conn *c)
{
	if (c->phase == PHASE_FULL_FEATURE)
		pdu_conn_rx_grow(&c->pc, RX_FULL_FEATURE);
	/* Bounded number of reads per wake-up keeps one busy connection from starving others. */
	for (int round = 0; round < 16 && !conn_gone(c) && !c->rx_paused; round++) {
		size_t asked;
		ssize_t r = pdu_conn_read(&c->pc, c->fd, &asked);
		if (r == PDU_READ_DRAINED)
			break;
		if (r <= 0) {
			conn_close(c, r < 0 ? strerror(errno)
				   : c->phase == PHASE_LOGGED_OUT ? NULL : "initiator closed the connection");
			return;
		}
		c->last_rx_ms = loop_now_ms();
		if (!pdu_conn_parse(&c->pc))
			return;
		if ((size_t)r < 4096)
			break;
	}
	conn_flush(c);
}

static void conn_on_io(void *arg, uint32_t events)
{
	struct conn *c = arg;
	if (events & EPOLLOUT)
		conn_flush(c);
	if (conn_gone(c))
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		conn_on_readable(c);
}


