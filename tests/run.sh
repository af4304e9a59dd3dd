#!/usr/bin/env bash
# The whole test suite: unit tests (ASan + UBSan build), short fuzz runs, and interop tests
# against real peers.  One line per test, then exactly one line "N passed, N failed, N skipped".
#   tests/run.sh              everything
#   tests/run.sh unit|fuzz|interop   (unit includes the ThreadSanitizer runs, tsan/NAME)
#   tests/run.sh NAME         only tests whose name contains NAME
# Environment:
#   FUZZ_SECONDS_SHORT  seconds per fuzz target (default 20)
#   TSAN_REPEAT         runs of each ThreadSanitizer test (default 3)
#   INTEROP_TIMEOUT     seconds per interop script (default 300)
#   TARGET_IMPL         isthmus (default) or tgtd: which target the interop scripts start
#   KEEP_TMP=1          keep every interop test's temp dir (failed ones are always kept)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FILTER=${1:-}
LOGDIR=$ROOT/tests/tmp/logs
FUZZ_SECONDS_SHORT=${FUZZ_SECONDS_SHORT:-20}
INTEROP_TIMEOUT=${INTEROP_TIMEOUT:-300}
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"

passed=0
failed=0
skipped=0
failures=()

# record NAME STATUS LOG [REASON] : STATUS 0 = pass, 77 = skip, anything else = fail.
record() {
	local name=$1 rc=$2 log=$3 reason=${4:-}
	if ((rc == 0)); then
		passed=$((passed + 1))
		echo "PASS $name"
	elif ((rc == 77)); then
		skipped=$((skipped + 1))
		if [[ -z "$reason" ]]; then
			reason=$(grep -m1 -oE 'SKIP:? .*' "$log" 2>/dev/null | sed -E 's/^SKIP:? //' | head -c 200)
		fi
		echo "SKIP $name (${reason:-no reason given})"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "FAIL $name (exit $rc; log $log)"
		tail -n 30 "$log" 2>/dev/null | sed 's/^/    /'
	fi
}

# kind_on KIND : does the filter leave any test of this kind?
kind_on() {
	case "$FILTER" in
	"" | "$1") return 0 ;;
	unit | fuzz | interop) return 1 ;;
	*) return 0 ;;
	esac
}
# wanted KIND NAME : does the filter select this test?
wanted() {
	[[ -z "$FILTER" || "$FILTER" == "$1" || "$2" == *"$FILTER"* ]]
}

