"""Detection throughput through HTTP vs the in-process ceiling; batching on vs off.

Each client runs the vendor flow per file (upload-url, presigned POST, confirm, poll until
completed) against a real local Fathom (Ray, Serve, SQLite, local blobs). Reported per
concurrency level and batching mode: audio seconds per wall second and p50/p99 file latency;
then the same files through a Python handle straight to the Detector at the top concurrency,
which isolates the replica (and what batching does there) from HTTP, database and dispatch.
The ceiling is features + model forward on the same audio in one process with the thread
count of one Detector replica (1). The model has random weights: throughput does not depend
on what it learned. Prints a table and writes bench/results/detect_http.json.

    python bench/detect_http.py [--files 96] [--clip-s 30] [--levels 1,8,32] [--poll-s 0.25] [--name detect_http]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, start_local_platform, write_results  # noqa: E402


HEADERS = ["path", "batching", "concurrency", "files", "audio s/s", "p50 s", "p99 s"]


def make_audio(n: int, clip_s: float) -> list[bytes]:
    from data_pipelines.audio import encode_audio
    from data_pipelines.synth import make_clip

    clips = [make_clip(seed, duration_s=clip_s) for seed in range(min(n, 16))]
    return [encode_audio(clips[i % len(clips)].waveform, clips[i % len(clips)].sample_rate, "wav") for i in range(n)]


def ceiling(audio: list[bytes]) -> float:
    """Audio seconds per second for decode + features + forward, one thread, no HTTP."""
    import torch

    from data_pipelines.audio import decode_audio
    from data_pipelines.features import N_FEATURES, compute_features
    from data_pipelines.synth import ARTIFACT_TYPES
    from train_jobs.models.detector import DetectorDims, FrameDetector
    from train_jobs.detection import frame_probs
    from train_jobs.windows import WindowSpec

    torch.set_num_threads(1)
    model = FrameDetector(DetectorDims(n_features=N_FEATURES, n_classes=len(ARTIFACT_TYPES))).eval()
    spec = WindowSpec.from_ms(500, 250)
    t0 = time.perf_counter()
    seconds = 0.0
    for data in audio:
        decoded = decode_audio(data)
        frame_probs(model, compute_features(decoded.waveform), spec)
        seconds += decoded.duration_ms / 1000
    return seconds / (time.perf_counter() - t0)


HOPS = ("upload-url", "presigned POST", "confirm", "queued -> result recorded", "recorded -> seen by a poll")


def run_file(client: requests.Session, base: str, job_id: str, data: bytes, poll_s: float) -> dict:
    """One file through the vendor's flow: its latency, file id, and the client's hops (wall-clock ends for the server's)."""
    t0 = time.perf_counter()
    info = client.post(f"{base}/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": "a.wav", "file_size_bytes": len(data)}).json()
    t1 = time.perf_counter()
    r = requests.post(info["upload_url"], data=info["upload_fields"], files={"file": ("a.wav", data)}, timeout=60)
    assert r.status_code == 204, r.text
    t2 = time.perf_counter()
    client.post(f"{base}/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": info["file_id"]}).raise_for_status()
    t3 = time.perf_counter()
    while True:
        time.sleep(poll_s)
        f = client.get(f"{base}/api/v1/inference-jobs/{job_id}/files/{info['file_id']}").json()
        if f["status"] in ("completed", "failed"):
            assert f["status"] == "completed", f["error_message"]
            done = time.perf_counter()
            return {"latency": done - t0, "file_id": info["file_id"], "hops": [t1 - t0, t2 - t1, t3 - t2], "poll_wait": done - t3}


def hop_profile(settings, files: list[dict]) -> list[dict]:
    """Mean seconds of each hop of a file, the server's from its row (queued_at, processed_at)."""
    from cluster.db import open_session
    from cluster.tables import InferenceFile

    with open_session(settings.database_url) as s:
        rows = {f.id: f for f in s.query(InferenceFile).filter(InferenceFile.id.in_([f["file_id"] for f in files]))}
        server = [(rows[f["file_id"]].processed_at - rows[f["file_id"]].queued_at).total_seconds() for f in files]
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    hops = [mean([f["hops"][i] for f in files]) for i in range(3)]
    hops += [mean(server), max(0.0, mean([f["poll_wait"] for f in files]) - mean(server))]
    total = mean([f["latency"] for f in files])
    return [{"hop": name, "mean_s": h, "share": h / total} for name, h in zip(HOPS, hops)]


