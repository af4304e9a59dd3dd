#!/usr/bin/env bash
# A slow backing store must not stall the target: reads that may wait for their device run on
# worker threads, so other sessions and other LUNs keep being served meanwhile.
#   LUN 0  the file /disk of a FUSE file system (slowfs.c, built here) whose every read takes
#          SLOW_DELAY_MS (1500) ms longer; direct_io, so the page cache never hides the delay
#          (and RWF_NOWAIT fails with EOPNOTSUPP: the target sends every read to a worker)
#   LUN 1  a plain file in TEST_DIR
# Checks:
#  a. while an `isthmus read` of LUN 0 waits in slowfs, another session's TEST UNIT READY of
#     LUN 0, READ of LUN 1 and TEST UNIT READY of LUN 1, and new sessions' INQUIRY and READ of
#     LUN 1, each answer within SLOW_FAST_MS (700) ms and before the slow read ends, which
#     takes at least SLOW_DELAY_MS - 100 ms;
#  b. the slow reads' data are the backing file's;
#  c. initiators killed while their reads (one, then three queued on the store) wait in
#     slowfs leave the target serving both LUNs, with no sanitizer report once those reads have
#     finished; reads still queued for a killed initiator never reach the device;
#  d. ABORT TASK of a READ waiting in slowfs, and of one queued behind it, is answered
#     (function complete) within SLOW_FAST_MS; no Data-In or SCSI Response comes for the aborted
#     tasks afterwards, the aborted queued read never reaches the device, the read not aborted
#     still completes, and the session keeps working;
#  e. SYNCHRONIZE CACHE and a FUA WRITE of LUN 0 wait in slowfs's (equally slow) fsync off the
#     event loop (io_uring or a worker) while LUN 1 answers at once; both end GOOD, the FUA data in the backing file;
#  g. ABORT TASK of a WRITE waiting in slowfs (writes delayed while BACKING.slow-writes exists)
#     is answered only after the write has left slowfs, with its data in the backing file and no
#     response for the aborted task; LUN 1 answers at once meanwhile (writes run on workers);
#  f. SIGTERM while a session that ignores the request to log out has a read in slowfs and two
#     queued: the target closes it after its grace period (3 s), waits for the read then on a
#     worker, and exits with status 0 within 3 s + SLOW_DELAY_MS + 1.5 s, with no sanitizer
#     or leak report.
# In a, an ORDERED TEST UNIT READY and a WRITE SAME to LUN 1 do not wait for LUN 0's read
# either; an ORDERED TEST UNIT READY to LUN 0 is answered only after that read has its data.
# A target without the offload fails a (TEST UNIT READY waits ~1.5 s), d (the TMF response
# comes after the reads, "task does not exist"), e (LUN 1 waits for the fsync) and f (the reads
# run before the grace period).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$INTEROP_DIR/slowfs.bash"
need python3 cmp
[[ "$TARGET_IMPL" == isthmus ]] || skip "this checks isthmus-target's read offload (TARGET_IMPL=$TARGET_IMPL)"

use_cli

DELAY_MS=${SLOW_DELAY_MS:-1500} # slowfs's delay per read
FAST_MS=${SLOW_FAST_MS:-700}     # what an answer that does not wait for slowfs may take at most
SLOW_MIN=$((DELAY_MS - 100))

