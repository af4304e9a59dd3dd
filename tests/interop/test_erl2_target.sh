#!/usr/bin/env bash
# ErrorRecoveryLevel 2 on the target (connection recovery and TASK REASSIGN, RFC 7143 6.2.2,
# 11.5.1, 11.14), with raw PDUs over real sockets (erl2_target.py):
#   1. sessions at level 0 and 1 (the target allows 2): TASK REASSIGN is answered "task
#      allegiance reassignment not supported"
#   2. level 2, two connections: a 1 MiB READ (8 KiB Data-In) and a 512 KiB WRITE (InitialR2T=Yes,
#      64 KiB R2Ts) on CID 1, whose socket is closed mid-transfer; a new connection with CID 1
#      joins the same TSIH and reassigns both: the Data-In come again from ExpDataSN (cut to the
#      new connection's 16 KiB), then GOOD, the data right; the write gets R2Ts for what had not
#      come, ends GOOD and reads back whole; a command held behind a CmdSN gap on a connection that
#      fails, and the command lost in the gap, run when sent again on another connection with their
#      CmdSN; the session list counts one connection recovery and two task reassignments
#   3. Logout "remove the connection for recovery" for CID 1 sent on CID 2 (response with
#      Time2Wait 2 and Time2Retain 20, CID 1's socket closed by the target), a new CID 3
#      reassigns the read; an unknown ITT: task does not exist; a write of live CID 2: task still
#      allegiant
#   4. DefaultTime2Wait 2 (the target's offer), DefaultTime2Retain 2: a failed connection never
#      recovered loses its tasks after 4 s while the session goes on on its other connection; a
#      session with no connection left is continued with its TSIH, and is gone 4.5 s after its
#      last one failed
#   5. two loops, max-connections 4: failed connections of sessions on both loops count together;
#      when a failure puts the target over the bound and its own loop has no older failed
#      connection, the other loop discards its own; else the failing loop discards its oldest
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "ErrorRecoveryLevel 2 is checked against isthmus-target"

IQN=iqn.2026-11.org.isthmus:erl2
CLI=$ISTHMUS_BIN/isthmus
SOCK=$TEST_DIR/mgmt.sock
PORT=$(free_port)

run_case() {
	check_case "$1" 120 python3 "$INTEROP_DIR/erl2_target.py" 127.0.0.1 "$PORT" "$IQN" "$1" \
		--stats-cmd "$CLI target --socket $SOCK session list --json"
}

start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=64M" --mgmt-socket "$SOCK" \
	--max-error-recovery-level 2
mark=$(log_mark)
run_case unsupported
run_case reinstate
log=$(log_since "$mark")
grep -q 'failed: .*wait up to 22 s for reassignment' <<<"$log" || fail "the target log does not show CID 1 failing"
run_case logout
run_case expire
log=$(log_since "$mark")
grep -q 'discarded with 1 task(s): not recovered within DefaultTime2Wait + DefaultTime2Retain' <<<"$log" ||
	fail "the target log does not show the failed connection's task discarded"
grep -q 'session TSIH [0-9]* of .* ended' <<<"$log" || fail "the target log does not show the session ending"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"

PORT=$(free_port)
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=64M" --mgmt-socket "$SOCK" \
	--max-error-recovery-level 2 --threads 2 --max-connections 4
mark=$(log_mark)
run_case loops
log=$(log_since "$mark")
grep -q "discarded with 1 task(s): the target's failed connections are at max-connections" <<<"$log" ||
	fail "the target log does not show failed connections discarded at max-connections"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM (two loops)"
say "PASS"
