#!/usr/bin/env bash
# RBD LUNs: isthmus-target against tgtd (its rbd backing store, tgt-rbd) serving the same image of
# a throw-away single-node Ceph cluster (tests/ceph/micro-ceph.sh, memstore OSD) on loopback,
# with fio's own rbd engine on the image as the ceiling (librbd straight from the client, no
# iSCSI in between). Not part of `make test`.
#
# Conventions of bench/run.sh: every peer runs for the whole benchmark and is measured load by
# load, round by round (BENCH_ROUNDS, at least 3); each figure is the median of its rounds with
# its spread; ratios are ratios of medians (bench/report.py, isthmus first).
#
# Loads (BENCH_SECONDS each, default 5):
#   randread-4k    4 KiB random reads, 32 in flight      (iscsi-perf -r; fio rw=randread)
#   randwrite-4k   4 KiB random writes, 32 in flight     (isthmus-perf --write -r; fio rw=randwrite)
#   seqread-128k   128 KiB sequential reads, 16 in flight  (iscsi-perf; fio rw=read)
#   seqwrite-128k  128 KiB sequential writes, 16 in flight (isthmus-perf --write; fio rw=write)
# CPU µs/IO is the target's CPU time per I/O; in fio's row it is the whole fio process's, its
# librbd and librados threads included (what librbd costs a client doing the same I/O without
# iSCSI; the connection and image opening, a fraction of a second, are in it too).
# The image (1 GiB) is written in full first, so reads reach the OSD's data.
#
# Environment: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_PEERS ("isthmus tgtd fio"),
#              BENCH_LOADS (the four above), ISTHMUS_BIN (build/).
#              BENCH_BASE_BIN=DIR adds the peer isthmus-base: DIR/isthmus-target (an earlier
#              build) on the same image, measured in the same interleaved rounds, so that a
#              change is compared under the same load as its baseline.
#              BENCH_PEER_CACHE=off runs tgtd and fio with librbd's cache off too (rbd cache =
#              false in their configuration), as the gateway runs it.
#              BENCH_CONF="opt = v; opt = v" adds Ceph client settings to every peer's
#              configuration (so that a setting is measured with the comparison kept equal);
#              BENCH_BASE_CONF="..." adds them to isthmus-base's alone: with BENCH_BASE_BIN=build
#              the same binary is measured with and without them in the same rounds.
#              BENCH_PROFILE=1 records the isthmus target with `perf record -g` (or with the
#              perf record options BENCH_PROFILE holds, e.g. "--call-graph dwarf -F 999") during each of
#              its loads ($TEST_DIR/perf-LOAD-ROUND.data; kept with KEEP_TMP=1); perf's own CPU
#              lands on the shared cores, so figures of a profiled run are not compared.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export TEST_NAME=bench-rbd TARGET_IMPL=isthmus
export ISTHMUS_BIN=${ISTHMUS_BIN:-$ROOT/build}
# shellcheck source=../tests/interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
# shellcheck source=../tests/interop/ceph_lib.sh
source "$ROOT/tests/interop/ceph_lib.sh"
need iscsi-perf iscsi-readcapacity16 rbd
[[ -x "$ISTHMUS_BIN/isthmus-perf" ]] || fail "no $ISTHMUS_BIN/isthmus-perf (make build)"

BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
((BENCH_ROUNDS >= 3)) || fail "BENCH_ROUNDS must be at least 3: a median of fewer says nothing"
read -r -a PEERS <<<"${BENCH_PEERS:-isthmus tgtd fio}"
[[ -z "${BENCH_BASE_BIN:-}" ]] || PEERS+=(isthmus-base)
read -r -a LOADS <<<"${BENCH_LOADS:-randread-4k randwrite-4k seqread-128k seqwrite-128k}"
IQN=iqn.2026-11.org.isthmus:bench-rbd
IMAGE=bench
CLK_TCK=$(getconf CLK_TCK)
SAMPLES=$TEST_DIR/samples.tsv # peer load round iops mibs cpu_us_per_io p50_us p99_us
: >"$SAMPLES"
declare -A URL PID BLOCKSIZE

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

load_bytes() {
	case "$1" in
	randread-4k | randwrite-4k) echo 4096 ;;
	seqread-128k | seqwrite-128k) echo 131072 ;;
	*) return 1 ;;
	esac
}

load_depth() {
	case "$1" in
	*-4k) echo 32 ;;
	*) echo 16 ;;
	esac
}

# load_cmd LOAD URL BLOCKSIZE : an initiator's command line for one load.
load_cmd() {
	local load=$1 url=$2 bs=$3 t=$BENCH_SECONDS perf=$ISTHMUS_BIN/isthmus-perf
	case "$load" in
	randread-4k) echo iscsi-perf -m 32 -b $((4096 / bs)) -r -t "$t" "$url" ;;
	randwrite-4k) echo "$perf" --write -r -m 32 -b $((4096 / bs)) -t "$t" "$url" ;;
	seqread-128k) echo iscsi-perf -m 16 -b $((131072 / bs)) -t "$t" "$url" ;;
	seqwrite-128k) echo "$perf" --write -m 16 -b $((131072 / bs)) -t "$t" "$url" ;;
	esac
}

