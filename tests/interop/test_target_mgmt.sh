#!/usr/bin/env bash
# Target management (WT_Session view, counters, run-time changes, SIGHUP, metrics, JSON-RPC errors):
#  1. after logins by iscsi-perf (libiscsi) `isthmus target session show --json` reports what the
#     target answered in the login (read from libiscsi's own debug log) and the right addresses;
#     a discovery session shows type discovery and an empty host name;
#  2. target-wide counters move by exactly the bytes qemu-img wrote;
#  3. removing a LUN in use raises REPORTED LUNS DATA HAS CHANGED and the LUN answers LOGICAL UNIT
#     NOT SUPPORTED; resizing raises CAPACITY DATA HAS CHANGED and READ CAPACITY shows the size;
#     an ACL change refuses new logins (0x0202) while the running session goes on; save-config and
#     a restart from that file reproduce the running state;
#  4. SIGHUP with an edited file adds a target while a running session keeps its TSIH and its I/O;
#  5. the Prometheus endpoint passes promtool check metrics;
#  6. malformed or unknown RPC calls get JSON-RPC errors and the target stays up.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-perf iscsi-inq qemu-img python3 curl jq
[[ "$TARGET_IMPL" == isthmus ]] || skip "exercises isthmus-target's management socket"

IQN=iqn.2026-11.org.isthmus:mgmt
IQN2=iqn.2026-11.org.isthmus:added
PORT=$(free_port)
MPORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
CONF=$TEST_DIR/t.conf
CLI=$ISTHMUS_BIN/isthmus
one_target_conf "$CONF" "$IQN" "alias = mgmt-disk" "lun 0 = $TEST_DIR/disk0.img,size=64M" "lun 1 = memory,size=32M"
start_target --config "$CONF" --metrics "127.0.0.1:$MPORT"
T() { "$CLI" target --socket "$SOCK" "$@"; }
URL0=$(lun_url "127.0.0.1:$PORT" "$IQN" 0)

# ---- 1. negotiated values as libiscsi saw them -------------------------------------------
# iscsi-perf runs long enough to outlast sections 1 to 4 on a loaded machine (sanitizer build).
LIBISCSI_DEBUG=6 iscsi-perf -i iqn.2026-11.org.isthmus:perf -m 4 -b 8 -t 25 "$URL0" >"$TEST_DIR/perf.log" 2>&1 &
PERF=$!
BG_PIDS+=("$PERF")
tsih=""
for _ in $(seq 1 100); do
	tsih=$(T --json session list | jq -r '.[] | select(.initiator_iqn=="iqn.2026-11.org.isthmus:perf") | .tsih' | head -n1)
	[[ -n "$tsih" ]] && break
	sleep 0.05
done
[[ -n "$tsih" ]] || fail "iscsi-perf's session never appeared: $(T session list)"
show=$(T --json session show "$tsih")
reply() { sed -nE "s/.*TargetLoginReply: $1=([^ ]+).*/\1/p" "$TEST_DIR/perf.log" | tail -n1; }
check() { # json-field login-key [Yes/No mapping]
	local got want
	got=$(jq -r ".$1" <<<"$show")
	want=$(reply "$2")
	[[ -n "$want" ]] || return 0 # not negotiated: nothing to compare
	case "$want" in Yes) want=true ;; No) want=false ;; esac
	[[ "$got" == "$want" ]] || fail "session show: $1 = $got, but the target answered $2=$want"
	say "ok: $1 = $got matches the login reply"
}
check max_data_burst_length MaxBurstLength
check max_first_data_burst_length FirstBurstLength
check allow_initial_r2t InitialR2T
check allow_immediate_data ImmediateData
check max_outstanding_r2t MaxOutstandingR2T
check default_time2wait DefaultTime2Wait
check default_time2retain DefaultTime2Retain
check error_recovery_level ErrorRecoveryLevel
[[ "$(jq -r .connections[0].header_digest <<<"$show")" == "$(reply HeaderDigest)" ]] || fail "header digest differs"
[[ "$(jq -r .host_name <<<"$show")" == mgmt-disk && "$(jq -r .host_target_iqn <<<"$show")" == "$IQN" ]] ||
	fail "host name / target IQN wrong: $show"
# Addresses: libiscsi logs "connection established (LOCAL -> REMOTE)".
src=$(sed -nE 's/.*connection established \(([0-9.]+):([0-9]+) -> .*/\2/p' "$TEST_DIR/perf.log" | tail -n1)
[[ "$(jq -r .connections[0].target_port <<<"$show")" == "$PORT" ]] || fail "target port wrong in $show"
[[ "$(jq -r .connections[0].initiator_address <<<"$show")" == 127.0.0.1 ]] || fail "initiator address wrong"
if [[ -n "$src" ]]; then
	[[ "$(jq -r .connections[0].initiator_port <<<"$show")" == "$src" ]] || fail "initiator port is not $src"
