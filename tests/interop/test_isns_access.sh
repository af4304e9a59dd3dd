#!/usr/bin/env bash
# Discovery domains as access control, against open-isns's isnsd in a network namespace of the
# test's own (tests/isns/isnsd.bash). Two targets register; a discovery domain holds the first
# target and one initiator. `isthmus discover --isns` lists only the target in a domain with the
# daemon's initiator. With isns-access = yes the target admits at login only initiators that
# share a domain with it: the one in the domain logs in, a second registered initiator is refused
# with status 0x0202 (authorization failure), and so is any initiator at the second target; a
# member added to the domain gets in, and one removed is refused again, each within the answer's
# refresh; with the server gone the target refuses everyone with 0x0301 once its last answer is
# older than 15 s.
source "$(dirname "$0")/../isns/isns_test.bash" "$@"

IN=iqn.2026-11.org.isthmus:test-initiator # the daemon's name, and the raw logins' first name
OUT=iqn.2026-11.org.isthmus:access-outsider
A=iqn.2026-11.org.isthmus:access-a
B=iqn.2026-11.org.isthmus:access-b
HP=$ISNS_ADDR:3260

# login_status INITIATOR TARGET: the status (class and detail, hex) of the target's answer to a
# first Login Request; 0000 means the security stage was accepted.
login_status() {
	python3 - "$ISNS_ADDR" 3260 "$1" "$2" <<'PY'
import os, socket, struct, sys
sys.path.insert(0, os.environ["INTEROP_DIR"])
import pdu_abuse
host, port, ini, tgt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=5)
keys = ["InitiatorName=" + ini, "TargetName=" + tgt, "SessionType=Normal", "AuthMethod=None"]
raw = b"\0".join(k.encode() for k in keys) + b"\0"
rest = struct.pack(">HH", 0, 0) + struct.pack(">II", 0, 0) + b"\0" * 16
hdr = bytearray(pdu_abuse.bhs(0x03, flags=0x81, immediate=True, dlen=len(raw), rest=rest))
hdr[8:14] = b"\x40\x00\x00\x00\x00\x07"
s.sendall(bytes(hdr) + pdu_abuse.pad(raw))
h, _ = pdu_abuse.recv_pdu(s)
print("closed" if h is None else "%02x%02x" % (h[36], h[37]))
PY
}
export INTEROP_DIR
# wait_status WANT SECS INITIATOR TARGET: until the login gets WANT; prints the seconds it took
wait_status() {
	local want=$1 secs=$2 t0=$SECONDS st=""
	while ((SECONDS - t0 <= secs)); do
		st=$(login_status "$3" "$4")
		[[ "$st" == "$want" ]] && { echo $((SECONDS - t0)); return 0; }
		sleep 0.5
	done
	say "login of $3 to $4: status $st, wanted $want after $secs s"
	return 1
}

isnsd_start "RegistrationPeriod = 60" "DefaultDiscoveryDomain = 0"
isns_adm --dd-register dd-name=access "dd-member-name=$IN" "dd-member-name=$A" >/dev/null ||
	fail "isnsadm --dd-register: $(tail -3 "$ISNS_DIR/isnsadm.err")"
DD_ID=$(isns_db | awk '/^Object:.*type=<Discovery Domain>/ { d = 1; next } /^Object:/ { d = 0 } d && /DD ID = / { print $NF; exit }')
[[ -n "$DD_ID" ]] || fail "no discovery domain id"
# Both initiators are registered: the outsider is refused for its domains, not for being unknown.
isns_adm --register entity=access-hosts "initiator=$IN" "initiator=$OUT" >/dev/null ||
	fail "isnsadm --register: $(tail -3 "$ISNS_DIR/isnsadm.err")"

cat >"$TEST_DIR/target.conf" <<EOF
[global]
isns = $ISNS_ADDR
isns-entity = access-target
isns-access = yes
[portal-group 1]
listen = $HP
[target $A]
lun 0 = memory,size=16M
[target $B]
lun 0 = memory,size=16M
EOF
mark=$(log_mark)
start_target --config "$TEST_DIR/target.conf" --log-level debug
wait_log "$mark" "initiator\(s\) share a discovery domain with $A" 10 || fail "no access answer for $A"
wait_log "$mark" "initiator\(s\) share a discovery domain with $B" 10 || fail "no access answer for $B"

# --- a discovery domain hides a target from discovery
dmn_start --no-fuse
out=$(ism discover --isns "$ISNS_ADDR") || fail "discover --isns: $out"
grep -qx "$HP,1 $A" <<<"$out" || fail "discover --isns did not list $A: $out"
grep -q "$B" <<<"$out" && fail "discover --isns listed $B, in no domain with $IN: $out"
say "ok: discover --isns as $IN lists $A and not $B (no shared discovery domain)"

# --- isns-access at login
[[ $(login_status "$IN" "$A") == 0000 ]] || fail "$IN refused at $A: $(login_status "$IN" "$A")"
out=$(ism login "$A" --portal "$HP" --type informational) || fail "full login of $IN to $A: $out"
ism logout "$(tail -n1 <<<"$out")" >/dev/null || fail "logout"
say "ok: $IN (in a domain with $A) logs in to $A"
st=$(login_status "$OUT" "$A")
[[ "$st" == 0202 ]] || fail "$OUT at $A: status $st, wanted 0202"
grep -q "initiator '$OUT'.*shares no iSNS discovery domain with the target" "$TARGET_LOG" || fail "no refusal logged for $OUT"
st=$(login_status "$IN" "$B")
[[ "$st" == 0202 ]] || fail "$IN at $B: status $st, wanted 0202"
say "ok: $OUT at $A and $IN at $B (no shared domain) are refused with 0x0202 authorization failure"

isns_adm --dd-register "dd-id=$DD_ID" "dd-member-name=$OUT" >/dev/null ||
	fail "adding $OUT to the domain: $(tail -3 "$ISNS_DIR/isnsadm.err")"
s=$(wait_status 0000 12 "$OUT" "$A") || fail "$OUT still refused after it joined the domain"
say "ok: $OUT added to the domain logs in to $A ${s} s later"
isns_adm --dd-deregister "$DD_ID" "dd-member-name=$OUT" >/dev/null ||
	fail "removing $OUT from the domain: $(tail -3 "$ISNS_DIR/isnsadm.err")"
s=$(wait_status 0202 12 "$OUT" "$A") || fail "$OUT still admitted after it left the domain"
say "ok: $OUT removed from the domain is refused again ${s} s later (answers refreshed every 5 s)"

# --- the server is gone: answers age out, logins are refused as a transient condition
isnsd_stop
t0=$SECONDS
s=$(wait_status 0301 25 "$IN" "$A") || fail "logins still decided by an old answer after the server stopped"
((s >= 8)) || fail "refused only $s s after the server stopped: the last answer should count for 15 s"
say "ok: with the server gone, $IN is refused with 0x0301 (service unavailable) $((SECONDS - t0)) s later (answers count for 15 s)"
stop_target TERM
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT"
say "PASS"
