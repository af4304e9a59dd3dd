#!/usr/bin/env bash
# The cluster as witness, per cluster (docs/gateways.md, "LUNs on several clusters"): two
# gateways serve LUN 0 on image wa of cluster C1 and LUN 1 on image wb of cluster C2; gateway 1
# stops answering gateway 2's probes and, at the same time, loses one of the two clusters only.
# Each cluster decides for itself: gateway 2 fences gateway 1 on the cluster it is gone from and
# not on the one that still sees it (where it still serves).
#   - the test runs in a network namespace of its own (unshare -n, lo only); the gateways run
#     with group ids 101 and 102, and nftables drops gateway 2's TCP SYNs to gateway 1's portal
#     (its probes fail) and every packet gateway 1 sends to the daemons of one cluster;
#   - gateway 1 cut off from C2: gateway 2 fences its C2 client once, through wb's record (C2's
#     blocklist holds it), logs that it spared it on LUN 0's cluster, and does not fence its C1
#     client (C1's blocklist is unchanged) for three more probe intervals. With the witness of
#     the lowest-numbered LUN deciding for every cluster, C1 saw gateway 1 and nobody was fenced;
#   - the rules lifted: gateway 1 answers again and replaces its fenced C2 client;
#   - gateway 1 cut off from C1 this time: fenced on C1 only, its new C2 client kept (with one
#     cluster deciding for all it was fenced on both).
set -euo pipefail
source "$(dirname "$0")/netns.bash"
in_own_netns "unshare nft ip setpriv ss" "$@"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ceph_lib.sh"
need python3 ceph rados
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"
nft add table inet isthmus_probe_test 2>/dev/null || skip "nftables does not work in this namespace"
nft delete table inet isthmus_probe_test

PROBE_S=2 # GATEWAY_PROBE_INTERVAL_MS
FENCE_BOUND=${FENCE_BOUND:-30} # seconds from the cut to the fence (normally about 5)
TABLE=isthmus_witness

# The rules go first: the gateways and clusters are stopped by ceph_lib_cleanup.
witness_exit() {
	local rc=$?
	set +e
	nft delete table inet "$TABLE" 2>/dev/null
	(exit "$rc")
	ceph_lib_cleanup
}
trap witness_exit EXIT

ceph_start
C1_CONF=$CEPH_CONF
C1_DIR=$CEPH_DIR
ceph_image wa 64M
ceph_start_second wb

IQN=iqn.2026-11.org.isthmus:gwwitness
GW_GID[1]=101
GW_GID[2]=102
start_rbd_gateways 2 "$IQN" "rbd:rbd/wa,conf=$C1_CONF" --lun "rbd:rbd/wb,conf=$C2_CONF"

