#!/usr/bin/env bash
# isthmus-initiator's preferred portal when the LUs of one session have different optimized
# gateways (docs/gateways.md, "Several RBD LUNs on one target"; docs/initiator.md, failover):
# two gateways serve LUNs 0, 1 and 2 on three RBD images; each LU is active/optimized on the
# gateway holding its image's exclusive lock, else on the lowest-numbered one (gateway 1).
#   - the daemon logs in through gateway 1 (A) with both portals and a 2 s failback; gateway 1
#     is stopped and started again, so the session has been through both portals and knows both
#     target port groups, and moves back to A, optimized for all three LUs (nobody wrote);
#   - a raw initiator writes LUNs 1 and 2 through gateway 2 (B): their locks, and their
#     optimized gateway, move there. The daemon, told by ASYMMETRIC ACCESS STATE CHANGED, reads
#     every LU's groups again: B is optimized for two LUs, A for one, so B is preferred and the
#     session moves there after the failback period. (Following the first LU, as before, it
#     stayed on A.) `session show` gives each portal's optimized LUNs, each LU's optimized portal
#     and the rule, in JSON and in its table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$INTEROP_DIR/rbd_daemon.bash"

IQN=iqn.2026-11.org.isthmus:dmnalualuns
ceph_start
ceph_client_timeout 5
for i in 0 1 2; do ceph_image "lu$i" 64M; done
start_rbd_gateways 2 "$IQN" "rbd:rbd/lu0,conf=$CEPH_CONF" --lun "rbd:rbd/lu1,conf=$CEPH_CONF" \
	--lun "rbd:rbd/lu2,conf=$CEPH_CONF"
PA=${GW_HP[1]}
PB=${GW_HP[2]}
dmn_start

current() { sess_json "$SID" | jq -r '[.portals[] | select(.current) | .address] | join(",")'; }
# wait_current ADDR SECS: poll (a READ CAPACITY of every LUN each round, so that the daemon meets
# the unit attentions the gateways raise) until the session is logged in through ADDR.
wait_current() {
	local deadline=$((SECONDS + $2)) lun
	while ((SECONDS < deadline)); do
		for lun in 0 1 2; do ism session readcapacity "$SID" "$lun" >/dev/null 2>&1 || true; done
		[[ $(current 2>/dev/null) == "$1" && $(sess_field "$SID" .state) == connected ]] && return 0
		sleep 0.5
	done
	return 1
}

SID=$(ism login "$IQN" --portal "$PA" --portal "$PB" --failback 2 | tail -n1) || fail "login"
wait_current "$PA" 10 || fail "the session is not through A: $(sess_json "$SID" | jq -c .portals)"
say "check: gateway 1 stopped and started again: the session has been through both portals"
gw_stop 1 TERM
wait_current "$PB" 20 || fail "the session did not fail over to B: $(sess_json "$SID" | jq -c '{state, portals}')"
gw_start 1
t0=$SECONDS
wait_current "$PA" 40 || fail "the session did not move back to A: $(sess_json "$SID" | jq -c '{portals, portal_choice}')"
sess_json "$SID" >"$TEST_DIR/back.json"
jq -e '[.portals[].target_port_group] == [1, 2] and .portal_choice.rule == "most_optimized_luns" and
	([.portals[] | select(.current) | .optimized_luns] == [[0, 1, 2]])' "$TEST_DIR/back.json" >/dev/null ||
	fail "session show after the move back: $(jq -c '{portals, portal_choice}' "$TEST_DIR/back.json")"
say "ok: back on A after $((SECONDS - t0)) s, optimized for all three LUs: $(jq -c .portal_choice "$TEST_DIR/back.json")"

say "check: LUNs 1 and 2 written through gateway 2: the session prefers B (2 LUs) over A (LUN 0)"
run_to 60 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[2]}" <<'PY' || fail "writes through gateway 2"
import sys
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import check, past_ua, cdb10, Nexus
gateway_nexus.setup("test_daemon_alua_luns_rbd", sys.argv[2], {2: int(sys.argv[3])}, say_ok=True)
w = Nexus("writer", 2, "400000001002")
for lun in (1, 2):
    st = past_ua(w, cdb10(0x2a, 100, 1), out=bytes([lun]) * 512, ua_retries=7, lun=lun)[0]
    check(st == 0, "a write to LUN %d through gateway 2 (status %s)" % (lun, st))
gateway_nexus.finish()
PY
t0=$SECONDS
wait_current "$PB" 60 || fail "the session did not move to B, optimized for LUNs 1 and 2: $(sess_json "$SID" | jq -c '{portals, portal_choice, devices: [.devices[] | {lun, alua_optimized_target_port_group, alua_optimized_portal}]}')"
say "measured: on B $((SECONDS - t0)) s after the writes (two lock samples, the unit attention, the 2 s failback)"
sess_json "$SID" >"$TEST_DIR/moved.json"
jq -e --arg a "$PA" --arg b "$PB" '
	([.portals[] | select(.address == $a) | .optimized_luns] == [[0]]) and
	([.portals[] | select(.address == $b) | .optimized_luns] == [[1, 2]]) and
	([.portals[] | select(.preferred) | .address] == [$b]) and
	.portal_choice == {preferred: $b, rule: "most_optimized_luns", optimized_luns: 2, luns_with_alua_state: 3} and
	([.devices[] | .alua_optimized_portal] == [$a, $b, $b]) and
	([.devices[] | .alua_optimized_target_port_group] == [1, 2, 2])' "$TEST_DIR/moved.json" >/dev/null ||
	fail "session show: $(jq -c '{portals, portal_choice, devices: [.devices[] | {lun, alua_optimized_target_port_group, alua_optimized_portal}]}' "$TEST_DIR/moved.json")"
say "ok: $(jq -c '{portal_choice, optimized: [.portals[] | {address, optimized_luns}]}' "$TEST_DIR/moved.json")"
ism session show "$SID" >"$TEST_DIR/moved.txt" || fail "session show (table)"
grep -q "^portal choice: $PB (most_optimized_luns)" "$TEST_DIR/moved.txt" || fail "the table lacks the portal choice: $(cat "$TEST_DIR/moved.txt")"
grep -Eq "^  $PB +2 +[a-z_]+ +2 \(1,2\) +preferred current" "$TEST_DIR/moved.txt" ||
	fail "the table lacks B's row: $(grep -A3 '^portal choice' "$TEST_DIR/moved.txt")"
say "ok: $(grep -A3 '^portal choice' "$TEST_DIR/moved.txt" | tr '\n' '|')"
ism logout "$SID" >/dev/null || fail "logout"
say "PASS"
