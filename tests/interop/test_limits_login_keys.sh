#!/usr/bin/env bash
# A login of 64 KiB of distinct keys costs the target almost nothing. Two raw connections
# (pdu_abuse.py's PDU helpers) keep sending such logins, eight 8 KiB Login PDUs joined by the
# C bit, over and over; meanwhile a third connection logs in again and again and every one of
# its logins must be answered promptly. Each flood login must be refused (status class 2), and
# the target still serves a real initiator afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 iscsi-inq
[[ "$TARGET_IMPL" == isthmus ]] || skip "aimed at isthmus-target's login parser"

IQN=iqn.2026-11.org.isthmus:keys
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "memory,size=16M" --log-level warn

say "two connections flood 64 KiB logins of distinct keys; a third logs in 20 times meanwhile"
out=$(run_to 120 python3 - "$INTEROP_DIR" 127.0.0.1 "$PORT" "$IQN" <<'PY'
import socket, struct, sys, threading, time
sys.path.insert(0, sys.argv[1])
from pdu_abuse import bhs, pad, recv_pdu
host, port, iqn = sys.argv[2], int(sys.argv[3]), sys.argv[4]
REST = struct.pack(">HH", 0, 0) + struct.pack(">II", 0, 0) + b"\0" * 16

def login_pdu(text, flags, isid):
    hdr = bytearray(bhs(0x03, flags=flags, immediate=True, dlen=len(text), rest=REST))
    hdr[8:14] = isid
    return bytes(hdr) + pad(text)

# 64 KiB of distinct keys after the names, in 8 PDUs of at most 8192 bytes (the login limit).
pairs = [b"InitiatorName=iqn.2026-11.org.isthmus:flood\0", b"TargetName=" + iqn.encode() + b"\0",
         b"AuthMethod=None\0"]
i = 0
while sum(map(len, pairs)) < 65536 - 16:
    pairs.append(b"X-k%06d=v\0" % i)
    i += 1
blob = b"".join(pairs)
chunks = [blob[o:o + 8192] for o in range(0, len(blob), 8192)]
stop = time.time() + 8
floods, refused, errors = [0], [0], []

def flood(n):
    isid = bytes([0x40, 0, 0, 0, 0x10, n])
    while time.time() < stop:
        try:
            s = socket.create_connection((host, port), timeout=10)
            for k, c in enumerate(chunks):
                last = k == len(chunks) - 1
                s.sendall(login_pdu(c, 0x81 if last else 0x40, isid))
            # The continuation PDUs are acknowledged one by one; the last is answered.
            for _ in chunks:
                rh, _ = recv_pdu(s)
                if rh is None:
                    break
                status = (rh[36] << 8) | rh[37]
                if status:
                    refused[0] += 1 if status >> 8 == 2 else 0
                    break
            floods[0] += 1
            s.close()
        except OSError as e:
            errors.append(str(e))

threads = [threading.Thread(target=flood, args=(n,)) for n in range(2)]
for t in threads:
    t.start()
time.sleep(0.5)
lat = []
for n in range(20):
    t0 = time.time()
    s = socket.create_connection((host, port), timeout=10)
    text = b"InitiatorName=iqn.2026-11.org.isthmus:probe\0TargetName=" + iqn.encode() + b"\0AuthMethod=None\0"
    s.sendall(login_pdu(text, 0x81, bytes([0x40, 0, 0, 0, 0x20, n])))
    rh, _ = recv_pdu(s)
    lat.append(time.time() - t0)
    s.close()
    if rh is None or rh[36] != 0:
        print("probe login %d failed" % n)
        sys.exit(1)
    time.sleep(0.1)
for t in threads:
    t.join()
lat.sort()
print("flood logins %d (refused %d), socket errors %d" % (floods[0], refused[0], len(errors)))
print("probe login latency ms: median %.1f max %.1f" % (lat[len(lat) // 2] * 1e3, lat[-1] * 1e3))
print("RESULT %d %d %.4f %.4f" % (floods[0], refused[0], lat[len(lat) // 2], lat[-1]))
PY
) || fail "raw login clients failed: $out"
printf '%s\n' "$out" | sed 's/^/    /'
read -r _ floods refused median max < <(grep '^RESULT' <<<"$out")
((floods >= 4)) || fail "only $floods flood logins went through in 8 s"
((refused == floods)) || fail "$refused of $floods flood logins were refused; all must be"
# One flood login used to take the loop about half a second (more under ASan), so a probe
# behind one or two of them waited a second or more.
say "checking the probe logins: median under 100 ms, slowest under 1 s"
python3 -c "import sys; sys.exit(0 if $median < 0.1 and $max < 1.0 else 1)" ||
	fail "logins waited behind the flood: median ${median}s, slowest ${max}s"
grep -q "more than 256 keys" "$TARGET_LOG" || fail "the refusal does not say why"

out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$(lun_url "$HP" "$IQN" 0)" 2>&1) || fail "iscsi-inq after the flood: $out"
stop_target
say "PASS"
