#!/usr/bin/env python3
"""A tiny iSCSI target that logs in properly and then misbehaves on purpose (test helper).

Usage: fake_target.py PORT [--log FILE] [--blocks N]

Serves one 512-byte-block disk of N blocks (default 16384, 8 MiB) as LUN 0 under several target
names; the name an initiator logs in to picks the behaviour:
  PREFIX:good        reads return the disk; writes are stored. The disk starts filled with
                     b"SECRET-GOOD-SESSION-DATA-" repeated: data of another session that must
                     never show up anywhere else.
  PREFIX:short       reads answer GOOD with less data than asked and no residual: below LBA 1024
                     the first half of the data (the status in the last Data-In), from LBA 1024 no
                     Data-In at all (a bare SCSI Response). The disk holds b"short-target-data-".
                     Writes are stored.
  PREFIX:login-cont  the first login response has the C bit set, and so has every answer to the
                     initiator's empty continuation requests, for ever.
  PREFIX:bad-offset  reads answer with Data-In that skips the first 512 bytes of the buffer (a
                     protocol error the initiator can only answer by dropping the connection).
  PREFIX:huge-blocks READ CAPACITY says 2 blocks of 1 GiB.
  PREFIX:wrap-capacity READ CAPACITY says 2^62 + 1 blocks of 4096 bytes (the byte count wraps).
  PREFIX:dup-luns    REPORT LUNS lists LUN 0 twice.
  PREFIX:alias       logs in with a TargetAlias that is not UTF-8.
Discovery sessions (SendTargets): --text endless answers every Text Request with an empty Text
Response without the F bit and with a Target Transfer Tag (more to come), for ever; otherwise
the targets are listed, with a third whose name is not UTF-8.

Every SCSI WRITE is logged as "WRITE target=NAME lba=L blocks=B secret=yes|no" (secret: the
data carried the good disk's pattern), every READ as "READ target=NAME lba=L blocks=B", every
Text Response sent for an endless text as "TEXT n=N". PREFIX is iqn.2026-11.org.isthmus:fake.
"""
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdu_abuse import recv_exact, text_keys  # noqa: E402

PREFIX = "iqn.2026-11.org.isthmus:fake"
SECRET = b"SECRET-GOOD-SESSION-DATA-"
SHORT = b"short-target-data-"
BS = 512

log_lock = threading.Lock()
log_file = None


