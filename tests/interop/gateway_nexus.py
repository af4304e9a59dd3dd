#!/usr/bin/env python3
"""SCSI checks through raw I_T nexuses, for the Python the gateway and RBD tests run inline
(tests/interop/test_gateway_*.sh, test_rbd_*.sh, test_daemon_failover_rbd.sh) (test helper).

A script passes $INTEROP_DIR as its first argument, puts it on sys.path and names itself:
    import gateway_nexus
    from gateway_nexus import say, check, sense_of, Nexus, ...
    gateway_nexus.setup("test_x", IQN, {1: PORT1, 2: PORT2})
PORTS maps a gateway's name (its number, or any key) to its port on HOST (127.0.0.1);
say_ok=True makes check say each check that holds too.

  say(MSG)                  print "[test_x] MSG"
  check(COND, WHAT)         a failed check: print "  FAILED: WHAT" and note it (one that holds:
                            "  ok: WHAT" when set up with say_ok); returns COND
  finish([MSG])             exit 1 after saying how many checks failed, else say MSG if given
  failures                  the WHATs of the failed checks
  sense_of(SENSE)           (key, asc, ascq) of fixed or descriptor sense data (scsi_cmd.py)
  sense_info(SENSE)         the same plus the INFORMATION field (None when not valid)
  Nexus(NAME, GW, ISID)     initiator iqn.2026-11.org.isthmus:NAME with ISID (hex) logged in to
                            gateway GW; .cmd(CDB, out=, in_len=, lun=) -> (status, data, sense),
                            .ready(), .tmf(FUNCTION), .close(); see the class. lun= (cmd, ready,
                            past_ua, rtpg): another LUN than the nexus's own, for one command
  past_ua(NX, CDB, ...)     a command sent again while it meets a unit attention
  write10 / read10          one WRITE(10) / READ(10), past unit attentions when asked
  rtpg(NX)                  REPORT TARGET PORT GROUPS: {group: asymmetric access state}
  wait_views(NXS, GOOD, S)  REPORT TARGET PORT GROUPS polled through each nexus until GOOD
  prout / read_keys / read_rsv   PERSISTENT RESERVE OUT, PR IN READ KEYS / READ RESERVATION
  cdb10 / cdb16 / caw_cdb / prin_cdb / TUR / RTPG   CDBs
  KillUnderLoad(DEV, BLOCK) a gateway SIGKILLed under a write load through a session's device
                            file DEV and other load threads (.conflict_load(NEXUSES): writes
                            that must meet RESERVATION CONFLICT): .run(PID, NAME, LOAD) -> the
                            first write acknowledged that started after the kill; see the class
"""
import hashlib
import os
import signal
import struct
import sys
import threading
import time

import pdu_abuse
import scsi_cmd
from scsi_cmd import sense_of  # noqa: F401  (part of this module's interface)

NAME = "gateway_nexus"
IQN = ""
PORTS = {}
HOST = "127.0.0.1"
SAY_OK = False
failures = []

OPT, NONOPT, STANDBY, UNAVAILABLE = 0, 1, 2, 3  # asymmetric access states (SPC-4 6.37)
TUR = bytes(6)
RTPG = bytes([0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0])  # extended header, 4096 bytes


def setup(name, iqn="", ports=None, host="127.0.0.1", say_ok=False):
    """Name the test (the prefix of say) and the target the nexuses log in to; say_ok: check
    says the checks that hold as well, so a log shows every check made."""
    global NAME, IQN, PORTS, HOST, SAY_OK
    NAME, IQN, PORTS, HOST, SAY_OK = name, iqn, dict(ports or {}), host, say_ok


def say(m):
    print("[%s] %s" % (NAME, m), flush=True)


def check(cond, what):
    if not cond:
        failures.append(what)
        say("  FAILED: " + what)
    elif SAY_OK:
        say("  ok: " + what)
    return cond


def finish(passed=None):
    """The end of a script: exit 1 if a check failed, else say passed (if given)."""
    if failures:
        say("%d check(s) failed" % len(failures))
        sys.exit(1)
    if passed:
        say(passed)


