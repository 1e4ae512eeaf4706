"""Audio bytes in, 16 kHz mono float32 out (and the reverse, for tests and synthetic data).

Every model input goes through :func:`decode_audio`: libsndfile reads WAV/FLAC/OGG/MP3,
FFmpeg (PyAV) reads everything else (M4A/MP4, ADTS AAC, WebM/Opus, ...). Input is
untrusted, so the decoder refuses cheaply (declared duration before decoding), checks
what it decoded (truncation, NaN/Inf, absurd float levels) and only ever raises
:class:`AudioDecodeError` for bad input. What an upload may declare is schemas.audio_formats.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000  # Hz, every model input

MAX_ABS_SAMPLE = 1000.0  # full-scale units (+60 dBFS): float data beyond this is corrupt
TRUNCATION_TOLERANCE_S = 0.05  # s, decoded may fall short of the declared length by this...
TRUNCATION_TOLERANCE_FRACTION = 0.005  # ...plus this fraction of it before a file is "truncated"
ADTS_PRIMING_SAMPLES = 1024  # samples, LC-AAC encoder delay (FFmpeg, FAAC, fdk) ADTS cannot signal
READ_BLOCK_FRAMES = 1 << 20  # frames per libsndfile read; bounds peak memory to one block
_WAV_STREAMING_SIZE = 0x7FFF0000  # bytes; data sizes at/above this are "unknown length" placeholders

# Containers whose header states the exact length (elementary MP3/ADTS streams only estimate it).
_EXACT_LENGTH_DEMUXERS = frozenset({"mov", "mp4", "m4a", "matroska", "webm", "ogg", "flac", "wav"})

# fmt -> (libsndfile format, subtype) or (FFmpeg muxer, encoder, encoder sample rate or None)
_SOUNDFILE_ENCODINGS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
_PYAV_ENCODINGS = {
    "m4a": ("ipod", "aac", None),
    "aac": ("adts", "aac", None),
    "webm": ("webm", "libopus", 48_000),  # Opus runs at 48 kHz (or 8/12/16/24 kHz)
}
ENCODE_FORMATS = tuple(_SOUNDFILE_ENCODINGS) + tuple(_PYAV_ENCODINGS)
# Channel layouts per encoder for anonymous channels. AAC band-limits an LFE channel, so its
# layouts have none; libopus accepts only the Vorbis-order layouts (it codes LFE full band).
_LAYOUTS = {
    "aac": {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "6.0", 7: "7.0", 8: "octagonal"},
    "libopus": {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"},
}


class AudioDecodeError(ValueError):
    """The bytes are not audio we can use; the message says why."""


@dataclass(frozen=True)
class DecodedAudio:
    waveform: np.ndarray  # float32 mono at SAMPLE_RATE, shape [n]
    source_sample_rate: int  # Hz, as stored in the file
    source_channels: int
    duration_ms: int  # of the source audio


def duration_ms(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> int:
    """Whole milliseconds of a waveform, rounded as ``decode_audio`` rounds its source's."""
    return round(np.asarray(waveform).size * 1000 / sample_rate)


def decode_audio(data: bytes, *, max_seconds: float | None = None) -> DecodedAudio:
    """Decode any supported file to float32 mono at SAMPLE_RATE (channel mean, then resampled).

    ``max_seconds`` is checked against the container's declared length before decoding and
    again while decoding. Callers handling untrusted uploads should always pass it: without
    a limit a tiny file of compressed silence may expand to gigabytes.
    """
    if not data:
        raise AudioDecodeError("empty file: 0 bytes")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
    data = bytes(data)
    decoded = _decode_soundfile(data, max_seconds)
    if decoded is None:
        decoded = _decode_pyav(data, max_seconds)
    mono, rate, channels = decoded
    if mono.size == 0:
        raise AudioDecodeError("zero duration: the file holds no audio samples")
    if not np.isfinite(mono).all():
        raise AudioDecodeError("corrupt audio: the decoded samples contain NaN or Inf")
    peak = float(np.abs(mono).max())
    if peak > MAX_ABS_SAMPLE:
        raise AudioDecodeError(
            f"corrupt audio: sample magnitude {peak:.3g} is over {MAX_ABS_SAMPLE:g}x full scale"
        )
    return DecodedAudio(
        waveform=_to_model_rate(mono, rate),
        source_sample_rate=rate,
        source_channels=channels,
        duration_ms=round(mono.size * 1000 / rate),
    )


