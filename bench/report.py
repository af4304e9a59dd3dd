#!/usr/bin/env python3
"""Summarise bench/run.sh samples: medians, spreads and ratios of medians.

usage: report.py SAMPLES.tsv PEER...   (the first peer is the one the ratios are about)
Sample columns: peer load round iops mibs cpu_us_per_io p50_us p99_us ("-" where not measured).
"""
import statistics
import sys

SPREAD_FLAG = 0.30  # a row whose spread is above this is not to be trusted


def num(s):
    return None if s in ("-", "") else float(s)


def main():
    path, peers = sys.argv[1], sys.argv[2:]
    me = peers[0]
    samples = {}
    loads = []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 8:
            continue
        peer, load = f[0], f[1]
        if load not in loads and peer != "tcp":
            loads.append(load)
        samples.setdefault((peer, load), []).append([num(x) for x in f[3:8]])

    def column(peer, load, i):
        return [s[i] for s in samples.get((peer, load), []) if s[i] is not None]

    def stat(values):
        if not values:
            return None, None
        m = statistics.median(values)
        return m, ((max(values) - min(values)) / m if m else 0.0)

    med = {}
    print()
    print("%-14s %-14s %4s %10s %9s %8s %10s %9s %9s" %
          ("load", "target", "n", "IOPS", "MiB/s", "spread", "CPU us/IO", "p50 us", "p99 us"))
    flagged = []
    for load in loads:
        for p in peers:
            iops, spread = stat(column(p, load, 0))
            if iops is None:
                print("%-14s %-14s %4d %10s" % (load, p, 0, "n/a"))
                continue
            mibs, _ = stat(column(p, load, 1))
            cpu, _ = stat(column(p, load, 2))
            p50, s50 = stat(column(p, load, 3))
            p99, _ = stat(column(p, load, 4))
            if p50 is not None:
                spread = max(spread, s50)
            med[(p, load)] = dict(iops=iops, mibs=mibs, cpu=cpu, p50=p50, p99=p99)
            flag = " !" if spread > SPREAD_FLAG else ""
            if flag:
                flagged.append("%s/%s" % (load, p))
            print("%-14s %-14s %4d %10.0f %9.1f %7.0f%%%s %10.2f %9s %9s" % (
                load, p, len(column(p, load, 0)), iops, mibs, spread * 100, flag, cpu,
                "-" if p50 is None else "%.0f" % p50, "-" if p99 is None else "%.0f" % p99))
    tcp, tcp_spread = stat([s[1] for s in samples.get(("tcp", "tcp-1m"), []) if s[1] is not None])
    if tcp is not None:
        print("%-14s %-14s %4d %10s %9.1f %7.0f%%" % ("tcp-1m", "iperf3", len(samples[("tcp", "tcp-1m")]),
                                                   "-", tcp, tcp_spread * 100))
    if flagged:
        print("\nspread over %d %% (do not trust these rows): %s" % (SPREAD_FLAG * 100, ", ".join(flagged)))

    print("\nratios of medians (%s / peer): throughput higher is better; latency and CPU per I/O lower is better" % me)
    others = peers[1:]
    for load in loads:
        mine = med.get((me, load))
        parts = []
        for p in others:
            o = med.get((p, load))
            if not mine or not o:
                parts.append("%s n/a" % p)
                continue
            if mine["p50"] is not None and o["p50"] and o["p99"]:
                parts.append("%s p50 x%.2f p99 x%.2f" % (p, mine["p50"] / o["p50"], mine["p99"] / o["p99"]))
            elif o["iops"]:
                parts.append("%s x%.2f" % (p, mine["iops"] / o["iops"]))
            else:
                parts.append("%s n/a" % p)
            if o["cpu"]:
                parts[-1] += " (CPU/IO x%.2f)" % (mine["cpu"] / o["cpu"])
        best = [med[(p, load)]["iops"] for p in others if (p, load) in med]
        if mine and best and max(best) and mine["p50"] is None:
            parts.append("best peer x%.2f" % (mine["iops"] / max(best)))
        print("%-14s %s" % (load, "; ".join(parts)))
    mine = med.get((me, "seqread-1m"))
    if mine and tcp:
        print("%-14s %.1f MiB/s = %.0f %% of one loopback TCP stream (%.1f MiB/s)" % (
            "seqread-1m", mine["mibs"], 100 * mine["mibs"] / tcp, tcp))


if __name__ == "__main__":
    main()
