#!/usr/bin/env bash
# Bounds of the daemon's NBD exports against hostile local clients (the LUN comes from
# tests/interop/fake_target.py, whose log counts the READs that reach the target):
#   - nbd-max-clients = 4: the fifth and sixth clients are closed at once; when one leaves, a new
#     one is served;
#   - requests past the end of the export, misaligned, too large or unknown get EINVAL (ENOSPC
#     for writes and trims past the end), and a WRITE over 1 MiB closes the connection;
#   - a client that sends 100 READs of 1 MiB and reads no reply: the daemon sends at most 16 MiB
#     of them to the target meanwhile, and all 100 are answered once the client reads;
#   - a client that sends handshake options without reading the answers: the daemon stops
#     reading it after a bounded backlog;
#   - RLIMIT_NOFILE lowered until accept4 fails with EMFILE: the daemon uses little CPU over 2 s
#     with connections waiting (no busy loop), and serves again once descriptors are free.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need jq python3
source "$(dirname "$0")/daemon_helpers.bash"
export INTEROP_DIR

start_fake_target
printf 'nbd-max-clients = 4\n' >>"$DMN_CONF"
dmn_start --no-fuse

SID=$(ism login iqn.2026-11.org.isthmus:fake:good --portal "$HP" --type data | tail -n1) || fail "login"
NBD=$(sess_field "$SID" '.devices[0].nbd_socket')
[[ -S "$NBD" ]] || fail "no NBD export ($NBD)"

say "nbd-max-clients = 4: six clients at once"
python3 - "$NBD" <<'PY' || fail "client limit"
import os, sys
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
held, refused = [], 0
for i in range(6):
    try:
        held.append(nbd_client.connect(sys.argv[1], timeout=5))
    except (ConnectionError, OSError) as e:
        refused += 1
if len(held) != 4 or refused != 2:
    print("%d clients served, %d refused; want 4 and 2" % (len(held), refused))
    sys.exit(1)
for n in held:
    assert n.read(0, 4096)[0] == 0
held.pop().close()
for _ in range(50):  # the daemon notices the departure when it reads the EOF
    try:
        n = nbd_client.connect(sys.argv[1], timeout=5)
        break
    except (ConnectionError, OSError):
        import time
        time.sleep(0.1)
else:
    print("no client served after one left")
    sys.exit(1)
assert n.read(0, 4096)[0] == 0
PY
grep -q "nbd-max-clients" "$DMN_LOG" || fail "no log line about the refused clients"
say "ok: 4 clients served, 2 closed at once, a new one served after one left"

say "requests past the export, of odd sizes, and too large"
python3 - "$NBD" <<'PY' || fail "bad requests"
import os, struct, sys
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
n = nbd_client.connect(sys.argv[1])
size = n.size
want = [
    ("READ past the end", nbd_client.CMD_READ, size, 512, 22),
    ("READ across the end", nbd_client.CMD_READ, size - 512, 1024, 22),
    ("READ at offset 2^64 - 512", nbd_client.CMD_READ, (1 << 64) - 512, 1024, 22),
    ("READ not block-aligned", nbd_client.CMD_READ, 100, 512, 22),
    ("READ of 2 MiB", nbd_client.CMD_READ, 0, 2 << 20, 22),
    ("TRIM past the end", nbd_client.CMD_TRIM, size, 4096, 28),
    ("unknown command 9", 9, 0, 512, 22),
]
bad = 0
for what, cmd, off, ln, errno in want:
    n.request(cmd, off, ln)
    err, _, data = n.reply()
    if err != errno:
        print("%s: error %d, want %d" % (what, err, errno))
        bad += 1
n.request(nbd_client.CMD_WRITE, size - 512, 1024, b"w" * 1024)
err, _, _ = n.reply()
if err != 28:
    print("WRITE across the end: error %d, want ENOSPC (28)" % err)
    bad += 1
