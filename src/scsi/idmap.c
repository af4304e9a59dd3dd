/*
 * An index from 64-bit identifiers to positions in an array whose elements each start with
 * their identifier: the target's nexus list and each LU's per-nexus entries. Every command looks
 * its nexus up in both, and an initiator decides how many sessions there are, so lookups must
 * not cost one comparison per session. Open addressing with linear probing; removal shifts the
 * entries that follow back, so there are no tombstones.
 */
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_int.h"
#include "util/sbuf.h"

static uint64_t elem_id(const void *base, size_t stride, uint32_t idx)
{
	uint64_t id;

	memcpy(&id, (const uint8_t *)base + (size_t)idx * stride, sizeof(id));
	return id;
}

static size_t home(const struct idmap *m, uint64_t id)
{
	return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 20) & (m->cap - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t probe(const struct idmap *m, const void *base, size_t stride, uint64_t id)
{
	size_t s = home(m, id);

	while (m->slot[s] && elem_id(base, stride, m->slot[s] - 1) != id)
		s = (s + 1) & (m->cap - 1);
	return s;
}

bool idmap_find(const struct idmap *m, const void *base, size_t stride, uint64_t id, size_t *idx)
{
	if (!m->cap)
		return false;
	size_t s = probe(m, base, stride, id);
	if (!m->slot[s])
		return false;
	*idx = m->slot[s] - 1;
	return true;
}

static void put(struct idmap *m, const void *base, size_t stride, size_t idx)
{
	m->slot[probe(m, base, stride, elem_id(base, stride, (uint32_t)idx))] = (uint32_t)idx + 1;
}

void idmap_insert(struct idmap *m, const void *base, size_t stride, size_t n, size_t idx)
{
	/* At most half full: probes stay short. n counts the elements, idx among them. */
	if (2 * n > m->cap) {
		size_t cap = m->cap ? m->cap : 16;
		while (2 * n > cap)
			cap *= 2;
		free(m->slot);
		m->slot = xcalloc(cap, sizeof(*m->slot));
		m->cap = cap;
		for (size_t i = 0; i < n; i++) {
			if (i != idx)
				put(m, base, stride, i);
		}
	}
	put(m, base, stride, idx);
}

void idmap_remove(struct idmap *m, const void *base, size_t stride, uint64_t id)
{
	if (!m->cap)
		return;
	size_t s = probe(m, base, stride, id), mask = m->cap - 1;
	if (!m->slot[s])
		return;
	m->slot[s] = 0;
	/*
	 * Later entries of the same probe run move up into the hole when their search passes it:
	 * when their home slot is not cyclically within (hole, their slot].
	 */
	for (size_t k = (s + 1) & mask; m->slot[k]; k = (k + 1) & mask) {
		size_t h = home(m, elem_id(base, stride, m->slot[k] - 1));
		bool move = s <= k ? (h <= s || h > k) : (h <= s && h > k);
		if (move) {
			m->slot[s] = m->slot[k];
			m->slot[k] = 0;
			s = k;
		}
	}
}

void idmap_moved(struct idmap *m, uint64_t id, size_t from, size_t to)
{
	if (!m->cap)
		return;
	for (size_t s = home(m, id); m->slot[s]; s = (s + 1) & (m->cap - 1)) {
		if (m->slot[s] == from + 1) {
			m->slot[s] = (uint32_t)to + 1;
			return;
		}
	}
}

void idmap_free(struct idmap *m)
{
	free(m->slot);
	m->slot = NULL;
	m->cap = 0;
}