def log(line):
    with log_lock:
        if log_file:
            log_file.write(line + "\n")
            log_file.flush()


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def pattern(seed, n):
    return (seed * (n // len(seed) + 1))[:n]


class Disk:
    def __init__(self, blocks, seed):
        self.data = bytearray(pattern(seed, blocks * BS))
        self.blocks = blocks
        self.lock = threading.Lock()


def recv_pdu(sock):
    hdr = recv_exact(sock, 48)
    if hdr is None:
        return None, None
    dlen = int.from_bytes(hdr[5:8], "big")
    total = hdr[4] * 4 + ((dlen + 3) // 4) * 4
    data = recv_exact(sock, total) if total else b""
    if data is None:
        return None, None
    return hdr, data[hdr[4] * 4:hdr[4] * 4 + dlen]


def pad(data):
    return data + b"\0" * ((4 - len(data) % 4) % 4)


def text(pairs):
    return b"".join(("%s=%s" % kv).encode() + b"\0" for kv in pairs)


class Conn:
    def __init__(self, sock, port, args):
        self.sock = sock
        self.port = port
        self.args = args
        self.statsn = 1
        self.expcmdsn = 1
        self.target = None
        self.discovery = False
        self.max_seg = 8192
        self.disk = None
        self.texts = 0

    def window(self):
        return struct.pack(">II", self.expcmdsn, self.expcmdsn + 31)

    def send(self, hdr, data=b""):
        hdr = bytearray(hdr)
        hdr[5:8] = len(data).to_bytes(3, "big")
        self.sock.sendall(bytes(hdr) + pad(data))

    def next_statsn(self):
        s = self.statsn
        self.statsn += 1
        return s

    def note_cmdsn(self, h):
        if not h[0] & 0x40:  # not immediate
            cmdsn = struct.unpack(">I", h[24:28])[0]
            self.expcmdsn = cmdsn + 1

    # ---- login ----
    def login(self, h, d):
        k = text_keys(d)
        flags = h[1]
        csg = (flags >> 2) & 3
        itt = h[16:20]
        if "TargetName" in k:
            self.target = k["TargetName"]
        if k.get("SessionType") == "Discovery":
            self.discovery = True
        if "MaxRecvDataSegmentLength" in k:
            self.max_seg = min(int(k["MaxRecvDataSegmentLength"]), 65536)
        behaviour = (self.target or "").rsplit(":", 1)[-1]
        if behaviour == "login-cont":
            # more text follows, for ever
            rh = bytearray(48)
            rh[0] = 0x23
            rh[1] = 0x40 | (csg << 2)
            rh[8:14] = h[8:14]
            rh[16:20] = itt
            rh[24:28] = struct.pack(">I", self.next_statsn())
            rh[28:36] = self.window()
            self.send(rh, b"X-Filler=" + b"a" * 100)
            return True
        if csg == 0:
            reply = text([("AuthMethod", "None"), ("TargetPortalGroupTag", "1")])
            if behaviour == "alias":
                reply += b"TargetAlias=bad\xff\xfealias\0"
            nsg, tsih = 1, 0
        else:
            pairs = [("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "65536")]
            if not self.discovery:
                pairs += [("InitialR2T", "Yes"), ("ImmediateData", "No"), ("MaxBurstLength", "262144"),
                          ("FirstBurstLength", "65536"), ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0"),
                          ("MaxConnections", "1")]
            reply = text(pairs)
            nsg, tsih = 3, 7
        rh = bytearray(48)
        rh[0] = 0x23
        rh[1] = 0x80 | (csg << 2) | nsg
        rh[8:14] = h[8:14]
        rh[14:16] = struct.pack(">H", tsih)
        rh[16:20] = itt
        rh[24:28] = struct.pack(">I", self.next_statsn())
        rh[28:36] = self.window()
        self.send(rh, reply)
        return nsg != 3

    # ---- full feature phase ----
    def status(self, h, status, sense=b"", residual=None):
        rh = self.status_header(0x21, h)
        rh[3] = status
        if residual is not None:
            rh[1] |= 0x02
            rh[44:48] = struct.pack(">I", residual)
        data = struct.pack(">H", len(sense)) + sense if sense else b""
        self.send(rh, data)

    def illegal(self, h):
        sense = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0]) + b"\0" * 4
        self.status(h, 2, sense)

    def data_in(self, h, data, final_status=True, start=0):
        """Data-In PDUs carrying data from offset start, the last with the status (GOOD) when
        final_status."""
        off = start
        datasn = 0
        while True:
            seg = data[off:off + self.max_seg]
            last = off + len(seg) >= len(data)
            rh = bytearray(48)
            rh[0] = 0x25
            rh[1] = 0x80 | 0x01 if last and final_status else (0x80 if last else 0)
            rh[8:16] = h[8:16]
            rh[16:20] = h[16:20]
            rh[20:24] = b"\xff\xff\xff\xff"
            if last and final_status:
                rh[24:28] = struct.pack(">I", self.next_statsn())
            rh[28:36] = self.window()
            rh[36:40] = struct.pack(">I", datasn)
            rh[40:44] = struct.pack(">I", off)
            self.send(rh, seg)
            datasn += 1
            off += len(seg)
            if last:
                return

    def scsi(self, h, d):
        cdb = h[32:48]
        op = cdb[0]
        edtl = struct.unpack(">I", h[20:24])[0]
        behaviour = (self.target or "").rsplit(":", 1)[-1]
        if op == 0xA0:  # REPORT LUNS
            n = 2 if behaviour == "dup-luns" else 1
            self.data_in(h, (struct.pack(">I", 8 * n) + b"\0" * 4 + b"\0" * 8 * n)[:edtl])
        elif op == 0x12:  # INQUIRY
            if cdb[1] & 1:
                self.illegal(h)
                return
            inq = bytearray(36)
            inq[2], inq[3], inq[4] = 5, 2, 31
            inq[8:16] = b"FAKE    "
            inq[16:32] = b"HOSTILE-DISK    "
            inq[32:36] = b"0001"
            self.data_in(h, bytes(inq)[:edtl])
        elif op == 0x9E and (cdb[1] & 0x1F) == 0x10:  # READ CAPACITY(16)
            last, bs = self.disk.blocks - 1, BS
            if behaviour == "huge-blocks":
                last, bs = 1, 1 << 30
            elif behaviour == "wrap-capacity":
                last, bs = 1 << 62, 4096
            self.data_in(h, (struct.pack(">QI", last, bs) + b"\0" * 20)[:edtl])
        elif op == 0x25:
            self.data_in(h, struct.pack(">II", self.disk.blocks - 1, BS)[:edtl])
        elif op in (0x00, 0x35, 0x91):  # TEST UNIT READY, SYNCHRONIZE CACHE
            self.status(h, 0)
        elif op in (0x28, 0x88):  # READ
            lba, blocks = (struct.unpack(">IxH", cdb[2:9]) if op == 0x28 else struct.unpack(">QI", cdb[2:14]))
            log("READ target=%s lba=%d blocks=%d" % (behaviour, lba, blocks))
            with self.disk.lock:
                data = bytes(self.disk.data[lba * BS:(lba + blocks) * BS])
            if behaviour == "bad-offset" and len(data) > 512:
                self.data_in(h, data, start=512)
                return
            if behaviour == "short":
                if lba < 1024 and len(data) > 1:
                    self.data_in(h, data[:len(data) // 2])  # GOOD, no residual: a lie
                else:
                    self.status(h, 0)  # GOOD, no data at all
                return
            self.data_in(h, data)
        elif op in (0x2A, 0x8A):  # WRITE: every byte by R2T (InitialR2T=Yes, ImmediateData=No)
            lba, blocks = (struct.unpack(">IxH", cdb[2:9]) if op == 0x2A else struct.unpack(">QI", cdb[2:14]))
            buf = bytearray(edtl)
            off = r2tsn = 0
            ttt = 0x100
            while off < edtl:
                want = min(262144, edtl - off)
                rh = bytearray(48)
                rh[0] = 0x31
                rh[1] = 0x80
                rh[8:16] = h[8:16]
                rh[16:20] = h[16:20]
                rh[20:24] = struct.pack(">I", ttt)
                rh[24:28] = struct.pack(">I", self.statsn)
                rh[28:36] = self.window()
                rh[36:48] = struct.pack(">III", r2tsn, off, want)
                self.send(rh)
                got = 0
                while got < want:
                    dh, dd = recv_pdu(self.sock)
                    if dh is None:
                        raise ConnectionError("closed during Data-Out")
                    if dh[0] & 0x3F != 0x05:
                        self.other(dh, dd)
                        continue
                    doff = struct.unpack(">I", dh[40:44])[0]
                    buf[doff:doff + len(dd)] = dd
                    got += len(dd)
                off += want
                r2tsn += 1
                ttt += 1
            with self.disk.lock:
                self.disk.data[lba * BS:lba * BS + edtl] = buf
            log("WRITE target=%s lba=%d blocks=%d secret=%s" % (behaviour, lba, blocks,
                                                                 "yes" if b"SECRET" in buf else "no"))
            self.status(h, 0)
        else:
            self.illegal(h)

    def text_request(self, h, d):
        rh = bytearray(48)
        rh[0] = 0x24
        rh[16:20] = h[16:20]
        if self.args.get("text") == "endless":
            self.texts += 1
            log("TEXT n=%d" % self.texts)
            rh[1] = 0x00  # F clear: more to come
            rh[20:24] = struct.pack(">I", 0x1234)
            rh[24:28] = struct.pack(">I", self.next_statsn())
            rh[28:36] = self.window()
            self.send(rh)
            return
        rh[1] = 0x80
        rh[20:24] = b"\xff\xff\xff\xff"
        rh[24:28] = struct.pack(">I", self.next_statsn())
        rh[28:36] = self.window()
        pairs = []
        for name in ("good", "short"):
            pairs += [("TargetName", PREFIX + ":" + name), ("TargetAddress", "127.0.0.1:%d,1" % self.port)]
        # and a name that is not UTF-8
        odd = b"TargetName=" + PREFIX.encode() + b":odd\xff\0TargetAddress=127.0.0.1:%d,1\0" % self.port
        self.send(rh, text(pairs) + odd)

    def status_header(self, op, h):
        """The header of a final response op to request h: its ITT, the next StatSN, the window."""
        rh = bytearray(48)
        rh[0] = op
        rh[1] = 0x80
        rh[16:20] = h[16:20]
        rh[24:28] = struct.pack(">I", self.next_statsn())
        rh[28:36] = self.window()
        return rh

    def other(self, h, d):
        op = h[0] & 0x3F
        if op == 0x00:  # NOP-Out
            if h[16:20] == b"\xff\xff\xff\xff":
                return  # an answer to a ping of ours (we send none)
            rh = self.status_header(0x20, h)
            rh[20:24] = b"\xff\xff\xff\xff"
            self.send(rh, d)
        elif op == 0x01:
            self.scsi(h, d)
        elif op == 0x04:
            self.text_request(h, d)
        elif op == 0x02:  # task management: done
            self.send(self.status_header(0x22, h))
        elif op == 0x06:  # logout
            self.send(self.status_header(0x26, h))
            raise ConnectionError("logged out")

    def run(self, disks):
        while True:
            h, d = recv_pdu(self.sock)
            if h is None:
                return
            if h[0] & 0x3F != 0x03:
                break
            if not self.login(h, d):
                break
        behaviour = (self.target or "").rsplit(":", 1)[-1]
        self.disk = disks.get(behaviour, disks["good"])
        while True:
            h, d = recv_pdu(self.sock)
            if h is None:
                return
            self.note_cmdsn(h)
            self.other(h, d)


def serve(sock, port, args, disks):
    try:
        Conn(sock, port, args).run(disks)
    except (OSError, ConnectionError):
        pass
    finally:
        sock.close()


def main():
    global log_file
    port = int(sys.argv[1])
    if arg("--log"):
        log_file = open(arg("--log"), "a")
    blocks = int(arg("--blocks", "16384"))
    args = {"text": arg("--text", "")}
    disks = {"good": Disk(blocks, SECRET), "short": Disk(blocks, SHORT)}
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    print("listening on 127.0.0.1:%d" % port, flush=True)
    while True:
        s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(s, port, args, disks), daemon=True).start()


if __name__ == "__main__":
    main()
