#!/usr/bin/env bash
# Persistent reservations with APTPL on a standalone RBD LUN live in the cluster, next to the
# image (the object isthmus.pr.<image>), not in the gateway's state directory, so they survive
# the loss of the gateway machine:
#   - REGISTER with APTPL and RESERVE (write exclusive): the object appears, the state
#     directory stays empty;
#   - the target SIGKILLed and a new one started with another, empty state directory (a
#     replacement machine): READ KEYS and READ RESERVATION show the key and the reservation,
#     another initiator's WRITE gets RESERVATION CONFLICT;
#   - the cluster frozen: a PERSISTENT RESERVE OUT with APTPL ends with CHECK CONDITION, MEDIUM
#     ERROR within the op timeout's bound (it cannot be made durable), and the key stays as it
#     was once the cluster is back;
#   - the same image served as another target's LUN: it starts without reservations and says
#     why in the log (the state was saved for another logical unit);
#   - unregistered with APTPL, the state after a restart is empty;
#   - a state larger than the first read at open (320 registrations, over 64 KiB) is read back
#     whole by a new target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "RBD LUNs with reservations in the cluster are isthmus-target's"

ceph_start
ceph_client_timeout 3
ceph_image aptpl 32M

IQN=iqn.2026-12.org.isthmus:rbd-aptpl
PORT=$(free_port)
LUN="rbd:rbd/aptpl,conf=$CEPH_CONF"
KEY=0123456789abcdef
KEY2=fedcba9876543210

serve() { # STATE_DIR [TARGET]
	start_target --listen "127.0.0.1:$PORT" --target "${2:-$IQN}" --lun "$LUN" --state-dir "$1"
}
scsi() { # [--initiator IQN] CDB ARGS...: one command through a fresh session to LUN 0
	python3 "$INTEROP_DIR/scsi_cmd.py" 127.0.0.1 "$PORT" "${TGT:-$IQN}" 0 "$@"
}
prout() { # service-action type param-hex
	scsi "$(printf '5f%02x%02x00000000001800' "$1" "$2")" --out "$3"
}
prin() { scsi "$(printf '5e%02x0000000000010000' "$1")" --in 256; }
status_of() { sed -n 's/^status=//p' <<<"$1"; }
in_cluster() { run_to 30 rados -p rbd ls | grep -qx "isthmus.pr.aptpl"; }

serve "$TEST_DIR/state1"
out=$(prout 0 0 "0000000000000000${KEY}00000000010000000000")
[[ $(status_of "$out") == 0x00 ]] || fail "REGISTER with APTPL: $out"
out=$(prout 1 1 "${KEY}0000000000000000000000000000000000000000")
[[ $(status_of "$out") == 0x00 ]] || fail "RESERVE: $out"
in_cluster || fail "no isthmus.pr.aptpl object in the pool after a REGISTER with APTPL"
files=$(find "$TEST_DIR/state1" -type f 2>/dev/null || true)
[[ -z "$files" ]] || fail "an RBD LUN's APTPL state went to the state directory: $files"
say "ok: registered and reserved with APTPL; the state is in the cluster (isthmus.pr.aptpl), not in the state directory"

stop_target KILL
serve "$TEST_DIR/state2"
keys=$(prin 0)
grep -q "$KEY" <<<"$keys" || fail "the APTPL key did not survive the loss of the gateway: $keys"
data=$(sed -n 's/^data=//p' <<<"$(prin 1)")
[[ "${data:8:8}" == 00000010 && "${data:16:16}" == "$KEY" && "${data:42:2}" == 01 ]] ||
	fail "the reservation did not survive the loss of the gateway: $data"
out=$(scsi 2a000000000800000100 --out "$(printf '5a%.0s' $(seq 512))" --initiator iqn.2026-12.org.isthmus:other)
[[ $(status_of "$out") == 0x18 ]] || fail "another initiator's WRITE under the restored reservation: $out"
say "ok: a new target with an empty state directory has the key and the reservation (another initiator: RESERVATION CONFLICT)"

