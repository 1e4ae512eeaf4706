"""What an idle platform costs: CPU of every process of ``make run`` while no work arrives.

Starts the platform exactly as ``make run`` does (``bench.load.start_platform``: a local Ray
head, the Serve app, SQLite and blobs in a fresh data dir; only the ports are moved), waits
``--settle-s`` for start-up work to end, then reads every platform process's CPU time
(user + system) at the start and end of ``--window-s`` and reports each one's share of one
core, grouped by process title (Serve controller, proxy, each deployment's replicas, the
dashboard, GCS, raylet, idle Ray workers). On a small host these shares are taken from
training and inference: a platform that idles at 30 % of a core slows a 2-core host's
training epochs by about a sixth.

    python bench/idle.py [--settle-s 30] [--window-s 60] [--name idle]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, write_results
from bench.load import platform_rss, start_platform


def cpu_seconds(pids) -> dict[int, tuple[str, float]]:
    """pid -> (title, user + system CPU seconds) for the given {pid: (title, _)}."""
    out = {}
    for pid, (title, _) in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[pid] = (title, t.user + t.system)
    return out


def measure(settle_s: float, window_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="fathom-idle-") as tmp:
        platform = start_platform(Path(tmp) / "platform.log")
        try:
            time.sleep(settle_s)
            before, t0 = cpu_seconds(platform_rss(platform)), time.monotonic()
            time.sleep(window_s)
            after, t1 = cpu_seconds(platform_rss(platform)), time.monotonic()
        finally:
            platform.stop()
    elapsed = t1 - t0
    groups: dict[str, list[float]] = defaultdict(list)
    for pid, (title, end) in after.items():
        begin = before.get(pid, (title, 0.0))[1]  # a process started in the window counts from zero
        groups[title].append(max(0.0, end - begin))
    rows = sorted(
        ({"process": title, "count": len(v), "core_percent": round(100 * sum(v) / elapsed, 2)} for title, v in groups.items()),
        key=lambda r: -r["core_percent"],
    )
    total = round(sum(r["core_percent"] for r in rows), 2)
    return {"window_s": round(elapsed, 1), "settle_s": settle_s, "total_core_percent": total, "processes": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settle-s", type=float, default=30.0, help="wait after start-up before measuring")
    p.add_argument("--window-s", type=float, default=60.0, help="seconds measured")
    p.add_argument("--name", default="idle", help="results file bench/results/<name>.json")
    args = p.parse_args()
    result = measure(args.settle_s, args.window_s)
    print_table(["process", "count", "% of one core"], [[r["process"], r["count"], r["core_percent"]] for r in result["processes"]])
    print(f"total: {result['total_core_percent']} % of one core over {result['window_s']} s, idle")
    print(f"wrote {write_results(args.name, result)}")


if __name__ == "__main__":
    main()
