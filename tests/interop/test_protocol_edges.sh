#!/usr/bin/env bash
# Two protocol edges checked with raw PDUs (protocol_edges.py) over real sockets:
#   1. a non-immediate SCSI command that the target rejects (a READ carrying immediate data)
#      still takes its CmdSN, so the commands numbered after it run instead of waiting forever
#      for the gap: rejected in order, rejected while a later command is held, and rejected
#      ahead of the expected CmdSN
#   2. a Login Request with both T and C set (RFC 7143 11.12.2: with T=1 the C bit MUST be 0) is
#      answered with a Login Response of status 0x0200 (initiator error), not a silent close
# Afterwards the target still serves a good client.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 iscsi-inq
[[ "$TARGET_IMPL" == isthmus ]] || skip "raw-PDU edges are aimed at isthmus-target"

IQN=iqn.2026-11.org.isthmus:edges
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "memory,size=16M"

for case in rejected-cmdsn login-t-and-c; do
	check_case "$case" 60 python3 "$INTEROP_DIR/protocol_edges.py" 127.0.0.1 "$PORT" "$IQN" "$case"
done
out=$(run_to "$CLIENT_TIMEOUT" iscsi-inq "$(lun_url "$HP" "$IQN" 0)" 2>&1) || fail "iscsi-inq afterwards: $out"
say "ok: the target still serves a good client"
stop_target
[[ "$TARGET_EXIT" == 0 ]] || fail "target exited with status $TARGET_EXIT after SIGTERM"
say "PASS"
