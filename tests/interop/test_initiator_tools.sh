#!/usr/bin/env bash
# isthmus discover / inquiry / readcapacity / reportluns against a target, checked against what
# libiscsi's iscsi-ls, iscsi-inq and iscsi-readcapacity16 report for the same target:
#   LUN 0  64 MiB file, LUN 1  32 MiB memory LUN with 4096-byte blocks
# Also: IPv6 and host-name portals, the kept initiator name, --json output, and clear one-line
# errors with a non-zero exit for a missing target and a closed port.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-ls iscsi-inq iscsi-readcapacity16 python3

use_cli

IQN=iqn.2026-11.org.isthmus:initools
PORT=$(free_port)
HP=127.0.0.1:$PORT
LISTEN=(--listen "$HP")
V6=0
if have_ipv6 && [[ "$TARGET_IMPL" == isthmus ]]; then
	LISTEN+=(--listen "[::1]:$PORT")
	V6=1
fi
start_target "${LISTEN[@]}" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=64M" --lun "memory,size=32M,bs=4096"

ini() { run_to "$CLIENT_TIMEOUT" "$INI" "$@"; }
# json FILE EXPR : evaluate a Python expression over the JSON object in FILE (bound to j)
json() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# --- discover ---------------------------------------------------------------------------------
ini discover "$HP" --json >"$TEST_DIR/disc.json" || fail "isthmus discover $HP: $(cat "$TEST_DIR/disc.json")"
ours=$(json "$TEST_DIR/disc.json" '"\n".join(sorted(t["name"]+" "+a for t in j["targets"] for a in t["addresses"]))')
[[ -n "$ours" ]] || fail "isthmus discover found no target"
grep -Eq "^$IQN $HP,[0-9]+\$" <<<"$ours" || fail "isthmus discover does not list $IQN at $HP: $ours"
if has_quirk no-libiscsi-discovery; then
	say "ok: discover lists $IQN at $HP (iscsi-ls cannot discover this peer, so no comparison)"
else
	theirs=$(run_to "$CLIENT_TIMEOUT" iscsi-ls "iscsi://$HP" | sed -nE 's/^Target:([^ ]+) Portal:(.*)$/\1 \2/p' | sort)
	[[ "$ours" == "$theirs" ]] || fail "discover disagrees with iscsi-ls: isthmus '$ours', iscsi-ls '$theirs'"
	say "ok: discover lists the same targets and portals as iscsi-ls: $(tr '\n' ' ' <<<"$ours")"
fi
human=$(ini discover "$HP") || fail "discover (human): $human"
grep -qx "$IQN" <<<"$human" || fail "human discover output lacks the target: $human"
# a host name portal, and the default port rule (explicit port here; default 3260 is unit-tested)
out=$(ini discover "localhost:$PORT") || fail "discover localhost:$PORT: $out"
grep -qx "$IQN" <<<"$out" || fail "discover via host name lacks the target: $out"
say "ok: discover through the host name localhost"

# --- readcapacity / inquiry per LUN -------------------------------------------------------------
for lun in 0 1; do
	url=$(lun_url "$HP" "$IQN" "$lun")
	ini readcapacity "$url" --json >"$TEST_DIR/rc.json" || fail "readcapacity $url: $(cat "$TEST_DIR/rc.json")"
	last=$(json "$TEST_DIR/rc.json" 'j["last_lba"]')
	bs=$(json "$TEST_DIR/rc.json" 'j["block_size"]')
	out=$(run_to "$CLIENT_TIMEOUT" iscsi-readcapacity16 "$url") || fail "iscsi-readcapacity16 $url: $out"
	t_last=$(sed -nE 's/^RETURNED LOGICAL BLOCK ADDRESS:([0-9]+).*/\1/p' <<<"$out")
	t_bs=$(sed -nE 's/^LOGICAL BLOCK LENGTH IN BYTES:([0-9]+).*/\1/p' <<<"$out")
	[[ "$last" == "$t_last" && "$bs" == "$t_bs" ]] ||
		fail "LUN $lun: isthmus says last LBA $last, $bs-byte blocks; iscsi-readcapacity16 says $t_last, $t_bs"
	say "ok: LUN $lun readcapacity: last LBA $last, block size $bs (same as iscsi-readcapacity16)"

	ini inquiry "$url" --json >"$TEST_DIR/inq.json" || fail "inquiry $url: $(cat "$TEST_DIR/inq.json")"
	out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$url") || fail "iscsi-inq $url: $out"
	t_vendor=$(sed -nE 's/^Vendor:(.*)$/\1/p' <<<"$out" | sed -E 's/[[:space:]]+$//')
	t_product=$(sed -nE 's/^Product:(.*)$/\1/p' <<<"$out" | sed -E 's/[[:space:]]+$//')
	t_type=$(sed -nE 's/^Peripheral Device Type:(.*)$/\1/p' <<<"$out")
	vendor=$(json "$TEST_DIR/inq.json" 'j["vendor"]')
	product=$(json "$TEST_DIR/inq.json" 'j["product"]')
	dtype=$(json "$TEST_DIR/inq.json" 'j["device_type_name"]')
	[[ "$vendor" == "$t_vendor" && "$product" == "$t_product" && "$dtype" == "$t_type" ]] ||
		fail "LUN $lun INQUIRY: isthmus '$vendor' '$product' $dtype; iscsi-inq '$t_vendor' '$t_product' $t_type"
	[[ "$vendor" == "$PEER_VENDOR" ]] || fail "LUN $lun vendor '$vendor', want '$PEER_VENDOR'"
	say "ok: LUN $lun inquiry: $dtype '$vendor' '$product' (same as iscsi-inq)"

	ini inquiry "$url" --page 0 --json >"$TEST_DIR/vpd0.json" || fail "inquiry --page 0: $(cat "$TEST_DIR/vpd0.json")"
	pages=$(json "$TEST_DIR/vpd0.json" '" ".join("0x%02x" % p for p in j["supported_pages"])')
	t_pages=$(run_to "$CLIENT_TIMEOUT" iscsi-inq -e 1 "$url" | sed -nE 's/^Page:(0x[0-9a-f]+).*/\1/p' | tr '\n' ' ' |
		sed 's/ $//')
	[[ "$pages" == "$t_pages" ]] || fail "LUN $lun VPD pages: isthmus '$pages', iscsi-inq '$t_pages'"
	for p in $pages; do
		ini inquiry "$url" --page "$p" >/dev/null || fail "LUN $lun: VPD page $p listed as supported but fails"
	done
	say "ok: LUN $lun VPD pages $pages (same as iscsi-inq), each readable"
