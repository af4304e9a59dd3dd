"""How the raw-PDU test helpers report: each check that holds as a line "ok: ...", the first that
does not as "FAIL: ..." and exit status 1 (the shell script shows both and fails on the status)."""
import sys


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def ok(msg):
    print("ok: " + msg, flush=True)
