#!/usr/bin/env bash
# CHAP accounts per initiator: an [initiator NAME] section gives one initiator its own CHAP
# account on a target; the target's account stays the default for the others. The default
# secret cannot log in under a name that has its own account, and one initiator's account
# cannot claim another's name. The accounts survive save-config and are managed at run time
# with `isthmus target set-chap --initiator`. libiscsi's iscsi-inq is the initiator (-i sets its
# name; the URL carries the CHAP user and secret).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-inq
[[ "$TARGET_IMPL" == isthmus ]] || skip "per-initiator CHAP accounts are an isthmus-target feature"

IQN=iqn.2026-11.org.isthmus:accounts
H1=iqn.2026-11.org.example:host1
H2=iqn.2026-11.org.example:host2
H3=iqn.2026-11.org.example:host3
PORT=$(free_port)
HP=127.0.0.1:$PORT
SOCK=$TEST_DIR/mgmt.sock
cat >"$TEST_DIR/target.conf" <<CONF
[global]
mgmt-socket = $SOCK
state-dir = $TEST_DIR/state

[portal-group 1]
listen = $HP

[target $IQN]
lun 0 = memory,size=4M
chap-user = shared
chap-secret = shared-secret-12

[initiator $H1]
chap-user = host1
chap-secret = host1-secret-12
CONF
start_target --config "$TEST_DIR/target.conf"
CLI=("$ISTHMUS_BIN/isthmus" target --socket "$SOCK")

# login NAME USER SECRET : does iscsi-inq, as initiator NAME with that account, log in?
login() {
	run_to 30 iscsi-inq -i "$1" "$(lun_url "$HP" "$IQN" 0 "$2%$3")" >/dev/null 2>&1
}
expect_in() { login "$@" || fail "$1 with account $2 was refused"; say "ok: $1 logs in with account $2"; }
expect_out() { ! login "$@" || fail "$1 with account $2 logged in"; say "ok: $1 is refused with account $2"; }

expect_in "$H2" shared shared-secret-12
expect_out "$H1" shared shared-secret-12
expect_in "$H1" host1 host1-secret-12
expect_out "$H2" host1 host1-secret-12
grep -q "CHAP" "$TARGET_LOG" || fail "no CHAP refusal in the target log"

# Run-time accounts: host3 gets its own; the default no longer admits it; removal restores it.
"${CLI[@]}" set-chap "$IQN" --initiator "$H3" --user host3 --secret host3-secret-12 >/dev/null
expect_out "$H3" shared shared-secret-12
expect_in "$H3" host3 host3-secret-12
list=$("${CLI[@]}" list --json)
grep -q "$H3" <<<"$list" || fail "target list does not name host3's account: $list"
! grep -q "host3-secret" <<<"$list" || fail "target list shows a secret"
"${CLI[@]}" save-config "$TEST_DIR/saved.conf" >/dev/null
grep -q "^\[initiator $H1\]" "$TEST_DIR/saved.conf" || fail "saved configuration lost host1's account"
grep -q "^\[initiator $H3\]" "$TEST_DIR/saved.conf" || fail "saved configuration lost host3's account"
"${CLI[@]}" set-chap "$IQN" --initiator "$H3" >/dev/null
expect_in "$H3" shared shared-secret-12
say "ok: accounts are set, listed without secrets, saved and removed at run time"

# The saved file starts a target with the same accounts.
stop_target
sed -i "s|^mgmt-socket = .*|mgmt-socket = $SOCK|" "$TEST_DIR/saved.conf"
start_target --config "$TEST_DIR/saved.conf"
expect_out "$H1" shared shared-secret-12
expect_in "$H1" host1 host1-secret-12
expect_in "$H3" host3 host3-secret-12
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