fi
say "ok: connection addresses match"
T session show "$tsih" | grep -q "^Max burst length" || fail "human session show lacks fields"

# A discovery session: type discovery, empty host name.
coproc DISC { python3 "$INTEROP_DIR/scsi_session.py" 127.0.0.1 "$PORT" "" --discovery --initiator iqn.2026-11.org.isthmus:disc; }
read -r -t 10 line <&"${DISC[0]}" || fail "discovery session did not log in"
disc=$(T --json session list | jq -c '.[] | select(.initiator_iqn=="iqn.2026-11.org.isthmus:disc")')
[[ "$(jq -r .session_type <<<"$disc")" == discovery && "$(jq -r .host_name <<<"$disc")" == "" ]] ||
	fail "discovery session shown as: $disc"
echo quit >&"${DISC[1]}"
say "ok: discovery session listed with type discovery and no host name"

# ---- 4. SIGHUP with an edited file: a new target appears, the running session keeps going ----
cat >>"$CONF" <<CFG
[target $IQN2]
lun 0 = memory,size=8M
CFG
kill -HUP "$TARGET_PID"
for _ in $(seq 1 50); do
	T --json list | jq -e ".[] | select(.name==\"$IQN2\")" >/dev/null && break
	sleep 0.1
done
T --json list | jq -e ".[] | select(.name==\"$IQN2\")" >/dev/null || fail "SIGHUP did not add $IQN2"
T --json session show "$tsih" >/dev/null || fail "iscsi-perf's session did not survive SIGHUP"
wait "$PERF" || fail "iscsi-perf failed across the reload: $(tr '\r' '\n' <"$TEST_DIR/perf.log" | grep -v libiscsi | tail -3)"
grep -q "iops average" <(tr '\r' '\n' <"$TEST_DIR/perf.log") || fail "iscsi-perf reported nothing"
say "ok: SIGHUP applied a new target; the running session kept its TSIH and finished its I/O"

# ---- 2. counters move by the bytes moved --------------------------------------------------
before=$(T --json stats)
head -c 16M /dev/urandom >"$TEST_DIR/src.bin"
run_to 60 qemu-img convert -n -f raw -O raw "$TEST_DIR/src.bin" "$(lun_url "127.0.0.1:$PORT" "$IQN" 1)" ||
	fail "qemu-img write"
after=$(T --json stats)
dw=$(($(jq .write_bytes <<<"$after") - $(jq .write_bytes <<<"$before")))
((dw == 16 << 20)) || fail "write_bytes moved by $dw, want $((16 << 20))"
dc=$(($(jq .commands <<<"$after") - $(jq .commands <<<"$before")))
((dc > 0)) || fail "commands counter did not move"
say "ok: write_bytes moved by exactly 16 MiB over $dc commands"

