"""Unit tests of the detector network, its checkpoint and the analysis windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_pipelines.events import Event
from data_pipelines.features import N_FEATURES
from schemas.inference import InferenceConfig
from train_jobs import detection
from train_jobs.detection import (
    chunk_probs,
    detect,
    file_activations,
    forward_file,
    forward_windows,
    frame_probs,
    pooled_windows,
    window_context,
)
from train_jobs.detector_loop import validate_config
from train_jobs.models.detector import (
    DetectorDims,
    DetectorMeta,
    FrameDetector,
    feature_stats,
    load_checkpoint,
    save_checkpoint,
)
from train_jobs.windows import (
    WindowSpec,
    frame_labels,
    make_training_windows,
    merge_windows,
    split_windows,
)

TYPES = ("glitch", "long_pause", "clipping", "noise_burst")
SPEC = WindowSpec.from_ms(500, 250, 500)


def _model(seed: int = 0) -> FrameDetector:
    torch.manual_seed(seed)
    model = FrameDetector(DetectorDims(n_features=N_FEATURES, n_classes=len(TYPES)))
    rng = np.random.default_rng(seed)
    model.set_normalization(rng.normal(size=N_FEATURES), rng.uniform(0.5, 2.0, size=N_FEATURES))
    return model.eval()


def test_window_spec_from_ms_counts_frames_and_rejects_gaps():
    assert SPEC == WindowSpec(chunk_frames=50, stride_frames=25, context_frames=50)
    assert SPEC.window_frames == 150
    with pytest.raises(ValueError, match="stride_frames"):
        WindowSpec(chunk_frames=10, stride_frames=11, context_frames=0)


def test_model_maps_frames_to_frame_logits():
    model = _model()
    out = model(torch.randn(3, SPEC.window_frames, N_FEATURES))
    assert out.shape == (3, SPEC.window_frames, len(TYPES))
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 1_000_000
    with pytest.raises(ValueError, match=str(N_FEATURES)):
        model(torch.randn(1, 10, N_FEATURES + 1))


def test_checkpoint_round_trip_gives_identical_outputs():
    model = _model(seed=3)
    data = save_checkpoint(model, artifact_types=TYPES, window=SPEC, extra={"epoch": 7})
    loaded, meta = load_checkpoint(data)
    x = torch.randn(2, SPEC.window_frames, N_FEATURES) * 3 + 1
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta.dims == model.dims
    assert meta.artifact_types == TYPES
    assert meta.window == SPEC
    assert meta.extra == {"epoch": 7}
    assert torch.equal(loaded.feature_std, model.feature_std)


def test_a_checkpoint_without_a_feature_set_reads_as_set_1():
    """Checkpoints written before feature set 2 name none; they were trained on set 1."""
    import io

    from data_pipelines.features import FEATURE_VERSION, feature_count

    old = FrameDetector(DetectorDims(n_features=feature_count(1), n_classes=len(TYPES)))
    raw = torch.load(io.BytesIO(save_checkpoint(old, artifact_types=TYPES, window=SPEC, feature_version=1)), weights_only=True)
    raw.pop("feature_version")
    buffer = io.BytesIO()
    torch.save(raw, buffer)
    assert load_checkpoint(buffer.getvalue())[1].feature_version == 1
    assert load_checkpoint(save_checkpoint(_model(), artifact_types=TYPES, window=SPEC))[1].feature_version == FEATURE_VERSION
    with pytest.raises(ValueError, match="feature set 1 has 72 columns"):
        save_checkpoint(_model(), artifact_types=TYPES, window=SPEC, feature_version=1)


def test_checkpoint_rejects_bad_inputs():
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(b"not a checkpoint")
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(_model(), artifact_types=TYPES[:2], window=SPEC)


@pytest.mark.parametrize("n_frames", [1, 49, 50, 51, 173, 1500])
@pytest.mark.parametrize("spec", [SPEC, WindowSpec(chunk_frames=7, stride_frames=3, context_frames=4)])
def test_split_then_merge_restores_every_frame(n_frames, spec):
    feats = np.arange(n_frames * 3, dtype=np.float32).reshape(n_frames, 3)
    windows = split_windows(feats, spec)
    assert windows.shape == (spec.num_windows(n_frames), spec.window_frames, 3)
    chunks = windows[:, spec.context_frames : spec.context_frames + spec.chunk_frames]
    for n, chunk in enumerate(chunks):
        start = n * spec.stride_frames
        inside = feats[start : start + spec.chunk_frames]
        np.testing.assert_array_equal(chunk[: len(inside)], inside)
    np.testing.assert_allclose(merge_windows(chunks, n_frames, spec), feats, rtol=1e-6)


def test_merge_averages_overlapping_chunks():
    spec = WindowSpec(chunk_frames=4, stride_frames=2, context_frames=0)
    chunk_probs = np.stack([np.full((4, 1), v, np.float32) for v in (0.0, 1.0, 0.5)])  # 3 windows, 8 frames
    merged = merge_windows(chunk_probs, 8, spec)[:, 0]
    np.testing.assert_allclose(merged, [0, 0, 0.5, 0.5, 0.75, 0.75, 0.5, 0.5])
    with pytest.raises(ValueError, match="chunk_probs"):
        merge_windows(chunk_probs[:2], 8, spec)


def test_windows_at_file_edges_are_padded_with_nan():
    feats = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    windows = split_windows(feats, SPEC)  # chunks start at frames 0 and 25; the second ends at 75 > 60
    assert windows.shape == (2, 150, 2)
    assert np.isnan(windows[0, :50]).all() and np.isnan(windows[0, 110:]).all()
    np.testing.assert_array_equal(windows[0, 50:110], feats)
    assert np.isnan(windows[1, :25]).all() and np.isnan(windows[1, 85:]).all()
    np.testing.assert_array_equal(windows[1, 25:85], feats)


def test_model_reads_nan_frames_as_padding_not_as_values():
    model = _model(seed=2)
    x = torch.randn(1, SPEC.window_frames, N_FEATURES)
    x[0, :30] = float("nan")
    at_mean = x.clone()
    at_mean[0, :30] = model.feature_mean  # standardises to the same zeros, without the padding flag
    with torch.no_grad():
        out, out_at_mean = model(x), model(at_mean)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0, :40], out_at_mean[0, :40], atol=1e-4)


def test_frame_labels_mark_frames_whose_centre_is_inside_the_event():
    events = [
        Event("glitch", 15, 35),  # centres 15, 25 -> frames 1, 2
        Event("long_pause", 1000, 1800),  # frames 100..179
        Event("noise_burst", 201, 204),  # holds no frame centre: the frame holding its midpoint
        Event("clipping", 1950, 2500),  # clipped at the end of the file (200 frames)
    ]
    labels = frame_labels(200, events, TYPES, min_target_ms=0)
    assert labels.shape == (200, 4) and labels.dtype == np.float32
    assert np.flatnonzero(labels[:, 0]).tolist() == [1, 2]
    assert np.flatnonzero(labels[:, 1]).tolist() == list(range(100, 180))
    assert np.flatnonzero(labels[:, 3]).tolist() == [20]
    assert np.flatnonzero(labels[:, 2]).tolist() == list(range(195, 200))
    with pytest.raises(ValueError, match="long_pause"):
        frame_labels(10, [Event("hum", 0, 10)], TYPES)


def test_frame_labels_widen_short_events_to_the_minimum_target():
    labels = frame_labels(200, [Event("glitch", 1000, 1020), Event("clipping", 0, 30)], TYPES, min_target_ms=100)
    assert np.flatnonzero(labels[:, 0]).tolist() == list(range(96, 106))  # 960-1060 ms
    assert np.flatnonzero(labels[:, 2]).tolist() == list(range(0, 6))  # -35..65 ms, clipped at 0


def test_training_windows_pair_inputs_with_chunk_labels():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(130, N_FEATURES)).astype(np.float32)
    labels = frame_labels(130, [Event("glitch", 300, 700)], TYPES)
    rows = make_training_windows(feats, labels, SPEC)
    assert len(rows) == SPEC.num_windows(130) == 5
    for n, row in enumerate(rows):
        assert row["x"].shape == (150, N_FEATURES) and row["y"].shape == (50, 4)
        start = n * SPEC.stride_frames
        inside = labels[start : start + 50]
        np.testing.assert_array_equal(row["y"][: len(inside)], inside)
        assert np.isnan(row["y"][len(inside) :]).all()  # past the end of the file
        np.testing.assert_array_equal(row["x"][50 : 50 + len(inside)], feats[start : start + 50])
    with pytest.raises(ValueError, match="frames"):
        make_training_windows(feats, labels[:-1], SPEC)


def test_prediction_does_not_depend_on_how_files_are_batched():
    """The Detector deployment stacks several short files' pooled windows in one context pass."""
    model = _model(seed=5)
    rng = np.random.default_rng(2)
    a, b = (rng.normal(size=(n, N_FEATURES)).astype(np.float32) for n in (431, 97))
    probs = frame_probs(model, a, SPEC)
    assert probs.shape == (431, 4)
    assert np.all((probs > 0) & (probs < 1))
    acts = [file_activations(model, f, SPEC) for f in (a, b)]
    pooled = [pooled_windows(model, x, SPEC) for x in acts]
    context = torch.split(window_context(model, torch.cat(pooled), SPEC), [p.shape[0] for p in pooled])
    np.testing.assert_allclose(merge_windows(chunk_probs(model, acts[0], context[0], SPEC), 431, SPEC), probs, atol=1e-5)
    np.testing.assert_allclose(merge_windows(chunk_probs(model, acts[1], context[1], SPEC), 97, SPEC), frame_probs(model, b, SPEC), atol=1e-5)


