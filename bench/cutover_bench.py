#!/usr/bin/env python3
"""Control-plane benchmark: how fast a cutover change reaches a second proxy through Redis,
and how fast the gates pull reads back when the secondary starts failing under pgbench load,
in one run on two PostgreSQL clusters, one Redis and two switchyard processes.

Usage: bench/cutover_bench.py [--ramps N] [--clients N] [--interval S]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import PgCluster, Proxy, RedisServer  # noqa: E402

from bench_common import pgbench  # noqa: E402

TOKEN = "bench"


def api(proxy, method, path, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{proxy.admin_port}{path}",
                                     data=json.dumps(body).encode() if body else None, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def state(proxy):
    return api(proxy, "GET", "/api/v1/status")["state"]


def wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return False


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def propagation(first, second, ramps):
    """Seconds from a ramp answered by `first` until `second` reports it, per ramp."""
    delays = []
    for i in range(ramps):
        percent = 10 + (i % 2) * 10
        api(first, "POST", "/api/v1/cutover/ramp", {"percent": percent})
        began = time.monotonic()
        if not wait_until(lambda: state(second)["read_percent"] == percent, timeout=10):
            raise RuntimeError("the second proxy never saw a ramp")
        delays.append(time.monotonic() - began)
    return delays


def revert_reaction(first, second, secondary, clients, interval):
    """Breaks every secondary read under pgbench -S at 50 % and times the revert on both."""
    api(first, "POST", "/api/v1/cutover/ramp", {"percent": 50})
    wait_until(lambda: state(second)["read_percent"] == 50)
    outcome = {}

    def load():
        outcome["tps"], _, outcome["failed"] = pgbench(first.port, ["-S"], clients, 8 + 4 * interval)

    runner = threading.Thread(target=load)
    runner.start()
    time.sleep(3)
    evaluations = api(first, "GET", "/api/v1/status")["gate_evaluations"]
    broken_at = time.monotonic()
    secondary.sql("ALTER TABLE pgbench_accounts RENAME TO pgbench_accounts_hidden")
    wait_until(lambda: state(first)["phase"] == "reverted", timeout=60)
    reverted_at = time.monotonic()
    wait_until(lambda: state(second)["phase"] == "reverted", timeout=10)
    followed_at = time.monotonic()
    runner.join()
    secondary.sql("ALTER TABLE pgbench_accounts_hidden RENAME TO pgbench_accounts")
    revert = [json.loads(line) for line in first.audit_path.read_text().splitlines()][-1]
    return {
        "revert_seconds": reverted_at - broken_at,
        "evaluations": revert.get("gate_evaluation", 0) - evaluations,
        "gate": revert["actor"],
        "fleet_seconds": followed_at - reverted_at,
        "tps": outcome["tps"],
        "client_errors": "yes" if outcome["failed"] else "0",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ramps", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--interval", type=int, default=1, help="gate interval, seconds")
    args = parser.parse_args()

    primary, secondary = PgCluster().start(), PgCluster().start()
    redis = RedisServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="sy-cutover-bench-"))
    proxies = []
    try:
        for cluster in (primary, secondary):
            subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", str(cluster.root), "-p",
                            str(cluster.port), "-U", "postgres", "postgres"], check=True, capture_output=True)
        config = (f"primary: {primary.uri()}\nsecondary: {secondary.uri()}\n"
                  f"fleet:\n  redis: {redis.url}\n  key: bench:cutover\n")
        gates = (f"  gates:\n    interval: {args.interval}s\n    window: {5 * args.interval}s\n"
                 "    secondary_error_rate: {max: 0.01, min_samples: 100}\n"
                 "    latency_p99_ratio: {enabled: false}\n")
        for i in range(2):
            proxy = Proxy(config + f"mirror:\n  journal: {workdir}/journal-{i}.jsonl\n", workdir,
                          admin_token=TOKEN, cutover=gates)
            proxies.append(proxy.start())
        first, second = proxies
        delays = propagation(first, second, args.ramps)
        reaction = revert_reaction(first, second, secondary, args.clients, args.interval)
        print(f"fleet propagation over {args.ramps} ramps (admin API answer on one proxy -> "
              "status of the other, polled every ms):")
        print(f"  p50 {1000 * statistics.median(delays):.1f} ms, p99 "
              f"{1000 * percentile(delays, 0.99):.1f} ms, max {1000 * max(delays):.1f} ms")
        print(f"revert under pgbench -S, {args.clients} clients, 50 % on the secondary, every "
              f"secondary read failing from t=0, gates every {args.interval} s:")
        print(f"  reverted by {reaction['gate']} after {reaction['revert_seconds']:.2f} s "
              f"({reaction['evaluations']} gate evaluations); the other proxy followed "
              f"{1000 * reaction['fleet_seconds']:.1f} ms later")
        print(f"  pgbench: {reaction['tps']:.0f} tps, client errors: {reaction['client_errors']}")
    finally:
        for proxy in proxies:
            proxy.stop()
        redis.destroy()
        primary.destroy()
        secondary.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