fio_rw() {
	case "$1" in
	randread-4k) echo randread ;;
	randwrite-4k) echo randwrite ;;
	seqread-128k) echo read ;;
	seqwrite-128k) echo write ;;
	esac
}

record() { # PEER LOAD ROUND IOPS CPU_US_PER_IO
	printf '%s\t%s\t%s\t%s\t%s\t%s\t-\t-\n' "$1" "$2" "$3" "$4" \
		"$(awk -v i="$4" -v b="$(load_bytes "$2")" 'BEGIN{printf "%.1f", i * b / 1048576}')" "$5" >>"$SAMPLES"
	say "$1 $2 round $3: $(tail -n1 "$SAMPLES" | cut -f4-)"
}

measure_fio() {
	local load=$1 round=$2 log=$TEST_DIR/fio-$1-$2.json iops
	if ! CEPH_CONF=$PEER_CONF run_to $((BENCH_SECONDS * 4 + 60)) /usr/bin/time -f '%U %S' -o "$log.time" fio --name=rbd --ioengine=rbd --clientname=admin --pool=rbd \
		--rbdname="$IMAGE" --rw="$(fio_rw "$load")" --bs="$(load_bytes "$load")" --iodepth="$(load_depth "$load")" \
		--direct=1 --time_based --runtime="$BENCH_SECONDS" --output-format=json >"$log" 2>"$log.err"; then
		say "fio $load round $round: failed: $(tail -n 3 "$log.err" | tr '\n' ' ')"
		return 0
	fi
	# CPU: the whole fio process (librbd's and librados's threads too, as for the targets), not
	# fio's usr_cpu/sys_cpu, which count its job thread alone.
	read -r iops cpu < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
iops = j["read"]["iops"] + j["write"]["iops"]
ios = max(1, j["read"]["total_ios"] + j["write"]["total_ios"])
u, s = open(sys.argv[2]).read().split()[-2:]
print(int(iops), "%.2f" % ((float(u) + float(s)) * 1e6 / ios))' "$log" "$log.time")
	record fio "$load" "$round" "$iops" "$cpu"
}

measure() {
	local peer=$1 load=$2 round=$3
	[[ "$peer" != fio ]] || { measure_fio "$load" "$round"; return 0; }
	local url=${URL[$peer]} pid=${PID[$peer]} log=$TEST_DIR/$peer-$load-$round.log c0 c1 iops
	# shellcheck disable=SC2046
	set -- $(load_cmd "$load" "$url" "${BLOCKSIZE[$peer]}")
	local perf_pid=""
	if [[ -n "${BENCH_PROFILE:-}" && "$peer" == isthmus ]]; then
		local -a popt=(-g)
		[[ "$BENCH_PROFILE" == 1 ]] || read -r -a popt <<<"$BENCH_PROFILE"
		perf record "${popt[@]}" -o "$TEST_DIR/perf-$load-$round.data" -p "$pid" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
	fi
	c0=$(cpu_ticks "$pid")
	local ok=1
	run_to $((BENCH_SECONDS * 4 + 60)) "$@" >"$log" 2>&1 || ok=0
	c1=$(cpu_ticks "$pid")
	if [[ -n "$perf_pid" ]]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
	fi
	if ((!ok)); then
		say "$peer $load round $round: load failed: $(tr '\r' '\n' <"$log" | tail -n 3 | tr '\n' ' ')"
		return 0
	fi
	iops=$(tr '\r' '\n' <"$log" | sed -nE 's/.*iops average ([0-9]+).*/\1/p' | tail -n1)
	[[ -n "$iops" ]] || { say "$peer $load round $round: no result in $log"; return 0; }
	record "$peer" "$load" "$round" "$iops" \
		"$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" -v i="$iops" -v s="$BENCH_SECONDS" \
			'BEGIN{n = i * s; if (n < 1) n = 1; printf "%.2f", (b - a) * 1e6 / t / n}')"
}

# conf_plus OUT "opt = v; opt = v": CEPH_CONF with those settings added to its [client] section
# (the file's last), written to OUT.
conf_plus() {
	local out=$1 extra=$2 kv l
	cp "$PEER_CONF" "$out"
	IFS=';' read -r -a kv <<<"$extra"
	for l in "${kv[@]}"; do
		l=$(sed -E 's/^ +| +$//g' <<<"$l")
		[[ -z "$l" ]] || echo "$l" >>"$out"
	done
}

