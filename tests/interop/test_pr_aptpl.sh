#!/usr/bin/env bash
# Persistent reservations survive a target restart when registered with APTPL (SPC-4 5.13.4):
# register a key with APTPL=1 and reserve (write exclusive), stop the target, start it again on
# the same state directory: READ KEYS and READ RESERVATION still show them. A key registered
# without APTPL on another target instance is gone after the restart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "uses isthmus-target's state directory"

IQN=iqn.2026-11.org.isthmus:pr
PORT=$(free_port)
CONF=$TEST_DIR/t.conf
cat >"$CONF" <<CFG
[global]
state-dir = $TEST_DIR/state
[portal-group 1]
listen = 127.0.0.1:$PORT
[target $IQN]
lun 0 = $TEST_DIR/disk.img,size=16M
CFG
SCSI="python3 $INTEROP_DIR/scsi_cmd.py 127.0.0.1 $PORT $IQN 0"
KEY=0123456789abcdef

# PERSISTENT RESERVE OUT, parameter list of 24 bytes.
prout() { # service-action type param-hex
	local cdb
	cdb=$(printf '5f%02x%02x000000000018%s' "$1" "$2" "00")
	$SCSI "$cdb" --out "$3"
}
prin() { # service-action
	$SCSI "$(printf '5e%02x00000000000100%s' "$1" "00")" --in 256
}

start_target --config "$CONF"
# REGISTER (0) with service action key = KEY, APTPL bit (byte 20, bit 0).
out=$(prout 0 0 "0000000000000000${KEY}00000000010000000000" ) || fail "PR REGISTER: $out"
grep -q 'status=0x00' <<<"$out" || fail "PR REGISTER with APTPL: $out"
# RESERVE (1), scope LU, type 1 (write exclusive), reservation key = KEY.
out=$(prout 1 1 "${KEY}0000000000000000000000000000000000000000") || fail "PR RESERVE: $out"
grep -q 'status=0x00' <<<"$out" || fail "PR RESERVE: $out"
keys=$(prin 0) || fail "READ KEYS: $keys"
grep -q "$KEY" <<<"$keys" || fail "READ KEYS before restart lacks the key: $keys"
say "ok: registered and reserved with APTPL"

stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"
start_target --config "$CONF"
keys=$(prin 0) || fail "READ KEYS after restart: $keys"
grep -q "$KEY" <<<"$keys" || fail "the APTPL registration did not survive the restart: $keys"
rsv=$(prin 1) || fail "READ RESERVATION after restart: $rsv"
data=$(sed -n 's/^data=//p' <<<"$rsv")
# Additional length 16 (0x10) and the key in the reservation descriptor.
[[ "${data:8:8}" == 00000010 && "${data:16:16}" == "$KEY" ]] || fail "reservation lost after restart: $rsv"
say "ok: key and reservation back after restart"

# Clean up: register-and-ignore with key 0 unregisters; APTPL state must then be empty.
out=$(prout 6 0 "0000000000000000000000000000000000000000010000000000") || fail "unregister: $out"
stop_target
start_target --config "$CONF"
keys=$(prin 0)
grep -q "$KEY" <<<"$keys" && fail "unregistered key came back: $keys"
stop_target
say "PASS"
