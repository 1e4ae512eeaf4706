"""Word and character error rates of a speech-to-text model, as its training metrics report them.

References and hypotheses are both put through :func:`data_pipelines.text.normalize_transcript`
(hypotheses are already normalised text), then scored with jiwer over the whole set
(total edits / total reference words or characters), as percentages.
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer
import numpy as np
import torch
from torch import nn

from data_pipelines.text import TranscriptError, normalize_transcript
from train_jobs.models.stt import SAMPLE_RATE, SttMeta
from train_jobs.stt_decoding import BEAM_SIZE, transcribe_batch

EVAL_BATCH = 8  # utterances per transcribe_batch call


def word_edits(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[int, int, int, int]:
    """(substitutions, deletions, insertions, reference words) of normalised texts."""
    if not references:
        return 0, 0, 0, 0
    out = jiwer.process_words(list(references), list(hypotheses))
    return out.substitutions, out.deletions, out.insertions, out.substitutions + out.deletions + out.hits


def char_edits(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[int, int]:
    """(character edits, reference characters) of normalised texts; spaces count as characters."""
    if not references:
        return 0, 0
    out = jiwer.process_characters(list(references), list(hypotheses))
    return out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """Corpus WER and CER (%) plus edit counts; references are verbatim or normalised text."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("error_rates needs at least one reference")
    refs = []
    for i, ref in enumerate(references):
        try:
            refs.append(normalize_transcript(ref))
        except TranscriptError as e:
            raise ValueError(f"reference {i} cannot be scored: {e}") from e
    hyps = [" ".join(h.split()) for h in hypotheses]
    sub, dele, ins, n_words = word_edits(refs, hyps)
    c_edits, n_chars = char_edits(refs, hyps)
    return {
        "word_error_rate": round(100.0 * (sub + dele + ins) / n_words, 2),
        "character_error_rate": round(100.0 * c_edits / n_chars, 2),
        "substitutions": sub,
        "deletions": dele,
        "insertions": ins,
        "reference_words": n_words,
        "utterances": len(refs),
    }


def evaluate(
    model: nn.Module,
    meta: SttMeta,
    items: Sequence[tuple[np.ndarray, str]],
    *,
    boost_terms: Sequence[str] = (),
    beam_size: int = BEAM_SIZE,
    device: str | torch.device | None = None,
) -> dict:
    """Transcribe (waveform 16 kHz, reference text) pairs and score them.

    Returns ``error_rates`` plus ``audio_seconds`` and ``hypotheses`` (normalised, in order).
    """
    hyps: list[str] = []
    for b in range(0, len(items), EVAL_BATCH):
        chunk = [w for w, _ in items[b : b + EVAL_BATCH]]
        results = transcribe_batch(model, meta, chunk, beam_size=beam_size, boost_terms=boost_terms, device=device)
        hyps.extend(r.text for r in results)
    metrics = error_rates([ref for _, ref in items], hyps)
    metrics["audio_seconds"] = round(sum(np.asarray(w).size for w, _ in items) / SAMPLE_RATE, 2)
    metrics["hypotheses"] = hyps
    return metrics


def accuracy_improvement(base_wer: float, wer: float) -> float:
    """Relative WER reduction over the base model, in percent (the API's accuracy_improvement)."""
    if base_wer <= 0:
        return 0.0
    return round(100.0 * (base_wer - wer) / base_wer, 2)
