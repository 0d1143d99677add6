#!/usr/bin/env python3
"""Autocommit writes in the extended protocol (what psycopg, JDBC and libpq's PQexecParams
send): pgbench -M extended running one upsert per transaction against a sync-mirroring
switchyard and, in the same rounds, against another build of it; the order alternates per
round. Prints tps and the proxy's CPU per transaction for each, and whether the two
databases ended identical. switchyard wraps each such write in a transaction it opens and
commits itself, so this is the path that wrapping costs.

With --setting, each transaction is preceded by a SET of its own (as ORMs re-send their
settings): the session-statement log, its compaction and the shape lookups by settings.

Usage: bench/autocommit_bench.py --baseline path/to/another/switchyard [--rounds R]
       [--seconds S] [--clients C] [--setting]
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

SCRIPT = ("\\set id random(1, 10000000)\n"
          "INSERT INTO kv (id, v) VALUES (:id, random()) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--setting", action="store_true", help="a SET before every transaction")
    args = parser.parse_args()
    binaries = builds(args.baseline)
    with ExitStack() as cleanup:
        primary, secondary = start_schema_pair(cleanup, "CREATE TABLE kv (id int PRIMARY KEY, v float8)")
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="autocommit-bench-")))
        (work / "upsert.sql").write_text(("SET search_path = public;\n" if args.setting else "") + SCRIPT)
        proxies = {name: start_mirrored_proxy(cleanup, primary, secondary, work, binary=binary)
                   for name, binary in binaries.items()}
        results = {name: [] for name in binaries}
        for round_ in range(args.rounds):
            for name in (list(binaries) if round_ % 2 == 0 else list(reversed(binaries))):
                proxy = proxies[name]
                tps, _, cpu = run_script(proxy, work / "upsert.sql", args.seconds, args.clients)
                results[name].append((tps, cpu))
                print(f"round {round_ + 1} {name}: {tps:.0f} tps, proxy CPU {cpu:.1f} µs/txn", flush=True)
        ratios = [a[0] / b[0] for a, b in zip(results["switchyard"], results["baseline"])]
        cpu = [a[1] / b[1] for a, b in zip(results["switchyard"], results["baseline"])]
        for name, runs in results.items():
            print(f"{name}: median {statistics.median(r[0] for r in runs):.0f} tps, "
                  f"{statistics.median(r[1] for r in runs):.1f} µs/txn")
        print("switchyard/baseline per round: tps " + ", ".join(f"{r:.2f}" for r in ratios)
              + "; CPU per transaction " + ", ".join(f"{r:.2f}" for r in cpu))
        print("databases identical:", primary.checksum("kv", "id") == secondary.checksum("kv", "id"))


if __name__ == "__main__":
    main()
