#!/usr/bin/env bash
# A LUN on a block device (a loop device over a file the test makes): READ CAPACITY gives the
# device's size, 16 MiB written through the target land on the device (read back from its
# backing file), SYNCHRONIZE CACHE works, and a read-only block LUN refuses writes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need losetup qemu-img iscsi-readcapacity16
[[ "$TARGET_IMPL" == isthmus ]] || skip "block device LUNs of isthmus-target"
[[ $(id -u) == 0 ]] || skip "needs root for a loop device"

truncate -s 64M "$TEST_DIR/backing.img"
LOOP=$(losetup -f --show "$TEST_DIR/backing.img" 2>/dev/null) || skip "no loop device available"
cleanup_loop() { losetup -d "$LOOP" 2>/dev/null || true; }
trap 'cleanup_loop; lib_cleanup' EXIT
truncate -s 16M "$TEST_DIR/ro-backing.img"
LOOP_RO=$(losetup -f --show "$TEST_DIR/ro-backing.img" 2>/dev/null) || skip "no second loop device"
trap 'losetup -d "$LOOP_RO" 2>/dev/null; cleanup_loop; lib_cleanup' EXIT

IQN=iqn.2026-11.org.isthmus:blockdev
PORT=$(free_port)
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$LOOP" --lun "$LOOP_RO,ro"
out=$(run_to 30 iscsi-readcapacity16 "$(lun_url "127.0.0.1:$PORT" "$IQN" 0)") || fail "readcapacity: $out"
grep -q "Total size:67108864" <<<"$out" || fail "block LUN size: $out"
head -c 16M /dev/urandom >"$TEST_DIR/src.bin"
run_to 60 qemu-img convert -n -f raw -O raw "$TEST_DIR/src.bin" "$(lun_url "127.0.0.1:$PORT" "$IQN" 0)" ||
	fail "write to the block LUN"
sync
cmp -n $((16 << 20)) "$TEST_DIR/src.bin" "$LOOP" || fail "the device does not hold what was written"
say "ok: 16 MiB written through the target are on the block device"
out=$(python3 "$INTEROP_DIR/scsi_cmd.py" 127.0.0.1 "$PORT" "$IQN" 0 35000000000000000000) || fail "SYNC CACHE: $out"
grep -q 'status=0x00' <<<"$out" || fail "SYNCHRONIZE CACHE on the block LUN: $out"
out=$(python3 "$INTEROP_DIR/scsi_cmd.py" 127.0.0.1 "$PORT" "$IQN" 1 2a000000000000000100 --out "$(printf '%01024d' 0)") ||
	fail "write to the read-only LUN: $out"
grep -q 'status=0x02' <<<"$out" && grep -q 'sense=70000700' <<<"$out" ||
	fail "a write to the read-only block LUN was not refused with DATA PROTECT: $out"
say "ok: read-only block LUN refuses writes with DATA PROTECT"
stop_target
say "PASS"
