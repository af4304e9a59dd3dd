#!/usr/bin/env python3
"""A test-only TCP proxy for iSCSI that damages chosen PDUs on the way (loopback only).

Usage: corrupt_proxy.py TARGET_PORT RULE... [--lifetime SECS] [--max-conns N]

Listens on 127.0.0.1 on a free port, prints "port N" once listening, and relays every
connection to 127.0.0.1:TARGET_PORT. It follows the PDU stream in both directions (the digests
start after the Login Response that ends login; HeaderDigest and DataDigest are taken to be
CRC32C then) and damages PDUs by the rules, each applied once:

  DIR:OPCODE:WHAT:N   DIR  t2i (target to initiator) or i2t
                      OPCODE  hex, e.g. 0x25 (Data-In), 0x05 (Data-Out), 0x01 (SCSI Command)
                      WHAT  data: one data byte flipped (the data digest then fails);
                            header: one header digest byte flipped (the header digest fails,
                            the lengths stay right)
                            lost: the same as header, counting every PDU of the opcode (with
                            or without data and F bit): a command the target never gets
                      N  the Nth such PDU in full feature phase, counting only PDUs with data
                         and, for header, only those without the F bit (so that a later PDU of
                         the same sequence shows the loss)

Each damage is reported on standard output ("damaged DIR OPCODE WHAT #N ITT 0x..."). Stops after
--lifetime seconds (default 300) and accepts at most --max-conns connections (default 4).
"""
import socket
import sys
import threading
import time


class Rule:
    def __init__(self, text):
        d, op, what, n = text.split(":")
        if d not in ("t2i", "i2t") or what not in ("data", "header", "lost"):
            raise SystemExit("bad rule " + text)
        self.dir, self.op, self.what, self.n = d, int(op, 16), what, int(n)
        self.seen = 0
        self.done = False


class Stream:
    """Follows one direction's PDUs in the bytes relayed; damages them by the rules."""

    def __init__(self, direction, rules, state):
        self.dir, self.rules, self.state = direction, [r for r in rules if r.dir == direction], state
        self.buf = bytearray()
        self.need = 48
        self.hdr = None

    def feed(self, data):
        """Returns the bytes to pass on (whole PDUs once damaged, the rest as it came)."""
        self.buf += data
        out = bytearray()
        while True:
            if self.hdr is None:
                if len(self.buf) < 48:
                    break
                h = self.buf[:48]
                digests = self.state["ffp"]
                total = 48 + h[4] * 4 + (4 if digests else 0)
                dlen = int.from_bytes(h[5:8], "big")
                if dlen:
                    total += (dlen + 3) // 4 * 4 + (4 if digests else 0)
                self.hdr, self.need = bytes(h), total
            if len(self.buf) < self.need:
                break
            pdu = bytearray(self.buf[:self.need])
            del self.buf[:self.need]
            self.damage(pdu)
            out += pdu
            h, self.hdr = self.hdr, None
            op = h[0] & 0x3F
            if op == 0x23 and (h[1] & 0x83) == 0x83 and h[36] == 0:
                self.state["ffp"] = True  # the last Login Response: digests from the next PDU on
        return bytes(out)

    def damage(self, pdu):
        if not self.state["ffp"]:
            return
        op = pdu[0] & 0x3F
        dlen = int.from_bytes(pdu[5:8], "big")
        for r in self.rules:
            if r.done or r.op != op or (not dlen and r.what != "lost"):
                continue
            if r.what == "header" and pdu[1] & 0x80:
                continue
            r.seen += 1
            if r.seen != r.n:
                continue
            r.done = True
            hlen = 48 + pdu[4] * 4
            if r.what in ("header", "lost"):
                pdu[hlen] ^= 0x5A  # the header digest's first byte
            else:
                pdu[hlen + 4 + dlen // 2] ^= 0xFF
            print("damaged %s 0x%02x %s #%d ITT 0x%s" % (self.dir, op, r.what, r.n, pdu[16:20].hex()), flush=True)


def relay(src, dst, stream):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            out = stream.feed(data)
            if out:
                dst.sendall(out)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    args = sys.argv[1:]
    lifetime, max_conns = 300.0, 4
    if "--lifetime" in args:
        i = args.index("--lifetime")
        lifetime = float(args[i + 1])
        del args[i:i + 2]
    if "--max-conns" in args:
        i = args.index("--max-conns")
        max_conns = int(args[i + 1])
        del args[i:i + 2]
    target_port = int(args[0])
    rules = [Rule(r) for r in args[1:]]
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(0.5)
    print("port %d" % ls.getsockname()[1], flush=True)
    end = time.monotonic() + lifetime
    conns = 0
    while time.monotonic() < end and conns < max_conns:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        conns += 1
        t = socket.create_connection(("127.0.0.1", target_port), timeout=10)
        t.settimeout(None)
        c.settimeout(None)
        state = {"ffp": False}
        for a, b, d in ((c, t, "i2t"), (t, c, "t2i")):
            threading.Thread(target=relay, args=(a, b, Stream(d, rules, state)), daemon=True).start()
    while time.monotonic() < end:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
