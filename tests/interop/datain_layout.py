#!/usr/bin/env python3
"""Check the Data-In PDUs of reads against the file behind the LUN (test helper).

Usage: datain_layout.py HOST PORT TARGET LUN FILE --mrdsl N --maxburst N [--block 512]
Logs in offering MaxRecvDataSegmentLength=N and MaxBurstLength=N (DataDigest=None), then runs
the reads of CASES (several in flight at once, then one at a time) and checks for each: the data
equals FILE at that offset, every PDU's data length is at most MaxRecvDataSegmentLength, offsets
follow each other from 0, DataSN counts from 0, no PDU crosses a MaxBurstLength boundary, the F
bit ends every burst and nothing else, only the last PDU has the S bit, with GOOD status and the
residual (O or U flag and count) the EDTL calls for. Prints one line per read; exits 1 on the
first difference.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


# (LBA, blocks the CDB asks for, EDTL): EDTL past the CDB is an underflow, short of it an overflow.
KIB = 1024
CASES = [
    (7, 2048, 1024 * KIB),          # 1 MiB
    (0, 256, 128 * KIB),            # 128 KiB
    (3, 128, 64 * KIB),             # at the zero-copy threshold
    (9, 120, 60 * KIB),             # below it
    (11, 2048, 1024 * KIB + 4096),  # underflow: the initiator expects more than the CDB moves
    (13, 512, 128 * KIB),           # overflow: the CDB asks 256 KiB, the buffer takes 128 KiB
    (1, 1, 512),                    # one block
]


class Read:
    def __init__(self, itt, lba, blocks, edtl, bs):
        self.itt, self.lba, self.blocks, self.edtl, self.bs = itt, lba, blocks, edtl, bs
        self.pdus = []  # (flags, status, datasn, offset, residual, data)
        self.done = False


def send_read(sock, r, cmdsn, lun):
    cdb = struct.pack(">BBQIBB", 0x88, 0, r.lba, r.blocks, 0, 0)
    flags = 0x80 | 0x40 | 0x01  # F, R, SIMPLE
    lun_field = bytes([0, lun]) + b"\0" * 6
    rest = struct.pack(">III", r.edtl, cmdsn, 0) + cdb
    sock.sendall(pdu_abuse.bhs(0x01, flags, False, 0, 0, lun_field, r.itt, rest))


def collect(sock, reads, cmdsn):
    by_itt = {r.itt: r for r in reads}
    while not all(r.done for r in reads):
        h, d = pdu_abuse.recv_pdu(sock)
        if h is None:
            raise SystemExit("FAIL: connection closed")
        op = h[0] & 0x3F
        itt = struct.unpack(">I", h[16:20])[0]
        if op == 0x25:
            r = by_itt[itt]
            datasn, offset, residual = struct.unpack(">III", h[36:48])
            dlen = int.from_bytes(h[5:8], "big")
            if len(d) != dlen:
                raise SystemExit("FAIL: itt %d: short PDU" % itt)
            r.pdus.append((h[1], h[3], datasn, offset, residual, d))
            if h[1] & 0x01:
                r.done = True
        elif op == 0x20:  # NOP-In: a ping (the machine may be slow) is answered, as an initiator does
            ttt = h[20:24]
            if ttt != b"\xff\xff\xff\xff":
                rest = ttt + struct.pack(">II", cmdsn, 0) + b"\0" * 16
                sock.sendall(pdu_abuse.bhs(0x00, 0x80, True, 0, 0, h[8:16], 0xFFFFFFFF, rest))
        elif op == 0x21:
            raise SystemExit("FAIL: itt %d: SCSI Response (status 0x%02x) instead of status in Data-In" % (itt, h[3]))
        else:
            raise SystemExit("FAIL: unexpected opcode 0x%02x" % op)


def check(r, image, mrdsl, maxburst):
    moved = r.blocks * r.bs
    sent = min(moved, r.edtl)
    off = 0
    for i, (flags, status, datasn, offset, residual, d) in enumerate(r.pdus):
        last = i == len(r.pdus) - 1
        where = "itt %d PDU %d (offset %d, %d bytes)" % (r.itt, i, offset, len(d))
        if datasn != i:
            return "%s: DataSN %d" % (where, datasn)
        if offset != off:
            return "%s: offset, expected %d" % (where, off)
        if len(d) > mrdsl or not d:
            return "%s: data length over MaxRecvDataSegmentLength %d" % (where, mrdsl)
        end = off + len(d)
        if off // maxburst != (end - 1) // maxburst:
            return "%s: crosses a MaxBurstLength (%d) boundary" % (where, maxburst)
        burst_end = end % maxburst == 0 or end == sent
        if bool(flags & 0x80) != burst_end:
            return "%s: F bit %d where a burst %s" % (where, flags >> 7, "ends" if burst_end else "goes on")
        if bool(flags & 0x01) != last:
            return "%s: S bit %d" % (where, flags & 1)
        if last:
            want_flags, want_res = 0, 0
            if moved > r.edtl:
                want_flags, want_res = 0x04, moved - r.edtl
            elif moved < r.edtl:
                want_flags, want_res = 0x02, r.edtl - moved
            if status != 0 or flags & 0x06 != want_flags or residual != want_res:
                return "%s: status 0x%02x flags 0x%02x residual %d, expected GOOD, 0x%02x, %d" % (
                    where, status, flags & 0x06, residual, want_flags, want_res)
        base = r.lba * r.bs + off
        if d != image[base:base + len(d)]:
            return "%s: data differ from the file" % where
        off = end
    if off != sent:
        return "itt %d: %d bytes came, expected %d" % (r.itt, off, sent)
    return None


def main():
    host, port, target, lun, path = sys.argv[1:6]
    mrdsl, maxburst = int(arg("--mrdsl")), int(arg("--maxburst"))
    bs = int(arg("--block", "512"))
    with open(path, "rb") as f:
        image = f.read()
    reply = {}
    ops = {"MaxRecvDataSegmentLength": str(mrdsl), "MaxBurstLength": str(maxburst),
           "FirstBurstLength": str(min(maxburst, 65536)), "ErrorRecoveryLevel": "0"}
    sock = pdu_abuse.login(host, int(port), target, ops=ops, reply=reply)
    sock.settimeout(20)
    maxburst = int(reply.get("MaxBurstLength", maxburst))
    print("login: MaxRecvDataSegmentLength %d (ours), MaxBurstLength %d, DataDigest %s" % (
        mrdsl, maxburst, reply.get("DataDigest", "None")))
    cmdsn = 0  # the login carried CmdSN 0 as an immediate PDU: the first command takes it
    # TEST UNIT READY until GOOD: a new nexus first gets its unit attention (power on, reset).
    for _ in range(5):
        lun_field = bytes([0, int(lun)]) + b"\0" * 6
        rest = struct.pack(">III", 0, cmdsn, 0) + b"\0" * 16
        sock.sendall(pdu_abuse.bhs(0x01, 0x81, False, 0, 0, lun_field, 0x99, rest))
        cmdsn += 1
        h, _ = pdu_abuse.recv_pdu(sock)
        while h is not None and h[0] & 0x3F != 0x21:
            h, _ = pdu_abuse.recv_pdu(sock)
        if h is None:
            raise SystemExit("FAIL: connection closed during TEST UNIT READY")
        if h[3] == 0:
            break
    itt = 0x100
    # All in flight at once (their PDUs interleave on the wire), then each alone.
    for together in (True, False):
        reads = []
        for lba, blocks, edtl in CASES:
            reads.append(Read(itt, lba, blocks, edtl, bs))
            itt += 1
        batches = [reads] if together else [[r] for r in reads]
        for batch in batches:
            for r in batch:
                send_read(sock, r, cmdsn, int(lun))
                cmdsn += 1
            collect(sock, batch, cmdsn)
        for r in reads:
            err = check(r, image, mrdsl, maxburst)
            what = "READ(16) LBA %d, %d blocks, EDTL %d%s: %d PDUs" % (
                r.lba, r.blocks, r.edtl, " (in flight together)" if together else "", len(r.pdus))
            if err:
                print("FAIL: %s: %s" % (what, err))
                return 1
            print("ok: %s" % what)
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
