#!/usr/bin/env bash
# sessions.sh N CMD... : runs N copies of an iscsi-perf command line at once (each its own
# session) and prints "iops average SUM", the line bench/run.sh reads, summed over the copies.
set -euo pipefail
n=$1
shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pids=()
for ((i = 0; i < n; i++)); do
	"$@" >"$dir/$i.log" 2>&1 &
	pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
	wait "$p" || rc=1
done
sum=0
for ((i = 0; i < n; i++)); do
	v=$(tr '\r' '\n' <"$dir/$i.log" | sed -nE 's/.*iops average ([0-9]+).*/\1/p' | tail -n1)
	[[ -n "$v" ]] || { echo "session $i gave no result: $(tail -n 3 "$dir/$i.log" | tr '\n' ' ')"; exit 1; }
	sum=$((sum + v))
done
echo "iops average $sum"
exit "$rc"
