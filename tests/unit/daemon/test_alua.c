/* Unit tests of the ALUA parsers the failover uses: the TPGS field, the target port designators
 * of VPD page 0x83 and the REPORT TARGET PORT GROUPS answer, each also cut short. */
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

int main(void)
{
	test_tpgs();
	test_vpd83();
	test_rtpg();
	TEST_MAIN_END();
}
