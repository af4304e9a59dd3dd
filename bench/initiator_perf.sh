#!/usr/bin/env bash
# Initiator throughput: libiscsi's iscsi-perf against isthmus-perf (libisthmus), both against
# isthmus-target and tgtd exporting the same 1 GiB backing file in /dev/shm, in one run.
#
#   bench/initiator_perf.sh                 release binaries from build/ (or $ISTHMUS_BIN)
#   SECONDS_PER_RUN=5 bench/initiator_perf.sh
#   REPEAT=3 bench/initiator_perf.sh        each figure is the best of REPEAT runs (default 3; the
#                                           two tools run in turn, so load from elsewhere hits both)
#
# Workloads: 4 KiB random read at depth 32 (-m 32 -b 8 -r) and 128 KiB sequential read at
# depth 16 (-m 16 -b 256). Prints a table with both tools and the ratio isthmus-perf/iscsi-perf.
# Not part of the test suite: it needs a quiet machine and takes about 9 minutes (REPEAT=3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ISTHMUS_BIN=${ISTHMUS_BIN:-$REPO/build}
export TEST_NAME=initiator_perf
# shellcheck source=../tests/interop/lib.sh
source "$REPO/tests/interop/lib.sh"

need iscsi-perf tgtd tgtadm
PERF_BIN=$ISTHMUS_BIN/isthmus-perf
[[ -x "$ISTHMUS_BIN/isthmus-target" ]] || fail "no $ISTHMUS_BIN/isthmus-target (meson setup build --buildtype=release && ninja -C build)"
[[ -x "$PERF_BIN" ]] || fail "no $PERF_BIN (build it, or set ISTHMUS_BIN)"

SECS=${SECONDS_PER_RUN:-10}
REPEAT=${REPEAT:-3}
IQN=iqn.2026-01.org.isthmus:bench
INI=iqn.2026-01.org.isthmus:bench-initiator
IMG=/dev/shm/isthmus-initiator-perf.$$.img

bench_cleanup() {
	local rc=$?
	rm -f "$IMG"
	(exit "$rc")
	lib_cleanup
}
trap bench_cleanup EXIT

truncate -s 1G "$IMG"
# Real data in every block: reads then cost what they cost on a filled disk.
dd if=/dev/urandom of="$IMG" bs=1M count=1024 conv=notrunc status=none

ISM_PORT=$(free_port)
start_target --listen "127.0.0.1:$ISM_PORT" --target "$IQN" --lun "$IMG" --log-level warn \
	--mgmt-socket "$TEST_DIR/mgmt.sock"

TGT_PORT=$(free_port)
start_tgtd "$TGT_PORT"
tgtd_adm --op new --mode target --tid 1 -T "$IQN"
tgtd_add_lun 1 1 "$IMG"
tgtd_adm --op bind --mode target --tid 1 -I ALL

# tgtd keeps LUN 0 for its controller: the disk is LUN 1 there.
declare -A URL=(
	[isthmus-target]="iscsi://127.0.0.1:$ISM_PORT/$IQN/0"
	[tgtd]="iscsi://127.0.0.1:$TGT_PORT/$IQN/1"
)
declare -A WORK=(
	["4k-randread-qd32"]="-m 32 -b 8 -r"
	["128k-seqread-qd16"]="-m 16 -b 256"
)

# run_one TOOL URL ARGS... : print the IOPS of the final "iops average N (M MB/s)" line.
run_one() {
	local tool=$1 url=$2 out
	shift 2
	out=$(run_to $((SECS + 60)) "$tool" -i "$INI" "$@" -t "$SECS" "$url" 2>&1 | tr '\r' '\n') ||
		fail "$tool $* $url failed: $(tail -n 3 <<<"$out")"
	sed -nE 's/^iops average ([0-9]+) \(([0-9]+) MB\/s\).*/\1 \2/p' <<<"$out" | tail -n 1
}

# measure URL ARGS... : REPEAT rounds of both tools, in turn (the order swapped every round, so
# other load on the machine falls on both alike); prints the best "IOPS MB/s" of each tool.
measure() {
	local url=$1 i r best_a="0 0" best_b="0 0"
	shift
	for ((i = 0; i < REPEAT; i++)); do
		if ((i % 2 == 0)); then
			r=$(run_one iscsi-perf "$url" "$@")
			[[ -n "$r" ]] && ((${r%% *} > ${best_a%% *})) && best_a=$r
			r=$(run_one "$PERF_BIN" "$url" "$@")
			[[ -n "$r" ]] && ((${r%% *} > ${best_b%% *})) && best_b=$r
		else
			r=$(run_one "$PERF_BIN" "$url" "$@")
			[[ -n "$r" ]] && ((${r%% *} > ${best_b%% *})) && best_b=$r
			r=$(run_one iscsi-perf "$url" "$@")
			[[ -n "$r" ]] && ((${r%% *} > ${best_a%% *})) && best_a=$r
		fi
	done
	[[ "$best_a" != "0 0" && "$best_b" != "0 0" ]] || fail "no 'iops average' line (URL $url, $*)"
	echo "$best_a|$best_b"
}

declare -a ROWS=()
for target in isthmus-target tgtd; do
	for work in "4k-randread-qd32" "128k-seqread-qd16"; do
		# shellcheck disable=SC2086
		ab=$(measure "${URL[$target]}" ${WORK[$work]})
		a=${ab%%|*}
		b=${ab##*|}
		ratio=$(awk -v a="${a%% *}" -v b="${b%% *}" 'BEGIN { printf "%.2f", a ? b / a : 0 }')
		ROWS+=("$target|$work|${a%% *}|${a##* }|${b%% *}|${b##* }|$ratio")
		say "$target $work: iscsi-perf ${a%% *} IOPS, isthmus-perf ${b%% *} IOPS (x$ratio)"
	done
done

echo
echo "initiator throughput, $SECS s per run, best of $REPEAT, $(nproc) CPUs, backing file in /dev/shm"
printf '%-15s %-18s %12s %9s %14s %9s %7s\n' target workload "iscsi-perf" "MB/s" "isthmus-perf" "MB/s" ratio
for row in "${ROWS[@]}"; do
	IFS='|' read -r t w ai am bi bm r <<<"$row"
	printf '%-15s %-18s %12s %9s %14s %9s %7s\n' "$t" "$w" "$ai" "$am" "$bi" "$bm" "$r"
done
