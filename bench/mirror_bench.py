#!/usr/bin/env python3
"""Mirroring benchmark: the same pgbench load direct to one database, through switchyard
(sync and async mirroring to a second database) and through pgpool-II in native replication
mode (its statement mirroring to the same two databases), side by side in one run. Prints
throughput, the ratios, and whether the two databases ended identical (row checksums per
table; for async, once switchyard reports every committed transaction applied or journaled
and the journal replayed).

Usage: bench/mirror_bench.py [--duration S] [--clients N] [--scale N]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import PgCluster, Proxy, free_port, make_tempdir, wait_for_port  # noqa: E402
from test_mirror import CUSTOM_SCRIPT, SCHEMA, TABLES  # noqa: E402

from bench_common import pgbench, trust_local  # noqa: E402

WORKLOADS = [  # (label, pgbench arguments); the custom script has random()/uuid/clock defaults
    ("-N (simple-update)", ["-N"]),
    ("TPC-B (tpcb-like)", []),
    ("custom: volatile values", ["-f", "{custom}"]),
]


class PgPool:
    """pgpool-II in native replication mode over the two clusters."""

    def __init__(self, first: PgCluster, second: PgCluster, clients: int):
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
backend_hostname0 = '127.0.0.1'
backend_port0 = {first.port}
backend_weight0 = 1
backend_flag0 = 'DISALLOW_TO_FAILOVER'
backend_hostname1 = '127.0.0.1'
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
    """The same starting data on both sides: pgbench's tables and the custom script's."""
    cluster.sql("DROP TABLE IF EXISTS events, ledger, balances, notes")
    cluster.sql(SCHEMA)
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", str(cluster.root), "-p", str(cluster.port),
                    "-U", "postgres", "postgres"], check=True, capture_output=True)
    cluster.sql("VACUUM ANALYZE")


def settle(proxy, timeout=120):
    """Waits until async switchyard has applied or journaled every commit and replayed the journal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (proxy.metric("switchyard_mirror_async_queue") == 0
                and proxy.metric("switchyard_journal_backlog") == 0):
            return
        time.sleep(0.2)


def identical(first: PgCluster, second: PgCluster):
    differing = [t for t, order in TABLES.items() if first.checksum(t, order) != second.checksum(t, order)]
    return "identical" if not differing else "differ: " + ", ".join(differing)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--scale", type=int, default=10)
    opts = parser.parse_args()

    first, second = PgCluster().start(), PgCluster().start()
    workdir = Path(tempfile.mkdtemp(prefix="sy-mbench-"))
    custom = workdir / "custom.sql"
    custom.write_text(CUSTOM_SCRIPT)
    proxy = async_proxy = pool = None
    try:
        for cluster in (first, second):
            trust_local(cluster)
        proxy = Proxy(f"primary: {first.uri(sslmode='disable')}\nsecondary: {second.uri(sslmode='disable')}\n"
                      f"mirror:\n  journal: {workdir}/journal.jsonl\nlogging:\n  level: warn\n", workdir).start()
        async_dir = workdir / "async"
        async_dir.mkdir()
        async_proxy = Proxy(f"primary: {first.uri(sslmode='disable')}\nsecondary: {second.uri(sslmode='disable')}\n"
                            f"write_mode: async\nmirror:\n  journal: {async_dir}/journal.jsonl\n"
                            f"logging:\n  level: error\n", async_dir).start()
        pool = PgPool(first, second, opts.clients)
        print(f"pgbench -T {opts.duration} -c {opts.clients}, scale {opts.scale}, both databases and every "
              f"proxy on the same {os.cpu_count()} cores; data reset before each run\n")
        print("| workload | direct tps (one db) | switchyard sync tps | switchyard async tps | pgpool-II native tps "
              "| sync/pgpool | sync/direct | async/direct | switchyard sync: databases after "
              "| switchyard async: databases after (spilled to the journal) | pgpool-II: databases after |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for label, args in WORKLOADS:
            args = [a.replace("{custom}", str(custom)) for a in args]
            results = {}
            for name, port in (("direct", first.port), ("switchyard", proxy.port),
                               ("async", async_proxy.port), ("pgpool", pool.port)):
                for cluster in (first, second):
                    reset(cluster, opts.scale)
                spilled_before = async_proxy.metric("switchyard_mirror_failures_total", reason="async_queue_full")
                tps, _, failed = pgbench(port, args, opts.clients, opts.duration)
                note = ""
                if name == "async":
                    settle(async_proxy)
                    spilled = async_proxy.metric("switchyard_mirror_failures_total", reason="async_queue_full")
                    note = f" ({spilled - spilled_before:.0f})"
                state = "" if name == "direct" else identical(first, second) + note
                results[name] = (tps, ("client errors; " if failed else "") + state)
            (dt, _), (st, ss), (at, as_), (pt, ps) = (results[k] for k in ("direct", "switchyard", "async", "pgpool"))
            print(f"| {label} | {dt:.0f} | {st:.0f} | {at:.0f} | {pt:.0f} | {st / pt if pt else float('inf'):.2f}× "
                  f"| {st / dt:.2f}× | {at / dt:.2f}× | {ss} | {as_} | {ps} |", flush=True)
    finally:
        if pool:
            pool.stop()
        for started in (proxy, async_proxy):
            if started:
                started.stop()
        first.destroy()
        second.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
