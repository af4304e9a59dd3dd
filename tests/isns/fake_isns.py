#!/usr/bin/env python3
"""A hostile iSNS server for tests: each accepted connection gets the next behaviour of a list.

  fake_isns.py HOST PORT MODE[,MODE...] LOG
  silent   read the request, never answer
  flood    answer the request with one endless message: a first PDU, then continuation PDUs of
           65532 bytes each with the request's function and transaction, until the client
           closes (at most 16 MiB, so a client without a bound is caught, not fed forever)
  garbage  answer with a PDU of iSNS version 2
The last mode repeats. LOG gets "listening" once ready, then one line per connection: mode and
bytes sent before the close.
"""
import socket
import struct
import sys
import threading

host, port, modes, log = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
FLOOD_MAX = 16 << 20


def read_request(c):
    hdr = b""
    while len(hdr) < 12:
        d = c.recv(12 - len(hdr))
        if not d:
            return None
        hdr += d
    ver, func, length, flags, xid, seq = struct.unpack(">HHHHHH", hdr)
    body = b""
    while len(body) < length:
        d = c.recv(length - len(body))
        if not d:
            return None
        body += d
    return func, xid


def serve(c, mode):
    sent = 0
    try:
        req = read_request(c)
        if req is None:
            return
        func, xid = req
        if mode == "silent":
            c.settimeout(30)
            while c.recv(4096):
                pass
        elif mode == "flood":
            chunk = b"\0" * 65532
            first = True
            seq = 0
            while sent < FLOOD_MAX:
                flags = 0x4000 | (0x0400 if first else 0)
                c.sendall(struct.pack(">HHHHHH", 1, func | 0x8000, len(chunk), flags, xid, seq) + chunk)
                sent += 12 + len(chunk)
                first = False
                seq = (seq + 1) & 0xFFFF
        elif mode == "garbage":
            c.sendall(struct.pack(">HHHHHH", 2, func | 0x8000, 4, 0x4C00, xid, 0) + b"\0\0\0\0")
            sent = 16
            c.settimeout(10)
            while c.recv(4096):
                pass
    except OSError:
        pass
    finally:
        with open(log, "a") as f:
            f.write(f"{mode} sent={sent}\n")
        c.close()


s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(8)
with open(log, "a") as f:
    f.write("listening\n")
n = 0
while True:
    c, _ = s.accept()
    mode = modes[min(n, len(modes) - 1)]
    n += 1
    threading.Thread(target=serve, args=(c, mode), daemon=True).start()
