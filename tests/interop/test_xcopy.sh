#!/usr/bin/env bash
# EXTENDED COPY between two LUNs of one target (file LUN to memory LUN and back), verified by
# reading the destination; libiscsi's suite only copies within one LU.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "copies between LUs of isthmus-target"
IQN=iqn.2026-11.org.isthmus:xcopy
PORT=$(free_port)
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$TEST_DIR/a.img,size=16M" --lun "memory,size=16M"
run_to 60 python3 "$INTEROP_DIR/xcopy_check.py" 127.0.0.1 "$PORT" "$IQN" 0 1 || fail "copy LUN 0 -> 1"
run_to 60 python3 "$INTEROP_DIR/xcopy_check.py" 127.0.0.1 "$PORT" "$IQN" 1 0 || fail "copy LUN 1 -> 0"
stop_target
say "PASS"
