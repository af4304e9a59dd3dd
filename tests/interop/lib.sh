# shellcheck shell=bash
# Shared helpers for the interop tests in tests/interop/test_*.sh.
#
# A test sources this file right after `set -euo pipefail`.  It gets:
#   TEST_NAME, TEST_DIR (a fresh temp dir under tests/tmp/, removed unless the test failed
#   or KEEP_TMP is set), TARGET_LOG, and a cleanup trap that stops everything started here
#   say MSG / note MSG / fail MSG (exit 1) / skip MSG (exit 77) / need CMD... (skip if missing)
#   free_port                    a free TCP port on 127.0.0.1 (and on ::1 when it exists)
#   start_target ARGS...         start the target under test with isthmus-target's CLI, wait
#                                until every listen address accepts connections (TARGET_PID)
#   stop_target [SIGNAL]         SIGTERM (or SIGNAL), bounded wait, SIGKILL; sets TARGET_EXIT;
#                                fails on an ASan/LSan/UBSan report in the target log
#   lun_url HOST:PORT IQN LUN [USER%SECRET] [QUERY]   a libiscsi URL for a LUN
#   map_lun LUN                  the LUN number the peer uses for isthmus LUN LUN
#   has_quirk NAME               true if the peer under test has a known, tolerated deviation
#   log_mark / log_since MARK / wait_log MARK REGEX [SECS]   target log since a mark
#   run_to SECS CMD...           run a client command with a timeout
#   bg_start CMD...              a background client, killed at cleanup (BG_LAST = its pid)
#   stop_pids SECS PID...        SIGTERM to each, SIGKILL to those still running SECS s later
#   alive PID / port_open HOST PORT / have_ipv6
#   iscsi_xfer                   build the libiscsi copy tool (iscsi-xfer.c); prints its path
#   use_cli                      INI = the isthmus CLI under test, with a state directory of
#                                the test's own and no ISTHMUS_CONFIG from the environment
#   check_case WHAT SECS CMD...  say "checking: WHAT", run CMD (bounded), its output indented;
#                                the test fails with WHAT when CMD fails
#   start_fake_target [ARGS...]  tests/interop/fake_target.py (ARGS: its options) on a free
#                                port of 127.0.0.1: PORT, HP (host:port), its log FAKE_LOG
#   run_test_cu FAMILY URL [URL2]   libiscsi's iscsi-test-cu with a pass/fail verdict
#   start_tgtd PORT [HOST]       a bare tgtd (TGTD_PID, TGTD_CTL); configure it with tgtd_adm
#   tgtd_adm ARGS... / tgtd_add_lun TID LUN SPEC / tgtd_shutdown PID CTL
#
# TARGET_IMPL selects the implementation that start_target brings up:
#   isthmus (default)  $ISTHMUS_BIN/isthmus-target with the given arguments
#   tgtd               tgtd, configured with tgtadm to match the same arguments
#                      (listen addresses, targets, LUNs, CHAP, mutual CHAP, ACLs,
#                      discovery CHAP), so every script can be checked against a
#                      known-good foreign target.  See docs/testing.md.

if [[ -n "${ISTHMUS_LIB_LOADED:-}" ]]; then
	return 0
fi
ISTHMUS_LIB_LOADED=1

INTEROP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$INTEROP_DIR/../.." && pwd)
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
TARGET_IMPL=${TARGET_IMPL:-isthmus}
if [[ -z "${ISTHMUS_BIN:-}" ]]; then
	if [[ -x "$REPO_ROOT/build-asan/isthmus-target" ]]; then
		ISTHMUS_BIN=$REPO_ROOT/build-asan
	else
		ISTHMUS_BIN=$REPO_ROOT/build
	fi
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# Seconds a single client command may take before it counts as hung.
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-120}
# Seconds the target gets to accept connections after start.
START_TIMEOUT=${START_TIMEOUT:-10}
# Seconds the target gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT=${STOP_TIMEOUT:-10}

TMP_BASE=${TMP_BASE:-$REPO_ROOT/tests/tmp}
mkdir -p "$TMP_BASE"
TEST_DIR=$(mktemp -d "$TMP_BASE/$TEST_NAME.XXXXXX")
TARGET_LOG=$TEST_DIR/target.log
: >"$TARGET_LOG"

TARGET_PID=""        # pid of the running target process (isthmus-target or tgtd)
TARGET_EXIT=""       # exit status of the last stopped target
TARGET_CTL=""        # tgtd control port (-C) of the running tgtd
LUN_OFFSET=0         # tgtd keeps LUN 0 for its controller; isthmus LUN n is tgtd LUN n+1
declare -a BG_PIDS=()        # client processes started in the background by the test
declare -a EXTRA_TGTD=()     # "pid:ctl" of tgtd instances started with start_tgtd
declare -a PORTS_GIVEN=()
declare -a TARGET_PORTS=()   # host:port pairs the running target listens on

say() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }
note() { say "note: $*"; }

fail() {
	say "FAIL: $*"
	if [[ -s "$TARGET_LOG" ]]; then
		say "--- last 20 lines of target log ($TARGET_LOG) ---"
		tail -n 20 "$TARGET_LOG" | sed 's/^/    /'
	fi
	exit 1
}

