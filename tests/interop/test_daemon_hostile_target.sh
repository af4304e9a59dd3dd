#!/usr/bin/env bash
# isthmus-initiator against a hostile target (tests/interop/fake_target.py) that answers READs
# GOOD with less data than asked and no residual. First a session to the fake target's honest
# disk, full of a recognisable pattern, is read through NBD and FUSE, so the daemon's pooled
# request buffers hold that other session's data. Then, for a session to the lying disk:
#   - NBD READs (half the data, and no data at all) get EIO and never a byte of the pattern;
#   - FUSE reads get EIO, never the pattern;
#   - an unaligned FUSE write (read-modify-write of a block read short) fails with EIO and
#     nothing carrying the pattern is written to the target;
#   - a READ answered with Data-In that breaks the protocol (which drops the connection) is tried
#     three times, one reconnect each, then fails with EIO instead of being retried for ever;
#   - READ CAPACITY answers a device cannot serve (1 GiB blocks, a byte capacity that wraps) give
#     no device, and a LUN listed twice by REPORT LUNS gives one;
#   - a TargetAlias and a discovered TargetName that are not UTF-8 are shown with '?';
#   - the daemon keeps serving the honest session.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$(dirname "$0")/daemon_helpers.bash"
export INTEROP_DIR

start_fake_target
dmn_start

GOOD=$(ism login iqn.2026-11.org.isthmus:fake:good --portal "$HP" --type data | tail -n1) || fail "login to the honest disk"
GNBD=$(sess_field "$GOOD" '.devices[0].nbd_socket')
GDEV=$(sess_field "$GOOD" '.devices[0].local_path')
[[ -S "$GNBD" && -f "$GDEV" ]] || fail "honest disk: no devices ($GNBD, $GDEV)"

say "seeding the daemon's request pools with the honest session's data (NBD and FUSE reads)"
python3 - "$GNBD" "$GDEV" <<'PY' || fail "reading the honest disk"
import os, sys
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
n = nbd_client.connect(sys.argv[1])
for size in (131072, 65536, 4096, 512):
    for i in range(32):
        err, data = n.read((i * size) % (4 << 20), size)
        assert err == 0 and b"SECRET" in data, (err, data[:40])
# many in flight at once: more pooled buffers get the pattern
for i in range(48):
    n.request(nbd_client.CMD_READ, i * 65536, 65536)
for i in range(48):
    err, _, data = n.reply()
    assert err == 0 and b"SECRET" in data
n.close()
fd = os.open(sys.argv[2], os.O_RDONLY)
for size in (131072, 65536, 4096, 512):
    for i in range(32):
        data = os.pread(fd, size, (i * size) % (4 << 20))
        assert b"SECRET" in data
os.close(fd)
PY

BAD=$(ism login iqn.2026-11.org.isthmus:fake:short --portal "$HP" --type data | tail -n1) || fail "login to the lying disk"
BNBD=$(sess_field "$BAD" '.devices[0].nbd_socket')
BDEV=$(sess_field "$BAD" '.devices[0].local_path')
[[ -S "$BNBD" && -f "$BDEV" ]] || fail "lying disk: no devices ($BNBD, $BDEV)"

say "NBD READs answered GOOD with half the data, or none: EIO, and no byte of the other session"
python3 - "$BNBD" <<'PY' || fail "NBD client got stale data or no EIO"
import os, sys
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
n = nbd_client.connect(sys.argv[1])
bad = 0
for off, size in [(0, 512), (0, 4096), (4096, 65536), (0, 131072), (1024 * 512, 4096), (2048 * 512, 65536)]:
    for _ in range(8):
        err, data = n.read(off, size)
        if b"SECRET" in data:
            print("NBD READ %d@%d returned the other session's data" % (size, off))
            sys.exit(1)
        if err != 5:
            print("NBD READ %d@%d: error %d, want EIO (5)" % (size, off, err))
            bad += 1
n.close()
sys.exit(1 if bad else 0)
PY
say "ok: NBD short reads fail with EIO, nothing stale"

say "FUSE reads of the lying disk: EIO, never the other session's data"
python3 - "$BDEV" <<'PY' || fail "FUSE client got stale data or no EIO"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for off, size in [(0, 512), (0, 4096), (4096, 65536), (0, 131072), (2048 * 512, 4096)]:
    try:
        data = os.pread(fd, size, off)
    except OSError as e:
        if e.errno != errno.EIO:
            print("FUSE read %d@%d: %s, want EIO" % (size, off, e))
            sys.exit(1)
        continue
    print("FUSE read %d@%d succeeded (%s)" % (size, off, "other session's data" if b"SECRET" in data else "no EIO"))
    sys.exit(1)
