#!/usr/bin/env python3
"""Send one raw SCSI command through a fresh iSCSI session (test helper).

Usage: scsi_cmd.py HOST PORT TARGET LUN CDB_HEX [--out DATA_HEX] [--in LEN] [--initiator IQN] [--isid HEX]
                  [--attr N]   (task attribute: 1 SIMPLE, the default; 2 ORDERED; 3 HEAD OF QUEUE)
Prints "status=0xNN" then, for data-in commands, "data=HEX"; with CHECK CONDITION "sense=HEX".
Unit attentions are retried (a new I_T nexus starts with one), up to 4 times.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402  (login and PDU framing helpers)


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def sense_of(sense):
    """(sense key, ASC, ASCQ) of fixed or descriptor sense data; None when there is none."""
    if not sense:
        return None
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F, sense[2], sense[3]
    return sense[2] & 0x0F, sense[12], sense[13]


def run(sock, lun, cdb, out, in_len, cmdsn, itt):
    flags = 0x80 | (0x40 if in_len else 0) | (0x20 if out else 0) | (int(arg("--attr", "1")) & 0x07)
    edtl = in_len if in_len else len(out)
    cdb = cdb + b"\0" * (16 - len(cdb))
    lun_field = bytes([0, lun]) + b"\0" * 6
    rest = struct.pack(">III", edtl, cmdsn, 0) + cdb
    hdr = pdu_abuse.bhs(0x01, flags, False, 0, len(out), lun_field, itt, rest)
    sock.sendall(hdr + pdu_abuse.pad(out))
    data = b""
    while True:
        h, d = pdu_abuse.recv_pdu(sock)
        if h is None:
            raise RuntimeError("connection closed")
        op = h[0] & 0x3F
        if op == 0x25:  # Data-In
            data += d
            if h[1] & 0x01:
                return h[3], data, b""
        elif op == 0x21:  # SCSI Response
            sense = d[2:2 + struct.unpack(">H", d[:2])[0]] if d else b""
            return h[3], data, sense
        elif op == 0x20:  # NOP-In ping: answer it
            ttt = h[20:24]
            if ttt != b"\xff\xff\xff\xff":
                rest = ttt + struct.pack(">II", cmdsn, 0) + b"\0" * 16
                sock.sendall(pdu_abuse.bhs(0x00, 0x80, True, 0, 0, h[8:16], 0xFFFFFFFF, rest))


def main():
    host, port, target, lun, cdb_hex = sys.argv[1:6]
    out = bytes.fromhex(arg("--out", ""))
    in_len = int(arg("--in", "0"))
    pdu_abuse.INITIATOR = arg("--initiator", "iqn.2026-11.org.isthmus:scsi-cmd")
    isid = bytes.fromhex(arg("--isid", "400000000001"))
    sock = pdu_abuse.login(host, int(port), target, isid=isid)
    sock.settimeout(10)
    cdb = bytes.fromhex(cdb_hex)
    for attempt in range(5):
        status, data, sense = run(sock, int(lun), cdb, out, in_len, attempt, attempt + 1)
        if status == 0x02 and len(sense) > 2 and (sense[2] & 0x0F) == 0x06:
            continue  # unit attention: the command did not run; send it again
        break
    print("status=0x%02x" % status)
    if data:
        print("data=" + data.hex())
    if sense:
        print("sense=" + sense.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
