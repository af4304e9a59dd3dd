# Sourced, before lib.sh, by interop tests that cut the network with nftables.
# in_own_netns TOOLS ARGS... : run this script again (with ARGS) in a network namespace of its
# own (unshare -n, lo only), so its rules touch nothing outside; there, bring lo up and return.
# Skips (exit 77) without root or without one of TOOLS (a space-separated list).
in_own_netns() {
	local tool
	if [[ -n "${ISTHMUS_PARTITION_NS:-}" ]]; then
		ip link set lo up
		return 0
	fi
	if [[ $(id -u) != 0 ]]; then
		echo "SKIP: a network namespace and nftables rules need root"
		exit 77
	fi
	for tool in $1; do
		if ! command -v "$tool" >/dev/null; then
			echo "SKIP: no $tool"
			exit 77
		fi
	done
	ISTHMUS_PARTITION_NS=1 exec unshare -n "$0" "${@:2}"
}
