#!/usr/bin/env python3
"""Pace benchmark: what the primary's CPU per pgbench -N transaction is made of in sync mode.
Through switchyard in sync mode the primary spends more CPU per transaction than direct
PostgreSQL does; this tells apart the two causes that could be: the statements switchyard
sends it (BEGIN merged into the first write, each write's row image RETURNed), or the pace
alone (the same server at a lower rate, its backends sleeping and waking between statements).

Per round, in one run on the same cluster: switchyard sync -N; then direct -N at full speed,
direct -N held to the rate sync just reached (pgbench -R), and direct at that rate running
the statements the primary receives through switchyard (as its log_statement shows them).
Each cell is the median of --rounds runs; the data is reset before every run. The primary's
CPU is its postmaster's and every child's (bench_common.cluster_cpu_seconds).

Usage: bench/pace_bench.py [--duration S] [--clients N] [--scale N] [--rounds N]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import (cluster_cpu_seconds, pgbench, pgbench_init, start_clusters,  # noqa: E402
                          start_mirrored_proxy, trust_local)

# pgbench -N as the primary receives it through switchyard in sync mode (`\;` keeps BEGIN and
# the UPDATE in one query, as switchyard sends them).
AS_SYNC_PRIMARY = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN
\\;UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid
RETURNING NULL AS __switchyard_image, pgbench_accounts.*;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP)
RETURNING NULL AS __switchyard_image, pgbench_history.*;
END;
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; medians are reported")
    opts = parser.parse_args()

    with ExitStack() as cleanup:
        primary, secondary = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-pace-")))
        script = workdir / "as_sync_primary.sql"
        script.write_text(AS_SYNC_PRIMARY)
        for cluster in (primary, secondary):
            trust_local(cluster)
        proxy = start_mirrored_proxy(cleanup, primary, secondary, workdir)
        labels = ("switchyard sync, -N", "direct, -N", "direct, -N at sync's rate",
                  "direct, sync's statements at sync's rate")
        tps = {label: [] for label in labels}
        cpu = {label: [] for label in labels}  # the primary's µs per transaction

        def measure(label, port, args):
            for cluster in (primary, secondary):
                pgbench_init(cluster, opts.scale)
            before = cluster_cpu_seconds(primary)
            rate, _, failed = pgbench(port, args, opts.clients, opts.duration)
            if failed:
                raise SystemExit(f"pgbench failed through {label}")
            tps[label].append(rate)
            cpu[label].append((cluster_cpu_seconds(primary) - before) / (rate * opts.duration) * 1e6)
            return rate

        for _ in range(opts.rounds):
            sync_rate = str(round(measure(labels[0], proxy.port, ["-N"])))
            measure(labels[1], primary.port, ["-N"])
            measure(labels[2], primary.port, ["-N", "-R", sync_rate])
            # A custom script's :scale is 1 unless -s says otherwise.
            measure(labels[3], primary.port, ["-s", str(opts.scale), "-f", str(script), "-R", sync_rate])

        print(f"pgbench -T {opts.duration} -c {opts.clients}, scale {opts.scale}, median of {opts.rounds} rounds, "
              "the primary and the secondary on the same machine; data reset before each run\n")
        print("| target | tps | primary CPU µs/txn | vs direct -N at sync's rate |")
        print("|---|---|---|---|")
        paced = statistics.median(cpu[labels[2]])
        for label in labels:
            used = statistics.median(cpu[label])
            print(f"| {label} | {statistics.median(tps[label]):.0f} | {used:.0f} | {used / paced:.2f}× |")


if __name__ == "__main__":
    main()
