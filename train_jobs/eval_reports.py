"""Evaluation reports: a row per (model, file), and the summaries and comparisons computed from those rows.

Pure functions over plain data, so the evaluation runner, the benchmark and the tests share
them. A row holds counts, never ratios of its own: every summary figure is recomputed from
summed counts, so the per-file rows always add up to the overall figures.

Detector rows follow the sed_eval definitions (``data_pipelines.events``): event-based
TP/FP/FN per class with each false positive and missed event, segment-based counts over
1 s segments, and event counts at each threshold of a sweep. STT rows hold jiwer's word
alignment and edit counts of normalised texts, and keyterm counts when terms are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jiwer
import numpy as np

from data_pipelines.events import Event, match_events, ratios, segment_counts
from data_pipelines.text import TranscriptError, normalize_transcript

SWEEP_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
SEGMENT_MS = 1000
BOOTSTRAP_RESAMPLES = 1000


# --- detectors ---------------------------------------------------------------------------------


def _interval(e: Event, with_confidence: bool) -> dict:
    out = {"start_ms": int(e.start_ms), "end_ms": int(e.end_ms)}
    if with_confidence:
        out["confidence"] = float(e.confidence)
    return out


def detector_row(
    reference: Sequence[Event],
    detections: Sequence[Event],
    sweep: Mapping[float, Sequence[Event]],
    artifact_types: Sequence[str],
    duration_ms: int,
    *,
    collar_ms: int = 200,
    offset_share: float = 0.5,
) -> dict:
    """One file's row: per class TP/FP/FN (with every false positive and missed event), segment and sweep counts."""
    collars = {"onset_collar_ms": collar_ms, "offset_collar_ms": collar_ms, "offset_collar_rate": offset_share}
    matched = match_events(reference, detections, artifact_types, **collars)
    segments = segment_counts(reference, detections, artifact_types, duration_ms, segment_ms=SEGMENT_MS)
    swept = {t: match_events(reference, events, artifact_types, **collars) for t, events in sweep.items()}
    classes = {}
    for t in artifact_types:
        m = matched[t]
        classes[t] = {
            "tp": m.true_positives,
            "fp": len(m.false_positives),
            "fn": len(m.missed),
            "false_positives": [_interval(e, True) for e in m.false_positives],
            "missed": [_interval(e, False) for e in m.missed],
            "segments": list(segments[t]),
            "sweep": {f"{th:.1f}": [s[t].true_positives, len(s[t].false_positives), len(s[t].missed)] for th, s in swept.items()},
        }
    return {"duration_ms": int(duration_ms), "classes": classes}


def _counts(rows: Sequence[dict], artifact_types: Sequence[str]) -> dict[str, list[int]]:
    total = {t: [0, 0, 0] for t in artifact_types}
    for row in rows:
        for t in artifact_types:
            c = row["classes"][t]
            total[t][0] += c["tp"]
            total[t][1] += c["fp"]
            total[t][2] += c["fn"]
    return total


def _scores(tp: int, fp: int, fn: int) -> dict:
    p, r, f = ratios(tp, tp + fn, tp + fp)
    return {"precision": round(p, 4), "recall": round(r, 4), "f1_score": round(f, 4)}


def detector_summary(rows: Sequence[dict], artifact_types: Sequence[str]) -> dict:
    """Overall and per-class event-based and segment-based figures, the threshold sweep and the best threshold per class."""
    events = _counts(rows, artifact_types)
    per_class = {}
    seg_total = [0, 0, 0]
    for t in artifact_types:
        tp, fp, fn = events[t]
        seg = [sum(row["classes"][t]["segments"][i] for row in rows) for i in range(3)]
        seg_total = [a + b for a, b in zip(seg_total, seg)]
        sweep = []
        for th in SWEEP_THRESHOLDS:
            key = f"{th:.1f}"
            s = [sum(row["classes"][t]["sweep"][key][i] for row in rows) for i in range(3)]
            sweep.append({"threshold": th, **_scores(*s)})
        best = max(sweep, key=lambda s: (s["f1_score"], -abs(s["threshold"] - 0.5)))
        per_class[t] = {
            **_scores(tp, fp, fn),
            "support": tp + fn,
            "true_positives": tp,
            "insertions": fp,
            "deletions": fn,
            "error_rate": round((fp + fn) / (tp + fn), 4) if tp + fn else None,
            "segment_based": {**_scores(*seg), "true_positives": seg[0], "false_positives": seg[1], "false_negatives": seg[2]},
            "threshold_sweep": sweep,
            "best_threshold": best["threshold"],
            "best_f1_score": best["f1_score"],
        }
    tp, fp, fn = (sum(events[t][i] for t in artifact_types) for i in range(3))
    return {
        **_scores(tp, fp, fn),
        "support": tp + fn,
        "true_positives": tp,
        "insertions": fp,
        "deletions": fn,
        "error_rate": round((fp + fn) / (tp + fn), 4) if tp + fn else None,
        "macro_f1_score": round(float(np.mean([per_class[t]["f1_score"] for t in artifact_types])), 4) if artifact_types else None,
        "segment_based": _scores(*seg_total),
        "per_class": per_class,
        "files": len(rows),
    }


