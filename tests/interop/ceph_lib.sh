# shellcheck shell=bash
# A throw-away Ceph cluster for the RBD tests, on top of tests/interop/lib.sh.
#
# A test sources lib.sh, then this file, then calls:
#   ceph_start                 a 1-mon, 1-OSD cluster (tests/ceph/micro-ceph.sh) in
#                              $TEST_DIR/ceph on a free port, pool "rbd" ready; exports
#                              CEPH_CONF; skips the test when the Ceph daemons are missing.
#                              Stopped (and its directory removed) when the test exits.
#   ceph_image NAME SIZE [ARGS...]
#                              create image rbd/NAME (size as `rbd create --size`, e.g. 64M),
#                              with more `rbd create` ARGS (--image-feature layering, ...)
#   ceph_pause / ceph_resume   freeze the cluster's daemons and let them go on; ceph_resume
#                              returns once the cluster serves a new client again (bounded by
#                              CEPH_RESUME_WAIT, default 60 s) and fails the test otherwise
#   rbd_cmd ARGS...            `rbd` with the test's configuration and a timeout
#   ceph_client_timeout SECS   clients of the cluster (the target included) give up an OSD or
#                              monitor request after SECS instead of the gateway's 20 s
#   start_rbd_gateways N IQN LUN [ARGS...]
#                              gateways 1..N of one group (docs/gateways.md), target IQN, LUN
#                              (an --lun spec such as "rbd:rbd/NAME,conf=$CEPH_CONF") and ARGS,
#                              each on a free port of 127.0.0.1: GW_PORT[n], GW_HP[n] (host:port),
#                              GW_PID[n]; log $TEST_DIR/gwN.log, mgmt socket $TEST_DIR/gwN.sock
#   ceph_start_second NAME     a second cluster (256 MiB memstore) in $TEST_DIR/ceph2 with a
#                              64 MiB image rbd/NAME; C2_DIR, C2_CONF (not exported). Stopped
#                              after the gateways, before the first cluster
#   rbd_gateway_pair NAME IQN  ceph_start, a 64 MiB image rbd/NAME, and gateways 1 and 2 serving
#                              it as IQN (start_rbd_gateways); PA, PB: their host:port
#   gw_start N                 start gateway N (again, after gw_stop) as start_rbd_gateways did;
#                              with GW_GID[N] set, it runs with that group id (setpriv), so
#                              nftables can tell its packets apart (meta skgid)
#   gw_stop N SIGNAL           signal gateway N and wait for it (STOP_TIMEOUT); fails the test on
#                              a sanitizer report in its log
# Gateways still running at exit are stopped (TERM, KILL after 15 s) before the cluster.

CEPH_DIR=""
C2_DIR=""
MICRO_CEPH=$REPO_ROOT/tests/ceph/micro-ceph.sh
# Seconds one rbd/ceph command may take.
CEPH_CMD_TIMEOUT=${CEPH_CMD_TIMEOUT:-60}

ceph_start() {
	need ceph-mon ceph-osd ceph rbd uuidgen monmaptool ceph-authtool
	local port
	port=$(free_port)
	CEPH_DIR=$TEST_DIR/ceph
	say "starting a Ceph cluster (1 mon on 127.0.0.1:$port, 1 memstore OSD)"
	local t0=$SECONDS
	if ! run_to 150 "$MICRO_CEPH" --port "$port" "$CEPH_DIR" >"$TEST_DIR/micro-ceph.log" 2>&1; then
		tail -n 20 "$TEST_DIR/micro-ceph.log" | sed 's/^/    /'
		fail "the Ceph cluster did not start (logs in $CEPH_DIR/log)"
	fi
	export CEPH_CONF=$CEPH_DIR/ceph.conf
	say "Ceph cluster ready in $((SECONDS - t0)) s"
}

# The configuration's last section is [client]: what is appended lands there.
ceph_client_timeout() {
	printf 'rados osd op timeout = %s\nrados mon op timeout = %s\n' "$1" "$1" >>"$CEPH_CONF"
}

ceph_start_second() { # NAME
	local port
	port=$(free_port)
	C2_DIR=$TEST_DIR/ceph2
	say "starting a second Ceph cluster (1 mon on 127.0.0.1:$port, 1 memstore OSD)"
	if ! MEMSTORE_BYTES=$((256 << 20)) run_to 150 "$MICRO_CEPH" --port "$port" "$C2_DIR" >"$TEST_DIR/micro-ceph2.log" 2>&1; then
		tail -n 20 "$TEST_DIR/micro-ceph2.log" | sed 's/^/    /'
		fail "the second Ceph cluster did not start"
	fi
	C2_CONF=$C2_DIR/ceph.conf
	CEPH_CONF=$C2_CONF rbd_cmd create --size 64M "rbd/$1" || fail "rbd create rbd/$1 on the second cluster"
}

