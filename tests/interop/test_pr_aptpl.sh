#!/usr/bin/env bash
# Persistent reservations survive a target restart when registered with APTPL (SPC-4 5.13.4):
# register a key with APTPL=1 and reserve (write exclusive), stop the target, start it again on
# the same state directory: READ KEYS and READ RESERVATION still show them. Registrations and a
# reservation without APTPL leave the state directory empty. A registration with APTPL that got
# GOOD is there after the target is killed (SIGKILL) right after it; one removed with APTPL=0 is
# gone after a restart.
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

state_files() { find "$TEST_DIR/state" -type f 2>/dev/null | sort || true; }

start_target --config "$CONF"
# Without APTPL nothing is written: REGISTER, RESERVE, RELEASE, unregister.
out=$(prout 0 0 "0000000000000000${KEY}00000000000000000000") || fail "PR REGISTER: $out"
grep -q 'status=0x00' <<<"$out" || fail "PR REGISTER without APTPL: $out"
out=$(prout 1 1 "${KEY}0000000000000000000000000000000000000000") || fail "PR RESERVE: $out"
grep -q 'status=0x00' <<<"$out" || fail "PR RESERVE without APTPL: $out"
out=$(prout 2 1 "${KEY}0000000000000000000000000000000000000000") || fail "PR RELEASE: $out"
grep -q 'status=0x00' <<<"$out" || fail "PR RELEASE without APTPL: $out"
out=$(prout 6 0 "0000000000000000000000000000000000000000000000000000") || fail "unregister: $out"
files=$(state_files)
[[ -z "$files" ]] || fail "changes without APTPL wrote to the state directory: $files"
say "ok: four PR OUT commands without APTPL, state directory untouched"

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

for f in $(state_files); do
	[[ "$(stat -c %a "$f")" == 600 ]] || fail "$f has mode $(stat -c %a "$f"), not 600"
	[[ "$(basename "$f")" == naa.* ]] || fail "state file not named by the LU's designator: $f"
done
say "ok: state files $(state_files | xargs -n1 basename | tr '\n' ' ')(mode 600)"

# GOOD means on disk: a key changed with APTPL survives SIGKILL right after the answer.
KEY2=fedcba9876543210
out=$(prout 6 0 "0000000000000000${KEY2}00000000010000000000") || fail "PR REGISTER AND IGNORE: $out"
grep -q 'status=0x00' <<<"$out" || fail "PR REGISTER AND IGNORE with APTPL: $out"
stop_target KILL
start_target --config "$CONF"
keys=$(prin 0) || fail "READ KEYS after SIGKILL: $keys"
grep -q "$KEY2" <<<"$keys" || fail "the key acknowledged before SIGKILL is gone: $keys"
say "ok: key acknowledged with APTPL is back after SIGKILL"

# Clean up: register-and-ignore with key 0 unregisters; APTPL state must then be empty.
out=$(prout 6 0 "0000000000000000000000000000000000000000010000000000") || fail "unregister: $out"
stop_target
start_target --config "$CONF"
keys=$(prin 0)
grep -q "$KEY" <<<"$keys" && fail "unregistered key came back: $keys"
stop_target
say "PASS"
