/*
 * libFuzzer: what a hostile local client may send to the daemon's NBD exports. The input is one
 * client's byte stream (handshake, then transmission) fed into the NBD protocol engine
 * (src/daemon/nbd_proto.c) in pieces, with a backend standing for the disk that finishes
 * requests at once or later, in order or not, and an output side that reads replies slowly or
 * not at all. The first byte picks those behaviours; the rest is the stream.
 *
 * The backend checks what the engine promises: only whole blocks inside the export are
 * submitted, no READ or WRITE above the maximum request, and no more requests or bytes in flight
 * than the bounds of nbd_proto.h.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/nbd_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DISK_SIZE (8u << 20) /* the export: an 8 MiB disk, or one block less */
#define MAX_PENDING 256

struct harness {
	struct nbd_export_info x;
	bool gone;            /* the export disappeared: info() fails */
	bool immediate;       /* requests finish inside submit() */
	bool lifo;            /* deferred requests finish newest first */
	bool stall_output;    /* the client reads no reply until the end */
	unsigned chunk_shift; /* input fed in pieces of up to 1 << chunk_shift bytes */
	struct nbd_req *pending[MAX_PENDING];
	unsigned npending;
	uint64_t bytes_in_flight;
	unsigned woken;
	uint8_t sink; /* every payload byte is read, so a short buffer shows up under ASan */
};

static bool be_info(void *ctx, struct nbd_export_info *out)
{
	struct harness *h = ctx;
	if (h->gone)
		return false;
	*out = h->x;
	return true;
}

static uint32_t req_bytes(const struct nbd_req *q)
{
	return q->type == NBD_CMD_READ || q->type == NBD_CMD_WRITE ? q->len : 0;
}

static void finish(struct harness *h, struct nbd_req *q)
{
	h->bytes_in_flight -= req_bytes(q);
	uint32_t err = 0;
	if (q->type == NBD_CMD_READ) {
		/* both ends of the data: a buffer shorter than the request shows up under ASan */
		q->buf[0] = (uint8_t)q->offset;
		q->buf[q->len - 1] = (uint8_t)q->len;
	} else if (q->type == NBD_CMD_TRIM) {
		err = (q->offset / q->block_size) & 1 ? 5 : 0;
	}
	nbd_req_done(q, err);
}

static void be_submit(void *ctx, struct nbd_req *q)
{
	struct harness *h = ctx;
	/* what the engine promises its backend */
	if (q->type != NBD_CMD_READ && q->type != NBD_CMD_WRITE && q->type != NBD_CMD_FLUSH && q->type != NBD_CMD_TRIM)
		abort();
	if (q->type != NBD_CMD_FLUSH) {
		if (!q->block_size || q->offset % q->block_size || q->len % q->block_size || !q->len)
			abort();
		if (q->offset > h->x.size || q->len > h->x.size - q->offset)
			abort();
	}
	if ((q->type == NBD_CMD_READ || q->type == NBD_CMD_WRITE) && q->len > NBD_MAX_IO)
		abort();
	/* a read-only export never sees a request that changes the disk */
	if (h->x.read_only && (q->type == NBD_CMD_WRITE || q->type == NBD_CMD_TRIM))
		abort();
	if (q->type == NBD_CMD_WRITE)
		for (uint32_t i = 0; i < q->len; i += 509)
			h->sink ^= q->buf[i] ^ q->buf[q->len - 1];
	h->bytes_in_flight += req_bytes(q);
	if (nbd_conn_inflight(q->c) > NBD_MAX_INFLIGHT ||
	    h->bytes_in_flight > (uint64_t)NBD_MAX_INFLIGHT_BYTES + NBD_MAX_IO)
		abort();
	if (h->immediate || h->npending == MAX_PENDING) {
		finish(h, q);
		return;
	}
	h->pending[h->npending++] = q;
}

static void be_wake(void *ctx)
{
	struct harness *h = ctx;
	h->woken++;
}

/* Finish up to n deferred requests. */
static void run_pending(struct harness *h, unsigned n)
{
	while (n-- && h->npending) {
		struct nbd_req *q;
		if (h->lifo) {
			q = h->pending[--h->npending];
		} else {
			q = h->pending[0];
			memmove(h->pending, h->pending + 1, --h->npending * sizeof(h->pending[0]));
		}
		finish(h, q);
	}
}

/* The client reads up to max bytes of replies; false when the engine asked to close. */
static bool drain(struct nbd_conn *c, size_t max)
{
	while (max && nbd_conn_tx_pending(c)) {
		struct iovec iov[16];
		int n = nbd_conn_tx_iov(c, iov, 16);
		if (n <= 0)
			abort(); /* output pending but nothing to send */
		size_t total = 0;
		for (int i = 0; i < n; i++) {
			if (!iov[i].iov_len)
				abort();
			total += iov[i].iov_len;
		}
		size_t take = total < max ? total : max;
		max -= take;
		if (nbd_conn_tx_done(c, take) == NBD_RX_CLOSE)
			return false;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	static const uint32_t block_sizes[4] = {512, 4096, 65536, 1024};
	struct harness h = {0};
	uint8_t cfg = data[0], cfg2 = data[1];
	h.x.block_size = block_sizes[cfg & 3];
	h.x.size = DISK_SIZE - (cfg & 4 ? h.x.block_size : 0);
	h.immediate = cfg & 8;
	h.lifo = cfg & 16;
	h.stall_output = cfg & 32;
	h.x.read_only = cfg & 128;
	h.chunk_shift = (cfg2 & 15) + 1;
	bool release_early = cfg2 & 16;
	size_t gone_at = cfg & 64 ? size / 2 : SIZE_MAX;
	data += 2;
	size -= 2;

	struct nbd_backend be = {.info = be_info, .submit = be_submit, .wake = be_wake, .ctx = &h};
	struct nbd_conn *c = nbd_conn_new(&be);
	size_t pos = 0;
	bool open = true;
	unsigned stuck = 0;
	while (open && pos < size) {
		if (pos >= gone_at)
			h.gone = true;
		uint8_t *at;
		size_t room = nbd_conn_rx_space(c, &at);
		if (!room) {
			/* at a bound (or closing): replies must go out or requests finish to make room */
			run_pending(&h, 8);
			open = drain(c, h.stall_output ? 0 : SIZE_MAX);
			if (++stuck > 64) {
				h.stall_output = false;
				if (stuck > 200)
					break; /* the engine holds back for good: it is closing */
			}
			continue;
		}
		stuck = 0;
		size_t want = (size_t)1 << h.chunk_shift;
		size_t n = size - pos < want ? size - pos : want;
		if (n > room)
			n = room;
		memcpy(at, data + pos, n);
		pos += n;
		enum nbd_rx_result r = nbd_conn_rx_done(c, n);
		if (r == NBD_RX_CLOSE)
			open = false;
		else if (r == NBD_RX_CLOSE_AFTER) {
			drain(c, SIZE_MAX);
			open = false;
		}
		if (open) {
			run_pending(&h, (unsigned)(data[pos - 1] & 3));
			if (!h.stall_output)
				open = drain(c, (size_t)data[pos - 1] << 6);
		}
	}
	/* The client reads everything: replies going out may let held-back input run, whose
	 * requests finish in turn. With release_early the client leaves first and whatever still
	 * runs ends into nothing. */
	for (int i = 0; open && !release_early && i < 1000 && (h.npending || nbd_conn_tx_pending(c)); i++) {
		run_pending(&h, MAX_PENDING);
		open = drain(c, SIZE_MAX);
	}
	nbd_conn_release(c);
	run_pending(&h, MAX_PENDING);
	return 0;
}
