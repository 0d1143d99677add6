#!/usr/bin/env python3
"""Read-routing benchmark: pgbench -S direct to the primary and through switchyard with 0 %
and 50 % of reads routed to the secondary, side by side in one run, in simple and prepared
mode; then the cost of classifying a statement, with a warm and with a cold statement cache,
as the latency switchyard adds to one client's SELECT.

Usage: bench/read_bench.py [--duration S] [--clients N] [--scale N]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import Proxy  # noqa: E402

from bench_common import pgbench, pgbench_init, start_clusters, trust_local  # noqa: E402

# The same SELECT as pgbench -S, with a column alias that pgbench substitutes into the text:
# every statement has a different shape, so the classification cache never hits.
COLD_SCRIPT = """\\set aid random(1, 100000 * :scale)
\\set tag random(1, 1000000000)
SELECT abalance AS a:tag FROM pgbench_accounts WHERE aid = :aid;
"""
WARM_SCRIPT = """\\set aid random(1, 100000 * :scale)
SELECT abalance AS a1 FROM pgbench_accounts WHERE aid = :aid;
"""


def read_counts(proxy):
    """Reads answered so far by each database, from switchyard's metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/metrics", timeout=5).read().decode()
    counts = {"primary": 0.0, "secondary": 0.0}
    for line in text.splitlines():
        if line.startswith("switchyard_reads_total{"):
            key, _, value = line.rpartition(" ")
            for side in counts:
                if f'target="{side}"' in key:
                    counts[side] += float(value)
    return counts


def secondary_share(before, after):
    """The share (%) of the reads between two read_counts that the secondary answered."""
    delta = {side: after[side] - before[side] for side in after}
    total = sum(delta.values())
    return 100 * delta["secondary"] / total if total else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--scale", type=int, default=10)
    opts = parser.parse_args()

    with ExitStack() as cleanup:  # stops whatever was started, last first, however main() ends
        first, second = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-rbench-")))
        for cluster in (first, second):
            trust_local(cluster)
            pgbench_init(cluster, opts.scale)
        proxies = []
        for percent in (0, 50):
            directory = workdir / f"at-{percent}"
            directory.mkdir()
            proxies.append(Proxy(f"primary: {first.uri(sslmode='disable')}\n"
                                 f"secondary: {second.uri(sslmode='disable')}\n"
                                 f"mirror:\n  journal: {directory}/journal.jsonl\n"
                                 f"read_percent: {percent}\nlogging:\n  level: warn\n", directory).start())
            cleanup.callback(proxies[-1].stop)
        at0, at50 = proxies
        print(f"pgbench -S -T {opts.duration} -c {opts.clients}, scale {opts.scale}; both databases and "
              f"switchyard on the same {os.cpu_count()} cores\n")
        print("| mode | direct tps | switchyard 0 % tps | switchyard 50 % tps | 0 %/direct | 50 %/direct "
              "| reads the secondary answered at 50 % |")
        print("|---|---|---|---|---|---|---|")
        for mode in ("simple", "prepared"):
            args = ["-S", "-M", mode]
            direct, _, direct_failed = pgbench(first.port, args, opts.clients, opts.duration)
            zero, _, zero_failed = pgbench(at0.port, args, opts.clients, opts.duration)
            before = read_counts(at50)
            half, _, half_failed = pgbench(at50.port, args, opts.clients, opts.duration)
            share = secondary_share(before, read_counts(at50))
            failed = " (client errors)" if direct_failed or zero_failed or half_failed else ""
            print(f"| {mode} | {direct:.0f} | {zero:.0f} | {half:.0f} | {zero / direct:.2f}× "
                  f"| {half / direct:.2f}× | {share:.0f} %{failed} |",
                  flush=True)

        print("\nClassification cost: one client, simple protocol, latency per SELECT\n")
        print("| statement cache | direct µs | switchyard 0 % µs | added by switchyard µs |")
        print("|---|---|---|---|")
        for label, script in (("warm (one shape)", WARM_SCRIPT), ("cold (every statement new)", COLD_SCRIPT)):
            path = workdir / "script.sql"
            path.write_text(script)
            args = ["-f", str(path), "-D", f"scale={opts.scale}"]
            _, direct, _ = pgbench(first.port, args, 1, opts.duration)
            _, proxied, _ = pgbench(at0.port, args, 1, opts.duration)
            print(f"| {label} | {direct * 1000:.0f} | {proxied * 1000:.0f} | {(proxied - direct) * 1000:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
