#!/usr/bin/env bash
# The daemon's NBD export follows its LUN (clients from tests/interop/nbd_client.py, and
# qemu-img when installed):
#   - a LUN write-protected at the target (`ro`): its export advertises NBD_FLAG_READ_ONLY, and
#     WRITE, TRIM and WRITE_ZEROES are answered EPERM without reaching the target (its file is
#     unchanged); READ gives the LUN's data. A writable LUN's export has no such flag.
#   - a LUN grown at the target (resize-lun): once the daemon has read the new capacity, a new
#     client is given the new size; a client connected before keeps the size of its handshake
#     (NBD has no way to tell it) and can still use the whole export.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need jq python3
source "$(dirname "$0")/daemon_helpers.bash"
export INTEROP_DIR

IQN=iqn.2026-11.org.isthmus:dmnnbdexport
PORT=$(free_port)
HP=127.0.0.1:$PORT
ROFILE=$TEST_DIR/lun1.img
head -c $((1 << 20)) /dev/urandom >"$ROFILE"
truncate -s 8M "$ROFILE"
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=16M" --lun "$ROFILE,ro"
dmn_start --no-fuse
L0=$(map_lun 0)
L1=$(map_lun 1)

SID=$(ism login "$IQN" --portal "$HP" --type data | tail -n1) || fail "data login"
NBD0=$(sess_field "$SID" ".devices[] | select(.lun == $L0) | .nbd_socket")
NBD1=$(sess_field "$SID" ".devices[] | select(.lun == $L1) | .nbd_socket")
[[ -S "$NBD0" && -S "$NBD1" ]] || fail "NBD exports missing: $NBD0 $NBD1"
[[ $(sess_field "$SID" ".devices[] | select(.lun == $L1) | .read_only") == true ]] || fail "LUN $L1 not read_only in session show"

say "read-only LUN $L1: NBD_FLAG_READ_ONLY, WRITE/TRIM/WRITE_ZEROES refused with EPERM, READ served"
sum_before=$(sha256sum <"$ROFILE")
python3 - "$NBD1" "$NBD0" "$ROFILE" <<'PY' || fail "read-only export"
import os, sys
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client as nc
EPERM = 1
ro = nc.connect(sys.argv[1])
if not ro.flags & nc.FLAG_READ_ONLY:
    sys.exit("the read-only LUN's export flags 0x%x lack NBD_FLAG_READ_ONLY" % ro.flags)
checks = [("WRITE", lambda: ro.write(0, b"x" * 4096)),
          ("WRITE of 1 MiB", lambda: ro.write(1 << 20, b"y" * (1 << 20))),
          ("TRIM", lambda: (ro.request(nc.CMD_TRIM, 0, 1 << 20), ro.reply()[0])[1]),
          ("WRITE_ZEROES", lambda: (ro.request(nc.CMD_WRITE_ZEROES, 0, 4096), ro.reply()[0])[1])]
for name, f in checks:
    err = f()
    if err != EPERM:
        sys.exit("%s on the read-only export: error %d, want EPERM (%d)" % (name, err, EPERM))
    print("  %s: EPERM" % name)
err, data = ro.read(0, 65536)
if err or data != open(sys.argv[3], "rb").read(65536):
    sys.exit("READ on the read-only export: error %d or other data" % err)
ro.close()
rw = nc.connect(sys.argv[2])
if rw.flags & nc.FLAG_READ_ONLY:
    sys.exit("the writable LUN's export says read-only (flags 0x%x)" % rw.flags)
if rw.write(0, b"w" * 4096) != 0:
    sys.exit("WRITE on the writable export failed")
rw.close()
PY
[[ $(sha256sum <"$ROFILE") == "$sum_before" ]] || fail "the read-only LUN's file changed"
[[ $(head -c 4096 "$TEST_DIR/lun0.img" | tr -d w | wc -c) == 0 ]] || fail "the writable LUN's write did not reach its file"
say "ok: read-only export flagged, writes refused with EPERM (the LUN's file unchanged), reads served; the writable one writes"

say "LUN $L0 grown from 16 MiB to 24 MiB at the target"
WANT=$((24 << 20))
python3 - "$NBD0" "$WANT" "$ISTHMUS_BIN/isthmus" "$TEST_DIR/mgmt-$$.sock" "$IQN" "$L0" <<'PY' || fail "resize"
import os, subprocess, sys, time
sys.path.insert(0, os.environ["INTEROP_DIR"])
import nbd_client as nc
path, want = sys.argv[1], int(sys.argv[2])
old = nc.connect(path)
if old.size != 16 << 20:
    sys.exit("export size %d before the resize" % old.size)
subprocess.run([sys.argv[3], "target", "--socket", sys.argv[4], "resize-lun", sys.argv[5], sys.argv[6], str(want)],
               check=True, stdout=subprocess.DEVNULL, timeout=30)
# the target says CAPACITY DATA HAS CHANGED with the next command; the daemon reads the capacity
size = None
for _ in range(50):
    if old.read(0, 4096)[0]:
        sys.exit("READ after the resize failed")
    n = nc.connect(path)
    size = n.size
    n.close()
    if size == want:
        break
    time.sleep(0.2)
if size != want:
    sys.exit("a new client is given %s bytes 10 s after the LUN grew to %d" % (size, want))
print("  new client: %d bytes; the client connected before was told %d" % (size, old.size))
# the old client is past its handshake's end, but the export is larger now: served
err = old.write(want - 4096, b"e" * 4096)
if err:
    sys.exit("WRITE at the grown end through the older client: error %d" % err)
old.close()
PY
[[ $(tail -c 4096 "$TEST_DIR/lun0.img" | tr -d e | wc -c) == 0 ]] || fail "the write at the grown end did not reach the LUN's file"
if command -v qemu-img >/dev/null; then
	run_to 60 qemu-img info -f raw "nbd+unix:///?socket=$NBD0" >"$TEST_DIR/info.out" 2>&1 || fail "qemu-img info: $(cat "$TEST_DIR/info.out")"
	grep -q "$WANT" "$TEST_DIR/info.out" || fail "qemu-img sees another size: $(cat "$TEST_DIR/info.out")"
	run_to 60 qemu-img info -f raw "nbd+unix:///?socket=$NBD1" >/dev/null 2>&1 || fail "qemu-img info on the read-only export"
	if run_to 60 qemu-io -f raw -c "write 0 4k" "nbd+unix:///?socket=$NBD1" >"$TEST_DIR/qio.out" 2>&1; then
		grep -qiE "read-only|not permitted|denied" "$TEST_DIR/qio.out" || fail "qemu-io wrote to the read-only export: $(cat "$TEST_DIR/qio.out")"
	fi
	[[ $(sha256sum <"$ROFILE") == "$sum_before" ]] || fail "qemu-io changed the read-only LUN's file"
	say "ok: qemu-img sees the grown size; qemu-io cannot write the read-only export"
fi
say "ok: a new NBD client is given the grown size; one connected before keeps its handshake's size and is served past it"
ism logout "$SID" >/dev/null
say "PASS"
