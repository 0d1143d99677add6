#!/usr/bin/env python3
"""Read-routing benchmark: pgbench -S direct to the primary and through switchyard with 0 %
and 50 % of reads routed to the secondary, side by side in one run, in simple, extended and
prepared mode; then the cost of classifying a statement, with a warm and with a cold
statement cache, as the latency switchyard adds to one client's SELECT; then reads calling a
STABLE function of the database's own (routed once the primary's catalog vouches for it).

Usage: bench/read_bench.py [--duration S] [--clients N] [--scale N] [--rate TPS]
                           [--baseline path/to/another/switchyard] [--functions-only]
At 50 %, the secondary's client connections (sampled mid-run), its CPU per read it answered
and the primary's CPU per read (all reads: those it answered and those it did not) are shown.
`--baseline` runs another build at 50 % beside this one in the same rounds, with the same.
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import sys
import tempfile
import threading
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import (cluster_cpu_seconds, pgbench, pgbench_init, start_clusters,  # noqa: E402
                          start_mirrored_proxy, trust_local)

# The same SELECT as pgbench -S, with a column alias that pgbench substitutes into the text:
# every statement has a different shape, so the classification cache never hits.
COLD_SCRIPT = """\\set aid random(1, 100000 * :scale)
\\set tag random(1, 1000000000)
SELECT abalance AS a:tag FROM pgbench_accounts WHERE aid = :aid;
"""
WARM_SCRIPT = """\\set aid random(1, 100000 * :scale)
SELECT abalance AS a1 FROM pgbench_accounts WHERE aid = :aid;
"""
# pgbench -S's SELECT behind a function of the database's own, declared STABLE.
BALANCE_FUNCTION = ("CREATE FUNCTION account_balance(id int) RETURNS int STABLE LANGUAGE sql "
                    "AS $$ SELECT abalance FROM pgbench_accounts WHERE aid = id $$")
FUNCTION_SCRIPT = """\\set aid random(1, 100000 * :scale)
SELECT account_balance(:aid);
"""


def read_counts(proxy):
    """Reads answered so far by each database, from switchyard's metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/metrics", timeout=5).read().decode()
    counts = {"primary": 0.0, "secondary": 0.0}
    for line in text.splitlines():
        if line.startswith("switchyard_reads_total{"):
            key, _, value = line.rpartition(" ")
            for side in counts:
                if f'target="{side}"' in key:
                    counts[side] += float(value)
    return counts


def secondary_share(before, after):
    """The share (%) of the reads between two read_counts that the secondary answered."""
    delta = {side: after[side] - before[side] for side in after}
    total = sum(delta.values())
    return 100 * delta["secondary"] / total if total else 0.0


