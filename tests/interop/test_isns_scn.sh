#!/usr/bin/env bash
# The initiator daemon as an iSNS client of its own, against open-isns's isnsd in a network
# namespace of the test's own (tests/isns/isnsd.bash): with `isns` in its configuration it
# registers its entity, its SCN portal and its iSCSI Node (Initiator, name, alias), visible with
# isnsadm --list; it keeps the registration past the server's period; a persistent login to a
# target that is not running yet logs in once the target registers and the server's state change
# notification reaches the daemon (the reconnect interval is 10 minutes, so nothing else could
# bring it); a target taken out of the discovery domain does not end the live session; a clean
# stop deregisters. Then the SCN listener's bounds: only the server may connect, and a message
# larger than its bound closes the connection. isnsd runs under valgrind when there is one: the
# daemon's way of renewing its SCN registration keeps isnsd from a use after free.
source "$(dirname "$0")/../isns/isns_test.bash" "$@"

INI=iqn.2026-11.org.isthmus:test-initiator
A=iqn.2026-11.org.isthmus:scn-a
HP=$ISNS_ADDR:3260
PERIOD=12

has_node() { # has_node NAME TYPE: a registered (mature) storage node of that type
	isns_db | awk -v want="iSCSI name = \"$1\"" -v type="iSCSI node type = $2" '
		/^Object:/ { m = /type=<iSCSI Storage Node>/ && /state=mature/; n = 0; t = 0 }
		m && index($0, want) { n = 1 }
		m && index($0, type) { t = 1 }
		n && t { found = 1 }
		END { exit !found }'
}
lacks_node() { ! has_node "$1" "$2"; }
dmn_log_since() { tail -c +"$(($1 + 1))" "$DMN_LOG"; }
dmn_mark() { stat -c %s "$DMN_LOG"; }
wait_dmn_log() { # wait_dmn_log MARK REGEX SECS
	local deadline=$((SECONDS + $3))
	until dmn_log_since "$1" | grep -Eq -- "$2"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}
sid_for() { ism session list --json | jq -r --arg t "$1" '[.[] | select(.target_node_address == $t)][0].session_id // empty'; }

# isnsd (open-isns 0.101) reuses a freed notification connection when the recipient's entity
# changed between two notifications; the daemon renews its SCN registration after each exchange
# so that this never happens. Under valgrind, when there is one, the test sees that it does not.
if command -v valgrind >/dev/null 2>&1; then
	ISNSD_WRAP="valgrind --log-file=$TEST_DIR/isnsd.valgrind"
fi
isnsd_start "RegistrationPeriod = $PERIOD" "DefaultDiscoveryDomain = 0"
# isnsadm --list shows what shares a discovery domain with isnsadm's own name: it is a member too.
isns_adm --dd-register dd-name=isthmus-scn "dd-member-name=$INI" "dd-member-name=$A" \
	"dd-member-name=iqn.2026-11.org.isthmus:isnsadm" >"$TEST_DIR/dd.out" ||
	fail "isnsadm --dd-register failed: $(tail -3 "$ISNS_DIR/isnsadm.err")"
DD_ID=$(isns_db | awk '/^Object:.*type=<Discovery Domain>/ { d = 1; next } /^Object:/ { d = 0 } d && /DD ID = / { print $NF; exit }')
[[ -n "$DD_ID" ]] || fail "no discovery domain id in the server's database: $(isns_db)"

cat >"$DMN_CONF" <<EOF
initiator-name = $INI
initiator-alias = scn host
isns = $ISNS_ADDR
reconnect-interval = 600
EOF

# --- registration, visible with isnsadm --list
dmn_start --no-fuse
wait_db "initiator $INI registered" 10 has_node "$INI" Initiator
isns_list nodes >"$TEST_DIR/list.txt" || fail "isnsadm --list nodes: $(tail -3 "$ISNS_DIR/isnsadm.err")"
grep -q "iSCSI name = \"$INI\"" "$TEST_DIR/list.txt" || fail "isnsadm --list nodes: $(cat "$TEST_DIR/list.txt")"
grep -q 'iSCSI alias = "scn host"' "$TEST_DIR/list.txt" || fail "alias not in isnsadm --list nodes: $(cat "$TEST_DIR/list.txt")"
isns_db >"$TEST_DIR/db.txt"
grep -q 'Entity identifier *= "isthmus-initiator:' "$TEST_DIR/db.txt" || fail "entity: $(cat "$TEST_DIR/db.txt")"
grep -q 'SCN port = [0-9]*/tcp' "$TEST_DIR/db.txt" || fail "no SCN port registered: $(cat "$TEST_DIR/db.txt")"
say "ok: the daemon registered $INI (Initiator, alias 'scn host', an entity, a portal with an SCN port): isnsadm --list nodes shows it"

# --- a persistent login to a target that is not running
ism persistent add "$A" --portal "$HP" --type informational >/dev/null || fail "persistent add"
mark=$(dmn_mark)
dmn_stop
wait_dmn_log "$mark" 'entity isthmus-initiator:.* deregistered' 1 || fail "no deregistration at the daemon's stop"
lacks_node "$INI" Initiator || fail "$INI still registered after the daemon stopped"
say "ok: a clean stop of the daemon deregistered its entity and node"
mark=$(dmn_mark)
dmn_start --no-fuse
wait_db "initiator $INI registered again" 10 has_node "$INI" Initiator
wait_dmn_log "$mark" 'registered initiator .*SCN port' 10 || fail "no registration in the daemon log"
P=""
for _ in $(seq 50); do P=$(sid_for "$A"); [[ -n "$P" ]] && break; sleep 0.2; done
[[ -n "$P" ]] || fail "no session for the persistent login: $(ism session list)"
wait_state "$P" reconnecting 20 || fail "the persistent login to a target that is down is not reconnecting"
say "ok: persistent login $P to $A waits (reconnecting, next attempt in 600 s)"