ceph_pause
t0=$SECONDS
out=$(prout 6 0 "0000000000000000${KEY2}00000000010000000000")
took=$((SECONDS - t0))
sense=$(sed -n 's/^sense=//p' <<<"$out")
say "  REGISTER AND IGNORE with APTPL, cluster frozen: $(tr '\n' ' ' <<<"$out")after $took s"
[[ $(status_of "$out") == 0x02 && "${sense:0:2}" == 70 && "${sense:4:2}" == 03 && "${sense:24:4}" == 0c00 ]] ||
	fail "a reservation change that cannot be saved did not end in MEDIUM ERROR (03h/0Ch/00h): $out"
((took <= 12)) || fail "the failed save took $took s (op timeout 3 s)"
ceph_resume
# The first operations after a resume may still time out: bounded tries, as an initiator would.
for _ in 1 2 3 4 5; do
	out=$(prout 6 0 "0000000000000000${KEY}00000000010000000000")
	[[ $(status_of "$out") == 0x00 ]] && break
	sleep 1
done
[[ $(status_of "$out") == 0x00 ]] || fail "REGISTER AND IGNORE with APTPL after the cluster came back: $out"
say "ok: a change that cannot reach the cluster ends in MEDIUM ERROR; the cluster back, the next one is saved"

stop_target
serve "$TEST_DIR/state3" iqn.2026-12.org.isthmus:rbd-aptpl-other
keys=$(TGT=iqn.2026-12.org.isthmus:rbd-aptpl-other prin 0)
grep -q "$KEY" <<<"$keys" && fail "another target's LUN took this LUN's reservations: $keys"
grep -q "saved for another logical unit" "$TARGET_LOG" || fail "the log does not say why the state was not taken"
say "ok: the image as another target's LUN starts without reservations, and the log says why"
stop_target

serve "$TEST_DIR/state4"
out=$(prout 6 0 "0000000000000000000000000000000000000000010000000000")
[[ $(status_of "$out") == 0x00 ]] || fail "unregister with APTPL: $out"
stop_target
serve "$TEST_DIR/state5"
keys=$(prin 0)
grep -q "$KEY" <<<"$keys" && fail "the unregistered key came back: $keys"

# A state larger than the first read at open (64 KiB): 320 initiator ports with 180-character
# names register with APTPL; a new target reads it back whole.
MANY=320
python3 - "$INTEROP_DIR" "$IQN" "$PORT" "$MANY" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import Nexus, check, finish, prout
gateway_nexus.setup("test_rbd_aptpl", sys.argv[2], {1: int(sys.argv[3])})
for i in range(int(sys.argv[4])):
    nx = Nexus("many-%03d-" % i + "x" * 171, 1, "400000%06x" % i)
    nx.ready()
    st = prout(nx, 0, sark=0x1000 + i, flags=0x01)
    nx.close()
    if not check(st == 0, "REGISTER with APTPL of initiator port %d: status 0x%02x" % (i, st)):
        break
finish()
PY
size=$(run_to 30 rados -p rbd stat isthmus.pr.aptpl | sed -n 's/.* size \([0-9]*\).*/\1/p')
((size > 65536)) || fail "the state of $MANY registrations is $size bytes: not larger than the first read (64 KiB)"
stop_target
mark=$(log_mark)
serve "$TEST_DIR/state6"
python3 - "$INTEROP_DIR" "$IQN" "$PORT" "$MANY" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import Nexus, check, finish, read_keys
gateway_nexus.setup("test_rbd_aptpl", sys.argv[2], {1: int(sys.argv[3])})
nx = Nexus("reader", 1, "410000000001")
nx.ready()
st, gen, keys = read_keys(nx)
n = int(sys.argv[4])
check(st == 0 and keys == list(range(0x1000, 0x1000 + n)),
      "READ KEYS after a restart: status %s, %s keys (want %d)" % (st, len(keys or []), n))
nx.close()
finish("ok: READ KEYS after a restart: %d keys" % n)
PY
log_since "$mark" | grep -q "reservation state\|saved for another" && fail "the large state was not taken: $(log_since "$mark" | grep -m1 "reservation state\|saved for another")"
stop_target
say "ok: a state of $size bytes ($MANY registrations, more than the first read) is read back whole after a restart"
say "PASS"
