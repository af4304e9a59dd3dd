#!/usr/bin/env python3
"""Long medium operations against a large LU, while another session keeps reading (test helper).

Usage: scsi_limits.py HOST PORT TARGET
LUN 0 must be a large sparse LU with 4096-byte blocks, LUN 1 a small one. Session A runs each
long command on LUN 0: WRITE SAME of 1 GiB of a pattern, EXTENDED COPY of that 1 GiB elsewhere,
VERIFY of the whole LU (its 2 GiB of data and its holes), SANITIZE (block erase). Meanwhile session B reads LUN 1 over and over
and times every READ. For each command one line:
  "op=NAME status=0xNN secs=S reads=N median_ms=M max_ms=X [sense=K/ASC/ASCQ]"
then a check line per result ("check NAME ok" or "check NAME FAIL why"). Limits come first:
  "limit NAME ok|FAIL ..."
Exit status 0 when every check passed.
"""
import os
import statistics
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
import scsi_cmd  # noqa: E402

BS = 4096
WS_MAX = (1 << 30) // BS          # MAXIMUM WRITE SAME LENGTH, in 4096-byte blocks
SEG_MAX = (32 << 20) // BS        # MAXIMUM SEGMENT LENGTH, in blocks
WS_LBA = 1 << 20                  # where the pattern goes (4 GiB in)
COPY_LBA = 3 << 20                # where it is copied to (12 GiB in)
failures = []


class Session:
    def __init__(self, host, port, target, isid):
        pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:limits"
        self.sock = pdu_abuse.login(host, port, target, isid=bytes.fromhex(isid))
        self.sock.settimeout(300)
        self.cmdsn = 0

    def cmd(self, lun, cdb, out=b"", in_len=0):
        for _ in range(5):
            status, data, sense = scsi_cmd.run(self.sock, lun, cdb, out, in_len, self.cmdsn, self.cmdsn + 1)
            self.cmdsn += 1
            if not (status == 0x02 and len(sense) > 2 and (sense[2] & 0x0F) == 0x06):
                return status, data, sense
        return status, data, sense


def sense_str(sense):
    if len(sense) < 14:
        return "-"
    return "%x/%02x/%02x" % (sense[2] & 0x0F, sense[12], sense[13])


def check(name, ok, why=""):
    print("check %s %s%s" % (name, "ok" if ok else "FAIL", "" if ok else " " + why), flush=True)
    if not ok:
        failures.append(name)


def limit(name, ok, why=""):
    print("limit %s %s%s" % (name, "ok" if ok else "FAIL", "" if ok else " " + why), flush=True)
    if not ok:
        failures.append(name)


def read16(lun, lba, blocks):
    return bytes([0x88, 0]) + struct.pack(">QI", lba, blocks) + b"\0\0"


def ws16(lba, blocks, flags=0):
    return bytes([0x93, flags]) + struct.pack(">QI", lba, blocks) + b"\0\0"


def reader(sess, stop, started, lat, lun0_probe):
    """Session B: READs of LUN 1 until told to stop; once the long command has been sent, one
    READ of LUN 0 too, when asked."""
    cdb = read16(1, 0, 8)
    while not stop.is_set():
        t0 = time.monotonic()
        status, _, _ = sess.cmd(1, cdb, in_len=8 * 512)
        lat.append((time.monotonic() - t0) * 1000)
        if status != 0:
            lat.append(1e9)  # counts as a failure
        if lun0_probe is not None and not lun0_probe and started.is_set():
            lun0_probe.append(sess.cmd(0, read16(0, 0, 1), in_len=BS))
        time.sleep(0.01)


def timed(a, b, name, lun, cdb, out=b"", probe_lun0=False):
    """Runs cdb on session A while session B reads; prints and returns (status, sense)."""
    stop, started, lat = threading.Event(), threading.Event(), []
    probe = [] if probe_lun0 else None
    th = threading.Thread(target=reader, args=(b, stop, started, lat, probe))
    th.start()
    time.sleep(0.2)  # B is reading before the long command starts
    t0 = time.monotonic()
    started.set()
    status, _, sense = a.cmd(lun, cdb, out)
    secs = time.monotonic() - t0
    stop.set()
    th.join()
    during = lat[:]  # reads that overlapped (a few before start, fine)
    med = statistics.median(during) if during else -1
    mx = max(during) if during else -1
    print("op=%s status=0x%02x secs=%.2f reads=%d median_ms=%.1f max_ms=%.1f sense=%s"
          % (name, status, secs, len(during), med, mx, sense_str(sense)), flush=True)
    # The loop kept answering: no READ of the other LU waited anywhere near as long as the command.
    check(name + "-status", status == 0, "status 0x%02x sense %s" % (status, sense_str(sense)))
    check(name + "-responsive", mx < 1500 and mx < max(500, secs * 1000 / 2),
          "a READ of LUN 1 waited %.0f ms while the command took %.1f s" % (mx, secs))
    return status, sense, probe


def naa(a, lun):
    _, page, _ = a.cmd(lun, bytes([0x12, 0x01, 0x83, 0x00, 0xFF, 0x00]), in_len=255)
    return page[4:24]


def xcopy_list(desig, segs, inline=0):
    td = bytearray(32)
    td[0] = 0xE4
    td[4:24] = desig
    td[29:32] = BS.to_bytes(3, "big")
    sd = b"".join(struct.pack(">BBHHHHHQQ", 0x02, 0, 24, 0, 0, 0, n, s, d) for n, s, d in segs)
    hdr = struct.pack(">BBHIII", 0, 0x18, 32, 0, len(sd), inline)
    return hdr + bytes(td) + sd + b"\0" * inline


