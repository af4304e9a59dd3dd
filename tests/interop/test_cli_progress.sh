#!/usr/bin/env bash
# isthmus read and write show progress on a terminal, and only there:
#  - under script(1) (standard error a pseudo-terminal): progress lines rewritten in place with
#    bytes, the total, the percentage and the rate, the last one at 100%; several of them when
#    the transfer lasts over a second;
#  - standard error a pipe or a file: no progress, the summary line on standard output as before;
#  - --json or --quiet on a terminal: no progress (--quiet: no summary either).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need script python3 cmp

use_cli

IQN=iqn.2026-11.org.isthmus:progress
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/lun0.img,size=256M"
URL=$(lun_url "$HP" "$IQN" 0)
BLOCKS=$(((256 << 20) / 512))
head -c $((256 << 20)) /dev/urandom >"$TEST_DIR/in.bin"

# on_tty OUT CMD...: CMD with a pseudo-terminal as standard output and error; all it wrote into OUT.
on_tty() {
	local out=$1 cmd
	shift
	printf -v cmd '%q ' "$@"
	run_to "$CLIENT_TIMEOUT" script -qec "$cmd" /dev/null >"$out" </dev/null
}
# draws FILE: progress lines drawn (the terminal also turns each newline into CR LF)
draws() { grep -ao "MiB of" "$1" | wc -l; }

# slow enough for several redraws: one command of 64 KiB in flight
t0=$(date +%s%N)
on_tty "$TEST_DIR/w.tty" "$INI" write "$URL" --lba 0 --in "$TEST_DIR/in.bin" --depth 1 --io-size 64 ||
	fail "write on a terminal: $(tail -c 300 "$TEST_DIR/w.tty")"
ms=$((($(date +%s%N) - t0) / 1000000))
grep -aq "wrote 256.0 MiB of 256.0 MiB (100%)" "$TEST_DIR/w.tty" ||
	fail "no final progress line on the terminal: $(tail -c 300 "$TEST_DIR/w.tty" | cat -v)"
grep -aqE "MiB/s" "$TEST_DIR/w.tty" || fail "the progress has no rate"
n=$(draws "$TEST_DIR/w.tty")
if ((ms > 1000)); then
	((n >= 3)) || fail "a write of $ms ms drew the progress $n times (want several)"
fi
say "ok: write on a terminal: $n progress draws in $ms ms, the last at 100%: $(tr '\r' '\n' <"$TEST_DIR/w.tty" | grep -a "(100%)" | head -n1 | sed 's/\x1b\[K//')"

on_tty "$TEST_DIR/r.tty" "$INI" read "$URL" --lba 0 --blocks "$BLOCKS" --out "$TEST_DIR/out.bin" --depth 1 --io-size 64 ||
	fail "read on a terminal"
cmp -s "$TEST_DIR/in.bin" "$TEST_DIR/out.bin" || fail "read back differs from what was written"
grep -aq "read 256.0 MiB of 256.0 MiB (100%)" "$TEST_DIR/r.tty" || fail "no read progress on the terminal: $(tail -c 300 "$TEST_DIR/r.tty" | cat -v)"
say "ok: read on a terminal: $(draws "$TEST_DIR/r.tty") progress draws, the last at 100%; the data reads back"

# not a terminal: standard error to a pipe and to a file
run_to "$CLIENT_TIMEOUT" "$INI" write "$URL" --lba 0 --in "$TEST_DIR/in.bin" 2>&1 | cat >"$TEST_DIR/w.pipe"
grep -q "^wrote $BLOCKS blocks of 512 bytes at LBA 0" "$TEST_DIR/w.pipe" || fail "piped write: no summary line: $(cat "$TEST_DIR/w.pipe")"
! grep -aqE $'\r|MiB of' "$TEST_DIR/w.pipe" || fail "piped write shows progress: $(cat -v "$TEST_DIR/w.pipe")"
run_to "$CLIENT_TIMEOUT" "$INI" read "$URL" --lba 0 --blocks "$BLOCKS" --out "$TEST_DIR/out.bin" >"$TEST_DIR/r.out" 2>"$TEST_DIR/r.err"
[[ ! -s "$TEST_DIR/r.err" ]] || fail "read with standard error in a file wrote to it: $(cat -v "$TEST_DIR/r.err")"
say "ok: standard error a pipe or a file: no progress, the summary line as before"

# a terminal, but --json or --quiet
on_tty "$TEST_DIR/j.tty" "$INI" --json write "$URL" --lba 0 --in "$TEST_DIR/in.bin" || fail "--json write on a terminal"
! grep -aq "MiB of" "$TEST_DIR/j.tty" || fail "--json write shows progress: $(cat -v "$TEST_DIR/j.tty")"
python3 -c 'import json, sys; j = json.loads(open(sys.argv[1]).read().strip()); assert j["command"] == "write", j' "$TEST_DIR/j.tty" ||
	fail "--json write on a terminal is not one JSON object: $(cat -v "$TEST_DIR/j.tty")"
on_tty "$TEST_DIR/q.tty" "$INI" --quiet read "$URL" --lba 0 --blocks "$BLOCKS" --out "$TEST_DIR/out.bin" || fail "--quiet read"
[[ ! -s "$TEST_DIR/q.tty" ]] || fail "--quiet read on a terminal printed: $(cat -v "$TEST_DIR/q.tty")"
on_tty "$TEST_DIR/q2.tty" "$INI" write -q "$URL" --lba 0 --in "$TEST_DIR/in.bin" || fail "-q write"
[[ ! -s "$TEST_DIR/q2.tty" ]] || fail "-q write on a terminal printed: $(cat -v "$TEST_DIR/q2.tty")"
say "ok: --json and --quiet/-q on a terminal: no progress (--json: one JSON object, --quiet: nothing)"
