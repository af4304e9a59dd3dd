#!/usr/bin/env bash
# ErrorRecoveryLevel 1 on the target, with raw PDUs over real sockets (erl1_target.py), HeaderDigest
# and DataDigest CRC32C:
#   1. without max-error-recovery-level the target negotiates level 0: no A bit, SNACK rejected as
#      not supported
#   2. --max-error-recovery-level 1: Data SNACK and Status SNACK send the kept PDUs again as they
#      were (same DataSN, offset, StatSN), the last Data-In of a read carries the A bit and a
#      DataACK lets its data go, ExpStatSN lets statuses go, an R-Data SNACK sends the data again
#      and ends with a SCSI Response carrying the SNACK Tag
#   2b. R2T SNACK (erl1_r2t_snack.py): an R2T left unanswered and asked for again (RunLength 1,
#      RunLength 0) comes again as it was and the write ends GOOD and reads back; an R2TSN never
#      sent is rejected (protocol error); a session at level 0 rejects it as not supported
#   3. digest errors cost one PDU: a data digest error on a command with immediate data gets a
#      Reject and the command sent again with its CmdSN runs (and the one numbered after it); one
#      on Data-Out gets a Reject and a recovery R2T; a Data-Out lost to a header digest error is
#      asked for again with a recovery R2T; a command lost to one can be sent again; the data read
#      back is whole, the session list shows the same single connection with the errors counted;
#      two header digest errors in a row end the connection
#   4. libisthmus at level 1 (isthmus-session-test --error-recovery-level 1) through a proxy that
#      damages PDUs (tests/tools/corrupt_proxy.py): a data digest error on a command's immediate
#      data, on Data-Out and on Data-In, and a header digest error on Data-Out and on Data-In,
#      each recovered (command sent again, recovery R2T, Data SNACK, Status SNACK); 64 writes and
#      64 reads of 1 MiB verified, one login, the connection never closed
#      (and at level 0 the first damaged Data-In ends the connection)
#   4b. libisthmus at level 1 through the proxy, a SCSI Command's header damaged on the way (the
#      target skips it and holds every later CmdSN behind the gap): the initiator sends the command
#      again with its CmdSN once a NOP-Out shows ExpCmdSN stuck at it; done in seconds (the command
#      timeout, 60 s, found it before), one login, the data verified
#   5. isthmus-initiator with error-recovery-level = 1 in its configuration: `session show` reports
#      ErrorRecoveryLevel 1 negotiated with this target
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "ErrorRecoveryLevel 1 is checked against isthmus-target"

IQN=iqn.2026-11.org.isthmus:erl1
CLI=$ISTHMUS_BIN/isthmus
SOCK=$TEST_DIR/mgmt.sock
PORT=$(free_port)

run_case() {
	check_case "$1" 120 python3 "$INTEROP_DIR/erl1_target.py" 127.0.0.1 "$PORT" "$IQN" "$1" \
		--stats-cmd "$CLI target --socket $SOCK session list --json"
}

# start_proxy LOG ARGS...: tests/tools/corrupt_proxy.py in front of the target (ARGS: its rules and
# options), output to LOG; PPORT = the port it listens on.
start_proxy() {
	local log=$1
	shift
	python3 "$REPO_ROOT/tests/tools/corrupt_proxy.py" "$PORT" "$@" >"$log" 2>&1 &
	BG_PIDS+=("$!")
	for _ in $(seq 100); do
		grep -q '^port' "$log" && break
		sleep 0.1
	done
	PPORT=$(awk '/^port/{print $2}' "$log")
	[[ -n "$PPORT" ]] || fail "the proxy did not start: $(cat "$log")"
}

run_r2t_case() {
	check_case "R2T SNACK, $1" 60 python3 "$INTEROP_DIR/erl1_r2t_snack.py" 127.0.0.1 "$PORT" "$IQN" "$1"
}

start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=16M" --mgmt-socket "$SOCK"
run_case erl0
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT"

start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=128M" --mgmt-socket "$SOCK" \
	--max-error-recovery-level 1
run_case snack
run_r2t_case r2t
run_r2t_case r2t-erl0
run_case digest

SESSION_TEST=$ISTHMUS_BIN/tests/tools/isthmus-session-test
[[ -x "$SESSION_TEST" ]] || fail "no isthmus-session-test at $SESSION_TEST"
say "checking: libisthmus at level 1 through a proxy that damages PDUs"
mark=$(log_mark)
RULES=(i2t:0x01:data:4 i2t:0x05:data:2 i2t:0x05:header:3 t2i:0x25:data:3 t2i:0x25:header:5)
start_proxy "$TEST_DIR/proxy.log" "${RULES[@]}" --lifetime 300 --max-conns 1
out=$(run_to 180 "$SESSION_TEST" "iscsi://127.0.0.1:$PPORT/$IQN/0" --connections 1 --io 64 --io-size 1024 \
	--error-recovery-level 1 --header-digest crc32c --data-digest crc32c 2>&1) || fail "session-test: $out"
