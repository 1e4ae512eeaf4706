"""From waveform to words: segmentation, CTC decoding with term boosting, word timing.

:func:`transcribe_batch` (and :func:`transcribe` for one waveform) is the one entry point
used by evaluation and serving:

1. each waveform is cut into segments of at most MAX_SEGMENT_S, at the quietest 200 ms
   between MIN_SEGMENT_S and MAX_SEGMENT_S into the segment (so cuts fall between words);
2. all segments go through the model as padded batches of up to MAX_BATCH_SEGMENTS;
3. each segment is decoded greedily (``beam_size=1``) or with CTC prefix beam search, where a
   trie of boosted terms (the model's domain vocabulary plus ``boost_terms``) adds
   ``char_bonus`` nats per character while a hypothesis spells a boosted term from a word
   start, takes the pending bonus back if it leaves the term, and adds ``word_bonus`` when
   the term is complete; a custom model's word language model of its own transcripts
   (train_jobs.stt_lm) adds its weighted log-probabilities the same way, character by
   character;
4. the decoded text is force-aligned to the segment's log-probs
   (``torchaudio.functional.forced_align``): a word spans its first to last character frame,
   its confidence is the mean posterior of its characters along the alignment;
5. segment words are shifted by the segment's offset and merged.
"""

from __future__ import annotations

import heapq
import itertools
import math
from operator import itemgetter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torchaudio.functional as AF
from torch import nn

from data_pipelines.text import TranscriptError, normalize_transcript
from data_pipelines.stt_features import N_FFT
from train_jobs.models.stt import SAMPLE_RATE, SttMeta
from train_jobs.stt_lm import LmScorer, LmWeights, WordLM
from train_jobs.stt_vocab import BLANK, SPACE, VOCAB, decode, encode

MAX_SEGMENT_S = 20.0  # s, longest segment given to the model
MIN_SEGMENT_S = 10.0  # s, a cut is searched between this and MAX_SEGMENT_S into a segment
CUT_WINDOW_S = 0.2  # s, energy is averaged over this window when looking for a cut
ENERGY_HOP_S = 0.01  # s, energy frame hop
MAX_BATCH_SEGMENTS = 16  # segments per forward pass
BEAM_SIZE = 12  # prefixes kept per frame by the beam search
TOKEN_PRUNE_NATS = 7.0  # a frame's tokens more than this below its best are not expanded
# Boost weights, in nats added to a prefix's log-probability. A complete 10-letter term gains
# 12 nats: it wins over a spelling whose characters the model prefers by a factor under ~e^12
# in all, but a prefix that leaves the term loses what it was given, and a term's characters
# must still pass TOKEN_PRUNE_NATS to be tried at all. Chosen on synthetic domain speech with
# the general base model: domain WER fell by a sixth to a fifth, general WER with 150
# unrelated terms boosted moved by under half a point.
CHAR_BONUS = 1.0  # per character of a boosted term being spelled (taken back if abandoned)
WORD_BONUS = 2.0  # when a boosted term is complete (followed by a space or the end)


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # s from the start of the audio
    end: float  # s
    confidence: float  # 0-1, mean character posterior along the alignment


@dataclass(frozen=True)
class TranscriptResult:
    text: str  # normalised text (a-z, apostrophes, single spaces)
    words: tuple[Word, ...]
    duration: float  # s of audio

    def to_dict(self) -> dict:
        return {"text": self.text, "words": [asdict(w) for w in self.words], "duration": self.duration}


@dataclass(frozen=True)
class BoostWeights:
    char_bonus: float = CHAR_BONUS
    word_bonus: float = WORD_BONUS


class BoostTrie:
    """Character trie of normalised boosted terms (multi-word terms include their spaces)."""

    def __init__(self, terms: Iterable[str]):
        self.children: list[dict[int, int]] = [{}]
        self.terminal: list[bool] = [False]
        for term in terms:
            try:
                ids = encode(normalize_transcript(term))
            except (TranscriptError, ValueError):
                continue  # nothing the model can spell
            node = 0
            for i in ids:
                if i not in self.children[node]:
                    self.children.append({})
                    self.terminal.append(False)
                    self.children[node][i] = len(self.children) - 1
                node = self.children[node][i]
            self.terminal[node] = True

    def __len__(self) -> int:
        return sum(self.terminal)


@lru_cache(maxsize=64)
def _trie(terms: tuple[str, ...]) -> BoostTrie:
    return BoostTrie(terms)


# Boost state of a prefix: (node, pending). node 0: at a word start; -1: inside a word that
# is no boosted term; > 0: spelling a boosted term. pending: bonus given but not yet earned.
_OUTSIDE = -1
_SCORE = itemgetter(0)


