#!/usr/bin/env python3
"""Sessions of a target with several event loops, over raw PDUs (test helper).

Usage: threads_check.py HOST PORT TARGET CLI SOCKET

Checks, each printed as "ok: ..." (a failure exits 1 with "FAIL: ..."):
  - four sessions (one initiator, four ISIDs) land on different loops ("loop" in session list)
  - a second connection of each (same TSIH, CID 1, MaxConnections=4) joins its session, on its
    session's loop: the session has two connections and its loop two more connections
  - reinstatement: a new session with the ISID of a session on a loop other than 0 replaces it
    on that loop, and the old session ends
  - a joining login whose first PDU does not name the initiator (InitiatorName in a continued
    PDU) cannot be routed: when it lands on another loop than its session's it is answered
    0x0301 (service unavailable), and the session keeps its connections
  - session kill of the session on the highest loop ends it (its connections close)
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
from check_report import fail, ok  # noqa: E402

HOST, PORT, TARGET, CLI, SOCK = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:threads"
OPS = {"MaxConnections": "4"}


def cli(*args):
    out = subprocess.run([CLI, "target", "--socket", SOCK, "--json"] + list(args), capture_output=True, text=True,
                         timeout=20)
    if out.returncode != 0:
        fail("isthmus target %s: %s" % (" ".join(args), out.stderr.strip()))
    return json.loads(out.stdout) if out.stdout.strip() else None


def sessions():
    return {s["tsih"]: s for s in cli("session", "list") if s["initiator_iqn"] == pdu_abuse.INITIATOR}


def isid(n):
    return bytes([0x40, 0, 0, 0x7e, 0, n])


def login(n, tsih=0, cid=0):
    reply = {}
    try:
        sock = pdu_abuse.login(HOST, PORT, TARGET, isid=isid(n), tsih=tsih, cid=cid, ops=OPS, reply=reply)
    except (RuntimeError, OSError) as e:
        fail("login ISID %u TSIH %u CID %u: %s" % (n, tsih, cid, e))
    return sock, reply["_tsih"]


def wait_for(what, cond, secs=10):
    end = time.time() + secs
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    fail("%s: not within %d s" % (what, secs))


socks = {}
tsihs = {}
for n in range(4):
    s, t = login(n)
    socks[(n, 0)] = s
    tsihs[n] = t
have = sessions()
loops = {n: have[tsihs[n]]["loop"] for n in range(4)}
if len(set(loops.values())) < 4:
    fail("four sessions should be on four loops (the least loaded each time): %s" % loops)
ok("four sessions on loops %s" % sorted(loops.values()))

for n in range(4):
    s, t = login(n, tsih=tsihs[n], cid=1)
    if t != tsihs[n]:
        fail("the second connection of TSIH %u got TSIH %u" % (tsihs[n], t))
    socks[(n, 1)] = s
have = sessions()
for n in range(4):
    sess = have[tsihs[n]]
    if sess["current_connections"] != 2 or sess["loop"] != loops[n]:
        fail("TSIH %u: %s connection(s) on loop %s, want 2 on loop %u" %
             (tsihs[n], sess["current_connections"], sess["loop"], loops[n]))
per_loop = {l["id"]: l["connections"] for l in cli("stats")["loops"]}
for n in range(4):
    if per_loop.get(loops[n], 0) < 2:
        fail("loop %u serves %s connection(s), want its session's two: %s" % (loops[n], per_loop.get(loops[n]), per_loop))
ok("a second connection of each session joined it on its loop (connections per loop %s)" % per_loop)

# Reinstatement across loops: the new leading login lands on the least loaded loop first.
victim = next(n for n in range(4) if loops[n] != 0)
s, t = login(victim)
if t == tsihs[victim]:
    fail("reinstatement kept TSIH %u" % t)
have = wait_for("the reinstated session TSIH %u to end" % tsihs[victim],
                lambda: (lambda h: h if tsihs[victim] not in h else None)(sessions()))
if t not in have or have[t]["loop"] != loops[victim]:
    fail("the reinstating session TSIH %u should be on loop %u: %s" % (t, loops[victim], have.get(t)))
for c in (0, 1):
    socks.pop((victim, c)).close()
socks[(victim, 0)] = s
tsihs[victim] = t
ok("ISID %u reinstated on loop %u: TSIH %u replaced the old session" % (victim, loops[victim], t))

def login_pdu(sock, flags, n, tsih, keys, itt):
    text = b"\0".join(k.encode() for k in keys) + b"\0"
    rest = struct.pack(">HH", 1, 0) + struct.pack(">II", 0, 0) + b"\0" * 16
    hdr = bytearray(pdu_abuse.bhs(0x03, flags=flags, immediate=True, dlen=len(text), itt=itt, rest=rest))
    hdr[8:14] = isid(n)
    hdr[14:16] = struct.pack(">H", tsih)
    sock.sendall(bytes(hdr) + pdu_abuse.pad(text))
    rh, _ = pdu_abuse.recv_pdu(sock)
    if rh is None:
        fail("the target closed the connection during a split login")
    return rh[36], rh[37]


def split_join(n, tsih):
    """CID 1 joins TSIH tsih, InitiatorName only in the second (continued) PDU; the status."""
    sock = socket.create_connection((HOST, PORT), timeout=5)
    try:
        st = login_pdu(sock, 0x40, n, tsih, ["TargetName=" + TARGET, "SessionType=Normal"], 7)
        if st != (0, 0):
            return st
        st = login_pdu(sock, 0x81, n, tsih, ["InitiatorName=" + pdu_abuse.INITIATOR, "AuthMethod=None"], 7)
        if st != (0, 0):
            return st
        return login_pdu(sock, 0x87, n, tsih, ["MaxConnections=4", "HeaderDigest=None", "DataDigest=None"], 7)
    finally:
        sock.close()


# A new connection goes to the least loaded loop; make that one other than the session's.
away = next(n for n in range(4) if loops[n] != 0 and n != victim)
st = split_join(away, tsihs[away])
if st != (0x03, 0x01):
    fail("a split join of TSIH %u (loop %u) from another loop got status 0x%02x%02x, want 0x0301" %
         (tsihs[away], loops[away], st[0], st[1]))
if sessions()[tsihs[away]]["current_connections"] != 2:
    fail("TSIH %u lost a connection to a refused join" % tsihs[away])
ok("a join whose first PDU does not name the initiator, on another loop, is answered 0x0301")

# session kill of the session on the highest loop
top = max(range(4), key=lambda n: loops[n])
cli("session", "kill", str(tsihs[top]), "--grace", "0")
wait_for("killed TSIH %u to end" % tsihs[top], lambda: tsihs[top] not in sessions())
ok("session kill ended TSIH %u on loop %u" % (tsihs[top], loops[top]))
for s in socks.values():
    s.close()
