/*
 * libFuzzer: what a hostile local program may ask of the daemon's FUSE file system. The
 * daemon's own handlers (dmn_fuse_ops, src/daemon/fuse.c) run on a libfuse session without a
 * mount: the harness builds kernel requests from the input (LOOKUP, GETATTR, SETATTR, OPEN,
 * READ, WRITE, FSYNC, FLUSH, RELEASE, READDIR, STATFS, OPENDIR, FORGET) with any inode, name,
 * offset and size, framed as the kernel frames them, and hands them to libfuse as the /dev/fuse
 * bytes would be. The sessions behind the files are daemon sessions without a target: their I/O
 * waits in the session queue, and the harness finishes it, in any order, with data, an error, a
 * CHECK CONDITION or a full queue, as the session layer would.
 *
 * Checked: every request is answered exactly once (none left hanging once its I/O is done), no
 * READ answers more than was asked, every reply is well formed, and every READ or WRITE sent to a
 * LUN covers whole blocks inside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/fuse.h"
#include "daemon/fuse_ops.h"
#include "daemon/io.h"
#include "daemon/session.h"
#include "util/log.h"
#include "util/sbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQS 512
#define FUSE_MAX_IO (1u << 20)

/* ---- the daemon: two sessions with a few LUNs, no target behind them ---- */

static struct daemon dmn;
static struct dsession sess[2];
static struct fuse_session *se;

static const struct {
	int sess;
	uint64_t lun;
	uint64_t capacity;
	uint32_t bs;
	bool exposed;
} luns[] = {
	{0, 0, 4u << 20, 512, true},
	{0, 3, (1u << 20) + 8 * 4096, 4096, true},
	{0, 5, 1u << 20, 512, false},
	{1, 0, 2u << 20, 4096, true},
};

static void daemon_reset(void)
{
	for (int i = 0; i < 2; i++) {
		sess[i].state = DS_CONNECTED;
		sess[i].devices_present = true;
	}
	size_t k[2] = {0, 0};
	for (size_t i = 0; i < sizeof(luns) / sizeof(luns[0]); i++) {
		struct dlun *l = &sess[luns[i].sess].luns[k[luns[i].sess]++];
		l->lun = luns[i].lun;
		l->capacity_bytes = luns[i].capacity;
		l->block_size = luns[i].bs;
		l->exposed = luns[i].exposed;
		l->have_capacity = true;
	}
}

/* ---- requests and replies ---- */

struct req {
	uint64_t unique;
	uint32_t opcode;
	uint32_t size; /* READ, READDIR: bytes asked */
	bool answered;
};

static struct req reqs[MAX_REQS];
static unsigned nreqs;
static uint64_t next_unique = 1;

static struct req *req_of(uint64_t unique)
{
	for (unsigned i = 0; i < nreqs; i++)
		if (reqs[i].unique == unique)
			return &reqs[i];
	return NULL;
}

static ssize_t fake_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)fd;
	(void)userdata;
	size_t total = 0;
	for (int i = 0; i < count; i++)
		total += iov[i].iov_len;
	if (count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header))
		abort();
	struct fuse_out_header out;
	memcpy(&out, iov[0].iov_base, sizeof(out));
	if (out.len != total || out.error > 0 || out.error < -4095)
		abort();
	if (out.unique == 0)
		return (ssize_t)total; /* a notification */
	struct req *r = req_of(out.unique);
	if (!r) {
		if (out.unique == UINT64_MAX)
			return (ssize_t)total; /* the INIT exchange */
		abort(); /* a reply to nothing asked */
	}
	if (r->answered)
		abort(); /* answered twice */
	r->answered = true;
	if (!out.error && (r->opcode == FUSE_READ || r->opcode == FUSE_READDIR) &&
	    total - sizeof(out) > r->size)
		abort(); /* more data than asked */
	/* touch every byte of the reply: a dangling or short buffer shows up under ASan */
	volatile uint8_t sink = 0;
	for (int i = 0; i < count; i++)
		for (size_t k = 0; k < iov[i].iov_len; k += 61)
			sink ^= ((const uint8_t *)iov[i].iov_base)[k];
	(void)sink;
	return (ssize_t)total;
}

