"""Training-time augmentation: per-(seed, epoch, utterance) draws, speed, SpecAugment, options."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from data_pipelines import conditions as C
from data_pipelines.augment import (
    SAMPLE_RATE,
    augment_utterance,
    augment_wave,
    change_speed,
    conditions_for,
    spec_augment,
    speed_factor,
    stable_id,
    utterance_id,
    utterance_seed,
)
from data_pipelines.stt_corpus import make_utterance, utterance_seed as corpus_seed
from schemas.augmentation import Augmentation, CodecName, NoiseKind, SpecAugmentOptions, SpeedAugment
from schemas.stt import RunTraining
from train_jobs.models.stt import CtcConformer, SttDims
from train_jobs.stt_loop import epoch_augmenter, finetune_config, validate_config

EVERYTHING = Augmentation(  # every family always applies, so each draw shows
    speed={"probability": 1.0}, noise={"probability": 1.0}, telephone={"probability": 1.0},
    gain={"probability": 1.0}, codec={"probability": 1.0, "codecs": ["opus"]},
)  # fmt: skip


def _speech(i: int = 0) -> tuple[np.ndarray, str]:
    return make_utterance(corpus_seed(77, i))


def test_a_draw_is_a_pure_function_of_seed_epoch_and_id():
    wave, _ = _speech()
    draw = lambda seed, epoch, key: augment_utterance(wave, EVERYTHING, utterance_seed(seed, epoch, stable_id(key)))  # noqa: E731
    a = draw(3, 1, "custom_models/1/data/5")
    assert np.array_equal(a, draw(3, 1, "custom_models/1/data/5"))
    assert a.shape != wave.shape or not np.allclose(a, wave)
    for other in (draw(3, 2, "custom_models/1/data/5"), draw(4, 1, "custom_models/1/data/5"), draw(3, 1, "custom_models/1/data/6")):
        assert other.shape != a.shape or not np.allclose(other, a)
    assert stable_id("custom_models/1/data/5") == 0xFB938F3413FC8CF4  # the same in every process (no hash salt)


def test_the_loop_draws_the_same_whatever_the_order_rows_arrive_in():
    module = CtcConformer(SttDims(d_model=32, ffn_dim=64, n_layers=1, n_heads=2, subsampling_channels=8))
    rows = [(*_speech(i), f"key-{i}") for i in range(3)] + [(*_speech(3), None)]  # the last has no id
    prepare = epoch_augmenter(Augmentation(), seed=5, epoch=2, module=module)
    forward = [prepare(w, t, k) for w, t, k in rows]
    backward = [prepare(w, t, k) for w, t, k in reversed(rows)][::-1]
    assert all(f.ndim == 2 and f.shape[1] == 80 and np.array_equal(f, b) for f, b in zip(forward, backward))
    again = epoch_augmenter(Augmentation(), seed=5, epoch=3, module=module)
    assert not any(np.array_equal(f, again(w, t, k)) for f, (w, t, k) in zip(forward, rows))
    w, t, _ = rows[3]
    assert utterance_id(None, w, t) == utterance_id(None, w.copy(), t) != utterance_id(None, w, t + " x")


def test_disabled_augmentation_returns_the_input_unchanged():
    wave, _ = _speech()
    off = Augmentation(enabled=False)
    assert augment_utterance(wave, off, utterance_seed(0, 1, 1)) is wave
    features = np.random.default_rng(0).standard_normal((200, 80)).astype(np.float32)
    assert augment_utterance(features, off, utterance_seed(0, 1, 1)) is features
    module = CtcConformer(SttDims(d_model=32, ffn_dim=64, n_layers=1, n_heads=2, subsampling_channels=8))
    assert epoch_augmenter(off, seed=0, epoch=1, module=module) is None  # the loop feeds the clean rows
    assert not off.uses_waveform and Augmentation().uses_waveform
    assert not Augmentation(speed=None, noise=None, telephone=None, gain=None, codec=None).uses_waveform


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.07, 1.1])
def test_speed_perturbation_changes_duration_and_pitch_by_the_factor(factor):
    n = 2 * SAMPLE_RATE
    tone = np.sin(2 * np.pi * 400.0 * np.arange(n) / SAMPLE_RATE).astype(np.float32)
    y = change_speed(tone, factor)
    assert abs(y.size - n / factor) <= 1
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / y.size
    assert abs(peak_hz - 400.0 * factor) < 2.0


def test_a_drawn_speed_factor_is_applied_to_the_duration():
    wave, _ = _speech()
    speed_only = Augmentation(speed=SpeedAugment(probability=1.0), noise=None, telephone=None, gain=None, codec=None)
    factors = set()
    for i in range(12):
        y, applied = augment_wave(wave, speed_only, np.random.default_rng(i), np.random.default_rng(100 + i))
        (entry,) = applied
        factors.add(entry["factor"])
        assert entry["family"] == "speed" and 0.9 <= entry["factor"] <= 1.1
        assert abs(y.size - wave.size / entry["factor"]) <= 1
    assert len(factors) > 3
    rng = np.random.default_rng(0)
    drawn = [speed_factor(rng, SpeedAugment()) for _ in range(50)]
    assert all(abs(f * 100 - round(f * 100)) < 1e-9 and 0.9 <= f <= 1.1 for f in drawn)  # on the 0.01 grid


def test_waveform_families_run_through_the_condition_chain():
    assert set(get_args(NoiseKind)) <= set(C.NOISE_KINDS) and "babble" not in get_args(NoiseKind)
    assert set(get_args(CodecName)) == set(C.CODECS)
    assert conditions_for(Augmentation()).enabled() == ("noise", "telephone", "gain", "codec")
    wave, _ = _speech()
    y, applied = augment_wave(wave, EVERYTHING, np.random.default_rng(1), np.random.default_rng(2))
    assert [a["family"] for a in applied] == ["speed", "noise", "telephone", "gain", "codec"]
    assert applied[-1]["codec"] == "opus" and y.dtype == np.float32
    assert abs(y.size - wave.size / applied[0]["factor"]) <= 1  # every channel condition keeps the length


def test_spec_augment_masks_stay_within_their_bounds():
    spec = SpecAugmentOptions()
    rng = np.random.default_rng(0)
    for t in [40, 300, 1500] + [int(t) for t in rng.integers(20, 700, 200)]:
        x = rng.standard_normal((t, 80)).astype(np.float32) - 5.0
        y, masks = spec_augment(x, spec, rng)
        assert [m[0] for m in masks] == ["freq"] * spec.freq_masks + ["time"] * spec.time_masks
        touched = np.zeros_like(x, dtype=bool)
        for axis, start, width in masks:
            if axis == "freq":
                assert 0 <= width <= spec.freq_mask_bins and 0 <= start and start + width <= 80
                touched[:, start : start + width] = True
            else:
                assert 0 <= width <= min(spec.time_mask_frames, int(spec.time_mask_max_fraction * t))
                assert 0 <= start and start + width <= t
                touched[start : start + width] = True
        assert np.array_equal(y[~touched], x[~touched])  # nothing outside a mask moves
        assert np.allclose(y[touched], np.broadcast_to(x.mean(0), x.shape)[touched])  # masked: the bin's mean
        assert touched.any()
    assert np.array_equal(spec_augment(x, spec.model_copy(update={"freq_masks": 0, "time_masks": 0}), rng)[0], x)


@pytest.mark.parametrize(
    "options",
    [
        {"noise": {"snr_db": [30, 10]}},  # reversed
        {"noise": {"snr_db": [-20, 10]}},  # below the documented bound
        {"noise": {"kinds": ["babble"]}},  # too slow to synthesise per utterance
        {"noise": {"kinds": []}},
        {"speed": {"factor": [0.5, 1.0]}},
        {"speed": {"probability": 1.5}},
        {"codec": {"codecs": ["aac"]}},
        {"codec": {"vorbis_kbps": [16, 48]}},
        {"gain": {"level_db": [-60, 0]}},
        {"spec_augment": {"freq_mask_bins": 81}},
        {"spec_augment": {"time_mask_max_fraction": 0.5}},
        {"reverb": {"probability": 1.0}},  # unknown family
        {"telephone": {"narrowband": True}},  # unknown field
    ],
)
def test_bad_options_are_refused(options):
    with pytest.raises(ValidationError):
        Augmentation.model_validate(options)
    with pytest.raises(ValidationError):
        RunTraining.model_validate({"augmentation": options})
    config = finetune_config(b"checkpoint", epochs=1)
    config["augmentation"] = options
    with pytest.raises(ValueError, match="augmentation"):
        validate_config(config)


def test_options_default_on_and_round_trip_through_the_loop_config():
    assert RunTraining.model_validate({}).augmentation == Augmentation() and Augmentation().enabled
    config = finetune_config(b"checkpoint", epochs=1, augmentation=Augmentation(noise={"snr_db": (5, 15)}))
    validate_config(config)
    assert Augmentation.model_validate(config["augmentation"]).noise.snr_db == (5.0, 15.0)
    assert Augmentation.model_validate(finetune_config(b"checkpoint", epochs=1)["augmentation"]) == Augmentation()
