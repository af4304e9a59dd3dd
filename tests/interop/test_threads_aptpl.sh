#!/usr/bin/env bash
# Persistent reservations with APTPL on a target with two event loops: six sessions, on both
# loops, change their registrations with APTPL set all at once (the journal is written on loop
# 0's workers whichever loop ran the command), then one reserves; every command is GOOD and
# READ KEYS lists the last keys. The target is stopped and started again on the same state
# directory: the keys and the reservation are back (threads_aptpl.py).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "uses isthmus-target's event loops and state directory"

IQN=iqn.2026-12.org.isthmus:aptpl-loops
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
CONF=$TEST_DIR/t.conf
CONF_GLOBAL="threads = 2" one_target_conf "$CONF" "$IQN" "lun 0 = $TEST_DIR/disk.img,size=16M"
HELPER="python3 $INTEROP_DIR/threads_aptpl.py 127.0.0.1 $PORT $IQN $ISTHMUS_BIN/isthmus $SOCK"

start_target --config "$CONF"
grep -q '2 event loops' "$TARGET_LOG" || fail "the target did not start two event loops"
out=$(run_to 120 $HELPER write) || fail "APTPL changes from both loops: $out"
while read -r line; do say "$line"; done <<<"$out"

stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"
start_target --config "$CONF"
out=$(run_to 60 $HELPER check) || fail "after the restart: $out"
while read -r line; do say "$line"; done <<<"$out"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"
say "ok: APTPL registrations made on two loops survive a restart"
