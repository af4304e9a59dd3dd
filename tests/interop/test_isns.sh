#!/usr/bin/env bash
# iSNS against open-isns's isnsd, in a network namespace of the test's own (tests/isns/isnsd.bash):
# the target starts while the server is still down and registers once it is up; its entity,
# targets (alias, node type), portal and portal groups are in the server's database; the
# initiator daemon discovers through the server only what a discovery domain shares with it,
# and records it as discovered; a reload re-registers (a removed target and an added portal
# show); the registration is refreshed before the server's period runs out; SIGTERM deregisters.
# Then a hostile server (never answers, answers without end, another version): the target and
# the daemon give up within their bounds and go on.
source "$(dirname "$0")/../isns/isns_test.bash" "$@"

INI=iqn.2026-11.org.isthmus:test-initiator
A=iqn.2026-11.org.isthmus:isns-a
B=iqn.2026-11.org.isthmus:isns-b
HP=$ISNS_ADDR:3260
PERIOD=12 # isnsd's registration period (seconds): short, so that expiry is observable

CONF=$TEST_DIR/target.conf
write_conf() { # write_conf "LISTEN..." WITH_B
	{
		echo "[global]"
		echo "isns = $ISNS_ADDR"
		echo "isns-entity = isthmus-test-entity"
		echo "[portal-group 1]"
		for l in $1; do echo "listen = $l"; done
		echo "[target $A]"
		echo "alias = disk a"
		echo "lun 0 = memory,size=16M"
		if [[ "$2" == yes ]]; then
			echo "[target $B]"
			echo "lun 0 = memory,size=16M"
		fi
	} >"$CONF"
}

nodes() { isns_db; }
# A registered node is a mature storage node object; a discovery domain member that is not
# registered (or no longer) stays in the database in state "limbo".
has_node() {
	isns_db | awk -v want="iSCSI name = \"$1\"" '
		/^Object:/ { m = /type=<iSCSI Storage Node>/ && /state=mature/ }
		m && index($0, want) { found = 1 }
		END { exit !found }'
}
lacks_node() { ! has_node "$1"; }
has_portal() { isns_db | grep -q "Portal TCP/UDP port = $1/tcp"; }

# The server's database is read with isnsd --dump-db: with no default discovery domain,
# isnsadm --list would show only what shares a domain with isnsadm's own name.

# --- the server is down when the target starts: start-up is not delayed, the target retries
write_conf "$HP" yes
start_target --config "$CONF" --log-level debug
port_open "$ISNS_ADDR" 3260 || fail "target does not serve while the iSNS server is down"
wait_log 0 'iSNS server .*failed.*next attempt' 5 || fail "no retry logged while the server is down"
say "ok: target serves with the iSNS server down, and logs its retries"

isnsd_start "RegistrationPeriod = $PERIOD" "DefaultDiscoveryDomain = 0"
wait_db "target $A registered" 20 has_node "$A"
wait_db "target $B registered" 5 has_node "$B"
say "ok: registered once the server came up: $A and $B"

isns_db >"$TEST_DIR/entities.txt"
grep -q 'Entity identifier = "isthmus-test-entity"' "$TEST_DIR/entities.txt" || fail "entity: $(cat "$TEST_DIR/entities.txt")"
grep -q 'Entity protocol = iSCSI' "$TEST_DIR/entities.txt" || fail "entity protocol: $(cat "$TEST_DIR/entities.txt")"
nodes >"$TEST_DIR/nodes.txt"
grep -q 'iSCSI alias = "disk a"' "$TEST_DIR/nodes.txt" || fail "alias of $A: $(cat "$TEST_DIR/nodes.txt")"
[[ $(grep -c 'iSCSI node type = Target' "$TEST_DIR/nodes.txt") == 2 ]] || fail "node types: $(cat "$TEST_DIR/nodes.txt")"
has_portal 3260 || fail "portal $HP not registered"
isns_db >"$TEST_DIR/pgs.txt"
[[ $(grep -c 'Portal group tag = 1' "$TEST_DIR/pgs.txt") == 2 ]] || fail "portal groups: $(cat "$TEST_DIR/pgs.txt")"
say "ok: entity isthmus-test-entity (iSCSI), both targets as Target nodes, alias, portal $HP, portal group 1 for each"

# --- discovery through the daemon sees only what a discovery domain shares with the initiator
dmn_start --no-fuse
out=$(ism discover --isns "$ISNS_ADDR") || fail "discover --isns: $out"
grep -q "$A\|$B" <<<"$out" && fail "without a discovery domain the initiator saw: $out"
say "ok: without a shared discovery domain, discover --isns lists nothing"
isns_adm --dd-register dd-name=isthmus-test "dd-member-name=$INI" "dd-member-name=$A" >/dev/null ||
	fail "isnsadm --dd-register failed: $(tail -3 "$ISNS_DIR/isnsadm.err")"
