#!/usr/bin/env python3
"""Lock-window benchmark: why TPC-B loses more than -N to sync mirroring. A TPC-B transaction
updates one of `scale` branch rows and holds that row's lock until it commits; sync mode
adds the secondary's round trip and a relay hop per statement to that window. This measures,
in one run, how much one more round trip costs when it falls inside the window rather than
before it (direct to one database, pgbench scripts equal to tpcb-like but for one
`SELECT 1`), and switchyard sync beside direct for TPC-B and -N, with the share of the
machine's CPU left idle while each ran (/proc/stat): on a saturated machine, idle time
means every process was waiting on a lock or on another process.

Each cell is the median of --rounds runs, the order of the targets rotated per round.

Usage: bench/lock_window_bench.py [--duration S] [--clients N] [--scale N] [--rounds N]
                                  [--workers N]
Build first with scripts/build.sh release. Not a test: it asserts nothing.
"""
import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bench_common import pgbench, rotated, start_clusters, start_mirrored_proxy, trust_local  # noqa: E402
from mirror_bench import reset  # noqa: E402

TPCB_HEAD = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
"""
BRANCH = "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n"
HISTORY = ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
           "VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\n")
EXTRA = "SELECT 1;\n"
BEFORE = "direct, TPC-B + 1 round trip before the branch update"
INSIDE = "direct, TPC-B + 1 round trip while the branch row is locked"
SCRIPTS = {  # tpcb-like with one more round trip before the branch row is locked, or after
    "before": TPCB_HEAD + EXTRA + BRANCH + HISTORY + "END;\n",
    "inside": TPCB_HEAD + BRANCH + HISTORY + EXTRA + "END;\n",
}


def idle_and_total():
    """The machine's idle (+ iowait) and total CPU ticks so far."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--scale", type=int, default=10, help="also the number of branch rows")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--workers", type=int, default=1, help="switchyard network threads (0: one per core)")
    opts = parser.parse_args()

    with ExitStack() as cleanup:  # stops whatever was started, last first, however main() ends
        first, second = start_clusters(cleanup, 2)
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sy-lwbench-")))
        for cluster in (first, second):
            trust_local(cluster)
            reset(cluster, opts.scale)
        proxy = start_mirrored_proxy(cleanup, first, second, workdir, settings=f"workers: {opts.workers}\n")
        for name, text in SCRIPTS.items():
            (workdir / f"{name}.sql").write_text(text)
        scale = ["-s", str(opts.scale)]  # custom scripts read :scale from here
        targets = [  # (label, port, pgbench arguments, the direct target it is compared with)
            ("direct, TPC-B", first.port, ["-b", "tpcb-like"], "direct, TPC-B"),
            (BEFORE, first.port, [*scale, "-f", str(workdir / "before.sql")], "direct, TPC-B"),
            (INSIDE, first.port, [*scale, "-f", str(workdir / "inside.sql")], "direct, TPC-B"),
            ("switchyard sync, TPC-B", proxy.port, ["-b", "tpcb-like"], "direct, TPC-B"),
            ("direct, -N", first.port, ["-N"], "direct, -N"),
            ("switchyard sync, -N", proxy.port, ["-N"], "direct, -N"),
        ]
        runs = {target[0]: [] for target in targets}
        idle = {target[0]: [] for target in targets}
        for round_no in range(opts.rounds):
            for label, port, args, _ in rotated(targets, round_no):
                idle_before, total_before = idle_and_total()
                tps, _, failed = pgbench(port, args, opts.clients, opts.duration)
                idle_after, total_after = idle_and_total()
                if failed:
                    raise SystemExit(f"pgbench failed against {label}")
                runs[label].append(tps)
                idle[label].append(100.0 * (idle_after - idle_before) / max(total_after - total_before, 1))
        print(f"pgbench -T {opts.duration} -c {opts.clients}, scale {opts.scale} ({opts.scale} branch rows), "
              f"median of {opts.rounds} rounds, switchyard workers: {opts.workers or 'one per core'}, "
              "everything over loopback TCP on the same cores\n")
        print("| target | tps | vs direct, same workload | CPU idle % |")
        print("|---|---|---|---|")
        medians = {label: statistics.median(values) for label, values in runs.items()}
        for label, _, _, direct in targets:
            print(f"| {label} | {medians[label]:.0f} | {medians[label] / medians[direct]:.2f}× "
                  f"| {statistics.median(idle[label]):.0f} |")
        cost = 100 * (1 - medians[INSIDE] / medians[BEFORE])
        print(f"\nThe same round trip costs {abs(cost):.1f} % {'more' if cost >= 0 else 'less'} throughput "
              "inside the window than before it.")


if __name__ == "__main__":
    main()
