#!/usr/bin/env bash
# isthmus logins with CHAP: one-way and mutual, credentials from the URL and from options, every
# CHAP algorithm the target takes, digests on top; wrong secrets fail with a clear one-line error
# and a non-zero exit. With TARGET_IMPL=tgtd only MD5 is offered (tgtd chooses SHA-256 and then
# cannot check a 32-byte response).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3

use_cli

IQN=iqn.2026-11.org.isthmus:inichap
PORT=$(free_port)
HP=127.0.0.1:$PORT
cat >"$TEST_DIR/target.conf" <<-CONF
[portal-group 1]
listen = $HP

[target $IQN]
lun 0 = memory,size=16M
chap-user = alice
chap-secret = alice-secret-12
mutual-user = tgtname
mutual-secret = target-secret-34
CONF
start_target --config "$TEST_DIR/target.conf"
ini() { run_to "$CLIENT_TIMEOUT" "$INI" "$@"; }
lun=$(map_lun 0)
ALGS=(md5 sha1 sha256 sha3-256)
[[ "$TARGET_IMPL" == tgtd || "$TARGET_IMPL" == istgt ]] && ALGS=(md5)
A=(--chap-alg "${ALGS[0]}")

expect_fail() { # expect_fail PATTERN ARGS...
	local pat=$1 rc=0 out
	shift
	out=$(ini "$@" 2>&1) || rc=$?
	((rc != 0)) || fail "isthmus $* succeeded, want a failure"
	[[ $(wc -l <<<"$out") == 1 ]] || fail "isthmus $*: error is not one line: $out"
	grep -q -- "$pat" <<<"$out" || fail "isthmus $*: error '$out' lacks '$pat'"
	say "ok: refused as expected: $out"
}

# A target that requires CHAP refuses an initiator offering none: by status 0x0201, or (istgt) by
# answering AuthMethod=Reject, which the library reports as such.
NOAUTH='login failed: authentication failure (0x0201)'
has_quirk auth-reject-key && NOAUTH='AuthMethod=Reject'
expect_fail "$NOAUTH" readcapacity "iscsi://$HP/$IQN/$lun"
expect_fail 'login failed: authentication failure (0x0201)' readcapacity "iscsi://alice%wrong-secret-00@$HP/$IQN/$lun" "${A[@]}"
expect_fail 'login failed: authentication failure (0x0201)' readcapacity "iscsi://mallory%alice-secret-12@$HP/$IQN/$lun" "${A[@]}"

for alg in "${ALGS[@]}"; do
	out=$(ini readcapacity "iscsi://alice%alice-secret-12@$HP/$IQN/$lun" --chap-alg "$alg" --json) ||
		fail "one-way CHAP ($alg): $out"
	out=$(ini readcapacity "iscsi://alice%alice-secret-12@$HP/$IQN/$lun?target_user=tgtname&target_password=target-secret-34" \
		--chap-alg "$alg" --json) || fail "mutual CHAP ($alg): $out"
	say "ok: one-way and mutual CHAP with $alg"
done
out=$(ini readcapacity "iscsi://$HP/$IQN/$lun" --chap-user alice --chap-secret alice-secret-12 \
	--mutual-user tgtname --mutual-secret target-secret-34 "${A[@]}" --header-digest prefer --data-digest prefer) ||
	fail "mutual CHAP from options with digests: $out"
say "ok: mutual CHAP from options, digests offered"
expect_fail 'login failed: CHAP' readcapacity "iscsi://alice%alice-secret-12@$HP/$IQN/$lun?target_user=tgtname&target_password=not-the-secret" "${A[@]}"
expect_fail 'login failed: CHAP' readcapacity "iscsi://alice%alice-secret-12@$HP/$IQN/$lun?target_user=someone&target_password=target-secret-34" "${A[@]}"

stop_target
say "PASS"