finish() {
	if ((${#failures[@]})); then
		echo "failed: ${failures[*]}"
	fi
	echo "$passed passed, $failed failed, $skipped skipped"
	((failed == 0))
	exit $?
}

if ! scripts/deps.sh >"$LOGDIR/deps.log" 2>&1; then
	record deps 1 "$LOGDIR/deps.log"
	finish
fi

# build DIR CC -Dopt=value... [-- TARGET...] : configure once (an existing directory gets its
# options corrected with meson configure), then build everything or only the given ninja
# targets; logs to LOGDIR/build-DIR.log
build() {
	local dir=$1 cc=$2 log=$LOGDIR/build-$1.log
	shift 2
	local opts=() targets=()
	while (($#)) && [[ "$1" != -- ]]; do
		opts+=("$1")
		shift
	done
	(($#)) && shift && targets=("$@")
	: >"$log"
	if [[ ! -f "$dir/build.ninja" ]]; then
		echo "+ CC=$cc meson setup $dir ${opts[*]}" >>"$log"
		CC=$cc meson setup "$dir" "${opts[@]}" >>"$log" 2>&1 || return 1
	elif ! options_match "$dir" "${opts[@]}"; then
		echo "+ meson configure $dir ${opts[*]}" >>"$log"
		meson configure "$dir" "${opts[@]}" >>"$log" 2>&1 || return 1
	fi
	echo "+ ninja -C $dir ${targets[*]}" >>"$log"
	ninja -C "$dir" "${targets[@]}" >>"$log" 2>&1
}

# options_match DIR -Dopt=value... : does the configured build directory have these values?
options_match() {
	local dir=$1
	shift
	meson introspect "$dir" --buildoptions 2>/dev/null | python3 -c '
import json, sys
have = {o["name"]: o["value"] for o in json.load(sys.stdin)}
for arg in sys.argv[1:]:
    k, v = arg[2:].split("=", 1)
    cur = have.get(k)
    if isinstance(cur, bool):
        cur = "true" if cur else "false"
    elif isinstance(cur, list):
        cur = ",".join(cur)
    if str(cur) != v:
        sys.exit(1)
' "$@"
}

# Release build (make run, benchmarks) and the sanitizer build the tests run.
if ! build build gcc -Dbuildtype=release; then
	record build-release 1 "$LOGDIR/build-build.log"
	finish
fi
asan_args=(-Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false)
if [[ -f fuzz/meson.build ]]; then
	asan_args+=(-Dfuzz=true)
fi
if ! build build-asan clang "${asan_args[@]}"; then
	record build-asan 1 "$LOGDIR/build-build-asan.log"
	finish
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# meson_results DIR PREFIX : one line per test of DIR's last meson test run, NAME<TAB>RESULT<TAB>LOG,
# the test's output saved as LOGDIR/PREFIX-NAME.log; a test run several times (--repeat) is one
# line, failed if any run failed.
meson_results() {
	python3 - "$1/meson-logs/testlog.json" "$LOGDIR" "$2" <<-'PY'
	import json, os, sys
	try:
	    lines = open(sys.argv[1]).read().splitlines()
	except OSError:
	    sys.exit(0)
	order, results, logs = [], {}, {}
	for line in lines:
	    if not line.strip():
	        continue
	    d = json.loads(line)
	    name = d["name"]
	    if name not in results:
	        order.append(name)
	        results[name] = d["result"]
	        logs[name] = ""
	    elif d["result"] not in ("OK", "EXPECTEDFAIL", "SKIP"):
	        results[name] = d["result"]
	    logs[name] += (d.get("stdout") or "") + (d.get("stderr") or "")
	for name in order:
	    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
	    path = os.path.join(sys.argv[2], sys.argv[3] + "-" + safe + ".log")
	    with open(path, "w") as f:
	        f.write(logs[name])
	    print("%s\t%s\t%s" % (name, results[name], path))
	PY
}

# --- unit tests: every meson test is one result --------------------------------------------
if kind_on unit; then
	mapfile -t all_unit < <(meson test -C build-asan --list --no-rebuild 2>/dev/null | sed -E 's/^.* \/ //' | grep -v '^$')
	sel=()
	for t in "${all_unit[@]}"; do
		wanted unit "$t" && sel+=("$t")
	done
	if ((${#sel[@]})); then
		ulog=$LOGDIR/unit.log
		rm -f build-asan/meson-logs/testlog.json
		if [[ -z "$FILTER" || "$FILTER" == unit ]]; then
			meson test -C build-asan --no-rebuild --print-errorlogs >"$ulog" 2>&1
		else
			meson test -C build-asan --no-rebuild --print-errorlogs "${sel[@]}" >"$ulog" 2>&1
		fi
		mrc=$?
		mapfile -t results < <(meson_results build-asan unit)
		if ((${#results[@]} == 0)); then
			record unit 1 "$ulog"
		fi
		unit_failed=0
		for r in "${results[@]}"; do
			IFS=$'\t' read -r name result tlog <<<"$r"
			case "$result" in
			OK | EXPECTEDFAIL) rc=0 ;;
			SKIP) rc=77 ;;
			*) rc=1 unit_failed=1 ;;
			esac
			record "unit/$name" "$rc" "$tlog" "meson reported SKIP"
		done
		# meson failed without any failing test (e.g. a harness error): count that too.
		if ((mrc != 0 && unit_failed == 0 && ${#results[@]} > 0)); then
			record unit-harness 1 "$ulog"
		fi
	fi
fi

# --- ThreadSanitizer: the unit tests whose code runs on several threads ----------------------
# A third build, build-tsan (clang, -Db_sanitize=thread), holds only these tests' executables.
# Each test runs TSAN_REPEAT times (a race shows only in an interleaving that happens) and is
# one result, tsan/NAME; any ThreadSanitizer report fails it.
TSAN_REPEAT=${TSAN_REPEAT:-3}
declare -A tsan_exe=(
	[scsi_offload]=tests/unit/scsi/test_scsi_offload # the worker pool of src/store/offload.c
	[scsi_offload_concurrent]=tests/unit/scsi/test_scsi_offload_concurrent # the same, reaped while busy
	[scsi_longop]=tests/unit/scsi/test_scsi_longop # long medium operations stepping on workers
	[scsi_pr_persist]=tests/unit/scsi/test_scsi_pr_persist # reservation journal writes on workers
	[scsi_lu_threads]=tests/unit/scsi/test_scsi_lu_threads # one LU shared by nexuses of several threads
	[scsi_lu_state_threads]=tests/unit/scsi/test_scsi_lu_state_threads # a gateway group's LU handing commands between threads
	[scsi_pr_persist_threads]=tests/unit/scsi/test_scsi_pr_persist_threads # the APTPL journal written for commands of two loops
	[target_shard]=tests/unit/target/test_target_shard # the target's shards: mailbox, pause and resume
	[store_engine_post]=tests/unit/store/test_store_engine_post # completions posted to an engine from other threads
)
if kind_on unit; then
	tsan_sel=()
	for t in "${!tsan_exe[@]}"; do
		wanted unit "tsan/$t" && tsan_sel+=("$t")
	done
	if ((${#tsan_sel[@]})); then
		targets=()
		for t in "${tsan_sel[@]}"; do
			targets+=("${tsan_exe[$t]}")
		done
		if ! build build-tsan clang -Dbuildtype=debug -Db_sanitize=thread -Db_lundef=false -- "${targets[@]}"; then
			record build-tsan 1 "$LOGDIR/build-build-tsan.log"
		else
			tlog=$LOGDIR/tsan.log
			rm -f build-tsan/meson-logs/testlog.json
			TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 meson test -C build-tsan --no-rebuild \
				--print-errorlogs --repeat "$TSAN_REPEAT" "${tsan_sel[@]}" >"$tlog" 2>&1
			mapfile -t results < <(meson_results build-tsan tsan)
			((${#results[@]})) || record tsan 1 "$tlog"
			for r in "${results[@]}"; do
				IFS=$'\t' read -r name result rlog <<<"$r"
				rc=1
				[[ "$result" == OK ]] && ! grep -q 'WARNING: ThreadSanitizer' "$rlog" && rc=0
				record "tsan/$name" "$rc" "$rlog"
			done
		fi
	fi
fi

# --- short fuzz runs: every libFuzzer target for a bounded time -----------------------------
if kind_on fuzz; then
	while IFS= read -r f; do
		name=$(basename "$f")
		wanted fuzz "$name" || continue
		log=$LOGDIR/fuzz-$name.log
		work=$ROOT/tests/tmp/fuzz/$name
		rm -rf "$work"
		mkdir -p "$work/corpus" "$work/artifacts"
		seeds=()
		[[ -d fuzz/corpus/$name ]] && seeds=("$ROOT/fuzz/corpus/$name")
		dict=()
		[[ -f fuzz/$name.dict ]] && dict=(-dict="$ROOT/fuzz/$name.dict")
		# New inputs go to the scratch corpus; the checked-in seeds are only read. libFuzzer's
		# own exit code for a finding is 77, which would read as a skip here.
		timeout -k 10 $((FUZZ_SECONDS_SHORT + 120)) "$f" -max_total_time="$FUZZ_SECONDS_SHORT" "${dict[@]}" \
			-error_exitcode=1 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" "$work/corpus" \
			"${seeds[@]}" >"$log" 2>&1
		record "fuzz/$name" $? "$log"
	done < <(find build-asan -type f -name 'fuzz_*' -perm -u+x 2>/dev/null | sort)
fi

# --- interop tests: real peers over real sockets, each script one result ---------------------
if kind_on interop; then
	export ISTHMUS_BIN=$ROOT/build-asan
	for t in tests/interop/test_*.sh; do
		[[ -e "$t" ]] || continue
		name=$(basename "$t" .sh)
		wanted interop "$name" || continue
		log=$LOGDIR/$name.log
		timeout -k 10 "$INTEROP_TIMEOUT" bash "$t" </dev/null >"$log" 2>&1
		rc=$?
		if ((rc == 124 || rc == 137)); then
			echo "(timed out after ${INTEROP_TIMEOUT}s)" >>"$log"
		fi
		record "interop/$name" "$rc" "$log"
	done
	# The initiator's tests once more against foreign targets: tgtd and istgt stand in for
	# isthmus-target through lib.sh (TARGET_IMPL), so the library meets other implementations.
	if [[ -z "${TARGET_IMPL:-}" || "$TARGET_IMPL" == isthmus ]]; then
		for peer in tgtd istgt; do
			for t in tests/interop/test_initiator_{tools,data,chap}.sh; do
				name=$(basename "$t" .sh)@$peer
				wanted interop "$name" || continue
				log=$LOGDIR/$name.log
				TARGET_IMPL=$peer timeout -k 10 "$INTEROP_TIMEOUT" bash "$t" </dev/null >"$log" 2>&1
				record "interop/$name" $? "$log"
			done
		done
	fi
fi
finish
