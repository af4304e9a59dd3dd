#!/usr/bin/env bash
# isthmus-initiator taking a persistent reservation itself (login options pr_key and pr_type,
# src/daemon/pr.c) and keeping it through a failover between two gateways of one RBD image
# (docs/gateways.md, docs/initiator.md):
#   1. WRITE EXCLUSIVE - REGISTRANTS ONLY (we-ro): the daemon logs in through gateway 1 (A) with
#      both portals, registers and reserves; `session show` says the reservation is held.
#      A writer writes checksummed blocks through the session's FUSE file; an unregistered raw
#      initiator U writes through A and B and meets RESERVATION CONFLICT. A is SIGKILLed: the
#      writer goes on through B without an error, U still meets RESERVATION CONFLICT, READ
#      RESERVATION through B names the daemon's key and type WE_RO.
#   2. WRITE EXCLUSIVE (we), held by one I_T nexus: the reservation is cleared, A restarted, the
#      daemon logs in through B this time; a raw initiator R registers (a registrant, not the
#      holder) through A and B. B is SIGKILLed: the daemon's RESERVE through A meets the old
#      nexus's reservation and it moves it with PREEMPT of its own key; the writer goes on
#      without an error; U and R meet RESERVATION CONFLICT before and after; READ RESERVATION
#      names the daemon's key and type WE; READ KEYS lists R's two registrations and the daemon's
#      key once (its registration through the dead gateway's nexus went with the PREEMPT).
#   3. A gateway not ready yet: the daemon holds WE through A; B is restarted with
#      ISTHMUS_TEST_RECORD_UNREACHABLE_MS (its reservation record cannot be loaded for HOLD_MS
#      after it starts, as while the cluster is out of reach), so it answers the reservation
#      commands NOT READY, LOGICAL UNIT IS IN PROCESS OF BECOMING READY (04h/01h). A is SIGKILLed
#      under a write load: the daemon fails over onto B, sends its reservation steps again until
#      B answers them, and only then releases the writes: the writer sees no error, the
#      reservation is held with no pr_error, READ RESERVATION through B names the daemon's key,
#      and the daemon log says it waited.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$INTEROP_DIR/rbd_daemon.bash"

IQN=iqn.2026-11.org.isthmus:gwdmnpr
KD1=00000000d1d1d1d1
KD2=00000000d2d2d2d2

rbd_gateway_pair prd "$IQN"
dmn_start

# wait_held SID : until the session's reservation is held (bounded), then its JSON in $TEST_DIR/held.json
wait_held() {
	local i
	for i in $(seq 100); do
		sess_json "$1" >"$TEST_DIR/held.json"
		[[ $(jq -r .pr_reservation "$TEST_DIR/held.json") == held ]] && return 0
		sleep 0.2
	done
	fail "the session's reservation is not held: $(jq -c '{pr_key, pr_type, pr_reservation, pr_error}' "$TEST_DIR/held.json")"
}

# clear_reservation CASE GATEWAY PORT ISID KEY : a raw initiator (ISID) on gateway GATEWAY (a, b)
# at PORT registers KEY and clears the LU's reservation and registrations left by case CASE
clear_reservation() {
	python3 - "$INTEROP_DIR" "$IQN" "$@" <<'PY' || fail "clearing case $1's reservation"
import sys
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, Nexus, prout
case, gw, port, isid, key = sys.argv[3:8]
gateway_nexus.setup("test_gateway_daemon_pr", sys.argv[2], {gw: int(port)})
cleaner = Nexus("cleaner", gw, isid)
def prout_again(sa, key, sark):
    """PERSISTENT RESERVE OUT, sent again past CHECK CONDITION (4 tries in all)."""
    for _ in range(4):
        st = prout(cleaner, sa, key, sark)
        if st != 2:
            return st
    return st
K = int(key, 16)
assert prout_again(0, 0, K) == 0, "register"
assert prout_again(3, K, 0) == 0, "clear"
say(f"case {case}'s reservation and registrations cleared")
PY
}

