#!/usr/bin/env bash
# isthmus-initiator block devices: a loop device on each exposed LUN's FUSE file.
#  - the session shows block_device (direct I/O, the LUN's block size) and by_id, a link to it;
#  - mkfs.ext4, mount, files written and fsynced, read back after a remount;
#  - a 12 s target outage under a writer on the mounted file system: the writer finishes after
#    the target's return, the data is intact after a remount;
#  - blkdiscard reaches the target: the LUN file's allocated blocks drop, the range reads zeros;
#  - the removal latency expires with the file system mounted: its I/O fails (EIO), nothing
#    hangs, the device goes at the unmount;
#  - the daemon is killed: the unmounted LUN's device goes with it, the mounted one and the FUSE
#    mount are found and cleaned by the next start;
#  - a daemon stop detaches the devices (a mounted one at its unmount, said in the log);
#  - --no-block: no loop device, the by-id link names the file;
#  - a write-protected LUN (`ro`): read_only in session show, the FUSE file and the loop device
#    refuse writes (EROFS/EPERM/EACCES), reads return the LUN's data;
#  - a LUN grown at the target (resize-lun): CAPACITY DATA HAS CHANGED at the next command, then
#    the file, the loop device and session show have the new size within 10 s;
#  - ISTHMUS_TEST_LOOP_LEGACY=1: devices attached without LOOP_CONFIGURE have the same properties.
# Everything runs in a mount namespace of its own; loop devices are global, so the cleanup detaches
# any left on the test's files.
set -euo pipefail
if [[ -z "${ISTHMUS_BLOCK_NS:-}" ]]; then
	if [[ $(id -u) != 0 ]]; then
		echo "SKIP: loop devices and mounts need root"
		exit 77
	fi
	if [[ ! -e /dev/loop-control ]]; then
		echo "SKIP: no /dev/loop-control (no loop driver)"
		exit 77
	fi
	if ! command -v unshare >/dev/null; then
		echo "SKIP: no unshare (a private mount namespace keeps the host's mounts clean)"
		exit 77
	fi
	ISTHMUS_BLOCK_NS=1 exec unshare -m --propagation private "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3 mkfs.ext4 blkdiscard losetup mount umount du
source "$(dirname "$0")/daemon_helpers.bash"

MNT=$TEST_DIR/mnt
mkdir -p "$MNT"
block_cleanup() {
	local rc=$?
	set +e
	umount -l "$MNT" 2>/dev/null
	dmn_stop TERM >/dev/null 2>&1
	# a killed daemon's FUSE mount does not answer mountpoint(1), which dmn_stop asks
	umount -l "$DMN_DEV" 2>/dev/null
	# loop devices are not in the namespace: detach those on this test's files
	losetup -a -n -O NAME,BACK-FILE 2>/dev/null | awk -v d="$DMN_DEV/" 'index($2, d) == 1 {print $1}' |
		while read -r dev; do losetup -d "$dev"; done
	(exit "$rc")
	dmn_exit
}
trap block_cleanup EXIT

IQN=iqn.2026-11.org.isthmus:dmnblock
PORT=$(free_port)
HP=127.0.0.1:$PORT
LUNFILE=$TEST_DIR/lun0.img
ROFILE=$TEST_DIR/lun2.img
head -c $((1 << 20)) /dev/urandom >"$ROFILE"
truncate -s 8M "$ROFILE"
TARGS=(--listen "$HP" --target "$IQN" --lun "$LUNFILE,size=96M" --lun "$TEST_DIR/lun1.img,size=16M" --lun "$ROFILE,ro")
start_target "${TARGS[@]}"
printf 'initiator-name = iqn.2026-11.org.isthmus:test-initiator\nreconnect-interval = 1\nnop-interval = 1\nnop-timeout = 2\n' >"$DMN_CONF"
dmn_start
L0=$(map_lun 0)
L1=$(map_lun 1)
L2=$(map_lun 2)

# block_dev SID LUN: the LUN's block device, once the daemon has attached it (bounded).
block_dev() {
	local sid=$1 lun=$2 dev="" deadline=$((SECONDS + 15))
	while ((SECONDS < deadline)); do
		dev=$(sess_field "$sid" ".devices[] | select(.lun == $lun) | .block_device // empty" 2>/dev/null || true)
		[[ -n "$dev" ]] && { echo "$dev"; return 0; }
		sleep 0.2
	done
	say "session $sid LUN $lun: no block_device after 15 s: $(sess_json "$sid" | jq -c .devices)" >&2
	return 1
}
backing_of() { losetup -n -O BACK-FILE "$1" 2>/dev/null | sed 's/[[:space:]]*$//'; }
# allocated KiB of a file
alloc_kib() { du -k "$1" | cut -f1; }

