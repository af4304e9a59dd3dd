#!/usr/bin/env bash
# libiscsi's conformance suite with what test_conformance_all.sh leaves out: SANITIZE tests
# allowed (--allow-sanitize), a memory LUN next to the file LUN, and the multipath tests
# through two portals (two ports) of the same portal group rather than one URL twice:
#   LUN 0  64 MiB thin file the target creates
#   LUN 1  64 MiB memory LUN (the one that offers WRITE ATOMIC (16))
# Passes when CUnit reports no failed test and MultipathIO ran. docs/conformance.md lists the
# tests libiscsi still skips, and why.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-test-cu

IQN=iqn.2026-11.org.isthmus:conformance
P1=$(free_port)
P2=$(free_port)

start_target --listen "127.0.0.1:$P1" --listen "127.0.0.1:$P2" --target "$IQN" \
	--lun "$TEST_DIR/d0.img,size=64M" \
	--lun "memory,size=64M"

for lun in 0 1; do
	out=$TEST_DIR/lun$lun.out
	rc=0
	run_to 600 iscsi-test-cu --dataloss --allow-sanitize --test=ALL \
		-i iqn.2026-11.org.isthmus:test-a -I iqn.2026-11.org.isthmus:test-b \
		"$(lun_url "127.0.0.1:$P1" "$IQN" "$lun")" "$(lun_url "127.0.0.1:$P2" "$IQN" "$lun")" \
		>"$out" 2>&1 || rc=$?
	summary=$(grep -E '^ +tests +[0-9]+' "$out" || true)
	[[ -n "$summary" ]] || fail "LUN $lun: no CUnit summary (exit $rc); see $out"
	read -r _ total ran passed failed _ <<<"$summary"
	say "LUN $lun: $total tests, $ran ran, $passed passed, $failed failed"
	if ((failed != 0 || ran != total)); then
		grep -E '^ +[0-9]+\. ' "$out" | sed 's/^/    /' || true
		fail "LUN $lun: $failed conformance test(s) failed; see $out"
	fi
	grep -q 'Multipath unavailable' "$out" && fail "LUN $lun: MultipathIO did not run"
done
stop_target
say "PASS"
