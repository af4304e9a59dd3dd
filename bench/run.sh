#!/usr/bin/env bash
# Performance of isthmus-target (release build) against tgtd and istgt, one after another on the
# same 1 GiB sparse backing file in /dev/shm, all on loopback.  Not part of `make test`.
#
# Workloads (each about BENCH_SECONDS, default 10):
#   randread-4k   iscsi-perf, 4 KiB random reads, 32 in flight
#   seqread-128k  iscsi-perf, 128 KiB sequential reads, 16 in flight
#   write-4k      qemu-img bench, 4 KiB writes, 32 in flight (qemu-img bench steps through the
#                 image sequentially; it has no random mode); BENCH_WRITES requests, by default
#                 as many as the peer's random-read rate does in BENCH_SECONDS
# For each run the target's CPU time (utime + stime from /proc/PID/stat, all threads) is
# measured, and the table ends with isthmus/tgtd and isthmus/istgt ratios.
#
# Environment: BENCH_SECONDS (10), BENCH_WRITES (see above), ISTHMUS_BIN (build/),
#              BENCH_PEERS ("isthmus tgtd istgt").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export TEST_NAME=bench TMP_BASE=/dev/shm TARGET_IMPL=isthmus
export ISTHMUS_BIN=${ISTHMUS_BIN:-$ROOT/build}
# shellcheck source=../tests/interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
need iscsi-perf qemu-img iscsi-readcapacity16

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WRITES_FIXED=${BENCH_WRITES:-}
PEERS=(${BENCH_PEERS:-isthmus tgtd istgt})
IQN=iqn.2026-11.org.isthmus:bench
DISK=$TEST_DIR/disk.img
truncate -s 1G "$DISK"
# The backing file lives in RAM: remove it even when the run fails (logs stay for a look).
trap 'rc=$?; rm -f "$DISK"; (exit $rc); lib_cleanup' EXIT
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TEST_DIR/results.tsv
: >"$RESULTS"

# cpu_ticks PID : utime + stime of the whole process (all threads), in clock ticks.
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# measure PEER PID WORKLOAD IO_BYTES CMD... : run the load, record IOPS, MiB/s, target CPU s.
measure() {
	local peer=$1 pid=$2 wl=$3 iosize=$4
	shift 4
	local log=$TEST_DIR/$peer-$wl.log c0 c1 t0 t1 iops=""
	c0=$(cpu_ticks "$pid")
	t0=$(date +%s.%N)
	if ! run_to $((BENCH_SECONDS * 6 + 60)) "$@" >"$log" 2>&1; then
		say "$peer $wl: load failed: $(tr '\r' '\n' <"$log" | tail -n 3 | tr '\n' ' ')"
		printf '%s\t%s\tn/a\tn/a\tn/a\n' "$peer" "$wl" >>"$RESULTS"
		return 0
	fi
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	local ios=""
	case "$1" in
	iscsi-perf)
		iops=$(tr '\r' '\n' <"$log" | grep -oE 'iops average [0-9]+' | tail -n1 | awk '{print $3}')
		[[ -n "$iops" ]] && ios=$((iops * BENCH_SECONDS))
		;;
	qemu-img)
		local secs
		secs=$(sed -nE 's/.*Run completed in ([0-9.]+) seconds.*/\1/p' "$log")
		[[ -n "$secs" ]] && iops=$(python3 -c "print(int($WRITES / $secs))") && ios=$WRITES
		;;
	esac
	if [[ -z "$iops" ]]; then
		say "$peer $wl: no result in $log"
		printf '%s\t%s\tn/a\tn/a\tn/a\n' "$peer" "$wl" >>"$RESULTS"
		return 0
	fi
	python3 - "$peer" "$wl" "$iops" "$iosize" "$c0" "$c1" "$CLK_TCK" "$ios" >>"$RESULTS" <<-'PY'
	import sys
	peer, wl, iops, iosize, c0, c1, tck, ios = sys.argv[1:]
	cpu = (int(c1) - int(c0)) / int(tck)
	print("%s\t%s\t%d\t%.1f\t%.2f\t%.2f" % (peer, wl, int(iops), int(iops) * int(iosize) / 2**20, cpu, cpu * 1e6 / max(1, int(ios))))
	PY
	say "$peer $wl: $(tail -n1 "$RESULTS" | cut -f3-)"
}

