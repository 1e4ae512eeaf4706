"""Which recording conditions apply, how likely and how strong: a typed config, named presets,
and one seeded draw that applies a chain and says what it applied.

A chain runs in the order sound takes: the room (room tone, noise), the line (telephone
band), faults on the way (impairments: dropouts, clicks, soft clipping), then the receiving
end (gain, limiter) and the file (codec). Every family but the impairments is a *channel*
condition. The labelled detector generator runs BEFORE_ARTIFACTS, writes its artifacts,
then runs AFTER_ARTIFACTS (data_pipelines.synth); it never draws impairments at random,
because there an impairment is an artifact and must be annotated.

Ranges are (low, high), drawn uniformly; units are in the field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from data_pipelines import conditions as C
from data_pipelines.speech import all_english_voices, speak

BEFORE_ARTIFACTS = ("room_tone", "noise", "telephone")
IMPAIRMENT_FAMILIES = ("dropouts", "clicks", "soft_clip")
AFTER_ARTIFACTS = ("gain", "limiter", "codec")
FAMILIES = BEFORE_ARTIFACTS + IMPAIRMENT_FAMILIES + AFTER_ARTIFACTS  # chain order
CHANNEL_FAMILIES = BEFORE_ARTIFACTS + AFTER_ARTIFACTS
BABBLE_TALKERS = (3, 6)  # voices mixed into babble noise
BABBLE_WORDS_PER_TALKER = 40  # ~15 s of speech each, looped to the clip's length


def _ordered(r: tuple[float, float]) -> tuple[float, float]:
    if r[0] > r[1]:
        raise ValueError(f"a range is (low, high) with low <= high, got {r}")
    return r


Range = Annotated[tuple[float, float], AfterValidator(_ordered)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Family(_Frozen):
    probability: Probability = 1.0  # of applying this family to one clip


class RoomTone(Family):
    level_dbfs: Range = (-62.0, -48.0)  # RMS of stationary room noise under everything


def _among(choices: tuple[str, ...]):
    def check(values: tuple[str, ...]) -> tuple[str, ...]:
        bad = sorted(set(values) - set(choices))
        if bad or not values:
            raise ValueError(f"choose one or more of {choices}, got {list(values)}")
        return values

    return AfterValidator(check)


class Noise(Family):
    kinds: Annotated[tuple[str, ...], _among(C.NOISE_KINDS)] = C.NOISE_KINDS
    snr_db: Range = (8.0, 28.0)  # active speech / noise on the same frames


class Gain(Family):
    level_db: Range = (-14.0, 6.0)  # static gain (lowered where the peak would pass 0.99)
    ride_probability: Probability = 0.5
    ride_depth_db: Range = (1.0, 5.0)  # slow gain riding, +-


class Limiter(Family):
    threshold_db_re_peak: Range = (-9.0, -2.0)  # limiter ceiling below the clip's peak


class Telephone(Family):
    narrowband_probability: Probability = 0.7  # 8 kHz round trip (else band-pass only)
    mu_law_probability: Probability = 0.5  # G.711 companding at 8 kHz


class Codec(Family):
    codecs: Annotated[tuple[str, ...], _among(C.CODECS)] = C.CODECS
    mp3_kbps: Range = (16.0, 48.0)
    vorbis_kbps: Range = (32.0, 48.0)  # libvorbis goes no lower at 16 kHz mono
    opus_kbps: Range = (8.0, 24.0)

    def at_least(self, kbps: float) -> Codec:
        """This family with every bitrate range raised to ``kbps`` or more."""
        raise_ = lambda r: (max(r[0], kbps), max(r[1], kbps))  # noqa: E731
        return self.model_copy(update={f"{c}_kbps": raise_(getattr(self, f"{c}_kbps")) for c in C.CODECS})


class Dropouts(Family):
    count: Annotated[tuple[int, int], AfterValidator(_ordered)] = (1, 3)
    length_ms: Range = (5.0, 60.0)
    comfort_probability: Probability = 0.5  # fill with comfort noise instead of silence
    comfort_db_re_speech: Range = (-45.0, -30.0)


class Clicks(Family):
    count: Annotated[tuple[int, int], AfterValidator(_ordered)] = (1, 2)
    length_ms: Range = (1.0, 3.0)
    level_re_peak: Range = (0.6, 1.2)  # impulse amplitude / speech peak (capped at 0.99)


class SoftClip(Family):
    drive_db: Range = (3.0, 12.0)  # gain into a tanh knee
    ceiling_re_peak: Range = (0.5, 0.9)


class Conditions(_Frozen):
    """Families that may apply (None: never). Frozen, so a preset can be shared safely."""

    room_tone: RoomTone | None = None
    noise: Noise | None = None
    telephone: Telephone | None = None
    dropouts: Dropouts | None = None
    clicks: Clicks | None = None
    soft_clip: SoftClip | None = None
    gain: Gain | None = None
    limiter: Limiter | None = None
    codec: Codec | None = None

    def only(self, families: Sequence[str]) -> Conditions:
        """This config with every family outside ``families`` switched off."""
        _check_families(families)
        return self.model_copy(update={f: None for f in FAMILIES if f not in families})

    def enabled(self) -> tuple[str, ...]:
        return tuple(f for f in FAMILIES if getattr(self, f) is not None)


PRESETS: dict[str, Conditions] = {
    "clean": Conditions(),
    "real_world": Conditions(
        room_tone=RoomTone(probability=0.8),
        noise=Noise(probability=0.6),
        dropouts=Dropouts(probability=0.2),
        clicks=Clicks(probability=0.2),
        soft_clip=SoftClip(probability=0.15),
        gain=Gain(probability=0.8),
        limiter=Limiter(probability=0.3),
        telephone=Telephone(probability=0.35),
        codec=Codec(probability=0.5),
    ),
    "telephone": Conditions(
        room_tone=RoomTone(),
        noise=Noise(probability=0.5, kinds=("pink", "room", "babble"), snr_db=(12.0, 30.0)),
        gain=Gain(probability=0.5),
        telephone=Telephone(narrowband_probability=1.0),
        codec=Codec(probability=0.5, codecs=("opus",), opus_kbps=(8.0, 16.0)),
    ),
    "noisy": Conditions(room_tone=RoomTone(), noise=Noise(snr_db=(5.0, 20.0))),
    # The held-out sets of the robustness benchmark and tests: mostly noisy rooms, 40 % telephone
    # band, a lossy codec on half, gain; channel conditions only.
    "hard": Conditions(
        room_tone=RoomTone(probability=0.8),
        noise=Noise(probability=0.9, kinds=("pink", "room", "white"), snr_db=(12.0, 25.0)),
        telephone=Telephone(probability=0.4),
        gain=Gain(probability=0.7),
        codec=Codec(probability=0.5),
    ),
    "codecs": Conditions(codec=Codec()),
}


def preset(name: str) -> Conditions:
    if name not in PRESETS:
        raise ValueError(f"unknown conditions preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _check_families(families: Sequence[str]) -> None:
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown condition families {unknown}; choose from {FAMILIES}")


def chain_rng(seed: int) -> np.random.Generator:
    """The generator of one chain, independent of any other stream drawn from ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0xC0D1]))


