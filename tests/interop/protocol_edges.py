#!/usr/bin/env python3
"""Raw-PDU checks of two protocol edges of the target (RFC 7143).

Usage: protocol_edges.py HOST PORT TARGET_IQN CASE
  rejected-cmdsn  a non-immediate SCSI command the target rejects still takes its CmdSN: the
                  commands numbered after it run (rejected one in order, behind a held command,
                  and ahead of the expected CmdSN)
  login-t-and-c   a Login Request with both T and C set is answered with a Login Response of
                  status 0x0200 (initiator error) before the connection closes

Prints one line per check; exits 0 when every check holds, 1 otherwise.
"""
import socket
import struct
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from pdu_abuse import bhs, login, pad, recv_pdu  # noqa: E402

OP_SCSI_CMD, OP_LOGIN_REQ = 0x01, 0x03
OP_SCSI_RSP, OP_LOGIN_RSP, OP_REJECT = 0x21, 0x23, 0x3F
WAIT_S = 3.0


def scsi_cmd(itt, cmdsn, cdb, read=False, edtl=0, data=b""):
    flags = 0x80 | (0x40 if read else 0) | 0x01  # F, R, SIMPLE
    rest = struct.pack(">III", edtl, cmdsn, 0) + cdb.ljust(16, b"\0")
    return bhs(OP_SCSI_CMD, flags=flags, itt=itt, dlen=len(data), rest=rest) + pad(data)


def tur(itt, cmdsn):
    return scsi_cmd(itt, cmdsn, b"\x00" * 6)


def bad_read(itt, cmdsn):
    """READ (10) of one block carrying 512 bytes of immediate data: only writes may carry any
    (RFC 7143 10.3), so the target rejects it."""
    return scsi_cmd(itt, cmdsn, b"\x28" + b"\0" * 6 + b"\x00\x01" + b"\0", read=True, edtl=512, data=b"\xab" * 512)


def collect(sock, want_itts, secs=WAIT_S):
    """Reads PDUs until every ITT in want_itts has a SCSI Response or secs pass; returns
    {itt: status} and the number of Rejects seen."""
    got, rejects = {}, 0
    deadline = time.monotonic() + secs
    while set(want_itts) - set(got) and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            h, _ = recv_pdu(sock)
        except socket.timeout:
            break
        if h is None:
            break
        op = h[0] & 0x3F
        if op == OP_REJECT:
            rejects += 1
        elif op == OP_SCSI_RSP:
            got[struct.unpack(">I", h[16:20])[0]] = h[3]
    return got, rejects


def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what)
    return ok


def rejected_cmdsn(host, port, iqn):
    good = True
    sock = login(host, port, iqn, isid=b"\x40\x00\x0e\x0d\x0e\x01")
    # 1. The rejected command is the expected one (CmdSN 0); the next must run.
    sock.sendall(bad_read(0x10, 0) + tur(0x11, 1))
    got, rej = collect(sock, [0x11])
    good &= check(rej >= 1, "a READ carrying immediate data (CmdSN 0) is rejected")
    good &= check(0x11 in got, "TEST UNIT READY with CmdSN 1 after the rejected CmdSN 0 is answered")
    # 2. A command waits for CmdSN 2; the rejected command is CmdSN 2: the held one must run.
    sock.sendall(tur(0x12, 3))
    time.sleep(0.2)
    sock.sendall(bad_read(0x13, 2))
    got, rej = collect(sock, [0x12])
    good &= check(0x12 in got, "TEST UNIT READY with CmdSN 3, held behind a rejected CmdSN 2, is answered")
    # 3. The rejected command is ahead of the expected CmdSN (5 while 4 is expected): once 4
    #    arrives, 6 must not wait for 5.
    sock.sendall(bad_read(0x14, 5))
    time.sleep(0.2)
    sock.sendall(tur(0x15, 4) + tur(0x16, 6))
    got, rej = collect(sock, [0x15, 0x16])
    good &= check(0x15 in got and 0x16 in got,
                  "TEST UNIT READY with CmdSN 4 and 6 around a rejected CmdSN 5 are both answered")
    sock.close()
    return good


def login_t_and_c(host, port, iqn):
    sock = socket.create_connection((host, port), timeout=WAIT_S)
    keys = ["InitiatorName=iqn.2026-11.org.isthmus:edges", "TargetName=" + iqn, "SessionType=Normal",
            "AuthMethod=None"]
    text = b"\0".join(k.encode() for k in keys) + b"\0"
    rest = struct.pack(">HH", 0, 0) + struct.pack(">II", 0, 0) + b"\0" * 16
    # T=1, C=1, CSG=0 (security), NSG=1 (operational).
    hdr = bytearray(bhs(OP_LOGIN_REQ, flags=0x80 | 0x40 | 0x01, immediate=True, dlen=len(text), itt=0x77, rest=rest))
    hdr[8:14] = b"\x40\x00\x0e\x0d\x0e\x02"
    sock.sendall(bytes(hdr) + pad(text))
    try:
        h, _ = recv_pdu(sock)
    except (socket.timeout, ConnectionResetError):
        h = None
    closed = False
    if h is not None:
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
    sock.close()
    if not check(h is not None, "a Login Request with T and C both set gets a PDU back before the close"):
        return False
    good = check(h[0] & 0x3F == OP_LOGIN_RSP, "the answer is a Login Response (opcode 0x%02x)" % (h[0] & 0x3F))
    good &= check((h[36], h[37]) == (0x02, 0x00),
                  "its status is 0x0200, initiator error (got 0x%02x%02x)" % (h[36], h[37]))
    good &= check(struct.unpack(">I", h[16:20])[0] == 0x77, "it carries the request's ITT")
    good &= check(h[1] & 0xC0 == 0, "it has neither T nor C set")
    good &= check(closed, "the target closes the connection after it")
    return good


def main():
    host, port, iqn, case = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cases = {"rejected-cmdsn": rejected_cmdsn, "login-t-and-c": login_t_and_c}
    sys.exit(0 if cases[case](host, port, iqn) else 1)


if __name__ == "__main__":
    main()
