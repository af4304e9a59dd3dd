#!/usr/bin/env bash
# Liveness: the target pings an idle initiator with NOP-In (a Target Transfer Tag asking for an
# answer) every nop-interval seconds; an initiator that answers keeps its session, one that goes
# silent is dropped after nop-timeout seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 jq
[[ "$TARGET_IMPL" == isthmus ]] || skip "uses isthmus-target's nop settings and management socket"

IQN=iqn.2026-11.org.isthmus:nop
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
CONF_GLOBAL=$'nop-interval = 1\nnop-timeout = 3' one_target_conf "$TEST_DIR/t.conf" "$IQN" "lun 0 = memory,size=8M"
start_target --config "$TEST_DIR/t.conf"

# Two idle initiators: one answers pings, one never reads its socket again.
export INTEROP_DIR
python3 - 127.0.0.1 "$PORT" "$IQN" "$TEST_DIR" <<'PY' &
import os, struct, sys, time
sys.path.insert(0, os.environ["INTEROP_DIR"])
import pdu_abuse
host, port, iqn, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:answers"
good = pdu_abuse.login(host, port, iqn, isid=bytes.fromhex("400000000011"))
pdu_abuse.INITIATOR = "iqn.2026-11.org.isthmus:silent"
silent = pdu_abuse.login(host, port, iqn, isid=bytes.fromhex("400000000012"))
good.settimeout(1)
pings = 0
deadline = time.time() + 8
while time.time() < deadline:
    try:
        h, d = pdu_abuse.recv_pdu(good)
    except OSError:
        continue
    if h is None:
        break
    if h[0] & 0x3F == 0x20 and h[20:24] != b"\xff\xff\xff\xff":
        pings += 1
        rest = h[20:24] + struct.pack(">II", 0, 0) + b"\0" * 16
        good.sendall(pdu_abuse.bhs(0x00, 0x80, True, 0, 0, h[8:16], 0xFFFFFFFF, rest))
open(os.path.join(tmp, "pings"), "w").write(str(pings))
time.sleep(2)
PY
CLIENT=$!
BG_PIDS+=("$CLIENT")
sessions() { "$ISTHMUS_BIN/isthmus" target --socket "$SOCK" --json session list | jq -r '.[].initiator_iqn' | sort | tr '\n' ' '; }
seen_both=0
for _ in $(seq 1 40); do
	[[ "$(sessions)" == "iqn.2026-11.org.isthmus:answers iqn.2026-11.org.isthmus:silent " ]] && { seen_both=1; break; }
	sleep 0.1
done
((seen_both)) || fail "both idle sessions never appeared: $(sessions)"
sleep 6.5
left=$(sessions)
[[ "$left" == "iqn.2026-11.org.isthmus:answers " ]] || fail "after 6.5 s of silence the sessions are: '$left'"
grep -q "did not answer NOP-In pings" "$TARGET_LOG" || fail "no log line for the dropped connection"
wait "$CLIENT" || true
pings=$(cat "$TEST_DIR/pings" 2>/dev/null || echo 0)
((pings >= 3)) || fail "the answering initiator saw $pings pings in 8 s, want at least 3"
say "ok: $pings pings answered, that session kept; the silent one dropped within nop-timeout"
stop_target
say "PASS"
