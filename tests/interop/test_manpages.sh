#!/usr/bin/env bash
# The manual pages match the programs:
#  - every option that a program's --help prints (isthmus: also `isthmus target --help` and
#    `isthmus login --help`) appears in that program's page;
#  - every configuration key the target's parser accepts (src/target/config_parse.c) appears in
#    isthmus-target.conf(5), every key of the initiator daemon's parser (src/daemon/config.c)
#    in isthmus-initiator.conf(5);
#  - isthmus(8) lists every exit status of src/cli/exit_status.h;
#  - the example configurations parse (--check-config of each daemon).
# The pages are the roff that meson built from man/*.scd, rendered with man(1).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need python3

MANDIR=$ISTHMUS_BIN/man
PAGES=(isthmus.8 isthmus-target.8 isthmus-initiator.8 isthmus-perf.1 isthmus-target.conf.5 isthmus-initiator.conf.5)
for p in "${PAGES[@]}"; do
	[[ -s "$MANDIR/$p" ]] || fail "no built page $MANDIR/$p (meson builds it from man/$p.scd with scdoc)"
done

# render PAGE : the page as plain text, one paragraph per line (no wrapping, no hyphenation).
render() {
	if command -v man >/dev/null 2>&1; then
		MANWIDTH=10000 LC_ALL=C.UTF-8 man -l "$MANDIR/$1" 2>/dev/null | col -b | sed 's/\xe2\x80\x90/-/g; s/\xe2\x88\x92/-/g'
	else
		# Without man: the roff itself, with its escapes for '-' and fonts taken out.
		sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$MANDIR/$1"
	fi
}
mkdir -p "$TEST_DIR/text"
for p in "${PAGES[@]}"; do
	render "$p" >"$TEST_DIR/text/$p"
	[[ $(wc -l <"$TEST_DIR/text/$p") -gt 10 ]] || fail "page $p renders to almost nothing"
done

# has_word PAGE WORD : WORD appears in PAGE as a whole option or key (not as part of a longer one).
has_word() {
	grep -qE -- "(^|[^A-Za-z0-9-])$(sed 's/[.[\*^$]/\\&/g' <<<"$2")([^A-Za-z0-9-]|$)" "$TEST_DIR/text/$1"
}

missing=0
# check_help PAGE CMD... : the options CMD --help prints are all in PAGE.
check_help() {
	local page=$1 opts o n=0
	shift
	opts=$("$@" --help 2>&1 | grep -oE -- '(--[a-z][a-z0-9-]*[a-z0-9]|(^|[[ |,])-[a-zA-Z]([] ,|]|$))' |
		sed -E 's/^[[ |,]//; s/[] ,|]$//' | sort -u) || true
	[[ -n "$opts" ]] || fail "$* --help prints no options"
	for o in $opts; do
		n=$((n + 1))
		if ! has_word "$page" "$o"; then
			say "missing: $o ($* --help) is not in $page"
			missing=$((missing + 1))
		fi
	done
	say "checked $n options of '$* --help' against $page"
}
check_help isthmus-target.8 "$ISTHMUS_BIN/isthmus-target"
check_help isthmus-initiator.8 "$ISTHMUS_BIN/isthmus-initiator"
check_help isthmus-perf.1 "$ISTHMUS_BIN/isthmus-perf"
check_help isthmus.8 "$ISTHMUS_BIN/isthmus"
check_help isthmus.8 "$ISTHMUS_BIN/isthmus" target
check_help isthmus.8 "$ISTHMUS_BIN/isthmus" login
((missing == 0)) || fail "$missing option(s) of the programs' --help are not in their pages"
say "ok: every option of every --help is in its page"

# Keys each parser accepts, read from its source: the literals it compares a key with.
cat >"$TEST_DIR/keys.py" <<'PY'
import re, sys

def body(src, fn):
    m = re.search(r"\n[^\n;]*\b%s\(([^)]*)\)\s*\{" % fn, src)
    if not m:
        sys.exit("function %s not found" % fn)
    i, depth = m.end(), 1
    while depth:
        depth += {"{": 1, "}": -1}.get(src[i], 0)
        i += 1
    return src[m.end():i]

def literals(text, var):
    return set(re.findall(r'str(?:n?case)?n?cmp\(%s, "([^"]+)"' % var, text))

which, path = sys.argv[1], sys.argv[2]
src = open(path).read()
keys = set()
if which == "target":
    chap = literals(body(src, "chap_key"), "k")
    for fn in ("global_key", "group_key", "target_key", "initiator_key"):
        b = body(src, fn)
        keys |= {k.strip() for k in literals(b, "key")}
        keys |= set(re.findall(r'\{"([a-z-]+)", offsetof', b))
        for prefix in re.findall(r'chap_key\(p, [^,]+, "([^"]*)"', b):
            keys |= {prefix + k for k in chap}
    keys |= {"[%s" % s for s in literals(body(src, "section"), "inner")}
else:
    keys = literals(body(src, "dmn_config_load"), "k")
