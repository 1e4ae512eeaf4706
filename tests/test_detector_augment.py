"""Training-time augmentation of detector files: reproducible draws, fresh every epoch, labels untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from data_pipelines.features import FEATURE_VERSION, N_FEATURES
from data_pipelines.synth import ARTIFACT_TYPES, make_clip
from data_pipelines.augment import conditions_for
from schemas.augmentation import DetectorAugmentation, NoiseAugment
from schemas.training import TrainingConfig
from train_jobs.detector_data import augment_file, events_json, file_rng, training_batches
from train_jobs.windows import WindowSpec

SPEC = WindowSpec.from_ms()
EVERYTHING = DetectorAugmentation.model_validate(
    {f: {"probability": 1} for f in ("room_tone", "noise", "telephone", "gain", "codec")}
)


class Rows:
    """A shard as the loop reads it (``iter_rows``) over plain rows."""

    def __init__(self, rows):
        self.rows = rows

    def iter_rows(self):
        return iter(self.rows)


def test_a_draw_depends_on_seed_epoch_and_file_only():
    wave = make_clip(1, duration_s=3.0).waveform
    conditions = conditions_for(EVERYTHING)
    a, applied = augment_file(wave, conditions, seed=7, epoch=3, file_id="f1")
    b, again = augment_file(wave, conditions, seed=7, epoch=3, file_id="f1")
    assert np.array_equal(a, b) and applied == again
    assert a.shape == wave.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert [x["family"] for x in applied] == ["room_tone", "noise", "telephone", "gain", "codec"]
    for other in ({"seed": 8, "epoch": 3, "file_id": "f1"}, {"seed": 7, "epoch": 4, "file_id": "f1"}, {"seed": 7, "epoch": 3, "file_id": "f2"}):
        c, _ = augment_file(wave, conditions, **other)
        assert not np.allclose(a, c, atol=1e-3), other
    assert file_rng(7, 3, "f1").integers(2**32) == file_rng(7, 3, "f1").integers(2**32)


def test_probabilities_of_zero_leave_the_file_as_it_was():
    wave = make_clip(2, duration_s=2.0).waveform
    none = DetectorAugmentation.model_validate({f: {"probability": 0} for f in ("room_tone", "noise", "telephone", "gain", "codec")})
    out, applied = augment_file(wave, conditions_for(none), seed=0, epoch=1, file_id="x")
    assert applied == [] and np.array_equal(out, wave)


def test_noise_lands_at_the_drawn_snr_range():
    wave = make_clip(3, duration_s=3.0).waveform
    only_noise = DetectorAugmentation(
        room_tone=None, noise=NoiseAugment(probability=1, snr_db=(20, 20)), telephone=None, gain=None, codec=None
    )
    out, applied = augment_file(wave, conditions_for(only_noise), seed=1, epoch=1, file_id="n")
    assert applied[0]["family"] == "noise" and applied[0]["snr_db"] == 20.0
    residual = out - wave
    assert 0 < np.sqrt(np.mean(residual**2)) < 0.2 * np.sqrt(np.mean(wave**2))  # 20 dB under active speech


def test_config_ranges_are_checked():
    with pytest.raises(ValidationError, match="low <= high"):
        DetectorAugmentation.model_validate({"noise": {"snr_db": [30, 10]}})
    with pytest.raises(ValidationError, match="less than or equal to 20"):
        DetectorAugmentation.model_validate({"gain": {"level_db": [-10, 21]}})
    for extra in ({"reverb": 0.5}, {"speed": {"probability": 1}}, {"spec_augment": {}}):  # would move annotations
        with pytest.raises(ValidationError, match="Extra inputs"):
            DetectorAugmentation.model_validate(extra)
    config = TrainingConfig(artifact_types=["glitch"])
    assert config.augmentation.enabled and config.augmentation.probability == 0.5  # on by default
    assert conditions_for(config.augmentation).enabled() == ("room_tone", "noise", "telephone", "gain", "codec")


def _rows(seeds):
    out = []
    for s in seeds:
        clip = make_clip(s, duration_s=3.0)
        out.append({"audio_id": f"c{s}", "waveform": clip.waveform, "events": events_json(clip.events)})
    return out


def _batches(rows, epoch, conditions, batch_size=8):
    return list(
        training_batches(
            Rows(rows), epoch=epoch, seed=0, rank=0, batch_size=batch_size, artifact_types=ARTIFACT_TYPES,
            spec=SPEC, feature_version=FEATURE_VERSION, conditions=conditions, device=torch.device("cpu"),
        )
    )


def test_batches_cover_every_labelled_frame_once_per_epoch_on_a_shifted_grid():
    rows = _rows(range(10, 13))
    batches = _batches(rows, epoch=1, conditions=None)
    x = torch.cat([b["x"] for b in batches])
    y = torch.cat([b["y"] for b in batches])
    assert x.shape[1:] == (SPEC.window_frames, N_FEATURES) and y.shape[1:] == (SPEC.chunk_frames, len(ARTIFACT_TYPES))
    assert all(b["x"].shape[0] == 8 for b in batches[:-1])
    offsets = [int(file_rng(0, 1, r["audio_id"], stream=1).integers(SPEC.stride_frames)) for r in rows]
    assert x.shape[0] == sum(SPEC.num_windows(300 + o) for o in offsets)  # 3 s files, grid shifted by o frames
    assert len(set(offsets)) > 1
    labelled = int((~torch.isnan(y[..., 0])).sum())
    assert 3 * 300 < labelled < 2 * 3 * 300  # chunks overlap by half: most frames are scored twice
    again = _batches(rows, epoch=1, conditions=None)
    assert all(torch.equal(torch.nan_to_num(a["x"]), torch.nan_to_num(b["x"])) for a, b in zip(batches, again))
    later = torch.cat([b["x"] for b in _batches(rows, epoch=2, conditions=None)])
    assert later.shape != x.shape or not torch.equal(torch.nan_to_num(later), torch.nan_to_num(x))  # another grid and order


def test_augmented_epochs_differ_but_keep_the_labels():
    rows = _rows([20])
    conditions = conditions_for(EVERYTHING)
    e1, e1_again, e2 = (_batches(rows, epoch=e, conditions=conditions, batch_size=64) for e in (1, 1, 2))
    assert torch.equal(torch.nan_to_num(e1[0]["x"]), torch.nan_to_num(e1_again[0]["x"]))
    clean = _batches(rows, epoch=1, conditions=None, batch_size=64)
    assert torch.equal(torch.nan_to_num(clean[0]["y"]), torch.nan_to_num(e1[0]["y"]))  # same grid, same targets
    assert not torch.allclose(torch.nan_to_num(clean[0]["x"]), torch.nan_to_num(e1[0]["x"]))
    assert not torch.equal(torch.nan_to_num(e1[0]["x"]), torch.nan_to_num(e2[0]["x"]))
