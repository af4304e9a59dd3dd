#!/usr/bin/env bash
# Adding RBD LUNs to a running target while their cluster does not answer: the images open on
# a worker, the event loop keeps serving every other LUN.
#   - the cluster frozen (its daemons SIGSTOPped); `isthmus target add-lun` of an RBD image
#     runs while a session reads LUN 0 (a memory LUN) without pause: no read takes longer than
#     MAX_LATENCY_MS, and add-lun fails with an error that names the image (the operation
#     timeout) instead of hanging the target;
#   - the same through SIGHUP with an edited configuration file: reads keep flowing, the reload
#     is refused with the image's error in the log, the running configuration stays;
#   - the cluster back: add-lun and SIGHUP both add their LUNs, which serve I/O;
#   - the cluster frozen again: `isthmus target remove-lun` of one RBD LUN, while a WRITE(10) to
#     it waits at the cluster, and a SIGHUP that drops another answer at once while LUN 0 is
#     read (the store closes when the write has ended; the images are let go on threads of
#     their own); the write ends with NOT READY at the op timeout; the target then stops within
#     the images' bound (op timeout and a second each, all at once) with the cluster still
#     frozen.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
[[ "$TARGET_IMPL" == isthmus ]] || skip "exercises isthmus-target's management socket and reload"
need python3 jq

# The longest a read of the memory LUN may take while an image opens (the cluster waits are
# 3 s and more: a loop that blocks on them misses this by far).
MAX_LATENCY_MS=${MAX_LATENCY_MS:-1000}

ceph_start
ceph_client_timeout 3
ceph_image first 32M
ceph_image second 32M
ceph_image third 32M

IQN=iqn.2026-11.org.isthmus:rbd-reconfig
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
CONF=$TEST_DIR/t.conf
CLI=$ISTHMUS_BIN/isthmus
write_conf() { # extra LUN lines
	one_target_conf "$CONF" "$IQN" "lun 0 = memory,size=16M" "lun 1 = rbd:rbd/first,conf=$CEPH_CONF" "$*"
}
write_conf ""
start_target --config "$CONF"
T() { run_to 30 "$CLI" target --socket "$SOCK" "$@"; }

# reader_start OUT: a reader of LUN 0 for 8 s (counts to OUT, pid in READER), logged in; the
# caller makes its change meanwhile, then waits for READER and check_reads OUT.
reader_start() {
	reads_for 8 "$1" &
	READER=$!
	wait_reader "$1"
	sleep 0.5
}

# timed_T ARGS...: T ARGS, its output in T_OUT, its status in T_RC, how long it took in T_MS.
timed_T() {
	local t0
	t0=$(date +%s%N)
	T_RC=0
	T_OUT=$(T "$@" 2>&1) || T_RC=$?
	T_MS=$((($(date +%s%N) - t0) / 1000000))
}

# reads_for SECS OUT: READ(10)s of LUN 0 back to back for SECS seconds; writes the count and
# the longest latency (ms) to OUT.
reads_for() {
	python3 - "$INTEROP_DIR" 127.0.0.1 "$PORT" "$IQN" "$1" "$2" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import Nexus, read10
host, port, iqn, secs, out = sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6]
gateway_nexus.setup("test_rbd_reconfig", iqn, {1: port}, host)
nx = Nexus("rbd-reconfig-reader", 1, "400000000099")
open(out + ".ready", "w").close()
worst, n, bad = 0.0, 0, 0
end = time.time() + secs
while time.time() < end:
    t = time.time()
    # Sent again past unit attentions: the new nexus's and REPORTED LUNS DATA HAS CHANGED.
    st, data, _ = read10(nx, (n * 8) % 30000, 8, ua_retries=3)
    worst = max(worst, time.time() - t)
    n += 1
    if st != 0:
        bad += 1
open(out, "w").write("%d %d %d\n" % (n, int(worst * 1000), bad))
PY
}

wait_reader() { # OUT: until the reader (or writer) is logged in (bounded)
	for _ in $(seq 1 100); do
		[[ -e "$1.ready" ]] && return 0
		sleep 0.1
	done
	fail "the reader did not log in"
}