def run_level(base: str, key: str, model_id: str, audio: list[bytes], concurrency: int, clip_s: float, poll_s: float) -> dict:
    session = requests.Session()
    session.headers["X-API-Key"] = key
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=concurrency * 2)
    session.mount("http://", adapter)
    job_id = session.post(f"{base}/api/v1/inference-jobs", json={"model_id": model_id}).json()["id"]
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        files = list(pool.map(lambda d: run_file(session, base, job_id, d, poll_s), audio))
    wall = time.perf_counter() - t0
    latencies = [f["latency"] for f in files]
    return {
        "concurrency": concurrency,
        "files": len(audio),
        "audio_s_per_s": len(audio) * clip_s / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
        "file_runs": files,
    }


def run_handle(model_id: str, audio: list[bytes], concurrency: int, clip_s: float) -> dict:
    """The same files straight to the Detector through a Python handle: the replica's own
    throughput, without HTTP, the database or the dispatcher."""
    from ray import serve

    from serve_app.app import APP_NAME

    handle = serve.get_deployment_handle("Detector", app_name=APP_NAME).options(multiplexed_model_id=model_id)

    def one(data: bytes) -> float:
        t0 = time.perf_counter()
        handle.detect.remote(data).result(timeout_s=600)
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, audio))
    wall = time.perf_counter() - t0
    return {
        "path": "handle",
        "concurrency": concurrency,
        "files": len(audio),
        "audio_s_per_s": len(audio) * clip_s / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=96)
    p.add_argument("--clip-s", type=float, default=30.0, help="seconds per file (call segments are tens of seconds)")
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--name", default="detect_http", help="results file: bench/results/<name>.json")
    p.add_argument("--poll-s", type=float, default=0.25, help="each client polls its file this often (the vendor's loop: 2 s)")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    import ray
    from ray import serve

    from data_pipelines.synth import ARTIFACT_TYPES
    from serve_app.app import APP_NAME, AppArgs, build_app
    from tests.factories import register_detector

    local = start_local_platform()
    base, key, overrides = local.base_url, local.key, local.overrides
    audio = make_audio(args.files, args.clip_s)
    model_id = register_detector(local.settings, local.organization_id, list(ARTIFACT_TYPES))

    rows, results = [], {"runs": []}
    for batching, user_config in (("on", {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}), ("off", {"max_batch_size": 1, "batch_wait_timeout_s": 0.0})):
        serve.run(build_app(AppArgs(settings=overrides, detector_user_config=user_config)), name=APP_NAME, route_prefix="/")
        run_level(base, key, model_id, audio[:4], 4, args.clip_s, args.poll_s)  # warm-up: model load, connections
        for c in levels:
            r = run_level(base, key, model_id, audio, c, args.clip_s, args.poll_s) | {"batching": batching, "path": "http"}
            r["hops"] = hop_profile(local.settings, r.pop("file_runs"))
            results["runs"].append(r)
            rows.append(["http", batching, c, r["files"], r["audio_s_per_s"], r["p50_s"], r["p99_s"]])
            print_table(HEADERS, rows[-1:])
        r = run_handle(model_id, audio, max(levels), args.clip_s) | {"batching": batching}
        results["runs"].append(r)
        rows.append(["handle", batching, r["concurrency"], r["files"], r["audio_s_per_s"], r["p50_s"], r["p99_s"]])
        print_table(HEADERS, rows[-1:])
    ceil = ceiling(audio[: min(len(audio), 32)])
    http = [r for r in results["runs"] if r["path"] == "http"]
    best_http = max(r["audio_s_per_s"] for r in http)
    top = max(levels)
    on = next(r for r in http if r["batching"] == "on" and r["concurrency"] == top)
    off = next(r for r in http if r["batching"] == "off" and r["concurrency"] == top)
    h_on, h_off = (next(r for r in results["runs"] if r["path"] == "handle" and r["batching"] == b) for b in ("on", "off"))
    results.update(
        ceiling_audio_s_per_s=ceil,
        http_over_ceiling=best_http / ceil,
        batched_over_unbatched_at_top=on["audio_s_per_s"] / off["audio_s_per_s"],
        handle_batched_over_unbatched=h_on["audio_s_per_s"] / h_off["audio_s_per_s"],
        gpu=bool(ray.cluster_resources().get("GPU")),
    )
    print()
    print_table(HEADERS, rows)
    print(f"\nin-process ceiling (1 thread): {ceil:.1f} audio s/s; best HTTP / ceiling = {results['http_over_ceiling']:.2f}")
    print(f"batched / unbatched at concurrency {top}: HTTP {results['batched_over_unbatched_at_top']:.2f}x, "
          f"handle {results['handle_batched_over_unbatched']:.2f}x")
    print(f"\nwhere a file's time goes (HTTP, batching on, concurrency {top}):")
    print_table(["hop", "mean s", "share"], [[h["hop"], h["mean_s"], f"{100 * h['share']:.0f} %"] for h in on["hops"]])
    print(f"wrote {write_results(args.name, results)}")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
