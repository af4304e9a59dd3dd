#!/usr/bin/env bash
# An image whose own configuration turns librbd's cache on (docs/ceph.md, "librbd's cache"):
# `rbd config image set rbd/IMG rbd_cache true` writes the image's conf_rbd_cache metadata,
# which librbd 16 applies over the client's rbd_cache = false at open.
#   - a single target serves LUN 0 on a plain image and LUN 1 on such an image: it logs a
#     warning for LUN 1 only, `isthmus target list` prints a WARNING line for it, the JSON
#     names who turned the cache on ("librbd_cache": "image"; null for LUN 0);
#   - the cache is really on: after a SYNCHRONIZE CACHE (librbd caches only once it saw a
#     flush), with the cluster frozen, a WRITE(10) to LUN 1 is GOOD within 2 s, while one to
#     LUN 0 has no status until the cluster is back (it waits for the OSDs);
#   - a gateway group refuses such an image: add-lun on gateway 1 fails with an error that says
#     a gateway group cannot serve it, and succeeds once the override is removed
#     (`rbd config image remove`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
[[ "$TARGET_IMPL" == isthmus ]] || skip "exercises isthmus-target's RBD store"
need python3 jq

ceph_start
ceph_image plain 32M
ceph_image cached 32M
ceph_image gplain 32M
ceph_image gcached 32M
for img in cached gcached; do
	rbd_cmd config image set "rbd/$img" rbd_cache true || fail "rbd config image set rbd/$img rbd_cache true"
done
rbd_cmd config image list rbd/cached | grep -E "^rbd_cache " | sed 's/^/    rbd config image list: /'

IQN=iqn.2026-11.org.isthmus:rbd-cache
PORT=$(free_port)
SOCK=$TEST_DIR/mgmt.sock
CONF=$TEST_DIR/t.conf
CLI=$ISTHMUS_BIN/isthmus
one_target_conf "$CONF" "$IQN" "lun 0 = rbd:rbd/plain,conf=$CEPH_CONF" "lun 1 = rbd:rbd/cached,conf=$CEPH_CONF"
start_target --config "$CONF"
T() { run_to 30 "$CLI" target --socket "$SOCK" "$@"; }

say "check: a single target serves the image, and says loudly that its cache is on"
grep -q "rbd:rbd/cached: the image's configuration turns librbd's cache on" "$TARGET_LOG" ||
	fail "no warning about rbd/cached's cache in the log"
! grep -q "rbd:rbd/plain: .*librbd's cache on" "$TARGET_LOG" || fail "a warning about rbd/plain, whose cache is off"
grep "librbd's cache on" "$TARGET_LOG" | sed 's/^/    log: /'
out=$(T list) || fail "isthmus target list failed"
printf '%s\n' "$out" | sed 's/^/    list: /'
grep -q "WARNING: LUN 1: librbd's write cache is ON" <<<"$out" || fail "isthmus target list has no warning for LUN 1"
! grep -q "WARNING: LUN 0" <<<"$out" || fail "isthmus target list warns about LUN 0"
T --json list | jq -e '.[0].luns[0].librbd_cache == null and .[0].luns[1].librbd_cache == "image"' >/dev/null ||
	fail "target.list's librbd_cache: $(T --json list | jq -c '[.[0].luns[].librbd_cache]')"

say "check: with the cluster frozen, a write to LUN 1 (cache on) is GOOD at once, one to LUN 0 waits"
run_to 120 python3 - "$INTEROP_DIR" "$PORT" "$IQN" "$MICRO_CEPH" "$CEPH_DIR" <<'PY' || fail "the frozen-cluster writes (see above)"
import subprocess, sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, Nexus, cdb10, past_ua
port, iqn, micro, cdir = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
gateway_nexus.setup("test_rbd_cache_override", iqn, {1: port})
nx = {lun: Nexus("rbd-cache-%d" % lun, 1, "40000000c00%d" % lun, lun=lun, timeout=90) for lun in (0, 1)}
for lun in (0, 1):
    st, _, _ = past_ua(nx[lun], cdb10(0x2a, 8, 1), out=bytes([0x11]) * 512)
    st2, _, _ = past_ua(nx[lun], cdb10(0x35, 0, 0))  # SYNCHRONIZE CACHE(10)
    if st or st2:
        sys.exit("LUN %d: write %s, synchronize cache %s before the freeze" % (lun, st, st2))
subprocess.run([micro, "--pause", cdir], check=True)
done = {}
def write(lun):
    t0 = time.time()
    st = nx[lun].cmd(cdb10(0x2a, 16, 1), out=bytes([0x22 + lun]) * 512)[0]
    done[lun] = (st, time.time() - t0)
threads = {lun: threading.Thread(target=write, args=(lun,)) for lun in (0, 1)}
t0 = time.time()
for th in threads.values():
    th.start()
threads[1].join(2.0)
time.sleep(max(0.0, 2.0 - (time.time() - t0)))
early = dict(done)
say("  2 s into the freeze: %s" % {lun: ("GOOD" if v[0] == 0 else "status %s" % v[0], "%.2f s" % v[1])
                                    for lun, v in early.items()})
out = subprocess.run([micro, "--resume", cdir], capture_output=True, text=True)
if out.returncode:
    sys.exit("the cluster did not come back: " + out.stderr)
for th in threads.values():
    th.join(90)
say("  after the thaw: %s" % {lun: ("GOOD" if v[0] == 0 else "status %s" % v[0], "%.2f s" % v[1])
                               for lun, v in done.items()})
if 1 not in early or early[1][0] != 0:
    sys.exit("the write to LUN 1 (cache on) did not complete while the cluster was frozen")
if 0 in early:
    sys.exit("the write to LUN 0 (cache off) completed while the cluster was frozen")
if done.get(0, (1,))[0] != 0:
    sys.exit("the write to LUN 0 failed after the thaw")
say("ok: LUN 1 acknowledged from librbd's cache (%.2f s), LUN 0 waited for the OSDs (%.1f s)"
    % (early[1][1], done[0][1]))
PY
stop_target

say "check: a gateway group refuses the image"
start_rbd_gateways 2 "$IQN:group" "rbd:rbd/gplain,conf=$CEPH_CONF"
G() { run_to 60 "$CLI" target --socket "$TEST_DIR/gw1.sock" "$@"; }
rc=0
out=$(G add-lun "$IQN:group" "rbd:rbd/gcached,conf=$CEPH_CONF" --lun 1 2>&1) || rc=$?
say "  add-lun of rbd/gcached: status $rc: $out"
((rc != 0)) || fail "a gateway group accepted an image whose configuration turns librbd's cache on"
grep -q "a gateway group cannot serve (fix: rbd config image remove rbd/gcached rbd_cache)" <<<"$out" ||
	fail "add-lun's error does not say why, or how to fix it"
G --json list | jq -e '.[0].luns | length == 1' >/dev/null || fail "the refused add-lun left a LUN behind"
rbd_cmd config image remove rbd/gcached rbd_cache || fail "rbd config image remove rbd/gcached rbd_cache"
G add-lun "$IQN:group" "rbd:rbd/gcached,conf=$CEPH_CONF" --lun 1 >/dev/null ||
	fail "add-lun of rbd/gcached without the override failed"
G --json list | jq -e '.[0].luns | length == 2 and .[0].luns[1].librbd_cache == null' >/dev/null ||
	fail "rbd/gcached not served as LUN 1 once its override was removed: $(G --json list)"
say "ok: refused with the override, served without it"
gw_stop 1 TERM
gw_stop 2 TERM
say "PASS"