def _identity_convs(model: FrameDetector) -> FrameDetector:
    """Each residual block passes its input through: the local path has no reach past a frame."""
    with torch.no_grad():
        for block in model.convs:
            block.norm.weight.zero_()
            block.norm.bias.zero_()
    return model


@pytest.mark.parametrize("n_frames", [1, 49, 150, 431, 3001])
def test_the_file_level_pass_is_the_window_network_where_the_math_is_unchanged(n_frames):
    """The local path once over the file equals it per window wherever no convolution reaches a
    window's edge: exactly with pointwise local paths, and within float error of the chunk's own
    local logits otherwise (only the context of the outer frames sees real neighbours)."""
    rng = np.random.default_rng(n_frames)
    feats = rng.normal(size=(n_frames, N_FEATURES)).astype(np.float32)
    pointwise = _identity_convs(_model(seed=6))
    np.testing.assert_allclose(
        forward_file(pointwise, feats, SPEC), forward_windows(pointwise, split_windows(feats, SPEC), SPEC), atol=1e-6
    )
    model = _model(seed=7)
    by_file, by_window = forward_file(model, feats, SPEC), forward_windows(model, split_windows(feats, SPEC), SPEC)
    assert by_file.shape == by_window.shape == (SPEC.num_windows(n_frames), SPEC.chunk_frames, len(TYPES))
    np.testing.assert_allclose(by_file, by_window, atol=2e-3)


