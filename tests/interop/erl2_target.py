#!/usr/bin/env python3
"""ErrorRecoveryLevel 2 on the target (connection recovery, TASK REASSIGN), driven with raw PDUs
over several connections of one session (test helper).

Usage: erl2_target.py HOST PORT TARGET CASE [--stats-cmd CMD]
Cases:
  unsupported  sessions at ErrorRecoveryLevel 0 and 1: TASK REASSIGN is answered "task allegiance
               reassignment not supported"
  reinstate    level 2, two connections: a 1 MiB READ (8 KiB Data-In) and a 512 KiB WRITE
               (InitialR2T=Yes, 64 KiB R2Ts) on CID 1, whose socket is closed mid-transfer; a new
               connection with CID 1 joins (same TSIH, 16 KiB MaxRecvDataSegmentLength) and
               reassigns both: the read's Data-In come again from ExpDataSN, cut anew, then GOOD;
               the write gets R2Ts for what had not come, ends GOOD and reads back whole; a command
               held on a failed connection behind a CmdSN gap and the command lost in the gap
               are both accepted again with their CmdSN on another connection
  logout       level 2: Logout "remove the connection for recovery" for CID 1 sent on CID 2 (the
               response carries Time2Wait and Time2Retain, CID 1's socket is closed by the
               target), a new CID 3 reassigns the read; TASK REASSIGN of an unknown ITT: task does
               not exist; of a write still allegiant to live CID 2: task still allegiant
  expire       level 2 with DefaultTime2Wait=1 (the target's offer, 2, wins), DefaultTime2Retain=2:
               CID 1 fails with a write waiting for data and is never recovered; half a second after
               Time2Wait + Time2Retain its tasks are gone (does not exist) and the session goes on on CID 2; with every connection gone the session
               can be continued with its TSIH until Time2Wait + Time2Retain pass, not after
  loops        a target with two loops and max-connections 4 (needs --stats-cmd): sessions S1 and
               S2 on the two loops, two connections each, a write held on each connection. CID 1 of
               S1 fails, then CID 1 of S2 after a third connection joined S1: live and failed
               connections of both loops are 5 together, and S2's loop has only the one that just
               failed, so S1's failed connection (on the other loop) is discarded (its write: task
               does not exist); then CID 2 of S2 fails after a third joined S2: its loop discards
               its own older failed connection (CID 1's write: does not exist, CID 2's reassigned)
With --stats-cmd, CMD (a shell command printing the target's session list as JSON) must show the
session's connection_recoveries and task_reassignments. Prints what it checks; exit status 0 when
everything held.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import erl1_target  # noqa: E402
import pdu_abuse  # noqa: E402
from erl1_target import fail, ok, pattern  # noqa: E402

ISID = b"\x40\x00\x00\xe2\x00\x01"
STATS_CMD = None  # --stats-cmd
TMF_REASSIGN = 8
RSP_NAMES = {0: "function complete", 1: "task does not exist", 3: "task still allegiant",
             4: "task allegiance reassignment not supported", 255: "function rejected"}


class Session:
    """What the connections of one session share: the TSIH and the CmdSN numbering."""

    def __init__(self):
        self.tsih = 0
        self.cmdsn = 0


class SConn(erl1_target.Conn):
    """A connection of a session: CmdSN is the session's (RFC 7143 4.2.2.1)."""

    def __init__(self, sock, sess, cid):
        self.sess = sess
        saved = sess.cmdsn
        super().__init__(sock, False, False)
        self.cmdsn = saved
        self.cid = cid

    @property
    def cmdsn(self):
        return self.sess.cmdsn

    @cmdsn.setter
    def cmdsn(self, v):
        self.sess.cmdsn = v

    def tmf(self, function, rtt=0xFFFFFFFF, expdatasn=0, refcmdsn=0):
        itt = self.next_itt()
        rest = struct.pack(">IIIII", rtt, self.cmdsn, 0, refcmdsn, expdatasn) + b"\0" * 8
        self.send(pdu_abuse.bhs(0x02, flags=0x80 | function, immediate=True, itt=itt, rest=rest))
        h, _ = self.expect("the task management response",
                           lambda h, d: h[0] & 0x3F == 0x22 and struct.unpack(">I", h[16:20])[0] == itt)
        return h[2]

    def logout(self, reason, cid):
        itt = self.next_itt()
        rest = struct.pack(">HHII", cid, 0, self.cmdsn, 0) + b"\0" * 16
        self.send(pdu_abuse.bhs(0x06, flags=0x80 | reason, immediate=True, itt=itt, rest=rest))
        h, _ = self.expect("the logout response",
                           lambda h, d: h[0] & 0x3F == 0x26 and struct.unpack(">I", h[16:20])[0] == itt)
        return h[2], struct.unpack(">HH", h[40:44])


