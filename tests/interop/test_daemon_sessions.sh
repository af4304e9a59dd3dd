#!/usr/bin/env bash
# isthmus-initiator: login of each session type (informational, data, boot), every field of
# session list/show, INQUIRY / READ CAPACITY / REPORT LUNS through the daemon, duplicate logins
# (acceptance 6), malformed JSON-RPC (acceptance 7), discovery through the daemon, logout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_helpers.bash"
need jq python3

IQN=iqn.2026-11.org.isthmus:dmnsessions
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=64M"
dmn_start --no-fuse
L0=$(map_lun 0)

# --- discovery through the daemon records the target
ism discover --daemon "$HP" >"$TEST_DIR/disc.txt" || fail "discover --daemon: $(cat "$TEST_DIR/disc.txt")"
grep -q "$IQN" "$TEST_DIR/disc.txt" || fail "discovery did not list $IQN: $(cat "$TEST_DIR/disc.txt")"
say "ok: discover --daemon found $IQN"

# --- informational
out=$(ism login "$IQN" --portal "$HP" --type informational) || fail "login informational: $out"
SID=$(tail -n1 <<<"$out")
[[ "$SID" =~ ^0x[0-9a-f]{16}$ ]] || fail "login did not print a session id: $out"
ism session show "$SID" --json >"$TEST_DIR/show.json"
python3 - "$TEST_DIR/show.json" "$IQN" "$PORT" <<'PY' || fail "session show fields: $(cat "$TEST_DIR/show.json")"
import json, sys
j = json.load(open(sys.argv[1])); iqn = sys.argv[2]; port = int(sys.argv[3])
for k in ["session_id", "initiator_side_identifier", "target_side_identifier", "session_type",
          "initiator_node_address", "initiator_instance_name", "initiator_portal_address",
          "target_node_address", "target_name", "authentication_type", "is_header_digest",
          "is_data_digest", "is_connected", "is_persistent", "is_discovered", "number_of_connections",
          "connections", "devices", "negotiated_parameters", "state", "recovery"]:
    assert k in j, k
assert j["session_type"] == "informational"
assert j["target_node_address"] == iqn
assert j["initiator_node_address"] == "iqn.2026-11.org.isthmus:test-initiator"
assert j["is_connected"] is True and j["state"] == "connected"
assert j["is_discovered"] is True, "discovered before login"
assert j["is_persistent"] is False
assert j["number_of_connections"] == 1 and len(j["connections"]) == 1
c = j["connections"][0]
for k in ["cid", "local_address", "local_port", "remote_address", "remote_port", "header_digest", "data_digest", "state"]:
    assert k in c, k
assert c["remote_address"] == "127.0.0.1" and c["remote_port"] == port and c["local_port"] > 0
assert j["initiator_portal_address"] == "127.0.0.1"
assert j["target_side_identifier"] != "0x0000"
assert len(j["initiator_side_identifier"]) == 14
assert j["authentication_type"] == "None"
assert j["devices"], "informational sessions list their LUNs"
for d in j["devices"]:
    assert d["local_path"] is None and d["nbd_socket"] is None, d
    for k in ["lun", "device_type", "vendor", "product", "capacity_bytes", "block_size"]:
        assert k in d
p = j["negotiated_parameters"]
assert p["max_burst_length"] > 0 and "initial_r2t" in p and "immediate_data" in p
assert j["recovery"]["state"] == "connected" and j["recovery"]["since"]
PY
say "ok: informational login $SID, every field present"

ism session inquiry "$SID" "$L0" --json | jq -e ".vendor == \"$PEER_VENDOR\" and .cached == false" >/dev/null ||
	fail "inquiry: $(ism session inquiry "$SID" "$L0" --json)"
ism session inquiry "$SID" "$L0" --page 0x80 --json | jq -e '.page == 128' >/dev/null || fail "inquiry page 0x80"
ism session readcapacity "$SID" "$L0" --json | jq -e '.capacity_bytes == 67108864 and .block_size == 512' >/dev/null ||
	fail "readcapacity: $(ism session readcapacity "$SID" "$L0" --json)"
ism session reportluns "$SID" --json | jq -e ".luns | index($L0) != null" >/dev/null || fail "reportluns"
ism session reportluns "$SID" | grep -qx "$L0" || fail "reportluns table"
ism session list | grep -q "$SID.*informational.*connected" || fail "session list table: $(ism session list)"
say "ok: inquiry, readcapacity, reportluns, list"