def _to_model_rate(mono: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(mono, dtype=np.float32)
    with torch.inference_mode():
        out = AF.resample(torch.from_numpy(mono), rate, SAMPLE_RATE)
    return np.ascontiguousarray(out.numpy(), dtype=np.float32)


def _check_limit(seconds: float, max_seconds: float | None, how: str) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioDecodeError(
            f"audio too long: {how} {seconds:.1f} s, longer than the limit of {max_seconds:g} s"
        )


def _check_truncation(decoded_s: float, declared_s: float) -> None:
    slack = TRUNCATION_TOLERANCE_S + TRUNCATION_TOLERANCE_FRACTION * declared_s
    if decoded_s < declared_s - slack:
        raise AudioDecodeError(
            f"truncated file: the header declares {declared_s:.2f} s but only "
            f"{decoded_s:.2f} s could be decoded"
        )


# --- libsndfile --------------------------------------------------------------------------


def _decode_soundfile(data: bytes, max_seconds: float | None) -> tuple[np.ndarray, int, int] | None:
    """(mono, rate, channels), or None when libsndfile cannot read the bytes (FFmpeg tries)."""
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    with f:
        rate, channels, declared = int(f.samplerate), int(f.channels), int(f.frames)
        if rate <= 0 or channels <= 0:
            raise AudioDecodeError(f"corrupt header: sample rate {rate} Hz, {channels} channels")
        if f.format == "WAV":
            declared = max(declared, _wav_declared_frames(data, channels, f.subtype) or 0)
        _check_limit(declared / rate, max_seconds, "the header declares")
        blocks, n = [], 0
        try:
            while True:
                block = f.read(READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                with np.errstate(invalid="ignore", over="ignore"):  # garbage floats are judged later
                    blocks.append(block.mean(axis=1, dtype=np.float32))
                n += block.shape[0]
                _check_limit(n / rate, max_seconds, "decoding reached")
        except (sf.LibsndfileError, RuntimeError) as e:
            if n == 0:
                return None
            raise AudioDecodeError(f"corrupt {f.format} data after {n / rate:.2f} s: {e}") from e
    if n == 0 and declared > 0:
        return None
    if f.format != "MP3" or _mp3_has_length_tag(data):
        _check_truncation(n / rate, declared / rate)
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return mono, rate, channels


def _wav_declared_frames(data: bytes, channels: int, subtype: str) -> int | None:
    """Frames the RIFF ``data`` chunk claims (libsndfile silently clamps it to the file size)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    bits = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}
    if subtype not in bits:
        return None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk_id == b"data":
            if size == 0 or size >= _WAV_STREAMING_SIZE:
                return None
            return size // (channels * bits[subtype] // 8)
        offset += 8 + size + (size & 1)
    return None


def _mp3_has_length_tag(data: bytes) -> bool:
    """Whether an MP3 carries a Xing/Info/VBRI frame count (else its length is only estimated)."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = data[6:10]
        start = 10 + ((size[0] & 0x7F) << 21 | (size[1] & 0x7F) << 14 | (size[2] & 0x7F) << 7 | (size[3] & 0x7F))
    head = data[start : start + 64]
    return any(tag in head for tag in (b"Xing", b"Info", b"VBRI"))


# --- FFmpeg ------------------------------------------------------------------------------------


def _decode_pyav(data: bytes, max_seconds: float | None) -> tuple[np.ndarray, int, int]:
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except Exception as e:  # FFmpeg probing raises many types on hostile bytes
        raise AudioDecodeError(
            f"unsupported or corrupt audio format ({type(e).__name__}: {e}); "
            f"accepted: WAV, FLAC, OGG, MP3, M4A/MP4, AAC, WebM/Opus"
        ) from e
    with container:
        demuxers = set(container.format.name.split(","))
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise AudioDecodeError(
                f"no audio stream in the {container.format.name} container (streams: {', '.join(kinds)})"
            )
        stream = container.streams.audio[0]
        declared_s = _declared_seconds(container, stream)
        if declared_s is not None:
            _check_limit(declared_s, max_seconds, "the container declares")
        chunks: list[np.ndarray] = []
        rate = channels = n = 0
        resampler = None
        try:
            for frame in container.decode(stream):
                frame_channels = frame.layout.nb_channels
                if resampler is None:
                    rate, channels = int(frame.sample_rate), frame_channels
                    if rate <= 0 or channels <= 0:
                        raise AudioDecodeError(f"corrupt stream: {rate} Hz, {channels} channels")
                    # Packed float: PyAV's planar to_ndarray misreads frames of 8+ channels.
                    resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=rate)
                elif frame.sample_rate != rate or frame_channels != channels:
                    raise AudioDecodeError(
                        f"stream changes format mid-stream ({rate} Hz x{channels} -> "
                        f"{frame.sample_rate} Hz x{frame_channels}); not supported"
                    )
                for out in resampler.resample(frame):
                    n += _append_mono(chunks, out, channels)
                _check_limit(n / rate, max_seconds, "decoding reached")
            if resampler is not None:
                for out in resampler.resample(None):
                    n += _append_mono(chunks, out, channels)
        except AudioDecodeError:
            raise
        except Exception as e:
            raise AudioDecodeError(
                f"corrupt {container.format.name} audio after {n / max(rate, 1):.2f} s "
                f"({type(e).__name__}: {e})"
            ) from e
    if n == 0:
        raise AudioDecodeError(f"zero duration: no decodable audio in the {container.format.name} stream")
    mono = np.concatenate(chunks)
    if "aac" in demuxers:  # raw ADTS keeps the encoder's priming samples
        mono = mono[ADTS_PRIMING_SAMPLES:]
    exact = bool(demuxers & _EXACT_LENGTH_DEMUXERS) or ("mp3" in demuxers and _mp3_has_length_tag(data))
    if declared_s is not None and exact:
        _check_truncation(mono.size / rate, declared_s)
        if demuxers & {"mov", "mp4"}:  # drop the encoder's end padding the edit list excludes
            mono = mono[: max(1, round(declared_s * rate))]
    return mono, rate, channels


def _append_mono(chunks: list[np.ndarray], frame: av.AudioFrame, channels: int) -> int:
    packed = frame.to_ndarray().reshape(-1, channels)
    with np.errstate(invalid="ignore", over="ignore"):
        chunks.append(packed.mean(axis=1, dtype=np.float32))
    return packed.shape[0]


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


# --- encoding ---------------------------------------------------------------------------------


def encode_audio(waveform: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode float audio (shape [n] or [n, channels], full scale +-1; clipped there) as ``fmt``.

    wav/flac are 16-bit PCM, ogg is Vorbis, mp3 is LAME (mono/stereo only), m4a and aac
    (ADTS) are FFmpeg's AAC-LC, webm is Opus at 48 kHz.
    """
    if fmt not in ENCODE_FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; choose one of {', '.join(ENCODE_FORMATS)}")
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"waveform must be [n] or [n, channels] with n > 0, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf")
    x = np.ascontiguousarray(np.clip(x, -1.0, 1.0))
    if fmt in _SOUNDFILE_ENCODINGS:
        if fmt == "mp3" and x.shape[1] > 2:
            raise ValueError(f"mp3 holds 1 or 2 channels, got {x.shape[1]}; use another format")
        container, subtype = _SOUNDFILE_ENCODINGS[fmt]
        buf = io.BytesIO()
        try:
            sf.write(buf, x, int(sample_rate), format=container, subtype=subtype)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise ValueError(f"cannot encode {fmt} at {sample_rate} Hz x{x.shape[1]}: {e}") from e
        return buf.getvalue()
    return _encode_pyav(x, int(sample_rate), fmt)


def _encode_pyav(x: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    muxer, codec, codec_rate = _PYAV_ENCODINGS[fmt]
    layout = _LAYOUTS[codec].get(x.shape[1])
    if layout is None:
        raise ValueError(f"{fmt} encoding supports 1-8 channels, got {x.shape[1]}")
    rate = codec_rate or sample_rate
    buf = io.BytesIO()
    try:
        with av.open(buf, mode="w", format=muxer) as container:
            stream = container.add_stream(codec, rate=rate, layout=layout)
            ctx = stream.codec_context
            resampler = av.AudioResampler(
                format=ctx.codec.audio_formats[0].name, layout=layout, rate=rate,
                frame_size=ctx.frame_size or 1024,
            )
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout=layout)
            # Timestamps let the encoder's priming reach the muxer (an MP4 edit list).
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
            for out in resampler.resample(frame) + resampler.resample(None):
                container.mux(stream.encode(out))
            container.mux(stream.encode(None))
    except av.FFmpegError as e:
        raise ValueError(f"cannot encode {fmt} at {sample_rate} Hz x{x.shape[1]}: {e}") from e
    return buf.getvalue()
