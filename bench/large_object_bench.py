#!/usr/bin/env python3
"""Large-object benchmark: psql's \\lo_import of the same file (libpq's lo_creat, lo_open
and one lowrite FunctionCall per 8 KiB piece, in one transaction) direct to the primary
and through switchyard in sync and async mode, side by side in one run; then a larger file
through a switchyard whose mirror.max_transaction_bytes it exceeds, which journals the
object for the replayer to copy from the primary. For each load through a proxy: seconds
to the import's end (and, async or journaled, until the secondary has it too), the
proxy's peak RSS growth over it, and whether the large objects are identical on both
databases.

With `--restore` the load is psql running pg_dump's output of a database holding the same
file as a large object instead: SQL statements, `lo_create` of its OID, then `lo_open`, one
`lowrite` per 16 KiB piece (as hex text) and `lo_close`, in one transaction.

With `--inserts N` the load is psycopg inserting N rows into a table keeping large
objects in an oid column, each row's object made by the INSERT itself (`INSERT INTO docs
(body) VALUES (lo_from_bytea(0, %s))`, autocommit, the data a parameter), splitting the
same MiB between them.

With `--insert-select N` the load is one statement, `INSERT INTO docs (body) SELECT
lo_from_bytea(0, data) FROM staging`, moving N rows of a bytea table on both databases
(the same MiB split between them) into large objects, as a migration does: the secondary
creates each object under the primary's OID and the replayer copies its bytes.

Usage: bench/large_object_bench.py [--mb N] [--rounds R] [--restore | --inserts N | --insert-select N] [--baseline path/to/another/switchyard]
`--baseline` imports through another build (sync) as well, in the same rounds. Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import memory_kib, psql_seconds, start_clusters, start_mirrored_proxy, trust_local, wait_drained  # noqa: E402

DOCS = "SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM docs"
OBJECTS = "SELECT string_agg(oid || ':' || md5(lo_get(oid)), ',' ORDER BY oid) FROM pg_largeobject_metadata"


def dump_of(primary, path, workdir):
    """pg_dump's SQL of a database of its own on `primary` holding `path` as a large object."""
    database = f"lo_source_{path.stem}"
    primary.sql(f"CREATE DATABASE {database}")
    primary.sql(f"\\lo_import {path}", dbname=database)
    dump = workdir / f"{database}.sql"
    subprocess.run(["pg_dump", "-h", str(primary.root), "-p", str(primary.port), "-U", "postgres",
                    "-d", database, "-f", str(dump)], check=True)
    return dump


