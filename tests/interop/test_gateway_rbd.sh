#!/usr/bin/env bash
# Two gateways in front of one RBD image are one SCSI device for reservations (docs/gateways.md):
# persistent reservations, SPC-2 reservations and the unit attentions they raise hold on every
# gateway as soon as the command that made them has completed, two gateways racing for a
# reservation never both get it, a LOGICAL UNIT RESET through one gateway reaches the nexuses of
# the other, two gateways racing COMPARE AND WRITE on one block never both succeed, and a
# registrants-only reservation survives its holder's gateway being killed (an unregistered
# initiator meets RESERVATION CONFLICT on every gateway, a restarted one included).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3

ceph_start
# A frozen cluster is noticed within seconds rather than the gateway's default 20.
cat >>"$CEPH_CONF" <<CONF
rados osd op timeout = 5
rados mon op timeout = 5
CONF
ceph_image gw 64M

IQN=iqn.2026-11.org.isthmus:gwrbd
start_rbd_gateways 2 "$IQN" "rbd:rbd/gw,conf=$CEPH_CONF"
P1=${GW_PORT[1]}
P2=${GW_PORT[2]}

run_to 200 python3 - "$INTEROP_DIR" "$IQN" "$P1" "$P2" "$TEST_DIR/ctl" "$MICRO_CEPH" "$CEPH_DIR" <<'PY' &
import os, subprocess, sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, past_ua, prout, read_keys, read_rsv, rtpg, caw_cdb, prin_cdb

iqn, ports, ctl = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}, sys.argv[5]
micro, cdir = sys.argv[6], sys.argv[7]
gateway_nexus.setup("test_gateway_rbd", iqn, ports)

def write10(nx, lba, data, ua_retries=0):
    return gateway_nexus.write10(nx, lba, data, ua_retries, tell=True)

def read10(nx, lba, ua_retries=0):
    return gateway_nexus.read10(nx, lba, 1, ua_retries, tell=True)

KA, KB = 0xa1a1a1a1, 0xb2b2b2b2
a1, b2, c1, c2 = Nexus("a", 1, "400000000a01"), Nexus("b", 2, "400000000b02"), Nexus("c", 1, "400000000c01"), Nexus("c", 2, "400000000c02")
for nx in (a1, b2, c1, c2):
    nx.ready()

say("check: both gateways report gateway 1 (the lowest that answers) active/optimized, 2 non-optimized")
# Gateway 1 started first: its first probe found no gateway 2 and it says 2 is unavailable until
# its next probe (every 2 s). That change raises ASYMMETRIC ACCESS STATE CHANGED on its nexuses.
for nx in (c1, c2):
    g, t0 = None, time.time()
    for _ in range(50):
        g = rtpg(nx)
        if g == {1: 0, 2: 1}:
            break
        time.sleep(0.2)
    say("  through gateway %d: %s after %.1f s" % (nx.gw, g, time.time() - t0))
    check(g == {1: 0, 2: 1}, "RTPG through gateway %d: %s" % (nx.gw, g))
for nx in (a1, b2, c1, c2):
    nx.ready()  # the state change's unit attention, if there was one

say("check: a registration through gateway 1 is in READ KEYS through gateway 2 at once")
check(prout(a1, 0, sark=KA) == 0, "REGISTER a through gateway 1")
st, gen, keys = read_keys(c2)
say("  gateway 2: generation %d keys %s" % (gen, [hex(k) for k in keys]))
check(st == 0 and keys == [KA] and gen == 1, "gateway 2 sees a's key")
check(prout(b2, 0, sark=KB) == 0, "REGISTER b through gateway 2")
st, gen, keys = read_keys(c1)
check(keys == [KA, KB] and gen == 2, "gateway 1 sees both keys, generation 2 (got %s, %d)" % (keys, gen))

say("check: WRITE EXCLUSIVE - REGISTRANTS ONLY by a through gateway 1 holds on gateway 2")
check(prout(a1, 1, key=KA, type_=5) == 0, "RESERVE WE_RO by a")
r = read_rsv(c2)
check(r == (KA, 5), "gateway 2 READ RESERVATION: %s" % (r,))
for nx in (c1, c2):
    st = write10(nx, 10, bytes(512))
    check(st == 0x18, "unregistered c writes through gateway %d: status 0x%02x, want RESERVATION CONFLICT" % (nx.gw, st))
    check(read10(nx, 10)[0] == 0, "unregistered c reads through gateway %d" % nx.gw)
check(write10(b2, 10, bytes(512)) == 0, "registrant b writes through gateway 2")
check(write10(a1, 10, bytes(512)) == 0, "holder a writes through gateway 1")
check(prout(a1, 2, key=KA, type_=5) == 0, "RELEASE by a")
check(read_rsv(c2) is None, "released: gateway 2 sees no reservation")

