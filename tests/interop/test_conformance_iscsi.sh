#!/usr/bin/env bash
# libiscsi's iSCSI-level conformance tests (iscsi-test-cu --test=iSCSI, destructive tests on):
# CmdSN window handling, DataSN checking, residual counts, and task management (ABORT TASK,
# LUN RESET), against a 64 MiB file LUN.  Passes only if every test that ran passed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need iscsi-test-cu

IQN=iqn.2026-11.org.isthmus:conformance
PORT=$(free_port)
HP=127.0.0.1:$PORT
start_target --listen "$HP" --target "$IQN" --lun "$TEST_DIR/disk.img,size=64M"
run_test_cu iSCSI "$(lun_url "$HP" "$IQN" 0)"
stop_target
say "PASS"
