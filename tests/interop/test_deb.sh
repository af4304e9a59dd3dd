#!/usr/bin/env bash
# Debian packages: `make deb` builds isthmus-target, isthmus-initiator, isthmus, libisthmus0 and
# libisthmus-dev from this tree with dpkg-buildpackage; each is unpacked into a fresh root
# (dpkg -x) and used from there:
#  - every program answers --version with meson's project() version;
#  - every manual page renders with man -l;
#  - the units name the installed programs, the examples pass --check-config;
#  - a program built against libisthmus-dev's header and pkg-config file links to
#    libisthmus.so.0 of libisthmus0 and runs.
# The package build takes one to two minutes on two cores; it prints how long it took.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need dpkg-buildpackage dh dpkg-deb dpkg-architecture pkg-config cc man

OUT=$TEST_DIR/deb
start=$SECONDS
if ! nice make -C "$REPO_ROOT" deb DEB_DIR="$OUT" >"$TEST_DIR/build.log" 2>&1; then
	tail -n 40 "$TEST_DIR/build.log"
	fail "make deb failed (log $TEST_DIR/build.log)"
fi
say "ok: make deb built the packages in $((SECONDS - start)) s"

VERSION=$(sed -nE "s/^[[:space:]]*version : '([^']+)'.*/\1/p" "$REPO_ROOT/meson.build" | head -n1)
[[ -n "$VERSION" ]] || fail "no version in meson.build's project()"
ROOT=$TEST_DIR/root
mkdir -p "$ROOT"
for pkg in isthmus-target isthmus-initiator isthmus libisthmus0 libisthmus-dev; do
	deb=$(ls "$OUT/${pkg}_${VERSION}"_*.deb 2>/dev/null | head -n1)
	[[ -n "$deb" ]] || fail "no package $pkg ${VERSION} in $OUT: $(ls "$OUT")"
	dpkg -x "$deb" "$ROOT"
done
say "ok: five packages of version $VERSION unpacked into $ROOT"

MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
export LD_LIBRARY_PATH=$ROOT/usr/lib/$MA
for prog in isthmus-target isthmus-initiator isthmus isthmus-perf; do
	[[ -x "$ROOT/usr/bin/$prog" ]] || fail "$prog is not in the packages"
	got=$("$ROOT/usr/bin/$prog" --version) || fail "$prog --version failed"
	[[ "$got" == "$prog $VERSION" ]] || fail "$prog --version printed '$got', want '$prog $VERSION'"
done
say "ok: the installed programs print version $VERSION"

for page in man8/isthmus.8 man8/isthmus-target.8 man8/isthmus-initiator.8 man1/isthmus-perf.1 \
	man5/isthmus-target.conf.5 man5/isthmus-initiator.conf.5; do
	f=$ROOT/usr/share/man/$page.gz
	[[ -f "$f" ]] || fail "no manual page $page.gz in the packages"
	name=$(basename "$page" | sed -E 's/\.[0-9]$//')
	text=$(MANWIDTH=200 LC_ALL=C man -l "$f" 2>"$TEST_DIR/man.err" | col -b) || true
	grep -qE "^ +$name - " <<<"$text" ||
		fail "man -l $page.gz does not render its NAME line: $(head -c 300 "$TEST_DIR/man.err")"
done
say "ok: the six installed manual pages render with man -l"

for unit in isthmus-target isthmus-initiator; do
	f=$ROOT/lib/systemd/system/$unit.service
	[[ -f "$f" ]] || fail "no $unit.service in the packages"
	grep -q "^ExecStart=/usr/bin/$unit " "$f" || fail "$unit.service does not start /usr/bin/$unit: $(grep ExecStart "$f")"
done
"$ROOT/usr/bin/isthmus-target" --config "$ROOT/usr/share/doc/isthmus-target/examples/target.conf" --check-config >/dev/null ||
	fail "the installed example target.conf does not pass --check-config"
"$ROOT/usr/bin/isthmus-initiator" --config "$ROOT/usr/share/doc/isthmus-initiator/examples/initiator.conf" \
	--check-config >/dev/null || fail "the installed example initiator.conf does not pass --check-config"
[[ -e "$ROOT/usr/share/bash-completion/completions/isthmus" ]] || fail "no bash completion in the packages"
say "ok: units name /usr/bin, the installed examples parse, completion is there"

# Build a program against the -dev package, as a user of the library would.
cat >"$TEST_DIR/use.c" <<'C'
#include <isthmus/isthmus.h>
#include <stdio.h>
int main(void)
{
	char err[128];
	struct ism_url *u = ism_url_parse("iscsi://127.0.0.1:3260/iqn.2026-11.org.isthmus:x/3", err, sizeof(err));
	if (!u)
		return 1;
	printf("lun %llu\n", (unsigned long long)u->lun);
	ism_url_free(u);
	return 0;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR=$ROOT PKG_CONFIG_LIBDIR=$ROOT/usr/lib/$MA/pkgconfig pkg-config --cflags --libs libisthmus) ||
	fail "pkg-config does not find libisthmus in the -dev package"
# shellcheck disable=SC2086
cc -o "$TEST_DIR/use" "$TEST_DIR/use.c" $flags || fail "a program does not build with: cc use.c $flags"
grep -q 'NEEDED.*libisthmus.so.0' <<<"$(readelf -d "$TEST_DIR/use")" || fail "the program does not link libisthmus.so.0"
[[ $("$TEST_DIR/use") == "lun 3" ]] || fail "the program linked with libisthmus0 does not run"
say "ok: a program built with libisthmus-dev (pkg-config) runs on libisthmus0's libisthmus.so.0"
