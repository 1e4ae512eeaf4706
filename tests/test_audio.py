import io
import subprocess
import sys
import textwrap
import time

import av
import numpy as np
import pytest
import soundfile as sf

from data_pipelines.audio import (
    ADTS_PRIMING_SAMPLES,
    ENCODE_FORMATS,
    SAMPLE_RATE,
    AudioDecodeError,
    DecodedAudio,
    decode_audio,
    encode_audio,
)
from schemas.audio_formats import CONTENT_TYPES, SUPPORTED_EXTENSIONS, is_supported
from tests.factories import silent_flac

RATES = (8000, 22050, 44100, 48000)
CHANNELS = (1, 2, 8)
TONE_HZ = 440.0
ONSET_S = 0.4  # the tone starts here: checks that no format shifts time


def _tone(rate: int, channels: int, seconds: float = 1.2) -> np.ndarray:
    """[n, channels]: silence, then a 440 Hz tone from ONSET_S; channel c at amplitude 0.2 + 0.05 c."""
    t = np.arange(round(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * TONE_HZ * t) * (t >= ONSET_S)
    return np.stack([(0.2 + 0.05 * c) * tone for c in range(channels)], axis=1).astype(np.float32)


def _dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / x.size)


# MP3 holds at most two channels (test_mp3_refuses_many_channels)
CASES = [(f, r, c) for f in ENCODE_FORMATS for r in RATES for c in CHANNELS if not (f == "mp3" and c > 2)]


@pytest.mark.parametrize(("fmt", "rate", "channels"), CASES)
def test_every_format_rate_and_channel_count_decodes_to_16k_mono(fmt, rate, channels):
    wave = _tone(rate, channels)
    decoded = decode_audio(encode_audio(wave, rate, fmt))
    assert isinstance(decoded, DecodedAudio)
    w = decoded.waveform
    assert w.dtype == np.float32 and w.ndim == 1 and w.flags.c_contiguous
    assert decoded.source_channels == channels
    assert decoded.source_sample_rate == (48000 if fmt == "webm" else rate)
    if fmt == "aac":  # ADTS cannot say where the last frame's padding starts: up to one frame longer
        assert 0 <= decoded.duration_ms - 1200 <= 1 + 1000 * ADTS_PRIMING_SAMPLES / rate
    else:
        assert abs(decoded.duration_ms - 1200) <= 10
    assert abs(w.size - decoded.duration_ms * SAMPLE_RATE / 1000) <= SAMPLE_RATE / 1000  # ms rounding
    onset = np.argmax(np.abs(w) > 0.1) / SAMPLE_RATE
    assert abs(onset - ONSET_S) <= 0.01
    assert abs(_dominant_hz(w[int(0.5 * SAMPLE_RATE) : int(1.1 * SAMPLE_RATE)]) - TONE_HZ) <= 3
    # channels are averaged: the tone's amplitude is the mean of the channel amplitudes
    expected = np.mean([0.2 + 0.05 * c for c in range(channels)])
    assert np.abs(w[int(0.6 * SAMPLE_RATE) : int(1.1 * SAMPLE_RATE)]).max() == pytest.approx(expected, rel=0.1)


def test_mp3_refuses_many_channels_and_unknown_formats_are_named():
    with pytest.raises(ValueError, match="1 or 2 channels"):
        encode_audio(_tone(16000, 8), 16000, "mp3")
    with pytest.raises(ValueError, match="wav, flac, ogg, mp3, m4a, aac, webm"):
        encode_audio(_tone(16000, 1), 16000, "opus")


def test_downmix_is_the_channel_mean():
    t = np.arange(16000) / 16000
    left = 0.5 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, -left + 0.25], axis=1)  # mean = 0.125 exactly
    w = decode_audio(encode_audio(stereo, 16000, "wav")).waveform
    assert np.allclose(w, 0.125, atol=2 / 32768)


def test_16k_wav_passes_through_sample_exact():
    x = np.round(np.random.default_rng(0).uniform(-0.5, 0.5, 16000) * 32767) / 32768
    w = decode_audio(encode_audio(x, 16000, "wav")).waveform
    assert np.array_equal(w, x.astype(np.float32))


def test_float_wav_keeps_levels_above_full_scale_that_are_sane():
    buf = io.BytesIO()
    sf.write(buf, np.full(1600, 1.5, np.float32), 16000, format="WAV", subtype="FLOAT")
    assert decode_audio(buf.getvalue()).waveform.max() == pytest.approx(1.5)


# --- hostile input ----------------------------------------------------------------------------


