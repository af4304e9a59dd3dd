#include "proto/frame.h"

#include <string.h>

#include "proto/digest.h"

void pdu_frame_begin(struct pdu_frame *f, struct bhs *b, uint32_t len)
{
	f->next = NULL;
	f->niov = 0;
	f->iov_done = 0;
	f->iov_off = 0;
	f->src_fd = -1;
	f->src_off = 0;
	b->data_len = len;
	bhs_encode(b, f->hdr);
}

size_t pdu_frame_build(struct pdu_frame *f, struct bhs *b, const void *data, uint32_t len, bool header_digest,
		       bool data_digest)
{
	pdu_frame_begin(f, b, len);
	return pdu_frame_finish(f, data, len, header_digest, data_digest);
}

size_t pdu_frame_finish(struct pdu_frame *f, const void *data, uint32_t len, bool header_digest, bool data_digest)
{
	size_t hlen = BHS_LEN;
	if (header_digest) {
		digest_store(f->hdr + BHS_LEN, crc32c(f->hdr, BHS_LEN));
		hlen += 4;
	}
	f->iov[f->niov++] = (struct iovec){f->hdr, hlen};
	size_t total = hlen;
	if (len) {
		f->iov[f->niov++] = (struct iovec){(void *)data, len};
		uint32_t pad = pad4(len) - len;
		memset(f->trailer, 0, sizeof(f->trailer));
		size_t tlen = pad;
		if (data_digest) {
			uint32_t s = crc32c_update(crc32c_init(), data, len);
			s = crc32c_update(s, f->trailer, pad);
			digest_store(f->trailer + pad, crc32c_final(s));
			tlen += 4;
		}
		if (tlen)
			f->iov[f->niov++] = (struct iovec){f->trailer, tlen};
		total += len + tlen;
	}
	return total;
}

void pdu_queue_push(struct pdu_queue *q, struct pdu_frame *f)
{
	f->next = NULL;
	if (q->tail)
		q->tail->next = f;
	else
		q->head = f;
	q->tail = f;
}

int pdu_queue_gather(const struct pdu_queue *q, struct iovec *iov, int max, size_t *bytes, bool *at_file)
{
	int n = 0;
	size_t total = 0;
	bool file = false;
	for (const struct pdu_frame *f = q->head; f && n < max; f = f->next) {
		for (int i = f->iov_done; i < f->niov && n < max; i++) {
			if (pdu_frame_data_in_file(f, i)) {
				file = true; /* not memory: the sender moves it itself */
				goto out;
			}
			iov[n] = f->iov[i];
			if (i == f->iov_done && f->iov_off) {
				iov[n].iov_base = (char *)iov[n].iov_base + f->iov_off;
				iov[n].iov_len -= f->iov_off;
			}
			total += iov[n].iov_len;
			n++;
		}
	}
out:
	if (bytes)
		*bytes = total;
	if (at_file)
		*at_file = file;
	return n;
}

void pdu_queue_consume(struct pdu_queue *q, size_t n, void (*done)(struct pdu_frame *f, void *arg), void *arg)
{
	while (q->head) {
		struct pdu_frame *f = q->head;
		while (f->iov_done < f->niov) {
			size_t rem = f->iov[f->iov_done].iov_len - f->iov_off;
			if (n < rem) {
				f->iov_off += n;
				return;
			}
			n -= rem;
			f->iov_done++;
			f->iov_off = 0;
		}
		q->head = f->next;
		if (!q->head)
			q->tail = NULL;
		done(f, arg);
	}
}

void pdu_queue_drain(struct pdu_queue *q, void (*done)(struct pdu_frame *f, void *arg), void *arg)
{
	while (q->head) {
		struct pdu_frame *f = q->head;
		q->head = f->next;
		done(f, arg);
	}
	q->tail = NULL;
}