assert n.read(0, 4096)[0] == 0
# a WRITE over 1 MiB cannot be skipped safely: the connection is closed
n.sock.sendall(struct.pack(">IHHQQI", nbd_client.NBD_REQUEST_MAGIC, 0, nbd_client.CMD_WRITE, 77, 0, 2 << 20))
try:
    n.reply()
    print("a 2 MiB WRITE was answered")
    bad += 1
except (ConnectionError, OSError):
    pass
sys.exit(1 if bad else 0)
PY
say "ok: EINVAL past the end and for odd sizes, ENOSPC for writes and trims past it, 2 MiB WRITE closes"

say "100 READs of 1 MiB sent, no reply read: what reaches the target is bounded"
before=$(grep -c '^READ target=good' "$FAKE_LOG" || true)
python3 - "$NBD" "$FAKE_LOG" "$before" <<'PY' || fail "in-flight bound"
import os, sys, time
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
n = nbd_client.connect(sys.argv[1], timeout=30)
# one write: requests sent one by one could fill the socket once the daemon stops reading
n.sock.sendall(b"".join(n.pack(nbd_client.CMD_READ, (i % 8) << 20, 1 << 20) for i in range(100)))
time.sleep(2)
reads = sum(1 for l in open(sys.argv[2]) if l.startswith("READ target=good")) - int(sys.argv[3])
print("READs at the target while the client read nothing: %d" % reads)
if reads > 17:
    sys.exit(1)
for i in range(100):
    err, _, data = n.reply()
    assert err == 0 and len(data) == 1 << 20, err
n.close()
PY
say "ok: at most 16 MiB in flight for one client, all 100 answered afterwards"

say "handshake options sent without reading the answers: the daemon stops reading"
python3 - "$NBD" <<'PY' || fail "handshake backlog"
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.recv(18)
s.sendall(struct.pack(">I", 3))
opt = struct.pack(">QII", 0x49484156454F5054, 3, 0)  # NBD_OPT_LIST, answered with 44 bytes
blob = opt * 65536
s.setblocking(False)
sent, end = 0, time.monotonic() + 3
while time.monotonic() < end and sent < 16 << 20:
    try:
        sent += s.send(blob)
    except BlockingIOError:
        time.sleep(0.01)
print("option bytes the daemon took in 3 s: %d" % sent)
s.close()
sys.exit(0 if sent < 4 << 20 else 1)
PY
say "ok: an unread handshake backlog stops the reading"

say "RLIMIT_NOFILE lowered until accept4 fails with EMFILE"
python3 - "$NBD" "$DMN_PID" <<'PY' || fail "EMFILE"
import os, resource, socket, sys, time
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
path, pid = sys.argv[1], int(sys.argv[2])
nfd = len(os.listdir("/proc/%d/fd" % pid))
resource.prlimit(pid, resource.RLIMIT_NOFILE, (nfd + 2, nfd + 2))
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
socks = []
for i in range(12):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.3)
    try:
        s.connect(path)
    except OSError:
        pass
    socks.append(s)
time.sleep(0.5)
c0 = cpu()
time.sleep(2)
used = cpu() - c0
print("daemon CPU over 2 s at EMFILE: %.2f s" % used)
for s in socks:
    s.close()
if used > 0.5:
    sys.exit(1)
deadline = time.monotonic() + 10
while True:
    try:
        n = nbd_client.connect(path, timeout=5)
        assert n.read(0, 4096)[0] == 0
        n.close()
        break
    except (ConnectionError, OSError) as e:
        if time.monotonic() > deadline:
            print("not served again after descriptors were freed: %s" % e)
            sys.exit(1)
        time.sleep(0.2)
PY
grep -q "cannot accept a client" "$DMN_LOG" || fail "no log line about accept4 failing"
say "ok: no busy loop at EMFILE, served again once descriptors were free"
ism logout "$SID" >/dev/null
say "PASS"
