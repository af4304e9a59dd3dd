# Isthmus top-level commands.
#   make run     install dependencies, release build, serve ./var/lun0.img (1 GiB) on 127.0.0.1:3260
#                (its state, such as APTPL reservations, in ./var/state)
#   make test    the whole test suite (tests/run.sh): unit, short fuzz, interop
#   make bench   isthmus-target against tgtd and istgt (bench/run.sh)
#   make fuzz    long libFuzzer runs, FUZZ_SECONDS (default 600) per target
#   make install install programs, library, header, pkg-config file, manual pages, systemd units,
#                completion and examples under PREFIX (default /usr/local), staged in DESTDIR if given
#   make deb     Debian packages from this tree (dpkg-buildpackage -b) into DEB_DIR (default var/deb)
#   make clean   remove build directories and test scratch files (./var is kept)
.PHONY: all deps build run test bench fuzz install deb clean

IQN ?= iqn.2026-11.org.isthmus:default
LISTEN ?= 127.0.0.1:3260
FUZZ_SECONDS ?= 600
PREFIX ?= /usr/local
DESTDIR ?=
DEB_DIR ?= $(CURDIR)/var/deb

all: build

# Only what building and running need; `make test` and `make bench` install their own tools.
deps:
	scripts/deps.sh build

build: deps
	@[ -f build/build.ninja ] || CC=gcc meson setup build --buildtype=release
	@meson configure build -Dbuildtype=release >/dev/null
	ninja -C build

run: build
	@mkdir -p var
	@echo "Serving $(IQN) LUN 0 (./var/lun0.img, 1 GiB sparse) on $(LISTEN). Connect with:"
	@echo "  iscsi-ls -s iscsi://$(LISTEN)"
	@echo "  iscsi-inq iscsi://$(LISTEN)/$(IQN)/0"
	@echo "Stop with Ctrl-C."
	exec build/isthmus-target --listen $(LISTEN) --target $(IQN) --lun ./var/lun0.img,size=1G \
		--mgmt-socket ./var/target.sock --state-dir ./var/state

test:
	tests/run.sh

bench: build
	scripts/deps.sh bench
	bench/run.sh

# Every fuzz_* binary in build-fuzz runs for FUZZ_SECONDS; new inputs collect in
# var/fuzz/corpus-NAME (seeded from fuzz/corpus/NAME), crashes in var/fuzz/NAME-crash-*.
# Undefined behaviour stops a run like a crash does.
fuzz:
	scripts/deps.sh test
	@[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true
	ninja -C build-fuzz
	@status=0; found=0; \
	for f in $$(find build-fuzz -type f -name 'fuzz_*' -perm -u+x | sort); do \
		found=1; name=$$(basename $$f); mkdir -p var/fuzz/corpus-$$name; \
		seeds=""; [ -d fuzz/corpus/$$name ] && seeds=fuzz/corpus/$$name; \
		dict=""; [ -f fuzz/$$name.dict ] && dict=-dict=fuzz/$$name.dict; \
		echo "== $$name for $(FUZZ_SECONDS) s"; \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		timeout -k 30 $$(( $(FUZZ_SECONDS) + 300 )) $$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 $$dict \
			-artifact_prefix=var/fuzz/$$name- var/fuzz/corpus-$$name $$seeds || { echo "== $$name FAILED"; status=1; }; \
	done; \
	[ $$found = 1 ] || { echo "no fuzz_* binaries in build-fuzz"; exit 1; }; \
	exit $$status

# The release build directory, configured for PREFIX (only install paths change with it).
install: deps
	@[ -f build/build.ninja ] || CC=gcc meson setup build --buildtype=release
	@meson configure build -Dbuildtype=release -Dprefix=$(PREFIX) >/dev/null
	ninja -C build
	DESTDIR=$(DESTDIR) meson install -C build --no-rebuild

# dpkg-buildpackage writes its packages next to the source tree, so it builds a copy of the
# tree's files (tracked and new, not ignored ones) in DEB_DIR/src and leaves the .deb files in
# DEB_DIR. DEB_BUILD_OPTIONS defaults to parallel=2.
deb:
	@command -v dpkg-buildpackage >/dev/null || { echo "make deb needs dpkg-dev and debhelper (scripts/deps.sh test)" >&2; exit 1; }
	rm -rf $(DEB_DIR)/src && mkdir -p $(DEB_DIR)/src
	rm -f $(DEB_DIR)/*.deb $(DEB_DIR)/*.buildinfo $(DEB_DIR)/*.changes
	git ls-files -z --cached --others --exclude-standard | \
		tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C $(DEB_DIR)/src -xf -
	cd $(DEB_DIR)/src && DEB_BUILD_OPTIONS="$${DEB_BUILD_OPTIONS:-parallel=2}" dpkg-buildpackage -b -uc -us
	rm -rf $(DEB_DIR)/src
	@ls -1 $(DEB_DIR)/*.deb

clean:
	rm -rf build build-asan build-fuzz build-tsan tests/tmp
