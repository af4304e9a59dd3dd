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
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need cc pkg-config fusermount3 python3 mountpoint jq
pkg-config --exists fuse3 || skip "libfuse3 development files are not installed (libfuse3-dev)"
[[ "$TARGET_IMPL" == isthmus ]] || skip "this checks isthmus-target's task management (TARGET_IMPL=$TARGET_IMPL)"

DELAY_MS=${SLOW_DELAY_MS:-1500}
SLOWFS=$TEST_DIR/slowfs
read -r -a FUSE_FLAGS <<<"$(pkg-config --cflags --libs fuse3)"
cc -O2 -Wall -Wextra -o "$SLOWFS" "$INTEROP_DIR/slowfs.c" "${FUSE_FLAGS[@]}" >"$TEST_DIR/slowfs.build.log" 2>&1 ||
	fail "building slowfs failed: $(cat "$TEST_DIR/slowfs.build.log")"
BACKING=$TEST_DIR/backing.img
MNT=$TEST_DIR/mnt
SLOWFS_LOG=$TEST_DIR/slowfs.log
SLOWFS_PID=""
mkdir -p "$MNT"
head -c $((16 << 20)) /dev/zero >"$BACKING"

# Unmount before lib.sh's cleanup removes TEST_DIR (the mount point is inside it).
slowfs_cleanup() {
	local rc=$?
	set +e
	if [[ -n "$SLOWFS_PID" ]] && alive "$SLOWFS_PID"; then
		kill -TERM "$SLOWFS_PID" 2>/dev/null
		timeout 5 tail --pid="$SLOWFS_PID" -f /dev/null 2>/dev/null || kill -KILL "$SLOWFS_PID" 2>/dev/null
	fi
	mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u -z "$MNT" 2>/dev/null
	(exit "$rc")
	lib_cleanup
}
trap slowfs_cleanup EXIT

"$SLOWFS" "$BACKING" "$MNT" "$DELAY_MS" 2>"$SLOWFS_LOG" &
SLOWFS_PID=$!
deadline=$((SECONDS + 10))
until [[ -f "$MNT/disk" ]]; do
	alive "$SLOWFS_PID" || skip "cannot mount a FUSE file system here: $(tail -n 3 "$SLOWFS_LOG")"
	((SECONDS < deadline)) || fail "slowfs did not mount within 10 s: $(tail -n 3 "$SLOWFS_LOG")"
	sleep 0.1
done

IQN=iqn.2026-11.org.isthmus:threads-tmf-slow
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$MNT/disk,bs=512" --threads 2 --mgmt-socket "$SOCK"
run_to 60 python3 "$INTEROP_DIR/threads_tmf_slow.py" 127.0.0.1 "$PORT" "$IQN" "$ISTHMUS_BIN/isthmus" "$SOCK" \
	"$SLOWFS_LOG" "$TARGET_LOG" "$BACKING.slow-writes" || fail "threads_tmf_slow.py failed"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