# write_held LUN OUT: one WRITE(10) to LUN through a session of its own, logged in and past its
# unit attentions first (OUT.ready), sent once OUT.go exists (waits at most 60 s for it); writes
# "status sense seconds" to OUT.
write_held() {
	python3 - "$INTEROP_DIR" 127.0.0.1 "$PORT" "$IQN" "$1" "$2" <<'PY'
import os, sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import Nexus, cdb10, sense_of
host, port, iqn, lun, out = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
gateway_nexus.setup("test_rbd_reconfig", iqn, {1: port}, host)
nx = Nexus("rbd-reconfig-writer", 1, "40000000009b", lun=lun, timeout=60)
nx.ready()
open(out + ".ready", "w").close()
for _ in range(600):
    if os.path.exists(out + ".go"):
        break
    time.sleep(0.1)
t = time.time()
st, _, s = nx.cmd(cdb10(0x2a, 128, 8), out=b"\x6b" * 4096)
open(out, "w").write("%d %s %.1f\n" % (st, "".join("%02x" % b for b in (sense_of(s) or ())) or "-", time.time() - t))
PY
}

check_reads() { # OUT WHAT
	local n worst bad
	read -r n worst bad <"$1"
	say "  $n reads of LUN 0 during $2, the longest took $worst ms, $bad failed"
	((n > 20)) || fail "too few reads of LUN 0 during $2 ($n)"
	((bad == 0)) || fail "$bad reads of LUN 0 failed during $2"
	((worst <= MAX_LATENCY_MS)) || fail "a read of LUN 0 took $worst ms during $2 (the loop waited for the cluster)"
}

say "the cluster frozen; add-lun of rbd/second while LUN 0 is read without pause"
ceph_pause
reader_start "$TEST_DIR/reads1"
timed_T add-lun "$IQN" "rbd:rbd/second,conf=$CEPH_CONF" --lun 2
rc=$T_RC out=$T_OUT ms=$T_MS
say "  add-lun answered after $ms ms with status $rc: $out"
wait "$READER" || fail "the reader failed"
check_reads "$TEST_DIR/reads1" "add-lun"
((rc != 0)) || fail "add-lun of an image of a frozen cluster succeeded"
grep -q "rbd/second" <<<"$out" || fail "add-lun's error does not name the image"
T --json list | jq -e '.[0].luns | length == 2' >/dev/null || fail "the failed add-lun left a LUN behind"

say "the cluster still frozen; SIGHUP with rbd/third added to the file while LUN 0 is read"
write_conf "lun 3 = rbd:rbd/third,conf=$CEPH_CONF"
mark=$(log_mark)
reader_start "$TEST_DIR/reads2"
kill -HUP "$TARGET_PID"
wait "$READER" || fail "the reader failed"
check_reads "$TEST_DIR/reads2" "the reload"
wait_log "$mark" "reload refused.*rbd/third" 20 || fail "the reload was not refused with the image's error"
T --json list | jq -e '.[0].luns | length == 2' >/dev/null || fail "the refused reload changed the LUNs"
# ceph_resume returns once the cluster serves a new client again (osd.0 up, the pool listed),
# bounded, and fails the test when it does not: the cluster (tests/ceph/micro-ceph.sh) is set
# up so that a pause costs it nothing but the pause.
ceph_resume

say "the cluster back: add-lun and SIGHUP add their LUNs"
# The first operations after a resume may still time out (3 s here): an administrator would try
# again, so add-lun gets a few bounded tries; each failure must name the image.
added=0
for try in 1 2 3 4 5; do
	if out=$(T add-lun "$IQN" "rbd:rbd/second,conf=$CEPH_CONF" --lun 2 2>&1); then
		added=1
		break
	fi
	[[ "$out" == *rbd/second* ]] || fail "add-lun failed without naming the image: $out"
	say "  add-lun try $try: $out"
	sleep 2
