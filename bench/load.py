"""Load: 64 concurrent clients uploading, inferring and polling against ``make run`` defaults.

Starts the platform exactly as ``make run`` does (``python -m cluster.local``: a local Ray head,
SQLite and blobs in a fresh data dir; only the ports are moved to free ones), registers one
detector, then runs the clients for ``--duration-s``. Seven clients in eight run the vendor's
inference loop (one job each; per file: upload-url, presigned POST, confirm, poll the file
until it ends, and every few files the job and the job list); the eighth uploads dataset audio
and polls it until the Ray Data pipeline marks it ``ready``. After the deadline every client
finishes its file, then every confirmed file is checked once more: one that is not
``completed`` / ``ready`` after ``--drain-s`` is lost.

Reported per run: requests/s, error rate (any exception or status >= 400), lost files, p50/p99
latency per operation, and the RSS of every process of the platform (the head's Ray processes,
the ``make run`` driver, Serve replicas, workers) at the start of the load, half-way and at its
end, plus the total every RSS_SAMPLE_S: flat means no growth from half-way to the end (the
first half fills caches and allocator pools).
``--nodes 2`` adds a second Ray node on this machine (``ray start --address ...``) before the
load. Prints tables and writes bench/results/load.json.

    python bench/load.py [--clients 64] [--duration-s 300] [--nodes 1,2] [--clip-s 8]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_table, write_results  # noqa: E402

START_TIMEOUT_S = 240
POLL_S = 1.0  # the vendor's loop polls every 2 s; a busier client is a harder load
JOB_CHECK_EVERY = 4  # files between GETs of the client's job and the job list
REQUEST_TIMEOUT_S = 60
RSS_SAMPLE_S = 15.0  # s between RSS snapshots of the platform during the load


# --- the platform under load ---------------------------------------------------------------


@dataclass
class Platform:
    proc: subprocess.Popen
    env: dict[str, str]
    base_url: str
    key: str
    extra_nodes: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for node in self.extra_nodes:
            _stop_group(node)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # cluster.local's Ctrl-C path: Serve, Ray, head
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                _stop_group(self.proc)


def _free_port() -> int:
    from tests.factories import free_port

    return free_port()


def _stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_platform(log_path: Path) -> Platform:
    """``make run`` in a subprocess on free ports; returns once it printed its URL and key."""
    data_dir = tempfile.mkdtemp(prefix="fathom-load-")
    http_port = _free_port()
    env = {
        **os.environ,
        "FATHOM_DATA_DIR": data_dir,
        "FATHOM_HTTP_PORT": str(http_port),
        "FATHOM_RAY_HEAD_PORT": str(_free_port()),
        "FATHOM_DASHBOARD_PORT": str(_free_port()),
        "FATHOM_RAY_DASHBOARD_AGENT_PORT": str(_free_port()),
        "FATHOM_RAY_CLIENT_SERVER_PORT": str(_free_port()),
        "RAY_AUTH_MODE": "token",
    }
    for var in ("RAY_ADDRESS", "FATHOM_RAY_ADDRESS"):
        env.pop(var, None)
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "cluster.local"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=log, text=True, start_new_session=True,
    )
    key = url = None
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        if m := re.search(r"API\s+(http://\S+)", line):
            url = m.group(1)
        if m := re.search(r"API key\s+(\S+)", line):
            key = m.group(1)
        if "Ctrl-C stops it" in line or time.monotonic() > deadline:
            break
    if not (url and key):
        _stop_group(proc)
        raise RuntimeError(f"make run did not come up (see {log_path})")
    threading.Thread(target=_drain_stdout, args=(proc, log), daemon=True).start()
    return Platform(proc, env, url, key)


def _drain_stdout(proc: subprocess.Popen, log) -> None:
    for line in proc.stdout:
        log.write(line)


def add_node(platform: Platform, num_cpus: int) -> None:
    """A second Ray node on this machine, joined to the platform's head."""
    env = platform.env
    cmd = [
        str(Path(sys.executable).with_name("ray")), "start", "--block",
        f"--address=127.0.0.1:{env['FATHOM_RAY_HEAD_PORT']}", f"--num-cpus={num_cpus}",
        f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats",
    ]
    node = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    platform.extra_nodes.append(node)
    import ray

    ray.init(address=f"127.0.0.1:{env['FATHOM_RAY_HEAD_PORT']}", log_to_driver=False)
    try:
        deadline = time.monotonic() + 60
        while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
            if time.monotonic() > deadline or node.poll() is not None:
                raise RuntimeError("the second Ray node did not join")
            time.sleep(1)
    finally:
        ray.shutdown()


