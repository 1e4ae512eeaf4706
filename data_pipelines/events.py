"""Timestamped detections: frame probabilities -> events, and event-based scoring.

Pure Python/NumPy so the API, the evaluator and the serving replicas share one definition.
Times are integer milliseconds; an event covers ``[start_ms, end_ms)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

FRAME_HOP_MS = 10  # ms per frame; equals data_pipelines.features.FRAME_HOP_MS (kept torch-free)


@dataclass(frozen=True)
class Event:
    artifact_type: str
    start_ms: int
    end_ms: int
    confidence: float = 1.0

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


def _sort_key(event: Event) -> tuple[int, str, int]:
    return (event.start_ms, event.artifact_type, event.end_ms)


def probs_to_events(
    probs: np.ndarray, artifact_types: Sequence[str], threshold: float, hop_ms: int = FRAME_HOP_MS
) -> list[Event]:
    """Each run of frames with probability >= threshold becomes one event.

    ``probs`` is [T, C] with column c for ``artifact_types[c]``; frame t covers
    [t * hop_ms, (t + 1) * hop_ms). Confidence is the mean probability over the run.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(artifact_types):
        raise ValueError(
            f"probs must have shape [frames, {len(artifact_types)}] for artifact types "
            f"{list(artifact_types)}, got {p.shape}"
        )
    if not np.isfinite(p).all():
        raise ValueError("probs contain NaN or Inf")
    if hop_ms <= 0:
        raise ValueError(f"hop_ms must be positive, got {hop_ms}")
    events = []
    for c, artifact_type in enumerate(artifact_types):
        active = np.concatenate(([False], p[:, c] >= threshold, [False]))
        edges = np.flatnonzero(active[1:] != active[:-1])
        for start, stop in zip(edges[::2], edges[1::2]):
            events.append(
                Event(
                    artifact_type,
                    int(start) * hop_ms,
                    int(stop) * hop_ms,
                    float(p[start:stop, c].mean()),
                )
            )
    return sorted(events, key=_sort_key)


def merge_events(events: Iterable[Event], merge_window_ms: int) -> list[Event]:
    """Merge events of one type whose gap is <= merge_window_ms (overlaps always merge).

    The merged confidence is the duration-weighted mean of the parts' confidences (the
    gaps between them carry no weight); parts of zero length weigh equally if all are empty.
    """
    if merge_window_ms < 0:
        raise ValueError(f"merge_window_ms must be >= 0, got {merge_window_ms}")
    by_type: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_type[event.artifact_type].append(event)
    merged = []
    for artifact_type, group in by_type.items():
        group.sort(key=_sort_key)
        parts = [group[0]]
        end = group[0].end_ms
        for event in group[1:]:
            if event.start_ms - end <= merge_window_ms:
                parts.append(event)
                end = max(end, event.end_ms)
                continue
            merged.append(_combine(artifact_type, parts))
            parts, end = [event], event.end_ms
        merged.append(_combine(artifact_type, parts))
    return sorted(merged, key=_sort_key)


def _combine(artifact_type: str, parts: list[Event]) -> Event:
    weights = [max(p.duration_ms, 0) for p in parts]
    if sum(weights) == 0:
        weights = [1] * len(parts)
    confidence = sum(w * p.confidence for w, p in zip(weights, parts)) / sum(weights)
    return Event(
        artifact_type,
        min(p.start_ms for p in parts),
        max(p.end_ms for p in parts),
        float(confidence),
    )


def drop_short(events: Iterable[Event], min_duration_ms: int) -> list[Event]:
    """Events lasting at least ``min_duration_ms``."""
    return [e for e in events if e.duration_ms >= min_duration_ms]


def postprocess(
    probs: np.ndarray,
    artifact_types: Sequence[str],
    *,
    threshold: float = 0.5,
    merge_window_ms: int = 200,
    min_duration_ms: int = 50,
    hop_ms: int = FRAME_HOP_MS,
) -> list[Event]:
    """Frame probabilities [T, C] -> detections sorted by (start_ms, artifact_type).

    Threshold (runs of frames >= threshold), then merge same-type runs separated by
    <= merge_window_ms, then drop events shorter than min_duration_ms. Confidence is the mean
    frame probability of each run; a merged event takes the duration-weighted mean of its
    runs, i.e. the mean probability over its above-threshold frames.
    """
    events = probs_to_events(probs, artifact_types, threshold, hop_ms)
    return drop_short(merge_events(events, merge_window_ms), min_duration_ms)


# --- scoring -------------------------------------------------------------------------------


def _matches(ref: Event, est: Event, onset_collar_ms: int, offset_collar_ms: int, rate: float) -> bool:
    if abs(est.start_ms - ref.start_ms) > onset_collar_ms:
        return False
    return abs(est.end_ms - ref.end_ms) <= max(offset_collar_ms, rate * ref.duration_ms)


def _max_matching(candidates: list[list[int]], n_right: int) -> list[int]:
    """A maximum bipartite matching: for each left i, the right it takes (-1: none); candidates[i] lists the rights i may take.

    One breadth-first augmenting-path search per left node (iterative: no recursion limit
    on files with thousands of events).
    """
    right_owner = [-1] * n_right
    left_match = [-1] * len(candidates)
    for root in range(len(candidates)):
        reached_from: dict[int, int] = {}  # right -> left that reached it
        queue, head, free = [root], 0, -1
        while head < len(queue) and free < 0:
            i = queue[head]
            head += 1
            for j in candidates[i]:
                if j in reached_from:
                    continue
                reached_from[j] = i
                if right_owner[j] < 0:
                    free = j
                    break
                queue.append(right_owner[j])
        if free < 0:
            continue
        j = free
        while j >= 0:  # flip the alternating path back to the root
            i = reached_from[j]
            right_owner[j], left_match[i], j = i, j, left_match[i]
    return left_match


