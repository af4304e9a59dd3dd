#!/usr/bin/env bash
# Local devices of isthmus-initiator against QEMU serving the same LUN through libiscsi, in one run:
#   NBD:  fio's nbd engine on the daemon's NBD socket   vs  qemu-nbd iscsi://HOST:PORT/IQN/LUN
#   FUSE: fio (libaio, O_DIRECT) on the daemon's file   vs  qemu-storage-daemon, driver=iscsi with a
#         FUSE export of the same LUN
#   loop: fio (libaio, O_DIRECT) on the daemon's loop device (block_device) vs a loop device
#         (direct I/O) on qemu-storage-daemon's FUSE export; left out without root or loop devices
# Workloads: 4 KiB random read and 4 KiB random write, 32 in flight, SECONDS_PER_RUN each.
# Prints a table with the IOPS of both sides, the ratio isthmus/QEMU, and the CPU seconds that the
# serving process (isthmus-initiator, qemu-nbd, qemu-storage-daemon) and the target used during
# each run (so a saturated target shows: tgtd tops out near 1.1-1.3 CPUs here).
#
#   bench/devices.sh                      release binaries from build/ (or $ISTHMUS_BIN)
#   TARGETS="isthmus tgtd" bench/devices.sh   which targets serve the LUN (default: both, in turn)
#   SECONDS_PER_RUN=10 REPEAT=1 bench/devices.sh
#                                         each figure is the best of REPEAT runs; the two sides run
#                                         in turn, the order swapped every round
#   FUSE_ENGINE=psync bench/devices.sh    psync with 32 jobs instead of libaio + O_DIRECT on the
#                                         FUSE files (chosen by itself when O_DIRECT is refused)
#
# The LUN is a 1 GiB file in /dev/shm filled with random data. Not part of the test suite: it
# wants a quiet machine and takes about 3.5 minutes with both targets and REPEAT=1.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ISTHMUS_BIN=${ISTHMUS_BIN:-$REPO/build}
export TEST_NAME=devices_bench
export TMP_BASE=${TMP_BASE:-/dev/shm}

if ! "$REPO/scripts/deps.sh" --check >/dev/null 2>&1; then
	"$REPO/scripts/deps.sh" || { echo "devices.sh: scripts/deps.sh failed" >&2; exit 1; }
fi

# shellcheck source=../tests/interop/lib.sh
source "$REPO/tests/interop/lib.sh"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need fio jq qemu-nbd qemu-storage-daemon fusermount3
[[ -x "$ISTHMUS_BIN/isthmus-target" ]] ||
	fail "no $ISTHMUS_BIN/isthmus-target (meson setup build --buildtype=release && ninja -C build)"
fio --enghelp=nbd 2>/dev/null | grep -q uri || fail "this fio has no nbd engine"
# shellcheck source=../tests/interop/daemon_helpers.bash
source "$REPO/tests/interop/daemon_helpers.bash"

SECS=${SECONDS_PER_RUN:-10}
REPEAT=${REPEAT:-1}
read -r -a TARGETS <<<"${TARGETS:-isthmus tgtd}"
IQN=iqn.2026-01.org.isthmus:devbench
IMG=/dev/shm/isthmus-devbench.$$.img
QSD_PIDS=()
QLOOPS=()

bench_exit() {
	local rc=$? p
	set +e
	for p in "${QLOOPS[@]}"; do
		losetup -d "$p" 2>/dev/null
	done
	for p in "${QSD_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${QSD_PIDS[@]}"; do
		timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null
	done
	for p in "$TEST_DIR"/qsd-*.img; do
		[[ -e "$p" ]] && fusermount3 -u -z "$p" 2>/dev/null
	done
	rm -f "$IMG"
	(exit "$rc")
	dmn_exit
}
trap bench_exit EXIT

