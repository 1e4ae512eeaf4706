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

With ``--job-minutes 10,120``: a detector trained through the API as a user does it (upload,
annotate, publish, ``POST /api/v1/training-jobs``) on a local platform started as ``make run``
does, its phases read from the job's timestamps and log (submit to running, data preparation,
epochs, evaluation and registration), beside the compute-only loop: the job's own training step
over the same files' windows held in memory, same epochs and workers. Target: running to
registered <= 2x the compute-only epochs. Written to bench/results/train_job.json.

    python bench/train.py [--clips 32] [--epochs 4] [--workers 1,2] [--stt-utterances 256 --stt-epochs 4]
    python bench/train.py --job-minutes 10 [--job-epochs 20] [--job-workers 2] --job-only
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


# --- the real job path against the compute-only loop ---------------------------------------------------

JOB_CLIP_S = 10.0  # s per uploaded file
VALIDATION_SPLIT = 0.2  # the training config's default: the job trains on the other files


def compute_loop(config: dict) -> None:
    """The job's training step (``_run_epoch``) over windows already in memory: each rank its share,
    shuffled every epoch, no data pipeline, no augmentation, no checkpoint."""
    import torch

    from train_jobs.detector_loop import _run_epoch
    from train_jobs.models.detector import DetectorDims, FrameDetector
    from train_jobs.windows import WindowSpec

    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    data = torch.load(config["windows_path"], weights_only=True)
    x, y = data["x"][rank::world], data["y"][rank::world]
    torch.manual_seed(0)
    model = FrameDetector(DetectorDims(**config["dims"]))
    model.set_normalization(config["feature_mean"], config["feature_std"])
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"])
    window, batch = WindowSpec(**config["window"]), config["batch_size"]
    for epoch in range(1, config["epochs"] + 1):
        order = torch.randperm(len(x))
        batches = ({"x": x[order[i : i + batch]], "y": y[order[i : i + batch]]} for i in range(0, len(x), batch))
        _run_epoch(model, batches, pos_weight=None, window=window, optimizer=optimizer, n_classes=config["dims"]["n_classes"], device=torch.device("cpu"))
        ray.train.report({"epoch": epoch})


def job_clips(minutes: float) -> list:
    from data_pipelines.synth import make_clip

    return [make_clip(7_000 + i, duration_s=JOB_CLIP_S) for i in range(int(round(minutes * 60 / JOB_CLIP_S)))]


def run_job_path(minutes: float, epochs: int, workers: int, tmp: Path) -> dict:
    """A detector trained through the API exactly as a user does it, on a local platform started as ``make run``
    does: upload, annotate, publish, train; the phases read from the job's own timestamps and log."""
    from datetime import datetime

    from bench.load import start_platform
    from data_pipelines.audio import encode_audio
    from data_pipelines.synth import ARTIFACT_TYPES
    from serve_app.client import FathomClient

    clips = job_clips(minutes)
    platform = start_platform(tmp / f"platform-{minutes}.log")
    try:
        with FathomClient(platform.base_url, platform.key, timeout=120) as client:
            dataset = client.create_dataset(f"bench-{minutes}min", list(ARTIFACT_TYPES))["id"]
            uploaded = []
            for i, clip in enumerate(clips):
                path = tmp / f"clip-{i}.wav"
                path.write_bytes(encode_audio(clip.waveform, clip.sample_rate, "wav"))
                uploaded.append(client.upload_dataset_file(dataset, path)["audio_id"])
                path.unlink()
            client.wait(lambda: {"audio": client.dataset_audio(dataset)},
                        lambda d: all(a["processing_status"] == "ready" for a in d["audio"]) and len(d["audio"]) == len(clips),
                        interval_s=2.0, timeout_s=1800)
            set_id = client.create_annotation_set(dataset)["id"]
            annotations = [{"audio_file_id": audio_id, "artifact_type": e.artifact_type, "start_ms": int(e.start_ms), "end_ms": int(e.end_ms)}
                           for audio_id, clip in zip(uploaded, clips) for e in clip.events]
            for i in range(0, len(annotations), 500):
                client.add_annotations(dataset, set_id, annotations[i : i + 500])
            client.publish(dataset, set_id)
            config = {"epochs": epochs, "num_workers": workers, "batch_size": 64, "learning_rate": 0.003, "artifact_types": list(ARTIFACT_TYPES)}
            job = client.start_training(dataset, set_id, config)
            job = client.wait(lambda: client.training_job(job["id"]), lambda j: j["status"] in ("completed", "failed", "cancelled"),
                              interval_s=2.0, timeout_s=7200)
            assert job["status"] == "completed", job["error_message"]
            log = client.training_log(job["id"])
    finally:
        platform.stop()

    at = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()  # noqa: E731
    epoch_times = [at(e["timestamp"]) for e in log if e["message"].startswith("epoch ")]
    training_msg = next(at(e["timestamp"]) for e in log if e["message"].startswith("training ") and " epochs on " in e["message"])
    created, started, completed = at(job["created_at"]), at(job["started_at"]), at(job["completed_at"])
    return {
        "minutes": minutes, "files": len(clips), "epochs": epochs, "workers": workers,
        "submit_to_running_s": started - created,
        "running_to_first_epoch_s": epoch_times[0] - started,
        "data_preparation_s": training_msg - started,
        "epochs_s": epoch_times[-1] - training_msg,
        "mean_epoch_s": (epoch_times[-1] - epoch_times[0]) / max(1, len(epoch_times) - 1),
        "after_last_epoch_s": completed - epoch_times[-1],
        "running_to_registered_s": completed - started,
        "event_f1": job["metrics"].get("event_f1"),
        "log": [{"s": round(at(e["timestamp"]) - created, 2), "message": e["message"][:90]} for e in log],
    }


