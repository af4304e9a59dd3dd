#!/usr/bin/env bash
# Eight sessions (distinct initiator names and ISIDs) hammer one LU at once with
# isthmus-threads-stress (tests/tools/threads_stress.c): verified writes and reads of their own
# slots, racing writes to a shared range, persistent reservations (register, reserve, release,
# preempt, clear, read keys / reservation / full status), ABORT TASK, LOGICAL UNIT RESET and
# TEST UNIT READY. The driver checks the LU's shared state (see the comment at the top of
# threads_stress.c) and exits non-zero on any violation. It runs once on a memory LU and once on
# a file LU; meanwhile `isthmus target session list` must show the eight sessions, and at the
# end the target must still run with no sanitizer report or failed assertion in its log.
#
#   STRESS_TARGET_ARGS   extra arguments of isthmus-target (word-split; default "--threads 4", so the
#                        sessions share the LU from four event loops; "--threads 1" for one loop, ""
#                        for the default, one per CPU)
#   STRESS_SECONDS       seconds of load per LU (default 12)
#   STRESS_SEED          the driver's seed, to replay a run (default: a new one each run)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 jq
[[ "$TARGET_IMPL" == isthmus ]] || skip "the target's own arguments and management socket are needed"

STRESS=$ISTHMUS_BIN/tests/tools/isthmus-threads-stress
CLI=$ISTHMUS_BIN/isthmus
[[ -x "$STRESS" ]] || fail "no isthmus-threads-stress at $STRESS (build first, or set ISTHMUS_BIN)"
[[ -x "$CLI" ]] || fail "no isthmus CLI at $CLI"
SECONDS_PER_LU=${STRESS_SECONDS:-12}
SESSIONS=8
read -r -a EXTRA <<<"${STRESS_TARGET_ARGS---threads 4}"

IQN=iqn.2026-11.org.isthmus:threads-stress
PREFIX=iqn.2026-11.org.isthmus:stress
PORT=$(free_port)
HP=127.0.0.1:$PORT
MGMT=$TEST_DIR/mgmt.sock
say "target arguments from STRESS_TARGET_ARGS: ${EXTRA[*]:-(none)}"
start_target --listen "$HP" --target "$IQN" --lun "memory,size=64M" --lun "$TEST_DIR/lun1.img,size=64M" \
	--mgmt-socket "$MGMT" "${EXTRA[@]}"

# sessions_of LUN : how many sessions the target lists for the driver's initiators of that run
sessions_of() {
	run_to 10 "$CLI" target --socket "$MGMT" session list --json 2>/dev/null |
		jq --arg p "$PREFIX-l$1-s" '[.[] | select(.initiator_iqn | startswith($p))] | length' 2>/dev/null || echo 0
}
# loops_of LUN : on how many event loops those sessions are
loops_of() {
	run_to 10 "$CLI" target --socket "$MGMT" session list --json 2>/dev/null |
		jq --arg p "$PREFIX-l$1-s" '[.[] | select(.initiator_iqn | startswith($p)) | .loop] | unique | length' \
			2>/dev/null || echo 0
}
want_loops=1
for ((k = 0; k < ${#EXTRA[@]}; k++)); do
	[[ ${EXTRA[k]} == --threads ]] && want_loops=${EXTRA[k + 1]:-1}
done
((want_loops > SESSIONS)) && want_loops=$SESSIONS

for lun in 0 1; do
	kind=memory
	((lun == 0)) || kind=file
	ready=$TEST_DIR/ready-$lun
	out=$TEST_DIR/stress-$lun.log
	args=(--sessions "$SESSIONS" --seconds "$SECONDS_PER_LU" --ready-file "$ready" --name-prefix "$PREFIX")
	[[ -z "${STRESS_SEED:-}" ]] || args+=(--seed "$STRESS_SEED")
	say "LUN $lun ($kind): $SESSIONS sessions for ${SECONDS_PER_LU}s: every command answered once in time, own slots" \
		"read back, reservation conflicts only where the state explains them, reset unit attentions, ABORT TASK," \
		"one final reservation state, clean logouts, a fresh login"
	start=$SECONDS
	run_to $((SECONDS_PER_LU + 90)) "$STRESS" "$(lun_url "$HP" "$IQN" "$lun")" "${args[@]}" >"$out" 2>&1 &
	pid=$!
	# While it runs, the target must list the eight sessions (bounded wait).
	seen=0 loops=0
	for ((i = 0; i < 100 && (seen < SESSIONS || loops < want_loops); i++)); do
		alive "$pid" || break
		if [[ -e "$ready" ]]; then
			n=$(sessions_of "$lun")
			((n > seen)) && seen=$n
			n=$(loops_of "$lun")
			((n > loops)) && loops=$n
		fi
		sleep 0.2
	done
	rc=0
	wait "$pid" || rc=$?
	sed 's/^/    /' "$out"
	((rc == 0)) || fail "LUN $lun ($kind): isthmus-threads-stress exited with status $rc (output above)"
	grep -q '^stress: PASS$' "$out" || fail "LUN $lun ($kind): the driver did not report PASS"
	((seen == SESSIONS)) || fail "LUN $lun ($kind): isthmus target session list showed $seen of the $SESSIONS sessions"
	((loops >= want_loops)) || fail "LUN $lun ($kind): the sessions were on $loops event loops, not spread over $want_loops"
	say "ok: LUN $lun ($kind): invariants held for ${SECONDS_PER_LU}s of load ($((SECONDS - start))s in all);" \
		"session list showed all $SESSIONS sessions, on $loops event loops"
	[[ $(sessions_of "$lun") == 0 ]] || fail "LUN $lun: the target still lists sessions of the run after their logout"
done

alive "$TARGET_PID" || fail "the target is gone after the load"
if report=$(sanitizer_report "$TARGET_LOG"); then
	fail "the target's log has a sanitizer report: $report"
fi
if grep -Ei -m1 'assert|panic|abort\(\)|double free' "$TARGET_LOG"; then
	fail "the target's log has an assertion failure"
fi
say "ok: the target still runs, its log has no sanitizer report and no failed assertion"
stop_target
((TARGET_EXIT == 0)) || fail "the target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
