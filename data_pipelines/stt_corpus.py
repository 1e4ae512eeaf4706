"""Synthetic speech corpus for the speech-to-text models: espeak-ng utterances with exact transcripts.

An utterance is one sentence from a built-in English generator (general vocabulary, names,
places, numbers, times) or from a domain generator that puts realistic ``medical``,
``legal`` or ``technical`` terms (:data:`DOMAIN_TERMS`) into sentence templates. It is
spoken by one of many espeak-ng voices and variants at a random rate and pitch, trimmed,
resampled to 16 kHz, given a random level, short lead-in/out and a noise floor.

The transcript is written the way people write (capitals, digits, punctuation); the audio
speaks its :func:`data_pipelines.text.normalize_transcript` form, so normalised transcript
and speech match word for word. :func:`write_corpus` writes audio + ``.txt`` pairs, the
upload format of the custom-model API. Everything is a pure function of the seed.

``conditions`` (data_pipelines.condition_chain) add recording conditions after the noise
floor, every family including impairments (nothing is annotated here); ``voices`` limits the
speakers, e.g. to one side of condition_chain.split_held_out.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from data_pipelines.audio import ENCODE_FORMATS, SAMPLE_RATE, encode_audio
from data_pipelines.condition_chain import PRESETS, Conditions, HeldOutSplit, apply_conditions, chain_rng, split_held_out
from data_pipelines.speech import english_voices, speak, voice_variants
from data_pipelines.text import normalize_transcript
from train_jobs.stt_vocab import DOMAIN_TERMS, DOMAINS

CORPUS_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip
CORPUS_VARIANTS = (
    "", "+f1", "+f2", "+f3", "+f4", "+f5", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+klatt", "+klatt3", "+croak",
)  # fmt: skip
RATE_WPM = (120, 210)  # espeak-ng words per minute
PITCH = (25, 75)  # espeak-ng 0-99
PEAK = (0.1, 0.8)  # full-scale peak of the speech
LEAD_MS = (50, 400)  # silence before and after the speech
NOISE_DBFS = (-75.0, -45.0)  # RMS of the white noise floor
TRIM_LEVEL = 0.01  # re peak: quieter samples at the ends are cut (-40 dB)
SPEAKER_SPLIT_SEED = 0  # the one split of installed voices into pretraining and held-out speakers

# --- general English ---------------------------------------------------------------------------

_FIRST = (
    "Anna Peter Maria James Laura Thomas Sofia Daniel Emma Victor Olivia Noah Grace Henry Chloe Samuel "
    "Ruby Oscar Alice Lucas Hannah Jacob Nora Leo Ella Isaac Mia Adam Julia Ethan Clara Owen Zoe Felix "
    "Rachel Simon Paula Martin Helen George Diana Kevin Irene Frank Lucy Brian Sarah Mark Karen Steven"
).split()
_LAST = (
    "Smith Johnson Brown Taylor Miller Wilson Moore Clark Lewis Walker Hall Young King Wright Green Baker "
    "Adams Nelson Carter Mitchell Turner Parker Collins Edwards Stewart Morris Murphy Cook Rogers Reed"
).split()
_CITIES = (
    "London Paris Boston Chicago Denver Madrid Berlin Dublin Toronto Sydney Seattle Vienna Lisbon Oslo "
    "Austin Glasgow Manchester Houston Phoenix Atlanta Portland Rome Prague Warsaw Tokyo Cairo Nairobi"
).split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_MONTHS = "January February March April May June July August September October November December".split()
_JOBS = (
    "teacher farmer driver painter engineer manager student neighbor captain writer baker pilot nurse "
    "gardener singer dancer waiter cashier plumber builder chef reporter soldier sailor banker artist"
).split()
_NOUNS = (
    "garden river window basket village market letter mountain station kitchen bridge library island "
    "forest morning engine camera bicycle concert harbor table chair bottle blanket pencil notebook jacket "
    "umbrella ticket wallet mirror ladder bucket candle hammer kettle suitcase newspaper sandwich orange "
    "apple carrot potato tomato cookie pillow carpet curtain door fence roof street road office school "
    "church museum hospital hotel restaurant airport beach lake valley field farm house room hallway "
    "garage bakery factory castle tower park corner desk box coat shirt shoe hat glove phone radio clock "
    "picture map book song story game plan idea question answer problem reason result message present "
    "party holiday weekend dinner breakfast lunch meeting lesson journey"
).split()
_IRREGULAR_PLURALS = {"shelf": "shelves", "knife": "knives", "child": "children", "person": "people"}
_VERBS = (
    "open/opened carry/carried paint/painted follow/followed notice/noticed repair/repaired describe/described "
    "visit/visited measure/measured collect/collected clean/cleaned watch/watched borrow/borrowed deliver/delivered "
    "remember/remembered order/ordered test/tested find/found buy/bought sell/sold bring/brought take/took "
    "build/built break/broke choose/chose draw/drew drive/drove forget/forgot hide/hid keep/kept leave/left "
    "lose/lost make/made move/moved need/needed pack/packed pick/picked print/printed push/pushed pull/pulled "
    "read/read send/sent share/shared show/showed sign/signed start/started stop/stopped throw/threw "
    "wash/washed write/wrote check/checked fix/fixed finish/finished cook/cooked close/closed explain/explained"
).split()
_ADJECTIVES = (
    "quiet bright heavy little old young careful sudden silver narrow distant golden gentle busy empty modern "
    "simple hungry patient curious wooden yellow frozen rapid friendly green blue red white black brown "
    "small large tall short warm cold soft loud clean dirty cheap expensive famous strange lucky lovely "
    "happy tired angry calm brave proud polite honest funny serious clever quick slow early late new "
    "fresh dry wet dark sunny windy rainy cloudy beautiful useful broken open closed important"
).split()
_ADVERBS = "quickly slowly carefully quietly suddenly usually rarely often always never finally almost really".split()
_PLACES = (
    "near the station|across the bridge|before the storm|after lunch|in the morning|behind the library|"
    "along the river|at the market|during the concert|on the island|next to the school|under the table|"
    "in the garden|at the airport|outside the hotel|in the evening|on the way home|at the end of the street"
).split("|")
_RELATIVES = "mother father sister brother aunt uncle cousin grandmother grandfather friend".split()
_WEATHER = "sunny cold windy rainy warm foggy cloudy".split()
_EVENTS = "meeting party concert wedding match festival conference lecture dinner trip".split()
_GENERAL_TEMPLATES = (
    "{Name} {past} the {adj} {noun} {place}.",
    "The {adj} {job} {past} a {adj2} {noun} {place}.",
    "Every {job} in {city} {past} the {noun2} {place}.",
    "Yesterday {name} and {name2} {past} {num} {nouns}.",
    "We need {num} {nouns} for the {event} on {day}.",
    "The {job} said that the {noun} was {adverb} {adj}.",
    "Can you {verb} the {noun} before {clock}?",
    "Please {verb} the {adj} {noun} and call {name}.",
    "{Name} {last} will arrive in {city} on {month} {ordinal}.",
    "The meeting starts at {clock} in room {small}.",
    "I think the {noun} is {adverb} {adj} today.",
    "Our new {noun} costs {num} dollars.",
    "About {percent}% of the {nouns} were {adj}.",
    "My {relative} {past} {num} {nouns} last {day}.",
    "There are {num} {adj} {nouns} in the {noun2}.",
    "Did you see the {adj} {noun} {place}?",
    "The train to {city} leaves at {clock} on {day}.",
    "It was the {ordinal} time that {name} {past} the {noun}.",
    "After the {event} we {past} a {adj} {noun}.",
    "The {job} from {city} {past} {num} {nouns}.",
    "If it rains on {day}, the {event} will move to {month} {ordinal}.",
    "{Name} told {name2} to {verb} the {noun} {adverb}.",
    "The weather in {city} was {weather} all week.",
    "Please send the {noun} to {name} by {day} afternoon.",
    "The {adj} {noun} weighs about {small} kilograms.",
    "We drove {num} miles to visit {name} in {city}.",
    "The shop opens at {clock} and closes at {clock2}.",
    "I would like {small} {nouns} and a {adj} {noun}, please.",
    "{Name} was born in {city} in {year}.",
    "Where did you put the {adj} {noun}?",
    "Why is the {noun} so {adj} this morning?",
    "How many {nouns} do we need for {day}?",
    "When will {name} {verb} the {noun}?",
    "Who {past} the {noun} {place}?",
    "The {ordinal} {noun} on the left is {adj}.",
    "{Name}'s {relative} {adverb} {past} the {adj} {noun}.",
    "Don't {verb} the {noun} until {name} gets back.",
    "The {job} {adverb} {past} {num} {nouns} {place}.",
    "On {month} {ordinal}, {name} {past} a {adj} {noun} for {name2}.",
    "The {noun} and the {noun2} are both {adj}.",
)

# --- domains -----------------------------------------------------------------------------------

_DOMAIN_TEMPLATES = {
    "medical": (
        "The patient presented with {term} and was started on {term2}.",
        "{Name} was admitted on {day} with suspected {term}.",
        "We ordered {term} to rule out {term2}.",
        "History is significant for {term} and {term2}.",
        "The {term} showed no evidence of {term2}.",
        "Please schedule {term} for {name} next {day}.",
        "Continue {term} {small} milligrams twice daily.",
        "Dr. {last} recommended {term} after the {term2} results.",
        "The family was told about the {term} this morning.",
        "Assessment: {term}, likely secondary to {term2}.",
        "She has a long history of {term}.",
        "Follow up in {small} weeks to review the {term}.",
    ),
    "legal": (
        "The {term} was filed on {month} {ordinal}.",
        "Counsel for the {term} raised the issue of {term2}.",
        "The court granted the {term} on {day}.",
        "{Name} {last} signed the {term} in front of a {term2}.",
        "We will argue {term} at the hearing next {day}.",
        "The judge ruled that the {term} did not apply.",
        "Our client disputes the {term} and the {term2}.",
        "Please prepare the {term} before {clock}.",
        "The {term} was discussed during the {term2}.",
        "Under the contract, {term} governs any dispute.",
        "The appeal raises questions of {term}.",
        "Mr. {last} asked about {term} in the {city} case.",
    ),
    "technical": (
        "The {term} failed again after the {term2}.",
        "{Name} is debugging a {term} in the {term2}.",
        "We should add {term} before the next release.",
        "The {term} went down at {clock} this morning.",
        "Can you check the {term} on the staging server?",
        "The incident was caused by a {term} in the {term2}.",
        "Let's move the {term} behind the {term2}.",
        "{Name} opened a ticket about the {term}.",
        "The dashboard shows high {term} since {day}.",
        "We replaced the {term} with a {term2} last sprint.",
        "Please update the {term} and restart the {term2}.",
        "After the {term}, the {term2} recovered in {small} minutes.",
    ),
}


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if re.search(r"(s|x|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def _slots(rng: np.random.Generator) -> dict[str, str]:
    verb, past = _pick(rng, _VERBS).split("/")
    noun, noun2 = (str(w) for w in rng.choice(_NOUNS, 2, replace=False))
    adj, adj2 = (str(w) for w in rng.choice(_ADJECTIVES, 2, replace=False))
    name, name2 = (str(w) for w in rng.choice(_FIRST, 2, replace=False))
    hour, minute = int(rng.integers(1, 13)), int(rng.choice([0, 15, 30, 45, int(rng.integers(10, 60))]))
    clock = f"{hour}:{minute:02d}" if minute else f"{hour} o'clock"
    clock2 = f"{int(rng.integers(1, 13))}:{int(rng.choice([15, 30, 45]))}"
    day = int(rng.integers(1, 29))
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    num = int(rng.choice([int(rng.integers(2, 20)), int(rng.integers(20, 1000)), int(rng.integers(1000, 100_000))]))
    return {
        "name": name, "Name": name, "name2": name2, "last": _pick(rng, _LAST), "city": _pick(rng, _CITIES),
        "day": _pick(rng, _DAYS), "month": _pick(rng, _MONTHS), "job": _pick(rng, _JOBS), "noun": noun,
        "noun2": noun2, "nouns": _plural(noun), "adj": adj, "adj2": adj2, "adverb": _pick(rng, _ADVERBS),
        "place": _pick(rng, _PLACES), "relative": _pick(rng, _RELATIVES), "weather": _pick(rng, _WEATHER),
        "event": _pick(rng, _EVENTS), "verb": verb, "past": past, "clock": clock, "clock2": clock2,
        "ordinal": f"{day}{suffix}", "num": f"{num:,}" if num >= 1000 and rng.random() < 0.5 else str(num),
        "small": str(int(rng.integers(2, 13))), "percent": str(int(rng.integers(5, 100))),
        "year": str(int(rng.integers(1950, 2025))),
    }  # fmt: skip


def _finish(text: str) -> str:
    text = re.sub(r"\ba (?=[aeiouAEIOU])", "an ", text)
    return text[0].upper() + text[1:]


def general_sentence(rng: np.random.Generator) -> str:
    """A written English sentence (capitals, digits, punctuation) from the general generator."""
    return _finish(_pick(rng, _GENERAL_TEMPLATES).format(**_slots(rng)))


def domain_sentence(rng: np.random.Generator, domain: str, terms: Sequence[str] | None = None) -> str:
    """A sentence with one or two terms of ``domain`` (from ``terms`` when given, else DOMAIN_TERMS)."""
    if domain not in DOMAIN_TERMS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {DOMAINS}")
    pool = list(terms) if terms is not None else DOMAIN_TERMS[domain]
    if len(pool) < 2:
        raise ValueError(f"a domain sentence needs at least 2 terms, got {len(pool)}")
    term, term2 = (str(t) for t in rng.choice(pool, 2, replace=False))
    return _finish(_pick(rng, _DOMAIN_TEMPLATES[domain]).format(term=term, term2=term2, **_slots(rng)))


def speaker_split() -> HeldOutSplit:
    """Every installed English voice x variant, split so that held-out speakers share neither
    accent nor variant with the rest. The ``general`` base is pretrained on ``train_voices``
    only; benchmarks and tests measure on ``held_out_voices``, speakers no model has heard.
    """
    return split_held_out(english_voices(), ("", *voice_variants()), seed=SPEAKER_SPLIT_SEED)


def customer_voices(n: int, seed: int = 0) -> tuple[str, ...]:
    """``n`` pretraining voices standing for one customer's speakers (sorted; same seed, same voices)."""
    voices = speaker_split().train_voices
    if not 1 <= n <= len(voices):
        raise ValueError(f"a customer has 1 to {len(voices)} speakers, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC057]))
    return tuple(sorted(rng.choice(voices, n, replace=False).tolist()))


def utterance_seed(seed: int, index: int) -> int:
    """The seed of utterance ``index`` of a corpus made with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@dataclass(frozen=True)
class Utterance:
    waveform: np.ndarray  # float32 mono at SAMPLE_RATE
    text: str  # written transcript
    voice: str  # espeak-ng voice, e.g. "en-gb+f3"
    conditions: list[dict] = field(default_factory=list)  # recording conditions applied, in order


def make_utterance(
    seed: int, *, domain: str | None = None, terms: Sequence[str] | None = None, **options
) -> tuple[np.ndarray, str]:
    """(float32 mono 16 kHz waveform, written transcript) for ``seed``; deterministic.

    ``domain`` None gives a general sentence; otherwise a sentence with one or two terms of
    that domain, drawn from ``terms`` when given (a narrower customer vocabulary). Other
    options (``voices``, ``conditions``) as for :func:`synthesize_utterance`.
    """
    utt = synthesize_utterance(seed, domain=domain, terms=terms, **options)
    return utt.waveform, utt.text


def _script(rng: np.random.Generator, domain, terms, voices) -> tuple[str, int, int, str]:
    """(voice, rate, pitch, written text): the draws that come before the audio."""
    voice = _pick(rng, CORPUS_VOICES) + _pick(rng, CORPUS_VARIANTS) if voices is None else _pick(rng, voices)
    rate_wpm, pitch = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)), int(rng.integers(PITCH[0], PITCH[1] + 1))
    text = general_sentence(rng) if domain is None else domain_sentence(rng, domain, terms)
    return voice, rate_wpm, pitch, text


def utterance_text(
    seed: int, *, domain: str | None = None, terms: Sequence[str] | None = None, voices: Sequence[str] | None = None
) -> str:
    """The written transcript :func:`synthesize_utterance` gives ``seed``, without synthesising it."""
    return _script(np.random.default_rng(seed), domain, terms, voices)[3]


def synthesize_utterance(
    seed: int,
    *,
    domain: str | None = None,
    terms: Sequence[str] | None = None,
    voices: Sequence[str] | None = None,
    conditions: Conditions | None = None,
) -> Utterance:
    """The utterance of ``seed`` with its voice and conditions; see :func:`make_utterance`.

    ``voices`` None draws from CORPUS_VOICES x CORPUS_VARIANTS (the corpus of earlier
    versions); otherwise from ``voices``, full names such as "en-gb-x-rp+m3".
    """
    if voices is not None and not voices:
        raise ValueError("voices must be None (the corpus voices) or a non-empty list of espeak-ng voices")
    rng = np.random.default_rng(seed)
    voice, rate_wpm, pitch, text = _script(rng, domain, terms, voices)
    wave, rate = speak(normalize_transcript(text), voice=voice, rate_wpm=rate_wpm, pitch=pitch)
    loud = np.flatnonzero(np.abs(wave) > TRIM_LEVEL * float(np.abs(wave).max() or 1.0))
    wave = wave[loud[0] : loud[-1] + 1] if loud.size else wave
    with torch.inference_mode():
        wave = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, SAMPLE_RATE).numpy()
    wave = wave * (rng.uniform(*PEAK) / float(np.abs(wave).max() or 1.0))
    lead, tail = (int(rng.integers(LEAD_MS[0], LEAD_MS[1] + 1)) * SAMPLE_RATE // 1000 for _ in range(2))
    wave = np.concatenate([np.zeros(lead, np.float32), wave, np.zeros(tail, np.float32)])
    wave += 10 ** (rng.uniform(*NOISE_DBFS) / 20) * rng.standard_normal(wave.size)
    wave, applied = wave.astype(np.float32), []
    if conditions is not None:
        wave, applied = apply_conditions(wave, SAMPLE_RATE, conditions, chain_rng(seed))
    return Utterance(wave, text, voice, applied)


def write_corpus(
    out_dir: str | Path,
    n: int,
    *,
    domain: str | None = None,
    seed: int = 0,
    formats: Sequence[str] = ("wav",),
    terms: Sequence[str] | None = None,
    voices: Sequence[str] | None = None,
    conditions: Conditions | None = None,
) -> list[dict]:
    """Write ``n`` utterances as ``utt_NNNNN.<fmt>`` + ``utt_NNNNN.txt`` (UTF-8 transcript) pairs.

    Formats cycle over ``formats`` (see data_pipelines.audio.ENCODE_FORMATS). Returns the
    manifest (also written to manifest.json): audio_file, transcript_file, text,
    duration_seconds, format, domain per utterance; with ``conditions`` also voice and
    conditions (what was applied).
    """
    bad = [f for f in formats if f not in ENCODE_FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be non-empty and among {ENCODE_FORMATS}, got {list(formats)}")
    if domain is not None and domain not in DOMAIN_TERMS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {DOMAINS} or None")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i in range(n):
        utt = synthesize_utterance(utterance_seed(seed, i), domain=domain, terms=terms, voices=voices, conditions=conditions)
        wave, text = utt.waveform, utt.text
        fmt = formats[i % len(formats)]
        audio_file, transcript_file = f"utt_{i:05d}.{fmt}", f"utt_{i:05d}.txt"
        (out / audio_file).write_bytes(encode_audio(wave, SAMPLE_RATE, fmt))
        (out / transcript_file).write_text(text + "\n", encoding="utf-8")
        manifest.append(
            {
                "audio_file": audio_file,
                "transcript_file": transcript_file,
                "text": text,
                "duration_seconds": round(wave.size / SAMPLE_RATE, 3),
                "format": fmt,
                "domain": domain or "general",
            }
        )
        if conditions is not None:
            manifest[-1].update(voice=utt.voice, conditions=utt.conditions)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write synthetic speech + transcript pairs for custom STT models.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--n", type=int, default=20, help="number of utterances")
    parser.add_argument("--domain", choices=DOMAINS, default=None, help="domain terms in every sentence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default="wav", help=f"comma-separated, from {','.join(ENCODE_FORMATS)}")
    parser.add_argument("--conditions", choices=tuple(PRESETS), default=None, help="recording conditions preset")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    conditions = PRESETS[args.conditions] if args.conditions else None
    manifest = write_corpus(args.out, args.n, domain=args.domain, seed=args.seed, formats=formats, conditions=conditions)
    hours = sum(m["duration_seconds"] for m in manifest) / 3600
    print(f"wrote {len(manifest)} utterances ({hours:.2f} h) to {args.out}")


if __name__ == "__main__":
    main()