static ssize_t fake_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)fd;
	(void)buf;
	(void)len;
	(void)userdata;
	return -EAGAIN; /* requests come through fuse_session_process_buf, never read */
}

static uint8_t reqbuf[sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in) + FUSE_MAX_IO + 512];

/* Frame one request as the kernel does and hand it to libfuse. */
static void send_req(uint32_t opcode, uint64_t nodeid, const void *arg, size_t arglen, const void *tail, size_t taillen,
		     uint32_t size)
{
	if (nreqs == MAX_REQS)
		return;
	struct fuse_in_header in = {0};
	size_t total = sizeof(in) + arglen + taillen;
	if (total > sizeof(reqbuf))
		return;
	in.len = (uint32_t)total;
	in.opcode = opcode;
	in.unique = next_unique++;
	in.nodeid = nodeid;
	in.uid = 0;
	in.pid = 1;
	memcpy(reqbuf, &in, sizeof(in));
	if (arglen)
		memcpy(reqbuf + sizeof(in), arg, arglen);
	if (taillen)
		memcpy(reqbuf + sizeof(in) + arglen, tail, taillen);
	if (opcode != FUSE_FORGET)
		reqs[nreqs++] = (struct req){.unique = in.unique, .opcode = opcode, .size = size};
	struct fuse_buf fb = {.size = total, .mem = reqbuf};
	fuse_session_process_buf(se, &fb);
}

static const struct fuse_lowlevel_ops *ops_in_use(void) { return &dmn_fuse_ops; }

static void harness_init(void)
{
	log_set_level(LOG_ERROR);
	dmn.cfg.queue_limit_bytes = 4u << 20;
	for (int i = 0; i < 2; i++) {
		struct dsession *s = &sess[i];
		s->d = &dmn;
		s->id = (uint64_t)i + 1;
		dsess_format_id(s->id, s->idstr, sizeof(s->idstr));
		s->opts.target = xstrdup("iqn.2026-11.org.isthmus:fuzz");
		s->opts.portal = xstrdup("127.0.0.1:3260");
		s->nluns = i == 0 ? 3 : 1;
		s->luns = xcalloc(s->nluns, sizeof(*s->luns));
		s->probed = true;
		s->next = i == 0 ? &sess[1] : NULL;
	}
	dmn.sessions = &sess[0];
	daemon_reset();
	char *argv[] = {"fuzz_fuse", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(1, argv);
	se = fuse_session_new(&args, ops_in_use(), sizeof(*ops_in_use()), &dmn);
	fuse_opt_free_args(&args);
	if (!se)
		abort();
	static const struct fuse_custom_io io = {.writev = fake_writev, .read = fake_read};
	if (fuse_session_custom_io(se, &io, open("/dev/null", O_RDWR | O_CLOEXEC)) != 0)
		abort();
	struct fuse_init_in init = {.major = FUSE_KERNEL_VERSION, .minor = 31, .max_readahead = 131072,
				    .flags = FUSE_ASYNC_READ | FUSE_ASYNC_DIO | FUSE_BIG_WRITES | FUSE_MAX_PAGES};
	struct fuse_in_header in = {.len = sizeof(in) + sizeof(init), .opcode = FUSE_INIT, .unique = UINT64_MAX,
				    .nodeid = 0};
	memcpy(reqbuf, &in, sizeof(in));
	memcpy(reqbuf + sizeof(in), &init, sizeof(init));
	struct fuse_buf fb = {.size = in.len, .mem = reqbuf};
	fuse_session_process_buf(se, &fb);
}

/* ---- the input ---- */

struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct cursor *c, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes && c->n; i++, c->p++, c->n--)
		v = v << 8 | *c->p;
	return v;
}

static uint64_t pick_ino(struct cursor *c)
{
	switch (take(c, 1) % 8) {
	case 0: return FUSE_ROOT_ID;
	case 1: return 1u << 16;           /* session 1's directory */
	case 2: return (1u << 16) | 1;     /* session 1, LUN 0 */
	case 3: return (1u << 16) | 4;     /* session 1, LUN 3 */
	case 4: return (2u << 16) | 1;     /* session 2, LUN 0 */
	case 5: return (1u << 16) | 6;     /* session 1, LUN 5: not exposed */
	case 6: return 2u << 16;           /* session 2's directory */
	default: return take(c, 8);
	}
}

