#!/usr/bin/env bash
# isthmus-target (release build) against tgtd and istgt, all serving the same 1 GiB file in
# /dev/shm on loopback, written in full before the first load. Not part of `make test`: `make bench`.
#
# The three targets run side by side for the whole benchmark and are measured in turn, load by
# load, round by round (BENCH_ROUNDS, at least 3), so a burst of noise on this shared machine
# lands on one sample of every target alike instead of on one target's whole column. Each figure
# is the median of its rounds, printed with its spread ((max - min) / median); a row whose spread
# is over 30 % is flagged, and the ratios are ratios of medians.
#
# Loads (BENCH_SECONDS each, default 5):
#   randread-4k    4 KiB random reads, 32 in flight               (iscsi-perf -r)
#   randwrite-4k   4 KiB random writes, 32 in flight              (isthmus-perf --write -r)
#   seqread-128k   128 KiB sequential reads, 16 in flight         (iscsi-perf)
#   seqwrite-128k  128 KiB sequential writes, 16 in flight        (isthmus-perf --write)
#   seqread-1m     1 MiB sequential reads, 8 in flight            (iscsi-perf)
#   qd1-read-4k    4 KiB random reads, one at a time: latency p50 and p99 in µs (isthmus-perf -m 1)
#   null-read-4k   as randread-4k, and
#   null-seq-128k  as seqread-128k, against a LUN that keeps nothing: isthmus-target's
#                  `null,size=1T` and tgtd's `--bstype null`, so only the protocol path is measured
#                  (istgt has no such LUN: n/a)
#   randread-4k-x4 4 KiB random reads from 4 sessions at once (4 iscsi-perf, 8 in flight each):
#                  the load that spreads over a target's event loops
# Peers: isthmus (isthmus-target, one event loop), isthmus-2loops (the same with --threads 2;
# not in the default list: BENCH_PEERS="isthmus isthmus-2loops" BENCH_LOADS=randread-4k-x4 ...
# compares one loop with two on the multi-session load, CPU µs/IO being the figure that counts on
# a machine whose cores the load generator shares), tgtd, istgt.
# libiscsi has no write load generator, so writes and the latency row use isthmus-perf, the same
# driver against every target. For every sample the target's CPU time (utime + stime of all its
# threads, /proc/PID/stat) is divided by the I/Os done: "CPU µs/IO".
# A single loopback TCP stream (iperf3, 1 MiB writes, BENCH_SECONDS) is measured each round too:
# the ceiling the 1 MiB row is compared with.
#
# Environment: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_PEERS ("isthmus tgtd istgt"),
#              BENCH_LOADS (all of the above), ISTHMUS_BIN (build/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export TEST_NAME=bench TMP_BASE=/dev/shm TARGET_IMPL=isthmus
export ISTHMUS_BIN=${ISTHMUS_BIN:-$ROOT/build}
# shellcheck source=../tests/interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
need iscsi-perf iscsi-readcapacity16
[[ -x "$ISTHMUS_BIN/isthmus-perf" ]] || fail "no $ISTHMUS_BIN/isthmus-perf (make build)"

BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
((BENCH_ROUNDS >= 3)) || fail "BENCH_ROUNDS must be at least 3: a median of fewer says nothing"
read -r -a PEERS <<<"${BENCH_PEERS:-isthmus tgtd istgt}"
read -r -a LOADS <<<"${BENCH_LOADS:-randread-4k randwrite-4k seqread-128k seqwrite-128k seqread-1m qd1-read-4k null-read-4k null-seq-128k}"
IQN=iqn.2026-11.org.isthmus:bench
DISK=$TEST_DIR/disk.img
# Written in full, not sparse: a read of a hole copies from the one cached zero page, much faster
# than a read of real pages, so on a sparse file the sequential rows measured the
# share of the file the 4 KiB write loads had filled so far (it grew round by round).
dd if=/dev/zero of="$DISK" bs=1M count=1024 status=none
trap 'rc=$?; rm -f "$DISK"; (exit $rc); lib_cleanup' EXIT
CLK_TCK=$(getconf CLK_TCK)
SAMPLES=$TEST_DIR/samples.tsv # peer load round iops mibs cpu_us_per_io p50_us p99_us
: >"$SAMPLES"
declare -A URL NULL_URL PID

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# load_cmd LOAD URL BLOCKSIZE : the command line of one load against URL.
load_cmd() {
	local load=$1 url=$2 bs=$3 t=$BENCH_SECONDS perf=$ISTHMUS_BIN/isthmus-perf
	case "$load" in
	randread-4k | null-read-4k) echo iscsi-perf -m 32 -b $((4096 / bs)) -r -t "$t" "$url" ;;
	randwrite-4k) echo "$perf" --write -r -m 32 -b $((4096 / bs)) -t "$t" "$url" ;;
	seqread-128k | null-seq-128k) echo iscsi-perf -m 16 -b $((131072 / bs)) -t "$t" "$url" ;;
	seqwrite-128k) echo "$perf" --write -m 16 -b $((131072 / bs)) -t "$t" "$url" ;;
	seqread-1m) echo iscsi-perf -m 8 -b $((1048576 / bs)) -t "$t" "$url" ;;
	qd1-read-4k) echo "$perf" -r -m 1 -b $((4096 / bs)) -t "$t" "$url" ;;
	randread-4k-x4) echo "$ROOT/bench/sessions.sh" 4 iscsi-perf -m 8 -b $((4096 / bs)) -r -t "$t" "$url" ;;
	*) fail "unknown load $load" ;;
	esac
}

