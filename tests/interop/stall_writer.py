#!/usr/bin/env python3
"""A bounded write load that measures how long each write waits.

stall_writer.py FILE THREADS BLOCKS_PER_THREAD SECONDS RESULT_JSON

THREADS threads overwrite their own 4 KiB blocks of FILE round robin (thread k owns blocks
k*BLOCKS_PER_THREAD and up), each write stamped with its thread and sequence number, so a lost
or reordered write leaves a wrong final version. New writes start for SECONDS; a write already
started is waited for. RESULT_JSON gets the number of writes, the longest time one write took
(seconds, and when it started: relative to the start of the load, and as a Unix time) and the sha256 of the first
THREADS*BLOCKS_PER_THREAD blocks as they must be on the LUN. Exit status: 0 done, 5 on EIO,
6 on another error.
"""
import errno
import hashlib
import json
import os
import sys
import threading
import time

BS = 4096


def main():
    path, nthreads, nb, secs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    final = [None] * (nthreads * nb)
    t0 = time.monotonic()
    deadline = t0 + secs
    stats = {"writes": 0, "max_stall": 0.0, "max_stall_at": 0.0, "max_stall_epoch": 0.0, "error": None}
    lock = threading.Lock()

    def run(k):
        fd = os.open(path, os.O_WRONLY)
        try:
            i = 0
            while time.monotonic() < deadline:
                blk = k * nb + i % nb
                data = (b"thr %02d seq %08d blk %06d " % (k, i, blk)).ljust(64, b".") * (BS // 64)
                start = time.monotonic()
                wall = time.time()
                os.pwrite(fd, data, blk * BS)
                took = time.monotonic() - start
                final[blk] = data
                with lock:
                    stats["writes"] += 1
                    if took > stats["max_stall"]:
                        stats["max_stall"] = took
                        stats["max_stall_at"] = start - t0
                        stats["max_stall_epoch"] = wall
                i += 1
                time.sleep(0.002)
        except OSError as e:
            with lock:
                stats["error"] = (e.errno, str(e))
        finally:
            try:
                os.close(fd)
            except OSError:
                pass  # the device went away under the load: the error above is the one to report

    threads = [threading.Thread(target=run, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Blocks a thread never reached keep what the device held before: read them back.
    if any(b is None for b in final):
        fd = os.open(path, os.O_RDONLY)
        for blk, b in enumerate(final):
            if b is None:
                final[blk] = os.pread(fd, BS, blk * BS)
        os.close(fd)
    stats["sha256"] = hashlib.sha256(b"".join(final)).hexdigest()
    with open(out, "w") as f:
        json.dump(stats, f)
    if stats["error"]:
        print("stall_writer: %s" % stats["error"][1], file=sys.stderr)
        sys.exit(5 if stats["error"][0] == errno.EIO else 6)


if __name__ == "__main__":
    main()
