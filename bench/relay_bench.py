#!/usr/bin/env python3
"""Relay benchmark: pgbench through direct PostgreSQL, pgbouncer (session mode) and switchyard,
side by side in one run, printing throughput and p50 latency ratios (and how far the
switchyard/pgbouncer ratio spread over the rounds, with a count of the rows that stayed above
1.0×, below it, or crossed it); then the RSS cost of 1,000 idle client connections for both
proxies.

Usage: bench/relay_bench.py [--duration S] [--rounds N] [--clients 1,8,32] [--idle 1000]
                           [--baseline PATH [--baseline-workers N] [--baseline-keeps-backends]]
                           [--backends tcp|unix] [--fresh-backends]
pgbench always connects over loopback TCP; --backends unix has both proxies reach PostgreSQL
through its Unix-domain socket instead.
--baseline runs a second switchyard binary (e.g. a build of an earlier commit) as a fourth
target in the same rounds, to measure a change side by side; with --baseline-workers (this
build as the baseline works too) it runs with that many network threads instead. The
baseline gets no limits.pooled_backends (an earlier build may not know it), so this build as
the baseline keeps its default of 20 primary connections; --baseline-keeps-backends gives it
the same limits.pooled_backends as this build.
pgbouncer runs in session mode with a pool of up to 2,000 server connections, which it keeps
for the next client after one logs off; switchyard keeps as many (limits.pooled_backends),
so both hand each new pgbench client a warm backend. --fresh-backends has neither keep any:
every client then gets a new backend through both.
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import PASSWORD, PgCluster, Proxy, free_port, make_tempdir, wait_for_port  # noqa: E402
from wire import RawClient  # noqa: E402

from bench_common import cpu_seconds, rotated, start_clusters  # noqa: E402

ALL_WORKLOADS = [  # (label, pgbench arguments)
    ("-S simple", ["-S", "-M", "simple"]),
    ("-S extended", ["-S", "-M", "extended"]),
    ("-S prepared", ["-S", "-M", "prepared"]),
    ("-N simple", ["-N", "-M", "simple"]),
]


class PgBouncer:
    """pgbouncer in session mode in front of the cluster, run as postgres (it refuses root)."""

    def __init__(self, pg: PgCluster, unix: bool, fresh_backends: bool):
        self.dir = make_tempdir("sy-pgb-")
        self.port = free_port()
        (self.dir / "users.txt").write_text(f'"postgres" "{PASSWORD}"\n')
        (self.dir / "pgbouncer.ini").write_text(f"""[databases]
