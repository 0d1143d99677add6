#!/usr/bin/env python3
"""Mirroring benchmark: the same pgbench load direct to one database, through switchyard
(sync mirroring to a second database) and through pgpool-II in native replication mode (its
statement mirroring to the same two databases), side by side in one run. Prints throughput,
the ratios, and whether the two databases ended identical (row checksums per table).

Usage: bench/mirror_bench.py [--duration S] [--clients N] [--scale N]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import PASSWORD, PgCluster, Proxy, free_port, make_tempdir, wait_for_port  # noqa: E402
from test_mirror import CUSTOM_SCRIPT, SCHEMA, TABLES  # noqa: E402

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


def trust_local(cluster: PgCluster):
    """pgpool-II forwards the client's login: let both proxies in without passwords."""
    (cluster.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    cluster.sql("SELECT pg_reload_conf()")


def reset(cluster: PgCluster, scale: int):
    """The same starting data on both sides: pgbench's tables and the custom script's."""
    cluster.sql("DROP TABLE IF EXISTS events, ledger, balances, notes")
    cluster.sql(SCHEMA)
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", str(cluster.root), "-p", str(cluster.port),
                    "-U", "postgres", "postgres"], check=True, capture_output=True)
    cluster.sql("VACUUM ANALYZE")


def pgbench(port, args, clients, duration):
    out = subprocess.run(["pgbench", "-n", "-T", str(duration), "-c", str(clients), "-j", "2", *args,
                          f"host=127.0.0.1 port={port} user=postgres dbname=postgres"],
                         capture_output=True, text=True)
    tps = next((float(line.split("=")[1].split()[0]) for line in out.stdout.splitlines()
                if line.startswith("tps =")), 0.0)
    failed = out.returncode != 0 or "aborted" in out.stderr
    return tps, failed


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
    proxy = pool = None
    try:
        for cluster in (first, second):
            trust_local(cluster)
        proxy = Proxy(f"primary: {first.uri(sslmode='disable')}\nsecondary: {second.uri(sslmode='disable')}\n"
                      f"mirror:\n  journal: {workdir}/journal.jsonl\nlogging:\n  level: warn\n", workdir).start()
        pool = PgPool(first, second, opts.clients)
        print(f"pgbench -T {opts.duration} -c {opts.clients}, scale {opts.scale}, both databases and every "
              f"proxy on the same {os.cpu_count()} cores; data reset before each run\n")
        print("| workload | direct tps (one db) | switchyard sync tps | pgpool-II native tps | sy/pgpool | sy/direct "
              "| switchyard: databases after | pgpool-II: databases after |")
        print("|---|---|---|---|---|---|---|---|")
        for label, args in WORKLOADS:
            args = [a.replace("{custom}", str(custom)) for a in args]
            results = {}
            for name, port in (("direct", first.port), ("switchyard", proxy.port), ("pgpool", pool.port)):
                for cluster in (first, second):
                    reset(cluster, opts.scale)
                tps, failed = pgbench(port, args, opts.clients, opts.duration)
                state = "" if name == "direct" else identical(first, second)
                results[name] = (tps, ("client errors; " if failed else "") + state)
            (dt, _), (st, ss), (pt, ps) = results["direct"], results["switchyard"], results["pgpool"]
            print(f"| {label} | {dt:.0f} | {st:.0f} | {pt:.0f} | {st / pt if pt else float('inf'):.2f}× "
                  f"| {st / dt:.2f}× | {ss} | {ps} |", flush=True)
    finally:
        if pool:
            pool.stop()
        if proxy:
            proxy.stop()
        first.destroy()
        second.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
