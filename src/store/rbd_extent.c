/*
 * Allocation status of RBD images (GET LBA STATUS): which ranges hold data, from
 * rbd_diff_iterate2. Asks the cluster, so it runs on a worker, never on the loop.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "store/store_rbd_int.h"
#include "util/sbuf.h"

/*
 * Bytes of the image one allocation query looks at: rbd_diff_iterate2 asks the OSD about every
 * object in the range, so a query on a large image would hold a worker for long. The caller
 * (GET LBA STATUS) asks again from where the answer ended.
 */
#define RBD_EXTENT_WINDOW (64ull << 20)

struct extent_walk {
	uint64_t (*ext)[2];           /* allocated [start, end) pairs */
	size_t n, cap;
};

static int extent_seen(uint64_t ofs, size_t len, int exists, void *arg)
{
	struct extent_walk *w = arg;

	if (!exists || len == 0)
		return 0;
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->ext = xrealloc(w->ext, w->cap * sizeof(*w->ext));
	}
	w->ext[w->n][0] = ofs;
	w->ext[w->n][1] = ofs + len;
	w->n++;
	return 0;
}

static int cmp_extent(const void *a, const void *b)
{
	uint64_t x = (*(const uint64_t(*)[2])a)[0], y = (*(const uint64_t(*)[2])b)[0];
	return x < y ? -1 : x > y;
}

/*
 * Allocation status from rbd_diff_iterate2 against nothing (every allocated extent, the
 * parent's included). Blocks on the cluster: a worker's call, never the loop's.
 */
int rbds_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	struct rbd_store *rs = rbds_of(st);
	struct extent_walk w = {0};
	uint64_t end, size = __atomic_load_n(&st->size, __ATOMIC_ACQUIRE); /* the image's watch changes it */
	int rc;

	if (off >= size)
		return -ERANGE;
	if (atomic_load(&rs->state) != RBD_READY)
		return -ETIMEDOUT;
	if (rbd_thread_engine) {
		/*
		 * Asked on an engine's loop, which must never wait for the cluster: "mapped or unknown"
		 * (SBC-3's provisioning status 0) for the rest of the image, without asking.
		 */
		*mapped = true;
		*run = size - off;
		return 0;
	}
	end = size - off > RBD_EXTENT_WINDOW ? off + RBD_EXTENT_WINDOW : size;
	rc = rbd_diff_iterate2(rs->im.img, NULL, off, end - off, 1, 0, extent_seen, &w);
	if (rc < 0) {
		free(w.ext);
		return rc;
	}
	if (w.n > 1)
		qsort(w.ext, w.n, sizeof(*w.ext), cmp_extent);
	*mapped = false;
	uint64_t at = end;
	for (size_t i = 0; i < w.n; i++) {
		if (w.ext[i][1] > off && w.ext[i][0] <= off) {
			*mapped = true;
			break;
		}
	}
	if (*mapped) {
		/* The run of data: extents that touch or overlap, from off on. */
		at = off;
		for (size_t i = 0; i < w.n; i++) {
			if (w.ext[i][0] > at)
				break;
			if (w.ext[i][1] > at)
				at = w.ext[i][1];
		}
	} else {
		/* The hole ends where the first extent past off starts. */
		for (size_t i = 0; i < w.n; i++) {
			if (w.ext[i][0] > off) {
				at = w.ext[i][0];
				break;
			}
		}
	}
	free(w.ext);
	*run = (at > end ? end : at) - off;
	return 0;
}
