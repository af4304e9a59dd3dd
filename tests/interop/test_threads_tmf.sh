#!/usr/bin/env bash
# Task management across event loops: a target with four loops, four sessions of one initiator
# on the four of them, each holding WRITEs open (R2T received, data not sent). A LOGICAL UNIT
# RESET, a CLEAR TASK SET and a TARGET WARM RESET from a session on one loop abort the held
# writes of the sessions on every loop (their data, sent after the response, gets no answer),
# leave another LUN's alone where they should, and raise the SAM-5 unit attentions on the other
# sessions (threads_tmf.py).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need jq

IQN=iqn.2026-11.org.isthmus:threads-tmf
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun memory,size=64M --lun memory,size=64M \
	--threads 4 --mgmt-socket "$SOCK"
grep -q '4 event loops' "$TARGET_LOG" || fail "the target did not start four event loops"
run_to 120 python3 "$(dirname "$0")/threads_tmf.py" 127.0.0.1 "$PORT" "$IQN" "$ISTHMUS_BIN/isthmus" "$SOCK" ||
	fail "threads_tmf.py failed"
stop_target
say "PASS"
