#!/usr/bin/env python3
"""An initiator that misbehaves on purpose, one scenario per run (test helper).

Usage: hostile_initiator.py SCENARIO HOST PORT TARGET [--between CMD] [--pid PID]
                            [--user U --secret S]

Scenarios (each prints "ok: ..." lines and exits 0, or prints "FAIL: ..." and exits 1):
  join-after-logout     a connection joins a session by TSIH; the session logs out before the
                        joining login ends: the login is refused (session does not exist)
  join-after-drop       the same, with the session's connection dropped instead
  join-after-reinstate  the same, with the session reinstated by a new leading login
  reconfig-during-login a login stops half-way; CMD (--between) changes the configuration; the
                        login then goes on and must be refused
  chap-change-during-login  CHAP challenge received, CMD changes the secret, the answer made with
                        the old secret must not log in
  duplicate-cmdsn       2000 NOP-Outs with the same CmdSN ahead of the window, then the gap is
                        filled: exactly two answers
  window                the login advertises the real window, MaxCmdSN stays put while commands
                        are outstanding, a command beyond it is dropped, an immediate one is
                        refused with TASK SET FULL
  data-out-timeout      a write whose data never comes ends with ABORTED COMMAND 4B/06
  send-backlog          pings with data, never read: the target stops reading (its memory, --pid,
                        stays bounded), then answers every one once they are read
  login-reply-split     a login with many unknown keys gets its answer in continued 8 KiB parts
  maxconn-completion    two joining logins both start below MaxConnections=2: only one completes
  revoke                a logged-in session; CMD revokes it: Async Message, then the connection ends
  alias-bytes           a session whose InitiatorAlias is not UTF-8; CMD (the management view of it)
                        must still show it
"""
import hashlib
import os
import select
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdu_abuse import recv_exact, text_keys  # noqa: E402

INITIATOR = "iqn.2026-11.org.isthmus:hostile"


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def pad(data):
    return data + b"\0" * ((4 - len(data) % 4) % 4)


def be32(b, off):
    return struct.unpack(">I", b[off:off + 4])[0]


def text(keys):
    return b"".join(k.encode() + b"\0" for k in keys)


