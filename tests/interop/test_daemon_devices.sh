#!/usr/bin/env bash
# isthmus-initiator local devices of a data session: the FUSE file (read, write, fsync as
# SYNCHRONIZE CACHE, mkfs.ext4 and fsck on it) and the NBD export on a Unix socket driven by
# qemu-img (nbd+unix://); informational sessions get no devices.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$(dirname "$0")/daemon_helpers.bash"

IQN=iqn.2026-11.org.isthmus:dmndevices
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=64M"
dmn_start
L0=$(map_lun 0)

INFO=$(ism login "$IQN" --portal "$HP" --type informational | tail -n1) || fail "informational login"
[[ ! -e "$DMN_DEV/$INFO" ]] || fail "informational session has a device directory"
ism logout "$INFO" >/dev/null

SID=$(ism login "$IQN" --portal "$HP" --type data | tail -n1) || fail "data login"
DEV=$DMN_DEV/$SID/lun$L0
NBD=$(sess_field "$SID" ".devices[] | select(.lun == $L0) | .nbd_socket")
[[ $(sess_field "$SID" ".devices[] | select(.lun == $L0) | .local_path") == "$DEV" ]] || fail "local_path"
[[ -f "$DEV" && -S "$NBD" ]] || fail "devices missing: $DEV $NBD"
[[ $(stat -c %a "$NBD") == 600 ]] || fail "NBD socket mode $(stat -c %a "$NBD")"

# ---- FUSE: unaligned and aligned writes, read back, fsync
head -c 3000000 /dev/urandom >"$TEST_DIR/a.bin"
dd if="$TEST_DIR/a.bin" of="$DEV" bs=1000 seek=7 conv=notrunc,fsync status=none || fail "unaligned write"
cmp <(dd if="$DEV" bs=1000 skip=7 count=3000 status=none) "$TEST_DIR/a.bin" || fail "unaligned read back differs"
cmp <(dd if="$TEST_DIR/lun0.img" bs=1000 skip=7 count=3000 status=none) "$TEST_DIR/a.bin" || fail "target file differs"
say "ok: FUSE unaligned write, read back, fsync"

# ---- mkfs.ext4 and fsck on the FUSE file
if command -v mkfs.ext4 >/dev/null; then
	run_to 120 mkfs.ext4 -q -F "$DEV" || fail "mkfs.ext4 on $DEV"
	run_to 120 e2fsck -f -n "$DEV" >"$TEST_DIR/fsck.out" 2>&1 || fail "e2fsck: $(cat "$TEST_DIR/fsck.out")"
	say "ok: mkfs.ext4 + e2fsck on the FUSE device"
fi

# ---- NBD with qemu-img
if command -v qemu-img >/dev/null; then
	URL="nbd+unix:///?socket=$NBD"
	run_to 60 qemu-img info -f raw "$URL" >"$TEST_DIR/info.out" 2>&1 || fail "qemu-img info: $(cat "$TEST_DIR/info.out")"
	grep -q "67108864" "$TEST_DIR/info.out" || fail "qemu-img sees another size: $(cat "$TEST_DIR/info.out")"
	head -c 8M /dev/urandom >"$TEST_DIR/n.bin"
	truncate -s 64M "$TEST_DIR/n.bin"
	run_to 120 qemu-img convert -n -f raw -O raw "$TEST_DIR/n.bin" "$URL" 2>"$TEST_DIR/conv.err" || fail "qemu-img convert to NBD: $(cat "$TEST_DIR/conv.err")"
	run_to 120 qemu-img convert -f raw -O raw "$URL" "$TEST_DIR/back.bin" 2>"$TEST_DIR/conv2.err" || fail "qemu-img convert from NBD: $(cat "$TEST_DIR/conv2.err")"
	cmp "$TEST_DIR/n.bin" "$TEST_DIR/back.bin" || fail "NBD round trip differs"
	cmp <(head -c 8M "$TEST_DIR/lun0.img") <(head -c 8M "$TEST_DIR/n.bin") || fail "target file differs after NBD writes"
	run_to 60 qemu-img compare -f raw -F raw "$URL" "$DEV" >/dev/null || fail "NBD and FUSE views differ"
	say "ok: qemu-img over NBD (info, write, read, compare with the FUSE file)"
else
	note "qemu-img not installed: NBD part skipped"
fi

ism logout "$SID" >/dev/null
[[ ! -e "$DMN_DEV/$SID" && ! -e "$NBD" ]] || fail "devices left after logout"
say "PASS"
