#!/usr/bin/env bash
# Long medium operations do not hold the target: LUN 0 is a 16 GiB sparse file (4096-byte
# blocks), LUN 1 a small memory LUN. One session runs WRITE SAME of 1 GiB of a pattern,
# EXTENDED COPY of that gigabyte (32 segments of 32 MiB), VERIFY of all of LUN 0 and SANITIZE,
# while a second session reads LUN 1 every 10 ms: no READ may wait 1.5 s (nor half the long
# command's time, when that is over a second). Each result is checked (pattern written and copied, zeros after SANITIZE),
# and the advertised limits are enforced on the wire: MAXIMUM WRITE SAME LENGTH (also for
# NUMBER OF LOGICAL BLOCKS 0), MAXIMUM SEGMENT LENGTH and MAXIMUM INLINE DATA LENGTH.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "limits and timings of isthmus-target"

IQN=iqn.2026-11.org.isthmus:limits
PORT=$(free_port)
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$TEST_DIR/big.img,size=16G,bs=4096" \
	--lun "memory,size=16M"
rc=0
run_to 240 python3 "$INTEROP_DIR/scsi_limits.py" 127.0.0.1 "$PORT" "$IQN" >"$TEST_DIR/limits.out" 2>&1 || rc=$?
sed 's/^/    /' "$TEST_DIR/limits.out"
[[ $rc == 0 ]] || fail "$(grep -c FAIL "$TEST_DIR/limits.out" || true) checks failed (exit $rc)"
stop_target
say "used $(du -h "$TEST_DIR/big.img" | cut -f1) of disk for the 16 GiB LU at the end"
say "PASS"
