#!/usr/bin/env bash
# Install the Debian packages Isthmus needs, by purpose: each set includes the one before it.
# Idempotent: only packages that are not installed yet are passed to apt-get.
#   scripts/deps.sh [build|test|bench] [--check]
#     build   compile and run isthmus-target, isthmus-initiator and isthmus (`make run`)
#     test    everything `make test` runs against (the default)
#     bench   `make bench`: the test set and the load and network tools of bench/
#     --check only report what is missing (exit 1 if anything is)
set -euo pipefail

BUILD_PACKAGES=(
	build-essential meson ninja-build pkg-config
	libisal-dev libssl-dev libjansson-dev libfuse3-dev fuse3
	liburing-dev                      # io_uring for file and block-device stores
	librbd-dev librados-dev           # LUNs on Ceph RBD images
	scdoc                             # the manual pages (man/*.scd) are built with it
)
TEST_PACKAGES=(
	clang libclang-rt-14-dev          # clang-14 ASan/UBSan/libFuzzer runtimes
	libiscsi-bin libiscsi-dev         # iscsi-ls, iscsi-inq, iscsi-test-cu, iscsi-perf
	qemu-utils qemu-block-extra       # qemu-img, qemu-nbd; its iscsi:// driver is in qemu-block-extra
	qemu-system-common                # qemu-storage-daemon (FUSE export) for bench/devices.sh
	fio                               # bench/devices.sh: fio's nbd and libaio engines
	tgt istgt                         # foreign targets for interop checks and benchmarks
	iproute2 procps python3 openssl
	nftables                          # tests drop one connection's packets (a dead path)
	open-isns-server open-isns-utils  # isnsd and isnsadm: the iSNS server test_isns.sh registers with
	valgrind                          # test_isns_scn.sh runs isnsd under it: its notification connection handling
	jq                                # the daemon tests read the management socket's JSON
	prometheus                        # promtool checks the target's metrics exposition
	curl
	ceph-mon ceph-osd ceph-common     # a throw-away cluster for the RBD tests (tests/ceph/micro-ceph.sh)
	tgt-rbd                           # tgtd's rbd backing store, for comparisons
	debhelper dpkg-dev                # make deb and tests/interop/test_deb.sh
)
BENCH_PACKAGES=(
	iperf3                            # bench/run.sh: the loopback TCP ceiling
)

check_only=0
set_name=test
for arg in "$@"; do
	case "$arg" in
	--check) check_only=1 ;;
	build | test | bench) set_name=$arg ;;
	*) echo "usage: $0 [build|test|bench] [--check]" >&2; exit 2 ;;
	esac
done
PACKAGES=("${BUILD_PACKAGES[@]}")
[[ $set_name == build ]] || PACKAGES+=("${TEST_PACKAGES[@]}")
[[ $set_name != bench ]] || PACKAGES+=("${BENCH_PACKAGES[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "deps ($set_name): all ${#PACKAGES[@]} packages present"
	exit 0
fi

echo "deps ($set_name): missing: ${missing[*]}"
if ((check_only)); then
	exit 1
fi

if [[ $(id -u) -eq 0 ]]; then
	SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO=(sudo -n)
else
	echo "deps: installing packages needs root; run as root or with password-less sudo:" >&2
	echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

# Packaged daemons must not hold the default iSCSI port or interfere with tests.
for svc in tgt istgt; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		"${SUDO[@]}" systemctl stop "$svc" || true
	fi
done

echo "deps: installed: ${missing[*]}"
