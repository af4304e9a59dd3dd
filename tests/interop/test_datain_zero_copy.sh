#!/usr/bin/env bash
# Data-In sent from the store's file by splice (zero-copy-reads on, no DataDigest,
# ErrorRecoveryLevel 0, reads of at least 64 KiB from a file whose reads never wait) carries
# exactly what the copying path does:
#   1. raw-PDU reads (datain_layout.py) of a tmpfs LUN with MaxRecvDataSegmentLength 8192,
#      5001 (odd: padded segments) and 262144 against MaxBurstLength 65536 and 262144: every
#      PDU's length, offset, DataSN, F and S bits, the residual of an underflow and an overflow,
#      and the data itself, byte for byte against the file, several reads in flight at once
#   2. the target's stats count those reads' bytes in zero_copy_bytes; the same reads of a LUN on
#      a file system that can wait (disk) are copied and count nothing there
#   3. libiscsi's whole iscsi-test-cu suite (--test=ALL, multipath through a second session)
#      passes against a 64 MiB tmpfs LUN, whose large reads go by splice
#   4. a target started without --zero-copy-reads copies (zero_copy_bytes stays 0)
#   5. a target with no descriptors left for a connection's splice pipe copies those reads
#      instead (same data and layout, zero_copy_bytes 0) and keeps the connection
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 jq
[[ "$TARGET_IMPL" == isthmus ]] || skip "zero-copy Data-In is isthmus-target's"
[[ "$(stat -f -c %T /dev/shm)" == tmpfs ]] || skip "/dev/shm is not a tmpfs here"

IQN=iqn.2026-11.org.isthmus:zerocopy
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
SHM=$(mktemp -d /dev/shm/isthmus-zc.XXXXXX)
trap 'rc=$?; rm -rf "$SHM"; (exit $rc); lib_cleanup' EXIT
head -c $((8 * 1024 * 1024)) /dev/urandom >"$SHM/lun0.img"
DISK=$TEST_DIR/lun1.img
cp "$SHM/lun0.img" "$DISK"
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$SHM/lun0.img" --lun "$DISK" \
	--lun "$SHM/lun2.img,size=64M" --mgmt-socket "$SOCK" --zero-copy-reads
zc_bytes() { "$ISTHMUS_BIN/isthmus" target --socket "$SOCK" --json stats | jq -r .zero_copy_bytes; }

# ---- 1. the PDUs and the data --------------------------------------------------------------
for combo in "8192 65536" "5001 65536" "262144 262144"; do
	read -r mrdsl burst <<<"$combo"
	say "checking: Data-In layout and data of a tmpfs LUN, MaxRecvDataSegmentLength $mrdsl, MaxBurstLength $burst"
	out=$(run_to 120 python3 "$INTEROP_DIR/datain_layout.py" 127.0.0.1 "$PORT" "$IQN" 0 "$SHM/lun0.img" \
		--mrdsl "$mrdsl" --maxburst "$burst" 2>&1) || fail "layout ($mrdsl/$burst): $out"
	say "ok: $(grep -c '^ok:' <<<"$out") reads as the file holds them, PDUs as negotiated"
done

# ---- 2. which reads went without a copy ------------------------------------------------------
z0=$(zc_bytes)
say "checking: those reads went by splice (zero_copy_bytes $z0)"
# Per pass, the reads of 64 KiB and more: 1 MiB, 128 KiB, 64 KiB, 1 MiB, 128 KiB (overflow), twice.
want=$((3 * 2 * (1048576 + 131072 + 65536 + 1048576 + 131072)))
((z0 == want)) || fail "zero_copy_bytes $z0 after the tmpfs reads, expected $want (the reads under 64 KiB copied)"
say "ok: $z0 bytes, exactly the reads of 64 KiB and more"
say "checking: the same reads of a LUN on a file system that may wait are copied"
if [[ "$(stat -f -c %T "$TEST_DIR")" == tmpfs ]]; then
	note "the test directory is a tmpfs: no file system that waits to compare with"
else
	out=$(run_to 120 python3 "$INTEROP_DIR/datain_layout.py" 127.0.0.1 "$PORT" "$IQN" 1 "$DISK" \
		--mrdsl 8192 --maxburst 65536 2>&1) || fail "layout of the disk LUN: $out"
	z1=$(zc_bytes)
	((z1 == z0)) || fail "zero_copy_bytes went from $z0 to $z1 for reads of a disk-backed LUN"
	say "ok: data and layout as from tmpfs, zero_copy_bytes unchanged"
fi

# ---- 3. libiscsi's suite ---------------------------------------------------------------------
say "checking: iscsi-test-cu --test=ALL against a 64 MiB tmpfs LUN"
z2=$(zc_bytes)
URL2=$(lun_url "127.0.0.1:$PORT" "$IQN" 2)
CU_TIMEOUT=${CU_TIMEOUT:-600} run_test_cu ALL "$URL2" "$URL2"
z3=$(zc_bytes)
((z3 > z2)) || fail "the suite's reads never went by splice (zero_copy_bytes stayed at $z2)"
say "ok: the whole suite passes, $((z3 - z2)) bytes of its reads went by splice"

# ---- 4. off unless configured ------------------------------------------------------------------
say "checking: without --zero-copy-reads the same reads are copied"
stop_target
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$SHM/lun0.img" --mgmt-socket "$SOCK"
out=$(run_to 120 python3 "$INTEROP_DIR/datain_layout.py" 127.0.0.1 "$PORT" "$IQN" 0 "$SHM/lun0.img" \
	--mrdsl 8192 --maxburst 65536 2>&1) || fail "layout without zero-copy: $out"
z4=$(zc_bytes)
((z4 == 0)) || fail "zero_copy_bytes $z4 on a target without --zero-copy-reads"
say "ok: same data and layout, zero_copy_bytes 0"

# ---- 5. no descriptors for the pipe ------------------------------------------------------------
say "checking: without a descriptor to spare for the splice pipe, large reads are copied"
zc_bytes >/dev/null # the management connection has come and gone: its descriptors are free
# The limit that leaves the idle target exactly one free descriptor number: the iSCSI
# connection gets it, the connection's pipe (two) cannot be made.
limit=0 free=0
while ((free < 2 && limit < 4096)); do
	[[ -e "/proc/$TARGET_PID/fd/$limit" ]] || free=$((free + 1))
	((free == 2)) || limit=$((limit + 1))
done
stop_target
mkdir -p "$TEST_DIR/limited"
printf '#!/bin/sh\nulimit -n %s && exec "%s/isthmus-target" "$@"\n' "$limit" "$ISTHMUS_BIN" \
	>"$TEST_DIR/limited/isthmus-target"
chmod +x "$TEST_DIR/limited/isthmus-target"
ISTHMUS_BIN=$TEST_DIR/limited start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "$SHM/lun0.img" \
	--mgmt-socket "$SOCK" --zero-copy-reads
out=$(run_to 120 python3 "$INTEROP_DIR/datain_layout.py" 127.0.0.1 "$PORT" "$IQN" 0 "$SHM/lun0.img" \
	--mrdsl 8192 --maxburst 65536 2>&1) || fail "layout with the descriptor limit at $limit: $out"
z5=$(zc_bytes)
((z5 == 0)) || fail "zero_copy_bytes $z5 although no pipe could be made"
say "ok: $(grep -c '^ok:' <<<"$out") reads as the file holds them, copied (zero_copy_bytes 0)"
say "ok: zero-copy Data-In checked"
