#!/usr/bin/env bash
# Connection limits and running out of file descriptors.
#  1. The target's descriptor limit lowered (prlimit) just above what it uses: connections are
#     opened until accepting fails with EMFILE. The connections beyond are closed at once, the
#     target's loop is busy (running or waiting for a CPU) for little of 2 s of further connection
#     attempts, to the portal and to the management socket (no spinning on either listener), and once the connections
#     are closed a real initiator logs in and the management socket answers.
#  2. --max-connections 6 --max-connections-per-portal 4 with two portals: the 5th connection to
#     one portal and the 7th overall are closed at once (raw TCP, pdu_abuse.py's PDU helpers),
#     the first ones go on to finish their logins, and a freed slot is usable again. Both limits
#     are named in the log and counted by the metrics endpoint.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 iscsi-inq prlimit curl
[[ "$TARGET_IMPL" == isthmus ]] || skip "isthmus-target's connection limits"

IQN=iqn.2026-11.org.isthmus:limits

# ---- 1. out of descriptors
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=16M" --max-connections 1000 \
	--max-connections-per-portal 1000 --mgmt-socket "$SOCK"
used=$(find "/proc/$TARGET_PID/fd" -mindepth 1 | wc -l)
limit=$((used + 12))
prlimit --pid "$TARGET_PID" --nofile="$limit:$limit" || skip "prlimit cannot lower the target's descriptor limit"
say "target uses $used descriptors; limit lowered to $limit"
hz=$(getconf CLK_TCK)

out=$(run_to 60 python3 - 127.0.0.1 "$PORT" "$TARGET_PID" "$hz" "$SOCK" <<'PY'
import socket, sys, time
host, port, pid, hz, sock_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]

def cpu():
    """Seconds the event-loop thread ran or waited to run: a spinning loop is always one of the two,
    so this reads close to the wall time even when the machine is busy; an idle loop sleeps."""
    try:
        run, wait = open("/proc/%s/schedstat" % pid).read().split()[:2]
        return (int(run) + int(wait)) / 1e9
    except OSError:
        f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / hz

def closed_soon(s, secs):
    s.settimeout(secs)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True

held, shed = [], 0
for i in range(40):
    s = socket.create_connection((host, port), timeout=5)
    if closed_soon(s, 0.3):
        shed += 1
        s.close()
    else:
        held.append(s)
print("connections held open by the target: %d, closed at once: %d" % (len(held), shed))
# Out of descriptors now: keep knocking for 2 s and watch the target's CPU time.
c0, t0 = cpu(), time.time()
knocks = []
while time.time() - t0 < 2:
    try:
        knocks.append(socket.create_connection((host, port), timeout=1))
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(1)
        u.connect(sock_path)
        knocks.append(u)
    except OSError:
        pass
    time.sleep(0.1)
spent = cpu() - c0
print("target loop busy (running or runnable) over %.1f s of connection attempts at the limit: %.2f s"
      % (time.time() - t0, spent))
for s in held + knocks:
    s.close()
print("RESULT %d %d %.3f" % (len(held), shed, spent))
PY
) || fail "raw connections failed: $out"
printf '%s\n' "$out" | sed 's/^/    /'
read -r _ held shed spent < <(grep '^RESULT' <<<"$out")
((held > 0)) || fail "the target held no connection at all"
# A spinning loop is busy all 2 s; one that sleeps between the 40 knocks, far less.
python3 -c "import sys; sys.exit(0 if $spent < 1.0 else 1)" || fail "the target spun: busy ${spent}s in 2 s"
((shed > 0)) || fail "no connection was closed at once at the descriptor limit"
grep -q "out of file descriptors" "$TARGET_LOG" || fail "the log does not say connections were closed for lack of descriptors"
sleep 0.5
say "connections closed: a real initiator must be served again"
out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$(lun_url "127.0.0.1:$PORT" "$IQN" 0)" 2>&1) || fail "iscsi-inq after EMFILE: $out"
out=$(run_to 30 "$ISTHMUS_BIN/isthmus" target --socket "$SOCK" --json session list 2>&1) ||
	fail "the management socket does not answer after EMFILE: $out"
