#!/usr/bin/env python3
"""Mirroring benchmark: the same pgbench load direct to one database, through switchyard
(sync and async mirroring to a second database) and through pgpool-II in native replication
mode (its statement mirroring to the same two databases), side by side in one run. Prints
throughput, the ratios, and whether the two databases ended identical (row checksums per
table; for async, once switchyard reports every committed transaction applied or journaled
and the journal replayed).

Each cell is the median of --rounds runs, the order of the four targets rotated per round
so drift on a shared machine favours none; "CPU µs/txn" is switchyard sync's own CPU time
per transaction (steadier than tps where every process shares two cores).

pgbench always connects over loopback TCP. `--backends unix` has switchyard and pgpool-II
reach the two databases through their Unix-domain sockets instead (as a proxy on the
databases' machine would) and adds "direct (socket)": pgbench on the database's socket.

--rate caps every target at that many transactions per second (pgbench -R): below saturation
the tps columns agree and the CPU columns show what each transaction costs at that rate.

--baseline runs a second switchyard binary (e.g. a build of an earlier commit) in sync mode as
one more target in the same rounds, to measure a change side by side.

Usage: bench/mirror_bench.py [--duration S] [--clients N] [--scale N] [--rounds N]
                             [--workers N] [--workloads=LABEL,...] [--backends tcp|unix]
                             [--rate TPS] [--baseline PATH]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import PgCluster, free_port, make_tempdir, wait_for_port  # noqa: E402
from test_mirror import CUSTOM_SCRIPT, SCHEMA, TABLES  # noqa: E402

from bench_common import (cluster_cpu_seconds, cpu_seconds, pgbench, pgbench_init,  # noqa: E402
                          rotated, start_clusters, start_mirrored_proxy, trust_local)

WORKLOADS = [  # (label, pgbench arguments); the custom script has random()/uuid/clock defaults
    ("-N (simple-update)", ["-N"]),
    ("TPC-B (tpcb-like)", []),
    ("custom: volatile values", ["-f", "{custom}"]),
    ("triggers: a BEFORE trigger stamps each row", ["-f", "{stamped}"]),
    ("bulk: statements of 20-100 rows", ["-f", "{bulk}"]),
    ("functions: an INSERT calling a function that writes another table", ["-f", "{functions}"]),
    ("defaults: an INSERT leaving a column to a DEFAULT that advances a counter", ["-f", "{defaults}"]),
    # a client that connects for each transaction, as a PHP page or a serverless function does
    ("-C: -N on a new connection per transaction", ["-N", "-C"]),
]

# A function of the database's own that writes a table the INSERT calling it does not name
# (a log, a counter): its row images carry orders' rows only.
FUNCTIONS_SCHEMA = """
CREATE TABLE orders (id bigserial PRIMARY KEY, account int, amount int, placed timestamptz DEFAULT now());
CREATE TABLE order_log (account int, amount int);
CREATE OR REPLACE FUNCTION logged(a int, x int) RETURNS int LANGUAGE plpgsql AS $$BEGIN
  INSERT INTO order_log VALUES (a, x); RETURN x; END$$;
"""
FUNCTIONS_SCRIPT = r"""
\set acct random(1, 1000)
INSERT INTO orders (account, amount) VALUES (:acct, logged(:acct, :acct * 2));
"""

# A column DEFAULT calling such a function: a ticket number from a counter row every INSERT
# advances (all sessions wait on that row, as with any such counter).
DEFAULTS_SCHEMA = """
CREATE TABLE counters (name text PRIMARY KEY, n bigint); INSERT INTO counters VALUES ('ticket', 0);
CREATE OR REPLACE FUNCTION next_ticket() RETURNS bigint LANGUAGE sql AS
  $$UPDATE counters SET n = n + 1 WHERE name = 'ticket' RETURNING n$$;
