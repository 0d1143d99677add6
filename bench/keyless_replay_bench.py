#!/usr/bin/env python3
"""Keyless replay benchmark: how long a secondary that missed an UPDATE of one row of a table
without a key takes to be brought in line, for tables of several sizes. Such rows cannot be
found again by a key, so the replayer copies the table whole from the primary.

For each size and build: the table is filled alike on both databases, a sync-mirroring
switchyard starts, the secondary is stopped, one row is updated through switchyard (the
write is journaled), the secondary is started again and the time until the journal's backlog
is 0 is taken (it includes up to 1.5 s before the replayer notices the secondary is back).
Then the table is compared on both databases. A build that cannot replay the entry skips it:
its backlog empties too, but the table differs.

Usage: bench/keyless_replay_bench.py [--rows N,N,...] [--baseline path/to/another/switchyard]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import builds, start_clusters, start_mirrored_proxy, trust_local, wait_drained  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,1000000", help="table sizes, comma-separated")
    parser.add_argument("--baseline", help="another switchyard binary to replay with as well")
    opts = parser.parse_args()
    binaries = builds(opts.baseline)
    results = []
    with ExitStack() as cleanup:
        primary, secondary = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-kbench-")))
        for cluster in (primary, secondary):
            trust_local(cluster)
        for rows in (int(n) for n in opts.rows.split(",")):
            for name, binary in binaries.items():
                for cluster in (primary, secondary):
                    cluster.sql("DROP TABLE IF EXISTS loose; CREATE TABLE loose (code int, n int, note text);"
                                f"INSERT INTO loose SELECT g, 0, md5(g::text) FROM generate_series(1, {rows}) g")
                    cluster.sql("VACUUM ANALYZE loose")
                proxy = start_mirrored_proxy(cleanup, primary, secondary, workdir, binary=binary,
                                             mirror="  timeout: 1s\n", log_level="error")
                secondary.stop()
                with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                    conn.execute("UPDATE loose SET n = n + 1 WHERE code = 1")
                secondary.launch()
                took = wait_drained(proxy)
                identical = primary.checksum("loose", "code, n, note") == secondary.checksum("loose", "code, n, note")
                results.append((rows, name, took, identical))
                proxy.stop()

    print("One missed UPDATE of one row of a keyless table: seconds until the journal drained "
          "(including up to 1.5 s until the replayer notices the secondary), and whether the table "
          "was then identical on both databases\n")
    print("| table rows | build | drained after (s) | identical |")
    print("|---|---|---|---|")
    for rows, name, took, identical in results:
        drained = f"{took:.2f}" if took is not None else "did not drain"
        print(f"| {rows:,} | {name} | {drained} | {'yes' if identical else 'NO'} |")


if __name__ == "__main__":
    main()