sed 's/^/    /' <<<"$out" | grep -v ' debug: '
sed 's/^/    proxy: /' "$TEST_DIR/proxy.log"
[[ $(grep -c '^damaged' "$TEST_DIR/proxy.log") == "${#RULES[@]}" ]] || fail "the proxy did not damage all ${#RULES[@]} PDUs"
grep -q 'writes and 64 reads of 1048576 bytes verified' <<<"$out" || fail "data not verified: $out"
log=$(log_since "$mark")
[[ $(grep -c 'login: initiator' <<<"$log") == 1 ]] || fail "more than one login: $(grep 'login:' <<<"$log")"
grep 'closing connection' <<<"$log" && fail "a connection was closed during recovery"
for what in 'data digest error: SCSI Command' 'data digest error: Data-Out' 'header digest error: Data-Out' \
	'SNACK: Data-In of ITT' 'Status SNACK'; do
	grep -q "$what" <<<"$log" || fail "the target log does not show: $what"
done
say "ok: 5 damaged PDUs recovered at level 1 on the one connection, 64 MiB written and read back"

say "checking: libisthmus at level 1, a SCSI Command lost to a header digest error"
mark=$(log_mark)
start_proxy "$TEST_DIR/proxy_cmd.log" i2t:0x01:lost:6 --lifetime 60 --max-conns 1
# Bounded well below the 60 s command timeout, so that a lost command not sent again fails fast.
start_ns=$(date +%s%N)
rc=0
out=$(run_to 15 "$SESSION_TEST" "iscsi://127.0.0.1:$PPORT/$IQN/0" --connections 1 --io 16 --io-size 64 \
	--error-recovery-level 1 --header-digest crc32c --data-digest crc32c 2>&1) || rc=$?
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
sed 's/^/    /' <<<"$out" | grep -v ' debug: '
sed 's/^/    proxy: /' "$TEST_DIR/proxy_cmd.log"
say "    session-test took ${elapsed_ms} ms (status $rc)"
grep -q '^damaged i2t 0x01 lost' "$TEST_DIR/proxy_cmd.log" || fail "the proxy damaged no SCSI Command"
((rc == 0)) || fail "session-test with a lost SCSI Command failed or timed out after ${elapsed_ms} ms: $out"
((elapsed_ms <= 5000)) || fail "the lost SCSI Command took ${elapsed_ms} ms to recover (want at most 5000)"
grep -q 'writes and 16 reads of 65536 bytes verified' <<<"$out" || fail "data not verified: $out"
grep -q 'sent again (retry 1)' <<<"$out" || fail "the initiator does not report the command sent again: $out"
log=$(log_since "$mark")
[[ $(grep -c 'login: initiator' <<<"$log") == 1 ]] || fail "more than one login: $(grep 'login:' <<<"$log")"
grep 'closing connection' <<<"$log" && fail "a connection was closed during recovery"
grep -q 'header digest error: SCSI Command' <<<"$log" || fail "the target log does not show the damaged command"
say "ok: the lost SCSI Command sent again with its CmdSN, all done in ${elapsed_ms} ms on one connection"

say "checking: the same through the proxy at level 0 costs the connection"
start_proxy "$TEST_DIR/proxy0.log" t2i:0x25:data:3 --lifetime 300 --max-conns 1
out=$(run_to 180 "$SESSION_TEST" "iscsi://127.0.0.1:$PPORT/$IQN/0" --connections 1 --io 64 --io-size 1024 \
	--error-recovery-level 0 --header-digest crc32c --data-digest crc32c 2>&1) && fail "level 0 survived a damaged Data-In: $out"
grep -q 'data digest error in a Data-In' <<<"$out" || fail "level 0 failed otherwise: $out"
say "ok: at level 0 one damaged Data-In ends the connection (what level 1 saves)"

say "checking: isthmus-initiator with error-recovery-level = 1"
need jq
printf 'initiator-name = iqn.2026-11.org.isthmus:erl1-daemon\nerror-recovery-level = 1\n' >"$TEST_DIR/initiator.conf"
source "$INTEROP_DIR/daemon_helpers.bash"
dmn_start --no-fuse
out=$(ism login "$IQN" --portal "127.0.0.1:$PORT" --type informational) || fail "daemon login: $out"
SID=$(grep -oE '0x[0-9a-f]{16}' <<<"$out" | head -1)
erl=$(sess_field "$SID" '.negotiated_parameters.error_recovery_level')
[[ "$erl" == 1 ]] || fail "daemon session negotiated ErrorRecoveryLevel $erl, not 1"
say "ok: the daemon's session negotiated ErrorRecoveryLevel 1"
ism logout "$SID" >/dev/null || fail "daemon logout"
dmn_stop
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
