/*
 * The pure checks of isthmus-threads-stress: no sockets, no clock. What SPC-4 says persistent
 * reservation commands do to a known state, what the answers of PERSISTENT RESERVE IN must look
 * like, and the data pattern of the verified ranges.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "threads_stress.h"

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

enum st_outcome st_classify(const struct ism_scsi_result *r)
{
	if (r->error == ISM_ERR_ABORTED)
		return OUT_ABORTED;
	if (r->error != ISM_OK)
		return OUT_BAD;
	switch (r->status) {
	case 0x00: return OUT_GOOD;
	case 0x18: return OUT_CONFLICT;
	case 0x08:
	case 0x28: return OUT_BUSY;
	case 0x02: break;
	default: return OUT_BAD;
	}
	uint8_t key, asc, ascq;
	if (!ism_sense_decode(r->sense, r->sense_len, &key, &asc, &ascq))
		return OUT_BAD;
	if (key == 0x6 && asc == 0x29)
		return OUT_UA_RESET;
	if (key == 0x6 && (asc == 0x2a || (asc == 0x2f && ascq == 0x00)))
		return OUT_UA_OTHER;
	if (key == 0x5 && asc == 0x26 && ascq == 0x04)
		return OUT_ILLEGAL_26_04;
	return OUT_BAD;
}

const char *st_outcome_name(enum st_outcome o)
{
	switch (o) {
	case OUT_GOOD: return "GOOD";
	case OUT_CONFLICT: return "RESERVATION CONFLICT";
	case OUT_UA_RESET: return "UNIT ATTENTION 29h (reset)";
	case OUT_UA_OTHER: return "UNIT ATTENTION (reservations)";
	case OUT_ILLEGAL_26_04: return "INVALID RELEASE OF PERSISTENT RESERVATION";
	case OUT_BUSY: return "BUSY";
	case OUT_ABORTED: return "aborted";
	case OUT_BAD: return "an unexpected answer";
	}
	return "?";
}

uint64_t st_key_of(int session) { return 0x5354524553530000ull | (uint64_t)(session + 1); }

int st_session_of_key(uint64_t key, int nsessions)
{
	for (int i = 0; i < nsessions; i++)
		if (st_key_of(i) == key)
			return i;
	return -1;
}

bool st_type_used(uint8_t type) { return type == PRT_EA || type == PRT_WE_RO || type == PRT_EA_RO; }

enum st_outcome st_pr_out_predict(const struct st_pr_model *m, int me, uint8_t sa, uint8_t type, uint64_t sark,
				  int nsessions, struct st_pr_model *after)
{
	*after = *m;
	if (sa == PRO_REGISTER_IGNORE) {
		/* REGISTER AND IGNORE EXISTING KEY always succeeds; SARK 0 unregisters. */
		after->registered[me] = sark != 0;
		if (sark == 0 && m->held && m->holder == me)
			after->held = false;
		return OUT_GOOD;
	}
	/* Every other service action needs the caller registered with the key it gives (its own). */
	if (!m->registered[me])
		return OUT_CONFLICT;
	switch (sa) {
	case PRO_RESERVE:
		if (m->held)
			return m->holder == me && m->type == type ? OUT_GOOD : OUT_CONFLICT;
		after->held = true;
		after->holder = me;
		after->type = type;
		return OUT_GOOD;
	case PRO_RELEASE:
		if (!m->held || m->holder != me)
			return OUT_GOOD; /* nothing of ours to release: no effect */
		if (m->type != type)
			return OUT_ILLEGAL_26_04;
		after->held = false;
		return OUT_GOOD;
	case PRO_CLEAR:
		memset(after->registered, 0, sizeof(after->registered));
		after->held = false;
		return OUT_GOOD;
	case PRO_PREEMPT: {
		int victim = st_session_of_key(sark, nsessions);
		bool take = m->held && st_key_of(m->holder) == sark;
		bool removed = victim >= 0 && victim != me && m->registered[victim];
		if (!removed && !take)
			return OUT_CONFLICT;
		if (removed) {
			after->registered[victim] = false;
			if (m->held && m->holder == victim)
				after->held = false;
		}
		if (take) {
			after->held = true;
			after->holder = me;
			after->type = type;
		}
		return OUT_GOOD;
	}
	default:
		return OUT_BAD;
	}
}

