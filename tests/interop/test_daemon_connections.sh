#!/usr/bin/env bash
# isthmus-initiator: add and remove a connection during I/O through the FUSE file (acceptance 5).
# tgtd allows one connection per session, so this needs isthmus-target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ "$TARGET_IMPL" == isthmus ]] || skip "multi-connection sessions need isthmus-target (tgtd has MaxConnections=1)"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$(dirname "$0")/daemon_helpers.bash"

IQN=iqn.2026-11.org.isthmus:dmnconns
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=64M"
dmn_start
SID=$(ism login "$IQN" --portal "$HP" | tail -n1) || fail "login"
DEV=$DMN_DEV/$SID/lun0

export WRITER_SHA=$TEST_DIR/w.sha
NB=256
bg_start writer "$DEV" 4000 "$NB" 1
WPID=$BG_LAST
sleep 0.5
ism session add-connection "$SID" --portal "$HP" --json >"$TEST_DIR/add.json" || fail "add-connection: $(cat "$TEST_DIR/add.json")"
CID=$(jq -r .cid "$TEST_DIR/add.json")
[[ $(sess_field "$SID" .number_of_connections) == 2 ]] || fail "number_of_connections after add: $(sess_field "$SID" .number_of_connections)"
[[ $(sess_field "$SID" '.connections | map(.cid) | unique | length') == 2 ]] || fail "CIDs not distinct"
say "ok: connection $CID added during I/O"
sleep 1
alive "$WPID" || note "writer finished before the removal"
FIRST=$(sess_field "$SID" "[.connections[] | select(.cid != $CID)][0].cid")
ism session remove-connection "$SID" "$FIRST" >/dev/null || fail "remove-connection $FIRST"
for _ in $(seq 25); do [[ $(sess_field "$SID" .number_of_connections) == 1 ]] && break; sleep 0.2; done
[[ $(sess_field "$SID" .number_of_connections) == 1 ]] || fail "connection not removed"
[[ $(sess_field "$SID" '.connections[0].cid') == "$CID" ]] || fail "the wrong connection is left"
say "ok: leading connection $FIRST removed during I/O; $CID carries on"
if ism session remove-connection "$SID" "$CID" >/dev/null 2>&1; then fail "removed the last connection"; fi
rc=0
wait "$WPID" || rc=$?
((rc == 0)) || fail "writer failed ($rc)"
[[ $(region_sha "$DEV" "$NB") == $(cat "$WRITER_SHA") ]] || fail "data differs after the connection changes"
[[ $(sess_field "$SID" .state) == connected ]] || fail "session state"
ism logout "$SID" >/dev/null || fail "logout"
say "PASS"
