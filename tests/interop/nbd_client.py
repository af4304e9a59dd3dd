#!/usr/bin/env python3
"""A minimal NBD client for the daemon's exports (test helper, imported by the tests).

connect(path) does the fixed newstyle handshake with NBD_OPT_GO and returns an Nbd (with the
export's size and transmission flags) whose request() sends one command and reply() reads one
simple reply; read() and write() do both.
"""
import socket
import struct

NBD_OPTS_MAGIC = 0x49484156454F5054
NBD_REP_MAGIC = 0x3E889045565A9
NBD_REQUEST_MAGIC = 0x25609513
NBD_REPLY_MAGIC = 0x67446698
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 6
FLAG_READ_ONLY = 1 << 1


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("NBD server closed the connection")
        buf += chunk
    return buf


class Nbd:
    def __init__(self, sock, size, flags=0):
        self.sock = sock
        self.size = size
        self.flags = flags
        self.cookie = 0
        self.lengths = {}  # cookie -> bytes a successful READ reply carries

    def pack(self, cmd, offset, length, payload=b"", flags=0):
        """One request as bytes (its cookie registered), for sending several in one write."""
        self.cookie += 1
        self.lengths[self.cookie] = length if cmd == CMD_READ else 0
        return struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, flags, cmd, self.cookie, offset, length) + payload

    def request(self, cmd, offset, length, payload=b"", flags=0):
        self.sock.sendall(self.pack(cmd, offset, length, payload, flags))
        return self.cookie

    def reply(self):
        """(error, cookie, data) of the next reply."""
        magic, err, cookie = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        if magic != NBD_REPLY_MAGIC:
            raise ConnectionError("bad reply magic 0x%x" % magic)
        n = self.lengths.pop(cookie, 0)
        data = recv_exact(self.sock, n) if n and not err else b""
        return err, cookie, data

    def read(self, offset, length):
        self.request(CMD_READ, offset, length)
        err, _, data = self.reply()
        return err, data

    def write(self, offset, payload):
        self.request(CMD_WRITE, offset, len(payload), payload)
        return self.reply()[0]

    def close(self):
        try:
            self.sock.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
        except OSError:
            pass
        self.sock.close()


def handshake(sock):
    greet = recv_exact(sock, 18)
    if greet[:8] != b"NBDMAGIC":
        raise ConnectionError("no NBD greeting")
    sock.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    sock.sendall(struct.pack(">QII", NBD_OPTS_MAGIC, 7, 6) + struct.pack(">IH", 0, 0))  # NBD_OPT_GO ""
    size, flags = None, 0
    while True:
        magic, _, rtype, rlen = struct.unpack(">QIII", recv_exact(sock, 20))
        if magic != NBD_REP_MAGIC:
            raise ConnectionError("bad option reply magic")
        data = recv_exact(sock, rlen) if rlen else b""
        if rtype == 3 and struct.unpack(">H", data[:2])[0] == 0:
            size, flags = struct.unpack(">QH", data[2:12])
        elif rtype == 1:
            return size, flags
        elif rtype & 0x80000000:
            raise ConnectionError("NBD_OPT_GO refused (0x%x)" % rtype)


def connect(path, timeout=10):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    size, flags = handshake(sock)
    return Nbd(sock, size, flags)
