#!/usr/bin/env bash
# An RBD LUN added to a running gateway group (`isthmus target add-lun` on each gateway): the
# image, its reservation record and the view of its exclusive lock are opened on a worker, and
# the LUN is one SCSI device across the group from its first command.
#   - LUN 1 (rbd/added) added on gateways 1 and 2 while they serve LUN 0: both log that its
#     reservations are kept with the group;
#   - a key registered and a WRITE EXCLUSIVE reservation taken through gateway 1 are seen
#     through gateway 2 (READ KEYS, READ RESERVATION), whose WRITE(10) to LUN 1 then gets
#     RESERVATION CONFLICT; LUN 0 is untouched (no key there);
#   - remove-lun of LUN 1 on both gateways, then add-lun again: the reservation is still there
#     (the record outlives the LU while it holds a registration), so a gateway that lets an
#     image go and takes it back does not lose what initiators hold.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"

ceph_start
ceph_client_timeout 5
ceph_image lu0 32M
ceph_image added 32M
IQN=iqn.2026-12.org.isthmus:gwaddlun
start_rbd_gateways 2 "$IQN" "rbd:rbd/lu0,conf=$CEPH_CONF"
SPEC="rbd:rbd/added,conf=$CEPH_CONF"
SHARED="LUN 1: reservations kept with the gateway group in rbd:rbd/added"

on_gw() { # N ARGS...
	local n=$1
	shift
	run_to 60 "$ISTHMUS_BIN/isthmus" target --socket "$TEST_DIR/gw$n.sock" "$@"
}

add_everywhere() {
	local n out line=()
	for n in 1 2; do
		line[n]=$(wc -l <"$TEST_DIR/gw$n.log")
		out=$(on_gw "$n" add-lun "$IQN" "$SPEC" --lun 1 2>&1) || fail "add-lun on gateway $n: $out"
	done
	for n in 1 2; do
		for _ in $(seq 1 50); do
			tail -n +"$((line[n] + 1))" "$TEST_DIR/gw$n.log" | grep -q "$SHARED" && break
			sleep 0.1
		done
		tail -n +"$((line[n] + 1))" "$TEST_DIR/gw$n.log" | grep -q "$SHARED" ||
			fail "gateway $n does not share LUN 1's reservations: $(tail -5 "$TEST_DIR/gw$n.log")"
	done
}

say "LUN 1 (rbd/added) added on both gateways"
add_everywhere

check_shared() { # PHASE: a reservation taken (take) or expected (kept) through gateway 1, seen on 2
	run_to 120 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" "$1" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, prout, read_keys, read_rsv, write10

iqn, ports, phase = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}, sys.argv[5]
gateway_nexus.setup("test_gateway_rbd_add_lun", iqn, ports, say_ok=True)
KEY, WR_EX = 0xA11CE, 1
a = Nexus("gwaddlun-a", 1, "400000001a01", lun=1, ua_tries=4)
b = Nexus("gwaddlun-b", 2, "400000001b02", lun=1, ua_tries=4)
a.ready()
b.ready()
if phase == "take":
    check(prout(a, 0, sark=KEY) == 0, "REGISTER through gateway 1")
    check(prout(a, 1, key=KEY, type_=WR_EX) == 0, "RESERVE (WRITE EXCLUSIVE) through gateway 1")
# The other gateway loads the record on its change notice: bounded polling.
keys, rsv = None, None
for _ in range(50):
    st, _, keys = read_keys(b)
    rsv = read_rsv(b)
    if st == 0 and keys == [KEY] and rsv == (KEY, WR_EX):
        break
    time.sleep(0.1)
say("  through gateway 2: keys %s, reservation %s" % (keys, rsv))
check(keys == [KEY] and rsv == (KEY, WR_EX), "gateway 2 sees gateway 1's key and reservation on LUN 1")
st = write10(b, 8, b"\x5a" * 512, ua_retries=3)
check(st == 0x18, "gateway 2's WRITE(10) to LUN 1 gets RESERVATION CONFLICT (0x%02x)" % st)
st, _, keys0 = read_keys(Nexus("gwaddlun-c", 2, "400000001c03", lun=0, ua_tries=4))
check(st == 0 and keys0 == [], "LUN 0 has no key (%s)" % keys0)
gateway_nexus.finish()
PY
}
check_shared take || fail "LUN 1's reservations are not shared across the group"

say "LUN 1 removed on both gateways and added again: its reservation is still there"
for n in 1 2; do
	out=$(on_gw "$n" remove-lun "$IQN" 1 2>&1) || fail "remove-lun on gateway $n: $out"
done
add_everywhere
check_shared kept || fail "the reservation did not outlive the LU's removal"

gw_stop 1 TERM
gw_stop 2 TERM
say "PASS"
