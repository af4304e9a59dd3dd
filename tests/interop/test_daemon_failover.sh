#!/usr/bin/env bash
# isthmus-initiator: a data session to a target presented by two gateways (two isthmus-target
# processes on 127.0.0.1 serving the same backing file under the same IQN, standing in for two
# gateways of one image), logged in with both portals. Gateway A is killed (SIGKILL) during a
# write load through the FUSE file: the session must go on through gateway B within 6 s, with the
# same session id, no error seen by the writer, every acknowledged write on the file, and
# `session show` naming B as the current portal. Gateway A then comes back: with a 3 s failback
# the session must move back to A (the first portal given is the preferred one), the writes
# going on meanwhile. The session's reservation key (--pr-key) is registered through each new
# I_T nexus: gateway B lists it after the failover.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ "$TARGET_IMPL" == isthmus ]] || skip "two gateways of one target need isthmus-target"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$(dirname "$0")/daemon_helpers.bash"

BOUND=6    # seconds: the longest a write may wait across the failover
FAILBACK=3 # seconds the preferred portal must answer before the session moves back
IQN=iqn.2026-11.org.isthmus:dmnfailover
PA=127.0.0.1:$(free_port)
PB=127.0.0.1:$(free_port)
LUNFILE=$TEST_DIR/lun0.img
truncate -s 64M "$LUNFILE"

# start_gateway NAME HOST:PORT: one isthmus-target serving LUNFILE as IQN; sets FILE_GW_PID.
start_gateway() { file_gateway "$1" "$2" --target "$IQN" --lun "$LUNFILE,size=64M"; }
current_portal() { sess_field "$SID" '[.portals[]? | select(.current) | .address][0] // ""' 2>/dev/null || true; }
# moved_to HOST:PORT POLLS T0: polls `session show` (POLLS times, 0.1 s apart) until the session
# is connected through HOST:PORT; prints the seconds since T0 then, nothing if it never was.
moved_to() {
	local i
	for ((i = 0; i < $2; i++)); do
		if [[ $(current_portal) == "$1" && $(sess_field "$SID" .state 2>/dev/null) == connected ]]; then
			since "$3"
			return 0
		fi
		sleep 0.1
	done
}

start_gateway A "$PA"
PID_A=$FILE_GW_PID
start_gateway B "$PB"
dmn_start
say "checks: a persistent login keeps every portal, the failback and the key"
ism persistent add "$IQN" --portal "$PA" --portal "$PB" --failback 7 --pr-key 1f --json >"$TEST_DIR/pers.json" ||
	fail "persistent add: $(cat "$TEST_DIR/pers.json")"
ism persistent list --json >"$TEST_DIR/pers-list.json" || fail "persistent list"
jq -e --arg a "$PA" --arg b "$PB" '[.. | objects | select(.target? == "'"$IQN"'")][0] |
	.portals == [$a, $b] and .failback == 7 and .pr_key == "0x000000000000001f"' "$TEST_DIR/pers-list.json" >/dev/null ||
	fail "the persistent record lost portals, failback or key: $(jq -c . "$TEST_DIR/pers-list.json")"
ism persistent remove "$IQN" >/dev/null || fail "persistent remove"
say "ok: $(jq -c '[.. | objects | select(.target? == "'"$IQN"'")][0] | {portal, portals, failback, pr_key}' "$TEST_DIR/pers-list.json")"

say "checks: SendTargets through the daemon gives a session the portals its target listed"
ism discover --daemon "$PA" >/dev/null || fail "discover at A"
ISID_INFO=$(ism login "$IQN" --portal "$PB" --type informational | tail -n1) || fail "informational login at B"
sess_json "$ISID_INFO" >"$TEST_DIR/info.json"
jq -e --arg a "$PA" --arg b "$PB" '.portals[0].address == $b and .portals[0].source == "login" and
	.portals[1].address == $a and .portals[1].source == "sendtargets" and .portals[1].target_portal_group_tag == 1' \
	"$TEST_DIR/info.json" >/dev/null || fail "portals learnt from SendTargets: $(jq -c .portals "$TEST_DIR/info.json")"
ism logout "$ISID_INFO" >/dev/null || fail "logout of the informational session"
say "ok: $(jq -c '[.portals[] | {address, target_portal_group_tag, source}]' "$TEST_DIR/info.json")"

PRKEY=00000000abc12345
SID=$(ism login "$IQN" --portal "$PA" --portal "$PB" --failback "$FAILBACK" --pr-key "$PRKEY" | tail -n1) || fail "login"
DEV=$DMN_DEV/$SID/lun0
[[ -f "$DEV" ]] || fail "no device file $DEV"

