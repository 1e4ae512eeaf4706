"""Recording conditions: signal functions that make clean synthetic speech sound recorded.

Every function takes ``(wave float32 mono [n], sample_rate Hz, rng, ...)`` and returns a new
float32 wave of the same length on the same timeline: an event at t ms stays at t ms. Filters
are zero-phase (centred linear-phase FIRs), resampling round trips are trimmed, and codec
output is aligned to its input by cross-correlation, which removes encoder delay and padding.

Two kinds of function live here. *Channel* conditions (noise, room tone, telephone band,
codecs, gain, limiting) change the whole recording and create no glitch-like events of their
own. *Impairments* (dropouts, clicks, soft clipping) are artifact-like events at an explicit
span: whoever injects one decides whether it is annotated (detector data) or not (STT data).
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

FRAME_MS = 10  # ms, frames of the active-speech measure
ACTIVE_DB = -30.0  # dB re the loudest frame: quieter 10 ms frames are not active speech
FIR_STOPBAND_DB = 60.0  # dB, attenuation of the band-pass filters
TELEPHONE_RATE = 8_000  # Hz, narrowband telephony
TELEPHONE_TRANSITION_HZ = 100.0  # Hz, width of each filter edge, inside the band
MU_LAW_CHANNELS = 256  # G.711 mu-law: 8 bits
MAX_CODEC_SHIFT_MS = 120.0  # ms, codec delay/padding searched for when aligning decoded audio
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)  # Hz, rates libopus encodes natively
MP3_KBPS_RANGE = {32_000: (32, 320), 16_000: (8, 160), 8_000: (8, 64)}  # MPEG-1/2/2.5 CBR limits by rate floor
VORBIS_KBPS_RANGE = (32, 70)  # kbps, libvorbis mono 16 kHz at compression level 1.0 .. 0.0 (measured)
CODECS = ("mp3", "vorbis", "opus")
NOISE_KINDS = ("white", "pink", "room", "babble")
ROOM_CORNER_HZ = 200.0  # Hz, room noise falls 12 dB/octave above this...
ROOM_HIGHPASS_HZ = 30.0  # Hz, ...and is cut below this (no DC drift)
HUM_HZ = (50.0, 60.0)  # mains frequency of room hum
RAMP_MS = 1.0  # ms, fades at the edges of comfort-noise fills
LIMITER_WINDOW_MS = 10.0  # ms, each side: the limiter's gain falls and recovers over this
BABBLE_WORDS = (
    "the a and then people about over market yesterday morning station really window after coffee "
    "meeting number seven twelve travel river summer paper garden maybe because there evening office"
).split()


# --- measures -----------------------------------------------------------------------------------


def active_mask(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per sample: whether its 10 ms frame is active speech (within ACTIVE_DB of the loudest)."""
    hop = max(1, sample_rate * FRAME_MS // 1000)
    n_frames = -(-wave.size // hop)
    padded = np.pad(np.asarray(wave, np.float64), (0, n_frames * hop - wave.size))
    rms = np.sqrt(np.mean(padded.reshape(n_frames, hop) ** 2, axis=1))
    active = rms > rms.max() * 10 ** (ACTIVE_DB / 20) if rms.max() > 0 else np.zeros(n_frames, bool)
    return np.repeat(active, hop)[: wave.size]


def active_power(wave: np.ndarray, mask: np.ndarray) -> float:
    """Mean power over the masked samples (over all when the mask is empty)."""
    x = np.asarray(wave, np.float64)
    return float(np.mean(x[mask] ** 2)) if mask.any() else float(np.mean(x**2))


def align_lag(reference: np.ndarray, other: np.ndarray, max_lag: int) -> int:
    """The lag L in [-max_lag, max_lag] maximising sum(reference[i] * other[i + L])."""
    size = 1 << int(np.ceil(np.log2(reference.size + other.size)))
    corr = np.fft.irfft(np.fft.rfft(other, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(corr[lags % size])])


def _fit(y: np.ndarray, n: int, lag: int = 0) -> np.ndarray:
    """y[lag : lag + n], zero-padded where that runs off either end."""
    out = np.zeros(n, np.float32)
    lo, hi = max(lag, 0), min(lag + n, y.size)
    if hi > lo:
        out[lo - lag : hi - lag] = y[lo:hi]
    return out


def resample(wave: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """torchaudio's windowed-sinc resampler: symmetric, so it keeps the timeline."""
    if rate == new_rate:
        return np.asarray(wave, np.float32)
    with torch.inference_mode():
        return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, np.float32)), rate, new_rate).numpy()


