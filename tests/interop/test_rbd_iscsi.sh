#!/usr/bin/env bash
# RBD LUNs end to end: isthmus-target serving four images of a throw-away Ceph cluster.
#   - qemu-img writes 16 MiB of random data to LUN 1 and reads it back; `rbd export` of the
#     image holds the same bytes (the data went to the cluster, not somewhere else);
#   - COMPARE AND WRITE: a one-block miscompare reports MISCOMPARE with the offset of the first
#     differing byte in INFORMATION and writes nothing; a two-block one (the store's
#     read-compare-write path) likewise; equal data writes; the same offsets (0 and 200) at
#     object starts and inside objects, object 0 and later ones, on LUN 2 (an image with
#     exclusive-lock) and LUN 3 (exclusive-lock and striping: 64 KiB stripe units over 4
#     objects, where librbd's mismatch offset lies in another object's range than the io);
#   - provisioning: the LU is thin (LBPME, LBPU); a written 4 MiB object range is UNMAPped and
#     reads back as zeros, and GET LBA STATUS (asked of the cluster on a worker) says
#     deallocated there and mapped where data stays; a 4 KiB UNMAP inside an object reads
#     back as zeros too;
#   - `rbd resize` by another client: the initiator gets CAPACITY DATA HAS CHANGED and READ
#     CAPACITY(16) the new size;
#   - the cluster frozen (its daemons SIGSTOPped) for 10 s under sequential writes: writes fail
#     with a retryable sense (printed) after the 5 s operation timeout, the initiator retries,
#     the LUN recovers by itself, and every acknowledged write reads back;
#   - VERIFY(10/12/16) BYTCHK 0, 1 (equal and a miscompare offset) and 3 through the store's
#     asynchronous reads; 3PC clear, no Third-party Copy page, REPORT SUPPORTED OPERATION
#     CODES lists VERIFY and not SANITIZE or EXTENDED COPY;
#   - iscsi-test-cu --test=ALL on LUN 0 (the multipath tests through a second session).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need iscsi-test-cu qemu-img python3

ceph_start
ceph_client_timeout 5
ceph_image cu 64M
ceph_image data 64M
ceph_image caw-xl 64M --image-feature layering,exclusive-lock
ceph_image caw-striped 64M --image-feature layering,exclusive-lock,striping --stripe-unit 64K --stripe-count 4

IQN=iqn.2026-11.org.isthmus:rbd
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" \
	--lun "rbd:rbd/cu,conf=$CEPH_CONF" --lun "rbd:rbd/data,conf=$CEPH_CONF" \
	--lun "rbd:rbd/caw-xl,conf=$CEPH_CONF" --lun "rbd:rbd/caw-striped,conf=$CEPH_CONF"

say "qemu-img: 16 MiB of random data to LUN 1 and back; rbd export holds the same"
head -c 16M /dev/urandom >"$TEST_DIR/in.raw"
run_to 120 qemu-img convert -n -f raw -O raw "$TEST_DIR/in.raw" "$(lun_url "$HP" "$IQN" 1)" ||
	fail "qemu-img convert to the LUN failed"
run_to 120 qemu-img convert -f raw -O raw "$(lun_url "$HP" "$IQN" 1)" "$TEST_DIR/out.raw" ||
	fail "qemu-img convert from the LUN failed"
