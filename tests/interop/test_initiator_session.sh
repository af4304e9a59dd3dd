#!/usr/bin/env bash
# isthmus-session-test (tests/tools) against isthmus-target: one session with 2 and then 4 connections (same
# ISID and TSIH, new CIDs), writes then reads spread round-robin over every connection and
# verified; and session reinstatement (a second login with the same ISID makes the target drop the
# first session). tgtd supports MaxConnections=1 only, so this test needs isthmus-target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "multi-connection sessions need isthmus-target (tgtd has MaxConnections=1)"

SESSION_TEST=$ISTHMUS_BIN/tests/tools/isthmus-session-test
[[ -x "$SESSION_TEST" ]] || fail "no isthmus-session-test at $SESSION_TEST (build first, or set ISTHMUS_BIN)"
export ISTHMUS_STATE_DIR=$TEST_DIR/state
unset ISTHMUS_CONFIG

IQN=iqn.2026-11.org.isthmus:inisession
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=64M" --lun "memory,size=16M"
session_test() { run_to "$CLIENT_TIMEOUT" "$SESSION_TEST" "$@"; }

for spec in "2 200 0" "4 400 0" "4 64 1"; do
	read -r conns ios lun <<<"$spec"
	url=$(lun_url "$HP" "$IQN" "$lun")
	session_test "$url" --connections "$conns" --io "$ios" --json >"$TEST_DIR/st.json" ||
		fail "session-test --connections $conns --io $ios: $(cat "$TEST_DIR/st.json")"
	python3 - "$TEST_DIR/st.json" "$conns" "$ios" <<-'PY' || fail "session-test result: $(cat "$TEST_DIR/st.json")"
	import json, sys
	j = json.load(open(sys.argv[1]))
	conns, ios = int(sys.argv[2]), int(sys.argv[3])
	assert j["verified"] and j["connections"] == conns and j["ios"] == ios, j
	per = j["per_connection"]
	assert len(per) == conns and len({p["cid"] for p in per}) == conns, per
	assert sum(p["writes"] for p in per) == ios and sum(p["reads"] for p in per) == ios, per
	# round-robin: no connection carries more than its share plus one
	assert all(p["writes"] <= ios // conns + 1 and p["reads"] <= ios // conns + 1 for p in per), per
	PY
	say "ok: session-test LUN $lun: $conns connections, $ios writes + $ios reads verified, spread evenly"
done
mark=$(log_mark)
url=$(lun_url "$HP" "$IQN" 0)
session_test "$url" --connections 1 --io 8 --reinstate --json >"$TEST_DIR/re.json" ||
	fail "session-test --reinstate: $(cat "$TEST_DIR/re.json")"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["reinstate"]; assert r["first_dropped"] and r["first_tsih"] != r["second_tsih"], r' \
	"$TEST_DIR/re.json" || fail "reinstatement result: $(cat "$TEST_DIR/re.json")"
say "ok: reinstatement: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reinstate"])' "$TEST_DIR/re.json")"
# human output names every connection
out=$(session_test "$url" --connections 3 --io 30) || fail "session-test (human): $out"
[[ $(grep -c '^    CID ' <<<"$out") == 3 ]] || fail "human output does not list 3 connections: $out"
say "ok: $(head -1 <<<"$out")"

stop_target
say "PASS"
