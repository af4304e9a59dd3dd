#!/usr/bin/env bash
# Data round trip: 64 MiB of random data written to a 64 MiB LUN and read back must be
# identical (sha256), and must land in the LUN's backing file unchanged.
# Cases (each against a freshly started target):
#   plain          qemu-img, no CHAP, digests off        (login reply must say HeaderDigest=None)
#   hdigest        qemu-img, header-digest=crc32c        (login reply must say HeaderDigest=CRC32C)
#   chap           qemu-img, one-way CHAP (user/password-secret); a wrong secret must fail
#   mutual-chap    iscsi-xfer (libiscsi), mutual CHAP + header digest; a wrong target
#                  secret must make the initiator refuse the target
# Data digests: libiscsi (and so QEMU) always offers DataDigest=None, so no initiator here
# can exercise them; the digest cases cover header digests only.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need qemu-img sha256sum openssl cc

IQN=iqn.2026-11.org.isthmus:rt
SIZE=$((64 * 1024 * 1024))
SRC=$TEST_DIR/src.bin
openssl rand -out "$SRC" "$SIZE"
WANT=$(sha256sum <"$SRC" | cut -d' ' -f1)

# qemu-img's json/--image-opts form of the iscsi driver options.
qemu_opts() { # HP LUN [extra,opts]
	split_hostport "$1"
	local o="driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=$1,file.target=$IQN,file.lun=$(map_lun "$2")"
	[[ -z "${3:-}" ]] || o+=",$3"
	echo "$o"
}

# Negotiated HeaderDigest as libiscsi logs the target's login reply.
negotiated_hdigest() { # log file
	sed -nE 's/.*TargetLoginReply: HeaderDigest=([A-Za-z0-9]+).*/\1/p' "$1" | tail -n1
}

check_backing() { # image
	local got
	got=$(head -c "$SIZE" "$1" | sha256sum | cut -d' ' -f1)
	[[ "$got" == "$WANT" ]] || fail "backing file $1 does not hold the written data"
}

run_qemu_case() { # name want-digest extra-opts [object args...]
	local name=$1 want_digest=$2 extra=$3
	shift 3
	local img=$TEST_DIR/$name.img port hp dst=$TEST_DIR/$name.out log=$TEST_DIR/$name.qemu.log
	port=$(free_port)
	hp=127.0.0.1:$port
	start_target --config "$(write_config "$name" "$hp" "$img")"
	local opts
	opts=$(qemu_opts "$hp" 0 "$extra")
	say "$name: writing 64 MiB with qemu-img convert -n"
	LIBISCSI_DEBUG=6 run_to "$CLIENT_TIMEOUT" qemu-img convert -n -f raw "$@" --target-image-opts \
		"$SRC" "$opts" >"$log" 2>&1 || fail "$name: qemu-img write failed: $(grep -v libiscsi "$log" | tail -5)"
	local got_digest
	got_digest=$(negotiated_hdigest "$log")
	[[ "$got_digest" == "$want_digest" ]] || fail "$name: negotiated HeaderDigest '$got_digest', want '$want_digest'"
	say "$name: reading back with qemu-img convert"
	run_to "$CLIENT_TIMEOUT" qemu-img convert -O raw "$@" --image-opts "$opts" "$dst" >>"$log" 2>&1 ||
		fail "$name: qemu-img read failed: $(grep -v libiscsi "$log" | tail -5)"
	local got
	got=$(head -c "$SIZE" "$dst" | sha256sum | cut -d' ' -f1)
	[[ "$(stat -c %s "$dst")" == "$SIZE" ]] || fail "$name: read back $(stat -c %s "$dst") bytes, want $SIZE"
	[[ "$got" == "$WANT" ]] || fail "$name: data read back differs (sha256 $got, want $WANT)"
	rm -f "$dst"
	stop_target
	check_backing "$img"
	say "ok: $name: 64 MiB round trip identical, HeaderDigest=$got_digest"
}

