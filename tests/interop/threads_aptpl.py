#!/usr/bin/env python3
"""APTPL registrations from sessions on several event loops at once (test helper).

Usage: threads_aptpl.py HOST PORT TARGET CLI SOCK write|check
  write: N sessions (one initiator, N ISIDs) logged in together, on at least two loops (their
         "loop" in `session list`); each changes its key ROUNDS times with PERSISTENT RESERVE OUT
         REGISTER, APTPL set, all sessions at once; then session 0 reserves (WRITE EXCLUSIVE,
         REGISTRANTS ONLY). Every command must be GOOD and READ KEYS must list the last keys.
  check: a fresh session reads the keys and the reservation back: exactly what write left.
Prints one "ok: ..." line per check; exits 1 with the reason otherwise.
"""
import json
import os
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
import scsi_cmd  # noqa: E402

N, ROUNDS = 6, 15
HOST, PORT, TARGET, CLI, SOCK, PHASE = sys.argv[1:7]
pdu_abuse.INITIATOR = "iqn.2026-12.org.isthmus:aptpl-loops"


def die(why):
    print("FAIL: " + why)
    sys.exit(1)


def key_of(i, r):
    return 0xA0000000 + (i << 8) + r


class Session:
    def __init__(self, n):
        self.sock = pdu_abuse.login(HOST, int(PORT), TARGET, isid=bytes.fromhex("4000000a%04x" % n))
        self.sock.settimeout(20)
        self.cmdsn = 0

    def cmd(self, cdb, out=b"", in_len=0):
        for _ in range(5):
            self.cmdsn += 1
            status, data, sense = scsi_cmd.run(self.sock, 0, cdb, out, in_len, self.cmdsn - 1, self.cmdsn)
            if status == 0x02 and scsi_cmd.sense_of(sense) and scsi_cmd.sense_of(sense)[0] == 0x06:
                continue  # unit attention: the command did not run
            return status, data, sense
        return status, data, sense

    def prout(self, sa, typ, key, sark):
        param = struct.pack(">QQ", key, sark) + bytes([0, 0, 0, 0, 0x01, 0, 0, 0])  # APTPL: byte 20 bit 0
        return self.cmd(bytes([0x5F, sa, typ, 0, 0, 0, 0, 0, 24, 0]), param)

    def keys(self):
        status, data, _ = self.cmd(bytes([0x5E, 0, 0, 0, 0, 0, 0, 0x10, 0, 0]), in_len=4096)
        if status != 0:
            die("READ KEYS: status 0x%02x" % status)
        n = struct.unpack(">I", data[4:8])[0]
        return sorted(struct.unpack(">Q", data[8 + i:16 + i])[0] for i in range(0, n, 8))

    def reservation(self):
        status, data, _ = self.cmd(bytes([0x5E, 1, 0, 0, 0, 0, 0, 0x10, 0, 0]), in_len=4096)
        if status != 0:
            die("READ RESERVATION: status 0x%02x" % status)
        if struct.unpack(">I", data[4:8])[0] < 16:
            return None
        return struct.unpack(">Q", data[8:16])[0], data[21] & 0x0F


want_keys = sorted(key_of(i, ROUNDS - 1) for i in range(N))

if PHASE == "write":
    sessions = [Session(n) for n in range(N)]
    out = subprocess.run([CLI, "target", "--socket", SOCK, "--json", "session", "list"], capture_output=True,
                         text=True, timeout=20)
    loops = {s["loop"] for s in json.loads(out.stdout) if s["initiator_iqn"] == pdu_abuse.INITIATOR}
    if len(loops) < 2:
        die("the %d sessions are not on several loops: %s" % (N, sorted(loops)))
    print("ok: %d sessions on loops %s" % (N, sorted(loops)))
    errors = []

    def changes(i):
        s = sessions[i]
        for r in range(ROUNDS):
            status, _, sense = s.prout(0x00, 0, key_of(i, r - 1) if r else 0, key_of(i, r))
            if status != 0:
                errors.append("session %d round %d: status 0x%02x sense %s" % (i, r, status, sense.hex()))
                return

    threads = [threading.Thread(target=changes, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        die("; ".join(errors))
    print("ok: %d REGISTER commands with APTPL from every loop at once, all GOOD" % (N * ROUNDS))
    status, _, _ = sessions[0].prout(0x01, 5, key_of(0, ROUNDS - 1), 0)
    if status != 0:
        die("RESERVE: status 0x%02x" % status)
    got = sessions[1].keys()
    if got != want_keys:
        die("READ KEYS after the changes: %s, want %s" % ([hex(k) for k in got], [hex(k) for k in want_keys]))
    print("ok: RESERVE GOOD, READ KEYS lists the %d last keys" % N)
    for s in sessions:
        s.sock.close()
else:
    s = Session(N + 1)
    got = s.keys()
    if got != want_keys:
        die("READ KEYS after the restart: %s, want %s" % ([hex(k) for k in got], [hex(k) for k in want_keys]))
    rsv = s.reservation()
    if rsv != (key_of(0, ROUNDS - 1), 5):
        die("READ RESERVATION after the restart: %s, want key %#x type 5" % (rsv, key_of(0, ROUNDS - 1)))
    print("ok: after the restart the %d keys and the reservation (type 5, session 0's key) are back" % N)
    s.sock.close()