print("\n".join(sorted(keys)))
PY
check_keys() {
	local which=$1 src=$2 page=$3 min=$4 keys k n=0
	keys=$(python3 "$TEST_DIR/keys.py" "$which" "$REPO_ROOT/$src") || fail "cannot read the keys of $src"
	for k in $keys; do
		n=$((n + 1))
		if [[ $k == \[* ]]; then
			grep -qF -- "$k" "$TEST_DIR/text/$page" || { say "missing: section $k] of $src is not in $page"; missing=$((missing + 1)); }
		elif ! has_word "$page" "$k"; then
			say "missing: key $k of $src is not in $page"
			missing=$((missing + 1))
		fi
	done
	# A parser that the extraction no longer understands must not pass with nothing to check.
	((n >= min)) || fail "found only $n keys in $src (expected at least $min): the key extraction needs updating"
	say "checked $n keys of $src against $page"
}
check_keys target src/target/config_parse.c isthmus-target.conf.5 30
check_keys initiator src/daemon/config.c isthmus-initiator.conf.5 13
((missing == 0)) || fail "$missing configuration key(s) are not in the conf(5) pages"
say "ok: every configuration key is in its conf(5) page"

# Exit statuses of the CLI.
while read -r name value; do
	grep -qE "^ +$value\$" <<<"$(sed -n '/^EXIT STATUS/,/^[A-Z]/p' "$TEST_DIR/text/isthmus.8")" ||
		fail "exit status $value ($name, src/cli/exit_status.h) is not in isthmus(8) EXIT STATUS"
done < <(sed -nE 's/^[[:space:]]*(CLI_EXIT_[A-Z_]+) = ([0-9]+),.*/\1 \2/p' "$REPO_ROOT/src/cli/exit_status.h")
say "ok: isthmus(8) lists every exit status of src/cli/exit_status.h"

# The examples parse, as the daemons read them.
"$ISTHMUS_BIN/isthmus-target" --config "$REPO_ROOT/examples/target.conf" --check-config ||
	fail "examples/target.conf does not pass isthmus-target --check-config"
"$ISTHMUS_BIN/isthmus-initiator" --config "$REPO_ROOT/examples/initiator.conf" --check-config ||
	fail "examples/initiator.conf does not pass isthmus-initiator --check-config"
# --check-config itself must refuse what start-up refuses.
printf '[global]\nnop-timeout = 0\n' >"$TEST_DIR/bad-target.conf"
if "$ISTHMUS_BIN/isthmus-target" --config "$TEST_DIR/bad-target.conf" --check-config 2>"$TEST_DIR/err"; then
	fail "isthmus-target --check-config accepted nop-timeout = 0"
fi
grep -q 'bad-target.conf:2:' "$TEST_DIR/err" || fail "the error does not name the file and line: $(cat "$TEST_DIR/err")"
printf 'reconect-interval = 5\n' >"$TEST_DIR/bad-initiator.conf"
if "$ISTHMUS_BIN/isthmus-initiator" --config "$TEST_DIR/bad-initiator.conf" --check-config 2>/dev/null; then
	fail "isthmus-initiator --check-config accepted an unknown key"
fi
say "ok: the example configurations parse; --check-config refuses bad ones"

# What the pages promise of the command lines: --help answers on stdout with status 0 for
# every program and command family, --version prints the project's version, and a usage error
# is one line on stderr with status 2.
VERSION=$(sed -nE "s/^[[:space:]]*version : '([^']+)'.*/\1/p" "$REPO_ROOT/meson.build" | head -n1)
for prog in isthmus-target isthmus-initiator isthmus-perf isthmus; do
	got=$("$ISTHMUS_BIN/$prog" --version) || fail "$prog --version exits non-zero"
	[[ "$got" == "$prog $VERSION" ]] || fail "$prog --version printed '$got', want '$prog $VERSION'"
done
for cmd in "" target login logout session persistent chap discover inquiry read; do
	# shellcheck disable=SC2086
	out=$("$ISTHMUS_BIN/isthmus" $cmd --help 2>"$TEST_DIR/err") || fail "isthmus $cmd --help exits non-zero"
	[[ -s "$TEST_DIR/err" ]] && fail "isthmus $cmd --help wrote to stderr: $(head -2 "$TEST_DIR/err")"
	grep -q '^usage: ' <<<"$out" || fail "isthmus $cmd --help prints no usage"
done
while read -r args; do
	rc=0
	# shellcheck disable=SC2086
	"$ISTHMUS_BIN/isthmus" $args >"$TEST_DIR/out" 2>"$TEST_DIR/err" </dev/null || rc=$?
	((rc == 2)) || fail "isthmus $args: exit status $rc, want 2 (bad command line)"
	[[ $(wc -l <"$TEST_DIR/err") == 1 ]] || fail "isthmus $args: $(wc -l <"$TEST_DIR/err") lines on stderr, want one: $(cat "$TEST_DIR/err")"
	grep -q -- '--help' "$TEST_DIR/err" || fail "isthmus $args: the error does not say where help is: $(cat "$TEST_DIR/err")"
done <<'ARGS'
frobnicate x
--no-such-option inquiry x
target
target frobnicate
target remove-lun iqn.2026-11.org.x:t
target --no-such-option list
session
session frobnicate 0x1
persistent
login --no-such-option
ARGS
rc=0
"$ISTHMUS_BIN/isthmus" >/dev/null 2>"$TEST_DIR/err" || rc=$?
((rc == 2)) && [[ $(wc -l <"$TEST_DIR/err") == 1 ]] || fail "isthmus without a command: status $rc, stderr $(cat "$TEST_DIR/err")"
say "ok: --help on stdout (status 0), --version, and one-line usage errors (status 2) that point at --help"
