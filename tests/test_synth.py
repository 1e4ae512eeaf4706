import json
import subprocess
import sys
import time

import numpy as np
import pytest

from data_pipelines.audio import decode_audio
from data_pipelines.events import Event
from data_pipelines.synth import (
    ARTIFACT_TYPES,
    CLICK_LABEL_MS,
    CLIPPING_MS,
    DROPOUT_MS,
    LONG_PAUSE_MS,
    MAX_NORMAL_PAUSE_MS,
    MIN_ARTIFACT_GAP_MS,
    NOISE_BURST_MS,
    SpeechSynthesisError,
    VOICE_VARIANTS,
    VOICES,
    SynthClip,
    make_clip,
    ms_to_sample,
    speak,
    write_corpus,
)

LENGTHS = {"long_pause": LONG_PAUSE_MS, "clipping": CLIPPING_MS, "noise_burst": NOISE_BURST_MS}


@pytest.fixture(scope="module")
def clips() -> list[SynthClip]:
    return [make_clip(seed, sample_rate=(16000, 22050, 44100)[seed % 3]) for seed in range(6)]


def _span(clip: SynthClip, e: Event) -> np.ndarray:
    return clip.waveform[ms_to_sample(e.start_ms, clip.sample_rate) : ms_to_sample(e.end_ms, clip.sample_rate)]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_speak_returns_native_rate_mono_speech():
    wave, rate = speak("The quick brown fox jumps over the lazy dog.", voice="en-gb-scotland+f3", rate_wpm=170)
    assert rate == 22050 and wave.dtype == np.float32 and wave.ndim == 1
    assert 1.5 < wave.size / rate < 5.0 and np.abs(wave).max() > 0.1


def test_speak_names_the_missing_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SpeechSynthesisError, match="espeak-ng"):
        speak("hello")


def test_every_voice_and_variant_is_installed():
    """espeak-ng silently falls back to its default voice for unknown names: check ours exist."""
    languages = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    variants = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    listed = {line.split()[1] for line in languages.splitlines()[1:]}
    files = {line.split()[4].removeprefix("!v/") for line in variants.splitlines()[1:]}
    assert set(VOICES) <= listed
    assert {v.removeprefix("+") for v in VOICE_VARIANTS if v} <= files


def test_clip_is_deterministic_per_seed():
    a, b = make_clip(7, duration_s=5.0), make_clip(7, duration_s=5.0)
    assert np.array_equal(a.waveform, b.waveform) and a.events == b.events and (a.text, a.voice) == (b.text, b.voice)
    c = make_clip(8, duration_s=5.0)
    assert a.text != c.text or not np.array_equal(a.waveform[: c.waveform.size], c.waveform)


@pytest.mark.parametrize(("duration_s", "rate"), [(15.0, 16000), (4.0, 22050), (3.0, 44100), (1.0, 16000), (7.3, 48000)])
def test_length_is_exact(duration_s, rate):
    clip = make_clip(3, duration_s=duration_s, sample_rate=rate)
    assert clip.waveform.size == round(duration_s * rate) and clip.sample_rate == rate
    assert clip.waveform.dtype == np.float32 and np.abs(clip.waveform).max() <= 1.0


def test_events_are_sorted_apart_and_within_ranges(clips):
    for clip in clips:
        duration_ms = clip.waveform.size * 1000 // clip.sample_rate
        assert [e.artifact_type for e in clip.events] and {e.artifact_type for e in clip.events} <= set(ARTIFACT_TYPES)
        assert clip.events == sorted(clip.events, key=lambda e: (e.start_ms, e.artifact_type))
        for a, b in zip(clip.events, clip.events[1:]):
            assert b.start_ms - a.end_ms >= MIN_ARTIFACT_GAP_MS
        for e in clip.events:
            assert all(isinstance(v, int) for v in (e.start_ms, e.end_ms))
            assert MIN_ARTIFACT_GAP_MS <= e.start_ms < e.end_ms <= duration_ms - MIN_ARTIFACT_GAP_MS or e.artifact_type == "long_pause"
            lo, hi = LENGTHS.get(e.artifact_type, (min(DROPOUT_MS[0], CLICK_LABEL_MS), max(DROPOUT_MS[1], CLICK_LABEL_MS)))
            assert lo <= e.end_ms - e.start_ms <= hi
    # over a few clips, every type shows up
    assert {e.artifact_type for clip in clips for e in clip.events} == set(ARTIFACT_TYPES)


