"""espeak-ng: speech synthesis and the English voices this installation really has.

espeak-ng silently falls back to its default voice for a name it does not know, and MBROLA
voices (``mb/...`` files) speak nothing without the separate ``mbrola`` program and voice
data, so the voice lists here come from espeak-ng's own listings, not from a fixed table.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

ESPEAK_TIMEOUT_S = 30.0
MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/share/mbrola/voices"))  # where espeak-ng looks


class SpeechSynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


def speak(text: str, *, voice: str = "en-us", rate_wpm: int = 160, pitch: int = 50) -> tuple[np.ndarray, int]:
    """Synthesize ``text`` with espeak-ng: (float32 mono waveform, native sample rate (22050 Hz))."""
    cmd = ["espeak-ng", "--stdout", "-v", voice, "-s", str(int(rate_wpm)), "-p", str(int(pitch)), "--stdin"]
    try:
        proc = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=ESPEAK_TIMEOUT_S, check=False)
    except FileNotFoundError as e:
        raise SpeechSynthesisError(
            "espeak-ng is not installed: install the 'espeak-ng' package (apt-get install espeak-ng)"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise SpeechSynthesisError(f"espeak-ng took over {ESPEAK_TIMEOUT_S:g} s for {len(text)} characters") from e
    if proc.returncode != 0 or not proc.stdout:
        raise SpeechSynthesisError(
            f"espeak-ng failed for voice {voice!r} (exit {proc.returncode}): {proc.stderr.decode(errors='replace').strip()}"
        )
    try:
        wav, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise SpeechSynthesisError(f"espeak-ng wrote unreadable WAV for voice {voice!r}: {e}") from e
    return wav.mean(axis=1), int(rate)


def _listing(arg: str) -> list[list[str]]:
    try:
        out = subprocess.run(["espeak-ng", arg], capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S, check=True)
    except FileNotFoundError as e:
        raise SpeechSynthesisError("espeak-ng is not installed: install the 'espeak-ng' package") from e
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise SpeechSynthesisError(f"espeak-ng {arg} failed: {e}") from e
    return [line.split() for line in out.stdout.splitlines()[1:] if line.split()]


def _mbrola_ready(voice_file: str) -> bool:
    name = voice_file.removeprefix("mb/mb-").split("-")[0]  # mb/mb-us1 -> us1, mb/mb-de1-en -> de1
    return shutil.which("mbrola") is not None and any((d / name).exists() for d in MBROLA_DIRS)


@functools.cache
def english_voices() -> tuple[str, ...]:
    """Every English voice espeak-ng can speak here (sorted), e.g. ("en-029", "en-gb", ...).

    Columns of ``espeak-ng --voices=en``: Pty, Language, Age/Gender, VoiceName, File. A
    language voice is named by its language code; an MBROLA voice by its voice name, and
    only when MBROLA and that voice's data are installed.
    """
    names = set()
    for cols in _listing("--voices=en"):
        language, name, voice_file = cols[1], cols[3], cols[4]
        if voice_file.startswith("mb/"):
            if _mbrola_ready(voice_file):
                names.add(name)
        elif language.startswith("en"):
            names.add(language)
    return tuple(sorted(names))


@functools.cache
def voice_variants() -> tuple[str, ...]:
    """Every espeak-ng voice variant (sorted), as the suffix to append: ("+Alex", "+f1", ...)."""
    return tuple(sorted("+" + cols[4].removeprefix("!v/") for cols in _listing("--voices=variant")))


def all_english_voices() -> tuple[str, ...]:
    """Every English voice alone and with every variant: "en-us", "en-us+f3", ..."""
    return tuple(v + variant for v in english_voices() for variant in ("", *voice_variants()))