def routed_run(proxy, primary, secondary, args, clients, duration):
    """pgbench through a routing proxy: (tps, failed, share of reads the secondary answered in
    %, the secondary's client connections halfway through, its CPU µs per read it answered,
    the primary's CPU µs per transaction)."""
    sampled = []
    sampler = threading.Timer(duration / 2, lambda: sampled.append(secondary.client_sessions()))
    before = read_counts(proxy)
    cpu_before = cluster_cpu_seconds(secondary), cluster_cpu_seconds(primary)
    sampler.start()
    tps, _, failed = pgbench(proxy.port, args, clients, duration)
    sampler.join()
    after = read_counts(proxy)
    cpu = cluster_cpu_seconds(secondary) - cpu_before[0], cluster_cpu_seconds(primary) - cpu_before[1]
    routed = after["secondary"] - before["secondary"]
    total = sum(after.values()) - sum(before.values())
    return (tps, failed, secondary_share(before, after), sampled[0], 1e6 * cpu[0] / routed if routed else 0.0,
            1e6 * cpu[1] / total if total else 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--rate", type=int, help="transactions per second per target (pgbench -R)")
    parser.add_argument("--baseline", help="another switchyard binary to run at 50 %% beside this build")
    parser.add_argument("--functions-only", action="store_true", help="only the STABLE-function table")
    opts = parser.parse_args()

    with ExitStack() as cleanup:  # stops whatever was started, last first, however main() ends
        first, second = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-rbench-")))
        for cluster in (first, second):
            trust_local(cluster)
            pgbench_init(cluster, opts.scale)
            cluster.sql(BALANCE_FUNCTION)
        proxies = [start_mirrored_proxy(cleanup, first, second, workdir, settings=f"read_percent: {percent}\n",
                                        binary=binary)
                   for percent, binary in ((0, None), (50, None)) + (((50, opts.baseline),) if opts.baseline else ())]
        at0, at50 = proxies[:2]
        baseline = proxies[2] if opts.baseline else None
        rate = ["-R", str(opts.rate)] if opts.rate else []
        print(f"pgbench -S -T {opts.duration} -c {opts.clients}{' -R ' + str(opts.rate) if opts.rate else ''}, "
              f"scale {opts.scale}; both databases and switchyard on the same {os.cpu_count()} cores\n")
        baseline_columns = ("| baseline 50 % tps | 50 %/baseline | baseline: secondary connections "
                            "| baseline: secondary CPU µs/read | baseline: primary CPU µs/read "
                            if baseline else "")
        if opts.functions_only:
            function_reads(opts, workdir, first, second, at50, baseline)
            return
        print("| mode | direct tps | switchyard 0 % tps | switchyard 50 % tps | 0 %/direct | 50 %/direct "
              "| reads the secondary answered at 50 % | secondary connections mid-run "
              f"| secondary CPU µs per read it answered | primary CPU µs per read at 50 % {baseline_columns}|")
        print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|---|" if baseline else ""))
        for mode in ("simple", "extended", "prepared"):
            args = ["-S", "-M", mode, *rate]
            direct, _, direct_failed = pgbench(first.port, args, opts.clients, opts.duration)
            zero, _, zero_failed = pgbench(at0.port, args, opts.clients, opts.duration)
            half, half_failed, share, connections, per_read, primary_per_read = routed_run(
                at50, first, second, args, opts.clients, opts.duration)
            baseline_cells = ""
            if baseline:
                base, base_failed, _, base_connections, base_per_read, base_primary = routed_run(
                    baseline, first, second, args, opts.clients, opts.duration)
                half_failed = half_failed or base_failed
                baseline_cells = (f"| {base:.0f} | {half / base:.2f}× | {base_connections} "
                                  f"| {base_per_read:.0f} | {base_primary:.0f} ")
            failed = " (client errors)" if direct_failed or zero_failed or half_failed else ""
            print(f"| {mode} | {direct:.0f} | {zero:.0f} | {half:.0f} | {zero / direct:.2f}× "
                  f"| {half / direct:.2f}× | {share:.0f} %{failed} | {connections} | {per_read:.0f} "
                  f"| {primary_per_read:.0f} "
                  f"{baseline_cells}|", flush=True)

        print("\nClassification cost: one client, simple protocol, latency per SELECT\n")
        print("| statement cache | direct µs | switchyard 0 % µs | added by switchyard µs |")
        print("|---|---|---|---|")
        for label, script in (("warm (one shape)", WARM_SCRIPT), ("cold (every statement new)", COLD_SCRIPT)):
            path = workdir / "script.sql"
            path.write_text(script)
            args = ["-f", str(path), "-D", f"scale={opts.scale}"]
            _, direct, _ = pgbench(first.port, args, 1, opts.duration)
            _, proxied, _ = pgbench(at0.port, args, 1, opts.duration)
            print(f"| {label} | {direct * 1000:.0f} | {proxied * 1000:.0f} | {(proxied - direct) * 1000:.0f} |",
                  flush=True)
        function_reads(opts, workdir, first, second, at50, baseline)


def function_reads(opts, workdir, primary, secondary, at50, baseline):
    """pgbench of FUNCTION_SCRIPT direct and through switchyard at 50 % (and the baseline)."""
    print(f"\nReads calling a STABLE function of the database's own: `SELECT account_balance(:aid)`, "
          f"-c {opts.clients}, 50 %\n")
    print("| mode | direct tps | switchyard tps | /direct | reads the secondary answered "
          + ("| baseline tps | /baseline | baseline: reads the secondary answered " if baseline else "") + "|")
    print("|---|---|---|---|---|" + ("---|---|---|" if baseline else ""))
    path = workdir / "function.sql"
    path.write_text(FUNCTION_SCRIPT)
    for mode in ("simple", "extended", "prepared"):
        args = ["-M", mode, "-f", str(path), "-D", f"scale={opts.scale}"]
        direct, _, direct_failed = pgbench(primary.port, args, opts.clients, opts.duration)
        tps, failed, share, *_ = routed_run(at50, primary, secondary, args, opts.clients, opts.duration)
        cells = ""
        if baseline:
            base, base_failed, base_share, *_ = routed_run(baseline, primary, secondary, args, opts.clients,
                                                         opts.duration)
            failed = failed or base_failed
            cells = f"| {base:.0f} | {tps / base:.2f}× | {base_share:.0f} % "
        errors = " (client errors)" if failed or direct_failed else ""
        print(f"| {mode} | {direct:.0f} | {tps:.0f} | {tps / direct:.2f}× | {share:.0f} %{errors} {cells}|", flush=True)


if __name__ == "__main__":
    main()