def xcopy_cdb(plist):
    return bytes([0x83, 0] + [0] * 8) + struct.pack(">I", len(plist)) + b"\0\0"


def limits(a, desig):
    _, vpd, _ = a.cmd(0, bytes([0x12, 0x01, 0xB0, 0x00, 0xFF, 0x00]), in_len=255)
    mwsl = struct.unpack(">Q", vpd[36:44])[0]
    limit("max-write-same-length", mwsl == WS_MAX, "VPD B0h says %d" % mwsl)
    blk = b"\x5a" * BS
    st, _, sense = a.cmd(0, ws16(0, WS_MAX + 1), blk)
    limit("write-same-over-max", st == 2 and sense_str(sense) == "5/24/00", "0x%02x %s" % (st, sense_str(sense)))
    st, _, sense = a.cmd(0, ws16(0, 0, 0x08), blk)  # UNMAP, 0 blocks: the whole LU
    limit("write-same-0-blocks", st == 2 and sense_str(sense) == "5/24/00", "0x%02x %s" % (st, sense_str(sense)))
    _, rcr, _ = a.cmd(0, bytes([0x84, 0x03] + [0] * 8) + struct.pack(">I", 64) + b"\0\0", in_len=64)
    seg, inline = struct.unpack(">II", rcr[16:24])
    limit("copy-operating-parameters", seg == 32 << 20 and inline == 0, "segment %d inline %d" % (seg, inline))
    pl = xcopy_list(desig, [(SEG_MAX + 1, 0, COPY_LBA)])
    st, _, sense = a.cmd(0, xcopy_cdb(pl), pl)
    limit("copy-segment-over-max", st == 2 and sense_str(sense) == "5/26/00", "0x%02x %s" % (st, sense_str(sense)))
    pl = xcopy_list(desig, [(8, 0, COPY_LBA)], inline=16)
    st, _, sense = a.cmd(0, xcopy_cdb(pl), pl)
    limit("copy-inline-data", st == 2 and sense_str(sense) == "5/26/0b", "0x%02x %s" % (st, sense_str(sense)))


def main():
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    a = Session(host, port, target, "400000000101")
    b = Session(host, port, target, "400000000102")
    _, cap, _ = a.cmd(0, bytes([0x9E, 0x10] + [0] * 11 + [32, 0, 0]), in_len=32)
    blocks = struct.unpack(">Q", cap[:8])[0] + 1
    if struct.unpack(">I", cap[8:12])[0] != BS:
        raise SystemExit("LUN 0 must have 4096-byte blocks")
    desig = naa(a, 0)
    limits(a, desig)

    # WRITE SAME (16) of one pattern over MAXIMUM WRITE SAME LENGTH blocks.
    pattern = bytes((i * 7 + 1) & 0xFF for i in range(BS))
    timed(a, b, "write-same", 0, ws16(WS_LBA, WS_MAX), pattern)
    ok = True
    for lba in (WS_LBA, WS_LBA + WS_MAX // 2 + 3, WS_LBA + WS_MAX - 1):
        _, data, _ = a.cmd(0, read16(0, lba, 1), in_len=BS)
        ok = ok and data == pattern
    _, data, _ = a.cmd(0, read16(0, WS_LBA + WS_MAX, 1), in_len=BS)
    check("write-same-data", ok and data == b"\0" * BS, "pattern missing or written past the range")

    # EXTENDED COPY of that 1 GiB, 32 segments of 32 MiB, to COPY_LBA.
    segs = [(SEG_MAX, WS_LBA + i * SEG_MAX, COPY_LBA + i * SEG_MAX) for i in range(WS_MAX // SEG_MAX)]
    pl = xcopy_list(desig, segs)
    timed(a, b, "extended-copy", 0, xcopy_cdb(pl), pl)
    ok = True
    for lba in (COPY_LBA, COPY_LBA + 123457, COPY_LBA + WS_MAX - 1):
        _, data, _ = a.cmd(0, read16(0, lba, 1), in_len=BS)
        ok = ok and data == pattern
    check("extended-copy-data", ok, "the copy differs from the source")

    # VERIFY (16), BYTCHK 0, the whole LU.
    timed(a, b, "verify", 0, bytes([0x8F, 0]) + struct.pack(">QI", 0, blocks) + b"\0\0")

    # SANITIZE, BLOCK ERASE: the LU reads as zeros afterwards; meanwhile it is not ready.
    _, _, probe = timed(a, b, "sanitize", 0, bytes([0x48, 0x02] + [0] * 8), probe_lun0=True)
    ok = True
    for lba in (WS_LBA, COPY_LBA + 5, blocks - 1):
        _, data, _ = a.cmd(0, read16(0, lba, 1), in_len=BS)
        ok = ok and data == b"\0" * BS
    check("sanitize-data", ok, "data left after SANITIZE")
    if probe:
        st, _, sense = probe[0]
        print("sanitize: READ of LUN 0 meanwhile: status 0x%02x sense %s" % (st, sense_str(sense)))
        check("sanitize-not-ready", st == 0 or sense_str(sense) == "2/04/1b",
              "status 0x%02x sense %s" % (st, sense_str(sense)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
