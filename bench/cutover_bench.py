#!/usr/bin/env python3
"""Control-plane benchmark: how fast a cutover change reaches a second proxy through Redis,
how fast the gates pull reads back when the secondary starts failing under pgbench load, and
what a role swap (promote, revert) costs writers on both proxies, in one run on two
PostgreSQL clusters, one Redis and two switchyard processes.

Usage: bench/cutover_bench.py [--ramps N] [--clients N] [--interval S]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import ClientThreads, Proxy, RedisServer, closed_by_role_swap  # noqa: E402

from bench_common import pgbench, pgbench_init, start_clusters  # noqa: E402

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
    reverted = wait_until(lambda: state(first)["phase"] == "reverted", timeout=60)
    reverted_at = time.monotonic()
    followed = reverted and wait_until(lambda: state(second)["phase"] == "reverted", timeout=10)
    followed_at = time.monotonic()
    runner.join()
    if not followed:  # say so here rather than fail later on a rearm with nothing to rearm
        raise RuntimeError(f"no revert within 60 s of breaking the secondary ({state(first)}, other proxy "
                           f"{state(second)}); with few --clients the session cohort may have sent "
                           "none of their reads to the secondary")
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


class Writers(ClientThreads):
    """psycopg clients on several proxies, each adding 1 to a random one of 100 counters and
    inserting a row per transaction, reconnecting when a role swap closes their session (as a
    pool would); records the latency and end time of every transaction."""

    def __init__(self, proxies, per_proxy):
        super().__init__()
        self.samples, self.errors, self.swap_closes, self.lock = [], [], 0, threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(proxy,))
                        for proxy in proxies for _ in range(per_proxy)]

    def run(self, proxy):
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                    while not self.stop_event.is_set():
                        began = time.monotonic()
                        with conn.transaction():
                            conn.execute("UPDATE swap_counters SET n = n + 1 WHERE id = %s",
                                         (random.randint(1, 100),))
                            conn.execute("INSERT INTO swap_log (note) VALUES ('w')")
                        ended = time.monotonic()
                        with self.lock:
                            self.samples.append((ended, ended - began))
            except Exception as error:  # noqa: BLE001 - every client error counts
                with self.lock:
                    if closed_by_role_swap(error):
                        self.swap_closes += 1
                    else:
                        self.errors.append(repr(error))


def role_swaps(first, second, primary, secondary, clients):
    """Promotes and reverts under write load on both proxies: how long writes stall, how
    many sessions a swap closes, whether any client error or divergence results."""
    with psycopg.connect(first.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE swap_counters (id int PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO swap_counters SELECT g, 0 FROM generate_series(1, 100) g")
        conn.execute("CREATE TABLE swap_log (id bigserial PRIMARY KEY, note text NOT NULL)")
    api(first, "POST", "/api/v1/cutover/rearm", {"reason": "bench"})
    api(first, "POST", "/api/v1/cutover/ramp", {"percent": 100})
    wait_until(lambda: state(second)["read_percent"] == 100)
    swaps = []
    with Writers([first, second], max(1, clients // 2)) as writers:
        time.sleep(3)
        for action in ("promote", "revert"):
            journal_empty = wait_until(lambda: all(
                proxy.metric("switchyard_journal_backlog") == 0 for proxy in (first, second)), 30)
            asked = time.monotonic()
            api(first, "POST", f"/api/v1/cutover/{action}", {"reason": "bench"})
            settled = wait_until(lambda: all(
                api(p, "GET", "/api/v1/status")["roles"]["settled"] and
                api(p, "GET", "/api/v1/status")["state"]["phase"] != "ramping" for p in (first, second)),
                30)
            done = time.monotonic()
            time.sleep(3)
            with writers.lock:
                during = [latency for ended, latency in writers.samples if asked <= ended <= done + 1]
            swaps.append({"action": action, "settle_seconds": done - asked, "settled": settled,
                          "journal_empty_before": journal_empty,
                          "max_latency": max(during, default=0.0),
                          "p50_latency": statistics.median(during) if during else 0.0})
        writers_total = len(writers.samples)
    drained = wait_until(lambda: all(
        proxy.metric("switchyard_journal_backlog") == 0 for proxy in (first, second)), 60)
    identical = drained and all(primary.checksum(t, "id") == secondary.checksum(t, "id")
                                for t in ("swap_counters", "swap_log"))
    return {"swaps": swaps, "transactions": writers_total, "errors": writers.errors,
            "swap_closes": writers.swap_closes, "identical": identical}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ramps", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--interval", type=int, default=1, help="gate interval, seconds")
    args = parser.parse_args()

    with ExitStack() as cleanup:  # stops whatever was started, last first, however main() ends
        primary, secondary = start_clusters(cleanup, 2)
        redis = RedisServer().start()
        cleanup.callback(redis.destroy)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-cutover-bench-")))
        for cluster in (primary, secondary):
            pgbench_init(cluster, 1)
        config = (f"primary: {primary.uri()}\nsecondary: {secondary.uri()}\n"
                  f"fleet:\n  redis: {redis.url}\n  key: bench:cutover\n")
        gates = (f"  gates:\n    interval: {args.interval}s\n    window: {5 * args.interval}s\n"
                 "    secondary_error_rate: {max: 0.01, min_samples: 100}\n"
                 "    latency_p99_ratio: {enabled: false}\n")
        proxies = []
        for i in range(2):
            proxy = Proxy(config + f"mirror:\n  journal: {workdir}/journal-{i}.jsonl\n", workdir,
                          admin_token=TOKEN, cutover=gates)
            proxies.append(proxy.start())
            cleanup.callback(proxy.stop)
        first, second = proxies
        delays = propagation(first, second, args.ramps)
        reaction = revert_reaction(first, second, secondary, args.clients, args.interval)
        swapping = role_swaps(first, second, primary, secondary, args.clients)
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
        print(f"role swaps under writes on both proxies ({max(1, args.clients // 2)} psycopg "
              "clients each, UPDATE of 1 in 100 counters + INSERT per transaction):")
        for swap in swapping["swaps"]:
            print(f"  {swap['action']}: settled on both proxies after {swap['settle_seconds']:.2f} s "
                  f"(settled: {swap['settled']}); transaction latency in that window p50 "
                  f"{1000 * swap['p50_latency']:.1f} ms, max {1000 * swap['max_latency']:.0f} ms")
        print(f"  {swapping['transactions']} transactions, sessions closed by the swaps "
              f"(reconnected): {swapping['swap_closes']}, client errors: "
              f"{len(swapping['errors'])}, tables identical after: {swapping['identical']}")
        for error in swapping["errors"][:3]:
            print(f"    {error}")


if __name__ == "__main__":
    main()
