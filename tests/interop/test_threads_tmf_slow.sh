#!/usr/bin/env bash
# Task management responses of two sessions on two event loops waiting for one aborted WRITE
# (threads_tmf_slow.py). LUN 0 is the file /disk of slowfs (slowfs.c, built here), whose writes
# take SLOW_DELAY_MS (1500) ms while BACKING.slow-writes exists. Session A (one loop) has a WRITE
# in slowfs and sends ABORT TASK for it; once the target has taken that request, session B (the
# other loop) sends LOGICAL UNIT RESET of LUN 0. Both responses must come only after the write
# has left slowfs: each promises its initiator that nothing aborted changes the medium any more.
# A target whose aborted task waits for one response only answers B at once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$INTEROP_DIR/slowfs.bash"
need python3 jq
[[ "$TARGET_IMPL" == isthmus ]] || skip "this checks isthmus-target's task management (TARGET_IMPL=$TARGET_IMPL)"

DELAY_MS=${SLOW_DELAY_MS:-1500}
slowfs_mount "$DELAY_MS" /dev/zero

IQN=iqn.2026-11.org.isthmus:threads-tmf-slow
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$MNT/disk,bs=512" --threads 2 --mgmt-socket "$SOCK"
run_to 60 python3 "$INTEROP_DIR/threads_tmf_slow.py" 127.0.0.1 "$PORT" "$IQN" "$ISTHMUS_BIN/isthmus" "$SOCK" \
	"$SLOWFS_LOG" "$TARGET_LOG" "$BACKING.slow-writes" || fail "threads_tmf_slow.py failed"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
