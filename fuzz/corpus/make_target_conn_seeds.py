#!/usr/bin/env python3
"""Seed inputs for fuzz/fuzz_target_conn.c, written to fuzz/corpus/fuzz_target_conn/.

Each seed is a script in the harness' input format (see the comment at the top of
fuzz_target_conn.c): a mode byte, then records that log connections in through the harness'
login helper, send PDUs it frames (CmdSN, ExpStatSN, digests filled in), raw bytes, closes,
stalls and a target shutdown. Run it from anywhere; it rewrites every seed it knows.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_target_conn")

K_RAW, K_PDU, K_LOGIN, K_CLOSE, K_STALL, K_SHUTDOWN, K_REPEAT = range(7)

# Login plan bits (fuzz_target_conn.c)
P0_DISCOVERY, P0_CHAP_TARGET, P0_JOIN, P0_HDIGEST = 0x01, 0x02, 0x04, 0x08
P0_DDIGEST, P0_SKIP_SECURITY, P0_NO_IMMEDIATE, P0_INITIAL_R2T = 0x10, 0x20, 0x40, 0x80
P1_MUTUAL, P1_WRONG_SECRET = 0x40, 0x80
P2_SAME_CID, P2_SPLIT, P2_ONE_CONNECTION, P2_ODD_KEYS = 0x04, 0x08, 0x40, 0x80
# MaxRecvDataSegmentLength 65536, burst lengths 262144/65536, MaxOutstandingR2T 16
P1_DEFAULT = 2 | 2 << 2 | 2 << 4

# PDU record control bits
CTL_KEEP_LEN, CTL_KEEP_CMDSN, CTL_KEEP_STATSN = 0x01, 0x02, 0x04
SN_OWN = 1 << 5  # ctl bits 5-7 = 1: the harness numbers CmdSN like an initiator (runs ahead)


def sn_ahead(k):
    """ctl bits 5-7: CmdSN = ExpCmdSN + k for k in 1..3 (held until the gap closes)."""
    return (k + 1) << 5


def op(conn, kind):
    return bytes([(conn << 6) | kind])


def login(conn=0, p0=0, p1=P1_DEFAULT, p2=0):
    return op(conn, K_LOGIN) + bytes([p0, p1, p2])


def pdu(conn, bhs, data=b"", ctl=0, ahs=b""):
    assert len(bhs) == 48 and len(ahs) % 4 == 0
    bhs = bytearray(bhs)
    bhs[4] = len(ahs) // 4
    return op(conn, K_PDU) + bytes([ctl]) + bytes(bhs) + ahs + struct.pack(">H", len(data)) + data


def raw(conn, data):
    return op(conn, K_RAW) + struct.pack(">H", len(data)) + data


def close(conn, full=False):
    return op(conn, K_CLOSE) + bytes([1 if full else 0])


def repeat(times):
    """The next record runs `times` times (1..256)."""
    return op(0, K_REPEAT) + bytes([times - 1])


def stall(conn):
    return op(conn, K_STALL)


def shutdown():
    return op(0, K_SHUTDOWN)


def lun_field(lun):
    return bytes([0, lun, 0, 0, 0, 0, 0, 0])


def scsi_cmd(itt, cdb, edtl=0, read=False, write=False, final=True, lun=0, immediate=False, attr=1):
    b = bytearray(48)
    b[0] = 0x01 | (0x40 if immediate else 0)
    b[1] = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | attr
    b[8:16] = lun_field(lun)
    struct.pack_into(">II", b, 16, itt, edtl)
    b[32 : 32 + len(cdb)] = cdb
    return bytes(b)


def data_out(itt, ttt, offset, datasn=0, final=True, lun=0):
    b = bytearray(48)
    b[0] = 0x05
    b[1] = 0x80 if final else 0
    b[8:16] = lun_field(lun)
    struct.pack_into(">II", b, 16, itt, ttt)
    struct.pack_into(">II", b, 36, datasn, offset)
    return bytes(b)


def nop_out(itt, ttt=0xFFFFFFFF, immediate=False):
    b = bytearray(48)
    b[0] = 0x00 | (0x40 if immediate else 0)
    b[1] = 0x80
    struct.pack_into(">II", b, 16, itt, ttt)
    return bytes(b)


def tmf(itt, function, rtt=0xFFFFFFFF, lun=0, refcmdsn=0):
    b = bytearray(48)
    b[0] = 0x42
    b[1] = 0x80 | function
    b[8:16] = lun_field(lun)
    struct.pack_into(">II", b, 16, itt, rtt)
    struct.pack_into(">I", b, 32, refcmdsn)
    return bytes(b)


def text_req(itt, final=True, cont=False, ttt=0xFFFFFFFF):
    b = bytearray(48)
    b[0] = 0x04
    b[1] = (0x80 if final else 0) | (0x40 if cont else 0)
    struct.pack_into(">II", b, 16, itt, ttt)
    return bytes(b)


def logout(itt, reason=0, cid=0):
    b = bytearray(48)
    b[0] = 0x46
    b[1] = 0x80 | reason
    struct.pack_into(">IH", b, 16, itt, cid)
    return bytes(b)


def login_req(itt, csg, nsg, transit, isid, tsih, cid, cmdsn, expstatsn, datalen, cont=False):
    b = bytearray(48)
    b[0] = 0x43
    b[1] = (0x80 if transit else 0) | (0x40 if cont else 0) | csg << 2 | (nsg if transit else 0)
    b[5:8] = datalen.to_bytes(3, "big")
    b[8:14] = isid
    struct.pack_into(">HIH", b, 14, tsih, itt, cid)
    struct.pack_into(">II", b, 24, cmdsn, expstatsn)
    return bytes(b)


def keys(*pairs):
    return b"".join(("%s=%s" % kv).encode() + b"\0" for kv in pairs)


def pad(data):
    return data + b"\0" * (-len(data) % 4)


INQUIRY = bytes([0x12, 0, 0, 0, 96, 0])
READ_CAPACITY10 = bytes([0x25] + [0] * 9)
REPORT_LUNS = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
TEST_UNIT_READY = bytes(6)
MODE_SENSE6 = bytes([0x1A, 0, 0x3F, 0, 255, 0])
SYNC_CACHE10 = bytes([0x35] + [0] * 9)


def read10(lba, blocks):
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def write10(lba, blocks):
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def ua():
    """TEST UNIT READY on LUN 0 takes the power-on unit attention, so later commands succeed."""
    return pdu(0, scsi_cmd(0x100, TEST_UNIT_READY))


def seeds():
    s = {}
    s["login_only"] = b"\0" + login()

    s["login_scsi"] = (
        b"\0"
        + login()
        + pdu(0, scsi_cmd(1, INQUIRY, 96, read=True))
        + ua()
        + pdu(0, scsi_cmd(2, READ_CAPACITY10, 8, read=True))
        + pdu(0, scsi_cmd(3, REPORT_LUNS, 256, read=True))
        + pdu(0, scsi_cmd(4, TEST_UNIT_READY))
        + pdu(0, scsi_cmd(5, write10(8, 8), 4096, write=True), bytes(range(256)) * 16)
        + pdu(0, scsi_cmd(6, read10(0, 16), 8192, read=True))
        # 8 KiB write: 1 KiB immediate, the rest unsolicited Data-Out (InitialR2T=No)
        + pdu(0, scsi_cmd(7, write10(32, 16), 8192, write=True, final=False), b"\xa5" * 1024)
        + pdu(0, data_out(7, 0xFFFFFFFF, 1024, 0), b"\x5a" * 7168)
        + pdu(0, scsi_cmd(8, MODE_SENSE6, 255, read=True))
        + pdu(0, scsi_cmd(9, SYNC_CACHE10))
        + pdu(0, scsi_cmd(10, read10(0, 8), 4096, read=True, lun=1))
    )

    # InitialR2T=Yes, ImmediateData=No: the write waits for an R2T (TTT 1: the TEST UNIT READY took 0)
    s["login_r2t_write"] = (
        b"\0"
        + login(p0=P0_INITIAL_R2T | P0_NO_IMMEDIATE)
        + ua()
        + pdu(0, scsi_cmd(1, write10(0, 8), 4096, write=True))
        + pdu(0, data_out(1, 1, 0, 0, final=False), b"\x11" * 2048)
        + pdu(0, data_out(1, 1, 2048, 1), b"\x22" * 2048)
        + pdu(0, scsi_cmd(2, read10(0, 8), 4096, read=True))
    )

    s["discovery_sendtargets"] = (
        b"\0"
        + login(p0=P0_DISCOVERY)
        + pdu(0, text_req(1), keys(("SendTargets", "All")))
        + pdu(0, logout(2, 0))
    )

    s["discovery_chap_sendtargets"] = (
        b"\x04"
        + login(p0=P0_DISCOVERY, p1=P1_DEFAULT | P1_MUTUAL)
        + pdu(0, text_req(1), keys(("SendTargets", "All")))
    )

    s["chap_mutual_inquiry"] = (
        b"\0"
        + login(p0=P0_CHAP_TARGET, p1=P1_DEFAULT | P1_MUTUAL)
        + pdu(0, scsi_cmd(1, INQUIRY, 96, read=True))
        + ua()
        + pdu(0, scsi_cmd(2, read10(0, 1), 512, read=True))
    )

    s["chap_oneway_split"] = (
        b"\0"
        + login(p0=P0_CHAP_TARGET, p2=P2_SPLIT)
        + pdu(0, scsi_cmd(1, TEST_UNIT_READY))
    )

    s["chap_wrong_secret"] = b"\0" + login(p0=P0_CHAP_TARGET, p1=P1_DEFAULT | P1_WRONG_SECRET)

    s["digests_rw"] = (
        b"\0"
        + login(p0=P0_HDIGEST | P0_DDIGEST)
        + ua()
        + pdu(0, scsi_cmd(1, write10(0, 2), 1024, write=True), b"\x77" * 1024)
        + pdu(0, scsi_cmd(2, read10(0, 2), 1024, read=True))
        + pdu(0, nop_out(3), b"ping")
        + pdu(0, scsi_cmd(4, read10(0, 1), 512, read=True), ctl=0x08)  # bad header digest
    )

    s["two_conns_join"] = (
        b"\x01"
        + login(0)
        + login(1, p0=P0_JOIN)
        + pdu(1, scsi_cmd(1, INQUIRY, 96, read=True))
        + ua()
        + pdu(0, scsi_cmd(2, read10(0, 8), 4096, read=True))
        + pdu(1, scsi_cmd(3, write10(0, 1), 512, write=True), b"\x01" * 512)
        + pdu(0, logout(4, 1, cid=1))
        + pdu(0, scsi_cmd(5, TEST_UNIT_READY))
    )

    s["three_conns"] = (
        b"\x02"
        + login(0, p0=P0_HDIGEST)
        + login(1, p0=P0_JOIN | P0_DDIGEST)
        + login(2, p0=P0_JOIN)
        + ua()
        + pdu(2, scsi_cmd(1, read10(0, 1), 512, read=True), ctl=sn_ahead(2))
        + pdu(1, scsi_cmd(2, read10(1, 1), 512, read=True), ctl=sn_ahead(1))
        + pdu(0, scsi_cmd(3, read10(2, 1), 512, read=True))
        + pdu(2, logout(4, 0))
    )

    s["nop_out"] = (
        b"\0"
        + login()
        + pdu(0, nop_out(1), b"0123456789abcdef")
        + pdu(0, nop_out(0xFFFFFFFF, immediate=True))
        + pdu(0, nop_out(2, immediate=True))
    )

    s["tmf"] = (
        b"\0"
        + login(p0=P0_INITIAL_R2T | P0_NO_IMMEDIATE)
        + pdu(0, scsi_cmd(1, write10(0, 8), 4096, write=True))
        + pdu(0, tmf(2, 1, rtt=1))  # ABORT TASK
        + pdu(0, scsi_cmd(3, write10(8, 8), 4096, write=True))
        + pdu(0, tmf(4, 2))  # ABORT TASK SET
        + pdu(0, tmf(5, 5))  # LOGICAL UNIT RESET
        + pdu(0, tmf(6, 6))  # TARGET WARM RESET
        + pdu(0, tmf(7, 1, rtt=99, refcmdsn=0x101), ctl=sn_ahead(1))
        + pdu(0, tmf(8, 7))  # TARGET COLD RESET
    )

    s["logout"] = b"\0" + login() + pdu(0, scsi_cmd(1, TEST_UNIT_READY)) + pdu(0, logout(2, 0))

    s["text_cbit"] = (
        b"\0"
        + login(p1=0 | 2 << 2 | 2 << 4)  # MaxRecvDataSegmentLength 512
        + pdu(0, text_req(1, final=False, cont=True), b"SendTar")
        + pdu(0, text_req(1), b"gets=All\0")
        + pdu(0, text_req(2), keys(("MaxRecvDataSegmentLength", "1024")))
        + pdu(0, text_req(3), keys(("SendTargets", "iqn.2026-11.org.isthmus:fuzz")))
    )

    s["held_pdus"] = (
        b"\0"
        + login()
        + pdu(0, scsi_cmd(2, read10(1, 1), 512, read=True), ctl=sn_ahead(2))
        + pdu(0, nop_out(3), b"x", ctl=sn_ahead(1))
        + pdu(0, scsi_cmd(1, read10(0, 1), 512, read=True))
    )

    s["stall_large_read"] = (
        b"\0"
        + login()
        + stall(0)
        + pdu(0, scsi_cmd(1, read10(0, 2048), 1 << 20, read=True))
        + pdu(0, scsi_cmd(2, read10(0, 2048), 1 << 20, read=True))
        + stall(0)
        + pdu(0, nop_out(3))
    )

    s["shutdown"] = b"\x01" + login(0) + login(1, p0=P0_DISCOVERY) + shutdown() + pdu(0, logout(1, 0))

    s["close_mid_login"] = (
        b"\x01"
        + login(0, p0=P0_CHAP_TARGET, p2=1 << 4)  # stops after the first request
        + close(0)
        + login(1, p2=P2_ODD_KEYS)
        + close(1, full=True)
    )

    # A whole login and an INQUIRY as raw bytes: mutations of the stream itself get past login.
    isid = bytes([0x80, 0, 0, 1, 0, 0])
    lk = pad(
        keys(
            ("InitiatorName", "iqn.2026-11.org.isthmus:fuzz-initiator"),
            ("TargetName", "iqn.2026-11.org.isthmus:fuzz"),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxRecvDataSegmentLength", "65536"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
        )
    )
    inq = bytearray(scsi_cmd(1, INQUIRY, 96, read=True))
    struct.pack_into(">II", inq, 24, 1, 1)
    s["raw_login_inquiry"] = (
        b"\0"
        + raw(0, login_req(1, 1, 3, True, isid, 0, 0, 1, 0, len(lk.rstrip(b"\0")) + 1) + lk)
        + raw(0, bytes(inq))
    )
    # Many commands in flight: each write waits for its data (R2T), numbered like an initiator.
    s["window_writes"] = (
        b"\0"
        + login(p0=P0_INITIAL_R2T | P0_NO_IMMEDIATE, p1=2 | 2 << 2 | 0 << 4)
        + ua()
        + repeat(130)
        + pdu(0, scsi_cmd(0x200, write10(0, 1), 512, write=True), ctl=SN_OWN)
        + pdu(0, nop_out(0x300), ctl=SN_OWN)
    )

    s["repeat_reads_stalled"] = (
        b"\0"
        + login()
        + ua()
        + stall(0)
        + repeat(32)
        + pdu(0, scsi_cmd(0x400, read10(0, 64), 32768, read=True), ctl=SN_OWN)
        + stall(0)
    )

    # PDUs held behind a gap in CmdSN, several with the same CmdSN, then the gap closes.
    s["held_duplicates"] = (
        b"\0"
        + login()
        + repeat(8)
        + pdu(0, nop_out(0x500), b"dup", ctl=sn_ahead(1))
        + pdu(0, nop_out(0x501))
    )
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds()), OUT))


if __name__ == "__main__":
    main()