static uint64_t pick_offset(struct cursor *c)
{
	switch (take(c, 1) % 5) {
	case 0: return take(c, 8);                              /* anything, negative as off_t too */
	case 1: return take(c, 2) * 512;                        /* aligned, near the start */
	case 2: return (4u << 20) - take(c, 2);                 /* around the end of the largest LUN */
	case 3: return (1u << 20) + 8 * 4096 - take(c, 2);      /* around the end of LUN 3 */
	default: return take(c, 3);                             /* unaligned, inside */
	}
}

static uint32_t pick_size(struct cursor *c)
{
	switch (take(c, 1) % 4) {
	case 0: return (uint32_t)take(c, 4);
	case 1: return (uint32_t)take(c, 1) * 512;
	case 2: return (uint32_t)take(c, 2);
	default: return 4096;
	}
}

static const char *const names[] = {"lun0", "lun3", "lun5", "lun", "lun00", "lun-1", "lun65535",
				    "lun99999999999999999999", "0x0000000000000001", "0x2", "1", "..", ".", ""};

static uint64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* What the handlers promise the session layer: a READ(16) or WRITE(16) covers whole blocks inside
 * the LUN, exactly the buffer it comes with. */
static void check_command(struct dsession *s, const struct dio *io)
{
	if (io->cdb[0] != 0x88 && io->cdb[0] != 0x8a)
		return;
	const struct dlun *l = dsess_lun(s, io->lun);
	if (!l || !l->block_size)
		abort();
	uint64_t lba = be(io->cdb + 2, 8), blocks = be(io->cdb + 10, 4);
	if (blocks * l->block_size != io->len || lba > l->capacity_bytes / l->block_size ||
	    blocks > l->capacity_bytes / l->block_size - lba)
		abort();
}

/* Finish one queued I/O of a session with the outcome the input picks; false when none waits. */
static bool finish_io(struct cursor *c, bool good)
{
	struct dsession *s = &sess[take(c, 1) & 1];
	if (!s->queue)
		s = s == &sess[0] ? &sess[1] : &sess[0];
	if (!s->queue)
		return false;
	unsigned idx = (unsigned)take(c, 1) % 4;
	struct dio **pp = &s->queue;
	while (idx-- && (*pp)->next)
		pp = &(*pp)->next;
	struct dio *io = *pp;
	*pp = io->next;
	io->next = NULL;
	s->queued_bytes -= io->len;
	check_command(s, io);
	struct ism_scsi_result r;
	memset(&r, 0, sizeof(r));
	unsigned outcome = good ? 0 : (unsigned)take(c, 1) % 6;
	switch (outcome) {
	case 3:
		/* what the session layer reports for a whole READ or WRITE answered short */
		r.transferred = io->len / 2;
		io->done(io, -EIO, &r);
		break;
	case 4:
		r.status = 2;
		r.sense_len = 18;
		r.sense[0] = 0x70;
		r.sense[2] = (uint8_t)take(c, 1) & 0x0f;
		r.sense[7] = 10;
		r.sense[12] = (uint8_t)take(c, 1);
		io->done(io, 0, &r);
		break;
	case 5:
		io->done(io, -ENOBUFS, NULL);
		break;
	default:
		if (io->dir == ISM_DIR_READ && io->len)
			memset(io->buf, 0x5a, io->len);
		r.transferred = io->len;
		io->done(io, 0, &r);
		break;
	}
	return true;
}