def _boost_step(trie: BoostTrie, state: tuple[int, float], c: int, w: BoostWeights) -> tuple[tuple[int, float], float]:
    """(new state, score delta) after appending token ``c``."""
    node, pending = state
    if node == _OUTSIDE:
        return ((0, 0.0) if c == SPACE else (_OUTSIDE, 0.0)), 0.0
    child = trie.children[node].get(c)
    if c == SPACE and node > 0 and trie.terminal[node]:  # a term is complete
        if child is None:
            return (0, 0.0), w.word_bonus
        return (child, w.char_bonus), w.word_bonus + w.char_bonus  # and a longer term may go on
    if child is not None:
        return (child, pending + w.char_bonus), w.char_bonus
    return ((0, 0.0) if c == SPACE else (_OUTSIDE, 0.0)), -pending


def _boost_final(trie: BoostTrie, state: tuple[int, float], w: BoostWeights) -> float:
    node, pending = state
    if node > 0:
        return w.word_bonus if trie.terminal[node] else -pending
    return 0.0


def _reach(boost_state, lm: LmScorer | None, lm_state, bonus: float, boost_gain: tuple[float, float]) -> tuple[float, float]:
    """A node's bonus plus the most one more space / letter can add to it (``boost_gain``: the
    boost's most, for a node spelling a word or a term)."""
    space, letter = (0.0, 0.0) if boost_state[0] == _OUTSIDE else boost_gain
    if lm is not None:
        lm_space, lm_letter = lm.gain_bounds(lm_state)
        space, letter = space + lm_space, letter + lm_letter
    return bonus + space, bonus + letter