os.close(fd)
PY
say "ok: FUSE short reads fail with EIO"

say "an unaligned FUSE write (read-modify-write of a block read short) fails and writes nothing stale"
python3 - "$BDEV" <<'PY' || fail "unaligned write over a short read did not fail with EIO"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for off in (10, 4096 + 300, 2048 * 512 + 7):
    try:
        os.pwrite(fd, b"x" * 100, off)
    except OSError as e:
        if e.errno == errno.EIO:
            continue
        print("write at %d: %s" % (off, e))
        sys.exit(1)
    print("write at %d succeeded over a block the target did not return" % off)
    sys.exit(1)
os.close(fd)
PY
if grep -q "target=short .*secret=yes" "$FAKE_LOG"; then
	fail "the daemon wrote the other session's data to the target: $(grep 'secret=yes' "$FAKE_LOG" | head -3)"
fi
grep -q "answered GOOD after" "$DMN_LOG" || fail "no log line names the short transfers"
say "ok: read-modify-write refused, no stale data reached the target"

say "a READ whose Data-In breaks the protocol: tried three times (one reconnect each), then EIO"
ODD=$(ism login iqn.2026-11.org.isthmus:fake:bad-offset --portal "$HP" --type data | tail -n1) || fail "login to the bad-offset disk"
ONBD=$(sess_field "$ODD" '.devices[0].nbd_socket')
python3 - "$ONBD" <<'PY' || fail "a READ breaking the connection every time was not failed"
import os, sys, time
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
n = nbd_client.connect(sys.argv[1], timeout=40)
t0 = time.monotonic()
err, data = n.read(0, 4096)
took = time.monotonic() - t0
print("READ answered with error %d after %.1f s" % (err, took))
sys.exit(0 if err == 5 and not data else 1)
PY
reads=$(grep -c '^READ target=bad-offset' "$FAKE_LOG" || true)
((reads == 3)) || fail "the target got $reads READs, want 3 tries"
grep -q "failed 3 times (the target broke the protocol" "$DMN_LOG" || fail "no log line for the failed command"
ism logout "$ODD" >/dev/null || true
say "ok: failed with EIO after 3 tries"

say "READ CAPACITY with 1 GiB blocks, with a capacity that wraps, and a LUN listed twice"
for kind in huge-blocks wrap-capacity dup-luns; do
	SID=$(ism login "iqn.2026-11.org.isthmus:fake:$kind" --portal "$HP" --type data | tail -n1) || fail "login to $kind"
	ndev=$(sess_field "$SID" '.devices | length')
	exposed=$(sess_field "$SID" '[.devices[] | select(.local_path != null or .nbd_socket != null)] | length')
	case $kind in
	dup-luns)
		((ndev == 1 && exposed == 1)) || fail "$kind: $ndev devices ($exposed exposed), want LUN 0 once" ;;
	*)
		((exposed == 0)) || fail "$kind: the LUN became a device: $(sess_json "$SID" | jq -c .devices)" ;;
	esac
	ism logout "$SID" >/dev/null
done
grep -q "not exposed as a device" "$DMN_LOG" || fail "no log line for the unusable READ CAPACITY answers"
say "ok: unusable geometry gives no device, a LUN listed twice gives one"

say "target text that is not UTF-8: a TargetAlias, a discovered TargetName"
SID=$(ism login iqn.2026-11.org.isthmus:fake:alias --portal "$HP" --type informational | tail -n1) || fail "login to alias"
[[ $(sess_field "$SID" .target_name) == "bad??alias" ]] || fail "target_name: $(sess_json "$SID" | jq -c .target_name)"
ism logout "$SID" >/dev/null
ism discover --daemon "$HP" --json >"$TEST_DIR/disc.json" || fail "discover --daemon: $(cat "$TEST_DIR/disc.json")"
jq -e '[.targets[].target] | index("iqn.2026-11.org.isthmus:fake:odd?") != null and length == 3' "$TEST_DIR/disc.json" >/dev/null ||
	fail "discovery result: $(jq -c . "$TEST_DIR/disc.json")"
say "ok: shown with '?' for the bytes JSON cannot hold"

say "the honest session is still served"
python3 - "$GNBD" <<'PY' || fail "honest disk no longer served"
import os, sys
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client
n = nbd_client.connect(sys.argv[1])
err, data = n.read(0, 4096)
assert err == 0 and data.startswith(b"SECRET-GOOD-SESSION-DATA-"), (err, data[:30])
n.close()
PY
ism logout "$BAD" >/dev/null
ism logout "$GOOD" >/dev/null
say "PASS"
