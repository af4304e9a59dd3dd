#!/usr/bin/env bash
# Names and keys from the wire cannot forge log lines. Raw logins (pdu_abuse.py's PDU helpers)
# carry an InitiatorName, a TargetName, an InitiatorAlias and a key with CR/LF, an escape
# sequence and bytes that are not UTF-8, each followed by text made to look like a log line of
# its own. Every line the target logged must start with its own timestamp, the forged text must
# appear only escaped inside the line of the login it came with, and the target still serves.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 iscsi-inq
[[ "$TARGET_IMPL" == isthmus ]] || skip "log escaping is isthmus-target's logging"

IQN=iqn.2026-11.org.isthmus:logesc
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "memory,size=16M" --log-level debug
mark=$(log_mark)

say "sending logins with forged log lines in InitiatorName, TargetName, InitiatorAlias and a key"
run_to 60 python3 - "$INTEROP_DIR" 127.0.0.1 "$PORT" "$IQN" <<'PY' || fail "raw logins failed"
import socket, struct, sys
sys.path.insert(0, sys.argv[1])
from pdu_abuse import bhs, pad, recv_pdu
host, port, iqn = sys.argv[2], int(sys.argv[3]), sys.argv[4]
FORGED = "\n2026-01-01T00:00:00.000Z error: [fake] "

def login(pairs, label):
    s = socket.create_connection((host, port), timeout=5)
    text = b"".join(k + b"=" + v + b"\0" for k, v in pairs)
    rest = struct.pack(">HH", 0, 0) + struct.pack(">II", 0, 0) + b"\0" * 16
    hdr = bytearray(bhs(0x03, flags=0x81, immediate=True, dlen=len(text), rest=rest))
    hdr[8:14] = b"\x40\x00\x00\x00\x00\x07"
    s.sendall(bytes(hdr) + pad(text))
    rh, _ = recv_pdu(s)
    s.close()
    status = None if rh is None else (rh[36] << 8) | rh[37]
    print(f"{label}: login status {status if status is None else hex(status)}")
    return status

good = b"iqn.2026-11.org.isthmus:logesc-client"
st = login([(b"InitiatorName", (iqn.split(':')[0] + ":evil" + FORGED + "initiator forged").encode()),
            (b"TargetName", iqn.encode()), (b"AuthMethod", b"None")], "bad InitiatorName")
assert st is not None and st >> 8 == 2, "a bad InitiatorName must be refused"
st = login([(b"InitiatorName", good), (b"TargetName", (iqn + "x\r" + FORGED + "target forged").encode()),
            (b"AuthMethod", b"None")], "unknown TargetName")
assert st is not None and st >> 8 == 2, "an unknown TargetName must be refused"
st = login([(b"InitiatorName", good), (b"TargetName", iqn.encode()), (b"SessionType", b"Bogus" + FORGED.encode() + b"\x1b[2K\xff\xfe type forged"),
            (b"AuthMethod", b"None")], "bad SessionType")
assert st is not None and st >> 8 == 2, "an unknown SessionType must be refused"
st = login([(b"InitiatorName", good), (b"TargetName", iqn.encode()),
            (b"InitiatorAlias", FORGED.encode() + b"alias forged\xc2\x85"), (b"AuthMethod", b"None")], "alias")
st = login([(b"InitiatorName", good), (b"TargetName", iqn.encode()),
            (b"X-key" + FORGED.encode() + b"key forged", b"1"), (b"AuthMethod", b"None")], "bad key")
assert st is not None and st >> 8 == 2, "a key with a line break must be refused"
PY

sleep 0.3
since=$(log_since "$mark")
say "checking that every new line of the target log starts with a timestamp"
bad=$(grep -anvE '^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z (error|warn|info|debug): |### )' <<<"$since" || true)
[[ -z "$bad" ]] || fail "log lines that the target did not start: $bad"
grep -aq '^2026-01-01T00:00:00.000Z' <<<"$since" && fail "a forged line starts with the forged timestamp"
say "checking that the forged text is there, escaped, inside the refusal"
grep -aqF 'evil\n2026-01-01T00:00:00.000Z error: [fake] initiator forged' <<<"$since" ||
	fail "the escaped InitiatorName is not in the log"
grep -aqF 'x\r\n2026-01-01T00:00:00.000Z error: [fake] target forged' <<<"$since" ||
	fail "the escaped TargetName is not in the log"
if LC_ALL=C grep -aqP '[\x00-\x08\x0b-\x1f\x7f]' <<<"$since"; then
	fail "a control byte reached the log"
fi

say "checking that the target still serves a good client"
out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$(lun_url "$HP" "$IQN" 0)" 2>&1) || fail "iscsi-inq: $out"
stop_target
say "PASS"
