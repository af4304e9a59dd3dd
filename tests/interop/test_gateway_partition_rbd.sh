#!/usr/bin/env bash
# Two gateways on one RBD image cut off from each other but not from the cluster
# (docs/gateways.md, "Fencing a gateway that went away"): the cluster is their witness, so
# neither fences the other.
#   - the test runs in a network namespace of its own (unshare -n, lo only), where nftables
#     drops the TCP SYNs the gateways (group 0) send to the two portals: their probes of each
#     other fail, while the cluster's ports and the initiators (this test, group 65534) are
#     untouched;
#   - for five probe intervals: each gateway reports the other unavailable and itself active
#     (REPORT TARGET PORT GROUPS), a write and a verified read through each gateway every half
#     second get GOOD (a unit attention is retried, NOT READY is a failure), no client is added
#     to the cluster's blocklist, and each gateway logs once that it did not fence its peer;
#   - the partition lifted, both gateways see each other again within two probe intervals and
#     the I/O through both still works;
#   - then gateway 2 is SIGKILLed: gateway 1 still fences it (the cluster has no answer from
#     it), and the test prints how long that took;
#   - last, gateway 1's own client is blocklisted by hand (as an administrator fences a gateway):
#     it reads the record with a new client, still serves, and stopped with SIGTERM it exits
#     with no sanitizer report (the fenced client's watch is given back, not leaked).
set -euo pipefail
source "$(dirname "$0")/netns.bash"
in_own_netns "unshare nft ip setpriv" "$@"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3 ceph
nft add table inet isthmus_probe_test 2>/dev/null || skip "nftables does not work in this namespace"
nft delete table inet isthmus_probe_test

ceph_start
ceph_image part 64M

IQN=iqn.2026-11.org.isthmus:gwpart
start_rbd_gateways 2 "$IQN" "rbd:rbd/part,conf=$CEPH_CONF"

# The checker runs with group 65534 (still uid 0, for nft and the admin keyring): its logins pass
# the rule that stops the gateways' probes.
run_to 200 setpriv --regid=65534 --clear-groups python3 - "$INTEROP_DIR" "$IQN" "${GW_PORT[1]}" "${GW_PORT[2]}" \
	"${GW_PID[2]}" "$TEST_DIR" <<'PY' || fail "the partition check failed (see above)"
import os, re, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import gateway_nexus
from gateway_nexus import say, check, sense_of, Nexus, past_ua, rtpg, wait_views, cdb10, OPT, NONOPT, UNAVAILABLE

iqn, ports, pid2, tdir = sys.argv[2], {1: int(sys.argv[3]), 2: int(sys.argv[4])}, int(sys.argv[5]), sys.argv[6]
gateway_nexus.setup("test_gateway_partition_rbd", iqn, ports)
PROBE_S = 2.0                 # GATEWAY_PROBE_INTERVAL_MS
PROBE_TIMEOUT_S = 1.5         # GATEWAY_PROBE_TIMEOUT_MS
WITNESS_S = 1.0               # RBD_LU_STATE_WITNESS_MS
HOLD_S = 5 * PROBE_S          # how long the partition lasts
TABLE = "isthmus_partition"

def io_round(nx, lba, fill):
    """A WRITE(10) of one block and its READ(10): None when both were GOOD and the data match."""
    data = bytes([fill]) * 512
    st, _, s = past_ua(nx, cdb10(0x2a, lba, 1), out=data)
    if st != 0:
        return "WRITE status 0x%02x sense %s" % (st, sense_of(s))
    st, d, s = past_ua(nx, cdb10(0x28, lba, 1), in_len=512)
    if st != 0:
        return "READ status 0x%02x sense %s" % (st, sense_of(s))
    if d != data:
        return "READ returned other data"
    return None

def blocklist():
    r = subprocess.run(["timeout", "30", "ceph", "osd", "blocklist", "ls"], capture_output=True, text=True)
    return sorted(l.split()[0] for l in r.stdout.splitlines() if l.strip())

def log_of(gw):
    with open(os.path.join(tdir, "gw%d.log" % gw), errors="replace") as f:
        return f.read()

def nft(*args):
    subprocess.run(["nft"] + list(args), check=True)

n1 = Nexus("part-1", 1, "400001000001")
n2 = Nexus("part-2", 2, "400001000002")
both_up = lambda gw, v: v.get(1) in (OPT, NONOPT) and v.get(2) in (OPT, NONOPT)
took, views = wait_views((n1, n2), both_up, 15)
check(took is not None, "both gateways see each other before the partition: %s" % views)
for nx in (n1, n2):
    check(io_round(nx, nx.gw, 0x10 + nx.gw) is None, "I/O through gateway %d before the partition" % nx.gw)
before = blocklist()
say("before: views %s, blocklist %s" % (views, before or "empty"))

say("partition: SYNs of group 0 (the gateways' probes) to ports %d and %d dropped" % (ports[1], ports[2]))
nft("add", "table", "inet", TABLE)
nft("add", "chain", "inet", TABLE, "out", "{ type filter hook output priority 0; }")
nft("add", "rule", "inet", TABLE, "out", "tcp", "dport", "{ %d, %d }" % (ports[1], ports[2]),
    "tcp", "flags", "&", "(syn|ack)", "==", "syn", "meta", "skgid", "0", "drop")
