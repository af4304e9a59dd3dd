#!/usr/bin/env bash
# The target's bound on data buffered per connection (src/target/task.c, CONN_MAX_BUFFERED =
# 512 MiB): a command's data buffer is allocated when it arrives and counted until the command
# ends; a command that would take the connection past the bound is answered at once with
# TASK SET FULL (status 0x28) instead.
#
# A raw session (scsi_session.py) negotiates InitialR2T=Yes and ImmediateData=No, so a WRITE(16)
# sent without data makes the target allocate its buffer and send an R2T, then wait for Data-Out
# that does not come.  Sixteen 32 MiB writes each get an R2T (512 MiB held); the seventeenth, and
# a 32 MiB READ(16), get TASK SET FULL right away, with the warning in the target log; a TEST UNIT
# READY still gets GOOD.  Sending one held write its 32 MiB (following its R2Ts, one MaxBurstLength
# burst each) ends it with GOOD, and a new 32 MiB write then gets an R2T again -- exactly one
# slot came free, so the next one is refused again.  After logout a fresh session again holds
# sixteen and is refused the seventeenth.  The buffers are only malloc'ed (virtual memory); the
# target's resident size is noted.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "the per-connection buffer bound is isthmus-target's own"

# The target needs about 600 MiB of address space for the held buffers (never touched).
vlim=$(ulimit -v)
if [[ "$vlim" != unlimited ]] && ((vlim < 2 * 1024 * 1024)); then
	skip "virtual memory limit (ulimit -v) is $vlim KiB; the target needs 512 MiB of buffers"
fi
if [[ "$(cat /proc/sys/vm/overcommit_memory 2>/dev/null)" == 2 ]]; then
	commit_free=$(awk '/^CommitLimit:/ {l = $2} /^Committed_AS:/ {c = $2} END {print l - c}' /proc/meminfo)
	((commit_free > 1024 * 1024)) || skip "strict overcommit leaves $commit_free KiB: too little for 512 MiB of buffers"
fi

IQN=iqn.2026-11.org.isthmus:task-set-full
INITIATOR=iqn.2026-11.org.isthmus:tsf-probe
BOUND=$((512 << 20))         # CONN_MAX_BUFFERED
XFER=$((32 << 20))           # one command's data (also the largest transfer the target takes)
HOLD=$((BOUND / XFER))       # commands whose buffers fit: 16
PORT=$(free_port)
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=64M"
T0=$SECONDS