# ---- attach
SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login"
BDEV=$(block_dev "$SID" "$L0") || fail "no block device for LUN $L0"
[[ -b "$BDEV" ]] || fail "$BDEV is not a block device"
[[ $(backing_of "$BDEV") == "$DMN_DEV/$SID/lun$L0" ]] || fail "$BDEV backs on '$(backing_of "$BDEV")'"
[[ $(blockdev --getsize64 "$BDEV") == $((96 << 20)) ]] || fail "$BDEV size $(blockdev --getsize64 "$BDEV")"
[[ $(blockdev --getss "$BDEV") == "$(sess_field "$SID" ".devices[] | select(.lun == $L0) | .block_size")" ]] ||
	fail "$BDEV logical block size $(blockdev --getss "$BDEV") is not the LUN's"
[[ $(losetup -n -O DIO "$BDEV" | tr -d ' ') == 1 ]] || fail "$BDEV without direct I/O"
BYID=$(sess_field "$SID" ".devices[] | select(.lun == $L0) | .by_id")
[[ "$BYID" == "$DMN_DEV"/by-id/* && -L "$BYID" && $(readlink "$BYID") == "$BDEV" ]] ||
	fail "by_id '$BYID' is not a link to $BDEV ($(ls -l "$DMN_DEV/by-id" 2>&1))"
ism session show "$SID" | grep -q "block_device: $BDEV" || fail "the table of session show has no block_device"
BDEV1=$(block_dev "$SID" "$L1") || fail "no block device for LUN $L1"
say "ok: LUN $L0 is $BDEV (direct I/O, the LUN's block size, by-id $(basename "$BYID")), LUN $L1 is $BDEV1"

# read_only_checks SID: LUN L2 (`ro` at the target) is read-only everywhere, and readable.
read_only_checks() {
	local sid=$1 dev file rc
	dev=$(block_dev "$sid" "$L2") || fail "no block device for the read-only LUN $L2"
	file=$DMN_DEV/$sid/lun$L2
	[[ $(sess_field "$sid" ".devices[] | select(.lun == $L2) | .read_only") == true ]] ||
		fail "session show: LUN $L2 is not read_only: $(sess_json "$sid" | jq -c ".devices[] | select(.lun == $L2)")"
	[[ $(sess_field "$sid" ".devices[] | select(.lun == $L0) | .read_only") == false ]] || fail "LUN $L0 shown read_only"
	ism session show "$sid" | grep -q "read_only: yes" || fail "the table of session show has no read_only: yes"
	[[ $(blockdev --getro "$dev") == 1 ]] || fail "$dev is not a read-only block device"
	[[ $(losetup -n -O RO "$dev" | tr -d ' ') == 1 ]] || fail "losetup does not list $dev as read-only"
	rc=0
	timeout 30 dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct conv=notrunc 2>"$TEST_DIR/ro.err" || rc=$?
	((rc != 0 && rc != 124)) || fail "a write to the read-only $dev: status $rc"
	grep -qE "Read-only file system|Operation not permitted|Permission denied" "$TEST_DIR/ro.err" ||
		fail "the write to $dev failed, but not as read-only: $(cat "$TEST_DIR/ro.err")"
	rc=0
	timeout 30 dd if=/dev/zero of="$file" bs=4k count=1 conv=notrunc 2>"$TEST_DIR/rof.err" || rc=$?
	((rc != 0 && rc != 124)) || fail "a write to the read-only $file: status $rc"
	grep -q "Read-only file system" "$TEST_DIR/rof.err" || fail "the write to $file: not EROFS: $(cat "$TEST_DIR/rof.err")"
	cmp -n $((1 << 20)) "$ROFILE" "$dev" || fail "reading the read-only $dev does not give the LUN's data"
	cmp -n $((1 << 20)) "$ROFILE" "$file" || fail "reading the read-only $file does not give the LUN's data"
	say "ok: LUN $L2 (ro at the target) is read_only in session show; $dev and its file refuse writes ($(grep -m1 -oE "Read-only file system|Operation not permitted|Permission denied" "$TEST_DIR/ro.err")), reads give the LUN's data"
}
read_only_checks "$SID"

# resize_checks SID DEV: LUN L1 grown by 8 MiB at the target reaches the file, DEV and session show.
resize_checks() {
	local sid=$1 dev=$2 old new want deadline
	old=$(blockdev --getsize64 "$dev")
	want=$((old + (8 << 20)))
	"$ISTHMUS_BIN/isthmus" target --socket "$TEST_DIR/mgmt-$$.sock" resize-lun "$IQN" "$L1" "$want" >/dev/null ||
		fail "resize-lun at the target"
	# the target says CAPACITY DATA HAS CHANGED with the next command to the LUN
	timeout 30 dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || fail "a read of $dev after the resize"
	deadline=$((SECONDS + 10))
	while new=$(blockdev --getsize64 "$dev") && ((new != want && SECONDS < deadline)); do sleep 0.2; done
	((new == want)) || fail "$dev is $new bytes 10 s after the LUN grew to $want (log: $(grep -E "LUN $L1: .*(capacity|size)" "$DMN_LOG" | tail -n 2))"
	[[ $(stat -c %s "$DMN_DEV/$sid/lun$L1") == "$want" ]] || fail "the FUSE file is $(stat -c %s "$DMN_DEV/$sid/lun$L1") bytes, not $want"
	[[ $(sess_field "$sid" ".devices[] | select(.lun == $L1) | .capacity_bytes") == "$want" ]] || fail "session show: capacity_bytes not $want"
	timeout 30 dd if=/dev/urandom of="$TEST_DIR/tail.bin" bs=4k count=16 2>/dev/null
	timeout 30 dd if="$TEST_DIR/tail.bin" of="$dev" bs=4k seek=$(((want >> 12) - 16)) oflag=direct conv=notrunc 2>/dev/null ||
		fail "a write to the grown end of $dev"
	cmp -n $((64 << 10)) "$TEST_DIR/tail.bin" <(tail -c $((64 << 10)) "$TEST_DIR/lun1.img") ||
		fail "the grown end of $dev did not reach the LUN's file"
	say "ok: LUN $L1 grown at the target from $old to $want bytes: $dev, its file and session show follow; its new end is written through"
}
if [[ "${TARGET_IMPL:-isthmus}" == isthmus ]]; then
	resize_checks "$SID" "$BDEV1"
else
	note "resize-lun is isthmus-target's management; not checked against $TARGET_IMPL"
fi

# ---- file system
run_to 60 mkfs.ext4 -q -F "$BDEV" || fail "mkfs.ext4 on $BDEV"
mount "$BDEV" "$MNT" || fail "mount $BDEV"
head -c $((6 << 20)) /dev/urandom >"$TEST_DIR/a.bin"
cp "$TEST_DIR/a.bin" "$MNT/a.bin"
mkdir "$MNT/dir" && for i in $(seq 1 50); do echo "file $i" >"$MNT/dir/f$i"; done
run_to 30 sync -f "$MNT/a.bin" || fail "fsync on the mounted file system"
umount "$MNT"
mount "$BDEV" "$MNT" || fail "remount $BDEV"
cmp -s "$TEST_DIR/a.bin" "$MNT/a.bin" || fail "a.bin differs after a remount"
[[ $(cat "$MNT/dir/f37") == "file 37" ]] || fail "dir/f37 differs after a remount"
say "ok: mkfs.ext4, mount, 6 MiB and 50 files written, fsynced, identical after a remount"

# ---- 12 s outage under a writer on the mounted file system
fs_writer() {
	python3 - "$@" <<'PY'
import hashlib, os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
h = hashlib.sha256()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(n):
    chunk = (b"chunk %06d " % i).ljust(128, b"#") * 512
    os.write(fd, chunk)
    h.update(chunk)
    if i % 8 == 7:
        os.fsync(fd)
    time.sleep(0.03)
os.fsync(fd)
os.close(fd)
open(path + ".sha", "w").write(h.hexdigest())
PY
}
bg_start fs_writer "$MNT/w.bin" 500
WPID=$BG_LAST
sleep 2
alive "$WPID" || fail "the writer finished before the outage"
stop_target
say "target stopped under the writer"
sleep 12
alive "$WPID" || fail "the writer did not wait for the target (ended during the outage)"
start_target "${TARGS[@]}"
wait_state "$SID" connected 10 || fail "session not back 10 s after the target's return"
timeout 60 tail --pid="$WPID" -f /dev/null || fail "the writer hangs after the target's return"
rc=0
wait "$WPID" || rc=$?
((rc == 0)) || fail "the writer failed ($rc) across the outage"
umount "$MNT"
mount "$BDEV" "$MNT" || fail "remount after the outage"
[[ $(sha256sum <"$MNT/w.bin" | cut -d' ' -f1) == "$(cat "$MNT/w.bin.sha")" ]] || fail "w.bin differs after the outage"
cmp -s "$TEST_DIR/a.bin" "$MNT/a.bin" || fail "a.bin differs after the outage"
umount "$MNT"
say "ok: a 12 s outage under a writer on ext4: it finished after the target's return, data intact after a remount"

# ---- discard reaches the target
before=$(alloc_kib "$LUNFILE")
((before > 4096)) || fail "the LUN file has only $before KiB allocated before the discard"
rc=0
run_to 60 blkdiscard -f "$BDEV" 2>"$TEST_DIR/discard.err" || rc=$?
if ((rc != 0)) && [[ "${TARGET_IMPL:-isthmus}" != isthmus ]] && grep -q "not supported" "$TEST_DIR/discard.err"; then
	# tgtd's LUNs are not thin-provisioned: WRITE SAME with UNMAP is refused, the discard with it
	note "$(tail -n 1 "$TEST_DIR/discard.err") (a $TARGET_IMPL LUN without thin provisioning)"
else
	((rc == 0)) || fail "blkdiscard $BDEV: $(tail -n 1 "$TEST_DIR/discard.err")"
	after=$(alloc_kib "$LUNFILE")
	((after < before / 4)) || fail "blkdiscard: the LUN file still has $after KiB allocated (before: $before)"
	cmp -n $((4 << 20)) "$BDEV" /dev/zero || fail "the discarded range does not read as zeros"
	say "ok: blkdiscard became deallocation at the target ($before KiB -> $after KiB allocated), reads zeros"
fi

# ---- removal latency expires with the file system mounted
ism logout "$SID" >/dev/null || fail "logout"
deadline=$((SECONDS + 10))
while losetup "$BDEV" >/dev/null 2>&1 && [[ $(backing_of "$BDEV") == "$DMN_DEV/$SID/"* ]] && ((SECONDS < deadline)); do sleep 0.2; done
[[ $(backing_of "$BDEV") != "$DMN_DEV/$SID/"* ]] || fail "$BDEV still attached 10 s after the logout"
SID=$(ism login "$IQN" --portal "$HP" --removal-latency 3 | tail -n1) || fail "login with --removal-latency"
BDEV=$(block_dev "$SID" "$L0") || fail "no block device for LUN $L0"
run_to 60 mkfs.ext4 -q -F "$BDEV" || fail "mkfs.ext4 on $BDEV"
mount "$BDEV" "$MNT" || fail "mount $BDEV"
echo before >"$MNT/x"
sync -f "$MNT/x"
stop_target KILL
t0=$SECONDS
rc=0
timeout 30 dd if=/dev/urandom of="$MNT/y" bs=64k count=16 conv=fsync 2>"$TEST_DIR/dd.err" || rc=$?
((rc != 124)) || fail "a write on the mounted file system hangs past the removal latency"
((rc != 0)) || fail "a write with the target gone for good succeeded: $(cat "$TEST_DIR/dd.err")"
grep -q "Input/output error" "$TEST_DIR/dd.err" || fail "the write failed, but not with EIO: $(cat "$TEST_DIR/dd.err")"
rc=0
timeout 30 dd if="$BDEV" of=/dev/null bs=4k count=1 skip=100 iflag=direct 2>"$TEST_DIR/dd2.err" || rc=$?
((rc != 124 && rc != 0)) || fail "a direct read of $BDEV after the removal: status $rc"
wait_log_dmn() { local re=$1 deadline=$((SECONDS + 10)); until grep -qE "$re" "$DMN_LOG"; do ((SECONDS < deadline)) || return 1; sleep 0.2; done; }
wait_log_dmn "session $SID LUN $L0: $BDEV is still in use" || fail "the log does not say $BDEV is detached at its unmount"
umount "$MNT"
deadline=$((SECONDS + 10))
while [[ $(backing_of "$BDEV") == "$DMN_DEV/$SID/"* ]] && ((SECONDS < deadline)); do sleep 0.2; done
[[ $(backing_of "$BDEV") != "$DMN_DEV/$SID/"* ]] || fail "$BDEV still attached after the unmount"
say "ok: removal after 3 s: EIO on the mounted file system after $((SECONDS - t0)) s, nothing hung, $BDEV gone at the unmount"

# ---- the daemon is killed with a file system mounted
start_target "${TARGS[@]}"
wait_state "$SID" connected 10 || true
ism logout "$SID" >/dev/null 2>&1 || true
SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login"
BDEV=$(block_dev "$SID" "$L0") || fail "no block device for LUN $L0"
BDEV1=$(block_dev "$SID" "$L1") || fail "no block device for LUN $L1"
run_to 60 mkfs.ext4 -q -F "$BDEV" || fail "mkfs.ext4 on $BDEV"
mount "$BDEV" "$MNT" || fail "mount $BDEV"
# not dmn_stop: it would unmount what the daemon leaves
kill -KILL "$DMN_PID"
wait "$DMN_PID" 2>/dev/null || true
DMN_PID=""
sleep 0.5
[[ $(backing_of "$BDEV1") != "$DMN_DEV/$SID/"* ]] || fail "$BDEV1 (not in use) outlived the killed daemon"
[[ $(backing_of "$BDEV") == "$DMN_DEV/$SID/"* ]] || fail "$BDEV (mounted) went with the daemon?"
awk -v d="$DMN_DEV" '$5 == d' /proc/self/mountinfo | grep -q fuse || fail "expected the killed daemon's FUSE mount to be left behind"
dmn_start
grep -qE "stale $BDEV on $DMN_DEV/$SID/lun$L0 .*in use" "$DMN_LOG" || fail "the restart did not find the stale $BDEV"
grep -q "stale FUSE mount on $DMN_DEV" "$DMN_LOG" || fail "the restart did not clean the stale FUSE mount"
[[ -d "$DMN_DEV/by-id" ]] || fail "the new FUSE mount does not answer"
rc=0
timeout 30 dd if=/dev/zero of="$MNT/z" bs=4k count=4 conv=fsync 2>/dev/null || rc=$?
((rc != 124 && rc != 0)) || fail "I/O on the stale device: status $rc (want a failure, not a hang)"
umount "$MNT"
sleep 0.5
[[ $(backing_of "$BDEV") != "$DMN_DEV/$SID/"* ]] || fail "the stale $BDEV outlived its unmount"
say "ok: daemon killed: the unused device went with it; the restart cleaned the FUSE mount and the mounted device (gone at its unmount)"

# ---- orderly stop detaches
SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login after the restart"
BDEV=$(block_dev "$SID" "$L0") || fail "no block device for LUN $L0"
BDEV1=$(block_dev "$SID" "$L1") || fail "no block device for LUN $L1"
mount "$BDEV" "$MNT" || fail "mount $BDEV after the restart (the file system written before the kill)"
mark=$(wc -l <"$DMN_LOG")
pid=$DMN_PID
kill -TERM "$pid"
rc=0
timeout 30 tail --pid="$pid" -f /dev/null || fail "the daemon does not stop within 30 s of SIGTERM"
wait "$pid" || rc=$?
DMN_PID=""
((rc == 0)) || fail "the daemon exited with status $rc on SIGTERM"
tail -n +$((mark + 1)) "$DMN_LOG" >"$TEST_DIR/stop.log"
grep -q "LUN $L1: $BDEV1 detached" "$TEST_DIR/stop.log" || fail "the stop did not detach $BDEV1"
grep -q "LUN $L0: $BDEV is still in use" "$TEST_DIR/stop.log" || fail "the stop did not say $BDEV goes at its unmount"
umount "$MNT"
sleep 0.5
[[ -z $(losetup -a -n -O NAME,BACK-FILE | awk -v d="$DMN_DEV/" 'index($2, d) == 1') ]] ||
	fail "loop devices left after the stop: $(losetup -a)"
say "ok: the daemon stop detached every device (the mounted one at its unmount)"

# ---- --no-block
dmn_start --no-block
SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login with --no-block"
sleep 1
[[ $(sess_field "$SID" ".devices[] | select(.lun == $L0) | .block_device") == null ]] || fail "--no-block: a block device"
BYID=$(sess_field "$SID" ".devices[] | select(.lun == $L0) | .by_id")
[[ $(readlink "$BYID") == "../$SID/lun$L0" ]] || fail "--no-block: by_id $BYID -> $(readlink "$BYID"), not the file"
[[ $(readlink -f "$BYID") == "$DMN_DEV/$SID/lun$L0" ]] || fail "--no-block: by_id does not resolve to the file"
[[ -z $(losetup -a -n -O NAME,BACK-FILE | awk -v d="$DMN_DEV/" 'index($2, d) == 1') ]] || fail "--no-block: loop devices $(losetup -a)"
say "ok: --no-block: no loop device; by-id links to the LUN's file"

dmn_stop

# ---- attaching without LOOP_CONFIGURE (kernels before 5.8), forced
ISTHMUS_TEST_LOOP_LEGACY=1 dmn_start
grep -q "ISTHMUS_TEST_LOOP_LEGACY=1" "$DMN_LOG" || fail "the daemon did not take ISTHMUS_TEST_LOOP_LEGACY=1"
SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login (legacy attach)"
BDEV=$(block_dev "$SID" "$L0") || fail "no block device for LUN $L0 (legacy attach)"
BDEV1=$(block_dev "$SID" "$L1") || fail "no block device for LUN $L1 (legacy attach)"
grep -q "LUN $L0: block device $BDEV .*attached with LOOP_SET_FD" "$DMN_LOG" || fail "$BDEV was not attached with LOOP_SET_FD"
[[ $(backing_of "$BDEV") == "$DMN_DEV/$SID/lun$L0" ]] || fail "$BDEV backs on '$(backing_of "$BDEV")'"
[[ $(losetup -n -O DIO "$BDEV" | tr -d ' ') == 1 ]] || fail "legacy: $BDEV without direct I/O"
[[ $(losetup -n -O AUTOCLEAR "$BDEV" | tr -d ' ') == 1 ]] || fail "legacy: $BDEV without autoclear"
[[ $(blockdev --getss "$BDEV") == "$(sess_field "$SID" ".devices[] | select(.lun == $L0) | .block_size")" ]] ||
	fail "legacy: $BDEV logical block size $(blockdev --getss "$BDEV") is not the LUN's"
run_to 60 mkfs.ext4 -q -F "$BDEV" || fail "legacy: mkfs.ext4 on $BDEV"
mount "$BDEV" "$MNT" || fail "legacy: mount $BDEV"
cp "$TEST_DIR/a.bin" "$MNT/a.bin" && run_to 30 sync -f "$MNT/a.bin" || fail "legacy: write and fsync"
umount "$MNT"
mount "$BDEV" "$MNT" && cmp -s "$TEST_DIR/a.bin" "$MNT/a.bin" || fail "legacy: a.bin differs after a remount"
umount "$MNT"
read_only_checks "$SID"
if [[ "${TARGET_IMPL:-isthmus}" == isthmus ]]; then
	resize_checks "$SID" "$BDEV1"
	# grown while the target was down: the restarted target reports a reset (29h), not the resize
	stop_target
	old=$(blockdev --getsize64 "$BDEV1")
	want=$((old + (4 << 20)))
	truncate -s "$want" "$TEST_DIR/lun1.img"
	start_target "${TARGS[@]}"
	wait_state "$SID" connected 15 || fail "session not back 15 s after the target's restart"
	timeout 30 dd if="$BDEV1" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || fail "a read of $BDEV1 after the restart"
	deadline=$((SECONDS + 10))
	while new=$(blockdev --getsize64 "$BDEV1") && ((new != want && SECONDS < deadline)); do sleep 0.2; done
	((new == want)) || fail "$BDEV1 is $new bytes 10 s after the target came back with the LUN at $want"
	say "ok: LUN $L1 grown from $old to $want bytes while the target was down: $BDEV1 follows after the reconnect"
fi
dmn_stop
[[ -z $(losetup -a -n -O NAME,BACK-FILE | awk -v d="$DMN_DEV/" 'index($2, d) == 1') ]] ||
	fail "legacy: loop devices left after the stop: $(losetup -a)"
say "ok: ISTHMUS_TEST_LOOP_LEGACY=1: attached with LOOP_SET_FD and steps: direct I/O, autoclear, the block size, read-only, resize, detached at the stop"
