#!/usr/bin/env bash
# The null LUN kind (`null,size=1T`): a medium that keeps nothing, for measuring the protocol
# path alone. Through real initiators (libiscsi tools, qemu-img):
#   1. a configuration file's `lun 0 = null,size=1T` reports 1 TiB in READ CAPACITY (16) and is
#      thin (LBPME, LBPRZ); `isthmus target add-lun IQN null,size=64M` adds another one at run time
#      and `target list` calls it kind null
#   2. 4 MiB of random data written at the start and at the last 4 MiB are accepted; reading the
#      same ranges back gives zeros
#   3. libiscsi's iscsi-test-cu SBC read and write families (Read*, Write*, WriteVerify*,
#      WriteSame*, Verify*, Unmap, GetLBAStatus, Prefetch*, CompareAndWrite, OrWrite) pass on it,
#      except six tests that read back what they wrote (listed below with the reason)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need qemu-img iscsi-readcapacity16 iscsi-test-cu jq
[[ "$TARGET_IMPL" == isthmus ]] || skip "the null LUN kind is isthmus-target's"

IQN=iqn.2026-11.org.isthmus:null
PORT=$(free_port)
HP=127.0.0.1:$PORT
SOCK=$TEST_DIR/mgmt.sock
CLI=$ISTHMUS_BIN/isthmus
one_target_conf "$TEST_DIR/t.conf" "$IQN" "lun 0 = null,size=1T"
start_target --config "$TEST_DIR/t.conf"
URL=$(lun_url "$HP" "$IQN" 0)
T() { "$CLI" target --socket "$SOCK" "$@"; }

# ---- 1. size, thin provisioning, add-lun ----------------------------------------------------
say "checking: READ CAPACITY (16) of null,size=1T reports 2^31 blocks of 512 bytes, thin"
out=$(run_to "$CLIENT_TIMEOUT" iscsi-readcapacity16 "$URL" 2>&1) || fail "iscsi-readcapacity16: $out"
grep -q "Total size:1099511627776" <<<"$out" || fail "null LUN size: $out"
grep -q "LBPME:1 LBPRZ:1" <<<"$out" || fail "null LUN not thin: $out"
say "ok: 1 TiB, LBPME and LBPRZ set"

say "checking: isthmus target add-lun IQN null,size=64M adds a null LUN at run time"
out=$(T add-lun "$IQN" null,size=64M 2>&1) || fail "add-lun null: $out"
kind=$(T --json list | jq -r --arg t "$IQN" '.[] | select(.name==$t) | .luns[] | select(.lun==1) | .kind')
[[ "$kind" == null ]] || fail "target list shows LUN 1 as kind '$kind', not null: $(T --json list)"
out=$(run_to "$CLIENT_TIMEOUT" iscsi-readcapacity16 "$(lun_url "$HP" "$IQN" 1)" 2>&1) || fail "readcapacity LUN 1: $out"
grep -q "Total size:67108864" <<<"$out" || fail "added null LUN size: $out"
say "ok: LUN 1 is a 64 MiB null LUN"

# ---- 2. writes are dropped, reads return zeros -----------------------------------------------
say "checking: a written pattern reads back as zeros (first and last 4 MiB of the 1 TiB LUN)"
head -c 4M /dev/urandom >"$TEST_DIR/pattern.bin"
head -c 4M /dev/zero >"$TEST_DIR/zeros.bin"
last=$(((1 << 40) - (4 << 20)))
for off in 0 "$last"; do
	run_to "$CLIENT_TIMEOUT" qemu-img convert -n -f raw --target-image-opts "$TEST_DIR/pattern.bin" \
		"driver=raw,offset=$off,size=4194304,file.driver=iscsi,file.transport=tcp,file.portal=$HP,file.target=$IQN,file.lun=0" \
		>"$TEST_DIR/write.log" 2>&1 || fail "writing the pattern at $off: $(cat "$TEST_DIR/write.log")"
	run_to "$CLIENT_TIMEOUT" qemu-img convert -O raw --image-opts \
		"driver=raw,offset=$off,size=4194304,file.driver=iscsi,file.transport=tcp,file.portal=$HP,file.target=$IQN,file.lun=0" \
		"$TEST_DIR/back.bin" >"$TEST_DIR/read.log" 2>&1 || fail "reading back at $off: $(cat "$TEST_DIR/read.log")"
	cmp -s "$TEST_DIR/back.bin" "$TEST_DIR/zeros.bin" || fail "reading at $off did not give 4 MiB of zeros"
	cmp -s "$TEST_DIR/back.bin" "$TEST_DIR/pattern.bin" && fail "the pattern came back at $off"
done
say "ok: writes accepted, zeros read back"

# ---- 3. iscsi-test-cu SBC read/write families -------------------------------------------------
# Tests that write and then check, by reading, comparing or asking for the allocation status,
# that the medium holds what they wrote; a medium that keeps nothing cannot pass them:
#   CompareAndWrite.Simple, .Miscompare  write a block, then COMPARE AND WRITE against it
#   OrWrite.Verify                       ORs data into written blocks and reads the result back
#   WriteSame10.Check, WriteSame16.Check read back the blocks WRITE SAME filled
#   GetLBAStatus.UnmapSingle             writes, then wants GET LBA STATUS to report "mapped"
NOT_ON_NULL="CompareAndWrite.Simple CompareAndWrite.Miscompare OrWrite.Verify WriteSame10.Check
	WriteSame16.Check GetLBAStatus.UnmapSingle"
for family in Read6 Read10 Read12 Read16 ReadCapacity10 ReadCapacity16 Write10 Write12 Write16 \
	WriteVerify10 WriteVerify12 WriteVerify16 WriteSame10 WriteSame16 Verify10 Verify12 Verify16 Unmap \
	GetLBAStatus Prefetch10 Prefetch16 CompareAndWrite OrWrite; do
	say "checking: iscsi-test-cu SCSI.$family on the 1 TiB null LUN"
	CU_TIMEOUT=120 CU_TOLERATED="$NOT_ON_NULL" run_test_cu "SCSI.$family" "$URL"
done
say "ok: the SBC read/write families pass (tests that read back written data excepted)"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