@dataclass(frozen=True)
class ClassMatch:
    """One file's matching for one type: matched pairs, estimates matching nothing, references found by none."""

    true_positives: int
    false_positives: tuple[Event, ...]
    missed: tuple[Event, ...]


def match_events(
    reference: Sequence[Event],
    estimated: Sequence[Event],
    artifact_types: Sequence[str],
    *,
    onset_collar_ms: int = 200,
    offset_collar_ms: int = 200,
    offset_collar_rate: float = 0.5,
) -> dict[str, ClassMatch]:
    """One file's one-to-one matching per type (the sed_eval event-based definition; see ``event_metrics``)."""
    known = set(artifact_types)
    for event in (*reference, *estimated):
        if event.artifact_type not in known:
            raise ValueError(f"unknown artifact type {event.artifact_type!r}; expected one of {list(artifact_types)}")
    out = {}
    for artifact_type in artifact_types:
        refs = [e for e in reference if e.artifact_type == artifact_type]
        ests = [e for e in estimated if e.artifact_type == artifact_type]
        candidates = [
            [j for j, est in enumerate(ests) if _matches(ref, est, onset_collar_ms, offset_collar_ms, offset_collar_rate)]
            for ref in refs
        ]
        taken = _max_matching(candidates, len(ests)) if refs and ests else [-1] * len(refs)
        used = {j for j in taken if j >= 0}
        out[artifact_type] = ClassMatch(
            true_positives=len(used),
            false_positives=tuple(e for j, e in enumerate(ests) if j not in used),
            missed=tuple(r for r, j in zip(refs, taken) if j < 0),
        )
    return out


def segment_counts(
    reference: Sequence[Event], estimated: Sequence[Event], artifact_types: Sequence[str], duration_ms: int, *, segment_ms: int = 1000
) -> dict[str, tuple[int, int, int]]:
    """Segment-based (TP, FP, FN) per type: a segment is active for a type when any event of it overlaps the segment.

    The file is cut into ``segment_ms`` segments from 0 (the last one may be shorter); an event
    running past ``duration_ms`` extends the grid, as sed_eval's does.
    """
    end = max([duration_ms, *(e.end_ms for e in (*reference, *estimated))])
    n = max(1, -(-int(end) // segment_ms))

    def active(events: Iterable[Event], artifact_type: str) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        for e in events:
            if e.artifact_type == artifact_type and e.end_ms > e.start_ms:
                mask[e.start_ms // segment_ms : -(-e.end_ms // segment_ms)] = True
        return mask

    out = {}
    for artifact_type in artifact_types:
        ref, est = active(reference, artifact_type), active(estimated, artifact_type)
        out[artifact_type] = (int((ref & est).sum()), int((est & ~ref).sum()), int((ref & ~est).sum()))
    return out


def ratios(tp: int, n_ref: int, n_est: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of counts, with the empty-denominator rules of ``event_metrics``."""
    return _ratios(tp, n_ref, n_est)


def _ratios(tp: int, n_ref: int, n_est: int) -> tuple[float, float, float]:
    precision = tp / n_est if n_est else 1.0
    recall = tp / n_ref if n_ref else 1.0
    denominator = n_ref + n_est
    f1 = 2 * tp / denominator if denominator else 1.0
    return float(precision), float(recall), float(f1)


def event_metrics(
    pairs: Iterable[tuple[Sequence[Event], Sequence[Event]]],
    artifact_types: Sequence[str],
    *,
    onset_collar_ms: int = 200,
    offset_collar_ms: int = 200,
    offset_collar_rate: float = 0.5,
) -> dict:
    """Event-based precision/recall/F1 (the sed_eval definition) over (reference, estimated) files.

    An estimate matches a reference of the same type and file when their onsets differ by
    <= onset_collar_ms and their offsets by <= max(offset_collar_ms, offset_collar_rate *
    reference length). Matches are one-to-one, chosen as a maximum bipartite matching per file
    and type. Overall scores are micro-averaged over all types. Empty denominators: with no
    estimates precision is 1.0, with no references recall is 1.0, and F1 = 2TP / (N_ref + N_est)
    is 1.0 only when both are empty (nothing to find, nothing claimed). ``support`` is the
    number of reference events of a type. All values are plain floats/ints.
    """
    types = list(artifact_types)
    tp = dict.fromkeys(types, 0)
    n_ref = dict.fromkeys(types, 0)
    n_est = dict.fromkeys(types, 0)
    for reference, estimated in pairs:
        matched = match_events(
            reference, estimated, types,
            onset_collar_ms=onset_collar_ms, offset_collar_ms=offset_collar_ms, offset_collar_rate=offset_collar_rate,
        )
        for artifact_type, m in matched.items():
            tp[artifact_type] += m.true_positives
            n_ref[artifact_type] += m.true_positives + len(m.missed)
            n_est[artifact_type] += m.true_positives + len(m.false_positives)
    per_class = {}
    for artifact_type in types:
        p, r, f = _ratios(tp[artifact_type], n_ref[artifact_type], n_est[artifact_type])
        per_class[artifact_type] = {"precision": p, "recall": r, "f1_score": f, "support": int(n_ref[artifact_type])}
    p, r, f = _ratios(sum(tp.values()), sum(n_ref.values()), sum(n_est.values()))
    return {"precision": p, "recall": r, "f1_score": f, "per_class": per_class}
