#!/usr/bin/env bash
# After a reconnect the daemon reads again what the target may have changed while the session was
# down: the target is stopped, restarted with its LUN 0 write-protected (`ro`) and grown by 4 MiB;
# once the session is back (and before any I/O of the devices), `session show` says read_only and
# the new capacity, a write through the FUSE file fails with EROFS, and a read still works. Then
# the target is restarted writable again: read_only flips back and writes go through.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$(dirname "$0")/daemon_helpers.bash"

IQN=iqn.2026-11.org.isthmus:dmnreprobe
PORT=$(free_port)
HP=127.0.0.1:$PORT
LUNFILE=$TEST_DIR/lun0.img
head -c $((1 << 20)) /dev/urandom >"$LUNFILE"
truncate -s 16M "$LUNFILE"
start_target --listen "$HP" --target "$IQN" --lun "$LUNFILE"
printf 'initiator-name = iqn.2026-11.org.isthmus:test-initiator\nreconnect-interval = 1\nnop-interval = 1\nnop-timeout = 2\n' >"$DMN_CONF"
dmn_start
L0=$(map_lun 0)
SID=$(ism login "$IQN" --portal "$HP" --type data | tail -n1) || fail "data login"
DEV=$DMN_DEV/$SID/lun$L0
lun_field() { sess_field "$SID" ".devices[] | select(.lun == $L0) | .$1"; }
[[ $(lun_field read_only) == false ]] || fail "LUN $L0 read_only before the restart"
printf 'first' | dd of="$DEV" bs=512 seek=100 conv=notrunc,fsync status=none || fail "write before the restart"
say "ok: LUN $L0 writable, 16 MiB, written through $DEV"

# wait_field FIELD VALUE SECS
wait_field() {
	local deadline=$((SECONDS + $3)) v=""
	while ((SECONDS < deadline)); do
		v=$(lun_field "$1" 2>/dev/null || true)
		[[ "$v" == "$2" ]] && return 0
		sleep 0.2
	done
	say "LUN $L0: $1 is '$v', wanted $2 after $3 s"
	return 1
}

say "target restarted with LUN $L0 read-only and grown to 20 MiB"
stop_target
truncate -s 20M "$LUNFILE"
start_target --listen "$HP" --target "$IQN" --lun "$LUNFILE,ro"
wait_state "$SID" connected 20 || fail "session not back 20 s after the target's restart"
wait_field read_only true 10 || fail "read_only did not flip after the reconnect (log: $(grep -E "LUN $L0" "$DMN_LOG" | tail -n 3))"
wait_field capacity_bytes $((20 << 20)) 10 || fail "capacity not read again after the reconnect"
[[ $(stat -c %s "$DEV") == $((20 << 20)) ]] || fail "the FUSE file is $(stat -c %s "$DEV") bytes"
sum=$(sha256sum <"$LUNFILE")
rc=0
python3 - "$DEV" <<'PY' || rc=$?
import errno, os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY)
    os.pwrite(fd, b"x" * 4096, 0)
    os.fsync(fd)
except OSError as e:
    print("  write: %s" % e)
    sys.exit(30 if e.errno == errno.EROFS else 31)
sys.exit(0)
PY
((rc == 30)) || fail "a write through $DEV after the LUN became read-only: rc $rc, wanted EROFS"
[[ $(sha256sum <"$LUNFILE") == "$sum" ]] || fail "the LUN's file changed"
[[ $(dd if="$DEV" bs=512 skip=100 count=1 status=none | head -c 5) == first ]] || fail "a read after the restart"
say "ok: after the reconnect read_only is true, capacity 20 MiB, $DEV refuses writes with EROFS and reads"

say "target restarted with LUN $L0 writable again"
stop_target
start_target --listen "$HP" --target "$IQN" --lun "$LUNFILE"
wait_state "$SID" connected 20 || fail "session not back 20 s after the second restart"
wait_field read_only false 10 || fail "read_only did not flip back"
printf 'again' | dd of="$DEV" bs=512 seek=200 conv=notrunc,fsync status=none || fail "write after it became writable"
[[ $(dd if="$LUNFILE" bs=512 skip=200 count=1 status=none | head -c 5) == again ]] || fail "the write did not reach the LUN"
say "ok: writable again after the next reconnect; writes reach the LUN"
ism logout "$SID" >/dev/null
say "PASS"
