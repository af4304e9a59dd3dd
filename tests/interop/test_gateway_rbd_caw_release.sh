#!/usr/bin/env bash
# Letting a shared RBD LU go never stalls the gateway's event loop (docs/gateways.md): two
# gateways of one group on one image with 4096-byte blocks; the test hook
# ISTHMUS_TEST_CAW_WRITE_DELAY_MS (docs/testing.md) keeps a COMPARE AND WRITE through gateway 1
# holding the group's lock for DELAY_MS. Inside that window gateway 2 is stopped (SIGSTOP: its
# watch stays, and it answers no notification) and the LUN is removed on gateway 1
# (`lun.remove`). Giving the lock back then notifies the release and waits RBD_LU_STATE_HOLD_MS
# (2 s) for gateway 2, and closing the record asks whether another gateway watches it and waits
# RBD_LU_STATE_CLOSE_PROBE_MS (1 s): both on workers, so
#   - the removal is answered, and management calls (`stats`, sent every POLL_S meanwhile) are
#     answered within MAX_STALL_S each;
#   - the lock is given back all the same: once gateway 2 runs again, a COMPARE AND WRITE through
#     it takes the lock at once (a lock left held makes it wait RBD_LU_STATE_CAW_WAIT_MS, 5 s,
#     and fail with NOT READY until the lock's 42 s lease ends);
#   - gateway 1, started again and stopped (SIGTERM) while its COMPARE AND WRITE holds the lock
#     and gateway 2 is stopped, exits within EXIT_BOUND_S, cleanly (no sanitizer report), and
#     the lock is given back before its cluster connection goes (gateway 2 takes it at once).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"

DELAY_MS=6000

# A gateway stopped by the test runs again whatever happens, before the cleanup stops it.
resume_then_cleanup() {
	local rc=$?
	[[ -z "${GW_PID[2]:-}" ]] || kill -CONT "${GW_PID[2]}" 2>/dev/null || true
	(exit "$rc")
	ceph_lib_cleanup
}
trap resume_then_cleanup EXIT

ceph_start
ceph_image cawrel 64M

IQN=iqn.2026-12.org.isthmus:gwcawrel
# As start_rbd_gateways does, but only gateway 1's COMPARE AND WRITEs wait: gateway 2's then
# show whether it waited for the lock.
GW_ARGS=(--target "$IQN" --lun "rbd:rbd/cawrel,conf=$CEPH_CONF,bs=4096")
for n in 1 2; do
	GW_PORT[$n]=$(free_port)
	GW_HP[$n]=127.0.0.1:${GW_PORT[$n]}
done
GW_ARGS+=(--gateway-portal "1=${GW_HP[1]}" --gateway-portal "2=${GW_HP[2]}")
ISTHMUS_TEST_CAW_WRITE_DELAY_MS=$DELAY_MS gw_start 1
gw_start 2
grep -q "test hook ISTHMUS_TEST_CAW_WRITE_DELAY_MS" "$TEST_DIR/gw1.log" || fail "gateway 1 does not log the test hook"
! grep -q "test hook ISTHMUS_TEST_CAW_WRITE_DELAY_MS" "$TEST_DIR/gw2.log" || fail "gateway 2 has the test hook"

rc=0
run_to 120 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" "${GW_PID[2]}" "$TEST_DIR/gw1.sock" <<'PY' || rc=$?
import json, os, signal, socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, caw_cdb, write10

iqn, ports = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}
gw2_pid, sock1 = int(sys.argv[5]), sys.argv[6]
gateway_nexus.setup("test_gateway_rbd_caw_release", iqn, ports)
BS = 4096
INSIDE = 1.0       # seconds after the COMPARE AND WRITE is sent: its lock is held, gateway 2 held
POLL_S = 0.025     # between two management calls
WATCH_S = 4.0      # management calls go on this long after the removal was sent
MAX_STALL_S = 0.6  # one management call's answer, at most

class Mgmt:
    """A JSON-RPC 2.0 client of gateway 1's management socket, one request at a time."""
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(20)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.id = 0

    def call(self, method, params=None):
        self.id += 1
        req = {"jsonrpc": "2.0", "id": self.id, "method": method, "params": params or {}}
        self.s.sendall(json.dumps(req).encode() + b"\n")
        line = self.f.readline()
        if not line:
            raise RuntimeError("management socket closed")
        return json.loads(line)

a1 = Nexus("a", 1, "400000000a11", bs=BS, ua_tries=4)
b2 = Nexus("b", 2, "400000000b12", bs=BS, ua_tries=4)
a1.ready()
b2.ready()
old, new = b"\x44" * BS, b"\xcd" * BS
check(write10(a1, 5, old) == 0, "setup write")

caw = {}
def caw_through_gateway1():
    t0 = time.time()
    try:
        st, _, s = a1.cmd(caw_cdb(5, 1), out=old + new)
        caw.update(st=st, sense=sense_of(s), took=time.time() - t0)
    except Exception as e:  # the LUN goes while it runs: any end will do
        caw.update(st=None, error=repr(e), took=time.time() - t0)
caw_thread = threading.Thread(target=caw_through_gateway1, daemon=True)
caw_thread.start()
time.sleep(INSIDE)

polls = []    # (seconds since the removal was sent, seconds the call took)
stop_polling = threading.Event()
t_remove = None
def poll():
    m = Mgmt(sock1)
    while not stop_polling.is_set():
        t0 = time.time()
        r = m.call("stats")
        polls.append((t0 - t_remove, time.time() - t0, "result" in r))
        time.sleep(POLL_S)