bool st_data_conflicts(const struct st_pr_model *m, int s, bool write)
{
	if (!m->held || m->holder == s)
		return false;
	/* Registrants-only types let every registrant through; plain Exclusive Access only its holder. */
	if (m->registered[s] && m->type != PRT_EA)
		return false;
	/* Write Exclusive types still let anyone read. */
	if (!write && m->type == PRT_WE_RO)
		return false;
	return true;
}

bool st_parse_pr_in(uint8_t sa, const uint8_t *buf, uint32_t len, struct st_pr_in *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	out->holder_index = -1;
	if (len < 8) {
		snprintf(why, whylen, "answer of %u bytes, shorter than its header", len);
		return false;
	}
	out->generation = be32(buf);
	uint32_t add = be32(buf + 4);
	if (add > len - 8) {
		snprintf(why, whylen, "ADDITIONAL LENGTH %u but only %u bytes came", add, len - 8);
		return false;
	}
	const uint8_t *p = buf + 8;
	switch (sa) {
	case PRI_READ_KEYS:
		if (add % 8) {
			snprintf(why, whylen, "READ KEYS: ADDITIONAL LENGTH %u is not a multiple of 8", add);
			return false;
		}
		if (add / 8 > 64) {
			snprintf(why, whylen, "READ KEYS: %u keys, more than any run makes", add / 8);
			return false;
		}
		out->nkeys = add / 8;
		for (size_t i = 0; i < out->nkeys; i++)
			out->keys[i] = be64(p + 8 * i);
		return true;
	case PRI_READ_RESERVATION:
		if (add != 0 && add != 16) {
			snprintf(why, whylen, "READ RESERVATION: ADDITIONAL LENGTH %u (0 or 16 expected)", add);
			return false;
		}
		out->held = add == 16;
		if (out->held) {
			out->holder_key = be64(p);
			out->type = p[13] & 0x0f;
			if (p[13] >> 4) {
				snprintf(why, whylen, "READ RESERVATION: scope %u, not LU_SCOPE", p[13] >> 4);
				return false;
			}
		}
		return true;
	case PRI_READ_FULL_STATUS:
		for (uint32_t off = 0; off < add;) {
			if (add - off < 24) {
				snprintf(why, whylen, "READ FULL STATUS: descriptor cut at offset %u", off);
				return false;
			}
			const uint8_t *d = p + off;
			uint32_t tl = be32(d + 20);
			if (tl > add - off - 24 || tl < 4 || out->nkeys >= 64) {
				snprintf(why, whylen, "READ FULL STATUS: descriptor %zu has a TransportID of %u bytes", out->nkeys, tl);
				return false;
			}
			const uint8_t *tid = d + 24;
			size_t n = (size_t)tid[2] << 8 | tid[3];
			if ((tid[0] & 0x0f) != 5 || n + 4 > tl) {
				snprintf(why, whylen, "READ FULL STATUS: descriptor %zu: not an iSCSI TransportID", out->nkeys);
				return false;
			}
			size_t nl = strnlen((const char *)tid + 4, n < 255 ? n : 255);
			memcpy(out->ports[out->nkeys], tid + 4, nl);
			out->ports[out->nkeys][nl] = 0;
			out->keys[out->nkeys] = be64(d);
			if (d[12] & 0x01) {
				if (out->holder_index >= 0) {
					snprintf(why, whylen, "READ FULL STATUS: two descriptors claim the reservation");
					return false;
				}
				out->holder_index = (int)out->nkeys;
				out->held = true;
				out->holder_key = out->keys[out->nkeys];
				out->type = d[13] & 0x0f;
			}
			out->nkeys++;
			off += 24 + tl;
		}
		return true;
	}
	snprintf(why, whylen, "unknown service action %u", sa);
	return false;
}

