#!/usr/bin/env bash
# isthmus-initiator: an informational session and a data session to the same target and portal
# coexist without --allow-duplicate (a management tool queries a target the host already uses),
# each with its own ISID, neither reinstating the other; a second session of the same type still
# needs --allow-duplicate.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_helpers.bash"
need jq

IQN=iqn.2026-11.org.isthmus:dmntypes
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=16M"
dmn_start --no-fuse --no-nbd
L0=$(map_lun 0)

DATA=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "data login"
tsih=$(sess_field "$DATA" .target_side_identifier)
out=$(ism login "$IQN" --portal "$HP" --type informational 2>&1) ||
	fail "an informational login beside the data session was refused: $out"
INFO=$(tail -n1 <<<"$out")
[[ $(sess_field "$INFO" .session_type) == informational ]] || fail "session $INFO is not informational"
[[ $(sess_field "$DATA" .initiator_side_identifier) != $(sess_field "$INFO" .initiator_side_identifier) ]] ||
	fail "the two sessions share an ISID (the second would reinstate the first)"
ism session inquiry "$INFO" "$L0" --json | jq -e '.cached != true and .vendor != ""' >/dev/null ||
	fail "INQUIRY through the informational session"
sleep 1
[[ $(sess_field "$DATA" .state) == connected && $(sess_field "$DATA" .target_side_identifier) == "$tsih" ]] ||
	fail "the data session was disturbed by the informational one: $(sess_json "$DATA" | jq -c '{state, target_side_identifier}')"
say "ok: informational session $INFO beside data session $DATA, own ISIDs, the data session undisturbed"

out=$(ism login "$IQN" --portal "$HP" --type informational 2>&1) && fail "a second informational session without --allow-duplicate: $out"
grep -qi "already has session $INFO" <<<"$out" || fail "the refusal does not name the informational session: $out"
out=$(ism login "$IQN" --portal "$HP" 2>&1) && fail "a second data session without --allow-duplicate: $out"
grep -qi "already has session $DATA" <<<"$out" || fail "the refusal does not name the data session: $out"
INFO2=$(ism login "$IQN" --portal "$HP" --type informational --allow-duplicate | tail -n1) ||
	fail "a second informational session with --allow-duplicate"
say "ok: a second session of the same type needs --allow-duplicate"

for s in "$INFO2" "$INFO" "$DATA"; do ism logout "$s" >/dev/null || fail "logout $s"; done
# the other order: informational first
INFO=$(ism login "$IQN" --portal "$HP" --type informational | tail -n1) || fail "informational login"
DATA=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "a data login beside an informational session was refused"
[[ $(sess_field "$INFO" .state) == connected && $(sess_field "$DATA" .state) == connected ]] || fail "both connected"
say "ok: a data session beside an existing informational one"
