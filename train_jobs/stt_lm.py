"""A word n-gram language model of a custom model's own transcripts, fused into CTC decoding.

A character CTC model spells what it hears; on a voice or a channel it never heard, one
character in fourteen goes wrong and one word in four with it. The customer's transcripts
say which words and word sequences their audio holds, so a custom model keeps an
interpolated Kneser-Ney n-gram model of its training transcripts (:func:`build_word_lm`)
and the beam search (train_jobs.stt_decoding) scores each hypothesis by the model's
log-probability of its words, weighted (shallow fusion):

- inside a word, by look-ahead: the best unigram log-probability of any known word the
  characters so far can still become, so a spelling that leaves every known word is
  penalised while it is being spelled, not only when it ends;
- at a word's end, the look-ahead is replaced by the word's probability given the words
  before it (``<s>`` at the start); a word the model does not know scores ``oov_logprob``
  instead, so new words stay possible; every word earns ``word_bonus``;
- at the end of the hypothesis, the probability of ``</s>``.

The counts travel in the checkpoint as plain lists (:meth:`WordLM.to_dict`); probabilities
are computed when it loads.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from train_jobs.stt_vocab import SPACE, encode

ORDER = 3  # words of context + 1
DISCOUNT = 0.75  # absolute discount of every order (Kneser-Ney's usual value)
UNIFORM_SHARE = 0.01  # of the unigram mass spread evenly over the vocabulary
BOS, EOS = "<s>", "</s>"
FORMAT = 1


@dataclass(frozen=True)
class LmWeights:
    """Shallow-fusion weights, nats added to a hypothesis' CTC log-probability.

    Chosen on development utterances of held-out voices (not the benchmark's scored ones) with
    a model fine-tuned as ``bench/robustness.py --kind stt`` does: in-domain sentences under the
    hard conditions, and general sentences whose words the transcripts mostly lack. Stronger
    fusion (weight 0.8-1.2, unknown words at e^-15) lowered in-domain WER further (12.7 -> 6.5)
    but raised out-of-domain WER above the acoustic model's (54.6 -> 61-68); at 0.5 with a
    2.5-nat word bonus in-domain WER halves (25.1 -> 12.7) and out-of-domain stays (54.8).
    An unknown word costs as much as a known one of probability e^-11 (about 1 in 60,000).
    """

    lm_weight: float = 0.5
    word_bonus: float = 2.5
    oov_logprob: float = -11.0


class WordLM:
    """Interpolated Kneser-Ney over words; ``log_prob(word, history)`` in nats."""

    def __init__(self, order: int, vocab: list[str], counts: list[list[list[int]]]):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if len(counts) != order:
            raise ValueError(f"a {order}-gram model needs {order} count tables, got {len(counts)}")
        self.order, self.vocab = order, list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.bos, self.eos = self.index[BOS], self.index[EOS]
        self._counts = counts
        n = len(self.vocab)
        # highest order: raw counts; lower orders: continuation counts (distinct left words)
        self.c: list[dict[tuple[int, ...], int]] = [{} for _ in range(order)]
        for k, table in enumerate(counts):
            for row in table:
                self.c[k][tuple(row[:-1])] = int(row[-1])
        self.context_total: list[dict[tuple[int, ...], int]] = [defaultdict(int) for _ in range(order)]
        self.context_types: list[dict[tuple[int, ...], int]] = [defaultdict(int) for _ in range(order)]
        for k in range(order):
            for gram, cnt in self.c[k].items():
                self.context_total[k][gram[:-1]] += cnt
                self.context_types[k][gram[:-1]] += 1
        self.uniform = 1.0 / max(1, n - 1)  # <s> is never predicted

    @property
    def words(self) -> list[str]:
        """Words it can predict (not the boundary markers)."""
        return [w for w in self.vocab if w not in (BOS, EOS)]

    def context(self, history: tuple[int, ...]) -> tuple[int, ...]:
        """The last order-1 words of ``history``: all the model conditions on."""
        return history[len(history) - self.order + 1 :] if self.order > 1 else ()

    def prob(self, word: int, history: tuple[int, ...]) -> float:
        return self._prob(word, self.context(history))

    def _prob(self, word: int, history: tuple[int, ...]) -> float:
        k = len(history)
        if k == 0:
            total = self.context_total[0].get((), 0)
            p = self.c[0].get((word,), 0) / total if total else 0.0
            return (1 - UNIFORM_SHARE) * p + UNIFORM_SHARE * self.uniform
        lower = self._prob(word, history[1:])
        total = self.context_total[k].get(history, 0)
        if not total:
            return lower
        cnt = self.c[k].get((*history, word), 0)
        return max(cnt - DISCOUNT, 0.0) / total + DISCOUNT * self.context_types[k][history] / total * lower

    def log_prob(self, word: int, history: tuple[int, ...]) -> float:
        return math.log(self.prob(word, history))

    def start(self) -> tuple[int, ...]:
        return (self.bos,) * (self.order - 1)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "order": self.order, "vocab": list(self.vocab), "counts": self._counts}

    @classmethod
    def from_dict(cls, d: Mapping) -> WordLM:
        if d.get("format") != FORMAT:
            raise ValueError(f"language model format {d.get('format')!r} is not supported; this version reads {FORMAT}")
        return cls(int(d["order"]), list(d["vocab"]), d["counts"])


def build_word_lm(texts: Iterable[str], order: int = ORDER) -> WordLM:
    """Kneser-Ney counts of normalised transcripts (words split on spaces; empty ones skipped)."""
    sentences = [t.split() for t in texts if t and t.split()]
    if not sentences:
        raise ValueError("a language model needs at least one non-empty transcript")
    vocab = [BOS, EOS, *sorted({w for s in sentences for w in s})]
    index = {w: i for i, w in enumerate(vocab)}
    top: Counter[tuple[int, ...]] = Counter()
    for s in sentences:
        ids = [index[BOS]] * (order - 1) + [index[w] for w in s] + [index[EOS]]
        for i in range(order - 1, len(ids)):
            top[tuple(ids[i - order + 1 : i + 1])] += 1
    tables: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order)]
    tables[order - 1] = top
    for k in range(order - 1, 0, -1):  # continuation counts: distinct words before each shorter gram
        for gram in tables[k]:
            tables[k - 1][gram[1:]] += 1
    counts = [[[*g, c] for g, c in sorted(t.items())] for t in tables]
    return WordLM(order, vocab, counts)


class Lexicon:
    """Character trie of the model's words; per node the best unigram log-prob below it."""

    def __init__(self, lm: WordLM):
        self.children: list[dict[int, int]] = [{}]
        self.word: list[int] = [-1]  # word id ending at the node, else -1
        self.best: list[float] = [0.0]
        for w in lm.words:
            try:
                ids = encode(w)
            except ValueError:
                continue
            lp = lm.log_prob(lm.index[w], ())
            node = 0
            for i in ids:
                nxt = self.children[node].get(i)
                if nxt is None:
                    self.children.append({})
                    self.word.append(-1)
                    self.best.append(-math.inf)
                    nxt = self.children[node][i] = len(self.children) - 1
                node = nxt
                self.best[node] = max(self.best[node], lp)
            self.word[node] = lm.index[w]
        self.best[0] = 0.0


OUTSIDE = -1  # lexicon node of a word that is no known word


class LmScorer:
    """Per-character score deltas of shallow fusion; states are (history, lexicon node, look-ahead held)."""

    def __init__(self, lm: WordLM, weights: LmWeights = LmWeights()):
        self.lm, self.w = lm, weights
        self.lexicon = Lexicon(lm)
        self.unk = len(lm.vocab)  # history id of an unknown word: no n-gram holds it
        self._logp = lru_cache(maxsize=200_000)(lm.log_prob)  # histories are kept as contexts

    def start(self) -> tuple[tuple[int, ...], int, float]:
        return (self.lm.start(), 0, 0.0)

    def _end_word(self, state) -> tuple[tuple[int, ...], float]:
        """(new history, delta) when the word being spelled ends."""
        history, node, held = state
        word = self.lexicon.word[node] if node > 0 else -1
        if word >= 0:
            lp = self._logp(word, history)
        else:
            word, lp = self.unk, self.w.oov_logprob
        history = self.lm.context((*history, word))
        return history, self.w.lm_weight * (lp - held) + self.w.word_bonus

    def step(self, state, c: int) -> tuple[tuple, float]:
        """(new state, score delta) after appending token ``c``."""
        history, node, held = state
        if c == SPACE:
            if node == 0:
                return state, 0.0  # no word yet (the decoder never appends a leading space)
            history, delta = self._end_word(state)
            return (history, 0, 0.0), delta
        if node == OUTSIDE:
            return state, 0.0
        nxt = self.lexicon.children[node].get(c)
        if nxt is None:  # the word leaves every known word: it is unknown, charged now
            return (history, OUTSIDE, self.w.oov_logprob), self.w.lm_weight * (self.w.oov_logprob - held)
        ahead = self.lexicon.best[nxt]
        return (history, nxt, ahead), self.w.lm_weight * (ahead - held)

    def gain_bounds(self, state) -> tuple[float, float]:
        """Upper bounds on ``step(state, c)``'s delta for c a space and for c a letter, without
        the n-gram lookup: a word's probability is at most 1 and a look-ahead never rises along
        a word."""
        _, node, held = state
        if self.w.lm_weight < 0:
            return math.inf, math.inf
        space = self.w.lm_weight * max(0.0, -held) + self.w.word_bonus if node != 0 else 0.0
        return space, (0.0 if node == OUTSIDE else self.w.lm_weight * max(0.0, self.w.oov_logprob - held))

    def final(self, state) -> float:
        history, node, _ = state
        delta = 0.0
        if node != 0:
            history, delta = self._end_word(state)
        return delta + self.w.lm_weight * self._logp(self.lm.eos, history)
