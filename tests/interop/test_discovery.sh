#!/usr/bin/env bash
# SendTargets discovery with iscsi-ls.
#   1. A target listening on 127.0.0.1:P and [::1]:P: discovery through either address lists
#      the target with both portals; iscsi-ls -s then logs in through every listed portal and
#      sees the LUN.
#   2. Discovery CHAP configured: discovery without credentials and with a wrong secret fails;
#      with the right secret it lists the target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-ls

IQN=iqn.2026-11.org.isthmus:t1
PORT=$(free_port)
V4=127.0.0.1:$PORT
V6="[::1]:$PORT"
use_v6=1
have_ipv6 || { use_v6=0; note "no IPv6 loopback here: IPv6 checks left out"; }

write_config() { # file [discovery-chap]
	{
		echo "[global]"
		echo "state-dir = $TEST_DIR/state"
		if [[ -n "${2:-}" ]]; then
			echo "discovery-chap-user = disc"
			echo "discovery-chap-secret = discsecret12"
		fi
		echo "[portal-group 1]"
		echo "listen = $V4"
		((use_v6)) && echo "listen = $V6"
		echo "[target $IQN]"
		echo "portal-group = 1"
		echo "lun 0 = $TEST_DIR/disk.img,size=64M"
	} >"$1"
}
mkdir -p "$TEST_DIR/state"

# --- 1. both portals ----------------------------------------------------------
write_config "$TEST_DIR/plain.conf"
start_target --config "$TEST_DIR/plain.conf"

check_listing() { # via-portal
	local via=$1 out fam_ok
	out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls "iscsi://$via" 2>&1) || fail "iscsi-ls via $via: $out"
	printf '%s\n' "$out" | sed "s/^/    via $via: /"
	local -a want=("$V4")
	((use_v6)) && want+=("$V6")
	local p
	for p in "${want[@]}"; do
		if grep -Fq "Target:$IQN Portal:$p," <<<"$out"; then
			continue
		fi
		if has_quirk sendtargets-per-family && [[ "${p:0:1}" != "${via:0:1}" ]]; then
			note "$TARGET_IMPL lists only portals of the connection's address family: $p not required via $via"
			continue
		fi
		fail "discovery via $via does not list $IQN at portal $p"
	done
	if grep -v "^Target:$IQN Portal:" <<<"$out" | grep -q .; then
		fail "discovery via $via lists unexpected entries"
	fi
}
check_listing "$V4"
((use_v6)) && check_listing "$V6"
say "ok: SendTargets lists $IQN with its portals"

# iscsi-ls -s logs into each listed portal and reports the LUN there.
out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls -s "iscsi://$V4" 2>&1) || fail "iscsi-ls -s: $out"
n=$(grep -c "Type:DIRECT_ACCESS" <<<"$out" || true)
nportals=$(grep -c "^Target:$IQN Portal:" <<<"$out" || true)
((n == nportals && n >= 1)) || fail "iscsi-ls -s: $n disks for $nportals portals: $out"
say "ok: login through every listed portal ($nportals) finds the LUN"
stop_target

# --- 2. discovery CHAP -------------------------------------------------------
write_config "$TEST_DIR/chap.conf" chap
start_target --config "$TEST_DIR/chap.conf"
if out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls "iscsi://$V4" 2>&1); then
	fail "discovery without CHAP succeeded although discovery CHAP is required: $out"
fi
if out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls "iscsi://disc%wrongsecret99@$V4" 2>&1); then
	fail "discovery with a wrong CHAP secret succeeded: $out"
fi
if out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls "iscsi://other%discsecret12@$V4" 2>&1); then
	fail "discovery with an unknown CHAP user succeeded: $out"
fi
out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls "iscsi://disc%discsecret12@$V4" 2>&1) || fail "discovery with the right CHAP secret failed: $out"
grep -Fq "Target:$IQN Portal:$V4," <<<"$out" || fail "discovery with CHAP does not list $IQN at $V4: $out"
if ((use_v6)); then
	out=$(run_to "$CLIENT_TIMEOUT" iscsi-ls "iscsi://disc%discsecret12@$V6" 2>&1) || fail "discovery with CHAP via $V6 failed: $out"
	grep -Fq "Target:$IQN Portal:" <<<"$out" || fail "discovery with CHAP via $V6 does not list $IQN"
fi
stop_target
say "ok: discovery CHAP: refused without or with wrong credentials, works with the right ones"
say "PASS"
