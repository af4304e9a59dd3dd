#!/usr/bin/env python3
"""Hold one iSCSI session open and run SCSI commands read from standard input (test helper).

Usage: scsi_session.py HOST PORT TARGET [--initiator IQN] [--isid HEX] [--discovery]
                      [--ops KEY=VALUE,KEY=VALUE...]
Commands, one per line: "tur LUN", "rc16 LUN", "reportluns", "sendtargets", "quit".
Each answer is one line: "status=0xNN key=K asc=A ascq=Q [data=HEX]" (sense fields when CHECK
CONDITION). Unit attentions are reported, not retried: the tests look for them. "ready" is printed
once logged in.

--ops offers those operational keys at login (e.g. InitialR2T=Yes,ImmediateData=No). Commands that
keep several tasks in flight (each answer also carries "itt=N", the task's tag, and "ms=N", the
milliseconds until the answer came):
  "params"                 the keys the target answered at login: "params K=V;K=V;..."
  "write LUN LBA LEN"      WRITE(16) of LEN bytes with no data attached; the first answer is
                           "r2t itt=N ttt=0xT offset=O len=L r2tsn=S ms=M" (kept for "data") or
                           "status=0xNN itt=N response=0xRR ms=M [key=...]"
  "read LUN LBA LEN"       READ(16) of LEN bytes: "status=0xNN itt=N bytes=B ms=M [key=...]"
  "data ITT"               send the write ITT its data, answering its R2Ts (one burst each) until
                           its SCSI Response: "status=0xNN itt=N response=0xRR r2ts=R bytes=B
                           maxburst=L ms=M [key=...]" (L: the longest burst an R2T asked for)
  "send-read LUN LBA LEN"  READ(16) of LEN bytes, not waited for: "sent itt=N"
  "send-data ITT"          answer the R2Ts of write ITT received so far (one burst each) without
                           waiting for its SCSI Response: "sent itt=N bytes=B"
  "wait ITT"               the answer of a read sent with send-read, as "read" gives it
  "abort ITT"              ABORT TASK (immediate) for task ITT on its LUN:
                           "tmf itt=N response=0xRR ms=M" (N: the TMF's own tag)
  "tmf FUNCTION LUN"       an immediate task management request of that function (e.g. 5:
                           LOGICAL UNIT RESET) for LUN, answered as "abort" is
  "quiet ITT SECS"         listen for SECS seconds: "quiet itt=N pdus=K ops=OP,OP..." (K: PDUs
                           for task ITT that came, now or stashed earlier; OP: their opcodes)
  "logout"                 close the session: "logout response=0xRR closed=yes|no"
A Reject is answered as "reject reason=0xRR itt=N".
"""
import os
import select
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pdu_abuse  # noqa: E402
import scsi_cmd  # noqa: E402


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def discovery_login(host, port, isid):
    import socket
    sock = socket.create_connection((host, port), timeout=5)
    rest = struct.pack(">HH", 0, 0) + struct.pack(">II", 0, 0) + b"\0" * 16

    def stage(flags, keys, what):
        text = b"".join(k.encode() + b"\0" for k in keys)
        hdr = bytearray(pdu_abuse.bhs(0x03, flags=flags, immediate=True, dlen=len(text), rest=rest))
        hdr[8:14] = isid
        sock.sendall(bytes(hdr) + pdu_abuse.pad(text))
        rh, _ = pdu_abuse.recv_pdu(sock)
        if rh is None or rh[36] != 0:
            raise SystemExit(what + " failed")

    stage(0x81, ["InitiatorName=" + pdu_abuse.INITIATOR, "SessionType=Discovery", "AuthMethod=None"], "discovery login")
    stage(0x87, ["HeaderDigest=None", "DataDigest=None", "MaxRecvDataSegmentLength=65536"],
          "discovery login (operational)")
    return sock


def r2t_session(host, port, target, isid, timeout):
    """A normal session whose writes all wait for an R2T (InitialR2T=Yes, ImmediateData=No), its
    socket's timeout set: (socket, TSIH, Tasks)."""
    reply = {}
    sock = pdu_abuse.login(host, port, target, isid=isid, reply=reply,
                           ops={"InitialR2T": "Yes", "ImmediateData": "No"})
    sock.settimeout(timeout)
    return sock, reply["_tsih"], Tasks(sock, reply)


