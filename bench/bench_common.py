"""What the benchmark drivers share: starting clusters and mirroring proxies, running
pgbench, comparing tables and letting the proxies in."""
import os
import re
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from harness import SWITCHYARD_BIN, PgCluster, Proxy

PGBENCH_TABLES = {"pgbench_accounts": "aid", "pgbench_branches": "bid", "pgbench_tellers": "tid",
                  "pgbench_history": "t::text"}


def start_clusters(cleanup: ExitStack, count, **options):
    """Starts `count` PostgreSQL clusters, each destroyed when `cleanup` closes, also when a
    later one fails to start."""
    clusters = []
    for _ in range(count):
        cluster = PgCluster(**options).start()
        cleanup.callback(cluster.destroy)
        clusters.append(cluster)
    return clusters


def start_schema_pair(cleanup: ExitStack, schema):
    """Starts a primary and a secondary cluster that let local clients in (trust_local), each
    given `schema`."""
    clusters = start_clusters(cleanup, 2)
    for cluster in clusters:
        trust_local(cluster)
        cluster.sql(schema)
    return clusters


def start_mirrored_proxy(cleanup: ExitStack, primary: PgCluster, secondary: PgCluster, workdir: Path,
                         settings="", mirror="", binary=None, log_level="warn", unix=False):
    """Starts switchyard (this build, or `binary`) mirroring `primary` to `secondary`, over
    loopback TCP without TLS or (`unix`) their sockets, in a directory of its own under
    `workdir` that holds its journal. `settings`: more top-level config lines; `mirror`: more
    lines of its mirror section (indented). Stopped when `cleanup` closes."""
    directory = Path(tempfile.mkdtemp(prefix="proxy-", dir=workdir))

    def uri(cluster):
        return cluster.socket_uri() if unix else cluster.uri(sslmode="disable")

    proxy = Proxy(f"primary: {uri(primary)}\nsecondary: {uri(secondary)}\n{settings}"
                  f"mirror:\n  journal: {directory}/journal.jsonl\n{mirror}logging:\n  level: {log_level}\n",
                  directory, binary=binary).start()
    cleanup.callback(proxy.stop)
    return proxy


def builds(baseline):
    """The switchyard binaries a driver runs by name: this build and, given, the baseline."""
    binaries = {"switchyard": SWITCHYARD_BIN}
    if baseline:
        binaries["baseline"] = Path(baseline).resolve()
    return binaries


def start_direct_and_builds(cleanup: ExitStack, primary: PgCluster, secondary: PgCluster, workdir: Path,
                            baseline):
    """The ports of the targets a driver compares, by name (direct: the primary itself; then a
    mirroring proxy of each build, see builds), and each proxy's pid."""
    ports, pids = {"direct": primary.port}, {}
    for name, binary in builds(baseline).items():
        proxy = start_mirrored_proxy(cleanup, primary, secondary, workdir, binary=binary)
        ports[name], pids[name] = proxy.port, proxy.process.pid
    return ports, pids


def rotated(items, round_no):
    """`items` in the order of round `round_no`: each round starts one further along, so no
    target always runs first (on a cold cache) or last."""
    start = round_no % len(items)
    return items[start:] + items[:start]


def tables_that_differ(first: PgCluster, second: PgCluster, tables=PGBENCH_TABLES):
    """The tables (name: ORDER BY of its checksum) whose rows differ between the clusters."""
    return [table for table, order in tables.items() if first.checksum(table, order) != second.checksum(table, order)]


def pgbench_init(cluster: PgCluster, scale):
    """Loads pgbench's tables at `scale` through the cluster's socket, then VACUUM ANALYZE."""
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", str(cluster.root), "-p", str(cluster.port),
                    "-U", "postgres", "postgres"], check=True, capture_output=True)
    cluster.sql("VACUUM ANALYZE")


def pgbench(port, args, clients, duration, host="127.0.0.1"):
    """Runs pgbench against host:port (a directory as host: that Unix-domain socket); returns
    (tps, average latency in ms, failed)."""
    out = subprocess.run(["pgbench", "-n", "-T", str(duration), "-c", str(clients), "-j", "2", *args,
                          f"host={host} port={port} user=postgres dbname=postgres"],
                         capture_output=True, text=True)

    def figure(prefix):
        return next((float(line.split("=")[1].split()[0]) for line in out.stdout.splitlines()
                     if line.startswith(prefix)), 0.0)

    failed = out.returncode != 0 or "aborted" in out.stderr
    return figure("tps ="), figure("latency average"), failed


def run_script(proxy: Proxy, script: Path, seconds, clients, mode="extended"):
    """Runs pgbench's custom `script` through `proxy` for `seconds` with `clients`, protocol
    `mode`; returns (tps, transactions, the proxy's CPU µs per transaction)."""
    before = cpu_seconds(proxy.process.pid)
    out = subprocess.run(["pgbench", "-n", "-M", mode, "-T", str(seconds), "-c", str(clients), "-j", "2",
                          "-f", str(script), f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres"],
                         capture_output=True, text=True, check=True).stdout
    done = int(re.search(r"actually processed: (\d+)", out).group(1))
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    return tps, done, (cpu_seconds(proxy.process.pid) - before) / done * 1e6


def psql_seconds(port, command):
    """Seconds psql takes to run `command` (a meta-command too) through the server at `port`."""
    start = time.perf_counter()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                    "-U", "postgres", "-c", command], check=True, capture_output=True)
    return time.perf_counter() - start


def wait_drained(proxy: Proxy, timeout=600):
    """Seconds until `proxy`'s journal backlog and async queue are both 0 (polled every
    50 ms), or None past `timeout`."""
    start = time.perf_counter()
    while proxy.metric("switchyard_journal_backlog") != 0 or proxy.metric("switchyard_mirror_async_queue"):
        if time.perf_counter() - start > timeout:
            return None
        time.sleep(0.05)
    return time.perf_counter() - start


def memory_kib(pid, field):
    """VmRSS (now) or VmHWM (the peak) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu_seconds(cluster: PgCluster):
    """User + system CPU time of a cluster's postmaster and every process it started, those
    still running and those it has reaped (their time is in the postmaster's cutime/cstime).
    Read again while the postmaster reaps a child mid-scan (as when pgbench has just
    disconnected), which would otherwise count that child in neither place."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])

    def own_and_reaped():
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime

    while True:
        before = own_and_reaped()
        children = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile: then the postmaster's total moved, and we read again
            if int(fields[1]) == postmaster:
                children += int(fields[11]) + int(fields[12])
        after = own_and_reaped()
        if after == before:
            return (after + children) / os.sysconf("SC_CLK_TCK")


def trust_local(cluster: PgCluster):
    """Lets every local client in without a password (pgpool-II forwards the client's login)."""
    (cluster.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    cluster.sql("SELECT pg_reload_conf()")
