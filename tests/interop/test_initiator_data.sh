#!/usr/bin/env bash
# Data through isthmus and through another initiator agree, both ways, on a 64 MiB LUN:
#   64 MiB of random data written with `isthmus write` reads back identical with
#   `qemu-img convert` from iscsi:// (libiscsi), and data written by qemu-img reads back identical
#   with `isthmus read`. Then the same with CRC32C header and data digests, and small transfers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need qemu-img python3 head cmp

use_cli
qemu-img --help 2>/dev/null | grep -qw iscsi || skip "qemu-img has no iscsi driver (qemu-block-extra)"

IQN=iqn.2026-11.org.isthmus:inidata
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=64M"
URL=$(lun_url "$HP" "$IQN" 0)
ini() { run_to "$CLIENT_TIMEOUT" "$INI" "$@"; }
MiB=$((1024 * 1024))

ini readcapacity "$URL" --json >"$TEST_DIR/rc.json" || fail "readcapacity: $(cat "$TEST_DIR/rc.json")"
BS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["block_size"])' "$TEST_DIR/rc.json")
BYTES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$TEST_DIR/rc.json")
((BYTES == 64 * MiB)) || fail "LUN is $BYTES bytes, want 64 MiB"
BLOCKS=$((BYTES / BS))

# 1. isthmus writes, libiscsi (qemu-img) reads
head -c $((64 * MiB)) /dev/urandom >"$TEST_DIR/a.bin"
out=$(ini write "$URL" --lba 0 --in "$TEST_DIR/a.bin") || fail "isthmus write: $out"
say "ok: $out"
run_to "$CLIENT_TIMEOUT" qemu-img convert -f raw -O raw "$URL" "$TEST_DIR/a.back" ||
	fail "qemu-img convert from $URL failed"
cmp "$TEST_DIR/a.bin" "$TEST_DIR/a.back" || fail "data written by isthmus reads back different through qemu-img"
say "ok: 64 MiB written by isthmus read back identical by qemu-img"

# 2. libiscsi (qemu-img) writes, isthmus reads
head -c $((64 * MiB)) /dev/urandom >"$TEST_DIR/b.bin"
run_to "$CLIENT_TIMEOUT" qemu-img convert -n -f raw -O raw "$TEST_DIR/b.bin" "$URL" ||
	fail "qemu-img convert to $URL failed"
out=$(ini read "$URL" --lba 0 --blocks "$BLOCKS" --out "$TEST_DIR/b.back") || fail "isthmus read: $out"
cmp "$TEST_DIR/b.bin" "$TEST_DIR/b.back" || fail "data written by qemu-img reads back different through isthmus"
say "ok: 64 MiB written by qemu-img read back identical by isthmus ($out)"

# 3. with CRC32C digests (both required), write and read back a 16 MiB region at an offset
head -c $((16 * MiB)) /dev/urandom >"$TEST_DIR/c.bin"
LBA=$((8 * MiB / BS))
out=$(ini write "$URL" --lba "$LBA" --in "$TEST_DIR/c.bin" --header-digest crc32c --data-digest crc32c) ||
	fail "isthmus write with digests: $out"
out=$(ini read "$URL" --lba "$LBA" --blocks $((16 * MiB / BS)) --out "$TEST_DIR/c.back" \
	--header-digest crc32c --data-digest crc32c) || fail "isthmus read with digests: $out"
cmp "$TEST_DIR/c.bin" "$TEST_DIR/c.back" || fail "digest read-back differs"
run_to "$CLIENT_TIMEOUT" qemu-img convert -f raw -O raw "$URL" "$TEST_DIR/all.back" || fail "qemu-img read-back failed"
cmp <(head -c $((8 * MiB)) "$TEST_DIR/b.bin") <(head -c $((8 * MiB)) "$TEST_DIR/all.back") || fail "data before the region changed"
cmp "$TEST_DIR/c.bin" <(tail -c +$((8 * MiB + 1)) "$TEST_DIR/all.back" | head -c $((16 * MiB))) ||
	fail "digest-written region differs through qemu-img"
cmp <(tail -c $((40 * MiB)) "$TEST_DIR/b.bin") <(tail -c $((40 * MiB)) "$TEST_DIR/all.back") || fail "data after the region changed"
say "ok: 16 MiB at LBA $LBA with CRC32C header and data digests, neighbours untouched"

# 4. small and odd transfers: one block, the last block, sizes around the burst lengths
for spec in "0 1" "$((BLOCKS - 1)) 1" "3 $((65536 / BS + 1))" "100 $((262144 / BS + 3))"; do
	read -r lba n <<<"$spec"
	head -c $((n * BS)) /dev/urandom >"$TEST_DIR/s.bin"
	ini write "$URL" --lba "$lba" --in "$TEST_DIR/s.bin" >/dev/null || fail "write of $n blocks at $lba failed"
	ini read "$URL" --lba "$lba" --blocks "$n" --out "$TEST_DIR/s.back" >/dev/null || fail "read of $n blocks at $lba failed"
	cmp "$TEST_DIR/s.bin" "$TEST_DIR/s.back" || fail "$n blocks at LBA $lba read back different"
done
say "ok: single-block, last-block and burst-boundary transfers read back identical"

rc=0
out=$(ini read "$URL" --lba "$BLOCKS" --blocks 1 --out /dev/null 2>&1) || rc=$?
((rc != 0)) || fail "a read past the end exited 0"
say "ok: read past the end refused: $out"

stop_target
say "PASS"
