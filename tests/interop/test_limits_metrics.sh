#!/usr/bin/env bash
# The metrics endpoint cannot be held by idle connections. With 16 connections open that send
# nothing (or half a request), a scrape still gets its answer at once: a new connection takes
# the place of the oldest one that has not sent its request. A connection that has not sent a
# complete request within 10 s is closed. Scrapes keep working throughout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 curl
[[ "$TARGET_IMPL" == isthmus ]] || skip "isthmus-target's metrics endpoint"

IQN=iqn.2026-11.org.isthmus:metrics
PORT=$(free_port)
MPORT=$(free_port)
start_target --listen "127.0.0.1:$PORT" --target "$IQN" --lun "memory,size=16M" --metrics "127.0.0.1:$MPORT"

say "16 idle connections, then scrapes while they are open, then the idle ones must be closed within 12 s"
out=$(run_to 60 python3 - 127.0.0.1 "$MPORT" <<'PY'
import socket, subprocess, sys, time
host, port = sys.argv[1], int(sys.argv[2])

def scrape():
    t0 = time.time()
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "http://%s:%d/metrics" % (host, port)],
                       capture_output=True, text=True)
    ok = r.returncode == 0 and "isthmus_target_connections " in r.stdout
    return ok, time.time() - t0, r.stderr.strip()

idle = []
for i in range(16):
    s = socket.create_connection((host, port), timeout=5)
    if i % 2:
        s.sendall(b"GET /metr")  # half a request
    idle.append(s)
time.sleep(0.3)
ok, took, err = scrape()
print("scrape with 16 idle connections open: ok=%s in %.2f s %s" % (ok, took, err))
if not ok or took > 2:
    print("RESULT fail-scrape")
    sys.exit(0)
# More idle connections keep coming; scrapes still work.
for i in range(16):
    idle.append(socket.create_connection((host, port), timeout=5))
time.sleep(0.3)
ok, took, err = scrape()
print("scrape with 32 more idle attempts: ok=%s in %.2f s %s" % (ok, took, err))
if not ok or took > 2:
    print("RESULT fail-scrape2")
    sys.exit(0)
# Every idle connection ends: replaced by a newer one, or after the 10 s request timeout.
t0 = time.time()
open_ones = list(idle)
while open_ones and time.time() - t0 < 14:
    for s in list(open_ones):
        s.settimeout(0.05)
        try:
            if s.recv(1) == b"":
                open_ones.remove(s)
        except socket.timeout:
            pass
        except OSError:
            open_ones.remove(s)
    time.sleep(0.2)
print("idle connections still open after %.1f s: %d" % (time.time() - t0, len(open_ones)))
print("RESULT ok" if not open_ones else "RESULT fail-timeout")
PY
) || fail "metrics client failed: $out"
printf '%s\n' "$out" | sed 's/^/    /'
grep -q '^RESULT ok' <<<"$out" || fail "$(grep '^RESULT' <<<"$out")"
metrics=$(curl -sSf --max-time 5 "http://127.0.0.1:$MPORT/metrics") || fail "scrape after the idle connections"
grep -q '^isthmus_target_connections_refused_total ' <<<"$metrics" || fail "no refused-connections counter in the metrics"
stop_target
say "PASS"