rbd_cmd() {
	run_to "$CEPH_CMD_TIMEOUT" rbd "$@"
}

ceph_image() {
	rbd_cmd create --size "$2" "${@:3}" "rbd/$1" || fail "rbd create rbd/$1 failed"
}

CEPH_PAUSED_AT=$SECONDS
ceph_pause() {
	CEPH_PAUSED_AT=$SECONDS
	"$MICRO_CEPH" --pause "$CEPH_DIR"
}
ceph_resume() {
	local out
	out=$("$MICRO_CEPH" --resume "$CEPH_DIR" 2>&1) || {
		printf '%s\n' "$out" | sed 's/^/    /'
		fail "the resumed Ceph cluster does not serve again (logs in $CEPH_DIR/log)"
	}
	say "${out#micro-ceph: } (paused for $((SECONDS - CEPH_PAUSED_AT)) s)"
}

declare -A GW_PID=() GW_PORT=() GW_HP=() GW_GID=()
GW_ARGS=()

start_rbd_gateways() {
	local count=$1 n
	GW_ARGS=(--target "$2" --lun "$3" "${@:4}")
	for ((n = 1; n <= count; n++)); do
		GW_PORT[$n]=$(free_port)
		GW_HP[$n]=127.0.0.1:${GW_PORT[$n]}
	done
	for ((n = 1; n <= count; n++)); do
		GW_ARGS+=(--gateway-portal "$n=${GW_HP[$n]}")
	done
	for ((n = 1; n <= count; n++)); do
		gw_start "$n"
	done
}

rbd_gateway_pair() { # NAME IQN
	ceph_start
	ceph_image "$1" 64M
	start_rbd_gateways 2 "$2" "rbd:rbd/$1,conf=$CEPH_CONF"
	# shellcheck disable=SC2034 # for the test that sourced this file
	PA=${GW_HP[1]} PB=${GW_HP[2]}
}

gw_start() { # N
	local n=$1 extra=() as=()
	[[ -z "${GW_GID[$n]:-}" ]] || as=(setpriv --regid="${GW_GID[$n]}" --clear-groups)
	# As start_target does: the suite with several event loops reaches the gateways too.
	if [[ -n "${ISTHMUS_TARGET_THREADS:-}" && " ${GW_ARGS[*]} " != *" --threads"* ]]; then
		extra+=(--threads "$ISTHMUS_TARGET_THREADS")
	fi
	bg_start "${as[@]}" "$ISTHMUS_BIN/isthmus-target" --listen "${GW_HP[$n]}" --gateway "$n" "${GW_ARGS[@]}" "${extra[@]}" \
		--mgmt-socket "$TEST_DIR/gw$n.sock" --state-dir "$TEST_DIR/var$n" >>"$TEST_DIR/gw$n.log" 2>&1
	GW_PID[$n]=$BG_LAST
	wait_port "${GW_HP[$n]}" "${GW_PID[$n]}" || fail "gateway $n does not listen: $(tail -5 "$TEST_DIR/gw$n.log")"
	say "gateway $n: pid ${GW_PID[$n]} on ${GW_HP[$n]}"
}

gw_stop() { # N SIGNAL
	local n=$1 pid=${GW_PID[$1]} report
	kill "-$2" "$pid" 2>/dev/null || true
	timeout "$STOP_TIMEOUT" tail --pid="$pid" -f /dev/null || fail "gateway $n did not stop within ${STOP_TIMEOUT}s"
	wait "$pid" 2>/dev/null || true
	unset "GW_PID[$n]"
	if report=$(sanitizer_report "$TEST_DIR/gw$n.log"); then
		fail "gateway $n reported a sanitizer error: $report"
	fi
}

# Runs before lib.sh's cleanup: the target and the gateways (cluster clients) go first, then the cluster.
ceph_lib_cleanup() {
	local rc=$?
	set +e
	_stop_target TERM
	stop_pids 15 "${GW_PID[@]}"
	if [[ -n "$C2_DIR" && -d "$C2_DIR" ]]; then
		if ((rc == 0)) && [[ -z "${KEEP_TMP:-}" ]]; then
			"$MICRO_CEPH" --stop "$C2_DIR"
		else
			"$MICRO_CEPH" --stop-keep-logs "$C2_DIR"
		fi
	fi
	if [[ -n "$CEPH_DIR" && -d "$CEPH_DIR" ]]; then
		if ((rc == 0 || rc == 77)) && [[ -z "${KEEP_TMP:-}" ]]; then
			"$MICRO_CEPH" --stop "$CEPH_DIR"
		else # lib_cleanup keeps TEST_DIR: keep the daemons' logs in it too
			"$MICRO_CEPH" --stop-keep-logs "$CEPH_DIR"
		fi
	fi
	(exit "$rc")
	lib_cleanup
}
trap ceph_lib_cleanup EXIT
