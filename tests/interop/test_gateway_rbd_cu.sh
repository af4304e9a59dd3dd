#!/usr/bin/env bash
# libiscsi's whole conformance suite (iscsi-test-cu --test=ALL) through two gateways of one
# group in front of one RBD image: the first URL through gateway 1, the second through gateway
# 2, so the MultipathIO family (MultipathIO.Reset included) and every reservation test that
# takes a second initiator cross gateways. Passes only with no failed test.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need iscsi-test-cu

ceph_start
# Without the exclusive-lock feature: with it, the suite's writes through gateway 2 (MultipathIO,
# the second initiator's) take the image's lock there, and once it rests there the active/
# optimized group follows it, raising ASYMMETRIC ACCESS STATE CHANGED in the middle of tests
# that expect none (an initiator that follows ALUA retries the command). Those moves are
# test_gateway_alua_rbd.sh's; the lock's hand-overs are exercised by test_gateway_rbd.sh.
ceph_image cu 64M --image-feature layering

IQN=iqn.2026-11.org.isthmus:gwcu
P1=$(free_port)
P2=$(free_port)
GWFLAGS=(--target "$IQN" --lun "rbd:rbd/cu,conf=$CEPH_CONF" --gateway-portal "1=127.0.0.1:$P1"
	--gateway-portal "2=127.0.0.1:$P2")
start_target --listen "127.0.0.1:$P1" --gateway 1 "${GWFLAGS[@]}"
say "starting gateway 2 on port $P2"
bg_start "$ISTHMUS_BIN/isthmus-target" --listen "127.0.0.1:$P2" --gateway 2 "${GWFLAGS[@]}" \
	--mgmt-socket "$TEST_DIR/gw2.sock" --state-dir "$TEST_DIR/var2" >>"$TEST_DIR/gw2.log" 2>&1
GW2_PID=$BG_LAST
wait_port "127.0.0.1:$P2" "$GW2_PID" || fail "gateway 2 does not listen on $P2"

CU_TIMEOUT=${CU_TIMEOUT:-280} run_test_cu "${CU_FAMILY:-ALL}" "iscsi://127.0.0.1:$P1/$IQN/0" "iscsi://127.0.0.1:$P2/$IQN/0"

kill -TERM "$GW2_PID"
timeout "$STOP_TIMEOUT" tail --pid="$GW2_PID" -f /dev/null || fail "gateway 2 did not stop within ${STOP_TIMEOUT}s"
if report=$(sanitizer_report "$TEST_DIR/gw2.log"); then
	fail "gateway 2 reported a sanitizer error: $report"
fi
stop_target
say "PASS"