# Figures mean little on a busy machine: the load before and after goes with the table.
LOAD_BEFORE=$(uptime | sed 's/.*load/load/')
truncate -s 1G "$IMG"
# Real data in every block: reads then cost what they cost on a filled disk.
dd if=/dev/urandom of="$IMG" bs=1M count=1024 conv=notrunc status=none

dmn_start

# cpu_ticks PID: user + system clock ticks of a process (all threads) so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
TCK=$(getconf CLK_TCK)

# wait_for SECS CMD...: poll until CMD succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}
is_fuse_file() { [[ "$(stat -f -c %T "$1" 2>/dev/null)" == fuse* && $(stat -c %s "$1") -gt 0 ]]; }

# FUSE engine: libaio with O_DIRECT when both FUSE files accept O_DIRECT, else psync, 32 jobs.
fuse_engine_args() {
	if [[ "$FUSE_ENGINE" == libaio ]]; then
		echo "--ioengine=libaio --direct=1 --iodepth=32 --numjobs=1"
	else
		echo "--ioengine=psync --direct=0 --iodepth=1 --numjobs=32"
	fi
}

# run_fio SERVER_PID RW ARGS...: one fio run; prints "IOPS CPU TARGET-CPU" (CPU seconds of
# SERVER_PID and of the target, TGT_PID).
run_fio() {
	local pid=$1 rw=$2 out c0 c1 t0 t1 iops
	shift 2
	c0=$(cpu_ticks "$pid")
	t0=$(cpu_ticks "$TGT_PID")
	# JSON to a file: fio's nbd engine prints a line of its own on standard output.
	run_to $((SECS + 60)) fio --name=devbench --rw="$rw" --bs=4k --runtime="$SECS" --time_based \
		--randrepeat=0 --norandommap --group_reporting --output-format=json --output="$TEST_DIR/fio.json" \
		"$@" >"$TEST_DIR/fio.err" 2>&1 || {
		# a failed run counts as 0 (the table shows it); say why on standard error
		say "fio --rw=$rw $* failed: $(tail -n 5 "$TEST_DIR/fio.err" | tr '\n' ' ')" >&2
		echo "0 0 0"
		return 0
	}
	c1=$(cpu_ticks "$pid")
	t1=$(cpu_ticks "$TGT_PID")
	out=$(<"$TEST_DIR/fio.json")
	local dir=read
	[[ "$rw" == randwrite ]] && dir=write
	iops=$(jq -r ".jobs[0].$dir.iops | floor" <<<"$out")
	if [[ "$(jq -r ".jobs[0].error" <<<"$out")" != 0 ]]; then
		say "fio --rw=$rw $*: error $(jq -r ".jobs[0].error" <<<"$out")" >&2
		iops=0
	fi
	awk -v i="$iops" -v c=$((c1 - c0)) -v g=$((t1 - t0)) -v t="$TCK" 'BEGIN { printf "%d %.1f %.1f\n", i, c / t, g / t }'
}

# measure RW A-ARGS B-ARGS (servers a_pid, b_pid): REPEAT rounds of both sides, in turn; prints the
# best run of each, "IOPS CPU TARGET-CPU|IOPS CPU TARGET-CPU".
measure() {
	local rw=$1 a=$2 b=$3 i r best_a="0 0 0" best_b="0 0 0"
	for ((i = 0; i < REPEAT; i++)); do
		local order=(a b)
		((i % 2 == 1)) && order=(b a)
		for side in "${order[@]}"; do
			if [[ $side == a ]]; then
				# shellcheck disable=SC2086
				r=$(run_fio $a_pid "$rw" $a)
				((${r%% *} > ${best_a%% *})) && best_a=$r
			else
				# shellcheck disable=SC2086
				r=$(run_fio $b_pid "$rw" $b)
				((${r%% *} > ${best_b%% *})) && best_b=$r
			fi
		done
	done
	echo "$best_a|$best_b"
}

