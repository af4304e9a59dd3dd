#!/usr/bin/env python3
"""ErrorRecoveryLevel 1 on the target, driven with raw PDUs over one connection with
HeaderDigest and DataDigest CRC32C (test helper).

Usage: erl1_target.py HOST PORT TARGET CASE [--stats-cmd CMD]
Cases:
  erl0        the target offers ErrorRecoveryLevel 0 (no max-error-recovery-level): a SNACK is
              rejected as not supported, nothing else changes
  snack       ERL 1: Data SNACK, Status SNACK, DataACK, R-Data SNACK
  digest      ERL 1: data digest errors on a command with immediate data and on Data-Out, and
              header digest errors on Data-Out and on a command, recovered on the same
              connection with nothing lost; two header digest errors in a row end the connection
With --stats-cmd, CMD (a shell command printing the target's session list as JSON) is run
before logout: the session must still have its one connection, with the digest errors and the
PDUs sent again counted there. Prints what it checks; exit status 0 when everything held.
"""
import json
import os
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402

_T = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _T.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return (c ^ 0xFFFFFFFF) & 0xFFFFFFFF


def digest(data):
    return struct.pack("<I", crc32c(data))


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def ok(msg):
    print("ok: " + msg)


class Conn:
    def __init__(self, sock, hd, dd):
        self.sock, self.hd, self.dd = sock, hd, dd
        self.cmdsn = 0  # the login request carried CmdSN 0 (immediate): the first command has it too
        self.expstatsn = 0
        self.itt = 0x100
        self.stash = []
        self.freeze = None  # an ExpStatSN to send instead of the real one (holds statuses unacknowledged)

    def send(self, hdr, data=b"", bad_header=False, bad_data=False):
        hdr = bytearray(hdr)
        struct.pack_into(">I", hdr, 28, self.expstatsn if self.freeze is None else self.freeze)
        out = bytes(hdr)
        if self.hd:
            d = bytearray(digest(bytes(hdr)))
            if bad_header:
                d[0] ^= 0x5A
            out += bytes(d)
        if data:
            p = pdu_abuse.pad(data)
            out += p
            if self.dd:
                d = bytearray(digest(p))
                if bad_data:
                    d[1] ^= 0xA5
                out += bytes(d)
        self.sock.sendall(out)

    def recv(self):
        if self.stash:
            return self.stash.pop(0)
        h = pdu_abuse.recv_exact(self.sock, 48)
        if h is None:
            return None, None
        if self.hd:
            d = pdu_abuse.recv_exact(self.sock, 4)
            if d != digest(h):
                fail("header digest of a PDU from the target is wrong")
        dlen = int.from_bytes(h[5:8], "big")
        data = b""
        if dlen:
            p = pdu_abuse.recv_exact(self.sock, (dlen + 3) // 4 * 4)
            if self.dd:
                d = pdu_abuse.recv_exact(self.sock, 4)
                if d != digest(p):
                    fail("data digest of a PDU from the target is wrong")
            data = p[:dlen]
        op = h[0] & 0x3F
        statsn = struct.unpack(">I", h[24:28])[0]
        if op in (0x21, 0x20, 0x22, 0x23, 0x26, 0x3F, 0x32) or (op == 0x25 and h[1] & 0x01):
            if ((statsn + 1 - self.expstatsn) & 0xFFFFFFFF) < 0x80000000:
                self.expstatsn = (statsn + 1) & 0xFFFFFFFF
        return h, data

    def next_itt(self):
        self.itt += 1
        return self.itt

    def scsi(self, cdb, edtl, read=False, write=False, imm=b"", final=True, itt=None, cmdsn=None, **kw):
        itt = itt if itt is not None else self.next_itt()
        if cmdsn is None:
            cmdsn = self.cmdsn
            self.cmdsn += 1
        flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 0x01
        rest = struct.pack(">III", edtl, cmdsn, 0) + cdb.ljust(16, b"\0")
        self.send(pdu_abuse.bhs(0x01, flags=flags, dlen=len(imm), itt=itt, rest=rest), imm, **kw)
        return itt, cmdsn

    def data_out(self, itt, ttt, datasn, offset, data, final, **kw):
        rest = struct.pack(">II", ttt, 0) + b"\0" * 8 + struct.pack(">II", datasn, offset) + b"\0" * 4
        self.send(pdu_abuse.bhs(0x05, flags=0x80 if final else 0, dlen=len(data), itt=itt, rest=rest), data, **kw)

    def snack(self, typ, itt, ttt, begrun, runlength):
        rest = struct.pack(">II", ttt, 0) + b"\0" * 12 + struct.pack(">II", begrun, runlength)
        self.send(pdu_abuse.bhs(0x10, flags=0x80 | typ, itt=itt, rest=rest))

    def nop(self):
        itt = self.next_itt()
        rest = struct.pack(">III", 0xFFFFFFFF, self.cmdsn, 0) + b"\0" * 16
        self.send(pdu_abuse.bhs(0x00, flags=0x80, immediate=True, itt=itt, rest=rest))
        while True:
            h, d = self.recv()
            if h is None:
                fail("connection closed waiting for a NOP-In")
            if h[0] & 0x3F == 0x20 and struct.unpack(">I", h[16:20])[0] == itt:
                return h

    def expect(self, what, pred, limit=64):
        for _ in range(limit):
            h, d = self.recv()
            if h is None:
                fail("connection closed waiting for " + what)
            if pred(h, d):
                return h, d
            if h[0] & 0x3F == 0x3F:
                fail("unexpected Reject (reason 0x%02x) waiting for %s" % (h[2], what))
        fail("no " + what)

    def read(self, lba, blocks):
        cdb = struct.pack(">BBQIBB", 0x88, 0, lba, blocks, 0, 0)
        itt, _ = self.scsi(cdb, blocks * 512, read=True)
        pdus = []
        while True:
            h, d = self.recv()
            if h is None:
                fail("connection closed during a read")
            op = h[0] & 0x3F
            if struct.unpack(">I", h[16:20])[0] != itt:
                self.stash.append((h, d))
                continue
            if op == 0x25:
                pdus.append((h, d))
                if h[1] & 0x01:
                    return itt, pdus, h
            elif op == 0x21:
                return itt, pdus, h
            else:
                fail("unexpected opcode 0x%02x during a read" % op)

    def write_cmd(self, lba, data, imm_len=0, **kw):
        cdb = struct.pack(">BBQIBB", 0x8A, 0, lba, len(data) // 512, 0, 0)
        return self.scsi(cdb, len(data), write=True, imm=data[:imm_len], final=True, **kw)

    def response(self, itt, what):
        h, d = self.expect(what, lambda h, d: h[0] & 0x3F == 0x21 and struct.unpack(">I", h[16:20])[0] == itt)
        if h[3] != 0 or h[2] != 0:
            fail("%s: status 0x%02x response 0x%02x" % (what, h[3], h[2]))
        return h


def login(host, port, target, erl):
    reply = {}
    sock = pdu_abuse.login(host, port, target, ops={"HeaderDigest": "CRC32C", "DataDigest": "CRC32C",
                                                     "ErrorRecoveryLevel": str(erl), "InitialR2T": "Yes",
                                                     "MaxBurstLength": "65536", "FirstBurstLength": "65536",
                                                     "MaxRecvDataSegmentLength": "8192"}, reply=reply)
    sock.settimeout(10)
    return Conn(sock, reply.get("HeaderDigest") == "CRC32C", reply.get("DataDigest") == "CRC32C"), reply


def pattern(n, seed):
    return bytes((i * 7 + seed + (i >> 9)) & 0xFF for i in range(n))


def dataset(pdus):
    return b"".join(d for _, d in sorted(pdus, key=lambda p: struct.unpack(">I", p[0][40:44])[0]))


def case_erl0(c, reply):
    if reply.get("ErrorRecoveryLevel") != "0":
        fail("target without max-error-recovery-level answered ErrorRecoveryLevel=%s" % reply.get("ErrorRecoveryLevel"))
    ok("ErrorRecoveryLevel=0 by default")
    itt, pdus, last = c.read(0, 16)
    if any(h[1] & 0x40 for h, _ in pdus):
        fail("A bit set at ERL 0")
    ok("no A bit on Data-In at ERL 0")
    c.snack(0, itt, 0xFFFFFFFF, 0, 0)
    h, _ = c.expect("Reject", lambda h, d: h[0] & 0x3F == 0x3F or True)
    if h[0] & 0x3F != 0x3F or h[2] != 0x05:
        fail("SNACK at ERL 0 not rejected as not supported")
    ok("SNACK at ERL 0: Reject, command not supported")


def case_snack(c, reply):
    if reply.get("ErrorRecoveryLevel") != "1":
        fail("ErrorRecoveryLevel=%s negotiated, not 1" % reply.get("ErrorRecoveryLevel"))
    ok("ErrorRecoveryLevel=1 negotiated")
    data = pattern(64 * 1024, 3)
    itt, _ = c.write_cmd(0, data, imm_len=0)
    off = 0
    while off < len(data):
        h, _ = c.expect("R2T", lambda h, d: h[0] & 0x3F == 0x31)
        ttt, r2toff, r2tlen = struct.unpack(">I", h[20:24])[0], *struct.unpack(">II", h[40:48])
        for o in range(r2toff, r2toff + r2tlen, 8192):
            n = min(8192, r2toff + r2tlen - o)
            c.data_out(itt, ttt, (o - r2toff) // 8192, o, data[o:o + n], o + n == r2toff + r2tlen)
        off = r2toff + r2tlen
    c.response(itt, "write response")
    ok("64 KiB written")

    # A bit and Data SNACK
    itt, pdus, last = c.read(0, 128)
    if len(pdus) != 8 or dataset(pdus) != data:
        fail("read of 64 KiB: %d Data-In, data %s" % (len(pdus), "equal" if dataset(pdus) == data else "differs"))
    if not last[1] & 0x40 or any(h[1] & 0x40 for h, _ in pdus[:-1]):
        fail("the A bit is not on the last Data-In only")
    ttt = struct.unpack(">I", last[20:24])[0]
    if ttt == 0xFFFFFFFF:
        fail("Data-In with the A bit has no Target Transfer Tag")
    read_statsn = struct.unpack(">I", last[24:28])[0]
    c.freeze = read_statsn  # the read's status stays unacknowledged until the end of this part
    ok("A bit on the last Data-In (TTT 0x%08x), status collapsed, StatSN %u" % (ttt, read_statsn))
    c.snack(0, itt, 0xFFFFFFFF, 2, 2)
    got = [c.expect("Data-In again", lambda h, d: h[0] & 0x3F == 0x25) for _ in range(2)]
    for (h, d), sn in zip(got, (2, 3)):
        if struct.unpack(">I", h[36:40])[0] != sn or d != pdus[sn][1] or struct.unpack(">I", h[40:44])[0] != sn * 8192:
            fail("Data SNACK: DataSN %u sent again wrong" % sn)
    ok("Data SNACK BegRun 2 RunLength 2: DataSN 2 and 3 sent again, same offsets and data")
    c.snack(0, itt, 0xFFFFFFFF, 7, 0)
    h, d = c.expect("last Data-In again", lambda h, d: h[0] & 0x3F == 0x25)
    if not h[1] & 0x01 or struct.unpack(">I", h[24:28])[0] != read_statsn or d != pdus[7][1]:
        fail("Data SNACK for the status-carrying Data-In: not the same PDU and StatSN")
    ok("Data SNACK BegRun 7: the last Data-In again with its status and StatSN %u" % read_statsn)

    # DataACK frees the data; the status stays until ExpStatSN passes it
    c.snack(2, 0xFFFFFFFF, ttt, 8, 0)
    c.snack(0, itt, 0xFFFFFFFF, 0, 0)
    h, _ = c.expect("Reject", lambda h, d: True)
    if h[0] & 0x3F != 0x3F or h[2] != 0x04:
        fail("Data SNACK after DataACK: opcode 0x%02x, not a Reject (protocol error)" % (h[0] & 0x3F))
    ok("DataACK: the read's Data-In let go (a Data SNACK for them is rejected, protocol error)")
    c.snack(1, 0xFFFFFFFF, 0, read_statsn, 1)
    h, _ = c.expect("status again", lambda h, d: h[0] & 0x3F == 0x21)
    if struct.unpack(">I", h[16:20])[0] != itt or struct.unpack(">I", h[24:28])[0] != read_statsn or h[3] != 0:
        fail("Status SNACK: not the read's status with StatSN %u" % read_statsn)
    ok("Status SNACK after DataACK: the read's status again as a SCSI Response, StatSN %u" % read_statsn)
    c.freeze = None

    # Status SNACK for a command's response, then ExpStatSN acknowledges it
    itt2, _ = c.scsi(b"\0" * 6, 0)
    h = c.response(itt2, "TEST UNIT READY")
    sn = struct.unpack(">I", h[24:28])[0]
    c.freeze = sn
    c.snack(1, 0xFFFFFFFF, 0, sn, 0)
    h, _ = c.expect("TUR status again", lambda h, d: h[0] & 0x3F == 0x21)
    if struct.unpack(">I", h[24:28])[0] != sn or struct.unpack(">I", h[16:20])[0] != itt2:
        fail("Status SNACK: StatSN %u not sent again as it was" % sn)
    ok("Status SNACK BegRun %u: the response again with the same StatSN" % sn)
    c.freeze = None
    c.nop()
    c.snack(1, 0xFFFFFFFF, 0, sn, 0)
    h, _ = c.expect("Reject", lambda h, d: True)
    if h[0] & 0x3F != 0x3F or h[2] != 0x04:
        fail("Status SNACK for an acknowledged StatSN not rejected")
    ok("Status SNACK for a StatSN that ExpStatSN acknowledged: Reject (protocol error)")

    # R-Data SNACK
    itt, pdus, last = c.read(8, 64)
    statsn = struct.unpack(">I", last[24:28])[0]
    c.freeze = statsn
    c.snack(3, itt, 0x5151, 0, 0)
    again = []
    while True:
        h, d = c.recv()
        if h is None:
            fail("closed during R-Data")
        if h[0] & 0x3F == 0x25:
            if h[1] & 0x01:
                fail("R-Data: status in a Data-In")
            again.append((h, d))
        elif h[0] & 0x3F == 0x21:
            break
        else:
            fail("R-Data: unexpected opcode 0x%02x" % (h[0] & 0x3F))
    if dataset(again) != data[4096:4096 + 32768]:
        fail("R-Data: the data sent again differs")
    if struct.unpack(">I", h[20:24])[0] != 0x5151 or struct.unpack(">I", h[24:28])[0] != statsn or h[3] != 0:
        fail("R-Data: SCSI Response without the SNACK Tag or with another StatSN")
    ok("R-Data SNACK: %d Data-In with the data, then a SCSI Response with SNACK Tag 0x5151 and StatSN %u"
       % (len(again), statsn))
    c.freeze = None


def write_solicited(c, itt, data, corrupt=None, lose=None):
    """Answer the R2Ts of write itt, 8 KiB per Data-Out; corrupt: data digest error on the Data-Out
    at that offset; lose: header digest error on it. Answers recovery R2Ts too. Returns
    (recovery R2Ts seen, Rejects seen)."""
    recov, rejects, sent_final = [], [], False
    r2t_end = 0
    while True:
        h, d = c.recv()
        if h is None:
            fail("connection closed during a write")
        op = h[0] & 0x3F
        if op == 0x3F:
            rejects.append(h[2])
            continue
        if op == 0x21 and struct.unpack(">I", h[16:20])[0] == itt:
            if h[3] != 0 or h[2] != 0:
                fail("write ended with status 0x%02x" % h[3])
            return recov, rejects
        if op != 0x31:
            fail("unexpected opcode 0x%02x during a write" % op)
        ttt = struct.unpack(">I", h[20:24])[0]
        r2toff, r2tlen = struct.unpack(">II", h[40:48])
        if r2toff < r2t_end:
            recov.append((r2toff, r2tlen))
        r2t_end = max(r2t_end, r2toff + r2tlen)
        for o in range(r2toff, r2toff + r2tlen, 8192):
            n = min(8192, r2toff + r2tlen - o)
            bad = corrupt == o and not recov
            lost = lose == o and not recov
            c.data_out(itt, ttt, (o - r2toff) // 8192, o, data[o:o + n], o + n == r2toff + r2tlen,
                       bad_data=bad, bad_header=lost)
        sent_final = True
    return recov, rejects


def case_digest(c, reply):
    if reply.get("ErrorRecoveryLevel") != "1" or reply.get("HeaderDigest") != "CRC32C":
        fail("ERL 1 with digests not negotiated: %s" % reply)
    ok("ErrorRecoveryLevel=1, HeaderDigest and DataDigest CRC32C")

    # data digest error on a command with immediate data: Reject, the command again, same CmdSN
    data = pattern(8192, 11)
    itt, cmdsn = c.write_cmd(100, data, imm_len=8192, bad_data=True)
    itt_next, _ = c.scsi(b"\0" * 6, 0)  # numbered after it: waits for the gap
    h, _ = c.expect("Reject", lambda h, d: h[0] & 0x3F == 0x3F)
    if h[2] != 0x02:
        fail("data digest error on a command: Reject reason 0x%02x, not 0x02" % h[2])
    ok("data digest error on a command with immediate data: Reject, data digest error")
    c.write_cmd(100, data, imm_len=8192, itt=itt, cmdsn=cmdsn)
    c.response(itt, "the command sent again")
    c.response(itt_next, "the command numbered after it")
    ok("the command sent again with the same CmdSN ran, and the one after it")
    _, pdus, _ = c.read(100, 16)
    if dataset(pdus) != data:
        fail("immediate data read back differs")
    ok("8 KiB read back")

    # a digest error on Data-Out: Reject (data digest) or the PDU skipped (header digest), and a
    # recovery R2T for the range lost; the last Data-Out lost shows no gap, the wait finds it
    for what, lba, seed, fault, want_rejects, gap, how in (
            ("data digest error on Data-Out at 16384", 200, 29, {"corrupt": 16384}, [0x02], 16384,
             "Reject, recovery R2T for 8192 bytes at 16384"),
            ("header digest error on Data-Out at 8192", 400, 47, {"lose": 8192}, [], 8192,
             "skipped, recovery R2T for the gap"),
            ("header digest error on the last Data-Out", 600, 53, {"lose": 57344}, [], 57344,
             "recovery R2T for it after the wait")):
        data = pattern(64 * 1024, seed)
        itt, _ = c.write_cmd(lba, data)
        recov, rejects = write_solicited(c, itt, data, **fault)
        if rejects != want_rejects or recov != [(gap, 8192)]:
            fail("%s: rejects %s, recovery R2Ts %s" % (what, rejects, recov))
        ok("%s: %s" % (what, how))
        _, pdus, _ = c.read(lba, 128)
        if dataset(pdus) != data:
            fail("%s: the data read back differs" % what)
        ok("64 KiB read back whole")

    # header digest error on a command: skipped; the initiator sends it again
    itt, cmdsn = c.scsi(b"\0" * 6, 0, bad_header=True)
    c.nop()
    ok("header digest error on a command: skipped, the connection still answers")
    c.scsi(b"\0" * 6, 0, itt=itt, cmdsn=cmdsn)
    c.response(itt, "TEST UNIT READY sent again")
    ok("the command sent again ran")


def stats_check(cmd, initiator):
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20)
    if out.returncode:
        fail("stats command failed: " + out.stderr)
    sessions = [s for s in json.loads(out.stdout) if s.get("initiator_iqn") == initiator]
    if len(sessions) != 1 or len(sessions[0]["connections"]) != 1:
        fail("expected one session with one connection: %s" % out.stdout[:400])
    st = sessions[0]["connections"][0]["stats"]
    return st


def main():
    host, port, target, case = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    stats_cmd = sys.argv[sys.argv.index("--stats-cmd") + 1] if "--stats-cmd" in sys.argv else None
    c, reply = login(host, port, target, 1)
    # The first command meets the unit attention a new nexus reports once.
    itt, _ = c.scsi(b"\0" * 6, 0)
    c.expect("the first response", lambda h, d: h[0] & 0x3F == 0x21 and struct.unpack(">I", h[16:20])[0] == itt)
    {"erl0": case_erl0, "snack": case_snack, "digest": case_digest}[case](c, reply)
    if stats_cmd:
        st = stats_check(stats_cmd, pdu_abuse.INITIATOR)
        print("target counters of the connection: digest_errors=%s pdus_resent=%s"
              % (st.get("digest_errors"), st.get("pdus_resent")))
        if case == "digest" and (st["digest_errors"] != 5 or st["pdus_resent"] < 3):
            fail("the connection's counters do not show the 5 digest errors and the recovery R2Ts")
        if case == "snack" and st["pdus_resent"] < 5:
            fail("the connection's counters do not show the PDUs sent again")
        ok("the same connection carried it all (target session list)")
    if case == "digest":
        # Two header digest errors in a row: the framing cannot be trusted, the connection ends.
        c.scsi(b"\0" * 6, 0, bad_header=True)
        c.scsi(b"\0" * 6, 0, bad_header=True)
        try:
            h, _ = c.recv()
        except (ConnectionResetError, socket.timeout):
            h = None
        if h is not None:
            fail("two header digest errors in a row: the connection stayed (opcode 0x%02x)" % (h[0] & 0x3F))
        ok("two header digest errors in a row: the connection ends")
    c.sock.close()
    print("PASS " + case)


if __name__ == "__main__":
    main()
