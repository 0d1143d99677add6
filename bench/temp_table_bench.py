#!/usr/bin/env python3
"""Temporary tables beside a load: what one client loading batches through a staging table
(`CREATE TEMP TABLE ... ON COMMIT DROP`, fill it, `UPDATE ... FROM` it, commit, as bulk
upserts are often written) costs every other client of switchyard. `--staging drop` drops
the staging table at the end of each batch instead (`DROP TABLE stage` before the commit).

Each round runs each workload with `--clients` clients for `--duration` seconds through
switchyard (read_percent 50), once alone ("quiet") and once beside the staging client
("staging"), in sync and async mode, for this build and (with --baseline) another one; the
order of the runs rotates per round. The workloads: pgbench -N with prepared statements
(writes switchyard prepares with their row image), and reads calling a STABLE function of
the database's own (prepared; routed only once a session has learned the function from the
primary's catalog). Printed per workload, target and mode: the median pgbench tps of both
runs and their ratio, the share of reads the secondary answered, the staging client's
batches per second, the writes the secondary did not apply at once (journaled, replayed
later), and whether the two databases ended identical once switchyard reported its async
queue empty and its journal replayed.

Usage: bench/temp_table_bench.py [--duration S] [--clients N] [--rounds N] [--scale N]
                                 [--workloads=LABEL,...] [--staging on-commit-drop|drop]
                                 [--baseline path/to/another/switchyard]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import (builds, pgbench, pgbench_init, rotated, start_clusters,  # noqa: E402
                          start_mirrored_proxy, tables_that_differ, trust_local)
from mirror_bench import settle  # noqa: E402
from read_bench import BALANCE_FUNCTION, FUNCTION_SCRIPT, read_counts, secondary_share  # noqa: E402

BATCH_ROWS = 50
WORKLOADS = [("-N, prepared", ["-N", "-M", "prepared"]),
             ("reads calling a STABLE function, prepared", ["-M", "prepared", "-f", "{function}"])]


def staging_batches(dsn, dropped, stop, done):
    """Loads batches through a temporary table until `stop`, dropping it at the end of each
    (`dropped`) or leaving that to ON COMMIT DROP; counts them in done[0]."""
    with psycopg.connect(dsn) as conn:
        while not stop.is_set():
            with conn.transaction():
                conn.execute("CREATE TEMP TABLE stage (aid int PRIMARY KEY, delta int)"
                             + ("" if dropped else " ON COMMIT DROP"))
                conn.execute("INSERT INTO stage SELECT DISTINCT (random() * 99999)::int + 1, 1 "
                             f"FROM generate_series(1, {BATCH_ROWS}) ON CONFLICT DO NOTHING")
                conn.execute("UPDATE pgbench_accounts a SET abalance = a.abalance + s.delta "
                             "FROM stage s WHERE a.aid = s.aid")
                if dropped:
                    conn.execute("DROP TABLE stage")
            done[0] += 1


def one_run(proxy, mode, args, staging, first, second, opts):
    """(pgbench tps, share of reads the secondary answered in %, staging batches per second,
    writes the secondary did not apply, tables that differ) for one run."""
    for cluster in (first, second):
        pgbench_init(cluster, opts.scale)
    stop = threading.Event()
    done = [0]
    stager = threading.Thread(target=staging_batches, args=(proxy.dsn(), opts.staging == "drop", stop, done))
    if staging:
        stager.start()
    reads_before = read_counts(proxy)
    failures_before = proxy.metric_sum("switchyard_mirror_failures_total")
    try:
        tps, _, failed = pgbench(proxy.port, args, opts.clients, opts.duration)
    finally:
        stop.set()
        if staging:
            stager.join()
    share = secondary_share(reads_before, read_counts(proxy))
    if failed:
        raise SystemExit(f"pgbench failed through {proxy.workdir} ({mode})")
    settle(proxy)  # async: the queue applied; both modes: the journal of what failed replayed
    failures = proxy.metric_sum("switchyard_mirror_failures_total") - failures_before
    return tps, share, done[0] / opts.duration, failures, tables_that_differ(first, second)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--baseline", help="another switchyard binary to run as well")
    parser.add_argument("--workloads", default="all", help="comma-separated label prefixes, e.g. --workloads=reads")
    parser.add_argument("--staging", choices=("on-commit-drop", "drop"), default="on-commit-drop",
                        help="how each batch's staging table goes")
    opts = parser.parse_args()

    with ExitStack() as cleanup:
        first, second = start_clusters(cleanup, 2)
        for cluster in (first, second):
            trust_local(cluster)
            pgbench_init(cluster, opts.scale)  # the function's body is checked as it is created
            cluster.sql(BALANCE_FUNCTION)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-ttbench-")))
        function = workdir / "function.sql"
        function.write_text(FUNCTION_SCRIPT)
        proxies = {(name, mode): start_mirrored_proxy(cleanup, first, second, workdir, binary=binary,
                                                      settings=f"write_mode: {mode}\nread_percent: 50\n",
                                                      log_level="error")
                   for name, binary in builds(opts.baseline).items() for mode in ("sync", "async")}
        print(f"-T {opts.duration} -c {opts.clients}, scale {opts.scale}, median of {opts.rounds} rounds; "
              f"staging: one more client loading {BATCH_ROWS}-row batches through a temporary table "
              f"({'dropped by DROP TABLE' if opts.staging == 'drop' else 'ON COMMIT DROP'})\n")
        print("| workload | target | mode | tps, quiet | tps, with staging | staging/quiet "
              "| reads the secondary answered, quiet / with staging | staging batches/s "
              "| writes the secondary did not apply | databases after |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for label, args in [w for w in WORKLOADS if opts.workloads == "all"
                            or any(w[0].startswith(prefix) for prefix in opts.workloads.split(","))]:
            args = [a.replace("{function}", str(function)) for a in args]
            runs = [(key, staging) for key in proxies for staging in (False, True)]
            tps = {run: [] for run in runs}
            shares = {run: [] for run in runs}
            batches = {key: [] for key in proxies}
            differing = {key: set() for key in proxies}
            failures = {key: 0 for key in proxies}
            for round_no in range(opts.rounds):
                for key, staging in rotated(runs, round_no):
                    run_tps, share, per_second, failed, differ = one_run(proxies[key], key[1], args, staging,
                                                                         first, second, opts)
                    failures[key] += failed
                    tps[(key, staging)].append(run_tps)
                    shares[(key, staging)].append(share)
                    differing[key].update(differ)
                    if staging:
                        batches[key].append(per_second)
            for key in proxies:
                quiet, busy = (statistics.median(tps[(key, staging)]) for staging in (False, True))
                share = " / ".join(f"{statistics.median(shares[(key, staging)]):.0f} %" for staging in (False, True))
                after = "identical" if not differing[key] else "differ: " + ", ".join(sorted(differing[key]))
                print(f"| {label} | {key[0]} | {key[1]} | {quiet:.0f} | {busy:.0f} | {busy / quiet:.2f}× | {share} "
                      f"| {statistics.median(batches[key]):.1f} | {failures[key]:.0f} | {after} |", flush=True)


if __name__ == "__main__":
    main()
