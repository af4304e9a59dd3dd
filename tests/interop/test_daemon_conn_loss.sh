#!/usr/bin/env bash
# isthmus-initiator: one connection of a two-connection data session goes silent (every packet of
# it dropped by nftables, as a failed NIC would) during a write load through the FUSE file.
# The daemon must declare it dead within nop-interval + nop-timeout and say so in `session show`;
# no write waits longer than nop-interval + nop-timeout + 1 s, and every acknowledged write is on
# the LUN. Run at both recovery levels (CONN_LOSS_LEVELS="0 2" by default):
#  - ErrorRecoveryLevel 0: the session is reinstated at once (same session id, a new TSIH), the
#    writes replayed and the second connection re-added;
#  - ErrorRecoveryLevel 2 (target --max-error-recovery-level 2, daemon error-recovery-level = 2):
#    only the lost connection is replaced (same CID, same TSIH at the initiator and at the
#    target) and its commands reassigned; the session is never reinstated.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ "$TARGET_IMPL" == isthmus ]] || skip "multi-connection sessions need isthmus-target (tgtd has MaxConnections=1)"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3 nft
nft list tables >/dev/null 2>&1 || skip "nftables is not usable here (needs CAP_NET_ADMIN)"
source "$(dirname "$0")/daemon_helpers.bash"

NFT_TABLE=isthmus_conn_loss_$$
nft_cleanup() { nft delete table inet "$NFT_TABLE" 2>/dev/null || true; }
trap 'rc=$?; set +e; nft_cleanup; (exit $rc); dmn_exit' EXIT

# Short keepalive timers keep the test fast; CONN_LOSS_NOP_INTERVAL=5 CONN_LOSS_NOP_TIMEOUT=10
# runs it with the daemon's defaults.
NOP_INTERVAL=${CONN_LOSS_NOP_INTERVAL:-1}
NOP_TIMEOUT=${CONN_LOSS_NOP_TIMEOUT:-2}
BOUND=$((NOP_INTERVAL + NOP_TIMEOUT + 1)) # seconds: the longest a write may wait
WRITER_SECS=$((BOUND + 7))                # new writes from 3 s before the loss to past its recovery
LEVELS=${CONN_LOSS_LEVELS:-"0 2"}

IQN=iqn.2026-11.org.isthmus:dmnconnloss
CLI=$ISTHMUS_BIN/isthmus
MGMT=""

# start_level_target LEVEL LUNFILE HOSTPORT: at level 2 through a configuration file, so that the
# target's DefaultTime2Wait can be 0 (its default, 2 s, would come on top of the detection).
start_level_target() {
	local level=$1 lun=$2 hp=$3
	if ((level < 2)); then
		start_target --listen "$hp" --target "$IQN" --lun "$lun,size=64M" --mgmt-socket "$MGMT"
		return
	fi
	cat >"$TEST_DIR/target-erl$level.conf" <<-EOF
		[portal-group 1]
		listen = $hp
		[target $IQN]
		lun 0 = $lun,size=64M
		max-error-recovery-level = $level
		DefaultTime2Wait = 0
	EOF
	start_target --config "$TEST_DIR/target-erl$level.conf" --mgmt-socket "$MGMT"
}

target_tsihs() { run_to 10 "$CLI" target --socket "$MGMT" session list --json | jq -r '[.[].tsih] | map(tostring) | join(" ")'; }