# run_case NAME PORT_FIRST PORT_SURVIVOR PID_TO_KILL TYPE_CODE KEY WITH_REGISTRANT
run_case() {
	run_to 240 python3 - "$INTEROP_DIR" "$IQN" "$@" "$DMN_DEV/$SID/lun0" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, Nexus, KillUnderLoad, prout, read_keys, read_rsv

iqn, name = sys.argv[2], sys.argv[3]
port_first, port_surv, pid = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rtype, kd, with_r, dev = int(sys.argv[7]), int(sys.argv[8], 16), sys.argv[9] == "1", sys.argv[10]
gateway_nexus.setup("test_gateway_daemon_pr", iqn, {"first": port_first, "surv": port_surv}, say_ok=True)
KR = 0x5252525252525252

def nexus(who, gw, isid):
    """A raw initiator port whose every command goes again past unit attentions (4 tries)."""
    nx = Nexus(who, gw, isid, ua_tries=4)
    nx.ready(must=False)  # a new nexus starts with a unit attention
    return nx

def read_reservation(nx):
    """(status, holder's key, type) of READ RESERVATION; key and type None without one."""
    try:
        r = read_rsv(nx)
    except RuntimeError as e:
        return str(e), None, None
    return (0,) + (r or (None, None))

def keys(nx):
    return read_keys(nx)[2] or []

def check_daemon_holds(when):
    """READ RESERVATION through the surviving gateway names the daemon's key and type rtype."""
    st, key, typ = read_reservation(u_s)
    check(st == 0 and key == kd and typ == rtype,
          "%s READ RESERVATION through the surviving gateway names the daemon's key, type 0x%x"
          " (got status %s key %s type %s)" % (when, rtype, st, key and hex(key), typ))

say("case %s: reservation type 0x%x with key 0x%016x" % (name, rtype, kd))
u_f, u_s = nexus("outsider", "first", "400000000c01"), nexus("outsider", "surv", "400000000c01")
others = [("U", "first", u_f, True), ("U", "surv", u_s, False)]
if with_r:
    r_f, r_s = nexus("registrant", "first", "400000000d01"), nexus("registrant", "surv", "400000000d01")
    check(prout(r_f, 0, sark=KR) == 0 and prout(r_s, 0, sark=KR) == 0, "R registers through both gateways")
    others += [("R", "first", r_f, True), ("R", "surv", r_s, False)]
check_daemon_holds("before the kill")
keys_before = keys(u_s)
say("  keys before: %s" % [hex(k) for k in keys_before])
check(keys_before.count(kd) == 1, "the daemon's key is registered once (one nexus)")

load = KillUnderLoad(dev, lambda seq, blk: (b"%s seq %08d " % (name.encode(), seq)).ljust(4096, b"-"))
first = load.run(pid, "the gateway the daemon runs through", (load.conflict_load(others),))
check(first is not None, "a write acknowledged through the surviving gateway (%s s after the kill)"
      % (None if first is None else "%.2f" % (first[3] - load.t_kill)))
after = load.after_kill()
check(not load.errors, "the daemon's writer saw no error (%s)" % load.errors)
check(len(after) > 20, "the daemon's writes go on after the kill (%d)" % len(after))
for who in sorted({w[0] for w in others}):
    c, other = (sum(v[i] for (w, _), v in load.conflicts.items() if w == who) for i in (0, 1))
    check(other == 0 and c > 20, "%s met RESERVATION CONFLICT on every write (%d), nothing else (%d)" % (who, c, other))
check_daemon_holds("after the kill")
keys_after = keys(u_s)
say("  keys after: %s" % [hex(k) for k in keys_after])
if rtype in (1, 3):
    check(keys_after.count(kd) == 1, "the daemon's key is registered once: its old nexus's registration was preempted")
if with_r:
    check(keys_after.count(KR) == 2, "R's registrations are kept")
gateway_nexus.finish()
PY
}

say "case 1: WRITE EXCLUSIVE - REGISTRANTS ONLY through A, then A killed"
SID=$(ism login "$IQN" --portal "$PA" --portal "$PB" --failback 0 --pr-key "$KD1" --pr-type we-ro | tail -n1) ||
	fail "login with --pr-type we-ro"