stop_target

# ---- 2. connection limits
P1=$(free_port)
P2=$(free_port)
MPORT=$(free_port)
start_target --listen "127.0.0.1:$P1" --listen "127.0.0.1:$P2" --target "$IQN" --lun "memory,size=16M" \
	--max-connections 6 --max-connections-per-portal 4 --metrics "127.0.0.1:$MPORT"
out=$(run_to 60 python3 - "$INTEROP_DIR" 127.0.0.1 "$P1" "$P2" "$IQN" <<'PY'
import socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
from pdu_abuse import bhs, pad, recv_pdu, INITIATOR
host, p1, p2, iqn = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
REST = struct.pack(">HH", 0, 0) + struct.pack(">II", 0, 0) + b"\0" * 16
fails = []

def check(cond, what):
    print(("ok: " if cond else "FAILED: ") + what)
    if not cond:
        fails.append(what)

def pdu(keys, flags, n):
    text = b"".join(k.encode() + b"\0" for k in keys)
    hdr = bytearray(bhs(0x03, flags=flags, immediate=True, dlen=len(text), rest=REST))
    hdr[8:14] = bytes([0x40, 0, 0, 0, 0x30, n])
    return bytes(hdr) + pad(text)

def security(port, n):
    """A connection whose first login request is answered; None if the target closed it."""
    s = socket.create_connection((host, port), timeout=3)
    try:
        s.sendall(pdu(["InitiatorName=" + INITIATOR, "TargetName=" + iqn, "AuthMethod=None"], 0x81, n))
        rh, _ = recv_pdu(s)
    except OSError:
        rh = None
    if rh is None or rh[36] != 0:
        s.close()
        return None
    return s

def operational(s, n):
    s.sendall(pdu(["HeaderDigest=None", "DataDigest=None"], 0x87, n))
    rh, _ = recv_pdu(s)
    return rh is not None and rh[36] == 0 and (rh[1] & 0x83) == 0x83

a = [security(p1, i) for i in range(4)]
check(all(a), "4 connections to the first portal are served")
check(security(p1, 4) is None, "the 5th connection to the first portal is closed (max-connections-per-portal 4)")
b = [security(p2, 10 + i) for i in range(2)]
check(all(b), "2 connections to the second portal are served (6 in all)")
check(security(p2, 12) is None, "the 7th connection is closed (max-connections 6)")
check(operational(a[0], 0), "a connection admitted before the limit finishes its login")
check(operational(b[1], 11), "so does one on the second portal")
a[1].close()
time.sleep(0.3)
c = security(p2, 13)
check(c is not None, "once one connection is gone, a new one is served")
for s in a + b + [c]:
    if s:
        s.close()
print("RESULT %d" % len(fails))
PY
) || fail "raw connections failed: $out"
printf '%s\n' "$out" | sed 's/^/    /'
grep -q '^RESULT 0' <<<"$out" || fail "connection limits: $(grep FAILED <<<"$out" | head -3)"
grep -q "max-connections-per-portal reached" "$TARGET_LOG" || fail "the per-portal refusal is not logged"
grep -q "max-connections reached" "$TARGET_LOG" || fail "the global refusal is not logged"
metrics=$(curl -sSf --max-time 5 "http://127.0.0.1:$MPORT/metrics") || fail "metrics"
refused=$(awk '/^isthmus_target_connections_refused_total /{print $2}' <<<"$metrics")
say "metrics: isthmus_target_connections_refused_total $refused"
((refused >= 2)) || fail "the refused connections are not counted"
out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$(lun_url "127.0.0.1:$P1" "$IQN" 0)" 2>&1) || fail "iscsi-inq: $out"
stop_target
say "PASS"
