#!/usr/bin/env bash
# Two gateways of one group on one RBD image with 4096-byte blocks (docs/gateways.md):
#   - COMPARE AND WRITE of one 4096-byte block (longer than the 512 bytes librbd compares and
#     writes in one OSD operation) racing through both gateways, ROUNDS rounds: exactly one
#     succeeds, the other gets MISCOMPARE, and the block holds the winner's data;
#   - the group's lock held by a client that went away (`rados lock get` with a 5 s lease): a
#     COMPARE AND WRITE waits for the lease to end, then succeeds; held with a 60 s lease, it
#     gets NOT READY (04h/01h) after the wait bound instead of waiting for ever;
#   - the record's life: a gateway stopping while the other runs keeps isthmus.lu.<image>; the
#     last one stopping with a registration in the record keeps it; the last one stopping with
#     nothing in it removes it and the lock object.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3 rados
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"

ROUNDS=${CAW_ROUNDS:-30}

ceph_start
ceph_image caw 64M
rados_cmd() { run_to "$CEPH_CMD_TIMEOUT" rados -p rbd "$@"; }

IQN=iqn.2026-11.org.isthmus:gwcaw
start_rbd_gateways 2 "$IQN" "rbd:rbd/caw,conf=$CEPH_CONF,bs=4096"
P1=${GW_PORT[1]}
P2=${GW_PORT[2]}

# py MODE: the SCSI side, through gateway_nexus.py.
py() {
	run_to 200 python3 - "$INTEROP_DIR" "$IQN" "$P1" "$P2" "$ROUNDS" "$@" <<'PY'
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, prout, caw_cdb, write10, read10

iqn, ports, rounds, mode = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}, int(sys.argv[5]), sys.argv[6]
gateway_nexus.setup("test_gateway_rbd_caw", iqn, ports)
BS = 4096

def caw(nx, lba, old, new):
    return nx.cmd(caw_cdb(lba, 1), out=old + new)

# Every command is sent again past unit attentions (up to 4 times): the command did not run.
a1 = Nexus("a", 1, "400000000a01", bs=BS, ua_tries=4)
b2 = Nexus("b", 2, "400000000b02", bs=BS, ua_tries=4) if mode == "race" else None
for nx in (a1, b2):
    if nx:
        nx.ready(1, must=False)

if mode == "race":
    say("check: COMPARE AND WRITE of one 4096-byte block racing through both gateways, %d rounds" % rounds)
    both = 0
    for rnd in range(rounds):
        old = bytes([rnd & 0xff]) * BS
        check(write10(a1, 7, old) == 0, "round %d: setup write" % rnd)
        res, gate = {}, threading.Barrier(2)
        def go(nx, fill):
            gate.wait()
            st, _, s = caw(nx, 7, old, bytes([fill]) * BS)
            res[nx.name] = (st, sense_of(s))
        ts = [threading.Thread(target=go, args=(a1, 0xa1)), threading.Thread(target=go, args=(b2, 0xb2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        good = [n for n, r in res.items() if r[0] == 0]
        lost = [n for n, r in res.items() if r[0] == 2 and r[1] is not None and r[1][0] == 0x0e and r[1][1] == 0x1d]
        both += len(good) == 2
        check(len(good) == 1 and len(lost) == 1, "round %d: one GOOD and one MISCOMPARE, got %s" % (rnd, res))
        st, d, _ = read10(b2, 7)
        want = bytes([0xa1 if good == ["a"] else 0xb2]) * BS
        check(st == 0 and (len(good) != 1 or d == want), "round %d: the block holds the winner's data (%s)" % (rnd, sorted(set(d or b""))))
    say("  %d rounds; both succeeded in %d" % (rounds, both))
elif mode in ("held-short", "held-long"):
    old = bytes([0x5a]) * BS
    check(write10(a1, 9, old) == 0, "setup write")
    t0 = time.time()
    st, _, s = caw(a1, 9, old, bytes([0x3c]) * BS)
    took = time.time() - t0
    say("  COMPARE AND WRITE with the lock held elsewhere: status 0x%02x sense %s after %.2f s" % (st, sense_of(s), took))
    if mode == "held-short":
        check(st == 0 and 0.3 <= took <= 5.5, "it waits for the lease to end, then succeeds")
    else:
        check(st == 2 and sense_of(s) == (2, 0x04, 0x01) and took <= 8.0, "NOT READY after the wait bound")
elif mode == "register":
    check(prout(a1, 0, sark=0xabc) == 0, "REGISTER through gateway 1")
elif mode == "unregister":
    check(prout(a1, 0, key=0xabc) == 0, "unregister through gateway 1")
gateway_nexus.finish()
PY
}

py race || fail "COMPARE AND WRITE across gateways is not atomic"

say "check: the group's lock left behind by a client that went away, with a 5 s lease"
rados_cmd lock get isthmus.caw.caw isthmus-caw --lock-cookie gone --lock-duration 5 || fail "rados lock get"
py held-short || fail "COMPARE AND WRITE under a lapsing lock"
say "check: the same with a 60 s lease: NOT READY after the wait bound"
rados_cmd lock get isthmus.caw.caw isthmus-caw --lock-cookie gone2 --lock-duration 60 || fail "rados lock get"
py held-long || fail "COMPARE AND WRITE under a held lock"
rados_cmd lock break isthmus.caw.caw isthmus-caw "$(rados_cmd lock info isthmus.caw.caw isthmus-caw |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["lockers"][0]["name"])')" --lock-cookie gone2 ||
	fail "rados lock break"

say "check: gateway 2 stops while gateway 1 runs: the record stays"
gw_stop 2 TERM
rados_cmd stat isthmus.lu.caw >/dev/null 2>&1 || fail "the record went while gateway 1 still serves the LU"
say "check: gateway 1 stops last with a registration in the record: it stays"
py register || fail "REGISTER"
gw_stop 1 TERM
rados_cmd get isthmus.lu.caw "$TEST_DIR/rec" || fail "the record went with a registration in it"
grep -q "^reg " "$TEST_DIR/rec" || fail "the kept record has no registration: $(cat "$TEST_DIR/rec")"
say "check: gateway 1 again, the registration removed, stopped: the record and the lock object go"
gw_start 1
py unregister || fail "unregister"
gw_stop 1 TERM
if rados_cmd stat isthmus.lu.caw >/dev/null 2>&1; then
	fail "the record is still there: $(rados_cmd get isthmus.lu.caw /dev/stdout)"
fi
if rados_cmd stat isthmus.caw.caw >/dev/null 2>&1; then
	fail "the lock object is still there"
fi
grep -q "isthmus.lu.caw: removed" "$TEST_DIR/gw1.log" || fail "gateway 1 does not log the removal"
say "PASS"