cmp -n 16777216 "$TEST_DIR/in.raw" "$TEST_DIR/out.raw" || fail "data read back differs"
rbd_cmd export --no-progress rbd/data "$TEST_DIR/export.raw" >/dev/null 2>&1 || fail "rbd export failed"
cmp -n 16777216 "$TEST_DIR/in.raw" "$TEST_DIR/export.raw" || fail "the image does not hold what was written"
rm -f "$TEST_DIR"/*.raw

say "SCSI checks on LUN 1 (COMPARE AND WRITE, UNMAP, resize, a frozen cluster)"
run_to 240 python3 - "$INTEROP_DIR" 127.0.0.1 "$PORT" "$IQN" 1 "$MICRO_CEPH" "$CEPH_DIR" <<'PY' ||
import os, struct, subprocess, sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, failures, Nexus, cdb10, cdb16, caw_cdb
from gateway_nexus import sense_info as sense_of  # (key, asc, ascq, information)

host, port, iqn, lun, micro, cdir = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
env = dict(os.environ)
gateway_nexus.setup("test_rbd_iscsi", iqn, {1: port}, host)
nx = Nexus("rbd-check", 1, "400000000077", lun=lun, timeout=60)
cmd = nx.cmd

def read16(lba, n):
    return cmd(cdb16(0x88, lba, n), in_len=512 * n)

def write16(lba, data):
    return cmd(cdb16(0x8a, lba, len(data) // 512), out=data)

# A new I_T nexus starts with a unit attention.
check(nx.ready(5, must=False), "TEST UNIT READY")

def pattern(seed, n):
    return bytes((seed * 7 + i * 13) & 0xff for i in range(n))

# --- COMPARE AND WRITE
for nblk, diff in ((1, 37), (2, 600)):
    say("COMPARE AND WRITE of %d block(s): a difference at byte %d" % (nblk, diff))
    lba = 100 + 10 * nblk
    a, b = pattern(1 + nblk, 512 * nblk), pattern(50 + nblk, 512 * nblk)
    check(write16(lba, a)[0] == 0, "write before COMPARE AND WRITE")
    wrong = bytearray(a)
    wrong[diff] ^= 0xff
    caw = caw_cdb(lba, nblk)
    st, _, s = cmd(caw, out=bytes(wrong) + b)
    sk = sense_of(s)
    say("  status 0x%02x sense %s" % (st, sk))
    check(st == 2 and sk and sk[0] == 0x0e and (sk[1], sk[2]) == (0x1d, 0), "MISCOMPARE sense")
    check(sk is not None and sk[3] == diff, "INFORMATION holds the offset %d" % diff)
    check(read16(lba, nblk)[1] == a, "a miscompare writes nothing")
    st, _, s = cmd(caw, out=a + b)
    check(st == 0, "COMPARE AND WRITE with equal data: GOOD (got 0x%02x %s)" % (st, sense_of(s)))
    check(read16(lba, nblk)[1] == b, "equal data: the new data is written")

# --- COMPARE AND WRITE offsets on images with exclusive-lock, plain and striped: the first
# difference at byte 0 and 200 of one block (one librbd call) and at 712 of two (the store's
# read-compare-write), at object starts, inside objects, in object 0 and in later ones.
OBJ = 8192  # blocks: one 4 MiB object
for caw_lun, image, places in (
        (2, "exclusive-lock, 4 MiB objects",
         ((0, "object 0, its start"), (16, "object 0, 8 KiB in"),
          (3 * OBJ, "object 3, its start"), (3 * OBJ + 16, "object 3, 8 KiB in"))),
        (3, "exclusive-lock, striped 64 KiB x 4",
         ((0, "object 0, its start"), (130, "object 1, 1 KiB in"),
          (3 * OBJ + 16, "object 0, 3 MiB + 8 KiB in"), (5 * OBJ + 16, "object 4, 8 KiB in")))):
    nx.lun = caw_lun
    say("COMPARE AND WRITE on LUN %d (%s)" % (caw_lun, image))
    check(nx.ready(5, must=False), "TEST UNIT READY on LUN %d" % caw_lun)
    for lba, where in places:
        for nblk, diff in ((1, 0), (1, 200), (2, 712)):
            a, b = pattern(lba + diff, 512 * nblk), pattern(lba + diff + 1, 512 * nblk)
            check(write16(lba, a)[0] == 0, "write before COMPARE AND WRITE")
            wrong = bytearray(a)
            wrong[diff] ^= 0xff
            st, _, s = cmd(caw_cdb(lba, nblk), out=bytes(wrong) + b)
            sk = sense_of(s)
            say("  LBA %d (%s), %d block(s), a difference at byte %d: status 0x%02x sense %s"
                % (lba, where, nblk, diff, st, sk))
            check(st == 2 and sk is not None and sk[:3] == (0x0e, 0x1d, 0) and sk[3] == diff,
                  "LBA %d (%s), %d block(s), a difference at byte %d: MISCOMPARE, INFORMATION %d "
                  "(got 0x%02x %s)" % (lba, where, nblk, diff, diff, st, sk))
            check(read16(lba, nblk)[1] == a, "a miscompare writes nothing")
nx.lun = lun

# --- VERIFY through the store's asynchronous reads; what an RBD LU does not offer is not listed
say("VERIFY(10/12/16) with BYTCHK 0, 1 and 3; a miscompare at byte 1000; INQUIRY and opcodes")
vlba = 300
vdata = pattern(9, 8 * 512)
check(write16(vlba, vdata)[0] == 0, "write before VERIFY")
for name, cdb in (("VERIFY(10)", cdb10(0x2f, vlba, 8)),
                  ("VERIFY(12)", bytes([0xaf, 0]) + struct.pack(">IIBB", vlba, 8, 0, 0)),
                  ("VERIFY(16)", cdb16(0x8f, vlba, 8))):
    st, _, s = cmd(cdb)
    check(st == 0, "%s BYTCHK 0: GOOD (got 0x%02x %s)" % (name, st, sense_of(s)))
    b1 = bytes([cdb[0], 0x02]) + cdb[2:]
    st, _, s = cmd(b1, out=vdata)
    check(st == 0, "%s BYTCHK 1, equal data: GOOD (got 0x%02x %s)" % (name, st, sense_of(s)))
    wrong = bytearray(vdata)
    wrong[1000] ^= 0x5a
    st, _, s = cmd(b1, out=bytes(wrong))
    sk = sense_of(s)
    check(st == 2 and sk and sk[0] == 0x0e and sk[3] == 1000,
          "%s BYTCHK 1, a difference at byte 1000: MISCOMPARE, INFORMATION 1000 (got %s)" % (name, sk))
check(write16(vlba + 8, pattern(3, 512) * 4)[0] == 0, "write of one block repeated")
st, _, s = cmd(cdb16(0x8f, vlba + 8, 4, byte1=0x06), out=pattern(3, 512))
check(st == 0, "VERIFY(16) BYTCHK 3 of a repeated block: GOOD (got 0x%02x %s)" % (st, sense_of(s)))
st, d, _ = cmd(bytes([0x12, 0, 0, 0, 96, 0]), in_len=96)
check(st == 0 and not d[5] & 0x08, "standard INQUIRY: 3PC clear (no EXTENDED COPY on RBD)")
st, d, _ = cmd(bytes([0x12, 1, 0, 0, 64, 0]), in_len=64)
check(st == 0 and 0x8f not in d[4:4 + d[3]] and 0xb0 in d[4:4 + d[3]],
      "Supported VPD pages: Block Limits listed, Third-party Copy not (%s)" % d[4:4 + d[3]].hex())
def opcode_supported(op, sa=None):
    cdb = bytes([0xa3, 0x0c, 0x02 if sa is not None else 0x01, op]) + struct.pack(">HIBB", sa or 0, 64, 0, 0)
    st, d, _ = cmd(cdb, in_len=64)
    return st == 0 and len(d) >= 2 and d[1] & 0x07 == 0x03
for op in (0x2f, 0xaf, 0x8f, 0x42, 0x89):
    check(opcode_supported(op), "REPORT SUPPORTED OPERATION CODES: 0x%02x supported" % op)
check(not opcode_supported(0x83, 0x00), "REPORT SUPPORTED OPERATION CODES: EXTENDED COPY not supported")
check(not opcode_supported(0x48, 0x02), "REPORT SUPPORTED OPERATION CODES: SANITIZE not supported")

# --- provisioning: UNMAP deallocates; GET LBA STATUS asks the cluster, off the event loop.
say("thin provisioning: UNMAP of an object's range and of 4 KiB inside one; GET LBA STATUS")
st, d, _ = cmd(bytes([0x9e, 0x10]) + bytes(8) + struct.pack(">IBB", 32, 0, 0), in_len=32)
check(st == 0 and d[14] & 0x80, "READ CAPACITY(16): LBPME set")
st, d, _ = cmd(bytes([0x12, 1, 0xb2, 0, 64, 0]), in_len=64)
check(st == 0 and len(d) >= 6 and d[5] & 0x80, "Logical Block Provisioning VPD: LBPU set")
OBJ = 8192                      # one 4 MiB object of the image, in 512-byte blocks
lba0 = 2 * OBJ                  # the third object
blob = pattern(77, 32 * 1024)
for i in range(0, OBJ, 64):
    st, _, s = write16(lba0 + i, blob)
    check(st == 0, "fill the object before UNMAP (got 0x%02x %s)" % (st, sense_of(s)))
st, _, s = write16(lba0 + OBJ, blob)   # data that stays, just after it
check(st == 0, "write after the object (got 0x%02x %s)" % (st, sense_of(s)))
def unmap(lba, nblk):
    params = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", lba, nblk)
    return cmd(bytes([0x42, 0, 0, 0, 0, 0, 0]) + struct.pack(">H", len(params)) + bytes(1), out=params)
st, _, s = unmap(lba0, OBJ)
check(st == 0, "UNMAP of a whole object: GOOD (got 0x%02x %s)" % (st, sense_of(s)))
check(read16(lba0, 64)[1] == bytes(32 * 1024), "the unmapped range reads as zeros")
check(read16(lba0 + OBJ, 64)[1] == blob, "the data after it is still there")
st, d, _ = cmd(cdb16(0x9e, lba0, 40, byte1=0x12), in_len=40)
say("  GET LBA STATUS at %d: %s" % (lba0, d[:40].hex()))
check(st == 0 and len(d) >= 24 and struct.unpack(">Q", d[8:16])[0] == lba0 and d[8 + 12] & 0x0f == 1,
      "GET LBA STATUS: deallocated where the object was unmapped")
check(len(d) >= 40 and d[24 + 12] & 0x0f == 0, "GET LBA STATUS: mapped where the data stays")
st, _, s = unmap(lba0 + OBJ + 8, 8)
check(st == 0, "UNMAP of 4 KiB inside an object: GOOD (got 0x%02x %s)" % (st, sense_of(s)))
got = read16(lba0 + OBJ, 64)[1]
check(got[:4096] == blob[:4096] and got[4096:8192] == bytes(4096) and got[8192:] == blob[8192:],
      "the 4 KiB inside an object reads as zeros, its neighbours keep their data")

# --- rbd resize by another client
say("rbd resize of the image to 80 MiB: CAPACITY DATA HAS CHANGED, then the new capacity")
subprocess.run(["timeout", "60", "rbd", "resize", "--size", "80M", "rbd/data"], check=True, env=env,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen = None
end = time.time() + 15
while time.time() < end and seen is None:
    st, _, s = cmd(bytes(6))
    sk = sense_of(s)
    if st == 2 and sk and sk[0] == 6:
        seen = sk
    else:
        time.sleep(0.2)
say("  unit attention %s" % (seen,))
check(seen is not None and (seen[1], seen[2]) == (0x2a, 0x09), "CAPACITY DATA HAS CHANGED")
st, d, _ = cmd(bytes([0x9e, 0x10]) + bytes(8) + struct.pack(">IBB", 32, 0, 0), in_len=32)
check(st == 0 and struct.unpack(">Q", d[:8])[0] + 1 == 80 * 2048, "READ CAPACITY(16) says 80 MiB")

# --- the cluster frozen under writes
N = 60
say("%d sequential 4 KiB writes; the cluster frozen for 10 s after the 15th" % N)
acked, errors = {}, []
resumed = threading.Event()
def resume():
    subprocess.run([micro, "--resume", cdir], check=True)
    resumed.set()
t0 = time.time()
for i in range(N):
    if i == 15:
        subprocess.run([micro, "--pause", cdir], check=True)
        threading.Timer(10, resume).start()
    data = pattern(1000 + i, 4096)
    deadline = time.time() + 90
    while True:
        st, _, s = write16(40000 + 8 * i, data)
        if st == 0:
            acked[i] = data
            break
        errors.append((i, st, sense_of(s), round(time.time() - t0, 1)))
        if time.time() > deadline:
            break
        time.sleep(0.5)
if not resumed.is_set():
    resumed.wait(30)
for e in errors[:6]:
    say("  write %d: status 0x%02x sense %s at %.1f s" % e)
say("  %d writes acknowledged, %d failed attempts, %.1f s" % (len(acked), len(errors), time.time() - t0))
check(len(errors) >= 1, "the frozen cluster made a write fail (timeout path exercised)")
check(all(e[1] == 2 and e[2] and e[2][0] in (0x02, 0x0b) for e in errors),
      "every failed write has NOT READY or ABORTED COMMAND")
check(len(acked) == N, "every write was acknowledged in the end")
lost = [i for i, data in acked.items() if read16(40000 + 8 * i, 8)[1] != data]
check(not lost, "acknowledged writes read back (lost: %s)" % lost[:10])
sys.exit(1 if failures else 0)
PY
	fail "SCSI checks on the RBD LUN failed"

CU_TIMEOUT=${CU_TIMEOUT:-280} run_test_cu ALL "$(lun_url "$HP" "$IQN" 0)" "$(lun_url "$HP" "$IQN" 0)"
stop_target
say "PASS"