skip() {
	say "SKIP: $*"
	exit 77
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c is not installed (scripts/deps.sh installs it)"
	done
}

# run_to SECS CMD... : run a command with a hard timeout (exit 124 on timeout).
run_to() {
	local secs=$1
	shift
	timeout --kill-after=5 "$secs" "$@"
}

# Print a TCP port that is free on 127.0.0.1 and, when IPv6 loopback exists, on ::1.
free_port() {
	local p i
	for ((i = 0; i < 50; i++)); do
		p=$(python3 - <<-'EOF'
		import socket
		s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		s.bind(("127.0.0.1", 0))
		port = s.getsockname()[1]
		try:
		    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
		    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
		    s6.bind(("::1", port))
		    s6.close()
		except OSError as e:
		    import errno
		    if e.errno == errno.EADDRINUSE:
		        port = 0
		s.close()
		print(port)
		EOF
		)
		[[ "$p" != 0 ]] || continue
		if [[ " ${PORTS_GIVEN[*]:-} " == *" $p "* ]]; then
			continue
		fi
		PORTS_GIVEN+=("$p")
		echo "$p"
		return 0
	done
	fail "could not find a free port"
}

have_ipv6() {
	python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null
}

# port_open HOST PORT : true if a TCP connect succeeds within 1 s.
port_open() {
	python3 - "$1" "$2" <<-'EOF' 2>/dev/null
	import socket, sys
	host = sys.argv[1].strip("[]")
	fam = socket.AF_INET6 if ":" in host else socket.AF_INET
	s = socket.socket(fam, socket.SOCK_STREAM)
	s.settimeout(1)
	s.connect((host, int(sys.argv[2])))
	s.close()
	EOF
}

# split_hostport "[::1]:3260" -> sets HP_HOST=[::1] HP_PORT=3260
split_hostport() {
	HP_HOST=${1%:*}
	HP_PORT=${1##*:}
}

wait_port() {
	local hostport=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT))
	split_hostport "$hostport"
	while ((SECONDS < deadline)); do
		if [[ -n "$pid" ]] && ! alive "$pid"; then
			return 2
		fi
		if port_open "$HP_HOST" "$HP_PORT"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# map_lun N : LUN number the peer under test uses for isthmus LUN N.
map_lun() { echo $(($1 + LUN_OFFSET)); }

# lun_url HOST:PORT IQN LUN [USER%SECRET] [QUERY]
lun_url() {
	local hp=$1 iqn=$2 lun=$3 userinfo=${4:-} query=${5:-} url
	url="iscsi://"
	[[ -n "$userinfo" ]] && url+="$userinfo@"
	url+="$hp/$iqn/$(map_lun "$lun")"
	[[ -n "$query" ]] && url+="?$query"
	echo "$url"
}

# Known, tolerated deviations of foreign peers from what isthmus-target must do.
#   lun0-controller        tgtd exposes a controller at LUN 0; storage LUNs start at 1
#   sendtargets-per-family tgtd's SendTargets lists only portals of the connection's address family
#   log-wording            the target log uses other words than isthmus-target for login failures
#   ignores-sigterm        tgtd blocks SIGTERM; it is shut down with `tgtadm --op delete --mode system`
has_quirk() {
	case "$TARGET_IMPL:$1" in
	tgtd:lun0-controller | tgtd:sendtargets-per-family | tgtd:log-wording | tgtd:ignores-sigterm) return 0 ;;
	# istgt loops when libiscsi's iscsi-ls runs discovery, has no IPv6 listener here and serves
	# one portal; it is a peer for data and login interop, not for discovery comparisons.
	istgt:no-libiscsi-discovery | istgt:single-portal | istgt:log-wording | istgt:one-connection | \
	istgt:auth-reject-key | istgt:check-condition-without-sense) return 0 ;;
	*) return 1 ;;
	esac
}

# INQUIRY identity the peer reports for its disks.
case "$TARGET_IMPL" in
tgtd) PEER_VENDOR=IET PEER_PRODUCT=VIRTUAL-DISK ;;
istgt) PEER_VENDOR=FreeBSD PEER_PRODUCT="iSCSI DISK" ;;
*) PEER_VENDOR=ISTHMUS PEER_PRODUCT=VIRTUAL-DISK ;;
esac

log_mark() { stat -c %s "$TARGET_LOG"; }
log_since() { tail -c +"$(($1 + 1))" "$TARGET_LOG"; }

# wait_log MARK REGEX [SECS] : wait until the log after MARK matches REGEX (ERE, case-insensitive).
wait_log() {
	local mark=$1 re=$2 secs=${3:-5} deadline
	deadline=$((SECONDS + secs))
	while ((SECONDS < deadline)); do
		log_since "$mark" | grep -Eqi -- "$re" && return 0
		sleep 0.2
	done
	log_since "$mark" | grep -Eqi -- "$re"
}

# alive PID : the process exists and is not a zombie waiting to be reaped.
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n "$st" && "$st" != Z && "$st" != X ]]
}

