#!/usr/bin/env python3
"""DDL under load: how many client errors an expand-phase migration causes through
switchyard, and whether the tables end identical, with this build and (with --baseline)
another one in the same run.

In every round, for each target and write mode: two fresh PostgreSQL 15 clusters get a table
of `--rows` rows; `--clients` clients write through switchyard, each updating a random row
and inserting one, over and over (psycopg prepares statements it ran five times, so most
run as prepared statements switchyard rewrote with their row image); after a second one more
client runs `ALTER TABLE ... ADD COLUMN created timestamptz DEFAULT now(), ADD COLUMN r
float8 DEFAULT random()` (alone, or with `--ddl-in-block` as a migration tool does: `BEGIN`,
the `ALTER`, an insert into a bookkeeping table, `COMMIT`); the writers go on for `--seconds` seconds and stop; once the
journal is drained the table is compared on both databases by an md5 of all its rows. The
writes the secondary refused (journaled, and counted by the error-rate gate) and those
applied again once the secondary had the DDL are counted too.

Errors a client sees here are errors it would not see without switchyard ("cached plan must
not change result type" on a statement without RETURNING *). Not a test: it asserts nothing.

Usage: bench/ddl_under_load.py [--rounds R] [--clients C] [--seconds S] [--rows N]
                               [--ddl-in-block] [--baseline path/to/another/switchyard]
Build first with scripts/build.sh release.
"""
import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import wait_for  # noqa: E402

from bench_common import builds, start_clusters, start_mirrored_proxy  # noqa: E402


def one_run(binary, mode, opts):
    """(client errors by message, secondary refusals, writes retried after the DDL, tables
    identical) for one migration under load."""
    with ExitStack() as cleanup:
        primary, secondary = start_clusters(cleanup, 2)
        for cluster in (primary, secondary):
            cluster.sql("CREATE TABLE acc (id int PRIMARY KEY, v int, note text);"
                        f"INSERT INTO acc SELECT g, 0, 'x' FROM generate_series(1, {opts.rows}) g;"
                        "CREATE TABLE migrations (version int PRIMARY KEY)")
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-ddlbench-")))
        proxy = start_mirrored_proxy(cleanup, primary, secondary, workdir, settings=f"write_mode: {mode}\n",
                                     binary=binary)
        stop = threading.Event()
        errors = Counter()

        def write(n):
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        conn.execute("UPDATE acc SET v = v + 1 WHERE id = %s", (random.randint(1, opts.rows),))
                        conn.execute("INSERT INTO acc (id, v) VALUES (%s, 1)", ((n + 1) * 10_000_000 + i,))
                    except psycopg.Error as e:
                        errors[str(e).splitlines()[0]] += 1

        writers = [threading.Thread(target=write, args=(n,)) for n in range(opts.clients)]
        for writer in writers:
            writer.start()
        time.sleep(1)
        with psycopg.connect(proxy.dsn(), autocommit=not opts.ddl_in_block) as conn:
            conn.execute("ALTER TABLE acc ADD COLUMN created timestamptz DEFAULT now(),"
                         " ADD COLUMN r float8 DEFAULT random()")
            if opts.ddl_in_block:
                conn.execute("INSERT INTO migrations VALUES (1)")
                conn.commit()
        time.sleep(opts.seconds)
        stop.set()
        for writer in writers:
            writer.join()
        wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=120)
        time.sleep(1)  # async: the last writes and the journal entry of the DDL
        wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=120)
        digest = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM acc t"
        return (errors, int(proxy.metric_sum("switchyard_mirror_failures_total")),
                int(proxy.metric("switchyard_mirror_retried_after_ddl_total")),
                primary.sql(digest) == secondary.sql(digest))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--ddl-in-block", action="store_true",
                        help="run the ALTER in a transaction block with a bookkeeping insert")
    parser.add_argument("--baseline", help="another switchyard binary to run as well")
    opts = parser.parse_args()
    binaries = builds(opts.baseline)
    print("| target | mode | round | client errors | secondary refused (journaled) | retried after the DDL | tables identical |")
    print("|---|---|---|---|---|---|---|")
    for round_ in range(1, opts.rounds + 1):
        for mode in ("sync", "async"):
            for name, binary in binaries.items():
                errors, refused, retried, identical = one_run(binary, mode, opts)
                shown = "; ".join(f"{count}× {message}" for message, count in errors.items()) or "0"
                print(f"| {name} | {mode} | {round_} | {shown} | {refused} | {retried} | "
                      f"{'yes' if identical else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
