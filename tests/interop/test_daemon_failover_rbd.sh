#!/usr/bin/env bash
# isthmus-initiator failing over between two gateways of one group that serve one RBD image
# (docs/gateways.md), with a persistent reservation in force:
#   - gateways 1 (A) and 2 (B) serve rbd/fo; the daemon logs in through A (active/optimized)
#     with both portals and a reservation key, which it registers through A;
#   - a raw initiator H registers through A and B and takes WRITE EXCLUSIVE - REGISTRANTS ONLY
#     through A; an unregistered raw initiator U writes through A and B all along;
#   - a writer writes checksummed 4 KiB blocks through the session's FUSE file and records
#     every write acknowledged; A is SIGKILLed under it;
#   - measured: from the kill to the first write acknowledged through B (<= BOUND s); same
#     session id; the writer saw no error (the daemon registered its key through the new nexus,
#     else WE_RO would refuse its writes); H keeps writing through B; U meets RESERVATION
#     CONFLICT on every write through every gateway that answers, before and after the kill;
#   - every acknowledged block is on the image: read back through B, and with `rbd export`.
# The daemon registers a key but does not take reservations itself (src/daemon/pr.c), so the
# reservation is H's, and the daemon writes as a registrant.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$INTEROP_DIR/rbd_daemon.bash"

BOUND=${FAILOVER_BOUND:-6} # seconds from the kill to the first write acknowledged through B
IQN=iqn.2026-11.org.isthmus:dmnfailoverrbd
KD=00000000d0d0d0d0

rbd_gateway_pair fo "$IQN"
dmn_start
SID=$(ism login "$IQN" --portal "$PA" --portal "$PB" --pr-key "$KD" | tail -n1) || fail "login"
DEV=$DMN_DEV/$SID/lun0
[[ -f "$DEV" ]] || fail "no device file $DEV"
for _ in $(seq 50); do
	[[ $(sess_field "$SID" .pr_key_registered) == true ]] && break
	sleep 0.2
done
sess_json "$SID" >"$TEST_DIR/before.json"
say "checks: the session runs through A (target port group 1, active/optimized) with its key registered"
jq -e --arg a "$PA" '.portals[0].address == $a and .portals[0].current and .portals[0].target_port_group == 1
	and .portals[0].alua_state == "active_optimized" and .pr_key_registered' "$TEST_DIR/before.json" >/dev/null ||
	fail "before the kill: $(jq -c '{portals, pr_key_registered}' "$TEST_DIR/before.json")"
say "ok: $(jq -c '.portals[0] | {address, target_port_group, alua_state, current}' "$TEST_DIR/before.json")"

rc=0
run_to 240 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" "$DEV" "${GW_PID[1]}" "$BOUND" "$KD" \
	"$TEST_DIR/acked.json" <<'PY' || rc=$?
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, Nexus, KillUnderLoad, prout, read_keys, write10, read10

iqn, port_a, port_b, dev, pid_a = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
bound, kd, acked_path = float(sys.argv[7]), int(sys.argv[8], 16), sys.argv[9]
gateway_nexus.setup("test_daemon_failover_rbd", iqn, {"A": port_a, "B": port_b})
BS = 4096
KH = 0x4848484848484848

