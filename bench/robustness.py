"""Detector robustness: trained on clean recordings, scored on held-out recordings under real-world conditions.

Every model is trained by the job's own loop (``make_loop_config`` + ``fit_detector`` on
file rows, as ``train_jobs.detector`` runs it) on the same clean synthetic files, whose
glitches include the 3-10 ms dropouts and lone clicks real lines produce, and is scored
event-based (as the API scores models) on held-out clips of other seeds under each
condition preset. Rows, in one run:

- ``baseline``: feature set 1 (10 ms statistics only), no augmentation, positive frames
  weighted by sqrt(neg/pos): the detector before this work;
- ``transients``: feature set 2, no augmentation, today's positive weighting;
- ``set1_augmented``: feature set 1 with the default augmentation (what augmentation alone does);
- ``augmented``: feature set 2 with the default training-time augmentation: today's default.

Prints a table per condition and class and writes bench/results/robustness.json.

    python bench/robustness.py [--train-clips 48] [--test-clips 12] [--epochs 20] [--workers 2]
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

CONDITIONS = ("clean", "noisy", "telephone", "codecs", "real_world", "hard")
ALL_GLITCHES = ("dropout", "click", "short_dropout", "lone_click")
MODELS = {  # feature set, augmentation, positive-weight power (None: the loop's default)
    "baseline": (1, False, 0.5),
    "transients": (2, False, None),
    "set1_augmented": (1, True, None),
    "augmented": (2, True, None),
}


def hard_conditions():
    """Noise at 12-25 dB SNR (mostly room and pink), telephone band on 40 % of files, lossy codecs on half."""
    from data_pipelines import condition_chain as CC

    return CC.Conditions(
        room_tone=CC.RoomTone(probability=0.8),
        noise=CC.Noise(probability=0.9, kinds=("pink", "room", "white"), snr_db=(12.0, 25.0)),
        telephone=CC.Telephone(probability=0.4),
        gain=CC.Gain(probability=0.7),
        codec=CC.Codec(probability=0.5),
    )


def conditions_named(name: str):
    from data_pipelines.condition_chain import preset

    return hard_conditions() if name == "hard" else preset(name)


def file_rows(seeds, conditions=None, *, glitch_kinds=ALL_GLITCHES, clip_s: float = 15.0) -> list[dict]:
    from data_pipelines.synth import make_clip
    from train_jobs.detector_data import events_json

    rows = []
    for seed in seeds:
        clip = make_clip(seed, duration_s=clip_s, glitch_kinds=glitch_kinds, conditions=conditions)
        rows.append({"audio_id": f"clip-{seed}", "waveform": clip.waveform, "events": events_json(clip.events)})
    return rows


def train_model(name: str, train_ds, val_rows, *, epochs: int, workers: int, storage: str, augmentation: dict):
    import ray

    from data_pipelines.synth import ARTIFACT_TYPES
    from schemas.training import TrainingConfig
    from train_jobs.detector import make_loop_config
    from train_jobs.detector_data import clean_feature_stats, validation_windows
    from train_jobs.detector_loop import checkpoint_bytes, fit_detector
    from train_jobs.models.detector import load_checkpoint
    from train_jobs.windows import WindowSpec

    version, augment, pos_weight_power = MODELS[name]
    options = TrainingConfig(artifact_types=list(ARTIFACT_TYPES), epochs=epochs, augmentation={**augmentation, "enabled": augment})
    spec = WindowSpec.from_ms(options.chunk_size_ms, options.stride_ms)
    mean, std = clean_feature_stats(train_ds, version)
    val = validation_windows(ray.data.from_items(val_rows), artifact_types=ARTIFACT_TYPES, spec=spec, feature_version=version)
    config = make_loop_config(options, spec, mean, std, feature_version=version)
    if pos_weight_power is not None:
        config["pos_weight_power"] = pos_weight_power
    t0 = time.time()
    result = fit_detector(train_ds, val, config=config, num_workers=workers, use_gpu=False, storage_path=storage,
                          run_name=f"robustness-{name}-{int(t0)}", max_failures=0)
    data = checkpoint_bytes(result.checkpoint)
    return data, load_checkpoint(data), time.time() - t0


def score(model, meta, rows) -> dict:
    from data_pipelines.features import compute_features
    from train_jobs.detector_data import events_of
    from train_jobs.detector_eval import evaluate_detector

    files = [(compute_features(r["waveform"], version=meta.feature_version), events_of(r["events"])) for r in rows]
    return evaluate_detector(model, meta, files)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-clips", type=int, default=48)
    p.add_argument("--test-clips", type=int, default=12)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--glitch-kinds", default=",".join(ALL_GLITCHES))
    p.add_argument("--clip-s", type=float, default=15.0)
    p.add_argument("--augmentation", default="{}", help="JSON overrides of the training augmentation options")
    p.add_argument("--result-name", default="robustness", help="bench/results/<name>.json")
    p.add_argument("--save-dir", help="also write each model's checkpoint here")
    args = p.parse_args()
    import json

    import ray

    from data_pipelines.synth import ARTIFACT_TYPES

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    clips = {"glitch_kinds": tuple(args.glitch_kinds.split(",")), "clip_s": args.clip_s}
    train_rows = file_rows(range(args.train_clips), **clips)
    val_rows = file_rows(range(5_000, 5_000 + max(2, args.train_clips // 6)), **clips)
    tests = {c: file_rows(range(10_000, 10_000 + args.test_clips), conditions_named(c), **clips) for c in CONDITIONS}
    train_ds = ray.data.from_items(train_rows).materialize()
    storage = tempfile.mkdtemp(prefix="fathom-robustness-")

    runs, table = [], []
    for name in args.models.split(","):
        data, (model, meta), train_s = train_model(
            name, train_ds, val_rows, epochs=args.epochs, workers=args.workers, storage=storage, augmentation=json.loads(args.augmentation)
        )
        if args.save_dir:
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.save_dir) / f"{name}.pt").write_bytes(data)
        for condition, rows in tests.items():
            m = score(model, meta, rows)
            per_class = {t: round(m["per_class"][t]["f1_score"], 3) for t in ARTIFACT_TYPES}
            macro = float(np.mean(list(per_class.values())))
            runs.append({"model": name, "condition": condition, "macro_f1": round(macro, 3), "per_class_f1": per_class,
                         "per_class": m["per_class"], "event_f1": round(m["f1_score"], 3), "train_s": round(train_s, 1)})
            table.append([name, condition, macro, *per_class.values(), m["f1_score"]])
            print_table(["model", "condition", "macro F1", *ARTIFACT_TYPES, "event F1"], table[-1:])
    print()
    print_table(["model", "condition", "macro F1", *ARTIFACT_TYPES, "event F1"], table)
    setup = {"train_clips": args.train_clips, "test_clips": args.test_clips, "epochs": args.epochs, "workers": args.workers,
             "augmentation_overrides": json.loads(args.augmentation),
             "clip_s": args.clip_s, "glitch_kinds": list(clips["glitch_kinds"]), "conditions": list(CONDITIONS)}
    print(f"wrote {write_results(args.result_name, {'setup': setup, 'runs': runs})}")
    ray.shutdown()


if __name__ == "__main__":
    main()
