/* Unit tests of the ALUA parsers the failover uses: the TPGS field, the target port designators
 * of VPD page 0x83 and the REPORT TARGET PORT GROUPS answer, each also cut short; and the choice
 * of the preferred portal from each LU's active/optimized group (alua_choose_portal). */
#include <string.h>

#include "../test.h"
#include "daemon/alua.h"

static void test_tpgs(void)
{
	uint8_t inq[36] = {0};
	CHECK_EQ(alua_tpgs(inq, sizeof(inq)), 0);
	inq[5] = 0x10; /* implicit ALUA */
	CHECK_EQ(alua_tpgs(inq, sizeof(inq)), 1);
	inq[5] = 0x30;
	CHECK_EQ(alua_tpgs(inq, sizeof(inq)), 3);
	CHECK_EQ(alua_tpgs(inq, 5), -1);
}

static void test_vpd83(void)
{
	/* an NAA designator of the LU, a relative target port (2) and a target port group (7) */
	uint8_t p[] = {0x00, 0x83, 0x00, 0x1c,
		       0x01, 0x03, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8,
		       0x01, 0x14, 0x00, 0x04, 0, 0, 0x00, 0x02,
		       0x01, 0x15, 0x00, 0x04, 0, 0, 0x00, 0x07};
	int tpg, rp;
	CHECK(alua_port_from_vpd83(p, sizeof(p), &tpg, &rp));
	CHECK_EQ(tpg, 7);
	CHECK_EQ(rp, 2);
	/* cut inside the last designator: only the relative port */
	CHECK(!alua_port_from_vpd83(p, sizeof(p) - 2, &tpg, &rp));
	CHECK_EQ(rp, 2);
	/* a target port group of the LU association (00b) is not the port's */
	p[25] = 0x05;
	CHECK(!alua_port_from_vpd83(p, sizeof(p), &tpg, &rp));
	p[1] = 0x80;
	CHECK(!alua_port_from_vpd83(p, sizeof(p), &tpg, &rp));
}

static void test_rtpg(void)
{
	/* group 1 active/optimized with ports 1 and 2, group 2 standby with port 3 */
	uint8_t d[] = {0, 0, 0, 0x1c,
		       0x80, 0x0f, 0x00, 0x01, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2,
		       0x02, 0x0f, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 3};
	struct alua_group g[ALUA_MAX_GROUPS];
	CHECK_EQ(alua_parse_rtpg(d, sizeof(d), g, ALUA_MAX_GROUPS), 2);
	CHECK_EQ(g[0].tpg, 1);
	CHECK_EQ(g[0].state, ALUA_ACTIVE_OPTIMIZED);
	CHECK(g[0].preferred);
	CHECK_EQ(g[1].tpg, 2);
	CHECK_EQ(g[1].state, ALUA_STANDBY);
	CHECK_EQ(alua_parse_rtpg(d, 20, g, ALUA_MAX_GROUPS), 1);
	CHECK_EQ(alua_parse_rtpg(d, sizeof(d), g, 1), 1);
	CHECK_EQ(alua_parse_rtpg(d, 3, g, 1), -1);
	CHECK_STR(alua_state_str(ALUA_STANDBY), "standby");
	uint8_t cdb[16];
	CHECK_EQ(alua_cdb_rtpg(cdb, 1024), 12);
	CHECK(cdb[0] == 0xa3 && cdb[1] == 0x0a && cdb[8] == 4 && cdb[9] == 0);
}

/* Three portals: A in group 1, B in group 2, C (a second portal of gateway 2) in group 2. */
static const int tpg3[] = {1, 2, 2};