load_bytes() {
	case "$1" in
	randread-4k | randwrite-4k | qd1-read-4k | null-read-4k | randread-4k-x4) echo 4096 ;;
	seqread-128k | seqwrite-128k | null-seq-128k) echo 131072 ;;
	seqread-1m) echo 1048576 ;;
	*) return 1 ;;
	esac
}

# measure PEER LOAD ROUND : one sample.
measure() {
	local peer=$1 load=$2 round=$3 url=${URL[$1]} pid=${PID[$1]} bs log c0 c1 iops p50="" p99=""
	if [[ "$load" == null-* ]]; then
		[[ -n "${NULL_URL[$peer]:-}" ]] || return 0 # no null LUN on this peer
		url=${NULL_URL[$peer]}
	fi
	log=$TEST_DIR/$peer-$load-$round.log
	bs=${BLOCKSIZE[$peer]}
	# shellcheck disable=SC2046
	set -- $(load_cmd "$load" "$url" "$bs")
	c0=$(cpu_ticks "$pid")
	if ! run_to $((BENCH_SECONDS * 4 + 60)) "$@" >"$log" 2>&1; then
		say "$peer $load round $round: load failed: $(tr '\r' '\n' <"$log" | tail -n 3 | tr '\n' ' ')"
		return 0
	fi
	c1=$(cpu_ticks "$pid")
	# sed -n, not grep: no match must not end the run under set -e.
	iops=$(tr '\r' '\n' <"$log" | sed -nE 's/.*iops average ([0-9]+).*/\1/p' | tail -n1)
	[[ -n "$iops" ]] || { say "$peer $load round $round: no result in $log"; return 0; }
	if [[ "$load" == qd1-* ]]; then
		read -r p50 p99 < <(sed -nE 's/^latency p50 ([0-9]+) us, p99 ([0-9]+) us.*/\1 \2/p' "$log") || true
	fi
	python3 - "$peer" "$load" "$round" "$iops" "$(load_bytes "$load")" "$c0" "$c1" "$CLK_TCK" \
		"$BENCH_SECONDS" "${p50:-}" "${p99:-}" >>"$SAMPLES" <<-'PY'
	import sys
	peer, load, rnd, iops, size, c0, c1, tck, secs, p50, p99 = sys.argv[1:]
	ios = max(1, int(iops) * int(secs))
	cpu_us = (int(c1) - int(c0)) * 1e6 / int(tck)
	print("\t".join([peer, load, rnd, iops, "%.1f" % (int(iops) * int(size) / 2**20),
	                 "%.2f" % (cpu_us / ios), p50 or "-", p99 or "-"]))
	PY
	say "$peer $load round $round: $(tail -n1 "$SAMPLES" | cut -f4-)"
}

# tcp_ceiling ROUND : one loopback TCP stream with 1 MiB writes, MiB/s.
tcp_ceiling() {
	command -v iperf3 >/dev/null || return 0
	local port out
	port=$(free_port)
	# Not -1 (one client): the readiness probe of wait_port is a connection of its own.
	iperf3 -s -B 127.0.0.1 -p "$port" >"$TEST_DIR/iperf3-server-$1.log" 2>&1 &
	local spid=$!
	wait_port "127.0.0.1:$port" "$spid" || { say "iperf3 server did not start"; return 0; }
	if out=$(run_to $((BENCH_SECONDS + 30)) iperf3 -c 127.0.0.1 -p "$port" -l 1M -t "$BENCH_SECONDS" -J 2>&1); then
		python3 -c 'import json,sys; d=json.load(sys.stdin); print("tcp\ttcp-1m\t%s\t-\t%.1f\t-\t-\t-" % (sys.argv[1], d["end"]["sum_received"]["bits_per_second"] / 8 / 2**20))' \
			"$1" <<<"$out" >>"$SAMPLES"
		say "loopback TCP round $1: $(tail -n1 "$SAMPLES" | cut -f5) MiB/s"
	else
		say "iperf3 failed: $(tail -n 3 <<<"$out")"
	fi
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
}

