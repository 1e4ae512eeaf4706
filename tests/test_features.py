import time

import numpy as np
import pytest
import torch

import data_pipelines.features as features
from data_pipelines.audio import SAMPLE_RATE, decode_audio, encode_audio
from data_pipelines.features import (
    CLIP_LEVEL_QUANTILE,
    FRAME_HOP_MS,
    HOP_LENGTH,
    FEATURE_VERSIONS,
    N_FEATURES,
    N_MELS,
    N_STATS,
    STAT_NAMES,
    TRANSIENT_NAMES,
    compute_features,
    frame_count,
    upper_quantile,
)
from data_pipelines.synth import make_clip


def _stat(feats: np.ndarray, name: str) -> np.ndarray:
    return feats[:, N_MELS + STAT_NAMES.index(name)]


def test_constants_agree():
    assert (FRAME_HOP_MS, HOP_LENGTH, features.WIN_LENGTH, features.N_FFT, N_MELS) == (10, 160, 400, 512, 64)
    assert HOP_LENGTH == SAMPLE_RATE * FRAME_HOP_MS // 1000
    assert FEATURE_VERSIONS == {1: N_MELS + N_STATS, 2: N_MELS + N_STATS + len(TRANSIENT_NAMES)}
    assert N_FEATURES == FEATURE_VERSIONS[2]


@pytest.mark.parametrize(("n", "frames"), [(0, 0), (1, 1), (159, 1), (160, 1), (161, 2), (16000, 100), (16001, 101)])
def test_frame_count_and_shape(n, frames):
    assert frame_count(n) == frames
    x = np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32)
    feats = compute_features(x)
    assert feats.shape == (frames, N_FEATURES) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


