#!/usr/bin/env bash
# The RBD store against a throw-away Ceph cluster, below the SCSI layer: runs the unit test
# tests/unit/store/test_rbd.c (every op, 256 ios in flight, the miscompare offset, UNMAP then
# zeros and allocation status, `rbd resize` seen, a frozen cluster timing out and recovering,
# an unreachable cluster refused in bounded time) with the cluster it needs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"

BIN=$ISTHMUS_BIN/tests/unit/store/test_store_rbd
[[ -x "$BIN" ]] || skip "$BIN is not built"

ceph_start
# Short client timeouts so that the frozen-cluster check takes seconds (the store keeps values
# ceph.conf sets; it only replaces Ceph's wait-forever defaults).
# librbd submitting on the caller's thread (rbd non blocking aio = false), which gives the
# store an in-flight budget, and small librados in-flight limits: the budget (half of them: 8
# operations, 1 MiB) is then passed by the 256 ios in flight and by the frozen-cluster check's
# 16 reads (they wait in the store's queue, not in librados on the loop), and ios over 1 MiB
# (the 8 MiB write and reads) are submitted by a worker.
ceph_client_timeout 4
cat >>"$CEPH_CONF" <<CONF
rbd non blocking aio = false
objecter inflight ops = 16
objecter inflight op bytes = 2097152
CONF
ceph_image store-a 64M
ceph_image store-b 32M

# A configuration whose monitor nobody runs: opening must fail within the mount timeout.
dead_port=$(free_port)
sed -e "s/127.0.0.1:[0-9]*]/127.0.0.1:$dead_port]/" "$CEPH_CONF" >"$TEST_DIR/dead.conf"
echo "client mount timeout = 3" >>"$TEST_DIR/dead.conf"

say "running $(basename "$BIN")"
t0=$SECONDS
ISTHMUS_TEST_CEPH_CONF=$CEPH_CONF ISTHMUS_TEST_RBD_POOL=rbd \
	ISTHMUS_TEST_CEPH_PAUSE="$MICRO_CEPH --pause $CEPH_DIR" \
	ISTHMUS_TEST_CEPH_RESUME="$MICRO_CEPH --resume $CEPH_DIR" \
	ISTHMUS_TEST_CEPH_DEAD_CONF=$TEST_DIR/dead.conf \
	run_to 300 "$BIN" 2>&1 | tee "$TEST_DIR/test_rbd.log" | sed 's/^/    /'
rc=${PIPESTATUS[0]}
say "store test finished in $((SECONDS - t0)) s with status $rc"
((rc == 0)) || fail "the RBD store test failed (log: $TEST_DIR/test_rbd.log)"
say "PASS"