def test_ground_truth_is_exact(clips):
    for clip in clips:
        x, sr = clip.waveform, clip.sample_rate
        floor = _rms(x[: ms_to_sample(100, sr)])  # the lead-in is noise floor only
        outside = np.ones(x.size, bool)
        for e in clip.events:
            outside[ms_to_sample(e.start_ms, sr) : ms_to_sample(e.end_ms, sr)] = False
        for e in clip.events:
            seg = _span(clip, e)
            if e.artifact_type == "glitch":
                if e.end_ms - e.start_ms != CLICK_LABEL_MS or (seg == 0).all():
                    assert (seg == 0).all()  # dropout: exactly zero, and only there
                    assert x[ms_to_sample(e.start_ms, sr) - 1] != 0 and x[ms_to_sample(e.end_ms, sr)] != 0
                else:  # click: an impulse far sharper than the speech around it
                    before = x[ms_to_sample(e.start_ms - 50, sr) : ms_to_sample(e.start_ms, sr)]
                    assert np.abs(np.diff(seg)).max() > 3 * np.abs(np.diff(before)).max()
                    assert np.abs(seg).max() > np.abs(before).max()
            elif e.artifact_type == "clipping":
                ceiling = np.abs(seg).max()
                assert np.mean(np.abs(seg) >= ceiling - 1e-6) > 0.02  # plateaus at the ceiling
                assert np.abs(x[outside]).max() < ceiling  # nothing unlabelled reaches it
            elif e.artifact_type == "long_pause":
                assert 0.7 * floor < _rms(seg) < 1.4 * floor  # noise floor only, no speech
                assert np.abs(seg).max() < 8 * floor
            elif e.artifact_type == "noise_burst":
                assert _rms(seg) > 10 * floor and _rms(seg) > 0.5 * _rms(x[outside])  # about speech level
                assert np.mean(np.diff(np.sign(seg)) != 0) > 0.2  # broadband: frequent zero crossings


def test_normal_pauses_stay_well_below_a_long_pause(clips):
    for clip in clips:
        x, sr = clip.waveform, clip.sample_rate
        hop = sr // 100
        frames = np.sqrt(np.mean(np.square(x[: x.size // hop * hop].reshape(-1, hop), dtype=np.float64), axis=1))
        quiet = frames < 4 * _rms(x[: ms_to_sample(100, sr)])
        for e in clip.events:
            if e.artifact_type == "long_pause":
                quiet[e.start_ms // 10 : -(-e.end_ms // 10)] = False
        edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(int), [0]))))
        runs = [(a, b) for a, b in zip(edges[::2], edges[1::2])]
        inner = [b - a for a, b in runs if a > 0 and b < quiet.size]  # between words and sentences
        outer = [b - a for a, b in runs if a == 0 or b == quiet.size]  # lead-in and lead-out
        # "quiet" also catches the softest speech edges, hence a little over MAX_NORMAL_PAUSE_MS
        assert max(inner, default=0) * 10 <= MAX_NORMAL_PAUSE_MS + 150 < LONG_PAUSE_MS[0]
        assert max(outer, default=0) * 10 <= 500


def test_artifact_type_subset_and_counts():
    clip = make_clip(2, duration_s=10.0, artifact_types=("glitch",), events_per_type=(3, 3))
    assert [e.artifact_type for e in clip.events] == ["glitch"] * 3
    clean = make_clip(2, duration_s=5.0, artifact_types=(), events_per_type=(1, 2))
    assert clean.events == []
    with pytest.raises(ValueError, match="unknown artifact types"):
        make_clip(0, artifact_types=("hum",))


def test_text_is_a_transcript_of_words():
    clip = make_clip(5, duration_s=6.0)
    assert clip.text and all(w.strip(".").isalpha() for w in clip.text.split())
    assert "+" in clip.voice or clip.voice.startswith("en")


def test_fifteen_second_clip_is_fast():
    make_clip(100, duration_s=2.0)
    start = time.perf_counter()
    make_clip(11)
    assert time.perf_counter() - start < 3.0  # typically 0.2-0.5 s on an idle core


def test_write_corpus_files_decode_to_the_manifest(tmp_path):
    manifest = write_corpus(tmp_path, 3, seed=4, formats=("wav", "flac", "mp3"), duration_s=3.0, sample_rates=(16000, 44100))
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert [m["filename"] for m in manifest] == ["synth_00000.wav", "synth_00001.flac", "synth_00002.mp3"]
    assert [m["sample_rate"] for m in manifest] == [16000, 44100, 16000]
    for entry in manifest:
        decoded = decode_audio((tmp_path / entry["filename"]).read_bytes())
        assert decoded.source_sample_rate == entry["sample_rate"]
        assert abs(decoded.duration_ms - entry["duration_ms"]) <= 10 and entry["duration_ms"] == 3000
        assert set(entry) >= {"filename", "events", "text", "voice", "duration_ms"}
        for ev in entry["events"]:
            assert set(ev) == {"artifact_type", "start_ms", "end_ms"} and ev["artifact_type"] in ARTIFACT_TYPES
    again = write_corpus(tmp_path / "again", 3, seed=4, formats=("wav", "flac", "mp3"), duration_s=3.0, sample_rates=(16000, 44100))
    assert again == manifest
    with pytest.raises(ValueError, match="formats"):
        write_corpus(tmp_path, 1, formats=("opus",))


def test_cli_writes_a_corpus(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "data_pipelines.synth", "--out", str(tmp_path), "--n", "2", "--seed", "1",
         "--formats", "wav,m4a", "--duration", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [m["filename"] for m in manifest] == ["synth_00000.wav", "synth_00001.m4a"]
    assert all((tmp_path / m["filename"]).stat().st_size > 1000 for m in manifest)
    assert "wrote 2 clips" in proc.stdout