# write_config NAME HOST:PORT IMAGE -> path of a config file for the case
CHAP_USER=alice CHAP_SECRET=alicesecret12
MUT_USER=tgt1 MUT_SECRET=tgtsecret1234
write_config() {
	local name=$1 hp=$2 img=$3 cfg=$TEST_DIR/$1.conf
	{
		echo "[global]"
		echo "state-dir = $TEST_DIR/state-$name"
		echo "[portal-group 1]"
		echo "listen = $hp"
		echo "[target $IQN]"
		echo "portal-group = 1"
		echo "lun 0 = $img,size=64M"
		case "$name" in
		chap*)
			echo "chap-user = $CHAP_USER"
			echo "chap-secret = $CHAP_SECRET"
			;;
		mutual*)
			echo "chap-user = $CHAP_USER"
			echo "chap-secret = $CHAP_SECRET"
			echo "mutual-user = $MUT_USER"
			echo "mutual-secret = $MUT_SECRET"
			;;
		esac
	} >"$cfg"
	mkdir -p "$TEST_DIR/state-$name"
	echo "$cfg"
}

run_qemu_case plain None "file.header-digest=none"
run_qemu_case hdigest CRC32C "file.header-digest=crc32c"
run_qemu_case chap None "file.header-digest=none,file.user=$CHAP_USER,file.password-secret=chapsec" \
	--object "secret,id=chapsec,data=$CHAP_SECRET"

# One-way CHAP with a wrong secret must not get in.
port=$(free_port)
hp=127.0.0.1:$port
start_target --config "$(write_config chap-wrong "$hp" "$TEST_DIR/chap-wrong.img")"
if run_to "$CLIENT_TIMEOUT" qemu-img info --image-opts \
	"$(qemu_opts "$hp" 0 "file.user=$CHAP_USER,file.password-secret=bad")" \
	--object "secret,id=bad,data=wrongsecret99" >"$TEST_DIR/chap-wrong.log" 2>&1; then
	fail "chap-wrong: qemu-img logged in with a wrong CHAP secret"
fi
if run_to "$CLIENT_TIMEOUT" qemu-img info --image-opts "$(qemu_opts "$hp" 0)" >>"$TEST_DIR/chap-wrong.log" 2>&1; then
	fail "chap-wrong: qemu-img logged in without CHAP to a target that requires it"
fi
stop_target
say "ok: chap-wrong: wrong secret and missing CHAP are refused"

# Mutual CHAP: QEMU cannot authenticate the target, so use iscsi-xfer (libiscsi URL syntax).
XFER=$(iscsi_xfer)
port=$(free_port)
hp=127.0.0.1:$port
img=$TEST_DIR/mutual.img
start_target --config "$(write_config mutual "$hp" "$img")"
url=$(lun_url "$hp" "$IQN" 0 "$CHAP_USER%$CHAP_SECRET" \
	"target_user=$MUT_USER&target_password=$MUT_SECRET&header_digest=crc32c")
LIBISCSI_DEBUG=6 run_to "$CLIENT_TIMEOUT" "$XFER" write "$url" "$SRC" >"$TEST_DIR/mutual.log" 2>&1 ||
	fail "mutual: write failed: $(grep -v '^libiscsi:[3-9]' "$TEST_DIR/mutual.log" | tail -5)"
grep -q "TargetLoginReply: CHAP_N=$MUT_USER" "$TEST_DIR/mutual.log" || fail "mutual: the target did not answer the initiator's challenge as $MUT_USER"
[[ "$(negotiated_hdigest "$TEST_DIR/mutual.log")" == CRC32C ]] || fail "mutual: HeaderDigest not CRC32C"
run_to "$CLIENT_TIMEOUT" "$XFER" read "$url" "$TEST_DIR/mutual.out" "$SIZE" >>"$TEST_DIR/mutual.log" 2>&1 ||
	fail "mutual: read failed: $(tail -5 "$TEST_DIR/mutual.log")"
[[ "$(sha256sum <"$TEST_DIR/mutual.out" | cut -d' ' -f1)" == "$WANT" ]] || fail "mutual: data read back differs"
rm -f "$TEST_DIR/mutual.out"
# The initiator must refuse a target that cannot prove the mutual secret.
bad=$(lun_url "$hp" "$IQN" 0 "$CHAP_USER%$CHAP_SECRET" "target_user=$MUT_USER&target_password=notthesecret1")
if run_to "$CLIENT_TIMEOUT" "$XFER" read "$bad" /dev/null 4096 >>"$TEST_DIR/mutual.log" 2>&1; then
	fail "mutual: initiator accepted the target with a wrong mutual secret"
fi
stop_target
check_backing "$img"
say "ok: mutual: 64 MiB round trip identical with mutual CHAP and HeaderDigest=CRC32C; wrong mutual secret refused"
say "PASS"