# now_ms : wall clock in milliseconds
now_ms() {
	local us=${EPOCHREALTIME//[.,]/}
	echo $((us / 1000))
}

# ---- the slow file system --------------------------------------------------------------------
slowfs_mount "$DELAY_MS" /dev/urandom
head -c $((16 << 20)) /dev/urandom >"$TEST_DIR/lun1.img"
say "slowfs pid $SLOWFS_PID: $MNT/disk reads take $DELAY_MS ms more"

# reads_started / reads_done : reads slowfs has begun / finished so far
reads_started() { grep -c 'read start' "$SLOWFS_LOG" || true; }
reads_done() { grep -c 'read done' "$SLOWFS_LOG" || true; }
# wait_started N [SECS] : until slowfs has begun more than N reads
wait_started() {
	local n=$1 deadline=$((SECONDS + ${2:-10}))
	until (($(reads_started) > n)); do
		((SECONDS < deadline)) || fail "no read reached slowfs within ${2:-10} s"
		sleep 0.02
	done
}
# wait_done N [SECS] : until slowfs has finished at least N reads
wait_done() {
	local n=$1 deadline=$((SECONDS + ${2:-20}))
	until (($(reads_done) >= n)); do
		((SECONDS < deadline)) || fail "slowfs finished $(reads_done) reads within ${2:-20} s, want $n"
		sleep 0.05
	done
}
# wait_idle [SECS] : until every read slowfs has begun has finished
wait_idle() {
	local deadline=$((SECONDS + ${1:-20}))
	until (($(reads_started) == $(reads_done))); do
		((SECONDS < deadline)) || fail "slowfs still has $(($(reads_started) - $(reads_done))) reads in flight after ${1:-20} s"
		sleep 0.05
	done
}
# wait_exit PID SECS : wait for a background process to end (bounded)
wait_exit() {
	local pid=$1 deadline=$((SECONDS + $2))
	while alive "$pid"; do
		((SECONDS < deadline)) || fail "process $pid still running after $2 s"
		sleep 0.05
	done
	wait "$pid" 2>/dev/null || true
}
# timed FILE CMD... : run CMD, then write "STATUS START_MS END_MS" to FILE
timed() {
	local out=$1 start rc=0
	shift
	start=$(now_ms)
	"$@" || rc=$?
	echo "$rc $start $(now_ms)" >"$out"
}
# part FILE LBA BLOCKS OUT : blocks [LBA, LBA + BLOCKS) of FILE (512-byte blocks) into OUT
part() { dd if="$1" of="$4" bs=512 skip="$2" count="$3" status=none; }
# backing_part OUT LBA BLOCKS : the same of LUN 0's backing file
backing_part() { part "$BACKING" "$2" "$3" "$1"; }
# Every isthmus CLI process uses the same ISID: two with one initiator name would be one session
# (the later login reinstating it), so each CLI command here has a name of its own: IN-xyz.
IN=iqn.2026-11.org.isthmus:slow

# ---- the target ------------------------------------------------------------------------------
IQN=iqn.2026-11.org.isthmus:slowstore
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$MNT/disk,bs=512" --lun "$TEST_DIR/lun1.img,bs=512"
URL0=$(lun_url "$HP" "$IQN" 0)
URL1=$(lun_url "$HP" "$IQN" 1)

# The raw session (scsi_session.py) for the commands that must not wait, and for ABORT TASK.
ANSWER=""
coproc RAW {
	exec python3 "$INTEROP_DIR/scsi_session.py" 127.0.0.1 "$PORT" "$IQN" \
		--initiator iqn.2026-11.org.isthmus:slow-probe --isid 400000005501 2>>"$TEST_DIR/session.err"
}
BG_PIDS+=("$RAW_PID")
read -r -t 15 ANSWER <&"${RAW[0]}" || fail "raw session did not log in: $(tail -n 3 "$TEST_DIR/session.err")"
[[ "$ANSWER" == ready ]] || fail "raw session login: $ANSWER"
# ask SECS COMMAND... : one command to the raw session; its answer in ANSWER, its time in ASK_MS
ask() {
	local secs=$1 t0
	shift
	t0=$(now_ms)
	echo "$*" >&"${RAW[1]}" || fail "raw session is gone (sending '$*'): $(tail -n 3 "$TEST_DIR/session.err")"
	ANSWER=""
	read -r -t "$secs" ANSWER <&"${RAW[0]}" ||
		fail "no answer to '$*' within ${secs}s: $(tail -n 3 "$TEST_DIR/session.err")"
	ASK_END=$(now_ms)
	ASK_MS=$((ASK_END - t0))
	[[ "$ANSWER" != error=* ]] || fail "'$*': $ANSWER"
}
field() { sed -nE "s/^(.* )?$1=([^ ]*).*/\2/p" <<<"$ANSWER"; }
# lun_read CHECK LUN NAME LBA BLOCKS SECS : an isthmus read (initiator IN-NAME, SECS at most) of
# blocks [LBA, LBA + BLOCKS) of LUN 0 or 1 into TEST_DIR/NAME.bin, which must equal that LUN's
# file there (CHECK: a..g, for the messages); READ_END and READ_MS: when it ended, how long it took
lun_read() {
	local check=$1 lun=$2 name=$3 lba=$4 blocks=$5 secs=$6 url=$URL0 file=$BACKING t0 out
	((lun == 0)) || { url=$URL1; file=$TEST_DIR/lun1.img; }
	t0=$(now_ms)
	out=$(run_to "$secs" "$INI" read "$url" --initiator-name "$IN-$name" --lba "$lba" --blocks "$blocks" \
		--out "$TEST_DIR/$name.bin" 2>&1) || fail "$check: isthmus read of LUN $lun ($name): $out"
	READ_END=$(now_ms)
	READ_MS=$((READ_END - t0))
	part "$file" "$lba" "$blocks" "$TEST_DIR/want-$name.bin"
	cmp -s "$TEST_DIR/want-$name.bin" "$TEST_DIR/$name.bin" ||
		fail "$check: $((blocks / 2)) KiB of LUN $lun at LBA $lba ($name) differ from its file"
}
# cmd_good WHAT LUN CDB ARGS... : one command in a session of its own (scsi_cmd.py, ARGS: its
# options), which must end GOOD; CMD_END and CMD_MS: when it ended, how long it took
cmd_good() {
	local what=$1 lun=$2 t0 out
	t0=$(now_ms)
	out=$(run_to 20 python3 "$INTEROP_DIR/scsi_cmd.py" 127.0.0.1 "$PORT" "$IQN" "$lun" "${@:3}" 2>&1) || fail "$what: $out"
	CMD_END=$(now_ms)
	CMD_MS=$((CMD_END - t0))
	grep -q "^status=0x00" <<<"$out" || fail "$what: $out"
}
# abort_fast WHAT ITT : ABORT TASK of ITT on the raw session, answered "function complete" within
# FAST_MS (it does not wait for the read); ABORT_MS: the time the session measured
abort_fast() {
	ask 15 abort "$2"
	[[ "$(field response)" == 0x00 ]] || fail "d: ABORT TASK of $1: $ANSWER (want response 0x00, function complete)"
	ABORT_MS=$(field ms)
	((ABORT_MS < FAST_MS)) || fail "d: ABORT TASK of $1 answered after $ABORT_MS ms: it waited for the read"
}
# The first command of the new I_T nexus to each LUN reports the power-on unit attention.
for lun in 0 1; do
	ask 15 tur "$lun"
	[[ "$ANSWER" == status=0x00 || "$ANSWER" == "status=0x02 key=0x6 "* ]] || fail "first TEST UNIT READY of LUN $lun: $ANSWER"
	ask 15 tur "$lun"
	[[ "$ANSWER" == status=0x00 ]] || fail "TEST UNIT READY of LUN $lun: $ANSWER"
done

# ---- a. others are served while a read waits in slowfs -----------------------------------------
n=$(reads_started)
bg_start timed "$TEST_DIR/slow-a.time" run_to 30 "$INI" read "$URL0" --initiator-name "$IN-a" --lba 0 --blocks 8 \
	--out "$TEST_DIR/slow-a.bin" >"$TEST_DIR/slow-a.log" 2>&1
SLOW_A=$BG_LAST
wait_started "$n"
inflight=$(now_ms)
done_before=$(reads_done)
declare -a FAST=()
# fast WHAT MS END : one answer that must not have waited for slowfs
fast() {
	(($2 < FAST_MS)) || fail "a: $1 took $2 ms while a read of LUN 0 waited in slowfs (limit $FAST_MS ms): it waited for the slow store"
	FAST+=("$1 ${2}ms")
	FAST_END=$3
}
ask 15 tur 0
[[ "$ANSWER" == status=0x00 ]] || fail "a: TEST UNIT READY of LUN 0: $ANSWER"
fast "TUR LUN0 (other session)" "$ASK_MS" "$ASK_END"
ask 15 read 1 64 65536
[[ "$(field status)" == 0x00 && "$(field bytes)" == 65536 ]] || fail "a: READ of LUN 1: $ANSWER"
fast "READ 64K LUN1 (other session)" "$ASK_MS" "$ASK_END"
ask 15 tur 1
[[ "$ANSWER" == status=0x00 ]] || fail "a: TEST UNIT READY of LUN 1: $ANSWER"
fast "TUR LUN1 (other session)" "$ASK_MS" "$ASK_END"
t0=$(now_ms)
out=$(run_to 20 "$INI" inquiry "$URL1" --initiator-name "$IN-inq" 2>&1) || fail "a: isthmus inquiry of LUN 1: $out"
t1=$(now_ms)
grep -q "$PEER_VENDOR" <<<"$out" || fail "a: INQUIRY of LUN 1 does not name $PEER_VENDOR: $out"
fast "INQUIRY LUN1 (new session, with login)" $((t1 - t0)) "$t1"
lun_read a 1 fast-a 1000 16 20
fast "READ 8K LUN1 (new session, with login)" "$READ_MS" "$READ_END"
# Commands that wait for an LU's reads on workers (ORDERED ones, WRITE SAME, ...) wait for their
# own LU only: LUN 1's do not wait for LUN 0's slow read.
cmd_good "a: WRITE SAME of LUN 1" 1 93000000000000000800000000010000 \
	--out "$(head -c 512 /dev/zero | od -An -v -tx1 | tr -d ' \n')" --initiator "$IN-ws"
fast "WRITE SAME LUN1 (new session)" "$CMD_MS" "$CMD_END"
cmd_good "a: ORDERED TEST UNIT READY of LUN 1" 1 00000000000000000000000000000000 --attr 2 --initiator "$IN-ord1"
fast "ORDERED TUR LUN1 (new session)" "$CMD_MS" "$CMD_END"
if (($(reads_done) != done_before)) || ! alive "$SLOW_A"; then
	fail "a: the slow read was no longer in flight when the other commands were answered: the check proves nothing (machine too slow?)"
fi
# An ORDERED command to LUN 0 itself comes after the read in flight there (SAM: nothing before
# it may still be running), so it is answered only once slowfs has given the data back.
cmd_good "a: ORDERED TEST UNIT READY of LUN 0" 0 00000000000000000000000000000000 --attr 2 --initiator "$IN-ord0"
(($(reads_done) > done_before)) || fail "a: an ORDERED TEST UNIT READY of LUN 0 was answered while the read before it still waited in slowfs"
wait_exit "$SLOW_A" 30
read -r rc start end <"$TEST_DIR/slow-a.time"
((rc == 0)) || fail "a: the slow read failed (status $rc): $(cat "$TEST_DIR/slow-a.log")"
slow_ms=$((end - start))
((slow_ms >= SLOW_MIN)) || fail "a: the read of LUN 0 took only $slow_ms ms: slowfs did not delay it (want >= $SLOW_MIN)"
((FAST_END < end)) || fail "a: the other commands ended after the slow read"
say "ok: a: while a read of LUN 0 waited ${slow_ms} ms in slowfs (in slowfs $((inflight - start)) ms after the CLI started), other sessions got: ${FAST[*]}; all done $((end - FAST_END)) ms before it"

# ---- b. the slow read's data ------------------------------------------------------------------
backing_part "$TEST_DIR/want-a.bin" 0 8
cmp -s "$TEST_DIR/want-a.bin" "$TEST_DIR/slow-a.bin" || fail "b: the 4 KiB read of LUN 0 at LBA 0 differ from the backing file"
lun_read b 0 slow-b 4097 128 30
wait_idle 5
# The target counts the commands that waited for their device (isthmus target stats).
waits=$("$INI" target --socket "$TEST_DIR/mgmt-$$.sock" --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["device_waits"])') ||
	fail "b: isthmus target stats"
((waits >= 2)) || fail "b: isthmus target stats counts $waits commands that waited for their device, want >= 2"
say "ok: b: slow reads of LUN 0 (4 KiB at LBA 0; 64 KiB at LBA 4097 in $READ_MS ms) match the backing file; $waits commands waited for their device"

# ---- c. an initiator that goes away while its read waits in slowfs -----------------------------
# kill_during BLOCKS IO_KIB : start an isthmus read of LUN 0 (BLOCKS in commands of IO_KIB KiB)
# and SIGKILL it 300 ms after its first read reached slowfs
kill_during() {
	local n pid
	n=$(reads_started)
	bg_start "$INI" read "$URL0" --initiator-name "$IN-killed" --lba 8192 --blocks "$1" --io-size "$2" --out /dev/null
	pid=$BG_LAST
	wait_started "$n"
	sleep 0.3
	alive "$pid" || fail "c: the read of LUN 0 ended before it could be killed"
	(($(reads_done) == n)) || fail "c: a read of LUN 0 ended before the initiator was killed"
	{
		kill -KILL "$pid"
		wait_exit "$pid" 5
	} 2>/dev/null # not bash's "Killed" notice
}
mark=$(log_mark)
done_n=$(reads_started)
kill_during 8 4
# LUN 1 at once, while the orphaned read still waits in slowfs.
lun_read c 1 c1 0 8 20
(($(reads_done) <= done_n)) || note "c: the orphaned read ended before LUN 1 was read"
((READ_MS < FAST_MS * 2)) || fail "c: a read of LUN 1 after the kill took $READ_MS ms"
c1_ms=$READ_MS
wait_done $((done_n + 1))
alive "$TARGET_PID" || fail "c: the target died when the orphaned read finished"
sleep 0.3
report=$(sanitizer_report "$TARGET_LOG") && fail "c: sanitizer report after the orphaned read finished: $report"
lun_read c 0 c0 8192 8 30
say "ok: c: initiator killed with its read in slowfs: LUN 1 read $c1_ms ms later, the orphaned read finished, LUN 0 reads again, no sanitizer report"

# Three 4 KiB reads in flight: one waits in slowfs, two queued behind it on the store.
done_n=$(reads_started)
kill_during 24 4
lun_read c 1 c1 0 8 20
((READ_MS < FAST_MS * 2)) || fail "c: a read of LUN 1 after the second kill took $READ_MS ms"
c1_ms=$READ_MS
wait_done $((done_n + 1)) 30
alive "$TARGET_PID" || fail "c: the target died when the orphaned read finished"
sleep 0.5
# The two queued behind it belong to a connection that is gone: they never reach the device.
(($(reads_started) == done_n + 1)) || fail "c: slowfs saw $(($(reads_started) - done_n)) reads of the killed initiator, want only the one it was in"
report=$(sanitizer_report "$TARGET_LOG") && fail "c: sanitizer report after the orphaned reads finished: $report"
lun_read c 0 c0 8192 24 30
say "ok: c: initiator killed with 3 reads on the store (1 in slowfs, 2 queued): LUN 1 read $c1_ms ms later, the one in slowfs finished, the 2 queued never reached it, LUN 0 reads again, no sanitizer report"

# ---- d. ABORT TASK of reads on a worker --------------------------------------------------------
n=$(reads_started)
done_n=$(reads_done)
ask 15 send-read 0 16384 4096
ITT_A=$(field itt)
ask 15 send-read 0 16392 4096
ITT_B=$(field itt)
wait_started "$n"
# A waits in slowfs, B is queued behind it (same store): abort B first, then A.
abort_fast "the queued read" "$ITT_B"
ms_b=$ABORT_MS
abort_fast "the read in slowfs" "$ITT_A"
ms_a=$ABORT_MS
(($(reads_done) == done_n)) || fail "d: the read ended before ABORT TASK was answered: the check proves nothing"
# The aborted queued read is never read from the device. Wait until slowfs is idle, then listen
# once more (PDUs that came meanwhile wait in the socket or in the session's stash).
t0=$(now_ms)
wait_idle
ask 15 quiet "$ITT_A" 0.5
[[ "$(field pdus)" == 0 ]] || fail "d: PDUs came for the aborted read that was in slowfs: $ANSWER"
ask 15 quiet "$ITT_B" 0.1
[[ "$(field pdus)" == 0 ]] || fail "d: PDUs came for the aborted queued read: $ANSWER"
quiet_ms=$(($(now_ms) - t0))
ran_ab=$(($(reads_started) - n))
((ran_ab == 1)) || fail "d: $ran_ab of the 2 aborted reads reached slowfs, want only the one already there"
ask 15 tur 0
[[ "$ANSWER" == status=0x00 ]] || fail "d: TEST UNIT READY after the aborts: $ANSWER"
# Abort one of two reads: the other still gets its data.
n=$(reads_started)
ask 15 send-read 0 16384 4096
ITT_A=$(field itt)
ask 15 send-read 0 16400 4096
ITT_C=$(field itt)
wait_started "$n"
abort_fast "one of two reads" "$ITT_A"
ms_a2=$ABORT_MS
ask 15 wait "$ITT_C"
[[ "$(field status)" == 0x00 && "$(field bytes)" == 4096 ]] || fail "d: the read not aborted: $ANSWER"
ms_c=$(field ms)
ask 15 quiet "$ITT_A" 0.5
[[ "$(field pdus)" == 0 ]] || fail "d: PDUs came for the aborted read: $ANSWER"
ask 15 read 0 16384 4096
[[ "$(field status)" == 0x00 && "$(field bytes)" == 4096 ]] || fail "d: a read of LUN 0 after the aborts: $ANSWER"
alive "$TARGET_PID" || fail "d: the target died"
say "ok: d: ABORT TASK answered in $ms_b ms (queued read), $ms_a ms (read in slowfs), $ms_a2 ms; no PDU for the aborted tasks in the $quiet_ms ms until slowfs was idle + 0.5 s ($ran_ab of the 2 aborted reads reached slowfs); the read queued behind an aborted one completed after $ms_c ms; the session still works"

# ---- e. flushes that wait for the device ------------------------------------------------------
# SYNCHRONIZE CACHE, and a FUA WRITE (data stored at once, then made durable), wait in slowfs's
# fsync off the event loop while LUN 1 is served; both end GOOD and the FUA data is in the backing file.
fsyncs_started() { grep -c 'fsync start' "$SLOWFS_LOG" || true; }
# flush_while NAME CDB [--out HEX] : run it on LUN 0 in the background; while it waits in slowfs's
# fsync, LUN 1 answers at once; it ends GOOD after the delay
flush_while() {
	local name=$1 n t0 t1 out
	shift
	n=$(fsyncs_started)
	bg_start timed "$TEST_DIR/flush.time" run_to 30 python3 "$INTEROP_DIR/scsi_cmd.py" 127.0.0.1 "$PORT" "$IQN" 0 "$@" \
		--initiator "$IN-flush" >"$TEST_DIR/flush.out" 2>&1
	local pid=$BG_LAST deadline=$((SECONDS + 10))
	until (($(fsyncs_started) > n)); do
		((SECONDS < deadline)) || fail "e: $name never reached slowfs's fsync: $(cat "$TEST_DIR/flush.out")"
		sleep 0.02
	done
	ask 15 tur 1
	[[ "$ANSWER" == status=0x00 ]] || fail "e: TEST UNIT READY of LUN 1 during $name: $ANSWER"
	((ASK_MS < FAST_MS)) || fail "e: TEST UNIT READY of LUN 1 took $ASK_MS ms while $name waited in slowfs"
	alive "$pid" || fail "e: $name ended before LUN 1 was asked: the check proves nothing"
	wait_exit "$pid" 30
	read -r rc t0 t1 <"$TEST_DIR/flush.time"
	((rc == 0)) && grep -q "^status=0x00" "$TEST_DIR/flush.out" || fail "e: $name: $(cat "$TEST_DIR/flush.out")"
	((t1 - t0 >= SLOW_MIN)) || fail "e: $name took only $((t1 - t0)) ms: it did not wait for the fsync"
	FLUSH_MS+=("$name $((t1 - t0))ms, LUN 1 ${ASK_MS}ms")
}
FLUSH_MS=()
flush_while "SYNCHRONIZE CACHE" 35000000000000000000
FUA_HEX=$(head -c 512 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
flush_while "FUA WRITE" 2a080000300000000100 --out "$FUA_HEX"
[[ "$(dd if="$BACKING" bs=512 skip=$((0x3000)) count=1 status=none | od -An -v -tx1 | tr -d ' \n')" == "$FUA_HEX" ]] ||
	fail "e: the FUA WRITE's data is not in the backing file"
say "ok: e: flushes waited off the event loop (${FLUSH_MS[*]}); the FUA data is in the backing file"

# ---- g. ABORT TASK of a WRITE in slowfs ---------------------------------------------------------
# While BACKING.slow-writes exists slowfs delays writes too. The write runs off the loop: LUN 1 is
# served meanwhile; the ABORT TASK response comes only once the write has left slowfs (it is
# waited for, not forgotten: afterwards nothing of the aborted command changes the medium), the
# data it wrote is in the backing file, and no SCSI Response comes for the aborted task.
writes_started() { grep -c 'write start' "$SLOWFS_LOG" || true; }
writes_done() { grep -c 'write done' "$SLOWFS_LOG" || true; }
touch "$BACKING.slow-writes"
wn=$(writes_started)
wd=$(writes_done)
G_LBA=$((0x3800))
ask 15 write 0 "$G_LBA" 4096
[[ "$ANSWER" == r2t* ]] || fail "g: WRITE of LUN 0: $ANSWER (want an R2T)"
ITT_W=$(field itt)
ask 15 send-data "$ITT_W"
[[ "$(field bytes)" == 4096 ]] || fail "g: the WRITE's data: $ANSWER"
deadline=$((SECONDS + 10))
until (($(writes_started) > wn)); do
	((SECONDS < deadline)) || fail "g: the WRITE never reached slowfs"
	sleep 0.02
done
ask 15 tur 1
[[ "$ANSWER" == status=0x00 ]] || fail "g: TEST UNIT READY of LUN 1 during the slow WRITE: $ANSWER"
((ASK_MS < FAST_MS)) || fail "g: TEST UNIT READY of LUN 1 took $ASK_MS ms while a WRITE of LUN 0 waited in slowfs"
g_tur=$ASK_MS
(($(writes_done) == wd)) || fail "g: the WRITE left slowfs before LUN 1 was asked: the check proves nothing"
ask 30 abort "$ITT_W"
[[ "$(field response)" == 0x00 ]] || fail "g: ABORT TASK of the WRITE in slowfs: $ANSWER (want response 0x00, function complete)"
g_ms=$(field ms)
(($(writes_done) > wd)) || fail "g: ABORT TASK of the WRITE answered after $g_ms ms while the write was still in slowfs"
rm -f "$BACKING.slow-writes"
want_hex=$(python3 -c 'import sys; sys.stdout.write(bytes(i % 256 for i in range(4096)).hex())')
[[ "$(dd if="$BACKING" bs=512 skip="$G_LBA" count=8 status=none | od -An -v -tx1 | tr -d ' \n')" == "$want_hex" ]] ||
	fail "g: the aborted WRITE's data is not in the backing file after the ABORT TASK response"
ask 15 quiet "$ITT_W" 0.5
[[ "$(field pdus)" == 0 ]] || fail "g: PDUs came for the aborted WRITE: $ANSWER"
ask 15 tur 0
[[ "$ANSWER" == status=0x00 ]] || fail "g: TEST UNIT READY of LUN 0 after the abort: $ANSWER"
say "ok: g: LUN 1 answered in $g_tur ms while a WRITE waited in slowfs; its ABORT TASK was answered after $g_ms ms, once the write had left slowfs, with the data on the medium and no response for the aborted task"

# ---- f. SIGTERM while a read waits in slowfs ---------------------------------------------------
# The raw session has three reads on LUN 0 (one in slowfs, two queued) and does not answer the
# target's request to log out: after its grace period (3 s) the target closes the connection
# with the third read still on a worker, then waits for it and exits.
n=$(reads_started)
for lba in 30000 30008 30016; do
	ask 15 send-read 0 "$lba" 4096
done
wait_started "$n"
sleep 0.2
(($(reads_done) == n)) || fail "f: the first read was not waiting in slowfs at SIGTERM"
pid=$TARGET_PID
mark=$(log_mark)
t0=$(now_ms)
STOP_TIMEOUT=20 stop_target TERM
t1=$(now_ms)
started=$(reads_started) finished=$(reads_done)
[[ "$TARGET_EXIT" == 0 ]] || fail "f: target exited with status $TARGET_EXIT $((t1 - t0)) ms after SIGTERM (137: it had to be killed)"
# The target's grace period (3 s) plus the read on a worker at its end; without the offload the
# three reads would run first, on the event loop, and the grace period after them.
E_LIMIT=$((3000 + DELAY_MS + 1500))
((t1 - t0 < E_LIMIT)) || fail "f: the target took $((t1 - t0)) ms to exit after SIGTERM (limit $E_LIMIT ms)"
((started == finished)) || fail "f: the target exited with $((started - finished)) reads still in slowfs: it did not wait for its workers"
((started - n == 3)) || note "f: slowfs saw $((started - n)) of the 3 reads"
closed=$(log_since "$mark" | grep -c 'closing connection' || true)
say "ok: f: SIGTERM with a read in slowfs and two queued: target pid $pid exited 0 after $((t1 - t0)) ms (limit $E_LIMIT), after all $((started - n)) reads on its workers finished; $closed connection(s) closed at the deadline; no sanitizer or leak report"

say "PASS"