run_level() {
	local LEVEL=$1
	local PORT HP LUNFILE SID DEV CID LPORT TSIH0 WPID t_drop seen want log0
	MGMT=$TEST_DIR/mgmt-erl$LEVEL.sock
	log0=$(stat -c %s "$DMN_LOG")
	PORT=$(free_port)
	HP=127.0.0.1:$PORT
	LUNFILE=$TEST_DIR/lun0-erl$LEVEL.img
	say "=== ErrorRecoveryLevel $LEVEL ==="
	start_level_target "$LEVEL" "$LUNFILE" "$HP"
	printf 'initiator-name = iqn.2026-11.org.isthmus:test-initiator\nnop-interval = %s\nnop-timeout = %s\nerror-recovery-level = %s\n' \
		"$NOP_INTERVAL" "$NOP_TIMEOUT" "$LEVEL" >"$DMN_CONF"
	dmn_start
	SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login"
	DEV=$DMN_DEV/$SID/lun0
	[[ -f "$DEV" ]] || fail "no device file $DEV"
	ism session add-connection "$SID" --portal "$HP" --json >"$TEST_DIR/add.json" || fail "add-connection: $(cat "$TEST_DIR/add.json")"
	CID=$(jq -r .cid "$TEST_DIR/add.json")
	[[ $(sess_field "$SID" .number_of_connections) == 2 ]] || fail "two connections expected"
	LPORT=$(sess_field "$SID" ".connections[] | select(.cid == $CID) | .local_port")
	[[ "$LPORT" =~ ^[0-9]+$ && "$LPORT" != 0 ]] || fail "no local port for connection $CID"
	TSIH0=$(sess_field "$SID" .target_side_identifier)

	say "checks: negotiated ErrorRecoveryLevel $LEVEL, DefaultTime2Wait, DefaultTime2Retain and counters are reported"
	sess_json "$SID" >"$TEST_DIR/before.json"
	jq -e ".negotiated_parameters.error_recovery_level == $LEVEL and
		(.negotiated_parameters.default_time2wait | type == \"number\") and
		(.negotiated_parameters.default_time2retain | type == \"number\") and
		.recovery.connection_losses == 0 and .recovery.session_recoveries == 0 and
		.recovery.connection_recoveries == 0 and .recovery.task_reassignments == 0" "$TEST_DIR/before.json" >/dev/null ||
		fail "session show lacks the ERL / Time2Wait / Time2Retain / counters: $(jq -c '{negotiated_parameters, recovery}' "$TEST_DIR/before.json")"
	jq -e "[.connections[].state] | all(. == \"full_feature\")" "$TEST_DIR/before.json" >/dev/null || fail "connection states before the loss"
	say "ok: $(jq -c '.negotiated_parameters | {error_recovery_level, default_time2wait, default_time2retain}' "$TEST_DIR/before.json")"
	if ((LEVEL == 2)); then
		[[ $(target_tsihs) == "$((TSIH0))" ]] || fail "the target lists sessions '$(target_tsihs)', not TSIH $TSIH0"
	fi

	# 4 threads x 64 blocks, new writes from about 3 s before the loss to 4 s past the bound after it
	local blank
	blank=$(region_sha "$LUNFILE" 256)
	bg_start python3 "$(dirname "$0")/stall_writer.py" "$DEV" 4 64 "$WRITER_SECS" "$TEST_DIR/writer.json"
	WPID=$BG_LAST
	# the load is under way (its writes reach the LUN) before the 3 s count: a loaded machine may
	# take seconds to start the writer
	for _ in $(seq 100); do
		[[ $(region_sha "$LUNFILE" 256) != "$blank" ]] && break
		sleep 0.1
	done
	sleep 3
	alive "$WPID" || fail "the writer ended before the connection loss"

	# Level 0: both directions go. Level 2: only what the target sends, so that the commands in
	# flight reach it and run while their status is lost: those are the ones a replacement
	# connection must have reassigned (one that never reached the target is sent again instead).
	local to_target="tcp sport $LPORT drop" ways="both ways"
	((LEVEL < 2)) || { to_target="" ways="towards the initiator"; }
	say "checks: connection $CID (local port $LPORT) goes silent $ways; detected within ${BOUND}s; writes wait at most ${BOUND}s"
	nft -f - <<-EOF
		table inet $NFT_TABLE {
			chain input {
				type filter hook input priority -10; policy accept;
				$to_target
				tcp dport $LPORT drop
			}
		}
	EOF
	t_drop=$(date +%s.%N)
	seen=""
	# Polled past the bound (the CLI itself can take a while on a loaded machine); the daemon's
	# own record of when it declared the loss (whole seconds) is what must be within the bound.
	while python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) < $BOUND + 5 else 1)" "$t_drop" "$(date +%s.%N)"; do
		if sess_json "$SID" >"$TEST_DIR/during.json" 2>/dev/null &&
			jq -e "(.recovery.connection_losses // 0) >= 1 and .recovery.last_connection_loss.cid == $CID and
				.recovery.last_connection_loss.local_port == $LPORT" "$TEST_DIR/during.json" >/dev/null; then
			seen=$(since "$t_drop")
			break
		fi
		sleep 0.1
	done
	[[ -n "$seen" ]] || fail "session show does not report connection $CID lost ${BOUND} s after its packets stopped: $(jq -c '{state, recovery, connections}' "$TEST_DIR/during.json" 2>/dev/null)"
	at=$(jq -r .recovery.last_connection_loss.at_epoch "$TEST_DIR/during.json")
	python3 -c "import sys; sys.exit(0 if int(sys.argv[2]) <= float(sys.argv[1]) + $BOUND else 1)" "$t_drop" "$at" ||
		fail "connection $CID was declared lost at $at, more than ${BOUND}s after its packets stopped at $t_drop"
	say "ok: session show reported connection $CID lost ${seen}s after the drop (declared at $at): $(jq -c .recovery.last_connection_loss "$TEST_DIR/during.json")"

	writer_stall "$WPID" "$TEST_DIR/writer.json" $((BOUND + 40)) "across the connection loss" "$BOUND" \
		"$t_drop" "the first dropped packet"
	say "ok: longest write ${STALL}s <= ${BOUND}s (nop-interval + nop-timeout + 1 s)"

	if ((LEVEL < 2)); then
		say "checks: same session id, one reinstatement, the second connection re-added"
	else
		say "checks: same session id and TSIH (no reinstatement), connection $CID replaced, its commands reassigned"
	fi
	for _ in $(seq 50); do
		[[ $(sess_field "$SID" '[.connections[] | select(.state == "full_feature")] | length') == 2 ]] && break
		sleep 0.2
	done
	sess_json "$SID" >"$TEST_DIR/after.json"
	[[ $(jq -r .session_id "$TEST_DIR/after.json") == "$SID" ]] || fail "session id changed"
	[[ $(jq -r .state "$TEST_DIR/after.json") == connected ]] || fail "state $(jq -r .state "$TEST_DIR/after.json")"
	[[ $(jq -r .number_of_connections "$TEST_DIR/after.json") == 2 ]] || fail "the second connection is not back: $(jq -c .connections "$TEST_DIR/after.json")"
	if ((LEVEL < 2)); then
		jq -e '.recovery.connection_losses == 1 and .recovery.session_recoveries == 1' "$TEST_DIR/after.json" >/dev/null ||
			fail "counters after the recovery: $(jq -c .recovery "$TEST_DIR/after.json")"
	else
		[[ $(jq -r .target_side_identifier "$TEST_DIR/after.json") == "$TSIH0" ]] ||
			fail "the session was reinstated: TSIH $TSIH0 -> $(jq -r .target_side_identifier "$TEST_DIR/after.json")"
		[[ $(target_tsihs) == "$((TSIH0))" ]] || fail "the target lists sessions '$(target_tsihs)', not TSIH $TSIH0 alone"
		jq -e ".recovery.connection_losses >= 1 and .recovery.session_recoveries == 0 and
			.recovery.connection_recoveries >= 1 and .recovery.task_reassignments >= 1 and
			.recovery.recovering_connections == 0 and
			([.connections[] | select(.cid == $CID and .state == \"full_feature\")] | length) == 1" \
			"$TEST_DIR/after.json" >/dev/null ||
			fail "after the recovery: $(jq -c '{recovery, connections}' "$TEST_DIR/after.json")"
		if tail -c +"$((log0 + 1))" "$DMN_LOG" | grep -q "reinstated"; then
			fail "the daemon reinstated the session: $(tail -c +"$((log0 + 1))" "$DMN_LOG" | grep reinstated | tail -1)"
		fi
	fi
	ism session show "$SID" >"$TEST_DIR/after.txt" || fail "session show (table)"
	for want in "error_recovery_level: $LEVEL" "default_time2wait: " "default_time2retain: " "connection_losses: " \
		"session_recoveries: " "connection_recoveries: " "task_reassignments: " "last_connection_loss:"; do
		grep -q "$want" "$TEST_DIR/after.txt" || fail "the table of session show lacks '$want'"
	done
	say "ok: session $SID kept its id (TSIH $TSIH0 -> $(jq -r .target_side_identifier "$TEST_DIR/after.json")), $(jq -c '.recovery | {connection_losses, session_recoveries, connection_recoveries, task_reassignments}' "$TEST_DIR/after.json")"

	say "checks: every acknowledged write is on the target's LUN file"
	ism logout "$SID" >/dev/null || fail "logout"
	nft_cleanup
	want=$(jq -r .sha256 "$TEST_DIR/writer.json")
	[[ $(region_sha "$LUNFILE" 256) == "$want" ]] || fail "the LUN file differs from what was acknowledged: a write was lost or reordered"
	say "ok: the LUN file holds the final version of all 256 blocks (sha $want)"
	dmn_stop
	stop_target
}

for level in $LEVELS; do
	run_level "$level"
done
say "PASS"
