#!/usr/bin/env bash
# The initiator against a target whose Text and Login answers never end
# (tests/interop/fake_target.py):
#   - SendTargets answered by empty Text Responses without the F bit, for ever: `isthmus
#     discover` and the daemon's `discover --daemon` stop after 1024 responses with a clear error,
#     within seconds (not at the 60 s command timeout);
#   - login response text continued with the C bit for ever: the login fails with a clear error.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3

use_cli
ini() { run_to 30 "$INI" "$@"; }

start_fake_target --text endless

say "isthmus discover against endless empty non-final Text Responses"
t0=$SECONDS
if ini discover "$HP" >"$TEST_DIR/disc.out" 2>&1; then
	fail "discover succeeded against a Text exchange that never ends: $(cat "$TEST_DIR/disc.out")"
fi
took=$((SECONDS - t0))
grep -q "not complete after 1024 Text Responses" "$TEST_DIR/disc.out" ||
	fail "discover failed without naming the bound: $(cat "$TEST_DIR/disc.out")"
((took < 20)) || fail "discover took ${took}s to give up"
n=$(grep -c '^TEXT ' "$FAKE_LOG" || true)
((n >= 1024 && n <= 1025)) || fail "the target answered $n Text Requests, want the bound (1024)"
say "ok: discover gave up after $n Text Responses in ${took}s: $(tail -n1 "$TEST_DIR/disc.out")"

if [[ -x "$ISTHMUS_BIN/isthmus-initiator" ]]; then
	source "$(dirname "$0")/daemon_helpers.bash"
	dmn_start --no-fuse --no-nbd
	: >"$FAKE_LOG"
	say "the daemon's discover --daemon against the same target"
	if ism discover --daemon "$HP" >"$TEST_DIR/ddisc.out" 2>&1; then
		fail "discover --daemon succeeded: $(cat "$TEST_DIR/ddisc.out")"
	fi
	grep -q "not complete after 1024 Text Responses" "$TEST_DIR/ddisc.out" ||
		fail "discover --daemon failed without naming the bound: $(cat "$TEST_DIR/ddisc.out")"
	ism persistent list >/dev/null || fail "daemon no longer answers"
	say "ok: discover --daemon gave up: $(tail -n1 "$TEST_DIR/ddisc.out")"
fi

say "a login whose response text continues (C bit) for ever"
if ini inquiry "iscsi://$HP/iqn.2026-11.org.isthmus:fake:login-cont/0" >"$TEST_DIR/login.out" 2>&1; then
	fail "inquiry succeeded through an endless login"
fi
grep -q "still continues (C bit)" "$TEST_DIR/login.out" || fail "login failed without a clear reason: $(cat "$TEST_DIR/login.out")"
say "ok: $(tail -n1 "$TEST_DIR/login.out")"
say "PASS"
