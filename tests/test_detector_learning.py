"""The detector learns every artifact type, trained with Ray Train DDP on 2 CPU workers.

Synthetic speech clips with injected artifacts -> file rows in a Ray Dataset (each worker
featurises and windows its files every epoch; clean here, augmentation has its own tests)
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

from data_pipelines.audio import duration_ms
from data_pipelines.features import FEATURE_VERSION, N_FEATURES, compute_features
from data_pipelines.synth import ARTIFACT_TYPES, make_clip
from train_jobs.detector_data import events_json, events_of
from train_jobs.detection import evaluate_detector
from train_jobs.detector_loop import checkpoint_bytes, fit_detector
from train_jobs.models.detector import feature_stats, load_checkpoint
from train_jobs.windows import WindowSpec

N_TRAIN_CLIPS = 25  # odd: two workers share every file (an equal split would drop one)
N_HELDOUT_CLIPS = 9  # odd too: the ranks validate on unequal numbers of batches
FIRST_EPOCHS = 8
RESUMED_EPOCHS = 10
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


def _file_rows(seeds) -> list[dict]:
    rows = []
    for seed in seeds:
        clip = make_clip(seed)
        rows.append({"audio_id": f"clip-{seed}", "waveform": clip.waveform, "events": events_json(clip.events)})
    return rows


def _training_config(**overrides) -> dict:
    spec = WindowSpec.from_ms()
    return {
        "epochs": 2,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "dims": {"n_features": N_FEATURES, "n_classes": len(ARTIFACT_TYPES), "channels": 16, "hidden": 16},
        "artifact_types": list(ARTIFACT_TYPES),
        "window": vars(spec),
        "seed": 0,
        "feature_version": FEATURE_VERSION,
        "augmentation": None,
        **overrides,
    }


def test_detector_learns_every_artifact_type_and_resumes(ray_cluster, tmp_path):
    rows = _file_rows(range(100, 100 + N_TRAIN_CLIPS + N_HELDOUT_CLIPS))
    spec = WindowSpec.from_ms()
    train_ds = ray.data.from_items(rows[:N_TRAIN_CLIPS]).materialize()
    val_ds = ray.data.from_items(rows[N_TRAIN_CLIPS:])
    clips = [make_clip(s) for s in range(100 + N_TRAIN_CLIPS, 100 + N_TRAIN_CLIPS + N_HELDOUT_CLIPS)]
    heldout = [(compute_features(c.waveform), duration_ms(c.waveform), c.events) for c in clips]
    config = {
        "epochs": FIRST_EPOCHS,
        "learning_rate": 3e-3,
        "batch_size": 32,  # per worker: 64 per step over 2 workers
        "dims": {"n_features": N_FEATURES, "n_classes": len(ARTIFACT_TYPES)},
        "artifact_types": list(ARTIFACT_TYPES),
        "window": vars(spec),
        "seed": 0,
        "feature_version": FEATURE_VERSION,
        "augmentation": None,
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
    # the workers fitted the normalisation together, on every training file
    mean, std = feature_stats(compute_features(r["waveform"]) for r in rows[:N_TRAIN_CLIPS])
    np.testing.assert_allclose(model.feature_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.feature_std.numpy(), std, rtol=1e-5, atol=1e-6)

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
    rows = _file_rows(range(3))
    ds = ray.data.from_items(rows)
    config = _training_config(augmentation={"enabled": True})
    result = fit_detector(
        ds, ds, config=config, num_workers=0, use_gpu=False, storage_path=str(tmp_path), run_name="local"
    )
    try:
        assert result.metrics["epoch"] == 2 and np.isfinite(result.metrics["val_loss"])
        model, meta = load_checkpoint(checkpoint_bytes(result.checkpoint))
        assert meta.extra["epoch"] == 2 and meta.dims.channels == 16
    finally:
        shutil.rmtree(result.checkpoint.path, ignore_errors=True)


HARD_TRAIN_CLIPS = 36
HARD_HELDOUT_CLIPS = 10
HARD_EPOCHS = 20
HARD_MACRO_F1 = 0.85  # the baseline (feature set 1, no augmentation) scores 0.58 here: bench/robustness.py
HARD_CLASS_F1 = 0.75
ALL_GLITCHES = ("dropout", "click", "short_dropout", "lone_click")


def test_trained_on_clean_files_it_holds_under_real_world_conditions(ray_cluster, tmp_path):
    """The job's defaults (feature set 2, augmentation on), clean training files, held-out files under
    the real_world preset: noise, room tone, telephone band, codecs, gain and limiting it never heard."""
    from data_pipelines.condition_chain import preset
    from schemas.training import TrainingConfig
    from train_jobs.detector import make_loop_config

    def rows(seeds, conditions=None):
        out = []
        for seed in seeds:
            clip = make_clip(seed, glitch_kinds=ALL_GLITCHES, conditions=conditions)
            out.append({"audio_id": f"clip-{seed}", "waveform": clip.waveform, "events": events_json(clip.events)})
        return out

    options = TrainingConfig(artifact_types=list(ARTIFACT_TYPES), epochs=HARD_EPOCHS)
    assert options.augmentation.enabled
    spec = WindowSpec.from_ms(options.chunk_size_ms, options.stride_ms)
    train_ds = ray.data.from_items(rows(range(400, 400 + HARD_TRAIN_CLIPS))).materialize()
    val = ray.data.from_items(rows(range(480, 484)))
    result = fit_detector(
        train_ds, val, config=make_loop_config(options, spec), num_workers=2, use_gpu=False,
        storage_path=str(tmp_path / "runs"), run_name="detector-hard",
    )
    model, meta = load_checkpoint(checkpoint_bytes(result.checkpoint))
    heldout = [
        (compute_features(r["waveform"], version=meta.feature_version), duration_ms(r["waveform"]), events_of(r["events"]))
        for r in rows(range(20_000, 20_000 + HARD_HELDOUT_CLIPS), preset("real_world"))
    ]
    scores = evaluate_detector(model, meta, heldout)
    per_class = {t: round(scores["per_class"][t]["f1_score"], 3) for t in ARTIFACT_TYPES}
    print(f"real_world held-out event F1 per class {per_class}")
    assert np.mean(list(per_class.values())) >= HARD_MACRO_F1, per_class
    assert all(f1 >= HARD_CLASS_F1 for f1 in per_class.values()), per_class