def run_compute_only(minutes: float, epochs: int, workers: int, tmp: Path) -> dict:
    """The windows (clean features) of as many clips as the job trains on, the same epochs and workers, through ``compute_loop``."""
    import torch

    from data_pipelines.features import FEATURE_VERSION, compute_features
    from data_pipelines.synth import ARTIFACT_TYPES
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from schemas.training import TrainingConfig
    from train_jobs.detector import make_loop_config
    from train_jobs.detector_data import file_windows
    from train_jobs.models.detector import feature_stats
    from train_jobs.progress import collect_reports_promptly
    from train_jobs.windows import WindowSpec

    clips = job_clips(minutes)
    clips = clips[min(max(1, round(len(clips) * VALIDATION_SPLIT)), len(clips) - 1):]  # as many files as the job trains on
    spec = WindowSpec.from_ms(500, 250)
    windows = [w for c in clips for w in file_windows(c.waveform, c.events, artifact_types=ARTIFACT_TYPES, spec=spec, feature_version=FEATURE_VERSION)]
    path = tmp / f"windows-{minutes}.pt"
    torch.save({"x": torch.from_numpy(np.stack([w["x"] for w in windows])), "y": torch.from_numpy(np.stack([w["y"] for w in windows]))}, path)
    mean, std = feature_stats(compute_features(c.waveform) for c in clips)
    options = TrainingConfig(artifact_types=list(ARTIFACT_TYPES), epochs=epochs, learning_rate=0.003, batch_size=64)
    config = make_loop_config(options, spec) | {"windows_path": str(path), "feature_mean": mean.tolist(), "feature_std": std.tolist()}
    clock = tmp / f"compute-clock-{minutes}.jsonl"
    collect_reports_promptly()  # as the job's trainer does: epochs not rounded up to the controller's polls
    t0 = time.time()
    TorchTrainer(compute_loop, train_loop_config=config, scaling_config=ScalingConfig(num_workers=workers, use_gpu=False),
                 run_config=RunConfig(name=f"compute-{minutes}-{int(t0)}", storage_path=str(tmp / "store"), callbacks=[ReportClock(str(clock))])).fit()
    total = time.time() - t0
    mean_epoch = epoch_seconds(clock, total / epochs)
    return {"minutes": minutes, "windows": len(windows), "epochs": epochs, "workers": workers, "mean_epoch_s": mean_epoch,
            "compute_s": mean_epoch * epochs, "total_s": total}