CREATE TABLE tickets (id bigserial PRIMARY KEY, account int, no bigint DEFAULT next_ticket());
"""
DEFAULTS_SCRIPT = r"""
\set acct random(1, 1000)
INSERT INTO tickets (account) VALUES (:acct);
"""

# A table whose BEFORE trigger stamps every row it writes with clock_timestamp(), as an
# updated_at trigger does: the secondary must keep the primary's stamps.
STAMPED_SCHEMA = """
CREATE TABLE stamped (id int PRIMARY KEY, hits int NOT NULL DEFAULT 0, touched timestamptz);
INSERT INTO stamped (id) SELECT g FROM generate_series(1, 1000) g;
CREATE OR REPLACE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
  NEW.touched := clock_timestamp(); RETURN NEW; END$$;
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON stamped FOR EACH ROW EXECUTE FUNCTION stamp();
"""
STAMPED_SCRIPT = r"""
\set id random(1, 1000)
BEGIN;
UPDATE stamped SET hits = hits + 1 WHERE id = :id;
INSERT INTO stamped (id) VALUES (:id + 1000) ON CONFLICT (id) DO UPDATE SET hits = stamped.hits + 1;
END;
"""

# Statements that write many rows each: one statement per statement on the secondary.
BULK_SCRIPT = r"""
\set aid random(1, 99900)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :aid AND :aid + 99;
INSERT INTO ledger (account, total) SELECT aid, abalance FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 19;
DELETE FROM ledger WHERE account BETWEEN :aid AND :aid + 19;
END;
"""


class PgPool:
    """pgpool-II in native replication mode over the two clusters."""

    def __init__(self, first: PgCluster, second: PgCluster, clients: int, unix: bool):
        self.dir = make_tempdir("sy-pgpool-")
        self.port = free_port()
        (self.dir / "pcp.conf").write_text("")
        (self.dir / "pool_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        (self.dir / "pgpool.conf").write_text(f"""
backend_clustering_mode = 'native_replication'
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.dir}'
pcp_listen_addresses = ''
pcp_port = {free_port()}
pcp_socket_dir = '{self.dir}'
backend_hostname0 = '{first.root if unix else "127.0.0.1"}'
backend_port0 = {first.port}
backend_weight0 = 1
backend_flag0 = 'DISALLOW_TO_FAILOVER'
backend_hostname1 = '{second.root if unix else "127.0.0.1"}'
backend_port1 = {second.port}
backend_weight1 = 1
backend_flag1 = 'DISALLOW_TO_FAILOVER'
enable_pool_hba = off
num_init_children = {clients + 4}
max_pool = 1
load_balance_mode = off
replicate_select = off
health_check_period = 0
failover_on_backend_error = off
logdir = '{self.dir}'
pid_file_name = '{self.dir}/pgpool.pid'
""")
        for path in self.dir.iterdir():
            shutil.chown(path, "postgres", "postgres")
        shutil.chown(self.dir, "postgres", "postgres")
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", "pgpool", "-n", "-f", str(self.dir / "pgpool.conf"),
             "-F", str(self.dir / "pcp.conf"), "-a", str(self.dir / "pool_hba.conf")],
            stdout=open(self.dir / "pgpool.log", "w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process)

    def stop(self):
        self.process.terminate()
        self.process.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def reset(cluster: PgCluster, scale: int):
    """The same starting data on both sides: pgbench's tables and the custom scripts'."""
    cluster.sql("DROP TABLE IF EXISTS events, ledger, balances, notes, stamped, orders, order_log, tickets, "
                "counters")
    cluster.sql(SCHEMA)
    cluster.sql(STAMPED_SCHEMA)
    cluster.sql(FUNCTIONS_SCHEMA)
    cluster.sql(DEFAULTS_SCHEMA)
    pgbench_init(cluster, scale)


def settle(proxy, timeout=120):
    """Waits until async switchyard has applied or journaled every commit and replayed the journal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (proxy.metric("switchyard_mirror_async_queue") == 0
                and proxy.metric("switchyard_journal_backlog") == 0):
            return
        time.sleep(0.2)


