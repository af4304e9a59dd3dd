#!/usr/bin/env bash
# isthmus-initiator FUSE file under concurrent asynchronous direct I/O (fio, O_DIRECT, libaio by
# default): the kernel lets many writes to the file be in flight at the daemon at once, and an
# unaligned one is a read-modify-write of whole blocks there. Bytes of different writes that share
# a block must all survive:
#  - region A: 4 jobs write interleaved 100-byte records (job k at k*100 + i*400), so every
#    512-byte block holds records of all 4 jobs, each job with up to IODEPTH writes in flight;
#  - region B: an aligned job writes blocks 2j while an unaligned job writes 24 bytes across the
#    end of each of them, both paced alike so that they meet in the same blocks: the aligned
#    data outside the unaligned bytes must survive the read-modify-write.
# Read back through the FUSE file and from the target's backing file. Then the same load once
# more and a logout under it: every write gets an answer, none is left waiting.
#   ENGINE=io_uring  another fio engine;  IODEPTH, RATE  load parameters
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3 fio
source "$(dirname "$0")/daemon_helpers.bash"

ENGINE=${ENGINE:-libaio}
IODEPTH=${IODEPTH:-32}
RATE=${RATE:-4000}
fio --enghelp="$ENGINE" >/dev/null 2>&1 || skip "fio has no $ENGINE engine"

IQN=iqn.2026-11.org.isthmus:dmnfuseconc
PORT=$(free_port)
HP=127.0.0.1:$PORT
LUNFILE=$TEST_DIR/lun0.img
start_target --listen "$HP" --target "$IQN" --lun "$LUNFILE,size=64M"
dmn_start
L0=$(map_lun 0)

SID=$(ism login "$IQN" --portal "$HP" --type data | tail -n1) || fail "data login"
DEV=$DMN_DEV/$SID/lun$L0
[[ -f "$DEV" ]] || fail "no device file $DEV"

# Region A [0, REGA): NREC records of 100 bytes per job, job k's pattern byte 'A' + k.
# Region B [REGB, REGB + BSIZE): for each j, block 2j of 'X' and bytes [1024j + 500, +24) of 'Y'
# (the last 12 bytes of block 2j, the first 12 of block 2j+1); the rest stays zero. The 'Y' job
# is a read-modify-write of both blocks: an 'X' written between its READ and its WRITE is lost
# unless the daemon keeps them apart.
REGA=$((4 << 20))
NREC=$((REGA / 400))
REGB=$((16 << 20))
BSIZE=$((1 << 20))
{
	printf '[global]\nioengine=%s\ndirect=1\niodepth=%s\nfilename=%s\nthread\n' "$ENGINE" "$IODEPTH" "$DEV"
	for k in 0 1 2 3; do
		printf '\n[rec%d]\nrw=write:300\nbs=100\noffset=%d\nsize=%d\nnumber_ios=%d\nbuffer_pattern=0x%x\n' \
			"$k" $((k * 100)) "$REGA" "$NREC" $((0x41 + k))
	done
	printf '\n[aligned]\nrw=write:512\nbs=512\noffset=%d\nsize=%d\nrate_iops=%d\nbuffer_pattern=0x58\n' \
		"$REGB" "$BSIZE" "$RATE"
	printf '\n[across]\nrw=write:1000\nbs=24\noffset=%d\nsize=%d\nrate_iops=%d\nbuffer_pattern=0x59\n' \
		$((REGB + 500)) "$BSIZE" "$RATE"
} >"$TEST_DIR/job.fio"
say "fio: 4 x $NREC interleaved 100-byte records; aligned and unaligned writes over $BSIZE bytes at $RATE IOPS each; $ENGINE, iodepth $IODEPTH"
run_to 240 fio --output="$TEST_DIR/fio.out" "$TEST_DIR/job.fio" || fail "fio: $(tail -20 "$TEST_DIR/fio.out")"
! grep -qE 'err= *[1-9]' "$TEST_DIR/fio.out" || fail "fio reported errors: $(grep -E 'err=' "$TEST_DIR/fio.out")"

# check FILE WHAT: every record in place; prints what was lost.
check() {
	run_to 120 python3 - "$1" "$2" "$NREC" "$REGA" "$REGB" "$BSIZE" <<-'PY'
	import sys
	path, what = sys.argv[1], sys.argv[2]
	nrec, rega, regb, bsize = map(int, sys.argv[3:])
	with open(path, "rb") as f:
	    a = f.read(rega + 400)
	    f.seek(regb)
	    b = f.read(bsize + 1024)
	lost, first = [0, 0, 0, 0], None
	for k in range(4):
	    want = bytes([0x41 + k]) * 100
	    for i in range(nrec):
	        o = i * 400 + k * 100
	        if a[o:o + 100] != want:
	            lost[k] += 1
	            first = first or (k, i, o, a[o:o + 16])
	bad_x = bad_y = 0
	for j in range(bsize // 1024):
	    blk = b[j * 1024:(j + 1) * 1024]
	    # bytes 500..511 are written by both: either is right
	    if blk[:500] != b"X" * 500 or blk[500:512].strip(b"XY"):
	        bad_x += 1
	    if blk[512:524] != b"Y" * 12 or blk[524:] != bytes(500):
	        bad_y += 1
	print("%s: records lost per job %s (of %d each); region B pairs with aligned data lost %d, "
	      "with unaligned data lost %d (of %d)" % (what, lost, nrec, bad_x, bad_y, bsize // 1024))
	if first:
	    print("%s: first lost record: job %d record %d at %d holds %r" % ((what,) + first))
	sys.exit(1 if sum(lost) or bad_x or bad_y else 0)
	PY
}

rc=0
check "$DEV" "FUSE file" || rc=1
check "$LUNFILE" "target file" || rc=1
((rc == 0)) || fail "concurrent writes to shared blocks lost data"
say "ok: concurrent unaligned and aligned writes to shared blocks all in place"

# ---- logout under the same load: writes waiting behind others get an answer too (EIO), fio ends
{
	printf '[global]\nioengine=%s\ndirect=1\niodepth=%s\nfilename=%s\nthread\ntime_based\nruntime=30\n' \
		"$ENGINE" "$IODEPTH" "$DEV"
	for k in 0 1 2 3; do
		printf '\n[rec%d]\nrw=write:300\nbs=100\noffset=%d\nsize=%d\nbuffer_pattern=0x%x\n' \
			"$k" $((k * 100)) "$REGA" $((0x41 + k))
	done
} >"$TEST_DIR/load.fio"
bg_start run_to 60 fio --output="$TEST_DIR/load.out" "$TEST_DIR/load.fio" 2>"$TEST_DIR/load.err"
FIO_PID=$BG_LAST
sleep 1
alive "$FIO_PID" || fail "fio load ended before the logout: $(tail -5 "$TEST_DIR/load.out")"
ism logout "$SID" >/dev/null || fail "logout under load"
deadline=$((SECONDS + 15))
while alive "$FIO_PID" && ((SECONDS < deadline)); do sleep 0.1; done
! alive "$FIO_PID" || fail "fio still waits for writes 15 s after the logout"
rc=0
wait "$FIO_PID" || rc=$?
((rc != 124 && rc != 137)) || fail "fio timed out"
((rc != 0)) || fail "fio saw no error although its session was logged out"
[[ ! -e "$DMN_DEV/$SID" ]] || fail "device left after logout"
ism persistent list >/dev/null || fail "the daemon no longer answers"
say "ok: logout under load: every write answered, fio ended (status $rc)"
say "PASS"
