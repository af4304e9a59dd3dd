#!/usr/bin/env bash
# Thousands of malformed, truncated and misplaced PDUs over real sockets (pdu_abuse.py: garbage
# before login, oversized login segments, random opcodes, flags, AHS, CDBs, data lengths and
# truncation after a proper login). Afterwards the target must still be running, free of
# sanitizer reports, and serve a well-behaved client: INQUIRY and a data round trip.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 iscsi-inq qemu-img
[[ "$TARGET_IMPL" == isthmus ]] || skip "pdu abuse is aimed at isthmus-target"

IQN=iqn.2026-11.org.isthmus:abuse
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=16M" --lun "memory,size=16M"

SEED=${ABUSE_SEED:-$RANDOM}
for round in 1 2; do
	run_to 150 python3 "$INTEROP_DIR/pdu_abuse.py" 127.0.0.1 "$PORT" "$IQN" --seed $((SEED + round)) \
		--pdus "${ABUSE_PDUS:-2500}" || fail "pdu_abuse.py round $round (seed $((SEED + round))) failed"
	kill -0 "$TARGET_PID" 2>/dev/null || fail "target died during round $round (seed $((SEED + round)))"
done

out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$(lun_url "$HP" "$IQN" 0)" 2>&1) || fail "iscsi-inq after abuse: $out"
grep -q '^Peripheral Device Type:DIRECT_ACCESS' <<<"$out" || fail "INQUIRY after abuse: $out"
head -c 4M /dev/urandom >"$TEST_DIR/src.bin"
run_to "$CLIENT_TIMEOUT" qemu-img convert -n -f raw -O raw "$TEST_DIR/src.bin" "$(lun_url "$HP" "$IQN" 1)" ||
	fail "write after abuse"
run_to "$CLIENT_TIMEOUT" qemu-img convert -f raw -O raw "$(lun_url "$HP" "$IQN" 1)" "$TEST_DIR/back.bin" ||
	fail "read after abuse"
cmp -n 4194304 "$TEST_DIR/src.bin" "$TEST_DIR/back.bin" || fail "data differs after abuse"
say "ok: target still serves a good client after the abuse (seed $SEED)"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
