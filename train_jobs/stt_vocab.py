"""The character vocabulary of the CTC speech-to-text models.

Index 0 is the CTC blank, then space (the word separator), apostrophe and a-z: exactly
the alphabet :func:`data_pipelines.text.normalize_transcript` produces, so every
normalised transcript encodes and every decoded id sequence is normalised text.
"""

from __future__ import annotations

from collections.abc import Iterable

BLANK = 0
SPACE = 1
APOSTROPHE = 2
VOCAB: tuple[str, ...] = ("<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz")
_INDEX = {c: i for i, c in enumerate(VOCAB) if i != BLANK}


def encode(text: str) -> list[int]:
    """Normalised text -> token ids (no blanks). Raises ValueError naming characters not in VOCAB."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as e:
        bad = sorted({c for c in text if c not in _INDEX})
        raise ValueError(
            f"text holds characters outside the vocabulary {bad!r}; normalise it with "
            f"data_pipelines.text.normalize_transcript (allowed: a-z, apostrophe, space)"
        ) from e


def decode(ids: Iterable[int]) -> str:
    """Token ids -> text; blanks are dropped (no CTC collapsing: see stt_decoding for that)."""
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < len(VOCAB):
            raise ValueError(f"token id {i} is outside the vocabulary of {len(VOCAB)} tokens")
        if i != BLANK:
            out.append(VOCAB[i])
    return "".join(out)
