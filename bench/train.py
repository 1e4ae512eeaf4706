"""Detector training throughput: Ray Train with 1 vs 2 workers on the same window dataset.

Windows/s per epoch is measured from the controller's report times (epochs 2..n, so worker
start-up and the first epoch's dataset warm-up are excluded). The same run with use_gpu=True
is added when the cluster has GPUs. Prints a table and writes bench/results/train.json.

    python bench/train.py [--clips 32] [--epochs 4] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray.train  # noqa: E402

from bench.common import print_table, write_results  # noqa: E402


class ReportClock(ray.train.UserCallback):
    """Appends the wall time of every report to a file (the callback runs in the controller)."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": time.time(), "epoch": metrics[0].get("epoch")}) + "\n")


def build_windows(n_clips: int):
    from data_pipelines.features import compute_features
    from data_pipelines.synth import ARTIFACT_TYPES, make_clip
    from train_jobs.windows import WindowSpec, frame_labels, make_training_windows

    spec = WindowSpec.from_ms(500, 250)
    rows, feats = [], []
    for seed in range(n_clips):
        clip = make_clip(seed, duration_s=15.0)
        f = compute_features(clip.waveform)
        feats.append(f)
        rows += make_training_windows(f, frame_labels(f.shape[0], clip.events, ARTIFACT_TYPES), spec)
    allf = np.concatenate(feats)
    return rows, spec, allf.mean(0), allf.std(0) + 1e-3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    from data_pipelines.features import N_FEATURES
    from data_pipelines.synth import ARTIFACT_TYPES
    from train_jobs.detector_loop import fit_detector
    from train_jobs.models.detector import DetectorDims

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows, spec, mean, std = build_windows(args.clips)
    ds = ray.data.from_items(rows).materialize()
    val = ray.data.from_items(rows[: max(1, len(rows) // 10)]).materialize()
    has_gpu = bool(ray.cluster_resources().get("GPU"))
    modes = [(int(w), False) for w in args.workers.split(",")] + ([(int(w), True) for w in args.workers.split(",")] if has_gpu else [])
    config = {
        "epochs": args.epochs, "learning_rate": 0.003, "batch_size": args.batch_size,
        "dims": DetectorDims(n_features=N_FEATURES, n_classes=len(ARTIFACT_TYPES)).__dict__,
        "artifact_types": list(ARTIFACT_TYPES), "window": spec.__dict__,
        "feature_mean": mean.tolist(), "feature_std": std.tolist(), "seed": 0,
    }
    tmp = Path(tempfile.mkdtemp(prefix="fathom-train-bench-"))
    table, runs = [], []
    for workers, gpu in modes:
        clock = tmp / f"clock-{workers}-{gpu}.jsonl"
        t0 = time.time()
        fit_detector(ds, val, config=config, num_workers=workers, use_gpu=gpu, storage_path=str(tmp / "store"),
                     run_name=f"bench-{workers}-{gpu}-{int(t0)}", callbacks=[ReportClock(str(clock))], max_failures=0)
        total = time.time() - t0
        times = [json.loads(line)["t"] for line in clock.read_text().splitlines()]
        epoch_s = float(np.median(np.diff(times))) if len(times) > 1 else total
        r = {"workers": workers, "gpu": gpu, "windows": len(rows), "epoch_s": epoch_s, "windows_per_s": len(rows) / epoch_s, "total_s": total}
        runs.append(r)
        table.append([workers, gpu, len(rows), epoch_s, r["windows_per_s"], total])
    base = next(r for r in runs if r["workers"] == 1 and not r["gpu"])
    for r in runs:
        r["speedup_vs_1_cpu_worker"] = r["windows_per_s"] / base["windows_per_s"]
    print_table(["workers", "gpu", "windows", "epoch s", "windows/s", "total s"], table)
    print("\n".join(f"{r['workers']} worker(s){' gpu' if r['gpu'] else ''}: {r['speedup_vs_1_cpu_worker']:.2f}x of 1 CPU worker" for r in runs))
    print(f"wrote {write_results('train', {'runs': runs, 'epochs': args.epochs, 'batch_size': args.batch_size})}")
    ray.shutdown()


if __name__ == "__main__":
    main()
