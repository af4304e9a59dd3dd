#!/usr/bin/env bash
# Two gateways of one group on one RBD image: the gateway holding the image's exclusive lock is
# active/optimized (docs/gateways.md, "Which gateway is active/optimized"):
#   - nobody holds the lock yet: gateway 1 (the lowest that answers) is active/optimized;
#   - writes alternating through both gateways pass the lock back and forth: the states stay as
#     they are and no ASYMMETRIC ACCESS STATE CHANGED is raised;
#   - a write through gateway 2 takes the lock there: within two probe intervals REPORT TARGET
#     PORT GROUPS through both gateways says gateway 2 is active/optimized and 1 non-optimized,
#     and a nexus on each gateway gets 06h/2Ah/06h once;
#   - a write through gateway 1 brings it back, with the same unit attention;
#   - the holder SIGKILLed: the survivor is active/optimized, the dead one unavailable, and
#     writes go on through the survivor.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"

ceph_start
ceph_client_timeout 5
ceph_image alua 64M
IQN=iqn.2026-11.org.isthmus:gwalua
start_rbd_gateways 2 "$IQN" "rbd:rbd/alua,conf=$CEPH_CONF"

run_to 240 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" "${GW_PID[2]}" <<'PY' ||
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, rtpg, cdb10, OPT, NONOPT, UNAVAILABLE

iqn, ports, pid2 = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}, int(sys.argv[5])
gateway_nexus.setup("test_gateway_alua_rbd", iqn, ports)
PROBE_S = 2.0            # GATEWAY_PROBE_INTERVAL_MS
MOVE_BOUND_S = 2 * PROBE_S + 3.0  # two samples, plus the samples' and the polling's own time

def write10(nx, lba, fill, seen):
    """WRITE(10) of one block, sent again past unit attentions (each noted in seen) and NOT READY."""
    for _ in range(40):
        st, _, s = nx.cmd(cdb10(0x2a, lba, 1), out=bytes([fill]) * 512)
        if st != 2 or not s or sense_of(s)[0] not in (2, 6):
            return st
        if sense_of(s)[0] == 6:
            seen.append((nx.gw, sense_of(s)))
        else:
            time.sleep(0.5)
    return st

def wait_states(pollers, want, bound):
    """Polls RTPG through every poller until all report want; the seconds it took, or None."""
    took, got = gateway_nexus.wait_views(pollers, lambda gw, v: v == want, bound, 0.1)
    if took is None:
        say("  still after %.1f s: %s" % (bound, got))
    return took

def expect_alua_ua(nx):
    """The nexus's next command: ASYMMETRIC ACCESS STATE CHANGED, once; the one after: GOOD."""
    st, _, s = nx.cmd(bytes(6))
    check(st == 2 and sense_of(s) == (6, 0x2a, 0x06),
          "%s on gateway %d: first command 0x%02x %s, want 06h/2Ah/06h" % (nx.name, nx.gw, st, sense_of(s)))
    st, _, s = nx.cmd(bytes(6))
    check(st == 0, "%s on gateway %d: second command 0x%02x %s, want GOOD (one unit attention)"
          % (nx.name, nx.gw, st, sense_of(s)))

# w1/w2 write and watch for the unit attention; q1/q2 poll REPORT TARGET PORT GROUPS.
w1, w2 = Nexus("w", 1, "400000000a01"), Nexus("w", 2, "400000000a02")
q1, q2 = Nexus("q", 1, "400000000b01"), Nexus("q", 2, "400000000b02")
for nx in (w1, w2, q1, q2):
    nx.ready()

say("check: nobody holds the lock yet: gateway 1 (the lowest) is active/optimized through both gateways")
took = wait_states((q1, q2), {1: OPT, 2: NONOPT}, 15)
check(took is not None, "initial states")
time.sleep(PROBE_S)
for nx in (w1, w2):
    nx.ready()  # a start-up change, if a gateway saw one

say("check: writes alternating through both gateways for 4 probe intervals: no state change")
seen = []
t0, n = time.time(), 0
while time.time() - t0 < 4 * PROBE_S:
    st = write10(w1 if n % 2 else w2, 100 + n % 8, n & 0xff, seen)
    check(st == 0, "alternating write %d: 0x%02x" % (n, st))
    n += 1
st = write10(w1, 99, 1, seen)  # the lock rests with gateway 1, the optimized one
say("  %d writes; unit attentions on them: %s" % (n, seen))
check(n >= 20, "the lock moved often enough (%d writes)" % n)
time.sleep(2.5 * PROBE_S)
g = {nx.gw: rtpg(nx) for nx in (q1, q2)}
check(g == {1: {1: OPT, 2: NONOPT}, 2: {1: OPT, 2: NONOPT}}, "states after the alternating writes: %s" % g)
for nx in (w1, w2):
    st, _, s = nx.cmd(bytes(6))
    check(st == 0, "w on gateway %d after the alternating writes: 0x%02x %s, want GOOD (no state change)"
          % (nx.gw, st, sense_of(s)))
check(not [u for u in seen if u[1] == (6, 0x2a, 0x06)], "no ASYMMETRIC ACCESS STATE CHANGED while the lock moved")

def move_to(writer, other, want):
    seen = []
    t0 = time.time()
    st = write10(writer, 200, writer.gw, seen)
    check(st == 0, "write through gateway %d: 0x%02x" % (writer.gw, st))
    took = wait_states((q1, q2), want, MOVE_BOUND_S + 5)
    since_write = time.time() - t0
    if took is not None:
        say("  both gateways report %s %.1f s after the write" % (want, since_write))
    check(took is not None and since_write <= MOVE_BOUND_S,
          "gateway %d active/optimized within %.0f s of the write that took the lock there" % (writer.gw, MOVE_BOUND_S))
    for nx in (other, writer):
        expect_alua_ua(nx)

say("check: a write through gateway 2 makes it active/optimized, seen through both gateways, with the unit attention")
move_to(w2, w1, {1: NONOPT, 2: OPT})
time.sleep(PROBE_S)
g = {nx.gw: rtpg(nx) for nx in (q1, q2)}
check(g == {1: {1: NONOPT, 2: OPT}, 2: {1: NONOPT, 2: OPT}}, "gateway 2 stays active/optimized: %s" % g)

say("check: a write through gateway 1 moves it back")
move_to(w1, w2, {1: OPT, 2: NONOPT})

say("check: gateway 2 holding the lock is SIGKILLed: gateway 1 is active/optimized, 2 unavailable")
move_to(w2, w1, {1: NONOPT, 2: OPT})
os.kill(pid2, signal.SIGKILL)
t0 = time.time()
took = wait_states((q1,), {1: OPT, 2: UNAVAILABLE}, 15)
say("  gateway 1 reports it %.1f s after the kill" % (time.time() - t0))
check(took is not None, "survivor active/optimized, the dead holder unavailable")
expect_alua_ua(w1)
seen = []
st = write10(w1, 300, 3, seen)
check(st == 0, "a write through the survivor: 0x%02x (unit attentions %s)" % (st, seen))
time.sleep(2 * PROBE_S)
g = rtpg(q1)
check(g == {1: OPT, 2: UNAVAILABLE}, "the survivor, now holding the lock, stays active/optimized: %s" % g)
gateway_nexus.finish()
PY
	fail "ALUA states do not follow the exclusive lock (logs: $TEST_DIR/gw1.log, gw2.log)"
wait "${GW_PID[2]}" 2>/dev/null || true
unset "GW_PID[2]"
gw_stop 1 TERM
say "PASS"
