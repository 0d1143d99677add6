#!/usr/bin/env python3
"""COPY benchmark: psql's \\copy of the same CSV file direct to the primary and through
switchyard (sync mirroring), side by side in one run, in two forms: every column given, and
the serial id, a random() and a now() default left out, which switchyard fills with the
primary's values (protocol/copy_data.hpp). After each load through a proxy the table is
compared on both databases.

Usage: bench/copy_bench.py [--rows N] [--rounds R] [--baseline path/to/another/switchyard]
`--baseline` loads through another build as well, in the same rounds (a build from before
the defaults were filled mirrors the COPY as is: its tables then differ). Build first with
scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import builds, psql_seconds, rotated, start_clusters, start_mirrored_proxy, trust_local  # noqa: E402

TABLE = ("CREATE TABLE loads (id bigserial PRIMARY KEY, account int NOT NULL, "
         "amount float8 NOT NULL DEFAULT random(), created timestamptz NOT NULL DEFAULT now())")
FORMS = {
    "every column given": "loads (id, account, amount, created)",
    "id, random() and now() left out": "loads (account)",
}


def load(port, target, path):
    """Seconds a \\copy of `path` into `target` takes through the server at `port`."""
    return psql_seconds(port, f"\\copy {target} FROM '{path}' CSV")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per COPY")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another switchyard binary to load through as well")
    opts = parser.parse_args()

    with ExitStack() as cleanup:
        primary, secondary = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-cbench-")))
        for cluster in (primary, secondary):
            trust_local(cluster)
            cluster.sql(TABLE)
        full, partial = workdir / "full.csv", workdir / "partial.csv"
        with full.open("w") as f:
            for i in range(1, opts.rows + 1):
                f.write(f"{i},{i % 1000},{i / 7},2026-12-01 00:00:00+00\n")
        partial.write_text("".join(f"{i % 1000}\n" for i in range(opts.rows)))
        files = {"every column given": full, "id, random() and now() left out": partial}

        targets = {"direct": primary.port}
        for name, binary in builds(opts.baseline).items():
            targets[name] = start_mirrored_proxy(cleanup, primary, secondary, workdir, binary=binary,
                                                 mirror="  max_transaction_bytes: 268435456\n").port

        print(f"\\copy of {opts.rows} rows (CSV), rows per second over the median of {opts.rounds} rounds; both databases and "
              f"switchyard on the same {os.cpu_count()} cores\n")
        names = list(targets)
        others = names[1:]
        pairs = [(n, "direct") for n in others] + ([("switchyard", "baseline")] if "baseline" in names else [])
        print("| form | " + " | ".join(f"{n} rows/s" for n in names) + " | "
              + " | ".join(f"{a}/{b}" for a, b in pairs) + " | "
              + " | ".join(f"{n}: tables identical" for n in others) + " |")
        print("|---|" + "---|" * (len(names) + len(pairs) + len(others)))
        for form, target in FORMS.items():
            seconds = {name: [] for name in names}
            identical = {name: True for name in others}
            for round_ in range(opts.rounds):
                for name in rotated(names, round_):
                    for cluster in (primary, secondary):
                        cluster.sql("TRUNCATE loads RESTART IDENTITY")
                    seconds[name].append(load(targets[name], target, files[form]))
                    if name != "direct":
                        identical[name] &= primary.checksum("loads", "id") == secondary.checksum("loads", "id")
            rate = {name: opts.rows / statistics.median(values) for name, values in seconds.items()}
            print(f"| {form} | " + " | ".join(f"{rate[n]:.0f}" for n in names) + " | "
                  + " | ".join(f"{rate[a] / rate[b]:.2f}×" for a, b in pairs) + " | "
                  + " | ".join("yes" if identical[n] else "**no**" for n in others) + " |", flush=True)

if __name__ == "__main__":
    main()
