#!/usr/bin/env python3
"""Long query texts through mirroring switchyard: how long each takes and how much memory the
proxy needs while it classifies it.

Targets, in the same run against the same two clusters: direct PostgreSQL, switchyard
mirroring (sync) and, with --baseline, another switchyard binary the same way. Texts:

- statements: one query string of --size `SELECT 1;` statements (parsed a statement at a time);
- bulk insert: one INSERT of --size rows into a table with a clock default, every other row
  leaving it to the database (parsed from one row of each shape);
- parameterised insert: the bulk insert as an ORM batches it into one Parse, a parameter per
  row (at most 65,535 rows, PostgreSQL's limit of parameters); rows that differ in their
  parameter numbers alone are of one shape;
- IN list: one SELECT with --size constants in an IN list (parsed with its first constant alone).

For each: seconds until ReadyForQuery (median of --rounds) and each proxy's peak RSS growth
over the first round (VmHWM, reset before, less VmRSS before), on proxies started for that
text.

Usage: bench/long_query_bench.py [--size N] [--rounds N] [--baseline PATH]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import struct
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import builds, memory_kib, rotated, start_direct_and_builds, start_schema_pair  # noqa: E402
from wire import RawClient, cstr, message  # noqa: E402

SCHEMA = "CREATE TABLE bulk (id int, body text, at timestamptz DEFAULT clock_timestamp())"
MAX_PARAMETERS = 65_535


def texts(size):
    """Each text by name: the SQL and its parameters' values (None: a simple Query)."""
    rows = ", ".join(f"({i}, 'row {i}', DEFAULT)" if i % 2 else f"({i}, 'row {i}', '2026-01-01 00:00:00+00')"
                     for i in range(size))
    parameterised = range(min(size, MAX_PARAMETERS))
    parameterised_rows = ", ".join(f"(${i + 1}, 'row', DEFAULT)" if i % 2 else f"(${i + 1}, 'row', '2026-01-01')"
                                   for i in parameterised)
    return {
        "statements": ("SELECT 1;" * size, None),
        "bulk insert": (f"INSERT INTO bulk (id, body, at) VALUES {rows}", None),
        "parameterised insert": (f"INSERT INTO bulk (id, body, at) VALUES {parameterised_rows}",
                                 [str(i) for i in parameterised]),
        "IN list": ("SELECT count(*) FROM bulk WHERE id IN (" + ", ".join(str(i) for i in range(size)) + ")", None),
    }


def request(sql, params):
    """A simple Query of `sql`, or with `params` an extended-protocol cycle binding them as text."""
    if params is None:
        return message(b"Q", cstr(sql))
    values = b"".join(struct.pack("!i", len(v.encode())) + v.encode() for v in params)
    return (message(b"P", cstr("") + cstr(sql) + struct.pack("!h", 0))
            + message(b"B", cstr("") + cstr("") + struct.pack("!hH", 0, len(params)) + values + struct.pack("!h", 0))
            + message(b"E", cstr("") + struct.pack("!i", 0)) + message(b"S"))


def run(port, sql, params, pid=None):
    """Seconds until the text's ReadyForQuery; with `pid`, also that process's peak RSS growth
    in MiB over the run."""
    client = RawClient(port, timeout=600)
    client.login_trust()
    if pid:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM starts again from VmRSS
    before = memory_kib(pid, "VmRSS") if pid else 0
    start = time.monotonic()
    client.send(request(sql, params))
    client.read_until(b"Z")
    elapsed = time.monotonic() - start
    client.close()
    return elapsed, (memory_kib(pid, "VmHWM") - before) / 1024 if pid else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another switchyard binary to run beside this build")
    opts = parser.parse_args()
    with ExitStack() as cleanup:
        primary, secondary = start_schema_pair(cleanup, SCHEMA)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-long-")))
        targets = ["direct", *builds(opts.baseline)]
        print(f"texts of {opts.size:,} statements, rows or constants, median of {opts.rounds} rounds; "
              "switchyard mirroring in sync mode, both databases and the proxies on this machine\n")
        print("| text | MB | " + " | ".join(f"{t} s" for t in targets) + " | "
              + " | ".join(f"{t} peak growth (MiB)" for t in targets[1:]) + " |"
              + (" switchyard/baseline s | switchyard/baseline MiB |" if opts.baseline else ""))
        print("|---" * (2 + 2 * len(targets) - 1 + 2 * bool(opts.baseline)) + "|")
        for kind, (sql, params) in texts(opts.size).items():
            # Proxies of their own per text: an allocator keeps what an earlier text took, which
            # would hide a later text's growth.
            proxies = cleanup.enter_context(ExitStack())
            ports, pids = start_direct_and_builds(proxies, primary, secondary, workdir, opts.baseline)
            seconds = {t: [] for t in targets}
            growth = {}
            for round_no in range(opts.rounds):
                for target in rotated(targets, round_no):
                    elapsed, grown = run(ports[target], sql, params, None if round_no else pids.get(target))
                    seconds[target].append(elapsed)
                    if grown is not None:
                        growth[target] = grown
                    for cluster in (primary, secondary):
                        cluster.sql("TRUNCATE bulk")
            median = {t: statistics.median(v) for t, v in seconds.items()}
            memory_ratio = (f"{growth['switchyard'] / growth['baseline']:.2f}×" if opts.baseline and growth['baseline']
                            else "—")  # a small text may not move the peak at all
            ratios = (f" {median['switchyard'] / median['baseline']:.2f}× | {memory_ratio} |"
                      if opts.baseline else "")
            print(f"| {kind} | {len(sql) / 1e6:.1f} | " + " | ".join(f"{median[t]:.2f}" for t in targets)
                  + " | " + " | ".join(f"{growth[t]:.0f}" for t in pids) + " |" + ratios, flush=True)
            proxies.close()


if __name__ == "__main__":
    main()
