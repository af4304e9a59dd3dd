# shellcheck shell=bash
# An iSNS server (open-isns's isnsd) for the tests, in a network namespace of the test's own:
# isnsd listens on every address at port 3205, so it must not share the host's network.
#   isns_netns_reexec "$@"   first line of a test: run the script again inside `unshare -n`
#                            (skip, exit 77, when isnsd/isnsadm or namespaces are unavailable);
#                            inside, loopback is up with ISNS_ADDR on it
#   isnsd_start [KEY=VALUE...]   start isnsd (extra isnsd.conf lines), wait for its port (ISNSD_PID)
#   isnsd_stop                   stop it, bounded
#   isns_adm ARGS...             isnsadm through isnsd's control socket, bounded
#   isns_list TYPE               isnsadm --list TYPE over TCP, as the node
#                                iqn.2026-11.org.isthmus:isnsadm: what shares a discovery domain
#                                with that name (through the control socket it lists nothing)
#   (ISNSD_DEBUG=FLAGS: isnsd -d FLAGS; ISNSD_WRAP="CMD ARGS": run isnsd under CMD, e.g. valgrind)
#   isns_db                      what isnsd's database holds now (isnsd --dump-db): every object,
#                                whatever discovery domains would let a client see
#   wait_db WHAT SECS CMD...     until CMD (a check of what isnsd or a client holds) succeeds,
#                                polled every 0.3 s; the test fails with WHAT after SECS
# Sourced after lib.sh (isnsd_start); isns_netns_reexec runs before lib.sh.

# TEST-NET-1: never routed, and only inside this namespace. isnsd resolves its own name with
# AI_ADDRCONFIG, which needs one address that is not loopback.
ISNS_ADDR=192.0.2.1

isns_netns_reexec() {
	if [[ -n "${ISNS_IN_NETNS:-}" ]]; then
		ip link set lo up || exit 1
		ip addr add "$ISNS_ADDR/32" dev lo || exit 1
		return 0
	fi
	local t
	for t in isnsd isnsadm unshare ip; do
		command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t not installed (open-isns-server, open-isns-utils)"; exit 77; }
	done
	unshare -n true 2>/dev/null || { echo "SKIP: cannot create a network namespace (needs root)"; exit 77; }
	ISNS_IN_NETNS=1 exec unshare -n -- bash "$0" "$@"
}

ISNSD_PID=""

isnsd_start() {
	ISNS_DIR=$TEST_DIR/isns
	mkdir -p "$ISNS_DIR/db"
	{
		echo "Database = $ISNS_DIR/db"
		echo "PIDFile = $ISNS_DIR/isnsd.pid"
		echo "ControlSocket = $ISNS_DIR/control"
		echo "Security = 0"
		echo "SLPRegister = 0"
		printf '%s\n' "$@"
	} >"$ISNS_DIR/isnsd.conf"
	{
		echo "ServerAddress = $ISNS_ADDR"
		echo "ControlSocket = $ISNS_DIR/control"
		echo "SourceName = iqn.2026-11.org.isthmus:isnsadm"
		echo "Security = 0"
	} >"$ISNS_DIR/client.conf"
	bg_start ${ISNSD_WRAP:-} isnsd -f -4 ${ISNSD_DEBUG:+-d "$ISNSD_DEBUG"} -c "$ISNS_DIR/isnsd.conf" >>"$ISNS_DIR/isnsd.log" 2>&1
	ISNSD_PID=$BG_LAST
	local deadline=$((SECONDS + 10))
	until port_open "$ISNS_ADDR" 3205 && [[ -S "$ISNS_DIR/control" ]]; do
		alive "$ISNSD_PID" || fail "isnsd exited at start: $(tail -5 "$ISNS_DIR/isnsd.log")"
		((SECONDS < deadline)) || fail "isnsd does not listen on $ISNS_ADDR:3205 after 10 s"
		sleep 0.1
	done
	say "isnsd pid $ISNSD_PID on $ISNS_ADDR:3205 ($*)"
}

isnsd_stop() {
	[[ -n "$ISNSD_PID" ]] || return 0
	kill -TERM "$ISNSD_PID" 2>/dev/null || true
	timeout 5 tail --pid="$ISNSD_PID" -f /dev/null 2>/dev/null || kill -KILL "$ISNSD_PID" 2>/dev/null || true
	ISNSD_PID=""
}

isns_adm() { timeout 20 isnsadm -c "$ISNS_DIR/client.conf" --local "$@" 2>>"$ISNS_DIR/isnsadm.err"; }

isns_list() { timeout 20 isnsadm -c "$ISNS_DIR/client.conf" --list "$@" 2>>"$ISNS_DIR/isnsadm.err"; }

isns_db() { timeout 20 isnsd -c "$ISNS_DIR/isnsd.conf" --dump-db 2>>"$ISNS_DIR/isnsadm.err"; }

wait_db() {
	local what=$1 secs=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || fail "$what: not so after $secs s"
		sleep 0.3
	done
}
