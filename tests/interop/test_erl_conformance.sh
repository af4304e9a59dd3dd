#!/usr/bin/env bash
# A target that allows ErrorRecoveryLevel 2 (and so 1) changes nothing for an initiator that
# offers 0: libiscsi's whole conformance suite (iscsi-test-cu --test=ALL, destructive tests on,
# the multipath tests through a second session) against isthmus-target started with
# --max-error-recovery-level 2 passes, and no level 1 or 2 recovery runs (none was negotiated):
# no SNACK, no recovery R2T, no connection kept for reassignment when libiscsi drops one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-test-cu
[[ "$TARGET_IMPL" == isthmus ]] || skip "max-error-recovery-level is an isthmus-target option"

IQN=iqn.2026-11.org.isthmus:erl-conformance
PORT=$(free_port)
HP=127.0.0.1:$PORT
SOCK=$TEST_DIR/mgmt.sock
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/disk.img,size=64M" --mgmt-socket "$SOCK" \
	--max-error-recovery-level 2
URL=$(lun_url "$HP" "$IQN" 0)
CU_TIMEOUT=${CU_TIMEOUT:-280} run_test_cu ALL "$URL" "$URL"
grep -q 'SNACK\|recovery R2T\|digest error' "$TARGET_LOG" && fail "level 1 recovery ran with an initiator at level 0"
grep -q 'wait up to .* for reassignment\|TASK REASSIGN' "$TARGET_LOG" &&
	fail "level 2 recovery ran with an initiator at level 0"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