done

# --- reportluns ---------------------------------------------------------------------------------
url=$(lun_url "$HP" "$IQN" 0)
ini reportluns "$url" --json >"$TEST_DIR/luns.json" || fail "reportluns: $(cat "$TEST_DIR/luns.json")"
ours=$(json "$TEST_DIR/luns.json" '" ".join(str(l) for l in j["luns"])')
want="$(map_lun 0) $(map_lun 1)"
has_quirk lun0-controller && want="0 $want"
if has_quirk no-libiscsi-discovery; then
	theirs=$want # iscsi-ls cannot list this peer: compare with the LUNs the test configured
else
	theirs=$(run_to "$CLIENT_TIMEOUT" iscsi-ls -s "iscsi://$HP" | sed -nE 's/^Lun:([0-9]+).*/\1/p' | sort -n -u | tr '\n' ' ' | sed 's/ $//')
fi
[[ "$ours" == "$want" ]] || fail "reportluns says '$ours', want '$want'"
[[ "$ours" == "$theirs" ]] || fail "reportluns '$ours' differs from iscsi-ls '$theirs'"
say "ok: reportluns: $ours (same as iscsi-ls)"

# --- IPv6 portal --------------------------------------------------------------------------------
if ((V6)); then
	url6=$(lun_url "[::1]:$PORT" "$IQN" 0)
	ini readcapacity "$url6" --json >"$TEST_DIR/rc6.json" || fail "readcapacity over IPv6: $(cat "$TEST_DIR/rc6.json")"
	[[ "$(json "$TEST_DIR/rc6.json" 'j["bytes"]')" == 67108864 ]] || fail "IPv6 readcapacity: wrong size"
	ini discover "[::1]:$PORT" >/dev/null || fail "discover over IPv6 failed"
	say "ok: readcapacity and discover over [::1]:$PORT"
else
	note "no IPv6 loopback (or tgtd): IPv6 portal not checked"
fi

# --- the generated initiator name is kept -------------------------------------------------------
[[ -s "$ISTHMUS_STATE_DIR/initiatorname" ]] || fail "no initiator name kept in $ISTHMUS_STATE_DIR"
name=$(cat "$ISTHMUS_STATE_DIR/initiatorname")
[[ "$name" == iqn.* ]] || fail "kept initiator name '$name' is not an iqn. name"
printf 'initiator-name = iqn.2026-11.org.isthmus:from-config\n' >"$TEST_DIR/ini.conf"
ISTHMUS_CONFIG=$TEST_DIR/ini.conf ini readcapacity "$url" >/dev/null || fail "readcapacity with ISTHMUS_CONFIG failed"
[[ "$(cat "$ISTHMUS_STATE_DIR/initiatorname")" == "$name" ]] || fail "initiator name file changed"
say "ok: initiator name $name generated once and kept; config file name accepted"

# --- errors: non-zero exit, one clear line ------------------------------------------------------
rc=0
out=$(ini readcapacity "$(lun_url "$HP" iqn.2026-11.org.isthmus:no-such-target 0)" 2>&1) || rc=$?
((rc != 0)) || fail "readcapacity of a missing target exited 0"
[[ $(wc -l <<<"$out") == 1 ]] || fail "error output is not one line: $out"
grep -q 'login failed: .*(0x02' <<<"$out" || fail "missing target: unclear error: $out"
say "ok: missing target: exit $rc, '$out'"
rc=0
out=$(ini --json readcapacity "$(lun_url "$HP" iqn.2026-11.org.isthmus:no-such-target 0)" 2>/dev/null) || rc=$?
((rc != 0)) || fail "--json error exited 0"
python3 -c 'import json,sys; assert "error" in json.loads(sys.argv[1])' "$out" || fail "--json error is not a JSON object: $out"
closed=$(free_port)
rc=0
out=$(ini readcapacity "$(lun_url "127.0.0.1:$closed" "$IQN" 0)" 2>&1) || rc=$?
((rc != 0)) || fail "readcapacity of a closed port exited 0"
grep -q 'Connection refused' <<<"$out" || fail "closed port: unclear error: $out"
say "ok: closed port: exit $rc, '$out'"
rc=0
out=$(ini inquiry "$url" --page 0xfe 2>&1) || rc=$?
((rc != 0)) || fail "INQUIRY of an unsupported VPD page exited 0"
if has_quirk check-condition-without-sense; then
	grep -q 'CHECK CONDITION' <<<"$out" || fail "unsupported VPD page: unclear error: $out"
else
	grep -q 'CHECK CONDITION, sense ILLEGAL REQUEST / INVALID FIELD IN CDB (0x24/0x00)' <<<"$out" ||
		fail "unsupported VPD page: unclear error: $out"
fi
say "ok: unsupported VPD page: '$out'"

stop_target
say "PASS"