# announced CONF IMAGE : the client address gateway 1 announced on IMAGE's record
announced() {
	CEPH_CONF=$1 run_to 30 rados -p rbd getxattr "isthmus.lu.$2" isthmus.gateway.1 2>/dev/null | tr -d '\0'
}
# nonce ADDR : the "/NONCE" part of a client address that tells a client instance apart
nonce() { sed -E 's/^\[?(v[12]:)?[^/]*(\/[0-9]+).*/\2/' <<<"$1"; }
blocklist() { CEPH_CONF=$1 run_to 30 ceph osd blocklist ls 2>/dev/null; }
# cluster_ports DIR : the TCP ports the daemons of the cluster in DIR listen on, "p1, p2, ..."
cluster_ports() {
	local p pid ports=()
	for p in "$1"/run/*.pid; do
		pid=$(cat "$p")
		mapfile -t -O "${#ports[@]}" ports < <(ss -ltnpH | grep "pid=$pid," | awk '{print $4}' | sed 's/.*://' | sort -u)
	done
	((${#ports[@]})) || fail "no listening port of the daemons in $1"
	local IFS=,
	echo "${ports[*]}"
}
since() { tail -c +"$(($2 + 1))" "$TEST_DIR/gw$1.log"; }

# cut DIR : gateway 2's probes of gateway 1 fail, and gateway 1 reaches no daemon of DIR's cluster
cut() {
	local ports
	ports=$(cluster_ports "$1")
	nft add table inet "$TABLE"
	nft add chain inet "$TABLE" out "{ type filter hook output priority 0; }"
	nft add rule inet "$TABLE" out tcp dport "${GW_PORT[1]}" tcp flags "&" "(syn|ack)" == syn meta skgid 102 drop
	nft add rule inet "$TABLE" out meta skgid 101 tcp dport "{ $ports }" drop
	say "  cut: gateway 2's probes of gateway 1 dropped, and gateway 1's packets to ports $ports"
}
lift() { nft delete table inet "$TABLE"; }

# wait_addr CONF IMAGE [OLD] : gateway 1's address on IMAGE's record, once there and not OLD
wait_addr() {
	local a=""
	for _ in $(seq 120); do
		a=$(announced "$1" "$2") || a=""
		if [[ -n "$a" && "$a" != "${3:-}" ]]; then
			echo "$a"
			return 0
		fi
		sleep 0.5
	done
	fail "gateway 1's address on $2's record: '$a' (waited for one other than '${3:-}')"
}

# case_cut GONE_DIR GONE_CONF GONE_IMG GONE_NONCE KEPT_CONF KEPT_IMG KEPT_NONCE KEPT_LUN
case_cut() {
	local gone_dir=$1 gone_conf=$2 gone_img=$3 gone_n=$4 kept_conf=$5 kept_img=$6 kept_n=$7 kept_lun=$8
	local mark t0 fenced="" out n
	mark=$(wc -c <"$TEST_DIR/gw2.log")
	t0=$(date +%s%N)
	cut "$gone_dir"
	for _ in $(seq $((FENCE_BOUND * 5))); do
		if since 2 "$mark" | grep -q "isthmus.lu.$gone_img: gateway 1's cluster client"; then
			fenced=$((($(date +%s%N) - t0) / 1000000))
			break
		fi
		sleep 0.2
	done
	[[ -n "$fenced" ]] || fail "gateway 2 did not fence gateway 1 through $gone_img's record within $FENCE_BOUND s"
	say "measured: gateway 2 fenced gateway 1's client through $gone_img's record $fenced ms after the cut"
	say "  holding the cut for three more probe intervals"
	sleep $((3 * PROBE_S))
	out=$(since 2 "$mark")
	grep -E "gateway 1|fenced" <<<"$out" | sed 's/^/    /'
	n=$(grep -c "isthmus.lu.$gone_img: gateway 1's cluster client .*$gone_n fenced" <<<"$out" || true)
	((n == 1)) || fail "gateway 1's client $gone_n fenced $n times through $gone_img's record (once expected)"
	! grep -q "isthmus.lu.$kept_img: gateway 1's cluster client" <<<"$out" ||
		fail "gateway 1 was fenced through $kept_img's record, on the cluster that still sees it"
	grep -q "gateway 1 does not answer its probes but acknowledged on the cluster of LUN $kept_lun" <<<"$out" ||
		fail "gateway 2 did not log that the cluster of LUN $kept_lun saw gateway 1"
	blocklist "$gone_conf" | grep -q -- "$gone_n " || fail "the blocklist of $gone_img's cluster lacks $gone_n"
	! blocklist "$kept_conf" | grep -q -- "$kept_n " || fail "gateway 1's client $kept_n on $kept_img's cluster was blocklisted"
	say "ok: gateway 1 fenced on $gone_img's cluster only ($gone_n blocklisted there, $kept_n kept)"
	lift
}

say "check: gateway 1 announced a client on each cluster"
A1=$(wait_addr "$C1_CONF" wa)
A2=$(wait_addr "$C2_CONF" wb)
N1=$(nonce "$A1")
N2=$(nonce "$A2")
say "  gateway 1 on C1: $A1, on C2: $A2"

say "case 1: gateway 1 unreachable for gateway 2 and cut off from C2; C1 still sees it"
mark=$(wc -c <"$TEST_DIR/gw2.log")
case_cut "$C2_DIR" "$C2_CONF" wb "$N2" "$C1_CONF" wa "$N1" 0

say "the cut lifted: gateway 1 answers again and replaces its fenced C2 client"
A2=$(wait_addr "$C2_CONF" wb "$A2")
[[ "$(announced "$C1_CONF" wa)" == "$A1" ]] || fail "gateway 1's C1 client changed, though it was not fenced"
N2=$(nonce "$A2")
say "  gateway 1 on C1: $A1 (kept), on C2: $A2 (new)"
# Gateway 2 sees it again before the next cut (the fences of that episode are forgotten).
for _ in $(seq 40); do
	since 2 "$mark" | grep -q "gateway 1 answers again" && break
	sleep 0.5
done
since 2 "$mark" | grep -q "gateway 1 answers again" || fail "gateway 2 does not see gateway 1 again"

say "case 2: gateway 1 unreachable for gateway 2 and cut off from C1; C2 still sees it"
case_cut "$C1_DIR" "$C1_CONF" wa "$N1" "$C2_CONF" wb "$N2" 1

for n in 1 2; do
	if report=$(sanitizer_report "$TEST_DIR/gw$n.log"); then
		fail "gateway $n reported a sanitizer error: $report"
	fi
done
say "PASS"