def row_errors(row: dict) -> int:
    """False positives plus missed events of a detector row, or word edits of an STT row."""
    if "classes" in row:
        return sum(c["fp"] + c["fn"] for c in row["classes"].values())
    return row["substitutions"] + row["deletions"] + row["insertions"]


# --- speech to text --------------------------------------------------------------------------------


def _term_tokens(terms: Sequence[str]) -> list[tuple[str, ...]]:
    out = []
    for term in terms:
        tokens = tuple(_normalized(term).split())
        if tokens and tokens not in out:
            out.append(tokens)
    return out


def _occurrences(words: list[str], term: tuple[str, ...]) -> int:
    """Non-overlapping occurrences of a token sequence."""
    n, i, count = len(term), 0, 0
    while i + n <= len(words):
        if tuple(words[i : i + n]) == term:
            count, i = count + 1, i + n
        else:
            i += 1
    return count


def _normalized(text: str) -> str:
    """``normalize_transcript``, with text that holds no words scored as empty."""
    try:
        return normalize_transcript(text)
    except TranscriptError:
        return ""


def stt_row(reference: str, hypothesis: str, keyterms: Sequence[str] = ()) -> dict:
    """One utterance's row: normalised texts, jiwer's word alignment, word and character edits, keyterm counts."""
    ref, hyp = _normalized(reference), _normalized(hypothesis)
    words = jiwer.process_words(ref, hyp) if ref else None
    ref_words, hyp_words = ref.split(), hyp.split()
    if words is not None:
        hits, subs, dels, ins = words.hits, words.substitutions, words.deletions, words.insertions
        alignment = [
            {"type": a.type, "ref_start": a.ref_start_idx, "ref_end": a.ref_end_idx, "hyp_start": a.hyp_start_idx, "hyp_end": a.hyp_end_idx}
            for a in words.alignments[0]
        ]
    else:  # an empty reference: every hypothesis word is an insertion
        hits, subs, dels, ins = 0, 0, 0, len(hyp_words)
        alignment = [{"type": "insert", "ref_start": 0, "ref_end": 0, "hyp_start": 0, "hyp_end": len(hyp_words)}] if hyp_words else []
    chars = jiwer.process_characters(ref, hyp) if ref else None
    char_edits = chars.substitutions + chars.deletions + chars.insertions if chars else len(hyp)
    terms = {"reference": 0, "recalled": 0, "false_insertions": 0}
    for term in _term_tokens(keyterms):
        r, h = _occurrences(ref_words, term), _occurrences(hyp_words, term)
        terms["reference"] += r
        terms["recalled"] += min(r, h)
        terms["false_insertions"] += max(0, h - r)
    n = len(ref_words)
    return {
        "reference": ref,
        "hypothesis": hyp,
        "alignment": alignment,
        "hits": hits,
        "substitutions": subs,
        "deletions": dels,
        "insertions": ins,
        "reference_words": n,
        "character_edits": char_edits,
        "reference_characters": len(ref),
        "word_error_rate": round(100.0 * (subs + dels + ins) / n, 2) if n else None,
        "character_error_rate": round(100.0 * char_edits / len(ref), 2) if ref else None,
        "keyterms": terms if keyterms else None,
    }


def stt_wer(rows: Sequence[dict]) -> float:
    """Corpus WER (%) of rows: total word edits over total reference words."""
    words = sum(r["reference_words"] for r in rows)
    return 100.0 * sum(row_errors(r) for r in rows) / words if words else 0.0


def stt_summary(rows: Sequence[dict]) -> dict:
    """Corpus WER, CER, sentence error rate and edit counts; keyterm recall and false insertions when terms were given."""
    words = sum(r["reference_words"] for r in rows)
    chars = sum(r["reference_characters"] for r in rows)
    out = {
        "word_error_rate": round(stt_wer(rows), 2),
        "character_error_rate": round(100.0 * sum(r["character_edits"] for r in rows) / chars, 2) if chars else 0.0,
        "sentence_error_rate": round(100.0 * sum(row_errors(r) > 0 for r in rows) / len(rows), 2) if rows else 0.0,
        "reference_words": words,
        "hits": sum(r["hits"] for r in rows),
        "substitutions": sum(r["substitutions"] for r in rows),
        "deletions": sum(r["deletions"] for r in rows),
        "insertions": sum(r["insertions"] for r in rows),
        "files": len(rows),
    }
    keyed = [r["keyterms"] for r in rows if r.get("keyterms")]
    if keyed:
        ref = sum(k["reference"] for k in keyed)
        out["keyterms"] = {
            "reference": ref,
            "recalled": sum(k["recalled"] for k in keyed),
            "false_insertions": sum(k["false_insertions"] for k in keyed),
            "recall": round(sum(k["recalled"] for k in keyed) / ref, 4) if ref else None,
        }
    return out


