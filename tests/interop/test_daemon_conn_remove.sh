#!/usr/bin/env bash
# isthmus-initiator: a removed connection stays removed across a reconnect, and the connections
# the user kept come back. The session logs in at portal 1 and gets two extra connections, one to
# portal 2 and one to portal 1; the one to portal 2 is removed; after the target restarts, the
# session must come back with two connections to portal 1 and none to portal 2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ "$TARGET_IMPL" == isthmus ]] || skip "multi-connection sessions need isthmus-target (tgtd has MaxConnections=1)"
need jq
source "$(dirname "$0")/daemon_helpers.bash"

IQN=iqn.2026-11.org.isthmus:dmnconnremove
P1=$(free_port)
P2=$(free_port)
[[ "$P1" != "$P2" ]] || P2=$(free_port)
TARGS=(--listen "127.0.0.1:$P1" --listen "127.0.0.1:$P2" --target "$IQN" --lun "memory,size=16M")
start_target "${TARGS[@]}"
printf 'initiator-name = iqn.2026-11.org.isthmus:test-initiator\nreconnect-interval = 1\n' >"$DMN_CONF"
dmn_start
SID=$(ism login "$IQN" --portal "127.0.0.1:$P1" --type informational | tail -n1) || fail "login"
A=$(ism session add-connection "$SID" --portal "127.0.0.1:$P2" --json | jq -r .cid) || fail "add-connection to portal 2"
B=$(ism session add-connection "$SID" --portal "127.0.0.1:$P1" --json | jq -r .cid) || fail "add-connection to portal 1"
[[ $(sess_field "$SID" .number_of_connections) == 3 ]] || fail "three connections expected"
say "checks: removing connection $A (portal 2) keeps connection $B (portal 1) for the next reconnect"
ism session remove-connection "$SID" "$A" >/dev/null || fail "remove-connection $A"
for _ in $(seq 25); do [[ $(sess_field "$SID" .number_of_connections) == 2 ]] && break; sleep 0.2; done
[[ $(sess_field "$SID" .number_of_connections) == 2 ]] || fail "connection $A not removed"

stop_target
start_target "${TARGS[@]}"
wait_state "$SID" connected 15 || fail "session not back after the target's restart"
for _ in $(seq 50); do [[ $(sess_field "$SID" .number_of_connections) == 2 ]] && break; sleep 0.2; done
ports=$(sess_field "$SID" '[.connections[] | select(.state == "full_feature") | .remote_port] | sort | map(tostring) | join(" ")')
say "after the reconnect: connections to ports $ports (portal 1 is $P1, portal 2 is $P2)"
[[ "$ports" == "$P1 $P1" ]] || fail "after the reconnect the connections go to ports '$ports', want '$P1 $P1': the removed connection came back or the kept one did not"
say "ok: the removed connection stayed removed, the kept one came back"
ism logout "$SID" >/dev/null || fail "logout"
say "PASS"