def connect(host, port, target, sess, cid, erl=2, mrdsl=8192, extra=None, isid=ISID):
    ops = {"ErrorRecoveryLevel": str(erl), "InitialR2T": "Yes", "ImmediateData": "No",
           "MaxBurstLength": "65536", "FirstBurstLength": "65536", "MaxRecvDataSegmentLength": str(mrdsl),
           "MaxConnections": "8"}
    ops.update(extra or {})
    reply = {}
    sock = pdu_abuse.login(host, port, target, isid=isid, tsih=sess.tsih, cid=cid, ops=ops, reply=reply)
    sock.settimeout(10)
    if sess.tsih == 0:
        sess.tsih = reply["_tsih"]
        if reply.get("ErrorRecoveryLevel") != str(erl):
            fail("ErrorRecoveryLevel=%s negotiated, not %s" % (reply.get("ErrorRecoveryLevel"), erl))
    elif reply["_tsih"] != sess.tsih:
        fail("CID %u joined TSIH %u, not %u" % (cid, reply["_tsih"], sess.tsih))
    return SConn(sock, sess, cid), reply


def first_command(c):
    # The first command meets the unit attention a new nexus reports once.
    itt, _ = c.scsi(b"\0" * 6, 0)
    c.expect("the first response", lambda h, d: h[0] & 0x3F == 0x21 and struct.unpack(">I", h[16:20])[0] == itt)


def write_all(c, lba, data):
    itt, _ = c.write_cmd(lba, data)
    erl1_target.write_solicited(c, itt, data)


