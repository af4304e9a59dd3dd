/* ALUA answers as the daemon reads them (SPC-4 6.4.2 INQUIRY, 7.8.6 Device Identification VPD,
 * 6.37 REPORT TARGET PORT GROUPS). */
#include <string.h>

#include "daemon/alua.h"
#include "util/bytes.h"

int alua_tpgs(const uint8_t *inq, uint32_t len)
{
	if (len < 6)
		return -1;
	return (inq[5] >> 4) & 0x3;
}

bool alua_port_from_vpd83(const uint8_t *page, uint32_t len, int *tpg, int *rel_port)
{
	*tpg = -1;
	*rel_port = -1;
	if (len < 4 || page[1] != 0x83)
		return false;
	uint32_t end = 4 + get_be16(page + 2);
	if (end > len)
		end = len;
	for (uint32_t off = 4; off + 4 <= end;) {
		const uint8_t *d = page + off;
		uint32_t dlen = d[3];
		if (off + 4 + dlen > end)
			break;
		int assoc = (d[1] >> 4) & 0x3; /* 01b: the target port the command came through */
		int type = d[1] & 0xf;
		if (assoc == 1 && dlen >= 4 && type == 0x5)
			*tpg = get_be16(d + 6);
		else if (assoc == 1 && dlen >= 4 && type == 0x4)
			*rel_port = get_be16(d + 6);
		off += 4 + dlen;
	}
	return *tpg >= 0;
}

int alua_parse_rtpg(const uint8_t *data, uint32_t len, struct alua_group *out, int max)
{
	if (len < 4)
		return -1;
	uint32_t end = 4 + get_be32(data);
	if (end > len)
		end = len;
	int n = 0;
	for (uint32_t off = 4; off + 8 <= end && n < max;) {
		const uint8_t *g = data + off;
		out[n].preferred = (g[0] & 0x80) != 0;
		out[n].state = g[0] & 0xf;
		out[n].tpg = get_be16(g + 2);
		n++;
		off += 8 + 4u * g[7];
	}
	return n;
}

size_t alua_cdb_rtpg(uint8_t *cdb, uint32_t alloc)
{
	memset(cdb, 0, 12);
	cdb[0] = 0xa3; /* MAINTENANCE IN */
	cdb[1] = 0x0a; /* REPORT TARGET PORT GROUPS */
	put_be32(cdb + 6, alloc);
	return 12;
}

const char *alua_state_str(int state)
{
	switch (state) {
	case ALUA_ACTIVE_OPTIMIZED:
		return "active_optimized";
	case ALUA_ACTIVE_NON_OPTIMIZED:
		return "active_non_optimized";
	case ALUA_STANDBY:
		return "standby";
	case ALUA_UNAVAILABLE:
		return "unavailable";
	case ALUA_OFFLINE:
		return "offline";
	case ALUA_TRANSITIONING:
		return "transitioning";
	default:
		return "unknown";
	}
}

struct alua_choice alua_choose_portal(const int *portal_tpg, int nportals, int current, int exclude,
				      const struct alua_lun_opt *luns, size_t nluns, unsigned *counts)
{
	struct alua_choice c = {.portal = -1, .why = ALUA_CHOICE_NONE, .count = 0};
	for (int i = 0; i < nportals; i++) {
		counts[i] = 0;
		for (size_t k = 0; k < nluns && portal_tpg[i] >= 0; k++)
			counts[i] += luns[k].tpg == portal_tpg[i];
		if (i != exclude && counts[i] > c.count)
			c.count = counts[i];
	}
	if (c.count == 0)
		return c;
	int tied = 0;
	for (int i = 0; i < nportals; i++) {
		if (i == exclude || counts[i] != c.count)
			continue;
		if (!tied++)
			c.portal = i;
		if (i == current) {
			c.portal = i;
			c.why = ALUA_CHOICE_TIE_CURRENT;
		}
	}
	if (tied == 1) {
		c.why = ALUA_CHOICE_MOST;
		return c;
	}
	if (c.why == ALUA_CHOICE_TIE_CURRENT)
		return c;
	/* the lowest-numbered LU optimized in a tied portal's group decides (the first such portal) */
	c.why = ALUA_CHOICE_TIE_LOWEST;
	const struct alua_lun_opt *low = NULL;
	for (int i = 0; i < nportals; i++) {
		if (i == exclude || counts[i] != c.count)
			continue;
		for (size_t k = 0; k < nluns; k++)
			if (luns[k].tpg == portal_tpg[i] && (!low || luns[k].lun < low->lun)) {
				low = &luns[k];
				c.portal = i;
			}
	}
	return c;
}

const char *alua_choice_why_str(enum alua_choice_why why)
{
	switch (why) {
	case ALUA_CHOICE_NONE:
		return "none";
	case ALUA_CHOICE_MOST:
		return "most_optimized_luns";
	case ALUA_CHOICE_TIE_CURRENT:
		return "tie_current_portal";
	case ALUA_CHOICE_TIE_LOWEST:
		return "tie_lowest_lun";
	}
	return "none";
}
