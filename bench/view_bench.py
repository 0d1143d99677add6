#!/usr/bin/env python3
"""Writes through a view that hides a column the table fills (a clock_timestamp() default):
pgbench -M extended inserting one row per transaction through such a view, through a view
that hides only a literal default, and straight into the table, against one sync-mirroring
switchyard, in the same rounds (order rotated). The first is followed by a journal entry
per row (reason hidden_by_view, written to disk before the primary commits), which the
replayer then writes from the primary; the others by nothing. Prints tps, the proxy's CPU
per transaction, the journal entries and how long the replayer took to drain them after
each run, and whether the two databases ended identical.

Usage: bench/view_bench.py [--rounds R] [--seconds S] [--clients C]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from bench_common import rotated, run_script, start_mirrored_proxy, start_schema_pair  # noqa: E402

SCHEMA = ("CREATE TABLE item (id bigserial PRIMARY KEY, v float8, batch int DEFAULT 7,"
          " made timestamptz DEFAULT clock_timestamp());"
          "CREATE VIEW item_hiding_clock AS SELECT id, v, batch FROM item;"
          "CREATE VIEW item_hiding_literal AS SELECT id, v, made FROM item;")
TARGETS = {"table": "item", "view hiding a literal default": "item_hiding_literal",
           "view hiding a clock default": "item_hiding_clock"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with ExitStack() as cleanup:
        primary, secondary = start_schema_pair(cleanup, SCHEMA)
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="view-bench-")))
        proxy = start_mirrored_proxy(cleanup, primary, secondary, work)
        results = {name: [] for name in TARGETS}
        for round_ in range(args.rounds):
            for name in rotated(list(TARGETS), round_):
                script = work / f"{TARGETS[name]}.sql"
                script.write_text(f"INSERT INTO {TARGETS[name]} (v) VALUES (random());\n")
                entries = proxy.metric("switchyard_journal_entries_total")
                tps, _, cpu = run_script(proxy, script, args.seconds, args.clients)
                journaled = proxy.metric("switchyard_journal_entries_total") - entries
                started = time.monotonic()
                while proxy.metric("switchyard_journal_backlog") > 0:
                    time.sleep(0.05)
                drained = time.monotonic() - started
                results[name].append((tps, cpu, journaled, drained))
                print(f"round {round_ + 1} {name}: {tps:.0f} tps, proxy CPU {cpu:.1f} µs/txn, "
                      f"{journaled:.0f} journal entries, drained {drained:.1f} s after", flush=True)
        table_tps = statistics.median(r[0] for r in results["table"])
        print("| target | tps | vs the table | proxy CPU µs/txn | journal entries per run | drained after (s) |")
        print("|---|---|---|---|---|---|")
        for name, runs in results.items():
            tps = statistics.median(r[0] for r in runs)
            print(f"| {name} | {tps:.0f} | {tps / table_tps:.2f}× | {statistics.median(r[1] for r in runs):.0f} | "
                  f"{statistics.median(r[2] for r in runs):.0f} | {statistics.median(r[3] for r in runs):.1f} |")
        print("databases identical:", primary.checksum("item", "id") == secondary.checksum("item", "id"))


if __name__ == "__main__":
    main()