postgres = host={pg.root if unix else "127.0.0.1"} port={pg.port} dbname=postgres user=postgres password={PASSWORD}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/users.txt
pool_mode = session
{"server_lifetime = 0" if fresh_backends else ""}
max_client_conn = 5000
default_pool_size = 2000
max_db_connections = 0
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        for path in self.dir.iterdir():
            shutil.chown(path, "postgres", "postgres")
        # runuser resets the soft fd limit to 1024; raise it so 1,000 idle clients fit.
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", "sh", "-c",
             f'ulimit -n $(ulimit -Hn); exec pgbouncer {self.dir / "pgbouncer.ini"}'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def pid(self):
        return int((self.dir / "pgbouncer.pid").read_text())

    def stop(self):
        subprocess.run(["kill", str(self.pid())], check=False)
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbench(port, args, clients, duration, log_dir, pid=None):
    """Runs pgbench; returns (tps, p50 latency in µs from the per-transaction log, CPU µs the
    process `pid` used per transaction)."""
    cpu_before = cpu_seconds(pid) if pid else 0.0
    for old in log_dir.glob("pgbench_log*"):
        old.unlink()
    threads = min(clients, 2)
    cmd = ["pgbench", "-n", "-T", str(duration), "-c", str(clients), "-j", str(threads), "-l",
           "--log-prefix", str(log_dir / "pgbench_log"), *args,
           f"host=127.0.0.1 port={port} user=postgres dbname=postgres password={PASSWORD}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    tps = next(float(line.split("=")[1].split()[0]) for line in out.stdout.splitlines()
               if line.startswith("tps ="))
    cpu_per_txn = (cpu_seconds(pid) - cpu_before) * 1e6 / (tps * duration) if pid else 0.0
    latencies = []
    for path in log_dir.glob("pgbench_log*"):
        with open(path) as f:
            latencies += [int(line.split()[2]) for line in f]
    return tps, statistics.median(latencies), cpu_per_txn


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def idle_cost(port, pid, count):
    """RSS growth (MiB) of the proxy process while `count` idle clients are logged in."""
    before = rss_kib(pid)
    clients = []
    for _ in range(count):
        client = RawClient(port)
        client.login_trust()
        clients.append(client)
    time.sleep(1)
    after = rss_kib(pid)
    for client in clients:
        client.close()
    return (after - before) / 1024, after / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0, help="switchyard network threads (0: one per core)")
    parser.add_argument("--workloads", default="all", help="comma-separated labels, e.g. '-S prepared'")
    parser.add_argument("--baseline", help="another switchyard binary to run beside this build")
    parser.add_argument("--baseline-workers", type=int, help="the baseline's network threads (default: --workers)")
    parser.add_argument("--baseline-keeps-backends", action="store_true",
                        help="give the baseline the same limits.pooled_backends as this build")
    parser.add_argument("--backends", choices=("tcp", "unix"), default="tcp",
                        help="how pgbouncer and switchyard reach PostgreSQL")
    parser.add_argument("--fresh-backends", action="store_true",
                        help="neither proxy keeps a backend for the next client (pgbouncer "
                             "server_lifetime = 0, switchyard limits.pooled_backends: 0)")
    opts = parser.parse_args()
    unix = opts.backends == "unix"
    clients_list = [int(c) for c in opts.clients.split(",")]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # proxies inherit it

    with ExitStack() as cleanup:  # stops whatever was started, last first, however main() ends
        # Idle clients of both proxies, plus the backends pgbouncer, switchyard and the
        # baseline each keep from the largest run, beside direct's own.
        max_connections = opts.idle * 2 + 100 + 4 * max(clients_list)
        pg, = start_clusters(cleanup, 1, max_connections=max_connections)
        pg.sql("ALTER SYSTEM SET max_connections = %d" % max_connections)
        subprocess.run(["pgbench", "-i", "-s", "10", "-q", f"host=127.0.0.1 port={pg.port} user=postgres "
                        f"dbname=postgres password={PASSWORD}"], check=True, capture_output=True)
        pgb = PgBouncer(pg, unix, opts.fresh_backends)
        cleanup.callback(pgb.stop)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-bench-")))
        primary = pg.socket_uri() if unix else pg.uri(sslmode="disable")

        def proxy_config(workers, pooled=""):
            return (f"primary: {primary}\nworkers: {workers}\n"
                    f"limits:\n  max_clients: {opts.idle + 100}\n{pooled}logging:\n  level: warn\n")

        # As many kept primary connections as pgbouncer's pool may hold, or none.
        pooled = f"  pooled_backends: {0 if opts.fresh_backends else 2000}\n"
        proxy = Proxy(proxy_config(opts.workers, pooled), workdir).start()
        cleanup.callback(proxy.stop)
        targets = [("direct", pg.port, None), ("pgbouncer", pgb.port, pgb.pid()),
                   ("switchyard", proxy.port, proxy.process.pid)]
        baseline_head = baseline_rule = ""
        if opts.baseline:
            workers = opts.workers if opts.baseline_workers is None else opts.baseline_workers
            baseline_pooled = pooled if opts.baseline_keeps_backends else ""
            baseline = Proxy(proxy_config(workers, baseline_pooled), workdir,
                             binary=Path(opts.baseline).resolve()).start()
            cleanup.callback(baseline.stop)
            targets.append(("baseline", baseline.port, baseline.process.pid))
            baseline_head = " baseline tps | sy/baseline | baseline/pgbouncer | baseline CPU µs/txn |"
            baseline_rule = "---|---|---|---|"
        log_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-bench-logs-")))
        print(f"pgbench -T {opts.duration} × {opts.rounds} rounds per cell (medians), scale 10, "
              f"{os.cpu_count()} cores shared by PostgreSQL, pgbench and the proxies; the proxies reach "
              f"PostgreSQL over {'its Unix-domain socket' if unix else 'loopback TCP'}\n")
        print("| workload | clients | direct tps | pgbouncer tps | switchyard tps | sy/pgbouncer "
              "| sy/pgbouncer per round, lowest–highest | sy/direct "
              "| p50 direct µs | p50 pgbouncer µs | p50 switchyard µs | sy−direct p50 µs "
              "| pgbouncer CPU µs/txn | switchyard CPU µs/txn |" + baseline_head)
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + baseline_rule)
        verdicts = {"above": 0, "below": 0, "either side": 0}  # of 1.0×, in every round
        workloads = [w for w in ALL_WORKLOADS if opts.workloads == "all" or w[0] in opts.workloads.split(",")]
        for label, args in workloads:
            for clients in clients_list:
                # Several rounds, each starting with a different target, so warm-up and drift
                # do not favour whoever runs first; the median of each is reported.
                runs = {name: [] for name, _, _ in targets}
                for round_no in range(opts.rounds):
                    for name, port, pid in rotated(targets, round_no):
                        runs[name].append(pgbench(port, args, clients, opts.duration, log_dir, pid))
                results = {name: tuple(statistics.median(r[i] for r in rs) for i in range(3))
                           for name, rs in runs.items()}
                (dt, dl, _), (bt, bl, bc), (st, sl, sc) = (results["direct"], results["pgbouncer"],
                                                          results["switchyard"])
                # The two proxies ran minutes apart at most within a round: the spread of their
                # ratio over the rounds says whether a median above or below 1.0× is more than noise.
                per_round = [sy[0] / pgb[0] for sy, pgb in zip(runs["switchyard"], runs["pgbouncer"])]
                low, high = min(per_round), max(per_round)
                verdicts["above" if low >= 1.0 else "below" if high < 1.0 else "either side"] += 1
                row = (f"| {label} | {clients} | {dt:.0f} | {bt:.0f} | {st:.0f} | {st / bt:.2f}× "
                       f"| {low:.2f}–{high:.2f}× | {st / dt:.2f}× "
                       f"| {dl:.0f} | {bl:.0f} | {sl:.0f} | {sl - dl:+.0f} | {bc:.1f} | {sc:.1f} |")
                if opts.baseline:
                    at, _, ac = results["baseline"]
                    row += f" {at:.0f} | {st / at:.2f}× | {at / bt:.2f}× | {ac:.1f} |"
                print(row, flush=True)
        print(f"\nswitchyard against pgbouncer, rows whose every round was at or above 1.0×: "
              f"{verdicts['above']}, below: {verdicts['below']}, on either side: {verdicts['either side']}")
        if opts.idle:
            print(f"\n{opts.idle} idle logged-in clients: RSS growth (total)")
            for name, port, pid in (("pgbouncer", pgb.port, pgb.pid()), ("switchyard", proxy.port, proxy.process.pid)):
                growth, total = idle_cost(port, pid, opts.idle)
                print(f"- {name}: {growth:.1f} MiB ({total:.1f} MiB total)", flush=True)


if __name__ == "__main__":
    main()
