#!/usr/bin/env bash
# Login refusals, each with the right iSCSI status class and a reason in the target log:
#   - wrong CHAP secret          -> status 0x0201 Authentication failure; log gives a reason
#   - no CHAP offered at all     -> refused (0x0201 or 0x0202)
#   - unknown target name        -> status 0x0203 Not found; log says the target is not found
#   - initiator not in the ACL   -> refused (0x0202 Authorization failure, or 0x0203 for a
#                                   target that hides itself); log says it is not allowed
#   - the allowed initiator with the right secret logs in and sees the disk
# The target runs with --log-level debug, and its log must never contain a CHAP secret
# (neither the configured ones nor the wrong one tried), as text or hex.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-inq python3

IQN=iqn.2026-11.org.isthmus:t1
CLIENT=iqn.2026-11.org.isthmus:client1
SECRET=alicesecret12
WRONG=wrongsecret99
PORT=$(free_port)
HP=127.0.0.1:$PORT
mkdir -p "$TEST_DIR/state"
cat >"$TEST_DIR/t.conf" <<EOC
[global]
state-dir = $TEST_DIR/state
[portal-group 1]
listen = $HP
[target $IQN]
portal-group = 1
lun 0 = $TEST_DIR/disk.img,size=64M
allow = $CLIENT
chap-user = alice
chap-secret = $SECRET
EOC
start_target --config "$TEST_DIR/t.conf" --log-level debug

# try NAME INITIATOR URL : run iscsi-inq; sets OUT, RC and STATUS (the login status code, decimal)
try() {
	local name=$1 ini=$2 url=$3
	RC=0
	OUT=$(LIBISCSI_DEBUG=2 run_to "$CLIENT_TIMEOUT" iscsi-inq -i "$ini" "$url" 2>&1) || RC=$?
	STATUS=$(sed -nE 's/.*Status: [^(]*\(([0-9]+)\).*/\1/p' <<<"$OUT" | tail -n1)
	((RC != 124)) || fail "$name: iscsi-inq hung"
	say "$name: exit $RC${STATUS:+, login status $STATUS}"
}

# expect_log NAME MARK REGEX WHAT
expect_log() {
	if wait_log "$2" "$3" 5; then
		say "ok: $1: target log: $(log_since "$2" | grep -Ei -m1 -- "$3" | cut -c1-160)"
	elif has_quirk log-wording; then
		note "$1: $TARGET_IMPL logs no '$4' line; log check left out for this peer"
	else
		fail "$1: the target log does not say $4 (looked for /$3/)"
	fi
}

good=$(lun_url "$HP" "$IQN" 0 "alice%$SECRET")

# Allowed initiator, right secret.
try allowed "$CLIENT" "$good"
((RC == 0)) || fail "allowed initiator with the right secret was refused: $OUT"
grep -q '^Peripheral Device Type:DIRECT_ACCESS' <<<"$OUT" || fail "allowed: no disk at LUN 0: $OUT"
say "ok: allowed initiator with the right secret gets in"

# Wrong secret.
mark=$(log_mark)
try wrong-secret "$CLIENT" "$(lun_url "$HP" "$IQN" 0 "alice%$WRONG")"
((RC != 0)) || fail "wrong-secret: login succeeded"
[[ "$STATUS" == 513 ]] || fail "wrong-secret: login status '$STATUS', want 513 (0x0201 Authentication failure): $OUT"
expect_log wrong-secret "$mark" '(auth|chap).*(fail|reject|denied|mismatch|invalid|wrong|bad)|(fail|reject|denied|invalid|wrong|bad).*(auth|chap|secret|response)' "an authentication failure"

# No CHAP at all.
try no-chap "$CLIENT" "$(lun_url "$HP" "$IQN" 0)"
((RC != 0)) || fail "no-chap: login without CHAP succeeded"
[[ "$STATUS" == 513 || "$STATUS" == 514 ]] || fail "no-chap: login status '$STATUS', want 513 or 514: $OUT"

# Unknown target.
mark=$(log_mark)
try unknown-target "$CLIENT" "$(lun_url "$HP" iqn.2026-11.org.isthmus:nosuch 0 "alice%$SECRET")"
((RC != 0)) || fail "unknown-target: login succeeded"
[[ "$STATUS" == 515 ]] || fail "unknown-target: login status '$STATUS', want 515 (0x0203 Not found): $OUT"
expect_log unknown-target "$mark" 'not found|unknown target|no such target|does not exist|not exist|not configured' "that the target is not found"

# Initiator not in the ACL (right secret).
mark=$(log_mark)
try not-allowed iqn.2026-11.org.example:other "$good"
((RC != 0)) || fail "not-allowed: an initiator outside the ACL logged in"
[[ "$STATUS" == 514 || "$STATUS" == 515 ]] || fail "not-allowed: login status '$STATUS', want 514 (or 515): $OUT"
expect_log not-allowed "$mark" 'not allowed|not permitted|denied|not authori[sz]ed|unauthori[sz]ed|authori[sz]ation fail|forbidden|access list|not in (the )?(acl|allow)' "that the initiator is not allowed"

# The allowed initiator still works after all that.
try allowed-again "$CLIENT" "$good"
((RC == 0)) || fail "allowed initiator refused after the failed attempts: $OUT"

stop_target
for s in "$SECRET" "$WRONG"; do
	hex=$(python3 -c 'import sys; print(sys.argv[1].encode().hex())' "$s")
	if grep -Fqi -e "$s" -e "$hex" "$TARGET_LOG"; then
		fail "the target log contains a CHAP secret ($s) in clear or hex"
	fi
done
say "ok: no CHAP secret in the target log"
say "PASS"
