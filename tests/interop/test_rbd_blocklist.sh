#!/usr/bin/env bash
# An RBD LUN whose cluster client is blocklisted (`ceph osd blocklist add`, what another gateway
# or an administrator does to fence it) recovers by itself:
#   - writes before the blocklisting; the target's client address from `rbd status`;
#   - blocklisted under sequential writes: the failed writes get NOT READY (the initiator
#     retries), the target reopens the image on a new cluster client within RECOVER_S seconds
#     (logged), and the writes go on;
#   - every acknowledged write, before and after, reads back; `rbd status` shows a new client.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3

# Seconds from the blocklisting to the first write acknowledged again.
RECOVER_S=${RECOVER_S:-60}

ceph_start
ceph_client_timeout 5
ceph_image fenced 32M

IQN=iqn.2026-11.org.isthmus:rbd-blocklist
PORT=$(free_port)
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "rbd:rbd/fenced,conf=$CEPH_CONF"


run_to 200 python3 - "$INTEROP_DIR" 127.0.0.1 "$PORT" "$IQN" "$RECOVER_S" "$CEPH_CONF" <<'PY' || fail "the blocklisted LUN did not recover"
import os, re, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, sense_of, Nexus, cdb10, read10
host, port, iqn, recover_s, conf = sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6]
env = dict(os.environ, CEPH_CONF=conf)
gateway_nexus.setup("test_rbd_blocklist", iqn, {1: port}, host)
nx = Nexus("rbd-blocklist-check", 1, "40000000007b", timeout=60)

def write(lba, data):
    return nx.cmd(cdb10(0x2a, lba, len(data) // 512), out=data)

def pattern(i):
    return bytes((i * 11 + k * 7) & 0xff for k in range(4096))

def rbd_watchers():
    out = subprocess.run(["timeout", "30", "rbd", "status", "rbd/fenced"], env=env, capture_output=True, text=True).stdout
    return re.findall(r"watcher=(\S+)", out)

nx.ready(5, must=False)   # a new nexus starts with a unit attention
acked, failed = {}, []
for i in range(10):
    if write(8 * i, pattern(i))[0] == 0:
        acked[i] = pattern(i)
ok = len(acked) == 10
before = rbd_watchers()
say("10 writes acknowledged before; the target's cluster client: %s" % before)
if not before:
    say("FAILED: no watcher on the image")
    sys.exit(1)
for w in before:
    subprocess.run(["timeout", "30", "ceph", "osd", "blocklist", "add", w], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
say("blocklisted %s; 30 more writes, each retried until acknowledged" % before)
t0 = time.time()
first_ok = None
for i in range(10, 40):
    deadline = time.time() + recover_s + 30
    while True:
        st, _, s = write(8 * i, pattern(i))
        if st == 0:
            acked[i] = pattern(i)
            if first_ok is None and failed:
                first_ok = time.time() - t0
            break
        failed.append((i, st, (sense_of(s) or (None,))[0], round(time.time() - t0, 1)))
        if time.time() > deadline:
            break
        time.sleep(0.2)
for f in failed[:4]:
    say("  write %d: status 0x%02x sense key %s at %.1f s" % f)
say("  %d failed attempts; writes acknowledged again after %s s" % (len(failed), first_ok))
after = rbd_watchers()
say("the image's watchers now: %s" % after)
checks = [
    (ok, "the writes before were acknowledged"),
    (len(failed) >= 1, "the blocklisted client made a write fail"),
    (all(f[1] == 2 and f[2] == 0x02 for f in failed), "every failed write got NOT READY"),
    (first_ok is not None and first_ok <= recover_s, "writes acknowledged again within %d s" % recover_s),
    (len(acked) == 40, "all 40 writes acknowledged in the end"),
    (after and not set(after) & set(before), "a new cluster client watches the image"),
]
lost = [i for i, d in acked.items() if read10(nx, 8 * i, 8)[1] != d]
checks.append((not lost, "every acknowledged write reads back (lost: %s)" % lost[:8]))
bad = False
for c, what in checks:
    say(("  ok: " if c else "  FAILED: ") + what)
    bad |= not c
sys.exit(1 if bad else 0)
PY
grep -q "reopened on a new cluster client" "$TARGET_LOG" || fail "the target did not log the reopening"
stop_target
say "PASS"
