#!/usr/bin/env python3
"""Secondary outage benchmark: the throughput of pgbench -N (prepared) through switchyard
(sync) while the secondary is down and every write goes to the divergence journal, beside
the same load with the secondary up and direct to the primary, with this build and (with
--baseline) another one in the same run.

`--write-mode async` runs the proxies in async mode instead of sync.

In every round: pgbench direct to a third cluster like the primary (direct writes to the
primary would leave the pair different); then for each build, a proxy of its own
(journal in a directory under --journal-dir, on disk unless that is a tmpfs): pgbench with
the secondary up, the secondary stopped, pgbench again (with the journal entries each of
its flushes carried, where the build counts them in switchyard_journal_flush_seconds, and
the transactions still queued in memory for the secondary at its end, in async mode), the
secondary started again and the time until the journal's backlog is 0 taken; then the
pgbench tables are compared on both databases. In sync mode the journal's entries are
durable before the primary commits their writes, so its flushes are on every write's path
while the secondary is down.

`--restart-while-down` stops the proxy after the run with the secondary up, then the
secondary, and starts a new proxy: it knows
no table's shape (nor can it read one), as a proxy in an outage longer than the shapes are
kept, so in async mode every transaction waits for all earlier ones (a barrier).

Usage: bench/outage_bench.py [--seconds S] [--clients N] [--rounds R] [--journal-dir DIR] [--write-mode async]
                             [--restart-while-down] [--baseline path/to/another/switchyard]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import (builds, pgbench, pgbench_init, rotated, start_clusters, start_mirrored_proxy,  # noqa: E402
                          tables_that_differ, trust_local, wait_drained)

LOAD = ["-N", "-M", "prepared"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--journal-dir", default=tempfile.gettempdir(), help="where the proxies' journals go")
    parser.add_argument("--write-mode", choices=("sync", "async"), default="sync")
    parser.add_argument("--restart-while-down", action="store_true",
                        help="start a new proxy once the secondary is down, which knows no table's shape")
    parser.add_argument("--baseline", help="another switchyard binary to run beside this build")
    opts = parser.parse_args()

    with ExitStack() as cleanup:
        primary, secondary, alone = start_clusters(cleanup, 3)
        for cluster in (primary, secondary, alone):
            trust_local(cluster)
            pgbench_init(cluster, opts.scale)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-obench-", dir=opts.journal_dir)))
        filesystem = subprocess.run(["stat", "-f", "-c", "%T", str(workdir)], capture_output=True,
                                    text=True).stdout.strip()
        binaries = builds(opts.baseline)
        tps = {}  # (target, phase): [tps per round]
        latency = {}
        drained = {name: [] for name in binaries}
        per_flush = {name: [] for name in binaries}
        queued = {name: [] for name in binaries}
        differ = {name: set() for name in binaries}
        failed = set()

        def note(target, phase, result):
            tps.setdefault((target, phase), []).append(result[0])
            latency.setdefault((target, phase), []).append(result[1])
            if result[2]:
                failed.add(f"{target} {phase}")

        for round_number in range(opts.rounds):
            note("direct", "up", pgbench(alone.port, LOAD, opts.clients, opts.seconds))
            for name in rotated(list(binaries), round_number):
                def start_proxy():
                    return start_mirrored_proxy(cleanup, primary, secondary, workdir, binary=binaries[name],
                                                settings=f"write_mode: {opts.write_mode}\n",
                                                mirror="  timeout: 1s\n", log_level="error")

                proxy = start_proxy()
                note(name, "up", pgbench(proxy.port, LOAD, opts.clients, opts.seconds))
                if opts.restart_while_down:
                    wait_drained(proxy)  # nothing of the first proxy's left behind
                    proxy.stop()
                    secondary.stop()
                    proxy = start_proxy()
                else:
                    secondary.stop()
                entries, flushes = (proxy.metric("switchyard_journal_entries_total"),
                                    proxy.metric("switchyard_journal_flush_seconds_count"))
                note(name, "down", pgbench(proxy.port, LOAD, opts.clients, opts.seconds))
                flushes = proxy.metric("switchyard_journal_flush_seconds_count") - flushes
                queued[name].append(proxy.metric("switchyard_mirror_async_queue") or 0)
                if flushes > 0:
                    per_flush[name].append((proxy.metric("switchyard_journal_entries_total") - entries) / flushes)
                secondary.launch()
                took = wait_drained(proxy)
                if took is None:
                    differ[name].add("(the journal did not drain)")
                else:
                    drained[name].append(took)
                    differ[name].update(tables_that_differ(primary, secondary))
                proxy.stop()

        def median(values):
            return statistics.median(values) if values else float("nan")

        print(f"switchyard {opts.write_mode}; pgbench {' '.join(LOAD)}, {opts.clients} clients, {opts.seconds} s, scale {opts.scale}; median of "
              f"{opts.rounds} rounds; journal on {filesystem}; both databases and switchyard on the same "
              f"{os.cpu_count()} cores\n")
        names = list(binaries)
        print("| target | secondary up: tps (ms) | secondary down: tps (ms) | down/up | down/direct | "
              "entries a flush | async queue after the down run | journal drained in |")
        print("|---|---|---|---|---|---|---|---|")
        direct = median(tps[("direct", "up")])
        print(f"| direct | {direct:.0f} ({median(latency[('direct', 'up')]):.2f}) | | | | | | |")
        for name in names:
            up, down = median(tps[(name, "up")]), median(tps[(name, "down")])
            print(f"| {name} | {up:.0f} ({median(latency[(name, 'up')]):.2f}) | {down:.0f} "
                  f"({median(latency[(name, 'down')]):.2f}) | {down / up:.2f}× | {down / direct:.2f}× | "
                  f"{f'{median(per_flush[name]):.2f}' if per_flush[name] else 'not counted'} | "
                  f"{median(queued[name]):.0f} | {median(drained[name]):.1f} s |")
        if "baseline" in binaries:
            for phase in ("up", "down"):
                ratio = median(tps[("switchyard", phase)]) / median(tps[("baseline", phase)])
                print(f"\nswitchyard/baseline, secondary {phase}: {ratio:.2f}×", end="")
            print()
        for name in names:
            print(f"\n{name}: tables after the drain: " +
                  ("identical" if not differ[name] else "DIFFER: " + ", ".join(sorted(differ[name]))))
        if failed:
            print("\npgbench reported failures: " + ", ".join(sorted(failed)))


if __name__ == "__main__":
    main()