# --- duplicate logins (acceptance 6): two at once, same target and portal
ism logout "$SID" >/dev/null || fail "logout informational"
[[ $(ism session list --json | jq length) == 0 ]] || fail "session left after logout"
ism login "$IQN" --portal "$HP" >"$TEST_DIR/a.out" 2>&1 &
pa=$!
ism login "$IQN" --portal "$HP" >"$TEST_DIR/b.out" 2>&1 &
pb=$!
ra=0; rb=0
wait $pa || ra=$?
wait $pb || rb=$?
(( (ra == 0) != (rb == 0) )) || fail "two concurrent logins: exit $ra and $rb (want exactly one success): $(cat "$TEST_DIR/a.out" "$TEST_DIR/b.out")"
grep -qi "already has session" "$TEST_DIR/a.out" "$TEST_DIR/b.out" || fail "no clear duplicate error"
[[ $(ism session list --json | jq length) == 1 ]] || fail "duplicate sessions: $(ism session list)"
D1=$(ism session list --json | jq -r '.[0].session_id')
out=$(ism login "$IQN" --portal "$HP" --allow-duplicate) || fail "login --allow-duplicate: $out"
D2=$(tail -n1 <<<"$out")
[[ "$D1" != "$D2" ]] || fail "same id twice"
isid1=$(sess_field "$D1" .initiator_side_identifier)
isid2=$(sess_field "$D2" .initiator_side_identifier)
[[ "$isid1" != "$isid2" ]] || fail "duplicate session got the same ISID (it would reinstate the first)"
[[ $(sess_field "$D1" .is_connected) == true && $(sess_field "$D2" .is_connected) == true ]] || fail "both connected"
[[ $(sess_field "$D1" .session_type) == data ]] || fail "default type is data"
ism logout "$D1" >/dev/null && ism logout "$D2" >/dev/null || fail "logout duplicates"
say "ok: concurrent logins make one session; --allow-duplicate makes a second with its own ISID"

# --- boot type
out=$(ism login "$IQN" --portal "$HP" --type boot --digest) || fail "login boot: $out"
B=$(tail -n1 <<<"$out")
sess_json "$B" | jq -e '.session_type == "boot" and .is_header_digest == true and .is_data_digest == true' >/dev/null ||
	fail "boot session fields: $(sess_json "$B")"
ism session logout "$B" >/dev/null || fail "session logout boot"
say "ok: boot login with digests"

# --- ids are never reused
[[ $((16#${B#0x})) -gt $((16#${D2#0x})) && $((16#${D2#0x})) -gt $((16#${SID#0x})) ]] || fail "ids not increasing: $SID $D2 $B"

# --- login failures: unknown target, then nothing left behind
if ism login iqn.2026-11.org.isthmus:nosuch --portal "$HP" >"$TEST_DIR/bad.out" 2>&1; then
	fail "login to an unknown target succeeded"
fi
[[ $(ism session list --json | jq length) == 0 ]] || fail "failed login left a session"
say "ok: failed login reported: $(tail -n1 "$TEST_DIR/bad.out")"

# --- malformed JSON-RPC (acceptance 7)
python3 - "$DMN_SOCK" <<'PY' || fail "malformed JSON-RPC handling"
import json, socket, sys
def ask(raw):
    s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
    s.sendall(raw + b"\n"); data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
    s.close(); return json.loads(data)
cases = [
    (b"{not json", -32700),
    (b"[1,2,3]", -32600),
    (b'{"jsonrpc":"1.0","method":"session.list","id":1}', -32600),
    (b'{"jsonrpc":"2.0","method":"no.such","id":2}', -32601),
    (b'{"jsonrpc":"2.0","method":"session.show","params":{},"id":3}', -32602),
    (b'{"jsonrpc":"2.0","method":"session.show","params":{"session_id":"0xffff"},"id":4}', -32000),
    (b'{"jsonrpc":"2.0","method":"session.login","params":{"target":5},"id":5}', -32602),
    (b'{"jsonrpc":"2.0","method":"session.login","params":{"target":"iqn.2000-01.x:y","portal":"[::1"},"id":6}', -32602),
    (b'{"jsonrpc":"2.0","method":"session.inquiry","params":{"session_id":"1","lun":-4},"id":7}', -32000),
    (b'{"jsonrpc":"2.0","method":"op.result","params":{"op":"x"},"id":8}', -32602),
    (b'{"jsonrpc":"2.0","method":"session.remove_connection","params":{"session_id":"0x1","cid":"a"},"id":9}', -32000),
    (b'\xff\xfe garbage', -32700),
]
for raw, code in cases:
    r = ask(raw)
    assert "error" in r and r["error"]["code"] == code, (raw, r)
r = ask(b'{"jsonrpc":"2.0","method":"session.list","id":10}')
assert r["result"] == [], r
PY
alive "$DMN_PID" || fail "daemon died on malformed requests"
say "ok: malformed requests get JSON-RPC errors, daemon up"

ls -l "$DMN_SOCK" | grep -q '^srw-------' || fail "socket mode is not 0600: $(ls -l "$DMN_SOCK")"
say "PASS"