declare -A BLOCKSIZE
STARTED=() # the peers that run; one whose program is missing is left out
start_peers() {
	local peer port out
	for peer in "${PEERS[@]}"; do
		port=$(free_port)
		case "$peer" in
		isthmus)
			start_target --listen "127.0.0.1:$port" --target "$IQN" --lun "$DISK" --lun null,size=1T \
				--log-level warn --threads 1
			URL[$peer]="iscsi://127.0.0.1:$port/$IQN/0" PID[$peer]=$TARGET_PID
			NULL_URL[$peer]="iscsi://127.0.0.1:$port/$IQN/1"
			;;
		isthmus-2loops)
			# A second isthmus-target beside the first, kept running like istgt below.
			local saved_pid2=$TARGET_PID saved_log2=${TARGET_LOG:-}
			TARGET_PID=""
			start_target --listen "127.0.0.1:$port" --target "$IQN" --lun "$DISK" --lun null,size=1T \
				--log-level warn --threads 2 --mgmt-socket "$TEST_DIR/mgmt-2loops.sock" --state-dir "$TEST_DIR/var-2loops"
			URL[$peer]="iscsi://127.0.0.1:$port/$IQN/0" PID[$peer]=$TARGET_PID
			NULL_URL[$peer]="iscsi://127.0.0.1:$port/$IQN/1"
			BG_PIDS+=("$TARGET_PID")
			TARGET_PID=$saved_pid2 TARGET_LOG=$saved_log2
			;;
		tgtd)
			command -v tgtd >/dev/null || { say "tgtd not installed (scripts/deps.sh bench): left out"; continue; }
			start_tgtd "$port"
			tgtd_adm --op new --mode target --tid 1 -T "$IQN"
			tgtd_adm --op new --mode logicalunit --tid 1 --lun 1 -b "$DISK"
			# tgt's null backing store (1 TiB, reads zeros, drops writes); the name is only a label.
			tgtd_adm --op new --mode logicalunit --tid 1 --lun 2 --bstype null --backing-store nullio
			tgtd_adm --op bind --mode target --tid 1 -I ALL
			URL[$peer]="iscsi://127.0.0.1:$port/$IQN/1" PID[$peer]=$TGTD_PID
			NULL_URL[$peer]="iscsi://127.0.0.1:$port/$IQN/2"
			;;
		istgt)
			command -v istgt >/dev/null || { say "istgt not installed (scripts/deps.sh bench): left out"; continue; }
			# lib.sh starts istgt as "the target"; it keeps running beside the others, stopped
			# at exit with the background processes.
			local saved_pid=$TARGET_PID saved_log=${TARGET_LOG:-}
			TARGET_PID=""
			TARGET_IMPL=istgt start_target --listen "127.0.0.1:$port" --target "$IQN" --lun "$DISK"
			URL[$peer]="iscsi://127.0.0.1:$port/$IQN/0" PID[$peer]=$TARGET_PID
			BG_PIDS+=("$TARGET_PID")
			TARGET_PID=$saved_pid TARGET_LOG=$saved_log
			;;
		*) fail "unknown peer $peer" ;;
		esac
		out=$(run_to 30 iscsi-readcapacity16 "${URL[$peer]}" 2>&1) || fail "$peer: READ CAPACITY failed: $out"
		BLOCKSIZE[$peer]=$(sed -nE 's/^LOGICAL BLOCK LENGTH IN BYTES:([0-9]+).*/\1/p' <<<"$out")
		[[ ${BLOCKSIZE[$peer]} =~ ^[1-9][0-9]*$ ]] || fail "$peer: no block size in READ CAPACITY's answer: $out"
		STARTED+=("$peer")
	done
}

say "backing file $DISK (1 GiB written in full, tmpfs); $BENCH_ROUNDS rounds of ${BENCH_SECONDS}s per load; $(nproc) CPUs"
for load in "${LOADS[@]}"; do
	load_bytes "$load" >/dev/null || fail "unknown load '$load' in BENCH_LOADS"
done
start_peers
PEERS=("${STARTED[@]}")
((${#PEERS[@]} > 0)) || fail "no target left to measure"
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
	for load in "${LOADS[@]}"; do
		# Rotate who goes first so no target always runs right after the same neighbour.
		n=${#PEERS[@]}
		for ((i = 0; i < n; i++)); do
			measure "${PEERS[$(((i + round) % n))]}" "$load" "$round"
		done
		[[ "$load" != seqread-1m ]] || tcp_ceiling "$round"
	done
done

python3 "$ROOT/bench/report.py" "$SAMPLES" "${PEERS[@]}"
