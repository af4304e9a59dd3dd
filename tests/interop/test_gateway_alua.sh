#!/usr/bin/env bash
# One LU behind two gateways (docs/gateways.md): two isthmus-target processes serve the same
# file as gateways 1 and 2 of one group. Checks what an initiator's multipath layer relies on:
# TPGS in INQUIRY, the same LU designator and different port designators in VPD 0x83, REPORT
# TARGET PORT GROUPS with both groups, SendTargets listing both portals, a killed gateway turning
# unavailable with ASYMMETRIC ACCESS STATE CHANGED. libiscsi's MultipathIO family runs over two
# gateways of an RBD image in test_gateway_rbd_cu.sh: on a file each gateway keeps its own
# reservations and unit attentions, so a LOGICAL UNIT RESET does not reach the other one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3

IQN=iqn.2026-11.org.isthmus:gw
P1=$(free_port)
P2=$(free_port)
IMG=$TEST_DIR/image
truncate -s 64M "$IMG"
GWFLAGS=(--target "$IQN" --lun "$IMG" --gateway-portal "1=127.0.0.1:$P1" --gateway-portal "2=127.0.0.1:$P2")

start_target --listen "127.0.0.1:$P1" --gateway 1 "${GWFLAGS[@]}"
start_gw2() {
	say "starting gateway 2 on port $P2"
	bg_start "$ISTHMUS_BIN/isthmus-target" --listen "127.0.0.1:$P2" --gateway 2 "${GWFLAGS[@]}" \
		--mgmt-socket "$TEST_DIR/gw2.sock" --state-dir "$TEST_DIR/var2" >>"$TEST_DIR/gw2.log" 2>&1
	GW2_PID=$BG_LAST
	wait_port "127.0.0.1:$P2" "$GW2_PID" || fail "gateway 2 does not listen on $P2"
}
start_gw2

cmd() { # PORT CDB [--in N]
	local port=$1
	shift
	run_to 30 python3 "$INTEROP_DIR/scsi_cmd.py" 127.0.0.1 "$port" "$IQN" 0 "$@"
}
decode() { python3 "$INTEROP_DIR/alua_decode.py" "$1"; }
rtpg() { cmd "$1" a30a000000000000100000 --in 4096 | decode rtpg; }

say "check: standard INQUIRY reports TPGS=1 (implicit ALUA) on both gateways"
for p in "$P1" "$P2"; do
	got=$(cmd "$p" 120000006000 --in 96 | decode inquiry)
	[[ "$got" == tpgs=1 ]] || fail "port $p: INQUIRY says $got, expected tpgs=1"
done
if command -v iscsi-inq >/dev/null; then
	inq=$(run_to 30 iscsi-inq "iscsi://127.0.0.1:$P2/$IQN/0")
	grep -iE 'tpgs' <<<"$inq" | head -1 | sed 's/^/  iscsi-inq: /'
	grep -qiE 'TPGS:?[[:space:]]*1' <<<"$inq" || fail "iscsi-inq through gateway 2 does not show TPGS 1"
fi

say "check: VPD 0x83: the same LU designator, each gateway its own port group and relative port"
v1=$(cmd "$P1" 120183100000 --in 4096 | decode vpd83)
v2=$(cmd "$P2" 120183100000 --in 4096 | decode vpd83)
say "gateway 1: $(echo $v1)"
say "gateway 2: $(echo $v2)"
[[ "$(grep lu-naa <<<"$v1")" == "$(grep lu-naa <<<"$v2")" && -n "$(grep lu-naa <<<"$v1")" ]] ||
	fail "the LU designators differ (or are missing)"
grep -qx 'tpg=1' <<<"$v1" && grep -qx 'relport=1' <<<"$v1" || fail "gateway 1 ports: $v1"
grep -qx 'tpg=2' <<<"$v2" && grep -qx 'relport=2' <<<"$v2" || fail "gateway 2 ports: $v2"

say "check: REPORT TARGET PORT GROUPS lists both groups on both gateways, gateway 1 (the lowest) active/optimized"
r1=$(rtpg "$P1")
r2=$(rtpg "$P2")
say "gateway 1: $(echo $r1)"
say "gateway 2: $(echo $r2)"
grep -q '^group=1 state=0 .* ports=1$' <<<"$r1" && grep -q '^group=2 state=1 .* ports=2$' <<<"$r1" ||
	fail "gateway 1 RTPG: $r1"
