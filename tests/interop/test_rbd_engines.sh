#!/usr/bin/env bash
# One RBD image used through two store engines on two threads at once (as the target's event
# loops do): runs tests/unit/store/test_rbd_engines.c against a throw-away Ceph cluster, twice:
# with Ceph's default librbd (no in-flight budget) and with the store's in-flight budget small
# enough that ios of both engines queue behind it.
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
say "PASS"
