# shellcheck shell=bash
# Sourced after lib.sh by the tests of isthmus-initiator on gateways of an RBD image: skips
# where they cannot run, then brings in ceph_lib.sh and daemon_helpers.bash.
[[ "$TARGET_IMPL" == isthmus ]] || skip "gateways on RBD need isthmus-target"
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need jq python3 fusermount3
source "$INTEROP_DIR/ceph_lib.sh"
source "$INTEROP_DIR/daemon_helpers.bash"
