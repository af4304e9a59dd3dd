#!/bin/bash
# micro-ceph.sh: a throw-away single-node Ceph cluster for tests (1 mon, 1 memstore OSD, no
# mgr unless asked), bound to 127.0.0.1, cephx on, every wait bounded.
#
#   micro-ceph.sh --port PORT DIR     start it in DIR (a new directory); pool "rbd" ready
#   micro-ceph.sh --stop DIR          stop its daemons (OSD first) and remove DIR
#   micro-ceph.sh --stop-keep-logs DIR   the same, but DIR/log stays (a failed test's evidence)
#   micro-ceph.sh --pause DIR         freeze every daemon (SIGSTOP): the cluster stops answering,
#                                     its clients' connections stay open and their ops time out
#   micro-ceph.sh --resume DIR        let them run again (SIGCONT) and wait, bounded by
#                                     CEPH_RESUME_WAIT (default 60 s), until the cluster serves
#                                     a new client again: daemons running, osd.0 up, the pool's
#                                     placement groups answering a listing; exit 1 with the
#                                     daemons' state and log tails when it does not
# A paused cluster is how tests take it away: the OSD's memstore loses everything on a real
# stop, so a stop and a start would not show whether acknowledged writes survived.
#
# Clients then use CEPH_CONF=DIR/ceph.conf (keyring DIR/ceph.client.admin.keyring).
# The caller picks the monitor's port (a free one: tests/interop/lib.sh's free_port).
# Env: WITH_MGR=1 starts a mgr (nothing here needs one); CEPH_WAIT (default 60) bounds
# each wait in seconds; MEMSTORE_BYTES (default 1 GiB) caps the OSD's memory store;
# CEPH_DEBUG=1 makes the daemons log their monitor, OSD, client and messenger steps.
set -euo pipefail

CEPH_WAIT=${CEPH_WAIT:-60}
WITH_MGR=${WITH_MGR:-0}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-1073741824}

usage() {
	echo "usage: $0 --port PORT DIR | --stop DIR | --stop-keep-logs DIR | --pause DIR | --resume DIR" >&2
	exit 2
}

