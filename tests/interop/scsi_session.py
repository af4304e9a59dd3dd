#!/usr/bin/env python3
"""Hold one iSCSI session open and run SCSI commands read from standard input (test helper).

Usage: scsi_session.py HOST PORT TARGET [--initiator IQN] [--isid HEX] [--discovery]
Commands, one per line: "tur LUN", "rc16 LUN", "reportluns", "sendtargets", "quit".
Each answer is one line: "status=0xNN key=K asc=A ascq=Q [data=HEX]" (sense fields when CHECK
CONDITION). Unit attentions are reported, not retried: the tests look for them. "ready" is printed
once logged in.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
import scsi_cmd  # noqa: E402


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def discovery_login(host, port, isid):
    import socket
    sock = socket.create_connection((host, port), timeout=5)
    keys = ["InitiatorName=" + pdu_abuse.INITIATOR, "SessionType=Discovery", "AuthMethod=None"]
    text = b"\0".join(k.encode() for k in keys) + b"\0"
    rest = struct.pack(">HH", 0, 0) + struct.pack(">II", 0, 0) + b"\0" * 16
    hdr = bytearray(pdu_abuse.bhs(0x03, flags=0x81, immediate=True, dlen=len(text), rest=rest))
    hdr[8:14] = isid
    sock.sendall(bytes(hdr) + pdu_abuse.pad(text))
    rh, _ = pdu_abuse.recv_pdu(sock)
    if rh is None or rh[36] != 0:
        raise SystemExit("discovery login failed")
    ops = b"HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=65536\0"
    hdr = bytearray(pdu_abuse.bhs(0x03, flags=0x87, immediate=True, dlen=len(ops), rest=rest))
    hdr[8:14] = isid
    sock.sendall(bytes(hdr) + pdu_abuse.pad(ops))
    rh, _ = pdu_abuse.recv_pdu(sock)
    if rh is None or rh[36] != 0:
        raise SystemExit("discovery login (operational) failed")
    return sock


def main():
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    pdu_abuse.INITIATOR = arg("--initiator", "iqn.2026-11.org.isthmus:probe")
    isid = bytes.fromhex(arg("--isid", "400000000099"))
    if "--discovery" in sys.argv:
        sock = discovery_login(host, port, isid)
    else:
        sock = pdu_abuse.login(host, port, target, isid=isid)
    sock.settimeout(10)
    print("ready", flush=True)
    cmdsn = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "sendtargets":
            text = b"SendTargets=All\0"
            rest = struct.pack(">III", 0xFFFFFFFF, cmdsn, 0) + b"\0" * 16
            sock.sendall(pdu_abuse.bhs(0x04, 0x80, False, 0, len(text), b"\0" * 8, cmdsn + 1, rest) + pdu_abuse.pad(text))
            cmdsn += 1
            h, d = pdu_abuse.recv_pdu(sock)
            print("text=" + (d or b"").replace(b"\0", b";").decode(), flush=True)
            continue
        lun = int(words[1]) if len(words) > 1 else 0
        if words[0] == "tur":
            cdb, n = bytes(6), 0
        elif words[0] == "rc16":
            cdb, n = bytes([0x9E, 0x10] + [0] * 11 + [32, 0, 0]), 32
        elif words[0] == "reportluns":
            cdb, n = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]), 1024
        else:
            print("error=unknown command", flush=True)
            continue
        status, data, sense = scsi_cmd.run(sock, lun, cdb, b"", n, cmdsn, cmdsn + 1)
        cmdsn += 1
        out = "status=0x%02x" % status
        if sense:
            fixed = (sense[0] & 0x7F) in (0x70, 0x71)
            key = sense[2] & 0x0F if fixed else sense[1] & 0x0F
            asc, ascq = (sense[12], sense[13]) if fixed else (sense[2], sense[3])
            out += " key=0x%x asc=0x%02x ascq=0x%02x" % (key, asc, ascq)
        if data:
            out += " data=" + data.hex()
        print(out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