[[ -f "$DMN_DEV/$SID/lun0" ]] || fail "no device file $DMN_DEV/$SID/lun0"
wait_held "$SID"
jq -e --arg a "$PA" '.pr_key == "0x00000000d1d1d1d1" and .pr_type == "we-ro" and .pr_reservation == "held" and
	.pr_error == null and .pr_key_registered and ([.portals[] | select(.current) | .address] == [$a])' \
	"$TEST_DIR/held.json" >/dev/null || fail "session show: $(jq -c '{pr_key, pr_type, pr_reservation, pr_error, pr_key_registered}' "$TEST_DIR/held.json")"
say "ok: $(jq -c '{pr_key, pr_type, pr_reservation, pr_error}' "$TEST_DIR/held.json")"
run_case we-ro "${GW_PORT[1]}" "${GW_PORT[2]}" "${GW_PID[1]}" 5 "$KD1" 0 || fail "case we-ro failed"
unset "GW_PID[1]"
sess_json "$SID" >"$TEST_DIR/after1.json"
jq -e --arg b "$PB" '.is_connected and .pr_reservation == "held" and .pr_error == null and
	([.portals[] | select(.current) | .address] == [$b])' "$TEST_DIR/after1.json" >/dev/null ||
	fail "after the failover: $(jq -c '{is_connected, pr_reservation, pr_error, portals}' "$TEST_DIR/after1.json")"
say "ok: after the failover the session runs through B with its reservation held"
ism logout "$SID" >/dev/null || fail "logout"

say "case 2: WRITE EXCLUSIVE through B, then B killed (the reservation moves with PREEMPT)"
clear_reservation 1 b "${GW_PORT[2]}" 400000000e01 4545454545454545
gw_start 1
sleep 3 # gateway 1 loads the record and is seen by its peer's probes
SID=$(ism login "$IQN" --portal "$PB" --portal "$PA" --failback 0 --pr-key "$KD2" --pr-type we | tail -n1) ||
	fail "login with --pr-type we"
wait_held "$SID"
jq -e --arg b "$PB" '.pr_type == "we" and .pr_reservation == "held" and ([.portals[] | select(.current) | .address] == [$b])' \
	"$TEST_DIR/held.json" >/dev/null || fail "session show: $(jq -c '{pr_type, pr_reservation, pr_error, portals}' "$TEST_DIR/held.json")"
say "ok: $(jq -c '{pr_key, pr_type, pr_reservation, pr_error}' "$TEST_DIR/held.json")"
run_case we "${GW_PORT[2]}" "${GW_PORT[1]}" "${GW_PID[2]}" 1 "$KD2" 1 || fail "case we failed"
unset "GW_PID[2]"
sess_json "$SID" >"$TEST_DIR/after2.json"
jq -e --arg a "$PA" '.is_connected and .pr_reservation == "held" and .pr_error == null and
	([.portals[] | select(.current) | .address] == [$a])' "$TEST_DIR/after2.json" >/dev/null ||
	fail "after the failover: $(jq -c '{is_connected, pr_reservation, pr_error, portals}' "$TEST_DIR/after2.json")"
grep -q "reservation moved to this nexus (PREEMPT with its own key)" "$DMN_LOG" ||
	fail "the daemon log does not say it moved the reservation"
say "ok: the daemon moved its WRITE EXCLUSIVE reservation to the new nexus"
ism logout "$SID" >/dev/null || fail "logout"

say "case 3: the gateway failed over to answers NOT READY (04h/01h) until its record is loaded"
KD3=00000000d3d3d3d3
HOLD_MS=14000
clear_reservation 2 a "${PA##*:}" 400000000e02 4646464646464646
SID=$(ism login "$IQN" --portal "$PA" --portal "$PB" --failback 0 --pr-key "$KD3" --pr-type we | tail -n1) ||
	fail "login with --pr-type we"
