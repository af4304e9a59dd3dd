# shellcheck shell=bash
# Helpers for tests/interop/test_daemon_*.sh (sourced after lib.sh).
#   dmn_start [ARGS...]   start isthmus-initiator in the foreground with its state, socket,
#                         devices and NBD directories under TEST_DIR; waits until it answers
#   dmn_stop [SIGNAL]     stop it (bounded), unmount a FUSE mount it may have left
#   ism ARGS...           the CLI's daemon commands against that daemon (bounded)
#   sess_field SID EXPR   a jq expression over `session show SID --json`
#   wait_state SID STATE SECS
#   file_gateway NAME HOST:PORT ARGS...   an isthmus-target standing in for a gateway (FILE_GW_PID)
#   writer_stall WPID JSON SECS WHAT BOUND [T0 T0_NAME]   the result of a stall_writer.py load
#   since T0   seconds (2 decimals) from the `date +%s.%N` time T0 to now
# The daemon binary is $ISTHMUS_BIN/isthmus-initiator (ISTHMUS_INITIATOR_BIN overrides); the
# CLI is $ISTHMUS_BIN/isthmus when it has the daemon commands, else `isthmus-initiator ctl`.

DMN_BIN=${ISTHMUS_INITIATOR_BIN:-$ISTHMUS_BIN/isthmus-initiator}
[[ -x "$DMN_BIN" ]] || fail "no daemon binary at $DMN_BIN (build first, or set ISTHMUS_BIN)"
if [[ -x "$ISTHMUS_BIN/isthmus" ]] && "$ISTHMUS_BIN/isthmus" persistent list --socket /nonexistent 2>&1 | grep -q "cannot reach"; then
	DMN_CLI=("$ISTHMUS_BIN/isthmus")
else
	DMN_CLI=("$DMN_BIN" ctl)
fi
DMN_SOCK=$TEST_DIR/initiator.sock
DMN_STATE=$TEST_DIR/state
DMN_DEV=$TEST_DIR/devices
DMN_NBD=$TEST_DIR/nbd
DMN_CONF=$TEST_DIR/initiator.conf
DMN_LOG=$TEST_DIR/daemon.log
DMN_PID=""
export ISTHMUS_SOCKET=$DMN_SOCK
: >"$DMN_LOG"
[[ -f "$DMN_CONF" ]] || printf 'initiator-name = iqn.2026-11.org.isthmus:test-initiator\n' >"$DMN_CONF"

ism() { run_to "${ISM_TIMEOUT:-60}" "${DMN_CLI[@]}" "$@"; }

dmn_start() {
	[[ -z "$DMN_PID" ]] || fail "dmn_start: daemon already running"
	echo "### $(date +%T) start" >>"$DMN_LOG"
	"$DMN_BIN" --foreground --config "$DMN_CONF" --state-dir "$DMN_STATE" --socket "$DMN_SOCK" \
		--devices-dir "$DMN_DEV" --nbd-dir "$DMN_NBD" "$@" >>"$DMN_LOG" 2>&1 &
	DMN_PID=$!
	local deadline=$((SECONDS + 10))
	until ism persistent list >/dev/null 2>&1; do
		alive "$DMN_PID" || { DMN_PID=""; tail -5 "$DMN_LOG"; fail "isthmus-initiator exited at start"; }
		((SECONDS < deadline)) || fail "isthmus-initiator does not answer on $DMN_SOCK"
		sleep 0.1
	done
}

dmn_stop() {
	local sig=${1:-TERM} deadline
	[[ -n "$DMN_PID" ]] || return 0
	kill -s "$sig" "$DMN_PID" 2>/dev/null || true
	deadline=$((SECONDS + 15))
	while alive "$DMN_PID" && ((SECONDS < deadline)); do sleep 0.1; done
	if alive "$DMN_PID"; then
		say "daemon still running 15 s after SIG$sig; killing it"
		kill -KILL "$DMN_PID" 2>/dev/null || true
	fi
	wait "$DMN_PID" 2>/dev/null || true
	DMN_PID=""
	if mountpoint -q "$DMN_DEV" 2>/dev/null; then
		fusermount3 -u -z "$DMN_DEV" 2>/dev/null || umount -l "$DMN_DEV" 2>/dev/null || true
	fi
	if report=$(sanitizer_report "$DMN_LOG"); then
		fail "daemon reported a sanitizer error: $report"
	fi
}

# What runs after the daemon is stopped: ceph_lib.sh's cleanup when the test sourced it first
# (the gateways and then the cluster go after their client, the daemon), else lib.sh's.
DMN_EXIT_NEXT=lib_cleanup
if declare -F ceph_lib_cleanup >/dev/null; then
	DMN_EXIT_NEXT=ceph_lib_cleanup
fi

dmn_exit() {
	local rc=$?
	set +e
	if ((rc != 0)) && [[ -s "$DMN_LOG" ]]; then
		say "--- last 30 lines of the daemon log ($DMN_LOG) ---"
		tail -n 30 "$DMN_LOG" | sed 's/^/    /'
	fi
	dmn_stop TERM
	(exit "$rc")
	"$DMN_EXIT_NEXT"
}
trap dmn_exit EXIT

