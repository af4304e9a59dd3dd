#!/usr/bin/env bash
# ErrorRecoveryLevel 1 on the target, with raw PDUs over real sockets (erl1_target.py), HeaderDigest
# and DataDigest CRC32C:
#   1. without max-error-recovery-level the target negotiates level 0: no A bit, SNACK rejected as
#      not supported
#   2. --max-error-recovery-level 1: Data SNACK and Status SNACK send the kept PDUs again as they
#      were (same DataSN, offset, StatSN), the last Data-In of a read carries the A bit and a
#      DataACK lets its data go, ExpStatSN lets statuses go, an R-Data SNACK sends the data again
#      and ends with a SCSI Response carrying the SNACK Tag
#   3. digest errors cost one PDU: a data digest error on a command with immediate data gets a
#      Reject and the command sent again with its CmdSN runs (and the one numbered after it); one
#      on Data-Out gets a Reject and a recovery R2T; a Data-Out lost to a header digest error is
#      asked for again with a recovery R2T; a command lost to one can be sent again; the data read
#      back is whole, the session list shows the same single connection with the errors counted;
#      two header digest errors in a row end the connection
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "ErrorRecoveryLevel 1 is checked against isthmus-target"

IQN=iqn.2026-11.org.isthmus:erl1
CLI=$ISTHMUS_BIN/isthmus
SOCK=$TEST_DIR/mgmt.sock
PORT=$(free_port)

run_case() {
	local out rc=0
	say "checking: $1"
	out=$(run_to 120 python3 "$INTEROP_DIR/erl1_target.py" 127.0.0.1 "$PORT" "$IQN" "$1" \
		--stats-cmd "$CLI target --socket $SOCK session list --json" 2>&1) || rc=$?
	sed 's/^/    /' <<<"$out"
	((rc == 0)) || fail "$1"
}

start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=16M" --mgmt-socket "$SOCK"
run_case erl0
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT"

start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=16M" --mgmt-socket "$SOCK" \
	--max-error-recovery-level 1
run_case snack
run_case digest
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
