"""What the benchmark drivers share: starting clusters, running pgbench and letting the
proxies in."""
import os
import subprocess
from contextlib import ExitStack
from pathlib import Path

from harness import PgCluster


def start_clusters(cleanup: ExitStack, count, **options):
    """Starts `count` PostgreSQL clusters, each destroyed when `cleanup` closes, also when a
    later one fails to start."""
    clusters = []
    for _ in range(count):
        cluster = PgCluster(**options).start()
        cleanup.callback(cluster.destroy)
        clusters.append(cluster)
    return clusters


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