def test_the_local_pass_in_segments_equals_one_pass(monkeypatch):
    """Long files run the local path in overlapping segments: their seams must not show."""
    model = _model(seed=8)
    feats = np.random.default_rng(8).normal(size=(1234, N_FEATURES)).astype(np.float32)
    whole = file_activations(model, feats, SPEC)
    monkeypatch.setattr(detection, "LOCAL_SEGMENT_FRAMES", 97)  # 14 segments of the 1350 padded frames
    segmented = file_activations(model, feats, SPEC)
    assert model.dims.receptive_frames == 15
    torch.testing.assert_close(segmented.local, whole.local, atol=1e-5, rtol=0)  # float error of other lengths
    np.testing.assert_allclose(forward_file(model, feats, SPEC), chunk_probs(model, whole, detection.file_context(model, whole, SPEC), SPEC), atol=1e-6)


def test_detections_are_reported_in_whole_ms_inside_the_file():
    """The one postprocessing step: API defaults, int times clipped to the duration, 4-decimal confidence."""
    model = _model(seed=5)
    meta = DetectorMeta(dims=model.dims, artifact_types=TYPES, window=SPEC)
    feats = np.random.default_rng(3).normal(size=(300, N_FEATURES)).astype(np.float32)
    events = detect(model, meta, feats, duration_ms=2995, config=InferenceConfig(threshold=0.0, min_duration_ms=0))
    assert events, "threshold 0 marks every frame"
    assert all(isinstance(e.start_ms, int) and isinstance(e.end_ms, int) for e in events)
    assert max(e.end_ms for e in events) == 2995  # the last frame ends at 3000 ms, past the file
    assert all(round(e.confidence, 4) == e.confidence for e in events)
    assert detect(model, meta, feats, duration_ms=3000) == detect(model, meta, feats, duration_ms=3000, config=InferenceConfig())


def test_feature_stats_matches_numpy_over_all_frames():
    rng = np.random.default_rng(4)
    arrays = [rng.normal(3.0, 2.0, size=(n, 5)) for n in (10, 200, 33)]
    mean, std = feature_stats(arrays)
    stacked = np.concatenate(arrays)
    np.testing.assert_allclose(mean, stacked.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, stacked.std(0), rtol=1e-4)


def test_train_config_is_checked_before_any_worker_starts():
    config = {
        "epochs": 2,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "dims": {"n_features": N_FEATURES, "n_classes": 4},
        "artifact_types": list(TYPES),
        "window": vars(SPEC),
        "seed": 0,
        "feature_version": 2,
        "augmentation": {"noise": {"probability": 1}},
    }
    dims, window = validate_config(config)
    assert dims.n_classes == 4 and window == SPEC
    with pytest.raises(ValueError, match="feature set 1"):
        validate_config({**config, "feature_version": 1})
    with pytest.raises(ValueError, match="snr_db"):
        validate_config({**config, "augmentation": {"noise": {"snr_db": [9, 1]}}})
    with pytest.raises(ValueError, match="augmentation"):
        validate_config({k: v for k, v in config.items() if k != "augmentation"})
    with pytest.raises(ValueError, match="n_classes"):
        validate_config({**config, "artifact_types": ["glitch"]})