def register_model(platform: Platform) -> str:
    """One detector (random weights: the load does not depend on what it learned) in the dev org."""
    from sqlalchemy import select

    from cluster.db import session_scope
    from cluster.tables import Organization
    from data_pipelines.synth import ARTIFACT_TYPES
    from schemas.settings import Settings
    from tests.factories import register_detector

    settings = Settings(data_dir=platform.env["FATHOM_DATA_DIR"])
    with session_scope(settings.database_url) as s:
        org_id = s.scalar(select(Organization.id).where(Organization.name == "dev"))
    return register_detector(settings, org_id, list(ARTIFACT_TYPES))


# --- processes and their memory ------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, title, rss bytes) for every process we can read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))
        rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        out[int(entry)] = (ppid, cmd, int(rss.group(1)) * 1024 if rss else 0)
    return out


def platform_rss(platform: Platform) -> dict[int, tuple[str, int]]:
    """pid -> (short title, RSS bytes) of every process under the platform's process groups."""
    table = _proc_table()
    roots = [platform.proc.pid, *(n.pid for n in platform.extra_nodes)]
    children = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    found, stack = {}, list(roots)
    while stack:
        pid = stack.pop()
        if pid in table and pid not in found:
            found[pid] = (_short_title(table[pid][1]), table[pid][2])
            stack.extend(children[pid])
    return found


def _short_title(cmd: str) -> str:
    parts = cmd.split() or ["?"]
    if parts[0].startswith("ray::"):
        return parts[0][:48]
    exe = parts[0].rsplit("/", 1)[-1]
    if not exe.startswith("python"):  # gcs_server, raylet, ...
        return exe[:48]
    if "-m" in parts[:-1]:
        return f"python -m {parts[parts.index('-m') + 1]}"
    for i, p in enumerate(parts):
        base = p.rsplit("/", 1)[-1]
        if base.endswith(".py"):
            return base
        if base == "ray" and i + 1 < len(parts):
            return f"ray {parts[i + 1]}"
    return " ".join(parts[:3])[-48:]