def _float_wav(x: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _rejects(data: bytes, match: str, **kwargs) -> None:
    start = time.perf_counter()
    with pytest.raises(AudioDecodeError, match=match):
        decode_audio(data, **kwargs)
    assert time.perf_counter() - start < 2.0


def test_empty_and_garbage_are_rejected():
    _rejects(b"", "empty file")
    _rejects(np.random.default_rng(1).bytes(50_000), "unsupported or corrupt")
    _rejects(b"RIFF\x00\x00\x00\x00WAVEfmt ", "unsupported or corrupt")
    _rejects(b"%PDF-1.7\n" + b"0" * 1000, "unsupported or corrupt")


def test_non_finite_samples_are_rejected():
    x = np.zeros(1600, np.float32)
    x[100] = np.nan
    _rejects(_float_wav(x), "NaN or Inf")
    x[100] = np.inf
    _rejects(_float_wav(x), "NaN or Inf")


def test_zero_length_audio_is_rejected():
    _rejects(_float_wav(np.zeros(0)), "zero duration")


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "m4a", "webm", "ogg"])
def test_truncated_files_are_rejected(fmt):
    data = encode_audio(_tone(22050, 2, seconds=3.0), 22050, fmt)
    _rejects(data[: len(data) // 2], "truncated|corrupt|unsupported|zero duration")


def test_truncated_wav_names_declared_and_decoded_length():
    data = encode_audio(_tone(16000, 1, seconds=4.0), 16000, "wav")
    _rejects(data[: len(data) // 2], r"truncated file: the header declares 4\.00 s but only 2\.00 s")


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3", "m4a", "aac", "webm"])
def test_valid_header_followed_by_garbage_is_rejected(fmt):
    data = encode_audio(_tone(22050, 2, seconds=2.0), 22050, fmt)
    garbage = data[:64] + np.random.default_rng(7).bytes(len(data) - 64)
    _rejects(garbage, "corrupt|unsupported|truncated|zero duration|no audio")


def test_float_wav_header_followed_by_garbage_is_rejected():
    data = _float_wav(np.zeros(16000))
    header = data.index(b"data") + 8
    _rejects(data[:header] + np.random.default_rng(3).bytes(len(data) - header), "NaN or Inf|full scale")


def test_container_without_audio_stream():
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    _rejects(buf.getvalue(), "no audio stream")


# --- length limit ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_hour_flac() -> bytes:
    return silent_flac(8.0)


def test_eight_hour_file_is_refused_from_its_header(eight_hour_flac):
    start = time.perf_counter()
    with pytest.raises(AudioDecodeError, match=r"the header declares 28800\.0 s, longer than the limit of 14400 s"):
        decode_audio(eight_hour_flac, max_seconds=4 * 3600)
    assert time.perf_counter() - start < 0.5  # decoding it would take tens of seconds


@pytest.mark.parametrize("fmt", ["m4a", "aac", "webm"])
def test_ffmpeg_containers_are_refused_from_their_declared_length(fmt):
    data = encode_audio(_tone(16000, 1, seconds=12.0), 16000, fmt)
    _rejects(data, "the container declares 1\\d\\.\\d s, longer than the limit of 5 s", max_seconds=5)
    assert decode_audio(data, max_seconds=20).duration_ms >= 12000


def test_limit_applies_at_the_boundary_and_rejects_bad_limits():
    data = encode_audio(_tone(16000, 1, seconds=2.0), 16000, "flac")
    assert decode_audio(data, max_seconds=2.0).duration_ms == 2000
    _rejects(data, "longer than the limit", max_seconds=1.99)
    with pytest.raises(ValueError, match="max_seconds"):
        decode_audio(data, max_seconds=0)


def test_mutated_files_never_crash_or_hang_the_process():
    """Bit flips and cuts of every format, decoded in a child process so a crash would show."""
    script = textwrap.dedent(
        """
        import numpy as np
        from data_pipelines.audio import ENCODE_FORMATS, AudioDecodeError, decode_audio, encode_audio
        rng = np.random.default_rng(0)
        t = np.arange(22050) / 22050
        wave = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 300 * t)], 1)
        outcomes = {"ok": 0, "rejected": 0}
        for fmt in ENCODE_FORMATS:
            data = encode_audio(wave, 22050, fmt)
            for i in range(24):
                m = bytearray(data[: int(rng.integers(1, len(data) + 1))] if i % 3 == 0 else data)
                for _ in range(int(rng.integers(1, 16))):
                    m[int(rng.integers(len(m)))] = int(rng.integers(256))
                try:
                    decode_audio(bytes(m), max_seconds=60)
                    outcomes["ok"] += 1
                except AudioDecodeError:
                    outcomes["rejected"] += 1
        print(outcomes["ok"], outcomes["rejected"])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok, rejected = map(int, proc.stdout.split()[-2:])
    assert ok + rejected == 24 * len(ENCODE_FORMATS) and rejected > 0


# --- content types -------------------------------------------------------------------------------


def test_content_types_cover_the_upload_formats():
    for mime in (
        "audio/wav", "audio/x-wav", "audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/ogg",
        "audio/flac", "audio/webm", "audio/aac", "application/octet-stream",
    ):
        assert mime in CONTENT_TYPES
    assert {".wav", ".mp3", ".m4a", ".ogg", ".flac", ".webm", ".aac"} <= SUPPORTED_EXTENSIONS


@pytest.mark.parametrize(
    ("content_type", "filename", "expected"),
    [
        ("audio/wav", "take1.wav", True),
        ("audio/webm;codecs=opus", "rec.webm", True),
        ("AUDIO/MPEG", "song.bin", True),  # the bytes are sniffed: a specific audio type is enough
        ("application/octet-stream", "call.M4A", True),
        ("application/octet-stream", "notes.txt", False),
        ("", "a.flac", True),
        ("", "noext", False),
        ("text/plain", "a.wav", False),
        ("video/quicktime", "a.mov", False),
    ],
)
def test_is_supported(content_type, filename, expected):
    assert is_supported(content_type, filename) is expected
