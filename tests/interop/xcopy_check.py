#!/usr/bin/env python3
"""EXTENDED COPY (LID1) between two LUNs of one target, checked by reading the copy back.

Usage: xcopy_check.py HOST PORT TARGET SRC_LUN DST_LUN
Writes 64 random blocks to SRC_LUN at LBA 8, copies them with one block-to-block segment to
DST_LUN at LBA 100 (copy targets named by the NAA designators of VPD page 0x83), reads DST_LUN
back and compares; also checks RECEIVE COPY RESULTS (operating parameters) answers.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
import scsi_cmd  # noqa: E402

BLOCKS, SRC_LBA, DST_LBA = 64, 8, 100
cmdsn = 0


def command(sock, lun, cdb, out=b"", in_len=0):
    global cmdsn
    for _ in range(5):
        status, data, sense = scsi_cmd.run(sock, lun, cdb, out, in_len, cmdsn, cmdsn + 1)
        cmdsn += 1
        if not (status == 0x02 and len(sense) > 2 and (sense[2] & 0x0F) == 0x06):
            break
    if status != 0:
        raise SystemExit("LUN %d CDB %s: status 0x%02x sense %s" % (lun, cdb.hex(), status, sense.hex()))
    return data


def naa_designator(sock, lun):
    page = command(sock, lun, bytes([0x12, 0x01, 0x83, 0x00, 0xFF, 0x00]), in_len=255)
    pos, end = 4, 4 + struct.unpack(">H", page[2:4])[0]
    while pos + 4 <= end:
        code_set, dtype, dlen = page[pos] & 0x0F, page[pos + 1] & 0x0F, page[pos + 3]
        assoc = (page[pos + 1] >> 4) & 0x03
        if dtype == 3 and assoc == 0:  # NAA, associated with the logical unit
            return page[pos:pos + 4 + dlen], code_set
        pos += 4 + dlen
    raise SystemExit("LUN %d has no NAA designator in VPD 0x83" % lun)


def target_descriptor(desig, block_size):
    d = bytearray(32)
    d[0] = 0xE4  # identification descriptor target descriptor
    d[1] = 0x00  # LU ID type 0, peripheral device type 0 (block)
    d[4:4 + len(desig)] = desig  # designation descriptor as VPD 0x83 gives it (at most 20 bytes)
    d[29:32] = block_size.to_bytes(3, "big")
    return bytes(d)


def main():
    host, port, target, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:xcopy"
    sock = pdu_abuse.login(host, port, target, isid=bytes.fromhex("400000000077"))
    sock.settimeout(15)
    cap = command(sock, src, bytes([0x9E, 0x10] + [0] * 11 + [32, 0, 0]), in_len=32)
    bs = struct.unpack(">I", cap[8:12])[0]
    payload = os.urandom(BLOCKS * bs)
    command(sock, src, struct.pack(">BBIBHB", 0x2A, 0, SRC_LBA, 0, BLOCKS, 0), out=payload)
    src_desig, _ = naa_designator(sock, src)
    dst_desig, _ = naa_designator(sock, dst)
    if src_desig == dst_desig:
        raise SystemExit("both LUNs report the same NAA designator")
    tds = target_descriptor(src_desig, bs) + target_descriptor(dst_desig, bs)
    seg = struct.pack(">BBHHHHHQQ", 0x02, 0, 24, 0, 1, 0, BLOCKS, SRC_LBA, DST_LBA)
    header = struct.pack(">BBHIII", 0, 0x18, len(tds), 0, len(seg), 0)
    plist = header + tds + seg
    cdb = bytes([0x83, 0x00] + [0] * 8) + struct.pack(">I", len(plist)) + bytes([0, 0])
    command(sock, src, cdb, out=plist)
    back = command(sock, dst, struct.pack(">BBIBHB", 0x28, 0, DST_LBA, 0, BLOCKS, 0), in_len=BLOCKS * bs)
    if back != payload:
        raise SystemExit("the copy on LUN %d differs from the source" % dst)
    # RECEIVE COPY RESULTS, OPERATING PARAMETERS (service action 3).
    params = command(sock, src, bytes([0x84, 0x03] + [0] * 8) + struct.pack(">I", 512) + bytes([0, 0]), in_len=512)
    if len(params) < 44:
        raise SystemExit("RECEIVE COPY RESULTS operating parameters too short: %d bytes" % len(params))
    print("ok: EXTENDED COPY of %d blocks from LUN %d to LUN %d verified" % (BLOCKS, src, dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
