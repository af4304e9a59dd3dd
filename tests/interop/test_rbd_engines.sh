#!/usr/bin/env bash
# One RBD image used through two store engines on two threads at once (as the target's event
# loops do): runs tests/unit/store/test_rbd_engines.c against a throw-away Ceph cluster, twice:
# with Ceph's default librbd (no in-flight budget) and with the store's in-flight budget small
# enough that ios of both engines queue behind it. Then the whole target: an RBD LUN served by
# four event loops, 8 sessions of isthmus-threads-stress on it at once (verified data,
# reservations kept in the cluster, LU RESET, ABORT TASK) spread over the loops, and a qemu-img
# round trip through it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"

BIN=$ISTHMUS_BIN/tests/unit/store/test_store_rbd_engines
[[ -x "$BIN" ]] || skip "$BIN is not built"

ceph_start
ceph_client_timeout 10
ceph_image engines 16M

run_one() {
	local name=$1 conf=$2 image=$3 bin=${4:-$BIN}
	say "running $bin ($name)"
	local t0=$SECONDS rc
	ISTHMUS_TEST_CEPH_CONF=$conf ISTHMUS_TEST_RBD_POOL=rbd ISTHMUS_TEST_RBD_IMAGE=$image \
		run_to 240 "$bin" 2>&1 | tee "$TEST_DIR/$name.log" | sed 's/^/    /'
	rc=${PIPESTATUS[0]}
	say "$name finished in $((SECONDS - t0)) s with status $rc"
	((rc == 0)) || fail "two engines on one image ($name) failed (log: $TEST_DIR/$name.log)"
}

run_one default "$CEPH_CONF" engines

# librbd submitting on the caller's thread with small librados limits: the store's budget (8
# operations, 1 MiB) is passed, so ios of both engines wait in the image's queue and are let go
# by whichever thread gives budget back.
ceph_image engines-budget 16M
cp "$CEPH_CONF" "$TEST_DIR/budget.conf"
cat >>"$TEST_DIR/budget.conf" <<CONF
rbd non blocking aio = false
objecter inflight ops = 16
objecter inflight op bytes = 2097152
CONF
run_one budget "$TEST_DIR/budget.conf" engines-budget

# The same under ThreadSanitizer when build-tsan has it (ninja -C build-tsan
# tests/unit/store/test_store_rbd_engines). Ceph's libraries are not instrumented: reports from
# inside them are suppressed (tests/unit/store/tsan-ceph.supp), the store's own code is checked.
TSAN_BIN=$REPO_ROOT/build-tsan/tests/unit/store/test_store_rbd_engines
if [[ -x "$TSAN_BIN" ]]; then
	for conf in default budget; do
		ceph_image "engines-tsan-$conf" 16M
		c=$CEPH_CONF
		[[ $conf == budget ]] && c=$TEST_DIR/budget.conf
		TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$REPO_ROOT/tests/unit/store/tsan-ceph.supp" \
			run_one "tsan-$conf" "$c" "engines-tsan-$conf" "$TSAN_BIN"
	done
else
	say "no ThreadSanitizer build of the test ($TSAN_BIN): skipped that part"
fi

# ---- the target: one RBD LUN on four event loops ---------------------------------------------
STRESS=$ISTHMUS_BIN/tests/tools/isthmus-threads-stress
CLI=$ISTHMUS_BIN/isthmus
if [[ "$TARGET_IMPL" != isthmus || ! -x "$STRESS" ]]; then
	say "no isthmus-threads-stress ($STRESS) or not isthmus-target: the four-loop target part skipped"
	say "PASS"
	exit 0
fi
need qemu-img jq
ceph_image engines-target 64M
IQN=iqn.2026-11.org.isthmus:rbd-loops
HP=127.0.0.1:$(free_port)
MGMT=$TEST_DIR/mgmt.sock
start_target --listen "$HP" --target "$IQN" --lun "rbd:rbd/engines-target,conf=$CEPH_CONF" --threads 4 \
	--mgmt-socket "$MGMT"
URL=$(lun_url "$HP" "$IQN" 0)
say "8 sessions of isthmus-threads-stress on the RBD LUN of a four-loop target"
run_to 150 "$STRESS" "$URL" --sessions 8 --seconds 10 --bound 30 --ready-file "$TEST_DIR/ready" \
	--name-prefix iqn.2026-11.org.isthmus:rbdloops >"$TEST_DIR/stress.log" 2>&1 &
spid=$!
loops=0
for ((i = 0; i < 100 && loops < 4; i++)); do
	alive "$spid" || break
	if [[ -e "$TEST_DIR/ready" ]]; then
		n=$(run_to 10 "$CLI" target --socket "$MGMT" session list --json 2>/dev/null |
			jq '[.[] | .loop] | unique | length' 2>/dev/null || echo 0)
		((n > loops)) && loops=$n
	fi
	sleep 0.2
done
rc=0
wait "$spid" || rc=$?
sed 's/^/    /' "$TEST_DIR/stress.log"
((rc == 0)) && grep -q '^stress: PASS$' "$TEST_DIR/stress.log" ||
	fail "isthmus-threads-stress on the RBD LUN of a four-loop target failed (status $rc, output above)"
((loops >= 2)) || fail "the sessions were on $loops event loop(s), not spread over the four"
say "ok: every invariant held with the sessions on $loops event loops"

say "qemu-img: 16 MiB of random data to the LUN and back through the four-loop target"
head -c 16M /dev/urandom >"$TEST_DIR/in.raw"
run_to 120 qemu-img convert -n -f raw -O raw "$TEST_DIR/in.raw" "$URL" || fail "qemu-img convert to the LUN failed"
run_to 120 qemu-img convert -f raw -O raw "$URL" "$TEST_DIR/out.raw" || fail "qemu-img convert from the LUN failed"
cmp -n $((16 << 20)) "$TEST_DIR/in.raw" "$TEST_DIR/out.raw" || fail "the data read back differs from what was written"
say "ok: the 16 MiB read back are the ones written"
alive "$TARGET_PID" || fail "the target is gone"
if report=$(sanitizer_report "$TARGET_LOG"); then
	fail "the target's log has a sanitizer report: $report"
fi
stop_target
((TARGET_EXIT == 0)) || fail "the target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
