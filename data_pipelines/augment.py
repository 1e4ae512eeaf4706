"""Per-epoch augmentation of one training utterance, a pure function of (seed, epoch, utterance id).

Nothing is precomputed: each epoch draws a new version of every utterance from
``utterance_seed(seed, epoch, id)``, so the draw never depends on which worker reads a row
or in which order rows arrive, and a run is reproducible under its seed. The waveform
families are the recording-condition chain's (data_pipelines.condition_chain); speed
perturbation and SpecAugment live here. Options: schemas.augmentation.Augmentation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from data_pipelines import conditions as C
from data_pipelines.condition_chain import CHANNEL_FAMILIES, Conditions, apply_conditions
from schemas.augmentation import Augmentation, DetectorAugmentation, SpecAugmentOptions, SpeedAugment

SAMPLE_RATE = 16_000  # Hz, training waveforms
SPEED_STEP = 0.01  # drawn speed factors are rounded to this: every resampling ratio stays small (101:100)
CHAIN_FAMILIES = ("room_tone", "noise", "telephone", "gain", "codec")  # option fields the condition chain applies


def stable_id(value: str | bytes) -> int:
    """A 64-bit id that is the same in every process (Python's hash() is salted per process)."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def utterance_id(row_id: str | None, x: np.ndarray, text: str) -> int:
    """The row's own id when it has one (a blob key), else a hash of its content."""
    if row_id is not None:
        return stable_id(str(row_id))
    h = hashlib.blake2b(text.encode(), digest_size=8)
    h.update(np.ascontiguousarray(x).tobytes())
    return int.from_bytes(h.digest(), "little")


def utterance_seed(seed: int, epoch: int, uid: int, *streams: int) -> np.random.SeedSequence:
    """Where one utterance's (or file's) draw in one epoch comes from; ``streams`` name independent draws."""
    return np.random.SeedSequence([int(seed), int(epoch), int(uid), *map(int, streams)])


@lru_cache(maxsize=16)
def conditions_for(aug: Augmentation | DetectorAugmentation) -> Conditions:
    """The condition-chain config of the waveform families (same field names on both sides)."""
    return Conditions(
        **{f: getattr(aug, f).model_dump() for f in CHAIN_FAMILIES if getattr(aug, f, None) is not None}
    )


def speed_factor(rng: np.random.Generator, spec: SpeedAugment) -> float:
    """A factor drawn from ``spec.factor``, on the SPEED_STEP grid."""
    return round(round(float(rng.uniform(*spec.factor)) / SPEED_STEP) * SPEED_STEP, 4)


def change_speed(wave: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play ``factor`` times as fast: n samples become about n / factor, pitch moving with the tempo."""
    if factor == 1.0:
        return np.asarray(wave, np.float32)
    return C.resample(wave, round(sample_rate * factor), sample_rate)


def augment_wave(
    wave: np.ndarray, aug: Augmentation, speed_rng: np.random.Generator, chain_rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, list[dict]]:
    """Speed perturbation, then the channel chain: (new wave, what was applied)."""
    y, applied = np.asarray(wave, np.float32), []
    if aug.speed is not None and speed_rng.random() < aug.speed.probability:
        factor = speed_factor(speed_rng, aug.speed)
        y = change_speed(y, factor, sample_rate)
        applied.append({"family": "speed", "factor": factor})
    y, chain = apply_conditions(y, sample_rate, conditions_for(aug), chain_rng, families=CHANNEL_FAMILIES)
    return y, applied + chain


def spec_augment(
    features: np.ndarray, spec: SpecAugmentOptions, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Frequency then time masks on log-mel [T, F]: (masked copy, [(axis, start, width)]).

    A masked cell takes its mel bin's mean over the utterance, which the model's
    per-utterance, per-bin normalisation maps to 0: the paper's mask value.
    """
    x = np.array(features, np.float32)
    t, f = x.shape
    fill = x.mean(axis=0) if t else np.zeros(f, np.float32)
    masks = []
    for _ in range(spec.freq_masks):
        width = int(rng.integers(0, min(spec.freq_mask_bins, f) + 1))
        start = int(rng.integers(0, f - width + 1))
        x[:, start : start + width] = fill[start : start + width]
        masks.append(("freq", start, width))
    widest = min(spec.time_mask_frames, int(spec.time_mask_max_fraction * t))
    for _ in range(spec.time_masks):
        width = int(rng.integers(0, widest + 1))
        start = int(rng.integers(0, t - width + 1))
        x[start : start + width] = fill
        masks.append(("time", start, width))
    return x, masks


def augment_utterance(
    x: np.ndarray,
    aug: Augmentation,
    seq: np.random.SeedSequence,
    *,
    featurize: Callable[[np.ndarray], np.ndarray] | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """One epoch's version of a waveform [n] or log-mel features [T, F]; disabled: ``x`` itself.

    Waveform families apply to waveforms, which ``featurize`` then turns into features when
    given; SpecAugment applies to features. Each stage has its own stream from ``seq``, so
    switching one family off never changes what the others draw.
    """
    if not aug.enabled:
        return x
    speed_rng, chain_rng, spec_rng = (np.random.default_rng(s) for s in seq.spawn(3))
    if x.ndim == 1:
        x, _ = augment_wave(x, aug, speed_rng, chain_rng, sample_rate)
        if featurize is not None:
            x = featurize(x)
    if x.ndim == 2 and aug.spec_augment is not None and spec_rng.random() < aug.spec_augment.probability:
        x, _ = spec_augment(x, aug.spec_augment, spec_rng)
    return x