# ---- 3. run-time changes as an array does them ----------------------------------------------
coproc PROBE { python3 "$INTEROP_DIR/scsi_session.py" 127.0.0.1 "$PORT" "$IQN" --initiator iqn.2026-11.org.isthmus:probe; }
read -r -t 10 line <&"${PROBE[0]}" || fail "probe session did not log in"
probe() { echo "$*" >&"${PROBE[1]}"; read -r -t 10 line <&"${PROBE[0]}" || fail "probe: no answer to $*"; echo "$line"; }
probe tur 0 >/dev/null # clears the power-on unit attention
T remove-lun "$IQN" 1 >/dev/null || fail "remove-lun"
r=$(probe tur 0)
[[ "$r" == *"key=0x6 asc=0x3f ascq=0x0e"* ]] || fail "after LUN removal: $r (want REPORTED LUNS DATA HAS CHANGED)"
r=$(probe tur 1)
[[ "$r" == *"asc=0x25"* ]] || fail "removed LUN answered: $r"
say "ok: LUN removal: REPORTED LUNS DATA HAS CHANGED, then LOGICAL UNIT NOT SUPPORTED"
T resize-lun "$IQN" 0 128M >/dev/null || fail "resize-lun"
r=$(probe tur 0)
[[ "$r" == *"key=0x6 asc=0x2a ascq=0x09"* ]] || fail "after resize: $r (want CAPACITY DATA HAS CHANGED)"
r=$(probe rc16 0)
last=$((16#$(sed -E 's/.*data=([0-9a-f]{16}).*/\1/' <<<"$r")))
((last + 1 == 128 * 2048)) || fail "READ CAPACITY after resize: $r"
say "ok: resize: CAPACITY DATA HAS CHANGED and READ CAPACITY shows 128 MiB"
T allow "$IQN" iqn.2026-11.org.isthmus:someone-else >/dev/null || fail "allow"
out=$(LIBISCSI_DEBUG=1 run_to 30 iscsi-inq -i iqn.2026-11.org.isthmus:newcomer "$URL0" 2>&1) &&
	fail "a login outside the new ACL succeeded"
grep -q "514\|Authorization" <<<"$out" || fail "refused login did not get authorization failure: $out"
r=$(probe tur 0)
[[ "$r" == status=0x00* ]] || fail "the running session stopped working after the ACL change: $r"
say "ok: ACL change refuses new logins (0x0202) and leaves the running session alone"
echo quit >&"${PROBE[1]}"

# save-config, restart from the saved file, compare the running state.
state_before=$(T --json list | jq -S 'map(del(.sessions))')
T save-config "$TEST_DIR/saved.conf" >/dev/null || fail "save-config"
[[ "$(stat -c %a "$TEST_DIR/saved.conf")" == 600 ]] || fail "saved configuration is not mode 0600"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"
start_target --config "$TEST_DIR/saved.conf"
state_after=$(T --json list | jq -S 'map(del(.sessions))')
[[ "$state_before" == "$state_after" ]] || fail "restart from the saved file differs:
before: $state_before
after:  $state_after"
say "ok: save-config and a restart reproduce the running state"
stop_target
start_target --config "$TEST_DIR/saved.conf" --metrics "127.0.0.1:$MPORT"

# ---- 5. Prometheus exposition ---------------------------------------------------------------
run_to 30 iscsi-inq "$(lun_url "127.0.0.1:$PORT" "$IQN2" 0)" >/dev/null 2>&1 || true
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$TEST_DIR/metrics.txt" || fail "metrics endpoint"
grep -q '^isthmus_target_commands_total ' "$TEST_DIR/metrics.txt" || fail "metrics lack the command counter"
if command -v promtool >/dev/null; then
	promtool check metrics <"$TEST_DIR/metrics.txt" || fail "promtool check metrics failed"
	say "ok: promtool check metrics passes"
else
	fail "promtool missing (Debian package prometheus)"
fi

# session kill (the access list now admits only someone-else): the initiator is asked to log out (Async Message), then dropped after the grace.
coproc VICTIM { python3 "$INTEROP_DIR/scsi_session.py" 127.0.0.1 "$PORT" "$IQN" --initiator iqn.2026-11.org.isthmus:someone-else; }
read -r -t 10 line <&"${VICTIM[0]}" || fail "victim session did not log in"
vt=$(T --json session list | jq -r '.[] | select(.initiator_iqn=="iqn.2026-11.org.isthmus:someone-else") | .tsih')
[[ -n "$vt" ]] || fail "victim session not listed"
T session kill "$vt" --grace 1 >/dev/null || fail "session kill"
gone=0
for _ in $(seq 1 50); do
	if ! T --json session list | jq -e ".[] | select(.tsih==$vt)" >/dev/null; then
		gone=1
		break
	fi
	sleep 0.1
done
((gone)) || fail "killed session $vt still listed after 5 s"
grep -q "killing session TSIH $vt" "$TARGET_LOG" || fail "no log line for the kill"
T session kill 65000 >/dev/null 2>&1 && fail "killing a session that does not exist succeeded"
say "ok: session kill asks for logout, then drops the session"

# ---- 6. malformed RPC -----------------------------------------------------------------------
python3 - "$SOCK" <<'PY' || fail "JSON-RPC error handling"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
cases = [
    (b"{not json", -32700),
    (b'{"jsonrpc":"1.0","method":"stats","id":1}', -32600),
    (b'[1,2,3]', -32600),
    (b'{"jsonrpc":"2.0","method":"no.such","id":2}', -32601),
    (b'{"jsonrpc":"2.0","method":"session.show","params":{"tsih":"x"},"id":3}', -32602),
    (b'{"jsonrpc":"2.0","method":"lun.add","params":{"target":"iqn.2026-11.org.isthmus:none","spec":"memory,size=1M"},"id":4}', -32602),
    (b'{"jsonrpc":"2.0","method":"session.show","params":{"tsih":65000},"id":5}', -32000),
]
for req, code in cases:
    f.write(req + b"\n")
    f.flush()
    resp = json.loads(f.readline())
    got = resp.get("error", {}).get("code")
    if got != code:
        sys.exit("request %r: error code %r, want %d" % (req, got, code))
f.write(b'{"jsonrpc":"2.0","method":"stats","id":9}\n')
f.flush()
if "result" not in json.loads(f.readline()):
    sys.exit("the daemon does not answer after the bad requests")
PY
kill -0 "$TARGET_PID" || fail "target died"
say "ok: malformed RPC calls get JSON-RPC errors; the target stays up"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"
say "PASS"