class Conn:
    """One TCP connection speaking raw iSCSI PDUs."""

    def __init__(self, host, port, isid=b"\x40\x00\x00\x00\x10\x01", tsih=0, cid=0):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.isid, self.tsih, self.cid = isid, tsih, cid
        self.itt = 0x100
        self.cmdsn = 1
        self.exp_statsn = 0
        self.max_cmdsn = 0
        self.stash = []

    def close(self):
        self.sock.close()

    def send(self, hdr, data=b""):
        self.sock.sendall(hdr + pad(data))

    def recv(self, timeout=5.0):
        """One PDU as (header, data), or (None, None) on close or timeout."""
        self.sock.settimeout(timeout)
        try:
            hdr = recv_exact(self.sock, 48)
            if hdr is None:
                return None, None
            dlen = int.from_bytes(hdr[5:8], "big")
            rest = recv_exact(self.sock, hdr[4] * 4 + ((dlen + 3) // 4) * 4)
            if rest is None:
                return None, None
        except (socket.timeout, ConnectionResetError):
            return None, None
        data = rest[hdr[4] * 4:][:dlen]
        op = hdr[0] & 0x3F
        if op != 0x23 and op not in (0x3F,):
            self.exp_statsn = be32(hdr, 24) + 1 if op != 0x20 or be32(hdr, 16) != 0xFFFFFFFF else self.exp_statsn
        if op not in (0x23,):
            self.max_cmdsn = be32(hdr, 32)
        return hdr, data

    # --- login ---
    def login_pdu(self, keys, csg, nsg=0, transit=False, cont=False, raw=None):
        flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
        data = raw if raw is not None else text(keys)
        hdr = struct.pack(">BBBB", 0x43, flags, 0, 0) + struct.pack(">B", 0) + len(data).to_bytes(3, "big")
        hdr += self.isid + struct.pack(">H", self.tsih) + struct.pack(">I", self.itt)
        hdr += struct.pack(">HH", self.cid, 0) + struct.pack(">II", self.cmdsn, self.exp_statsn) + b"\0" * 16
        self.send(hdr, data)
        h, d = self.recv()
        check(h is not None, "no Login Response (connection closed)")
        check((h[0] & 0x3F) == 0x23, "answer to a Login Request is opcode 0x%02x" % (h[0] & 0x3F))
        self.exp_statsn = be32(h, 24) + 1
        return h, d

    @staticmethod
    def status(h):
        return (h[36] << 8) | h[37]

    def login(self, target, extra=(), discovery=False):
        """A whole login without authentication; returns the final Login Response header."""
        keys = ["InitiatorName=" + INITIATOR, "SessionType=" + ("Discovery" if discovery else "Normal"),
                "AuthMethod=None"]
        if not discovery:
            keys.insert(1, "TargetName=" + target)
        h, _ = self.login_pdu(keys, 0, 1, transit=True)
        check(self.status(h) == 0, "security stage refused: status 0x%04x" % self.status(h))
        ops = ["HeaderDigest=None", "DataDigest=None", "MaxRecvDataSegmentLength=262144",
               "InitialR2T=Yes", "ImmediateData=No"] + list(extra)
        if not discovery and not any(k.startswith("MaxConnections=") for k in extra):
            ops.append("MaxConnections=8")
        h, d = self.login_pdu(ops, 1, 3, transit=True)
        check(self.status(h) == 0, "operational stage refused: status 0x%04x" % self.status(h))
        check(h[1] & 0x80, "final Login Response without the T bit")
        self.tsih = struct.unpack(">H", h[14:16])[0]
        self.cmdsn = be32(h, 28)
        self.max_cmdsn = be32(h, 32)
        self.params = text_keys(d)
        return h

    # --- full feature phase ---
    def next_itt(self):
        self.itt += 1
        return self.itt

    def nop_out(self, cmdsn, immediate=False, data=b"", itt=None):
        itt = self.next_itt() if itt is None else itt
        b0 = 0x00 | (0x40 if immediate else 0)
        hdr = struct.pack(">BBBB", b0, 0x80, 0, 0) + struct.pack(">B", 0) + len(data).to_bytes(3, "big")
        hdr += b"\0" * 8 + struct.pack(">I", itt) + struct.pack(">III", 0xFFFFFFFF, cmdsn, self.exp_statsn)
        hdr += b"\0" * 16
        return hdr + pad(data), itt

    def scsi(self, cdb, cmdsn, edtl=0, write=False, read=False, immediate=False, lun=0):
        itt = self.next_itt()
        flags = 0x80 | (0x40 if read else 0) | (0x20 if write else 0) | 0x01
        b0 = 0x01 | (0x40 if immediate else 0)
        hdr = struct.pack(">BBBB", b0, flags, 0, 0) + b"\0\0\0\0" + bytes([0, lun]) + b"\0" * 6
        hdr += struct.pack(">IIII", itt, edtl, cmdsn, self.exp_statsn) + cdb + b"\0" * (16 - len(cdb))
        self.send(hdr)
        return itt

    def clear_ua(self):
        """A new nexus's first command gets its unit attention: take it with a TEST UNIT READY."""
        itt = self.scsi(TUR, self.cmdsn)
        h, _ = self.wait_for(itt)
        check(h is not None, "no answer to the first TEST UNIT READY")
        self.cmdsn += 1

    def logout(self):
        itt = self.next_itt()
        hdr = struct.pack(">BBBB", 0x46, 0x80, 0, 0) + b"\0" * 12 + struct.pack(">I", itt)
        hdr += struct.pack(">HHII", self.cid, 0, self.cmdsn, self.exp_statsn) + b"\0" * 16
        self.send(hdr)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            h, _ = self.recv(1)
            if h is not None and (h[0] & 0x3F) == 0x26:
                return h[2]
        raise Fail("no Logout Response")

    def wait_for(self, itt, timeout=5.0):
        """The next PDU for task itt (others are kept); None if none comes in time."""
        for i, (h, d) in enumerate(self.stash):
            if be32(h, 16) == itt:
                return self.stash.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            h, d = self.recv(left)
            if h is None:
                return None, None
            if be32(h, 16) == itt:
                return h, d
            self.stash.append((h, d))


def write16(lba, blocks):
    return bytes([0x8A, 0]) + struct.pack(">QI", lba, blocks) + b"\0\0"


TUR = bytes(6)


def sense_of(h, d):
    if not d or len(d) < 4:
        return None
    sense = d[2:2 + struct.unpack(">H", d[:2])[0]]
    return sense[2] & 0x0F, sense[12], sense[13]


def alive(host, port, target):
    c = Conn(host, port, isid=b"\x40\x00\x00\x00\x99\x99")
    c.login(target)
    c.clear_ua()
    itt = c.scsi(TUR, c.cmdsn)
    c.cmdsn += 1
    h, _ = c.wait_for(itt)
    check(h is not None and h[3] == 0, "a fresh session's TEST UNIT READY failed after the scenario")
    c.logout()
    c.close()


def between():
    cmd = arg("--between")
    check(cmd, "this scenario needs --between CMD")
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "--between command failed: %s %s" % (r.stdout, r.stderr))
    print("ok: ran %s" % cmd)


def start_join(host, port, target, tsih, cid, isid):
    j = Conn(host, port, isid=isid, tsih=tsih, cid=cid)
    keys = ["InitiatorName=" + INITIATOR, "TargetName=" + target, "SessionType=Normal", "AuthMethod=None"]
    h, _ = j.login_pdu(keys, 0, 1, transit=True)
    check(Conn.status(h) == 0, "joining login's first step refused: 0x%04x" % Conn.status(h))
    h, _ = j.login_pdu(["HeaderDigest=None"], 1)
    check(Conn.status(h) == 0, "joining login's second step refused: 0x%04x" % Conn.status(h))
    return j


def scenario_join(host, port, target, how):
    isid = b"\x40\x00\x00\x00\x20\x01"
    a = Conn(host, port, isid=isid)
    a.login(target)
    print("ok: leading login, TSIH %d" % a.tsih)
    j = start_join(host, port, target, a.tsih, 1, isid)
    print("ok: a second connection is half-way through joining")
    if how == "logout":
        check(a.logout() == 0, "logout refused")
    elif how == "drop":
        a.sock.shutdown(socket.SHUT_RDWR)
    else:
        b = Conn(host, port, isid=isid)
        b.login(target)
        check(b.tsih != a.tsih, "reinstatement kept the TSIH")
    a.close()
    time.sleep(0.5)
    h, _ = j.login_pdu([], 1, 3, transit=True)
    st = Conn.status(h)
    check(st == 0x020A, "joining a session that ended: status 0x%04x, want 0x020a (session does not exist)" % st)
    print("ok: the joining login is refused: the session ended (%s)" % how)
    alive(host, port, target)
    print("ok: the target still serves a new session")


def scenario_reconfig(host, port, target):
    c = Conn(host, port)
    keys = ["InitiatorName=" + INITIATOR, "TargetName=" + target, "SessionType=Normal", "AuthMethod=None"]
    h, _ = c.login_pdu(keys, 0, 1, transit=True)
    check(Conn.status(h) == 0, "first login step refused: 0x%04x" % Conn.status(h))
    between()
    h, d = c.login_pdu(["HeaderDigest=None", "DataDigest=None"], 1, 3, transit=True)
    st = Conn.status(h)
    check(st >> 8 == 2, "login went on after the configuration changed under it: status 0x%04x" % st)
    print("ok: the login is refused after the change: status 0x%04x" % st)


def chap_response(alg, ident, secret, challenge):
    h = {5: hashlib.md5, 6: hashlib.sha1, 7: hashlib.sha256}[alg]()
    h.update(bytes([ident]) + secret.encode() + challenge)
    return h.digest()


def scenario_chap_change(host, port, target):
    user, secret = arg("--user"), arg("--secret")
    c = Conn(host, port)
    keys = ["InitiatorName=" + INITIATOR, "TargetName=" + target, "SessionType=Normal", "AuthMethod=CHAP"]
    h, d = c.login_pdu(keys, 0)
    check(Conn.status(h) == 0 and text_keys(d).get("AuthMethod") == "CHAP", "target did not choose CHAP")
    h, d = c.login_pdu(["CHAP_A=5"], 0)
    kv = text_keys(d)
    check("CHAP_C" in kv and "CHAP_I" in kv, "no CHAP challenge: %r" % kv)
    print("ok: challenge received")
    between()
    chal = bytes.fromhex(kv["CHAP_C"][2:])
    resp = chap_response(int(kv.get("CHAP_A", "5")), int(kv["CHAP_I"]), secret, chal)
    h, d = c.login_pdu(["CHAP_N=" + user, "CHAP_R=0x" + resp.hex()], 0, 1, transit=True)
    st = Conn.status(h)
    if st == 0:
        h, d = c.login_pdu(["HeaderDigest=None", "DataDigest=None"], 1, 3, transit=True)
        st = Conn.status(h)
    check(st >> 8 == 2, "the old secret still logged in after the CHAP change: status 0x%04x" % st)
    print("ok: a login proving the old secret is refused: status 0x%04x" % st)


def scenario_duplicate_cmdsn(host, port, target):
    pid = int(arg("--pid"))
    c = Conn(host, port)
    c.login(target)
    e = c.cmdsn
    before = rss_kib(pid)
    payload = bytes(32768)
    for _ in range(2000):
        c.sock.sendall(c.nop_out(e + 1, data=payload)[0])
    pdu, _ = c.nop_out(e)
    c.sock.sendall(pdu)
    answers, last_exp = 0, None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        h, _ = c.recv(deadline - time.monotonic())
        if h is None:
            break
        if (h[0] & 0x3F) == 0x20 and be32(h, 16) != 0xFFFFFFFF:
            answers += 1
            last_exp = be32(h, 28)
    check(answers == 2, "%d NOP-In answers to 2001 NOP-Outs of which 1999 repeat a held CmdSN; want 2" % answers)
    check(last_exp == e + 2, "ExpCmdSN %s after the gap closed, want %d" % (last_exp, e + 2))
    grew = (rss_kib(pid) - before) // 1024
    check(grew < 32, "target memory grew by %d MiB: it kept 2000 PDUs that repeat one CmdSN" % grew)
    print("ok: duplicates of a held CmdSN are dropped: 2 answers, ExpCmdSN %d, memory +%d MiB" % (last_exp, grew))


def scenario_window(host, port, target):
    c = Conn(host, port)
    h = c.login(target)
    e, m = be32(h, 28), be32(h, 32)
    depth = m - e + 1
    want = int(arg("--depth", "128"))
    check(depth == want, "login advertises a window of %d commands; the target keeps %d" % (depth, want))
    print("ok: the login response advertises MaxCmdSN = ExpCmdSN + %d - 1" % depth)
    c.clear_ua()
    e, m = c.cmdsn, None
    itts = []
    for i in range(depth):
        itts.append(c.scsi(write16(i * 8, 8), e + i, edtl=4096, write=True))
    ttts = {}
    for itt in itts:
        rh, _ = c.wait_for(itt)
        check(rh is not None and (rh[0] & 0x3F) == 0x31, "write %d got no R2T" % itt)
        ttts[itt] = be32(rh, 20)
        if m is None:
            m = be32(rh, 32)
            check(m == e + depth - 1, "MaxCmdSN %d with every slot free, want %d" % (m, e + depth - 1))
        check(be32(rh, 32) == m, "MaxCmdSN moved to %d while every slot is taken (was %d)" % (be32(rh, 32), m))
    print("ok: %d writes wait for data; MaxCmdSN stays %d" % (len(ttts), m))
    over = c.scsi(TUR, m + 1)
    rh, _ = c.wait_for(over, 1.5)
    check(rh is None, "a command beyond MaxCmdSN was executed")
    print("ok: a command with CmdSN MaxCmdSN + 1 is ignored")
    imm = c.scsi(TUR, m + 1, immediate=True)
    rh, _ = c.wait_for(imm, 3)
    check(rh is not None and rh[3] == 0x28, "an immediate command with every slot taken: %s, want TASK SET FULL" %
          ("no answer" if rh is None else "status 0x%02x" % rh[3]))
    print("ok: an immediate command with every slot taken gets TASK SET FULL")
    # Data for the first write: it completes and frees a slot.
    r2t_itt = itts[0]
    c.sock.sendall(data_out(r2t_itt, ttts[r2t_itt], 0, bytes(4096), c.exp_statsn))
    rh, _ = c.wait_for(r2t_itt)
    check(rh is not None and (rh[0] & 0x3F) == 0x21 and rh[3] == 0, "first write did not complete")
    check(be32(rh, 32) == m + 1, "MaxCmdSN after one write completed: %d, want %d" % (be32(rh, 32), m + 1))
    print("ok: a completed write opens one slot: MaxCmdSN %d" % (m + 1))
    again = c.scsi(TUR, m + 1)
    rh, _ = c.wait_for(again)
    check(rh is not None and rh[3] == 0, "the command at the new MaxCmdSN was not run")
    print("ok: the command at the new MaxCmdSN runs")


def data_out(itt, ttt, offset, data, exp_statsn, final=True):
    hdr = struct.pack(">BBBB", 0x05, 0x80 if final else 0, 0, 0) + b"\0" + len(data).to_bytes(3, "big")
    hdr += b"\0" * 8 + struct.pack(">IIIIIII", itt, ttt, 0, exp_statsn, 0, 0, offset) + b"\0" * 4
    return hdr + pad(data)


def scenario_data_out_timeout(host, port, target):
    c = Conn(host, port)
    c.login(target)
    c.clear_ua()
    t0 = time.monotonic()
    itt = c.scsi(write16(0, 8), c.cmdsn, edtl=4096, write=True)
    h, _ = c.wait_for(itt)
    check(h is not None and (h[0] & 0x3F) == 0x31, "no R2T for the write")
    h, d = c.wait_for(itt, 10)
    check(h is not None, "the write whose data never came was never ended")
    sense = sense_of(h, d)
    check((h[0] & 0x3F) == 0x21 and h[3] == 0x02 and sense == (0x0B, 0x4B, 0x06),
          "ended with status 0x%02x sense %s, want CHECK CONDITION ABORTED COMMAND 4B/06" % (h[3], sense))
    print("ok: the write ended after %.1f s with ABORTED COMMAND / INITIATOR RESPONSE TIMEOUT" %
          (time.monotonic() - t0))
    itt = c.scsi(TUR, c.cmdsn + 1)
    h, _ = c.wait_for(itt)
    check(h is not None and h[3] == 0, "the connection does not serve after the timeout")
    print("ok: the connection goes on")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scenario_send_backlog(host, port, target):
    pid = int(arg("--pid"))
    c = Conn(host, port)
    c.login(target)
    c.clear_ua()
    before = rss_kib(pid)
    payload = bytes(65536)
    pdu, _ = c.nop_out(0, immediate=True, data=payload)
    c.sock.setblocking(False)
    sent = pings = 0
    view = memoryview(b"")
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline and pings < 4096:
        if not view:
            pdu, _ = c.nop_out(c.cmdsn, immediate=True, data=payload)
            view = memoryview(pdu)
            pings += 1
        _, w, _ = select.select([], [c.sock], [], 0.2)
        if not w:
            continue
        try:
            n = c.sock.send(view)
        except BlockingIOError:
            continue
        view = view[n:]
        sent += n
    grew = (rss_kib(pid) - before) // 1024
    print("note: sent %d MiB in %d pings without reading; target RSS grew %d MiB" % (sent >> 20, pings, grew))
    check(grew < 96, "target memory grew by %d MiB for a peer that does not read" % grew)
    check(sent < 200 << 20, "the target kept reading %d MiB from a peer that does not read" % (sent >> 20))
    print("ok: the target stopped reading: memory stays bounded")
    # Finish the ping in flight, then read everything: every complete ping gets its answer.
    c.sock.setblocking(True)
    if view:
        c.sock.sendall(view)
    answers = 0
    while answers < pings:
        h, _ = c.recv(10)
        check(h is not None, "only %d of %d pings answered once read" % (answers, pings))
        if (h[0] & 0x3F) == 0x20 and be32(h, 16) != 0xFFFFFFFF:
            answers += 1
    print("ok: all %d pings answered once the initiator reads" % answers)
    itt = c.scsi(TUR, c.cmdsn)
    h, _ = c.wait_for(itt)
    check(h is not None and h[3] == 0, "the connection does not serve after the backlog drained")
    print("ok: the connection serves again")


def scenario_login_split(host, port, target):
    c = Conn(host, port)
    keys = ["InitiatorName=" + INITIATOR, "TargetName=" + target, "SessionType=Normal", "AuthMethod=None"]
    h, _ = c.login_pdu(keys, 0, 1, transit=True)
    check(Conn.status(h) == 0, "security stage refused")
    unknown = ["X-org.isthmus.test-%s=v" % (("%03d" % i) * 14) for i in range(120)]
    h, d = c.login_pdu(unknown, 1, 3, transit=True)
    parts, got = 1, d
    check(len(d) <= 8192, "a Login Response carries %d bytes of text, over 8192" % len(d))
    while h[1] & 0x40:
        check(not (h[1] & 0x80), "a continued Login Response has the T bit")
        h, d = c.login_pdu([], 1)
        check(Conn.status(h) == 0, "continuation refused: 0x%04x" % Conn.status(h))
        check(len(d) <= 8192, "a Login Response carries %d bytes of text, over 8192" % len(d))
        got += d
        parts += 1
    kv = text_keys(got)
    missing = [k for k in unknown if kv.get(k.split("=")[0]) != "NotUnderstood"]
    check(parts > 1, "the answer to %d unknown keys came in one part" % len(unknown))
    check(not missing, "%d keys unanswered, e.g. %s" % (len(missing), missing[:1]))
    print("ok: %d bytes of answer in %d parts, every key answered NotUnderstood" % (len(got), parts))
    if not (h[1] & 0x80):
        h, d = c.login_pdu([], 1, 3, transit=True)
    check(Conn.status(h) == 0 and h[1] & 0x80, "the login did not complete after the continued answer")
    print("ok: the login completes")


def scenario_maxconn(host, port, target):
    isid = b"\x40\x00\x00\x00\x30\x01"
    a = Conn(host, port, isid=isid)
    a.login(target, extra=["MaxConnections=2"])
    check(a.params.get("MaxConnections") == "2", "MaxConnections negotiated to %s" % a.params.get("MaxConnections"))
    b = start_join(host, port, target, a.tsih, 1, isid)
    j = start_join(host, port, target, a.tsih, 2, isid)
    print("ok: two joining logins started while the session has one connection")
    h, _ = b.login_pdu([], 1, 3, transit=True)
    check(Conn.status(h) == 0, "first joining login refused: 0x%04x" % Conn.status(h))
    h, _ = j.login_pdu([], 1, 3, transit=True)
    st = Conn.status(h)
    check(st == 0x0206, "the third connection of a MaxConnections=2 session: status 0x%04x, want 0x0206" % st)
    print("ok: MaxConnections is checked again when the login completes")


def scenario_alias_bytes(host, port, target):
    c = Conn(host, port)
    raw = b"InitiatorName=" + INITIATOR.encode() + b"\0TargetName=" + target.encode() + \
        b"\0SessionType=Normal\0AuthMethod=None\0InitiatorAlias=bad\xff\xfe-alias\0"
    h, _ = c.login_pdu(None, 0, 1, transit=True, raw=raw)
    check(Conn.status(h) == 0, "login with a non-UTF-8 alias refused: 0x%04x" % Conn.status(h))
    h, _ = c.login_pdu(["HeaderDigest=None", "DataDigest=None"], 1, 3, transit=True)
    check(Conn.status(h) == 0, "login with a non-UTF-8 alias refused: 0x%04x" % Conn.status(h))
    print("ok: logged in with an InitiatorAlias that is not UTF-8")
    between()
    c.close()


def scenario_revoke(host, port, target):
    c = Conn(host, port)
    c.login(target)
    print("ok: logged in, TSIH %d" % c.tsih)
    between()
    t0 = time.monotonic()
    got_async = False
    while time.monotonic() - t0 < 10:
        h, _ = c.recv(10 - (time.monotonic() - t0))
        if h is None:
            break
        if (h[0] & 0x3F) == 0x32 and h[36] == 1:
            got_async = True
            print("ok: Async Message asks for a logout after %.1f s" % (time.monotonic() - t0))
    check(got_async, "no Async Message after the revocation")
    closed = time.monotonic() - t0
    check(closed < 9.5, "the revoked session was not dropped")
    print("ok: the target dropped the revoked session after %.1f s" % closed)


def main():
    scenario, host, port, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    table = {
        "join-after-logout": lambda: scenario_join(host, port, target, "logout"),
        "join-after-drop": lambda: scenario_join(host, port, target, "drop"),
        "join-after-reinstate": lambda: scenario_join(host, port, target, "reinstate"),
        "reconfig-during-login": lambda: scenario_reconfig(host, port, target),
        "chap-change-during-login": lambda: scenario_chap_change(host, port, target),
        "duplicate-cmdsn": lambda: scenario_duplicate_cmdsn(host, port, target),
        "window": lambda: scenario_window(host, port, target),
        "data-out-timeout": lambda: scenario_data_out_timeout(host, port, target),
        "send-backlog": lambda: scenario_send_backlog(host, port, target),
        "login-reply-split": lambda: scenario_login_split(host, port, target),
        "maxconn-completion": lambda: scenario_maxconn(host, port, target),
        "revoke": lambda: scenario_revoke(host, port, target),
        "alias-bytes": lambda: scenario_alias_bytes(host, port, target),
    }
    if scenario not in table:
        print("unknown scenario %s" % scenario)
        return 2
    try:
        table[scenario]()
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    except OSError as e:
        print("FAIL: %s: %s" % (scenario, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
