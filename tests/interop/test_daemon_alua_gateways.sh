#!/usr/bin/env bash
# isthmus-initiator's ALUA choice against gateway-mode targets (docs/gateways.md): two
# isthmus-target processes serve one file as gateways 1 and 2 of one group, each with its own
# target port group. isthmus-target cannot be told which gateway is active/optimized: each
# gateway reports its own group active/optimized and its peers active/non-optimized (or
# unavailable when they do not answer its probes). So this checks what the target offers:
#   - logged in through gateway 1 with both portals known: session show gives portal 1 target
#     port group 1, active_optimized, current and preferred: the daemon stays there;
#   - gateway 1 killed under a write load: the session goes on through gateway 2 within BOUND s,
#     no write fails, every acknowledged write is on the file; portal 2 is then target port
#     group 2, active_optimized, current and preferred;
#   - gateway 1 back: every gateway of the group again names the lowest-numbered one that
#     answers, gateway 1, as active/optimized; gateway 2 tells the session so with ASYMMETRIC
#     ACCESS STATE CHANGED (2Ah/06h) on its next command, the daemon reads the groups again, and
#     after the failback period the session moves back to gateway 1 (the ALUA state, learnt from
#     the target, picks the path), writes going on throughout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways need isthmus-target"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$(dirname "$0")/daemon_helpers.bash"

BOUND=6    # seconds: the longest a write may wait across the failover
FAILBACK=2 # seconds the preferred portal must answer before the session moves to it
IQN=iqn.2026-11.org.isthmus:dmnaluagw
P1=127.0.0.1:$(free_port)
P2=127.0.0.1:$(free_port)
IMG=$TEST_DIR/image
truncate -s 64M "$IMG"
GWFLAGS=(--target "$IQN" --lun "$IMG" --gateway-portal "1=$P1" --gateway-portal "2=$P2")

# start_gateway N HOST:PORT: gateway N of the group; sets FILE_GW_PID.
start_gateway() { file_gateway "$1" "$2" --gateway "$1" "${GWFLAGS[@]}"; }
portal() { sess_json "$SID" | jq -c --arg a "$1" '.portals[] | select(.address == $a) | {target_port_group, alua_state, current, preferred}'; }
# wait_portal HOST:PORT JSON SECS: poll until that portal's entry is JSON.
wait_portal() {
	local deadline=$((SECONDS + $3)) got=""
	while ((SECONDS < deadline)); do
		got=$(portal "$1" 2>/dev/null || true)
		[[ "$got" == "$2" ]] && return 0
		sleep 0.2
	done
	say "portal $1: $got, wanted $2 after $3 s"
	return 1
}

start_gateway 1 "$P1"
PID1=$FILE_GW_PID
start_gateway 2 "$P2"
dmn_start
SID=$(ism login "$IQN" --portal "$P1" --portal "$P2" --failback "$FAILBACK" | tail -n1) || fail "login"
DEV=$DMN_DEV/$SID/lun0
[[ -f "$DEV" ]] || fail "no device file $DEV"

say "check: logged in through gateway 1, its group is active/optimized: current and preferred"
wait_portal "$P1" '{"target_port_group":1,"alua_state":"active_optimized","current":true,"preferred":true}' 10 ||
	fail "portal 1 after the login"
say "ok: portal 1 $(portal "$P1"); portal 2 $(portal "$P2")"

say "check: gateway 1 killed under a write load: writes go on through gateway 2 within ${BOUND}s"
bg_start python3 "$(dirname "$0")/stall_writer.py" "$DEV" 4 64 10 "$TEST_DIR/writer.json"
WPID=$BG_LAST
sleep 2
alive "$WPID" || fail "the writer ended before the kill"
kill -KILL "$PID1"
t_kill=$(date +%s.%N)
wait_portal "$P2" '{"target_port_group":2,"alua_state":"active_optimized","current":true,"preferred":true}' 15 ||
	fail "portal 2 after the kill: $(sess_json "$SID" | jq -c '{state, portals, recovery}')"
say "measured: portal 2 current and active/optimized ${t_kill:+$(since "$t_kill")}s after the kill"
writer_stall "$WPID" "$TEST_DIR/writer.json" 40 "across the failover" "$BOUND"
[[ $(region_sha "$IMG" 256) == "$(jq -r .sha256 "$TEST_DIR/writer.json")" ]] || fail "the file differs from what was acknowledged"
[[ $(sess_field "$SID" .session_id) == "$SID" ]] || fail "session id changed"
say "ok: longest write ${STALL}s <= ${BOUND}s; portal 1 $(portal "$P1"); portal 2 $(portal "$P2")"

say "check: gateway 1 back: it is the optimized one again, the session moves back to it after the failback period"
start_gateway 1 "$P1"
t_back=$(date +%s.%N)
# Writes keep the session busy: the state change reaches the daemon as a unit attention on one.
moved=0
for ((i = 0; i < 60; i++)); do
	printf 'back%02d' "$i" | dd of="$DEV" bs=512 seek=$((3000 + i)) conv=notrunc,fsync status=none ||
		fail "a write after gateway 1 came back"
	if [[ $(portal "$P1") == '{"target_port_group":1,"alua_state":"active_optimized","current":true,"preferred":true}' ]]; then
		moved=1
		break
	fi
	sleep 0.5
done
((moved)) || fail "the session did not move back to the optimized gateway 1 within 30 s: $(sess_json "$SID" | jq -c .portals)"
say "measured: back on gateway 1 $(since "$t_back")s after it was started (failback period ${FAILBACK}s)"
[[ $(sess_field "$SID" .state) == connected ]] || fail "session not connected"
[[ $(sess_field "$SID" .session_id) == "$SID" ]] || fail "session id changed"
printf 'after' | dd of="$DEV" bs=512 seek=3100 conv=notrunc,fsync status=none || fail "a write on gateway 1"
[[ $(dd if="$IMG" bs=512 skip=3100 count=1 status=none | head -c 5) == after ]] || fail "the last write is not in the file"
say "ok: portal 1 $(portal "$P1"); portal 2 $(portal "$P2"); writes went on throughout"
ism logout "$SID" >/dev/null
say "PASS"
