#!/usr/bin/env python3
"""Reservations and COMPARE AND WRITE through two gateways of one group, each running several
event loops, over raw PDUs (test helper).

Usage: threads_gateway.py HOST:PORT1 HOST:PORT2 TARGET CLI SOCKET1 SOCKET2

Four sessions (one initiator, four ISIDs: four I_T nexuses) log in to each gateway and land on
different loops of it ("loop" in `session list`). Checks, each printed as "ok: ..." (a failure
exits 1 with "FAIL: ..."), with the exact SPC-4 / SBC-3 outcome:
  - registrations through sessions on loops other than 0 of both gateways are in READ KEYS
    through every session, also when eight sessions ask at once
  - an EXCLUSIVE ACCESS reservation of a nexus of gateway 1: an unregistered nexus of gateway 2
    gets RESERVATION CONFLICT for READ, WRITE and PERSISTENT RESERVE OUT RESERVE; a registered
    non-holder of gateway 2 for READ; the holder reads and writes
  - PREEMPT through gateway 2: the preempted holder gets REGISTRATIONS PREEMPTED (2Ah/05h), then
    RESERVATION CONFLICT; the new holder writes; READ RESERVATION names it on both gateways
  - COMPARE AND WRITE through a session on a loop other than 0 of each gateway: a match writes
    (GOOD, the new data is read back through the other gateway), a mismatch gets MISCOMPARE
    (0Eh, 1Dh/00h) and writes nothing
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
from check_report import fail, ok  # noqa: E402

HP = [sys.argv[1], sys.argv[2]]
TARGET, CLI = sys.argv[3], sys.argv[4]
SOCKS = [sys.argv[5], sys.argv[6]]
pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:threads-gw"
PER_GW = 4
GOOD, CHECK, CONFLICT = 0x00, 0x02, 0x18


class Sess:
    def __init__(self, gw, n):
        self.gw, self.n = gw, n
        self.isid = bytes([0x40, 0, 0, 0x7d, gw, n])
        host, port = HP[gw].rsplit(":", 1)
        reply = {}
        self.sock = pdu_abuse.login(host, int(port), TARGET, isid=self.isid, reply=reply)
        self.sock.settimeout(30)
        self.tsih = reply["_tsih"]
        self.cmdsn = 0
        self.loop = None

    def name(self):
        return "gateway %d session %d (loop %d)" % (self.gw + 1, self.n, self.loop)

    def run(self, cdb, out=b"", in_len=0):
        """(status, data, sense) of one command; every command waits for its answer."""
        status, data, sense = scsi_cmd.run(self.sock, 0, cdb, out, in_len, self.cmdsn, self.cmdsn + 1)
        self.cmdsn += 1
        return status, data, sense

    def settle(self):
        """TEST UNIT READY until GOOD: the attentions a new nexus starts with are taken."""
        for _ in range(10):
            status, _, sense = self.run(bytes(6))
            if status == GOOD:
                return
            if status != CHECK or sense_key(sense) != 0x6:
                fail("%s: TEST UNIT READY: status 0x%02x %s" % (self.name(), status, sense.hex()))
        fail("%s: attentions do not end" % self.name())


def sense_key(sense):
    if len(sense) < 3:
        return None
    return sense[2] & 0x0F if (sense[0] & 0x7F) in (0x70, 0x71) else sense[1] & 0x0F


def asc_ascq(sense):
    if (sense[0] & 0x7F) in (0x70, 0x71):
        return sense[12], sense[13]
    return sense[2], sense[3]


def info_field(sense):
    if (sense[0] & 0x7F) in (0x70, 0x71):
        return struct.unpack(">I", sense[3:7])[0]
    i = 8
    while i + 1 < len(sense):
        if sense[i] == 0x00:
            return struct.unpack(">Q", sense[i + 4:i + 12])[0]
        i += 2 + sense[i + 1]
    return None


def prout(s, sa, rtype, key, sark):
    cdb = bytes([0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0])
    return s.run(cdb, struct.pack(">QQ", key, sark) + bytes(8))


def read_keys(s):
    status, data, sense = s.run(bytes([0x5E, 0, 0, 0, 0, 0, 0, 0x10, 0, 0]), in_len=4096)
    if status != GOOD:
        fail("%s: READ KEYS: status 0x%02x %s" % (s.name(), status, sense.hex()))
    gen, n = struct.unpack(">II", data[:8])
    return gen, sorted(struct.unpack(">Q", data[8 + 8 * i:16 + 8 * i])[0] for i in range(n // 8))


def read_reservation(s):
    status, data, sense = s.run(bytes([0x5E, 1, 0, 0, 0, 0, 0, 0x10, 0, 0]), in_len=4096)
    if status != GOOD:
        fail("%s: READ RESERVATION: status 0x%02x %s" % (s.name(), status, sense.hex()))
    if struct.unpack(">I", data[4:8])[0] == 0:
        return None
    return struct.unpack(">Q", data[8:16])[0], data[21] & 0x0F


def rw(s, write, lba, data=b""):
    op = 0x2A if write else 0x28
    cdb = bytes([op, 0]) + struct.pack(">I", lba) + bytes([0, 0, 1, 0])
    return s.run(cdb, data, 0 if write else 512)


def caw(s, lba, verify, new):
    cdb = bytes([0x89, 0]) + struct.pack(">Q", lba) + bytes([0, 0, 0, 1, 0, 0])
    return s.run(cdb, verify + new)


def expect(what, got, status, key=None, asc=None):
    st, _, sense = got
    if st != status:
        fail("%s: status 0x%02x (sense %s), expected 0x%02x" % (what, st, sense.hex(), status))
    if key is not None and (sense_key(sense) != key or asc_ascq(sense) != asc):
        fail("%s: sense %s, expected key 0x%x asc/ascq %02x/%02x" % (what, sense.hex(), key, asc[0], asc[1]))


def cli(sock, *args):
    out = subprocess.run([CLI, "target", "--socket", sock, "--json"] + list(args), capture_output=True, text=True,
                         timeout=20)
    if out.returncode != 0:
        fail("isthmus target %s: %s" % (" ".join(args), out.stderr.strip()))
    return json.loads(out.stdout)


def main():
    sess = [[Sess(gw, n) for n in range(PER_GW)] for gw in range(2)]
    for gw in range(2):
        loops = {s["tsih"]: s["loop"] for s in cli(SOCKS[gw], "session", "list")
                 if s["initiator_iqn"] == pdu_abuse.INITIATOR}
        for s in sess[gw]:
            s.loop = loops.get(s.tsih)
            if s.loop is None:
                fail("gateway %d does not list the session with TSIH %d" % (gw + 1, s.tsih))
        used = sorted({s.loop for s in sess[gw]})
        if len(used) < 3:
            fail("gateway %d put its %d sessions on loops %s only" % (gw + 1, PER_GW, used))
        ok("gateway %d: %d sessions on loops %s" % (gw + 1, PER_GW, ",".join(map(str, used))))
        for s in sess[gw]:
            s.settle()
        # Loop 0 runs the record's cycle: the reservation sessions are the ones elsewhere.
        sess[gw].sort(key=lambda s: s.loop == 0)
    a1, b1, u1 = sess[0][0], sess[0][1], sess[0][2]
    a2, b2, u2 = sess[1][0], sess[1][1], sess[1][2]
    if 0 in (a1.loop, b1.loop, a2.loop, b2.loop):
        fail("no two sessions of a gateway on loops other than 0")

    # Registrations from loops other than 0 of both gateways.
    expect(a1.name() + " REGISTER", prout(a1, 0x00, 0, 0, 0xA1), GOOD)
    expect(a2.name() + " REGISTER", prout(a2, 0x00, 0, 0, 0xA2), GOOD)
    expect(b2.name() + " REGISTER", prout(b2, 0x00, 0, 0, 0xB2), GOOD)
    want = [0xA1, 0xA2, 0xB2]
    for s in sess[0] + sess[1]:
        gen, keys = read_keys(s)
        if keys != want or gen != 3:
            fail("%s: READ KEYS gives generation %d keys %s, expected 3 and %s" %
                 (s.name(), gen, [hex(k) for k in keys], [hex(k) for k in want]))
    ok("three registrations through loops %d, %d (gateway 1) and %d (gateway 2) are in READ KEYS "
       "through all eight sessions (generation 3)" % (a1.loop, a2.loop, b2.loop))

    # READ KEYS through every session at once: the cycles of both gateways hand commands to
    # every loop at the same time.
    results = {}

    def many(s):
        results[(s.gw, s.n)] = [read_keys(s) for _ in range(5)]
    threads = [threading.Thread(target=many, args=(s,)) for s in sess[0] + sess[1]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        if t.is_alive():
            fail("READ KEYS from eight sessions at once did not end within 60 s")
    if len(results) != 8 or any(r != (3, want) for rs in results.values() for r in rs):
        fail("READ KEYS from eight sessions at once: %s" % results)
    ok("40 READ KEYS from all eight sessions at once: every one GOOD with the three keys")

    # EXCLUSIVE ACCESS held by a nexus of gateway 1.
    expect(a1.name() + " RESERVE (exclusive access)", prout(a1, 0x01, 3, 0xA1, 0), GOOD)
    for s in (u2, a2, b1):
        got = read_reservation(s)
        if got != (0xA1, 3):
            fail("%s: READ RESERVATION gives %s, expected key 0xa1 type 3" % (s.name(), got))
    expect(u2.name() + " (unregistered) READ", rw(u2, False, 0), CONFLICT)
    expect(u2.name() + " (unregistered) WRITE", rw(u2, True, 0, bytes(512)), CONFLICT)
    expect(u2.name() + " (unregistered) PR OUT RESERVE", prout(u2, 0x01, 3, 0, 0), CONFLICT)
    expect(a2.name() + " (registered, not the holder) READ", rw(a2, False, 0), CONFLICT)
    expect(a1.name() + " (holder) WRITE", rw(a1, True, 8, b"\xa1" * 512), GOOD)
    expect(a1.name() + " (holder) READ", rw(a1, False, 8), GOOD)
    ok("EXCLUSIVE ACCESS of %s: RESERVATION CONFLICT for the unregistered nexus's READ, WRITE and "
       "RESERVE and for a registered non-holder's READ on gateway 2; the holder reads and writes" % a1.name())

    # PREEMPT through gateway 2.
    expect(b2.name() + " PREEMPT 0xa1", prout(b2, 0x04, 3, 0xB2, 0xA1), GOOD)
    expect(a1.name() + " (preempted) TEST UNIT READY", a1.run(bytes(6)), CHECK, 0x6, (0x2A, 0x05))
    expect(a1.name() + " (preempted) WRITE", rw(a1, True, 8, bytes(512)), CONFLICT)
    expect(b2.name() + " (new holder) WRITE", rw(b2, True, 8, b"\xb2" * 512), GOOD)
    for s in (a1, u2):
        got = read_reservation(s)
        if got != (0xB2, 3):
            fail("%s: READ RESERVATION gives %s after PREEMPT, expected key 0xb2 type 3" % (s.name(), got))
    gen, keys = read_keys(b1)
    if keys != [0xA2, 0xB2]:
        fail("%s: READ KEYS after PREEMPT gives %s" % (b1.name(), [hex(k) for k in keys]))
    ok("PREEMPT through %s: the preempted holder on gateway 1 gets 2Ah/05h, then RESERVATION CONFLICT; "
       "the new holder writes; both gateways report it" % b2.name())
    expect(b2.name() + " CLEAR", prout(b2, 0x03, 0, 0xB2, 0), GOOD)
    for s in sess[0] + sess[1]:
        s.settle()  # RESERVATIONS PREEMPTED / RELEASED for the registrants

    # COMPARE AND WRITE through a loop other than 0 of each gateway.
    old = b"\x11" * 512
    expect(b1.name() + " WRITE", rw(b1, True, 100, old), GOOD)
    for s, other in ((b1, a2), (b2, a1)):
        new = bytes([0x30 + s.gw]) * 512
        expect("%s COMPARE AND WRITE (match)" % s.name(), caw(s, 100, old, new), GOOD)
        st, data, _ = rw(other, False, 100)
        if st != GOOD or data != new:
            fail("%s: READ after the COMPARE AND WRITE gives status 0x%02x data %s..." %
                 (other.name(), st, data[:4].hex()))
        wrong = old[:200] + b"\x99" + old[201:]
        got = caw(s, 100, wrong, bytes(512))
        expect("%s COMPARE AND WRITE (mismatch)" % s.name(), got, CHECK, 0xE, (0x1D, 0x00))
        # The offset of the first difference comes from the cluster (rbd_io.c), not checked here.
        st, data, _ = rw(other, False, 100)
        if st != GOOD or data != new:
            fail("%s: the mismatched COMPARE AND WRITE wrote: %s..." % (other.name(), data[:4].hex()))
        ok("COMPARE AND WRITE through %s: a match writes (read back on gateway %d), a mismatch gets "
           "MISCOMPARE (INFORMATION %s) and writes nothing" % (s.name(), other.gw + 1, info_field(got[2])))
        old = new
    for s in sess[0] + sess[1]:
        s.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
