#!/usr/bin/env bash
# ALUA per logical unit (docs/gateways.md, "Several RBD LUNs on one target"): two gateways of one
# group serve LUN 0 on image rbd/lu0 and LUN 1 on image rbd/lu1.
#   - LUN 0 is written through gateway 1 and LUN 1 through gateway 2: once the locks rest,
#     REPORT TARGET PORT GROUPS through LUN 0 names gateway 1 active/optimized and 2
#     non-optimized, through LUN 1 the opposite, on both gateways;
#   - LUN 1 written through gateway 1 moves its lock, and its optimized gateway, there: its
#     nexuses on both gateways get ASYMMETRIC ACCESS STATE CHANGED (06h/2Ah/06h) on LUN 1, and
#     none on LUN 0, whose state did not change; LUN 0 still names gateway 1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"

ceph_start
ceph_client_timeout 5
ceph_image lu0 64M
ceph_image lu1 64M
IQN=iqn.2026-11.org.isthmus:gwalualu
start_rbd_gateways 2 "$IQN" "rbd:rbd/lu0,conf=$CEPH_CONF" --lun "rbd:rbd/lu1,conf=$CEPH_CONF"

run_to 240 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" <<'PY' ||
import sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, past_ua, rtpg, cdb10, TUR, OPT, NONOPT

iqn, ports = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}
gateway_nexus.setup("test_gateway_alua_lu_rbd", iqn, ports, say_ok=True)
PROBE_S = 2.0                     # GATEWAY_PROBE_INTERVAL_MS
SETTLE_S = 4 * PROBE_S + 6.0      # two samples at rest per LU, the samples' own time, the polling

def clear_ua(nx, lun):
    if not nx.ready(16, must=False, lun=lun):
        raise RuntimeError("unit attentions do not clear on LUN %d" % lun)

def uas(nx, lun):
    """The unit attentions pending on lun (TEST UNIT READY until GOOD)."""
    got = []
    for _ in range(16):
        st, _, s = nx.cmd(TUR, lun=lun)
        if st == 0:
            return got
        got.append(sense_of(s))
    return got

def write(nx, lun, lba):
    """A write, sent again after unit attentions (a few), as initiators do."""
    st = past_ua(nx, cdb10(0x2a, lba, 1), out=bytes([lun + 1]) * 512, ua_retries=7, lun=lun)[0]
    check(st == 0, "a write to LUN %d through gateway %d (status %s)" % (lun, nx.gw, st))

def want(opt_by_lun):
    return {lun: {1: OPT if o == 1 else NONOPT, 2: OPT if o == 2 else NONOPT} for lun, o in opt_by_lun.items()}

def views(probes):
    return {(nx.gw, lun): rtpg(nx, lun=lun) for nx in probes for lun in (0, 1)}

def settle(probes, opt_by_lun, what):
    w = want(opt_by_lun)
    t0 = time.time()
    seen = None
    while time.time() - t0 < SETTLE_S:
        seen = views(probes)
        if all(seen[(gw, lun)] == w[lun] for gw in (1, 2) for lun in (0, 1)):
            say("  %s after %.1f s" % (what, time.time() - t0))
            return True
        time.sleep(0.25)
    say("  last seen (gateway, LUN) -> {group: state}: %s" % seen)
    return False

# w1, w2 write; p1, p2 only ask (their unit attentions are consumed by the polling); u1, u2
# watch for unit attentions.
w1, w2 = Nexus("writer", 1, "400000001001"), Nexus("writer", 2, "400000001002")
p1, p2 = Nexus("prober", 1, "400000002001"), Nexus("prober", 2, "400000002002")
u1, u2 = Nexus("watcher", 1, "400000003001"), Nexus("watcher", 2, "400000003002")

say("check: LUN 0 written through gateway 1 and LUN 1 through gateway 2, each LU optimized where its lock rests")
write(w1, 0, 10)
write(w2, 1, 10)
check(settle((p1, p2), {0: 1, 1: 2}, "LUN 0 optimized on gateway 1, LUN 1 on gateway 2"),
      "REPORT TARGET PORT GROUPS per LU through both gateways: LUN 0 -> gateway 1, LUN 1 -> gateway 2")
v = views((p1, p2))
say("  (gateway, LUN) -> {group: state}: %s" % v)

say("check: LUN 1's lock moved to gateway 1 raises the unit attention on LUN 1 only")
for nx in (u1, u2):
    for lun in (0, 1):
        clear_ua(nx, lun)
time.sleep(2 * PROBE_S + 1)
for nx in (u1, u2):
    for lun in (0, 1):
        check(uas(nx, lun) == [], "nothing pending on LUN %d through gateway %d while the locks rest" % (lun, nx.gw))
write(w1, 1, 11)
check(settle((p1, p2), {0: 1, 1: 1}, "LUN 1 optimized on gateway 1"),
      "LUN 1 follows its lock to gateway 1, LUN 0 stays on gateway 1")
for nx in (u1, u2):
    got1, got0 = uas(nx, 1), uas(nx, 0)
    check((6, 0x2a, 0x06) in got1, "ASYMMETRIC ACCESS STATE CHANGED on LUN 1 through gateway %d (%s)" % (nx.gw, got1))
    check(got0 == [], "no unit attention on LUN 0 through gateway %d (%s)" % (nx.gw, got0))
gateway_nexus.finish()
PY
	fail "per-LU ALUA checks failed (logs: $TEST_DIR/gw1.log, gw2.log)"
for n in 1 2; do
	if report=$(sanitizer_report "$TEST_DIR/gw$n.log"); then
		fail "gateway $n reported a sanitizer error: $report"
	fi
done
say "PASS"
