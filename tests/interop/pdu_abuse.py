#!/usr/bin/env python3
"""Send a target thousands of malformed, truncated and out-of-place iSCSI PDUs.

Usage: pdu_abuse.py HOST PORT TARGET_IQN [--seed N] [--pdus N]

Every connection logs in properly first where the case needs it, then misbehaves. The script
never waits for answers longer than a short timeout; it only checks that the target keeps
accepting connections (the caller then checks that a good client is still served).
"""
import random
import socket
import struct
import sys
import time

INITIATOR = "iqn.2026-11.org.isthmus:abuse"


def bhs(opcode, flags=0x80, immediate=False, ahs_words=0, dlen=0, lun=b"\0" * 8, itt=1, rest=b"\0" * 28):
    b0 = (opcode & 0x3F) | (0x40 if immediate else 0)
    hdr = struct.pack(">BBH", b0, flags, 0) + struct.pack(">B", ahs_words) + dlen.to_bytes(3, "big")
    hdr += lun + struct.pack(">I", itt) + rest
    assert len(hdr) == 48
    return hdr


def pad(data):
    return data + b"\0" * ((4 - len(data) % 4) % 4)


def recv_exact(sock, n):
    """n bytes from sock, or None when the peer closes first."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def text_keys(data):
    """The key=value pairs of a Login or Text data segment, as a dict of strings."""
    out = {}
    for kv in (data or b"").split(b"\0"):
        if b"=" in kv:
            k, v = kv.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


def recv_pdu(sock):
    hdr = recv_exact(sock, 48)
    if hdr is None:
        return None, None
    dlen = int.from_bytes(hdr[5:8], "big")
    data = recv_exact(sock, ((dlen + 3) // 4) * 4 + hdr[4] * 4)
    if data is None:
        return hdr, None
    return hdr, data[:dlen]


def login(host, port, target, isid=b"\x40\x00\x01\x02\x03\x04", tsih=0, cid=0, ops=None, reply=None):
    """Log in to a normal session. ops: operational keys to offer instead of (or besides) the
    defaults below, e.g. {"InitialR2T": "Yes"}; reply: a dict that receives the keys the target
    answered in the operational stage."""
    sock = socket.create_connection((host, port), timeout=3)
    keys = [
        "InitiatorName=" + INITIATOR,
        "TargetName=" + target,
        "SessionType=Normal",
        "AuthMethod=None",
    ]
    text = pad(b"\0".join(k.encode() for k in keys) + b"\0")
    rest = struct.pack(">HH", cid, 0) + struct.pack(">II", 0, 0) + b"\0" * 16
    hdr = bytearray(bhs(0x03, flags=0x81, immediate=True, dlen=len(text.rstrip(b"\0")) + 1, rest=rest))
    hdr[8:14] = isid
    hdr[14:16] = struct.pack(">H", tsih)
    sock.sendall(bytes(hdr) + text)
    rh, _ = recv_pdu(sock)
    if rh is None or rh[36] != 0:
        raise RuntimeError("security stage login failed")
    offer = {
        "HeaderDigest": "None",
        "DataDigest": "None",
        "MaxRecvDataSegmentLength": "8192",
        "InitialR2T": "No",
        "ImmediateData": "Yes",
    }
    offer.update(ops or {})
    ops = [k + "=" + v for k, v in offer.items()]
    text = pad(b"\0".join(k.encode() for k in ops) + b"\0")
    hdr = bytearray(bhs(0x03, flags=0x87, immediate=True, dlen=len(b"\0".join(k.encode() for k in ops)) + 1, rest=rest))
    hdr[8:14] = isid
    hdr[14:16] = struct.pack(">H", tsih)
    sock.sendall(bytes(hdr) + text)
    rh, rd = recv_pdu(sock)
    if rh is None or rh[36] != 0 or (rh[1] & 0x83) != 0x83:
        raise RuntimeError("operational stage login failed")
    if reply is not None:
        reply["_tsih"] = struct.unpack(">H", rh[14:16])[0]  # not a key: the session's TSIH
        reply.update(text_keys(rd))
    return sock


def random_pdu(rng, cmdsn):
    opcode = rng.choice([0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10, 0x03, 0x1C, 0x3F, 0x21, rng.randrange(64)])
    flags = rng.randrange(256)
    dlen = rng.choice([0, 0, 1, 3, 48, 512, 4096, 8192, rng.randrange(8193)])
    ahs_words = rng.choice([0, 0, 0, 1, 5, rng.randrange(64)]) if opcode == 0x01 else 0
    itt = rng.choice([rng.randrange(1 << 32), 0xFFFFFFFF, 1, 2])
    lun = rng.choice([b"\0" * 8, bytes([0, 1]) + b"\0" * 6, bytes(rng.randrange(256) for _ in range(8))])
    if opcode == 0x01:
        cdb = bytes(rng.randrange(256) for _ in range(16))
        if rng.random() < 0.6:
            cdb = bytes([rng.choice([0x00, 0x03, 0x12, 0x1A, 0x25, 0x28, 0x2A, 0x35, 0x41, 0x42, 0x88, 0x8A,
                                     0x89, 0x9E, 0xA0, 0x5A, 0x55, 0x15, 0x8F, 0x2F, 0x93, 0x5E, 0x5F, 0x83,
                                     0x84, 0xA3, 0x1B, 0x1E, 0x37, 0xB7, 0x48, 0x9C])]) + cdb[1:]
        edtl = rng.choice([0, 512, 4096, 65536, rng.randrange(1 << 20), 0xFFFFFFFF])
        rest = struct.pack(">III", edtl, cmdsn, 0) + cdb
    else:
        rest = bytes(rng.randrange(256) for _ in range(28))
        if rng.random() < 0.7:
            rest = rest[:4] + struct.pack(">I", cmdsn) + rest[8:]
    data = bytes(rng.randrange(256) for _ in range(min(dlen, 64))) + b"\0" * max(0, dlen - 64)
    if rng.random() < 0.2:
        data = b"key=value\0" * (dlen // 10) + b"\0" * (dlen % 10)
    ahs = bytes(rng.randrange(256) for _ in range(ahs_words * 4))
    if ahs_words and rng.random() < 0.5:
        ahs = struct.pack(">HBB", ahs_words * 4 - 3, rng.choice([1, 2, 3]), 0) + ahs[4:]
    return bhs(opcode, flags, rng.random() < 0.3, ahs_words, dlen, lun, itt, rest) + ahs + pad(data)


def drain(sock):
    sock.settimeout(0.05)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def main():
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else int(time.time())
    budget = int(sys.argv[sys.argv.index("--pdus") + 1]) if "--pdus" in sys.argv else 3000
    rng = random.Random(seed)
    print(f"seed {seed}, {budget} PDUs")
    sent = 0
    deadline = time.time() + 90
    cases = 0
    while sent < budget and time.time() < deadline:
        cases += 1
        kind = rng.randrange(6)
        try:
            if kind == 0:
                # Garbage before any login.
                s = socket.create_connection((host, port), timeout=2)
                s.sendall(bytes(rng.randrange(256) for _ in range(rng.choice([1, 47, 48, 100, 4000]))))
                sent += 1
            elif kind == 1:
                # A login request with an oversized or truncated data segment.
                s = socket.create_connection((host, port), timeout=2)
                hdr = bhs(0x03, flags=0x81, immediate=True, dlen=rng.choice([9000, 1 << 23, 100]))
                s.sendall(hdr + b"InitiatorName=x\0"[: rng.randrange(17)])
                sent += 1
            else:
                s = login(host, port, target, isid=bytes([0x40, 0, 0, 0, rng.randrange(256), rng.randrange(256)]))
                cmdsn = 0
                for _ in range(rng.randrange(5, 60)):
                    pdu = random_pdu(rng, cmdsn)
                    if rng.random() < 0.1:
                        pdu = pdu[: rng.randrange(len(pdu))]
                        s.sendall(pdu)
                        sent += 1
                        break
                    s.sendall(pdu)
                    cmdsn += 1
                    sent += 1
            drain(s)
            s.close()
        except (OSError, RuntimeError) as e:
            if isinstance(e, RuntimeError):
                print(f"case {cases}: {e}")
                return 1
    print(f"sent {sent} PDUs in {cases} connections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