def block(seq, blk):
    """4 KiB: a header, a payload derived from the sequence number, the payload's sha256."""
    head = (b"seq %08d blk %06d " % (seq, blk)).ljust(64, b".")
    body = hashlib.sha256(head).digest() * ((BS - 64 - 32) // 32)
    return head + body + hashlib.sha256(head + body).digest()

h_a, h_b = Nexus("holder", "A", "400000000a01"), Nexus("holder", "B", "400000000a01")
u_a, u_b = Nexus("outsider", "A", "400000000c01"), Nexus("outsider", "B", "400000000c01")
for nx in (h_a, h_b, u_a, u_b):
    nx.ready(must=False)  # a new nexus starts with a unit attention
say("check: H registers through A and B and takes WRITE EXCLUSIVE - REGISTRANTS ONLY through A")
check(prout(h_a, 0, sark=KH) == 0 and prout(h_b, 0, sark=KH) == 0, "H registers")
check(prout(h_a, 1, key=KH, type_=5) == 0, "H reserves WE_RO through A")
keys = read_keys(h_b)[2] or []
say("  keys through B: %s" % [hex(k) for k in keys])
check(keys == sorted([kd, KH, KH]), "B lists the daemon's key and H's (got %s)" % [hex(k) for k in keys])

load = KillUnderLoad(dev, block)
outsider = load.conflict_load([("U", "A", u_a, True), ("U", "B", u_b, False)], ua_retries=3)
h_stats = [0, 0]

def holder():
    n = 0
    while not load.stop.is_set():
        nx = h_b if load.killed() else h_a
        try:
            st = write10(nx, 110000 + n % 8, bytes([n & 0xff]) * 512, ua_retries=3)
        except Exception as e:
            st = None if load.killed() and nx is h_a else "error %s" % e
        if st is not None:
            h_stats[0 if st == 0 else 1] += 1
            if st != 0:
                say("  H's write: %s" % st)
        n += 1
        time.sleep(0.05)

# The first write acknowledged through B: the first that started after the kill (A was dead by then).
first_b = load.run(pid_a, "gateway A", (outsider, holder))
acked = load.acked
if first_b is None:
    check(False, "no write acknowledged through B within 30 s of the kill")
    gap = None
else:
    gap = first_b[3] - load.t_kill
    longest = max(w[3] - w[2] for w in acked)
    say("measured: first write acknowledged through B %.2f s after the kill (bound %.0f s); longest write %.2f s"
        % (gap, bound, longest))
    check(gap <= bound, "%.2f s from the kill to the first write through B, over %.0f s" % (gap, bound))
check(not load.errors, "the writer saw no error (%s)" % load.errors)
after = load.after_kill()
say("  %d writes acknowledged in all, %d after the kill" % (len(acked), len(after)))
check(len(after) > 20, "writes go on through B after the kill")
u_a_stats, u_b_stats = load.conflicts[("U", "A")], load.conflicts[("U", "B")]
say("  U: through A %d conflicts %d other (%d refused connections after the kill); through B %d conflicts %d other"
    % (u_a_stats[0], u_a_stats[1], load.refused, u_b_stats[0], u_b_stats[1]))
check(u_a_stats[1] == 0 and u_b_stats[1] == 0 and u_a_stats[0] > 5 and u_b_stats[0] > 20,
      "U met RESERVATION CONFLICT on every write through every gateway")
say("  H: %d writes good, %d not" % tuple(h_stats))
check(h_stats[1] == 0 and h_stats[0] > 20, "H kept writing, through A then B")

last = {}
for w in acked:
    last[w[1]] = w
json.dump({"gap": gap, "blocks": {str(b): w[4] for b, w in last.items()}}, open(acked_path, "w"))
say("check: every acknowledged block read back through B (READ(10)) matches")
bad = []
for b, w in sorted(last.items()):
    st, d, _ = read10(u_b, b * 8, 8, ua_retries=3)
    if st != 0 or hashlib.sha256(d).hexdigest() != w[4] or hashlib.sha256(d[:-32]).digest() != d[-32:]:
        bad.append((b, st, d[:28] if d else None))
check(not bad, "blocks that differ through B: %s" % bad[:4])
say("  %d blocks checked" % len(last))
gateway_nexus.finish()
PY
((rc == 0)) || fail "failover checks failed (logs: $TEST_DIR/gw1.log, gw2.log, daemon.log)"

say "measured: the daemon's key registered through B (a reservation change, which waits for every gateway's"
say "acknowledgement) this long after its session was back:"
python3 - "$DMN_LOG" <<'PY' || fail "the daemon's re-registration through B took too long"
import datetime, re, sys
back = reg = None
for line in open(sys.argv[1]):
    m = re.match(r"(\S+Z) ", line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    if "reinstated at" in line:
        back, reg = t, None
    elif "registered on" in line and back is not None and reg is None:
        reg = t
if back is None or reg is None:
    sys.exit("no reinstatement followed by a registration in the daemon log")
print("[test_daemon_failover_rbd]   %.2f s (the dead gateway's watch would hold it 5 s unfenced)" % (reg - back))
sys.exit(0 if reg - back <= 4.0 else 1)
PY
grep -q "gateway 1's cluster client .* fenced" "$TEST_DIR/gw2.log" || fail "gateway B did not fence gateway A's client"

say "checks: same session id, connected through B"
sess_json "$SID" >"$TEST_DIR/after.json"
jq -e --arg s "$SID" --arg b "$PB" '.session_id == $s and .is_connected and
	([.portals[] | select(.current) | .address] == [$b]) and .pr_key_registered' "$TEST_DIR/after.json" >/dev/null ||
	fail "after the failover: $(jq -c '{session_id, is_connected, portals, pr_key_registered}' "$TEST_DIR/after.json")"
say "ok: session $SID on $PB"

say "checks: every acknowledged block is on the image (rbd export)"
ism logout "$SID" >/dev/null || fail "logout"
rbd_cmd export rbd/fo "$TEST_DIR/fo.img" >/dev/null 2>&1 || fail "rbd export"
python3 - "$TEST_DIR/acked.json" "$TEST_DIR/fo.img" <<'PY' || fail "the exported image differs from what was acknowledged"
import hashlib, json, sys
want = json.load(open(sys.argv[1]))["blocks"]
f = open(sys.argv[2], "rb")
bad = []
for b, sha in want.items():
    f.seek(int(b) * 4096)
    if hashlib.sha256(f.read(4096)).hexdigest() != sha:
        bad.append(b)
print("[test_daemon_failover_rbd] %d blocks compared, %d differ %s" % (len(want), len(bad), bad[:8]))
sys.exit(1 if bad else 0)
PY
if report=$(sanitizer_report "$TEST_DIR/gw2.log"); then
	fail "gateway B reported a sanitizer error: $report"
fi
say "PASS"
