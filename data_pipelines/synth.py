"""Labelled synthetic speech: espeak-ng sentences with injected artifacts and exact ground truth.

A clip is sentences (the last one possibly cut to a word prefix, so that the length is exact
and ``text`` stays an exact transcript) separated by short pauses (<= MAX_NORMAL_PAUSE_MS)
over a mild noise floor. Artifacts are then written into it at
integer-millisecond spans that never overlap and are >= MIN_ARTIFACT_GAP_MS apart:

* glitch: a dropout (10-60 ms zeroed) or a click (1-5 ms impulse, annotated as 20 ms around it)
  inside speech; optionally (``glitch_kinds``) also a short dropout (3-10 ms zeroed, inside
  speech) or a lone click (1-3 ms, anywhere, annotated as 20 ms around it);
* long_pause: 800-2000 ms of noise floor in place of a normal inter-sentence pause;
* clipping: 300-1000 ms of speech amplified and hard-clipped at a ceiling above all clean audio;
* noise_burst: 100-600 ms of loud broadband noise.

An artifact that finds no valid place (short clips) is left out rather than placed loosely.

``conditions`` (data_pipelines.condition_chain) make a clip sound recorded: the room and line
families (room tone, noise, telephone band) go onto the speech before the artifacts are
written, so a dropout silences the room too and a click keeps its full band; gain, limiter
and codec go on after, except where they would erase an artifact's evidence (:data:`ERASES`,
GLITCH_MIN_KBPS). Impairment families are never drawn here: the artifacts above are the
annotated impairments.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from data_pipelines import conditions as C
from data_pipelines.audio import ENCODE_FORMATS, SAMPLE_RATE, encode_audio
from data_pipelines.condition_chain import AFTER_ARTIFACTS, BEFORE_ARTIFACTS, PRESETS, Conditions, apply_conditions, chain_rng
from data_pipelines.events import Event
from data_pipelines.speech import SpeechSynthesisError, speak  # noqa: F401  (re-exported)

ARTIFACT_TYPES = ("glitch", "long_pause", "clipping", "noise_burst")
GLITCH_KINDS = ("dropout", "click", "short_dropout", "lone_click")
DEFAULT_GLITCH_KINDS = ("dropout", "click")

VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp")
VOICE_VARIANTS = ("", "+f3", "+m3", "+f2", "+m2", "+f4")
RATE_WPM = (130, 200)
PITCH = (35, 70)  # espeak-ng 0-99

LEAD_MS = (150, 250)  # noise floor before the first and after the last sentence
MAX_NORMAL_PAUSE_MS = 300  # longest pause between or inside sentences (long_pause is >= 800)
NORMAL_PAUSE_MS = (100, MAX_NORMAL_PAUSE_MS)  # between sentences
LONG_PAUSE_MS = (800, 2000)
DROPOUT_MS = (10, 60)
CLICK_MS = (1, 5)
CLICK_LABEL_MS = 20  # a click is annotated as this span centred on it
SHORT_DROPOUT_MS = (3, 10)
LONE_CLICK_MS = (1.0, 3.0)
CLIPPING_MS = (300, 1000)
NOISE_BURST_MS = (100, 600)
MIN_ARTIFACT_GAP_MS = 300  # between artifacts, and from the clip's ends
SPEECH_PEAK = (0.2, 0.5)  # full-scale peak of the clean speech
NOISE_FLOOR_DBFS = (-66.0, -54.0)  # RMS of the background noise
CLIP_CEILING_OVER_PEAK = (1.2, 1.9)  # clipping ceiling / clean peak (capped at CLIP_CEILING_MAX)
CLIP_CEILING_MAX = 0.95
CLIP_OVERDRIVE = (3.0, 10.0)  # amplified speech peak / ceiling
NOISE_BURST_DB_OVER_SPEECH = (0.0, 10.0)  # burst RMS re active-speech RMS
TRIM_LEVEL = 0.01  # re sentence peak (-40 dB, at or under the noise floor): quieter ends are cut
ACTIVE_LEVEL = 0.05  # re speech peak: 10 ms frames above this RMS count as speech
PLACEMENT_TRIES = 300

_ADJECTIVES = (
    "quiet bright heavy little old young careful sudden silver narrow distant golden gentle busy "
    "empty modern simple hungry patient curious wooden yellow frozen rapid friendly"
).split()
_NOUNS = (
    "engineer garden river teacher window basket village doctor market letter mountain station "
    "kitchen captain farmer painter signal bridge library island forest morning engine camera "
    "bicycle concert harbor student neighbor"
).split()
_VERBS = (
    "carried found painted opened followed noticed repaired described visited measured collected "
    "cleaned watched borrowed delivered remembered ordered tested"
).split()
_PLACES = (
    "near the station|across the bridge|before the storm|after lunch|in the morning|behind the library|"
    "along the river|at the market|during the concert|on the island"
).split("|")
_FILLERS = ("so", "yes", "and")  # short words that fill what no sentence prefix fits
_NAMES = "Anna Peter Maria James Laura Thomas Sofia Daniel Emma Victor".split()
_TEMPLATES = (
    "The {adj} {noun} {verb} the {adj2} {noun2} {place}",
    "{name} {verb} a {adj} {noun} {place}",
    "Every {noun} {verb} the {noun2} {place}",
    "Yesterday the {noun} {verb} a {adj} {noun2}",
    "{name} and the {adj} {noun} {verb} the {noun2} {place}",
)


@dataclass
class SynthClip:
    waveform: np.ndarray  # float32 mono, shape [n]
    sample_rate: int  # Hz
    events: list[Event]  # ground truth, sorted by start_ms
    text: str  # exact transcript
    voice: str  # espeak-ng voice, e.g. "en-gb-scotland+f3"
    conditions: list[dict] = field(default_factory=list)  # recording conditions applied, in order

# Channel families that would erase an artifact type's evidence, skipped for clips holding one:
# a limiter lifts unlabelled speech peaks to the level of clipping's plateaus.
ERASES: dict[str, tuple[str, ...]] = {"limiter": ("clipping",)}
# Codec bitrates below this erase glitches: opus at 8 kbps codes 4 kHz of band, so a 1 ms click
# may end below the speech's own sample-to-sample jumps and a 3-10 ms dropout fills to 0.6 of
# the speech RMS around it. Clips holding a glitch are coded at this bitrate or more.
GLITCH_MIN_KBPS = 16.0


def ms_to_sample(ms: int, sample_rate: int) -> int:
    """Index of the first sample at or after ``ms`` milliseconds (rounded)."""
    return round(ms * sample_rate / 1000)


def random_sentence(rng: np.random.Generator) -> str:
    """A short English sentence without commas (so espeak-ng inserts no long pauses)."""
    pick = lambda words: words[int(rng.integers(len(words)))]  # noqa: E731
    adj, adj2 = rng.choice(_ADJECTIVES, 2, replace=False)
    noun, noun2 = rng.choice(_NOUNS, 2, replace=False)
    template = pick(_TEMPLATES)
    text = template.format(
        adj=adj, adj2=adj2, noun=noun, noun2=noun2, verb=pick(_VERBS), place=pick(_PLACES), name=pick(_NAMES)
    )
    return re.sub(r"\ba (?=[aeiou])", "an ", text) + "."


def make_clip(
    seed: int,
    *,
    duration_s: float = 15.0,
    artifact_types: Sequence[str] = ARTIFACT_TYPES,
    sample_rate: int = SAMPLE_RATE,
    events_per_type: tuple[int, int] = (1, 2),
    glitch_kinds: Sequence[str] = DEFAULT_GLITCH_KINDS,
    conditions: Conditions | None = None,
) -> SynthClip:
    """A deterministic clip for ``seed`` of exactly round(duration_s * sample_rate) samples.

    Each type in ``artifact_types`` gets between events_per_type[0] and [1] events (inclusive),
    as many as fit. Speech is whole sentences, the last one possibly cut to a word prefix so
    the length comes out exact; ``text`` is what is spoken. A glitch is one of
    ``glitch_kinds`` (GLITCH_KINDS) with equal odds. ``conditions`` None (or the clean preset)
    gives exactly the clip of earlier versions; the chain drawn is in ``SynthClip.conditions``.
    """
    unknown = set(artifact_types) - set(ARTIFACT_TYPES)
    if unknown:
        raise ValueError(f"unknown artifact types {sorted(unknown)}; choose from {ARTIFACT_TYPES}")
    if not glitch_kinds or set(glitch_kinds) - set(GLITCH_KINDS):
        raise ValueError(f"glitch_kinds must be one or more of {GLITCH_KINDS}, got {list(glitch_kinds)}")
    lo, hi = events_per_type
    if not 0 <= lo <= hi:
        raise ValueError(f"events_per_type must be (low, high) with 0 <= low <= high, got {events_per_type}")
    rng = np.random.default_rng(seed)
    voice = str(rng.choice(VOICES)) + str(rng.choice(VOICE_VARIANTS))
    rate_wpm = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1))
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    counts = {t: int(rng.integers(lo, hi + 1)) for t in artifact_types}
    pauses = [int(rng.integers(LONG_PAUSE_MS[0], LONG_PAUSE_MS[1] + 1)) for _ in range(counts.get("long_pause", 0))]
    n = max(1, round(duration_s * sample_rate))
    say = lambda text: speak(text, voice=voice, rate_wpm=rate_wpm, pitch=pitch)  # noqa: E731
    sentences, texts, native_rate, pauses = _sentences(rng, say, rate_wpm, n * 1000 // sample_rate, pauses)
    track, slots = _layout(rng, sentences, pauses, native_rate, n * 1000 // sample_rate)
    track = _resample(track, native_rate, sample_rate)[:n]
    track = np.pad(track, (0, n - track.size))
    for start, end in slots:  # no resampling ringing inside the labelled pauses
        track[ms_to_sample(start, sample_rate) : ms_to_sample(end, sample_rate)] = 0.0
    peak = float(np.abs(track).max()) or 1.0
    speech_peak = rng.uniform(*SPEECH_PEAK)
    track *= speech_peak / peak
    active = _active_frames(track, sample_rate, speech_peak)
    noise_rms = 10 ** (rng.uniform(*NOISE_FLOOR_DBFS) / 20)
    x = (track + noise_rms * rng.standard_normal(n)).astype(np.float32)
    applied: list[dict] = []
    crng = chain_rng(seed)
    if conditions is not None:
        x, applied = apply_conditions(x, sample_rate, conditions, crng, families=BEFORE_ARTIFACTS)
    level = max(speech_peak, float(np.abs(x).max())) if applied else speech_peak  # what the ceiling must clear
    ceiling = min(CLIP_CEILING_MAX, level * rng.uniform(*CLIP_CEILING_OVER_PEAK))
    placer = _Placer(rng, n * 1000 // sample_rate, [Event("long_pause", s, e) for s, e in slots], active)
    for _ in range(counts.get("clipping", 0)):
        if span := placer.place("clipping", CLIPPING_MS, need_speech=0.6):
            _clip(x, _samples(span, sample_rate), ceiling, rng)
    speech_rms = float(np.sqrt(np.mean(np.square(track[_sample_mask(active, sample_rate, n)])))) if active.any() else 0.05
    for _ in range(counts.get("noise_burst", 0)):
        if span := placer.place("noise_burst", NOISE_BURST_MS, need_speech=0.0):
            _noise_burst(x, _samples(span, sample_rate), speech_rms, 0.95 * ceiling, rng, sample_rate)
    for _ in range(counts.get("glitch", 0)):
        kind = glitch_kinds[int(rng.random() * len(glitch_kinds))]  # the defaults: rng.random() < 0.5
        _glitch(x, kind, placer, ceiling, rng, sample_rate)
    events = sorted(placer.events, key=lambda e: (e.start_ms, e.artifact_type))
    if conditions is not None:
        present = {e.artifact_type for e in events}
        after = [f for f in AFTER_ARTIFACTS if not set(ERASES.get(f, ())) & present]
        if "glitch" in present and conditions.codec is not None:
            conditions = conditions.model_copy(update={"codec": conditions.codec.at_least(GLITCH_MIN_KBPS)})
        x, more = apply_conditions(x, sample_rate, conditions, crng, families=after)
        applied += more
    return SynthClip(x, sample_rate, events, " ".join(texts), voice, applied)


def _glitch(x: np.ndarray, kind: str, placer, ceiling: float, rng, sample_rate: int) -> None:
    """Write one glitch of ``kind`` into x (in place) where the placer finds room."""
    if kind in ("dropout", "short_dropout"):
        if span := placer.place("glitch", DROPOUT_MS if kind == "dropout" else SHORT_DROPOUT_MS, need_speech=1.0):
            lo_i, hi_i = _samples(span, sample_rate)
            x[lo_i:hi_i] = 0.0
    elif kind == "click":
        if span := placer.place("glitch", (CLICK_LABEL_MS, CLICK_LABEL_MS), need_speech=1.0):
            _click(x, span, ceiling, rng, sample_rate)
    elif span := placer.place("glitch", (CLICK_LABEL_MS, CLICK_LABEL_MS), need_speech=0.0):  # lone click
        length = max(1, round(rng.uniform(*LONE_CLICK_MS) * sample_rate / 1000))
        start = ms_to_sample((span[0] + span[1]) // 2, sample_rate)
        x[:] = C.insert_click(x, sample_rate, rng, start=start, length=length, amplitude=ceiling * rng.uniform(0.85, 0.95))


def _samples(span: tuple[int, int], sample_rate: int) -> tuple[int, int]:
    return ms_to_sample(span[0], sample_rate), ms_to_sample(span[1], sample_rate)


def _clip(x: np.ndarray, span: tuple[int, int], ceiling: float, rng: np.random.Generator) -> None:
    seg = x[span[0] : span[1]]
    gain = ceiling * rng.uniform(*CLIP_OVERDRIVE) / float(np.abs(seg).max())
    x[span[0] : span[1]] = np.clip(seg * gain, -ceiling, ceiling)


def _noise_burst(x, span, speech_rms: float, max_peak: float, rng, sample_rate: int) -> None:
    """Add broadband noise (white, randomly tilted by a one-pole low-pass) at or above speech level."""
    n = span[1] - span[0]
    alpha = rng.uniform(0.0, 0.6)  # pole of the tilt: zero-crossing rate stays >= ~0.3
    white = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    tilt = AF.lfilter(white, torch.tensor([1.0, -alpha]), torch.tensor([1.0 - alpha, 0.0]), clamp=False).numpy()
    burst = tilt / float(np.sqrt(np.mean(np.square(tilt))))
    ramp = min(n // 2, max(1, sample_rate // 1000))  # 1 ms fades, inside the span
    burst[:ramp] *= np.linspace(0.0, 1.0, ramp, endpoint=False)
    burst[n - ramp :] *= np.linspace(1.0, 0.0, ramp, endpoint=False)
    seg = x[span[0] : span[1]]
    gain = speech_rms * 10 ** (rng.uniform(*NOISE_BURST_DB_OVER_SPEECH) / 20)
    if np.abs(seg + gain * burst).max() > max_peak:  # largest gain that stays below the ceiling
        lo, hi = 0.0, gain
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.abs(seg + mid * burst).max() <= max_peak else (lo, mid)
        gain = lo
    x[span[0] : span[1]] = seg + gain * burst


def _click(x: np.ndarray, span: tuple[int, int], ceiling: float, rng, sample_rate: int) -> None:
    """Overwrite 1-5 ms at the label's centre with a decaying impulse of random sign pattern."""
    start = ms_to_sample((span[0] + span[1]) // 2, sample_rate)
    n = max(1, round(rng.uniform(*CLICK_MS) * sample_rate / 1000))
    signs = rng.choice([-1.0, 1.0], n)
    x[start : start + n] = ceiling * rng.uniform(0.85, 0.95) * signs * np.exp(-np.arange(n) / max(1.0, n / 3))


def _slot_ms(n_samples: int, rate: int) -> int:
    """Whole milliseconds that hold n_samples (plus one, so rounding never overlaps a neighbour)."""
    return -(-(n_samples + 1) * 1000 // rate)


def _sentences(rng, say, rate_wpm: int, target_ms: int, pauses: list[int]):
    """Sentences (native rate) that fill target_ms at minimum pauses, and the long pauses kept.

    Long pauses need a sentence boundary each; the longest are dropped when there are too few.
    A sentence that no longer fits is replaced by its longest word prefix that does.
    """
    pauses = sorted(pauses)
    waves, texts, used, rate = [], [], 2 * LEAD_MS[0], 0
    pending: list[tuple[str, np.ndarray, int]] = []
    sentence_ms = 8 * 60_000 / rate_wpm  # ~8 words a sentence
    with ThreadPoolExecutor(max_workers=4) as pool:
        while True:
            budget = target_ms - sum(pauses) + NORMAL_PAUSE_MS[0] * len(pauses)
            if not pending:
                batch = max(1, min(8, int((budget - used) / sentence_ms) + 1))
                new = [random_sentence(rng) for _ in range(batch)]
                pending = [(t, *w) for t, w in zip(new, pool.map(say, new))]
            text, wave, rate = pending.pop(0)
            wave = _cap_pauses(_trim(wave), rate)
            gap = NORMAL_PAUSE_MS[0] if waves else 0
            if used + gap + _slot_ms(wave.size, rate) <= budget:
                waves.append(wave)
                texts.append(text)
                used += gap + _slot_ms(wave.size, rate)
                continue
            if pauses and len(waves) < len(pauses):  # this sentence would have to make a boundary
                pauses.pop()  # frees room for more speech
                pending.insert(0, (text, wave, rate))
                continue
            text, wave = _fit_prefix(say, text, budget - used - gap)
            if wave is not None:
                waves.append(wave)
                texts.append(text)
                used += gap + _slot_ms(wave.size, rate)
            if pauses and len(waves) - 1 < len(pauses):
                pauses.pop()
                continue
            return waves, texts, rate or 22_050, pauses


def _fit_prefix(say, text: str, room_ms: int):
    """(text, wave) of the longest word prefix of text (else a filler word) that fits room_ms.

    (None, None) when nothing fits; the room left is then under a short word (~300 ms).
    """
    words = text.rstrip(".").split()
    fastest_word_ms = 200  # no prefix of k words is shorter than k times this
    candidates = [" ".join(words[:k]) for k in range(len(words) - 1, 0, -1) if room_ms >= fastest_word_ms * k]
    if room_ms >= fastest_word_ms:
        candidates += _FILLERS
    for candidate in candidates:
        wave, rate = say(candidate)
        wave = _cap_pauses(_trim(wave), rate)
        if _slot_ms(wave.size, rate) <= room_ms:
            return candidate, wave
    return None, None


def _trim(wave: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wave) > TRIM_LEVEL * float(np.abs(wave).max()))
    return wave[loud[0] : loud[-1] + 1] if loud.size else wave[:1]


def _cap_pauses(wave: np.ndarray, rate: int) -> np.ndarray:
    """Shorten silences inside a sentence to MAX_NORMAL_PAUSE_MS."""
    hop = rate // 100
    frames = np.abs(wave[: wave.size // hop * hop]).reshape(-1, hop).max(axis=1)
    quiet = frames < ACTIVE_LEVEL * float(frames.max() or 1.0)
    keep = np.ones(wave.size, dtype=bool)
    limit = MAX_NORMAL_PAUSE_MS // 10  # frames
    edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start > limit:
            keep[(start + limit) * hop : stop * hop] = False
    return wave[keep]


def _resample(wave: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    if rate == sample_rate:
        return wave.astype(np.float32)
    with torch.inference_mode():
        return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, sample_rate).numpy()


def _layout(rng, sentences, pauses, rate: int, target_ms: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Place sentences on an integer-ms grid filling target_ms; long pauses replace normal ones.

    Normal pauses and the lead-in/out start at their minimum; the slack is spread over them at
    random up to their maximum (a rest, under a short word, lengthens lead-in and lead-out).
    Returns the speech track at ``rate`` and the (start_ms, end_ms) of each long pause.
    """
    boundaries = max(len(sentences) - 1, 0)
    chosen = sorted(rng.choice(boundaries, len(pauses), replace=False).tolist()) if pauses else []
    long_gap = dict(zip(chosen, rng.permutation(pauses).tolist()))
    normal = [b for b in range(boundaries) if b not in long_gap]
    fixed = sum(_slot_ms(w.size, rate) for w in sentences) + sum(pauses)
    floors = [LEAD_MS[0]] * 2 + [NORMAL_PAUSE_MS[0]] * len(normal)
    room = [LEAD_MS[1] - LEAD_MS[0]] * 2 + [NORMAL_PAUSE_MS[1] - NORMAL_PAUSE_MS[0]] * len(normal)
    slack = max(0, target_ms - fixed - sum(floors))
    extra = _spread(rng, slack, room)
    extra[0] += (slack - sum(extra)) // 2  # what no pause can take: half before, half after the speech
    gaps = dict(long_gap)  # the lead-out (floors[1] + extra[1]) is what remains after the last sentence
    gaps.update({b: floors[2 + i] + extra[2 + i] for i, b in enumerate(normal)})
    cursor, starts, slots = floors[0] + extra[0], [], []
    for j, wave in enumerate(sentences):
        starts.append(cursor)
        cursor += _slot_ms(wave.size, rate)
        if j < boundaries:
            if j in long_gap:
                slots.append((cursor, cursor + gaps[j]))
            cursor += gaps[j]
    track = np.zeros(max(ms_to_sample(target_ms, rate), ms_to_sample(cursor, rate)) + 1, dtype=np.float32)
    for start, wave in zip(starts, sentences):
        i = ms_to_sample(start, rate)
        track[i : i + wave.size] = wave
    return track, slots


def _spread(rng, total: int, room: list[int]) -> list[int]:
    """Split total ms over slots at random, none beyond its room (what cannot fit is dropped)."""
    extra = [0] * len(room)
    for _ in range(len(room) + 1):
        left = total - sum(extra)
        open_slots = [i for i in range(len(room)) if extra[i] < room[i]]
        if left <= 0 or not open_slots:
            break
        weights = rng.random(len(open_slots)) + 1e-3
        for i, w in zip(open_slots, weights):
            extra[i] = min(room[i], extra[i] + int(left * w / weights.sum()))
    for i in range(len(room)):  # integer leftovers
        take = min(room[i] - extra[i], total - sum(extra))
        extra[i] += max(take, 0)
    return extra


def _active_frames(track: np.ndarray, sample_rate: int, speech_peak: float) -> np.ndarray:
    """Per 1 ms: whether the 10 ms around it holds speech (RMS above ACTIVE_LEVEL * peak)."""
    n_ms = track.size * 1000 // sample_rate
    per_ms = np.round(np.arange(n_ms + 1) * sample_rate / 1000).astype(np.int64)  # = ms_to_sample
    power = np.add.reduceat(np.square(track, dtype=np.float64), per_ms[:-1]) / np.diff(per_ms)
    smooth = np.convolve(power, np.ones(10) / 10, mode="same")
    return np.sqrt(smooth) > ACTIVE_LEVEL * speech_peak


def _sample_mask(active_ms: np.ndarray, sample_rate: int, n: int) -> np.ndarray:
    return active_ms[np.minimum(np.arange(n) * 1000 // sample_rate, active_ms.size - 1)]


class _Placer:
    """Random non-overlapping spans, MIN_ARTIFACT_GAP_MS apart and from the clip's ends."""

    def __init__(self, rng, duration_ms: int, events: list[Event], active_ms: np.ndarray) -> None:
        self.rng, self.duration_ms, self.events, self.active = rng, duration_ms, list(events), active_ms

    def place(self, artifact_type: str, length_ms: tuple[int, int], need_speech: float) -> tuple[int, int] | None:
        """Record and return a (start_ms, end_ms) span whose speech fraction is >= need_speech."""
        for _ in range(PLACEMENT_TRIES):
            length = int(self.rng.integers(length_ms[0], length_ms[1] + 1))
            latest = self.duration_ms - MIN_ARTIFACT_GAP_MS - length
            if latest < MIN_ARTIFACT_GAP_MS:
                return None
            start = int(self.rng.integers(MIN_ARTIFACT_GAP_MS, latest + 1))
            end = start + length
            if any(start < e.end_ms + MIN_ARTIFACT_GAP_MS and e.start_ms < end + MIN_ARTIFACT_GAP_MS for e in self.events):
                continue
            if need_speech and self.active[start:end].mean() < need_speech:
                continue
            self.events.append(Event(artifact_type, start, end))
            return start, end
        return None


def write_corpus(
    out_dir: Path,
    n: int,
    *,
    seed: int = 0,
    formats: Sequence[str] = ("wav",),
    duration_s: float = 15.0,
    sample_rates: Sequence[int] = (16000,),
    conditions: Conditions | None = None,
    glitch_kinds: Sequence[str] = DEFAULT_GLITCH_KINDS,
) -> list[dict]:
    """Write ``n`` clips (cycling formats and sample rates) and ``manifest.json`` (the returned list).

    Entry i: {filename, events: [{artifact_type, start_ms, end_ms}], text, voice, duration_ms,
    sample_rate, format}, plus ``conditions`` (what was applied) when conditions are given.
    Clip i uses a seed derived from (seed, i).
    """
    bad = [f for f in formats if f not in ENCODE_FORMATS]
    if bad or not formats or not sample_rates:
        raise ValueError(f"formats must be non-empty and among {ENCODE_FORMATS}, got {list(formats)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i in range(n):
        fmt, rate = formats[i % len(formats)], int(sample_rates[i % len(sample_rates)])
        clip_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        clip = make_clip(clip_seed, duration_s=duration_s, sample_rate=rate, glitch_kinds=glitch_kinds, conditions=conditions)
        filename = f"synth_{i:05d}.{fmt}"
        (out_dir / filename).write_bytes(encode_audio(clip.waveform, rate, fmt))
        manifest.append(
            {
                "filename": filename,
                "events": [{"artifact_type": e.artifact_type, "start_ms": e.start_ms, "end_ms": e.end_ms} for e in clip.events],
                "text": clip.text,
                "voice": clip.voice,
                "duration_ms": round(clip.waveform.size * 1000 / rate),
                "sample_rate": rate,
                "format": fmt,
            }
        )
        if conditions is not None:
            manifest[-1]["conditions"] = clip.conditions
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a labelled synthetic artifact corpus.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--n", type=int, default=20, help="number of clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default="wav", help=f"comma-separated, from {','.join(ENCODE_FORMATS)}")
    parser.add_argument("--duration", type=float, default=15.0, help="approximate clip length (s)")
    parser.add_argument("--sample-rates", default="16000", help="comma-separated Hz, cycled over clips")
    parser.add_argument("--conditions", choices=tuple(PRESETS), default=None, help="recording conditions preset")
    parser.add_argument("--glitch-kinds", default=",".join(DEFAULT_GLITCH_KINDS), help=f"comma-separated, from {','.join(GLITCH_KINDS)}")
    args = parser.parse_args(argv)
    manifest = write_corpus(
        args.out,
        args.n,
        seed=args.seed,
        formats=[f.strip() for f in args.formats.split(",") if f.strip()],
        duration_s=args.duration,
        sample_rates=[int(r) for r in args.sample_rates.split(",") if r.strip()],
        conditions=PRESETS[args.conditions] if args.conditions else None,
        glitch_kinds=[k.strip() for k in args.glitch_kinds.split(",") if k.strip()],
    )
    n_events = sum(len(m["events"]) for m in manifest)
    print(f"wrote {len(manifest)} clips with {n_events} events to {args.out}")


if __name__ == "__main__":
    main()
