/*
 * Memory store: anonymous mapping, so untouched ranges cost nothing. A bitmap remembers which
 * 512-byte sectors were ever written since their last unmap, which lets GET LBA STATUS and
 * the thin-provisioning paths behave on memory as they do on a sparse file. Long operations
 * write from offload workers while the loop thread writes other ranges, so the bitmap's words
 * are updated atomically; work on it goes a word (64 sectors) at a time, and an extent query
 * looks at a bounded stretch, however large the store.
 */
#include "store/store.h"
#include "store/store_io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/sbuf.h"

#define MEM_SECTOR 512u
/* Bitmap words one extent query scans at most (2 GiB of sectors); the run ends there. */
#define MEM_EXTENT_SCAN_WORDS (1u << 16)

struct store_mem {
	struct store base;
	uint8_t *data;
	uint64_t *map;  /* one bit per sector: written since last unmap */
	size_t map_words;
};

static struct store_mem *sm(struct store *st) { return (struct store_mem *)st; }

static bool range_ok(const struct store *st, uint64_t off, uint64_t len)
{
	return off <= st->size && len <= st->size - off;
}

static uint64_t word_get(const struct store_mem *m, uint64_t w) { return __atomic_load_n(&m->map[w], __ATOMIC_RELAXED); }

static bool bit_get(const struct store_mem *m, uint64_t s) { return word_get(m, s / 64) >> (s % 64) & 1; }

static void bits_set(struct store_mem *m, uint64_t first, uint64_t last, bool v)
{
	for (uint64_t s = first; s <= last;) {
		uint64_t b = s % 64, n = 64 - b;

		if (n > last - s + 1)
			n = last - s + 1;
		uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << b;
		if (v)
			__atomic_fetch_or(&m->map[s / 64], mask, __ATOMIC_RELAXED);
		else
			__atomic_fetch_and(&m->map[s / 64], ~mask, __ATOMIC_RELAXED);
		s += n;
	}
}

static int mem_read(struct store *st, void *buf, size_t len, uint64_t off)
{
	if (!range_ok(st, off, len))
		return -ERANGE;
	memcpy(buf, sm(st)->data + off, len);
	return 0;
}

/* What refuses a change to the data: a read-only store or a range past the end. */
static int change_check(const struct store *st, uint64_t off, uint64_t len)
{
	if (st->read_only)
		return -EROFS;
	if (!range_ok(st, off, len))
		return -ERANGE;
	return 0;
}

static int mem_write(struct store *st, const void *buf, size_t len, uint64_t off)
{
	int rc = change_check(st, off, len);
	if (rc < 0 || len == 0)
		return rc;
	memcpy(sm(st)->data + off, buf, len);
	bits_set(sm(st), off / MEM_SECTOR, (off + len - 1) / MEM_SECTOR, true);
	return 0;
}

static int mem_flush(struct store *st)
{
	(void)st;
	return 0;
}

static int mem_unmap(struct store *st, uint64_t off, uint64_t len)
{
	struct store_mem *m = sm(st);
	uint64_t first, end;
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t page = pg > 0 ? (uint64_t)pg : 4096;
	uint64_t pfirst, pend;
	int rc = change_check(st, off, len);

	if (rc < 0 || len == 0)
		return rc;
	/* Whole pages go back to the kernel (they read back as zeros); the edges are cleared. */
	pfirst = (off + page - 1) / page * page;
	pend = (off + len) / page * page;
	if (pend > pfirst) {
		memset(m->data + off, 0, pfirst - off);
		if (madvise(m->data + pfirst, pend - pfirst, MADV_DONTNEED) < 0)
			memset(m->data + pfirst, 0, pend - pfirst);
		memset(m->data + pend, 0, off + len - pend);
	} else {
		memset(m->data + off, 0, len);
	}
	/* Only sectors entirely inside the range become unallocated. */
	first = (off + MEM_SECTOR - 1) / MEM_SECTOR;
	end = (off + len) / MEM_SECTOR;
	if (off + len == st->size)
		end = (st->size + MEM_SECTOR - 1) / MEM_SECTOR;
	if (end > first)
		bits_set(m, first, end - 1, false);
	return 0;
}

/* Like unmap for the data (pages go back to the kernel), but the sectors stay allocated. */
static int mem_zero(struct store *st, uint64_t off, uint64_t len)
{
	struct store_mem *m = sm(st);
	int rc = change_check(st, off, len);

	if (rc < 0 || len == 0)
		return rc;
	rc = mem_unmap(st, off, len);
	if (rc == 0)
		bits_set(m, off / MEM_SECTOR, (off + len - 1) / MEM_SECTOR, true);
	return rc;
}