def identical(first: PgCluster, second: PgCluster):
    differing = [t for t, order in {**TABLES, "stamped": "id", "orders": "id", "order_log": "t::text",
                                     "tickets": "id", "counters": "name"}.items()
                 if first.checksum(t, order) != second.checksum(t, order)]
    return "identical" if not differing else "differ: " + ", ".join(differing)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--workers", type=int, default=0, help="switchyard network threads (0: one per core)")
    parser.add_argument("--workloads", default="all", help="comma-separated label prefixes, e.g. --workloads=-N,TPC-B")
    parser.add_argument("--backends", choices=("tcp", "unix"), default="tcp",
                        help="how switchyard and pgpool-II reach the databases")
    parser.add_argument("--rate", type=int, help="transactions per second per target (pgbench -R)")
    parser.add_argument("--baseline", help="another switchyard binary to run in sync mode beside this build")
    opts = parser.parse_args()
    unix = opts.backends == "unix"

    with ExitStack() as cleanup:  # stops whatever was started, last first, however main() ends
        first, second = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-mbench-")))
        custom = workdir / "custom.sql"
        custom.write_text(CUSTOM_SCRIPT)
        stamped = workdir / "stamped.sql"
        stamped.write_text(STAMPED_SCRIPT)
        bulk = workdir / "bulk.sql"
        bulk.write_text(BULK_SCRIPT)
        functions = workdir / "functions.sql"
        functions.write_text(FUNCTIONS_SCRIPT)
        defaults = workdir / "defaults.sql"
        defaults.write_text(DEFAULTS_SCRIPT)
        for cluster in (first, second):
            trust_local(cluster)
        workers = f"workers: {opts.workers}\n"
        proxy = start_mirrored_proxy(cleanup, first, second, workdir, settings=workers, unix=unix)
        async_proxy = start_mirrored_proxy(cleanup, first, second, workdir, settings=workers + "write_mode: async\n",
                                           log_level="error", unix=unix)
        baseline = None
        if opts.baseline:
            baseline = start_mirrored_proxy(cleanup, first, second, workdir, settings=workers,
                                            binary=Path(opts.baseline).resolve(), unix=unix)
        pool = PgPool(first, second, opts.clients, unix)
        cleanup.callback(pool.stop)
        rate = f" -R {opts.rate}" if opts.rate else ""
        print(f"pgbench -T {opts.duration} -c {opts.clients}{rate}, scale {opts.scale}, median of {opts.rounds} rounds, "
              f"switchyard workers: {opts.workers or 'one per core'}, proxies reach the databases over "
              f"{'their Unix-domain sockets' if unix else 'loopback TCP'}, "
              f"both databases and every proxy on the same {os.cpu_count()} cores; data reset before each run\n")
        socket_columns = ("| direct (socket) tps | sync/direct (socket) " if unix else "")
        baseline_columns = ("| baseline sync tps | sync/baseline | baseline sync CPU µs/txn "
                            "| PostgreSQL CPU µs/txn: baseline primary / secondary "
                            "| baseline sync: databases after " if baseline else "")
        print("| workload | direct tps (one db) | switchyard sync tps | switchyard async tps | pgpool-II native tps "
              f"| sync/pgpool | sync/direct | async/direct {socket_columns}| switchyard sync CPU µs/txn "
              "| PostgreSQL CPU µs/txn: direct / sync primary / sync secondary "
              "| switchyard sync: databases after "
              f"| switchyard async: databases after (spilled to the journal) | pgpool-II: databases after "
              f"{baseline_columns}|")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if unix else "")
              + ("---|---|---|---|---|" if baseline else ""))
        targets = [("direct", first.port), ("switchyard", proxy.port), ("async", async_proxy.port),
                   ("pgpool", pool.port)] + ([("direct-socket", first.port)] if unix else []) \
            + ([("baseline", baseline.port)] if baseline else [])
        chosen = [w for w in WORKLOADS if opts.workloads == "all"
                  or any(w[0].startswith(prefix) for prefix in opts.workloads.split(","))]
        for label, args in chosen:
            args = [a.replace("{custom}", str(custom)).replace("{stamped}", str(stamped))
                    .replace("{bulk}", str(bulk)).replace("{functions}", str(functions))
                    .replace("{defaults}", str(defaults)) for a in args] + (["-R", str(opts.rate)] if opts.rate else [])
            runs = {name: [] for name, _ in targets}
            states = {name: set() for name, _ in targets}
            cpu = {"switchyard": [], "baseline": []}  # sync proxies' own CPU µs per transaction
            db_cpu = {"direct": [], "primary": [], "secondary": []}  # µs per transaction
            baseline_db_cpu = {"primary": [], "secondary": []}
            spilled = 0
            for round_no in range(opts.rounds):
                for name, port in rotated(targets, round_no):
                    for cluster in (first, second):
                        reset(cluster, opts.scale)
                    spilled_before = async_proxy.metric("switchyard_mirror_failures_total", reason="async_queue_full")
                    cpu_before = {p: cpu_seconds(p.process.pid) for p in (proxy, baseline) if p}
                    db_before = [cluster_cpu_seconds(c) for c in (first, second)]
                    host = str(first.root) if name == "direct-socket" else "127.0.0.1"
                    tps, _, failed = pgbench(port, args, opts.clients, opts.duration, host)
                    db_used = [cluster_cpu_seconds(c) - b for c, b in zip((first, second), db_before)]
                    per_txn = 1e6 / (tps * opts.duration) if tps else 0.0
                    if name == "direct":
                        db_cpu["direct"].append(db_used[0] * per_txn)
                    if name in ("switchyard", "baseline"):
                        sync = proxy if name == "switchyard" else baseline
                        cpu[name].append((cpu_seconds(sync.process.pid) - cpu_before[sync]) * per_txn)
                        cells = db_cpu if name == "switchyard" else baseline_db_cpu
                        cells["primary"].append(db_used[0] * per_txn)
                        cells["secondary"].append(db_used[1] * per_txn)
                    if name == "async":
                        settle(async_proxy)
                        spilled += async_proxy.metric("switchyard_mirror_failures_total",
                                                      reason="async_queue_full") - spilled_before
                    runs[name].append(tps)
                    if failed:
                        states[name].add("client errors")
                    if not name.startswith("direct"):
                        states[name].add(identical(first, second))
            dt, st, at, pt = (statistics.median(runs[k]) for k in ("direct", "switchyard", "async", "pgpool"))

            def state(name, note=""):
                return "; ".join(sorted(states[name])) + note

            socket_cells = ""
            if unix:
                ut = statistics.median(runs["direct-socket"])
                socket_cells = f"| {ut:.0f} | {st / ut:.2f}× "
            baseline_cells = ""
            if baseline:
                bt = statistics.median(runs["baseline"])
                baseline_cells = (f"| {bt:.0f} | {st / bt:.2f}× | {statistics.median(cpu['baseline']):.0f} "
                                  f"| {' / '.join(f'{statistics.median(v):.0f}' for v in baseline_db_cpu.values())} "
                                  f"| {state('baseline')} ")
            print(f"| {label} | {dt:.0f} | {st:.0f} | {at:.0f} | {pt:.0f} | {st / pt if pt else float('inf'):.2f}× "
                  f"| {st / dt:.2f}× | {at / dt:.2f}× {socket_cells}| {statistics.median(cpu['switchyard']):.0f} "
                  f"| {' / '.join(f'{statistics.median(v):.0f}' for v in db_cpu.values())} | {state('switchyard')} "
                  f"| {state('async', f' ({spilled:.0f})')} | {state('pgpool')} {baseline_cells}|", flush=True)


if __name__ == "__main__":
    main()