wait_held "$SID"
log0=$(stat -c %s "$DMN_LOG")
t_b=$(date +%s.%N) # before the record is opened: it cannot load until HOLD_MS after this at least
ISTHMUS_TEST_RECORD_UNREACHABLE_MS=$HOLD_MS gw_start 2
sleep 3 # gateway 2's probes see gateway 1 answer, so it fences it once it is gone
grep -q "ISTHMUS_TEST_RECORD_UNREACHABLE_MS=$HOLD_MS" "$TEST_DIR/gw2.log" || fail "gateway 2 did not take the test setting"
run_to 120 python3 - "$INTEROP_DIR" "$IQN" "${PB##*:}" "${GW_PID[1]}" "$DMN_DEV/$SID/lun0" "$KD3" "$t_b" "$HOLD_MS" <<'PY' ||
import os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, Nexus, read_rsv
iqn, port_b, pid, dev = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
kd, t_b, hold = int(sys.argv[6], 16), float(sys.argv[7]), int(sys.argv[8]) / 1000.0
gateway_nexus.setup("test_gateway_daemon_pr", iqn, {"b": port_b}, say_ok=True)
BS, NBLK = 4096, 64
stop = threading.Event()
acked, werr = [], []

def writer():
    fd = os.open(dev, os.O_WRONLY)
    seq = 0
    try:
        while not stop.is_set():
            t0 = time.time()
            os.pwrite(fd, (b"not-ready seq %08d " % seq).ljust(BS, b"-"), (seq % NBLK) * BS)
            acked.append((seq, t0, time.time()))
            seq += 1
            time.sleep(0.005)
    except OSError as e:
        werr.append("%s after %d writes" % (e, seq))
    finally:
        os.close(fd)

t = threading.Thread(target=writer)
t.start()
time.sleep(1)
check(not werr and len(acked) > 10, "the daemon writes through gateway 1 (%d writes, %s)" % (len(acked), werr))
say("SIGKILL to gateway 1 (pid %d), %.1f s after gateway 2 started; its record loads %.1f s after its start"
    % (pid, time.time() - t_b, hold))
os.kill(pid, signal.SIGKILL)
t_kill = time.time()
first = None
while time.time() < t_kill + 40 and first is None and not werr:
    first = next((w for w in list(acked) if w[1] > t_kill), None)
    time.sleep(0.05)
time.sleep(2)
stop.set()
t.join(60)
check(not werr, "the daemon's writer saw no error (%s)" % werr)
check(first is not None, "a write acknowledged through gateway 2 (%s s after the kill, %s s after gateway 2 started)"
      % ((None, None) if first is None else ("%.2f" % (first[2] - t_kill), "%.2f" % (first[2] - t_b))))
check(first is not None and first[2] - t_b >= hold, "that write came once gateway 2's record was loaded, not before")
nx = Nexus("observer", "b", "400000000c03", ua_tries=4)
nx.ready(must=False)
r = read_rsv(nx)
check(r is not None and r[0] == kd and r[1] == 1, "READ RESERVATION through gateway 2 names the daemon's key, WE (%s)" % (r,))
gateway_nexus.finish()
PY
	fail "case not-ready failed"
unset "GW_PID[1]"
sess_json "$SID" >"$TEST_DIR/after3.json"
jq -e --arg b "$PB" '.is_connected and .pr_reservation == "held" and .pr_error == null and
	([.portals[] | select(.current) | .address] == [$b])' "$TEST_DIR/after3.json" >/dev/null ||
	fail "after the failover onto the gateway not ready: $(jq -c '{is_connected, pr_reservation, pr_error, portals}' "$TEST_DIR/after3.json")"
tail -c +"$((log0 + 1))" "$DMN_LOG" | grep -q "registering the key: not ready yet (status 0x02, sense key 2 asc 0x04 ascq 0x01)" ||
	fail "the daemon log does not say the registration met 04h/01h and was sent again"
waited=$(tail -c +"$((log0 + 1))" "$DMN_LOG" | grep -o "sent again [0-9]* time(s) over [0-9.]* s" | tail -1)
[[ -n "$waited" ]] || fail "the daemon log does not say how long the reservation steps waited"
secs=$(grep -o "over [0-9.]*" <<<"$waited" | cut -d' ' -f2)
python3 -c "import sys; sys.exit(0 if 3 <= float(sys.argv[1]) <= 30 else 1)" "$secs" ||
	fail "the reservation steps waited ${secs}s: gateway 2 was meant to be not ready for several seconds after the kill"
say "measured: the reservation steps were $waited while gateway 2 was not ready"
ism logout "$SID" >/dev/null || fail "logout"
if report=$(sanitizer_report "$TEST_DIR/gw1.log"); then
	fail "gateway 1 reported a sanitizer error: $report"
fi
say "PASS"
