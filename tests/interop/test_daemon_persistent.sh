#!/usr/bin/env bash
# isthmus-initiator persistent logins (acceptance 4) and secrets:
#  - session register SID, daemon restart: the login comes back by itself; unregister: it does not;
#  - persistent add while the target is down: the daemon starts at once, keeps trying, logs in
#    when the target appears;
#  - chap set-secret (mutual CHAP) stored 0600, never in the log or the output; CHAP secrets in
#    the persistent store are 0600 and masked in `persistent list`;
#  - the boot session of an iBFT-style directory (--ibft) comes up by itself.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need jq python3
source "$(dirname "$0")/daemon_helpers.bash"

IQN=iqn.2026-11.org.isthmus:dmnpersist
PORT=$(free_port)
HP=127.0.0.1:$PORT
USER_SECRET=alice-secret-12
TGT_SECRET=target-secret-34
cat >"$TEST_DIR/target.conf" <<CONF
[portal-group 1]
listen = $HP

[target $IQN]
lun 0 = $TEST_DIR/lun0.img,size=16M
chap-user = alice
chap-secret = $USER_SECRET
mutual-user = tgtname
mutual-secret = $TGT_SECRET
CONF
start_target --config "$TEST_DIR/target.conf"
dmn_start --no-fuse
# tgtd verifies only MD5 CHAP responses reliably (see test_initiator_chap.sh)
ALG=()
[[ "$TARGET_IMPL" == tgtd ]] && ALG=(--chap-algorithms 5)

count_for() { ism session list --json | jq "[.[] | select(.target_node_address == \"$IQN\")] | length"; }
sid_for() { ism session list --json | jq -r "[.[] | select(.target_node_address == \"$IQN\")][0].session_id"; }

# ---- mutual CHAP with the initiator secret of chap set-secret
if ism login "$IQN" --portal "$HP" --chap-user alice --chap-secret "$USER_SECRET" --mutual-user tgtname "${ALG[@]}" >/dev/null 2>&1; then
	fail "mutual CHAP login worked without an initiator secret"
fi
echo "$TGT_SECRET" | ism chap set-secret >"$TEST_DIR/set.out" || fail "chap set-secret"
grep -q "$TGT_SECRET" "$TEST_DIR/set.out" && fail "chap set-secret printed the secret"
[[ $(stat -c %a "$DMN_STATE/chap-secret") == 600 ]] || fail "chap-secret mode $(stat -c %a "$DMN_STATE/chap-secret")"
SID=$(ism login "$IQN" --portal "$HP" --chap-user alice --chap-secret "$USER_SECRET" --mutual-user tgtname "${ALG[@]}" | tail -n1) ||
	fail "mutual CHAP login"
[[ $(sess_field "$SID" .authentication_type) == MutualCHAP ]] || fail "authentication_type"
say "ok: mutual CHAP with the secret of chap set-secret"

# ---- register, restart, comes back
ism session register "$SID" >/dev/null || fail "register"
[[ $(sess_field "$SID" .is_persistent) == true ]] || fail "is_persistent after register"
[[ $(stat -c %a "$DMN_STATE/persistent.json") == 600 ]] || fail "persistent.json mode"
ism persistent list --json | jq -e ".[0].chap_secret == \"********\" and .[0].session_id == \"$SID\"" >/dev/null ||
	fail "persistent list: $(ism persistent list --json)"
ism persistent list | grep -q "$IQN" || fail "persistent list table"
dmn_stop
dmn_start --no-fuse
for _ in $(seq 50); do [[ $(count_for) == 1 ]] && break; sleep 0.2; done
[[ $(count_for) == 1 ]] || fail "the persistent login did not come back: $(ism session list)"
NEW=$(sid_for)
wait_state "$NEW" connected 10 || fail "restored session not connected"
[[ $(sess_field "$NEW" .is_persistent) == true ]] || fail "restored session not marked persistent"
[[ $((16#${NEW#0x})) -gt $((16#${SID#0x})) ]] || fail "session id reused after restart: $SID then $NEW"
say "ok: registered login back after a restart as $NEW"

ism session unregister "$NEW" >/dev/null || fail "unregister"
[[ $(ism persistent list --json | jq length) == 0 ]] || fail "record left after unregister"
dmn_stop
dmn_start --no-fuse
sleep 1.5
[[ $(count_for) == 0 ]] || fail "unregistered login came back"
say "ok: after unregister it does not come back"

# ---- a persistent login whose target is down at start
ism persistent add "$IQN" --portal "$HP" --type informational --chap-user alice --chap-secret "$USER_SECRET" "${ALG[@]}" >/dev/null ||
	fail "persistent add"
dmn_stop
stop_target
t0=$SECONDS
dmn_start --no-fuse
((SECONDS - t0 <= 3)) || fail "the daemon waited for a target that is down"
for _ in $(seq 30); do [[ $(count_for) == 1 ]] && break; sleep 0.2; done
P=$(sid_for)
[[ $(sess_field "$P" .state) == reconnecting ]] || fail "state with the target down: $(sess_field "$P" .state)"
start_target --config "$TEST_DIR/target.conf"
wait_state "$P" connected 9 || fail "login did not happen when the target came up"
[[ $(sess_field "$P" .session_type) == informational ]] || fail "stored type not used"
say "ok: persistent login retried while the target was down, up when it came"
ism persistent remove "$IQN" >/dev/null || fail "persistent remove"
ism logout "$P" >/dev/null || fail "logout"

# ---- secrets never in the log
for s in "$USER_SECRET" "$TGT_SECRET"; do
	grep -q -- "$s" "$DMN_LOG" && fail "a secret appears in the daemon log"
	ism session list --json | grep -q -- "$s" && fail "a secret appears in session list"
done

# ---- boot session from an iBFT-style directory
IB=$TEST_DIR/ibft
mkdir -p "$IB/initiator" "$IB/target0"
echo iqn.2026-11.org.isthmus:test-initiator >"$IB/initiator/initiator-name"
echo "$IQN" >"$IB/target0/target-name"
echo 127.0.0.1 >"$IB/target0/ip-addr"
echo "$PORT" >"$IB/target0/port"
echo 0 >"$IB/target0/lun"
echo alice >"$IB/target0/chap-name"
echo "$USER_SECRET" >"$IB/target0/chap-secret"
dmn_stop
dmn_start --no-fuse --ibft "$IB"
for _ in $(seq 30); do [[ $(count_for) == 1 ]] && break; sleep 0.2; done
B=$(sid_for)
wait_state "$B" connected 10 || fail "iBFT boot session not up"
[[ $(sess_field "$B" .session_type) == boot ]] || fail "iBFT session type"
[[ $(sess_field "$B" .authentication_type) == CHAP ]] || fail "iBFT CHAP"
say "ok: iBFT boot session $B"
say "PASS"