def insert_seconds(port, path, rows):
    """Seconds psycopg takes to insert `rows` rows through the server at `port`, each with
    an object lo_from_bytea makes of its share of the file at `path`."""
    data = path.read_bytes()
    share = -(-len(data) // rows)
    start = time.perf_counter()
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
        for i in range(rows):
            conn.execute("INSERT INTO docs (body) VALUES (lo_from_bytea(0, %s))", (data[i * share:(i + 1) * share],))
    return time.perf_counter() - start


def fill_staging(cluster, path, rows):
    """A table `staging` on `cluster` holding the file at `path` split into `rows` bytea rows."""
    data = path.read_bytes()
    share = -(-len(data) // rows)
    with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres") as conn:
        conn.execute("CREATE TABLE staging (id int PRIMARY KEY, data bytea)")
        with conn.cursor().copy("COPY staging FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((i, data[i * share:(i + 1) * share]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=32, help="size of the file imported, in MiB (under 64)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another switchyard binary to import through as well")
    load_kind = parser.add_mutually_exclusive_group()
    load_kind.add_argument("--restore", action="store_true", help="restore pg_dump's SQL instead of \\lo_import")
    load_kind.add_argument("--inserts", type=int, help="INSERT this many rows making their objects instead")
    load_kind.add_argument("--insert-select", type=int, metavar="N",
                           help="one INSERT … SELECT making objects of this many bytea rows instead")
    opts = parser.parse_args()

    with ExitStack() as cleanup:
        primary, secondary = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-lobench-")))
        for cluster in (primary, secondary):
            trust_local(cluster)
            cluster.sql("CREATE TABLE docs (id serial PRIMARY KEY, body oid)")
        data = workdir / "object.bin"
        data.write_bytes(bytes(range(256)) * (opts.mb * 4096))
        # mirror.max_transaction_bytes defaults to 64 MiB: the other rows stay under it, the
        # last imports twice that.
        big = workdir / "big.bin"
        big.write_bytes(bytes(range(256)) * (128 * 4096))
        load = {path: f"\\lo_import {path}" for path in (data, big)}
        if opts.restore:
            load = {path: f"\\i {dump_of(primary, path, workdir)}" for path in (data, big)}
        if opts.insert_select:
            for cluster in (primary, secondary):
                fill_staging(cluster, data, opts.insert_select)
            load = {data: "INSERT INTO docs (body) SELECT lo_from_bytea(0, data) FROM staging"}
        # A proxy each, so each one's peak RSS (VmHWM) over its first round is its own row's.
        proxy = {mode: start_mirrored_proxy(cleanup, primary, secondary, workdir, settings=settings)
                 for mode, settings in (("sync", ""), ("async", "write_mode: async\n"), ("past", ""))}
        runs = [("direct", primary.port, None, data), ("switchyard sync", proxy["sync"].port, proxy["sync"], data),
                ("switchyard async", proxy["async"].port, proxy["async"], data),
                ("switchyard sync, past max_transaction_bytes", proxy["past"].port, proxy["past"], big)]
        if opts.inserts or opts.insert_select:
            runs.pop()  # each statement's object is its own, or copied: none passes the bound
        if opts.baseline:
            baseline = start_mirrored_proxy(cleanup, primary, secondary, workdir, binary=opts.baseline)
            runs.insert(2, ("baseline sync", baseline.port, baseline, data))
        results = {name: {"seconds": [], "settled": [], "growth": [], "identical": True} for name, *_ in runs}
        for _ in range(opts.rounds):
            for name, port, through, path in runs:
                for cluster in (primary, secondary):
                    cluster.sql("SELECT lo_unlink(oid) FROM pg_largeobject_metadata; TRUNCATE docs")
                    # Apart, so a secondary running the INSERT itself would choose other OIDs.
                    cluster.sql("SELECT lo_unlink(lo_create(0))" if cluster is secondary else "SELECT 1")
                before = memory_kib(through.process.pid, "VmRSS") if through else 0
                start = time.perf_counter()
                if opts.inserts:
                    results[name]["seconds"].append(insert_seconds(port, path, opts.inserts))
                else:
                    results[name]["seconds"].append(psql_seconds(port, load[path]))
                if through:
                    wait_drained(through)
                    results[name]["settled"].append(time.perf_counter() - start)
                    results[name]["growth"].append((memory_kib(through.process.pid, "VmHWM") - before) / 1024)
                    results[name]["identical"] &= (primary.sql(OBJECTS) == secondary.sql(OBJECTS)
                                                   and primary.sql(DOCS) == secondary.sql(DOCS))
        direct = statistics.median(results["direct"]["seconds"])
        what = ("pg_dump's SQL restoring" if opts.restore else
                f"{opts.inserts} INSERTs making objects of" if opts.inserts else
                f"an INSERT … SELECT making {opts.insert_select} objects of" if opts.insert_select else
                "\\lo_import of")
        last = "" if opts.inserts or opts.insert_select else f" (the last row: {big.stat().st_size >> 20} MiB)"
        print(f"{what} {opts.mb} MiB{last}, median of {opts.rounds} rounds\n")
        print("| target | MiB | import s | until on the secondary s | MiB/s | import s / direct's "
              "| proxy peak RSS growth MiB | identical |")
        print("|---|---|---|---|---|---|---|---|")
        for name, _, through, path in runs:
            r = results[name]
            seconds = statistics.median(r["seconds"])
            mib = path.stat().st_size >> 20
            cells = [name, str(mib), f"{seconds:.2f}", "", f"{mib / seconds:.0f}",
                     f"{seconds / direct:.2f}×" if path is data else "", "", ""]
            if through:
                cells[3] = f"{statistics.median(r['settled']):.2f}"
                cells[6] = f"{r['growth'][0]:.0f}"  # VmHWM is the peak since start: the first round's
                cells[7] = "yes" if r["identical"] else "NO"
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