def run_loop_in_memory(minutes: float, epochs: int, workers: int, tmp: Path) -> dict:
    """The job's own training loop (augmentation, features, windows, steps, validation, checkpoints) on the same
    number of files held in memory, on a fresh local Ray: what the job's epochs cost without the platform."""
    import ray.data

    from data_pipelines.synth import ARTIFACT_TYPES
    from schemas.training import TrainingConfig
    from train_jobs.detector import make_loop_config
    from train_jobs.detector_data import events_json
    from train_jobs.detector_loop import fit_detector
    from train_jobs.windows import WindowSpec

    clips = job_clips(minutes)
    n_val = min(max(1, round(len(clips) * VALIDATION_SPLIT)), len(clips) - 1)
    rows = [{"audio_id": f"clip-{i}", "waveform": c.waveform.astype(np.float32), "events": events_json(c.events)} for i, c in enumerate(clips)]
    options = TrainingConfig(artifact_types=list(ARTIFACT_TYPES), epochs=epochs, learning_rate=0.003, batch_size=64)
    spec = WindowSpec.from_ms(options.chunk_size_ms, options.stride_ms)
    clock = tmp / f"loop-clock-{minutes}.jsonl"
    t0 = time.time()
    fit_detector(ray.data.from_items(rows[n_val:]), ray.data.from_items(rows[:n_val]), config=make_loop_config(options, spec),
                 num_workers=workers, use_gpu=False, storage_path=str(tmp / "store"), run_name=f"loop-{minutes}-{int(t0)}",
                 callbacks=[ReportClock(str(clock))], max_failures=0)
    total = time.time() - t0
    mean_epoch = epoch_seconds(clock, total / epochs)
    return {"minutes": minutes, "files": len(rows) - n_val, "epochs": epochs, "workers": workers, "mean_epoch_s": mean_epoch,
            "epochs_s": mean_epoch * epochs, "total_s": total}


def run_stt_job_path(utterances: int, epochs: int, workers: int, tmp: Path) -> dict:
    """A custom STT model fine-tuned through the v3 API as a user does it (create, PUT data, POST /run) on the
    ``medical`` base, on a local platform started as ``make run`` does; phases from the model's own log."""
    from datetime import datetime

    import httpx

    from bench.load import start_platform
    from data_pipelines.audio import encode_audio
    from data_pipelines.stt_corpus import make_utterance, utterance_seed

    overrides = {
        "FATHOM_STT_FINETUNE_EPOCHS": str(epochs),
        "FATHOM_TRAIN_NUM_WORKERS": str(workers),
        "FATHOM_STT_RATE_DATA_UPLOADS": "100000/hour",  # the vendor's 50/hour would take the benchmark hours to fill
        "FATHOM_STT_MIN_TRAINING_HOURS": "0",  # and its 5 h minimum, a day of synthesis
    }
    os.environ.update(overrides)
    platform = start_platform(tmp / f"platform-stt-{utterances}.log")
    audio_s = 0.0
    try:
        with httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {platform.key}"}, timeout=120) as c:
            mid = c.post("/api/v3/custom_models", json={"name": f"bench-{utterances}", "language": "en", "base_model": "medical"}).json()["id"]
            for i in range(utterances):
                wave, text = make_utterance(utterance_seed(811, i), domain="medical")
                audio_s += wave.size / 16_000
                while True:  # data uploads are rate limited per organization: wait as told
                    r = c.put(f"/api/v3/custom_models/{mid}/data", data={"type": "train"},
                              files={"audio_file": (f"u{i}.wav", encode_audio(wave, 16_000, "wav")), "transcript_file": (f"u{i}.txt", text.encode())})
                    if r.status_code != 429:
                        break
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                r.raise_for_status()
            c.post(f"/api/v3/custom_models/{mid}/run", json={}).raise_for_status()
            deadline = time.time() + 7200
            while (model := c.get(f"/api/v3/custom_models/{mid}").json())["training_status"] not in (4, 5) and time.time() < deadline:
                time.sleep(2.0)
            assert model["training_status"] == 4, model
            log = c.get(f"/api/v3/custom_models/{mid}/log", params={"limit": 500}).json()["log_entries"]
    finally:
        platform.stop()
        for var in overrides:
            os.environ.pop(var, None)

    at = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()  # noqa: E731
    times = {e["message"]: at(e["timestamp"]) for e in log}
    first = min(times.values())
    epoch_times = sorted(t for m, t in times.items() if "validation WER" in m)
    prepared = next(t for m, t in times.items() if m.startswith("Preprocessing complete"))
    done = max(times.values())
    return {
        "utterances": utterances, "audio_min": audio_s / 60, "epochs": epochs, "workers": workers,
        "running_to_first_epoch_s": epoch_times[0] - first,
        "data_preparation_s": prepared - first,
        "mean_epoch_s": (epoch_times[-1] - epoch_times[0]) / max(1, len(epoch_times) - 1),
        "after_last_epoch_s": done - epoch_times[-1],
        "running_to_registered_s": done - first,
        "word_error_rate": model["training_metrics"]["word_error_rate"],
        "log": [{"s": round(t - first, 2), "message": m[:90]} for m, t in sorted(times.items(), key=lambda kv: kv[1])],
    }


