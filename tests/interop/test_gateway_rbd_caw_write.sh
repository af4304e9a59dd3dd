#!/usr/bin/env bash
# COMPARE AND WRITE against the other commands of another gateway (docs/gateways.md): two
# gateways of one group on one RBD image with 4096-byte blocks, so that a one-block COMPARE AND
# WRITE is longer than the 512 bytes librbd compares and writes in one OSD operation and runs as
# a read, a comparison and a write. The test hook ISTHMUS_TEST_CAW_WRITE_DELAY_MS (docs/testing.md)
# makes each such command wait DELAY_MS between its comparison and its write: the window another
# gateway's write must not land in.
#   - a WRITE of other data through gateway 2 sent inside the window of a COMPARE AND WRITE
#     through gateway 1, to the same block: it is held until the COMPARE AND WRITE has written,
#     so the block holds the WRITE's data afterwards (never the COMPARE AND WRITE's with both
#     GOOD, which is what an unheld WRITE gives);
#   - the same with WRITE SAME (10);
#   - a WRITE to another block meanwhile is not held;
#   - gateway 2 stopped (SIGSTOP: its watch does not answer): the COMPARE AND WRITE gets NOT READY
#     (04h/01h) instead of running without the hold, and succeeds once gateway 2 runs again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"

DELAY_MS=3000

ceph_start
ceph_image cawwr 64M

IQN=iqn.2026-11.org.isthmus:gwcawwr
export ISTHMUS_TEST_CAW_WRITE_DELAY_MS=$DELAY_MS
start_rbd_gateways 2 "$IQN" "rbd:rbd/cawwr,conf=$CEPH_CONF,bs=4096"
unset ISTHMUS_TEST_CAW_WRITE_DELAY_MS
grep -q "test hook ISTHMUS_TEST_CAW_WRITE_DELAY_MS" "$TEST_DIR/gw1.log" || fail "gateway 1 does not log the test hook"

run_to 200 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" "${GW_PID[2]}" "$DELAY_MS" <<'PY' || fail "COMPARE AND WRITE is not atomic against another gateway's writes"
import os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, caw_cdb, cdb10, write10, read10

iqn, ports = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}
gw2_pid, delay = int(sys.argv[5]), int(sys.argv[6]) / 1000.0
gateway_nexus.setup("test_gateway_rbd_caw_write", iqn, ports)
BS = 4096
INSIDE = 1.0  # seconds after the COMPARE AND WRITE is sent: well inside its window

a1 = Nexus("a", 1, "400000000a01", bs=BS, ua_tries=4)
b2 = Nexus("b", 2, "400000000b02", bs=BS, ua_tries=4)
a1.ready()
b2.ready()

def caw_in_background(lba, old, new):
    """Sends COMPARE AND WRITE through gateway 1 on a thread: the result dict fills when it ends."""
    res = {}
    def go():
        t0 = time.time()
        st, _, s = a1.cmd(caw_cdb(lba, 1), out=old + new)
        res.update(st=st, sense=sense_of(s), took=time.time() - t0)
    t = threading.Thread(target=go)
    t.start()
    return t, res

def timed(fn):
    t0 = time.time()
    r = fn()
    return r, time.time() - t0

def race(what, lba, other):
    """other(): a command through gateway 2 changing block lba to its data, sent inside the window."""
    old, new = b"\x11" * BS, b"\xca" * BS
    check(write10(a1, lba, old) == 0, "%s: setup write" % what)
    t, res = caw_in_background(lba, old, new)
    time.sleep(INSIDE)
    (st, want), took = timed(other)
    t.join()
    st_r, d, _ = read10(b2, lba)
    say("  %s through gateway 2: status 0x%02x after %.2f s; COMPARE AND WRITE: status 0x%02x %s after %.2f s"
        % (what, st, took, res["st"], res["sense"], res["took"]))
    check(st == 0, "%s: GOOD" % what)
    check(st_r == 0, "%s: read back" % what)
    if res["st"] == 0:
        check(d != new, "%s: the block does not hold the COMPARE AND WRITE's data although both were GOOD and the "
              "%s was sent after the comparison (its data was overwritten)" % (what, what))
        check(d == want, "%s: the block holds its data (it was ordered after the COMPARE AND WRITE)" % what)
        check(took >= delay - INSIDE - 0.5, "%s: held until the COMPARE AND WRITE had written (%.2f s)" % (what, took))
    else:
        check(res["st"] == 2 and res["sense"] == (0x0e, 0x1d, 0x00), "%s: else a MISCOMPARE" % what)

say("check: WRITE through gateway 2 inside the window of a COMPARE AND WRITE through gateway 1, same block")
data_w = b"\x5e" * BS
race("WRITE", 7, lambda: (write10(b2, 7, data_w), data_w))

say("check: WRITE SAME (10) through gateway 2 inside the window, same block")
data_ws = b"\x6f" * BS
race("WRITE SAME", 9, lambda: (b2.cmd(cdb10(0x41, 9, 1), out=data_ws)[0], data_ws))

say("check: a WRITE through gateway 2 to another block inside the window is not held")
old, new, other = b"\x22" * BS, b"\xcb" * BS, b"\x7a" * BS
check(write10(a1, 20, old) == 0, "setup write")
t, res = caw_in_background(20, old, new)
time.sleep(INSIDE)
st, took = timed(lambda: write10(b2, 40, other))
t.join()
say("  WRITE of block 40: status 0x%02x after %.2f s; COMPARE AND WRITE of block 20: 0x%02x after %.2f s"
    % (st, took, res["st"], res["took"]))
check(st == 0 and took < delay - INSIDE - 0.5, "the other block's WRITE is not held (%.2f s)" % took)
check(res["st"] == 0 and read10(b2, 20)[1] == new and read10(b2, 40)[1] == other, "both wrote their data")

say("check: gateway 2 stopped (SIGSTOP): COMPARE AND WRITE through gateway 1 gets NOT READY")
old, new = b"\x33" * BS, b"\xcc" * BS
check(write10(a1, 12, old) == 0, "setup write")
os.kill(gw2_pid, signal.SIGSTOP)
try:
    (st, _, s), took = timed(lambda: a1.cmd(caw_cdb(12, 1), out=old + new))
finally:
    os.kill(gw2_pid, signal.SIGCONT)
say("  status 0x%02x %s after %.2f s" % (st, sense_of(s), took))
check(st == 2 and sense_of(s) == (2, 0x04, 0x01) and took <= 8.0, "NOT READY (04h/01h) within the hold's bound")
check(read10(a1, 12)[1] == old, "nothing written")
for _ in range(3):
    (st, _, s), took = timed(lambda: a1.cmd(caw_cdb(12, 1), out=old + new))
    if st == 0:
        break
    time.sleep(1)
check(st == 0 and read10(b2, 12)[1] == new, "gateway 2 running again: the COMPARE AND WRITE succeeds (%s)"
      % (sense_of(s),))
gateway_nexus.finish()
PY
grep -q "not every gateway held its writes" "$TEST_DIR/gw1.log" || fail "gateway 1 does not log the hold that failed"
say "PASS"
