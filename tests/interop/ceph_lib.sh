# shellcheck shell=bash
# A throw-away Ceph cluster for the RBD tests, on top of tests/interop/lib.sh.
#
# A test sources lib.sh, then this file, then calls:
#   ceph_start                 a 1-mon, 1-OSD cluster (tests/ceph/micro-ceph.sh) in
#                              $TEST_DIR/ceph on a free port, pool "rbd" ready; exports
#                              CEPH_CONF; skips the test when the Ceph daemons are missing.
#                              Stopped (and its directory removed) when the test exits.
#   ceph_image NAME SIZE       create image rbd/NAME (size as `rbd create --size`, e.g. 64M)
#   ceph_pause / ceph_resume   freeze the cluster's daemons and let them go on; ceph_resume
#                              returns once the cluster serves a new client again (bounded by
#                              CEPH_RESUME_WAIT, default 60 s) and fails the test otherwise
#   rbd_cmd ARGS...            `rbd` with the test's configuration and a timeout
#   ceph_client_timeout SECS   clients of the cluster (the target included) give up an OSD or
#                              monitor request after SECS instead of the gateway's 20 s

CEPH_DIR=""
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

rbd_cmd() {
	run_to "$CEPH_CMD_TIMEOUT" rbd "$@"
}

ceph_image() {
	rbd_cmd create --size "$2" "rbd/$1" || fail "rbd create rbd/$1 failed"
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

# Runs before lib.sh's cleanup: the target (a cluster client) goes first, then the cluster.
ceph_lib_cleanup() {
	local rc=$?
	set +e
	_stop_target TERM
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
