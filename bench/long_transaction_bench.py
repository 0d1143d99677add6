#!/usr/bin/env python3
"""Long-transaction benchmark: one transaction of N one-row INSERTs (psycopg's executemany,
pipelined), direct to the primary and through switchyard in sync mode, side by side in one
run. For each proxy: seconds to the client's commit, seconds until the secondary has every
row (what the transaction kept past mirror.max_transaction_bytes, or missed past
mirror.timeout, is journaled and replayed), the proxy's peak RSS growth over the
transaction, the journal entries it made, and whether the table is identical on both
databases. Each proxy is started afresh for each round, so its peak RSS (VmHWM) is that
round's.

`--copies C --copy-mib M` makes the transaction C COPYs of M MiB each (rows of 1 KiB text)
instead of the INSERTs.

Usage: bench/long_transaction_bench.py [--statements N | --copies C --copy-mib M] [--rounds R]
                                       [--max-transaction-bytes B]
                                       [--baseline path/to/another/switchyard]
`--baseline` runs another build as well, in the same rounds. Build first with
scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import builds, memory_kib, rotated, start_mirrored_proxy, start_schema_pair, wait_drained  # noqa: E402

TABLE = "SELECT md5(string_agg(id || ':' || md5(v::text), ',' ORDER BY id)) FROM {}"
SCHEMA = "CREATE TABLE t (id int PRIMARY KEY, v int); CREATE TABLE c (id int PRIMARY KEY, v text)"


def transaction_seconds(port, opts):
    """Seconds psycopg takes to run the transaction (opts: INSERTs or COPYs) at `port`."""
    start = time.perf_counter()
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres") as conn:
        if opts.copies:
            rows = opts.copy_mib * 1024
            for copy_no in range(opts.copies):
                with conn.cursor().copy("COPY c (id, v) FROM STDIN") as copy:
                    end = (copy_no + 1) * rows
                    for first in range(copy_no * rows, end, 1024):
                        copy.write("".join(f"{i}\t{'c' * 1016}\n" for i in range(first, min(first + 1024, end))))
        else:
            conn.cursor().executemany("INSERT INTO t VALUES (%s, %s)", [(i, i) for i in range(opts.statements)])
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statements", type=int, default=100000)
    parser.add_argument("--copies", type=int, default=0, help="COPYs in the transaction instead of INSERTs")
    parser.add_argument("--copy-mib", type=int, default=40, help="data of each COPY")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-transaction-bytes", type=int, help="mirror.max_transaction_bytes (default: the proxy's)")
    parser.add_argument("--baseline", help="another switchyard binary to run the transaction through as well")
    opts = parser.parse_args()
    mirror = f"  max_transaction_bytes: {opts.max_transaction_bytes}\n" if opts.max_transaction_bytes else ""

    with ExitStack() as cleanup:
        primary, secondary = start_schema_pair(cleanup, SCHEMA)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-longtx-")))
        names = ["direct", *builds(opts.baseline)]
        results = {name: {"seconds": [], "settled": [], "growth": [], "journaled": [], "identical": True}
                   for name in names}
        for round_no in range(opts.rounds):
            for name in rotated(names, round_no):
                for cluster in (primary, secondary):
                    cluster.sql("TRUNCATE t, c")
                r = results[name]
                if name == "direct":
                    r["seconds"].append(transaction_seconds(primary.port, opts))
                    continue
                with ExitStack() as run:
                    proxy = start_mirrored_proxy(run, primary, secondary, workdir, mirror=mirror,
                                                 binary=builds(opts.baseline)[name])
                    before = memory_kib(proxy.process.pid, "VmRSS")
                    start = time.perf_counter()
                    r["seconds"].append(transaction_seconds(proxy.port, opts))
                    wait_drained(proxy)
                    r["settled"].append(time.perf_counter() - start)
                    r["growth"].append((memory_kib(proxy.process.pid, "VmHWM") - before) / 1024)
                    r["journaled"].append(proxy.metric("switchyard_journal_entries_total"))
                    table = TABLE.format("c" if opts.copies else "t")
                    r["identical"] &= primary.sql(table) == secondary.sql(table)
        direct = statistics.median(results["direct"]["seconds"])
        bound = f"max_transaction_bytes {opts.max_transaction_bytes}" if mirror else "the default max_transaction_bytes"
        what = (f"{opts.copies} COPYs of {opts.copy_mib} MiB" if opts.copies
                else f"{opts.statements} one-row INSERTs (executemany)")
        print(f"one transaction of {what}, sync mode, {bound}, median of {opts.rounds} rounds\n")
        print("| target | commit s | s / direct's | until on the secondary s | proxy peak RSS growth MiB "
              "| journal entries | identical |")
        print("|---|---|---|---|---|---|---|")
        for name in names:
            r = results[name]
            seconds = statistics.median(r["seconds"])
            cells = [name, f"{seconds:.1f}", f"{seconds / direct:.2f}×", "", "", "", ""]
            if name != "direct":
                cells[3] = f"{statistics.median(r['settled']):.1f}"
                cells[4] = f"{statistics.median(r['growth']):.0f}"
                cells[5] = f"{statistics.median(r['journaled']):.0f}"
                cells[6] = "yes" if r["identical"] else "NO"
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