def run_stt_loop_in_memory(utterances: int, epochs: int, workers: int, tmp: Path) -> dict:
    """The fine-tuning loop (``fit_stt``, augmentation on as the job runs it) on the same utterances held in memory."""
    from schemas.augmentation import Augmentation
    from train_jobs.base_models import base_checkpoint
    from train_jobs.stt_loop import finetune_config, fit_stt

    train = ray.data.from_items(stt_rows(utterances, waveforms=True)).materialize()
    val = ray.data.from_items(stt_rows(max(1, round(utterances * 0.1)), waveforms=False)).materialize()
    clock, t0 = tmp / f"stt-loop-clock-{utterances}.jsonl", time.time()
    fit_stt(train, val, config=finetune_config(base_checkpoint("medical"), epochs=epochs, batch_size=8, augmentation=Augmentation()),
            num_workers=workers, use_gpu=False, storage_path=str(tmp / "store"), run_name=f"stt-loop-{utterances}-{int(t0)}",
            callbacks=[ReportClock(str(clock))], max_failures=0)
    total = time.time() - t0
    mean_epoch = epoch_seconds(clock, total / epochs)
    return {"utterances": utterances, "epochs": epochs, "workers": workers, "mean_epoch_s": mean_epoch,
            "epochs_s": mean_epoch * epochs, "total_s": total}


def bench_stt_job_path(args, tmp: Path) -> dict:
    job = run_stt_job_path(args.stt_job_utterances, args.stt_job_epochs, args.job_workers, tmp)
    fresh_local_ray()
    loop = run_stt_loop_in_memory(args.stt_job_utterances, args.stt_job_epochs, args.job_workers, tmp)
    ray.shutdown()
    against_loop(job, loop)
    print_table(
        ["utterances", "audio min", "epochs", "data prep s", "running->1st epoch s", "job epoch s", "after last epoch s",
         "running->registered s", "loop epoch s", "job / loop epochs", "job epoch / loop epoch"],
        [[job["utterances"], job["audio_min"], job["epochs"], job["data_preparation_s"], job["running_to_first_epoch_s"],
          job["mean_epoch_s"], job["after_last_epoch_s"], job["running_to_registered_s"], loop["mean_epoch_s"],
          job["job_over_loop_epochs"], job["epoch_over_loop_epoch"]]],
    )
    return job


def fresh_local_ray() -> None:
    """A local Ray on every CPU for the baselines, started once the platform has stopped."""
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def against_loop(job: dict, loop: dict) -> None:
    """Adds the loop in memory and the job's ratios to it to ``job``."""
    job["loop_in_memory"] = loop
    job["job_over_loop_epochs"] = job["running_to_registered_s"] / loop["epochs_s"]
    job["epoch_over_loop_epoch"] = job["mean_epoch_s"] / loop["mean_epoch_s"]


def merged_job_runs(runs: list[dict]) -> dict:
    """These runs, each stamped with its revision and time, plus the earlier file's runs of other sizes
    (a 2-hour run takes most of an hour: sizes are measured one at a time)."""
    import subprocess
    from datetime import datetime, timezone

    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parents[1]).stdout.strip()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs = [{**r, "revision": revision, "measured_at": stamp} for r in runs]
    path = Path(__file__).parent / "results" / "train_job.json"
    earlier = json.loads(path.read_text())["runs"] if path.exists() else []
    sizes = {r["minutes"] for r in runs}
    merged = sorted(runs + [r for r in earlier if r["minutes"] not in sizes], key=lambda r: r["minutes"])
    return {"runs": merged, "revision": revision, "measured_at": stamp}


