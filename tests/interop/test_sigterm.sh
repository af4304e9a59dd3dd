#!/usr/bin/env bash
# Shutdown with initiators connected: while iscsi-perf keeps 16 reads in flight on LUN 0 and
# a second session reads LUN 1, SIGTERM must make the target exit with status 0
# within 5 s, close its listening port, and leave no sanitizer report.
# (libiscsi initiators keep trying to reconnect, so their own exit is not checked.)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-perf cc

IQN=iqn.2026-11.org.isthmus:sig
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/disk.img,size=64M" --lun "memory,size=16M"

# Busy session: reads for up to 60 s.
bg_start run_to 90 iscsi-perf -m 16 -b 8 -t 60 "$(lun_url "$HP" "$IQN" 0)" >"$TEST_DIR/perf.log" 2>&1
PERF=$BG_LAST
XFER=$(iscsi_xfer)
deadline=$((SECONDS + 15))
until grep -q 'connected to' "$TEST_DIR/perf.log"; do
	((SECONDS < deadline)) || fail "iscsi-perf did not connect: $(cat "$TEST_DIR/perf.log")"
	alive "$PERF" || fail "iscsi-perf exited early: $(cat "$TEST_DIR/perf.log")"
	sleep 0.2
done
sleep 2 # let I/O run
alive "$PERF" || fail "iscsi-perf stopped before the signal: $(tail -c 300 "$TEST_DIR/perf.log")"
# A second session, reading LUN 1 once (it may or may not be done when the signal comes).
bg_start run_to 60 "$XFER" read "$(lun_url "$HP" "$IQN" 1)" /dev/null >"$TEST_DIR/xfer.log" 2>&1
sleep 0.5

pid=$TARGET_PID
if has_quirk ignores-sigterm; then
	# tgtd blocks SIGTERM, and its admin shutdown refuses while LUNs are busy: only the
	# set-up and the port check can be exercised with it.
	stop_target KILL
	port_open 127.0.0.1 "$PORT" && fail "port $PORT still open after the target was killed"
	skip "$TARGET_IMPL ignores SIGTERM and cannot shut down with busy sessions (set-up and port check passed)"
fi
t0=$(date +%s.%N)
STOP_TIMEOUT=5 stop_target TERM
t1=$(date +%s.%N)
took=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM (took ${took}s; 137 = had to be killed)"
say "ok: target pid $pid exited 0, ${took}s after SIGTERM"
if port_open 127.0.0.1 "$PORT"; then
	fail "port $PORT still accepts connections after the target exited"
fi
say "ok: port $PORT closed"

say "PASS"
