#!/usr/bin/env bash
# libiscsi's tools against a target with three LUNs:
#   LUN 0  64 MiB file the target creates (size=64M)
#   LUN 1  1 GiB sparse file that exists already, 4096-byte blocks (bs=4096)
#   LUN 2  64 MiB memory LUN
# Checks: iscsi-ls -s lists the target with its portal and each LUN as a disk of the
# right size; iscsi-inq reports a disk with the expected vendor/product; and
# iscsi-readcapacity16 reports the right block size and block count for each LUN.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-ls iscsi-inq iscsi-readcapacity16

IQN=iqn.2026-11.org.isthmus:tools
PORT=$(free_port)
HP=127.0.0.1:$PORT
truncate -s 1G "$TEST_DIR/big.img"

start_target --listen "$HP" --target "$IQN" \
	--lun "$TEST_DIR/lun0.img,size=64M" \
	--lun "$TEST_DIR/big.img,bs=4096" \
	--lun "memory,size=64M"

# lun, bytes, block size (0: the target's default, 512 or 4096)
CASES=("0 67108864 0" "1 1073741824 4096" "2 67108864 0")

# READ CAPACITY(16)
declare -A BS
for c in "${CASES[@]}"; do
	read -r lun bytes want_bs <<<"$c"
	url=$(lun_url "$HP" "$IQN" "$lun")
	out=$(run_to "$CLIENT_TIMEOUT" iscsi-readcapacity16 "$url" 2>&1) || fail "iscsi-readcapacity16 $url: $out"
	last=$(sed -nE 's/^RETURNED LOGICAL BLOCK ADDRESS:([0-9]+).*/\1/p' <<<"$out")
	bs=$(sed -nE 's/^LOGICAL BLOCK LENGTH IN BYTES:([0-9]+).*/\1/p' <<<"$out")
	[[ -n "$last" && -n "$bs" ]] || fail "LUN $lun: cannot parse iscsi-readcapacity16 output: $out"
	if ((want_bs)); then
		((bs == want_bs)) || fail "LUN $lun: block length $bs, want $want_bs"
	else
		((bs == 512 || bs == 4096)) || fail "LUN $lun: odd block length $bs"
	fi
	blocks=$((last + 1))
	((blocks * bs == bytes)) || fail "LUN $lun: $blocks blocks of $bs bytes = $((blocks * bs)), want $bytes"
	BS[$lun]=$bs
	say "ok: LUN $lun READ CAPACITY(16): $blocks blocks of $bs bytes"
done

# iscsi-ls -s: the target with its portal, and every LUN as a disk of the right size.
out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls -s "iscsi://$HP" 2>&1) || fail "iscsi-ls -s: $out"
printf '%s\n' "$out" | sed 's/^/    /'
grep -Eq "^Target:$IQN Portal:$HP,[0-9]+\$" <<<"$out" || fail "iscsi-ls does not list $IQN at $HP"
ndisks=$(grep -c 'Type:DIRECT_ACCESS' <<<"$out" || true)
((ndisks == ${#CASES[@]})) || fail "iscsi-ls lists $ndisks disks, want ${#CASES[@]}"
for c in "${CASES[@]}"; do
	read -r lun bytes _ <<<"$c"
	# iscsi-ls prints block size x last LBA (READ CAPACITY(10)), scaled down by 1024 while > 1024.
	size=$((bytes - BS[$lun]))
	units=(' ' k M G T)
	u=0
	while ((u < 4 && size > 1024)); do
		size=$((size / 1024))
		u=$((u + 1))
	done
	want="Lun:$(map_lun "$lun") +Type:DIRECT_ACCESS \(Size:$size${units[u]}\)"
	grep -Eq "^$want\$" <<<"$out" || fail "iscsi-ls: no line matching '$want'"
done
say "ok: iscsi-ls -s lists $IQN at $HP with ${#CASES[@]} disks of the right sizes"

# iscsi-inq: standard INQUIRY of each LUN.
for c in "${CASES[@]}"; do
	read -r lun _ _ <<<"$c"
	url=$(lun_url "$HP" "$IQN" "$lun")
	out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$url" 2>&1) || fail "iscsi-inq $url: $out"
	grep -q '^Peripheral Device Type:DIRECT_ACCESS' <<<"$out" || fail "LUN $lun is not a disk: $out"
	grep -q '^Peripheral Qualifier:CONNECTED' <<<"$out" || fail "LUN $lun not connected: $out"
	vendor=$(sed -nE 's/^Vendor:(.*)$/\1/p' <<<"$out" | sed -E 's/[[:space:]]+$//')
	product=$(sed -nE 's/^Product:(.*)$/\1/p' <<<"$out" | sed -E 's/[[:space:]]+$//')
	[[ "$vendor" == "$PEER_VENDOR" ]] || fail "LUN $lun vendor '$vendor', want '$PEER_VENDOR'"
	[[ "$product" == "$PEER_PRODUCT" ]] || fail "LUN $lun product '$product', want '$PEER_PRODUCT'"
	say "ok: LUN $lun INQUIRY: disk, vendor '$vendor', product '$product'"
done

stop_target
say "PASS"