say "checks: session show lists both portals, A current and preferred"
sess_json "$SID" >"$TEST_DIR/before.json"
jq -e --arg a "$PA" --arg b "$PB" '(.portals | length) == 2 and .portals[0].address == $a and .portals[0].target_portal_group_tag == 1 and .portals[0].current
	and .portals[0].preferred and .portals[1].address == $b and (.portals[1].current | not)
	and .recovery.failback == 3 and .pr_key == "0x00000000abc12345" and .pr_key_registered' "$TEST_DIR/before.json" >/dev/null ||
	fail "portals before the kill: $(jq -c '{portals, recovery}' "$TEST_DIR/before.json")"
say "ok: $(jq -c .portals "$TEST_DIR/before.json")"

say "checks: gateway A killed under a write load; writes go on through B within ${BOUND}s"
bg_start python3 "$(dirname "$0")/stall_writer.py" "$DEV" 4 64 10 "$TEST_DIR/writer1.json"
WPID=$BG_LAST
sleep 3
alive "$WPID" || fail "the writer ended before the kill"
kill -KILL "$PID_A"
t_kill=$(date +%s.%N)
moved=$(moved_to "$PB" 100 "$t_kill")
[[ -n "$moved" ]] || fail "session show does not name B current 10 s after the kill: $(sess_json "$SID" | jq -c '{state, portals, recovery}')"
say "measured: session connected through B ${moved}s after the kill (session show polled)"
writer_stall "$WPID" "$TEST_DIR/writer1.json" 40 "across the failover" "$BOUND" "$t_kill" "the kill"
sess_json "$SID" >"$TEST_DIR/after.json"
[[ $(jq -r .session_id "$TEST_DIR/after.json") == "$SID" ]] || fail "session id changed"
jq -e --arg b "$PB" '.is_connected and .portals[1].address == $b and .portals[1].current and
	(.portals[0].current | not) and .recovery.failovers >= 1' "$TEST_DIR/after.json" >/dev/null ||
	fail "session show after the failover: $(jq -c '{is_connected, portals, recovery}' "$TEST_DIR/after.json")"
want=$(jq -r .sha256 "$TEST_DIR/writer1.json")
[[ $(region_sha "$LUNFILE" 256) == "$want" ]] || fail "the backing file differs from what was acknowledged"
say "ok: longest write ${STALL}s <= ${BOUND}s, same session $SID, B current, every acknowledged write on the file"

say "checks: the reservation key was registered through gateway B (PERSISTENT RESERVE IN, READ KEYS there)"
split_hostport "$PB"
keys=$(python3 "$(dirname "$0")/scsi_cmd.py" "$HP_HOST" "$HP_PORT" "$IQN" 0 5e000000000000002000 --in 32 \
	--initiator iqn.2026-11.org.isthmus:pr-reader) || fail "READ KEYS at B: $keys"
grep -q "status=0x00" <<<"$keys" && grep -q "data=.*$PRKEY" <<<"$keys" || fail "gateway B does not list key $PRKEY: $keys"
[[ $(sess_field "$SID" .pr_key_registered) == true ]] || fail "session show: pr_key_registered is not true after the failover"
say "ok: B lists key 0x$PRKEY"

say "checks: gateway A back; the session moves back to it after the ${FAILBACK}s failback, writes going on"
bg_start python3 "$(dirname "$0")/stall_writer.py" "$DEV" 4 64 12 "$TEST_DIR/writer2.json"
WPID=$BG_LAST
sleep 1
t_back=$(date +%s.%N)
start_gateway A "$PA"
back=$(moved_to "$PA" 150 "$t_back")
[[ -n "$back" ]] || fail "the session did not move back to A within 15 s: $(sess_json "$SID" | jq -c '{state, portals, recovery}')"
say "measured: back on A ${back}s after its restart began (start-up included; failback ${FAILBACK}s)"
grep -q "has answered for ${FAILBACK}.0 s: moving back" "$DMN_LOG" || fail "the daemon log does not name the failback"
writer_stall "$WPID" "$TEST_DIR/writer2.json" 40 "during the failback" ""
[[ $(sess_field "$SID" .session_id) == "$SID" ]] || fail "session id changed at the failback"
ism logout "$SID" >/dev/null || fail "logout"
want=$(jq -r .sha256 "$TEST_DIR/writer2.json")
[[ $(region_sha "$LUNFILE" 256) == "$want" ]] || fail "the backing file differs from what was acknowledged after the failback"
for g in A B; do
	if report=$(sanitizer_report "$TEST_DIR/gw$g.log"); then
		fail "gateway $g reported a sanitizer error: $report"
	fi
done
say "ok: moved back to A, same session, no write error, every acknowledged write on the file"
say "PASS"