def bench_job_path(args, tmp: Path) -> dict:
    """Each size through the API, then its compute-only loop and the job's loop in memory on a fresh local Ray
    (so neither holds the other's CPUs)."""
    out = []
    for minutes in [float(m) for m in args.job_minutes.split(",")]:
        job = run_job_path(minutes, args.job_epochs, args.job_workers, tmp)
        fresh_local_ray()
        compute = run_compute_only(minutes, args.job_epochs, args.job_workers, tmp)
        loop = run_loop_in_memory(minutes, args.job_epochs, args.job_workers, tmp) if not args.job_step_only else None
        ray.shutdown()
        job["compute_only"] = compute
        job["job_over_compute"] = job["running_to_registered_s"] / compute["compute_s"]
        job["epoch_over_compute_epoch"] = job["mean_epoch_s"] / compute["mean_epoch_s"]
        out.append(job)
        if loop is not None:
            against_loop(job, loop)
        print_table(
            ["audio min", "files", "epochs", "submit->running s", "running->1st epoch s", "epochs s", "after last epoch s",
             "running->registered s", "compute-only s", "job / compute", "epoch / compute epoch"],
            [[minutes, job["files"], job["epochs"], job["submit_to_running_s"], job["running_to_first_epoch_s"], job["epochs_s"],
              job["after_last_epoch_s"], job["running_to_registered_s"], compute["compute_s"], job["job_over_compute"],
              job["epoch_over_compute_epoch"]]],
        )
        if loop is not None:
            print_table(
                ["audio min", "loop epoch s", "loop epochs s", "job epoch s", "job / loop epochs", "job epoch / loop epoch"],
                [[minutes, loop["mean_epoch_s"], loop["epochs_s"], job["mean_epoch_s"], job["job_over_loop_epochs"], job["epoch_over_loop_epoch"]]],
            )
    return {"runs": out}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--job-minutes", default="", help="also train through the API on this many minutes of audio (comma list), beside the compute-only loop")
    p.add_argument("--job-epochs", type=int, default=20)
    p.add_argument("--job-workers", type=int, default=2)
    p.add_argument("--job-only", action="store_true", help="only the job path (results in bench/results/train_job.json)")
    p.add_argument("--job-step-only", action="store_true", help="only the bare training step beside the job (a 2-hour loop in memory adds 20 minutes)")
    p.add_argument("--stt-job-utterances", type=int, default=0, help="also fine-tune a custom STT model through the API on this many utterances")
    p.add_argument("--stt-job-epochs", type=int, default=10)
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--stt-utterances", type=int, default=256, help="STT fine-tuning utterances (0: skip)")
    p.add_argument("--stt-epochs", type=int, default=4)
    p.add_argument("--stt-workers", type=int, default=2)
    p.add_argument("--stt-repeats", type=int, default=1, help="off/on pairs, alternated")
    args = p.parse_args()

    from data_pipelines.synth import ARTIFACT_TYPES
    from schemas.training import TrainingConfig
    from train_jobs.detector import make_loop_config
    from train_jobs.detector_loop import fit_detector
    from train_jobs.windows import WindowSpec

    if args.job_minutes or args.stt_job_utterances:
        tmp = Path(tempfile.mkdtemp(prefix="fathom-train-job-"))
        runs = bench_job_path(args, tmp)["runs"] if args.job_minutes else []
        results = merged_job_runs(runs)
        if args.stt_job_utterances:
            results["stt"] = {**bench_stt_job_path(args, tmp), "revision": results["revision"], "measured_at": results["measured_at"]}
        elif (earlier := Path(__file__).parent / "results" / "train_job.json").exists():
            results["stt"] = json.loads(earlier.read_text()).get("stt")
        print(f"wrote {write_results('train_job', results)}")
        if args.job_only:
            return
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = build_files(args.clips)
    spec = WindowSpec.from_ms(500, 250)
    ds = ray.data.from_items(rows).materialize()
    val = ray.data.from_items(rows[: max(1, len(rows) // 10)])
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
        config = make_loop_config(options, spec)
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