def sense_info(s):
    """(key, asc, ascq, information) of fixed or descriptor sense data; information is None
    when the sense does not mark it valid."""
    if not s:
        return None
    info = None
    if s[0] & 0x7F in (0x72, 0x73):
        i = 8
        while i + 1 < len(s):  # the Information descriptor (type 0), VALID set
            if s[i] == 0 and i + 12 <= len(s) and s[i + 2] & 0x80:
                info = struct.unpack(">Q", s[i + 4:i + 12])[0]
            i += 2 + s[i + 1]
    elif s[0] & 0x80:
        info = struct.unpack(">I", s[3:7])[0]
    return sense_of(s) + (info,)


def cdb10(op, lba, nblocks, byte1=0):
    """A 10-byte CDB of the READ(10) kind: op, byte 1, 32-bit LBA, 16-bit length."""
    return bytes([op, byte1]) + struct.pack(">IBHB", lba, 0, nblocks, 0)


def cdb16(op, lba, nblocks, byte1=0):
    """A 16-byte CDB of the READ(16) kind: op, byte 1, 64-bit LBA, 32-bit length."""
    return bytes([op, byte1]) + struct.pack(">QIBB", lba, nblocks, 0, 0)


def caw_cdb(lba, nblocks):
    """COMPARE AND WRITE of nblocks (its data: the nblocks to compare, then those to write)."""
    return bytes([0x89, 0]) + struct.pack(">Q", lba) + bytes([0, 0, 0, nblocks, 0, 0])


def prin_cdb(sa):
    """PERSISTENT RESERVE IN, service action sa (0 READ KEYS, 1 READ RESERVATION), 4096 bytes."""
    return bytes([0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0])


class Nexus:
    """One I_T nexus: an initiator port logged in to one gateway. Commands go to LUN lun; a lock
    lets threads share the nexus. ua_tries > 1: cmd sends a command again while it meets a unit
    attention (the command did not run), that many times in all."""

    def __init__(self, name, gw, isid, lun=0, timeout=30, bs=512, ua_tries=1):
        self.name, self.gw, self.lun, self.bs, self.ua_tries = name, gw, lun, bs, ua_tries
        pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:" + name
        self.sock = pdu_abuse.login(HOST, PORTS[gw], IQN, isid=bytes.fromhex(isid))
        self.sock.settimeout(timeout)
        self.sn = [0, 1]  # the next CmdSN and ITT
        self.lock = threading.Lock()

    def cmd(self, cdb, out=b"", in_len=0, lun=None):
        """(status, data, sense) of one SCSI command, to LUN lun when given (one nexus reaches
        every LU of the target)."""
        lun = self.lun if lun is None else lun
        with self.lock:
            for _ in range(self.ua_tries):
                r = scsi_cmd.run(self.sock, lun, cdb, out, in_len, self.sn[0], self.sn[1])
                self.sn[0] += 1
                self.sn[1] += 1
                if r[0] != 2 or not r[2] or sense_of(r[2])[0] != 6:
                    break
            return r

    def ready(self, tries=6, must=True, lun=None):
        """TEST UNIT READY (to LUN lun when given) until GOOD, at most tries times: clears the
        unit attentions a new nexus starts with. Never GOOD: a failed check, unless must is
        False. Returns whether it got GOOD."""
        for _ in range(tries):
            st, _, s = self.cmd(TUR, lun=lun)
            if st == 0:
                return True
        if must:
            check(False, "%s on gateway %s: TEST UNIT READY never GOOD (%s)" % (self.name, self.gw, sense_of(s)))
        return False

    def tmf(self, function):
        """A task management function (5: LOGICAL UNIT RESET) for the nexus's LUN, immediate;
        its response code, or None when the connection closed first."""
        with self.lock:
            rest = struct.pack(">IIIII", 0xFFFFFFFF, self.sn[0], 0, 0, 0) + bytes(8)
            lun_field = bytes([0, self.lun]) + bytes(6)
            self.sock.sendall(pdu_abuse.bhs(0x02, 0x80 | function, True, 0, 0, lun_field, self.sn[1], rest))
            self.sn[1] += 1
            while True:
                h, _ = pdu_abuse.recv_pdu(self.sock)
                if h is None:
                    return None
                if h[0] & 0x3F == 0x22:
                    return h[2]

    def close(self):
        self.sock.close()