say("check: a and b racing for a reservation through different gateways: one wins, every time")
for rnd in range(8):
    res = {}
    a1.ready()  # a RELEASE tells the other registrants: RESERVATIONS RELEASED
    b2.ready()
    def take(nx, key):
        res[nx.name] = prout(nx, 1, key=key, type_=1)
    ts = [threading.Thread(target=take, args=(a1, KA)), threading.Thread(target=take, args=(b2, KB))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    winners = [n for n, st in res.items() if st == 0]
    check(len(winners) == 1 and all(st in (0, 0x18) for st in res.values()),
          "round %d: statuses %s" % (rnd, res))
    holder = read_rsv(c1)
    check(holder is not None and holder[0] == (KA if winners == ["a"] else KB), "round %d: holder %s" % (rnd, holder))
    w = a1 if winners == ["a"] else b2
    check(prout(w, 2, key=KA if w is a1 else KB, type_=1) == 0, "round %d: RELEASE" % rnd)

say("check: b preempts a through gateway 2: a's nexus on gateway 1 gets REGISTRATIONS PREEMPTED")
check(prout(a1, 1, key=KA, type_=1) == 0, "RESERVE WE by a")
check(prout(b2, 4, key=KB, sark=KA, type_=1) == 0, "PREEMPT by b")
st, _, s = a1.cmd(bytes(6))
check(st == 2 and sense_of(s) == (6, 0x2a, 0x05), "a's next command: status 0x%02x sense %s" % (st, sense_of(s)))
check(read_rsv(c1) == (KB, 1), "gateway 1 sees b holding")
check(prout(b2, 3, key=KB) == 0, "CLEAR by b")
st, gen, keys = read_keys(c1)
check(keys == [], "cleared everywhere: %s" % keys)

say("check: RESERVE(6) through gateway 1 holds on gateway 2, and goes with its nexus")
check(a1.cmd(bytes([0x16, 0, 0, 0, 0, 0]))[0] == 0, "RESERVE(6) by a")
st = b2.cmd(bytes(6))[0]
check(st == 0x18, "b's TEST UNIT READY through gateway 2: 0x%02x, want RESERVATION CONFLICT" % st)
st = b2.cmd(bytes([0x16, 0, 0, 0, 0, 0]))[0]
check(st == 0x18, "b's RESERVE(6) through gateway 2: 0x%02x" % st)
a1.close()
ok = False
for _ in range(50):
    if b2.cmd(bytes(6))[0] == 0:
        ok = True
        break
    time.sleep(0.1)
check(ok, "a's nexus gone: b gets GOOD through gateway 2 within 5 s")

say("check: LOGICAL UNIT RESET through gateway 1: b's nexus on gateway 2 has 29h/03h at once")
a1 = Nexus("a", 1, "400000000a01")
a1.ready()
b2.ready()
resp = a1.tmf(5)
check(resp == 0, "LUN RESET response %s" % resp)
st, _, s = b2.cmd(bytes(6))
check(st == 2 and sense_of(s) == (6, 0x29, 0x03), "b's first command after the reset: 0x%02x %s" % (st, sense_of(s)))

say("check: COMPARE AND WRITE racing through both gateways on one block never both succeed")
old = bytes([0x55]) * 512
both = 0
c1.ready()
for rnd in range(20):
    check(write10(a1, 200, old) == 0 or write10(a1, 200, old) == 0, "round %d: setup write" % rnd)
    res = {}
    sense = {}
    def caw(nx, fill):
        data = old + bytes([fill]) * 512
        # A unit attention means the command did not run: send it again.
        st, _, s = past_ua(nx, caw_cdb(200, 1), out=data, ua_retries=2)
        res[nx.name], sense[nx.name] = st, sense_of(s)
    ts = [threading.Thread(target=caw, args=(a1, 0xa1)), threading.Thread(target=caw, args=(b2, 0xb2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    good = [n for n, st in res.items() if st == 0]
    both += len(good) == 2
    check(len(good) == 1, "round %d: statuses %s sense %s" % (rnd, res, sense))
    st, d, s = read10(c1, 200, ua_retries=2)
    want = 0xa1 if good == ["a"] else 0xb2
    check(st == 0 and d == bytes([want]) * 512,
          "round %d: the block holds the winner's data (winner %s; read status 0x%02x sense %s, bytes %s)"
          % (rnd, good, st, sense_of(s), sorted(set(d or b""))))
say("  20 rounds, both succeeded in %d" % both)

say("check: WE_RO held by a (registered through both gateways); gateway 1 killed; a writes on through gateway 2")
a2 = Nexus("a", 2, "400000000a01")
a2.ready()
check(prout(a1, 0, sark=KA) == 0 and prout(a2, 0, sark=KA) == 0, "a registers through both gateways")
check(prout(a1, 1, key=KA, type_=5) == 0, "RESERVE WE_RO by a through gateway 1")
stop = threading.Event()
stats = {"a": [0, 0], "c": [0, 0]}
def writer():
    n = 0
    while not stop.is_set():
        try:
            st = write10(a2, 300 + n % 64, bytes([n & 0xff]) * 512, ua_retries=3)
        except Exception as e:
            st = "error %s" % e
        stats["a"][0 if st == 0 else 1] += 1
        if st != 0:
            say("  a's write through gateway 2: %s" % st)
        try:
            st = write10(c2, 400, bytes(512), ua_retries=3)
        except Exception as e:
            st = "error %s" % e
        stats["c"][0 if st == 0x18 else 1] += 1
        if st != 0x18:
            say("  c's write through gateway 2: %s" % st)
        n += 1
        time.sleep(0.02)
wt = threading.Thread(target=writer)
wt.start()
time.sleep(1)
open(ctl + ".kill", "w").close()
for _ in range(200):
    if os.path.exists(ctl + ".killed"):
        break
    time.sleep(0.05)
say("  gateway 1 killed")
t0 = time.time()
g = None
while time.time() - t0 < 8:
    g = rtpg(b2)
    if g == {1: 3, 2: 0}:
        break
    time.sleep(0.2)
say("  gateway 2 %.1f s after the kill: %s" % (time.time() - t0, g))
check(g == {1: 3, 2: 0}, "with gateway 1 gone gateway 2 is active/optimized and 1 unavailable: %s" % g)
open(ctl + ".start", "w").close()
for _ in range(600):
    if os.path.exists(ctl + ".started"):
        break
    time.sleep(0.05)
c1 = Nexus("c", 1, "400000000c01")
st = None
st = write10(c1, 400, bytes(512), ua_retries=5)
check(st == 0x18, "unregistered c through the restarted gateway 1: 0x%02x, want RESERVATION CONFLICT" % st)
time.sleep(1)
stop.set()
wt.join()
say("  a's writes through gateway 2: %d good, %d not; c's: %d conflicts, %d other" % (stats["a"][0], stats["a"][1], stats["c"][0], stats["c"][1]))
check(stats["a"][1] == 0 and stats["a"][0] > 20, "a kept writing")
check(stats["c"][1] == 0 and stats["c"][0] > 20, "c met RESERVATION CONFLICT throughout")
r = read_rsv(c1)
check(r == (KA, 5), "the restarted gateway 1 reports a's reservation: %s" % (r,))
# a wrote through gateway 2 throughout: it holds the image's exclusive lock and stays optimized.
g = None
for _ in range(40):
    g = {nx.gw: rtpg(nx) for nx in (c1, b2)}
    if g == {1: {1: 1, 2: 0}, 2: {1: 1, 2: 0}}:
        break
    time.sleep(0.2)
check(g == {1: {1: 1, 2: 0}, 2: {1: 1, 2: 0}},
      "gateway 1 back: active/non-optimized, gateway 2 (the lock's holder) optimized, through both: %s" % g)

say("check: the cluster frozen: READ KEYS through gateway 2 fails NOT READY instead of answering from memory")
c2.ready()
subprocess.run([micro, "--pause", cdir], check=True)
try:
    t0 = time.time()
    st, _, s = c2.cmd(prin_cdb(0), in_len=4096)
    say("  after %.1f s: status 0x%02x sense %s" % (time.time() - t0, st, sense_of(s)))
    check(st == 2 and sense_of(s) == (2, 0x04, 0x01), "READ KEYS with the cluster frozen: 0x%02x %s" % (st, sense_of(s)))
finally:
    subprocess.run([micro, "--resume", cdir], check=True)
st, keys = None, None
for _ in range(40):
    st, gen, keys = read_keys(c2)
    if st == 0:
        break
    time.sleep(0.5)
check(st == 0 and keys == [KA, KA], "cluster back: READ KEYS answers again: %s %s" % (st, keys))
gateway_nexus.finish()
PY
PYPID=$!
# The gateway 1 kill and restart, on the script's signal.
for ((i = 0; i < 1700; i++)); do
	[[ -e "$TEST_DIR/ctl.kill" ]] && break
	kill -0 "$PYPID" 2>/dev/null || break
	sleep 0.1
done
if [[ -e "$TEST_DIR/ctl.kill" ]]; then
	gw_stop 1 KILL
	touch "$TEST_DIR/ctl.killed"
	for ((i = 0; i < 300; i++)); do
		[[ -e "$TEST_DIR/ctl.start" ]] && break
		sleep 0.1
	done
	gw_start 1
	touch "$TEST_DIR/ctl.started"
fi
wait "$PYPID" || fail "reservation checks across gateways failed (logs: $TEST_DIR/gw1.log, gw2.log)"
gw_stop 1 TERM
gw_stop 2 TERM
say "PASS"