grep -q '^group=1 state=0 .* ports=1$' <<<"$r2" && grep -q '^group=2 state=1 .* ports=2$' <<<"$r2" ||
	fail "gateway 2 RTPG: $r2"

say "check: SendTargets through either gateway lists both portals with their group tags"
for p in "$P1" "$P2"; do
	st=$(printf 'sendtargets\nquit\n' | run_to 30 python3 "$INTEROP_DIR/scsi_session.py" 127.0.0.1 "$p" "" --discovery)
	grep -q "127.0.0.1:$P1,1" <<<"$st" && grep -q "127.0.0.1:$P2,2" <<<"$st" ||
		fail "SendTargets through $p: $st"
done

say "check: libiscsi through each gateway"
run_test_cu SCSI.Inquiry "iscsi://127.0.0.1:$P2/$IQN/0"
run_test_cu SCSI.ReportSupportedOpcodes "iscsi://127.0.0.1:$P1/$IQN/0"

say "check: gateway 2 killed: gateway 1 reports it unavailable and raises 2Ah/06h on its nexus"
mkfifo "$TEST_DIR/in"
python3 "$INTEROP_DIR/scsi_session.py" 127.0.0.1 "$P1" "$IQN" <"$TEST_DIR/in" >"$TEST_DIR/out" 2>&1 &
BG_PIDS+=("$!")
exec 3>"$TEST_DIR/in"
ask() { # LINE: sends it, prints the next answer line
	local before
	before=$(wc -l <"$TEST_DIR/out")
	echo "$1" >&3
	for ((i = 0; i < 100; i++)); do
		if (($(wc -l <"$TEST_DIR/out") > before)); then
			tail -n +"$((before + 1))" "$TEST_DIR/out" | head -1
			return 0
		fi
		sleep 0.1
	done
	fail "no answer to '$1' from the held session: $(cat "$TEST_DIR/out")"
}
for ((i = 0; i < 50; i++)); do
	grep -q ready "$TEST_DIR/out" && break
	sleep 0.1
done
for ((i = 0; i < 5; i++)); do
	a=$(ask "tur 0")
	[[ "$a" == status=0x00* ]] && break
done
[[ "$a" == status=0x00* ]] || fail "the held session never got GOOD: $a"
kill -KILL "$GW2_PID"
ua=""
for ((i = 0; i < 40; i++)); do
	a=$(ask "tur 0")
	if [[ "$a" == *"asc=0x2a ascq=0x06"* ]]; then
		ua=$a
		break
	fi
	sleep 0.25
done
[[ -n "$ua" ]] || fail "no ASYMMETRIC ACCESS STATE CHANGED within 10s of killing gateway 2 (last: $a)"
say "unit attention: $ua"
r1=$(rtpg "$P1")
say "gateway 1: $(echo $r1)"
grep -q '^group=2 state=3 ' <<<"$r1" || fail "gateway 2 not unavailable in gateway 1's RTPG: $r1"

say "check: gateway 2 back: active/non-optimized again"
start_gw2
ok=""
for ((i = 0; i < 40; i++)); do
	r1=$(rtpg "$P1")
	if grep -q '^group=2 state=1 ' <<<"$r1"; then
		ok=1
		break
	fi
	sleep 0.25
done
[[ -n "$ok" ]] || fail "gateway 2 still not active/non-optimized in gateway 1's RTPG: $r1"
echo quit >&3
exec 3>&-

say "check: a gateway with probes running stops cleanly on SIGTERM"
kill -TERM "$GW2_PID"
rc=0
timeout "$STOP_TIMEOUT" tail --pid="$GW2_PID" -f /dev/null || fail "gateway 2 did not stop within ${STOP_TIMEOUT}s"
wait "$GW2_PID" || rc=$?
((rc == 0)) || fail "gateway 2 exited with status $rc: $(tail -5 "$TEST_DIR/gw2.log")"
if report=$(sanitizer_report "$TEST_DIR/gw2.log"); then
	fail "gateway 2 reported a sanitizer error: $report"
fi

say "check: a lone target keeps TPGS=0 and has no REPORT TARGET PORT GROUPS"
stop_target
P3=$(free_port)
start_target --listen "127.0.0.1:$P3" --target "$IQN" --lun "$IMG"
got=$(cmd "$P3" 120000006000 --in 96 | decode inquiry)
[[ "$got" == tpgs=0 ]] || fail "lone target INQUIRY: $got"
cmd "$P3" a30a000000000000100000 --in 4096 | grep -q '^sense=' || fail "lone target answered RTPG"
say "PASS"
