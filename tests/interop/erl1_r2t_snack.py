#!/usr/bin/env python3
"""R2T SNACK on the target (RFC 7143 11.16: Data/R2T SNACK for a write asks for its R2Ts again),
driven with raw PDUs over one connection with HeaderDigest and DataDigest CRC32C (test helper;
the connection and PDU helpers are erl1_target.py's).

Usage: erl1_r2t_snack.py HOST PORT TARGET CASE
Cases:
  r2t       ERL 1, InitialR2T=Yes, MaxBurstLength 16 KiB, MaxOutstandingR2T 4, writes of 64 KiB
            (four R2Ts each, R2TSN 0 to 3):
            - R2TSN 1 left unanswered, a SNACK (type 0, BegRun 1, RunLength 1, the write's ITT)
              brings the same R2T again (R2TSN, Target Transfer Tag, buffer offset, desired
              length); answering it ends the write GOOD and the data reads back
            - RunLength 0 from BegRun 1 brings R2TSN 1, 2 and 3 again, in order, as they were
            - a SNACK for R2TSN 7, never sent, is rejected (protocol error) and the write goes on
  r2t-erl0  a session at ErrorRecoveryLevel 0: the same R2T SNACK is rejected as not supported
Prints what it checks; exit status 0 when everything held.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import erl1_target as e  # noqa: E402
import pdu_abuse  # noqa: E402

REJECT_PROTOCOL_ERROR = 0x04
REJECT_NOT_SUPPORTED = 0x05
WRITE_LEN = 64 * 1024
BURST = 16 * 1024


def login(host, port, target, erl):
    reply = {}
    sock = pdu_abuse.login(host, port, target, ops={"HeaderDigest": "CRC32C", "DataDigest": "CRC32C",
                                                     "ErrorRecoveryLevel": str(erl), "InitialR2T": "Yes",
                                                     "ImmediateData": "No", "MaxBurstLength": str(BURST),
                                                     "FirstBurstLength": str(BURST), "MaxOutstandingR2T": "4",
                                                     "MaxRecvDataSegmentLength": "8192"}, reply=reply)
    sock.settimeout(10)
    c = e.Conn(sock, reply.get("HeaderDigest") == "CRC32C", reply.get("DataDigest") == "CRC32C")
    # The first command meets the unit attention a new nexus reports once.
    itt, _ = c.scsi(b"\0" * 6, 0)
    c.expect("the first response", lambda h, d: h[0] & 0x3F == 0x21 and struct.unpack(">I", h[16:20])[0] == itt)
    return c, reply


def r2t_fields(h):
    """ITT, Target Transfer Tag, R2TSN, buffer offset, desired length of an R2T."""
    return (struct.unpack(">I", h[16:20])[0], struct.unpack(">I", h[20:24])[0], *struct.unpack(">III", h[36:48]))


def is_r2t(itt):
    return lambda h, d: h[0] & 0x3F == 0x31 and struct.unpack(">I", h[16:20])[0] == itt


def r2ts(c, itt, n):
    return [r2t_fields(c.expect("R2T", is_r2t(itt))[0]) for _ in range(n)]


def answer(c, itt, data, r2t):
    _, ttt, _, off, length = r2t
    for o in range(off, off + length, 8192):
        k = min(8192, off + length - o)
        c.data_out(itt, ttt, (o - off) // 8192, o, data[o:o + k], o + k == off + length)


def start_write(c, lba, data):
    itt, _ = c.write_cmd(lba, data, imm_len=0)
    got = r2ts(c, itt, WRITE_LEN // BURST)
    if [r[2] for r in got] != list(range(WRITE_LEN // BURST)):
        e.fail("R2TSNs %s, not 0 to %d" % ([r[2] for r in got], WRITE_LEN // BURST - 1))
    return itt, got


def read_back(c, lba, data, what):
    _, pdus, _ = c.read(lba, len(data) // 512)
    if e.dataset(pdus) != data:
        e.fail(what + ": the data read back differs from what was written")


def write_finished(c, itt, data, answered, lba, what):
    """The R2Ts in answered given their data: the write ends GOOD and reads back whole."""
    for r in answered:
        answer(c, itt, data, r)
    c.response(itt, "the write " + what)
    read_back(c, lba, data, what)


def snack_rejected(c, itt, begrun, runlength, reason, what):
    """An R2T SNACK for itt answered by a Reject for that reason (what: the reason's name)."""
    c.snack(0, itt, 0xFFFFFFFF, begrun, runlength)
    h, _ = c.expect("a Reject", lambda h, d: h[0] & 0x3F in (0x3F, 0x31, 0x21))
    if h[0] & 0x3F != 0x3F or h[2] != reason:
        e.fail("R2T SNACK BegRun %d RunLength %d: opcode 0x%02x reason 0x%02x, not Reject %s"
               % (begrun, runlength, h[0] & 0x3F, h[2], what))


def case_r2t(c, reply):
    if reply.get("ErrorRecoveryLevel") != "1":
        e.fail("ErrorRecoveryLevel=%s negotiated, not 1" % reply.get("ErrorRecoveryLevel"))
    if reply.get("MaxOutstandingR2T") != "4" or reply.get("MaxBurstLength") != str(BURST):
        e.fail("MaxOutstandingR2T=%s MaxBurstLength=%s negotiated" % (reply.get("MaxOutstandingR2T"),
                                                                     reply.get("MaxBurstLength")))
    e.ok("ErrorRecoveryLevel=1, MaxOutstandingR2T=4, MaxBurstLength=%d: four R2Ts per 64 KiB write" % BURST)

    # RunLength 1: R2TSN 1 as if lost, asked for again.
    data = e.pattern(WRITE_LEN, 11)
    itt, got = start_write(c, 0, data)
    answer(c, itt, data, got[0])
    c.snack(0, itt, 0xFFFFFFFF, 1, 1)
    again = r2t_fields(c.expect("the R2T asked for again", is_r2t(itt))[0])
    if again != got[1]:
        e.fail("R2T SNACK BegRun 1 RunLength 1: got %s, first sent as %s" % (again, got[1]))
    e.ok("R2T SNACK BegRun 1 RunLength 1: R2TSN 1 again as sent (TTT 0x%08x, offset %d, length %d)"
         % (again[1], again[3], again[4]))
    write_finished(c, itt, data, [again] + got[2:], 0, "whose R2T was asked for again (RunLength 1)")
    e.ok("the write ended GOOD and reads back whole")

    # RunLength 0: everything from BegRun on.
    data = e.pattern(WRITE_LEN, 29)
    itt, got = start_write(c, 256, data)
    answer(c, itt, data, got[0])
    c.snack(0, itt, 0xFFFFFFFF, 1, 0)
    again = r2ts(c, itt, 3)
    if again != got[1:]:
        e.fail("R2T SNACK BegRun 1 RunLength 0: got %s, first sent as %s" % (again, got[1:]))
    e.ok("R2T SNACK BegRun 1 RunLength 0: R2TSN 1, 2 and 3 again as sent")
    write_finished(c, itt, data, again, 256, "whose R2Ts were asked for again (RunLength 0)")
    e.ok("the write ended GOOD and reads back whole")

    # An R2TSN the target never sent.
    data = e.pattern(WRITE_LEN, 47)
    itt, got = start_write(c, 512, data)
    snack_rejected(c, itt, 7, 1, REJECT_PROTOCOL_ERROR, "protocol error (R2TSN 7 was never sent)")
    e.ok("R2T SNACK for R2TSN 7, never sent: Reject, protocol error")
    write_finished(c, itt, data, got, 512, "after the rejected SNACK")
    e.ok("the write went on and reads back whole")


def case_r2t_erl0(c, reply):
    if reply.get("ErrorRecoveryLevel") != "0":
        e.fail("ErrorRecoveryLevel=%s negotiated, not 0" % reply.get("ErrorRecoveryLevel"))
    data = e.pattern(WRITE_LEN, 5)
    itt, got = start_write(c, 0, data)
    snack_rejected(c, itt, 1, 1, REJECT_NOT_SUPPORTED, "command not supported (ERL 0)")
    e.ok("R2T SNACK at ERL 0: Reject, command not supported")
    write_finished(c, itt, data, got, 0, "after the rejected SNACK (ERL 0)")
    e.ok("the write went on and reads back whole")


def main():
    host, port, target, case = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cases = {"r2t": (1, case_r2t), "r2t-erl0": (0, case_r2t_erl0)}
    erl, run = cases[case]
    c, reply = login(host, port, target, erl)
    run(c, reply)
    c.sock.close()
    print("PASS " + case)


if __name__ == "__main__":
    main()
