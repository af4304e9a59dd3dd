#!/usr/bin/env bash
# The whole of libiscsi's conformance suite (iscsi-test-cu --test=ALL, destructive tests on):
# SCSI block commands, persistent reservations, UNMAP/WRITE SAME, COMPARE AND WRITE, TMFs,
# the iSCSI tests, and (through a second session to the same LUN) the multipath tests,
# against a 64 MiB file LUN.  Passes only if every test that ran passed; it fails until the
# SCSI layer covers everything the suite checks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-test-cu

IQN=iqn.2026-11.org.isthmus:conformance
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/disk.img,size=64M"
url=$(lun_url "$HP" "$IQN" 0)
CU_TIMEOUT=${CU_TIMEOUT:-280} run_test_cu ALL "$url" "$url"
stop_target
say "PASS"