def read_all(c, lba, nbytes, what):
    itt, pdus, last = c.read(lba, nbytes // 512)
    if last[0] & 0x3F == 0x21 and last[3] != 0:
        fail("%s: status 0x%02x" % (what, last[3]))
    return erl1_target.dataset(pdus)


def start_read(c, lba, nbytes, keep):
    """A read whose first `keep` Data-In are taken; the rest is left in the socket."""
    cdb = struct.pack(">BBQIBB", 0x88, 0, lba, nbytes // 512, 0, 0)
    itt, _ = c.scsi(cdb, nbytes, read=True)
    got = b""
    for n in range(keep):
        h, d = c.expect("Data-In %u" % n, lambda h, d: h[0] & 0x3F == 0x25 and struct.unpack(">I", h[16:20])[0] == itt)
        datasn, off = struct.unpack(">I", h[36:40])[0], struct.unpack(">I", h[40:44])[0]
        if datasn != n or off != len(got):
            fail("Data-In %u came with DataSN %u at offset %u" % (n, datasn, off))
        got += d
    return itt, got


def start_write(c, lba, data, bursts):
    """A write whose first `bursts` R2Ts are answered; the next R2T is left unanswered."""
    itt, _ = c.write_cmd(lba, data)
    for n in range(bursts + 1):
        h, _ = c.expect("R2T %u" % n, lambda h, d: h[0] & 0x3F == 0x31 and struct.unpack(">I", h[16:20])[0] == itt)
        if n == bursts:
            break
        ttt = struct.unpack(">I", h[20:24])[0]
        r2toff, r2tlen = struct.unpack(">II", h[40:48])
        for o in range(r2toff, r2toff + r2tlen, 8192):
            m = min(8192, r2toff + r2tlen - o)
            c.data_out(itt, ttt, (o - r2toff) // 8192, o, data[o:o + m], o + m == r2toff + r2tlen)
    return itt


def reassign(c, itt, expdatasn=0, want=0, what=""):
    """TASK REASSIGN; "still allegiant" while the target has not seen the old connection fail yet."""
    for _ in range(50):
        rsp = c.tmf(TMF_REASSIGN, rtt=itt, expdatasn=expdatasn)
        if rsp != 3 or want == 3:
            break
        time.sleep(0.1)
    if rsp != want:
        fail("TASK REASSIGN %s: %s, not %s" % (what, RSP_NAMES.get(rsp, rsp), RSP_NAMES.get(want, want)))
    ok("TASK REASSIGN %s: %s" % (what, RSP_NAMES[want]))


def finish_read(c, itt, from_datasn, from_off, expect):
    """The Data-In of a reassigned read from from_datasn on, then its GOOD status."""
    got = b""
    datasn = from_datasn
    seg = 0
    while True:
        h, d = c.expect("the reassigned read", lambda h, d: struct.unpack(">I", h[16:20])[0] == itt)
        op = h[0] & 0x3F
        if op == 0x25:
            sn, off = struct.unpack(">I", h[36:40])[0], struct.unpack(">I", h[40:44])[0]
            if sn != datasn or off != from_off + len(got):
                fail("reassigned read: Data-In DataSN %u offset %u, expected %u at %u" % (sn, off, datasn,
                                                                                            from_off + len(got)))
            datasn += 1
            seg = max(seg, len(d))
            got += d
            if h[1] & 0x01:
                status = h[3]
                break
        elif op == 0x21:
            status = h[3]
            if h[2] != 0:
                fail("reassigned read: response 0x%02x" % h[2])
            break
        else:
            fail("reassigned read: unexpected opcode 0x%02x" % op)
    if status != 0:
        fail("reassigned read ended with status 0x%02x" % status)
    if got != expect:
        fail("reassigned read: %u bytes came from offset %u, %u expected, or they differ" % (len(got), from_off,
                                                                                         len(expect)))
    ok("reassigned read: %u Data-In from DataSN %u (offset %u, %u bytes each at most), then GOOD, data right"
       % (datasn - from_datasn, from_datasn, from_off, seg))
    return seg


def drop(c):
    """The connection breaks: the socket goes without a logout (unread data makes it a reset)."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()


def case_unsupported(host, port, target):
    for erl in (0, 1):
        sess = Session()
        c, _ = connect(host, port, target, sess, 1, erl=erl)
        first_command(c)
        rsp = c.tmf(TMF_REASSIGN, rtt=0x1234)
        if rsp != 4:
            fail("TASK REASSIGN at level %u: %s" % (erl, RSP_NAMES.get(rsp, rsp)))
        ok("level %u: TASK REASSIGN answered %s" % (erl, RSP_NAMES[4]))
        c.logout(0, 0)
        c.sock.close()
    return None


def case_reinstate(host, port, target):
    sess = Session()
    c1, _ = connect(host, port, target, sess, 1)
    first_command(c1)
    c2, _ = connect(host, port, target, sess, 2)
    ok("level 2, two connections of TSIH %u" % sess.tsih)
    rdata, wdata = pattern(1 << 20, 11), pattern(512 * 1024, 29)
    write_all(c2, 0, rdata)
    witt = start_write(c1, 4096, wdata, 2)
    ok("write of %u bytes on CID 1: 2 R2Ts of 64 KiB answered, the third left" % len(wdata))
    ritt, got = start_read(c1, 0, len(rdata), 40)
    ok("read of 1 MiB on CID 1: 40 Data-In of 8 KiB taken")
    drop(c1)
    ok("CID 1's socket closed mid-transfer")
    c3, _ = connect(host, port, target, sess, 1, mrdsl=16384)
    ok("a new connection with CID 1 joined TSIH %u" % sess.tsih)
    reassign(c3, ritt, expdatasn=40, what="of the read from ExpDataSN 40")
    seg = finish_read(c3, ritt, 40, len(got), rdata[len(got):])
    if seg != 16384:
        fail("the reassigned read's Data-In were not cut to the new connection's 16 KiB")
    reassign(c3, witt, what="of the write")
    recov, _ = erl1_target.write_solicited(c3, witt, wdata)
    ok("the write went on with R2Ts for the data that had not come, and ended GOOD")
    if read_all(c2, 4096, len(wdata), "read back") != wdata:
        fail("the reassigned write reads back wrong")
    ok("the reassigned write reads back whole (on CID 2)")
    reassign(c3, ritt, what="of the read again", want=1)
    # A command lost in flight: CmdSN n never arrives, n + 1 waits for it on CID 1, which fails.
    n = sess.cmdsn
    held, _ = c3.scsi(b"\0" * 6, 0, cmdsn=n + 1)
    time.sleep(0.2)
    drop(c3)
    time.sleep(0.2)
    lost, _ = c2.scsi(b"\0" * 6, 0, cmdsn=n)
    c2.response(lost, "the command lost in flight, sent on CID 2 with its CmdSN")
    c2.scsi(b"\0" * 6, 0, itt=held, cmdsn=n + 1)
    c2.response(held, "the command that waited on the failed connection, sent again with its CmdSN")
    sess.cmdsn = n + 2
    ok("a CmdSN gap left by a failed connection closes: both commands sent again on CID 2 with their CmdSN ran")
    return c2, (1, 2)


def case_logout(host, port, target):
    sess = Session()
    c1, _ = connect(host, port, target, sess, 1)
    first_command(c1)
    c2, _ = connect(host, port, target, sess, 2)
    rdata = pattern(1 << 20, 5)
    write_all(c2, 0, rdata)
    ritt, got = start_read(c1, 0, len(rdata), 10)
    ok("read of 1 MiB on CID 1: 10 Data-In taken")
    rsp, (t2w, t2r) = c2.logout(2, 1)
    if rsp != 0:
        fail("Logout remove connection for recovery: response %u" % rsp)
    if t2w != 2 or t2r != 20:
        fail("Logout response: Time2Wait %u, Time2Retain %u (negotiated 2, 20)" % (t2w, t2r))
    ok("Logout on CID 2 removing CID 1 for recovery: response 0, Time2Wait 2, Time2Retain 20")
    c1.sock.settimeout(5)
    closed = False
    try:
        for _ in range(1000):
            h, _ = c1.recv()
            if h is None:
                closed = True
                break
    except (ConnectionResetError, socket.timeout):
        closed = True
    if not closed:
        fail("CID 1's socket stayed open after it was removed for recovery")
    ok("the target closed CID 1's socket")
    c3, _ = connect(host, port, target, sess, 3)
    ok("a new connection CID 3 joined TSIH %u" % sess.tsih)
    reassign(c3, 0xDEAD00, what="of an unknown ITT", want=1)
    reassign(c3, ritt, expdatasn=10, what="of the read from ExpDataSN 10 on CID 3")
    finish_read(c3, ritt, 10, len(got), rdata[len(got):])
    wdata = pattern(128 * 1024, 7)
    witt = start_write(c2, 2048, wdata, 0)
    reassign(c3, witt, what="of a write of live CID 2", want=3)
    # Refused, it is still CID 2's to end: ABORT TASK there.
    if c2.tmf(1, rtt=witt) != 0:
        fail("ABORT TASK of the write on CID 2")
    ok("the write stayed allegiant to CID 2 (ABORT TASK there completes)")
    return c2, (1, 1)


def case_expire(host, port, target):
    sess = Session()
    fast = {"DefaultTime2Wait": "1", "DefaultTime2Retain": "2"}
    c1, reply = connect(host, port, target, sess, 1, extra=fast)
    # Time2Wait is the larger offer (the target's 2 unless configured lower), Time2Retain the smaller.
    t2w, t2r = int(reply.get("DefaultTime2Wait", "-1")), int(reply.get("DefaultTime2Retain", "-1"))
    if t2w not in (1, 2) or t2r != 2:
        fail("DefaultTime2Wait %d, DefaultTime2Retain %d negotiated" % (t2w, t2r))
    hold = t2w + t2r
    first_command(c1)
    c2, _ = connect(host, port, target, sess, 2)
    wdata = pattern(256 * 1024, 3)
    witt = start_write(c1, 0, wdata, 1)
    drop(c1)
    ok("CID 1 failed with a write waiting for data (Time2Wait %d s, Time2Retain %d s)" % (t2w, t2r))
    time.sleep(hold + 0.5)
    reassign(c2, witt, what="%.1f s later" % (hold + 0.5), want=1)
    data = pattern(64 * 1024, 9)
    write_all(c2, 8192, data)
    if read_all(c2, 8192, len(data), "read on CID 2") != data:
        fail("the session does not work on CID 2 after CID 1's tasks were discarded")
    ok("the session goes on on CID 2")
    drop(c2)
    time.sleep(0.5)
    c3, _ = connect(host, port, target, sess, 3)
    ok("with no connection left, the session was continued with TSIH %u" % sess.tsih)
    if read_all(c3, 8192, len(data), "read on CID 3") != data:
        fail("read on the continued session")
    drop(c3)
    time.sleep(hold + 0.5)
    try:
        connect(host, port, target, sess, 4)
    except RuntimeError:
        ok("%.1f s after its last connection failed the session is gone: a login with its TSIH is refused"
           % (hold + 0.5))
        return None
    fail("a login with the TSIH of a session whose connections all failed %.1f s before succeeded" % (hold + 0.5))


def session_states(cmd):
    """TSIH -> (loop, failed connections) of this initiator's sessions, from the session list."""
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20)
    if out.returncode:
        fail("stats command failed: " + out.stderr)
    return {s["tsih"]: (s["loop"], len(s["failed_connections"])) for s in json.loads(out.stdout)
            if s.get("initiator_iqn") == pdu_abuse.INITIATOR}


def wait_failed(cmd, want, what):
    """Until the sessions (TSIH -> count) have that many failed connections, at most 10 s."""
    deadline = time.monotonic() + 10
    while True:
        got = session_states(cmd)
        if all(got.get(t, (None, -1))[1] == n for t, n in want.items()):
            return got
        if time.monotonic() > deadline:
            fail("%s: failed connections %s, expected %s" % (
                what, {t: got.get(t, (None, None))[1] for t in want}, want))
        time.sleep(0.1)


def case_loops(host, port, target):
    if not STATS_CMD:
        fail("the loops case needs --stats-cmd")
    s1, s2 = Session(), Session()
    isid2 = ISID[:5] + b"\x02"
    a1, _ = connect(host, port, target, s1, 1)
    first_command(a1)
    b1, _ = connect(host, port, target, s2, 1, isid=isid2)
    first_command(b1)
    st = session_states(STATS_CMD)
    if st[s1.tsih][0] == st[s2.tsih][0]:
        fail("both sessions are on loop %d" % st[s1.tsih][0])
    ok("S1 (TSIH %u) on loop %d, S2 (TSIH %u) on loop %d" % (s1.tsih, st[s1.tsih][0], s2.tsih, st[s2.tsih][0]))
    a2, _ = connect(host, port, target, s1, 2)
    b2, _ = connect(host, port, target, s2, 2, isid=isid2)
    data = pattern(128 * 1024, 13)
    wa1 = start_write(a1, 0, data, 0)
    wb1 = start_write(b1, 1024, data, 0)
    wb2 = start_write(b2, 2048, data, 0)
    ok("4 connections (max-connections 4), a write held on CID 1 of both sessions and on CID 2 of S2")
    drop(a1)
    wait_failed(STATS_CMD, {s1.tsih: 1, s2.tsih: 0}, "S1's CID 1 failing")
    a3, _ = connect(host, port, target, s1, 3)
    drop(b1)
    # 3 live + 2 failed > 4: S2's loop has only its newest, so S1's loop gives up its failed one.
    wait_failed(STATS_CMD, {s1.tsih: 0, s2.tsih: 1},
                "3 live and 2 failed connections on two loops (max-connections 4)")
    reassign(a3, wa1, what="of S1's write, its failed connection discarded", want=1)
    ok("S2's CID 1 failing put the target over max-connections: S1's failed CID 1, on the other loop, was "
       "discarded")
    b3, _ = connect(host, port, target, s2, 3, isid=isid2)
    drop(b2)
    # Reassignable once the target has seen CID 2 fail; the bound was applied then too.
    reassign(b3, wb2, what="of S2's CID 2 write, kept")
    reassign(b3, wb1, what="of S2's CID 1 write, discarded", want=1)
    wait_failed(STATS_CMD, {s1.tsih: 0, s2.tsih: 1}, "S2's CID 2 failing with CID 1 failed before")
    ok("S2's CID 2 failing: its loop discarded its own older failed CID 1; CID 2's write was reassigned")
    for c in (a2, a3, b3):
        c.sock.close()
    return None


def stats_check(cmd, counts):
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20)
    if out.returncode:
        fail("stats command failed: " + out.stderr)
    sessions = [s for s in json.loads(out.stdout) if s.get("initiator_iqn") == pdu_abuse.INITIATOR]
    if len(sessions) != 1:
        fail("expected one session: %s" % out.stdout[:400])
    s = sessions[0]
    resent = s.get("stats", {}).get("pdus_resent")
    print("target counters of the session: connection_recoveries=%s task_reassignments=%s error_recovery_level=%s"
          " pdus_resent=%s" % (s.get("connection_recoveries"), s.get("task_reassignments"),
                               s.get("error_recovery_level"), resent))
    if (s.get("connection_recoveries"), s.get("task_reassignments")) != counts or s.get("error_recovery_level") != 2:
        fail("the session list does not show %u connection recovery(ies) and %u task reassignment(s) at level 2"
             % counts)
    if not resent or resent < 2:
        fail("the session list does not count the reassigned tasks' PDUs as sent again")
    ok("the session list counts them")


def main():
    host, port, target, case = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    stats_cmd = sys.argv[sys.argv.index("--stats-cmd") + 1] if "--stats-cmd" in sys.argv else None
    global STATS_CMD
    STATS_CMD = stats_cmd
    cases = {"unsupported": case_unsupported, "reinstate": case_reinstate, "logout": case_logout,
             "expire": case_expire, "loops": case_loops}
    res = cases[case](host, port, target)
    if res:
        c, counts = res
        if stats_cmd:
            stats_check(stats_cmd, counts)
        rsp, _ = c.logout(0, 0)
        if rsp != 0:
            fail("session logout: response %u" % rsp)
        c.sock.close()
    print("PASS " + case)


if __name__ == "__main__":
    main()