def babble_talkers(n_samples: int, sample_rate: int, rng, voices: Sequence[str] | None = None) -> list[np.ndarray]:
    """Speech of 3-6 other espeak-ng voices (word salad, so no talker is intelligible in the mix)."""
    pool = tuple(voices) if voices else all_english_voices()
    talkers = []
    for _ in range(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))):
        words = " ".join(rng.choice(C.BABBLE_WORDS, BABBLE_WORDS_PER_TALKER))
        wave, rate = speak(words, voice=str(pool[int(rng.integers(len(pool)))]), rate_wpm=int(rng.integers(140, 200)))
        talkers.append(C.resample(wave, rate, sample_rate)[: max(n_samples, 1)])
    return talkers


def apply_conditions(
    wave: np.ndarray,
    sample_rate: int,
    conditions: Conditions,
    rng: np.random.Generator,
    *,
    families: Sequence[str] = FAMILIES,
    babble_voices: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Draw and apply the chain for ``families`` (in chain order): (new wave, what was applied).

    Each applied entry is {"family": ..., **its drawn parameters}; impairments also give their
    sample spans. Every family draws its coin whether or not it applies, so switching one
    family off never changes what the others draw. Pass the same ``rng`` state to reproduce.
    """
    _check_families(families)
    y, applied = np.asarray(wave, np.float32), []
    for family in FAMILIES:
        spec = getattr(conditions, family)
        coin, child = rng.random(), np.random.default_rng(rng.integers(2**63))
        if family not in families or spec is None or coin >= spec.probability:
            continue
        y, params = _APPLY[family](y, sample_rate, child, spec, babble_voices)
        applied.append({"family": family, **params})
    return y, applied


def _u(rng, r: tuple[float, float]) -> float:
    return round(float(rng.uniform(*r)), 2)


def _room_tone(y, sr, rng, spec: RoomTone, _):
    level = _u(rng, spec.level_dbfs)
    return C.add_room_tone(y, sr, rng, level_dbfs=level), {"level_dbfs": level}


def _noise(y, sr, rng, spec: Noise, voices):
    kind, snr = str(spec.kinds[int(rng.integers(len(spec.kinds)))]), _u(rng, spec.snr_db)
    talkers = babble_talkers(y.size, sr, rng, voices) if kind == "babble" else ()
    return C.add_noise(y, sr, rng, snr_db=snr, kind=kind, talkers=talkers), {"kind": kind, "snr_db": snr}


def _spans(rng, n: int, sr: int, count: tuple[int, int], length_ms: tuple[float, float], mask: np.ndarray):
    """Non-overlapping (start, length) sample spans inside active speech, at most count[1]."""
    spans: list[tuple[int, int]] = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        length = max(1, round(rng.uniform(*length_ms) * sr / 1000))
        for _try in range(50):
            start = int(rng.integers(0, max(1, n - length)))
            if mask[start : start + length].all() and all(start + length < s or s + ln < start for s, ln in spans):
                spans.append((start, length))
                break
    return sorted(spans)


def _dropouts(y, sr, rng, spec: Dropouts, _):
    mask = C.active_mask(y, sr)
    speech_rms = np.sqrt(C.active_power(y, mask))
    comfort = rng.random() < spec.comfort_probability
    rms = speech_rms * 10 ** (_u(rng, spec.comfort_db_re_speech) / 20) if comfort else 0.0
    spans = _spans(rng, y.size, sr, spec.count, spec.length_ms, mask)
    for start, length in spans:
        y = C.insert_dropout(y, sr, rng, start=start, length=length, comfort_rms=rms)
    return y, {"fill": "comfort" if comfort else "silence", "spans": spans}


def _clicks(y, sr, rng, spec: Clicks, _):
    peak = float(np.abs(y).max()) or 1.0
    spans = _spans(rng, y.size, sr, spec.count, spec.length_ms, C.active_mask(y, sr))
    for start, length in spans:
        y = C.insert_click(y, sr, rng, start=start, length=length, amplitude=min(0.99, peak * rng.uniform(*spec.level_re_peak)))
    return y, {"spans": spans}


def _soft_clip(y, sr, rng, spec: SoftClip, _):
    drive, ceiling = _u(rng, spec.drive_db), _u(rng, spec.ceiling_re_peak)
    return C.soft_clip(y, sr, rng, drive_db=drive, ceiling=ceiling * float(np.abs(y).max() or 1.0)), {
        "drive_db": drive, "ceiling_re_peak": ceiling,
    }  # fmt: skip


def _gain(y, sr, rng, spec: Gain, _):
    level = _u(rng, spec.level_db)
    y, params = C.change_gain(y, sr, rng, gain_db=level), {"level_db": level}
    if rng.random() < spec.ride_probability:
        params["ride_depth_db"] = depth = _u(rng, spec.ride_depth_db)
        y = C.ride_gain(y, sr, rng, depth_db=depth)
    return y, params


def _limiter(y, sr, rng, spec: Limiter, _):
    re_peak = _u(rng, spec.threshold_db_re_peak)
    threshold = 20 * np.log10(float(np.abs(y).max()) or 1.0) + re_peak
    return C.limit(y, sr, rng, threshold_db=threshold), {"threshold_db_re_peak": re_peak}


def _telephone(y, sr, rng, spec: Telephone, _):
    narrow, mu = bool(rng.random() < spec.narrowband_probability), bool(rng.random() < spec.mu_law_probability)
    return C.telephone(y, sr, rng, narrowband=narrow, mu_law=narrow and mu), {"narrowband": narrow, "mu_law": narrow and mu}


def _codec(y, sr, rng, spec: Codec, _):
    codec = str(spec.codecs[int(rng.integers(len(spec.codecs)))])
    kbps = _u(rng, getattr(spec, f"{codec}_kbps"))
    y, used = C.transcode(y, sr, codec, kbps)
    return y, {"codec": codec, "kbps": kbps, "coded_kbps": round(used, 1)}


_APPLY = {
    "room_tone": _room_tone, "noise": _noise, "dropouts": _dropouts, "clicks": _clicks, "soft_clip": _soft_clip,
    "gain": _gain, "limiter": _limiter, "telephone": _telephone, "codec": _codec,
}  # fmt: skip


class HeldOutSplit(_Frozen):
    """Voices and condition families to train on, and the ones kept for evaluation only.

    A held-out voice has a held-out accent *and* a held-out variant, so neither its accent
    nor its timbre was heard in training; mixed combinations belong to neither side.
    """

    train_voices: tuple[str, ...]
    held_out_voices: tuple[str, ...]
    train_families: tuple[str, ...]
    held_out_families: tuple[str, ...]


def _partition(items: Sequence[str], fraction: float, rng) -> tuple[list[str], list[str]]:
    items = sorted(items)
    k = min(len(items) - 1, max(1, round(fraction * len(items))))
    held = set(rng.permutation(items)[:k].tolist())
    return [i for i in items if i not in held], [i for i in items if i in held]


def split_held_out(
    accents: Sequence[str],
    variants: Sequence[str],
    *,
    families: Sequence[str] = FAMILIES,
    held_out_fraction: float = 0.25,
    seed: int = 0,
) -> HeldOutSplit:
    """Partition accents x variants and condition families deterministically (same seed, same split).

    ``variants`` are suffixes as espeak-ng takes them ("" for none, "+f3", ...); see
    data_pipelines.speech.english_voices and voice_variants for what is installed.
    """
    _check_families(families)
    if len(accents) < 2 or len(variants) < 2 or len(families) < 2:
        raise ValueError("a split needs at least 2 accents, 2 variants and 2 families")
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B11]))
    train_acc, held_acc = _partition(accents, held_out_fraction, rng)
    train_var, held_var = _partition(variants, held_out_fraction, rng)
    train_fam, held_fam = _partition(families, held_out_fraction, rng)
    order = {f: i for i, f in enumerate(FAMILIES)}
    return HeldOutSplit(
        train_voices=tuple(a + v for a in train_acc for v in train_var),
        held_out_voices=tuple(a + v for a in held_acc for v in held_var),
        train_families=tuple(sorted(train_fam, key=order.get)),
        held_out_families=tuple(sorted(held_fam, key=order.get)),
    )