# --- noise ----------------------------------------------------------------------------------------


def _shaped_noise(n: int, sample_rate: int, rng: np.random.Generator, gain_of_hz) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    noise = np.fft.irfft(spectrum * gain_of_hz(np.maximum(freqs, 1.0)), n)
    return noise / (np.std(noise) or 1.0)


def make_noise(kind: str, n: int, sample_rate: int, rng: np.random.Generator, *, talkers=()) -> np.ndarray:
    """Unit-RMS noise of ``kind`` (NOISE_KINDS): white, pink (1/f), room (low-frequency, hum) or babble.

    Babble is the sum of ``talkers`` (speech waves at ``sample_rate``), each looped from a
    random offset and levelled, so no one voice stands out.
    """
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return _shaped_noise(n, sample_rate, rng, lambda f: (f >= 20.0) / np.sqrt(f))
    if kind == "room":
        shape = lambda f: (f / ROOM_HIGHPASS_HZ) ** 2 / (1 + (f / ROOM_HIGHPASS_HZ) ** 2) / (1 + (f / ROOM_CORNER_HZ) ** 2)  # noqa: E731
        rumble = _shaped_noise(n, sample_rate, rng, shape)
        t = np.arange(n) / sample_rate
        mains, phase = HUM_HZ[int(rng.integers(2))], rng.uniform(0, 2 * np.pi, 3)
        hum = sum(np.sin(2 * np.pi * mains * k * t + p) / k for k, p in zip((1, 2, 3), phase))
        x = rumble + rng.uniform(0.05, 0.3) * hum
        return x / np.std(x)
    if kind == "babble":
        if not talkers:
            raise ValueError("babble noise needs talkers: speech waves of other voices")
        mix = np.zeros(n)
        for talk in talkers:
            talk = np.asarray(talk, np.float64)
            looped = np.resize(np.roll(talk, -int(rng.integers(talk.size))), n)
            mix += looped / np.sqrt(active_power(talk, active_mask(talk, sample_rate)) or 1.0)
        return mix / (np.std(mix) or 1.0)
    raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS}")


def add_noise(wave, sample_rate: int, rng, *, snr_db: float, kind: str = "white", talkers=()) -> np.ndarray:
    """Add noise so that active speech power / noise power on the same frames is ``snr_db``."""
    noise = make_noise(kind, wave.size, sample_rate, rng, talkers=talkers)
    mask = active_mask(wave, sample_rate)
    gain = np.sqrt(active_power(wave, mask) / (active_power(noise, mask) or 1.0) / 10 ** (snr_db / 10))
    return (wave + gain * noise).astype(np.float32)


def add_room_tone(wave, sample_rate: int, rng, *, level_dbfs: float) -> np.ndarray:
    """Add stationary room noise at an absolute RMS level, so pauses are never digitally silent."""
    return (wave + 10 ** (level_dbfs / 20) * make_noise("room", wave.size, sample_rate, rng)).astype(np.float32)


# --- telephone ------------------------------------------------------------------------------------


def bandpass_fir(low_hz: float, high_hz: float, sample_rate: int, transition_hz: float) -> np.ndarray:
    """Linear-phase Kaiser-window band-pass: stopband edges at low_hz and high_hz, passband inside."""
    beta = 0.1102 * (FIR_STOPBAND_DB - 8.7)
    taps = int(np.ceil((FIR_STOPBAND_DB - 8.0) / (2.285 * 2 * np.pi * transition_hz / sample_rate))) | 1
    t = np.arange(taps) - (taps - 1) / 2
    lo, hi = (low_hz + transition_hz / 2) / sample_rate, min(high_hz - transition_hz / 2, sample_rate / 2) / sample_rate
    h = 2 * hi * np.sinc(2 * hi * t) - 2 * lo * np.sinc(2 * lo * t)
    return h * np.kaiser(taps, beta)


