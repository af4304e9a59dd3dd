#!/usr/bin/env bash
# The daemons under a service manager:
#  - systemd-analyze verify accepts both units (skipped when systemd-analyze is missing);
#  - isthmus-target speaks the readiness protocol on $NOTIFY_SOCKET: READY=1 only once its
#    portal accepts connections, RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 on
#    SIGTERM; an abstract socket name ('@...') works too;
#  - isthmus-initiator sends READY=1 only after its persistent login is up (connected, LUNs
#    probed), even when the target takes a while to answer the login.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3 jq

# --- unit files -----------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir -p "$TEST_DIR/units"
	for u in isthmus-target.service isthmus-initiator.service; do
		# The installed unit names the installed programs; here they are the build's.
		sed -e "s|@bindir@|$ISTHMUS_BIN|g" "$REPO_ROOT/systemd/$u.in" >"$TEST_DIR/units/$u"
	done
	# --man=no: the pages are checked by test_manpages.sh and are not installed here.
	if ! out=$(cd "$TEST_DIR/units" && systemd-analyze verify --man=no ./isthmus-target.service \
		./isthmus-initiator.service 2>&1); then
		echo "$out"
		fail "systemd-analyze verify rejects the units"
	fi
	# verify prints warnings for things it accepts; the units should not need any.
	if grep -qE 'isthmus-(target|initiator)\.service' <<<"$out"; then
		echo "$out"
		fail "systemd-analyze verify warns about the units"
	fi
	say "ok: systemd-analyze verify accepts isthmus-target.service and isthmus-initiator.service"
else
	note "SKIP part: systemd-analyze is not installed; the unit files are not verified"
fi

# --- the notification listener ----------------------------------------------------------------
# notify_listen SOCKET LOG MODE ARG: one line in LOG per datagram. MODE tcp: a READY=1 line gets
# " accept=yes|no", whether HOST:PORT (ARG) accepted a connection when it arrived. MODE cmd: a
# READY=1 line is followed by the output of the shell command ARG, run at once.
cat >"$TEST_DIR/notify_listen.py" <<'PY'
import os, socket, subprocess, sys
path, log, mode, arg = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + path[1:] if path.startswith("@") else path)
open(log + ".bound", "w").close()
with open(log, "a", buffering=1) as f:
    for _ in range(1000):
        msg = s.recv(4096).decode(errors="replace")
        line = msg.replace("\n", " ")
        if "READY=1" in msg.split("\n"):
            if mode == "tcp":
                host, port = arg.rsplit(":", 1)
                c = socket.socket()
                c.settimeout(1)
                try:
                    c.connect((host, int(port)))
                    line += " accept=yes"
                except OSError:
                    line += " accept=no"
                c.close()
            elif mode == "cmd":
                out = subprocess.run(arg, shell=True, capture_output=True, text=True, timeout=30)
                line += " state=" + out.stdout.strip().replace("\n", ",")
        f.write(line + "\n")
PY

LISTENER_PID=""
# listen_on SOCKET LOG MODE ARG : start the listener, wait until it is bound.
listen_on() {
	rm -f "$2" "$2.bound"
	: >"$2"
	bg_start python3 "$TEST_DIR/notify_listen.py" "$@"
	LISTENER_PID=$BG_LAST
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -e "$2.bound" ]] && return 0
		sleep 0.1
	done
	fail "the notification listener did not start"
}
# wait_lines LOG N SECS : until LOG has N lines.
wait_lines() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		(($(wc -l <"$1") >= $2)) && return 0
		sleep 0.1
	done
	return 1
}

# --- the target -------------------------------------------------------------------------------
IQN=iqn.2026-11.org.isthmus:notify
PORT=$(free_port)
cat >"$TEST_DIR/target.conf" <<CONF
[portal-group 1]
listen = 127.0.0.1:$PORT
[target $IQN]
lun 0 = memory,size=4M
CONF
LOG=$TEST_DIR/notify-target.log
listen_on "$TEST_DIR/notify.sock" "$LOG" tcp "127.0.0.1:$PORT"
NOTIFY_SOCKET=$TEST_DIR/notify.sock start_target --config "$TEST_DIR/target.conf"
wait_lines "$LOG" 1 10 || fail "no notification from isthmus-target after start"
line=$(sed -n 1p "$LOG")
[[ "$line" == "READY=1 accept=yes" ]] || fail "first notification '$line', want READY=1 once the portal accepts"
say "ok: READY=1 after start, with the portal already accepting"

