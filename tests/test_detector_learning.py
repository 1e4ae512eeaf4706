"""The detector learns every artifact type, trained with Ray Train DDP on 2 CPU workers.

Synthetic speech clips with injected artifacts -> features -> windows in a Ray Dataset
-> ``fit_detector`` (2 workers, gloo) -> event-based F1 on held-out clips, scored as the
API scores it. The same run is then resumed for more epochs from its checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import ray.train

from data_pipelines.features import N_FEATURES, compute_features
from data_pipelines.synth import ARTIFACT_TYPES, make_clip
from train_jobs.detector_eval import evaluate_detector
from train_jobs.detector_loop import checkpoint_bytes, fit_detector
from train_jobs.models.detector import feature_stats, load_checkpoint
from train_jobs.windows import WindowSpec, frame_labels, make_training_windows

N_TRAIN_CLIPS = 24
N_HELDOUT_CLIPS = 8
FIRST_EPOCHS = 8
RESUMED_EPOCHS = 10
TRAIN_STRIDE_MS = 100  # denser training windows than the 250 ms inference stride
MIN_EVENT_F1 = 0.8

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    if ray.is_initialized():  # a session-wide cluster is already up: share it
        yield
        return
    ray.init(address="local", num_cpus=4, num_gpus=0, include_dashboard=False)
    yield
    ray.shutdown()


class _ReportLog(ray.train.UserCallback):
    """Appends rank 0's metrics of every report to a JSON-lines file (runs in the controller)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def after_report(self, run_context, metrics, checkpoint):
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics[0]) + "\n")


def _clips(seeds):
    out = []
    for seed in seeds:
        clip = make_clip(seed)
        out.append((compute_features(clip.waveform), clip.events))
    return out


def _window_dataset(clips, spec: WindowSpec):
    """One row per clip (features, frame targets), expanded to windows by Ray Data."""
    rows = [{"features": f, "labels": frame_labels(len(f), events, ARTIFACT_TYPES)} for f, events in clips]
    return (
        ray.data.from_items(rows)
        .flat_map(lambda row: make_training_windows(row["features"], row["labels"], spec))
        .materialize()
    )


def test_detector_learns_every_artifact_type_and_resumes(ray_cluster, tmp_path):
    clips = _clips(range(100, 100 + N_TRAIN_CLIPS + N_HELDOUT_CLIPS))
    train, heldout = clips[:N_TRAIN_CLIPS], clips[N_TRAIN_CLIPS:]
    spec = WindowSpec.from_ms()
    train_ds = _window_dataset(train, WindowSpec.from_ms(stride_ms=TRAIN_STRIDE_MS))
    val_ds = _window_dataset(heldout, spec)
    mean, std = feature_stats(f for f, _ in train)
    config = {
        "epochs": FIRST_EPOCHS,
        "learning_rate": 3e-3,
        "batch_size": 32,  # per worker: 64 per step over 2 workers
        "dims": {"n_features": N_FEATURES, "n_classes": len(ARTIFACT_TYPES)},
        "artifact_types": list(ARTIFACT_TYPES),
        "window": vars(spec),
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "seed": 0,
    }
    log = tmp_path / "reports.jsonl"
    fit = dict(
        num_workers=2,
        use_gpu=False,
        storage_path=str(tmp_path / "runs"),
        run_name="detector-learning",
        callbacks=[_ReportLog(log)],
    )

    started = time.perf_counter()
    first = fit_detector(train_ds, val_ds, config=config, **fit)
    first_s = time.perf_counter() - started
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in reports] == list(range(1, FIRST_EPOCHS + 1))
    assert first.metrics["epoch"] == FIRST_EPOCHS
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]
    model, meta = load_checkpoint(checkpoint_bytes(first.checkpoint))
    assert meta.extra["epoch"] == FIRST_EPOCHS
    assert meta.artifact_types == ARTIFACT_TYPES and meta.window == spec

    log.write_text("")
    started = time.perf_counter()
    resumed = fit_detector(train_ds, val_ds, config={**config, "epochs": RESUMED_EPOCHS}, **fit)
    resumed_s = time.perf_counter() - started
    reports_resumed = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in reports_resumed] == list(range(FIRST_EPOCHS + 1, RESUMED_EPOCHS + 1))
    # continued from the saved weights, not from scratch
    assert reports_resumed[0]["train_loss"] < 0.5 * reports[0]["train_loss"]

    model, meta = load_checkpoint(checkpoint_bytes(resumed.checkpoint))
    assert meta.extra["epoch"] == RESUMED_EPOCHS
    scores = evaluate_detector(model, meta, heldout)
    summary = {k: round(v["f1_score"], 3) for k, v in scores["per_class"].items()}
    print(f"fit {first_s:.0f} s + resume {resumed_s:.0f} s; held-out event F1 {summary}; last report {reports_resumed[-1]}")
    json.dumps(scores)  # JSON-safe, as stored with the model
    for artifact_type in ARTIFACT_TYPES:
        per_class = scores["per_class"][artifact_type]
        assert per_class["support"] > 0, artifact_type
        assert per_class["f1_score"] >= MIN_EVENT_F1, (artifact_type, per_class)
    assert reports_resumed[-1]["val_frame_f1"] > 0.8


def test_zero_workers_train_in_process(ray_cluster, tmp_path):
    """Train V2 local mode: the same loop in this process, no controller, no persisted checkpoints."""
    rng = np.random.default_rng(0)
    spec = WindowSpec.from_ms()
    rows = []
    for _ in range(3):
        feats = rng.normal(size=(300, N_FEATURES)).astype(np.float32)
        labels = (rng.random((300, len(ARTIFACT_TYPES))) < 0.1).astype(np.float32)
        rows += make_training_windows(feats, labels, spec)
    ds = ray.data.from_items(rows)
    config = {
        "epochs": 2,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "dims": {"n_features": N_FEATURES, "n_classes": len(ARTIFACT_TYPES), "channels": 16, "hidden": 16},
        "artifact_types": list(ARTIFACT_TYPES),
        "window": vars(spec),
        "feature_mean": [0.0] * N_FEATURES,
        "feature_std": [1.0] * N_FEATURES,
        "seed": 0,
    }
    result = fit_detector(
        ds, ds, config=config, num_workers=0, use_gpu=False, storage_path=str(tmp_path), run_name="local"
    )
    try:
        assert result.metrics["epoch"] == 2 and np.isfinite(result.metrics["val_loss"])
        model, meta = load_checkpoint(checkpoint_bytes(result.checkpoint))
        assert meta.extra["epoch"] == 2 and meta.dims.channels == 16
    finally:
        shutil.rmtree(result.checkpoint.path, ignore_errors=True)
