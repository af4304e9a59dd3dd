#!/usr/bin/env python3
"""Task management that reaches other sessions' tasks, on a target with several event loops
(test helper, raw PDUs).

Usage: threads_tmf.py HOST PORT TARGET CLI SOCKET

Four sessions (one initiator, four ISIDs) land on four loops ("loop" in `session list`). Each
round, sessions hold WRITEs open (the R2T came, the data is not sent), then one session sends a
task management request; once its response is in, every other session sends the data of its
held writes and listens: a write the request aborted gets nothing (RFC 7143: tasks of other
sessions are ended without a response, TAS 0), a write it did not reach completes GOOD. Checks,
each printed as "ok: ..." (a failure exits 1 with "FAIL: ..."):
  - LOGICAL UNIT RESET of LUN 0: the LUN 0 writes of the sessions on all four loops are aborted,
    a LUN 1 write is not; the other sessions get 29h/03h (BUS DEVICE RESET FUNCTION OCCURRED)
  - CLEAR TASK SET of LUN 0: the same, and the sessions that lost tasks get 2Fh/00h (COMMANDS
    CLEARED BY ANOTHER INITIATOR)
  - TARGET WARM RESET: the writes of both LUNs on every loop are aborted; the other sessions get
    29h/00h
"""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
import scsi_session  # noqa: E402
from check_report import fail, ok  # noqa: E402

HOST, PORT, TARGET, CLI, SOCK = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:threads-tmf"
NSESS = 4
QUIET = 1.5  # seconds a session listens for an answer that must not come


def fields(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


class Sess:
    def __init__(self, n):
        self.n = n
        self.sock, self.tsih, self.tasks = scsi_session.r2t_session(HOST, PORT, TARGET,
                                                                    bytes([0x40, 0, 0, 0x7c, 0, n]), 10)
        self.cmdsn = 0
        self.loop = None
        self.tag = 0x60000000 + (n << 16)

    def name(self):
        return "session %d (loop %d)" % (self.n, self.loop)

    def tur(self, lun):
        """(status, sense key, asc, ascq) of TEST UNIT READY."""
        itt = self.tasks.command(lun, bytes(6), 0, False, self.cmdsn)
        self.cmdsn += 1
        h, d = self.tasks.next_pdu(itt, self.cmdsn)
        if (h[0] & 0x3F) != 0x21:
            fail("%s: TEST UNIT READY answered by opcode 0x%02x" % (self.name(), h[0] & 0x3F))
        f = fields(self.tasks.describe(itt, h, d, 0))
        return (int(f["status"], 16), int(f.get("key", "0"), 16), int(f.get("asc", "0"), 16),
                int(f.get("ascq", "0"), 16))

    def settle(self, lun):
        for _ in range(10):
            if self.tur(lun)[0] == 0:
                return
        fail("%s: attentions of LUN %d do not end" % (self.name(), lun))

    def hold_write(self, lun, lba):
        """A WRITE(16) whose R2T came and whose data is not sent; its ITT."""
        line = self.tasks.write(lun, lba, 4096, self.cmdsn)
        self.cmdsn += 1
        if not line.startswith("r2t "):
            fail("%s: WRITE to LUN %d: %s (expected an R2T)" % (self.name(), lun, line))
        return int(fields(line)["itt"])

    def tmf(self, function, lun):
        """An immediate task management request; its response code."""
        self.tag += 1
        lun_field = bytes([0, lun]) + b"\0" * 6
        rest = struct.pack(">IIIII", 0xFFFFFFFF, self.cmdsn, 0, 0, 0) + b"\0" * 8
        self.sock.sendall(pdu_abuse.bhs(0x02, 0x80 | function, True, 0, 0, lun_field, self.tag, rest))
        h, _ = self.tasks.next_pdu(self.tag, self.cmdsn)
        if (h[0] & 0x3F) != 0x22:
            fail("%s: opcode 0x%02x answered the task management request" % (self.name(), h[0] & 0x3F))
        return h[2]

    def outcome(self, itt):
        """Sends the held write its data and listens: 'aborted' (nothing came) or its answer."""
        self.tasks.send_data(itt)
        got = fields(self.tasks.quiet(itt, QUIET, self.cmdsn))
        if got["pdus"] == "0":
            return "aborted"
        return "answered (opcodes %s)" % got["ops"]


def cli(*args):
    out = subprocess.run([CLI, "target", "--socket", SOCK, "--json"] + list(args), capture_output=True, text=True,
                         timeout=20)
    if out.returncode != 0:
        fail("isthmus target %s: %s" % (" ".join(args), out.stderr.strip()))
    return json.loads(out.stdout)


def round_(sess, asker, function, what, lun_of_tmf, writes, reached, ua):
    """writes: (session, lun) pairs to hold; reached(lun): whether the request aborts that LUN's
    tasks; ua: (asc, ascq) the other sessions get on LUN 0."""
    held = [(s, lun, s.hold_write(lun, 64 * s.n + 8 * lun)) for s, lun in writes]
    rsp = asker.tmf(function, lun_of_tmf)
    if rsp != 0:
        fail("%s from %s: response 0x%02x" % (what, asker.name(), rsp))
    for s, lun, itt in held:
        got = s.outcome(itt)
        want = "aborted" if reached(lun) else "answered (opcodes 0x21)"
        if got != want:
            fail("after %s from %s: the held WRITE to LUN %d of %s was %s, expected %s" %
                 (what, asker.name(), lun, s.name(), got, want))
    others = sorted({s.loop for s, lun, _ in held if s is not asker and reached(lun)})
    for s in sess:
        if s is asker:
            continue
        st = s.tur(0)
        if st != (0x02, 0x6, ua[0], ua[1]):
            fail("after %s: %s TEST UNIT READY of LUN 0 gives %s, expected CHECK CONDITION %02xh/%02xh" %
                 (what, s.name(), st, ua[0], ua[1]))
    for s in sess:
        s.settle(0)
        s.settle(1)
    ok("%s from %s: the held writes on loops %s aborted (no answer to their data)%s; the other sessions "
       "get %02xh/%02xh" % (what, asker.name(), ",".join(map(str, others)),
                            "" if all(reached(lun) for _, lun, _ in held) else ", the LUN 1 write completes",
                            ua[0], ua[1]))


def main():
    sess = [Sess(n) for n in range(NSESS)]
    loops = {s["tsih"]: s["loop"] for s in cli("session", "list") if s["initiator_iqn"] == pdu_abuse.INITIATOR}
    for s in sess:
        s.loop = loops.get(s.tsih)
        if s.loop is None:
            fail("the target does not list the session with TSIH %d" % s.tsih)
    if len({s.loop for s in sess}) != NSESS:
        fail("the sessions landed on loops %s, not on four" % [s.loop for s in sess])
    ok("four sessions on loops %s" % ",".join(str(s.loop) for s in sess))
    for s in sess:
        s.settle(0)
        s.settle(1)
    s0, s1, s2, s3 = sess

    round_(sess, s0, 5, "LOGICAL UNIT RESET of LUN 0", 0,
           [(s0, 0), (s1, 0), (s2, 0), (s3, 0), (s2, 1)], lambda lun: lun == 0, (0x29, 0x03))
    round_(sess, s1, 4, "CLEAR TASK SET of LUN 0", 0,
           [(s0, 0), (s2, 0), (s3, 0), (s3, 1)], lambda lun: lun == 0, (0x2F, 0x00))
    round_(sess, s2, 6, "TARGET WARM RESET", 0,
           [(s0, 0), (s1, 1), (s3, 0), (s3, 1)], lambda lun: True, (0x29, 0x00))
    for s in sess:
        s.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
