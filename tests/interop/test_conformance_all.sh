#!/usr/bin/env bash
# The whole of libiscsi's conformance suite (iscsi-test-cu --test=ALL, destructive tests on):
# SCSI block commands, persistent reservations, UNMAP/WRITE SAME, COMPARE AND WRITE, TMFs,
# the iSCSI tests, and (through a second session to the same LUN) the multipath tests,
# against a 64 MiB file LUN.  Passes only if every test that ran passed; it fails until the
# SCSI layer covers everything the suite checks.
# It runs twice: with the default store I/O engine (io_uring where the kernel allows it) on one
# event loop, then with --io-engine workers on four loops, so that both backends behind every
# medium access are checked, and the two sessions of the multipath tests meet on one loop and on
# different loops (the rest of the suite runs with the default, one loop per CPU); each run checks
# that the target logged the backend and the loops it was meant to use.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-test-cu

IQN=iqn.2026-11.org.isthmus:conformance
# conformance ENGINE THREADS : one whole run; ENGINE is an --io-engine value, or "" for the default
conformance() {
	local engine=$1 threads=$2 port hp url mark extra=(--threads "$2")
	[[ -n "$engine" ]] && extra+=(--io-engine "$engine")
	port=$(free_port)
	hp=127.0.0.1:$port
	mark=$(log_mark)
	rm -rf "$TEST_DIR/disk.img" "$TEST_DIR/var" # a fresh medium and no reservations kept from the first run
	start_target --listen "$hp" --target "$IQN" --lun "$TEST_DIR/disk.img,size=64M" "${extra[@]}"
	local line
	line=$(log_since "$mark" | grep -m1 'store I/O engine:' || true)
	[[ -n "$line" ]] || fail "the target did not log its store I/O engine"
	say "engine ${engine:-default}: ${line#*info: }"
	local loops
	loops=$("$ISTHMUS_BIN/isthmus" target --socket "$TEST_DIR/mgmt-$$.sock" --json stats | jq ".loops | length")
	[[ "$loops" == "$threads" ]] || fail "--threads $threads: stats lists $loops loop(s)"
	if [[ "$engine" == workers ]]; then
		grep -q 'store I/O engine: workers' <<<"$line" || fail "--io-engine workers did not run the workers: $line"
	fi
	url=$(lun_url "$hp" "$IQN" 0)
	CU_TIMEOUT=${CU_TIMEOUT:-280} run_test_cu ALL "$url" "$url"
	stop_target
}
conformance "" 1
conformance workers 4
say "PASS"
