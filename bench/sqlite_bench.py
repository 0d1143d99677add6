#!/usr/bin/env python3
"""SQLite engine benchmark, side by side in one run:

1. A pgbench custom script (an update, a point read and an insert per transaction, each
   statement in autocommit) against a SQLite primary through switchyard, versus the same
   statements through Python's sqlite3 module on the same file (one connection per client,
   autocommit, SQLite's defaults: WAL as the file is, synchronous FULL).
2. Mirrored write throughput: the same script through switchyard with the SQLite primary
   alone, mirrored to a second SQLite file, and mirrored to a real PostgreSQL 15 cluster.

Prints transactions per second and the ratios. Build first with scripts/build.sh release.
Usage: bench/sqlite_bench.py [--duration S] [--rows N]. Not a test: it asserts nothing.
"""
import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import PgCluster, Proxy  # noqa: E402

from bench_common import start_clusters  # noqa: E402

SQLITE_SCHEMA = """
CREATE TABLE kv (k INTEGER PRIMARY KEY, v INTEGER NOT NULL, note TEXT);
CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, k INTEGER NOT NULL, at TIMESTAMPTZ DEFAULT (now()));
"""
PG_SCHEMA = """
CREATE TABLE kv (k bigint PRIMARY KEY, v bigint NOT NULL, note text);
CREATE TABLE log (id bigserial PRIMARY KEY, k bigint NOT NULL, at timestamptz DEFAULT now());
"""
STATEMENTS = ["UPDATE kv SET v = v + 1 WHERE k = {k}",
              "SELECT v, note FROM kv WHERE k = {k}",
              "INSERT INTO log (k) VALUES ({k})"]
SCRIPT = "\\set k random(1, {rows})\n" + "".join(s.format(k=":k") + ";\n" for s in STATEMENTS)


def make_sqlite(path: Path, rows: int):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SQLITE_SCHEMA)
    db.executemany("INSERT INTO kv (k, v, note) VALUES (?, 0, 'row')", [(k,) for k in range(1, rows + 1)])
    db.commit()
    db.close()


def make_pg(cluster: PgCluster, rows: int):
    cluster.sql("DROP TABLE IF EXISTS kv, log")
    cluster.sql(PG_SCHEMA)
    cluster.sql(f"INSERT INTO kv (k, v, note) SELECT g, 0, 'row' FROM generate_series(1, {rows}) g")


def pgbench(port, script: Path, clients: int, duration: int):
    out = subprocess.run(["pgbench", "-n", "-T", str(duration), "-c", str(clients), "-j", str(min(clients, 2)),
                          "-f", str(script), f"host=127.0.0.1 port={port} user=app dbname=app"],
                         capture_output=True, text=True)
    tps = next((float(line.split("=")[1].split()[0]) for line in out.stdout.splitlines()
                if line.startswith("tps =")), 0.0)
    return tps, out.returncode != 0 or "aborted" in out.stderr


def python_sqlite(path: Path, rows: int, clients: int, duration: int):
    """The same transactions through Python's sqlite3, one thread and connection per client."""
    counts = [0] * clients
    deadline = time.monotonic() + duration

    def client(index):
        db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        # now() is switchyard's; Python gets the same function so the insert does the same work.
        db.create_function("now", 0, lambda: time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
        rng = random.Random(index)
        while time.monotonic() < deadline:
            k = rng.randint(1, rows)
            for statement in STATEMENTS:
                db.execute(statement.format(k="?"), (k,)).fetchall()
            counts[index] += 1
        db.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / duration


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--rows", type=int, default=10000)
    opts = parser.parse_args()

    with ExitStack() as cleanup:  # stops whatever was started, last first, however main() ends
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-sqlite-bench-")))
        script = workdir / "script.sql"
        script.write_text(SCRIPT.format(rows=opts.rows))
        cluster, = start_clusters(cleanup, 1)

        def start(primary, secondary=None):
            config = f"primary: {primary}\nlogging:\n  level: warn\n"
            if secondary:
                config += f"secondary: {secondary}\nmirror:\n  ddl: primary_only\n  journal: {workdir}/journal.jsonl\n"
            proxy = Proxy(config, workdir).start()
            cleanup.callback(proxy.stop)  # stopping twice is harmless
            return proxy

        print(f"{opts.duration} s per run, {opts.rows} rows, {os.cpu_count()} cores shared by everything; "
              "script: UPDATE + SELECT + INSERT per transaction, autocommit statements\n")
        print("| clients | Python sqlite3 tps | switchyard → SQLite tps | sy/python |")
        print("|---|---|---|---|")
        for clients in (1, 8):
            make_sqlite(workdir / "py.db", opts.rows)
            py = python_sqlite(workdir / "py.db", opts.rows, clients, opts.duration)
            make_sqlite(workdir / "sy.db", opts.rows)
            proxy = start(f"sqlite:{workdir}/sy.db")
            sy, failed = pgbench(proxy.port, script, clients, opts.duration)
            proxy.stop()
            print(f"| {clients} | {py:.0f} | {sy:.0f}{' (client errors)' if failed else ''} | {sy / py:.2f}× |",
                  flush=True)
            for name in ("py.db", "sy.db"):
                for suffix in ("", "-wal", "-shm"):
                    (workdir / (name + suffix)).unlink(missing_ok=True)

        print("\n| clients | SQLite primary alone tps | mirrored to SQLite tps | mirrored to PostgreSQL tps "
              "| to-SQLite/alone | to-PostgreSQL/alone |")
        print("|---|---|---|---|---|---|")
        for clients in (1, 8):
            results, tps_by = [], {}
            for secondary in (None, "sqlite", "postgres"):
                for name in ("primary.db", "secondary.db"):
                    for suffix in ("", "-wal", "-shm"):
                        (workdir / (name + suffix)).unlink(missing_ok=True)
                make_sqlite(workdir / "primary.db", opts.rows)
                target = None
                if secondary == "sqlite":
                    make_sqlite(workdir / "secondary.db", opts.rows)
                    target = f"sqlite:{workdir}/secondary.db"
                elif secondary == "postgres":
                    make_pg(cluster, opts.rows)
                    target = cluster.uri(sslmode="disable")
                proxy = start(f"sqlite:{workdir}/primary.db", target)
                tps, failed = pgbench(proxy.port, script, clients, opts.duration)
                proxy.stop()
                results.append(f"{tps:.0f}{' (client errors)' if failed else ''}")
                tps_by[secondary] = tps
            alone = tps_by[None]
            print(f"| {clients} | {' | '.join(results)} | {tps_by['sqlite'] / alone:.2f}× "
                  f"| {tps_by['postgres'] / alone:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