static int mem_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	struct store_mem *m = sm(st);
	uint64_t nsect = (st->size + MEM_SECTOR - 1) / MEM_SECTOR;
	uint64_t s, e, w, scanned = 0;

	if (off >= st->size)
		return -ERANGE;
	s = off / MEM_SECTOR;
	*mapped = bit_get(m, s);
	/* To the end of s's word bit by bit, then whole words of one status at a time. */
	for (e = s + 1; e < nsect && e % 64; e++) {
		if (bit_get(m, e) != *mapped)
			goto found;
	}
	for (w = e / 64; e < nsect && scanned < MEM_EXTENT_SCAN_WORDS; w++, scanned++) {
		uint64_t word = word_get(m, w), same = *mapped ? ~0ull : 0;

		if (word == same && e + 64 <= nsect) {
			e += 64;
			continue;
		}
		while (e < nsect && bit_get(m, e) == *mapped)
			e++;
		break;
	}
found:
	*run = (e * MEM_SECTOR < st->size ? e * MEM_SECTOR : st->size) - off;
	return 0;
}

static int mem_resize(struct store *st, uint64_t new_size)
{
	struct store_mem *m = sm(st);
	size_t words;
	void *p;
	uint64_t *map;

	if (new_size == 0 || new_size > (uint64_t)SIZE_MAX / 2)
		return -EINVAL;
	/*
	 * Workers may be reading or writing the mapping (and the bitmap) right now: their long
	 * operations hold a job from the first step to the last. The loops' own ios run inline
	 * (STORE_WAIT_NEVER), and a resize comes only from a reload or the management socket, with
	 * every loop but the caller's paused between events: nothing else is in the mapping.
	 */
	if (st->jobs)
		return -EBUSY;
	p = mremap(m->data, st->size, new_size, MREMAP_MAYMOVE);
	if (p == MAP_FAILED)
		return -errno;
	words = (size_t)((new_size + MEM_SECTOR * 64 - 1) / (MEM_SECTOR * 64));
	map = realloc(m->map, words * sizeof(*map));
	if (!map) {
		/* Undo so the store stays consistent with its old size. */
		void *back = mremap(p, new_size, st->size, MREMAP_MAYMOVE);
		if (back != MAP_FAILED)
			m->data = back;
		return -ENOMEM;
	}
	if (words > m->map_words)
		memset(map + m->map_words, 0, (words - m->map_words) * sizeof(*map));
	if (new_size < st->size && new_size % (MEM_SECTOR * 64)) {
		/* Clear stale bits past the new end so a later grow starts unallocated. */
		uint64_t last = (new_size + MEM_SECTOR - 1) / MEM_SECTOR;
		if (last % 64)
			map[last / 64] &= (1ull << (last % 64)) - 1;
	}
	m->data = p;
	m->map = map;
	m->map_words = words;
	st->size = new_size;
	return 0;
}

static void mem_close(struct store *st)
{
	struct store_mem *m = sm(st);

	munmap(m->data, st->size);
	free(m->map);
	free(st->path);
	free(m);
}

static const struct store_ops mem_ops = {
	.read = mem_read,
	.write = mem_write,
	.flush = mem_flush,
	.unmap = mem_unmap,
	.extent = mem_extent,
	.resize = mem_resize,
	.close = mem_close,
	.zero = mem_zero,
};

struct store *store_mem_open(uint64_t size, char **err)
{
	struct store_mem *m;
	void *p;

	if (size == 0 || size > (uint64_t)SIZE_MAX / 2) {
		*err = xasprintf("memory store: invalid size %llu", (unsigned long long)size);
		return NULL;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		*err = xasprintf("memory store of %llu bytes: %s", (unsigned long long)size, strerror(errno));
		return NULL;
	}
	m = xcalloc(1, sizeof(*m));
	m->data = p;
	m->map_words = (size_t)((size + MEM_SECTOR * 64 - 1) / (MEM_SECTOR * 64));
	m->map = xcalloc(m->map_words, sizeof(*m->map));
	m->base.ops = &mem_ops;
	m->base.size = size;
	m->base.read_only = false;
	m->base.thin = true;
	/* One command at a time and nothing survives a crash: a write is never seen half done. */
	m->base.atomic_writes = true;
	m->base.path = xstrdup("memory");
	m->base.fd = -1;
	m->base.caps = STORE_CAP_UNMAP | STORE_CAP_WRITE_ZEROES;
	return &m->base;
}
