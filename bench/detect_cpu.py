"""Detector inference on one CPU thread: the serving path against the window-by-window network.

Both paths decode the same WAV files, compute the same features and report detections with
the API's defaults; they differ in the forward pass:

- ``windows``: the path before the local path ran per file: every analysis window through the
  whole network on its own, as it trains (``split_windows`` + ``forward_windows``), and the
  features as ``--baseline-rev`` computed them (the same values, by slower code);
- ``file``: the serving path (``train_jobs.detection.forward_file``): the local path once over
  the file, the context path per window.

Throughput is audio seconds per second of decode + features + forward + detections, the
best of ``--repeats`` alternating passes, with each stage's share. Quality: a detector trained
by the job's own loop (or ``--model``) scores held-out files of other seeds, clean and under the
``real_world`` preset, through both paths; the table gives event F1 per class and how many
files get exactly the same detections. Prints tables and writes bench/results/detect_cpu.json.

    python bench/detect_cpu.py [--files 32] [--clip-s 30] [--repeats 3] [--model CHECKPOINT | --save-model PATH] [--train-clips 24] [--epochs 12] [--baseline-rev REV]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, write_results  # noqa: E402

PATHS = ("windows", "file")


def chunks_by(path: str, model, meta, features: np.ndarray) -> np.ndarray:
    from train_jobs.detection import forward_file, forward_windows
    from train_jobs.windows import split_windows

    if path == "windows":
        return forward_windows(model, split_windows(features, meta.window), meta.window)
    return forward_file(model, features, meta.window)


def detections_by(path: str, model, meta, features: np.ndarray, duration_ms: int) -> list:
    from schemas.inference import InferenceConfig
    from train_jobs.detection import detections_from_chunks

    chunks = chunks_by(path, model, meta, features)
    return detections_from_chunks(chunks, features.shape[0], meta.window, meta.artifact_types, InferenceConfig(), duration_ms)


def baseline_features(rev: str):
    """``compute_features`` as ``data_pipelines/features.py`` had it at git revision ``rev`` (same values)."""
    import subprocess
    import types

    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "-C", str(root), "show", f"{rev}:data_pipelines/features.py"], capture_output=True, check=True, text=True).stdout
    module = types.ModuleType(f"features_at_{rev}")
    exec(compile(source, f"{rev}:data_pipelines/features.py", "exec"), module.__dict__)
    return module.compute_features


def timed_pass(path: str, model, meta, audio: list[bytes], featurize) -> dict[str, float]:
    """Seconds per stage over every file, and the audio seconds."""
    from data_pipelines.audio import decode_audio
    from schemas.inference import InferenceConfig
    from train_jobs.detection import detections_from_chunks

    stages = {"decode": 0.0, "features": 0.0, "forward": 0.0, "detections": 0.0}
    seconds = 0.0
    for data in audio:
        t0 = time.perf_counter()
        decoded = decode_audio(data)
        t1 = time.perf_counter()
        feats = featurize(decoded.waveform, version=meta.feature_version)
        t2 = time.perf_counter()
        chunks = chunks_by(path, model, meta, feats)
        t3 = time.perf_counter()
        detections_from_chunks(chunks, feats.shape[0], meta.window, meta.artifact_types, InferenceConfig(), decoded.duration_ms)
        t4 = time.perf_counter()
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[name] += dt
        seconds += decoded.duration_ms / 1000
    return {**stages, "audio_s": seconds}


def _events(detections: list) -> list[tuple]:
    """Type and bounds of each detection: what must not change (confidence may move in its last decimals)."""
    return [(e.artifact_type, e.start_ms, e.end_ms) for e in detections]


def trained_model(args):
    """A detector trained by the job's loop on clean synthetic files (or the checkpoint given)."""
    from train_jobs.models.detector import load_checkpoint

    if args.model:
        return load_checkpoint(Path(args.model).read_bytes())
    import ray

    from bench.robustness import file_rows, train_model

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    train_ds = ray.data.from_items(file_rows(range(args.train_clips))).materialize()
    val_rows = file_rows(range(5_000, 5_000 + max(2, args.train_clips // 6)))
    data, (model, meta), train_s = train_model(
        "augmented", train_ds, val_rows, epochs=args.epochs, workers=2, storage=tempfile.mkdtemp(prefix="fathom-detect-cpu-"), augmentation={}
    )
    ray.shutdown()
    if args.save_model:
        Path(args.save_model).write_bytes(data)
    print(f"trained a detector in {train_s:.0f} s")
    return model, meta


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=32)
    p.add_argument("--clip-s", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", help="a detector checkpoint (default: train one)")
    p.add_argument("--save-model", help="write the trained checkpoint here (for --model in a later run)")
    p.add_argument("--train-clips", type=int, default=24)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--test-clips", type=int, default=12)
    p.add_argument("--baseline-rev", default="421b668", help="git revision whose feature code the windows path runs")
    args = p.parse_args()

    import torch

    from bench.robustness import file_rows
    from data_pipelines.audio import duration_ms, encode_audio
    from data_pipelines.condition_chain import preset
    from data_pipelines.events import event_metrics
    from data_pipelines.features import compute_features
    from data_pipelines.synth import make_clip
    from train_jobs.detector_data import events_of

    model, meta = trained_model(args)
    torch.set_num_threads(1)

    quality, quality_rows = [], []
    for condition in ("clean", "real_world"):
        rows = file_rows(range(10_000, 10_000 + args.test_clips), preset(condition))
        files = [(compute_features(r["waveform"], version=meta.feature_version), duration_ms(r["waveform"]), events_of(r["events"])) for r in rows]
        found = {path: [detections_by(path, model, meta, f, d) for f, d, _ in files] for path in PATHS}
        same = sum(_events(a) == _events(b) for a, b in zip(found["windows"], found["file"]))
        drift = max((abs(x.confidence - y.confidence) for a, b in zip(found["windows"], found["file"]) if _events(a) == _events(b)
                     for x, y in zip(a, b)), default=0.0)
        for path in PATHS:
            m = event_metrics([(list(ref), dets) for (_, _, ref), dets in zip(files, found[path])], meta.artifact_types)
            per_class = {t: round(m["per_class"][t]["f1_score"], 3) for t in meta.artifact_types}
            macro = round(float(np.mean(list(per_class.values()))), 3)
            quality.append({"condition": condition, "path": path, "macro_f1": macro, "per_class_f1": per_class,
                            "files_with_identical_events": same, "files": len(files), "max_confidence_difference": drift})
            quality_rows.append([condition, path, macro, *per_class.values(), f"{same}/{len(files)}", f"{drift:.4f}"])
    print_table(["condition", "path", "macro F1", *meta.artifact_types, "same events", "max conf. diff"], quality_rows)

    clips = [make_clip(seed, duration_s=args.clip_s) for seed in range(min(args.files, 16))]
    audio = [encode_audio(clips[i % len(clips)].waveform, clips[i % len(clips)].sample_rate, "wav") for i in range(args.files)]
    featurize = {"windows": baseline_features(args.baseline_rev), "file": compute_features}
    for path in PATHS:
        np.testing.assert_array_equal(featurize[path](clips[0].waveform), compute_features(clips[0].waveform))
        timed_pass(path, model, meta, audio[:2], featurize[path])  # warm-up
    passes: dict[str, list[dict]] = {path: [] for path in PATHS}
    for _ in range(args.repeats):
        for path in PATHS:
            passes[path].append(timed_pass(path, model, meta, audio, featurize[path]))
    speed, speed_rows = [], []
    for path in PATHS:
        best = min(passes[path], key=lambda r: sum(r[k] for k in ("decode", "features", "forward", "detections")))
        total = sum(best[k] for k in ("decode", "features", "forward", "detections"))
        speed.append({"path": path, "audio_s_per_s": best["audio_s"] / total, "stage_s": {k: best[k] for k in ("decode", "features", "forward", "detections")},
                      "audio_s": best["audio_s"]})
        speed_rows.append([path, best["audio_s"] / total, *(f"{100 * best[k] / total:.0f} %" for k in ("decode", "features", "forward", "detections"))])
    ratio = speed[1]["audio_s_per_s"] / speed[0]["audio_s_per_s"]
    print_table(["path", "audio s/s (1 thread)", "decode", "features", "forward", "detections"], speed_rows)
    print(f"file / windows: {ratio:.2f}x")
    setup = {"baseline_rev": args.baseline_rev, "files": args.files, "clip_s": args.clip_s, "repeats": args.repeats, "threads": 1, "model": args.model or f"trained: {args.train_clips} clips, {args.epochs} epochs",
             "test_clips": args.test_clips}
    print(f"wrote {write_results('detect_cpu', {'setup': setup, 'speed': speed, 'file_over_windows': ratio, 'quality': quality})}")


if __name__ == "__main__":
    main()
