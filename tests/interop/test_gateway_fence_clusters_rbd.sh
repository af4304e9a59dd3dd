#!/usr/bin/env bash
# Fencing a lost gateway on every cluster (docs/gateways.md, "LUNs on several clusters"): two
# gateways of one group serve LUN 0 on image fa of cluster C1 and LUN 1 on image fb of a second
# cluster C2 (another conf=), so each gateway has one cluster client, with its own address, on
# each cluster.
#   - gateway 1 writes both LUNs (it holds both images' exclusive locks) and is SIGKILLed;
#   - gateway 2 fences it on both clusters, each with the address gateway 1 announced on that
#     cluster's record: C1's blocklist holds gateway 1's C1 client, C2's its C2 client;
#   - a write to LUN 1 through gateway 2 completes well before the cluster would have timed out
#     gateway 1's watch on fb's header (30 s): librbd broke the fenced holder's lock at once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"

WRITE_BOUND=${WRITE_BOUND:-15} # seconds for gateway 2's first write to LUN 1 after the kill

ceph_start
C1_CONF=$CEPH_CONF
ceph_image fa 64M
ceph_start_second fb

IQN=iqn.2026-11.org.isthmus:gwfenceclusters
start_rbd_gateways 2 "$IQN" "rbd:rbd/fa,conf=$C1_CONF" --lun "rbd:rbd/fb,conf=$C2_CONF"

# announced CONF IMAGE GATEWAY : the client address GATEWAY announced on IMAGE's record
announced() {
	CEPH_CONF=$1 run_to 30 rados -p rbd getxattr "isthmus.lu.$2" "isthmus.gateway.$3" 2>/dev/null
}
# nonce ADDR : the "/NONCE" part of a client address that tells a client instance apart
nonce() { sed -E 's/^\[?(v[12]:)?[^/]*(\/[0-9]+).*/\2/' <<<"$1"; }

say "check: gateway 1 announced a client on each cluster, with a different address on each"
A1="" A2=""
for _ in $(seq 60); do
	A1=$(announced "$C1_CONF" fa 1) || A1=""
	A2=$(announced "$C2_CONF" fb 1) || A2=""
	[[ -n "$A1" && -n "$A2" ]] && break
	sleep 0.5
done
[[ -n "$A1" && -n "$A2" ]] || fail "gateway 1's addresses on the records: C1 '$A1', C2 '$A2'"
N1=$(nonce "$A1")
N2=$(nonce "$A2")
say "  gateway 1 on C1: $A1, on C2: $A2"
[[ "$N1" != "$N2" ]] || fail "the same client instance on both clusters ($N1)?"

say "check: gateway 1 writes both LUNs (it takes both images' locks), then is SIGKILLed"
run_to 120 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" "${GW_PID[1]}" "$WRITE_BOUND" \
	"$TEST_DIR/killed_at" <<'PY' || fail "the writes around the kill failed"
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, sense_of, Nexus, cdb10

iqn, port1, port2, pid1, bound, killed_at = (sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                                             float(sys.argv[6]), sys.argv[7])
gateway_nexus.setup("test_gateway_fence_clusters_rbd", iqn, {1: port1, 2: port2})

def write(nx, lun, lba):
    for _ in range(16):
        st, _, sense = nx.cmd(cdb10(0x2a, lba, 1), out=bytes([lun + 7]) * 512, lun=lun)
        if st == 0:
            return 0
        if st == 2 and sense and sense_of(sense)[0] in (2, 6):  # unit attention, or not ready yet
            time.sleep(0.1)
            continue
        return st
    return st

g1 = Nexus("fencer", 1, "400000004001", timeout=60)
for lun in (0, 1):
    st = write(g1, lun, 20)
    if st != 0:
        sys.exit("write to LUN %d through gateway 1: status %s" % (lun, st))
g2 = Nexus("fencer", 2, "400000004002", timeout=60)
g2.ready(8, must=False, lun=1)  # the new nexus's unit attention
say("SIGKILL to gateway 1 (pid %d)" % pid1)
os.kill(pid1, signal.SIGKILL)
t0 = time.time()
open(killed_at, "w").write("%f\n" % t0)
st = write(g2, 1, 21)
dt = time.time() - t0
say("measured: the first write to LUN 1 (C2) through gateway 2 done %.2f s after the kill (status %s, bound %.0f s)"
    % (dt, st, bound))
if st != 0 or dt > bound:
    sys.exit("the write through gateway 2 took %.2f s (status %s)" % (dt, st))
PY
unset "GW_PID[1]"

say "check: gateway 2 fenced gateway 1 on both clusters, each with that cluster's address"
for _ in $(seq 40); do
	grep -q "isthmus.lu.fa: gateway 1's cluster client" "$TEST_DIR/gw2.log" &&
		grep -q "isthmus.lu.fb: gateway 1's cluster client" "$TEST_DIR/gw2.log" && break
	sleep 0.5
done
grep "gateway 1's cluster client" "$TEST_DIR/gw2.log" | sed 's/^/    /'
grep -q "isthmus.lu.fa: gateway 1's cluster client .*$N1 fenced" "$TEST_DIR/gw2.log" ||
	fail "gateway 1's C1 client ($N1) was not fenced through fa's record"
grep -q "isthmus.lu.fb: gateway 1's cluster client .*$N2 fenced" "$TEST_DIR/gw2.log" ||
	fail "gateway 1's C2 client ($N2) was not fenced through fb's record"
BL1=$(CEPH_CONF=$C1_CONF run_to 30 ceph osd blocklist ls 2>/dev/null) || fail "ceph osd blocklist ls on C1"
BL2=$(CEPH_CONF=$C2_CONF run_to 30 ceph osd blocklist ls 2>/dev/null) || fail "ceph osd blocklist ls on C2"
grep -q -- "$N1 " <<<"$BL1" || fail "C1's blocklist lacks gateway 1's C1 client $N1: $BL1"
grep -q -- "$N2 " <<<"$BL2" || fail "C2's blocklist lacks gateway 1's C2 client $N2: $BL2"
say "ok: C1's blocklist holds $N1, C2's holds $N2"
if report=$(sanitizer_report "$TEST_DIR/gw2.log"); then
	fail "gateway 2 reported a sanitizer error: $report"
fi
say "PASS"
