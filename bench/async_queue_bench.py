#!/usr/bin/env python3
"""Async-queue benchmark: what switchyard keeps in memory while the secondary stalls in
async mode. The secondary is stopped (SIGSTOP) and a psycopg client commits N one-row
INSERTs of a K KiB value through switchyard; the client does not wait for the secondary, so
the commits queue for it (past mirror.async_queue transactions or mirror.async_queue_bytes
they go to the journal). Then the secondary is resumed.

For each build, in the same rounds, a proxy started afresh (mirror.timeout 60 s, so the
stalled apply waits rather than fails) and one session through it, whose secondary
connection is open before the secondary stops (a new one would fail to connect, and the
writes be journaled as the secondary being down): seconds of the client's commits, the proxy's peak
RSS growth over them, the queue's bytes at their end (where the build counts them), the
transactions spilled to the journal, seconds from the resume until the secondary has every
row, and whether the table is identical on both databases.

Usage: bench/async_queue_bench.py [--transactions N] [--kib K] [--rounds R]
                                  [--async-queue-bytes B] [--baseline path/to/another/switchyard]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import builds, memory_kib, rotated, start_mirrored_proxy, start_schema_pair, wait_drained  # noqa: E402

TABLE = "SELECT md5(string_agg(id || ':' || md5(v), ',' ORDER BY id)) FROM t"


def commit_seconds(conn, transactions, kib):
    """Seconds `conn` takes to commit `transactions` INSERTs of a `kib` KiB value."""
    value = "v" * (kib * 1024)
    start = time.perf_counter()
    for i in range(1, transactions + 1):
        conn.execute("INSERT INTO t VALUES (%s, %s)", (i, value))
    return time.perf_counter() - start


def counts_queue_bytes(proxy):
    """Whether the build has the switchyard_mirror_async_queue_bytes gauge."""
    url = f"http://127.0.0.1:{proxy.admin_port}/metrics"
    return "switchyard_mirror_async_queue_bytes " in urllib.request.urlopen(url, timeout=5).read().decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--kib", type=int, default=256, help="size of each row's value")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--async-queue-bytes", type=int, help="mirror.async_queue_bytes (default: the proxy's)")
    parser.add_argument("--baseline", help="another switchyard binary to run as well")
    opts = parser.parse_args()
    mirror = "  timeout: 60s\n"
    if opts.async_queue_bytes:
        mirror += f"  async_queue_bytes: {opts.async_queue_bytes}\n"

    with ExitStack() as cleanup:
        primary, secondary = start_schema_pair(cleanup, "CREATE TABLE t (id int PRIMARY KEY, v text)")
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-asyncq-")))
        names = list(builds(opts.baseline))
        results = {name: {"seconds": [], "growth": [], "queued": [], "spilled": [], "settled": [],
                          "identical": True} for name in names}
        for round_no in range(opts.rounds):
            for name in rotated(names, round_no):
                for cluster in (primary, secondary):
                    cluster.sql("TRUNCATE t")
                r = results[name]
                with ExitStack() as run:
                    proxy = start_mirrored_proxy(run, primary, secondary, workdir, mirror=mirror,
                                                 settings="write_mode: async\n",
                                                 binary=builds(opts.baseline)[name])
                    # One session throughout: its secondary connection is open when the
                    # secondary stops, so the apply waits on it (a new one would fail to connect
                    # and journal the writes as the secondary being down).
                    conn = run.enter_context(psycopg.connect(
                        f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres", autocommit=True))
                    conn.execute("INSERT INTO t VALUES (0, 'the shape known')")
                    wait_drained(proxy)
                    before = memory_kib(proxy.process.pid, "VmRSS")
                    secondary.signal(signal.SIGSTOP)
                    try:
                        r["seconds"].append(commit_seconds(conn, opts.transactions, opts.kib))
                        r["growth"].append((memory_kib(proxy.process.pid, "VmHWM") - before) / 1024)
                        if counts_queue_bytes(proxy):
                            r["queued"].append(proxy.metric("switchyard_mirror_async_queue_bytes") / 2**20)
                        r["spilled"].append(proxy.metric("switchyard_mirror_failures_total",
                                                         reason="async_queue_full"))
                    finally:
                        secondary.signal(signal.SIGCONT)
                    start = time.perf_counter()
                    wait_drained(proxy)
                    r["settled"].append(time.perf_counter() - start)
                    r["identical"] &= primary.sql(TABLE) == secondary.sql(TABLE)
        bound = (f"async_queue_bytes {opts.async_queue_bytes}" if opts.async_queue_bytes
                 else "the default async_queue_bytes")
        print(f"{opts.transactions} autocommit INSERTs of {opts.kib} KiB while the secondary is stopped, "
              f"async mode, {bound}, median of {opts.rounds} rounds\n")
        print("| build | commits s | proxy peak RSS growth MiB | queued MiB at the end | spilled to the journal "
              "| after the resume, until on the secondary s | identical |")
        print("|---|---|---|---|---|---|---|")
        for name in names:
            r = results[name]
            queued = f"{statistics.median(r['queued']):.0f}" if r["queued"] else "—"
            print(f"| {name} | {statistics.median(r['seconds']):.1f} | {statistics.median(r['growth']):.0f} "
                  f"| {queued} | {statistics.median(r['spilled']):.0f} "
                  f"| {statistics.median(r['settled']):.1f} | {'yes' if r['identical'] else 'NO'} |")


if __name__ == "__main__":
    main()