out=$(ism discover --isns "$ISNS_ADDR") || fail "discover --isns: $out"
grep -qx "$HP,1 $A" <<<"$out" || fail "discover --isns did not list $A at $HP,1: $out"
grep -q "$B" <<<"$out" && fail "discover --isns listed $B, which shares no domain with the initiator: $out"
say "ok: discover --isns lists $A at $HP,1 and hides $B (no shared discovery domain)"
ism discover --isns "$ISNS_ADDR" --json >"$TEST_DIR/disc.json"
jq -e --arg a "$A" '.targets[] | select(.target == $a) | .alias == "disk a"' "$TEST_DIR/disc.json" >/dev/null ||
	fail "alias missing from the JSON answer: $(cat "$TEST_DIR/disc.json")"
out=$(ism login "$A" --portal "$HP" --type informational) || fail "login $A: $out"
SID=$(tail -n1 <<<"$out")
[[ $(sess_field "$SID" .is_discovered) == true ]] || fail "session to $A is not marked discovered"
ism logout "$SID" >/dev/null || fail "logout $SID"
say "ok: a login to the target found through iSNS is is_discovered: true"

# --- reload: a target removed and a portal added are registered again
mark=$(log_mark)
write_conf "$HP $ISNS_ADDR:3261" no
kill -HUP "$TARGET_PID"
wait_log "$mark" 'reload applied' 10 || fail "reload not applied"
wait_db "target $B gone after reload" 10 lacks_node "$B"
wait_db "portal 3261 registered after reload" 10 has_portal 3261
has_node "$A" || fail "$A lost at reload"
say "ok: SIGHUP re-registered: $B gone, portal $ISNS_ADDR:3261 added, $A kept"

# --- the registration outlives the server's period because the target refreshes it
reg=$SECONDS
sleep $((PERIOD + 4))
has_node "$A" || fail "$A expired: the target did not refresh within the $PERIOD s period"
grep -q 'registration refreshed' "$TARGET_LOG" || fail "no refresh in the target log"
say "ok: $((SECONDS - reg)) s after the last registration (period $PERIOD s) $A is still registered: refreshed"

# --- SIGTERM deregisters
stop_target TERM
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"
grep -q 'entity isthmus-test-entity deregistered' "$TARGET_LOG" || fail "no deregistration in the target log"
lacks_node "$A" || fail "$A still registered after SIGTERM"
isns_db | grep -q isthmus-test-entity && fail "entity still registered after SIGTERM"
say "ok: SIGTERM deregistered the entity and its nodes"
isnsd_stop

# --- a hostile server (tests/isns/fake_isns.py) costs the target and the daemon only bounded work
FAKE_LOG=$TEST_DIR/fake.log
: >"$FAKE_LOG"
bg_start python3 "$(dirname "$0")/../isns/fake_isns.py" "$ISNS_ADDR" 3206 silent,flood,garbage "$FAKE_LOG"
wait_db "fake iSNS server listening" 10 grep -q listening "$FAKE_LOG"
mark=$(log_mark)
start_target --listen "$ISNS_ADDR:3262" --target "$A" --lun memory,size=16M --isns "$ISNS_ADDR:3206"
wait_log "$mark" 'no response in time; next attempt' 9 || fail "a server that never answers was not given up after 5 s"
say "ok: a server that never answers: the attempt ends after 5 s and is retried"
wait_log "$mark" 'iSNS message longer than 262144 bytes' 8 || fail "an endless response was not cut at 256 KiB"
grep -q '^flood' "$FAKE_LOG" || fail "the endless response never ended: $(cat "$FAKE_LOG")"
say "ok: an endless response is cut at 256 KiB ($(grep '^flood' "$FAKE_LOG"), of at most 16 MiB offered)"
wait_log "$mark" 'iSNS version 2' 10 || fail "a PDU of another version was not refused"
say "ok: a PDU of iSNS version 2 is refused"
port_open "$ISNS_ADDR" 3262 || fail "the target stopped serving while its iSNS server misbehaved"
stop_target TERM
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT after the hostile server"
say "ok: the target served throughout and exited 0"

: >"$FAKE_LOG"
bg_start python3 "$(dirname "$0")/../isns/fake_isns.py" "$ISNS_ADDR" 3207 flood,garbage "$FAKE_LOG"
wait_db "second fake iSNS server listening" 10 grep -q listening "$FAKE_LOG"
out=$(ism discover --isns "$ISNS_ADDR:3207" 2>&1) && fail "discover --isns accepted an endless response: $out"
grep -q 'longer than 1048576' <<<"$out" || fail "discover --isns against an endless response: $out"
out=$(ism discover --isns "$ISNS_ADDR:3207" 2>&1) && fail "discover --isns accepted version 2: $out"
grep -q 'version 2' <<<"$out" || fail "discover --isns against version 2: $out"
ism persistent list >/dev/null || fail "the daemon does not answer after the hostile server"
say "ok: discover --isns fails cleanly on an endless response (cut at 1 MiB) and on version 2; the daemon goes on"
say "PASS"