sanitizer_report() {
	grep -E -m1 -- 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$1" 2>/dev/null
}

# Start a client in the background; it is killed at cleanup if still running.
bg_start() {
	"$@" &
	BG_PIDS+=("$!")
	BG_LAST=$!
}

# ---------------------------------------------------------------------------
# Target under test

# start_target ARGS... : start the target with isthmus-target's command line
#   --listen HOST:PORT (repeatable) --target IQN --lun SPEC (repeatable)
#   --config FILE --log-level LEVEL
# and wait until every listen address accepts connections.
start_target() {
	[[ -z "$TARGET_PID" ]] || fail "start_target: a target is already running (pid $TARGET_PID)"
	TARGET_PORTS=()
	TARGET_EXIT=""
	local -a args=("$@")
	local i cfg=""
	for ((i = 0; i < ${#args[@]}; i++)); do
		case "${args[i]}" in
		--listen) TARGET_PORTS+=("${args[i + 1]}") ;;
		--listen=*) TARGET_PORTS+=("${args[i]#--listen=}") ;;
		--config) cfg=${args[i + 1]} ;;
		--config=*) cfg=${args[i]#--config=} ;;
		esac
	done
	if [[ -n "$cfg" ]]; then
		local line
		while IFS= read -r line; do
			TARGET_PORTS+=("$line")
		done < <(sed -nE 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*([^[:space:]#]+).*/\1/p' "$cfg")
	fi
	((${#TARGET_PORTS[@]} > 0)) || fail "start_target: no listen address in the arguments or config"

	case "$TARGET_IMPL" in
	isthmus) cfg_file=$cfg start_isthmus "${args[@]}" ;;
	tgtd) start_tgtd_as_target "${args[@]}" ;;
	istgt) start_istgt_as_target "${args[@]}" ;;
	*) fail "unknown TARGET_IMPL=$TARGET_IMPL (isthmus or tgtd)" ;;
	esac
}

start_isthmus() {
	local bin=$ISTHMUS_BIN/isthmus-target hp rc
	[[ -x "$bin" ]] || fail "no target binary at $bin (build first, or set ISTHMUS_BIN)"
	local -a extra=()
	# A private management socket, so parallel targets never share the default path.
	if [[ " $* " != *" --mgmt-socket"* ]] && ! grep -qsE '^[[:space:]]*mgmt-socket[[:space:]]*=' "${cfg_file:-/dev/null}"; then
		extra=(--mgmt-socket "$TEST_DIR/mgmt-$$.sock")
	fi
	# Its state (APTPL reservations) inside the test's files, not in the system's default.
	if [[ " $* " != *" --state-dir"* ]] && ! grep -qsE '^[[:space:]]*state-dir[[:space:]]*=' "${cfg_file:-/dev/null}"; then
		extra+=(--state-dir "$TEST_DIR/var")
	fi
	# The whole suite with several event loops: ISTHMUS_TARGET_THREADS=4 tests/run.sh interop
	# (a test that names its own loop count, by flag or in its configuration file, keeps it)
	if [[ -n "${ISTHMUS_TARGET_THREADS:-}" && " $* " != *" --threads"* && " $* " != *" --check-config"* ]] &&
		! grep -qsE '^[[:space:]]*threads[[:space:]]*=' "${cfg_file:-/dev/null}"; then
		extra+=(--threads "$ISTHMUS_TARGET_THREADS")
	fi
	say "starting: $bin $* ${extra[*]}"
	echo "### $(date +%T) start: $bin $* ${extra[*]}" >>"$TARGET_LOG"
	(cd "$TEST_DIR" && exec "$bin" "$@" "${extra[@]}") >>"$TARGET_LOG" 2>&1 &
	TARGET_PID=$!
	for hp in "${TARGET_PORTS[@]}"; do
		rc=0
		wait_port "$hp" "$TARGET_PID" || rc=$?
		if ((rc == 2)); then
			rc=0
			wait "$TARGET_PID" || rc=$?
			TARGET_PID=""
			fail "isthmus-target exited with status $rc before listening on $hp"
		elif ((rc != 0)); then
			fail "isthmus-target does not accept connections on $hp after ${START_TIMEOUT}s"
		fi
	done
	say "target pid $TARGET_PID listening on ${TARGET_PORTS[*]}"
}

# one_target_conf FILE IQN [LINE...] : write FILE, the configuration of one target IQN listening
# on 127.0.0.1:$PORT, with its management socket at $SOCK and its state under $TEST_DIR/state;
# each LINE goes into the target's section (LUNs, alias). CONF_GLOBAL, when set, holds more
# [global] lines (threads, NOP timing).
one_target_conf() {
	local file=$1 iqn=$2
	shift 2
	{
		echo "[global]"
		if [[ -n "${CONF_GLOBAL:-}" ]]; then
			echo "$CONF_GLOBAL"
		fi
		echo "state-dir = $TEST_DIR/state"
		echo "mgmt-socket = $SOCK"
		echo "[portal-group 1]"
		echo "listen = 127.0.0.1:$PORT"
		echo "[target $iqn]"
		printf '%s\n' "$@"
	} >"$file"
}

# stop_target [SIGNAL] : stop the target, bounded; sets TARGET_EXIT.
# Fails the test if the target printed a sanitizer report.
stop_target() {
	local report
	_stop_target "${1:-TERM}"
	if report=$(sanitizer_report "$TARGET_LOG"); then
		fail "target reported a sanitizer error: $report"
	fi
	return 0
}

_stop_target() {
	local sig=$1 deadline rc=0
	[[ -n "$TARGET_PID" ]] || return 0
	if [[ -n "$TARGET_CTL" && "$sig" == TERM ]]; then
		# tgtd standing in for the target: its orderly shutdown is a tgtadm request.
		tgtd_shutdown "$TARGET_PID" "$TARGET_CTL"
	elif kill -0 "$TARGET_PID" 2>/dev/null; then
		kill -s "$sig" "$TARGET_PID" 2>/dev/null || true
		deadline=$((SECONDS + STOP_TIMEOUT))
		while alive "$TARGET_PID" && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if alive "$TARGET_PID"; then
			say "target pid $TARGET_PID still running ${STOP_TIMEOUT}s after SIG$sig; sending SIGKILL"
			kill -KILL "$TARGET_PID" 2>/dev/null || true
		fi
	fi
	wait "$TARGET_PID" 2>/dev/null || rc=$?
	TARGET_EXIT=$rc
	echo "### $(date +%T) target exited with status $rc" >>"$TARGET_LOG"
	TARGET_PID=""
	if [[ -n "$TARGET_CTL" ]]; then
		rm -f "/var/run/tgtd/socket.$TARGET_CTL" "/var/run/tgtd/socket.$TARGET_CTL.lock" 2>/dev/null || true
		TARGET_CTL=""
	fi
}

# ---------------------------------------------------------------------------
# tgtd

# tgtd's management channel number (-C): 1..32767, not used by another tgtd on this machine.
pick_tgtd_ctl() {
	local n i
	for ((i = 0; i < 100; i++)); do
		n=$((1000 + RANDOM % 31000))
		if [[ ! -e /var/run/tgtd/socket.$n && ! -e /var/run/tgtd/socket.$n.lock ]]; then
			echo "$n"
			return 0
		fi
	done
	fail "no free tgtd control port"
}

# tgtd blocks SIGTERM; it stops on `tgtadm --op delete --mode system`, once its
# targets are deleted (--force ends their sessions).
tgtd_shutdown() {
	local pid=$1 ctl=$2 deadline tid
	# Offline first: no new logins (libiscsi initiators reconnect at once).
	timeout -k 2 5 tgtadm -C "$ctl" --op update --mode sys --name State -v offline >/dev/null 2>&1 || true
	for tid in $(timeout -k 2 5 tgtadm -C "$ctl" --lld iscsi --op show --mode target 2>/dev/null |
		sed -nE 's/^Target ([0-9]+):.*/\1/p'); do
		timeout -k 2 5 tgtadm -C "$ctl" --lld iscsi --op delete --mode target --tid "$tid" --force >/dev/null 2>&1 || true
	done
	timeout -k 2 5 tgtadm -C "$ctl" --op delete --mode system >/dev/null 2>&1 || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if alive "$pid"; then
		echo "tgtd $pid did not stop on request; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "/var/run/tgtd/socket.$ctl" "/var/run/tgtd/socket.$ctl.lock" 2>/dev/null || true
}

# start_tgtd PORT [HOST] : start a bare tgtd listening on HOST:PORT (default 127.0.0.1).
# Sets TGTD_PID and TGTD_CTL; configure it with `tgtd_adm ...`.  Logs to TEST_DIR/tgtd-PORT.log.
start_tgtd() {
	local port=$1 host=${2:-127.0.0.1} log
	command -v tgtd >/dev/null 2>&1 || skip "tgtd is not installed (scripts/deps.sh installs it)"
	log=$TEST_DIR/tgtd-$port.log
	TGTD_CTL=$(pick_tgtd_ctl)
	TGTD_LOG=$log
	tgtd -f -C "$TGTD_CTL" --iscsi "portal=$host:$port" >>"$log" 2>&1 &
	TGTD_PID=$!
	EXTRA_TGTD+=("$TGTD_PID:$TGTD_CTL")
	local rc=0
	wait_port "$host:$port" "$TGTD_PID" || rc=$?
	((rc == 0)) || fail "tgtd did not start on $host:$port (see $log)"
	local deadline=$((SECONDS + START_TIMEOUT))
	until timeout 5 tgtadm -C "$TGTD_CTL" --op show --mode sys >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "tgtd control socket $TGTD_CTL not ready"
		sleep 0.1
	done
}

tgtd_adm() {
	local out
	if ! out=$(timeout -k 2 10 tgtadm -C "$TGTD_CTL" --lld iscsi "$@" 2>&1); then
		fail "tgtadm $*: $out"
	fi
}

# tgtd_add_lun TID LUN SPEC : SPEC is an isthmus LUN spec (PATH[,size=N][,ro][,bs=N] or memory,size=N)
tgtd_add_lun() {
	local tid=$1 lun=$2 spec=$3 path size="" ro=0 bs="" opt
	local -a opts
	IFS=, read -r -a opts <<<"$spec"
	path=${opts[0]}
	for opt in "${opts[@]:1}"; do
		case "$opt" in
		size=*) size=${opt#size=} ;;
		ro) ro=1 ;;
		bs=*) bs=${opt#bs=} ;;
		esac
	done
	if [[ "$path" == memory ]]; then
		path=$TEST_DIR/memory-lun-$tid-$lun.img
		rm -f "$path"
	fi
	if [[ ! -e "$path" ]]; then
		[[ -n "$size" ]] || fail "LUN $spec: no size for a new backing file"
		truncate -s "$size" "$path"
	fi
	local -a extra=()
	[[ -n "$bs" ]] && extra+=(--blocksize "$bs")
	tgtd_adm --op new --mode logicalunit --tid "$tid" --lun "$lun" -b "$path" "${extra[@]}"
	if ((ro)); then
		tgtd_adm --op update --mode logicalunit --tid "$tid" --lun "$lun" --params readonly=1
	fi
}

# Start tgtd configured like isthmus-target would be by the same arguments.
# start_istgt_as_target ARGS... : istgt in place of isthmus-target, for the initiator tests.
# Supports the first --listen, --target, file and memory --lun specs (memory becomes a sparse file),
# and from --config: LUNs, CHAP and mutual CHAP of one target.
start_istgt_as_target() {
	command -v istgt >/dev/null || skip "istgt is not installed"
	local -a args=("$@") luns=()
	local i iqn="" cfg="" dir=$TEST_DIR/istgt
	local chap_u="" chap_s="" mut_u="" mut_s=""
	for ((i = 0; i < ${#args[@]}; i++)); do
		case "${args[i]}" in
		--listen) ((++i)) ;;
		--target) iqn=${args[++i]} ;;
		--lun) luns+=("${args[++i]}") ;;
		--config) cfg=${args[++i]} ;;
		--log-level | --mgmt-socket) ((++i)) ;;
		*) fail "start_target (istgt): unsupported argument ${args[i]}" ;;
		esac
	done
	if [[ -n "$cfg" ]]; then
		local line key val
		while IFS= read -r line || [[ -n "$line" ]]; do
			line=$(sed -E 's/#.*//; s/^[[:space:]]+|[[:space:]]+$//g' <<<"$line")
			[[ -n "$line" ]] || continue
			if [[ "$line" =~ ^\[target\ (.*)\]$ ]]; then
				iqn=${BASH_REMATCH[1]}
				continue
			fi
			key=$(sed -E 's/[[:space:]]*=.*$//' <<<"$line")
			val=$(sed -E 's/^[^=]*=[[:space:]]*//' <<<"$line")
			case "$key" in
			lun\ *) luns+=("$val") ;;
			chap-user) chap_u=$val ;;
			chap-secret) chap_s=$val ;;
			mutual-user) mut_u=$val ;;
			mutual-secret) mut_s=$val ;;
			esac
		done <"$cfg"
	fi
	[[ -n "$iqn" ]] || fail "start_target (istgt): no target"
	mkdir -p "$dir"
	local lunlines="" spec path size
	for ((i = 0; i < ${#luns[@]}; i++)); do
		spec=${luns[i]}
		path=${spec%%,*}
		size=$(sed -nE 's/.*size=([0-9]+[KkMmGg]?).*/\1/p' <<<"$spec")
		[[ "$path" == memory ]] && path=$dir/memory$i.img
		if [[ ! -e "$path" ]]; then
			truncate -s "${size:-64M}" "$path"
		elif [[ -n "$size" ]]; then
			truncate -s "$size" "$path"
		fi
		lunlines+="  LUN$i Storage $path Auto"$'\n'
	done
	local auth="None" mutual=""
	if [[ -n "$chap_u" ]]; then
		auth="CHAP"
		printf '[AuthGroup1]\n  Auth "%s" "%s"%s\n' "$chap_u" "$chap_s" \
			"${mut_u:+ \"$mut_u\" \"$mut_s\"}" >"$dir/auth.conf"
		# Mutual stays the initiator's choice, as with isthmus-target: not "CHAP Mutual".
	else
		printf '[AuthGroup1]\n  Auth "unused" "unusedsecret1"\n' >"$dir/auth.conf"
	fi
	split_hostport "${TARGET_PORTS[0]}"
	cat >"$dir/istgt.conf" <<-EOF
	[Global]
	  NodeBase "iqn.2026-11.org.isthmus.test"
	  PidFile $dir/istgt.pid
	  AuthFile $dir/auth.conf
	  MediaDirectory $dir
	  Timeout 30
	  NopInInterval 20
	  DiscoveryAuthMethod Auto
	  MaxSessions 16
	  MaxConnections 4
	  MaxOutstandingR2T 16
	  FirstBurstLength 262144
	  MaxBurstLength 1048576
	  MaxRecvDataSegmentLength 262144
	  InitialR2T Yes
	  ImmediateData Yes
	[UnitControl]
	  AuthMethod CHAP Mutual
	  AuthGroup AuthGroup1
	[PortalGroup1]
	  Portal DA1 ${TARGET_PORTS[0]}
	[InitiatorGroup1]
	  InitiatorName "ALL"
	  Netmask 127.0.0.0/8
	[LogicalUnit1]
	  TargetName $iqn
	  Mapping PortalGroup1 InitiatorGroup1
	  AuthMethod $auth$mutual
	  AuthGroup AuthGroup1
	  UseDigest Auto
	  UnitType Disk
	  QueueDepth 128
	$lunlines
	EOF
	say "starting istgt in place of isthmus-target: $*"
	echo "### $(date +%T) start istgt for: $*" >>"$TARGET_LOG"
	istgt -c "$dir/istgt.conf" -p "$dir/istgt.pid" -D >>"$TARGET_LOG" 2>&1 &
	TARGET_PID=$!
	wait_port "${TARGET_PORTS[0]}" "$TARGET_PID" || fail "istgt did not start on ${TARGET_PORTS[0]}"
	say "istgt pid $TARGET_PID listening on ${TARGET_PORTS[0]}"
}

start_tgtd_as_target() {
	local -a args=("$@") luns=() listens=()
	local i iqn="" cfg=""
	for ((i = 0; i < ${#args[@]}; i++)); do
		case "${args[i]}" in
		--listen) listens+=("${args[++i]}") ;;
		--listen=*) listens+=("${args[i]#--listen=}") ;;
		--target) iqn=${args[++i]} ;;
		--target=*) iqn=${args[i]#--target=} ;;
		--lun) luns+=("${args[++i]}") ;;
		--lun=*) luns+=("${args[i]#--lun=}") ;;
		--config) cfg=${args[++i]} ;;
		--config=*) cfg=${args[i]#--config=} ;;
		--log-level) ((++i)) ;;
		--log-level=*) ;;
		*) fail "start_target (tgtd): unsupported argument ${args[i]}" ;;
		esac
	done
	LUN_OFFSET=1
	split_hostport "${TARGET_PORTS[0]}"
	say "starting tgtd in place of isthmus-target: $*"
	echo "### $(date +%T) start tgtd for: $*" >>"$TARGET_LOG"
	TARGET_CTL=$(pick_tgtd_ctl)
	tgtd -f -C "$TARGET_CTL" --iscsi "portal=${TARGET_PORTS[0]}" >>"$TARGET_LOG" 2>&1 &
	TARGET_PID=$!
	local rc=0
	wait_port "${TARGET_PORTS[0]}" "$TARGET_PID" || rc=$?
	((rc == 0)) || fail "tgtd did not start on ${TARGET_PORTS[0]}"
	TGTD_CTL=$TARGET_CTL
	local deadline=$((SECONDS + START_TIMEOUT))
	until timeout 5 tgtadm -C "$TGTD_CTL" --op show --mode sys >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "tgtd control socket not ready"
		sleep 0.1
	done
	local hp
	for hp in "${TARGET_PORTS[@]:1}"; do
		tgtd_adm --op new --mode portal --param "portal=$hp"
	done
	local tid=0
	if [[ -n "$iqn" ]]; then
		tid=1
		tgtd_new_target "$tid" "$iqn"
		for ((i = 0; i < ${#luns[@]}; i++)); do
			tgtd_add_lun "$tid" $((i + 1)) "${luns[i]}"
		done
		tgtd_adm --op bind --mode target --tid "$tid" -I ALL
	fi
	[[ -z "$cfg" ]] || tgtd_apply_config "$cfg" "$tid"
	for hp in "${TARGET_PORTS[@]:1}"; do
		wait_port "$hp" "$TARGET_PID" || fail "tgtd does not listen on $hp"
	done
	say "tgtd pid $TARGET_PID (control port $TGTD_CTL) listening on ${TARGET_PORTS[*]}"
}

tgtd_new_target() {
	tgtd_adm --op new --mode target --tid "$1" -T "$2"
	# Offer digests like a full-featured target; tgtd's default is None only.
	tgtd_adm --op update --mode target --tid "$1" -n HeaderDigest -v CRC32C,None
	tgtd_adm --op update --mode target --tid "$1" -n DataDigest -v CRC32C,None
}

tgtd_account() {
	# tgtd_account USER SECRET : create the account once
	if ! timeout 10 tgtadm -C "$TGTD_CTL" --lld iscsi --op show --mode account 2>/dev/null | grep -qx "[[:space:]]*$1"; then
		tgtd_adm --op new --mode account --user "$1" --password "$2"
	fi
}

# Translate an isthmus config file into tgtadm commands (portals are already set up).
tgtd_apply_config() {
	local cfg=$1 tid=$2 line section="" key val
	local cur_tid="" allow_any
	local -a allows=()
	local chap_u="" chap_s="" mut_u="" mut_s=""
	flush_target() {
		[[ -n "$cur_tid" ]] || return 0
		if ((${#allows[@]} == 0)); then
			tgtd_adm --op bind --mode target --tid "$cur_tid" -I ALL
		else
			local a
			for a in "${allows[@]}"; do
				tgtd_adm --op bind --mode target --tid "$cur_tid" -Q "$a"
			done
		fi
		if [[ -n "$chap_u" ]]; then
			tgtd_account "$chap_u" "$chap_s"
			tgtd_adm --op bind --mode account --tid "$cur_tid" --user "$chap_u"
		fi
		if [[ -n "$mut_u" ]]; then
			tgtd_account "$mut_u" "$mut_s"
			tgtd_adm --op bind --mode account --tid "$cur_tid" --user "$mut_u" --outgoing
		fi
		cur_tid="" allows=() chap_u="" chap_s="" mut_u="" mut_s=""
	}
	local disc_u="" disc_s=""
	while IFS= read -r line || [[ -n "$line" ]]; do
		line=${line%%#*}
		line=$(sed -E 's/^[[:space:]]+|[[:space:]]+$//g' <<<"$line")
		[[ -n "$line" ]] || continue
		if [[ "$line" =~ ^\[(.*)\]$ ]]; then
			flush_target
			section=${BASH_REMATCH[1]}
			if [[ "$section" == target\ * ]]; then
				tid=$((tid + 1))
				cur_tid=$tid
				tgtd_new_target "$cur_tid" "${section#target }"
			fi
			continue
		fi
		key=$(sed -E 's/[[:space:]]*=.*$//' <<<"$line")
		val=$(sed -E 's/^[^=]*=[[:space:]]*//' <<<"$line")
		case "$section:$key" in
		global:discovery-chap-user) disc_u=$val ;;
		global:discovery-chap-secret) disc_s=$val ;;
		target\ *:lun\ *) tgtd_add_lun "$cur_tid" $((${key#lun } + 1)) "$val" ;;
		target\ *:allow) allows+=("$val") ;;
		target\ *:chap-user) chap_u=$val ;;
		target\ *:chap-secret) chap_s=$val ;;
		target\ *:mutual-user) mut_u=$val ;;
		target\ *:mutual-secret) mut_s=$val ;;
		*) ;;
		esac
	done <"$cfg"
	flush_target
	if [[ -n "$disc_u" ]]; then
		tgtd_account "$disc_u" "$disc_s"
		tgtd_adm --op bind --mode account --user "$disc_u"
	fi
}