@pytest.mark.parametrize("t_ms", [0, 5, 9, 10, 123, 500, 995, 1999])
def test_an_impulse_at_t_lights_frame_t_div_10(t_ms):
    x = np.zeros(2 * SAMPLE_RATE, np.float32)
    x[t_ms * SAMPLE_RATE // 1000] = 0.8
    feats = compute_features(x)
    assert int(np.argmax(feats[:, :N_MELS].sum(axis=1))) == t_ms // 10
    assert int(np.argmax(_stat(feats, "log_peak"))) == t_ms // 10
    lit = np.flatnonzero(_stat(feats, "log_peak") > np.log(0.5))
    assert lit.tolist() == [t_ms // 10]


def test_last_sample_of_a_block_stays_in_its_frame():
    x = np.zeros(SAMPLE_RATE, np.float32)
    x[HOP_LENGTH * 7 - 1] = 0.8  # 69.9375 ms
    feats = compute_features(x)
    assert int(np.argmax(feats[:, :N_MELS].sum(axis=1))) == 6
    assert int(np.argmax(_stat(feats, "log_peak"))) == 6


def test_levels_are_absolute_not_normalised():
    x = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    loud, quiet = compute_features(x), compute_features(0.1 * x)
    mid = slice(5, -5)  # away from the zero padding
    assert np.allclose(loud[mid, :N_MELS] - quiet[mid, :N_MELS], 2 * np.log(10), atol=0.01)
    assert np.allclose(_stat(loud, "log_rms")[mid] - _stat(quiet, "log_rms")[mid], np.log(10), atol=0.01)


def test_deterministic_and_chunking_invisible(monkeypatch):
    x = np.random.default_rng(1).normal(0, 0.2, 3 * SAMPLE_RATE + 77).astype(np.float32)
    x[12345] = 0.99
    whole = compute_features(x)
    assert np.array_equal(whole, compute_features(x.copy()))
    monkeypatch.setattr(features, "CHUNK_FRAMES", 37)
    np.testing.assert_allclose(compute_features(x), whole, rtol=1e-5, atol=1e-5)


def test_statistics_of_known_signals():
    n = SAMPLE_RATE
    silence = compute_features(np.zeros(n, np.float32))
    assert np.all(_stat(silence, "digital_silence") == 1.0) and np.all(_stat(silence, "zero_crossing_rate") == 0)
    noise = compute_features(np.random.default_rng(2).normal(0, 0.1, n).astype(np.float32))
    assert np.median(_stat(noise, "zero_crossing_rate")) == pytest.approx(0.5, abs=0.05)
    assert np.median(_stat(noise, "spectral_flatness")) == pytest.approx(0.56, abs=0.05)
    assert np.median(_stat(noise, "log_rms")) == pytest.approx(np.log(0.1), abs=0.05)
    t = np.arange(n) / SAMPLE_RATE
    tone = compute_features((0.5 * np.sin(2 * np.pi * 250 * t)).astype(np.float32))
    assert np.median(_stat(tone, "spectral_flatness")) < 0.01
    assert np.median(_stat(tone, "log_peak")) == pytest.approx(np.log(0.5), abs=0.01)
    step = np.zeros(n, np.float32)
    step[8000:] = 0.5  # a jump lights log_max_step only in its frame
    steps = _stat(compute_features(step), "log_max_step")
    assert int(np.argmax(steps)) == 50 and steps[50] == pytest.approx(np.log(0.5), abs=1e-3)
    assert steps[49] < np.log(1e-4) and steps[51] < np.log(1e-4)


def test_clipped_speech_separates_from_clean_speech_after_resampling():
    """Clipping written at 44.1 kHz, decoded to 16 kHz (plateaus smeared, overshoot) stays visible."""
    inside, clean = [], []
    for seed in range(3):
        clip = make_clip(seed, duration_s=8.0, sample_rate=44100, artifact_types=("clipping",), events_per_type=(2, 2))
        w = decode_audio(encode_audio(clip.waveform, 44100, "flac")).waveform
        feats = compute_features(w)
        label = np.zeros(len(feats), bool)
        for e in clip.events:
            label[e.start_ms // 10 : e.end_ms // 10] = True
        speech = _stat(feats, "log_rms") > np.log(0.02)
        inside.append(_stat(feats, "near_clip_level")[label & speech])
        clean.append(_stat(feats, "near_clip_level")[~label & speech])
    inside, clean = np.concatenate(inside), np.concatenate(clean)
    assert len(inside) > 50 and len(clean) > 200
    assert np.median(inside) > 0.05 and np.mean(inside > 0.02) > 0.6
    assert np.quantile(clean, 0.99) < 0.02


def test_dropout_and_noise_burst_statistics():
    clip = make_clip(4, duration_s=6.0, artifact_types=("glitch", "noise_burst"), events_per_type=(2, 2))
    feats = compute_features(clip.waveform)
    speech = _stat(feats, "log_rms") > np.log(0.02)
    for e in clip.events:
        frames = slice(-(-e.start_ms // 10), e.end_ms // 10)  # frames wholly inside
        if e.artifact_type == "noise_burst":
            assert np.median(_stat(feats, "spectral_flatness")[frames]) > 5 * np.median(_stat(feats, "spectral_flatness")[speech])
        elif (clip.waveform[e.start_ms * 16 : e.end_ms * 16] == 0).all():  # dropout
            assert np.all(_stat(feats, "digital_silence")[frames] == 1.0)
        else:  # click: the sharpest step of the clip
            assert _stat(feats, "log_max_step")[e.start_ms // 10 : -(-e.end_ms // 10)].max() > np.quantile(_stat(feats, "log_max_step"), 0.99)


def test_faster_than_300x_real_time_on_one_core():
    x = np.random.default_rng(3).normal(0, 0.1, 60 * SAMPLE_RATE).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        compute_features(x[:SAMPLE_RATE])
        cpu = []
        for _ in range(3):
            start = time.process_time()  # CPU time: robust to other load on the machine
            compute_features(x)
            cpu.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    assert min(cpu) < 60 / 300


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="mono"):
        compute_features(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        compute_features(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError):
        frame_count(-1)


def _transient(feats: np.ndarray, name: str) -> np.ndarray:
    return feats[:, N_MELS + N_STATS + TRANSIENT_NAMES.index(name)]


def _voiced(seconds: float, seed: int = 0) -> np.ndarray:
    """A vowel-like harmonic tone with a little noise, -12 dBFS."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    return (0.25 * x / np.abs(x).max() + rng.normal(0, 1e-3, t.size)).astype(np.float32)


def test_feature_set_1_is_the_first_columns_of_set_2():
    x = make_clip(11, duration_s=3.0).waveform
    assert np.array_equal(compute_features(x, version=1), compute_features(x)[:, : FEATURE_VERSIONS[1]])
    with pytest.raises(ValueError, match="unknown feature set 3"):
        compute_features(x, version=3)


@pytest.mark.parametrize("length_ms", [3, 5, 8])
def test_a_few_ms_dropout_inside_speech_shows_on_its_own_frame(length_ms):
    """A dropout that barely moves a 10 ms frame's RMS is plain in its 1 ms statistics."""
    x = _voiced(1.0)
    start = 50 * HOP_LENGTH + 16  # inside frame 50
    y = x.copy()
    y[start : start + length_ms * 16] = 0.0
    fx, fy = compute_features(x), compute_features(y)
    if length_ms <= 5:
        assert abs(_stat(fy, "log_rms")[50] - _stat(fx, "log_rms")[50]) < 0.8  # 10 ms RMS: under 7 dB
    assert _transient(fy, "quiet_run")[50] >= (length_ms * 16 - 4) / HOP_LENGTH
    assert _transient(fx, "quiet_run").max() < 0.1  # speech alone never runs quiet that long
    assert _transient(fy, "log_sub_rms_min")[50] < _transient(fx, "log_sub_rms_min")[50] - 3
    assert _transient(fy, "sub_rms_jump")[50] > 2 * _transient(fx, "sub_rms_jump").max()
    untouched = np.r_[0:48, 53 : fx.shape[0]]
    np.testing.assert_allclose(fy[untouched, N_MELS:], fx[untouched, N_MELS:], atol=1e-5)


def test_a_2ms_click_lifts_peakiness_and_the_loudest_sub_block():
    x = _voiced(1.0, seed=1)
    y = x.copy()
    at = 70 * HOP_LENGTH + 100
    y[at : at + 32] += np.linspace(0.9, -0.9, 32, dtype=np.float32)  # a 2 ms click
    fx, fy = compute_features(x), compute_features(y)
    assert _transient(fy, "step_peakiness")[70] > _transient(fx, "step_peakiness").max() + 0.5
    assert _transient(fy, "log_sub_rms_max")[70] > _transient(fx, "log_sub_rms_max").max() + 0.5


@pytest.mark.parametrize("n", [1, 2, 15, 1000, 160_000, 480_001])
def test_the_clip_level_is_numpys_quantile(n):
    """``upper_quantile`` skips most of the partition numpy does, and gives numpy's value: on speech,
    on clipped signals whose top values tie, on silence and on tiny inputs."""
    rng = np.random.default_rng(n)
    speech = np.abs(make_clip(n % 7, duration_s=max(n, 1) / SAMPLE_RATE + 0.01).waveform[:n])
    clipped = np.abs(np.clip(rng.normal(size=n).astype(np.float32), -0.4, 0.4))
    for values in (speech, clipped, np.zeros(n, np.float32), np.abs(rng.normal(size=n)).astype(np.float32)):
        assert upper_quantile(values, CLIP_LEVEL_QUANTILE) == float(np.quantile(values, CLIP_LEVEL_QUANTILE))


def test_longest_quiet_runs_are_counted_per_frame():
    """Runs that touch a frame's edges, fill it, or do not occur; against a sample-by-sample count."""
    rng = np.random.default_rng(5)
    flags = np.concatenate([rng.random((200, HOP_LENGTH)) < p for p in (0.1, 0.5, 0.95)])
    flags[0], flags[1] = True, False
    flags[2, :7], flags[2, 7:] = True, False
    expected = []
    for row in flags:
        run = best = 0
        for f in row:
            run = run + 1 if f else 0
            best = max(best, run)
        expected.append(best)
    got = features._longest_runs(flags)
    assert got.tolist() == expected
    assert got[0] == HOP_LENGTH and got[1] == 0 and got[2] == 7
