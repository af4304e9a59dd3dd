# Sourced by interop tests (after lib.sh) that put a LUN on slowfs.c: a FUSE file system whose
# /disk is BACKING with every read (and, while BACKING.slow-writes exists, every write) delayed.
# Skips the test where FUSE or libfuse3's development files are missing.
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need cc pkg-config fusermount3 mountpoint
pkg-config --exists fuse3 || skip "libfuse3 development files are not installed (libfuse3-dev)"

# slowfs_mount DELAY_MS FILL : build slowfs, fill a 16 MiB BACKING from FILL (/dev/zero,
# /dev/urandom) and mount it on MNT; sets SLOWFS, BACKING, MNT, SLOWFS_LOG, SLOWFS_PID and an
# EXIT trap that unmounts before lib.sh's cleanup. Skips where FUSE cannot mount.
slowfs_mount() {
	local delay_ms=$1 fill=$2 deadline
	SLOWFS=$TEST_DIR/slowfs
	read -r -a FUSE_FLAGS <<<"$(pkg-config --cflags --libs fuse3)"
	cc -O2 -Wall -Wextra -o "$SLOWFS" "$INTEROP_DIR/slowfs.c" "${FUSE_FLAGS[@]}" >"$TEST_DIR/slowfs.build.log" 2>&1 ||
		fail "building slowfs failed: $(cat "$TEST_DIR/slowfs.build.log")"
	BACKING=$TEST_DIR/backing.img
	MNT=$TEST_DIR/mnt
	SLOWFS_LOG=$TEST_DIR/slowfs.log
	SLOWFS_PID=""
	mkdir -p "$MNT"
	head -c $((16 << 20)) "$fill" >"$BACKING"
	trap slowfs_cleanup EXIT

	"$SLOWFS" "$BACKING" "$MNT" "$delay_ms" 2>"$SLOWFS_LOG" &
	SLOWFS_PID=$!
	deadline=$((SECONDS + 10))
	until [[ -f "$MNT/disk" ]]; do
		alive "$SLOWFS_PID" || skip "cannot mount a FUSE file system here: $(tail -n 3 "$SLOWFS_LOG")"
		((SECONDS < deadline)) || fail "slowfs did not mount within 10 s: $(tail -n 3 "$SLOWFS_LOG")"
		sleep 0.1
	done
}

# Unmount before lib.sh's cleanup removes TEST_DIR (the mount point is inside it).
slowfs_cleanup() {
	local rc=$?
	set +e
	if [[ -n "$SLOWFS_PID" ]] && alive "$SLOWFS_PID"; then
		kill -TERM "$SLOWFS_PID" 2>/dev/null
		timeout 5 tail --pid="$SLOWFS_PID" -f /dev/null 2>/dev/null || kill -KILL "$SLOWFS_PID" 2>/dev/null
	fi
	mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u -z "$MNT" 2>/dev/null
	(exit "$rc")
	lib_cleanup
}
