"""Helpers shared by the benchmark scripts: a plain-text table, a JSON result file, and a
wait for idle CPUs (timings on a shared host are only comparable when taken at rest)."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; floats shown with 3 significant decimals."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print(format_table(headers, rows), flush=True)


def write_results(name: str, results: Mapping[str, Any]) -> Path:
    """Write ``results`` plus the host and time to ``bench/results/<name>.json``; returns the path."""
    payload = {
        "benchmark": name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpu_count()},
        **results,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


@dataclass(frozen=True)
class LocalPlatform:
    settings: Any  # schemas.settings.Settings
    base_url: str
    key: str
    organization_id: str
    overrides: dict[str, Any]  # for AppArgs(settings=...)


def start_local_platform(*, num_cpus: int | None = None, **overrides: Any) -> LocalPlatform:
    """A fresh local Fathom to measure (the app itself is deployed by the caller): Ray on every CPU (or ``num_cpus``),
    Serve HTTP on a free port, SQLite and blobs in a temporary directory, one organization and key."""
    import os
    import tempfile

    import ray
    from ray import serve

    from cluster.accounts import create_api_key, create_organization
    from cluster.db import init_schema, session_scope
    from schemas.settings import Settings
    from tests.factories import free_port

    port = free_port()
    overrides = {"data_dir": tempfile.mkdtemp(prefix="fathom-bench-"), "http_port": port, "use_gpu": None, **overrides}
    settings = Settings(**overrides)
    os.environ.update(settings.to_env())
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    init_schema(settings.database_url)
    with session_scope(settings.database_url) as s:
        org = create_organization(s, "bench")
        _, key = create_api_key(s, org.id, "bench")
        org_id = org.id
    return LocalPlatform(settings, f"http://127.0.0.1:{port}", key, org_id, overrides)


def wait_for_idle_cpus(min_idle: float = 0.9, *, sample_s: float = 1.0, timeout_s: float = 120.0) -> float | None:
    """Block until the host's CPUs were at least ``min_idle`` idle over one ``sample_s`` window.

    Returns the last idle fraction seen (0..1), also when ``timeout_s`` runs out first; None
    where ``/proc/stat`` does not exist (non-Linux), without waiting.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        before = _cpu_times()
        if before is None:
            return None
        time.sleep(sample_s)
        after = _cpu_times()
        busy, rest = (a - b for a, b in zip(after, before))
        idle = rest / (busy + rest) if busy + rest else 1.0
        if idle >= min_idle or time.monotonic() >= deadline:
            return idle


def _cpu_times() -> tuple[int, int] | None:
    """(busy, idle) clock ticks summed over all CPUs since boot."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, idle


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def _cpu_count() -> int | None:
    import os

    return os.cpu_count()