sess_json() { ism session show "$1" --json; }
sess_field() { sess_json "$1" | jq -r "$2"; }

# wait_state SID STATE SECS: poll until the session's state is STATE.
wait_state() {
	local sid=$1 want=$2 secs=$3 deadline st=""
	deadline=$((SECONDS + secs))
	while ((SECONDS < deadline)); do
		st=$(sess_field "$sid" .state 2>/dev/null || echo none)
		[[ "$st" == "$want" ]] && return 0
		sleep 0.2
	done
	say "session $sid: state $st, wanted $want after ${secs}s"
	return 1
}

# writer FILE NWRITES NBLOCKS [DELAY_MS]: overwrite 4 KiB blocks 0..NBLOCKS-1 round-robin, each
# write stamped with its sequence number (so a lost or reordered write leaves a wrong final
# version), fsync every 64 writes and at the end; writes the expected region's sha256 to $WRITER_SHA.
# Exit status: 0 done; 5 on EIO; 6 on another error.
writer() {
	python3 - "$@" <<'PY'
import errno, hashlib, os, sys, time
path, n, nb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
delay = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0
BS = 4096
final = [None] * nb
def block(i):
    return (b"seq %08d blk %06d " % (i, i % nb)).ljust(64, b".") * (BS // 64)
try:
    fd = os.open(path, os.O_WRONLY)
    for i in range(n):
        data = block(i)
        os.pwrite(fd, data, (i % nb) * BS)
        final[i % nb] = data
        if i % 64 == 63:
            os.fsync(fd)
        if delay:
            time.sleep(delay)
    os.fsync(fd)
    os.close(fd)
except OSError as e:
    print("writer: %s after %d writes" % (e, i), file=sys.stderr)
    sys.exit(5 if e.errno == errno.EIO else 6)
h = hashlib.sha256(b"".join(final)).hexdigest()
open(os.environ.get("WRITER_SHA", "/dev/null"), "w").write(h)
PY
}

# region_sha FILE NBLOCKS: sha256 of the first NBLOCKS 4 KiB blocks of FILE.
region_sha() { head -c $(($2 * 4096)) "$1" | sha256sum | cut -d' ' -f1; }

# since T0: seconds, 2 decimals, from T0 (a `date +%s.%N` time) to now.
since() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(date +%s.%N)"; }

# file_gateway NAME HOST:PORT ARGS...: isthmus-target listening on HOST:PORT with ARGS (its
# targets and LUNs), standing in for gateway NAME of a failover test; log $TEST_DIR/gwNAME.log
# (appended to: a gateway started again keeps one log), state $TEST_DIR/varNAME, mgmt socket
# $TEST_DIR/gwNAME.sock. Sets FILE_GW_PID.
file_gateway() {
	local name=$1 hp=$2 rc=0
	mkdir -p "$TEST_DIR/var$name"
	echo "### $(date +%T) start gateway $name" >>"$TEST_DIR/gw$name.log"
	bg_start "$ISTHMUS_BIN/isthmus-target" --listen "$hp" "${@:3}" \
		--mgmt-socket "$TEST_DIR/gw$name.sock" --state-dir "$TEST_DIR/var$name" >>"$TEST_DIR/gw$name.log" 2>&1
	FILE_GW_PID=$BG_LAST
	wait_port "$hp" "$FILE_GW_PID" || rc=$?
	((rc == 0)) || fail "gateway $name does not listen on $hp (see $TEST_DIR/gw$name.log)"
	say "gateway $name: pid $FILE_GW_PID on $hp"
}

# writer_stall WPID JSON SECS WHAT BOUND [T0 T0_NAME]: waits (SECS at most) for the
# stall_writer.py load WPID, which writes its result to JSON, and says how many writes it made
# and how long the longest waited (with T0, a `date +%s.%N` time: when that write began, from
# T0_NAME). The test fails if the load hangs or saw an error, or a write waited more than BOUND
# seconds ("": no bound); WHAT says when, for those messages ("after the kill"). Sets WRITES and
# STALL (seconds).
writer_stall() {
	local wpid=$1 json=$2 secs=$3 what=$4 bound=$5 t0=${6:-} t0_name=${7:-} rc=0 epoch started=""
	timeout "$secs" tail --pid="$wpid" -f /dev/null || fail "the writer hangs $what"
	wait "$wpid" || rc=$?
	((rc == 0)) || fail "the writer saw an error $what ($rc): $(cat "$json" 2>/dev/null)"
	read -r WRITES STALL epoch < <(jq -r '"\(.writes) \(.max_stall) \(.max_stall_epoch)"' "$json")
	if [[ -n "$t0" ]]; then
		started=$(python3 -c "import sys; print('%+.2f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$epoch" "$t0")
		started=" (started $started s from $t0_name)"
	fi
	say "measured: $WRITES writes $what, longest write $(printf %.3f "$STALL") s$started"
	[[ -z "$bound" ]] || python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$STALL" "$bound" ||
		fail "a write waited ${STALL}s $what, over ${bound}s"
}
