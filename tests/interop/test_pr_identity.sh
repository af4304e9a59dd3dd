#!/usr/bin/env bash
# APTPL reservation state belongs to a logical unit, not to a LUN number: two targets, each with
# a LUN 0, share one state directory; a key registered with APTPL on the first target's LUN 0 is
# back on that LU after a restart and nowhere else. A state file of the old naming (lu-0.pr,
# keyed by LUN number alone) is ignored, with a message in the log.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "uses isthmus-target's state directory"

IQN_A=iqn.2026-11.org.isthmus:pr-a
IQN_B=iqn.2026-11.org.isthmus:pr-b
PORT=$(free_port)
CONF=$TEST_DIR/t.conf
mkdir -p "$TEST_DIR/state"
cat >"$CONF" <<CFG
[global]
state-dir = $TEST_DIR/state
[portal-group 1]
listen = 127.0.0.1:$PORT
[target $IQN_A]
lun 0 = memory,size=16M
[target $IQN_B]
lun 0 = memory,size=16M
CFG
KEY=00000000000000aa
OLDKEY=00000000000000ee
# What an older version wrote for "LUN 0", whichever target's it was.
printf 'isthmus-pr 1\ngeneration 1\naptpl 1\nreg %s 1 0 iqn.2026-11.org.isthmus:scsi-cmd,i,0x400000000001\n' \
	"$OLDKEY" >"$TEST_DIR/state/lu-0.pr"

scsi() { python3 "$INTEROP_DIR/scsi_cmd.py" 127.0.0.1 "$PORT" "$1" 0 "$2" "${@:3}"; }
read_keys() { scsi "$1" 5e00000000000000100000 --in 256; }

start_target --config "$CONF"
wait_log 0 'lu-0\.pr.*ignored' 5 || fail "no log line about the old lu-0.pr"
for iqn in "$IQN_A" "$IQN_B"; do
	keys=$(read_keys "$iqn") || fail "READ KEYS on $iqn: $keys"
	grep -q "$OLDKEY" <<<"$keys" && fail "the old LUN-keyed file's key showed up on $iqn: $keys"
done
say "ok: lu-0.pr of the old naming ignored and logged"

# REGISTER with APTPL on target A's LUN 0.
out=$(scsi "$IQN_A" 5f00000000000000180000 --out "0000000000000000${KEY}00000000010000000000") ||
	fail "PR REGISTER: $out"
grep -q 'status=0x00' <<<"$out" || fail "PR REGISTER with APTPL on $IQN_A: $out"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"

start_target --config "$CONF"
keys_a=$(read_keys "$IQN_A") || fail "READ KEYS on $IQN_A: $keys_a"
keys_b=$(read_keys "$IQN_B") || fail "READ KEYS on $IQN_B: $keys_b"
grep -q "$KEY" <<<"$keys_a" || fail "$IQN_A LUN 0 lost its APTPL registration: $keys_a"
grep -q "$KEY" <<<"$keys_b" && fail "$IQN_B LUN 0 got $IQN_A's registration after the restart: $keys_b"
data=$(sed -n 's/^data=//p' <<<"$keys_b")
[[ "${data:8:8}" == 00000000 ]] || fail "$IQN_B LUN 0 has registrations after the restart: $keys_b"
say "ok: after a restart target A's LUN 0 has its key, target B's LUN 0 has none"
stop_target
say "PASS"