def filter_zero_phase(wave: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Convolve with an odd-length linear-phase FIR, centred: no delay, same length."""
    size = 1 << int(np.ceil(np.log2(wave.size + h.size)))
    full = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(h, size), size)
    half = (h.size - 1) // 2
    return full[half : half + wave.size].astype(np.float32)


def telephone(wave, sample_rate: int, rng, *, low_hz=300.0, high_hz=3400.0, narrowband=True, mu_law=False):
    """A telephone channel: optional 8 kHz round trip with G.711 mu-law, and a low_hz-high_hz band-pass.

    Deterministic (``rng`` is unused). Below low_hz and above high_hz the FIR stops at
    FIR_STOPBAND_DB; its edges lie inside the band.
    """
    rate = TELEPHONE_RATE if narrowband and sample_rate > TELEPHONE_RATE else sample_rate
    y = resample(wave, sample_rate, rate)
    if mu_law:
        codes = AF.mu_law_encoding(torch.from_numpy(np.clip(y, -1.0, 1.0)), MU_LAW_CHANNELS)
        y = AF.mu_law_decoding(codes, MU_LAW_CHANNELS).numpy()
    y = filter_zero_phase(y, bandpass_fir(low_hz, high_hz, rate, TELEPHONE_TRANSITION_HZ))
    return _fit(resample(y, rate, sample_rate), wave.size)


# --- codecs ---------------------------------------------------------------------------------------


def _mp3_level(kbps: float, sample_rate: int) -> float:
    lo, hi = next(r for floor, r in MP3_KBPS_RANGE.items() if sample_rate >= floor)
    return float(np.clip((hi - kbps) / (hi - lo), 0.0, 0.99))  # libsndfile refuses 1.0


def _encode_opus(wave: np.ndarray, sample_rate: int, kbps: float) -> tuple[bytes, int]:
    rate = sample_rate if sample_rate in OPUS_RATES else 48_000
    x = resample(wave, sample_rate, rate)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        stream.codec_context.bit_rate = int(kbps * 1000)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate, frame_size=stream.codec_context.frame_size or 960)
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for out in resampler.resample(frame) + resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return buf.getvalue(), rate


def _decode_pyav(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]  # mono: one plane
        return np.concatenate(chunks).astype(np.float32), stream.codec_context.sample_rate


def encode_decode(wave, sample_rate: int, codec: str, kbps: float) -> tuple[np.ndarray, int, float]:
    """One in-memory round trip through ``codec``: (decoded wave, its rate, bitrate actually used in kbps)."""
    x = np.clip(np.asarray(wave, np.float32), -1.0, 1.0)
    if codec == "opus":
        data, _ = _encode_opus(x, sample_rate, kbps)
        y, rate = _decode_pyav(data)
    elif codec in ("mp3", "vorbis"):
        fmt, subtype = ("MP3", "MPEG_LAYER_III") if codec == "mp3" else ("OGG", "VORBIS")
        if codec == "mp3":
            level = _mp3_level(kbps, sample_rate)
        else:
            level = float(np.clip((VORBIS_KBPS_RANGE[1] - kbps) / (VORBIS_KBPS_RANGE[1] - VORBIS_KBPS_RANGE[0]), 0, 1))
        buf = io.BytesIO()
        extra = {"bitrate_mode": "CONSTANT"} if codec == "mp3" else {}
        sf.write(buf, x, sample_rate, format=fmt, subtype=subtype, compression_level=level, **extra)
        data = buf.getvalue()
        y, rate = sf.read(io.BytesIO(data), dtype="float32")
    else:
        raise ValueError(f"unknown codec {codec!r}; choose one of {CODECS}")
    return y, rate, len(data) * 8 / 1000 / (wave.size / sample_rate)


def transcode(wave, sample_rate: int, codec: str, kbps: float) -> tuple[np.ndarray, float]:
    """:func:`lossy_codec`, also giving the bitrate the encoder really used (kbps)."""
    y, rate, used = encode_decode(wave, sample_rate, codec, kbps)
    y = resample(y, rate, sample_rate)
    max_lag = int(MAX_CODEC_SHIFT_MS * sample_rate / 1000)
    return _fit(y, wave.size, align_lag(np.asarray(wave, np.float64), y.astype(np.float64), max_lag)), used


def lossy_codec(wave, sample_rate: int, rng, *, codec: str = "mp3", kbps: float = 32.0) -> np.ndarray:
    """Encode and decode in memory, then remove the codec's delay and padding (cross-correlation).

    mp3 and opus hit ``kbps``; libvorbis picks its own rate from a quality mapped from kbps
    at 16 kHz mono (VORBIS_KBPS_RANGE), so other rates code higher (44.1 kHz: about 2x).
    """
    return transcode(wave, sample_rate, codec, kbps)[0]


# --- gain and dynamics ----------------------------------------------------------------------------


def change_gain(wave, sample_rate: int, rng, *, gain_db: float, max_peak: float = 0.99) -> np.ndarray:
    """Scale by gain_db, lowered where needed so the peak stays at or below max_peak (no clipping)."""
    peak = float(np.abs(wave).max()) or 1.0
    return (wave * min(10 ** (gain_db / 20), max_peak / peak)).astype(np.float32)


def ride_gain(wave, sample_rate: int, rng, *, depth_db: float, period_s: float = 2.0, max_peak: float = 0.99):
    """Slow gain riding: a smooth random gain curve within +-depth_db, knots every ~period_s."""
    n_knots = int(wave.size / sample_rate / period_s) + 2
    knots_db = rng.uniform(-depth_db, depth_db, n_knots)
    pos = np.linspace(0, n_knots - 1, wave.size)
    i = np.minimum(pos.astype(int), n_knots - 2)
    w = (1 - np.cos(np.pi * (pos - i))) / 2  # cosine interpolation: no corners
    y = wave * 10 ** (((1 - w) * knots_db[i] + w * knots_db[i + 1]) / 20)
    peak = float(np.abs(y).max()) or 1.0
    return (y * min(1.0, max_peak / peak)).astype(np.float32)


def limit(wave, sample_rate: int, rng, *, threshold_db: float) -> np.ndarray:
    """A smooth peak limiter: a gain <= 1 keeps |wave| at or under threshold_db dBFS, no hard edge.

    The gain is the running minimum of the needed gain over +-LIMITER_WINDOW_MS, then averaged
    with a Hann window of the same width: zero delay, and every average still includes the
    sample's own need, so no peak escapes.
    """
    ceiling = 10 ** (threshold_db / 20)
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(wave), 1e-9))
    half = max(1, int(LIMITER_WINDOW_MS * sample_rate / 1000))
    padded = torch.from_numpy(np.pad(-need, half, mode="edge")).view(1, 1, -1)
    floor = -torch.nn.functional.max_pool1d(padded, 2 * half + 1, stride=1).view(-1).numpy()
    kernel = np.hanning(2 * half + 3)[1:-1]
    gain = filter_zero_phase(np.pad(floor, half, mode="edge"), kernel / kernel.sum())[half:-half]
    return (wave * np.minimum(gain, 1.0)).astype(np.float32)


# --- impairments (artifact-like: the caller decides whether they are annotated) ---------------------


def insert_dropout(wave, sample_rate: int, rng, *, start: int, length: int, comfort_rms: float = 0.0):
    """Replace samples [start, start + length) with silence, or comfort noise at comfort_rms."""
    y = np.array(wave, np.float32)
    fill = comfort_rms * rng.standard_normal(length) if comfort_rms > 0 else np.zeros(length)
    if comfort_rms > 0 and length > 2:  # no step at the edges of the fill
        ramp = min(length // 2, max(1, int(RAMP_MS * sample_rate / 1000)))
        fill[:ramp] *= np.linspace(0, 1, ramp)
        fill[length - ramp :] *= np.linspace(1, 0, ramp)
    y[start : start + length] = fill
    return y


def insert_click(wave, sample_rate: int, rng, *, start: int, length: int, amplitude: float):
    """Overwrite [start, start + length) with a decaying impulse of random signs at ``amplitude``."""
    y = np.array(wave, np.float32)
    signs = rng.choice([-1.0, 1.0], length)
    y[start : start + length] = amplitude * signs * np.exp(-np.arange(length) / max(1.0, length / 3))
    return y


def soft_clip(wave, sample_rate: int, rng, *, drive_db: float, ceiling: float, start: int = 0, stop: int | None = None):
    """tanh saturation of [start, stop): gain drive_db, then a smooth knee up to ``ceiling``."""
    y = np.array(wave, np.float32)
    seg = y[start:stop]
    y[start:stop] = ceiling * np.tanh(seg * 10 ** (drive_db / 20) / ceiling)
    return y
