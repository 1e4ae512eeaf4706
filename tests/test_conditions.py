"""Recording conditions: each family keeps length and timeline and reaches its target; chains
are reproducible; annotated artifacts survive channel conditions; held-out splits are disjoint.

Pure signal logic on real espeak-ng speech: no Ray cluster.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from data_pipelines import conditions as C
from data_pipelines.condition_chain import (
    FAMILIES,
    PRESETS,
    Clicks,
    Codec,
    Conditions,
    Dropouts,
    Noise,
    Telephone,
    apply_conditions,
    chain_rng,
    preset,
    split_held_out,
)
from data_pipelines.speech import all_english_voices, english_voices, voice_variants
from data_pipelines.stt_corpus import make_utterance, synthesize_utterance, write_corpus
from data_pipelines.synth import ms_to_sample, make_clip

SR = 16_000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return make_clip(3, duration_s=4.0, artifact_types=()).waveform


def _lag_ms(x: np.ndarray, y: np.ndarray, sr: int = SR) -> float:
    """Lag of y against x by direct cross-correlation within +-50 ms (independent of align_lag)."""
    max_lag = sr // 20
    lags = range(-max_lag, max_lag + 1)
    core = slice(max_lag, x.size - max_lag)
    corr = [float(np.dot(x[core], y[max_lag + k : x.size - max_lag + k])) for k in lags]
    return (int(np.argmax(corr)) - max_lag) * 1000 / sr


def _band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())


FAMILY_CALLS = {
    "white": lambda x, r: C.add_noise(x, SR, r, snr_db=12.0, kind="white"),
    "pink": lambda x, r: C.add_noise(x, SR, r, snr_db=12.0, kind="pink"),
    "room": lambda x, r: C.add_noise(x, SR, r, snr_db=12.0, kind="room"),
    "room_tone": lambda x, r: C.add_room_tone(x, SR, r, level_dbfs=-50.0),
    "telephone": lambda x, r: C.telephone(x, SR, r, mu_law=True),
    "telephone_wideband": lambda x, r: C.telephone(x, SR, r, narrowband=False),
    "mp3": lambda x, r: C.lossy_codec(x, SR, r, codec="mp3", kbps=24.0),
    "vorbis": lambda x, r: C.lossy_codec(x, SR, r, codec="vorbis", kbps=40.0),
    "opus": lambda x, r: C.lossy_codec(x, SR, r, codec="opus", kbps=12.0),
    "gain": lambda x, r: C.change_gain(x, SR, r, gain_db=-9.0),
    "ride_gain": lambda x, r: C.ride_gain(x, SR, r, depth_db=4.0, period_s=1.0),
    "limiter": lambda x, r: C.limit(x, SR, r, threshold_db=-14.0),
    "soft_clip": lambda x, r: C.soft_clip(x, SR, r, drive_db=8.0, ceiling=0.3),
}


@pytest.mark.parametrize("family", FAMILY_CALLS)
def test_family_keeps_length_and_timeline(speech, family):
    y = FAMILY_CALLS[family](speech, np.random.default_rng(1))
    assert y.dtype == np.float32 and y.shape == speech.shape and np.isfinite(y).all()
    assert abs(_lag_ms(speech, y)) <= 1.0
    assert not np.array_equal(y, speech)


@pytest.mark.parametrize("family", ["white", "pink", "room", "room_tone", "ride_gain"])
def test_random_family_is_reproducible_and_differs_across_seeds(speech, family):
    a, b = (FAMILY_CALLS[family](speech, np.random.default_rng(5)) for _ in range(2))
    c = FAMILY_CALLS[family](speech, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kind", ["white", "pink", "room", "babble"])
@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_noise_reaches_its_snr_on_active_speech(speech, kind, snr_db):
    rng = np.random.default_rng(2)
    talkers = [make_utterance(s)[0] for s in (11, 12, 13)] if kind == "babble" else ()
    y = C.add_noise(speech, SR, rng, snr_db=snr_db, kind=kind, talkers=talkers)
    hop = SR // 100  # active speech measured here independently: frames within 30 dB of the loudest
    frames = np.sqrt(np.mean(speech[: speech.size // hop * hop].reshape(-1, hop).astype(float) ** 2, axis=1))
    active = np.repeat(frames > frames.max() / 10 ** 1.5, hop)
    noise = (y - speech)[: active.size]
    measured = 10 * np.log10(np.mean(speech[: active.size][active] ** 2) / np.mean(noise[active] ** 2))
    assert abs(measured - snr_db) < 1.0


def test_pink_and_room_noise_are_low_frequency_heavy():
    rng = np.random.default_rng(0)
    for kind, (lo_db, hi_db) in {"white": (-13, -10), "pink": (1, 4), "room": (25, 80)}.items():
        x = C.make_noise(kind, 4 * SR, SR, rng)
        # 50-500 Hz against 2-8 kHz: white -11.3 dB (bandwidths), pink +2.2 dB (log-widths)
        ratio_db = 10 * np.log10(_band_energy(x, SR, 50, 500) / _band_energy(x, SR, 2000, 8000))
        assert lo_db < ratio_db < hi_db and np.isclose(np.std(x), 1.0, rtol=0.05)


def test_telephone_band_and_8khz_round_trip(speech):
    for narrowband in (True, False):
        y = C.telephone(speech, SR, np.random.default_rng(0), narrowband=narrowband, mu_law=narrowband)
        out_before = _band_energy(speech, SR, 0, 300) + _band_energy(speech, SR, 3400, SR / 2)
        out_after = _band_energy(y, SR, 0, 300) + _band_energy(y, SR, 3400, SR / 2)
        assert 10 * np.log10(out_after / out_before) < -20.0
        in_ratio = _band_energy(y, SR, 500, 3000) / _band_energy(speech, SR, 500, 3000)
        assert abs(10 * np.log10(in_ratio)) < 1.5  # speech in the band passes
    y8 = C.telephone(speech, SR, np.random.default_rng(0), low_hz=0.0, high_hz=4000.0)
    assert _band_energy(y8, SR, 4100, SR / 2) < 1e-3 * _band_energy(y8, SR, 0, 4000)  # -30 dB over 8 kHz's Nyquist


@pytest.mark.parametrize(("codec", "kbps", "max_err_db"), [("mp3", 16, -10), ("mp3", 48, -18), ("vorbis", 32, -11), ("opus", 8, -5), ("opus", 24, -16)])
def test_codec_round_trip_is_close_at_its_bitrate(speech, codec, kbps, max_err_db):
    decoded, rate, used = C.encode_decode(speech, SR, codec, kbps)
    assert decoded.size > 0 and rate in (SR, 48_000)
    assert abs(used - kbps) < 0.35 * kbps  # the bitrate asked for (file overhead included)
    y = C.lossy_codec(speech, SR, np.random.default_rng(0), codec=codec, kbps=kbps)
    err_db = 10 * np.log10(np.sum((y - speech) ** 2) / np.sum(speech**2))
    assert err_db < max_err_db


def test_gain_limiter_and_soft_clip_levels(speech):
    rng = np.random.default_rng(0)
    peak = np.abs(speech).max()
    assert np.isclose(np.abs(C.change_gain(speech, SR, rng, gain_db=-6.0)).max(), peak * 10 ** (-6 / 20), rtol=1e-5)
    assert np.abs(C.change_gain(speech, SR, rng, gain_db=30.0)).max() <= 0.99 + 1e-6  # never clips
    limited = C.limit(speech, SR, rng, threshold_db=-14.0)
    assert np.abs(limited).max() <= 10 ** (-14 / 20) + 1e-6
    quiet = np.abs(speech) < 0.2 * peak
    assert np.max(np.abs(np.diff(limited))) <= np.max(np.abs(np.diff(speech))) + 1e-6  # no steps added
    assert np.abs(limited - speech)[quiet].mean() < np.abs(limited - speech)[~quiet].mean()
    clipped = C.soft_clip(speech, SR, rng, drive_db=8.0, ceiling=0.3)
    assert np.abs(clipped).max() < 0.3 and np.sign(clipped[np.abs(speech) > 1e-3]).tolist() == np.sign(speech[np.abs(speech) > 1e-3]).tolist()


def test_impairments_write_exactly_their_span(speech):
    rng = np.random.default_rng(0)
    y = C.insert_dropout(speech, SR, rng, start=1000, length=80)
    assert (y[1000:1080] == 0).all() and np.array_equal(y[:1000], speech[:1000]) and np.array_equal(y[1080:], speech[1080:])
    y = C.insert_dropout(speech, SR, rng, start=1000, length=480, comfort_rms=0.001)
    assert 0 < np.sqrt(np.mean(y[1100:1380] ** 2)) < 0.002
    y = C.insert_click(speech, SR, rng, start=2000, length=32, amplitude=0.9)
    assert np.isclose(np.abs(y[2000]), 0.9) and np.array_equal(y[2032:], speech[2032:])


def test_chain_impairments_report_their_spans(speech):
    for fill in ("silence", "comfort"):
        dropouts = Dropouts(count=(3, 3), length_ms=(20.0, 20.0), comfort_probability=float(fill == "comfort"))
        y, applied = apply_conditions(speech, SR, Conditions(dropouts=dropouts), chain_rng(1))
        assert applied[0]["fill"] == fill and len(applied[0]["spans"]) == 3
        for start, length in applied[0]["spans"]:
            assert length == 320 and C.active_mask(speech, SR)[start : start + length].all()  # inside speech
            rms = np.sqrt(np.mean(y[start : start + length] ** 2))
            speech_rms = np.sqrt(C.active_power(speech, C.active_mask(speech, SR)))
            assert rms == 0 if fill == "silence" else 0 < rms < 10 ** (-29 / 20) * speech_rms  # -45..-30 dB re speech
    y, applied = apply_conditions(speech, SR, Conditions(clicks=Clicks(count=(2, 2))), chain_rng(1))
    for start, length in applied[0]["spans"]:
        assert 16 <= length <= 48 and np.abs(y[start]) >= 0.6 * np.abs(speech).max()


def test_chain_is_reproducible_reports_what_it_applied_and_differs_across_seeds(speech):
    conditions = preset("real_world")
    a, applied_a = apply_conditions(speech, SR, conditions, chain_rng(4))
    b, applied_b = apply_conditions(speech, SR, conditions, chain_rng(4))
    assert np.array_equal(a, b) and applied_a == applied_b and a.shape == speech.shape
    others = [apply_conditions(speech, SR, conditions, chain_rng(s)) for s in range(5, 9)]
    assert any(applied != applied_a for _, applied in others)
    every = Conditions(**{f: getattr(conditions, f).model_copy(update={"probability": 1.0}) for f in FAMILIES})
    _, applied = apply_conditions(speech, SR, every, chain_rng(0))
    assert [e["family"] for e in applied] == list(FAMILIES)  # chain order
    json.dumps(applied)  # reports are plain data
    _, only = apply_conditions(speech, SR, every, chain_rng(0), families=("codec",))
    assert only == [applied[-1]]  # switching families off leaves the others' draws as they were


def test_config_is_frozen_and_validated():
    with pytest.raises(ValidationError, match="frozen"):
        PRESETS["real_world"].noise.snr_db = (0.0, 1.0)
    for bad in ({"snr_db": (20.0, 5.0)}, {"kinds": ("brown",)}, {"probability": 1.5}):
        with pytest.raises(ValueError):
            Noise(**bad)
    with pytest.raises(ValueError, match="choose one or more of"):
        Codec(codecs=("aac",))
    with pytest.raises(ValueError, match="unknown conditions preset 'studio'; choose one of clean"):
        preset("studio")
    assert Conditions(telephone=Telephone()).only(("noise",)).enabled() == ()


# --- detector clips -------------------------------------------------------------------------------


def test_clip_without_conditions_is_unchanged_and_clean_preset_too():
    plain = make_clip(21, duration_s=4.0)
    clean = make_clip(21, duration_s=4.0, conditions=preset("clean"))
    assert np.array_equal(plain.waveform, clean.waveform) and plain.events == clean.events and clean.conditions == []


GLITCH_ARGS = {"duration_s": 8.0, "artifact_types": ("glitch",), "events_per_type": (3, 3),
               "glitch_kinds": ("dropout", "click", "short_dropout", "lone_click")}


@pytest.mark.parametrize("codec", ["mp3", "opus"])
def test_annotated_glitches_survive_channel_conditions(codec):
    chain = Conditions(
        room_tone=PRESETS["real_world"].room_tone.model_copy(update={"probability": 1.0}),
        noise=Noise(kinds=("pink", "room", "white"), snr_db=(10.0, 25.0)),
        gain=PRESETS["real_world"].gain.model_copy(update={"probability": 1.0}),
        telephone=Telephone(narrowband_probability=1.0),
        codec=Codec(codecs=(codec,), mp3_kbps=(16.0, 16.0), opus_kbps=(8.0, 8.0)),  # the lowest bitrates
    )
    counts = {"dropout": 0, "short_dropout": 0, "click": 0}
    for seed in range(6):
        clean, clip = make_clip(seed, **GLITCH_ARGS), make_clip(seed, **GLITCH_ARGS, conditions=chain)
        assert clip.events == clean.events
        assert [c["family"] for c in clip.conditions] == ["room_tone", "noise", "telephone", "gain", "codec"]
        x, sr = clip.waveform, clip.sample_rate
        for e in clip.events:
            lo, hi = ms_to_sample(e.start_ms, sr), ms_to_sample(e.end_ms, sr)
            around = np.concatenate([x[lo - sr // 20 : lo], x[hi : hi + sr // 20]])
            if (clean.waveform[lo:hi] == 0).all():  # a dropout: its core stays far below the speech around it
                core = x[lo + (hi - lo) // 4 : hi - (hi - lo) // 4 + 1]
                short = e.duration_ms <= 10
                assert np.sqrt(np.mean(core**2)) < (0.5 if short else 0.3) * np.sqrt(np.mean(around**2)), e
                counts["short_dropout" if short else "dropout"] += 1
            else:  # a click: the largest sample-to-sample jump within 100 ms is inside the label
                win = np.abs(np.diff(x[lo - sr // 10 : hi + sr // 10]))
                assert sr // 10 - 1 <= int(np.argmax(win)) < sr // 10 + (hi - lo), e
                counts["click"] += 1
        assert clip.conditions[-1]["kbps"] >= 16.0  # codecs keep a floor where glitches are
    assert min(counts.values()) >= 2, counts


@pytest.mark.parametrize("codec", ["mp3", "opus", "vorbis"])
def test_annotated_clipping_bursts_and_pauses_survive_channel_conditions(codec):
    rw = PRESETS["real_world"]
    chain = Conditions(
        room_tone=rw.room_tone, noise=Noise(kinds=("pink", "room", "white"), snr_db=(10.0, 25.0)), telephone=Telephone(),
        gain=rw.gain.model_copy(update={"probability": 1.0}), limiter=rw.limiter.model_copy(update={"probability": 1.0}),
        codec=Codec(codecs=(codec,)),
    )  # fmt: skip
    seen = set()
    for seed in range(3):
        clip = make_clip(seed, duration_s=8.0, artifact_types=("clipping", "noise_burst", "long_pause"), conditions=chain)
        x, sr = clip.waveform, clip.sample_rate
        assert "limiter" not in [c["family"] for c in clip.conditions]  # it would level speech up to the plateaus
        floor = np.sqrt(np.mean(x[: sr // 10] ** 2))  # lead-in: room tone and noise only
        outside = np.ones(x.size, bool)
        for e in clip.events:
            outside[ms_to_sample(e.start_ms, sr) : ms_to_sample(e.end_ms, sr)] = False
        for e in clip.events:
            seg = x[ms_to_sample(e.start_ms, sr) : ms_to_sample(e.end_ms, sr)]
            rms = np.sqrt(np.mean(seg**2))
            if e.artifact_type == "clipping":  # far louder than anything unlabelled
                assert np.abs(x[outside]).max() < 0.7 * np.abs(seg).max()
            elif e.artifact_type == "noise_burst":  # loud, broadband
                assert rms > 5 * floor and rms > np.sqrt(np.mean(x[outside] ** 2)) and np.mean(np.diff(np.sign(seg)) != 0) > 0.15
            else:  # a long pause keeps the room's noise: the level of the lead-in, not silence
                assert 0.6 * floor < rms < 1.5 * floor
            seen.add(e.artifact_type)
    assert seen == {"clipping", "noise_burst", "long_pause"}


def test_limiter_is_skipped_where_it_would_hide_clipping():
    chain = Conditions(limiter=PRESETS["real_world"].limiter.model_copy(update={"probability": 1.0}))
    with_clipping = make_clip(5, duration_s=6.0, artifact_types=("clipping",), conditions=chain)
    without = make_clip(5, duration_s=6.0, artifact_types=("noise_burst",), conditions=chain)
    assert with_clipping.conditions == [] and [c["family"] for c in without.conditions] == ["limiter"]


def test_short_dropout_and_lone_click_kinds():
    clip = make_clip(8, duration_s=10.0, artifact_types=("glitch",), events_per_type=(4, 4), glitch_kinds=("short_dropout",))
    assert len(clip.events) == 4 and all(3 <= e.duration_ms <= 10 for e in clip.events)
    for e in clip.events:
        assert (clip.waveform[ms_to_sample(e.start_ms, SR) : ms_to_sample(e.end_ms, SR)] == 0).all()
    with pytest.raises(ValueError, match="glitch_kinds"):
        make_clip(0, glitch_kinds=("pop",))


# --- STT corpus, voices and splits ----------------------------------------------------------------


def test_every_english_voice_and_variant_is_enumerated():
    listed = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    own = {cols[1] for cols in (line.split() for line in listed.splitlines()[1:]) if not cols[4].startswith("mb/")}
    assert set(english_voices()) == {v for v in own if v.startswith("en")}
    assert {"+f3", "+m7", "+klatt", "+croak", "+whisper"} <= set(voice_variants()) and len(voice_variants()) > 50
    assert len(all_english_voices()) == len(english_voices()) * (len(voice_variants()) + 1)


def test_held_out_split_is_disjoint_and_deterministic():
    accents, variants = english_voices(), ("", *voice_variants())
    split = split_held_out(accents, variants, seed=3)
    assert split == split_held_out(accents, variants, seed=3) and split != split_held_out(accents, variants, seed=4)
    assert split.train_voices and split.held_out_voices and not set(split.train_voices) & set(split.held_out_voices)
    accent = lambda v: v.split("+")[0]  # noqa: E731
    variant = lambda v: v[len(accent(v)) :]  # noqa: E731
    assert not {accent(v) for v in split.train_voices} & {accent(v) for v in split.held_out_voices}
    assert not {variant(v) for v in split.train_voices} & {variant(v) for v in split.held_out_voices}
    assert set(split.train_families) | set(split.held_out_families) == set(FAMILIES)
    assert split.held_out_families and not set(split.train_families) & set(split.held_out_families)
    held_out_only = preset("real_world").only(split.held_out_families)
    assert set(held_out_only.enabled()) == set(split.held_out_families)


def test_utterances_with_voices_and_conditions(tmp_path):
    assert np.array_equal(make_utterance(7)[0], synthesize_utterance(7).waveform)  # unchanged without options
    utt = synthesize_utterance(7, voices=("en-gb-x-rp+m3",), conditions=preset("telephone"))
    assert utt.voice == "en-gb-x-rp+m3" and utt.conditions and utt.conditions[0]["family"] == "room_tone"
    manifest = write_corpus(tmp_path, 2, seed=1, conditions=preset("real_world"), voices=("en-us+f2", "en-029"))
    assert all(m["voice"] in ("en-us+f2", "en-029") and isinstance(m["conditions"], list) for m in manifest)


def test_cli_conditions_option(tmp_path):
    synth_extra = ["--duration", "3", "--glitch-kinds", "short_dropout"]
    for module, extra in (("data_pipelines.synth", synth_extra), ("data_pipelines.stt_corpus", [])):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--out", str(tmp_path / module), "--n", "1", "--conditions", "telephone", *extra],
            capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        manifest = json.loads((tmp_path / module / "manifest.json").read_text())
        assert all(m["conditions"][0]["family"] == "room_tone" for m in manifest)
    glitches = [e for e in json.loads((tmp_path / "data_pipelines.synth" / "manifest.json").read_text())[0]["events"] if e["artifact_type"] == "glitch"]
    assert glitches and all(e["end_ms"] - e["start_ms"] <= 10 for e in glitches)
    bad = subprocess.run([sys.executable, "-m", "data_pipelines.synth", "--out", str(tmp_path), "--conditions", "studio"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
