#!/usr/bin/env python3
"""UPDATEs of several rows a transaction into a table with a statement-level trigger, against
a sync-mirroring switchyard and, in the same rounds, another build of it (order alternating
per round); the same UPDATEs into a table without triggers beside them. Such a table's UPDATE
images are written by key (an upsert would fire its INSERT triggers): one UPDATE per row
fires the statement trigger once per row, one UPDATE of all the rows once, as the primary's
did. The trigger logs each firing into a table of its own, counted on both databases
around each run. Prints tps, the proxy's CPU per transaction and the
firings on each side.

Usage: bench/trigger_bench.py --baseline path/to/another/switchyard [--rounds R]
       [--seconds S] [--clients C] [--rows N]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from bench_common import builds, run_script, start_mirrored_proxy, start_schema_pair  # noqa: E402

TABLE_ROWS = 100000
SCHEMA = ("CREATE TABLE logged (id int PRIMARY KEY, v float8);"
          "CREATE TABLE plain (id int PRIMARY KEY, v float8);"
          f"INSERT INTO logged SELECT g, 0 FROM generate_series(1, {TABLE_ROWS}) g;"
          f"INSERT INTO plain SELECT g, 0 FROM generate_series(1, {TABLE_ROWS}) g;"
          "CREATE TABLE firings (at int);"
          "CREATE FUNCTION log_firing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
          " INSERT INTO firings VALUES (1); RETURN NULL; END $$;"
          "CREATE TRIGGER logged_updates AFTER UPDATE ON logged FOR EACH STATEMENT"
          " EXECUTE FUNCTION log_firing()")
COUNT = "SELECT count(*) FROM firings"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20, help="rows each UPDATE changes")
    args = parser.parse_args()
    binaries = builds(args.baseline)
    with ExitStack() as cleanup:
        primary, secondary = start_schema_pair(cleanup, SCHEMA)
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="trigger-bench-")))
        for table in ("logged", "plain"):
            (work / f"{table}.sql").write_text(
                f"\\set a random(1, {TABLE_ROWS - args.rows + 1})\n"
                f"UPDATE {table} SET v = v + 1 WHERE id BETWEEN :a AND :a + {args.rows - 1};\n")
        proxies = {name: start_mirrored_proxy(cleanup, primary, secondary, work, binary=binary)
                   for name, binary in binaries.items()}
        targets = [(name, table) for name in binaries for table in ("logged", "plain")]
        results = {target: [] for target in targets}
        for round_ in range(args.rounds):
            for name, table in (targets if round_ % 2 == 0 else list(reversed(targets))):
                proxy = proxies[name]
                fired = [int(cluster.sql(COUNT)) for cluster in (primary, secondary)]
                tps, done, cpu = run_script(proxy, work / f"{table}.sql", args.seconds, args.clients,
                                            mode="prepared")
                fired = [int(cluster.sql(COUNT)) - n for cluster, n in zip((primary, secondary), fired)]
                results[(name, table)].append((tps, cpu, *fired))
                print(f"round {round_ + 1} {name} {table}: {tps:.0f} tps, proxy CPU {cpu:.1f} µs/txn, "
                      f"{done} transactions, statement firings {fired[0]} on the primary, "
                      f"{fired[1]} on the secondary", flush=True)
        print("| build | table | tps | proxy CPU µs/txn | statement firings, primary | secondary |")
        print("|---|---|---|---|---|---|")
        for (name, table), runs in results.items():
            print(f"| {name} | {table} | {statistics.median(r[0] for r in runs):.0f} | "
                  f"{statistics.median(r[1] for r in runs):.1f} | {sum(r[2] for r in runs)} | "
                  f"{sum(r[3] for r in runs)} |")
        for table in ("logged", "plain"):
            print(f"{table} identical:", primary.checksum(table, "id") == secondary.checksum(table, "id"))


if __name__ == "__main__":
    main()