# --- comparisons -------------------------------------------------------------------------------------


def headline_parts(kind: str, row: dict) -> tuple[float, float]:
    """(numerator, denominator) of a file's share of the headline metric.

    Both headlines are ratios of sums over files: event F1 = Σ2TP / Σ(2TP + FP + FN),
    WER = 100 · Σedits / Σreference words, so a resample's metric is one division.
    """
    if kind == "detector":
        tp = sum(c["tp"] for c in row["classes"].values())
        fp_fn = sum(c["fp"] + c["fn"] for c in row["classes"].values())
        return 2.0 * tp, 2.0 * tp + fp_fn
    return 100.0 * row_errors(row), float(row["reference_words"])


def _ratio(kind: str, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    empty = 1.0 if kind == "detector" else 0.0  # nothing to find and nothing claimed: F1 1, WER 0
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def headline_name(kind: str) -> str:
    return "f1_score" if kind == "detector" else "word_error_rate"


def file_score(kind: str, row: dict) -> float | None:
    """One file's headline metric (its event F1, or its WER), for sorting and per-file differences."""
    if kind != "detector" and not row["reference_words"]:
        return None
    num, den = headline_parts(kind, row)
    return round(float(_ratio(kind, np.array(num), np.array(den))), 4)


def paired_bootstrap(kind: str, rows_a: Sequence[dict], rows_b: Sequence[dict], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Headline difference (b − a) with a paired bootstrap 95% percentile interval over files.

    ``rows_a[i]`` and ``rows_b[i]`` are the two models' rows of the same file; each resample
    draws files with replacement and recomputes both corpus metrics from the drawn files.
    """
    if len(rows_a) != len(rows_b):
        raise ValueError("paired rows must cover the same files")
    n = len(rows_a)
    if n == 0:
        return {"difference": None, "ci_low": None, "ci_high": None, "resamples": 0, "files": 0}
    a = np.array([headline_parts(kind, r) for r in rows_a])
    b = np.array([headline_parts(kind, r) for r in rows_b])
    observed = _ratio(kind, b[:, 0].sum(), b[:, 1].sum()) - _ratio(kind, a[:, 0].sum(), a[:, 1].sum())
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    diffs = _ratio(kind, b[idx, 0].sum(1), b[idx, 1].sum(1)) - _ratio(kind, a[idx, 0].sum(1), a[idx, 1].sum(1))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "difference": round(float(observed), 4), "ci_low": round(float(low), 4), "ci_high": round(float(high), 4),
        "resamples": resamples, "files": n,
    }


def bootstrap_interval(kind: str, rows: Sequence[dict], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """One model's headline metric (its F1, or its WER in percent) with a bootstrap 95% percentile interval over
    files (files drawn with replacement)."""
    n = len(rows)
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "resamples": 0, "files": 0}
    parts = np.array([headline_parts(kind, r) for r in rows])
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    low, high = np.percentile(_ratio(kind, parts[idx, 0].sum(1), parts[idx, 1].sum(1)), [2.5, 97.5])
    value = _ratio(kind, parts[:, 0].sum(), parts[:, 1].sum())
    return {"value": round(float(value), 4), "ci_low": round(float(low), 4), "ci_high": round(float(high), 4),
            "resamples": resamples, "files": n}


def summarize(kind: str, rows_by_model: Sequence[Sequence[dict]], artifact_types: Sequence[str] = (), *, seed: int = 0) -> dict[str, Any]:
    """Every model's summary and every pair's comparison; ``rows_by_model[m][i]`` is model m's row of file i."""
    summaries = [
        {**(detector_summary(r, artifact_types) if kind == "detector" else stt_summary(r)),
         "interval": bootstrap_interval(kind, r, seed=seed)}
        for r in rows_by_model
    ]
    pairs = [
        {"a": i, "b": j, "metric": headline_name(kind), **paired_bootstrap(kind, rows_by_model[i], rows_by_model[j], seed=seed)}
        for i in range(len(rows_by_model))
        for j in range(i + 1, len(rows_by_model))
    ]
    return {"metric": headline_name(kind), "summaries": summaries, "comparisons": pairs}