def _lae(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = a if a > b else b
    return m + math.log1p(math.exp(-abs(a - b)))


@lru_cache(maxsize=16)
def lm_scorer(lm: WordLM, weights: LmWeights) -> LmScorer:
    """One scorer (lexicon and word-probability cache) per loaded language model and weights."""
    return LmScorer(lm, weights)


def greedy_decode(log_probs: np.ndarray) -> str:
    """Best path: per-frame argmax over [T, V] log-probs, repeats merged, blanks dropped."""
    best = np.asarray(log_probs).argmax(axis=-1)
    keep = best[np.concatenate(([True], best[1:] != best[:-1]))]
    return " ".join(decode(keep[keep != BLANK]).split())


def beam_search(
    log_probs: np.ndarray,
    *,
    beam_size: int = BEAM_SIZE,
    boost_terms: Sequence[str] = (),
    weights: BoostWeights = BoostWeights(),
    lm: LmScorer | None = None,
) -> str:
    """CTC prefix beam search over [T, V] log-probs with boosted terms and an optional word
    language model; the best text.

    Prefixes are nodes of a tree (node 0 is the empty prefix; a child is its parent plus one
    character), so extending and looking up a prefix costs O(1), not O(its length). A node's
    boost and language-model scores are computed once, when it is created, and a prefix is
    created only when an upper bound on its score (its parent's bonus plus the most one
    character can add, :func:`_reach`) reaches the frame's beam: exact, and about half the
    prefixes are never made.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    trie = _trie(tuple(boost_terms))
    ninf = -math.inf
    parent, last, bonus, state = [-1], [-1], [0.0], [(0, 0.0)]  # per node
    lm_state = [lm.start() if lm is not None else None]
    # A bonus taken back could raise a score when a weight is negative: then nothing is bounded.
    boost_gain = (
        (math.inf, math.inf) if min(weights.char_bonus, weights.word_bonus) < 0
        else (weights.word_bonus + weights.char_bonus, weights.char_bonus)
    )
    reach = [_reach(state[0], lm, lm_state[0], bonus[0], boost_gain)]  # per node: (after a space, after a letter)
    child: dict[tuple[int, int], int] = {}
    beams: dict[int, tuple[float, float]] = {0: (0.0, ninf)}  # node -> (p_blank, p_nonblank)
    # A frame whose only token within TOKEN_PRUNE_NATS of its best is blank extends every
    # prefix by blank alone: the order is kept, so a run of such frames is one sum.
    expand = lp >= lp.max(axis=1, keepdims=True) - TOKEN_PRUNE_NATS
    expand[:, BLANK] = False
    pending_blank = 0.0
    for frame, mask in zip(lp, expand):
        if not mask.any():
            pending_blank += float(frame[BLANK])
            continue
        if pending_blank:
            beams = {k: (_lae(pb, pnb) + pending_blank, ninf) for k, (pb, pnb) in beams.items()}
            pending_blank = 0.0
        candidates = [(int(c), float(frame[c])) for c in np.flatnonzero(mask)]
        blank_lp = float(frame[BLANK])
        nxt: dict[int, list[float]] = {}
        unseen: list[tuple[int, int, float]] = []  # (node, token, log-prob) of prefixes not yet in the tree
        for node, (pb, pnb) in beams.items():
            total = _lae(pb, pnb)
            entry = nxt.setdefault(node, [ninf, ninf])
            entry[0] = _lae(entry[0], total + blank_lp)
            prev = last[node]
            for c, p in candidates:
                if c == SPACE and (prev < 0 or prev == SPACE):
                    entry[1] = _lae(entry[1], total + p)  # leading or double space: the same text
                    continue
                if c == prev:
                    entry[1] = _lae(entry[1], pnb + p)  # the repeat collapses into the prefix
                    p += pb  # a blank separated them: a new character
                else:
                    p += total
                new = child.get((node, c))
                if new is None:
                    unseen.append((node, c, p))
                else:
                    ext = nxt.setdefault(new, [ninf, ninf])
                    ext[1] = _lae(ext[1], p)
        # A prefix new to the tree has one parent, so this frame's one term is its whole score.
        # Only those that may reach the beam are made: the known prefixes bound the rest.
        scored = [(_lae(b, nb) + bonus[k], k) for k, (b, nb) in nxt.items()]
        floor = heapq.nlargest(beam_size, scored, key=_SCORE)[-1][0] if unseen and len(scored) >= beam_size else ninf
        for node, c, p in unseen:
            if p + reach[node][c != SPACE] < floor:
                continue
            new = child[(node, c)] = len(parent)
            parent.append(node)
            last.append(c)
            st, delta = _boost_step(trie, state[node], c, weights)
            state.append(st)
            if lm is not None:
                ls, lm_delta = lm.step(lm_state[node], c)
                lm_state.append(ls)
                delta += lm_delta
            bonus.append(bonus[node] + delta)
            reach.append(_reach(st, lm, lm_state[new] if lm is not None else None, bonus[new], boost_gain))
            nxt[new] = [ninf, p]
            scored.append((p + bonus[new], new))
        beams = {k: tuple(nxt[k]) for _, k in heapq.nlargest(beam_size, scored, key=_SCORE)}
    if pending_blank:
        beams = {k: (_lae(pb, pnb) + pending_blank, ninf) for k, (pb, pnb) in beams.items()}
    def final(k: int) -> float:
        end = _boost_final(trie, state[k], weights) + (lm.final(lm_state[k]) if lm is not None else 0.0)
        return _lae(*beams[k]) + bonus[k] + end

    best = max(beams, key=final)
    chars = []
    while best > 0:
        chars.append(last[best])
        best = parent[best]
    return " ".join(decode(chars[::-1]).split())


def align_words(log_probs: torch.Tensor, text: str, *, frame_shift_s: float, offset_s: float = 0.0) -> list[Word]:
    """Word timings and confidences of ``text`` forced-aligned to [T, V] log-probs."""
    if not text:
        return []
    tokens = encode(text)
    repeats = sum(a == b for a, b in itertools.pairwise(tokens))
    if log_probs.shape[0] < len(tokens) + repeats:
        raise ValueError(f"{len(tokens)} characters cannot be aligned to {log_probs.shape[0]} frames")
    targets = torch.tensor([tokens], dtype=torch.int32)
    path, scores = AF.forced_align(log_probs[None].float().cpu(), targets, blank=BLANK)
    spans = AF.merge_tokens(path[0], scores[0].exp(), blank=BLANK)
    words, current = [], []
    for span in [*spans, None]:
        if span is None or span.token == SPACE:
            if current:
                words.append(
                    Word(
                        word="".join(VOCAB[s.token] for s in current),
                        start=round(offset_s + current[0].start * frame_shift_s, 3),
                        end=round(offset_s + current[-1].end * frame_shift_s, 3),
                        confidence=round(float(np.mean([s.score for s in current])), 4),
                    )
                )
            current = []
        else:
            current.append(span)
    return words


def split_segments(
    waveform: np.ndarray, *, max_s: float = MAX_SEGMENT_S, min_s: float = MIN_SEGMENT_S
) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering ``waveform``, each <= max_s, cut at low energy."""
    n, max_n = int(waveform.size), int(max_s * SAMPLE_RATE)
    if n <= max_n:
        return [(0, n)]
    hop = int(ENERGY_HOP_S * SAMPLE_RATE)
    frames = waveform[: n // hop * hop].astype(np.float64).reshape(-1, hop)
    energy = np.convolve((frames**2).mean(axis=1), np.ones(int(CUT_WINDOW_S / ENERGY_HOP_S)), mode="same")
    segments, start = [], 0
    while n - start > max_n:
        lo, hi = (start + int(min_s * SAMPLE_RATE)) // hop, (start + max_n) // hop
        cut = (lo + int(np.argmin(energy[lo:hi]))) * hop + hop // 2
        segments.append((start, cut))
        start = cut
    segments.append((start, n))
    return segments


def _check_waveform(w, i: int) -> np.ndarray:
    x = np.asarray(w, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"waveform {i} must be a non-empty 1-D 16 kHz array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"waveform {i} contains NaN or Inf")
    return x


def _log_probs(model: nn.Module, pieces: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """One forward pass over a padded batch; per-piece [T_i, V] float32 log-probs on the CPU."""
    lengths = torch.tensor([p.size for p in pieces])
    batch = torch.zeros(len(pieces), max(int(lengths.max()), N_FFT))
    for i, p in enumerate(pieces):
        batch[i, : p.size] = torch.from_numpy(p)
    features, feature_lengths = model.featurize(batch.to(device), lengths.to(device))
    log_probs, out_lengths = model(features, feature_lengths)
    log_probs = log_probs.float().cpu()
    return [log_probs[i, : max(1, int(t))] for i, t in enumerate(out_lengths.cpu())]


def transcribe_batch(
    model: nn.Module,
    meta: SttMeta,
    waveforms: Sequence[np.ndarray],
    *,
    beam_size: int = BEAM_SIZE,
    boost_terms: Sequence[str] = (),
    device: str | torch.device | None = None,
    weights: BoostWeights = BoostWeights(),
    item_terms: Sequence[Sequence[str]] | None = None,
    lm_weights: LmWeights = LmWeights(),
) -> list[TranscriptResult]:
    """Transcribe float32 mono 16 kHz waveforms; one result per waveform, in order.

    Boosted terms are ``meta.vocabulary`` plus ``boost_terms``, plus ``item_terms[i]`` for
    waveform i (requests batched together may each bring their own); ``beam_size=1``
    decodes greedily (no boosting, no language model). The beam search fuses
    ``meta.language_model`` when the model has one, with ``lm_weights``.
    ``device`` defaults to the model's.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    waves = [_check_waveform(w, i) for i, w in enumerate(waveforms)]
    if item_terms is not None and len(item_terms) != len(waves):
        raise ValueError(f"item_terms has {len(item_terms)} entries for {len(waves)} waveforms")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    shared = [*meta.vocabulary, *boost_terms]
    terms = [tuple(dict.fromkeys([*shared, *(item_terms[i] if item_terms else ())])) for i in range(len(waves))]
    pieces = [(i, s, e) for i, w in enumerate(waves) for s, e in split_segments(w)]
    order = sorted(range(len(pieces)), key=lambda k: pieces[k][2] - pieces[k][1], reverse=True)
    log_probs: list[torch.Tensor | None] = [None] * len(pieces)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b in range(0, len(order), MAX_BATCH_SEGMENTS):
                chunk = order[b : b + MAX_BATCH_SEGMENTS]
                outs = _log_probs(model, [waves[pieces[k][0]][pieces[k][1] : pieces[k][2]] for k in chunk], device)
                for k, out in zip(chunk, outs):
                    log_probs[k] = out
    finally:
        model.train(was_training)
    lm = lm_scorer(meta.language_model, lm_weights) if meta.language_model is not None else None
    texts: list[list[str]] = [[] for _ in waves]
    words: list[list[Word]] = [[] for _ in waves]
    for (i, start, _), lp in zip(pieces, log_probs):
        if beam_size == 1:
            text = greedy_decode(lp.numpy())
        else:
            text = beam_search(lp.numpy(), beam_size=beam_size, boost_terms=terms[i], weights=weights, lm=lm)
        if text:
            texts[i].append(text)
            words[i].extend(align_words(lp, text, frame_shift_s=model.frame_shift_s, offset_s=start / SAMPLE_RATE))
    results = []
    for i, w in enumerate(waves):
        duration = round(w.size / SAMPLE_RATE, 3)
        clipped = tuple(Word(x.word, min(x.start, duration), min(x.end, duration), x.confidence) for x in words[i])
        results.append(TranscriptResult(text=" ".join(texts[i]), words=clipped, duration=duration))
    return results


def transcribe(
    model: nn.Module,
    meta: SttMeta,
    waveform_16k: np.ndarray,
    *,
    beam_size: int = BEAM_SIZE,
    boost_terms: Sequence[str] = (),
    device: str | torch.device | None = None,
    weights: BoostWeights = BoostWeights(),
) -> TranscriptResult:
    """Transcribe one float32 mono 16 kHz waveform (see :func:`transcribe_batch`)."""
    return transcribe_batch(
        model, meta, [waveform_16k], beam_size=beam_size, boost_terms=boost_terms, device=device, weights=weights
    )[0]