static void test_choose_most(void)
{
	unsigned n[3];
	/* LUN 0 optimized on 1, LUNs 1 and 2 on 2: B (the first of group 2) however it is listed */
	struct alua_lun_opt l[] = {{.lun = 0, .tpg = 1}, {.lun = 1, .tpg = 2}, {.lun = 2, .tpg = 2}};
	struct alua_choice c = alua_choose_portal(tpg3, 2, -1, -1, l, 3, n);
	CHECK_EQ(c.portal, 1);
	CHECK_EQ(c.why, ALUA_CHOICE_MOST);
	CHECK_EQ(c.count, 2);
	CHECK_EQ(n[0], 1);
	CHECK_EQ(n[1], 2);
	/* the current portal does not win against more LUs */
	c = alua_choose_portal(tpg3, 2, 0, -1, l, 3, n);
	CHECK_EQ(c.portal, 1);
	CHECK_EQ(c.why, ALUA_CHOICE_MOST);
	/* the first LU alone no longer decides: LUN 0 listed last changes nothing */
	struct alua_lun_opt r[] = {{.lun = 2, .tpg = 2}, {.lun = 1, .tpg = 2}, {.lun = 0, .tpg = 1}};
	CHECK_EQ(alua_choose_portal(tpg3, 2, -1, -1, r, 3, n).portal, 1);
	/* an LU with no optimized group (-1) counts for nobody; nor does a portal of unknown group */
	int unknown[] = {1, -1};
	struct alua_lun_opt m[] = {{.lun = 0, .tpg = -1}, {.lun = 1, .tpg = 2}, {.lun = 2, .tpg = 1}};
	c = alua_choose_portal(unknown, 2, 1, -1, m, 3, n);
	CHECK_EQ(c.portal, 0);
	CHECK_EQ(c.why, ALUA_CHOICE_MOST);
	CHECK_EQ(n[1], 0);
}

static void test_choose_ties(void)
{
	unsigned n[3];
	struct alua_lun_opt l[] = {{.lun = 5, .tpg = 2}, {.lun = 3, .tpg = 1}};
	/* one LU each: the current portal stays */
	struct alua_choice c = alua_choose_portal(tpg3, 2, 1, -1, l, 2, n);
	CHECK_EQ(c.portal, 1);
	CHECK_EQ(c.why, ALUA_CHOICE_TIE_CURRENT);
	c = alua_choose_portal(tpg3, 2, 0, -1, l, 2, n);
	CHECK_EQ(c.portal, 0);
	CHECK_EQ(c.why, ALUA_CHOICE_TIE_CURRENT);
	/* the current portal not among the tied (or none): the one optimized for the lowest LUN (3) */
	c = alua_choose_portal(tpg3, 2, -1, -1, l, 2, n);
	CHECK_EQ(c.portal, 0);
	CHECK_EQ(c.why, ALUA_CHOICE_TIE_LOWEST);
	int three[] = {1, 2, 3};
	struct alua_lun_opt t[] = {{.lun = 7, .tpg = 2}, {.lun = 4, .tpg = 3}};
	c = alua_choose_portal(three, 3, 0, -1, t, 2, n);
	CHECK_EQ(c.portal, 2);
	CHECK_EQ(c.why, ALUA_CHOICE_TIE_LOWEST);
	CHECK_EQ(c.count, 1);
	/* two portals of one group tie with each other: the current one, else the first */
	struct alua_lun_opt g2[] = {{.lun = 0, .tpg = 2}};
	CHECK_EQ(alua_choose_portal(tpg3, 3, 2, -1, g2, 1, n).portal, 2);
	CHECK_EQ(alua_choose_portal(tpg3, 3, 0, -1, g2, 1, n).portal, 1);
}

static void test_choose_none_and_exclude(void)
{
	unsigned n[3];
	/* no LU known, or no LU optimized in a known portal's group: no choice (the caller's default) */
	struct alua_choice c = alua_choose_portal(tpg3, 3, 1, -1, NULL, 0, n);
	CHECK_EQ(c.portal, -1);
	CHECK_EQ(c.why, ALUA_CHOICE_NONE);
	struct alua_lun_opt l[] = {{.lun = 0, .tpg = 9}};
	CHECK_EQ(alua_choose_portal(tpg3, 3, 1, -1, l, 1, n).portal, -1);
	/* the failed portal excluded: the best of the others, even with fewer LUs */
	struct alua_lun_opt m[] = {{.lun = 0, .tpg = 1}, {.lun = 1, .tpg = 1}, {.lun = 2, .tpg = 2}};
	c = alua_choose_portal(tpg3, 3, 0, 0, m, 3, n);
	CHECK_EQ(c.portal, 1);
	CHECK_EQ(c.count, 1);
	CHECK_EQ(n[0], 2);
	struct alua_lun_opt only[] = {{.lun = 0, .tpg = 1}};
	CHECK_EQ(alua_choose_portal(tpg3, 3, 0, 0, only, 1, n).portal, -1);
	CHECK_STR(alua_choice_why_str(ALUA_CHOICE_TIE_LOWEST), "tie_lowest_lun");
}

int main(void)
{
	test_tpgs();
	test_vpd83();
	test_rtpg();
	test_choose_most();
	test_choose_ties();
	test_choose_none_and_exclude();
	TEST_MAIN_END();
}