t0 = time.time()
# Each side: itself active, the peer unavailable (it does not answer the probes).
cut = lambda gw, v: v.get(gw) in (OPT, NONOPT) and v.get(3 - gw) == UNAVAILABLE
# Normally within two probe intervals; a wider bound, as the probes of a loaded machine lag.
took, views = wait_views((n1, n2), cut, 4 * PROBE_S + PROBE_TIMEOUT_S + 3)
if check(took is not None, "each gateway reports the other unavailable during the partition: %s" % views):
    say("ok: each gateway reports the other unavailable after %.1f s: %s" % (took, views))
rounds, bad = 0, []
fill = 0x40
while time.time() - t0 < HOLD_S:
    for nx in (n1, n2):
        err = io_round(nx, 8 + nx.gw, fill)
        if err:
            bad.append("gateway %d at %.1f s: %s" % (nx.gw, time.time() - t0, err))
    fill = (fill + 1) & 0xff
    rounds += 1
    time.sleep(0.5)
if check(not bad, "I/O through both gateways during the partition: %d of %d rounds failed: %s"
         % (len(bad), rounds, bad[:4])):
    say("ok: %d rounds of write + verified read through each gateway during %.0f s of partition"
        % (rounds, HOLD_S))
views = {nx.gw: rtpg(nx) for nx in (n1, n2)}
check(all(v is not None and cut(gw, v) for gw, v in views.items()),
      "still each gateway reports only the other unavailable at the end of the partition: %s" % views)
during = blocklist()
if check(during == before, "no cluster client blocklisted during the partition: %s" % during):
    say("ok: the blocklist is unchanged (%s)" % (during or "empty"))
for gw in (1, 2):
    log = log_of(gw)
    check("fenced (blocklisted)" not in log, "gateway %d fenced nobody" % gw)
    spared = len(re.findall(r"gateway %d does not answer its probes but acknowledged on the cluster" % (3 - gw), log))
    if check(spared == 1, "gateway %d logged once that it did not fence gateway %d (%d times)" % (gw, 3 - gw, spared)):
        say("ok: gateway %d logged once why it did not fence gateway %d" % (gw, 3 - gw))

nft("delete", "table", "inet", TABLE)
took, views = wait_views((n1, n2), both_up, 2 * PROBE_S + 3)
if check(took is not None, "both gateways see each other again after the partition: %s" % views):
    say("ok: the partition lifted, both gateways answer each other again after %.1f s: %s" % (took, views))
for nx in (n1, n2):
    check(io_round(nx, 16 + nx.gw, 0x70 + nx.gw) is None, "I/O through gateway %d after the partition" % nx.gw)

say("gateway 2 SIGKILLed: gateway 1 must still fence it")
seen_before = len(log_of(1))
os.kill(pid2, signal.SIGKILL)
t0 = time.time()
bound = PROBE_S + PROBE_TIMEOUT_S + WITNESS_S + 3
fenced = None
while time.time() - t0 < bound:
    if "gateway 2's cluster client" in log_of(1)[seen_before:]:
        fenced = time.time() - t0
        break
    time.sleep(0.1)
if check(fenced is not None, "gateway 1 fenced the killed gateway 2 within %.1f s" % bound):
    say("ok: gateway 1 fenced the killed gateway 2 %.1f s after the kill" % fenced)
    check(len(blocklist()) == len(during) + 1, "the killed gateway's client is on the blocklist")
st, _, s = past_ua(n1, cdb10(0x2a, 30, 1), out=bytes(512))
check(st == 0, "a write through gateway 1 after the kill: status 0x%02x %s" % (st, sense_of(s)))

gateway_nexus.finish("all checks passed")
PY
addr=$(run_to 30 rados -p rbd getxattr isthmus.lu.part isthmus.gateway.1 2>/dev/null | tr -d '\0') ||
	fail "no client address of gateway 1 on the record"
[[ -n "$addr" ]] || fail "the record names no client of gateway 1"
say "gateway 1's client $addr blocklisted by hand"
mark=$(wc -c <"$TEST_DIR/gw1.log")
run_to 30 ceph osd blocklist add "$addr" >/dev/null 2>&1 || fail "ceph osd blocklist add $addr failed"
replaced=0
for ((i = 0; i < 150; i++)); do
	if tail -c +"$((mark + 1))" "$TEST_DIR/gw1.log" | grep -q "cluster client was fenced (blocklisted): the record is read with a new one"; then
		replaced=1
		break
	fi
	sleep 0.2
done
((replaced)) || fail "gateway 1 did not replace its fenced client within 30 s: $(tail -3 "$TEST_DIR/gw1.log")"
say "ok: gateway 1 reads the record with a new client"
gw_stop 1 TERM
say "ok: gateway 1 stopped with no sanitizer report after its client was replaced"
say "PASS"