bool st_pr_in_consistent(uint8_t sa, const struct st_pr_in *in, int nsessions, char ports[][256], char *why,
			 size_t whylen)
{
	for (size_t i = 0; i < in->nkeys; i++) {
		int s = st_session_of_key(in->keys[i], nsessions);
		if (s < 0) {
			snprintf(why, whylen, "key 0x%016" PRIx64 " is no key of this run", in->keys[i]);
			return false;
		}
		for (size_t j = 0; j < i; j++)
			if (in->keys[j] == in->keys[i]) {
				snprintf(why, whylen, "key of session %d listed twice", s);
				return false;
			}
		if (sa == PRI_READ_FULL_STATUS && strcmp(in->ports[i], ports[s]) != 0) {
			snprintf(why, whylen, "the key of session %d is registered to initiator port '%s', not '%s'", s,
				 in->ports[i], ports[s]);
			return false;
		}
	}
	if (in->held) {
		if (!st_type_used(in->type)) {
			snprintf(why, whylen, "reservation of type %u, which no session asked for", in->type);
			return false;
		}
		if (st_session_of_key(in->holder_key, nsessions) < 0) {
			snprintf(why, whylen, "reservation held with key 0x%016" PRIx64 ", no key of this run", in->holder_key);
			return false;
		}
	}
	return true;
}

void st_model_from_full_status(const struct st_pr_in *in, int nsessions, struct st_pr_model *m)
{
	memset(m, 0, sizeof(*m));
	m->known = true;
	for (size_t i = 0; i < in->nkeys; i++) {
		int s = st_session_of_key(in->keys[i], nsessions);
		if (s >= 0)
			m->registered[s] = true;
	}
	if (in->held) {
		m->held = true;
		m->holder = st_session_of_key(in->holder_key, nsessions);
		m->type = in->type;
	}
}

void st_describe_model(const struct st_pr_model *m, int nsessions, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "registered {");
	for (int i = 0; i < nsessions && o < len; i++)
		if (m->registered[i])
			o += (size_t)snprintf(buf + o, len - o, " %d", i);
	if (o < len) {
		if (m->held)
			snprintf(buf + o, len - o, " }, held by session %d type %u", m->holder, m->type);
		else
			snprintf(buf + o, len - o, " }, not held");
	}
}

bool st_pr_in_matches(uint8_t sa, const struct st_pr_in *in, const struct st_pr_model *m, int nsessions, char *why,
		      size_t whylen)
{
	char want[256];
	st_describe_model(m, nsessions, want, sizeof(want));
	if (sa != PRI_READ_RESERVATION) {
		size_t n = 0;
		for (int i = 0; i < nsessions; i++)
			if (m->registered[i]) {
				n++;
				bool found = false;
				for (size_t k = 0; k < in->nkeys; k++)
					found |= in->keys[k] == st_key_of(i);
				if (!found) {
					snprintf(why, whylen, "the key of session %d is missing (expected %s)", i, want);
					return false;
				}
			}
		if (n != in->nkeys) {
			snprintf(why, whylen, "%zu keys listed (expected %s)", in->nkeys, want);
			return false;
		}
	}
	if (sa != PRI_READ_KEYS) {
		if (in->held != m->held) {
			snprintf(why, whylen, "reservation %s (expected %s)", in->held ? "held" : "not held", want);
			return false;
		}
		if (in->held && (in->holder_key != st_key_of(m->holder) || in->type != m->type)) {
			snprintf(why, whylen, "reservation of session %d type %u (expected %s)",
				 st_session_of_key(in->holder_key, nsessions), in->type, want);
			return false;
		}
	}
	return true;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t block_seed(uint64_t salt, int session, uint32_t slot, uint32_t gen, uint32_t block)
{
	return mix64(salt ^ mix64((uint64_t)session << 48 ^ (uint64_t)slot << 32 ^ (uint64_t)gen << 8 ^ block));
}

void st_fill_block(uint8_t *p, uint32_t bs, uint64_t salt, int session, uint32_t slot, uint32_t gen, uint32_t block)
{
	uint64_t x = block_seed(salt, session, slot, gen, block);
	for (uint32_t i = 0; i + 8 <= bs; i += 8) {
		x = mix64(x);
		memcpy(p + i, &x, 8);
	}
}

bool st_block_is(const uint8_t *p, uint32_t bs, uint64_t salt, int session, uint32_t slot, uint32_t gen,
		 uint32_t block)
{
	uint64_t x = block_seed(salt, session, slot, gen, block);
	for (uint32_t i = 0; i + 8 <= bs; i += 8) {
		x = mix64(x);
		if (memcmp(p + i, &x, 8) != 0)
			return false;
	}
	return true;
}
