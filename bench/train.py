"""Detector training throughput: Ray Train with 1 vs 2 workers, augmentation off and on, same files.

Each epoch a worker featurises and windows its files (and, with augmentation on, first
draws their recording conditions), so the cost of augmentation is the ratio of epoch times
of the same run with it off and on. Windows/s per epoch is measured from the controller's
report times (epochs 2..n, so worker start-up and the first epoch are excluded). The same
runs with use_gpu=True are added when the cluster has GPUs. Prints a table and writes
bench/results/train.json.

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


def build_files(n_clips: int):
    from data_pipelines.synth import make_clip
    from train_jobs.detector_data import events_json

    rows = []
    for seed in range(n_clips):
        clip = make_clip(seed, duration_s=15.0)
        rows.append({"audio_id": f"clip-{seed}", "waveform": clip.waveform, "events": events_json(clip.events)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    from data_pipelines.features import FEATURE_VERSION
    from data_pipelines.synth import ARTIFACT_TYPES
    from schemas.training import TrainingConfig
    from train_jobs.detector import make_loop_config
    from train_jobs.detector_data import clean_feature_stats, validation_windows
    from train_jobs.detector_loop import fit_detector
    from train_jobs.windows import WindowSpec

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = build_files(args.clips)
    spec = WindowSpec.from_ms(500, 250)
    ds = ray.data.from_items(rows).materialize()
    val = validation_windows(ray.data.from_items(rows[: max(1, len(rows) // 10)]), artifact_types=ARTIFACT_TYPES, spec=spec, feature_version=FEATURE_VERSION)
    mean, std, _ = clean_feature_stats(ds, FEATURE_VERSION)
    n_windows = sum(spec.num_windows(-(-len(r["waveform"]) // 160)) for r in rows)
    has_gpu = bool(ray.cluster_resources().get("GPU"))
    workers = [int(w) for w in args.workers.split(",")]
    modes = [(w, False, aug) for aug in (False, True) for w in workers]
    modes += [(w, True, aug) for aug in (False, True) for w in workers] if has_gpu else []
    tmp = Path(tempfile.mkdtemp(prefix="fathom-train-bench-"))
    table, runs = [], []
    for n_workers, gpu, aug in modes:
        options = TrainingConfig(
            artifact_types=list(ARTIFACT_TYPES), epochs=args.epochs, learning_rate=0.003, batch_size=args.batch_size,
            augmentation={"enabled": aug},
        )
        config = make_loop_config(options, spec, mean, std)
        clock = tmp / f"clock-{n_workers}-{gpu}-{aug}.jsonl"
        t0 = time.time()
        fit_detector(ds, val, config=config, num_workers=n_workers, use_gpu=gpu, storage_path=str(tmp / "store"),
                     run_name=f"bench-{n_workers}-{gpu}-{aug}-{int(t0)}", callbacks=[ReportClock(str(clock))], max_failures=0)
        total = time.time() - t0
        times = [json.loads(line)["t"] for line in clock.read_text().splitlines()]
        epoch_s = float(np.median(np.diff(times))) if len(times) > 1 else total
        r = {"workers": n_workers, "gpu": gpu, "augmentation": aug, "windows": n_windows, "epoch_s": epoch_s,
             "windows_per_s": n_windows / epoch_s, "total_s": total}
        runs.append(r)
        table.append([n_workers, gpu, aug, n_windows, epoch_s, r["windows_per_s"], total])
    base = next(r for r in runs if r["workers"] == 1 and not r["gpu"] and not r["augmentation"])
    for r in runs:
        r["speedup_vs_1_cpu_worker"] = r["windows_per_s"] / base["windows_per_s"]
        clean = next(c for c in runs if (c["workers"], c["gpu"], c["augmentation"]) == (r["workers"], r["gpu"], False))
        r["epoch_time_vs_no_augmentation"] = r["epoch_s"] / clean["epoch_s"]
    print_table(["workers", "gpu", "augmentation", "windows", "epoch s", "windows/s", "total s"], table)
    print("\n".join(
        f"{r['workers']} worker(s){' gpu' if r['gpu'] else ''}{' augmented' if r['augmentation'] else ''}: "
        f"{r['speedup_vs_1_cpu_worker']:.2f}x of 1 CPU worker, epoch {r['epoch_time_vs_no_augmentation']:.2f}x of no augmentation"
        for r in runs
    ))
    print(f"wrote {write_results('train', {'runs': runs, 'epochs': args.epochs, 'batch_size': args.batch_size})}")
    ray.shutdown()


if __name__ == "__main__":
    main()
