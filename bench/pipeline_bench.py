#!/usr/bin/env python3
"""Pipelined requests through mirroring switchyard: how fast a client that sends requests
without waiting for each answer gets them all, and how much memory a client that never reads
its answers costs the proxy.

Targets, in the same run against the same two clusters: direct PostgreSQL, switchyard
mirroring (sync) and, with --baseline, another switchyard binary the same way. For each
protocol (simple: a Query of `SELECT 1`; extended: Parse, Bind, Execute and Sync of it):

- pipelined: one client sends --requests requests in one stream while it reads the answers;
  requests per second until the last ReadyForQuery (median of --rounds);
- unread: a client sends the same stream and reads nothing for 3 s; the proxy's peak RSS
  growth over that time (VmHWM less VmRSS before), then it reads every answer.

Usage: bench/pipeline_bench.py [--requests N] [--rounds N] [--baseline PATH]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import struct
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import memory_kib, rotated, start_clusters, start_direct_and_builds, trust_local  # noqa: E402
from wire import RawClient, cstr, message  # noqa: E402

STREAMS = {
    "simple": message(b"Q", cstr("SELECT 1")),
    "extended": (message(b"P", cstr("") + cstr("SELECT 1") + struct.pack("!h", 0))
                 + message(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0))
                 + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S")),
}


def run(port, stream, requests, pid=None):
    """Requests per second of a pipelined run; with `pid`, the client reads nothing for 3 s
    first and the result is that process's peak RSS growth in MiB instead."""
    client = RawClient(port, timeout=120)
    client.login_trust()
    if pid:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM starts again from VmRSS
    before = memory_kib(pid, "VmRSS") if pid else 0
    sender = threading.Thread(target=client.send, args=(stream * requests,))
    start = time.monotonic()
    sender.start()
    if pid:
        time.sleep(3)
    client.tags_until_ready(requests)
    elapsed = time.monotonic() - start
    sender.join()
    client.close()
    return (memory_kib(pid, "VmHWM") - before) / 1024 if pid else requests / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another switchyard binary to run beside this build")
    opts = parser.parse_args()
    with ExitStack() as cleanup:
        primary, secondary = start_clusters(cleanup, 2)
        for cluster in (primary, secondary):
            trust_local(cluster)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-pipeline-")))
        ports, pids = start_direct_and_builds(cleanup, primary, secondary, workdir, opts.baseline)
        targets = list(ports)
        print(f"{opts.requests} requests of `SELECT 1` in one stream, median of {opts.rounds} rounds; "
              "switchyard mirroring in sync mode, both databases and the proxies on this machine\n")
        print("| protocol | " + " | ".join(f"{t} requests/s" for t in targets)
              + " | switchyard/direct | " + ("switchyard/baseline | " if opts.baseline else "")
              + " | ".join(f"{t} peak growth, unread (MiB)" for t in pids) + " |")
        print("|---" * (2 + len(targets) + len(pids) + bool(opts.baseline)) + "|")
        for protocol, stream in STREAMS.items():
            rates = {t: [] for t in targets}
            growth = {t: [] for t in pids}
            for round_no in range(opts.rounds):
                for target in rotated(targets, round_no):
                    rates[target].append(run(ports[target], stream, opts.requests))
            for target in pids:
                growth[target].append(run(ports[target], stream, opts.requests, pids[target]))
            median = {t: statistics.median(v) for t, v in rates.items()}
            print(f"| {protocol} | " + " | ".join(f"{median[t]:,.0f}" for t in targets)
                  + f" | {median['switchyard'] / median['direct']:.2f}× | "
                  + (f"{median['switchyard'] / median['baseline']:.2f}× | " if opts.baseline else "")
                  + " | ".join(f"{growth[t][0]:.1f}" for t in pids) + " |")


if __name__ == "__main__":
    main()
