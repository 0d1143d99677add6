#!/usr/bin/env python3
"""Journal replay benchmark: how fast switchyard's replayer brings a secondary that was down
back in line, for statements of one row, statements of many rows and a COPY, with this
build and (with --baseline) another one in the same run.

For each target and form, in every round: the secondary is stopped; a client writes through
switchyard (sync) — `--rows` rows inserted, all of them updated, half of them deleted, by
statements of one row or of `--rows-per-statement` rows, or only inserted, by one COPY
FROM STDIN (journaled as the rows it wrote by their keys, or, past 10,000 rows, as its
table, which the replayer refreshes from the primary), or, already on both databases, each
moved to another key by an UPDATE of its own (the replayer also removes the old keys, in a
pass over the table's keys) or by a writing CTE of its own (journaled as the table it
wrote: a refresh and that pass, once for the whole backlog), or, as pgbench's TPC-B does,
by transactions that each update a row of `items` and of `tally` and insert a row into
`notes` (an id from a sequence, a clock default): one-row entries of three tables in turn,
which the replayer cannot join — so every write goes to the journal; the secondary is started again and the time until the
journal's backlog is 0 is taken (it includes up to 1.5 s before the replayer notices the secondary is back: its retry
pause and its poll). Then the table is compared on both databases. With `--table-rows N` the
table holds N other rows on both databases before each run, as a table that grows by loads
does (a refresh passes over them all). With `--statement-trigger` `items` has an AFTER INSERT
and an AFTER UPDATE statement trigger on both databases, each counting its firings: the
replayer then writes the rows the secondary has by an UPDATE and the others by an INSERT
(rather than by an upsert, which fires both), and the firings on both sides are printed.

Usage: bench/replay_bench.py [--rows N] [--rows-per-statement K] [--rounds R] [--forms=LABEL,...]
                             [--table-rows N] [--statement-trigger]
                             [--baseline path/to/another/switchyard]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import builds, start_clusters, start_mirrored_proxy, trust_local, wait_drained  # noqa: E402

TABLES = ("CREATE TABLE items (id bigint PRIMARY KEY, v float8 NOT NULL, note text)",
          "CREATE TABLE tally (id bigint PRIMARY KEY, n bigint NOT NULL)",
          "CREATE TABLE notes (id bigserial PRIMARY KEY, item bigint NOT NULL,"
          " at timestamptz NOT NULL DEFAULT clock_timestamp())")
MOVED_ROWS = "INSERT INTO items SELECT g, g / 7.0, 'n' || g FROM generate_series(1, {rows}) g"
TALLIES = "INSERT INTO tally SELECT g, 0 FROM generate_series(1, {rows}) g"
STATEMENT_TRIGGERS = (
    "CREATE TABLE fired (what text PRIMARY KEY, n bigint NOT NULL)",
    "CREATE FUNCTION note_fired() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " INSERT INTO fired VALUES (TG_OP, 1) ON CONFLICT (what) DO UPDATE SET n = fired.n + 1;"
    " RETURN NULL; END $$",
    "CREATE TRIGGER inserted AFTER INSERT ON items FOR EACH STATEMENT EXECUTE FUNCTION note_fired()",
    "CREATE TRIGGER updated AFTER UPDATE ON items FOR EACH STATEMENT EXECUTE FUNCTION note_fired()")
FIRINGS = "SELECT coalesce(string_agg(lower(what) || ' ' || n, ', ' ORDER BY what), 'none') FROM fired"


def write(dsn, rows, per_statement):
    """Inserts `rows` rows, updates them all and deletes every other one, `per_statement`
    rows a statement, or (`per_statement` 0) inserts them by one COPY, or moves each of the
    `rows` rows the table has (MOVED_ROWS) to another key, by an UPDATE (`per_statement` -1)
    or a writing CTE (-2), or (-3) updates each of those rows and its tally and notes it, a
    transaction each; returns the journal entries expected and the row writes they stand
    for."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if per_statement == -3:
            for i in range(1, rows + 1):
                with conn.transaction():
                    conn.execute("UPDATE items SET v = v + random() WHERE id = %s", (i,))
                    conn.execute("UPDATE tally SET n = n + 1 WHERE id = %s", (i,))
                    conn.execute("INSERT INTO notes (item) VALUES (%s)", (i,))
            return 3 * rows, 3 * rows
        if per_statement < 0:
            move = ("UPDATE items SET id = id + %s WHERE id = %s" if per_statement == -1 else
                    "WITH d AS (DELETE FROM items WHERE id = %(i)s RETURNING *) "
                    "INSERT INTO items SELECT id + %(rows)s, v, note FROM d")
            for i in range(1, rows + 1):
                conn.execute(move, (rows, i) if per_statement == -1 else {"i": i, "rows": rows})
            return rows, rows
        if per_statement == 0:
            with conn.cursor().copy("COPY items FROM STDIN") as copy:
                for i in range(1, rows + 1):
                    copy.write_row((i, i / 7, f"n{i}"))
            return "a COPY", rows
        for first in range(1, rows + 1, per_statement):
            last = min(first + per_statement - 1, rows)
            conn.execute("INSERT INTO items SELECT g, random(), 'n' || g FROM generate_series(%s::bigint, %s::bigint) g",
                         (first, last))
        for first in range(1, rows + 1, per_statement):
            last = min(first + per_statement - 1, rows)
            conn.execute("UPDATE items SET v = v + random() WHERE id BETWEEN %s AND %s", (first, last))
        for first in range(1, rows + 1, 2 * per_statement):
            last = min(first + 2 * per_statement - 1, rows)
            conn.execute("DELETE FROM items WHERE id BETWEEN %s AND %s AND id %% 2 = 0", (first, last))
    return rows + rows + rows // 2, rows + rows + rows // 2


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000, help="rows inserted per run")
    parser.add_argument("--rows-per-statement", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forms", default="all", help="comma-separated label prefixes, e.g. --forms=one")
    parser.add_argument("--table-rows", type=int, default=0, help="rows the table holds before each run")
    parser.add_argument("--statement-trigger", action="store_true",
                        help="count INSERT and UPDATE statement trigger firings on items")
    parser.add_argument("--baseline", help="another switchyard binary to replay with as well")
    opts = parser.parse_args()

    with ExitStack() as cleanup:
        primary, secondary = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-rbench-")))
        for cluster in (primary, secondary):
            trust_local(cluster)
            for table in TABLES + (STATEMENT_TRIGGERS if opts.statement_trigger else ()):
                cluster.sql(table)
        binaries = builds(opts.baseline)

        forms = {"1 row per statement": 1, f"{opts.rows_per_statement} rows per statement": opts.rows_per_statement,
                 "one COPY, inserts only": 0, "keys moved, 1 row per statement": -1,
                 "writing CTEs, 1 row each": -2, "transactions over 3 tables, 1 row each": -3}
        forms = {label: per_statement for label, per_statement in forms.items()
                 if opts.forms == "all" or any(label.startswith(prefix) for prefix in opts.forms.split(","))}
        seconds = {(form, name): [] for form in forms for name in binaries}
        identical = {name: True for name in binaries}
        entries = {}
        writes = {}
        firings = {}  # (form, name): the last drain's firings on the primary and the secondary
        for round_number in range(opts.rounds):
            for form, per_statement in forms.items():
                for name in binaries:
                    # A process of its own per run: the replayer starts without connections.
                    proxy = start_mirrored_proxy(cleanup, primary, secondary, workdir, binary=binaries[name],
                                                 mirror="  timeout: 1s\n", log_level="error")
                    for cluster in (primary, secondary):
                        cluster.sql("TRUNCATE items, tally, notes RESTART IDENTITY")
                        if opts.statement_trigger:
                            cluster.sql("TRUNCATE fired")
                        if opts.table_rows:
                            cluster.sql("INSERT INTO items SELECT g, g / 7.0, 'kept' FROM generate_series("
                                        f"{10**9 + 1}, {10**9 + opts.table_rows}) g")
                            cluster.sql("VACUUM ANALYZE items")
                        if per_statement < 0:
                            cluster.sql(MOVED_ROWS.format(rows=opts.rows))
                            cluster.sql(TALLIES.format(rows=opts.rows))
                    if opts.statement_trigger:  # what the setup fired
                        for cluster in (primary, secondary):
                            cluster.sql("TRUNCATE fired")
                    secondary.stop()
                    entries[form], writes[form] = write(proxy.dsn(), opts.rows, per_statement)
                    secondary.launch()
                    took = wait_drained(proxy)
                    if took is None:
                        print(f"{name}, {form}: the journal did not drain", file=sys.stderr)
                        identical[name] = False
                        continue
                    seconds[(form, name)].append(took)
                    if opts.statement_trigger:
                        firings[(form, name)] = (primary.sql(FIRINGS), secondary.sql(FIRINGS))
                    identical[name] &= all(primary.checksum(table, "id") == secondary.checksum(table, "id")
                                           for table in ("items", "tally", "notes"))
                    proxy.stop()

        print(f"Journal drained after the secondary came back: {opts.rows} rows inserted (and, but for the COPY, "
              f"updated, half deleted, or each moved to another key by an UPDATE or a writing CTE, or updated with a tally and a note) into a table of {opts.table_rows} other rows; "
              f"row writes brought in line per second, median of {opts.rounds} rounds "
              f"(seconds in brackets); both databases and switchyard on the same {os.cpu_count()} cores\n")
        names = list(binaries)
        header = "| form | journal entries | row writes | " + " | ".join(f"{n} row writes/s (s)" for n in names)
        if "baseline" in binaries:
            header += " | switchyard/baseline"
        print(header + " |")
        print("|" + "---|" * (header.count("|")))
        for form in forms:
            cells = [form, str(entries.get(form, 0)), str(writes.get(form, 0))]
            rates = {}
            for name in names:
                runs = seconds[(form, name)]
                if not runs:
                    cells.append("did not drain")
                    continue
                median = statistics.median(runs)
                rates[name] = writes[form] / median
                cells.append(f"{rates[name]:.0f} ({median:.2f})")
            if "baseline" in binaries:
                ratio = rates.get("switchyard", 0) / rates["baseline"] if rates.get("baseline") else 0
                cells.append(f"{ratio:.2f}×")
            print("| " + " | ".join(cells) + " |")
        print()
        for (form, name), (on_primary, on_secondary) in firings.items():
            print(f"{name}, {form}: statement triggers fired on the primary {on_primary};"
                  f" on the secondary by the replay {on_secondary}")
        for name in names:
            print(f"{name}: tables identical after every drain: {'yes' if identical[name] else 'NO'}")


if __name__ == "__main__":
    main()