FUSE_ENGINE=${FUSE_ENGINE:-libaio}
declare -a ROWS=()
TGT_N=0
for target in "${TARGETS[@]}"; do
	TGT_N=$((TGT_N + 1))
	PORT=$(free_port)
	HP=127.0.0.1:$PORT
	case "$target" in
	isthmus)
		start_target --listen "$HP" --target "$IQN" --lun "$IMG" --log-level warn \
			--mgmt-socket "$TEST_DIR/mgmt.sock"
		LUN=0
		TGT_PID=$TARGET_PID
		;;
	tgtd)
		command -v tgtd >/dev/null || { note "no tgtd: skipped"; continue; }
		start_tgtd "$PORT"
		tgtd_adm --op new --mode target --tid 1 -T "$IQN"
		tgtd_add_lun 1 1 "$IMG"
		tgtd_adm --op bind --mode target --tid 1 -I ALL
		LUN=1 # tgtd keeps LUN 0 for its controller
		TGT_PID=$TGTD_PID
		;;
	*) fail "unknown target $target (isthmus or tgtd)" ;;
	esac

	SID=$(ism login "$IQN" --portal "$HP" --type data | tail -n1) || fail "isthmus login to $target"
	DEV=$(sess_field "$SID" ".devices[] | select(.lun == $LUN) | .local_path")
	NBD=$(sess_field "$SID" ".devices[] | select(.lun == $LUN) | .nbd_socket")
	[[ -f "$DEV" && -S "$NBD" ]] || fail "no devices for LUN $LUN of session $SID: '$DEV' '$NBD'"

	QNBD=$TEST_DIR/qemu-nbd-$TGT_N.sock
	qemu-nbd --persistent --shared=8 --format=raw --cache=none --socket="$QNBD" \
		"iscsi://$HP/$IQN/$LUN" >"$TEST_DIR/qemu-nbd-$TGT_N.log" 2>&1 &
	QNBD_PID=$!
	QSD_PIDS+=("$QNBD_PID")
	wait_for 15 test -S "$QNBD" || fail "qemu-nbd does not serve $QNBD: $(tail -n 3 "$TEST_DIR/qemu-nbd-$TGT_N.log")"

	QFILE=$TEST_DIR/qsd-$TGT_N.img
	: >"$QFILE"
	qemu-storage-daemon \
		--blockdev "driver=iscsi,node-name=lun,transport=tcp,portal=$HP,target=$IQN,lun=$LUN,initiator-name=$IQN-qsd" \
		--export "type=fuse,id=fuse0,node-name=lun,mountpoint=$QFILE,writable=on" \
		>"$TEST_DIR/qsd-$TGT_N.log" 2>&1 &
	QSD_PID=$!
	QSD_PIDS+=("$QSD_PID")
	wait_for 15 is_fuse_file "$QFILE" || fail "qemu-storage-daemon does not export $QFILE: $(tail -n 3 "$TEST_DIR/qsd-$TGT_N.log")"

	if [[ "$FUSE_ENGINE" == libaio ]] && ! { dd if="$DEV" of=/dev/null bs=4k count=1 iflag=direct status=none &&
		dd if="$QFILE" of=/dev/null bs=4k count=1 iflag=direct status=none; } 2>/dev/null; then
		note "O_DIRECT refused on a FUSE file: psync with 32 jobs on both"
		FUSE_ENGINE=psync
	fi
	# loop devices: the daemon's own (attached in the background after login), one on QEMU's file
	ILOOP="" QLOOP=""
	if [[ -e /dev/loop-control && $(id -u) == 0 ]]; then
		wait_for 15 test -n "$(sess_field "$SID" ".devices[] | select(.lun == $LUN) | .block_device // empty")" || true
		ILOOP=$(sess_field "$SID" ".devices[] | select(.lun == $LUN) | .block_device // empty")
		if [[ -n "$ILOOP" ]] && QLOOP=$(losetup --direct-io=on --sector-size 512 -f --show "$QFILE" 2>"$TEST_DIR/losetup.err"); then
			QLOOPS+=("$QLOOP")
		else
			note "no loop rows: daemon device '$ILOOP', QEMU side: $(cat "$TEST_DIR/losetup.err" 2>/dev/null)"
			ILOOP="" QLOOP=""
		fi
	fi
	say "target $target ($HP): isthmus $DEV, $NBD and ${ILOOP:-no loop device}, qemu-nbd $QNBD, qemu-storage-daemon $QFILE${QLOOP:+ and $QLOOP}"

	for rw in randread randwrite; do
		a_pid=$DMN_PID b_pid=$QNBD_PID
		r=$(measure "$rw" "--ioengine=nbd --iodepth=32 --uri=nbd+unix:///?socket=$NBD" \
			"--ioengine=nbd --iodepth=32 --uri=nbd+unix:///?socket=$QNBD")
		ROWS+=("$target|nbd|$rw|${r%%|*}|${r##*|}")
		say "$target nbd $rw: isthmus ${r%%|*}, qemu-nbd ${r##*|} (IOPS, CPU s, target CPU s)"
		a_pid=$DMN_PID b_pid=$QSD_PID
		r=$(measure "$rw" "$(fuse_engine_args) --filename=$DEV" "$(fuse_engine_args) --filename=$QFILE")
		ROWS+=("$target|fuse|$rw|${r%%|*}|${r##*|}")
		say "$target fuse $rw: isthmus ${r%%|*}, qemu-storage-daemon ${r##*|} (IOPS, CPU s, target CPU s)"
		if [[ -n "$QLOOP" ]]; then
			r=$(measure "$rw" "--ioengine=libaio --direct=1 --iodepth=32 --filename=$ILOOP" \
				"--ioengine=libaio --direct=1 --iodepth=32 --filename=$QLOOP")
			ROWS+=("$target|loop|$rw|${r%%|*}|${r##*|}")
			say "$target loop $rw: isthmus ${r%%|*}, qemu-storage-daemon ${r##*|} (IOPS, CPU s, target CPU s)"
		fi
	done

	if [[ -n "$QLOOP" ]]; then
		losetup -d "$QLOOP" || true
		QLOOPS=()
	fi
	ism logout "$SID" >/dev/null || fail "logout from $target"
	kill -TERM "$QNBD_PID" "$QSD_PID" 2>/dev/null || true
	timeout 10 tail --pid="$QSD_PID" -f /dev/null || true
	timeout 10 tail --pid="$QNBD_PID" -f /dev/null || true
	case "$target" in
	isthmus) stop_target ;;
	tgtd) tgtd_shutdown "$TGTD_PID" "$TGTD_CTL" ;;
	esac
done

echo
echo "isthmus-initiator devices vs QEMU (libiscsi), 4 KiB, 32 in flight, $SECS s per run, best of $REPEAT," \
	"$(nproc) CPUs; FUSE engine $FUSE_ENGINE"
echo "CPU: seconds of CPU used during the run by the serving process (isthmus-initiator; qemu-nbd or"
echo "qemu-storage-daemon) and by the target (tgt)"
echo "before the runs: $LOAD_BEFORE"
echo "after the runs:  $(uptime | sed 's/.*load/load/')"
printf '%-8s %-5s %-10s %9s %5s %5s %9s %5s %5s %6s\n' target dev workload isthmus CPU tgt QEMU CPU tgt ratio
for row in "${ROWS[@]}"; do
	IFS='|' read -r t dv w a b <<<"$row"
	read -r ai ac at <<<"$a"
	read -r bi bc bt <<<"$b"
	ratio=$(awk -v a="$ai" -v b="$bi" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
	printf '%-8s %-5s %-10s %9s %5s %5s %9s %5s %5s %6s\n' "$t" "$dv" "$w" "$ai" "$ac" "$at" "$bi" "$bc" "$bt" "$ratio"
done