say("gateway 2 stopped (SIGSTOP) while gateway 1's COMPARE AND WRITE holds the lock; LUN 0 removed on gateway 1")
os.kill(gw2_pid, signal.SIGSTOP)
try:
    m = Mgmt(sock1)
    check("result" in m.call("stats"), "stats answers before the removal")
    t_remove = time.time()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    r = m.call("lun.remove", {"target": iqn, "lun": 0})
    took_remove = time.time() - t_remove
    time.sleep(max(0.0, WATCH_S - took_remove))
    stop_polling.set()
    poller.join(30)
finally:
    os.kill(gw2_pid, signal.SIGCONT)
worst = max(polls, key=lambda p: p[1]) if polls else (0.0, float("inf"), False)
say("  lun.remove answered after %.3f s; %d stats calls over %.1f s, the slowest %.3f s (sent %.3f s after the "
    "removal)" % (took_remove, len(polls), WATCH_S, worst[1], worst[0]))
check("result" in r, "lun.remove succeeds (%s)" % r)
check(took_remove <= MAX_STALL_S, "lun.remove answered within %.1f s (%.3f s)" % (MAX_STALL_S, took_remove))
check(len(polls) >= 5 and all(ok for _, _, ok in polls), "stats answered meanwhile")
check(worst[1] <= MAX_STALL_S, "no management call waited more than %.1f s (%.3f s)" % (MAX_STALL_S, worst[1]))

caw_thread.join(40)
check(not caw_thread.is_alive(), "gateway 1's COMPARE AND WRITE ended")
say("  gateway 1's COMPARE AND WRITE: %s" % (caw,))

say("gateway 2 runs again: a COMPARE AND WRITE through it takes the group's lock at once")
gateway_nexus.check_caw_at_once(b2, 30, b"\x55" * BS, b"\xce" * BS)
gateway_nexus.finish()
PY
kill -CONT "${GW_PID[2]}" 2>/dev/null || true
((rc == 0)) || fail "letting the LU go stalled gateway 1's event loop, or kept the group's lock"

say "gateway 1 again, stopped (SIGTERM) while its COMPARE AND WRITE holds the lock and gateway 2 is stopped"
gw_stop 1 TERM
# Two event loops, the COMPARE AND WRITE's session on the second (a first session takes the
# first): its completion posts to the first loop's engine, so the engines drain together at
# shutdown before any is freed.
GW_ARGS+=(--threads 2)
ISTHMUS_TEST_CAW_WRITE_DELAY_MS=$DELAY_MS gw_start 1
run_to 120 python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" "${GW_PID[1]}" "${GW_PID[2]}" "$TEST_DIR/gw1.sock" <<'PY' || rc=$?
import json, os, signal, socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, Nexus, caw_cdb, write10

iqn, ports = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}
gw1_pid, gw2_pid = int(sys.argv[5]), int(sys.argv[6])
gateway_nexus.setup("test_gateway_rbd_caw_release", iqn, ports)
BS = 4096
EXIT_BOUND_S = 25.0  # the logout grace (3 s), the rest of the COMPARE AND WRITE, its release (2 s), the record's close

def gone(pid):
    """Exited (a zombie until the script reaps it) or no more."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        # Reaped between open and read: /proc answers ESRCH to the read.
        return True

# Two sessions on gateway 1: one on each loop; the one on the second sends the COMPARE AND WRITE.
z1 = Nexus("z", 1, "400000000a15", bs=BS, ua_tries=4)
a1 = Nexus("a", 1, "400000000a13", bs=BS, ua_tries=4)
b2 = Nexus("b", 2, "400000000b14", bs=BS, ua_tries=4)
z1.ready()
a1.ready()
b2.ready()
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ms:
    ms.settimeout(20)
    ms.connect(sys.argv[7])
    ms.sendall(b'{"jsonrpc":"2.0","id":1,"method":"session.list"}\n')
    sessions = json.loads(ms.makefile("rb").readline())["result"]
loops = {s["isid"]: s["loop"] for s in sessions}
say("  gateway 1's sessions by ISID and loop: %s" % loops)
check(sorted(loops.values()) == [0, 1], "one session on each of gateway 1's loops")
if loops.get("400000000a15") == 1:
    a1, z1 = z1, a1
old, new = b"\x66" * BS, b"\xcf" * BS
check(write10(a1, 6, old, ua_retries=3) == 0, "setup write")

def caw_through_gateway1():
    try:
        a1.cmd(caw_cdb(6, 1), out=old + new)
    except Exception:
        pass  # the gateway stops under it
threading.Thread(target=caw_through_gateway1, daemon=True).start()
time.sleep(1.0)
os.kill(gw2_pid, signal.SIGSTOP)
try:
    t0 = time.time()
    os.kill(gw1_pid, signal.SIGTERM)
    while not gone(gw1_pid) and time.time() - t0 < 30:
        time.sleep(0.05)
    took = time.time() - t0
finally:
    os.kill(gw2_pid, signal.SIGCONT)
say("  gateway 1 exited %.2f s after SIGTERM" % took)
check(gone(gw1_pid) and took <= EXIT_BOUND_S, "gateway 1 stops within %.0f s (%.2f s)" % (EXIT_BOUND_S, took))

say("gateway 2 runs again: a COMPARE AND WRITE through it takes the group's lock at once")
gateway_nexus.check_caw_at_once(b2, 31, b"\x77" * BS, b"\xd0" * BS)
gateway_nexus.finish()
PY
kill -CONT "${GW_PID[2]}" 2>/dev/null || true
((rc == 0)) || fail "a gateway stopping with the group's lock kept it, or took too long"
gw_stop 1 TERM
grep -q "stopped" "$TEST_DIR/gw1.log" || fail "gateway 1 did not stop cleanly: $(tail -5 "$TEST_DIR/gw1.log")"
gw_stop 2 TERM
say "PASS"