def past_ua(nx, cdb, out=b"", in_len=0, ua_retries=3, tell=False, lun=None):
    """The command (to LUN lun when given), sent again up to ua_retries times while it meets a
    unit attention (it did not run); tell: say each one. The last (status, data, sense)."""
    for _ in range(ua_retries + 1):
        st, d, s = nx.cmd(cdb, out, in_len, lun=lun)
        if st != 2 or not s or sense_of(s)[0] != 6:
            break
        if tell:
            say("  %s through gateway %s: unit attention %s" % (nx.name, nx.gw, sense_of(s)))
    return st, d, s


def write10(nx, lba, data, ua_retries=0, tell=False):
    """WRITE(10) of data (whole blocks of the nexus's size) at lba; its status."""
    return past_ua(nx, cdb10(0x2A, lba, len(data) // nx.bs), out=data, ua_retries=ua_retries, tell=tell)[0]


def check_caw_at_once(nx, lba, old, new, bound_s=4.0):
    """A setup WRITE(10) of old at lba, then a COMPARE AND WRITE of one block (old to new) through
    nx: checks that it gets GOOD within bound_s, that is without waiting for a group lock another
    gateway left held (whose wait is RBD_LU_STATE_CAW_WAIT_MS, 5 s)."""
    check(write10(nx, lba, old, ua_retries=3) == 0, "setup write through gateway %s" % nx.gw)
    t0 = time.time()
    st, _, s = nx.cmd(caw_cdb(lba, 1), out=old + new)
    took = time.time() - t0
    say("  status 0x%02x %s after %.2f s" % (st, sense_of(s), took))
    check(st == 0 and took < bound_s, "GOOD, without waiting for the lock (%.2f s)" % took)


def read10(nx, lba, nblocks=1, ua_retries=0, tell=False):
    """READ(10) of nblocks at lba: (status, data, sense)."""
    return past_ua(nx, cdb10(0x28, lba, nblocks), in_len=nblocks * nx.bs, ua_retries=ua_retries, tell=tell)


def rtpg(nx, lun=None):
    """REPORT TARGET PORT GROUPS (through LUN lun when given: the states are per LU), sent up
    to 4 times until GOOD: {group: state}, or None."""
    for _ in range(4):
        st, d, _ = nx.cmd(RTPG, in_len=4096, lun=lun)
        if st == 0:
            break
    if st != 0:
        return None
    groups, at, end = {}, 4, 4 + struct.unpack(">I", d[:4])[0]
    while at + 8 <= end:
        groups[struct.unpack(">H", d[at + 2:at + 4])[0]] = d[at] & 0x0F
        at += 8 + 4 * d[at + 7]
    return groups


def wait_views(pollers, good, bound, pause=0.2):
    """Polls REPORT TARGET PORT GROUPS through each poller until good(gw, view) holds for every
    one: (seconds it took, {gw: view}), or (None, the last views) after bound seconds."""
    t0 = time.time()
    views = {}
    while time.time() - t0 < bound:
        views = {nx.gw: rtpg(nx) for nx in pollers}
        if all(v is not None and good(gw, v) for gw, v in views.items()):
            return time.time() - t0, views
        time.sleep(pause)
    return None, views


def prout(nx, sa, key=0, sark=0, type_=0, flags=0):
    """PERSISTENT RESERVE OUT, service action sa (0 REGISTER, 1 RESERVE, 2 RELEASE, 3 CLEAR,
    4 PREEMPT), TYPE type_, the basic parameter list (flags: byte 20, APTPL 0x01,
    ALL_TG_PT 0x04, SPEC_I_PT 0x08); its status."""
    data = struct.pack(">QQ", key, sark) + bytes([0, 0, 0, 0, flags, 0, 0, 0])
    return nx.cmd(bytes([0x5F, sa, type_, 0, 0, 0, 0, 0, 24, 0]), out=data)[0]


def read_keys(nx):
    """PR IN READ KEYS: (status, generation, sorted keys); (status, None, None) when not GOOD."""
    st, d, _ = nx.cmd(prin_cdb(0), in_len=4096)
    if st != 0:
        return st, None, None
    gen, n = struct.unpack(">II", d[:8])
    return st, gen, sorted(struct.unpack(">Q", d[8 + i:16 + i])[0] for i in range(0, n, 8))


def read_rsv(nx):
    """PR IN READ RESERVATION: (holder's key, type), or None when there is no reservation."""
    st, d, s = nx.cmd(prin_cdb(1), in_len=4096)
    if st != 0:
        raise RuntimeError("READ RESERVATION through gateway %s: status 0x%02x %s" % (nx.gw, st, sense_of(s)))
    n = struct.unpack(">I", d[4:8])[0]
    return (struct.unpack(">Q", d[8:16])[0], d[21] & 0x0F) if n else None


class KillUnderLoad:
    """A gateway SIGKILLed under load: a writer through a daemon session's device file dev
    (4 KiB blocks 0..nblk-1 round robin, 5 ms apart, the data of write seq block(seq, blk)) and
    the load functions given to run. acked: (seq, blk, start, end, sha256 of the data) of every
    write acknowledged, in order; errors: what ended the writer early; t_kill: when the kill was
    sent (None before); stop: set when the load is to end (each load function loops until then)."""

    def __init__(self, dev, block, nblk=64, bs=4096):
        self.dev, self.block, self.nblk, self.bs = dev, block, nblk, bs
        self.stop = threading.Event()
        self.t_kill = None
        self.acked, self.errors = [], []

    def killed(self):
        return self.t_kill is not None

    def _write(self):
        fd = os.open(self.dev, os.O_WRONLY)
        seq = 0
        try:
            while not self.stop.is_set():
                blk = seq % self.nblk
                data = self.block(seq, blk)
                t0 = time.time()
                os.pwrite(fd, data, blk * self.bs)
                self.acked.append((seq, blk, t0, time.time(), hashlib.sha256(data).hexdigest()))
                seq += 1
                time.sleep(0.005)
        except OSError as e:
            self.errors.append("%s after %d writes" % (e, seq))
        finally:
            os.close(fd)

    def run(self, pid, name, load=(), before=3, after=3, wait=30):
        """Runs the writer and the load functions on threads; before seconds later (the writer
        must have had more than 20 writes acknowledged, no error) SIGKILLs pid (name: which
        gateway, for the log), waits (wait seconds at most) for the first write acknowledged
        that started after the kill (one already in flight may have had its answer from the
        dead gateway), lets the load go on after seconds more and stops it. Returns that
        write, or None."""
        ts = [threading.Thread(target=f) for f in (self._write,) + tuple(load)]
        for t in ts:
            t.start()
        time.sleep(before)
        check(not self.errors and len(self.acked) > 20,
              "the writer writes before the kill (%d writes, %s)" % (len(self.acked), self.errors))
        say("SIGKILL to %s (pid %d) after %d acknowledged writes" % (name, pid, len(self.acked)))
        os.kill(pid, signal.SIGKILL)
        self.t_kill = time.time()
        first = None
        while time.time() < self.t_kill + wait and first is None:
            first = next((w for w in list(self.acked) if w[2] > self.t_kill), None)
            time.sleep(0.05)
        time.sleep(after)
        self.stop.set()
        for t in ts:
            t.join(60)
        check(not any(t.is_alive() for t in ts), "the load threads end")
        return first

    def conflict_load(self, nexuses, ua_retries=0):
        """A load function for run: a WRITE(10) through each of nexuses, (who, gw, nexus,
        on_killed_gateway) each, every 50 ms, each of which must meet RESERVATION CONFLICT; a
        nexus on the gateway to be killed is left out once the kill is sent.
        conflicts[(who, gw)]: [RESERVATION CONFLICTs, other outcomes]; refused: writes through
        the killed gateway that failed because of the kill."""
        self.conflicts = {(who, gw): [0, 0] for who, gw, _, _ in nexuses}
        self.refused = 0

        def load():
            n = 0
            while not self.stop.is_set():
                for who, gw, nx, dying in nexuses:
                    if dying and self.killed():
                        continue
                    try:
                        st = write10(nx, 100000 + n % 8, bytes([n & 0xFF]) * 512, ua_retries=ua_retries)
                    except Exception as e:
                        if dying and self.killed():
                            self.refused += 1
                            continue
                        st = "error %s" % e
                    self.conflicts[(who, gw)][0 if st == 0x18 else 1] += 1
                    if st != 0x18:
                        say("  %s through gateway %s: %s, want RESERVATION CONFLICT" % (who, gw, st))
                n += 1
                time.sleep(0.05)
        return load

    def after_kill(self):
        """The writes acknowledged that started after the kill."""
        return [w for w in self.acked if w[2] > self.t_kill]
