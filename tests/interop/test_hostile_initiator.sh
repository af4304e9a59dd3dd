#!/usr/bin/env bash
# A hostile initiator against the target, one scenario of hostile_initiator.py at a time, each a
# defect a misbehaving or malicious peer could once reach: logins that join a session ending
# under them, configuration changes during a login, repeated CmdSNs, a command window that did
# not limit anything, writes whose data never comes, a peer that never reads its answers, login
# answers larger than the peer may receive, MaxConnections checked only at the start of a login,
# and sessions that outlived the revocation of their access. The target runs with sanitizers; a
# report in its log fails the test.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "the hostile initiator is aimed at isthmus-target"

PORT=$(free_port)
HP=127.0.0.1:$PORT
SOCK=$TEST_DIR/mgmt.sock
BASE=iqn.2026-11.org.isthmus:hostile
INI=iqn.2026-11.org.isthmus:hostile # hostile_initiator.py's InitiatorName
CHAP_SECRET=hostile-secret-1
cat >"$TEST_DIR/target.conf" <<CONF
[global]
mgmt-socket = $SOCK
state-dir = $TEST_DIR/state
data-out-timeout = 2

[portal-group 1]
listen = $HP

[target $BASE:main]
lun 0 = memory,size=64M

[target $BASE:removed]
lun 0 = memory,size=1M

[target $BASE:chap]
lun 0 = memory,size=1M
chap-user = hostile
chap-secret = $CHAP_SECRET

[target $BASE:acl]
lun 0 = memory,size=1M
allow = $INI

[target $BASE:rechap]
lun 0 = memory,size=1M
CONF
start_target --config "$TEST_DIR/target.conf"
CLI=("$ISTHMUS_BIN/isthmus" target --socket "$SOCK")

# scenario NAME TARGET [ARGS...] : run one scenario, failing the test with its output.
scenario() {
	local name=$1 iqn=$2 out rc=0
	shift 2
	out=$(run_to 90 python3 "$INTEROP_DIR/hostile_initiator.py" "$name" 127.0.0.1 "$PORT" "$iqn" "$@" 2>&1) || rc=$?
	sed "s/^/[$name] /" <<<"$out"
	((rc == 0)) || fail "scenario $name failed"
	alive "$TARGET_PID" || fail "target died during $name"
}

scenario join-after-logout "$BASE:main"
scenario join-after-drop "$BASE:main"
scenario join-after-reinstate "$BASE:main"
scenario duplicate-cmdsn "$BASE:main" --pid "$TARGET_PID"
scenario window "$BASE:main" --depth 128
scenario data-out-timeout "$BASE:main"
scenario send-backlog "$BASE:main" --pid "$TARGET_PID"
scenario login-reply-split "$BASE:main"
scenario maxconn-completion "$BASE:main"
scenario reconfig-during-login "$BASE:removed" --between "${CLI[*]} remove-target $BASE:removed"
scenario chap-change-during-login "$BASE:chap" --user hostile --secret "$CHAP_SECRET" \
	--between "${CLI[*]} set-chap $BASE:chap --user hostile --secret another-secret-2"
scenario revoke "$BASE:acl" --between "${CLI[*]} disallow $BASE:acl $INI"
scenario revoke "$BASE:rechap" --between "${CLI[*]} set-chap $BASE:rechap --initiator $INI --user h2 --secret a-third-secret-3"

# The session list names a session whose InitiatorAlias is not UTF-8 (bytes shown as '?').
scenario alias-bytes "$BASE:main" --between \
	"${CLI[*]} --json session list | grep -q '\"initiator_alias\": \"bad??-alias\"'"

stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
