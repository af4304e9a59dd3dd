#!/usr/bin/env bash
# isthmus-initiator recovery (acceptance 2 and 3):
#  - the target stops during a write load through the FUSE file and comes back 12 s later: same
#    session id, session back within about 5 s of the target's return, every write there in
#    order (checksum of the final versions), INQUIRY answered from the cache meanwhile;
#  - the target stays away longer than the removal latency (3 s): the data session's devices
#    disappear, its queued I/O fails with EIO, nothing hangs; a boot session keeps waiting and
#    its I/O completes when the target returns; the data session recovers too.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$(dirname "$0")/daemon_helpers.bash"

IQN=iqn.2026-11.org.isthmus:dmnrecovery
PORT=$(free_port)
HP=127.0.0.1:$PORT
LUNFILE=$TEST_DIR/lun0.img
TARGS=(--listen "$HP" --target "$IQN" --lun "$LUNFILE,size=64M")
start_target "${TARGS[@]}"
printf 'initiator-name = iqn.2026-11.org.isthmus:test-initiator\nreconnect-interval = 5\nnop-interval = 1\nnop-timeout = 2\n' >"$DMN_CONF"
dmn_start
L0=$(map_lun 0)

SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login"
DEV=$DMN_DEV/$SID/lun$L0
[[ -f "$DEV" ]] || fail "no device file $DEV: $(ls -R "$DMN_DEV")"
[[ $(stat -c %s "$DEV") == 67108864 ]] || fail "device size $(stat -c %s "$DEV")"

# ---- acceptance 2: 12 s outage during a write load
export WRITER_SHA=$TEST_DIR/w1.sha
NB=512
bg_start writer "$DEV" 6000 "$NB" 1
WPID=$BG_LAST
sleep 1.5
alive "$WPID" || fail "the writer finished before the outage (make the load longer)"
stop_target
say "target stopped during the write load"
sleep 2
st=$(sess_field "$SID" .state)
[[ "$st" == reconnecting ]] || fail "state during the outage: $st"
ism session inquiry "$SID" "$L0" --json | jq -e '.cached == true and .vendor != ""' >/dev/null ||
	fail "INQUIRY during the outage: $(ism session inquiry "$SID" "$L0" --json 2>&1)"
ism session reportluns "$SID" --json | jq -e '.cached == true' >/dev/null || fail "REPORT LUNS during the outage"
ism session readcapacity "$SID" "$L0" --json | jq -e '.cached == true and .capacity_bytes == 67108864' >/dev/null ||
	fail "READ CAPACITY during the outage"
say "ok: INQUIRY, REPORT LUNS, READ CAPACITY answered from the cache during the outage"
sleep 10 # 12 s after the stop
alive "$WPID" || fail "the writer did not wait for the session"
start_target "${TARGS[@]}"
back=$SECONDS
wait_state "$SID" connected 9 || fail "session not back within 9 s of the target's return"
say "ok: session back $((SECONDS - back)) s after the target's return"
rc=0
timeout 60 tail --pid="$WPID" -f /dev/null || fail "writer hangs after the reconnect"
wait "$WPID" || rc=$?
((rc == 0)) || fail "writer failed with $rc after the reconnect"
[[ $(sess_field "$SID" .session_id) == "$SID" ]] || fail "session id changed"
want=$(cat "$WRITER_SHA")
[[ $(region_sha "$DEV" "$NB") == "$want" ]] || fail "data read back through FUSE differs: a write was lost or reordered"
[[ $(region_sha "$LUNFILE" "$NB") == "$want" ]] || fail "the target's LUN file differs from what was written"
say "ok: 6000 writes across the outage, final versions all in place (sha $want)"

# ---- acceptance 3: removal latency 3 s; boot session keeps waiting
ism logout "$SID" >/dev/null || fail "logout"
SID=$(ism login "$IQN" --portal "$HP" --removal-latency 3 | tail -n1) || fail "login with --removal-latency"
BOOT=$(ism login "$IQN" --portal "$HP" --type boot --allow-duplicate | tail -n1) || fail "boot login"
[[ $(sess_field "$SID" .recovery.removal_latency) == 3 ]] || fail "removal latency not taken"
DEV=$DMN_DEV/$SID/lun$L0
BDEV=$DMN_DEV/$BOOT/lun$L0
[[ -f "$DEV" && -f "$BDEV" ]] || fail "devices missing"
stop_target KILL
t0=$SECONDS
# I/O to both while the target is away (bounded: a timeout's 124 means it hung)
timeout 15 dd if=/dev/zero of="$DEV" bs=4k count=1 seek=10 conv=notrunc,fsync 2>"$TEST_DIR/dd-data.err" &
DDPID=$!
timeout 60 dd if="$BDEV" of="$TEST_DIR/boot-read.bin" bs=4k count=4 2>"$TEST_DIR/dd-boot.err" &
BOOTPID=$!
rc=0
wait "$DDPID" || rc=$?
((rc != 124)) || fail "I/O to the data session hangs past the removal latency"
((rc != 0)) || fail "queued write did not fail"
grep -qi "input/output error" "$TEST_DIR/dd-data.err" || fail "queued write failed without EIO: $(cat "$TEST_DIR/dd-data.err")"
elapsed=$((SECONDS - t0))
((elapsed >= 2)) || fail "queued I/O failed after ${elapsed}s, before the removal latency"
[[ ! -e "$DEV" ]] || fail "data device still there after the removal latency"
[[ $(sess_field "$SID" .state) == failed ]] || fail "data session state $(sess_field "$SID" .state)"
[[ $(sess_field "$SID" '.devices | map(select(.local_path != null)) | length') == 0 ]] || fail "devices still listed"
say "ok: after ${elapsed}s the data session's device is gone and its queued write failed with EIO"
sleep 3
alive "$BOOTPID" || fail "boot session I/O did not wait: $(cat "$TEST_DIR/dd-boot.err")"
[[ -e "$BDEV" ]] || fail "boot session device removed"
[[ $(sess_field "$BOOT" .state) == reconnecting ]] || fail "boot session state $(sess_field "$BOOT" .state)"
echo junk | dd of="$DEV" 2>/dev/null && fail "write to a removed device worked"
start_target "${TARGS[@]}"
rc=0
wait "$BOOTPID" || rc=$?
((rc == 0)) || fail "boot session read failed ($rc): $(cat "$TEST_DIR/dd-boot.err")"
wait_state "$BOOT" connected 10 || fail "boot session did not recover"
wait_state "$SID" connected 10 || fail "data session did not recover after its devices were removed"
for _ in $(seq 50); do [[ -e "$DEV" ]] && break; sleep 0.2; done
[[ -e "$DEV" ]] || fail "data device did not come back"
say "ok: boot session waited and its read completed; data session back with its device"
ism logout "$SID" >/dev/null && ism logout "$BOOT" >/dev/null || fail "logout"
say "PASS"
