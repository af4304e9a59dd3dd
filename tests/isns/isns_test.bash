# shellcheck shell=bash
# The start every iSNS interop test shares, sourced with the script's arguments as its first line:
#   source "$(dirname "$0")/../isns/isns_test.bash" "$@"
# The script runs again inside a network namespace of its own (isns_netns_reexec, before
# lib.sh); there, lib.sh, the daemon helpers and the isnsd helpers (again, after lib.sh).
_isns_dir=$(dirname "${BASH_SOURCE[0]}")
source "$_isns_dir/isnsd.bash"
isns_netns_reexec "$@"
set -euo pipefail
source "$_isns_dir/../interop/lib.sh"
source "$_isns_dir/../interop/daemon_helpers.bash"
source "$_isns_dir/isnsd.bash"