kill -HUP "$TARGET_PID"
wait_lines "$LOG" 3 10 || fail "no RELOADING=1 / READY=1 after SIGHUP: $(cat "$LOG")"
[[ $(sed -n 2p "$LOG") =~ ^RELOADING=1\ MONOTONIC_USEC=[0-9]+$ ]] || fail "second notification '$(sed -n 2p "$LOG")', want RELOADING=1"
[[ $(sed -n 3p "$LOG") == READY=1* ]] || fail "third notification '$(sed -n 3p "$LOG")', want READY=1 after the reload"
say "ok: RELOADING=1 (with MONOTONIC_USEC) then READY=1 around SIGHUP"

stop_target TERM
wait_lines "$LOG" 4 5 || fail "no STOPPING=1 after SIGTERM: $(cat "$LOG")"
[[ $(sed -n 4p "$LOG") == STOPPING=1 ]] || fail "fourth notification '$(sed -n 4p "$LOG")', want STOPPING=1"
[[ "$TARGET_EXIT" == 0 ]] || fail "target exit status $TARGET_EXIT after SIGTERM"
say "ok: STOPPING=1 on SIGTERM"
kill "$LISTENER_PID" 2>/dev/null || true

# The abstract namespace, as a service manager may hand out.
ABSTRACT="@isthmus-notify-test-$$-$RANDOM"
LOG2=$TEST_DIR/notify-abstract.log
listen_on "$ABSTRACT" "$LOG2" tcp "127.0.0.1:$PORT"
NOTIFY_SOCKET=$ABSTRACT start_target --config "$TEST_DIR/target.conf"
wait_lines "$LOG2" 1 10 || fail "no notification on the abstract socket $ABSTRACT"
[[ $(sed -n 1p "$LOG2") == "READY=1 accept=yes" ]] || fail "abstract socket: '$(sed -n 1p "$LOG2")'"
stop_target TERM
say "ok: READY=1 on an abstract socket name"
kill "$LISTENER_PID" 2>/dev/null || true

# --- the initiator daemon ---------------------------------------------------------------------
source "$(dirname "$0")/daemon_helpers.bash"
start_target --config "$TEST_DIR/target.conf"
# The persistent login goes through a relay that holds each new connection for 2 s before it
# passes it on: a daemon that said READY=1 before its login completed is caught in the act.
RELAY_PORT=$(free_port)
cat >"$TEST_DIR/relay.py" <<'PY'
import socket, sys, threading, time
lport, dport = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", lport))
srv.listen(8)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
for _ in range(100):
    c, _ = srv.accept()
    time.sleep(2)
    u = socket.create_connection(("127.0.0.1", dport))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
PY
bg_start python3 "$TEST_DIR/relay.py" "$RELAY_PORT" "$PORT"
for ((i = 0; i < 50; i++)); do port_open 127.0.0.1 "$RELAY_PORT" && break; sleep 0.1; done

dmn_start --no-fuse --no-nbd
ism persistent add "$IQN" --portal "127.0.0.1:$RELAY_PORT" >/dev/null || fail "persistent add"
dmn_stop
LOG3=$TEST_DIR/notify-initiator.log
listen_on "$TEST_DIR/notify-dmn.sock" "$LOG3" cmd \
	"${DMN_CLI[*]} session list --json --socket $DMN_SOCK | jq -r '.[] | .state + \"/\" + (.devices | length | tostring)'"
export NOTIFY_SOCKET=$TEST_DIR/notify-dmn.sock
dmn_start --no-fuse --no-nbd
unset NOTIFY_SOCKET
wait_lines "$LOG3" 1 30 || fail "no READY=1 from isthmus-initiator within 30 s"
line=$(sed -n 1p "$LOG3")
[[ "$line" == "READY=1 state=connected/1" ]] ||
	fail "initiator notified '$line', want READY=1 with its persistent session connected and its LUN probed"
say "ok: isthmus-initiator: READY=1 once the persistent login (held 2 s by the relay) is connected"
dmn_stop
wait_lines "$LOG3" 2 5 || fail "no STOPPING=1 from isthmus-initiator"
[[ $(sed -n 2p "$LOG3") == STOPPING=1 ]] || fail "initiator: '$(sed -n 2p "$LOG3")', want STOPPING=1"
say "ok: isthmus-initiator: STOPPING=1 on SIGTERM"
stop_target
