#!/usr/bin/env python3
"""Slow reads beside writes: what a read that outlasts read_routing.timeout on the secondary
costs the writes of every other session.

Each round runs pgbench -N (prepared) with `--clients` clients for `--duration` seconds
through switchyard in sync mode with read_percent 100, beside one more client that runs a
read slow on the secondary alone (a STABLE function that sleeps there, `--slow-ms`, past a
read_routing.timeout of `--read-timeout-ms`) every `--every-ms`: each such read is retried on
the primary. Printed for this build and (with --baseline) another one, medians over the
rounds (the order of the targets rotates per round): pgbench tps, the slow reads and their
fallbacks, the writes the secondary did not apply at once (journaled, replayed later) and
whether the databases ended identical once the journal was replayed.

Usage: bench/slow_read_bench.py [--duration S] [--clients N] [--rounds N] [--slow-ms MS]
                                [--read-timeout-ms MS] [--every-ms MS]
                                [--baseline path/to/another/switchyard]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import (builds, pgbench, pgbench_init, rotated, start_clusters,  # noqa: E402
                          start_mirrored_proxy, tables_that_differ, trust_local)
from mirror_bench import settle  # noqa: E402


def slow_reads(dsn, every, stop, done):
    """Runs `SELECT slow_there()` every `every` seconds until `stop`; counts them in done[0]."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.wait(every):
            conn.execute("SELECT slow_there()").fetchall()
            done[0] += 1


def one_run(proxy, first, second, opts):
    """(tps, slow reads, their fallbacks, writes the secondary did not apply, tables that differ)."""
    for cluster in (first, second):
        pgbench_init(cluster, opts.scale)
    stop = threading.Event()
    done = [0]
    reader = threading.Thread(target=slow_reads, args=(proxy.dsn(), opts.every_ms / 1000, stop, done))
    fallbacks_before = proxy.metric_sum("switchyard_read_fallbacks_total")
    failures_before = proxy.metric_sum("switchyard_mirror_failures_total")
    reader.start()
    try:
        tps, _, failed = pgbench(proxy.port, ["-N", "-M", "prepared"], opts.clients, opts.duration)
    finally:
        stop.set()
        reader.join()
    if failed:
        raise SystemExit(f"pgbench failed through {proxy.workdir}")
    fallbacks = proxy.metric_sum("switchyard_read_fallbacks_total") - fallbacks_before
    failures = proxy.metric_sum("switchyard_mirror_failures_total") - failures_before
    settle(proxy)  # the journal of what the secondary missed replayed
    return tps, done[0], fallbacks, failures, tables_that_differ(first, second)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--slow-ms", type=int, default=1000, help="how long the read takes on the secondary")
    parser.add_argument("--read-timeout-ms", type=int, default=200, help="read_routing.timeout")
    parser.add_argument("--every-ms", type=int, default=1000, help="time between slow reads")
    parser.add_argument("--baseline", help="another switchyard binary to run as well")
    opts = parser.parse_args()

    with ExitStack() as cleanup:
        first, second = start_clusters(cleanup, 2)
        for cluster in (first, second):
            trust_local(cluster)
        first.sql("CREATE FUNCTION slow_there() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1'")
        second.sql("CREATE FUNCTION slow_there() RETURNS int STABLE LANGUAGE sql "
                   f"AS 'SELECT 2 FROM pg_sleep({opts.slow_ms / 1000})'")
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-slowread-")))
        proxies = {name: start_mirrored_proxy(cleanup, first, second, workdir, binary=binary, log_level="error",
                                              settings="write_mode: sync\nread_percent: 100\nread_routing:\n"
                                                       f"  timeout: {opts.read_timeout_ms}ms\n")
                   for name, binary in builds(opts.baseline).items()}
        print(f"pgbench -N -M prepared, -T {opts.duration} -c {opts.clients}, scale {opts.scale}, sync, "
              f"read_percent 100; beside it one read every {opts.every_ms} ms that takes {opts.slow_ms} ms "
              f"on the secondary (read_routing.timeout {opts.read_timeout_ms} ms); median of {opts.rounds} rounds\n")
        print("| target | -N tps | slow reads | read fallbacks | writes the secondary did not apply "
              "| databases after |")
        print("|---|---|---|---|---|---|")
        names = list(proxies)
        results = {name: [] for name in names}
        differing = {name: set() for name in names}
        for round_no in range(opts.rounds):
            for name in rotated(names, round_no):
                *figures, differ = one_run(proxies[name], first, second, opts)
                results[name].append(figures)
                differing[name].update(differ)
                time.sleep(1.5)  # past the back-off the last slow read left
        for name in names:
            tps, reads, fallbacks, failures = (statistics.median(r[i] for r in results[name]) for i in range(4))
            after = "identical" if not differing[name] else "differ: " + ", ".join(sorted(differing[name]))
            print(f"| {name} | {tps:.0f} | {reads:.0f} | {fallbacks:.0f} | {failures:.0f} | {after} |", flush=True)


if __name__ == "__main__":
    main()
