"""Training throughput: the detector with 1 vs 2 workers and augmentation off vs on, and STT
fine-tuning with augmentation on vs off.

Epoch time is the mean over epochs 2..n of the controller's report times (worker start-up
and the first epoch's dataset warm-up are excluded; reports reach the controller on a ~1 s
poll, so an epoch must last well over that). Detector: each epoch a worker featurises and
windows its files (with augmentation on, after drawing their recording conditions), so the
cost of augmentation is the ratio of epoch times with it on and off; the same runs with
use_gpu=True are added when the cluster has GPUs. STT: the ``medical`` base fine-tuned on
synthetic utterances fed as the custom-model job feeds them: clean log-mel rows when
augmentation is off, 16 kHz waveform rows perturbed and featurised in the training iterator
when it is on (default options); the ratio is on / off. Prints tables and writes
bench/results/train.json.

    python bench/train.py [--clips 32] [--epochs 4] [--workers 1,2] [--stt-utterances 256 --stt-epochs 4]
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


def stt_rows(n: int, *, waveforms: bool) -> list[dict]:
    """Training rows as data_pipelines.stt_preprocess makes them (waveforms: for augmentation)."""
    import torch

    from data_pipelines.stt_corpus import make_utterance, utterance_seed
    from data_pipelines.text import normalize_transcript
    from data_pipelines.stt_features import log_mel

    rows = []
    for i in range(n):
        wave, text = make_utterance(utterance_seed(811, i), domain="medical")
        if waveforms:
            rows.append({"audio": wave.astype(np.float16), "text": normalize_transcript(text), "id": f"utt-{i}"})
        else:
            feats, _ = log_mel(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
            rows.append({"features": feats[0].numpy().astype(np.float16), "text": normalize_transcript(text)})
    return rows


def epoch_seconds(clock: Path, fallback: float) -> float:
    times = [json.loads(line)["t"] for line in clock.read_text().splitlines()]
    return (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else fallback


def bench_stt(args, tmp: Path) -> tuple[list[dict], list[list]]:
    """Fine-tuning epochs with augmentation off then on (repeated), on the same utterances."""
    from schemas.augmentation import Augmentation
    from train_jobs.base_models import base_checkpoint
    from train_jobs.stt_loop import finetune_config, fit_stt

    datasets = {on: ray.data.from_items(stt_rows(args.stt_utterances, waveforms=on)).materialize() for on in (False, True)}
    val = ray.data.from_items(stt_rows(max(1, args.stt_utterances // 8), waveforms=False)).materialize()
    runs = []
    for repeat in range(args.stt_repeats):
        for on in (False, True):
            config = finetune_config(
                base_checkpoint("medical"), epochs=args.stt_epochs, batch_size=8, augmentation=Augmentation(enabled=on)
            )
            clock, t0 = tmp / f"stt-clock-{on}-{repeat}.jsonl", time.time()
            fit_stt(datasets[on], val, config=config, num_workers=args.stt_workers, use_gpu=False,
                    storage_path=str(tmp / "store"), run_name=f"bench-stt-{on}-{repeat}-{int(t0)}",
                    callbacks=[ReportClock(str(clock))], max_failures=0)
            total = time.time() - t0
            epoch_s = epoch_seconds(clock, total)
            runs.append({"augmentation": on, "workers": args.stt_workers, "utterances": args.stt_utterances,
                         "epoch_s": epoch_s, "utterances_per_s": args.stt_utterances / epoch_s, "total_s": total})
    for off, on in zip(runs[::2], runs[1::2]):  # each on run over the off run just before it
        off["epoch_time_vs_off"], on["epoch_time_vs_off"] = 1.0, on["epoch_s"] / off["epoch_s"]
    table = [["on" if r["augmentation"] else "off", r["workers"], r["utterances"], r["epoch_s"], r["utterances_per_s"],
              r["epoch_time_vs_off"], r["total_s"]] for r in runs]
    return runs, table


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--stt-utterances", type=int, default=256, help="STT fine-tuning utterances (0: skip)")
    p.add_argument("--stt-epochs", type=int, default=4)
    p.add_argument("--stt-workers", type=int, default=2)
    p.add_argument("--stt-repeats", type=int, default=1, help="off/on pairs, alternated")
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
    mean, std = clean_feature_stats(ds, FEATURE_VERSION)
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
        epoch_s = epoch_seconds(clock, total)
        r = {"workers": n_workers, "gpu": gpu, "augmentation": aug, "windows": n_windows, "epoch_s": epoch_s,
             "windows_per_s": n_windows / epoch_s, "total_s": total}
        runs.append(r)
        table.append([n_workers, gpu, aug, n_windows, epoch_s, r["windows_per_s"], total])
    base = min((r for r in runs if not r["gpu"] and not r["augmentation"]), key=lambda r: r["workers"])
    for r in runs:
        r["speedup_vs_1_cpu_worker"] = r["windows_per_s"] / base["windows_per_s"]
        clean = next(c for c in runs if (c["workers"], c["gpu"], c["augmentation"]) == (r["workers"], r["gpu"], False))
        r["epoch_time_vs_no_augmentation"] = r["epoch_s"] / clean["epoch_s"]
    print_table(["workers", "gpu", "augmentation", "windows", "epoch s", "windows/s", "total s"], table)
    print("\n".join(
        f"{r['workers']} worker(s){' gpu' if r['gpu'] else ''}{' augmented' if r['augmentation'] else ''}: "
        f"{r['speedup_vs_1_cpu_worker']:.2f}x of {base['workers']} CPU worker(s), epoch {r['epoch_time_vs_no_augmentation']:.2f}x of no augmentation"
        for r in runs
    ))
    results = {"runs": runs, "epochs": args.epochs, "batch_size": args.batch_size}
    if args.stt_utterances:
        stt_runs, stt_table = bench_stt(args, tmp)
        print_table(["augmentation", "workers", "utterances", "epoch s", "utterances/s", "epoch time / off", "total s"], stt_table)
        # A shared host's load drifts less within an off/on pair than across the whole run.
        pairs = [r["epoch_time_vs_off"] for r in stt_runs if r["augmentation"]]
        ratio = float(np.median(pairs))
        print(f"STT fine-tuning epoch with augmentation: {ratio:.2f}x the time without (pairs: "
              + ", ".join(f"{p:.2f}" for p in pairs) + ")")
        results["stt"] = {"runs": stt_runs, "epochs": args.stt_epochs, "batch_size": 8,
                          "pair_ratios": pairs, "augmentation_epoch_time_ratio": ratio}
    print(f"wrote {write_results('train', results)}")
    ray.shutdown()


if __name__ == "__main__":
    main()