ANSWER=""
# open_session ISID : a raw session (coproc SESS) that leaves writes waiting for their data.
open_session() {
	coproc SESS {
		exec python3 "$INTEROP_DIR/scsi_session.py" 127.0.0.1 "$PORT" "$IQN" --initiator "$INITIATOR" \
			--isid "$1" --ops InitialR2T=Yes,ImmediateData=No 2>>"$TEST_DIR/session.err"
	}
	BG_PIDS+=("$SESS_PID")
	read -r -t 15 ANSWER <&"${SESS[0]}" || fail "raw session did not log in: $(tail -n 3 "$TEST_DIR/session.err")"
	[[ "$ANSWER" == ready ]] || fail "raw session login: $ANSWER"
}
# ask SECS COMMAND... : one command to the session, its answer line in ANSWER.
ask() {
	local secs=$1
	shift
	echo "$*" >&"${SESS[1]}" || fail "raw session is gone (sending '$*'): $(tail -n 3 "$TEST_DIR/session.err")"
	ANSWER=""
	read -r -t "$secs" ANSWER <&"${SESS[0]}" ||
		fail "no answer to '$*' within ${secs}s: $(tail -n 3 "$TEST_DIR/session.err")"
	[[ "$ANSWER" != error=* ]] || fail "'$*': $ANSWER"
}
# field NAME : the value of NAME=VALUE in ANSWER.
field() { sed -nE "s/^(.* )?$1=([^ ]*).*/\2/p" <<<"$ANSWER"; }
close_session() {
	ask 15 logout
	[[ "$ANSWER" == "logout response=0x00 closed=yes" ]] || fail "logout: $ANSWER"
	local i pid=$SESS_PID
	for ((i = 0; i < 50; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && fail "raw session did not exit after logout"
	wait "$pid" 2>/dev/null || true
}
target_alive() { alive "$TARGET_PID" || fail "target died ($1)"; }
# clear_ua : the first command of a new I_T nexus reports the power-on unit attention.
clear_ua() {
	ask 15 tur 0
	[[ "$ANSWER" == status=0x00 || "$ANSWER" == "status=0x02 key=0x6 "* ]] || fail "first TEST UNIT READY: $ANSWER"
	ask 15 tur 0
	[[ "$ANSWER" == status=0x00 ]] || fail "TEST UNIT READY: $ANSWER"
}
# fill_up : HOLD 32 MiB writes, each held with an R2T; their ITTs in HELD.
HELD=()
fill_up() {
	local i off len
	HELD=()
	for ((i = 1; i <= HOLD; i++)); do
		ask 15 write 0 0 "$XFER"
		[[ "$ANSWER" == r2t* ]] ||
			fail "32 MiB write $i of $HOLD (with $(((i - 1) * 32)) MiB held) was not accepted with an R2T: $ANSWER"
		off=$(field offset) len=$(field len)
		((off == 0 && len > 0 && len <= XFER)) || fail "write $i: bad first R2T: $ANSWER"
		HELD+=("$(field itt)")
	done
}
# expect_full WHAT : ANSWER is TASK SET FULL, given at once.
expect_full() {
	if [[ "$ANSWER" == r2t* ]]; then
		fail "$1 was accepted (R2T) with $((HOLD * 32)) MiB already buffered: the bound did not hold ($ANSWER)"
	fi
	[[ "$(field status)" == 0x28 && "$(field response)" == 0x00 ]] ||
		fail "$1 with $((HOLD * 32)) MiB buffered: want SCSI status 0x28 TASK SET FULL, got: $ANSWER"
	(($(field ms) < 3000)) || fail "$1: TASK SET FULL came only after $(field ms) ms"
}
WARN_RE="more than $BOUND bytes of data buffered for commands in progress: TASK SET FULL"

# ---- 1. the first session: 16 held, the 17th refused ---------------------------------------
open_session 400000005301
ask 15 params
[[ "$ANSWER" == *InitialR2T=Yes* && "$ANSWER" == *ImmediateData=No* ]] ||
	fail "negotiation did not give InitialR2T=Yes, ImmediateData=No: $ANSWER"
BURST=$(sed -nE 's/.*MaxBurstLength=([0-9]+).*/\1/p' <<<"$ANSWER")
BURST=${BURST:-262144} # not in the answer: the default
clear_ua
mark=$(log_mark)
fill_up
say "ok: $HOLD writes of 32 MiB without data each got an R2T ($((HOLD * 32)) MiB held)"
ask 15 write 0 0 "$XFER"
expect_full "write $((HOLD + 1))"
say "ok: write $((HOLD + 1)) got TASK SET FULL at once ($(field ms) ms)"
ask 15 read 0 0 "$XFER"
expect_full "a 32 MiB READ(16)"
say "ok: a 32 MiB READ(16) got TASK SET FULL too"
ask 15 tur 0
[[ "$ANSWER" == status=0x00 ]] || fail "TEST UNIT READY while full: $ANSWER (want GOOD)"
say "ok: TEST UNIT READY (no data) still gets GOOD"
wait_log "$mark" "$WARN_RE" 5 || fail "no TASK SET FULL warning in the target log"
nwarn=$(log_since "$mark" | grep -c -- "$WARN_RE" || true)
((nwarn == 2)) || fail "$nwarn TASK SET FULL warnings in the target log, want 2 (one per refused command)"
say "ok: the target logged the warning for each refusal"
target_alive "while full"
note "target holding $((HOLD * 32)) MiB: $(grep -E '^Vm(Size|RSS):' "/proc/$TARGET_PID/status" | tr -s ' \t\n' ' ')"

# ---- 2. a write that ends frees its share, and only its share --------------------------------
ask 120 data "${HELD[0]}"
[[ "$(field status)" == 0x00 && "$(field bytes)" == "$XFER" ]] ||
	fail "completing held write ITT ${HELD[0]} with its 32 MiB: $ANSWER"
(($(field maxburst) <= BURST)) || fail "an R2T asked for $(field maxburst) bytes, MaxBurstLength is $BURST"
(($(field r2ts) >= XFER / BURST)) || fail "32 MiB came in $(field r2ts) bursts of at most $BURST bytes?"
say "ok: held write ITT ${HELD[0]} got its 32 MiB in $(field r2ts) R2T bursts (MaxBurstLength $BURST) and GOOD ($(field ms) ms)"
ask 15 write 0 0 "$XFER"
[[ "$ANSWER" == r2t* ]] || fail "a new 32 MiB write after one ended was not accepted: $ANSWER (the bound was not released)"
ask 15 write 0 0 "$XFER"
expect_full "the write after the freed slot was taken again"
say "ok: the finished write released its 32 MiB: one new write got an R2T, the next TASK SET FULL"
ask 15 tur 0
[[ "$ANSWER" == status=0x00 ]] || fail "TEST UNIT READY: $ANSWER"
close_session
target_alive "after logout"
say "ok: logout with $HOLD writes still held"

# ---- 3. a fresh session gets the whole bound again -------------------------------------------
open_session 400000005301
clear_ua
fill_up
ask 15 write 0 0 "$XFER"
expect_full "write $((HOLD + 1)) of the second session"
ask 15 tur 0
[[ "$ANSWER" == status=0x00 ]] || fail "TEST UNIT READY in the second session: $ANSWER"
close_session
say "ok: after logout a fresh session again held $HOLD writes and was refused the next"

target_alive "at the end"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "checks took $((SECONDS - T0)) s"
say "PASS"