# --- the target starts and registers: the SCN brings the login
cat >"$TEST_DIR/target.conf" <<EOF
[global]
isns = $ISNS_ADDR
isns-entity = isthmus-scn-target
[portal-group 1]
listen = $HP
[target $A]
lun 0 = memory,size=16M
EOF
mark=$(dmn_mark)
start_target --config "$TEST_DIR/target.conf"
t0=$(date +%s%N)
wait_state "$P" connected 20 || fail "no login after the target registered: $(dmn_log_since "$mark" | tail -20)"
ms=$((($(date +%s%N) - t0) / 1000000))
dmn_log_since "$mark" | grep -q "iSNS SCN: $A added" || fail "no SCN for $A in the daemon log: $(dmn_log_since "$mark")"
dmn_log_since "$mark" | grep -q "session $P: $A is registered with iSNS: logging in now" || fail "login not started by the SCN"
((ms < 10000)) || fail "login $ms ms after the target listened (bound 10 s)"
say "ok: the target registered, the SCN reached the daemon, session $P logged in $ms ms after the target listened"

# --- the registration outlives the server's period
reg=$SECONDS
sleep $((PERIOD + 3))
has_node "$INI" Initiator || fail "$INI expired: the daemon did not refresh within the $PERIOD s period"
say "ok: $((SECONDS - reg)) s later (period $PERIOD s) $INI is still registered"

# --- the target leaves the discovery domain: the daemon hears it and keeps the session
mark=$(dmn_mark)
isns_adm --dd-deregister "$DD_ID" "dd-member-name=$A" >/dev/null ||
	fail "isnsadm --dd-deregister: $(tail -3 "$ISNS_DIR/isnsadm.err")"
wait_dmn_log "$mark" "session $P: $A is no longer visible through iSNS; the session is kept" 15 ||
	fail "the daemon did not notice $A leaving: $(dmn_log_since "$mark")"
sleep 2
[[ $(sess_field "$P" .state) == connected ]] || fail "session $P is $(sess_field "$P" .state) after $A left the domain"
say "ok: $A left the discovery domain; the daemon saw it (within the refresh, isnsd notifies only control nodes of domain changes) and session $P stays connected"

# --- the SCN listener's bounds
SCN_PORT=$(grep -o 'SCN port [0-9.]*:[0-9]*' "$DMN_LOG" | tail -1 | sed 's/.*://')
[[ -n "$SCN_PORT" ]] || fail "no SCN port in the daemon log"
mark=$(dmn_mark)
python3 - "$ISNS_ADDR" "$SCN_PORT" >"$TEST_DIR/scn_abuse.txt" <<'PY' || fail "SCN abuse client: $(cat "$TEST_DIR/scn_abuse.txt")"
import socket, struct, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
# 1. from an address that is not the server's: closed at once
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.settimeout(5)
s.connect((addr, port))
try:
    print("stranger: closed" if s.recv(1) == b"" else "stranger: data")
except ConnectionResetError:
    print("stranger: closed")
# 2. from the server's address, an SCN that never ends: cut at the message bound
s = socket.socket()
s.bind((addr, 0))
s.settimeout(5)
s.connect((addr, port))
sent = 0
body = b"\0" * 65532
try:
    for i in range(64):
        flags = 0x4000 | (0x0400 if i == 0 else 0)
        s.sendall(struct.pack(">HHHHHH", 1, 0x0008, len(body), flags, 7, i) + body)
        sent += 12 + len(body)
    print("flood: never closed after", sent)
except (BrokenPipeError, ConnectionResetError, socket.timeout):
    print("flood: closed after", sent)
PY
grep -q '^stranger: closed' "$TEST_DIR/scn_abuse.txt" || fail "a stranger's SCN connection: $(cat "$TEST_DIR/scn_abuse.txt")"
wait_dmn_log "$mark" 'SCN connection from an address that is not the server' 5 || fail "the stranger was not logged"
grep -q '^flood: closed' "$TEST_DIR/scn_abuse.txt" || fail "an endless SCN: $(cat "$TEST_DIR/scn_abuse.txt")"
wait_dmn_log "$mark" 'SCN connection closed: iSNS message longer than 65536' 5 || fail "the endless SCN was not cut at 64 KiB"
[[ $(sess_field "$P" .state) == connected ]] || fail "session $P after the SCN abuse"
say "ok: SCN listener: a stranger is refused, an endless SCN is cut at 64 KiB ($(grep '^flood' "$TEST_DIR/scn_abuse.txt")); the daemon goes on"

ism logout "$P" >/dev/null || fail "logout $P"
mark=$(dmn_mark)
dmn_stop
wait_dmn_log "$mark" 'entity isthmus-initiator:.* deregistered' 1 || fail "no deregistration at the last stop"
lacks_node "$INI" Initiator || fail "$INI still registered after the daemon stopped"
stop_target TERM
isnsd_stop
if [[ -n "${ISNSD_WRAP:-}" ]]; then
	grep -q 'ERROR SUMMARY: 0 errors' "$TEST_DIR/isnsd.valgrind" ||
		fail "isnsd made invalid memory accesses: $(grep -m3 -A3 'Invalid' "$TEST_DIR/isnsd.valgrind")"
	say "ok: isnsd ran under valgrind without an invalid memory access"
fi
say "PASS"