# run_workloads PEER PID URL
run_workloads() {
	local peer=$1 pid=$2 url=$3 out bs
	out=$(run_to 30 iscsi-readcapacity16 "$url" 2>&1) || { say "$peer: READ CAPACITY failed: $out"; return 0; }
	bs=$(sed -nE 's/^LOGICAL BLOCK LENGTH IN BYTES:([0-9]+).*/\1/p' <<<"$out")
	measure "$peer" "$pid" randread-4k 4096 \
		iscsi-perf -m 32 -b $((4096 / bs)) -r -t "$BENCH_SECONDS" "$url"
	measure "$peer" "$pid" seqread-128k 131072 \
		iscsi-perf -m 16 -b $((131072 / bs)) -t "$BENCH_SECONDS" "$url"
	WRITES=$BENCH_WRITES_FIXED
	if [[ -z "$WRITES" ]]; then
		local rr
		rr=$(awk -F'\t' -v p="$peer" '$1 == p && $2 == "randread-4k" && $3 != "n/a" {print $3}' "$RESULTS")
		WRITES=$(( ${rr:-20000} * BENCH_SECONDS ))
		((WRITES >= 20000)) || WRITES=20000
	fi
	measure "$peer" "$pid" write-4k 4096 \
		qemu-img bench -f raw -w -t none -d 32 -s 4096 -c "$WRITES" "$url"
}

bench_isthmus() {
	local port
	[[ -x "$ISTHMUS_BIN/isthmus-target" ]] || { say "no $ISTHMUS_BIN/isthmus-target (make build)"; return 0; }
	port=$(free_port)
	start_target --listen "127.0.0.1:$port" --target "$IQN" --lun "$DISK" --log-level warn
	run_workloads isthmus "$TARGET_PID" "iscsi://127.0.0.1:$port/$IQN/0"
	stop_target
}

bench_tgtd() {
	local port
	command -v tgtd >/dev/null || { say "tgtd not installed"; return 0; }
	port=$(free_port)
	start_tgtd "$port"
	tgtd_adm --op new --mode target --tid 1 -T "$IQN"
	tgtd_adm --op new --mode logicalunit --tid 1 --lun 1 -b "$DISK"
	tgtd_adm --op bind --mode target --tid 1 -I ALL
	run_workloads tgtd "$TGTD_PID" "iscsi://127.0.0.1:$port/$IQN/1"
	tgtd_shutdown "$TGTD_PID" "$TGTD_CTL"
}

bench_istgt() {
	local port
	command -v istgt >/dev/null || { say "istgt not installed"; return 0; }
	port=$(free_port)
	# lib.sh stands istgt in for the target under test (the same setup the interop tests use).
	TARGET_IMPL=istgt start_target --listen "127.0.0.1:$port" --target "$IQN" --lun "$DISK"
	run_workloads istgt "$TARGET_PID" "iscsi://127.0.0.1:$port/$IQN/0"
	stop_target
}

say "backing file $DISK (1 GiB sparse, tmpfs); ${BENCH_SECONDS}s per load; $(nproc) CPUs"
for peer in "${PEERS[@]}"; do
	"bench_$peer"
done

python3 - "$RESULTS" <<-'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
data = {}
order = []
for r in rows:
    peer, wl = r[0], r[1]
    if wl not in order:
        order.append(wl)
    data[(peer, wl)] = None if r[2] == "n/a" else (int(r[2]), float(r[3]), float(r[4]), float(r[5]))
peers = []
for r in rows:
    if r[0] not in peers:
        peers.append(r[0])
print()
print("%-13s %-8s %10s %9s %8s %11s" % ("workload", "peer", "IOPS", "MiB/s", "CPU s", "CPU us/IO"))
for wl in order:
    for p in peers:
        d = data.get((p, wl))
        if d is None:
            print("%-13s %-8s %10s %9s %8s %11s" % (wl, p, "n/a", "n/a", "n/a", "n/a"))
            continue
        iops, mbs, cpu, us = d
        print("%-13s %-8s %10d %9.1f %8.2f %11.2f" % (wl, p, iops, mbs, cpu, us))
print()
print("ratios (isthmus / peer): IOPS higher is better, CPU per I/O lower is better")
for wl in order:
    mine = data.get(("isthmus", wl))
    for p in peers:
        if p == "isthmus":
            continue
        other = data.get((p, wl))
        if not mine or not other:
            print("%-13s isthmus/%-7s n/a" % (wl, p))
            continue
        cpu_ratio = mine[3] / other[3] if other[3] > 0 else float("nan")
        print("%-13s isthmus/%-7s IOPS x%.2f   CPU/IO x%.2f" % (wl, p, mine[0] / other[0], cpu_ratio))
PY