# ---------------------------------------------------------------------------
# Small helpers used by several tests

# iscsi_xfer : build (once per test) and print the path of the libiscsi copy tool.
iscsi_xfer() {
	local out=$TEST_DIR/iscsi-xfer
	if [[ ! -x "$out" ]]; then
		command -v cc >/dev/null 2>&1 || skip "no C compiler for the iscsi-xfer helper"
		[[ -f /usr/include/iscsi/iscsi.h ]] || skip "libiscsi-dev is not installed (scripts/deps.sh installs it)"
		cc -O2 -Wall -o "$out" "$INTEROP_DIR/iscsi-xfer.c" -liscsi >"$TEST_DIR/iscsi-xfer.build.log" 2>&1 ||
			fail "building iscsi-xfer failed: $(cat "$TEST_DIR/iscsi-xfer.build.log")"
	fi
	echo "$out"
}

# run_test_cu FAMILY URL [URL2] : run libiscsi's iscsi-test-cu conformance suite (destructive
# tests allowed) with XML results, print a summary and the failed tests, and fail unless every
# test that ran passed.  URL2, a second URL for the same LUN, enables the multipath tests.
# CU_TOLERATED (space-separated Suite.Test names) lists failures accepted for a foreign peer;
# it is empty for isthmus-target.
run_test_cu() {
	local family=$1 url=$2 url2=${3:-} dir=$TEST_DIR/cunit rc=0
	need iscsi-test-cu
	mkdir -p "$dir"
	local -a args=(-x -d --test="$family" -i iqn.2026-11.org.isthmus:cu-a -I iqn.2026-11.org.isthmus:cu-b "$url")
	[[ -z "$url2" ]] || args+=("$url2")
	say "running: iscsi-test-cu ${args[*]}"
	(cd "$dir" && run_to "${CU_TIMEOUT:-240}" iscsi-test-cu "${args[@]}" >"$dir/console.log" 2>&1) || rc=$?
	((rc != 124 && rc != 137)) || fail "iscsi-test-cu did not finish within ${CU_TIMEOUT:-240}s"
	[[ -s "$dir/CUnitAutomated-Results.xml" ]] ||
		fail "iscsi-test-cu (exit $rc) wrote no results: $(tail -5 "$dir/console.log")"
	local tolerated=${CU_TOLERATED-}
	if [[ -z "${CU_TOLERATED+x}" && "$TARGET_IMPL" == tgtd ]]; then
		# What tgt 1.0.85 is known to fail (checked on Debian 12).
		tolerated="iSCSIdatasn.iSCSIDataSnInvalid GetLBAStatus.BeyondEol PrinServiceactionRange.Range
			ProutReserve.OwnershipEA ProutReserve.OwnershipEARO ProutReserve.OwnershipWE
			ProutReserve.OwnershipWERO WriteSame10.UnmapVPD WriteSame16.UnmapVPD Reserve6.2Initiators
			MultipathIO.CompareAndWriteAsync"
	fi
	local verdict=0
	python3 - "$dir/CUnitAutomated-Results.xml" "$tolerated" <<-'PY' | tee "$dir/summary.txt" || verdict=$?
	import re, sys, xml.etree.ElementTree as ET
	text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
	# CUnit writes the DOCTYPE and stylesheet lines; ElementTree does not need them.
	text = re.sub(r"<!DOCTYPE[^>]*>", "", text)
	root = ET.fromstring(text.encode())
	tolerated = set(sys.argv[2].split())
	passed, failed, suites_failed = [], {}, []
	for suite in root.iter("CUNIT_RUN_SUITE"):
	    for child in suite:
	        name = (child.findtext("SUITE_NAME") or "").strip()
	        if child.tag == "CUNIT_RUN_SUITE_FAILURE":
	            suites_failed.append("%s (%s)" % (name, (child.findtext("FAILURE_REASON") or "").strip()))
	            continue
	        for rec in child.iter("CUNIT_RUN_TEST_RECORD"):
	            for res in rec:
	                t = name + "." + (res.findtext("TEST_NAME") or "").strip()
	                if res.tag == "CUNIT_RUN_TEST_SUCCESS":
	                    passed.append(t)
	                else:
	                    cond = "%s:%s %s" % ((res.findtext("FILE_NAME") or "").strip(),
	                                         (res.findtext("LINE_NUMBER") or "").strip(),
	                                         (res.findtext("CONDITION") or "").strip())
	                    failed.setdefault(t, []).append(cond)
	passed = [t for t in dict.fromkeys(passed) if t not in failed]
	bad = [t for t in failed if t not in tolerated]
	print("iscsi-test-cu: %d tests ran: %d passed, %d failed (%d tolerated for this peer), %d suites failed to set up"
	      % (len(passed) + len(failed), len(passed), len(failed), len(failed) - len(bad), len(suites_failed)))
	for s in suites_failed:
	    print("  SUITE SETUP FAILED %s" % s)
	for t, conds in failed.items():
	    print("  %s %s: %s" % ("TOLERATED" if t in tolerated else "FAILED", t, "; ".join(conds[:3])))
	ok = passed or failed
	sys.exit(0 if ok and not bad and not suites_failed else 1)
	PY
	if ((verdict != 0)); then
		# Re-run a few failed tests in verbose mode for their messages.
		local t n=0
		for t in $(sed -nE 's/^  FAILED ([^:]+):.*/\1/p' "$dir/summary.txt"); do
			((n++ < 10)) || break
			say "--- details: $t"
			(cd "$dir" && run_to 60 iscsi-test-cu -d --test="$family.$t" -i iqn.2026-11.org.isthmus:cu-a \
				-I iqn.2026-11.org.isthmus:cu-b "$url" ${url2:+"$url2"} 2>&1 | grep -E 'FAILED|\[' | head -8) || true
		done
		fail "iscsi-test-cu --test=$family: failures (see above; full results in $dir)"
	fi
}