STARTED=()
start_peers() {
	local peer port out
	for peer in "${PEERS[@]}"; do
		case "$peer" in
		isthmus)
			port=$(free_port)
			start_target --listen "127.0.0.1:$port" --target "$IQN" --lun "rbd:rbd/$IMAGE,conf=$ISTHMUS_CONF" \
				--log-level warn
			URL[$peer]="iscsi://127.0.0.1:$port/$IQN/0" PID[$peer]=$TARGET_PID
			;;
		isthmus-base)
			[[ -x "$BENCH_BASE_BIN/isthmus-target" ]] || fail "no $BENCH_BASE_BIN/isthmus-target"
			port=$(free_port)
			"$BENCH_BASE_BIN/isthmus-target" --listen "127.0.0.1:$port" --target "$IQN" \
				--lun "rbd:rbd/$IMAGE,conf=$BASE_CONF" --log-level warn --mgmt-socket "$TEST_DIR/mgmt-base.sock" \
				--state-dir "$TEST_DIR/var-base" >>"$TEST_DIR/target-base.log" 2>&1 &
			PID[$peer]=$!
			BG_PIDS+=("$!")
			for _ in $(seq 100); do
				(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
				sleep 0.1
			done
			URL[$peer]="iscsi://127.0.0.1:$port/$IQN/0"
			;;
		tgtd)
			command -v tgtd >/dev/null || { say "tgtd not installed: left out"; continue; }
			[[ -e /usr/lib/tgt/backing-store/bs_rbd.so ]] || { say "tgt-rbd not installed: tgtd left out"; continue; }
			port=$(free_port)
			start_tgtd "$port"
			tgtd_adm --op new --mode target --tid 1 -T "$IQN"
			tgtd_adm --op new --mode logicalunit --tid 1 --lun 1 --bstype rbd --backing-store "rbd/$IMAGE" \
				--bsopts "conf=$PEER_CONF;id=admin"
			tgtd_adm --op bind --mode target --tid 1 -I ALL
			URL[$peer]="iscsi://127.0.0.1:$port/$IQN/1" PID[$peer]=$TGTD_PID
			;;
		fio)
			fio --enghelp 2>/dev/null | grep -qw rbd || { say "fio without its rbd engine: left out"; continue; }
			[[ -x /usr/bin/time ]] || { say "no /usr/bin/time (package time) to measure fio's CPU: left out"; continue; }
			STARTED+=(fio)
			continue
			;;
		*) fail "unknown peer $peer" ;;
		esac
		out=$(run_to 30 iscsi-readcapacity16 "${URL[$peer]}" 2>&1) || { say "$peer: READ CAPACITY failed: $out; left out"; continue; }
		BLOCKSIZE[$peer]=$(sed -nE 's/^LOGICAL BLOCK LENGTH IN BYTES:([0-9]+).*/\1/p' <<<"$out")
		[[ ${BLOCKSIZE[$peer]} =~ ^[1-9][0-9]*$ ]] || fail "$peer: no block size in READ CAPACITY's answer: $out"
		STARTED+=("$peer")
	done
}

for load in "${LOADS[@]}"; do
	load_bytes "$load" >/dev/null || fail "unknown load '$load' in BENCH_LOADS"
done
export MEMSTORE_BYTES=$((3 << 30))
ceph_start
ceph_image "$IMAGE" 1G
say "filling rbd/$IMAGE (1 GiB)"
rbd_cmd bench --io-type write --io-size 4M --io-threads 8 --io-total 1G --io-pattern seq "rbd/$IMAGE" >/dev/null
say "$BENCH_ROUNDS rounds of ${BENCH_SECONDS}s per load; $(nproc) CPUs"
PEER_CONF=$CEPH_CONF
if [[ "${BENCH_PEER_CACHE:-on}" == off ]]; then
	PEER_CONF=$TEST_DIR/peer-nocache.conf
	{ cat "$CEPH_CONF"; echo "rbd cache = false"; } >"$PEER_CONF" # lands in [client], the last section
	say "tgtd and fio run with librbd's cache off ($PEER_CONF)"
fi
if [[ -n "${BENCH_CONF:-}" ]]; then
	conf_plus "$TEST_DIR/all.conf" "$BENCH_CONF"
	PEER_CONF=$TEST_DIR/all.conf
	say "every peer runs with: $BENCH_CONF"
fi
# isthmus forces its own librbd settings over the file (rbd cache off); the file is the cluster's.
ISTHMUS_CONF=$CEPH_CONF
if [[ -n "${BENCH_CONF:-}" ]]; then
	(PEER_CONF=$CEPH_CONF conf_plus "$TEST_DIR/isthmus.conf" "$BENCH_CONF")
	ISTHMUS_CONF=$TEST_DIR/isthmus.conf
fi
BASE_CONF=$ISTHMUS_CONF
if [[ -n "${BENCH_BASE_CONF:-}" ]]; then
	(PEER_CONF=$ISTHMUS_CONF conf_plus "$TEST_DIR/base.conf" "$BENCH_BASE_CONF")
	BASE_CONF=$TEST_DIR/base.conf
	say "isthmus-base runs with: $BENCH_BASE_CONF"
fi
start_peers
PEERS=("${STARTED[@]}")
((${#PEERS[@]} > 0)) || fail "no peer left to measure"
# Other work on the machine bounds every peer's throughput: its load goes with the figures.
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
	say "round $round: load average $(cut -d' ' -f1-3 /proc/loadavg)"
	for load in "${LOADS[@]}"; do
		n=${#PEERS[@]}
		for ((i = 0; i < n; i++)); do
			measure "${PEERS[$(((i + round) % n))]}" "$load" "$round"
		done
	done
done

say "after the last round: load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/bench/report.py" "$SAMPLES" "${PEERS[@]}"