# --- the clients ----------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_samples: list[str] = []
        self.confirmed: list[tuple[str, str, str]] = []  # (kind, parent id, file id)

    def record(self, op: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latency[op].append(seconds)
            if error:
                self.errors[op] += 1
                if len(self.error_samples) < 20:
                    self.error_samples.append(f"{op}: {error}")


def _call(stats: Stats, op: str, fn, *args, **kwargs) -> requests.Response | None:
    t0 = time.perf_counter()
    try:
        r = fn(*args, timeout=REQUEST_TIMEOUT_S, **kwargs)
    except requests.RequestException as e:
        stats.record(op, time.perf_counter() - t0, type(e).__name__)
        return None
    stats.record(op, time.perf_counter() - t0, None if r.status_code < 400 else f"{r.status_code} {r.text[:120]}")
    return r if r.status_code < 400 else None


def inference_client(base: str, key: str, model_id: str, clips: list[bytes], stats: Stats, deadline: float, seed: int) -> None:
    s = requests.Session()
    s.headers["X-API-Key"] = key
    r = _call(stats, "create job", s.post, f"{base}/api/v1/inference-jobs", json={"model_id": model_id})
    if r is None:
        return
    job_id = r.json()["id"]
    n = seed
    while time.monotonic() < deadline:
        data = clips[n % len(clips)]
        n += 1
        _send_file(
            stats, s, data, f"call-{n}.wav", f"{base}/api/v1/inference-jobs/{job_id}/files",
            {"filename": f"call-{n}.wav", "file_size_bytes": len(data), "content_type": "audio/wav"},
            kind="inference", parent=job_id, fields="upload_fields", id_field="file_id",
            status_field="status", final={"completed", "failed"}, ops=("upload-url", "confirm", "poll file"),
        )
        if n % JOB_CHECK_EVERY == 0:
            _call(stats, "get job", s.get, f"{base}/api/v1/inference-jobs/{job_id}")
            _call(stats, "list jobs", s.get, f"{base}/api/v1/inference-jobs", params={"page_size": 20})


def dataset_client(base: str, key: str, dataset_id: str, clips: list[bytes], stats: Stats, deadline: float, seed: int) -> None:
    s = requests.Session()
    s.headers["X-API-Key"] = key
    n = seed
    while time.monotonic() < deadline:
        data = clips[n % len(clips)]
        n += 1
        _send_file(
            stats, s, data, f"take-{n}.wav", f"{base}/api/v1/datasets/{dataset_id}/audio",
            {"filename": f"take-{n}.wav", "content_type": "audio/wav", "file_size": len(data)},
            kind="dataset", parent=dataset_id, fields="fields", id_field="audio_id",
            status_field="processing_status", final={"ready", "failed"}, ops=("audio upload-url", "audio confirm", "poll audio"),
        )


def _send_file(stats: Stats, s: requests.Session, data: bytes, filename: str, prefix: str, body: dict, *, kind: str,
               parent: str, fields: str, id_field: str, status_field: str, final: set[str], ops: tuple[str, str, str]) -> None:
    """upload-url, presigned POST, confirm, then poll until the file ends (both upload flavours of the API)."""
    r = _call(stats, ops[0], s.post, f"{prefix}/upload-url", json=body)
    if r is None:
        return
    info = r.json()
    if _call(stats, "presigned POST", requests.post, info["upload_url"], data=info[fields], files={"file": (filename, data)}) is None:
        return
    if _call(stats, ops[1], s.post, f"{prefix}/confirm", json={id_field: info[id_field]}) is None:
        return
    with stats.lock:
        stats.confirmed.append((kind, parent, info[id_field]))
    _poll(stats, s, f"{prefix}/{info[id_field]}", status_field, final, ops[2])


def _poll(stats: Stats, s: requests.Session, url: str, field_name: str, final: set[str], op: str, limit_s: float = 300) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        time.sleep(POLL_S)
        r = _call(stats, op, s.get, url)
        if r is not None and r.json()[field_name] in final:
            return


def final_states(base: str, key: str, confirmed: list[tuple[str, str, str]], drain_s: float) -> dict[str, int]:
    """Status counts of every confirmed file after up to ``drain_s`` for the stragglers."""
    s = requests.Session()
    s.headers["X-API-Key"] = key
    pending = list(confirmed)
    counts: dict[str, int] = defaultdict(int)
    end = time.monotonic() + drain_s
    while pending:
        still = []
        for kind, parent, fid in pending:
            url = (f"{base}/api/v1/inference-jobs/{parent}/files/{fid}" if kind == "inference"
                   else f"{base}/api/v1/datasets/{parent}/audio/{fid}")
            r = s.get(url, timeout=REQUEST_TIMEOUT_S)
            status = r.json()["status" if kind == "inference" else "processing_status"] if r.ok else f"http {r.status_code}"
            if status in ("completed", "ready", "failed") or time.monotonic() > end:
                counts[status] += 1
            else:
                still.append((kind, parent, fid))
        pending = still
        if pending:
            time.sleep(2)
    return dict(counts)


# --- one run ------------------------------------------------------------------------------


def run_load(nodes: int, clients: int, duration_s: float, drain_s: float, clips: list[bytes], clip_s: float) -> dict:
    log_path = Path(tempfile.gettempdir()) / f"fathom-load-{nodes}node.log"
    platform = start_platform(log_path)
    try:
        if nodes > 1:
            for _ in range(nodes - 1):
                add_node(platform, num_cpus=os.cpu_count() or 2)
        model_id = register_model(platform)
        base, key = platform.base_url, platform.key
        s = requests.Session()
        s.headers["X-API-Key"] = key
        dataset_id = s.post(f"{base}/api/v1/datasets", json={"name": "load", "artifact_types": [{"name": "glitch"}]}, timeout=60).json()["id"]
        warm = Stats()  # model load, first Ray Data run, connection pools
        warm_end = time.monotonic() + 1
        with cf.ThreadPoolExecutor(2) as pool:
            pool.submit(inference_client, base, key, model_id, clips, warm, warm_end, 0)
            pool.submit(dataset_client, base, key, dataset_id, clips, warm, warm_end, 0)
        rss_start = platform_rss(platform)
        samples: list[tuple[float, dict[int, tuple[str, int]]]] = []
        stop_sampling = threading.Event()

        def sample() -> None:  # a plateau after warm-up is a working set; growth to the end is a leak
            while not stop_sampling.wait(RSS_SAMPLE_S):
                samples.append((time.monotonic() - t0, platform_rss(platform)))

        stats = Stats()
        t0 = time.monotonic()
        deadline = t0 + duration_s
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with cf.ThreadPoolExecutor(clients) as pool:
            futures = [
                pool.submit(dataset_client if i % 8 == 7 else inference_client, base, key,
                            dataset_id if i % 8 == 7 else model_id, clips, stats, deadline, i)
                for i in range(clients)
            ]
            for f in futures:
                f.result()
        wall = time.monotonic() - t0
        stop_sampling.set()
        finals = final_states(base, key, stats.confirmed, drain_s)
        rss_end = platform_rss(platform)
        rss_mid = next((snap for t, snap in samples if t >= duration_s / 2), rss_end)
    finally:
        platform.stop()

    all_lat = [x for v in stats.latency.values() for x in v]
    n_req = len(all_lat)
    n_err = sum(stats.errors.values())
    inference_done = sum(1 for k, *_ in stats.confirmed if k == "inference")
    lost = sum(n for st, n in finals.items() if st not in ("completed", "ready"))
    return {
        "nodes": nodes,
        "clients": clients,
        "duration_s": wall,
        "requests": n_req,
        "requests_per_s": n_req / wall,
        "errors": n_err,
        "error_rate": n_err / max(n_req, 1),
        "error_samples": stats.error_samples,
        "files_confirmed": len(stats.confirmed),
        "inference_files": inference_done,
        "audio_s_per_s": inference_done * clip_s / wall,
        "final_states": finals,
        "lost_files": lost,
        "p50_s": float(np.percentile(all_lat, 50)) if all_lat else None,
        "p99_s": float(np.percentile(all_lat, 99)) if all_lat else None,
        "per_op": {
            op: {"n": len(v), "errors": stats.errors.get(op, 0), "p50_s": float(np.percentile(v, 50)), "p99_s": float(np.percentile(v, 99))}
            for op, v in sorted(stats.latency.items())
        },
        "rss": _rss_rows(rss_start, rss_mid, rss_end),
        "rss_total_start_mb": _total_mb(rss_start),
        "rss_total_mid_mb": _total_mb(rss_mid),
        "rss_total_end_mb": _total_mb(rss_end),
        "rss_total_series_mb": [[round(t, 1), round(_total_mb(snap), 1)] for t, snap in samples],
        "log": str(log_path),
    }


def _rss_rows(*snaps: dict[int, tuple[str, int]]) -> list[dict]:
    rows = []
    for pid in sorted(set().union(*snaps)):
        title = next(snap[pid][0] for snap in snaps if pid in snap)
        mb = [snap[pid][1] / 2**20 if pid in snap else None for snap in snaps]
        rows.append({"pid": pid, "process": title, "start_mb": mb[0], "mid_mb": mb[1], "end_mb": mb[2]})
    return rows


def _total_mb(snap: dict[int, tuple[str, int]]) -> float:
    return sum(r for _, r in snap.values()) / 2**20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration-s", type=float, default=300.0)
    p.add_argument("--drain-s", type=float, default=180.0, help="after the load, how long confirmed files may take to end")
    p.add_argument("--nodes", default="1,2", help="runs, by number of Ray nodes on this machine")
    p.add_argument("--clip-s", type=float, default=8.0)
    args = p.parse_args()
    os.environ["RAY_AUTH_MODE"] = "token"  # before Ray is imported: the head runs with token auth, as make run starts it

    from data_pipelines.audio import encode_audio
    from data_pipelines.synth import make_clip

    clips = [encode_audio(c.waveform, c.sample_rate, "wav") for c in (make_clip(seed, duration_s=args.clip_s) for seed in range(16))]
    runs = []
    for nodes in (int(x) for x in args.nodes.split(",")):
        r = run_load(nodes, args.clients, args.duration_s, args.drain_s, clips, args.clip_s)
        runs.append(r)
        print(f"\n== {nodes} Ray node(s), {args.clients} clients, {r['duration_s']:.0f} s ==")
        print_table(["operation", "requests", "errors", "p50 s", "p99 s"],
                    [[op, v["n"], v["errors"], v["p50_s"], v["p99_s"]] for op, v in r["per_op"].items()])
        print()
        print_table(["pid", "process", "RSS start MB", "RSS mid-run MB", "RSS end MB"],
                    [[x["pid"], x["process"], x["start_mb"], x["mid_mb"], x["end_mb"]] for x in r["rss"]])
        for sample in r["error_samples"][:5]:
            print("  error:", sample)

    print("\n== summary ==")
    print_table(
        ["nodes", "req/s", "error rate", "lost files", "files", "audio s/s", "p50 s", "p99 s", "RSS start MB", "mid MB", "end MB"],
        [[r["nodes"], r["requests_per_s"], r["error_rate"], r["lost_files"], r["files_confirmed"], r["audio_s_per_s"],
          r["p50_s"], r["p99_s"], r["rss_total_start_mb"], r["rss_total_mid_mb"], r["rss_total_end_mb"]] for r in runs],
    )
    print(f"wrote {write_results('load', {'config': vars(args), 'runs': runs})}")


if __name__ == "__main__":
    main()