# ---------------------------------------------------------------------------
# Shared steps of several scripts

check_case() {
	local what=$1 secs=$2 out rc=0
	shift 2
	say "checking: $what"
	out=$(run_to "$secs" "$@" 2>&1) || rc=$?
	sed 's/^/    /' <<<"$out"
	((rc == 0)) || fail "$what"
}

start_fake_target() {
	PORT=$(free_port)
	HP=127.0.0.1:$PORT
	FAKE_LOG=$TEST_DIR/fake_target.log
	: >"$FAKE_LOG"
	bg_start python3 "$INTEROP_DIR/fake_target.py" "$PORT" --log "$FAKE_LOG" "$@"
	wait_port "$HP" "$BG_LAST" || fail "fake target does not listen"
}

use_cli() {
	INI=$ISTHMUS_BIN/isthmus
	[[ -x "$INI" ]] || fail "no isthmus binary at $INI (build first, or set ISTHMUS_BIN)"
	export ISTHMUS_STATE_DIR=$TEST_DIR/state
	unset ISTHMUS_CONFIG
}

# ---------------------------------------------------------------------------
# Cleanup: stop everything the test started; keep TEST_DIR when the test failed.

# stop_pids SECS PID...: SIGTERM to all, then SIGKILL to each one still there SECS s later.
stop_pids() {
	local secs=$1 p
	shift
	for p in "$@"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "$@"; do
		timeout "$secs" tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null
	done
	return 0
}

lib_cleanup() {
	local rc=$?
	trap - EXIT
	set +e
	stop_pids 5 "${BG_PIDS[@]}"
	_stop_target TERM
	if ((rc == 0)) && report=$(sanitizer_report "$TARGET_LOG"); then
		say "FAIL: target reported a sanitizer error: $report"
		rc=1
	fi
	local entry
	for entry in "${EXTRA_TGTD[@]}"; do
		tgtd_shutdown "${entry%%:*}" "${entry##*:}"
	done
	if ((rc == 0 || rc == 77)) && [[ -z "${KEEP_TMP:-}" ]]; then
		rm -rf "$TEST_DIR"
	else
		say "files kept in $TEST_DIR"
	fi
	exit "$rc"
}
trap lib_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