done
((added)) || fail "add-lun with the cluster back failed five times"
write_conf "lun 2 = rbd:rbd/second,conf=$CEPH_CONF
lun 3 = rbd:rbd/third,conf=$CEPH_CONF"
mark=$(log_mark)
kill -HUP "$TARGET_PID"
wait_log "$mark" "reload applied" 30 || fail "the reload was not applied"
T --json list | jq -e '.[0].luns | length == 4' >/dev/null || fail "expected LUNs 0-3: $(T --json list)"
python3 - "$INTEROP_DIR" 127.0.0.1 "$PORT" "$IQN" <<'PY' || fail "I/O to the added LUNs failed"
import sys
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, Nexus, cdb10, read10
gateway_nexus.setup("test_rbd_reconfig", sys.argv[4], {1: int(sys.argv[3])}, sys.argv[2])
nx = Nexus("rbd-reconfig-check", 1, "40000000009a", timeout=60)
for lun in (2, 3):
    nx.lun = lun
    blob = bytes((lun * 31 + i) & 0xff for i in range(4096))
    for _ in range(3):   # past the unit attentions of a new nexus and of the added LUNs
        st = nx.cmd(cdb10(0x2a, 64, 8), out=blob)[0]
        if st == 0:
            break
    st2, got, _ = read10(nx, 64, 8)
    say("  LUN %d: write status %d, read back %s" % (lun, st, "same" if got == blob else "DIFFERENT"))
    if st != 0 or st2 != 0 or got != blob:
        sys.exit(1)
PY

say "the cluster frozen again; remove-lun of LUN 2 (a write to it at the cluster) and a reload that drops LUN 3 while LUN 0 is read"
WRITE=$TEST_DIR/held-write
write_held 2 "$WRITE" &
WRITER=$!
wait_reader "$WRITE"
ceph_pause
reader_start "$TEST_DIR/reads3"
touch "$WRITE.go"
sleep 1 # the write is at the frozen cluster
timed_T remove-lun "$IQN" 2
((T_RC == 0)) || fail "remove-lun with the cluster frozen failed: $T_OUT"
say "  remove-lun answered after $T_MS ms"
((T_MS <= MAX_LATENCY_MS)) || fail "remove-lun took $T_MS ms with the cluster frozen (the loop waited for the cluster)"
write_conf ""
mark=$(log_mark)
kill -HUP "$TARGET_PID"
wait_log "$mark" "reload applied" 10 || fail "the reload that drops LUN 3 was not applied"
wait "$READER" || fail "the reader failed"
check_reads "$TEST_DIR/reads3" "remove-lun and the reload"
T --json list | jq -e '[.[0].luns[].lun] == [0, 1]' >/dev/null || fail "expected LUNs 0 and 1: $(T --json list)"
wait "$WRITER" || fail "the writer failed"
read -r wst wsense wtook <"$WRITE"
say "  the write to the removed LUN 2 ended with status $wst, sense $wsense, after $wtook s"
# NOT READY, LOGICAL UNIT IS IN PROCESS OF BECOMING READY at the 3 s op timeout.
[[ "$wst" == 2 && "$wsense" == 020401 ]] || fail "the held write ended with status $wst sense $wsense, not NOT READY (02h/04h/01h)"

# The stop waits for the sessions' logout (up to 3 s), the last flush of LUN 1 (the 3 s op
# timeout: the cluster is frozen) and the images still being let go, each for at most the op
# timeout and a second from its start (librbd's own close takes three op timeouts here): about
# 10 s, and never the sum of the releases.
say "the target stops with the cluster still frozen"
t0=$SECONDS
STOP_TIMEOUT=20 _stop_target TERM
took=$((SECONDS - t0))
say "  the target exited with status $TARGET_EXIT after $took s"
((TARGET_EXIT == 0)) || fail "the target exited with status $TARGET_EXIT: $(tail -5 "$TARGET_LOG")"
((took <= 14)) || fail "the stop took $took s with the cluster frozen"
if report=$(sanitizer_report "$TARGET_LOG"); then
	fail "target reported a sanitizer error: $report"
fi
say "PASS"