# signal_daemons DIR SIGNAL
signal_daemons() {
	local p
	for p in "$1"/run/*.pid; do
		[ -f "$p" ] && kill -"$2" "$(cat "$p")" 2>/dev/null || true
	done
}

# Stop the daemons of DIR: OSD first, else it spends seconds looking for the monitor.
stop_daemons() {
	local dir=$1 p pid
	for p in "$dir"/run/osd.*.pid "$dir"/run/mgr.*.pid "$dir"/run/mon.*.pid; do
		[ -f "$p" ] || continue
		pid=$(cat "$p")
		rm -f "$p"
		kill -CONT "$pid" 2>/dev/null || true
		kill "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do # gone, or a zombie waiting for its parent
			case "$(ps -o stat= -p "$pid" 2>/dev/null)" in "" | Z*) break ;; esac
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	done
}

# until_ok SECS WHAT CMD...: run CMD every 0.2 s until it succeeds, at most SECS seconds.
until_ok() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= end)); then
			echo "micro-ceph: $what not ready after ${secs}s (logs in $DIR/log)" >&2
			return 1
		fi
		sleep 0.2
	done
}

debug_conf() {
	[ "${CEPH_DEBUG:-0}" = 1 ] || return 0
	printf '%s\n' "[mon]" "debug mon = 10" "debug paxos = 10" "debug monc = 20" "debug ms = 1" "debug auth = 10" \
		"[osd]" "debug osd = 10" "debug monc = 20" "debug ms = 1" "debug auth = 10"
}

# daemons_running: every daemon of DIR exists and is not stopped (a SIGCONT again if it is).
daemons_running() {
	local p st
	for p in "$DIR"/run/*.pid; do
		[ -f "$p" ] || continue
		st=$(ps -o stat= -p "$(cat "$p")" 2>/dev/null) || return 1
		case "$st" in
		T* | t*) kill -CONT "$(cat "$p")" 2>/dev/null; return 1 ;;
		"" | Z*) return 1 ;;
		esac
	done
}

# serving: what a new client needs, each step bounded: the monitor answers and has osd.0 up,
# and the OSD lists the pool (every placement group active).
serving() {
	daemons_running && osd_up && timeout 10 rados --client-mount-timeout 5 --rados-osd-op-timeout 5 -p rbd ls >/dev/null 2>&1
}

# resume_wait: after SIGCONT, until serving, at most CEPH_RESUME_WAIT seconds.
resume_wait() {
	local t0 end now
	t0=$(date +%s%N)
	end=$((SECONDS + ${CEPH_RESUME_WAIT:-60}))
	until serving; do
		if ((SECONDS >= end)); then
			echo "micro-ceph: not serving ${CEPH_RESUME_WAIT:-60} s after the resume" >&2
			local p
			for p in "$DIR"/run/*.pid; do
				[ -f "$p" ] && echo "  $(basename "$p" .pid): pid $(cat "$p") state '$(ps -o stat= -p "$(cat "$p")" 2>/dev/null)'" >&2
			done
			for p in "$DIR"/log/mon.a.log "$DIR"/log/osd.0.log; do
				echo "  --- last lines of $p" >&2
				tail -n 15 "$p" 2>/dev/null | cut -c1-300 | sed 's/^/    /' >&2
			done
			return 1
		fi
		sleep 0.2
	done
	now=$(date +%s%N)
	echo "micro-ceph: serving again $(((now - t0) / 1000000)) ms after the resume"
}

osd_up() { timeout 10 ceph --connect-timeout 5 osd dump 2>/dev/null | grep -q '^osd.0 up'; }

case "${1:-}" in
--stop)
	DIR=${2:?$(usage)}
	stop_daemons "$DIR"
	rm -rf "${DIR:?}"
	exit 0
	;;
--stop-keep-logs)
	DIR=${2:?$(usage)}
	stop_daemons "$DIR"
	find "${DIR:?}" -mindepth 1 -maxdepth 1 ! -name log -exec rm -rf {} +
	exit 0
	;;
--pause)
	signal_daemons "${2:?$(usage)}" STOP
	exit 0
	;;
--resume)
	DIR=${2:?$(usage)}
	export CEPH_CONF=$DIR/ceph.conf
	signal_daemons "$DIR" CONT
	resume_wait
	exit $?
	;;
--port)
	MON_PORT=${2:?$(usage)}
	DIR=${3:?$(usage)}
	;;
*) usage ;;
esac

[ -e "$DIR" ] && { echo "micro-ceph: $DIR exists; stop or remove it first" >&2; exit 1; }
mkdir -p "$DIR"/{mon,osd,mgr,log,run}
DIR=$(cd "$DIR" && pwd)
FSID=$(uuidgen)
OSD_UUID=$(uuidgen)
export CEPH_CONF=$DIR/ceph.conf

cat >"$CEPH_CONF" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.05
$(debug_conf)
# Paused on purpose (--pause): nothing may count a pause against a daemon or a client. The
# monitor would mark the lone OSD down for the beacons it missed and then out (the OSD must
# boot again and its placement groups peer before a client gets an answer); the OSD must never
# kill itself over a worker that did not move while it was frozen; and every client of the
# monitor (the OSD's included) that lost its session while the monitor was frozen hunts for it
# again every second instead of backing off to 30 s between tries.
mon osd report timeout = 3600
mon osd down out interval = 0
osd heartbeat grace = 3600
osd op thread suicide timeout = 0
osd command thread suicide timeout = 0
mon client hunt interval = 1
mon client hunt interval max multiple = 2
$(debug_conf)
[mon.a]
mon data = $DIR/mon
[osd.0]
osd data = $DIR/osd
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
keyring = $DIR/osd/keyring
[mgr.x]
mgr data = $DIR/mgr
keyring = $DIR/mgr/keyring
[client]
keyring = $DIR/ceph.client.admin.keyring
admin socket =
log file = /dev/null
CONF

ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" --gen-key -n client.admin \
	--cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/ceph.client.admin.keyring" >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
ceph-mon -c "$CEPH_CONF" -i a 2>>"$DIR/log/mon.err" # daemonizes, writes run/mon.a.pid
until_ok "$CEPH_WAIT" "monitor" timeout 10 ceph --connect-timeout 5 mon stat

OSD_SECRET=$(ceph-authtool --gen-print-key)
printf '{"cephx_secret": "%s"}' "$OSD_SECRET" >"$DIR/osd/secret.json"
OSD_ID=$(timeout "$CEPH_WAIT" ceph osd new "$OSD_UUID" -i "$DIR/osd/secret.json")
[ "$OSD_ID" = 0 ] || { echo "micro-ceph: unexpected OSD id '$OSD_ID'" >&2; exit 1; }
ceph-authtool --create-keyring "$DIR/osd/keyring" -n osd.0 --add-key "$OSD_SECRET" >/dev/null
timeout "$CEPH_WAIT" ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" 2>>"$DIR/log/osd-mkfs.err"
ceph-osd -c "$CEPH_CONF" -i 0 2>>"$DIR/log/osd.err" # daemonizes, writes run/osd.0.pid
until_ok "$CEPH_WAIT" "OSD" osd_up

if [ "$WITH_MGR" = 1 ]; then
	timeout "$CEPH_WAIT" ceph auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
		-o "$DIR/mgr/keyring"
	ceph-mgr -c "$CEPH_CONF" -i x 2>>"$DIR/log/mgr.err"
fi

timeout "$CEPH_WAIT" ceph osd pool create rbd 8 8 >/dev/null 2>&1
timeout "$CEPH_WAIT" rbd pool init rbd
echo "micro-ceph: ready; export CEPH_CONF=$CEPH_CONF"