def sense_fields(sense):
    if not sense:
        return ""
    return " key=0x%x asc=0x%02x ascq=0x%02x" % scsi_cmd.sense_of(sense)


class Tasks:
    """PDUs sorted by task tag, so several commands can be in flight on the one connection."""

    def __init__(self, sock, reply):
        self.sock = sock
        self.stash = {}  # ITT -> PDUs that came while another task was being waited for
        self.r2ts = {}  # ITT -> R2Ts not answered yet
        self.max_seg = int(reply.get("MaxRecvDataSegmentLength", "8192"))
        self.sent = {}  # ITT -> (LUN, send time) of reads sent with send_read, not collected yet
        self.tmf_tag = 0x70000000  # the last TMF request's tag

    def next_pdu(self, itt, cmdsn):
        """The next PDU for task ITT (a Reject of its command counts); answers NOP-In pings."""
        if self.stash.get(itt):
            return self.stash[itt].pop(0)
        while True:
            got = self.recv_for_task(cmdsn)
            if got is None:
                continue
            h, d, _, tag = got
            if tag == itt:
                return h, d
            self.stash.setdefault(tag, []).append((h, d))

    def recv_for_task(self, cmdsn):
        """One PDU: (header, data, opcode, task tag), or None for one that belongs to no task
        (a NOP-In ping, answered here, a NOP-In answer, an Async Message)."""
        h, d = pdu_abuse.recv_pdu(self.sock)
        if h is None or d is None:
            raise RuntimeError("connection closed")
        op = h[0] & 0x3F
        tag = struct.unpack(">I", h[16:20])[0]
        if op == 0x20 and h[20:24] != b"\xff\xff\xff\xff":
            rest = h[20:24] + struct.pack(">II", cmdsn, 0) + b"\0" * 16
            self.sock.sendall(pdu_abuse.bhs(0x00, 0x80, True, 0, 0, h[8:16], 0xFFFFFFFF, rest))
            return None
        if op in (0x20, 0x32):
            return None
        if op == 0x3F and len(d) >= 20:
            tag = struct.unpack(">I", d[16:20])[0]  # a Reject names the rejected PDU's task
        return h, d, op, tag

    def command(self, lun, cdb, edtl, write, cmdsn):
        """Send a SCSI command without data; return its ITT (= CmdSN + 1, as scsi_cmd.run does)."""
        itt = cmdsn + 1
        flags = 0x80 | (0x20 if write else 0x40) | 0x01
        lun_field = bytes([0, lun]) + b"\0" * 6
        rest = struct.pack(">III", edtl, cmdsn, 0) + cdb + b"\0" * (16 - len(cdb))
        self.sock.sendall(pdu_abuse.bhs(0x01, flags, False, 0, 0, lun_field, itt, rest))
        return itt

    @staticmethod
    def describe(itt, h, d, t0):
        """One answer line for a SCSI Response or Reject (None for anything else)."""
        ms = int((time.monotonic() - t0) * 1000)
        op = h[0] & 0x3F
        if op == 0x3F:
            return "reject reason=0x%02x itt=%d ms=%d" % (h[2], itt, ms)
        if op == 0x21:
            sense = d[2:2 + struct.unpack(">H", d[:2])[0]] if d else b""
            return "status=0x%02x itt=%d response=0x%02x ms=%d%s" % (h[3], itt, h[2], ms, sense_fields(sense))
        return None

    def write(self, lun, lba, length, cmdsn):
        cdb = bytes([0x8A, 0]) + struct.pack(">QI", lba, length // 512) + b"\0\0"
        t0 = time.monotonic()
        itt = self.command(lun, cdb, length, True, cmdsn)
        h, d = self.next_pdu(itt, cmdsn + 1)
        if (h[0] & 0x3F) == 0x31:
            self.r2ts.setdefault(itt, []).append(h)
            ttt, _, _, _, r2tsn, off, want = struct.unpack(">IIIIIII", h[20:48])
            return "r2t itt=%d ttt=0x%08x offset=%d len=%d r2tsn=%d ms=%d" % (
                itt, ttt, off, want, r2tsn, int((time.monotonic() - t0) * 1000))
        return self.describe(itt, h, d, t0) or "error=opcode 0x%02x for itt=%d" % (h[0] & 0x3F, itt)

    def read(self, lun, lba, length, cmdsn):
        return self.collect(self.send_read(lun, lba, length, cmdsn), cmdsn + 1)

    def send_read(self, lun, lba, length, cmdsn):
        """Send a READ(16); its answer is left for collect (ITT -> LUN and start time kept)."""
        cdb = bytes([0x88, 0]) + struct.pack(">QI", lba, length // 512) + b"\0\0"
        t0 = time.monotonic()
        itt = self.command(lun, cdb, length, False, cmdsn)
        self.sent[itt] = (lun, t0)
        return itt

    def collect(self, itt, cmdsn):
        """The answer of a read sent with send_read (cmdsn: the next CmdSN, for NOP-Outs)."""
        _, t0 = self.sent.pop(itt)
        got = 0
        while True:
            h, d = self.next_pdu(itt, cmdsn)
            op = h[0] & 0x3F
            if op == 0x25:  # Data-In, perhaps with the status
                got += len(d)
                if h[1] & 0x01:
                    return "status=0x%02x itt=%d bytes=%d ms=%d" % (
                        h[3], itt, got, int((time.monotonic() - t0) * 1000))
                continue
            line = self.describe(itt, h, d, t0)
            if line is None:
                return "error=opcode 0x%02x for itt=%d" % (op, itt)
            return line.replace(" response=", " bytes=%d response=" % got, 1)

    def data(self, itt, cmdsn):
        """Answer the R2Ts of write ITT, one burst each, until its SCSI Response."""
        t0 = time.monotonic()
        r2ts = sent = biggest = 0
        while True:
            if self.r2ts.get(itt):
                h = self.r2ts[itt].pop(0)
            else:
                h, d = self.next_pdu(itt, cmdsn)
            if (h[0] & 0x3F) != 0x31:
                line = self.describe(itt, h, d, t0)
                if line is None:
                    return "error=opcode 0x%02x for itt=%d" % (h[0] & 0x3F, itt)
                return line.replace(" ms=", " r2ts=%d bytes=%d maxburst=%d ms=" % (r2ts, sent, biggest), 1)
            r2ts += 1
            want = struct.unpack(">I", h[44:48])[0]
            biggest = max(biggest, want)
            sent += self.answer_r2t(itt, h)

    @staticmethod
    def pattern():
        return bytes(range(256)) * 4097  # byte X of the data is X % 256 (segments up to 1 MiB)

    def answer_r2t(self, itt, h):
        """Send the burst R2T h asks for; returns its bytes."""
        pattern = self.pattern()
        lun_field, ttt = h[8:16], h[20:24]
        off, want = struct.unpack(">II", h[40:48])
        datasn, end, sent = 0, off + want, 0
        while off < end:
            n = min(self.max_seg, end - off)
            start = off % 256
            seg = pattern[start:start + n] if n <= 1 << 20 else bytes(n)
            rest = ttt + struct.pack(">IIIIII", 0, 0, 0, datasn, off, 0)
            flags = 0x80 if off + n == end else 0x00
            self.sock.sendall(pdu_abuse.bhs(0x05, flags, False, 0, n, lun_field, itt, rest) + pdu_abuse.pad(seg))
            off += n
            sent += n
            datasn += 1
        return sent

    def send_data(self, itt):
        """Answer the R2Ts of write ITT received so far; its SCSI Response is left for later."""
        sent = 0
        while self.r2ts.get(itt):
            sent += self.answer_r2t(itt, self.r2ts[itt].pop(0))
        return "sent itt=%d bytes=%d" % (itt, sent)

    def abort(self, itt, cmdsn):
        """ABORT TASK for task ITT (a READ sent with send_read, CmdSN ITT - 1), as an immediate
        TMF request; waits for the TMF response."""
        return self.tmf(0x01, self.sent.get(itt, (0, None))[0], cmdsn, itt)

    def tmf(self, function, lun, cmdsn, itt=0xFFFFFFFF):
        """An immediate TMF request (referenced task ITT, CmdSN ITT - 1); waits for its response."""
        self.tmf_tag += 1
        lun_field = bytes([0, lun]) + b"\0" * 6
        rest = struct.pack(">IIIII", itt, cmdsn, 0, (itt - 1) & 0xFFFFFFFF, 0) + b"\0" * 8
        t0 = time.monotonic()
        self.sock.sendall(pdu_abuse.bhs(0x02, 0x80 | function, True, 0, 0, lun_field, self.tmf_tag, rest))
        h, _ = self.next_pdu(self.tmf_tag, cmdsn)
        ms = int((time.monotonic() - t0) * 1000)
        if (h[0] & 0x3F) != 0x22:
            return "error=opcode 0x%02x answered the TMF" % (h[0] & 0x3F)
        return "tmf itt=%d response=0x%02x ms=%d" % (self.tmf_tag, h[2], ms)

    def quiet(self, itt, secs, cmdsn):
        """Listen for SECS seconds; count the PDUs for task ITT (stashed ones too)."""
        ops = [h[0] & 0x3F for h, _ in self.stash.pop(itt, [])]
        deadline = time.monotonic() + secs
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not select.select([self.sock], [], [], left)[0]:
                break
            got = self.recv_for_task(cmdsn)
            if got is None:
                continue
            h, d, op, tag = got
            if tag == itt:
                ops.append(op)
            else:
                self.stash.setdefault(tag, []).append((h, d))
        return "quiet itt=%d pdus=%d ops=%s" % (itt, len(ops), ",".join("0x%02x" % o for o in ops) or "-")

    def logout(self, cmdsn):
        rest = struct.pack(">HHII", 0, 0, cmdsn, 0) + b"\0" * 16
        self.sock.sendall(pdu_abuse.bhs(0x06, 0x80, True, 0, 0, b"\0" * 8, 0x7FFFFFF0, rest))
        h, _ = self.next_pdu(0x7FFFFFF0, cmdsn)
        if (h[0] & 0x3F) != 0x26:
            return "error=opcode 0x%02x answered the logout" % (h[0] & 0x3F)
        closed = "no"
        try:
            closed = "yes" if self.sock.recv(1) == b"" else "no"
        except OSError:
            pass
        return "logout response=0x%02x closed=%s" % (h[2], closed)


def main():
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    pdu_abuse.INITIATOR = arg("--initiator", "iqn.2026-11.org.isthmus:probe")
    isid = bytes.fromhex(arg("--isid", "400000000099"))
    reply = {}
    if "--discovery" in sys.argv:
        sock = discovery_login(host, port, isid)
    else:
        ops = dict(kv.split("=", 1) for kv in arg("--ops", "").split(",") if kv)
        sock = pdu_abuse.login(host, port, target, isid=isid, ops=ops, reply=reply)
    sock.settimeout(10)
    tasks = Tasks(sock, reply)
    print("ready", flush=True)
    try:
        return serve(sock, tasks, reply)
    except (OSError, RuntimeError) as e:  # a timeout, a closed connection: say so, do not hang
        print("error=%s" % (e or type(e).__name__), flush=True)
        return 1


def serve(sock, tasks, reply):
    """Run the commands from standard input on the logged-in session."""
    cmdsn = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "params":
            print("params " + ";".join("%s=%s" % kv for kv in sorted(reply.items())), flush=True)
            continue
        if words[0] in ("write", "read"):
            lun, lba, length = int(words[1]), int(words[2]), int(words[3])
            do = tasks.write if words[0] == "write" else tasks.read
            print(do(lun, lba, length, cmdsn), flush=True)
            cmdsn += 1
            continue
        if words[0] == "send-read":
            print("sent itt=%d" % tasks.send_read(int(words[1]), int(words[2]), int(words[3]), cmdsn), flush=True)
            cmdsn += 1
            continue
        if words[0] == "wait":
            print(tasks.collect(int(words[1]), cmdsn), flush=True)
            continue
        if words[0] == "abort":
            print(tasks.abort(int(words[1]), cmdsn), flush=True)
            continue
        if words[0] == "tmf":
            print(tasks.tmf(int(words[1]), int(words[2]), cmdsn), flush=True)
            continue
        if words[0] == "quiet":
            print(tasks.quiet(int(words[1]), float(words[2]), cmdsn), flush=True)
            continue
        if words[0] == "send-data":
            print(tasks.send_data(int(words[1])), flush=True)
            continue
        if words[0] == "data":
            print(tasks.data(int(words[1]), cmdsn), flush=True)
            continue
        if words[0] == "logout":
            print(tasks.logout(cmdsn), flush=True)
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
        out = "status=0x%02x" % status + sense_fields(sense)
        if data:
            out += " data=" + data.hex()
        print(out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