static void one_request(struct cursor *c)
{
	static uint8_t wdata[FUSE_MAX_IO + 4096];
	uint64_t ino = 0;
	switch (take(c, 1) % 15) {
	case 0: { /* LOOKUP */
		ino = pick_ino(c);
		char name[64];
		uint8_t how = (uint8_t)take(c, 1);
		if (how & 1) {
			snprintf(name, sizeof(name), "%s", names[(how >> 1) % (sizeof(names) / sizeof(names[0]))]);
		} else {
			size_t n = (how >> 1) % 40;
			for (size_t i = 0; i < n; i++)
				name[i] = (char)take(c, 1);
			name[n] = 0;
		}
		send_req(FUSE_LOOKUP, ino, NULL, 0, name, strlen(name) + 1, 0);
		break;
	}
	case 1: {
		struct fuse_getattr_in a = {0};
		ino = pick_ino(c);
		send_req(FUSE_GETATTR, ino, &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 2: {
		struct fuse_setattr_in a = {0};
		ino = pick_ino(c);
		a.valid = (uint32_t)take(c, 4);
		a.size = take(c, 8);
		send_req(FUSE_SETATTR, ino, &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 3: {
		struct fuse_open_in a = {.flags = (uint32_t)take(c, 4)};
		ino = pick_ino(c);
		send_req(FUSE_OPEN, ino, &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 4: {
		struct fuse_read_in a = {0};
		ino = pick_ino(c);
		a.offset = pick_offset(c);
		a.size = pick_size(c);
		send_req(FUSE_READ, ino, &a, sizeof(a), NULL, 0, a.size);
		break;
	}
	case 5: {
		struct fuse_write_in a = {0};
		ino = pick_ino(c);
		a.offset = pick_offset(c);
		uint32_t n = pick_size(c) % (FUSE_MAX_IO + 4096);
		/* the kernel never sends more than max_write, but the handler must not trust that */
		size_t have = n < c->n ? n : c->n;
		memcpy(wdata, c->p, have);
		memset(wdata + have, 0xee, n - have);
		a.size = n;
		send_req(FUSE_WRITE, ino, &a, sizeof(a), wdata, n, 0);
		break;
	}
	case 6: {
		struct fuse_fsync_in a = {.fsync_flags = (uint32_t)take(c, 1) & 1};
		ino = pick_ino(c);
		send_req(FUSE_FSYNC, ino, &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 7: {
		struct fuse_flush_in a = {0};
		ino = pick_ino(c);
		send_req(FUSE_FLUSH, ino, &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 8: {
		struct fuse_release_in a = {0};
		ino = pick_ino(c);
		send_req(FUSE_RELEASE, ino, &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 9: {
		struct fuse_read_in a = {0};
		ino = pick_ino(c);
		a.offset = take(c, 1) % 3 ? take(c, 1) * 8 : take(c, 8);
		a.size = pick_size(c);
		send_req(FUSE_READDIR, ino, &a, sizeof(a), NULL, 0, a.size);
		break;
	}
	case 10:
		send_req(FUSE_STATFS, pick_ino(c), NULL, 0, NULL, 0, 0);
		break;
	case 11: {
		struct fuse_open_in a = {0};
		send_req(FUSE_OPENDIR, pick_ino(c), &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 12: {
		struct fuse_forget_in a = {.nlookup = take(c, 2)};
		send_req(FUSE_FORGET, pick_ino(c), &a, sizeof(a), NULL, 0, 0);
		break;
	}
	case 13: /* some queued I/O ends */
		for (unsigned k = (unsigned)take(c, 1) % 8 + 1; k; k--)
			if (!finish_io(c, false))
				break;
		break;
	default: { /* a session or a LUN changes under the requests */
		struct dsession *s = &sess[take(c, 1) & 1];
		switch (take(c, 1) % 4) {
		case 0: s->state = DS_FAILED; break;
		case 1: s->state = DS_CONNECTED; break;
		case 2: s->devices_present = !s->devices_present; break;
		default: {
			struct dlun *l = &s->luns[take(c, 1) % s->nluns];
			l->exposed = !l->exposed;
			break;
		}
		}
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!se)
		harness_init();
	nreqs = 0;
	daemon_reset();
	struct cursor c = {data, size};
	while (c.n && nreqs < MAX_REQS)
		one_request(&c);
	/* Everything still queued ends well; what it starts (the write of a read-modify-write, writes
	 * that waited for it) ends too. */
	struct cursor none = {NULL, 0};
	for (int i = 0; i < 100000 && finish_io(&none, true); i++)
		;
	if (sess[0].queue || sess[1].queue || sess[0].queued_bytes || sess[1].queued_bytes)
		abort(); /* I/O that never ends */
	for (unsigned i = 0; i < nreqs; i++)
		if (!reqs[i].answered)
			abort(); /* a request left without an answer: its caller would hang */
	return 0;
}
