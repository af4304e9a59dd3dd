#!/usr/bin/env python3
"""Two task management requests of two sessions on two loops, one aborted WRITE in slowfs (test
helper, raw PDUs).

Usage: threads_tmf_slow.py HOST PORT TARGET CLI SOCKET SLOWFS_LOG TARGET_LOG SLOW_WRITES_FLAG

Session A holds a WRITE of LUN 0 in slowfs (SLOW_WRITES_FLAG created) and sends ABORT TASK for
it without waiting; once the target log shows the request taken, session B, on the other loop,
sends LOGICAL UNIT RESET of LUN 0. Checks: B's response (function complete) comes only after the
write has left slowfs, then A's does too, and no SCSI Response comes for the aborted write.
"""
import json
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
import scsi_session  # noqa: E402
from check_report import fail, ok  # noqa: E402

HOST, PORT, TARGET, CLI, SOCK, SLOWFS_LOG, TARGET_LOG, FLAG = sys.argv[1:9]
PORT = int(PORT)
pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:threads-tmf-slow"


def count(what):
    with open(SLOWFS_LOG, errors="replace") as f:
        return sum(1 for line in f if what in line)


def wait_for(cond, secs, what):
    deadline = time.monotonic() + secs
    while not cond():
        if time.monotonic() > deadline:
            fail("%s within %d s" % (what, secs))
        time.sleep(0.02)


class Sess:
    def __init__(self, n):
        self.sock, self.tsih, self.tasks = scsi_session.r2t_session(HOST, PORT, TARGET,
                                                                    bytes([0x40, 0, 0, 0x7d, 0, n]), 15)
        self.cmdsn = 0
        for _ in range(5):  # the power-on unit attention first
            itt = self.tasks.command(0, bytes(6), 0, False, self.cmdsn)
            self.cmdsn += 1
            h, _ = self.tasks.next_pdu(itt, self.cmdsn)
            if h[3] == 0:
                break


def main():
    a, b = Sess(1), Sess(2)
    out = subprocess.run([CLI, "target", "--socket", SOCK, "--json", "session", "list"], capture_output=True,
                         text=True, timeout=20)
    if out.returncode != 0:
        fail("isthmus target session list: " + out.stderr.strip())
    loops = {s["tsih"]: s["loop"] for s in json.loads(out.stdout)}
    if loops.get(a.tsih) is None or loops.get(a.tsih) == loops.get(b.tsih):
        fail("sessions A and B are on loops %s and %s, not on two" % (loops.get(a.tsih), loops.get(b.tsih)))
    ok("session A on loop %d, session B on loop %d" % (loops[a.tsih], loops[b.tsih]))

    open(FLAG, "w").close()
    started, done = count("write start"), count("write done")
    line = a.tasks.write(0, 2048, 4096, a.cmdsn)
    a.cmdsn += 1
    if not line.startswith("r2t "):
        fail("WRITE of LUN 0: %s (expected an R2T)" % line)
    itt = int(line.split("itt=")[1].split()[0])
    a.tasks.send_data(itt)
    wait_for(lambda: count("write start") > started, 10, "the WRITE did not reach slowfs")

    with open(TARGET_LOG, "rb") as f:
        mark = len(f.read())

    def taken():
        with open(TARGET_LOG, "rb") as f:
            return b"task management function 1 from" in f.read()[mark:]

    tag = 0x7A000001
    rest = struct.pack(">IIIII", itt, a.cmdsn, 0, itt - 1, 0) + b"\0" * 8
    a.sock.sendall(pdu_abuse.bhs(0x02, 0x80 | 0x01, True, 0, 0, bytes(8), tag, rest))
    wait_for(taken, 10, "the target did not log A's ABORT TASK")
    if count("write done") != done:
        fail("the WRITE left slowfs before LOGICAL UNIT RESET was sent: the check proves nothing")

    t0 = time.monotonic()
    rsp = b.tasks.tmf(0x05, 0, b.cmdsn)
    left = count("write done") > done
    if "response=0x00" not in rsp:
        fail("LOGICAL UNIT RESET from B: " + rsp)
    if not left:
        fail("LOGICAL UNIT RESET from B answered after %d ms while the WRITE it aborted was still in slowfs" %
             int((time.monotonic() - t0) * 1000))
    ok("LOGICAL UNIT RESET from B (the other loop) answered after %d ms, once the WRITE A's ABORT TASK aborted "
       "had left slowfs" % int((time.monotonic() - t0) * 1000))
    h, _ = a.tasks.next_pdu(tag, a.cmdsn)
    if (h[0] & 0x3F) != 0x22 or h[2] != 0:
        fail("A's ABORT TASK: opcode 0x%02x response 0x%02x" % (h[0] & 0x3F, h[2]))
    os.unlink(FLAG)
    got = a.tasks.quiet(itt, 0.5, a.cmdsn)
    if "pdus=0" not in got:
        fail("PDUs came for the aborted WRITE: " + got)
    ok("A's ABORT TASK answered function complete; no response for the aborted WRITE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
